"""The speed-ups compute the same function as the straightforward versions.

* losses.WeightedCrossEntropy (fused) vs trax's WeightedCategoryCrossEntropy;
* layers.FlatDense vs tl.Dense;
* (the cells' hand-written backward passes vs autodiff: tests/test_cells.py)
* the whole LSTM LM + loss vs a plain-jnp LSTM LM written here, with trax's
  stock loss: loss and gradients;
* 20 training steps of trax's Trainer (the Loop's step): the same losses,
  compiled as the other tests are (conftest.py turns most XLA optimizations
  off: jax_disable_most_optimizations) and as training runs, optimized.
"""

import jax
from jax import numpy as jnp
from jax._src import compiler as jax_compiler  # Only to check the setting.
import numpy as np
import pytest
from trax import layers as tl
from trax import optimizers
from trax import shapes
from trax.optimizers import trainer as trainer_lib

from lm_trax import cells
from lm_trax import layers
from lm_trax import losses
from lm_trax import models

V, B, T, D = 23, 3, 6, 8
RTOL, ATOL = 2e-5, 2e-6  # float32 rounding: sums in another order.


def _close(a, b, rtol=RTOL, atol=ATOL):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol)


def _batch(seed=0, with_padding=True):
  rng = np.random.default_rng(seed)
  inputs = rng.integers(1, V, (B, T)).astype(np.int32)
  targets = rng.integers(0, V, (B, T)).astype(np.int32)
  weights = np.ones((B, T), np.float32)
  if with_padding:
    weights[0, -2:] = 0.  # Padding positions, as line batches have.
  return inputs, targets, weights


def test_fused_cross_entropy_matches_trax_in_value_and_gradient():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(B, T, V)).astype(np.float32) * 3
  _, targets, weights = _batch()
  ours = lambda x: losses.WeightedCrossEntropy()((x, targets, weights))
  theirs = lambda x: tl.WeightedCategoryCrossEntropy()((x, targets, weights))
  _close(ours(logits), theirs(logits))
  _close(jax.grad(ours)(logits), jax.grad(theirs)(logits))
  per_token = -jax.nn.log_softmax(logits)[
      np.arange(B)[:, None], np.arange(T)[None], targets]
  _close(losses.cross_entropy(logits, targets), per_token)


def test_flat_dense_is_tl_dense():
  x = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
  flat, dense = layers.FlatDense(V), tl.Dense(V)
  flat.init(shapes.signature(x), rng=jax.random.PRNGKey(0))
  dense.init(shapes.signature(x), rng=jax.random.PRNGKey(0))
  _close(flat.weights, dense.weights)
  assert str(flat) == str(dense)  # Same name: saved runs still match.

  def loss(layer):
    return lambda w, x: jnp.sum(jnp.sin(layer.pure_fn(
        x, w, (), jax.random.PRNGKey(0))[0]))
  _close(loss(flat)(flat.weights, x), loss(dense)(dense.weights, x))
  _close(jax.grad(loss(flat), (0, 1))(flat.weights, x),
         jax.grad(loss(dense), (0, 1))(dense.weights, x))


# The whole model, against an LSTM LM written with plain jnp ---------------------

def _plain_lstm_lm(weights, inputs, forget_bias):
  """Embedding -> LSTM layers (a Python loop over time) -> Dense: logits."""
  embedding, *lstm_layers, (w_out, b_out) = weights
  x = embedding[inputs]  # (B, T, d)
  for w_x, w_h, b in lstm_layers:
    c = h = jnp.zeros((inputs.shape[0], w_h.shape[0]))
    outputs = []
    for t in range(inputs.shape[1]):
      i, f, g, o = jnp.split(x[:, t] @ w_x + h @ w_h + b, 4, axis=-1)
      c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h = jax.nn.sigmoid(o) * jnp.tanh(c)
      outputs.append(h)
    x = jnp.stack(outputs, axis=1)
  return x @ w_out + b_out


def test_lstm_lm_loss_and_gradients_match_a_plain_jnp_lstm():
  inputs, targets, mask = _batch()
  model = models.LSTMLM(V, d_model=D, n_layers=2, init_scale=0.3,
                        forget_bias=0.5)
  with_loss = tl.Serial(model, losses.WeightedCrossEntropy())
  with_loss.init(shapes.signature((inputs, targets, mask)),
                 rng=jax.random.PRNGKey(3))
  state = with_loss.state  # Zeros: the plain LSTM starts from zeros too.

  def ours(weights):
    return with_loss.pure_fn((inputs, targets, mask), weights, state,
                             jax.random.PRNGKey(0))[0]

  def plain(weights):
    logits = _plain_lstm_lm(weights[0], inputs, forget_bias=0.5)
    return tl.WeightedCategoryCrossEntropy()((logits, targets, mask))
  weights = with_loss.weights
  _close(ours(weights), plain(weights))
  _close(jax.grad(ours)(weights), jax.grad(plain)(weights), rtol=1e-4,
         atol=1e-6)


# Training: the optimized and the straightforward model, step for step -----------

def _straightforward_lstm_lm(init_scale, forget_bias):
  """LSTMLM's layers without the speed-ups: tl.Dense, autodiff recurrence."""
  init = layers.default_initializer(init_scale)
  return tl.Serial(
      tl.Embedding(V, D, kernel_initializer=init),
      [layers.Recurrent(cells.make('lstm', forget_bias=forget_bias), D,
                        initializer=init, fast_backward=False)
       for _ in range(2)],
      tl.Dense(V, kernel_initializer=init, bias_initializer=init))


def _learnable_batches(n):
  """Contiguous windows of a periodic token stream (inputs, next tokens)."""
  stream = (np.arange(n * T + 1) * 5 % 11 + 1).astype(np.int32)
  rows = np.stack([np.roll(stream, -7 * row) for row in range(B)])
  return [(rows[:, k * T:(k + 1) * T], rows[:, k * T + 1:(k + 1) * T + 1],
           np.ones((B, T), np.float32)) for k in range(n)]


def _train(model, loss_layer, weights, n_steps):
  batches = _learnable_batches(n_steps)
  with_loss = tl.Serial(model, loss_layer)
  with_loss.init(shapes.signature(batches[0]), rng=jax.random.PRNGKey(0))
  with_loss.weights = (weights, ())
  optimizer = optimizers.SGD(learning_rate=2.0, clip_grad_norm=0.25)
  optimizer.tree_init(with_loss.weights)
  trainer = trainer_lib.Trainer(with_loss, optimizer)
  return np.array([float(trainer.one_step(batches[step],
                                          jax.random.PRNGKey(step), step)[0])
                   for step in range(n_steps)])


@pytest.fixture(params=['unoptimized', 'optimized'])
def xla_optimization(request):
  """Compiles as conftest.py sets it (most XLA optimizations off), then
  with them on, as `python train.py` compiles; the jit caches are cleared
  so nothing compiled the other way is reused."""
  before = jax.config.read('jax_disable_most_optimizations')
  optimized = request.param == 'optimized'
  jax.config.update('jax_disable_most_optimizations', not optimized)
  jax.clear_caches()
  # The setting took: XLA's CPU backend compiles at its level 3, not 0.
  options = jax_compiler.get_compile_options(num_replicas=1, num_partitions=1)
  debug = options.executable_build_options.debug_options
  assert debug.xla_backend_optimization_level == (3 if optimized else 0)
  yield
  jax.config.update('jax_disable_most_optimizations', before)
  jax.clear_caches()


def test_twenty_training_steps_give_the_same_loss_curve(xla_optimization):
  ours_model = models.LSTMLM(V, d_model=D, n_layers=2, init_scale=0.3,
                             forget_bias=0.5)
  ours_model.init(layers.signature(B, T), rng=jax.random.PRNGKey(4))
  weights = ours_model.weights
  ours = _train(ours_model, losses.WeightedCrossEntropy(), weights, 20)
  theirs = _train(_straightforward_lstm_lm(0.3, 0.5),
                  tl.WeightedCategoryCrossEntropy(), weights, 20)
  assert ours[-1] < ours[0] - 0.5  # It learns (the state is carried, too).
  np.testing.assert_allclose(ours, theirs, rtol=1e-4)
