"""Gin parameter sweeps: a grid of bindings -> one run per point -> a table.

  python -m lm_trax.sweep --gin_file gin/ptb_lstm.gin \\
      --sweep 'LSTMLM.d_model = [200, 400]' --sweep 'train.n_steps = [1000]' \\
      --output_dir runs/my_sweep [--workers N]
  python -m lm_trax.sweep --gin_file gin/ptb_lstm.gin \\
      --grid gin/sweeps/ptb_lstm_width_dropout.yaml \\
      --output_dir runs/ptb_lstm_width_dropout
  python -m lm_trax.sweep --report runs/my_sweep

A grid maps gin parameters to lists of values, as trax's sweep files do:
`--sweep 'Configurable.param = [v1, v2]'` (gin syntax: @references and
%macros allowed), or a YAML file of `Configurable.param: [v1, v2]` lines
(write references as strings, '@trax.optimizers.Adam'; 1e-3 is a float).
Both give the same grid. The points are the cartesian product of the lists,
the first parameter varying slowest. Each point trains as train.py would,
with the --gin_file files, then the --gin_bindings, then the point's own
bindings, in its own run directory named after its values of the parameters
that vary (a parameter with one value is the same for all points):

  runs/my_sweep/
    sweep.json                      the sweep: gin files, bindings, grid
                                    (and named points, see below)
    LSTMLM.d_model=200/
      (a run directory of train.py: checkpoint, config.gin, metrics.jsonl...)
      status.json                   running | finished | failed | interrupted,
                                    start/end time, wall time, error line
      train.log                     the run's output (--workers > 1 only)
    ...
    results.csv, results.md         the table, one row per point
    curves.png                      validation perplexity of every point

An ablation is not a product: a grid file whose top-level key is `points`
lists named points instead, each with its own bindings (one value per
param), applied after the optional `every_point` bindings shared by all:

  every_point:
    train.n_epochs: 6
  points:
    full: {}
    no_variational: {LSTMLM.variational: false}
    no_ar_tar: {LSTMLM.activation_reg: 0.0, LSTMLM.temporal_activation_reg: 0.0}

Values follow the grid's rules (null is gin's None). The points train in file
order, each in a run directory named after it (runs/my_sweep/no_ar_tar/);
--sweep flags do not combine with a points file. Otherwise a points sweep
runs, resumes and reports as a grid does; its table gives each point's name
and own bindings.

Rerunning the same command (or just `--output_dir runs/my_sweep`) skips the
finished points, resumes interrupted ones from their checkpoints and retries
failed ones; if a gin file changed since a point started, the rerun refuses
(that point's run belongs to another config). A point that fails is recorded
with its error line and the others go on; Ctrl-C (or SIGTERM) saves the
running point's checkpoint and stops the sweep.

The table's validation perplexity comes from the points' 'valid' records
(exact, over the whole validation split) or, if no point has any, from
trax's sampled-window 'eval' records; results.md says which.

--workers 1 (the default) trains the points one after another in this
process, so TensorFlow/trax is imported once. --workers N trains N points at
a time, each in its own Python process (with about 25 s of imports each).
JAX already spreads one training over the CPU cores, so on a 2-core machine
--workers 1 is right: more workers only compete for the same cores.
"""

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import datetime
import hashlib
import itertools
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback

from absl import logging
import gin
from gin import config_parser
import yaml

from lm_trax import config
from lm_trax import plot
from lm_trax import training
from lm_trax import files
from lm_trax.errors import UserError, exit_with

SWEEP_FILE = 'sweep.json'
STATUS_FILE = 'status.json'
LOG_FILE = 'train.log'
_MAX_NAME_LENGTH = 150
_GIN_CALL_CONTEXT = '\n  In call to configurable '
_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent


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
      'LSTMLM.d_model = [200, 400]' or
      'train.optimizer = [@trax.optimizers.SGD, @trax.optimizers.Adam]'.

  Returns:
    (param, gin texts of the values), e.g. ('LSTMLM.d_model', ['200', '400']).

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


def _read_yaml(path, loader=_GridLoader):
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
  data = _read_yaml(path)
  if not isinstance(data, dict) or not data:
    raise UserError(f'grid file {path} must map gin parameters to lists, '
                    "e.g. 'LSTMLM.d_model: [200, 400]'")
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
    raise UserError("give a grid: --sweep 'LSTMLM.d_model = [200, 400]' "
                    '(repeatable) or --grid gin/sweeps/NAME.yaml')
  repeated = [p for p, n in collections.Counter(p for p, _ in grid).items()
              if n > 1]
  if repeated:
    raise UserError(f'the grid sets {repeated[0]} more than once')
  return grid


# Points files: named points instead of a product.

_YAML_MERGE = 'tag:yaml.org,2002:merge'
_POINTS_FILE_KEYS = ('every_point', 'points')
_SWEEP_DIR_FILES = (SWEEP_FILE, 'results.csv', 'results.md', 'curves.png')


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
                    'e.g. {LSTMLM.variational: false}')
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
  data = _read_yaml(path, _PointsLoader)
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

  ('LSTMLM.d_model', '200'), ('LSTMLM.dropout', '0.5') ->
  'LSTMLM.d_model=200,LSTMLM.dropout=0.5'. Names longer than 150 characters
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


# The sweep and its directory.


@dataclasses.dataclass
class Sweep:
  """What a sweep trains, stored as sweep.json in its directory.

  Attributes:
    gin_files: gin files, absolute paths, parsed first for every point.
    bindings: gin bindings applied next, the same for every point.
    grid: (param, gin value texts) pairs; each point's bindings come last.
      In a points sweep, every_point's bindings, one value each.
    named_points: None for a cartesian sweep; in a points sweep, (name,
      (param, gin text) pairs) pairs: each point's own bindings, applied
      after the grid's.
  """
  gin_files: list
  bindings: list
  grid: list
  named_points: list = None

  def points(self):
    if self.named_points is None:
      return expand(self.grid)
    return expand_named(self.grid, self.named_points)

  def own_bindings(self, name):
    """A named point's own bindings, as gin binding texts."""
    return [f'{param} = {value}'
            for param, value in dict(self.named_points)[name]]

  def to_json(self):
    data = {'gin_files': self.gin_files, 'bindings': self.bindings,
            'grid': [[p, v] for p, v in self.grid]}
    if self.named_points is not None:  # Cartesian sweep.json keeps one format.
      data['named_points'] = self.named_points
    return json.dumps(data, indent=2)

  @classmethod
  def from_json(cls, text):
    data = json.loads(text)
    named = data.get('named_points')  # Only points sweeps store it.
    if named is not None:
      named = [(name, tuple(tuple(pair) for pair in own))
               for name, own in named]
    return cls(data['gin_files'], data['bindings'],
               [(param, values) for param, values in data['grid']], named)

  @classmethod
  def load(cls, output_dir):
    """The sweep stored in output_dir.

    Raises:
      UserError: if output_dir holds no sweep.json.
    """
    path = pathlib.Path(output_dir) / SWEEP_FILE
    if not path.is_file():
      raise UserError(f'{output_dir} is not a sweep directory (no {SWEEP_FILE})'
                      '; start one with python -m lm_trax.sweep --gin_file ... '
                      "--sweep '...' --output_dir DIR")
    return cls.from_json(path.read_text(encoding='utf-8'))

  def save(self, output_dir):
    """Writes sweep.json; refuses to mix with another sweep's directory.

    Raises:
      UserError: if output_dir holds a different sweep.
    """
    output_dir = pathlib.Path(output_dir)
    path = output_dir / SWEEP_FILE
    if path.is_file():
      stored = Sweep.load(output_dir)
      differences = [f.name for f in dataclasses.fields(self)
                     if getattr(stored, f.name) != getattr(self, f.name)]
      if differences:
        raise UserError(
            f'{output_dir} holds another sweep (its {SWEEP_FILE} has other '
            f'{" and ".join(differences)}); use another --output_dir, or '
            f'continue that sweep with just --output_dir {output_dir}')
      return
    output_dir.mkdir(parents=True, exist_ok=True)
    files.write_text_atomically(path, self.to_json() + '\n')


def make_sweep(gin_files, bindings, grid_file=None, sweep_flags=()):
  """The Sweep of a --grid file (a grid or a points file) and --sweep flags.

  Raises:
    UserError: if --sweep flags come with a points file, or the grid or the
      points file is bad (see `make_grid` and `load_points_file`).
  """
  if grid_file and is_points_file(_read_yaml(grid_file)):
    if sweep_flags:
      raise UserError(f'--sweep cannot be combined with the points file '
                      f'{grid_file}: add the values to it as points, or drop '
                      '--sweep')
    return Sweep(gin_files, bindings, *load_points_file(grid_file))
  return Sweep(gin_files, bindings, make_grid(grid_file, sweep_flags))


def read_status(point_dir):
  """A point's status.json, or {'status': 'pending'} if it never started."""
  path = pathlib.Path(point_dir) / STATUS_FILE
  if not path.is_file():
    return {'status': 'pending'}
  return json.loads(path.read_text(encoding='utf-8'))


def _update_status(point_dir, **fields):
  """Merges fields into the point's status.json; returns the new status."""
  status = read_status(point_dir)
  status.update(fields)
  pathlib.Path(point_dir).mkdir(parents=True, exist_ok=True)
  files.write_text_atomically(pathlib.Path(point_dir) / STATUS_FILE,
                    json.dumps(status, indent=2) + '\n')
  return status


def _now():
  return datetime.datetime.now().isoformat(timespec='seconds')


def _start_attempt(point_dir, point):
  """Marks the point running; returns the start time (time.time())."""
  _update_status(point_dir, name=point.name, bindings=point.bindings,
                 status='running', started=_now(), ended=None, error=None)
  return time.time()


def _end_attempt(point_dir, started, status, **fields):
  """Records how an attempt ended and adds its duration to the wall time."""
  wall_time = read_status(point_dir).get('wall_time', 0.0)
  return _update_status(point_dir, status=status, ended=_now(),
                        wall_time=wall_time + time.time() - started, **fields)


def error_line(error):
  """One line for an exception: a UserError's message, else 'Type: message'.

  The context gin appends to errors raised inside configurables ("In call to
  configurable 'train' (<function train at 0x...>)") is left out.
  """
  message = str(error).split(_GIN_CALL_CONTEXT)[0]
  if not isinstance(error, UserError):
    message = f'{type(error).__name__}: {message}'
  return _one_line(message)


# Running points.


def run_point(sweep, point, point_dir):
  """Trains one point in this process and records how it ended.

  Any exception is recorded as the point's error (tracebacks of errors other
  than UserError are printed). An interruption (training.Interrupted after
  SIGINT/SIGTERM, with a checkpoint saved, or KeyboardInterrupt) is recorded
  and re-raised, so that it stops the sweep.

  Returns:
    The point's status dict (see `read_status`).
  """
  started = _start_attempt(point_dir, point)
  try:
    config.parse(sweep.gin_files, sweep.bindings + point.bindings)
    _update_status(point_dir, config_sha256=config_digest())
    loop = training.train(output_dir=str(point_dir))
  except (training.Interrupted, KeyboardInterrupt):
    _end_attempt(point_dir, started, 'interrupted')
    raise
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, UserError):
      traceback.print_exc()
    return _end_attempt(point_dir, started, 'failed', error=error_line(e))
  finally:
    gin.clear_config()
  return _end_attempt(point_dir, started, 'finished', step=int(loop.step))


def _last_line(path):
  """The last non-blank line of a text file ('' if none)."""
  lines = pathlib.Path(path).read_text(errors='replace').split('\n')
  return next((_one_line(l) for l in reversed(lines) if l.strip()), '')


def worker_command(output_dir, point):
  """The command line of a worker process: `run_point` of one point."""
  return [sys.executable, '-m', 'lm_trax.sweep', '--output_dir',
          str(output_dir), '--run_point', point.name]


def run_point_in_subprocess(output_dir, point):
  """Trains one point in a new Python process, its output in train.log.

  Returns:
    The point's status dict; 'failed' if the process died without saying.
  """
  point_dir = pathlib.Path(output_dir) / point.name
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      [str(_PACKAGE_ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
  started = _start_attempt(point_dir, point)
  with open(point_dir / LOG_FILE, 'a', encoding='utf-8') as log:
    returncode = subprocess.run(worker_command(output_dir, point), stdout=log,
                                stderr=subprocess.STDOUT, env=env,
                                check=False).returncode
  status = read_status(point_dir)
  if status['status'] == 'running':  # The worker died before recording.
    status = _end_attempt(
        point_dir, started, 'failed',
        error=f'worker process exited with status {returncode}: '
        f'{_last_line(point_dir / LOG_FILE)}')
  return status


def config_digest():
  """SHA-256 of the whole parsed gin config (every file, include and binding)."""
  return hashlib.sha256(gin.config_str().encode('utf-8')).hexdigest()


def check_configs(sweep, points):
  """Parses every point's gin config, so that a typo fails before training.

  Returns:
    {point name: config_digest()} of the points' configs as they parse now.

  Raises:
    UserError: naming the first point whose config does not parse.
  """
  digests = {}
  try:
    for point in points:
      try:
        config.parse(sweep.gin_files, sweep.bindings + point.bindings)
      except UserError as e:
        raise UserError(f'point {point.name}: {e}') from e
      digests[point.name] = config_digest()
      gin.clear_config()
  finally:
    gin.clear_config()
  return digests


def check_unchanged(output_dir, digests):
  """Refuses to skip or resume points trained from another config.

  A point records the digest of its config when it starts (status.json); if
  a gin file changed since, its finished or half-trained run no longer
  belongs to this sweep.

  Raises:
    UserError: naming the first such point.
  """
  for name, digest in digests.items():
    trained_with = read_status(pathlib.Path(output_dir) / name).get(
        'config_sha256')
    if trained_with is not None and trained_with != digest:
      raise UserError(
          f'point {name} in {output_dir} was trained from another config (a '
          'gin file changed since); use another --output_dir, or delete '
          f'{pathlib.Path(output_dir) / name} to train it again')


def _print(message):
  print(message, flush=True)


def _duration(seconds):
  return str(datetime.timedelta(seconds=int(seconds)))


def _describe(status):
  text = status['status']
  if 'wall_time' in status:
    text += f' ({_duration(status["wall_time"])})'
  if status.get('error'):
    text += f': {status["error"]}'
  return text


def run_sweep(sweep, output_dir, workers=1):
  """Trains the sweep's unfinished points, then writes the report.

  Args:
    sweep: a Sweep.
    output_dir: the sweep directory.
    workers: 1 trains in this process; N > 1 in N parallel processes.

  Returns:
    The table's rows (see `summarize`).

  Raises:
    UserError: if output_dir holds another sweep or a config does not parse.
  """
  output_dir = pathlib.Path(output_dir)
  sweep.save(output_dir)
  points = sweep.points()
  todo = [p for p in points
          if read_status(output_dir / p.name)['status'] != 'finished']
  _print(f'sweep of {len(points)} points in {output_dir}: '
         f'{len(points) - len(todo)} finished, {len(todo)} to run'
         + (f', {workers} at a time' if workers > 1 and todo else ''))
  check_unchanged(output_dir, check_configs(sweep, points))
  if workers == 1:
    for i, point in enumerate(todo, 1):
      _print(f'[{i}/{len(todo)}] {point.name}')
      status = run_point(sweep, point, output_dir / point.name)
      _print(f'[{i}/{len(todo)}] {point.name}: {_describe(status)}')
  else:
    _run_in_processes(output_dir, todo, workers)
  return write_report(output_dir)


def _run_in_processes(output_dir, points, workers):
  pool = concurrent.futures.ThreadPoolExecutor(workers)
  try:
    futures = {pool.submit(run_point_in_subprocess, output_dir, point): point
               for point in points}
    for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
      _print(f'[{i}/{len(points)}] {futures[future].name}: '
             f'{_describe(future.result())}')
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


# The report.


def validation_kind(records_per_point):
  """'valid' (exact, whole split) if any point has such records, else 'eval'."""
  return ('valid' if any(r['kind'] == 'valid' for records in records_per_point
                         for r in records) else 'eval')


def summarize(point, records, status, valid_kind):
  """One point's row of the table, from its metrics records and status.

  Returns:
    A dict: name, bindings ({param: value text}), status, steps,
    final_train_loss, best_valid_ppl, final_valid_ppl (of the `valid_kind`
    records), tokens_per_sec (median over the train records), wall_time_s,
    error; None where there is no record yet.
  """
  valid = [r['ppl'] for r in records if r['kind'] == valid_kind]
  train = [r for r in records if r['kind'] == 'train']
  speeds = [r['tokens_per_sec'] for r in train if 'tokens_per_sec' in r]
  return {
      'name': point.name,
      'bindings': dict(point.assignments),
      'status': status['status'],
      'steps': max((r['step'] for r in records), default=None),
      'final_train_loss': train[-1]['loss'] if train else None,
      'best_valid_ppl': min(valid) if valid else None,
      'final_valid_ppl': valid[-1] if valid else None,
      'tokens_per_sec': statistics.median(speeds) if speeds else None,
      'wall_time_s': status.get('wall_time'),
      'error': status.get('error') or '',
  }


CSV_COLUMNS = ('status', 'steps', 'final_train_loss', 'best_valid_ppl',
               'final_valid_ppl', 'tokens_per_sec', 'wall_time_s', 'error')

VALID_KIND_NOTES = {
    'valid': 'exact, over the whole validation split (`valid` records)',
    'eval': ("trax's sampled-window eval (`eval` records: "
             '`train.n_eval_batches` windows, each from a zero state; noisy '
             'and pessimistic); these runs have no exact `valid` records'),
}


CURVES_TITLES = {
    'valid': 'validation perplexity (exact, whole split)',
    'eval': 'validation perplexity (sampled-window eval)',
}


def _csv_point_columns(sweep):
  """results.csv's first columns: the name, then every grid param's value
  (a named point's own bindings in a points sweep)."""
  if sweep.named_points is not None:
    return ['name', 'bindings']
  return ['name'] + [param for param, _ in sweep.grid]


def _csv_point_cells(sweep, row):
  if sweep.named_points is not None:
    return [row['name'], '; '.join(sweep.own_bindings(row['name']))]
  return [row['name']] + [row['bindings'][param] for param, _ in sweep.grid]


def write_csv(path, sweep, valid_kind, rows):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(_csv_point_columns(sweep) + list(CSV_COLUMNS) +
                    ['valid_from'])
    for row in rows:
      writer.writerow(_csv_point_cells(sweep, row) +
                      ['' if row[c] is None else row[c] for c in CSV_COLUMNS]
                      + [valid_kind])


def _cell(value, spec):
  return '-' if value is None else format(value, spec)


def _display_path(path):
  try:
    return str(pathlib.Path(path).relative_to(pathlib.Path.cwd()))
  except ValueError:
    return str(path)


def _shared_bindings(sweep):
  """The bindings every point has: --gin_bindings, then one-value params
  (all of every_point's in a points sweep)."""
  varying = ([] if sweep.named_points is not None else
             varying_params(sweep.grid))
  return sweep.bindings + [f'{param} = {values[0]}' for param, values
                           in sweep.grid if param not in varying]


def _table_point_columns(sweep):
  """results.md's first columns: the swept values, or in a points sweep the
  point's name and its own bindings."""
  if sweep.named_points is not None:
    return ['point', 'bindings']
  return varying_params(sweep.grid)


def _table_point_cells(sweep, row):
  if sweep.named_points is not None:
    own = ', '.join(f'`{b}`' for b in sweep.own_bindings(row['name']))
    return [row['name'], own or '-']
  return [row['bindings'][param] for param in varying_params(sweep.grid)]


def markdown_table(sweep, valid_kind, rows):
  """The results as Markdown: what was swept, the table, failed points."""
  fixed = _shared_bindings(sweep)
  gin_files = ' '.join(_display_path(path) for path in sweep.gin_files)
  with_fixed = ' with ' + ', '.join(f'`{b}`' for b in fixed) if fixed else ''
  header = _table_point_columns(sweep) + [
      'best valid ppl', 'final valid ppl', 'final train loss', 'steps',
      'wall time', 'tokens/s', 'status']
  lines = [
      f'{len(rows)} points, each `{gin_files}`{with_fixed}.',
      f'Validation perplexity: {VALID_KIND_NOTES[valid_kind]}.',
      '',
      '| ' + ' | '.join(header) + ' |',
      '|' + '---|' * len(header),
  ]
  for row in rows:
    cells = _table_point_cells(sweep, row) + [
        _cell(row['best_valid_ppl'], '.2f'),
        _cell(row['final_valid_ppl'], '.2f'),
        _cell(row['final_train_loss'], '.4f'),
        _cell(row['steps'], 'd'),
        '-' if row['wall_time_s'] is None else _duration(row['wall_time_s']),
        _cell(row['tokens_per_sec'], ',.0f'),
        row['status']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  failed = [row for row in rows if row['error']]
  if failed:
    lines += ['', 'Errors:']
    lines += [f'- `{row["name"]}`: {row["error"]}' for row in failed]
  return '\n'.join(lines) + '\n'


def curve_label(sweep, point):
  """'LSTMLM.d_model=200, LSTMLM.dropout=0.5': the point's swept values, or
  its name in a points sweep."""
  if sweep.named_points is not None:
    return point.name
  values = dict(point.assignments)
  return ', '.join(f'{param}={values[param]}'
                   for param in varying_params(sweep.grid))


def write_report(output_dir):
  """Writes results.csv, results.md and curves.png; prints the table.

  Returns:
    The table's rows (see `summarize`), one per point in grid order.

  Raises:
    UserError: if output_dir is not a sweep directory.
  """
  output_dir = pathlib.Path(output_dir)
  sweep = Sweep.load(output_dir)
  points = sweep.points()
  records_per_point = [training.MetricsLog.read(output_dir / p.name)
                       for p in points]
  valid_kind = validation_kind(records_per_point)
  rows = [summarize(point, records, read_status(output_dir / point.name),
                    valid_kind)
          for point, records in zip(points, records_per_point)]
  write_csv(output_dir / 'results.csv', sweep, valid_kind, rows)
  table = markdown_table(sweep, valid_kind, rows)
  (output_dir / 'results.md').write_text(table, encoding='utf-8')
  written = ['results.csv', 'results.md']
  curves = [(curve_label(sweep, point), records)
            for point, records in zip(points, records_per_point)
            if any(r['kind'] == valid_kind for r in records)]
  if curves:
    plot.save_curves(curves, output_dir / 'curves.png', 'ppl', (valid_kind,),
                     title=CURVES_TITLES[valid_kind])
    written.append('curves.png')
  _print(f'\n{table}\nwrote {", ".join(written)} in {output_dir}')
  return rows


# The command line.


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m lm_trax.sweep',
      description='Train a grid of gin bindings, one run per point, and '
      'report a results table and a plot.')
  parser.add_argument('--gin_file', action='append', default=[],
                      help='gin config file, in order (repeatable)')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help="a binding for every point, e.g. 'train.eval_every"
                      " = 100' (repeatable)")
  parser.add_argument('--sweep', action='append', default=[],
                      help="a swept parameter, 'Configurable.param = [v1, v2]'"
                      ' (repeatable)')
  parser.add_argument('--grid', help='a YAML grid or points file '
                      '(gin/sweeps/*.yaml)')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--output_dir', help='the sweep directory')
  target.add_argument('--report', metavar='SWEEP_DIR',
                      help='only write the results of SWEEP_DIR')
  parser.add_argument('--workers', type=int, default=1,
                      help='points trained at a time; each one beyond the '
                      'first runs in its own process (1 suits 2 cores)')
  parser.add_argument('--verbose', action='store_true',
                      help='show tracebacks for user errors')
  parser.add_argument('--run_point', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def sweep_from_args(args):
  """The Sweep the flags define, or the stored one if they define none."""
  if not (args.gin_file or args.gin_bindings or args.sweep or args.grid):
    return Sweep.load(args.output_dir)
  if not args.gin_file:
    raise UserError('give a config: --gin_file gin/ptb_lstm.gin (see gin/)')
  for path in args.gin_file:
    if not pathlib.Path(path).is_file():
      raise UserError(f'gin file {path} does not exist; see gin/ for configs')
  return make_sweep([str(pathlib.Path(p).resolve()) for p in args.gin_file],
                    list(args.gin_bindings), args.grid, args.sweep)


def _run_one_point(output_dir, name):
  """The worker process of --workers > 1: trains the point called name."""
  sweep = Sweep.load(output_dir)
  points = {p.name: p for p in sweep.points()}
  if name not in points:
    raise UserError(f'{output_dir} has no point {name}')
  status = run_point(sweep, points[name], pathlib.Path(output_dir) / name)
  return 0 if status['status'] == 'finished' else 1


def main(argv=None):
  """Command line; see the module docstring."""
  args = _parse_args(argv)
  logging.use_absl_handler()  # So gin's include search stays quiet.
  logging.set_verbosity(logging.WARNING)  # trax prints its progress itself.
  try:
    if args.report:
      write_report(args.report)
    elif args.run_point:
      sys.exit(_run_one_point(args.output_dir, args.run_point))
    else:
      if args.workers < 1:
        raise UserError(f'--workers must be at least 1, got {args.workers}')
      run_sweep(sweep_from_args(args), args.output_dir, args.workers)
  except (training.Interrupted, KeyboardInterrupt) as e:
    reason = (error_line(e) if isinstance(e, training.Interrupted) else
              'interrupted; rerun the same command to resume')
    print(f'sweep stopped: {reason}', file=sys.stderr)
    sys.exit(128 + getattr(e, 'signum', signal.SIGINT))
  except UserError as e:
    exit_with(e, args.verbose)


if __name__ == '__main__':
  main()
