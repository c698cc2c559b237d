"""The Minimal Gated Unit (Zhou, Wu, Zhang & Zhou 2016, "Minimal gated unit
for recurrent neural networks"): a GRU with a single gate.

  f = sigmoid(x w_x_f + b_f + h u_f)
  n = tanh(x w_x_n + b_n + (f * h) u_n)
  h = (1 - f) * h + f * n

The worked example of a new cell: its weights and its step, nothing else.
JAX differentiates the scanned step (no hand-written backward), and every
command, the cache, dynamic evaluation and the regularizers work on it.
"""

import dataclasses

import jax
from jax import numpy as jnp

from lm_trax import cells


@cells.register
@dataclasses.dataclass(frozen=True)
class MGU(cells.Cell):
  """State (h,); weights w_x (d_in, 2d) and b (2d,) (f then n), u_f (d, d),
  u_n (d, d). forget_bias is added to f's pre-activation."""
  forget_bias: float = 0.0

  name = 'mgu'
  state_names = ('h',)
  n_gates = 2

  def weights(self, d_in, d):
    return (cells.Weight('w_x', (d_in, 2 * d)),
            cells.Weight('b', (2 * d,), cells.zeros),
            cells.Weight('u_f', (d, d)),
            cells.Weight('u_n', (d, d)))

  def step(self, weights, carry, xp):
    (h,) = carry
    xp_f, xp_n = jnp.split(xp, 2, axis=-1)
    f = jax.nn.sigmoid(xp_f + self.matmul(h, weights['u_f']) +
                       self.forget_bias)
    n = jnp.tanh(xp_n + self.matmul(f * h, weights['u_n']))
    h = (1. - f) * h + f * n
    return (h,), h
