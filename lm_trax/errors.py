"""Errors a user can cause, reported as one line that names the fix."""

import sys


class UserError(Exception):
  """A problem with the user's input (data, config, arguments, run directory).

  Command-line entry points print str(error) as one line on stderr and exit
  with status 2, without a traceback (unless --verbose).
  """


def exit_with(error, verbose=False):
  """Prints `error` as one line (or a traceback if verbose) and exits 2."""
  if verbose:
    raise error
  message = ' '.join(str(error).split())
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)
