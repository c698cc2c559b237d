"""trax's training Loop adapted to lm_trax.

`Loop` is trax.supervised.training.Loop with: a training line (loss,
perplexity, learning rate, tokens/s, ETA) at its own interval, written to the
console, metrics.jsonl (lm_trax.run_dir.MetricsLog) and TensorBoard
(`TensorBoard`); exact validation over the whole split
(lm_trax.evaluation.ExactValidation) deciding the best checkpoint; NT-ASGD's
weight average (lm_trax.averaging); the carried RNN state split over devices
(lm_trax.parallel); a NaN or infinite loss stopping training (Diverged)
before the last good checkpoint is overwritten; the random key saved with
each checkpoint, so a resumed run is exact. `ResetStateEachPass` zeros the
carried state at each pass over the data.

What it reads or sets of trax's private state goes through
lm_trax.trax_internals; the private hooks it overrides are listed there
(LOOP_SEAMS) and checked by tests/test_trax_internals.py.
"""

import contextlib
import pathlib
import shutil
import time

import gin
import jax
from jax.experimental import multihost_utils
from jax import numpy as jnp
import numpy as np
from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
from trax import jaxboard
from trax.data import inputs as trax_inputs
from trax.supervised import callbacks as trax_callbacks
from trax.supervised import training as trax_training

from lm_trax import averaging
from lm_trax import checkpoints
from lm_trax import layers
from lm_trax import parallel
from lm_trax import run_dir
from lm_trax import trax_internals
from lm_trax.errors import UserError

TRAIN_COUNTER = 'train'  # Name of the training stream's position counter.
BEST_CHECKPOINT = 'model_best'  # Basename of the best-validation checkpoint.
RNG_FILE = 'rng.npy'  # The Loop's random key, saved with each checkpoint.


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


class Progress:
  """What the training line reports about the steps since the last line."""

  def __init__(self):
    self.start(step=0)

  def start(self, step):
    """Starts the clock when Loop.run starts at `step`."""
    self._losses = []  # Per-step device arrays: averaged at the line only.
    self._paused = 0  # Depth of nested pauses (a best checkpoint in an eval).
    self._paused_seconds = 0.0
    self._line_started = self._session_started = time.time()
    self._session_first_step = step

  def add(self, loss):
    self._losses.append(loss)

  @contextlib.contextmanager
  def paused(self):
    """Evaluations and checkpoints inside this are not training time. The
    steps already dispatched finish first, so their time counts as
    training."""
    if not self._paused:
      jax.block_until_ready(self._losses[-1:])
      started = time.time()
    self._paused += 1
    try:
      yield
    finally:
      self._paused -= 1
      if not self._paused:
        self._paused_seconds += time.time() - started

  def take(self, step, last_step):
    """(mean loss, steps, training seconds, ETA seconds) since the last call;
    the ETA is at the whole session's pace, evaluations included."""
    n_steps = len(self._losses)
    loss = float(np.mean([np.mean(l) for l in self._losses]))
    now = time.time()  # After the mean: the steps have finished.
    seconds = max(now - self._line_started - self._paused_seconds, 1e-9)
    per_step = (now - self._session_started) / max(
        1, step - self._session_first_step)
    self._losses, self._paused_seconds, self._line_started = [], 0.0, now
    return loss, n_steps, seconds, (last_step - step) * per_step


class TensorBoard:
  """The numbers of the console lines as TensorBoard scalars, under
  `lm_trax/`, in the event files of three runs: train/ (loss, perplexity,
  learning_rate, tokens_per_sec, ar_tar_penalty at each training line) and
  eval/ (loss, perplexity of the sampled windows), through the writers trax
  opens there for its own `metrics/` and `training/` scalars, and valid/
  (loss, perplexity and bpc of each exact validation, by lm_trax.evaluation's
  rule at every level).

  TensorBoard draws a tag of several runs as one chart with a curve per run:
  lm_trax/perplexity shows train, eval and valid together. The exact
  validation is a run of its own so that its curve is never mixed with the
  sampled windows' (trax's eval)."""

  VALID_DIR = 'valid'
  PREFIX = 'lm_trax/'

  def __init__(self):
    self.train = self.eval = self.valid = None

  @contextlib.contextmanager
  def opened(self, output_dir, train_writers, eval_writers):
    """Keeps trax's writers (one task each) and opens valid/'s while a
    Loop.run lasts."""
    self.train, self.eval = train_writers[0], eval_writers[0]
    self.valid = jaxboard.SummaryWriter(
        str(pathlib.Path(output_dir) / self.VALID_DIR))
    try:
      yield
    finally:
      self.valid.close()
      self.train = self.eval = self.valid = None

  def write(self, writer, step, **values):
    if writer is None:  # Not process 0, or outside Loop.run.
      return
    for name, value in values.items():
      writer.scalar(self.PREFIX + name, value, step)
    writer.flush()


def format_duration(seconds):
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


class Loop(trax_training.Loop):
  """trax's Loop, logging perplexity, tokens/s and an ETA at each interval."""

  def __init__(self, *args, n_steps, token_counter, metrics_log,
               exact_validation=None, exact_eval_at=None, layout=None,
               nt_asgd_nonmono=None, average_from_step=None, corpus=None,
               batching=None, log_at=None, **kwargs):
    """log_at(step) -> whether to print the training line after that step;
    default: at each eval (the Loop's eval_at). average_from_step: average
    the iterates of the steps after it (train.average_from_epoch)."""
    self._n_total_steps = n_steps
    self._log_at = log_at
    self._progress = Progress()
    self._tensorboard = TensorBoard()
    self._data_settings = (corpus, batching)
    self._nt_asgd_nonmono = nt_asgd_nonmono
    self._average_from_step = average_from_step
    self._average = averaging.WeightAverage()  # Loaded with a checkpoint.
    self._best_is_averaged = False
    self._token_counter = token_counter
    self._metrics_log = metrics_log
    self._exact_validation = exact_validation
    self._exact_eval_at = exact_eval_at
    self._layout = layout or parallel.Layout()
    with parallel.quiet_unless_chief():  # trax's Loop prints as it loads.
      super().__init__(*args, **kwargs)
    self._log_at = self._log_at or self._eval_at
    self._distribute_over_devices()
    records = [r for r in metrics_log.read(self.output_dir)
               if r['kind'] == 'valid' and r['step'] <= self.step]
    valid = [r['loss'] for r in records]
    self.best_valid_loss = min(
        [min(r['loss'], r.get('raw_loss', r['loss'])) for r in records],
        default=float('inf'))
    self._valid_losses = valid
    if (nt_asgd_nonmono is not None and
        averaging.trigger_check(valid, nt_asgd_nonmono) is not None):
      self._average.start()  # Replayed: the rule depends on valid only.
    if self._average_due():
      self._average.start()
    self.last_checkpoint_step = self.step or None  # Set when resumed.

  def _save_gin(self, summary_writer):
    """trax writes gin's operative config to config.gin at every checkpoint;
    the run's config.gin also records the corpus and batching train() used
    (lm_trax.run_dir.write_config), which may not have come from gin."""
    super()._save_gin(summary_writer)
    corpus, batching = self._data_settings
    if self.is_chief and self.output_dir is not None and corpus is not None:
      run_dir.write_config(self.output_dir, gin.operative_config_str(),
                           corpus, batching)

  # Several devices and processes, see lm_trax.parallel.

  def _distribute_over_devices(self):
    """Splits the carried state along the batch over the local devices (trax
    would replicate it), and averages gradients across processes that have
    one device each (trax would not)."""
    layout = self._layout
    if layout.n_processes > 1:
      steps = np.asarray(multihost_utils.process_allgather(
          np.int32(self.step))).ravel().tolist()
      if len(set(steps)) > 1:
        raise UserError(
            f'the processes resumed at different steps ({steps}); put '
            f'--output_dir ({self.output_dir}) on a file system that every '
            'process sees')
    for trainer in trax_internals.trainers(self):
      if layout.n_processes > 1 and self.n_devices == 1:
        trax_internals.set_update_fn(
            trainer, parallel.cross_process_update_fn(trainer, layout))
      state = trainer.model_with_loss.state
      if layout.n_processes > 1 and self.step:
        # A checkpoint holds process 0's rows of the state only.
        state = layers.zero_state_tree(state)
      trainer.accelerated_model_with_loss.state = parallel.split_state(
          state, self.n_devices)

  def _gathered_state(self):
    """This process's carried state, all rows, from the training devices."""
    trainer = trax_internals.trainers(self)[self._which_task(self.step)]
    return parallel.gather_state(trainer.accelerated_model_with_loss.state[0],
                                 self.n_devices)

  @contextlib.contextmanager
  def _open_summary_writers(self):
    if not self.is_chief or self.output_dir is None:
      yield ([None] * len(self.tasks), [None] * len(self.eval_tasks))
      return
    with super()._open_summary_writers() as writers:
      with self._tensorboard.opened(self.output_dir, *writers):
        yield writers

  def run(self, n_steps=1):
    self._progress.start(self.step)
    with parallel.quiet_unless_chief():
      super().run(n_steps)

  # Checkpoints: one directory each, see lm_trax.checkpoints.

  def save_checkpoint(self, basename):
    if self.output_dir is None:
      return
    with self._progress.paused():
      self._save_checkpoint(basename)

  def _save_checkpoint(self, basename):
    self._check_weights_finite()
    kind = (checkpoints.BEST if basename == BEST_CHECKPOINT
            else checkpoints.LATEST)
    self.model.state = self._gathered_state()  # trax saves the model's.

    def write_files(directory):
      with trax_internals.output_dir_set_to(self, directory):
        trax_training.Loop.save_checkpoint(self, 'model')
      # trax does not save its random key: dropout after a resume would
      # differ from an uninterrupted run's.
      np.save(pathlib.Path(directory) / RNG_FILE,
              np.asarray(trax_internals.rng(self)))
      if kind == checkpoints.LATEST or self._best_is_averaged:
        self._average.save(directory, self._unreplicate)
      # Every process has read as many batches as process 0: its data
      # position is the same, under the name trax's load looks for.
      counters = pathlib.Path(directory) / 'data_counters0.pkl'
      for index in range(1, self._layout.n_processes):
        shutil.copyfile(counters, counters.with_name(
            f'data_counters{index}.pkl'))
    if self.is_chief:
      checkpoints.write(self.output_dir, kind, self.step, write_files)
    self.last_checkpoint_step = self.step

  def load_checkpoint(self, directory=None, filename=None):
    if directory is not None or self.output_dir is None:
      return super().load_checkpoint(directory, filename)
    candidates = checkpoints.candidates(self.output_dir)
    if not candidates:  # A new run, or one saved before checkpoints/ existed.
      return super().load_checkpoint()
    failures = []
    for candidate in candidates:
      try:
        checkpoints.verify(candidate)
        super().load_checkpoint(directory=str(candidate))
        trax_inputs.load_data_counters(str(candidate))
        self._load_rng(candidate)
        self._average.load(candidate, self.model.weights)
      except Exception as e:  # pylint: disable=broad-except
        failures.append(f'{candidate.name}: {type(e).__name__}: {e}')
        continue
      if failures:
        log(f'warning: could not load {"; ".join(failures)}; resumed from '
            f'{candidate} instead')
      return
    if failures:
      raise UserError(
          f'no loadable checkpoint in {checkpoints.root(self.output_dir)} '
          f'({"; ".join(failures)}); delete the directory to start fresh')

  def _load_rng(self, directory):
    path = pathlib.Path(directory) / RNG_FILE
    if path.exists():  # (Checkpoints of older versions have none.)
      trax_internals.set_rng(self, jnp.asarray(
          np.load(path), dtype=trax_internals.rng(self).dtype))

  def _run_one_step(self, task_index, task_changed):
    loss, stats = super()._run_one_step(task_index, task_changed)
    self._last_loss = loss  # A device array: checked at checkpoints only.
    self._progress.add(loss)
    if not self._average.started and self._average_due():
      self._average.start()
      log(f'step {self.step:>7d}/{self._n_total_steps} | averaging the '
          f'weights of steps {self.step} to {self._n_total_steps} '
          '(train.average_from_epoch)')
    if self._average.started:
      trainer = trax_internals.trainers(self)[task_index]
      self._average.add(trainer.accelerated_model_with_loss.weights[0])
    if self._log_at(self.step):
      self._log_training_line(self.tasks[task_index])
    return loss, stats

  def _average_due(self):
    """Whether the tail average (train.average_from_epoch) has begun: the
    iterates after step average_from_step are averaged."""
    return (self._average_from_step is not None and
            self.step > self._average_from_step)

  def _validation_weights(self):
    """The weights validation and the latest checkpoint use: the average
    once it holds an iterate, else the trained weights."""
    if self._average.count:
      return self._unreplicate(self._average.mean)
    return self._trained_weights()

  def _trained_weights(self):
    """The optimizer's own iterate, never averaged."""
    trainer = trax_internals.trainers(self)[self._which_task(self.step)]
    return self._unreplicate(trainer.accelerated_model_with_loss.weights[0])

  def _check_weights_finite(self):
    last_loss = getattr(self, '_last_loss', None)
    if last_loss is not None and not np.all(np.isfinite(last_loss)):
      self._diverged(f'the training loss ({float(np.mean(last_loss))})')
    leaves = jax.tree_util.tree_leaves(self.model.weights)
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
    """trax's own summary at each eval (its `Step N:` lines and its
    scalars); lm_trax's line is `_log_training_line`, at log_at."""
    loss = float(total_loss) / max(1, n_steps)
    if not np.isfinite(loss):
      self._diverged(f'the training loss ({loss})')
    with self._progress.paused():
      super()._log_training_progress(task, total_loss, n_steps, elapsed_time,
                                     optimizer_metrics, summary_writer)

  def _log_training_line(self, task):
    """The training line: mean loss since the last line, perplexity,
    learning rate, tokens/s over training time, ETA; to the console,
    metrics.jsonl and TensorBoard."""
    loss, n_steps, seconds, eta = self._progress.take(self.step,
                                                      self._n_total_steps)
    if not np.isfinite(loss):
      self._diverged(f'the training loss ({loss})')
    tokens_per_sec = self._token_counter.take() / seconds
    learning_rate = task.learning_rate(self.step)
    penalty = self._take_penalty() / n_steps
    penalty_text = (f' | +AR/TAR {penalty:.4f} = {loss + penalty:.4f}'
                    if penalty else '')
    averaging_text = (f' | averaged over {self._average.count:,} steps'
                      if self._average.started else '')
    log(f'step {self.step:>7d}/{self._n_total_steps} | train loss '
        f'{loss:.4f} | ppl {_ppl(loss):9.2f}{penalty_text} | lr '
        f'{learning_rate:.4g} | {tokens_per_sec:,.0f} tok/s | ETA '
        f'{format_duration(eta)}{averaging_text}')
    if self.is_chief:
      extra = {'penalty': penalty, 'total_loss': loss + penalty} if penalty else {}
      self._metrics_log.write(self.step, 'train', loss=loss, ppl=_ppl(loss),
                              lr=learning_rate, tokens_per_sec=tokens_per_sec,
                              **extra)
      self._tensorboard.write(
          self._tensorboard.train, self.step, loss=loss, perplexity=_ppl(loss),
          learning_rate=learning_rate, tokens_per_sec=tokens_per_sec,
          **({'ar_tar_penalty': penalty} if penalty else {}))

  def _take_penalty(self):
    """The AR/TAR penalty summed since the last call (then zeroed)."""
    trainer = trax_internals.trainers(self)[self._which_task(self.step)]
    model_with_loss = trainer.accelerated_model_with_loss
    model = self.model  # model_with_loss's state is (model's, loss's).
    total = layers.penalty_sums(model, model_with_loss.state[0])
    if total:
      model_with_loss.state = (layers.zero_penalty_sums(
          model, model_with_loss.state[0]),) + tuple(model_with_loss.state[1:])
    return total

  def run_evals(self, summary_writers=None):
    with self._progress.paused():
      self._run_evals(summary_writers)

  def _run_evals(self, summary_writers):
    # Evals draw keys from the Loop's random key too; they run after the
    # step's checkpoint, so a resumed run would draw different dropout masks
    # from then on. Training keys stay independent of evals.
    training_rng = trax_internals.rng(self)
    super().run_evals(summary_writers)
    trax_internals.set_rng(self, training_rng)
    metrics = {name: values[-1][1] for name, values in (
        (name, self.history.get('eval', f'metrics/{name}'))
        for name in ('WeightedCategoryCrossEntropy', 'WeightedCategoryAccuracy'))
               if values}
    if 'WeightedCategoryCrossEntropy' in metrics:
      loss = metrics['WeightedCategoryCrossEntropy']
      accuracy = metrics.get('WeightedCategoryAccuracy', float('nan'))
      log(f'step {self.step:>7d}/{self._n_total_steps} | eval  loss '
          f'{loss:.4f} | ppl {_ppl(loss):9.2f} | accuracy {accuracy:.4f} '
          '(sampled windows)')
      if self.is_chief:
        self._metrics_log.write(self.step, 'eval', loss=loss, ppl=_ppl(loss),
                                accuracy=accuracy)
        self._tensorboard.write(self._tensorboard.eval, self.step, loss=loss,
                                perplexity=_ppl(loss))
    if self._exact_validation and self._exact_eval_at(self.step):
      self.run_exact_validation()

  def run_exact_validation(self):
    """Scores the whole validation split; keeps the best checkpoint.

    Once weights are averaged, the raw iterate is scored too, and the best
    checkpoint keeps whichever of the two validates better: the record's
    `loss` is the average's (the latest checkpoint's weights), `raw_loss`
    the iterate's."""
    if not self.is_chief:  # One device, no collectives: process 0 alone.
      return
    started = time.time()
    result = self._exact_validation(self._validation_weights())
    loss = result.loss
    raw = (self._exact_validation(self._trained_weights())
           if self._average.count else None)
    chosen = raw if raw is not None and raw.loss < loss else result
    is_best = chosen.loss < self.best_valid_loss
    if raw is None:
      weights_text = ''
    elif chosen is raw:
      weights_text = f' | raw weights (averaged: {loss:.4f})'
    else:
      weights_text = f' | averaged weights (raw: {raw.loss:.4f})'
    log(f'step {self.step:>7d}/{self._n_total_steps} | valid loss '
        f'{chosen.loss:.4f} | ppl {_ppl(chosen.loss):9.2f} | bpc '
        f'{chosen.bpc:.4f} | exact, whole split, '
        f'{time.time() - started:.1f} s{weights_text}' +
        (' | best so far' if is_best else ''))
    extra = {} if raw is None else {'raw_loss': raw.loss}
    self._metrics_log.write(self.step, 'valid', loss=loss, ppl=_ppl(loss),
                            bpc=result.bpc, **extra)
    self._tensorboard.write(self._tensorboard.valid, self.step, loss=loss,
                            perplexity=_ppl(loss), bpc=result.bpc)
    self._valid_losses.append(loss)
    nonmono = self._nt_asgd_nonmono
    if (nonmono is not None and not self._average.started and
        averaging.trigger_check(self._valid_losses, nonmono) is not None):
      self._average.start()
      log(f'step {self.step:>7d}/{self._n_total_steps} | NT-ASGD: valid '
          f'is worse than the best before the last {nonmono} checks; '
          'averaging the weights from the next step on')
    if is_best:
      self.best_valid_loss = chosen.loss
      self._best_is_averaged = raw is not None and chosen is result
      if self.is_chief and self.output_dir:
        self.save_checkpoint(BEST_CHECKPOINT)


class ResetStateEachPass(trax_callbacks.TrainingStepCallback):
  """Zeros the carried RNN state before the first step of every pass."""

  def __init__(self, loop, steps_per_pass):
    super().__init__(loop)
    self._steps_per_pass = steps_per_pass

  def call_at(self, step):
    return (step - 1) % self._steps_per_pass == 0

  def on_step_begin(self, step):
    model = self._loop.model
    for trainer in trax_internals.trainers(self._loop):
      model_with_loss = trainer.accelerated_model_with_loss
      state = model_with_loss.state
      model_with_loss.state = (layers.zero_carried_state(model, state[0]),) + (
          layers.zero_state_tree(tuple(state[1:])))

  def on_step_end(self, step):
    pass


def _ppl(loss):
  return float(np.exp(min(loss, 50.0)))


def log(message):
  """Prints a line of progress, on process 0 only."""
  if parallel.is_chief():
    print(message, flush=True)
