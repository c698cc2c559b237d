"""A sweep's points: its grid or named points, and their run directory names.

A grid is a list of (param, [gin value text, ...]) pairs, in order, from
--sweep flags or a YAML grid file; its points are the cartesian product. A
points file lists named points instead. This module only reads and expands
them (see lm_trax.sweep for the file formats); sweep_run trains the points.
"""

import collections
import dataclasses
import hashlib
import itertools
import pathlib
import re

from gin import config_parser
import yaml

from lm_trax.errors import UserError

_MAX_NAME_LENGTH = 150


# Grids: (param, [gin value text, ...]) pairs, in order.


class _GinReference:
  """A gin @reference or %macro inside a value, kept as its gin text."""

  def __init__(self, text):
    self.text = text

  def __repr__(self):
    return self.text


class _KeepReferences(config_parser.ParserDelegate):
  """Makes gin's parser return references and macros as their text."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return _GinReference(f'@{scoped_configurable_name}' +
                         ('()' if evaluate else ''))

  def macro(self, macro_name):
    return _GinReference(f'%{macro_name}')


class _GridLoader(yaml.SafeLoader):
  """YAML with YAML 1.2 floats: PyYAML alone reads 1e-3 as a string."""


_GridLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))


def _one_line(text):
  return ' '.join(str(text).split())


def _gin_texts(param, values, source):
  """The gin text of each value: Python literals as gin reads them."""
  if not isinstance(values, list) or not values:
    raise UserError(f'{source}: {param} needs a non-empty [list] of values, '
                    f'e.g. {param} = [1, 2]')
  texts = [repr(value) for value in values]
  repeated = [text for text, n in collections.Counter(texts).items() if n > 1]
  if repeated:
    raise UserError(f'{source}: {param} lists {repeated[0]} more than once')
  return texts


def parse_sweep_flag(text):
  """Parses one --sweep flag.

  Args:
    text: a gin binding whose value is a list, e.g.
      'RecurrentLM.d_model = [200, 400]' or
      'train.optimizer = [@trax.optimizers.SGD, @trax.optimizers.Adam]'.

  Returns:
    (param, gin texts of the values), e.g. ('RecurrentLM.d_model', ['200', '400']).

  Raises:
    UserError: if text is not one gin binding of a non-empty list.
  """
  source = f'--sweep {text!r}'
  try:
    statements = list(config_parser.ConfigParser(text, _KeepReferences()))
  except (SyntaxError, ValueError) as e:
    raise UserError(f'{source} is not a gin binding '
                    f"'Configurable.param = [values]': {_one_line(e)}") from e
  if (len(statements) != 1 or
      not isinstance(statements[0], config_parser.BindingStatement)):
    raise UserError(f"{source}: give one binding 'Configurable.param = "
                    "[v1, v2]' per --sweep")
  statement = statements[0]
  param = (f'{statement.selector}.{statement.arg_name}' if statement.arg_name
           else statement.selector)
  if statement.scope:
    param = f'{statement.scope}/{param}'
  return param, _gin_texts(param, statement.value, source)


def _references_from_yaml(value):
  """YAML strings starting with @ or % are gin references and macros."""
  if isinstance(value, str) and value[:1] in ('@', '%'):
    return _GinReference(value)
  if isinstance(value, list):
    return [_references_from_yaml(v) for v in value]
  if isinstance(value, dict):
    return {k: _references_from_yaml(v) for k, v in value.items()}
  return value


def read_yaml(path, loader=_GridLoader):
  """The data of a YAML grid file.

  Raises:
    UserError: if the file is missing or is not YAML.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f'grid file {path} does not exist; see gin/sweeps/')
  try:
    return yaml.load(path.read_text(encoding='utf-8'), Loader=loader)
  except yaml.YAMLError as e:
    raise UserError(f'grid file {path} is not valid YAML: '
                    f'{_one_line(e)}') from e


def load_grid_file(path):
  """Reads a YAML grid file of `Configurable.param: [values]` lines.

  Returns:
    The grid: (param, gin texts of the values) pairs, in file order.

  Raises:
    UserError: if the file is missing, is not YAML or is not such a mapping.
  """
  data = read_yaml(path)
  if not isinstance(data, dict) or not data:
    raise UserError(f'grid file {path} must map gin parameters to lists, '
                    "e.g. 'RecurrentLM.d_model: [200, 400]'")
  return [(str(param), _gin_texts(param, _references_from_yaml(values),
                                  f'grid file {path}'))
          for param, values in data.items()]


def make_grid(grid_file=None, sweep_flags=()):
  """The grid of a --grid file followed by --sweep flags.

  Raises:
    UserError: if the grid is empty or names a parameter twice.
  """
  grid = load_grid_file(grid_file) if grid_file else []
  grid += [parse_sweep_flag(text) for text in sweep_flags]
  if not grid:
    raise UserError("give a grid: --sweep 'RecurrentLM.d_model = [200, 400]' "
                    '(repeatable) or --grid gin/sweeps/NAME.yaml')
  repeated = [p for p, n in collections.Counter(p for p, _ in grid).items()
              if n > 1]
  if repeated:
    raise UserError(f'the grid sets {repeated[0]} more than once')
  return grid


# Points files: named points instead of a product.

_YAML_MERGE = 'tag:yaml.org,2002:merge'
_POINTS_FILE_KEYS = ('every_point', 'points')
# The sweep directory's own files (sweep_run, sweep_report): no point may
# take their names.
_SWEEP_DIR_FILES = ('sweep.json', 'results.csv', 'results.md', 'curves.png')


class _PointsLoader(_GridLoader):
  """_GridLoader that refuses a key repeated in one mapping.

  PyYAML keeps the last of repeated keys, which would drop a point silently.
  """

  def construct_mapping(self, node, deep=False):
    keys = [key.value for key, _ in node.value
            if isinstance(key, yaml.ScalarNode) and key.tag != _YAML_MERGE]
    repeated = [key for key, n in collections.Counter(keys).items() if n > 1]
    if repeated:
      raise yaml.constructor.ConstructorError(
          None, None, f'{repeated[0]!r} appears twice in one mapping',
          node.start_mark)
    return super().construct_mapping(node, deep)


def is_points_file(data):
  """Whether a grid file's YAML data lists named points (`points: {...}`).

  A `points` key with a list stays a grid's value list (of a %points macro).
  """
  return (isinstance(data, dict) and 'points' in data and
          not isinstance(data['points'], list))


def _one_value_bindings(bindings, source):
  """(param, gin text) pairs of a YAML mapping of param -> one value.

  An empty YAML entry (None) has no bindings.
  """
  if bindings is None:
    return ()
  if not isinstance(bindings, dict):
    raise UserError(f'{source} must map gin parameters to one value each, '
                    'e.g. {RecurrentLM.variational: false}')
  return tuple((str(param), repr(_references_from_yaml(value)))
               for param, value in bindings.items())


def _point_dir_name(name, source):
  """A named point's run directory name: the name made file-safe.

  Raises:
    UserError: if that leaves no name, is too long or is a sweep's file.
  """
  safe = _file_safe(str(name))
  if not safe.strip('.'):
    raise UserError(f'{source}: the point name {name!r} is empty once made '
                    "file-safe; use letters, digits and '._+-'")
  if len(safe) > _MAX_NAME_LENGTH or safe in _SWEEP_DIR_FILES:
    raise UserError(f'{source}: the point name {name!r} cannot name its run '
                    f'directory (over {_MAX_NAME_LENGTH} characters, or a '
                    'file of the sweep); rename it')
  return safe


def load_points_file(path):
  """Reads a YAML points file: optional `every_point` bindings, then `points`.

  Returns:
    (every_point, named points): every_point's bindings as a grid of one
    value per param; the named points as (run directory name, its own
    (param, gin text) pairs) pairs, in file order.

  Raises:
    UserError: if the file has other top-level keys or no points, a point is
      not a mapping of bindings, or point names are empty or repeated.
  """
  source = f'grid file {path}'
  data = read_yaml(path, _PointsLoader)
  if not is_points_file(data):
    raise UserError(f"{source} is not a points file (no top-level 'points')")
  other = [key for key in data if key not in _POINTS_FILE_KEYS]
  if other:
    raise UserError(f'{source}: a points file has only every_point and '
                    f'points, not {other[0]}; move it into every_point')
  if not isinstance(data['points'], dict) or not data['points']:
    raise UserError(f'{source}: points must map point names to their '
                    "bindings, e.g. 'full: {}'")
  every_point = _one_value_bindings(data.get('every_point'),
                                    f'{source}: every_point')
  named = [(_point_dir_name(name, source),
            _one_value_bindings(bindings, f'{source}: point {name}'))
           for name, bindings in data['points'].items()]
  repeated = [n for n, count in collections.Counter(n for n, _ in named).items()
              if count > 1]
  if repeated:
    raise UserError(f'{source}: two points are named {repeated[0]} once made '
                    'file-safe; rename one')
  return [(param, [value]) for param, value in every_point], named


# Points.


@dataclasses.dataclass(frozen=True)
class Point:
  """One point of a grid.

  Attributes:
    name: its run directory's name, made from its values of the swept
      params (see `expand`).
    assignments: (param, gin value text) pairs, in grid order.
  """
  name: str
  assignments: tuple

  @property
  def bindings(self):
    return [f'{param} = {value}' for param, value in self.assignments]


def _file_safe(text):
  """Text fit for a file name: quotes, @ and % dropped; [ ,()/] -> '_'."""
  text = re.sub(r'''['"@%]''', '', text)
  return re.sub(r'[^A-Za-z0-9._+-]+', '_', text).strip('_')


def _digest(assignments):
  text = '\n'.join(f'{param}={value}' for param, value in assignments)
  return hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]


def point_name(assignments):
  """A readable directory name that depends only on the given bindings.

  ('RecurrentLM.d_model', '200'), ('RecurrentLM.dropout', '0.5') ->
  'RecurrentLM.d_model=200,RecurrentLM.dropout=0.5'. Names longer than 150 characters
  are cut and end in a hash of the bindings.
  """
  name = ','.join(f'{_file_safe(param)}={_file_safe(value)}'
                  for param, value in assignments)
  if len(name) > _MAX_NAME_LENGTH:
    name = f'{name[:_MAX_NAME_LENGTH - 9]}-{_digest(assignments)}'
  return name


def varying_params(grid):
  """The params with more than one value (all of them if none has)."""
  varying = [param for param, values in grid if len(values) > 1]
  return varying or [param for param, _ in grid]


def expand(grid):
  """The grid's points: the cartesian product, first parameter slowest.

  A point is named after its values of the params that vary (see
  `point_name`); the others are the same for every point. Points whose names
  would coincide once made file-safe (e.g. values 'a b' and 'a_b') get a
  hash of their bindings appended.
  """
  params = [param for param, _ in grid]
  named = varying_params(grid)
  assignments = [tuple(zip(params, values))
                 for values in itertools.product(*(v for _, v in grid))]
  names = [point_name([(p, v) for p, v in a if p in named])
           for a in assignments]
  counts = collections.Counter(names)
  return [Point(name if counts[name] == 1 else f'{name}-{_digest(a)}', a)
          for name, a in zip(names, assignments)]


def expand_named(grid, named_points):
  """Named points: the grid's one value per param, then each point's own."""
  every_point = tuple((param, values[0]) for param, values in grid)
  return [Point(name, every_point + tuple(own)) for name, own in named_points]
