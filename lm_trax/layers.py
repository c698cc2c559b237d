"""Layers the language models need and trax does not have.

* `Recurrent`: an LSTM, GRU or tanh-RNN layer over a whole sequence whose final
  hidden state is kept in the layer's trax `state` and, when the next batch has
  the same batch size, used as that batch's initial state (truncated BPTT on
  contiguous streams, as Zaremba et al. 2014). The input projection of all time
  steps is one matmul outside the time loop; only `h @ W_h` runs inside
  `lax.scan` (lm_trax.recurrence, with a hand-written backward pass).
* `ContextWindow`: the previous n token ids at every position, carrying the
  last n-1 ids across batches the same way (the NPLM's "state").
* `TiedEmbedding`: one table used twice: ids -> vectors, then vectors -> logits.
* `FlatDense`: tl.Dense as one 2-D matmul (faster on XLA:CPU, same function).

The carried state is never differentiated through (stop_gradient) and is reset
to zeros by `reset_carried_state(layer)` -- the training loop does that at the
start of every pass over the data, evaluation before every split. Every state
array is batch-major, (B, ...), so that on several devices it is split along
the batch like the data (lm_trax.parallel). With carry_state=False the state
is left as initialized, so its shape never changes from batch to batch.
"""

import jax
from jax import numpy as jnp
import numpy as np
from trax import layers as tl
from trax import shapes
from trax.layers import base

from lm_trax import recurrence

CELLS = ('lstm', 'gru', 'rnn')
_N_GATES = {'lstm': 4, 'gru': 3, 'rnn': 1}


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

  Cells (x_t input, h hidden; one fused matmul each for x and h):
    lstm: i, f, g, o = split(x W + h U + b); c = sigmoid(f + forget_bias) * c +
          sigmoid(i) * tanh(g); h = sigmoid(o) * tanh(c).
    gru:  r, z = sigmoid(split2(x W_rz + h U_rz + b_rz));
          n = tanh(x W_n + b_n + r * (h U_n + b_hn)); h = (1 - z) * n + z * h
          (the "reset after" GRU of cuDNN and PyTorch, which allows the fused
          recurrent matmul).
    rnn:  h = tanh(x W + h U + b).

  State: a tuple of (B, d_model) arrays -- (c, h) for lstm, (h,) otherwise.

  The time loop is lm_trax.recurrence.recurrence: the same function, with a
  hand-written backward pass (the recurrent weights' gradient as one matmul
  after the reverse loop); fast_backward=False differentiates the
  straightforward loop instead (the reference the tests compare it with).
  """

  def __init__(self, cell, d_model, carry_state=True, forget_bias=1.0,
               initializer=None, fast_backward=True):
    if cell not in CELLS:
      raise ValueError(f'cell must be one of {CELLS}, got {cell!r}')
    super().__init__(n_in=1, n_out=1, name=f'{cell.upper()}_{d_model}')
    self._cell = cell
    self._d_model = d_model
    self._carry_state = carry_state
    self._forget_bias = forget_bias
    self._initializer = initializer
    self._fast_backward = fast_backward

  @property
  def n_state_arrays(self):
    return 2 if self._cell == 'lstm' else 1

  def zero_state(self, batch_size):
    return tuple(jnp.zeros((batch_size, self._d_model), jnp.float32)
                 for _ in range(self.n_state_arrays))

  def init_weights_and_state(self, input_signature):
    d_in = input_signature.shape[-1]
    d, g = self._d_model, _N_GATES[self._cell]
    rngs = jax.random.split(self.rng, 4)
    glorot = tl.GlorotUniformInitializer()
    w_x = _init(self._initializer, (d_in, g * d), rngs[0], glorot)
    w_h = _init(self._initializer, (d, g * d), rngs[1], glorot)
    zeros = lambda shape, rng: jnp.zeros(shape)
    b = _init(self._initializer, (g * d,), rngs[2], zeros)
    if self._cell == 'gru':  # Recurrent bias of the candidate: r * (h U + b_hn).
      b_hn = _init(self._initializer, (d,), rngs[3], zeros)
      self.weights = (w_x, w_h, b, b_hn)
    else:
      self.weights = (w_x, w_h, b)
    self.state = self.zero_state(input_signature.shape[0])

  def forward(self, x):
    w_x, b = self.weights[0], self.weights[2]
    batch_size = x.shape[0]
    initial = self.state
    if not self._carry_state or initial[0].shape[0] != batch_size:
      initial = self.zero_state(batch_size)  # Static shapes: a trace-time test.
    initial = tuple(jax.lax.stop_gradient(s) for s in initial)

    # (T, B, G*d), time-major: transpose the (smaller) input, then one flat
    # (T*B, d_in) matmul for all steps (a 3-D dot is slower on XLA:CPU, see
    # FlatDense). Back to back, the transposes of stacked layers cancel out.
    length = x.shape[1]
    x_tm = jnp.transpose(x, (1, 0, 2)).reshape((length * batch_size, -1))
    x_proj = (x_tm @ w_x + b).reshape((length, batch_size, -1))
    loop = (recurrence.recurrence if self._fast_backward
            else recurrence.reference_recurrence)
    recurrent_weights = tuple(self.weights[1:2]) + tuple(self.weights[3:])
    hs, final = loop(self._cell, self._forget_bias, x_proj, recurrent_weights,
                     initial)  # (w_h,) or (w_h, b_hn) for gru
    # Without carry_state the state keeps its initial, fixed shape (a new
    # shape per length bucket would mean a new compilation).
    if self._carry_state:
      self.state = tuple(jax.lax.stop_gradient(s) for s in final)
    return jnp.transpose(hs, (1, 0, 2))  # (B, T, d)


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
  it returns logits (B, T, V) = vectors @ table^T (add a bias layer after it).
  Press & Wolf 2017, Inan et al. 2017.
  """

  def __init__(self, vocab_size, d_model, initializer=None):
    super().__init__(n_in=1, n_out=1, name=f'TiedEmbedding_{vocab_size}_{d_model}')
    self._vocab_size = vocab_size
    self._d_model = d_model
    self._initializer = initializer

  def init_weights_and_state(self, input_signature):
    fallback = tl.RandomNormalInitializer(stddev=self._d_model ** -0.5)
    self.weights = _init(self._initializer, (self._vocab_size, self._d_model),
                         self.rng, fallback)

  def forward(self, x):
    if jnp.issubdtype(x.dtype, jnp.integer):
      return jnp.take(self.weights, x, axis=0, mode='clip')
    flat = x.reshape((-1, x.shape[-1]))  # One 2-D matmul, as in FlatDense.
    return (flat @ self.weights.T).reshape(x.shape[:-1] + (self._vocab_size,))


class FlatDense(tl.Dense):
  """tl.Dense computed as one 2-D matmul: (..., d) -> (N, d) @ (d, n) -> (..., n).

  The same function, weights ((d, n) kernel, (n,) bias), initializers and
  name ('Dense_<n>', so run directories saved with tl.Dense still match) as
  tl.Dense. Only the shapes XLA sees differ: on (B, T, d) inputs tl.Dense's
  3-D dot makes XLA:CPU's backward pass write the (B, T, V) output gradient
  a second time, transposed, for the kernel's gradient; on the flattened
  (B*T, d) matmul it does not. With the flattened loss
  (lm_trax.losses) this halves the time of the PTB LSTM's output layer.
  """

  def forward(self, x):
    flat = x.reshape((-1, x.shape[-1]))  # (N, d), N = B * T
    return super().forward(flat).reshape(x.shape[:-1] + (self._n_units,))


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
