"""The LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate, Gers et
al. 2000), as cuDNN and PyTorch compute it, with a hand-written backward.

  i, f, g, o = split(x w_x + b + h w_h)            four (B, d) pre-activations
  c = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(g)
  h = sigmoid(o) * tanh(c)
"""

import dataclasses

import jax
from jax import numpy as jnp

from lm_trax import cells
from lm_trax import recurrence

sigmoid = jax.nn.sigmoid


@cells.register
@dataclasses.dataclass(frozen=True)
class LSTM(cells.Cell):
  """State (c, h); weights w_x (d_in, 4d), w_h (d, 4d), b (4d,), gates in the
  order i, f, g, o. forget_bias is added to the forget gate's pre-activation
  (1.0 as Jozefowicz et al. 2015; Zaremba et al. use 0)."""
  forget_bias: float = 1.0

  name = 'lstm'
  state_names = ('c', 'h')
  n_gates = 4

  def weights(self, d_in, d):
    return (cells.Weight('w_x', (d_in, 4 * d)),
            cells.Weight('w_h', (d, 4 * d)),
            cells.Weight('b', (4 * d,), cells.zeros))

  def step(self, weights, carry, xp):
    (c, h), (h, _) = self._step_saving(weights['w_h'], carry, xp)
    return (c, h), h

  def _step_saving(self, w_h, carry, xp):
    """The step, also returning what the backward pass reads: (c, h), (h,
    (c, the four gate activations (B, 4d)))."""
    c, h = carry
    i, f, g, o = jnp.split(xp + self.matmul(h, w_h), 4, axis=-1)
    i, f, g, o = sigmoid(i), sigmoid(f + self.forget_bias), jnp.tanh(g), sigmoid(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), (h, (c, jnp.concatenate([i, f, g, o], axis=-1)))

  @property
  def fast_backward(self):
    return cells.FastBackward(self._forward, self._backward)

  def _forward(self, weights, x_proj, initial):
    final, (hs, saved) = jax.lax.scan(
        lambda carry, xp: self._step_saving(weights['w_h'], carry, xp),
        initial, x_proj)
    return (hs, final), (initial, hs, saved)

  def _backward(self, weights, residuals, cotangents):
    initial, hs, (cs, acts) = residuals
    d_hs, d_final = cotangents
    w_h_t = weights['w_h'].T
    c_prev = recurrence.previous(initial[0], cs)

    def step(carry, inputs):
      dc, dh = carry
      dh_out, c, c_before, a = inputs
      i, f, g, o = jnp.split(a, 4, axis=-1)
      dh = dh + dh_out
      tanh_c = jnp.tanh(c)
      dc = dc + dh * o * (1. - tanh_c * tanh_c)
      da = jnp.concatenate([dc * g * i * (1. - i),  # d pre-activations
                            dc * c_before * f * (1. - f),
                            dc * i * (1. - g * g),
                            dh * tanh_c * o * (1. - o)], axis=-1)
      return (dc * f, self.matmul(da, w_h_t)), da
    d_initial, das = jax.lax.scan(step, tuple(d_final),
                                  (d_hs, cs, c_prev, acts), reverse=True)
    d_w_h = recurrence.recurrent_matmul_gradient(
        recurrence.previous(initial[1], hs), das, self.precision)
    return das, {'w_h': d_w_h}, d_initial
