"""Gin configuration: parse files and bindings with one-line errors.

Includes inside gin files are resolved against the including file's
directory, then the project's gin/ directory, so `include 'corpora/ptb.gin'`
works from any working directory.
"""

import contextlib
import pathlib

from absl import logging
import gin

from lm_trax.errors import UserError

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'


def parse(gin_files=(), bindings=()):
  """Clears gin and parses `gin_files` then `bindings` (later ones win)."""
  gin.clear_config()
  for path in gin_files:
    if not pathlib.Path(path).is_file():
      raise UserError(f'gin file {path} does not exist; see gin/ for configs')
  search_paths = [str(pathlib.Path(p).resolve().parent) for p in gin_files]
  search_paths.append(str(GIN_DIR))
  for path in dict.fromkeys(search_paths):
    gin.add_config_file_search_path(path)
  try:
    with _quiet_absl():  # gin logs an error for every include path it tries.
      gin.parse_config_files_and_bindings(list(gin_files), list(bindings))
  except (ValueError, SyntaxError, KeyError, TypeError, IOError) as e:
    raise UserError(f'bad gin config: {_one_line(e)}') from e


def check_trainable():
  """Raises UserError unless the parsed config names a model (train.model);
  gin would only say so when train() is called, in a traceback."""
  try:
    gin.query_parameter('train.model')
  except ValueError:
    raise UserError('the gin config names no model (train.model); start from '
                    'a config in gin/, e.g. --gin_file=gin/ptb_lstm.gin '
                    '[--gin_file=gin/tiny.gin]') from None


@contextlib.contextmanager
def _quiet_absl():
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def _one_line(error):
  return ' '.join(str(error).split())


def run_name(gin_files):
  """A default run name from the last gin file: gin/ptb_lstm.gin -> ptb_lstm."""
  return pathlib.Path(gin_files[-1]).stem if gin_files else 'run'
