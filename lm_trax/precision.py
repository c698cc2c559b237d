"""The precision policy: in which number format a model multiplies.

Two precisions, one rule for every model and every way a model runs
(training, validation, evaluate, score, generate, the cache, dynamic
evaluation, lm_trax.load):

  'float32'   everything in float32 (the default).
  'bfloat16'  the operands of every matmul with a weight (input projections,
              recurrent products, output layer, NPLM layers) are rounded to
              bfloat16 and the products summed in float32, forward and
              backward (the two gradient matmuls take bfloat16 operands too).
              Everything else stays float32: the parameters, their gradients
              and the optimizer state (so checkpoints are float32), the
              recurrent state and gate arithmetic, the embeddings, the
              softmax / log-sum-exp and the loss.

This is the split of mixed-precision training on TPUs and GPUs (flax's
dtype=bfloat16 with param_dtype=float32, DeepMind's jmp, torch.autocast):
bfloat16 keeps float32's exponent range, so no loss scaling is needed, and
what it loses (16 of the 24 significant bits) is lost only in the operands of
sums that are accumulated in float32.

Every layer that multiplies by a weight calls `matmul(x, w, precision)`; a
recurrent cell calls it through `Cell.matmul`. In float32 it is `x @ w`, the
same computation as before the policy existed.
"""

import functools
import inspect

import jax
from jax import numpy as jnp

FLOAT32 = 'float32'
BFLOAT16 = 'bfloat16'
PRECISIONS = (FLOAT32, BFLOAT16)
DEFAULT = FLOAT32


def check(precision):
  """Returns precision if it is one of PRECISIONS, else raises ValueError
  naming them."""
  if not isinstance(precision, str) or precision not in PRECISIONS:
    choices = ' or '.join(map(repr, PRECISIONS))
    raise ValueError(f'precision must be {choices}, got {precision!r}')
  return precision


def matmul(x, w, precision=DEFAULT):
  """x (..., k) @ w (k, n) -> (..., n) float32, under the policy.

  'float32': x @ w. 'bfloat16': x and w rounded to bfloat16, products summed
  in float32; its gradients are the two matmuls of the backward pass, each
  with bfloat16 operands and float32 sums, returned in x's and w's own
  dtypes (float32), so weight gradients are never rounded.
  """
  if check(precision) == FLOAT32:
    return x @ w
  return _bfloat16_matmul(x, w)


def _dot(a, b):
  return jnp.dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                 preferred_element_type=jnp.float32)


@jax.custom_vjp
def _bfloat16_matmul(x, w):
  return _dot(x, w)


def _bfloat16_matmul_fwd(x, w):
  x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  # Residuals: the rounded operands (half the memory) and the dtypes to
  # return gradients in (zero-size arrays: a custom VJP keeps only arrays).
  dtypes = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))
  return _dot(x16, w16), (x16, w16, dtypes)


def _bfloat16_matmul_bwd(residuals, g):
  x16, w16, (x_dtype, w_dtype) = residuals
  g16 = g.astype(jnp.bfloat16)
  dx = _dot(g16, w16.T)                                   # (..., k)
  flat_x = x16.reshape((-1, x16.shape[-1]))               # (N, k)
  dw = _dot(flat_x.T, g16.reshape((-1, g16.shape[-1])))   # (k, n)
  return dx.astype(x_dtype.dtype), dw.astype(w_dtype.dtype)


_bfloat16_matmul.defvjp(_bfloat16_matmul_fwd, _bfloat16_matmul_bwd)


def bind(model_fn, precision):
  """model_fn with precision=precision, the way every lm_trax command builds
  a model. A model function without a precision parameter (a user's own)
  is returned unchanged for 'float32'.

  Raises:
    ValueError: for an unknown precision, or 'bfloat16' for a model function
      that takes no precision.
  """
  check(precision)
  if _takes_precision(model_fn):
    return functools.partial(model_fn, precision=precision)
  if precision != FLOAT32:
    name = getattr(model_fn, '__name__', repr(model_fn))
    raise ValueError(f'the model {name} takes no precision argument, so it '
                     f"runs in float32 only; add precision='float32' to its "
                     f'parameters and pass it to lm_trax.precision.matmul')
  return model_fn


def _takes_precision(model_fn):
  try:
    return 'precision' in inspect.signature(model_fn).parameters
  except (TypeError, ValueError):
    return False
