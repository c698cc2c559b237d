"""Layers the language models need and trax does not have.

* `Recurrent`: any lm_trax.cells cell (LSTM, GRU, tanh RNN, MGU, ...) over a
  whole sequence, its final state kept in the layer's trax `state` and, when
  the next batch has the same batch size, used as that batch's initial state
  (truncated BPTT on contiguous streams, as Zaremba et al. 2014). The input
  projection of all time steps is one matmul outside the time loop; only the
  cell's step runs inside `lax.scan` (lm_trax.recurrence).
* `ContextWindow`: the previous n token ids at every position, carrying the
  last n-1 ids across batches the same way (the NPLM's "state").
* `TiedEmbedding`: one table used twice: ids -> vectors, then vectors -> logits.
* `FlatDense`: tl.Dense as one 2-D matmul (faster on XLA:CPU, same function).
* `WordTypeDropoutMask`: embedding dropout (Gal & Ghahramani 2016): whole
  word types dropped, the same ones at every position of the batch.
* `ActivationPenalty`: activation regularization (AR) or temporal activation
  regularization (TAR, Merity et al. 2017): an identity layer that adds the
  penalty's gradient in the backward pass.

Every matmul with a weight (Recurrent's input projection and its cell's
products, TiedEmbedding's logits, FlatDense) multiplies in the model's
precision (lm_trax.precision): the layers take `precision`, the Recurrent
layer its cell's.

Variational ("locked") dropout needs no layer of its own: tl.Dropout with
shared_axes=[1] draws one mask per sequence and feature and reuses it at every
time step.

The carried state is never differentiated through (stop_gradient) and is reset
to zeros by `reset_carried_state(layer)` -- the training loop does that at the
start of every pass over the data, evaluation before every split. Every state
array is batch-major, (B, ...), so that on several devices it is split along
the batch like the data (lm_trax.parallel). With carry_state=False the state
is left as initialized, so its shape never changes from batch to batch.
"""

import functools

import jax
from jax import numpy as jnp
import numpy as np
from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
from trax import layers as tl
from trax import shapes
from trax.layers import base

from lm_trax import precision as precision_lib
from lm_trax import recurrence

def default_initializer(init_scale):
  """Uniform(-init_scale, init_scale) if given, else None (trax's default)."""
  if init_scale is None:
    return None
  return tl.RandomUniformInitializer(lim=init_scale)


def _init(initializer, shape, rng, fallback):
  return (initializer or fallback)(shape, rng).astype(jnp.float32)


class Recurrent(base.Layer):
  """A recurrent layer over a whole sequence, with a carried hidden state.

  Input:  (B, T, d_in) float vectors.
  Output: (B, T, d_model) float hidden states, output[:, t] depends only on
  input[:, :t+1] and the initial state.

  The cell (an lm_trax.cells.Cell, e.g. cells.make('lstm')) says what a step
  computes, which weights it has and which state it carries. The layer
  projects the inputs of all time steps at once (one (T*B, d_in) @
  (d_in, G*d) matmul, plus b) and runs the cell's step over time with
  lm_trax.recurrence (the cell's hand-written backward pass if it has one
  and fast_backward is True; else JAX differentiates the scanned step).

  Weights: the cell's, as a tuple in the order cell.weights lists them
  (cell.named(weights) gives them by name).
  State: a tuple of (B, d_model) arrays, one per cell.state_names.

  Weight dropping (weight_dropout > 0, mode 'train'; Wan et al. 2013 as
  AWD-LSTM uses it): DropConnect on the cell's hidden-to-hidden matrices
  (its 2-D recurrent weights), one mask per matrix and batch, the same at
  every time step, scaled by 1 / (1 - weight_dropout).
  """

  def __init__(self, cell, d_model, carry_state=True, initializer=None,
               fast_backward=True, weight_dropout=0.0, mode='train'):
    super().__init__(n_in=1, n_out=1, name=f'{cell.name.upper()}_{d_model}')
    self._cell = cell
    self._d_model = d_model
    self._carry_state = carry_state
    self._initializer = initializer
    self._fast_backward = fast_backward
    if not 0.0 <= weight_dropout < 1.0:
      raise ValueError(f'weight_dropout must be in [0, 1), got {weight_dropout}')
    self._weight_dropout = weight_dropout
    self._mode = mode

  @property
  def cell(self):
    """The lm_trax.cells.Cell this layer runs."""
    return self._cell

  @property
  def d_model(self):
    return self._d_model

  def zero_state(self, batch_size):
    return self._cell.zero_state(batch_size, self._d_model)

  def init_weights_and_state(self, input_signature):
    specs = self._cell.weights(input_signature.shape[-1], self._d_model)
    # At least 4 keys: split(rng, n) draws other keys for other n, and the
    # LSTM, GRU and RNN weights are the ones their published runs began from.
    rngs = jax.random.split(self.rng, max(4, len(specs)))
    self.weights = tuple(_init(self._initializer, spec.shape, rng,
                               spec.initializer)
                         for spec, rng in zip(specs, rngs))
    self.state = self.zero_state(input_signature.shape[0])

  def forward(self, x):
    weights = self._cell.named(self.weights)
    batch_size = x.shape[0]
    initial = self.state
    if not self._carry_state or initial[0].shape[0] != batch_size:
      initial = self.zero_state(batch_size)  # Static shapes: a trace-time test.
    initial = tuple(jax.lax.stop_gradient(s) for s in initial)
    weights.update(self._dropped(self._cell.recurrent(self.weights)))
    hs, final = recurrence.layer(self._cell, x, weights, initial,
                                 self._fast_backward)
    # Without carry_state the state keeps its initial, fixed shape (a new
    # shape per length bucket would mean a new compilation).
    if self._carry_state:
      self.state = tuple(jax.lax.stop_gradient(s) for s in final)
    return hs  # (B, T, d)

  def _dropped(self, recurrent):
    """The step's weights (a dict), the hidden-to-hidden matrices masked by
    weight dropping in training."""
    recurrent = dict(recurrent)
    if self._mode != 'train' or not self._weight_dropout:
      return recurrent
    keep = 1.0 - self._weight_dropout
    matrices = [name for name, w in recurrent.items() if w.ndim == 2]
    for index, name in enumerate(matrices):
      rng = self.rng if index == 0 else jax.random.fold_in(self.rng, index)
      mask = jax.random.bernoulli(rng, keep, recurrent[name].shape)
      recurrent[name] = recurrent[name] * mask.astype(jnp.float32) / keep
    return recurrent


class ContextWindow(base.Layer):
  """The last n_context token ids at every position, carried across batches.

  Input:  (B, T) int ids.
  Output: (B, T, n_context) int ids; output[b, t] = ids[b, t-n_context+1 .. t]
  (oldest first), reaching into the previous batch through the state, or pad
  (0) before the start of the stream.

  State: (B, n_context - 1) int ids, the last ids seen.
  """

  def __init__(self, n_context, carry_state=True):
    super().__init__(n_in=1, n_out=1, name=f'ContextWindow_{n_context}')
    if n_context < 1:
      raise ValueError(f'n_context must be >= 1, got {n_context}')
    self._n = n_context
    self._carry_state = carry_state

  def zero_state(self, batch_size):
    return jnp.zeros((batch_size, self._n - 1), jnp.int32)  # Pad ids.

  def init_weights_and_state(self, input_signature):
    self.state = self.zero_state(input_signature.shape[0])

  def forward(self, ids):
    batch_size, length = ids.shape
    history = self.state
    if not self._carry_state or history.shape[0] != batch_size:
      history = self.zero_state(batch_size)
    padded = jnp.concatenate([history, ids.astype(jnp.int32)], axis=1)  # (B, n-1+T)
    windows = jnp.stack([padded[:, k:k + length] for k in range(self._n)],
                        axis=-1)  # (B, T, n)
    if self._carry_state:
      self.state = padded[:, padded.shape[1] - (self._n - 1):]
    return windows


class TiedEmbedding(base.Layer):
  """One (V, d) table, used twice in a model (trax shares a reused layer).

  On int ids (B, T) it looks up vectors (B, T, d); on float vectors (B, T, d)
  it returns logits (B, T, V) = vectors @ table^T (add a bias layer after it),
  multiplied in `precision`. Press & Wolf 2017, Inan et al. 2017.
  """

  def __init__(self, vocab_size, d_model, initializer=None,
               precision=precision_lib.DEFAULT):
    super().__init__(n_in=1, n_out=1, name=f'TiedEmbedding_{vocab_size}_{d_model}')
    self._vocab_size = vocab_size
    self._d_model = d_model
    self._initializer = initializer
    self._precision = precision_lib.check(precision)

  def init_weights_and_state(self, input_signature):
    fallback = tl.RandomNormalInitializer(stddev=self._d_model ** -0.5)
    self.weights = _init(self._initializer, (self._vocab_size, self._d_model),
                         self.rng, fallback)

  def forward(self, x):
    if jnp.issubdtype(x.dtype, jnp.integer):
      return jnp.take(self.weights, x, axis=0, mode='clip')
    flat = x.reshape((-1, x.shape[-1]))  # One 2-D matmul, as in FlatDense.
    logits = precision_lib.matmul(flat, self.weights.T, self._precision)
    return logits.reshape(x.shape[:-1] + (self._vocab_size,))


class FlatDense(tl.Dense):
  """tl.Dense computed as one 2-D matmul: (..., d) -> (N, d) @ (d, n) -> (..., n).

  The same function, weights ((d, n) kernel, (n,) bias), initializers and
  name ('Dense_<n>', so run directories saved with tl.Dense still match) as
  tl.Dense. Only the shapes XLA sees differ: on (B, T, d) inputs tl.Dense's
  3-D dot makes XLA:CPU's backward pass write the (B, T, V) output gradient
  a second time, transposed, for the kernel's gradient; on the flattened
  (B*T, d) matmul it does not. With the flattened loss
  (lm_trax.losses) this halves the time of the PTB LSTM's output layer.
  The matmul is in `precision` (lm_trax.precision).
  """

  def __init__(self, n_units, precision=precision_lib.DEFAULT, **dense_args):
    super().__init__(n_units, **dense_args)
    self._precision = precision_lib.check(precision)

  def forward(self, x):
    flat = x.reshape((-1, x.shape[-1]))  # (N, d), N = B * T
    if self._use_bias:
      w, b = self.weights
      y = precision_lib.matmul(flat, w, self._precision) + b
    else:
      y = precision_lib.matmul(flat, self.weights, self._precision)
    return y.reshape(x.shape[:-1] + (self._n_units,))


class Bias(base.Layer):
  """Adds a learned (n_units,) bias to the last axis."""

  def __init__(self, n_units, initializer=None):
    super().__init__(n_in=1, n_out=1, name=f'Bias_{n_units}')
    self._n_units = n_units
    self._initializer = initializer

  def init_weights_and_state(self, input_signature):
    zeros = lambda shape, rng: jnp.zeros(shape)
    self.weights = _init(self._initializer, (self._n_units,), self.rng, zeros)

  def forward(self, x):
    return x + self.weights


class WordTypeDropoutMask(base.Layer):
  """Embedding dropout's mask: whole word types dropped in mode 'train'.

  Input:  (B, T) int ids.
  Output: (B, T, 1) float32, mask[ids] / (1 - rate) for one (V,) Bernoulli
  mask drawn per batch, so every occurrence of a dropped word in the batch is
  zero (Gal & Ghahramani 2016; AWD-LSTM's dropoute). Multiply the embedded
  vectors by it. Ones in every other mode.
  """

  def __init__(self, vocab_size, rate, mode='train'):
    super().__init__(n_in=1, n_out=1, name=f'WordTypeDropout_{rate}')
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'embedding_dropout must be in [0, 1), got {rate}')
    self._vocab_size = vocab_size
    self._rate = rate
    self._mode = mode

  def forward(self, ids):
    if self._mode != 'train' or not self._rate:
      return jnp.ones(ids.shape + (1,), jnp.float32)
    keep = 1.0 - self._rate
    mask = jax.random.bernoulli(self.rng, keep, (self._vocab_size,))
    mask = mask.astype(jnp.float32) / keep  # (V,)
    return jnp.take(mask, ids, axis=0, mode='clip')[..., None]


def _penalty(kind, x):
  """Mean squared activation ('ar') or step difference ('tar') of x (B, T, d)."""
  if kind == 'ar':
    return jnp.mean(jnp.square(x))
  return jnp.mean(jnp.square(x[:, 1:] - x[:, :-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _add_penalty_gradient(kind, coefficient, x):
  return x


def _add_penalty_gradient_fwd(kind, coefficient, x):
  return x, x


def _add_penalty_gradient_bwd(kind, coefficient, x, g):
  return (g + coefficient * jax.grad(functools.partial(_penalty, kind))(x),)


_add_penalty_gradient.defvjp(_add_penalty_gradient_fwd,
                             _add_penalty_gradient_bwd)


class ActivationPenalty(base.Layer):
  """AR or TAR (Merity et al. 2017) on hidden states, as an identity layer.

  Input and output: (B, T, d) hidden states, unchanged. In mode 'train' the
  backward pass adds the gradient of
    'ar':  coefficient * mean(h ** 2)                  (activation reg.)
    'tar': coefficient * mean((h[:, t+1] - h[:, t]) ** 2)  (temporal AR)
  (means over every element, as AWD-LSTM), so the model trains on
  loss + penalty while its outputs, and so the logged cross entropy, stay
  the plain ones.

  State: (B,) float32, the penalty summed over the steps since it was last
  zeroed, spread evenly over the rows (batch-major like every lm_trax state,
  so it splits over devices); `penalty_sums(model)` reads it for logging. A
  batch whose size differs from the state's adds nothing to it.
  """

  def __init__(self, kind, coefficient, mode='train'):
    if kind not in ('ar', 'tar'):
      raise ValueError(f"kind must be 'ar' or 'tar', got {kind!r}")
    if coefficient < 0:
      raise ValueError(f'the {kind.upper()} coefficient must be >= 0, got '
                       f'{coefficient}')
    super().__init__(n_in=1, n_out=1, name=f'{kind.upper()}_{coefficient}')
    self._kind = kind
    self._coefficient = float(coefficient)
    self._mode = mode

  def init_weights_and_state(self, input_signature):
    self.state = jnp.zeros((input_signature.shape[0],), jnp.float32)

  def forward(self, x):
    if self._mode != 'train' or not self._coefficient:
      return x
    if self.state.shape[0] == x.shape[0]:
      value = self._coefficient * _penalty(self._kind, x)
      self.state = self.state + jax.lax.stop_gradient(value) / x.shape[0]
    return _add_penalty_gradient(self._kind, self._coefficient, x)


def penalty_sums(model, state):
  """The sum of every ActivationPenalty's accumulated value in `state` (a
  state tree of `model`, possibly split over devices): a float."""
  total = 0.0
  for layer, layer_state in _leaf_layers_with_state(model, state):
    if isinstance(layer, ActivationPenalty):
      total += float(np.sum(np.asarray(layer_state)))
  return total


def zero_penalty_sums(model, state):
  """`state` with every ActivationPenalty's accumulated value zeroed."""
  return _map_leaf_states(
      model, state, lambda layer, s: (
          zero_state_tree(s) if isinstance(layer, ActivationPenalty) else s))


def zero_carried_state(model, state):
  """`state` with the carried state zeroed, the AR/TAR sums kept."""
  return _map_leaf_states(
      model, state, lambda layer, s: (
          s if isinstance(layer, ActivationPenalty) else zero_state_tree(s)))


def _leaf_layers_with_state(layer, state):
  """(leaf layer, its state) for every leaf layer of `layer`."""
  if not layer.sublayers:
    yield layer, state
    return
  for sublayer, sub_state in zip(layer.sublayers, state):
    yield from _leaf_layers_with_state(sublayer, sub_state)


def _map_leaf_states(layer, state, fn):
  """The state tree of `layer` with fn(leaf layer, its state) at each leaf."""
  if not layer.sublayers:
    return fn(layer, state)
  return tuple(_map_leaf_states(sublayer, sub_state, fn)
               for sublayer, sub_state in zip(layer.sublayers, state))


def count_parameters(model):
  """The number of trainable numbers in an initialized model (a tied table
  counted once)."""
  return int(sum(np.size(w) for w in _unique_leaves(model.weights)))


def _unique_leaves(weights):
  seen = set()
  for leaf in jax.tree_util.tree_leaves(weights):
    if id(leaf) not in seen:
      seen.add(id(leaf))
      yield leaf


def zero_state_tree(state):
  """Returns `state` with every array zeroed: the reset value of all carried
  state in lm_trax models (zero hidden states; pad id 0 for ContextWindow).

  Works on any state tree, e.g. the Loop's replicated multi-device one.
  """
  return jax.tree_util.tree_map(jnp.zeros_like, state)


def reset_carried_state(model):
  """Zeros the carried state of every stateful sublayer of `model`, in place."""
  model.state = zero_state_tree(model.state)


def signature(batch_size, seq_len):
  """The input signature of an LM: int32 ids of shape (batch_size, seq_len)."""
  return shapes.ShapeDtype((batch_size, seq_len), np.int32)
