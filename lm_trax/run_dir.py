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
                                   and best, NT-ASGD's averaged weights
                                   (lm_trax.checkpoints, lm_trax.averaging)
  train/ eval/ valid/              TensorBoard event files (trax's, and
                                   lm_trax.loop.TensorBoard's)

`Run` opens one for evaluation, scoring, generation and the Python API:
nothing else, in particular no corpus, is needed to rebuild the trained
model. This module imports neither trax nor TensorFlow (plot and sweep
reports read metrics without them); `Run` imports them when it builds a model.
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

from lm_trax import checkpoints
from lm_trax import config
from lm_trax import files
from lm_trax import vocab as vocab_lib
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
  return json.loads(path.read_text(encoding='utf-8'))


def write_model_description(output_dir, description):
  """Writes model.json: {'model': [lines], 'weight_shapes', 'optimizer'}."""
  files.write_text_atomically(pathlib.Path(output_dir) / MODEL_FILE,
                              json.dumps(description, indent=1))


def record_start(output_dir, step, to_step, devices, argv=None):
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
  """
  starts = read_starts(output_dir)
  starts.append({
      'time': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'step': int(step),
      'to_step': int(to_step),
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
    """Records of a run, the last one per (kind, step), in step order."""
    path = pathlib.Path(output_dir) / MetricsLog.FILENAME
    if not path.exists():
      return []
    latest = {}
    for line in path.read_text(encoding='utf-8').splitlines():
      if line.strip():
        record = json.loads(line)
        latest[(record['kind'], record['step'])] = record
    return sorted(latest.values(), key=lambda r: (r['step'], r['kind']))


class Run:
  """A trained run: its vocabulary, config and a way to build its model.

  Opening a run reads its config.gin once and keeps what it sets (the model
  function with its hyperparameters, the corpus and the batching) as plain
  values: the process's gin configuration is left as it was, and several
  runs can be open side by side.
  """

  def __init__(self, output_dir, checkpoint=checkpoints.LATEST):
    """Opens output_dir; checkpoint is 'latest', 'best' or a step number."""
    self.output_dir = pathlib.Path(output_dir).expanduser()
    if not self.output_dir.is_dir():
      raise UserError(f'run directory {self.output_dir} does not exist; '
                      'train one first: python train.py --gin_file=...')
    try:
      checkpoint = checkpoints.parse_choice(checkpoint)
    except ValueError as e:
      raise UserError(f'{e}; {self.output_dir} has '
                      f'{checkpoints.describe(self.output_dir)}') from None
    self.checkpoint = checkpoints.model_file(self.output_dir, checkpoint)
    if self.checkpoint is None:
      what = (f'checkpoint at step {checkpoint}'
              if isinstance(checkpoint, int) else f'{checkpoint} checkpoint')
      raise UserError(f'{self.output_dir} has no {what}; it has '
                      f'{checkpoints.describe(self.output_dir)}')
    if not (self.output_dir / CONFIG_FILE).is_file():
      raise UserError(f'{self.output_dir}/{CONFIG_FILE} is missing: '
                      f'{self.output_dir} is not a run directory of train.py')
    self.vocab = vocab_lib.Vocab.load(self.output_dir)
    from lm_trax import corpora  # pylint: disable=g-import-not-at-top
    from lm_trax import data  # pylint: disable=g-import-not-at-top
    from lm_trax import compat  # pylint: disable=g-import-not-at-top
    with compat.gin_isolated():
      config.parse([str(self.output_dir / CONFIG_FILE)])
      self._model_fn = config.bound_model('train.model')
      self._batching_settings = config.settings(data.Batching)
      self._corpus_settings = config.settings(corpora.Corpus)
    self._predictor = None

  def batching(self):
    """The run's Batching."""
    from lm_trax import data  # pylint: disable=g-import-not-at-top
    return data.Batching(**self._batching_settings)

  def corpus(self, data_dir=None):
    """The run's Corpus, read from data_dir if given."""
    from lm_trax import corpora  # pylint: disable=g-import-not-at-top
    settings = dict(self._corpus_settings)
    if data_dir:
      settings['data_dir'] = data_dir
    return corpora.Corpus(**settings)

  def predictor(self):
    """The trained model as an lm_trax.inference.Predictor: what every
    command runs. Built once per Run (weights loaded, jitted functions kept).

    Raises:
      UserError: if the checkpoint's weights do not fit the configured model.
    """
    if self._predictor is None:
      from lm_trax import inference  # pylint: disable=g-import-not-at-top
      self._predictor = inference.Predictor(self._model_fn, self.vocab,
                                            self.model().weights)
    return self._predictor

  def model(self, mode='eval', batch_size=1, seq_len=1, carry_state=True):
    """The trained trax model, weights loaded (NT-ASGD's average once
    averaging started), state fresh for inputs (batch_size, seq_len).

    Raises:
      UserError: if the checkpoint's weights do not fit the configured model.
    """
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from trax import shapes  # pylint: disable=g-import-not-at-top
    from lm_trax import averaging  # pylint: disable=g-import-not-at-top
    model = self._model_fn(vocab_size=self.vocab.size, mode=mode,
                           carry_state=carry_state)
    signature = shapes.ShapeDtype((batch_size, seq_len), np.int32)
    _, init_state = model.init(signature)
    expected = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    try:
      model.init_from_file(str(self.checkpoint), weights_only=True,
                           input_signature=signature)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'cannot load {self.checkpoint} into the model of '
                      f'{self.output_dir}/{CONFIG_FILE} ({type(e).__name__}: '
                      f'{e}); was {CONFIG_FILE} edited?') from e
    loaded = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    if loaded != expected:
      raise UserError(f'the checkpoint {self.checkpoint} does not fit the '
                      f'model in {self.output_dir}/{CONFIG_FILE} (weight '
                      f'shapes {loaded[:3]}... vs {expected[:3]}...); was '
                      f'{CONFIG_FILE} edited?')
    averaged = averaging.load(self.checkpoint.parent, model.weights)
    if averaged is not None:  # NT-ASGD: the averaged weights are the model.
      model.weights = averaged[1]
    model.state = init_state  # Fresh zero state for this batch size.
    return model
