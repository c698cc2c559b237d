"""Bare compiled loops: the bounds bench/eval_speed.py and
bench/generate_speed.py hold lm_trax's evaluation and generation against.

Each is plain JAX written for the job alone: no trax, no layers, no state
trees, no host loop; the whole stream (or the whole sample) is one jitted
call, and it does the model's arithmetic and no more: the same matrix
products (the input projection of a chunk as one matmul, then the recurrent
matrix-vector products step by step, the output layer as one matmul) and
the same cell step (lm_trax.cells). What lm_trax takes beyond these is its
own overhead.

Each loop multiplies in the model's precision (lm_trax.precision), as the
model's layers do: the cell (the model's own, made by cells.make(name,
precision=...)) multiplies in its `precision`, and the loop's input
projections and output layer go through lm_trax.precision.matmul in that
same precision: float32, or bfloat16 operands with float32 sums. A bfloat16
command is thus held against a bfloat16 loop.

Weights are float32, laid out as lm_trax's layers store them: a recurrent
model's own (`recurrent_params_of`), so that the loop computes the model's
function; random ones of the NPLM's shapes (speed does not depend on them):

  embedding (V, d); per layer the cell's weights by name (cell.named: w_x
  (d, G*d), b (G*d,) and its recurrent weights, e.g. w_h (d, G*d)); output
  w (d, V), b (V,). The cell's step (lm_trax.cells) is the one the model
  runs: one definition of each cell's formulas.
  NPLM: features (V, d_model); hidden layers (n_context*d_model or d_hidden,
  d_hidden) + bias; output (d_hidden, V) + bias.
"""

import functools

import jax
from jax import numpy as jnp
import numpy as np

from lm_trax import precision as precision_lib


def recurrent_params_of(model):
  """(cell, params) holding the weights of an initialized lm_trax recurrent
  language model (untied, without embedding dropout), cell its
  lm_trax.cells.Cell, in the model's precision: the bare loop then computes
  the model's own function (tests/test_bench.py checks it)."""
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from lm_trax import layers  # pylint: disable=g-import-not-at-top

  def leaves(layer):
    if not layer.sublayers:
      yield layer
    for sublayer in layer.sublayers:
      yield from leaves(sublayer)
  with_weights = [layer for layer in leaves(model)
                  if not isinstance(layer.weights, tuple) or layer.weights]
  embedding, recurrent = with_weights[0], with_weights[1:-1]
  w_out, b_out = with_weights[-1].weights
  if (not isinstance(embedding, tl.Embedding) or not recurrent or
      not all(isinstance(r, layers.Recurrent) for r in recurrent)):
    raise ValueError(f'{model.name} is not an untied lm_trax recurrent '
                     'language model')
  params = {'embedding': embedding.weights, 'w_out': w_out, 'b_out': b_out,
            'layers': [layer.cell.named(layer.weights) for layer in recurrent]}
  return recurrent[0].cell, params


def zero_state(cell, n_layers, batch_size, d_model):
  """Per layer the cell's state, e.g. (c, h) for the LSTM; (B, d) zeros."""
  return tuple(cell.zero_state(batch_size, d_model) for _ in range(n_layers))


def _log_probs(logits, targets):
  """log p(targets) from logits (..., V): target logit - logsumexp."""
  target_logits = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return target_logits - jax.nn.logsumexp(logits, axis=-1)


def _recurrent_chunk(cell, params, state, inputs, targets):
  """One chunk of one stream: inputs, targets (T,) -> (state, log p (T,)),
  every matmul in the cell's precision."""
  x = params['embedding'][inputs]  # (T, d)
  new_state = []
  for layer, carry in zip(params['layers'], state):
    x_proj = cell.matmul(x, layer['w_x']) + layer['b']  # (T, G*d)
    carry, hs = jax.lax.scan(functools.partial(cell.step, layer),
                             carry, x_proj[:, None, :])  # (T, 1, G*d)
    new_state.append(carry)
    x = hs[:, 0, :]  # (T, d)
  logits = (precision_lib.matmul(x, params['w_out'], cell.precision) +
            params['b_out'])  # (T, V)
  return tuple(new_state), _log_probs(logits, targets)


@functools.partial(jax.jit, static_argnums=0)
def score_recurrent(cell, params, state, inputs, targets):
  """Exact evaluation of one stream, chunk after chunk, the state carried:
  inputs, targets (n_chunks, T) int32 -> log p (n_chunks, T)."""
  step = functools.partial(_recurrent_chunk, cell, params)
  _, log_probs = jax.lax.scan(lambda s, xy: step(s, *xy), state,
                              (inputs, targets))
  return log_probs


def nplm_params(vocab_size, d_model, d_hidden, n_context, n_layers, seed=0):
  """Random weights of Bengio et al.'s NPLM (no direct connections)."""
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 3 + 2 * n_layers))
  normal = lambda *shape: 0.1 * jax.random.normal(next(keys), shape)
  sizes = [n_context * d_model] + [d_hidden] * n_layers
  return {'features': normal(vocab_size, d_model),
          'hidden': [(normal(a, b), normal(b))
                     for a, b in zip(sizes[:-1], sizes[1:])],
          'w_out': normal(d_hidden, vocab_size), 'b_out': normal(vocab_size)}


def nplm_windows(inputs, n_context):
  """Each position's n_context previous ids, oldest first, zeros before the
  stream starts: inputs (N,) -> (N, n_context) int32 (host-side indexing,
  as the model's carried history would give)."""
  padded = np.concatenate([np.zeros(n_context - 1, np.int32),
                           np.asarray(inputs, np.int32)])
  starts = np.arange(len(inputs))[:, None] + np.arange(n_context)[None, :]
  return padded[starts]


@functools.partial(jax.jit, static_argnums=3)
def score_nplm(params, windows, targets, precision='float32'):
  """Exact evaluation, chunk after chunk: windows (n_chunks, T, n_context),
  targets (n_chunks, T) -> log p (n_chunks, T), the matmuls in precision."""
  matmul = functools.partial(precision_lib.matmul, precision=precision)

  def chunk(_, xy):
    windows, targets = xy
    x = params['features'][windows].reshape(windows.shape[0], -1)
    for w, b in params['hidden']:
      x = jnp.tanh(matmul(x, w) + b)
    logits = matmul(x, params['w_out']) + params['b_out']
    return None, _log_probs(logits, targets)
  return jax.lax.scan(chunk, None, (windows, targets))[1]


@functools.partial(jax.jit, static_argnums=(0, 4))
def sample_recurrent(cell, params, state, start_ids, length, key):
  """Gumbel-max sampling at temperature 1, one token per step, the sampled
  id fed back: start_ids (S,) int32 -> (S, length) int32 ids; every matmul
  in the cell's precision."""
  def step(carry, step_key):
    state, ids = carry
    x = params['embedding'][ids]  # (S, d)
    new_state = []
    for layer, layer_state in zip(params['layers'], state):
      layer_state, x = cell.step(layer, layer_state,
                                 cell.matmul(x, layer['w_x']) + layer['b'])
      new_state.append(layer_state)
    logits = (precision_lib.matmul(x, params['w_out'], cell.precision) +
              params['b_out'])  # (S, V)
    ids = jax.random.categorical(step_key, logits).astype(jnp.int32)
    return (tuple(new_state), ids), ids
  _, ids = jax.lax.scan(step, (state, start_ids), jax.random.split(key, length))
  return ids.T
