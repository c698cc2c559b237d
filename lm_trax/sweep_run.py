"""Running a sweep: its directory, and training its points.

A Sweep is stored as sweep.json in its directory; each point's run directory
holds a status.json (running, finished, failed or interrupted). Points train
in this process (`run_point`) or each in a worker process
(`run_point_in_subprocess`), and a point trained from a config that has
since changed is refused (`check_configs`, `check_unchanged`). Only
`run_point` imports lm_trax.training, and so trax and TensorFlow.
"""

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import queue
import subprocess
import sys
import time
import traceback

import gin

from lm_trax import config
from lm_trax import files
from lm_trax import sweep_grid
from lm_trax.errors import UserError, one_line

SWEEP_FILE = 'sweep.json'
STATUS_FILE = 'status.json'
LOG_FILE = 'train.log'
_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent


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
      return sweep_grid.expand(self.grid)
    return sweep_grid.expand_named(self.grid, self.named_points)

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
      points file is bad (see `sweep_grid.make_grid` and
      `sweep_grid.load_points_file`).
  """
  if grid_file and sweep_grid.is_points_file(
      sweep_grid.read_yaml(grid_file)):
    if sweep_flags:
      raise UserError(f'--sweep cannot be combined with the points file '
                      f'{grid_file}: add the values to it as points, or drop '
                      '--sweep')
    return Sweep(gin_files, bindings, *sweep_grid.load_points_file(grid_file))
  return Sweep(gin_files, bindings,
               sweep_grid.make_grid(grid_file, sweep_flags))


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
  message = str(error)
  if not isinstance(error, UserError):
    message = f'{type(error).__name__}: {message}'
  return one_line(message)


# Running points.


def run_point(sweep, point, point_dir):
  """Trains one point in this process and records how it ended.

  Any exception is recorded as the point's error (tracebacks of errors other
  than UserError are printed). An interruption (signals.Interrupted after
  SIGINT/SIGTERM, with a checkpoint saved, or KeyboardInterrupt) is recorded
  and re-raised, so that it stops the sweep.

  Returns:
    The point's status dict (see `read_status`).
  """
  # Imports trax and TensorFlow: only a point that trains needs them.
  # pylint: disable=g-import-not-at-top
  from lm_trax import signals
  from lm_trax import training
  # pylint: enable=g-import-not-at-top
  started = _start_attempt(point_dir, point)
  try:
    config.parse(sweep.gin_files, sweep.bindings + point.bindings)
    _update_status(point_dir, config_sha256=config_digest())
    loop = training.train(output_dir=str(point_dir))
  except (signals.Interrupted, KeyboardInterrupt):
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
  return next((one_line(l) for l in reversed(lines) if l.strip()), '')


def worker_command(output_dir, point, cores=None):
  """The command line of a worker process: `run_point` of one point, on the
  CPU cores `cores` (a list of ints; None: wherever the OS puts it)."""
  return ([sys.executable, '-m', 'lm_trax.sweep', '--output_dir',
           str(output_dir), '--run_point', point.name]
          + (['--cores', ','.join(map(str, cores))] if cores else []))


def core_shares(workers):
  """This process's CPU cores split into `workers` disjoint lists, or None
  where that is not possible (more workers than cores, or an OS without
  CPU affinity). Pinned, each worker's thread pools size themselves to its
  share instead of every worker spreading threads over all the cores."""
  if not hasattr(os, 'sched_getaffinity'):
    return None
  cores = sorted(os.sched_getaffinity(0))
  if workers > len(cores):
    return None
  share = len(cores) // workers
  return [cores[i * share:(i + 1) * share] for i in range(workers)]


def run_point_in_subprocess(output_dir, point, cores=None):
  """Trains one point in a new Python process, its output in train.log.

  Args:
    output_dir: the sweep directory.
    point: the Point to train.
    cores: the CPU cores the process runs on (None: any).

  Returns:
    The point's status dict; 'failed' if the process died without saying.
  """
  point_dir = pathlib.Path(output_dir) / point.name
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      [str(_PACKAGE_ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
  started = _start_attempt(point_dir, point)
  with open(point_dir / LOG_FILE, 'a', encoding='utf-8') as log:
    returncode = subprocess.run(worker_command(output_dir, point, cores),
                                stdout=log,
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


def format_duration(seconds):
  """'1:02:03' for 3723.4 seconds."""
  return str(datetime.timedelta(seconds=int(seconds)))


def _describe(status):
  text = status['status']
  if 'wall_time' in status:
    text += f' ({format_duration(status["wall_time"])})'
  if status.get('error'):
    text += f': {status["error"]}'
  return text


def run_sweep(sweep, output_dir, workers=1):
  """Trains the sweep's unfinished points; sweep_report.write_report reports.

  Args:
    sweep: a Sweep.
    output_dir: the sweep directory.
    workers: 1 trains in this process; N > 1 in N parallel processes.

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


def _run_in_processes(output_dir, points, workers):
  """Trains `points`, `workers` processes at a time, each on its own share
  of the cores while it runs (core_shares)."""
  free_shares = queue.Queue()
  for share in core_shares(workers) or [None] * workers:
    free_shares.put(share)

  def run_on_a_free_share(point):
    share = free_shares.get()
    try:
      return run_point_in_subprocess(output_dir, point, share)
    finally:
      free_shares.put(share)

  pool = concurrent.futures.ThreadPoolExecutor(workers)
  try:
    futures = {pool.submit(run_on_a_free_share, point): point
               for point in points}
    for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
      _print(f'[{i}/{len(points)}] {futures[future].name}: '
             f'{_describe(future.result())}')
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
