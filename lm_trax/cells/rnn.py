"""The vanilla tanh RNN cell (Elman 1990; Mikolov et al. 2010's RNN LM),
with a hand-written backward.

  h = tanh(x w_x + b + h w_h)
"""

import dataclasses

import jax
from jax import numpy as jnp

from lm_trax import cells
from lm_trax import recurrence


@cells.register
@dataclasses.dataclass(frozen=True)
class RNN(cells.Cell):
  """State (h,); weights w_x (d_in, d), w_h (d, d), b (d,)."""

  name = 'rnn'
  state_names = ('h',)
  n_gates = 1

  def weights(self, d_in, d):
    return (cells.Weight('w_x', (d_in, d)),
            cells.Weight('w_h', (d, d)),
            cells.Weight('b', (d,), cells.zeros))

  def step(self, weights, carry, xp):
    h = jnp.tanh(xp + self.matmul(carry[0], weights['w_h']))
    return (h,), h

  @property
  def fast_backward(self):
    return cells.FastBackward(self._forward, self._backward)

  def _forward(self, weights, x_proj, initial):
    final, hs = jax.lax.scan(lambda c, xp: self.step(weights, c, xp),
                             initial, x_proj)
    return (hs, final), (initial, hs)

  def _backward(self, weights, residuals, cotangents):
    initial, hs = residuals
    d_hs, d_final = cotangents
    w_h_t = weights['w_h'].T

    def step(carry, inputs):
      (dh,) = carry
      dh_out, h = inputs
      da = (dh + dh_out) * (1. - h * h)
      return (self.matmul(da, w_h_t),), da
    d_initial, das = jax.lax.scan(step, tuple(d_final), (d_hs, hs),
                                  reverse=True)
    d_w_h = recurrence.recurrent_matmul_gradient(
        recurrence.previous(initial[0], hs), das, self.precision)
    return das, {'w_h': d_w_h}, d_initial
