"""Gin configuration: parse files and bindings with one-line errors.

The configs shipped with lm_trax (the repository's gin/, installed as
lm_trax/gin) are found from any working directory: a gin file that is not an
existing path is looked up among them (ptb_lstm.gin or gin/ptb_lstm.gin), and
includes inside gin files are resolved against the including file's
directory, then the shipped configs, so `include 'corpora/ptb.gin'` works.
"""

import contextlib
import functools
import importlib.resources
import inspect
import logging as std_logging
import pathlib

from absl import logging
import gin

from lm_trax.errors import UserError, one_line


def _shipped_gin_dir():
  """Where the shipped gin configs are: lm_trax/gin once the package is
  installed from a wheel or sdist (setup.py maps gin/ there); else the
  repository's gin/, which a clone or an editable install uses in place."""
  installed = importlib.resources.files('lm_trax') / 'gin'
  if installed.is_dir():
    return pathlib.Path(str(installed)).resolve()
  return pathlib.Path(__file__).resolve().parent.parent / 'gin'


GIN_DIR = _shipped_gin_dir()


def parse(gin_files=(), bindings=()):
  """Clears gin and parses `gin_files` then `bindings` (later ones win),
  every name a config can use registered first (lm_trax.configurables)."""
  # Imported here, not above: the train and sweep commands import this module
  # for --help, and the configurables import trax and TensorFlow.
  from lm_trax import configurables  # pylint: disable=g-import-not-at-top,unused-import
  gin.clear_config()
  gin_files = [str(find_gin_file(path)) for path in gin_files]
  search_paths = [str(pathlib.Path(p).resolve().parent) for p in gin_files]
  search_paths.append(str(GIN_DIR))
  for path in dict.fromkeys(search_paths):
    gin.add_config_file_search_path(path)
  try:
    with _quiet_absl():  # gin logs an error for every include path it tries.
      gin.parse_config_files_and_bindings(list(gin_files), list(bindings))
  except (ValueError, SyntaxError, KeyError, TypeError, IOError) as e:
    hint = ("; a model's precision is set by train.precision = 'bfloat16'"
            if "denylisted kwarg 'precision'" in str(e) else '')
    raise UserError(f'bad gin config: {one_line(e)}{hint}') from e


def find_gin_file(path):
  """The gin file `path` names: the path itself if it is a file, else the
  shipped config it names relative to gin/ or to the repository's root
  (ptb_lstm.gin, corpora/ptb.gin, gin/ptb_lstm.gin). Raises UserError."""
  given = pathlib.Path(path)
  if given.is_file():
    return given
  parts = given.parts[1:] if given.parts[:1] == ('gin',) else given.parts
  if parts and not given.is_absolute():
    shipped = GIN_DIR.joinpath(*parts)
    if shipped.is_file():
      return shipped
  raise UserError(f'gin file {path} does not exist; the shipped configs are '
                  f'in {GIN_DIR}')


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
  """The model function a parameter refers to (e.g. @RecurrentLM), with every
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
  """Silences gin's error for every include path it tries. gin logs it on
  Python's root logger: absl's verbosity covers that under absl.app (the
  commands); from Python (a notebook, a script) the root logger's own level
  must rise too."""
  verbosity = logging.get_verbosity()
  root_level = std_logging.root.level
  logging.set_verbosity(logging.FATAL)
  std_logging.root.setLevel(std_logging.CRITICAL)
  try:
    yield
  finally:
    std_logging.root.setLevel(root_level)
    logging.set_verbosity(verbosity)


def run_name(gin_files):
  """A default run name from the last gin file: gin/ptb_lstm.gin -> ptb_lstm."""
  return pathlib.Path(gin_files[-1]).stem if gin_files else 'run'
