"""Errors a user can cause, reported as one line that names the fix."""

import sys


class UserError(Exception):
  """A problem with the user's input (data, config, arguments, run directory).

  Command-line entry points print str(error) as one line on stderr and exit
  with status 2, without a traceback (unless --verbose).
  """


def one_line(error):
  """The error's message on one line, without the suffix gin appends."""
  message = ' '.join(str(error).split())
  return message.split(" In call to configurable '")[0]


def exit_with(error, verbose=False, status=2):
  """Prints `error` as one line (or a traceback if verbose) and exits."""
  if verbose:
    raise error
  print(f'error: {one_line(error)}', file=sys.stderr)
  sys.exit(status)
