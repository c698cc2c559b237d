"""Errors a user can cause, reported as one line that names the fix."""

import contextlib
import numbers
import sys


class UserError(Exception):
  """A problem with the user's input (data, config, arguments, run directory).

  Command-line entry points print str(error) as one line on stderr and exit
  with status 2, without a traceback (unless --verbose).
  """


def is_whole_number(value):
  """Whether value is an integer (numpy's included), and not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real_number(value):
  """Whether value is a real number (numpy's included), and not a bool."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(ok, name, rule, value):
  """Raises UserError('NAME must be RULE, got VALUE') unless ok. NAME is how
  the caller's user spells the setting: a flag for a command, a parameter
  for the Python API."""
  if not ok:
    raise UserError(f'{name} must be {rule}, got {value!r}')


def one_line(error):
  """The error's message on one line, without the suffix gin appends."""
  message = ' '.join(str(error).split())
  return message.split(" In call to configurable '")[0]


# A command stopped by Ctrl-C exits as the shell reports SIGINT: 128 + 2.
INTERRUPTED_STATUS = 130


def exit_interrupted(verbose=False):
  """Ctrl-C in a command that writes nothing half-done: one line, no
  traceback (unless verbose)."""
  if verbose:
    raise KeyboardInterrupt
  # On a line of its own, after a progress bar's or the terminal's '^C'.
  print('\ninterrupted', file=sys.stderr)
  sys.exit(INTERRUPTED_STATUS)


def exit_with(error, verbose=False, status=2):
  """Prints `error` as one line (or a traceback if verbose) and exits."""
  if verbose:
    raise error
  print(f'error: {one_line(error)}', file=sys.stderr)
  sys.exit(status)


@contextlib.contextmanager
def reported(verbose=False):
  """The body of a command that writes nothing half-done: a UserError ends
  it as one line and status 2 (exit_with), Ctrl-C as 'interrupted' and
  status 130 (exit_interrupted); verbose keeps the tracebacks."""
  try:
    yield
  except UserError as error:
    exit_with(error, verbose)
  except KeyboardInterrupt:
    exit_interrupted(verbose)
