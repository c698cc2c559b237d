"""The private parts of trax (and one of absl) that lm_trax reads or sets.

Each access is one small function here, saying why no public API serves and
which version it was read from (trax 1.4.1, absl-py 2.5.1); each has a test in
tests/test_trax_internals.py that fails, naming the attribute, when an
upgrade moves it. Nothing else in lm_trax touches a private attribute of a
trax object.

Why not lm_trax.compat: compat changes how trax behaves for the whole
process, once, when it is imported (and imports TensorFlow and trax to do
so). These functions change nothing by being imported: each acts on the
object its caller passes, when called, and what it swaps it restores. This
module imports neither trax nor TensorFlow (the two functions that need a
trax module import it when called), so that lm_trax.vocab, which loads trax
only for subword vocabularies, and the train command's --help can use it.

The subclasses lm_trax.loop.Loop (of trax's Loop) and the Loop callbacks (of
trax's TrainingStepCallback) also rely on the private methods and attributes
in LOOP_SEAMS and CALLBACK_SEAMS, the hooks a subclass overrides or calls;
the tests check that trax still has them.
"""

import contextlib
import sys

from absl import logging

# What lm_trax.loop.Loop overrides or calls of trax's Loop (trax 1.4.1,
# trax/supervised/training.py), beyond its public API: {name: what it is}.
LOOP_SEAMS = {
    '_save_gin': 'method(summary_writer): writes config.gin at a checkpoint',
    '_open_summary_writers': 'contextmanager(): the TensorBoard writers',
    '_run_one_step': 'method(task_index, task_changed) -> (loss, stats)',
    '_log_training_progress': 'method(task, total_loss, n_steps, '
                              'elapsed_time, optimizer_metrics, '
                              'summary_writer)',
    '_which_task': 'method(step) -> the index of the task trained at step',
    '_unreplicate': 'method(x): one device\'s copy of replicated arrays',
    '_eval_at': 'attribute: eval_at(step) -> whether to evaluate',
}
# What the callbacks (lm_trax.loop.ResetStateEachPass,
# lm_trax.signals.StopOnSignal) use of trax's TrainingStepCallback.
CALLBACK_SEAMS = {
    '_loop': 'attribute: the Loop the callback was made for',
}


# trax's Loop -------------------------------------------------------------------

def trainers(loop):
  """The trax.optimizers.Trainer of each training task of a trax Loop, in
  task order: they hold the accelerated model (its weights and carried state
  on the devices) and the compiled update step. trax's Loop keeps them in
  `_trainer_per_task` and has no public accessor (trax 1.4.1)."""
  return loop._trainer_per_task  # pylint: disable=protected-access


def callbacks(loop):
  """The callback objects a trax Loop made from its `callbacks=` classes
  (`_callbacks`; the Loop instantiates them itself and does not expose
  them), e.g. to find lm_trax.signals.StopOnSignal's instance (trax
  1.4.1)."""
  return loop._callbacks  # pylint: disable=protected-access


def rng(loop):
  """The Loop's random key (`_rng`), from which it splits each step's key.
  trax has only `new_rng()`, which advances it; reading it, to save it with
  a checkpoint, must not (trax 1.4.1)."""
  return loop._rng  # pylint: disable=protected-access


def set_rng(loop, key):
  """Sets the Loop's random key (`_rng`): restored from a checkpoint, so a
  resumed run draws the same dropout masks as an uninterrupted one (trax
  does not save it), or put back after evaluations drew from it (trax
  1.4.1)."""
  loop._rng = key  # pylint: disable=protected-access


@contextlib.contextmanager
def output_dir_set_to(loop, directory):
  """Points a trax Loop's output directory at `directory` while the block
  runs, then back. trax's Loop.save_checkpoint writes its files into the
  output_dir given at construction (a read-only property after); lm_trax
  writes each checkpoint into a directory of its own (lm_trax.checkpoints)
  by calling it inside this block (trax 1.4.1)."""
  saved = loop._output_dir  # pylint: disable=protected-access
  loop._output_dir = str(directory)  # pylint: disable=protected-access
  try:
    yield
  finally:
    loop._output_dir = saved  # pylint: disable=protected-access


@contextlib.contextmanager
def loop_messages_to_log_only():
  """While the block runs, trax's Loop writes its messages ('Step N: ...',
  the checkpoint notes) to absl's log only, not to stdout; then as before.

  Every message of trax's Loop goes through the module function
  trax.supervised.training._log(s, stdout=True), which prints it; the Loop
  has no option to stay quiet (trax 1.4.1). lm_trax quiets it in processes
  other than 0.
  """
  from trax.supervised import training  # pylint: disable=g-import-not-at-top  (called with trax loaded; this module must not load it)
  saved = training._log  # pylint: disable=protected-access
  training._log = lambda s, stdout=True: logging.info(s)  # pylint: disable=protected-access
  try:
    yield
  finally:
    training._log = saved  # pylint: disable=protected-access


# trax's Trainer ----------------------------------------------------------------

def forward_and_backward_fn(trainer):
  """A trax Trainer's (batch, weights, state, rng) -> ((loss, state),
  gradients), from which it compiles its update step (`_forward_and_backward_fn`,
  built in Trainer.__init__; not exposed). lm_trax builds its own step from
  it for one device per process (trax 1.4.1)."""
  return trainer._forward_and_backward_fn  # pylint: disable=protected-access


def set_update_fn(trainer, update_fn):
  """Replaces the compiled update step a trax Trainer runs in one_step
  (`_accelerated_update_fn`): (weights, slots), step, opt_params, batch,
  state, rng -> (weights, slots), state, stats. Trainer takes no step of the
  caller's; with one device per process, trax's would never average the
  gradients across processes (trax 1.4.1)."""
  trainer._accelerated_update_fn = update_fn  # pylint: disable=protected-access


def average_gradients_across_devices(gradients):
  """trax's own averaging of gradients over every device of every process
  (trax.optimizers.trainer._average_multidevice_gradients, a psum over the
  pmap axis 'batch' divided by the device count): the body of trax's
  multi-device step, reused so that lm_trax's step averages the same way
  (trax 1.4.1)."""
  from trax.optimizers import trainer as trainer_lib  # pylint: disable=g-import-not-at-top  (called with trax loaded; this module must not load it)
  return trainer_lib._average_multidevice_gradients(gradients)  # pylint: disable=protected-access


# trax's SubwordTextEncoder ------------------------------------------------------

def load_subwords(encoder, lines):
  """Fills a new trax SubwordTextEncoder with its subword table from `lines`
  (one quoted subword each, as in trax's vocabulary files). The public way
  is a file name, read through TensorFlow's gfile; lm_trax keeps the table
  in vocab.json, so it hands the lines to the loader the file reader uses
  (`_load_from_file_object`; trax 1.4.1)."""
  encoder._load_from_file_object(lines)  # pylint: disable=protected-access


# absl -------------------------------------------------------------------------

@contextlib.contextmanager
def main_docstring(text):
  """Sets the __main__ module's docstring while the block runs, then puts
  back the old one. absl's app.run prints that docstring as the usage of
  --help and of usage errors (absl.app.usage) and takes no other text; when
  a console script or train.py runs the train command, __main__ is not the
  module whose usage it is (absl-py 2.5.1)."""
  main_module = sys.modules['__main__']
  saved = main_module.__doc__
  main_module.__doc__ = text
  try:
    yield
  finally:
    main_module.__doc__ = saved
