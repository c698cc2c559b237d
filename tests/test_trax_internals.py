"""Each private part of trax (and absl) lm_trax reaches (lm_trax.trax_internals):
that trax still has it, that it does what lm_trax relies on, and that the
public API does not offer it. A trax upgrade that moves one fails here."""

import inspect
import pathlib
import sys

from absl import app
import jax
import numpy as np
import pytest
from trax import layers as tl
from trax import optimizers
from trax.data import text_encoder
from trax.optimizers import trainer as trainer_lib
from trax.supervised import callbacks as trax_callbacks
from trax.supervised import training as trax_training

from conftest import REPO  # pylint: disable=g-bad-import-order
from lm_trax import loop as loop_lib
from lm_trax import trax_internals


class _Recorder(trax_callbacks.TrainingStepCallback):
  """A callback that does nothing: the Loop makes one from this class."""

  def call_at(self, step):
    return False

  def on_step_begin(self, step):
    pass

  def on_step_end(self, step):
    pass


def _batches():
  rng = np.random.default_rng(0)
  while True:
    ids = rng.integers(1, 10, size=(4, 6)).astype(np.int32)
    yield ids, ids, np.ones((4, 6), np.float32)


@pytest.fixture(scope='module')
def loop(tmp_path_factory):
  """A tiny trax Loop (not lm_trax's subclass) with one callback."""
  task = trax_training.TrainTask(_batches(), tl.WeightedCategoryCrossEntropy(),
                                 optimizers.Adam(0.01))
  return trax_training.Loop(tl.Serial(tl.Embedding(10, 8), tl.Dense(10)),
                            task, callbacks=[_Recorder],
                            output_dir=str(tmp_path_factory.mktemp('loop')))


def _in_public_api(obj, owner):
  """Whether a public attribute or property of `owner` is `obj`, or a tuple
  or list holding it."""
  for name in dir(owner):
    if not name.startswith('_'):
      value = getattr(owner, name)
      if value is obj or (isinstance(value, (tuple, list)) and
                          any(x is obj for x in value)):
        return True
  return False


def test_trainers_are_the_loops_trainer_per_task_and_not_public(loop):
  (trainer,) = trax_internals.trainers(loop)
  assert isinstance(trainer, trainer_lib.Trainer)
  assert not _in_public_api(trainer, loop)


def test_callbacks_are_the_instances_the_loop_made_and_not_public(loop):
  (callback,) = trax_internals.callbacks(loop)
  assert isinstance(callback, _Recorder)
  assert not _in_public_api(callback, loop)


def test_the_random_key_is_read_without_advancing_it_and_can_be_set(loop):
  """trax's only public access, new_rng(), advances the key; saving it with
  a checkpoint must not, and restoring it makes the draws repeat."""
  key = trax_internals.rng(loop)
  np.testing.assert_array_equal(trax_internals.rng(loop), key)
  first = loop.new_rng()
  assert not np.array_equal(trax_internals.rng(loop), key)  # Advanced.
  trax_internals.set_rng(loop, key)
  np.testing.assert_array_equal(loop.new_rng(), first)


def test_the_output_dir_is_read_only_and_saving_writes_into_it(loop,
                                                               tmp_path):
  original = loop.output_dir
  with pytest.raises(AttributeError):
    loop.output_dir = str(tmp_path)  # A property without a setter.
  with trax_internals.output_dir_set_to(loop, tmp_path / 'step-1'):
    (tmp_path / 'step-1').mkdir()
    assert loop.output_dir == str(tmp_path / 'step-1')
    trax_training.Loop.save_checkpoint(loop, 'model')
  assert loop.output_dir == original
  assert (tmp_path / 'step-1' / 'model.pkl.gz').is_file()
  assert not (pathlib.Path(original) / 'model.pkl.gz').exists()


def test_the_loops_messages_go_to_the_log_only_inside_the_block(capsys):
  """trax's Loop prints every message through training._log; there is no
  option to keep them off stdout (lm_trax does, in processes other than 0)."""
  trax_training._log('printed before')  # pylint: disable=protected-access
  with trax_internals.loop_messages_to_log_only():
    trax_training._log('logged only')  # pylint: disable=protected-access
  trax_training._log('printed after')  # pylint: disable=protected-access
  assert capsys.readouterr().out == 'printed before\nprinted after\n'


def test_the_trainers_forward_and_backward_gives_loss_state_and_gradients(
    loop):
  (trainer,) = trax_internals.trainers(loop)
  model_with_loss = trainer.model_with_loss
  batch = next(_batches())
  (loss, _), gradients = trax_internals.forward_and_backward_fn(trainer)(
      batch, model_with_loss.weights, model_with_loss.state,
      jax.random.PRNGKey(0))
  assert np.isfinite(loss)
  assert (jax.tree_util.tree_structure(gradients) ==
          jax.tree_util.tree_structure(model_with_loss.weights))


def test_the_update_step_set_is_the_one_one_step_runs(loop):
  (trainer,) = trax_internals.trainers(loop)
  original = trainer._accelerated_update_fn  # pylint: disable=protected-access
  calls = []

  def counting(*args):
    calls.append(len(args))
    return original(*args)
  trax_internals.set_update_fn(trainer, counting)
  try:
    loss, _ = trainer.one_step(next(_batches()), jax.random.PRNGKey(1))
  finally:
    trax_internals.set_update_fn(trainer, original)
  assert calls == [6] and np.isfinite(loss)
  assert 'update_fn' not in inspect.signature(trainer_lib.Trainer).parameters


def test_gradients_are_averaged_over_the_devices_of_the_pmap_axis():
  gradients = {'w': np.arange(6.0).reshape(2, 3)}
  n = jax.local_device_count()
  stacked = jax.tree_util.tree_map(
      lambda g: np.stack([g * (d + 1) for d in range(n)]), gradients)
  averaged = jax.pmap(trax_internals.average_gradients_across_devices,
                      axis_name='batch')(stacked)
  mean = sum(range(1, n + 1)) / n
  for d in range(n):
    np.testing.assert_allclose(averaged['w'][d], gradients['w'] * mean)


def test_subwords_loaded_from_lines_encode_as_from_trax_vocabulary_file(
    tmp_path):
  """The public way reads a file; the lines go to the same loader."""
  lines = ["'<pad>_'", "'<EOS>_'", "'the_'", "'cat_'", "'c'", "'a'", "'t'",
           "'h'", "'e'", "'_'", "' '"]
  (tmp_path / 'vocab.subwords').write_text('\n'.join(lines) + '\n')
  from_file = text_encoder.SubwordTextEncoder(str(tmp_path / 'vocab.subwords'))
  from_lines = text_encoder.SubwordTextEncoder()
  trax_internals.load_subwords(from_lines, lines)
  for text in ('the cat', 'cathet tac'):
    assert from_lines.encode(text) == from_file.encode(text)
    assert from_lines.decode(from_lines.encode(text)) == text


def test_absl_prints_the_main_docstring_set_as_the_usage(capsys):
  saved = sys.modules['__main__'].__doc__
  with trax_internals.main_docstring('Usage of the train command.'):
    app.usage(writeto_stdout=True)
  assert 'Usage of the train command.' in capsys.readouterr().out
  assert sys.modules['__main__'].__doc__ == saved


def test_the_loops_private_hooks_lm_trax_relies_on_are_still_there(loop):
  """LOOP_SEAMS: every private name of trax's Loop that lm_trax.loop.Loop
  overrides or calls; an override keeps trax's signature."""
  for name in trax_internals.LOOP_SEAMS:
    assert hasattr(loop, name), f'trax Loop has no {name} any more'
  overridden = {name for name in vars(loop_lib.Loop)
                if name.startswith('_') and not name.startswith('__') and
                hasattr(trax_training.Loop, name)}
  assert overridden <= set(trax_internals.LOOP_SEAMS), (
      f'lm_trax.loop.Loop overrides {overridden - set(trax_internals.LOOP_SEAMS)}'
      ' of trax: list it in trax_internals.LOOP_SEAMS')
  for name in overridden:
    ours = inspect.signature(getattr(loop_lib.Loop, name))
    theirs = inspect.signature(getattr(trax_training.Loop, name))
    assert list(ours.parameters) == list(theirs.parameters), name
  for name in trax_internals.CALLBACK_SEAMS:
    assert getattr(_Recorder(loop), name) is loop


def test_nothing_else_in_lm_trax_touches_private_attributes():
  """The pylint marker of a private access appears in the adapter modules
  only: this one, and lm_trax.compat (gin's and JAX's, for its fixes)."""
  adapters = {'trax_internals.py', 'compat.py'}
  found = [f'{path.relative_to(REPO)}:{number}'
           for path in sorted((REPO / 'lm_trax').rglob('*.py'))
           if path.name not in adapters
           for number, line in enumerate(
               path.read_text(encoding='utf-8').splitlines(), 1)
           if 'protected-access' in line]
  assert found == []
