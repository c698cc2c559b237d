"""The time loop of a recurrent layer: a cell's step scanned over time.

`layer(cell, x, weights, initial)` is a whole recurrent layer as a pure
function, batch-major (B, T, d_in) in and (B, T, d) out: the trax layer
(lm_trax.layers.Recurrent) and the trax-free forward of an exported model
(lm_trax.exported) both run it.

`recurrence(cell, x_proj, weights, initial)` runs any lm_trax.cells cell over
time-major input projections and returns every hidden state and the final
state. Its value is always that of `lax.scan` over the cell's step
(`reference_recurrence`), which JAX differentiates. A cell that has a
hand-written backward pass (`cell.fast_backward`) is differentiated with it
instead, through a custom VJP; tests/test_cells.py checks the two agree.

Why the hand-written backward is faster: differentiating the scan, JAX's
reverse loop computes at each step both the hidden-state gradient
(da_t @ W_h^T) and the step's share of the weight gradient (h_{t-1}^T @ da_t,
added to a (d, G*d) accumulator). As cuDNN and PyTorch do, the fast backward
passes compute only da_t and da_t @ W_h^T in the reverse loop; the weight
gradient is then one (d, T*B) @ (T*B, G*d) matmul after it
(`recurrent_matmul_gradient`).

Shapes: x_proj (T, B, G*d) = x w_x + b for all steps; weights a dict of the
cell's recurrent weights (cell.recurrent); initial a tuple of (B, d) arrays
(cell.state_names). Returns hs (T, B, d) and the final state.
"""

import functools

import jax
from jax import numpy as jnp

from lm_trax import precision as precision_lib


def layer(cell, x, weights, initial, fast_backward=True):
  """A recurrent layer: (hs (B, T, d), final state) for inputs x (B, T, d_in).

  weights: the cell's weights by name (cell.named), the recurrent ones as the
  step is to read them (dropped, in training); initial: the state, a tuple
  of (B, d) arrays. The input projection of all time steps is one flat
  (T*B, d_in) @ (d_in, G*d) matmul (a 3-D dot is slower on XLA:CPU); only the
  step runs in the time loop; fast_backward=False differentiates the scanned
  step instead of the cell's hand-written backward pass.
  """
  batch_size, length = x.shape[0], x.shape[1]
  # Time-major: transpose the (smaller) input; back to back, the transposes
  # of stacked layers cancel out.
  x_tm = jnp.transpose(x, (1, 0, 2)).reshape((length * batch_size, -1))
  x_proj = cell.matmul(x_tm, weights['w_x']) + weights['b']
  x_proj = x_proj.reshape((length, batch_size, -1))
  recurrent = {name: w for name, w in weights.items()
               if name not in ('w_x', 'b')}
  loop = recurrence if fast_backward else reference_recurrence
  hs, final = loop(cell, x_proj, recurrent, initial)
  return jnp.transpose(hs, (1, 0, 2)), final


def reference_recurrence(cell, x_proj, weights, initial):
  """lax.scan over cell.step, differentiated by JAX: (hs, final)."""
  final, hs = jax.lax.scan(functools.partial(cell.step, weights), initial,
                           x_proj)
  return hs, final


def recurrence(cell, x_proj, weights, initial):
  """The cell's loop: reference_recurrence's value, differentiated with the
  cell's hand-written backward pass if it has one. Returns (hs, final)."""
  if cell.fast_backward is None:
    return reference_recurrence(cell, x_proj, weights, initial)
  return _fast_recurrence(cell, x_proj, weights, initial)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fast_recurrence(cell, x_proj, weights, initial):
  return reference_recurrence(cell, x_proj, weights, initial)


def _forward(cell, x_proj, weights, initial):
  return cell.fast_backward.forward(weights, x_proj, initial)


def _backward(cell, saved, cotangents):
  weights, residuals = saved
  return cell.fast_backward.backward(weights, residuals, cotangents)


def _forward_saving_weights(cell, x_proj, weights, initial):
  outputs, residuals = _forward(cell, x_proj, weights, initial)
  return outputs, (weights, residuals)


_fast_recurrence.defvjp(_forward_saving_weights, _backward)


# Helpers for hand-written backward passes. ----------------------------------

def previous(initial, states):
  """Each step's previous state: initial (B, d), states (T, B, d) ->
  (T, B, d) = [initial, states[0], ..., states[T-2]]."""
  return jnp.concatenate([initial[None], states[:-1]], axis=0)


def recurrent_matmul_gradient(h_prev, d_product, precision='float32'):
  """The gradient of a recurrent matrix w read as h_prev @ w at every step:
  sum over t of h_prev[t]^T @ d_product[t], as one matmul in `precision`
  (lm_trax.precision; the cell's).

  Args:
    h_prev: (T, B, d) the states the products read.
    d_product: (T, B, n) the gradient of each step's h_prev[t] @ w.
    precision: 'float32', or 'bfloat16' (operands rounded, sums float32).

  Returns:
    (d, n), the gradient of w.
  """
  d = h_prev.shape[-1]
  return precision_lib.matmul(h_prev.reshape(-1, d).T,
                              d_product.reshape(-1, d_product.shape[-1]),
                              precision)
