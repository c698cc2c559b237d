"""Gin configuration: parse files and bindings with one-line errors.

Includes inside gin files are resolved against the including file's
directory, then the project's gin/ directory, so `include 'corpora/ptb.gin'`
works from any working directory.
"""

import contextlib
import functools
import inspect
import pathlib

from absl import logging
import gin
from gin import config as gin_config

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


@contextlib.contextmanager
def isolated():
  """Runs a block with gin's global configuration saved, then restored.

  gin keeps one process-wide configuration; opening a run directory parses
  the run's config.gin into it. Inside this block that leaves the caller's
  configuration (and any other loaded run) untouched. gin has no public way
  to save it: these are gin-config 0.5.0's module-level tables (bindings,
  the operative record, imports, singletons, search paths, the lock).
  """
  g = gin_config  # pylint: disable=protected-access
  saved = ({key: dict(value) for key, value in g._CONFIG.items()},
           {key: dict(value) for key, value in g._OPERATIVE_CONFIG.items()},
           set(g._IMPORTS), dict(g._SINGLETONS), list(g._LOCATION_PREFIXES),
           g._CONFIG_IS_LOCKED)
  try:
    yield
  finally:
    config, operative, imports, singletons, prefixes, locked = saved
    g._CONFIG.clear()
    g._CONFIG.update(config)
    with g._OPERATIVE_CONFIG_LOCK:
      g._OPERATIVE_CONFIG.clear()
      g._OPERATIVE_CONFIG.update(operative)
    g._IMPORTS.clear()
    g._IMPORTS.update(imports)
    g._SINGLETONS.clear()
    g._SINGLETONS.update(singletons)
    g._LOCATION_PREFIXES[:] = prefixes
    g._set_config_is_locked(locked)


def settings(configurable):
  """Every parameter of a gin-configurable class or function as the current
  configuration sets it: its binding, else its default. Passing all of them
  explicitly makes a call independent of later gin state."""
  signature = inspect.signature(getattr(configurable, '__wrapped__',
                                        configurable))
  values = {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}
  values.update(gin.get_bindings(configurable))
  return values


def bound_model(selector='train.model'):
  """The model function a parameter refers to (e.g. @LSTMLM), with every
  bound hyperparameter applied, as a plain function that no longer reads gin:
  model_fn(vocab_size=..., mode=..., ...) -> a trax layer."""
  reference = gin.query_parameter(selector)
  bindings = gin.get_bindings(reference.scoped_selector)
  return functools.partial(reference.configurable.wrapped, **bindings)


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
