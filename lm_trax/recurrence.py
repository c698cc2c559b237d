"""The time loop of layers.Recurrent, with a hand-written backward pass.

`recurrence(cell, ...)` runs an LSTM, GRU or tanh-RNN cell over time-major
input projections and returns every hidden state and the final state. Its
value is exactly that of the straightforward loop (`reference_recurrence`,
lax.scan over the cell's step); only the gradient is computed differently.

Differentiating the straightforward loop, JAX's reverse loop computes at each
step both the hidden-state gradient (da_t @ W_h^T) and the step's share of the
weight gradient (h_{t-1}^T @ da_t, then adds it to a (d, G*d) accumulator).
Here, as cuDNN and PyTorch do, the reverse loop computes only da_t and
da_t @ W_h^T; the weight gradient is then one (d, T*B) @ (T*B, G*d) matmul
after the loop. The forward loop saves the gate activations for it (when
not differentiating, nothing is saved).

Shapes: x_proj (T, B, G*d) = x W + b for all steps (G = 4 lstm, 3 gru,
1 rnn), w_h (d, G*d), state a tuple of (B, d) arrays ((c, h) for lstm, (h,)
otherwise). Returns hs (T, B, d) and the final state.
"""

import functools

import jax
from jax import numpy as jnp

sigmoid = jax.nn.sigmoid


# The cells, straightforwardly: the definition of the function. -------------------
# Each step returns (new state, (h_t, activations)); the activations are what
# the hand-written backward pass needs, unused (and dropped) otherwise.

def _lstm_step(w_h, forget_bias, carry, xp):
  c, h = carry
  i, f, g, o = jnp.split(xp + h @ w_h, 4, axis=-1)
  i, f, g, o = sigmoid(i), sigmoid(f + forget_bias), jnp.tanh(g), sigmoid(o)
  c = f * c + i * g
  h = o * jnp.tanh(c)
  return (c, h), (h, (c, jnp.concatenate([i, f, g, o], axis=-1)))


def _gru_step(w_h, b_hn, carry, xp):
  (h,) = carry
  d = h.shape[-1]
  hp = h @ w_h
  r, z = jnp.split(sigmoid(xp[:, :2 * d] + hp[:, :2 * d]), 2, axis=-1)
  hn = hp[:, 2 * d:] + b_hn
  n = jnp.tanh(xp[:, 2 * d:] + r * hn)
  h = (1. - z) * n + z * h
  return (h,), (h, jnp.concatenate([r, z, n, hn], axis=-1))


def _rnn_step(w_h, carry, xp):
  (h,) = carry
  h = jnp.tanh(xp + h @ w_h)
  return (h,), (h, ())


def _scan(cell, forget_bias, x_proj, weights, initial):
  """The loop over time: (hs (T, B, d), final state, activations)."""
  if cell == 'lstm':
    step = functools.partial(_lstm_step, weights[0], forget_bias)
  elif cell == 'gru':
    step = functools.partial(_gru_step, *weights)  # (w_h, b_hn)
  else:
    step = functools.partial(_rnn_step, weights[0])
  final, (hs, activations) = jax.lax.scan(step, initial, x_proj)
  return hs, final, activations


def reference_recurrence(cell, forget_bias, x_proj, weights, initial):
  """The straightforward loop, differentiated by JAX: (hs, final)."""
  hs, final, _ = _scan(cell, forget_bias, x_proj, weights, initial)
  return hs, final


# The same function with the hand-written gradient. -------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def recurrence(cell, forget_bias, x_proj, weights, initial):
  """reference_recurrence's value, with a faster gradient (module docstring).

  Args:
    cell: 'lstm', 'gru' or 'rnn'.
    forget_bias: added to the LSTM's forget gate pre-activation.
    x_proj: (T, B, G*d) input projections, bias included.
    weights: (w_h,), or (w_h, b_hn) for gru (the candidate's recurrent bias).
    initial: the initial state, a tuple of (B, d) arrays.

  Returns:
    (hs (T, B, d), final state).
  """
  return reference_recurrence(cell, forget_bias, x_proj, weights, initial)


def _forward(cell, forget_bias, x_proj, weights, initial):
  """The loop, also saving what the backward pass needs."""
  hs, final, activations = _scan(cell, forget_bias, x_proj, weights, initial)
  return (hs, final), (weights, initial, hs, activations)


def _backward(cell, unused_forget_bias, residuals, cotangents):
  weights, initial, hs, activations = residuals
  d_hs, d_final = cotangents
  w_h = weights[0]
  w_h_t = w_h.T
  h_prev = jnp.concatenate([initial[-1][None], hs[:-1]], axis=0)  # (T, B, d)

  if cell == 'lstm':
    cs, acts = activations
    c_prev = jnp.concatenate([initial[0][None], cs[:-1]], axis=0)

    def step(carry, inputs):
      dc, dh = carry
      dh_out, c, c_before, a = inputs
      i, f, g, o = jnp.split(a, 4, axis=-1)
      dh = dh + dh_out
      tanh_c = jnp.tanh(c)
      dc = dc + dh * o * (1. - tanh_c * tanh_c)
      da = jnp.concatenate([dc * g * i * (1. - i),          # d pre-activations
                            dc * c_before * f * (1. - f),
                            dc * i * (1. - g * g),
                            dh * tanh_c * o * (1. - o)], axis=-1)
      return (dc * f, da @ w_h_t), da
    (dc0, dh0), das = jax.lax.scan(step, tuple(d_final), (d_hs, cs, c_prev, acts),
                                   reverse=True)
    d_x_proj, d_hp, d_initial = das, das, (dc0, dh0)
  elif cell == 'gru':
    acts = activations

    def step(carry, inputs):
      (dh,) = carry
      dh_out, h_before, a = inputs
      r, z, n, hn = jnp.split(a, 4, axis=-1)
      dh = dh + dh_out
      da_n = dh * (1. - z) * (1. - n * n)
      da_r = da_n * hn * r * (1. - r)
      da_z = dh * (h_before - n) * z * (1. - z)
      d_hp = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
      return (dh * z + d_hp @ w_h_t,), (jnp.concatenate([da_r, da_z, da_n],
                                                         axis=-1), d_hp)
    (dh0,), (d_x_proj, d_hp) = jax.lax.scan(step, tuple(d_final),
                                            (d_hs, h_prev, acts), reverse=True)
    d_initial = (dh0,)
  else:
    def step(carry, inputs):
      (dh,) = carry
      dh_out, h = inputs
      da = (dh + dh_out) * (1. - h * h)
      return (da @ w_h_t,), da
    (dh0,), das = jax.lax.scan(step, tuple(d_final), (d_hs, hs), reverse=True)
    d_x_proj, d_hp, d_initial = das, das, (dh0,)

  # The recurrent weights' gradient: one matmul over all steps.
  d = w_h.shape[0]
  d_w_h = h_prev.reshape(-1, d).T @ d_hp.reshape(-1, d_hp.shape[-1])
  d_weights = (d_w_h,)
  if cell == 'gru':
    d_weights += (jnp.sum(d_hp[..., 2 * d:], axis=(0, 1)),)  # d b_hn
  return d_x_proj, d_weights, d_initial


recurrence.defvjp(_forward, _backward)
