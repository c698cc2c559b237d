"""The training loss: weighted cross entropy from logits, fused.

trax's WeightedCategoryCrossEntropy computes
    -sum(one_hot(targets, V) * log_softmax(logits), axis=-1)
which builds (B, T, V) one-hot and log-probability tensors going forward and
more of them going back: on the PTB LSTM's logits (400 tokens x 10,001) its
forward and backward pass take about 2.5x as long as this one. Here

    cross_entropy = logsumexp(logits) - logits[target]

picks the target logit with take_along_axis, and the gradient,
softmax(logits) - one_hot(target), is written in one pass over the logits
(a custom VJP), never materializing a one-hot tensor. The loss layer works on
the logits flattened to (B*T, V): after layers.FlatDense's flat matmul, XLA
then writes the output gradient once, not a second time transposed (with
both, the output layer and loss take half the time of tl.Dense + trax's
loss). Same function, same gradient, within float rounding
(tests/test_speed_equivalence.py).

`cross_entropy` is plain JAX (exported models are scored with it, without
trax); the loss layer imports trax when it is built.
"""

import jax
from jax import numpy as jnp


@jax.custom_vjp
def cross_entropy(logits, targets):
  """-log softmax(logits)[targets]: (..., V) float, (...) int -> (...) float32."""
  return _cross_entropy_fwd(logits, targets)[0]


def _cross_entropy_fwd(logits, targets):
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # (...)
  picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32),
                               axis=-1)[..., 0]
  return log_z - picked, (logits, log_z, targets)


def _cross_entropy_bwd(residuals, g):
  logits, log_z, targets = residuals
  # d/dlogits = softmax(logits) - one_hot(targets), in one fused loop.
  vocab = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  is_target = vocab == targets[..., None].astype(jnp.int32)
  grad = (jnp.exp(logits - log_z[..., None]) -
          is_target.astype(logits.dtype)) * g[..., None]
  return grad, None  # Integer targets get no gradient.


cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def _psum_or_none(x, axis_name='batch'):
  """psum over the devices of a pmap, or None outside one (one device)."""
  try:
    return jax.lax.psum(x, axis_name)
  except (NameError, ValueError):  # Unbound axis name: plain jit.
    return None


def WeightedCrossEntropy():  # pylint: disable=invalid-name
  """The training loss layer: mean cross entropy over the weighted tokens.

  Inputs: logits (B, T, V), targets (B, T) int, weights (B, T) float.
  Output: a scalar, sum(w * CE) / sum(w), CE = -log softmax(logits)[target]
  (the fused `cross_entropy`).

  On several devices (trax's pmap, axis 'batch'; see lm_trax.parallel) its
  value is the loss of the whole global batch on every device, and its
  gradient on each device is that device's share, which the trainer averages
  over the devices.
  """
  def f(logits, targets, weights):
    # Flat (N, V) logits: with layers.FlatDense's flat matmul before it, XLA
    # writes the output gradient once (see FlatDense).
    per_token = cross_entropy(logits.reshape((-1, logits.shape[-1])),
                              targets.reshape(-1))
    total = jnp.sum(per_token * weights.reshape(-1))
    n_weights = jnp.sum(weights)
    n_devices = _psum_or_none(1)
    if n_devices is None:
      return total / n_weights
    n_weights_all = jax.lax.psum(n_weights, 'batch')
    this_device = total * n_devices / n_weights_all  # Averaged: the mean.
    global_mean = jax.lax.psum(jax.lax.stop_gradient(total),
                               'batch') / n_weights_all
    return this_device + jax.lax.stop_gradient(global_mean - this_device)
  # Here, not above: cross_entropy scores exported models, without trax.
  from lm_trax import compat  # pylint: disable=g-import-not-at-top,unused-import  (before trax)
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  # trax's name: the training loss keeps its TensorBoard tag across versions.
  return tl.Fn('WeightedCategoryCrossEntropy', f)
