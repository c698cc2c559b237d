"""Model + streams -> trained weights: `train`, the one gin root of a run.

train() builds the vocabulary (or loads it from the run directory), the
training and validation streams, the model in 'train' and 'eval' mode, a
TrainTask (weighted cross entropy, the configured optimizer and schedule) and
an EvalTask (cross entropy, accuracy), and runs trax's training Loop.

Its run directory (the files: lm_trax.run_dir) holds everything needed to
continue, evaluate or sample without the corpus.

Rerunning the same command resumes from the checkpoint at the same step and
data position, and trains up to n_steps in total. SIGINT/SIGTERM save a
checkpoint at the current step and raise signals.Interrupted; a NaN or
infinite loss raises loop.Diverged without overwriting the last good
checkpoint. The Loop itself is lm_trax.loop.

On several devices or processes (lm_trax.parallel) each step trains on the
same global batch as on one device: every process takes its rows of it, trax
splits them over the local devices, and the carried RNN state is split the
same way. Only process 0 prints and writes the run directory.
"""

import pathlib
import random
import time

import gin
import jax
import numpy as np
from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
import trax
from trax import layers as tl
from trax.data import inputs as trax_inputs
from trax.supervised import training as trax_training

from lm_trax import corpora
from lm_trax import data as data_lib
from lm_trax import evaluation
from lm_trax import layers
from lm_trax import loop as loop_lib
from lm_trax import losses
from lm_trax import parallel
from lm_trax import precision as precision_lib
from lm_trax import run_dir
from lm_trax import schedules
from lm_trax import signals
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError, one_line

def prepare_vocab(output_dir, corpus, train_text, max_size=None, held_out=()):
  """The run's vocabulary: loaded from output_dir, or built from the train
  split and saved there. A saved one must be what this corpus builds."""
  path = pathlib.Path(output_dir) / vocab_lib.FILENAME
  saved = vocab_lib.Vocab.load(output_dir) if path.exists() else None
  if saved is not None and saved.built_from(train_text, corpus.vocab_size):
    return saved  # A subword vocabulary: building it again takes seconds.
  built = vocab_lib.build(train_text, corpus.level, max_size=max_size,
                          held_out=held_out, target_size=corpus.vocab_size)
  if saved is not None:
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
  saved = run_dir.read_model_description(output_dir)
  if saved is not None:
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
    run_dir.write_model_description(output_dir, description)


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


def _average_from_step(average_from_epoch, steps_per_epoch, n_steps):
  """train.average_from_epoch in steps (None stays None), checked."""
  if average_from_epoch is None:
    return None
  if (isinstance(average_from_epoch, bool) or
      not isinstance(average_from_epoch, (int, float)) or
      not 0 <= average_from_epoch):
    raise UserError('train.average_from_epoch must be a number of epochs >= 0 '
                    f'or None, got {average_from_epoch!r}; fix the gin binding')
  step = int(round(average_from_epoch * steps_per_epoch))
  if step >= n_steps:
    raise UserError(f'train.average_from_epoch = {average_from_epoch} starts '
                    f'at step {step:,}, not before the last step {n_steps:,}; '
                    'make it smaller than the run\'s epochs')
  return step


def _check_model_settings(model):
  """Builds the model once (no weights: cheap) before any data is read, so a
  bad hyperparameter is a one-line error naming it."""
  try:
    model(vocab_size=2, mode='train')
  except ValueError as e:  # models.check_hyperparameters
    name = getattr(model, '__name__', 'the model')
    raise UserError(f'{name}: {one_line(e)}; fix the gin binding') from None


def _model_in_precision(model, precision):
  """The model function with its precision bound (lm_trax.precision.bind)."""
  try:
    precision_lib.check(precision)
  except ValueError as e:
    raise UserError(f'train.{one_line(e)}; fix the gin binding') from None
  try:
    return precision_lib.bind(model, precision)
  except ValueError as e:
    raise UserError(one_line(e)) from None


def _note_precision_change(output_dir, precision):
  """Logs a resume in another precision than the last start's: allowed
  (e.g. fine-tuning in bfloat16), but not bit-exact with an uninterrupted run."""
  starts = run_dir.read_starts(output_dir)
  before = starts[-1].get('precision', 'float32') if starts else precision
  if before != precision:
    loop_lib.log(f'note: the run trained in {before} so far and goes on in '
                 f'{precision} (train.precision); run.json records both')


@gin.configurable(module='lm_trax')
def train(output_dir,
          corpus=None,
          batching=None,
          model=gin.REQUIRED,
          optimizer=trax.optimizers.Adam,
          lr_schedule=schedules.constant_lr,
          n_steps=None,
          n_epochs=None,
          eval_every=500,
          log_every=None,
          n_eval_batches=20,
          checkpoint_every=None,
          exact_eval_every=None,
          vocab_max_size=None,
          nt_asgd_nonmono=None,
          average_from_epoch=None,
          precision='float32',
          seed=0):
  """Trains a language model with trax's Loop; resumes from output_dir.

  The model's vocab_size comes from the vocabulary.

  Args:
    output_dir: the run directory (created; resumed from if it has a
      checkpoint).
    corpus: an lm_trax.corpora.Corpus; default: `Corpus()` as gin configures
      it.
    batching: an lm_trax.data.Batching; default: `Batching()` as gin
      configures it.
    model: a model function such as RecurrentLM, called with vocab_size and
      mode.
    optimizer: a trax optimizer class, e.g. trax.optimizers.SGD.
    lr_schedule: called as lr_schedule(steps_per_epoch=S) -> (step -> lr).
    n_steps: total training steps (a resumed run continues up to it); takes
      precedence over n_epochs.
    n_epochs: total passes over the training split, if n_steps is not set.
    eval_every: run the sampled-window eval every this many steps.
    log_every: print the training line (mean loss since the last line,
      perplexity, learning rate, tokens/s, ETA) every this many steps and at
      the last; default: with each eval (eval_every and exact validations).
    n_eval_batches: validation batches per eval.
    checkpoint_every: save a checkpoint every this many steps (default:
      eval_every); the last step is always saved.
    exact_eval_every: score the whole validation split every this many steps
      (default: once per epoch, and at the last step; 0 turns it off); the
      best-scoring weights are kept as checkpoints/best.
    vocab_max_size: keep only this many most frequent words (word level;
      subword vocabularies are sized by Corpus.vocab_size).
    nt_asgd_nonmono: NT-ASGD (lm_trax.averaging): once the exact validation
      loss is worse than the best of all checks but the last this many,
      validate and evaluate the average of the weights since (AWD-LSTM: 5). None trains without averaging. The learning rate
      follows lr_schedule throughout: constant_lr keeps AWD-LSTM's one
      rate; epoch_decay goes on decaying after the trigger.
    average_from_epoch: average the weights of every step after this many
      epochs (a number, e.g. 20 or 19.5): the tail of the run, as AWD-LSTM's
      fine-tuning averages from a trained model. Whichever averaging starts
      first is used. While averaging, each exact validation scores the
      average and the raw weights, and checkpoints/best keeps the better.
    precision: the number format of the model's matmuls, 'float32' or
      'bfloat16' (lm_trax.precision; weights, gradients, optimizer state,
      recurrent state and loss stay float32). Recorded in config.gin and
      run.json; evaluation runs in it unless told otherwise.
    seed: seeds initialization, dropout and line shuffling.

  Returns:
    The trax Loop after training.
  """
  for name, value in (('n_steps', n_steps), ('eval_every', eval_every),
                      ('log_every', log_every),
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
  model = _model_in_precision(model, precision)
  # trax seeds each layer's initialization from Python's `random` when the
  # layer is built, before the Loop seeds it: seed everything here.
  random.seed(seed)
  np.random.seed(seed)
  layout = parallel.Layout.current()
  corpus = corpus or corpora.Corpus()
  batching = batching or data_lib.Batching()
  note = batching.check_devices(layout.n_devices)
  train_text = corpus.text('train')
  valid_text = corpus.text('valid')
  vocab = prepare_vocab(output_dir, corpus, train_text, vocab_max_size,
                        held_out=corpus.held_out_texts())

  train_split = data_lib.TrainingSplit(batching, vocab, train_text)
  steps_per_epoch = train_split.steps_per_pass
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
  average_from_step = _average_from_step(average_from_epoch, steps_per_epoch,
                                         n_steps)
  checkpoint_every = checkpoint_every or eval_every
  if exact_eval_every is None:
    exact_eval_every = steps_per_epoch
  loop_lib.log(f'{corpus}: {train_split.n_tokens:,} train tokens, '
               f'vocabulary of {vocab.size:,} ids; {steps_per_epoch:,} steps '
               f'per epoch; training to step {n_steps:,}; run directory '
               f'{output_dir}')
  if layout.n_devices > 1:
    loop_lib.log(f'data-parallel over {layout.describe()}: each step trains '
                 f'on one global batch of {batching.rows(layout.n_devices)} '
                 'rows, split by rows')
  if note:
    loop_lib.log(note)

  trax_inputs.data_counters.clear()  # Loop loads this run's counters, if any.
  token_counter = loop_lib.TokenCounter()
  # Every process reads the same global batches (and counts their tokens),
  # then keeps its own rows; evaluation sees whole batches everywhere.
  train_stream = trax.data.Serial(
      lambda _: train_split.stream(n_devices=layout.n_devices),
      trax.data.CountAndSkip(loop_lib.TRAIN_COUNTER),
      token_counter.stage,
      parallel.TakeRows(layout),
  )()
  eval_stream = batching.stream(vocab, valid_text, n_devices=layout.n_devices)
  schedule = train_split.schedule(lr_schedule(steps_per_epoch=steps_per_epoch))

  train_task = trax_training.TrainTask(
      labeled_data=train_stream,
      loss_layer=losses.WeightedCrossEntropy(),  # Fused; see lm_trax.losses.
      optimizer=optimizer(),
      lr_schedule=schedule,
      n_steps_per_checkpoint=checkpoint_every,
      sample_batch=sample_batch(batching, layout))
  eval_task = trax_training.EvalTask(
      labeled_data=eval_stream,
      metrics=[tl.WeightedCategoryCrossEntropy(), tl.WeightedCategoryAccuracy()],
      n_eval_batches=n_eval_batches,
      sample_batch=sample_batch(batching, parallel.Layout(layout.n_devices)))

  train_model = model(vocab_size=vocab.size, mode='train')
  check_same_model(output_dir, train_model, batching, layout, optimizer)
  loop_lib.log(f'model: {layers.count_parameters(train_model):,} parameters')
  at_interval_or_end = lambda every: (
      lambda step: (every and step % every == 0) or step == n_steps)
  exact_eval_at = at_interval_or_end(exact_eval_every)
  loop = loop_lib.Loop(
      train_model,
      train_task,
      eval_model=model(vocab_size=vocab.size, mode='eval', carry_state=False),
      eval_tasks=[eval_task],
      output_dir=str(output_dir),
      checkpoint_at=at_interval_or_end(checkpoint_every),
      eval_at=lambda step: (at_interval_or_end(eval_every)(step) or
                            (exact_eval_every and exact_eval_at(step))),
      random_seed=seed,
      callbacks=[lambda loop: loop_lib.ResetStateEachPass(loop, steps_per_epoch),
                 signals.StopOnSignal],
      n_steps=n_steps,
      token_counter=token_counter,
      metrics_log=run_dir.MetricsLog(output_dir),
      exact_validation=(
          evaluation.ExactValidation(model, vocab, batching, valid_text)
          if exact_eval_every else None),
      exact_eval_at=exact_eval_at,
      log_at=at_interval_or_end(log_every) if log_every else None,
      layout=layout,
      nt_asgd_nonmono=nt_asgd_nonmono,
      average_from_step=average_from_step,
      corpus=corpus,
      batching=batching)
  if parallel.is_chief():
    run_dir.write_config(output_dir, gin.operative_config_str(), corpus,
                         batching)

  if loop.step >= n_steps:
    loop_lib.log(f'{output_dir} is already at step {loop.step} >= n_steps '
                 f'{n_steps}; raise train.n_steps to train further')
    return loop
  if loop.step:
    loop_lib.log(f'resuming at step {loop.step} from {output_dir}')
  if parallel.is_chief():
    _note_precision_change(output_dir, precision)
    run_dir.record_start(output_dir, loop.step, n_steps, jax.devices(),
                         precision=precision)
  started = time.time()
  with signals.stop_on_signals(loop):
    loop.run(n_steps - loop.step)
  loop_lib.log(f'trained to step {loop.step} in '
               f'{loop_lib.format_duration(time.time() - started)}; '
               f'checkpoint in {output_dir}')
  return loop
