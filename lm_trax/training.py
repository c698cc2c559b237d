"""Model + streams -> trained weights: `train`, the one gin root of a run.

train() builds the vocabulary (or loads it from the run directory), the
training and validation streams, the model in 'train' and 'eval' mode, a
TrainTask (weighted cross entropy, the configured optimizer and schedule) and
an EvalTask (cross entropy, accuracy), and runs trax's training Loop.

A run directory holds everything needed to continue, evaluate or sample
without the corpus:

  checkpoints/step-NNNNNNNN/       trax checkpoint files: weights, carried RNN
                                   state, optimizer slots, step, position in
                                   the training stream (lm_trax.checkpoints)
  checkpoints/latest, best         pointers to the newest checkpoint and to the
                                   one with the best exact validation loss
  config.gin                       the operative gin config
  vocab.json                       the vocabulary
  metrics.jsonl                    one JSON record per log/eval (see
                                   `MetricsLog`), appended across resumes
  train/ eval/                     TensorBoard event files

Rerunning the same command resumes from the checkpoint at the same step and
data position, and trains up to n_steps in total. SIGINT/SIGTERM save a
checkpoint at the current step and raise Interrupted; a NaN or infinite loss
raises Diverged without overwriting the last good checkpoint.

On several devices or processes (lm_trax.parallel) each step trains on the
same global batch as on one device: every process takes its rows of it, trax
splits them over the local devices, and the carried RNN state is split the
same way. Only process 0 prints and writes the run directory.
"""

import contextlib
import json
import pathlib
import random
import shutil
import signal
import time

import gin
import jax
from jax import numpy as jnp
import numpy as np
import trax
from trax import layers as tl
from trax.data import inputs as trax_inputs
from trax.supervised import callbacks as trax_callbacks
from trax.supervised import training as trax_training

from lm_trax import averaging
from lm_trax import checkpoints
from lm_trax import corpora
from lm_trax import data as data_lib
from lm_trax import files
from lm_trax import layers
from lm_trax import losses
from lm_trax import parallel
from lm_trax import schedules
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError, one_line

TRAIN_COUNTER = 'train'  # Name of the training stream's position counter.
BEST_CHECKPOINT = 'model_best'  # Basename of the best-validation checkpoint.
RNG_FILE = 'rng.npy'  # The Loop's random key, saved with each checkpoint.


class Interrupted(UserError):
  """Training was stopped by SIGINT/SIGTERM after saving a checkpoint."""

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum


class Diverged(UserError):
  """The training loss became NaN or infinite."""


class TokenCounter:
  """Counts the (unmasked) target tokens that pass through a stream."""

  def __init__(self):
    self.n_tokens = 0

  def stage(self, generator):
    for batch in generator:
      self.n_tokens += int(np.sum(batch[2] > 0))
      yield batch

  def take(self):
    n, self.n_tokens = self.n_tokens, 0
    return n


class ExactValidation:
  """Exact validation loss over the whole split, as lm_trax.evaluate does it.

  Scores every validation token with the model in eval mode (stream rule, or
  line by line for line-trained runs) using weights handed in by the Loop.
  """

  def __init__(self, model_fn, vocab, batching, valid_text):
    from lm_trax import evaluate  # pylint: disable=g-import-not-at-top
    self._evaluate = evaluate
    self._vocab = vocab
    if batching.kind == 'lines':
      self._lines = data_lib.split_lines(vocab, valid_text)
      self._batch_size = batching.batch_size
      seq_len, carry = evaluate._PAD_MULTIPLE, False  # pylint: disable=protected-access
    else:
      self._lines = None
      self._ids = vocab.encode(valid_text)
      self._batch_size = 1
      seq_len, carry = batching.batch_size * batching.seq_len, True
    self._model = model_fn(vocab_size=vocab.size, mode='eval',
                           carry_state=carry)
    _, self._zero_state = self._model.init(
        layers.signature(self._batch_size, seq_len))
    self._seq_len = seq_len
    # One jitted function for every validation: compiled once per shape.
    self._token_log_probs = evaluate.make_token_log_probs(self._model)

  def __call__(self, weights):
    """Mean negative log-likelihood (nats/token) of the split."""
    self._model.weights, self._model.state = weights, self._zero_state
    eos = self._vocab.eos_id
    if self._lines is None:
      log_probs = self._evaluate.stream_log_probs(
          self._model, self._ids, eos, self._seq_len,
          token_log_probs=self._token_log_probs)
      return float(-log_probs.mean())
    sums, counts = self._evaluate.lines_log_probs(
        self._model, self._lines, eos, self._batch_size,
        token_log_probs=self._token_log_probs)
    return float(-sums.sum() / counts.sum())


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


def _format_duration(seconds):
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


class Loop(trax_training.Loop):
  """trax's Loop, logging perplexity, tokens/s and an ETA at each interval."""

  def __init__(self, *args, n_steps, token_counter, metrics_log,
               exact_validation=None, exact_eval_at=None, layout=None,
               nt_asgd_nonmono=None, **kwargs):
    self._n_total_steps = n_steps
    self._nt_asgd_nonmono = nt_asgd_nonmono
    self._average = averaging.WeightAverage()  # Loaded with a checkpoint.
    self._token_counter = token_counter
    self._metrics_log = metrics_log
    self._exact_validation = exact_validation
    self._exact_eval_at = exact_eval_at
    self._layout = layout or parallel.Layout()
    super().__init__(*args, **kwargs)
    self._distribute_over_devices()
    valid = [r['loss'] for r in metrics_log.read(self._output_dir)
             if r['kind'] == 'valid' and r['step'] <= self.step]
    self.best_valid_loss = min(valid) if valid else float('inf')
    self._valid_losses = valid
    if (nt_asgd_nonmono is not None and
        averaging.trigger_check(valid, nt_asgd_nonmono) is not None):
      self._average.start()  # Replayed: the rule depends on valid only.
    self.last_checkpoint_step = self.step or None  # Set when resumed.

  # Several devices and processes, see lm_trax.parallel.

  def _distribute_over_devices(self):
    """Splits the carried state along the batch over the local devices (trax
    would replicate it), and averages gradients across processes that have
    one device each (trax would not)."""
    layout = self._layout
    if layout.n_processes > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      steps = np.asarray(multihost_utils.process_allgather(
          np.int32(self.step))).ravel().tolist()
      if len(set(steps)) > 1:
        raise UserError(
            f'the processes resumed at different steps ({steps}); put '
            f'--output_dir ({self._output_dir}) on a file system that every '
            'process sees')
    for trainer in self._trainer_per_task:
      if layout.n_processes > 1 and self.n_devices == 1:
        trainer._accelerated_update_fn = parallel.cross_process_update_fn(  # pylint: disable=protected-access
            trainer, layout)
      state = trainer.model_with_loss.state
      if layout.n_processes > 1 and self.step:
        # A checkpoint holds process 0's rows of the state only.
        state = layers.zero_state_tree(state)
      trainer.accelerated_model_with_loss.state = parallel.split_state(
          state, self.n_devices)

  def _gathered_state(self):
    """This process's carried state, all rows, from the training devices."""
    trainer = self._trainer_per_task[self._which_task(self.step)]
    return parallel.gather_state(trainer.accelerated_model_with_loss.state[0],
                                 self.n_devices)

  def _open_summary_writers(self):
    if self.is_chief:
      return super()._open_summary_writers()
    return contextlib.nullcontext(([None] * len(self._tasks),
                                   [None] * len(self._eval_tasks)))

  # Checkpoints: one directory each, see lm_trax.checkpoints.

  def save_checkpoint(self, basename):
    if self._output_dir is None:
      return
    self._check_weights_finite()
    kind = (checkpoints.BEST if basename == BEST_CHECKPOINT
            else checkpoints.LATEST)
    output_dir = self._output_dir
    self._model.state = self._gathered_state()  # trax saves the model's.

    def write_files(directory):
      self._output_dir = str(directory)
      try:
        trax_training.Loop.save_checkpoint(self, 'model')
      finally:
        self._output_dir = output_dir
      # trax does not save its random key: dropout after a resume would
      # differ from an uninterrupted run's.
      np.save(pathlib.Path(directory) / RNG_FILE, np.asarray(self._rng))
      self._average.save(directory, self._unreplicate)
      # Every process has read as many batches as process 0: its data
      # position is the same, under the name trax's load looks for.
      counters = pathlib.Path(directory) / 'data_counters0.pkl'
      for index in range(1, self._layout.n_processes):
        shutil.copyfile(counters, counters.with_name(
            f'data_counters{index}.pkl'))
    if self.is_chief:
      checkpoints.write(output_dir, kind, self.step, write_files)
    self.last_checkpoint_step = self.step

  def load_checkpoint(self, directory=None, filename=None):
    if directory is not None or self._output_dir is None:
      return super().load_checkpoint(directory, filename)
    candidates = checkpoints.candidates(self._output_dir)
    if not candidates:  # A new run, or one saved before checkpoints/ existed.
      return super().load_checkpoint()
    failures = []
    for candidate in candidates:
      try:
        checkpoints.verify(candidate)
        super().load_checkpoint(directory=str(candidate))
        trax_inputs.load_data_counters(str(candidate))
        self._load_rng(candidate)
        self._average.load(candidate, self._model.weights)
      except Exception as e:  # pylint: disable=broad-except
        failures.append(f'{candidate.name}: {type(e).__name__}: {e}')
        continue
      if failures:
        _print(f'warning: could not load {"; ".join(failures)}; resumed from '
               f'{candidate} instead')
      return
    if failures:
      raise UserError(
          f'no loadable checkpoint in {checkpoints.root(self._output_dir)} '
          f'({"; ".join(failures)}); delete the directory to start fresh')

  def _load_rng(self, directory):
    path = pathlib.Path(directory) / RNG_FILE
    if path.exists():  # (Checkpoints of older versions have none.)
      self._rng = jnp.asarray(np.load(path), dtype=self._rng.dtype)

  def _run_one_step(self, task_index, task_changed):
    loss, stats = super()._run_one_step(task_index, task_changed)
    self._last_loss = loss  # A device array: checked at checkpoints only.
    if self._average.started:
      trainer = self._trainer_per_task[task_index]
      self._average.add(trainer.accelerated_model_with_loss.weights[0])
    return loss, stats

  def _validation_weights(self):
    """The weights validation and the best checkpoint use: NT-ASGD's
    average once it holds an iterate, else the trained weights."""
    if self._average.count:
      return self._unreplicate(self._average.mean)
    trainer = self._trainer_per_task[self._which_task(self.step)]
    return self._unreplicate(trainer.accelerated_model_with_loss.weights[0])

  def _check_weights_finite(self):
    last_loss = getattr(self, '_last_loss', None)
    if last_loss is not None and not np.all(np.isfinite(last_loss)):
      self._diverged(f'the training loss ({float(np.mean(last_loss))})')
    leaves = jax.tree_util.tree_leaves(self._model.weights)
    if not all(bool(jnp.all(jnp.isfinite(w))) for w in leaves):
      self._diverged('the weights')

  def _diverged(self, what):
    last = self.last_checkpoint_step
    kept = (f'the last good checkpoint (step {last}) is kept' if last
            else 'no checkpoint was written')
    raise Diverged(f'training diverged: {what} became NaN or infinite by step '
                   f'{self.step}; {kept}; lower the learning rate or clip '
                   'gradients (e.g. SGD.clip_grad_norm)')

  def _log_training_progress(self, task, total_loss, n_steps, elapsed_time,
                             optimizer_metrics, summary_writer):
    n_steps = max(1, n_steps)
    loss = float(total_loss) / n_steps
    if not np.isfinite(loss):
      self._diverged(f'the training loss ({loss})')
    super()._log_training_progress(task, total_loss, n_steps, elapsed_time,
                                   optimizer_metrics, summary_writer)
    tokens_per_sec = self._token_counter.take() / max(elapsed_time, 1e-9)
    eta = (self._n_total_steps - self.step) * elapsed_time / n_steps
    learning_rate = task.learning_rate(self.step)
    penalty = self._take_penalty() / n_steps
    penalty_text = (f' | +AR/TAR {penalty:.4f} = {loss + penalty:.4f}'
                    if penalty else '')
    averaging_text = (f' | averaged over {self._average.count:,} steps'
                      if self._average.started else '')
    _print(f'step {self.step:>7d}/{self._n_total_steps} | train loss '
           f'{loss:.4f} | ppl {_ppl(loss):9.2f}{penalty_text} | lr '
           f'{learning_rate:.4g} | {tokens_per_sec:,.0f} tok/s | ETA '
           f'{_format_duration(eta)}{averaging_text}')
    if self.is_chief:
      extra = {'penalty': penalty, 'total_loss': loss + penalty} if penalty else {}
      self._metrics_log.write(self.step, 'train', loss=loss, ppl=_ppl(loss),
                              lr=learning_rate, tokens_per_sec=tokens_per_sec,
                              **extra)

  def _take_penalty(self):
    """The AR/TAR penalty summed since the last call (then zeroed)."""
    trainer = self._trainer_per_task[self._which_task(self.step)]
    model_with_loss = trainer.accelerated_model_with_loss
    model = self._model  # model_with_loss's state is (model's, loss's).
    total = layers.penalty_sums(model, model_with_loss.state[0])
    if total:
      model_with_loss.state = (layers.zero_penalty_sums(
          model, model_with_loss.state[0]),) + tuple(model_with_loss.state[1:])
    return total

  def run_evals(self, summary_writers=None):
    # Evals draw keys from the Loop's random key too; they run after the
    # step's checkpoint, so a resumed run would draw different dropout masks
    # from then on. Training keys stay independent of evals.
    training_rng = self._rng
    super().run_evals(summary_writers)
    self._rng = training_rng
    metrics = {name: values[-1][1] for name, values in (
        (name, self.history.get('eval', f'metrics/{name}'))
        for name in ('WeightedCategoryCrossEntropy', 'WeightedCategoryAccuracy'))
               if values}
    if 'WeightedCategoryCrossEntropy' in metrics:
      loss = metrics['WeightedCategoryCrossEntropy']
      accuracy = metrics.get('WeightedCategoryAccuracy', float('nan'))
      _print(f'step {self.step:>7d}/{self._n_total_steps} | eval  loss '
             f'{loss:.4f} | ppl {_ppl(loss):9.2f} | accuracy {accuracy:.4f} '
             '(sampled windows)')
      if self.is_chief:
        self._metrics_log.write(self.step, 'eval', loss=loss, ppl=_ppl(loss),
                                accuracy=accuracy)
    if self._exact_validation and self._exact_eval_at(self.step):
      self.run_exact_validation()

  def run_exact_validation(self):
    """Scores the whole validation split; keeps the best checkpoint."""
    if not self.is_chief:  # One device, no collectives: process 0 alone.
      return
    started = time.time()
    loss = self._exact_validation(self._validation_weights())
    is_best = loss < self.best_valid_loss
    _print(f'step {self.step:>7d}/{self._n_total_steps} | valid loss '
           f'{loss:.4f} | ppl {_ppl(loss):9.2f} | exact, whole split, '
           f'{time.time() - started:.1f} s' +
           (' | averaged weights' if self._average.count else '') +
           (' | best so far' if is_best else ''))
    if self.is_chief:
      self._metrics_log.write(self.step, 'valid', loss=loss, ppl=_ppl(loss))
    self._valid_losses.append(loss)
    nonmono = self._nt_asgd_nonmono
    if (nonmono is not None and not self._average.started and
        averaging.trigger_check(self._valid_losses, nonmono) is not None):
      self._average.start()
      _print(f'step {self.step:>7d}/{self._n_total_steps} | NT-ASGD: valid '
             f'is worse than the best before the last {nonmono} checks; '
             'averaging the weights from the next step on')
    if is_best:
      self.best_valid_loss = loss
      if self.is_chief and self._output_dir:
        self.save_checkpoint(BEST_CHECKPOINT)


class StopOnSignal(trax_callbacks.TrainingStepCallback):
  """Saves a checkpoint and raises Interrupted after SIGINT or SIGTERM.

  The signal handler only records the request; the checkpoint is written
  between two steps, so it is consistent.
  """

  def __init__(self, loop):
    super().__init__(loop)
    self.requested = None

  def request(self, signum, unused_frame=None):
    if self.requested is not None:  # A second signal: stop at once.
      raise KeyboardInterrupt
    self.requested = signum

  def call_at(self, step):
    return True

  def on_step_begin(self, step):
    pass

  def on_step_end(self, step):
    if self.requested is None:
      return
    self._loop.save_checkpoint('model')
    name = signal.Signals(self.requested).name
    raise Interrupted(f'stopped by {name} at step {step}; checkpoint saved in '
                      f'{self._loop._output_dir}; rerun the same command to '  # pylint: disable=protected-access
                      'resume', self.requested)


class ResetStateEachPass(trax_callbacks.TrainingStepCallback):
  """Zeros the carried RNN state before the first step of every pass."""

  def __init__(self, loop, steps_per_pass):
    super().__init__(loop)
    self._steps_per_pass = steps_per_pass

  def call_at(self, step):
    return (step - 1) % self._steps_per_pass == 0

  def on_step_begin(self, step):
    model = self._loop._model  # pylint: disable=protected-access
    for trainer in self._loop._trainer_per_task:  # pylint: disable=protected-access
      model_with_loss = trainer.accelerated_model_with_loss
      state = model_with_loss.state
      model_with_loss.state = (layers.zero_carried_state(model, state[0]),) + (
          layers.zero_state_tree(tuple(state[1:])))

  def on_step_end(self, step):
    pass


class _stop_on_signals:  # pylint: disable=invalid-name
  """Routes SIGINT/SIGTERM to the Loop's StopOnSignal while training."""

  def __init__(self, loop):
    self._stopper = next(c for c in loop._callbacks  # pylint: disable=protected-access
                         if isinstance(c, StopOnSignal))
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[signum] = signal.signal(signum, self._stopper.request)
      except ValueError:  # Not the main thread: leave signals alone.
        pass

  def __exit__(self, *unused_exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def _ppl(loss):
  return float(np.exp(min(loss, 50.0)))


def _print(message):
  if parallel.is_chief():
    print(message, flush=True)


def prepare_vocab(output_dir, corpus, train_text, max_size=None, held_out=()):
  """The run's vocabulary: loaded from output_dir, or built and saved there."""
  built = vocab_lib.build(train_text, corpus.level, max_size=max_size,
                          held_out=held_out)
  path = pathlib.Path(output_dir) / vocab_lib.FILENAME
  if path.exists():
    saved = vocab_lib.Vocab.load(output_dir)
    if saved != built:
      raise UserError(
          f'{output_dir} holds a run with a different vocabulary '
          f'({saved.level}, {saved.size} ids; this corpus gives {built.level},'
          f' {built.size}); use another --output_dir or delete it to start '
          'fresh')
    return saved
  if parallel.is_chief():
    built.save(output_dir)
  return built


def check_same_model(output_dir, model, batching, layout=None, optimizer=None):
  """Writes model.json (the model's layers, weight shapes and optimizer) into
  a new run, or refuses to resume a run directory that holds a different model
  or another optimizer's state."""
  model.init(layers.signature(*sample_batch(batching, layout)[0].shape))
  description = {
      'model': str(model).split('\n'),
      'weight_shapes': [list(np.shape(w)) for w in
                        jax.tree_util.tree_leaves(model.weights)],
      'optimizer': getattr(optimizer, '__name__', str(optimizer)),
  }
  path = pathlib.Path(output_dir) / 'model.json'
  if path.exists():
    saved = json.loads(path.read_text(encoding='utf-8'))
    saved.setdefault('optimizer', description['optimizer'])  # Older runs.
    if saved['optimizer'] != description['optimizer']:
      raise UserError(
          f'{output_dir} holds a run trained with {saved["optimizer"]}, whose '
          f'optimizer state does not fit {description["optimizer"]}; use '
          'another --output_dir, or delete it to start fresh')
    if saved != description:
      raise UserError(
          f'{output_dir} holds a run of a different model '
          f'({" ".join(saved["model"])[:80]}...); use another --output_dir, '
          'or delete it to start fresh')
    return
  if parallel.is_chief():
    files.write_text_atomically(path, json.dumps(description, indent=1))


def sample_batch(batching, layout=None):
  """A batch of the training shape, so trax does not consume a real one:
  this process's rows of the first bucket's (or the only) batch shape."""
  layout = layout or parallel.Layout()
  rows = layout.rows_per_process(batching.rows(layout.n_devices)[0])
  length = (batching.seq_len if batching.kind == 'contiguous'
            else batching.boundaries[0])
  shape = (rows, length)
  ids = np.zeros(shape, np.int32)
  return ids, ids, np.ones(shape, np.float32)


def _check_model_settings(model):
  """Builds the model once (no weights: cheap) before any data is read, so a
  bad hyperparameter is a one-line error naming it."""
  try:
    model(vocab_size=2, mode='train')
  except ValueError as e:  # models.check_hyperparameters
    name = getattr(model, '__name__', 'the model')
    raise UserError(f'{name}: {one_line(e)}; fix the gin binding') from None


@gin.configurable(module='lm_trax')
def train(output_dir,
          model=gin.REQUIRED,
          optimizer=trax.optimizers.Adam,
          lr_schedule=schedules.constant_lr,
          n_steps=None,
          n_epochs=None,
          eval_every=500,
          n_eval_batches=20,
          checkpoint_every=None,
          exact_eval_every=None,
          vocab_max_size=None,
          nt_asgd_nonmono=None,
          seed=0):
  """Trains a language model with trax's Loop; resumes from output_dir.

  The corpus and the batching come from the gin-configured `Corpus` and
  `Batching`; the model's vocab_size from the vocabulary.

  Args:
    output_dir: the run directory (created; resumed from if it has a
      checkpoint).
    model: a model function such as LSTMLM, called with vocab_size and mode.
    optimizer: a trax optimizer class, e.g. trax.optimizers.SGD.
    lr_schedule: called as lr_schedule(steps_per_epoch=S) -> (step -> lr).
    n_steps: total training steps (a resumed run continues up to it); takes
      precedence over n_epochs.
    n_epochs: total passes over the training split, if n_steps is not set.
    eval_every: run the sampled-window eval and log every this many steps.
    n_eval_batches: validation batches per eval.
    checkpoint_every: save a checkpoint every this many steps (default:
      eval_every); the last step is always saved.
    exact_eval_every: score the whole validation split every this many steps
      (default: once per epoch, and at the last step; 0 turns it off); the
      best-scoring weights are kept as checkpoints/best.
    vocab_max_size: keep only this many most frequent words (word level).
    nt_asgd_nonmono: NT-ASGD (lm_trax.averaging): once the exact validation
      loss is worse than the best of all checks but the last this many,
      validate, keep as best and evaluate the average of the weights since
      (AWD-LSTM: 5). None trains without averaging.
    seed: seeds initialization, dropout and line shuffling.

  Returns:
    The trax Loop after training.
  """
  for name, value in (('n_steps', n_steps), ('eval_every', eval_every),
                      ('checkpoint_every', checkpoint_every),
                      ('n_eval_batches', n_eval_batches)):
    if value is not None and (isinstance(value, bool) or
                              not isinstance(value, int) or value < 1):
      raise UserError(f'train.{name} must be a whole number >= 1, got '
                      f'{value!r}; fix the gin binding')
  output_dir = pathlib.Path(output_dir).expanduser()
  if output_dir.exists() and not output_dir.is_dir():
    raise UserError(f'the run directory {output_dir} is a file; give '
                    '--output_dir a directory (new, or a run to resume)')
  output_dir.mkdir(parents=True, exist_ok=True)
  _check_model_settings(model)
  # trax seeds each layer's initialization from Python's `random` when the
  # layer is built, before the Loop seeds it: seed everything here.
  random.seed(seed)
  np.random.seed(seed)
  parallel.quiet_unless_chief()
  layout = parallel.Layout.current()
  corpus = corpora.Corpus()
  batching = data_lib.Batching()
  note = batching.check_devices(layout.n_devices)
  train_text = corpus.text('train')
  valid_text = corpus.text('valid')
  vocab = prepare_vocab(output_dir, corpus, train_text, vocab_max_size,
                        held_out=corpus.held_out_texts())

  steps_per_epoch = batching.steps_per_pass(vocab, train_text)
  if nt_asgd_nonmono is not None and (
      isinstance(nt_asgd_nonmono, bool) or not isinstance(nt_asgd_nonmono, int)
      or nt_asgd_nonmono < 0):
    raise UserError('train.nt_asgd_nonmono must be a whole number >= 0 or '
                    f'None, got {nt_asgd_nonmono!r}; fix the gin binding')
  if nt_asgd_nonmono is not None and exact_eval_every == 0:
    raise UserError('NT-ASGD (train.nt_asgd_nonmono) decides on exact '
                    'validation; set train.exact_eval_every > 0 or None')
  if n_steps is None:
    if n_epochs is None:
      raise UserError('set train.n_steps or train.n_epochs in the gin config')
    n_steps = int(round(n_epochs * steps_per_epoch))
  checkpoint_every = checkpoint_every or eval_every
  if exact_eval_every is None:
    exact_eval_every = steps_per_epoch
  _print(f'{corpus}: {len(vocab.split(train_text)):,} train tokens, vocabulary'
         f' of {vocab.size:,} ids; {steps_per_epoch:,} steps per epoch; '
         f'training to step {n_steps:,}; run directory {output_dir}')
  if layout.n_devices > 1:
    _print(f'data-parallel over {layout.describe()}: each step trains on one '
           f'global batch of {batching.rows(layout.n_devices)} rows, split '
           'by rows')
  if note:
    _print(note)

  trax_inputs.data_counters.clear()  # Loop loads this run's counters, if any.
  token_counter = TokenCounter()
  # Every process reads the same global batches (and counts their tokens),
  # then keeps its own rows; evaluation sees whole batches everywhere.
  train_stream = trax.data.Serial(
      lambda _: batching.stream(vocab, train_text,
                                n_devices=layout.n_devices),
      trax.data.CountAndSkip(TRAIN_COUNTER),
      token_counter.stage,
      parallel.TakeRows(layout),
  )()
  eval_stream = batching.stream(vocab, valid_text, n_devices=layout.n_devices)

  train_task = trax_training.TrainTask(
      labeled_data=train_stream,
      loss_layer=losses.WeightedCrossEntropy(),  # Fused; see lm_trax.losses.
      optimizer=optimizer(),
      lr_schedule=lr_schedule(steps_per_epoch=steps_per_epoch),
      n_steps_per_checkpoint=checkpoint_every,
      sample_batch=sample_batch(batching, layout))
  eval_task = trax_training.EvalTask(
      labeled_data=eval_stream,
      metrics=[tl.WeightedCategoryCrossEntropy(), tl.WeightedCategoryAccuracy()],
      n_eval_batches=n_eval_batches,
      sample_batch=sample_batch(batching, parallel.Layout(layout.n_devices)))

  train_model = model(vocab_size=vocab.size, mode='train')
  check_same_model(output_dir, train_model, batching, layout, optimizer)
  _print(f'model: {layers.count_parameters(train_model):,} parameters')
  at_interval_or_end = lambda every: (
      lambda step: (every and step % every == 0) or step == n_steps)
  exact_eval_at = at_interval_or_end(exact_eval_every)
  loop = Loop(
      train_model,
      train_task,
      eval_model=model(vocab_size=vocab.size, mode='eval', carry_state=False),
      eval_tasks=[eval_task],
      output_dir=str(output_dir),
      checkpoint_at=at_interval_or_end(checkpoint_every),
      eval_at=lambda step: (at_interval_or_end(eval_every)(step) or
                            (exact_eval_every and exact_eval_at(step))),
      random_seed=seed,
      callbacks=[lambda loop: ResetStateEachPass(loop, steps_per_epoch),
                 StopOnSignal],
      n_steps=n_steps,
      token_counter=token_counter,
      metrics_log=MetricsLog(output_dir),
      exact_validation=(ExactValidation(model, vocab, batching, valid_text)
                        if exact_eval_every else None),
      exact_eval_at=exact_eval_at,
      layout=layout,
      nt_asgd_nonmono=nt_asgd_nonmono)
  if parallel.is_chief():
    files.write_text_atomically(output_dir / 'config.gin',
                                gin.operative_config_str())

  if loop.step >= n_steps:
    _print(f'{output_dir} is already at step {loop.step} >= n_steps '
           f'{n_steps}; raise train.n_steps to train further')
    return loop
  if loop.step:
    _print(f'resuming at step {loop.step} from {output_dir}')
  started = time.time()
  with _stop_on_signals(loop):
    loop.run(n_steps - loop.step)
  _print(f'trained to step {loop.step} in '
         f'{_format_duration(time.time() - started)}; checkpoint in '
         f'{output_dir}')
  return loop
