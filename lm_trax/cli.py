"""What the commands share: their name as typed, how they name their
options, and the run arguments.

Errors are reported by lm_trax.errors.exit_with (one line, exit status 2);
files are written by lm_trax.files.write_text_atomically; the process is set
up, once the arguments are read, by lm_trax.process.set_up.
"""

import argparse
import pathlib
import sys


def command_name(module):
  """How the user ran the command: `lm-trax-evaluate` from the console
  script, else `python -m lm_trax.evaluate` (module = 'lm_trax.evaluate')."""
  program = pathlib.Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ''
  if program.startswith('lm-trax-'):
    return program
  return f'python -m {module}'


def flag(option):
  """How a command names an option in its messages: '--top_k'. Code the
  commands share with the Python API takes this spelling as a parameter
  (`name=`), so that the API's messages name its parameters instead."""
  return f'--{option}'


class _Parser(argparse.ArgumentParser):
  """argparse, with a bad argument reported in two lines (the error, and
  where the options are listed) instead of the whole usage message."""

  def error(self, message):
    self.exit(2, f'{self.prog}: error: {message}\n'
                 f'{self.prog} --help lists the options\n')


def parser(module, description):
  """An ArgumentParser whose usage line names the command as typed."""
  return _Parser(prog=command_name(module), description=description)


# lm_trax.precision.PRECISIONS, named here so that --help loads no JAX
# (tests/test_precision.py checks that the two are equal).
PRECISIONS = ('float32', 'bfloat16')


def add_run_arguments(parser_, checkpoint=True):
  """--output_dir (the run directory), --checkpoint, --precision and
  --verbose."""
  parser_.add_argument('--output_dir', required=True,
                       help='the run directory, or a model exported by '
                       'lm-trax-export')
  if checkpoint:
    parser_.add_argument('--checkpoint', default='latest',
                         help="'latest', 'best' (the best exact validation "
                         'loss during training) or a step number')
  parser_.add_argument('--precision', default=None, choices=PRECISIONS,
                       help="the matmuls' number format (lm_trax.precision; "
                       'default: the one the run trained in)')
  add_verbose_argument(parser_)


def add_verbose_argument(parser_):
  parser_.add_argument('--verbose', action='store_true',
                       help='show a traceback instead of a one-line error')
