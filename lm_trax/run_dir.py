"""A run directory: the one place its files are named, read and written.

train() writes, and every command that uses a trained model reads:

  config.gin                       the operative gin config (`write_config`)
  vocab.json                       the vocabulary (lm_trax.vocab)
  model.json                       the model's layers, weight shapes and
                                   optimizer (`read/write_model_description`)
  metrics.jsonl                    one JSON record per log/eval (`MetricsLog`),
                                   appended across resumes
  run.json                         how each start of training ran: command,
                                   versions, git commit, machine, devices
                                   (`record_start`)
  checkpoints/step-NNNNNNNN/       trax checkpoint files, the pointers latest
                                   and best, the averaged weights
                                   (lm_trax.checkpoints, lm_trax.averaging)
  train/ eval/ valid/              TensorBoard event files (trax's, and
                                   lm_trax.loop.TensorBoard's)

lm_trax.trained.Run opens one for evaluation, scoring, generation and the
Python API: nothing else, in particular no corpus, is needed to rebuild the
trained model. This module imports neither trax nor TensorFlow (plot and
sweep reports read metrics without them).
"""

import datetime
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import time

from lm_trax import files
from lm_trax.errors import UserError

CONFIG_FILE = 'config.gin'
MODEL_FILE = 'model.json'
RUN_FILE = 'run.json'

# (distribution, module) of the packages whose versions run.json records.
PACKAGES = (('lm_trax', 'lm_trax'), ('trax', 'trax'), ('jax', 'jax'),
            ('jaxlib', 'jaxlib'), ('tensorflow', 'tensorflow'),
            ('gin-config', 'gin'), ('numpy', 'numpy'))


def write_config(output_dir, operative_config, corpus, batching):
  """Writes config.gin, atomically: gin's operative config, then the settings
  of the corpus and the batching train() used (they may have been passed in
  rather than configured), which `Run` reads back. The data directory is not
  recorded: a run is evaluated with the data where it is then (--data_dir,
  LM_TRAX_DATA_DIR)."""
  lines = [operative_config.rstrip('\n'), '',
           '# The corpus and batching of this run, as train() used them.']
  for obj, skip in ((corpus, ('data_dir',)), (batching, ())):
    for name, value in _constructor_settings(obj).items():
      if name not in skip:
        lines.append(f'{type(obj).__name__}.{name} = {value!r}')
  files.write_text_atomically(pathlib.Path(output_dir) / CONFIG_FILE,
                              '\n'.join(lines) + '\n')


def _constructor_settings(obj):
  """{parameter: the object's attribute of that name} for obj's __init__."""
  signature = inspect.signature(type(obj).__init__)
  return {name: getattr(obj, name) for name in signature.parameters
          if name != 'self'}


def read_model_description(output_dir):
  """model.json as a dict, or None in a new run directory."""
  path = pathlib.Path(output_dir) / MODEL_FILE
  if not path.exists():
    return None
  try:
    description = json.loads(path.read_text(encoding='utf-8'))
    if not isinstance(description, dict):
      raise TypeError(f'a {type(description).__name__}, not an object')
    return description
  except (ValueError, TypeError) as e:
    raise UserError(f'{path} is damaged ({type(e).__name__}: {e}); delete '
                    'it: train.py writes it again from the config') from None


def write_model_description(output_dir, description):
  """Writes model.json: {'model': [lines], 'weight_shapes', 'optimizer'}."""
  files.write_text_atomically(pathlib.Path(output_dir) / MODEL_FILE,
                              json.dumps(description, indent=1))


def record_start(output_dir, step, to_step, devices, argv=None,
                 precision='float32'):
  """Appends a record of this start of training to run.json, atomically.

  run.json is {"starts": [record, ...]}, one record per start of train(), the
  first for a new run and one more for each resume: a resumed run may go on
  with another command, code or machine, and each record says what trained
  the steps from its `step` on.

  Args:
    output_dir: the run directory.
    step: the step training starts from (0, or the resumed checkpoint's).
    to_step: the step it trains to (train.n_steps).
    devices: jax.devices(), the devices of every process.
    argv: the command line; default sys.argv.
    precision: train.precision, the matmuls' number format.
  """
  starts = read_starts(output_dir)
  starts.append({
      'time': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'step': int(step),
      'to_step': int(to_step),
      'precision': precision,
      'command': list(sys.argv if argv is None else argv),
      'cwd': os.getcwd(),
      'versions': package_versions(),
      'git': source_commit(),
      'machine': {'hostname': socket.gethostname(),
                  'platform': platform.platform(),
                  'python': platform.python_version(),
                  'cpu_count': os.cpu_count()},
      'devices': {'count': len(devices),
                  'kinds': sorted({d.device_kind for d in devices}),
                  'platform': devices[0].platform if devices else None},
  })
  files.write_text_atomically(pathlib.Path(output_dir) / RUN_FILE,
                              json.dumps({'starts': starts}, indent=1) + '\n')


def read_starts(output_dir):
  """run.json's list of start records ([] if there is no run.json)."""
  path = pathlib.Path(output_dir) / RUN_FILE
  if not path.exists():
    return []
  try:
    return json.loads(path.read_text(encoding='utf-8'))['starts']
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a run record ({type(e).__name__}: {e}); '
                    'delete it (it only describes past starts)') from None


def package_versions():
  """{distribution: version} of PACKAGES (None if not installed): the
  imported module's own __version__ when it has one, since a module on
  PYTHONPATH can differ from the installed distribution."""
  versions = {}
  for distribution, module_name in PACKAGES:
    module = sys.modules.get(module_name)
    version = getattr(module, '__version__', None)
    if version is None:
      try:
        version = importlib.metadata.version(distribution)
      except importlib.metadata.PackageNotFoundError:
        pass
    versions[distribution] = version
  return versions


def source_commit(package_dir=None):
  """{'commit': sha, 'dirty': bool} of the git checkout that package_dir
  (default: lm_trax's own code) is tracked in, dirty when tracked files
  differ from the commit; None without git or outside a checkout (an
  installed wheel, even inside some other repository)."""
  package_dir = pathlib.Path(package_dir or pathlib.Path(__file__).parent)

  def git(*args):
    return subprocess.run(['git', '-C', str(package_dir), *args],
                          capture_output=True, text=True, timeout=30,
                          check=True).stdout
  try:
    git('ls-files', '--error-unmatch', '__init__.py')
    commit = git('rev-parse', 'HEAD').strip()
    changes = git('status', '--porcelain', '--untracked-files=no')
  except (OSError, subprocess.SubprocessError):
    return None
  return {'commit': commit, 'dirty': bool(changes.strip())}


class MetricsLog:
  """Appends records to <run>/metrics.jsonl, one JSON object per line:

    {"step": 1000, "kind": "train", "loss": 4.9, "ppl": 134.3, "lr": 1.0,
     "tokens_per_sec": 3500.0, "time": <unix seconds>}

  kind: 'train' (mean training loss since the previous record), 'eval'
  (trax's sampled-window EvalTask: loss, ppl, accuracy) or 'valid' (exact
  perplexity over the whole validation split). Loss is in nats per token. A
  resumed run appends; readers keep the last record per (kind, step).
  """

  FILENAME = 'metrics.jsonl'

  def __init__(self, output_dir):
    self.path = pathlib.Path(output_dir) / self.FILENAME

  def write(self, step, kind, **values):
    record = {'step': int(step), 'kind': kind}
    record.update({k: float(v) for k, v in values.items()})
    record['time'] = time.time()
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')

  @staticmethod
  def read(output_dir):
    """Records of a run, the last one per (kind, step), in step order.

    A damaged line (e.g. one cut short when the machine went down) is
    skipped, and said so once on stderr: it is a log, the checkpoints hold
    the run.
    """
    path = pathlib.Path(output_dir) / MetricsLog.FILENAME
    if not path.exists():
      return []
    latest, damaged = {}, []
    lines = path.read_text(encoding='utf-8', errors='replace').splitlines()
    for number, line in enumerate(lines, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        latest[(record['kind'], int(record['step']))] = record
      except (ValueError, KeyError, TypeError):
        damaged.append(number)
    if damaged:
      print(f'warning: skipped {len(damaged)} damaged line(s) of {path} '
            f'(line {", ".join(map(str, damaged[:5]))}'
            f'{", ..." if len(damaged) > 5 else ""})', file=sys.stderr)
    return sorted(latest.values(), key=lambda r: (int(r['step']), r['kind']))
