"""The regularizers of AWD-LSTM: each one's defining property.

Variational dropout, embedding dropout, weight dropping, AR/TAR, weight
decay, the embedding size of tied models, and NT-ASGD (the trigger rule, the
average, resume across the trigger, and evaluation with the average).
"""

import pathlib

import jax
from jax import numpy as jnp
import numpy as np
import pytest
from trax import layers as tl
from trax.layers import combinators as trax_combinators
from trax import shapes
from trax.supervised import training as trax_training

from lm_trax import averaging
from lm_trax import cells
from lm_trax import config
from lm_trax import evaluate
from lm_trax import layers
from lm_trax import models
from lm_trax import optimizers
from lm_trax import run_dir
from lm_trax import trained
from lm_trax import training
from lm_trax import trax_internals

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'
V, B, T, D = 30, 4, 9, 16


def _ids(seed=0):
  return np.random.default_rng(seed).integers(1, V, size=(B, T)).astype(
      np.int32)


def _apply(layer, x, seed=0):
  """Runs an initialized layer in its mode with an explicit random key."""
  out, _ = layer.pure_fn(x, layer.weights, layer.state,
                         jax.random.PRNGKey(seed))
  return np.asarray(out)


def _dropouts(model):
  return [l for l in model.sublayers if isinstance(l, tl.Dropout)]


# Variational (locked) dropout ------------------------------------------------------

def test_locked_dropout_mask_is_the_same_at_every_step_and_differs_by_row():
  model = models.LSTMLM(V, d_model=D, variational=True, dropout=0.5)
  model.init(shapes.signature(_ids()))
  dropouts = _dropouts(model)
  assert len(dropouts) == 3  # Embeddings, between the layers, output.
  for dropout in dropouts:
    out = _apply(dropout, np.ones((B, T, D), np.float32))  # The mask itself.
    assert set(np.unique(out)) == {0.0, 2.0}
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))
    assert not all(np.array_equal(out[0, 0], out[b, 0]) for b in range(1, B))


def test_plain_dropout_draws_a_new_mask_at_every_step():
  model = models.LSTMLM(V, d_model=D, dropout=0.5)
  model.init(shapes.signature(_ids()))
  out = _apply(_dropouts(model)[0], np.ones((B, T, D), np.float32))
  assert not np.array_equal(out[:, 0], out[:, 1])


def test_each_dropout_rate_can_be_set_on_its_own():
  model = models.LSTMLM(V, d_model=D, n_layers=3, variational=True,
                        input_dropout=0.1, hidden_dropout=0.2,
                        output_dropout=0.3)
  model.init(shapes.signature(_ids()))
  rates = [d._initial_rate for d in _dropouts(model)]  # pylint: disable=protected-access
  assert rates == [0.1, 0.2, 0.2, 0.3]


# Embedding dropout ----------------------------------------------------------------

def test_embedding_dropout_drops_every_occurrence_of_a_word_type():
  rate = 0.5
  layer = layers.WordTypeDropoutMask(V, rate, mode='train')
  ids = np.tile(np.arange(1, 11, dtype=np.int32), (B, 3))  # Each id 12 times.
  layer.init(shapes.signature(ids))
  mask = _apply(layer, ids)[..., 0]
  per_type = {}
  for word, value in zip(ids.ravel(), mask.ravel()):
    per_type.setdefault(word, set()).add(float(value))
  assert all(len(values) == 1 for values in per_type.values())
  values = {v.pop() for v in per_type.values()}
  assert values == {0.0, 1.0 / (1.0 - rate)}  # Dropped, or kept and rescaled.


def test_embedding_dropout_zeroes_the_dropped_words_vectors_in_the_model():
  model = models.LSTMLM(V, d_model=D, embedding_dropout=0.5, n_layers=1)
  ids = np.tile(np.arange(1, 9, dtype=np.int32), (B, 2))
  model.init(shapes.signature(ids))
  embed = tl.Serial(model.body[:2])  # Branch(embedding, mask), Multiply.
  vectors = _apply(embed, ids)
  zero_rows = np.all(vectors == 0.0, axis=-1)  # (B, 16)
  for word in range(1, 9):
    at_word = zero_rows[ids == word]
    assert at_word.all() or not at_word.any()
  assert zero_rows.any() and not zero_rows.all()


# Weight dropping ------------------------------------------------------------------

def test_weight_dropping_uses_one_mask_for_the_whole_sequence():
  x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
  train = layers.Recurrent(cells.make('lstm'), D, carry_state=False,
                           weight_dropout=0.5, mode='train')
  train.init(shapes.signature(x))
  rng = jax.random.PRNGKey(3)
  out, _ = train.pure_fn(x, train.weights, train.state, rng)
  # The same layer without dropping, its U replaced by one dropped matrix:
  # kept entries (a Bernoulli mask from the step's key) scaled by 1 / (1 - p).
  plain = layers.Recurrent(cells.make('lstm'), D, carry_state=False)
  plain.init(shapes.signature(x))
  u = np.asarray(train.weights[1])
  kept = np.asarray(jax.random.bernoulli(rng, 0.5, u.shape))
  assert 0.3 < kept.mean() < 0.7
  plain.weights = (train.weights[0], u * kept / 0.5, train.weights[2])
  np.testing.assert_allclose(out, plain(x), rtol=1e-5, atol=1e-6)
  # Another step's key draws another mask.
  other, _ = train.pure_fn(x, train.weights, train.state,
                           jax.random.PRNGKey(4))
  assert not np.allclose(out, other)


def test_weight_dropping_is_off_in_eval_mode():
  x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
  evaluating = layers.Recurrent(cells.make('gru'), D, carry_state=False,
                                weight_dropout=0.5, mode='eval')
  evaluating.init(shapes.signature(x))
  plain = layers.Recurrent(cells.make('gru'), D, carry_state=False)
  plain.init(shapes.signature(x))
  plain.weights = evaluating.weights
  np.testing.assert_array_equal(_apply(evaluating, x), plain(x))


@pytest.mark.parametrize('mode', ['eval', 'predict'])
def test_every_regularizer_is_off_outside_training(mode):
  kwargs = dict(d_model=D, tie_weights=True, d_embed=8, variational=True,
                dropout=0.5, embedding_dropout=0.5, weight_dropout=0.5,
                activation_reg=2.0, temporal_activation_reg=1.0)
  regularized = models.LSTMLM(V, mode=mode, **kwargs)
  plain = models.LSTMLM(V, mode=mode, d_model=D, tie_weights=True, d_embed=8)
  ids = _ids()
  regularized.init(shapes.signature(ids))
  plain.init(shapes.signature(ids))
  plain_weights = [w for w in jax.tree_util.tree_leaves(regularized.weights)]
  plain.weights = jax.tree_util.tree_unflatten(
      jax.tree_util.tree_structure(plain.weights), plain_weights)
  np.testing.assert_array_equal(_apply(regularized, ids, seed=1),
                                _apply(plain, ids, seed=2))


# Tying with its own embedding size --------------------------------------------------

def test_a_tied_model_with_a_smaller_embedding_shares_one_table():
  model = models.LSTMLM(V, d_model=D, d_embed=8, n_layers=2, tie_weights=True)
  model.init(shapes.signature(_ids()))
  assert np.asarray(model(_ids())).shape == (B, T, V)
  # Table V x 8; layer 1: 8 -> 16; layer 2: 16 -> 8 (the embedding size).
  expected = (V * 8 + (8 * 64 + D * 64 + 64) + (D * 32 + 8 * 32 + 32) + V)
  assert layers.count_parameters(model) == expected


# AR and TAR -------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['ar', 'tar'])
def test_the_penalty_gradient_is_the_gradient_of_its_formula(kind):
  coefficient = 1.7
  x = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, D)),
                  jnp.float32)
  upstream = jnp.asarray(np.random.default_rng(3).normal(size=(B, T, D)),
                         jnp.float32)
  layer = layers.ActivationPenalty(kind, coefficient, mode='train')
  layer.init(shapes.signature(x))

  def with_layer(x):
    out, state = layer.pure_fn(x, layer.weights, layer.state,
                               jax.random.PRNGKey(0))
    return jnp.sum(out * upstream), state

  if kind == 'ar':
    formula = lambda x: coefficient * jnp.mean(x ** 2)
  else:
    formula = lambda x: coefficient * jnp.mean((x[:, 1:] - x[:, :-1]) ** 2)
  (value, state), grad = jax.value_and_grad(with_layer, has_aux=True)(x)
  expected = jax.grad(lambda x: jnp.sum(x * upstream) + formula(x))(x)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(value, jnp.sum(x * upstream), rtol=1e-6)
  np.testing.assert_allclose(np.sum(state), formula(x), rtol=1e-5)


def test_tar_sees_the_raw_states_and_ar_the_dropped_ones():
  # AWD-LSTM: AR = alpha * mean(dropped output ** 2), TAR = beta *
  # mean(difference of the raw output ** 2). The expected gradient runs the
  # model's layers without the penalty layers (identities going forward),
  # each with the random key trax's Serial gives it, and adds both penalties
  # to the loss by their formulas at those two places.
  alpha, beta = 2.0, 3.0
  model = models.RecurrentLM(V, d_model=D, n_layers=1, output_dropout=0.5,
                             variational=True, activation_reg=alpha,
                             temporal_activation_reg=beta, carry_state=False)
  ids, targets = _ids(0), _ids(1)
  model.init(shapes.signature(ids))
  rng = jax.random.PRNGKey(5)
  sublayers = model.sublayers
  rngs = trax_combinators._split_rngs(rng, len(sublayers))  # pylint: disable=protected-access

  def cross_entropy(logits):
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_p, targets[..., None], -1))

  def model_loss(weights):
    logits, _ = model.pure_fn(ids, weights, model.state, rng)
    return cross_entropy(logits)

  def pieces(weights):
    """(logits, the recurrent layer's output, the output dropout's)."""
    x, raw, dropped = ids, None, None
    for layer, w, s, key in zip(sublayers, weights, model.state, rngs):
      if isinstance(layer, layers.ActivationPenalty):
        continue
      x, _ = layer.pure_fn(x, w, s, key)
      if isinstance(layer, layers.Recurrent):
        raw = x
      elif raw is not None and dropped is None:
        dropped = x
    return x, raw, dropped

  def expected_loss(weights):
    logits, raw, dropped = pieces(weights)
    return (cross_entropy(logits) + alpha * jnp.mean(dropped ** 2) +
            beta * jnp.mean((raw[:, 1:] - raw[:, :-1]) ** 2))

  _, raw, dropped = pieces(model.weights)
  assert not np.allclose(dropped, raw)  # The dropout is active.

  got = jax.grad(model_loss)(model.weights)
  expected = jax.grad(expected_loss)(model.weights)
  for a, b in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_penalty_sums_are_read_and_zeroed_and_survive_a_state_reset():
  model = models.LSTMLM(V, d_model=D, activation_reg=2.0,
                        temporal_activation_reg=1.0)
  model.init(shapes.signature(_ids()))
  _, state = model.pure_fn(_ids(), model.weights, model.state,
                           jax.random.PRNGKey(0))
  total = layers.penalty_sums(model, state)
  assert total > 0
  assert layers.penalty_sums(model, layers.zero_carried_state(model, state)) \
      == pytest.approx(total)
  assert layers.penalty_sums(model, layers.zero_penalty_sums(model,
                                                             state)) == 0


# Weight decay -----------------------------------------------------------------------

def test_sgd_weight_decay_adds_the_l2_gradient_after_clipping():
  optimizer = optimizers.SGD(learning_rate=0.5, clip_grad_norm=1.0,
                             weight_decay=0.1)
  weights = (jnp.array([1.0, -2.0]),)
  grads = (jnp.array([3.0, 4.0]),)  # Norm 5: clipped to norm 1.
  optimizer.tree_init(weights)
  new, _, _ = optimizer.tree_update(1, grads, weights, optimizer.slots,
                                    optimizer.opt_params)
  expected = weights[0] - 0.5 * (grads[0] / 5.0 + 0.1 * weights[0])
  np.testing.assert_allclose(new[0], expected, rtol=1e-6)


# NT-ASGD --------------------------------------------------------------------------

def test_the_trigger_fires_exactly_when_the_non_monotone_condition_holds():
  # AWD-LSTM: val > min(all but the last nonmono earlier losses).
  assert averaging.trigger_check([5, 4, 3, 2, 1], nonmono=2) is None
  assert averaging.trigger_check([5, 4, 4.5, 4.6], nonmono=2) is None  # > 5? no
  assert averaging.trigger_check([5, 4, 4.5, 4.6, 4.7], nonmono=2) == 4
  assert averaging.trigger_check([5, 4, 3, 3.5], nonmono=0) == 3
  assert averaging.trigger_check([5, 6], nonmono=1) is None  # Too few checks.
  assert averaging.trigger_check([5, 4, 6], nonmono=1) == 2
  # Equal to the best is not worse (AWD-LSTM's strict >).
  assert averaging.trigger_check([5, 4, 5], nonmono=1) is None
  assert averaging.trigger_check([5, 4, 4], nonmono=0) is None


def test_the_average_is_the_mean_of_the_iterates_since_the_trigger():
  average = averaging.WeightAverage()
  rng = np.random.default_rng(0)
  iterates = [(rng.normal(size=(3, 2)).astype(np.float32),
               {'b': rng.normal(size=(4,)).astype(np.float32)})
              for _ in range(7)]
  average.start()
  for weights in iterates:
    average.add(jax.tree_util.tree_map(jnp.asarray, weights))
  assert average.count == 7
  np.testing.assert_allclose(average.mean[0],
                             np.mean([w[0] for w in iterates], axis=0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(average.mean[1]['b'],
                             np.mean([w[1]['b'] for w in iterates], axis=0),
                             rtol=1e-5, atol=1e-6)


# Gradient ascent makes every check worse than the one before: with nonmono 0
# the trigger fires at the second exact validation (step 4), so steps 5-8 are
# averaged.
ASGD = ['train.model = @RecurrentLM', 'RecurrentLM.variational = True',
        'RecurrentLM.dropout = 0.2', 'RecurrentLM.embedding_dropout = 0.1',
        'RecurrentLM.weight_dropout = 0.2', 'RecurrentLM.activation_reg = 1.0',
        'RecurrentLM.temporal_activation_reg = 1.0', 'RecurrentLM.tie_weights = True',
        'train.optimizer = @lm_trax.SGD', 'lm_trax.SGD.weight_decay = 0.01',
        'train.lr_schedule = @constant_lr', 'constant_lr.learning_rate = -1.0',
        'train.nt_asgd_nonmono = 0', 'train.exact_eval_every = 2',
        'train.eval_every = 2', 'Corpus.download = False']


def _train(output_dir, n_steps, bindings=()):
  config.parse([str(GIN_DIR / 'ptb_lstm_tied.gin'), str(GIN_DIR / 'tiny.gin')],
               ASGD + [f'train.n_steps = {n_steps}'] + list(bindings))
  return training.train(output_dir=str(output_dir))


def _leaves(tree):
  return [np.asarray(w) for w in jax.tree_util.tree_leaves(tree)]


def test_nt_asgd_resumes_exactly_across_the_trigger(use_tiny_data, tmp_path):
  straight = _train(tmp_path / 'straight', 8)
  assert straight._average.started and straight._average.count == 4  # pylint: disable=protected-access
  first = _train(tmp_path / 'resumed', 6)  # Stopped after 2 averaged steps.
  assert first._average.count == 2  # pylint: disable=protected-access
  resumed = _train(tmp_path / 'resumed', 8)
  assert resumed._average.count == 4  # pylint: disable=protected-access
  for a, b in zip(_leaves(straight.model.weights),
                  _leaves(resumed.model.weights)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for a, b in zip(_leaves(straight._average.mean),  # pylint: disable=protected-access
                  _leaves(resumed._average.mean)):  # pylint: disable=protected-access
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nt_asgd_averages_the_iterates_after_the_trigger(use_tiny_data,
                                                        tmp_path, monkeypatch):
  # The weights after each step, recorded around trax's own step.
  after_step = {}
  trax_step = trax_training.Loop._run_one_step  # pylint: disable=protected-access

  def recording_step(loop, task_index, task_changed):
    result = trax_step(loop, task_index, task_changed)
    trainer = trax_internals.trainers(loop)[task_index]
    after_step[loop.step] = _leaves(
        trainer.accelerated_model_with_loss.weights[0])
    return result
  monkeypatch.setattr(trax_training.Loop, '_run_one_step', recording_step)
  loop = _train(tmp_path, 8)  # The trigger fires at step 4.
  for i, leaf in enumerate(_leaves(loop._average.mean)):  # pylint: disable=protected-access
    np.testing.assert_allclose(
        leaf, np.mean([after_step[t][i] for t in (5, 6, 7, 8)], axis=0),
        rtol=1e-5, atol=1e-6)


def test_evaluation_uses_the_averaged_weights(use_tiny_data, tmp_path):
  loop = _train(tmp_path, 8)
  mean = _leaves(loop._average.mean)  # pylint: disable=protected-access
  assert any(not np.array_equal(a, b)
             for a, b in zip(mean, _leaves(loop.model.weights)))
  model = trained.Run(tmp_path).model()
  for a, b in zip(mean, _leaves(model.weights)):
    np.testing.assert_array_equal(a, b)
  # The last exact validation scored the average too: evaluate agrees.
  last_valid = [r for r in run_dir.MetricsLog.read(tmp_path)
                if r['kind'] == 'valid'][-1]
  result = evaluate.evaluate(tmp_path, 'valid', progress=False)
  assert result.loss == pytest.approx(last_valid['loss'], rel=1e-5)


def test_penalties_are_logged_beside_the_plain_loss(use_tiny_data, tmp_path):
  def first_step(scale):
    output_dir = tmp_path / f'x{scale}'
    _train(output_dir, 1, [f'RecurrentLM.activation_reg = {scale}',
                           f'RecurrentLM.temporal_activation_reg = {scale}'])
    (record,) = [r for r in run_dir.MetricsLog.read(output_dir)
                 if r['kind'] == 'train']
    return record
  once, twice = first_step(1.0), first_step(2.0)
  assert once['penalty'] > 0
  # The same weights and batch: the cross entropy does not see the
  # penalties, and the penalty is linear in alpha and beta.
  assert twice['loss'] == pytest.approx(once['loss'], rel=1e-6)
  assert twice['penalty'] == pytest.approx(2 * once['penalty'], rel=1e-4)
  for record in (once, twice):
    assert record['total_loss'] == pytest.approx(record['loss'] +
                                                 record['penalty'])


# Tail averaging on the tiny PTB (75 steps an epoch): 0.04 epochs is step 3,
# so the iterates of steps 4, 5 and 6 are averaged.
TAIL = ['train.optimizer = @trax.optimizers.Adam',
        'train.lr_schedule = @constant_lr', 'constant_lr.learning_rate = 0.01',
        'train.exact_eval_every = 6', 'train.eval_every = 6',
        'Corpus.download = False']


def _train_tail(output_dir, n_steps, bindings=()):
  config.parse([str(GIN_DIR / 'ptb_lstm.gin'), str(GIN_DIR / 'tiny.gin')],
               TAIL + [f'train.n_steps = {n_steps}'] + list(bindings))
  return training.train(output_dir=str(output_dir))


def test_tail_averaging_averages_the_iterates_after_its_start(use_tiny_data,
                                                              tmp_path):
  iterates = [_leaves(_train_tail(tmp_path / f'plain_{n}', n).model.weights)
              for n in (4, 5, 6)]
  loop = _train_tail(tmp_path / 'tail', 6, ['train.average_from_epoch = 0.04'])
  assert loop._average.count == 3  # pylint: disable=protected-access
  for i, leaf in enumerate(_leaves(loop._average.mean)):  # pylint: disable=protected-access
    np.testing.assert_allclose(leaf, np.mean([w[i] for w in iterates], axis=0),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(_leaves(loop.model.weights)[0], iterates[2][0])


@pytest.mark.parametrize('learning_rate, kept', [(0.01, 'raw'),
                                                 (-0.01, 'averaged')])
def test_the_best_checkpoint_keeps_the_better_of_raw_and_averaged(
    use_tiny_data, tmp_path, learning_rate, kept):
  # Descending, the last iterate beats the mean of the last three; ascending
  # (a negative rate), the mean of the three beats the last.
  loop = _train_tail(tmp_path, 6, ['train.average_from_epoch = 0.04',
                                   f'constant_lr.learning_rate = {learning_rate}'])
  valid = [r for r in run_dir.MetricsLog.read(tmp_path)
           if r['kind'] == 'valid'][-1]
  assert (valid['raw_loss'] < valid['loss']) == (kept == 'raw')
  expected = (loop.model.weights if kept == 'raw' else
              loop._average.mean)  # pylint: disable=protected-access
  best = trained.Run(tmp_path, 'best').model()
  for a, b in zip(_leaves(expected), _leaves(best.weights)):
    np.testing.assert_array_equal(a, b)
  assert evaluate.evaluate(tmp_path, 'valid', progress=False,
                           checkpoint='best').loss == pytest.approx(
                               min(valid['loss'], valid['raw_loss']), rel=1e-5)
  # The latest checkpoint is the average, whichever was better.
  assert evaluate.evaluate(tmp_path, 'valid', progress=False).loss == (
      pytest.approx(valid['loss'], rel=1e-5))


def test_tail_averaging_resumes_exactly(use_tiny_data, tmp_path):
  straight = _train_tail(tmp_path / 'straight', 6,
                         ['train.average_from_epoch = 0.04'])
  _train_tail(tmp_path / 'resumed', 5, ['train.average_from_epoch = 0.04'])
  resumed = _train_tail(tmp_path / 'resumed', 6,
                        ['train.average_from_epoch = 0.04'])
  assert resumed._average.count == 3  # pylint: disable=protected-access
  for a, b in zip(_leaves(straight._average.mean),  # pylint: disable=protected-access
                  _leaves(resumed._average.mean)):  # pylint: disable=protected-access
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
