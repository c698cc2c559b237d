"""The GRU cell (Cho et al. 2014) in its "reset after" form, as cuDNN and
PyTorch compute it, with a hand-written backward.

  r, z = sigmoid(split(x w_x_rz + b_rz + h w_h_rz))
  n = tanh(x w_x_n + b_n + r * (h w_h_n + b_hn))
  h = (1 - z) * n + z * h

Resetting after the recurrent product (r * (h w_h_n) rather than
(r * h) w_h_n) lets the three recurrent products be one (B, d) @ (d, 3d)
matmul.
"""

import dataclasses

import jax
from jax import numpy as jnp

from lm_trax import cells
from lm_trax import recurrence

sigmoid = jax.nn.sigmoid


@cells.register
@dataclasses.dataclass(frozen=True)
class GRU(cells.Cell):
  """State (h,); weights w_x (d_in, 3d), w_h (d, 3d), b (3d,), b_hn (d,) (the
  candidate's recurrent bias), gates in the order r, z, n."""

  name = 'gru'
  state_names = ('h',)
  n_gates = 3

  def weights(self, d_in, d):
    return (cells.Weight('w_x', (d_in, 3 * d)),
            cells.Weight('w_h', (d, 3 * d)),
            cells.Weight('b', (3 * d,), cells.zeros),
            cells.Weight('b_hn', (d,), cells.zeros))

  def step(self, weights, carry, xp):
    carry, (h, _) = self._step_saving(weights, carry, xp)
    return carry, h

  def _step_saving(self, weights, carry, xp):
    """The step, also returning (r, z, n, h w_h_n + b_hn) for the backward."""
    (h,) = carry
    d = h.shape[-1]
    hp = self.matmul(h, weights['w_h'])
    r, z = jnp.split(sigmoid(xp[:, :2 * d] + hp[:, :2 * d]), 2, axis=-1)
    hn = hp[:, 2 * d:] + weights['b_hn']
    n = jnp.tanh(xp[:, 2 * d:] + r * hn)
    h = (1. - z) * n + z * h
    return (h,), (h, jnp.concatenate([r, z, n, hn], axis=-1))

  @property
  def fast_backward(self):
    return cells.FastBackward(self._forward, self._backward)

  def _forward(self, weights, x_proj, initial):
    final, (hs, saved) = jax.lax.scan(
        lambda carry, xp: self._step_saving(weights, carry, xp),
        initial, x_proj)
    return (hs, final), (initial, hs, saved)

  def _backward(self, weights, residuals, cotangents):
    initial, hs, acts = residuals
    d_hs, d_final = cotangents
    w_h_t = weights['w_h'].T
    h_prev = recurrence.previous(initial[0], hs)

    def step(carry, inputs):
      (dh,) = carry
      dh_out, h_before, a = inputs
      r, z, n, hn = jnp.split(a, 4, axis=-1)
      dh = dh + dh_out
      da_n = dh * (1. - z) * (1. - n * n)
      da_r = da_n * hn * r * (1. - r)
      da_z = dh * (h_before - n) * z * (1. - z)
      d_hp = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
      return (dh * z + self.matmul(d_hp, w_h_t),), (
          jnp.concatenate([da_r, da_z, da_n], axis=-1), d_hp)
    d_initial, (d_x_proj, d_hp) = jax.lax.scan(
        step, tuple(d_final), (d_hs, h_prev, acts), reverse=True)
    d = h_prev.shape[-1]
    d_weights = {'w_h': recurrence.recurrent_matmul_gradient(
                     h_prev, d_hp, self.precision),
                 'b_hn': jnp.sum(d_hp[..., 2 * d:], axis=(0, 1))}
    return d_x_proj, d_weights, d_initial
