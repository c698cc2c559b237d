"""Adapting a trained model while it reads: the continuous cache and dynamic
evaluation, both at evaluation time, both exact.

Both read the text as one stream, as plain evaluation does (lm_trax.evaluation:
primed with the end-of-line id, the state carried throughout), and change
only how p(token t) is computed, always from the tokens before t.

Continuous cache (Grave et al. 2017). With h_t the last recurrent layer's
output at step t (the vector the output layer turns into the logits of the
next token x_{t+1}) and a window of the last `size` pairs (h_i, x_{i+1}),
i < t:

  p_cache(w) = sum_i 1[x_{i+1} = w] softmax_i(theta * h_t . h_i)
  p(w)       = (1 - lam) * p_model(w) + lam * p_cache(w)

The window is a fixed-size array carried from call to call like the RNN
state, oldest pair first; it is empty at the start of the text, and while it
is empty p = p_model. Within a segment the pairs of earlier steps are visible
to later ones through one (T, size + T) score matrix with a causal mask, so
no loop over tokens is needed.

Dynamic evaluation (Krause et al. 2018). The text is cut into segments of
`segment` tokens. Each segment is scored with the current weights w, then w
takes one step on the gradient g of the segment's mean model loss, and the
state goes on into the next segment:

  sgd: w <- w - lr * g + decay * (w0 - w)
  rms: w <- w - lr * g / (rms + epsilon) + min(decay * r, 1) * (w0 - w)

w0 are the trained weights (the decay pulls towards them); rms is, per
weight, the root mean square of the gradient over segments of the train
split (`gradient_statistics`: STATISTICS_ROWS rows of `segment` tokens, as
Krause et al.'s code), and r = rms / (sum over weight arrays of mean(rms)).
min(., 1) is their clipping of r at 1 / decay, so the decay never overshoots
w0. Their paper averages the squared gradients, as here; their released code
sums them by default, i.e. uses sqrt(n) * rms for n statistics batches, so
its step with lr and epsilon is the step here with lr / sqrt(n) and
epsilon / sqrt(n) (n is about 1,860 on PTB: a factor of about 43). Their
PTB settings (lr 0.002, decay 0.02, epsilon 0.001) are thus a place to start
a search, not an answer; choose on the validation split. With a cache too,
the gradient is that of the model's own loss (the cache has no weights).

A token's probability is always computed before any update that saw it. The
segments run in a lax.scan, several per compiled call, with the weights, the
RNN state and the cache window as the scan's carry; the trained weights
(`Predictor.weights`, and the checkpoint on disk) are never changed.
"""

import dataclasses
import math
import weakref

import jax
from jax import numpy as jnp
import numpy as np

from lm_trax import inference
from lm_trax import losses
from lm_trax.errors import is_real_number
from lm_trax.errors import is_whole_number
from lm_trax.errors import UserError

# Rows of the batches the gradient statistics are gathered on (the batch size
# of Krause et al.'s statistics pass).
STATISTICS_ROWS = 100
RULES = ('sgd', 'rms')


def _is_number(value):
  return is_real_number(value) and math.isfinite(value)


class SettingError(UserError):
  """A field of a Cache or Dynamic outside its range. The message names it
  as the Python API takes it (cache['size']); the command line names its
  flag instead (`named`)."""

  def __init__(self, owner, field, rule, value):
    super().__init__(f'{owner}[{field!r}] must be {rule}, got {value!r}')
    self.owner, self.field, self.rule, self.value = owner, field, rule, value

  def named(self, name):
    """The same error, naming the setting `name` (e.g. a flag)."""
    return UserError(f'{name} must be {self.rule}, got {self.value!r}')


def _require(ok, owner, field, rule, value):
  if not ok:
    raise SettingError(owner, field, rule, value)


@dataclasses.dataclass(frozen=True)
class Cache:
  """The continuous cache's hyperparameters (see the module docstring).

  size: how many (h_i, x_{i+1}) pairs the window keeps (--cache_size).
  theta: the inverse temperature of the attention (--cache_theta).
  lam: the cache's weight in the mixture, in [0, 1] (--cache_lambda).
  """
  size: int
  theta: float
  lam: float

  def __post_init__(self):
    _require(is_whole_number(self.size) and self.size >= 1, 'cache', 'size',
             'a whole number >= 1', self.size)
    _require(_is_number(self.theta) and self.theta >= 0, 'cache', 'theta',
             'a number >= 0', self.theta)
    _require(_is_number(self.lam) and 0 <= self.lam <= 1, 'cache', 'lam',
             'in [0, 1]', self.lam)

  def label(self):
    """'cache=size/theta/lambda', as the result line names it."""
    return f'cache={self.size}/{float(self.theta)}/{float(self.lam)}'


@dataclasses.dataclass(frozen=True)
class Dynamic:
  """Dynamic evaluation's hyperparameters (see the module docstring).

  rule: 'sgd' or 'rms' (--dynamic_eval).
  lr: the step size, >= 0 (--dynamic_lr).
  decay: the pull towards the trained weights, in [0, 1] (--dynamic_decay).
  segment: tokens scored between two updates (--dynamic_segment); 5 is
    Krause et al.'s for word-level PTB.
  epsilon: added to rms (rule 'rms' only; --dynamic_epsilon). The default
    is Krause et al.'s PTB value 0.001 in this module's units (divided by
    sqrt(n), n about 1,860 statistics batches on PTB), with which every
    dynamic-evaluation result in docs/adaptation.md was measured.
  statistics_tokens: gather the rms statistics on the first this many
    tokens of the train split; None for all of it (--dynamic_stats_tokens).
  """
  rule: str
  lr: float
  decay: float = 0.0
  segment: int = 5
  epsilon: float = 2e-5
  statistics_tokens: int = None

  def __post_init__(self):
    _require(self.rule in RULES, 'dynamic', 'rule', "'sgd' or 'rms'",
             self.rule)
    _require(_is_number(self.lr) and self.lr >= 0, 'dynamic', 'lr',
             'a number >= 0', self.lr)
    _require(_is_number(self.decay) and 0 <= self.decay <= 1, 'dynamic',
             'decay', 'in [0, 1]', self.decay)
    _require(is_whole_number(self.segment) and self.segment >= 1, 'dynamic',
             'segment', 'a whole number >= 1', self.segment)
    _require(_is_number(self.epsilon) and self.epsilon > 0, 'dynamic',
             'epsilon', 'a number > 0', self.epsilon)
    _require(self.statistics_tokens is None or (
        is_whole_number(self.statistics_tokens) and
        self.statistics_tokens >= 1), 'dynamic', 'statistics_tokens',
             'a whole number >= 1', self.statistics_tokens)

  def label(self):
    """'dynamic=rule/lr/decay/segment[/epsilon]', as the result line names it."""
    text = (f'dynamic={self.rule}/{float(self.lr)}/{float(self.decay)}/'
            f'{self.segment}')
    if self.rule == 'rms':
      text += f'/{float(self.epsilon)}'
    return text


def as_cache(value):
  """A Cache from a Cache, a dict of its fields, or None."""
  return _as(Cache, value, 'cache')


def as_dynamic(value):
  """A Dynamic from a Dynamic, a dict of its fields, or None."""
  return _as(Dynamic, value, 'dynamic')


def _as(cls, value, name):
  if value is None or isinstance(value, cls):
    return value
  fields = [f.name for f in dataclasses.fields(cls)]
  if not isinstance(value, dict) or not set(value) <= set(fields):
    raise UserError(f'{name}= takes a dict with keys among {", ".join(fields)} '
                    f'(or lm_trax.adaptation.{cls.__name__}), got {value!r}')
  try:
    return cls(**value)
  except TypeError:
    raise UserError(f'{name}= is missing some of {", ".join(fields)}: got '
                    f'{value!r}') from None


def label(cache=None, dynamic=None):
  """How the result line names the adaptation: '' if none."""
  return ' '.join(a.label() for a in (cache, dynamic) if a is not None)


# The continuous cache --------------------------------------------------------------

def empty_window(size, d_hidden):
  """A window with no pairs: (keys (size, d), next ids (size,), positions
  (size,)), position -1 marking an empty slot."""
  return (jnp.zeros((size, d_hidden), jnp.float32),
          jnp.zeros((size,), jnp.int32),
          jnp.full((size,), -1, jnp.int32))


def cache_log_probs(window, hidden, targets, start, model_log_probs, theta,
                    lam):
  """log p(targets) of the mixture with the continuous cache, for a segment.

  Args:
    window: (keys (N, d) float32, next ids (N,) int32, positions (N,) int32):
      the last N pairs (h_i, x_{i+1}) before the segment, oldest first, each
      with its stream position i (-1: empty slot).
    hidden: (T, d) float32, h_t of the segment's steps.
    targets: (T,) int32, the tokens the steps predict (x_{t+1}).
    start: int32 scalar, the stream position of the segment's first step.
    model_log_probs: (T,) float32, log p_model(targets).
    theta: float32 scalar, the attention's inverse temperature.
    lam: float32 scalar, the cache's weight.

  Returns:
    (log p(targets) (T,) float32, the window after the segment).
  """
  keys, next_ids, positions = window
  size = keys.shape[0]
  steps = start + jnp.arange(hidden.shape[0], dtype=jnp.int32)  # (T,)
  keys = jnp.concatenate([keys, hidden.astype(jnp.float32)])  # (N + T, d)
  next_ids = jnp.concatenate([next_ids, targets.astype(jnp.int32)])
  positions = jnp.concatenate([positions, steps])
  # Pair i is visible from step t if it is one of the `size` steps before t.
  visible = ((positions[None] >= 0) & (positions[None] < steps[:, None]) &
             (positions[None] >= steps[:, None] - size))  # (T, N + T)
  scores = jnp.where(visible, theta * (hidden @ keys.T), -jnp.inf)
  log_attention = scores - jax.nn.logsumexp(scores, axis=-1, keepdims=True)
  hits = visible & (next_ids[None] == targets[:, None])
  log_p_cache = jax.nn.logsumexp(jnp.where(hits, log_attention, -jnp.inf),
                                 axis=-1)  # -inf where the word is not cached
  mixed = jnp.logaddexp(jnp.log1p(-lam) + model_log_probs,
                        jnp.log(lam) + log_p_cache)
  log_probs = jnp.where(visible.any(axis=-1), mixed, model_log_probs)
  return log_probs, (keys[-size:], next_ids[-size:], positions[-size:])


# Dynamic evaluation ---------------------------------------------------------------

def _updated(rule, weights, grads, constants):
  """The weights after one dynamic-evaluation step (module docstring)."""
  lr, decay = constants['lr'], constants['decay']
  if rule == 'sgd':
    return jax.tree_util.tree_map(
        lambda w, g, w0: w - lr * g + decay * (w0 - w),
        weights, grads, constants['trained'])
  epsilon = constants['epsilon']
  return jax.tree_util.tree_map(
      lambda w, g, w0, rms, rate: (w - lr * g / (rms + epsilon) +
                                   jnp.minimum(decay * rate, 1.0) * (w0 - w)),
      weights, grads, constants['trained'], constants['rms'],
      constants['rate'])


def _model_loss(forward, with_hidden, weights, state, inputs, targets, mask):
  """(mean loss over the unmasked tokens, (log p (B, T), hidden, state))."""
  if with_hidden:
    hidden, logits, state = forward(weights, state, inputs)
  else:
    (logits, state), hidden = forward(weights, state, inputs), None
  log_probs = -losses.cross_entropy(logits, targets)
  loss = -jnp.sum(log_probs * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return loss, (log_probs, hidden, state)


def _segment_step(forward, with_cache, rule, constants, carry, segment):
  """Scores one segment, then adapts: (new carry, log p (T,)).

  carry: {'state', 'position' (int32), ['window'], ['weights']};
  segment: (inputs, targets, mask), each (T,).
  """
  inputs, targets, mask = segment
  weights = carry['weights'] if rule else constants['trained']
  loss = lambda w: _model_loss(forward, with_cache, w, carry['state'],
                               inputs[None], targets[None],
                               mask[None].astype(jnp.float32))
  if rule:
    (_, (log_probs, hidden, state)), grads = jax.value_and_grad(
        loss, has_aux=True)(weights)
  else:
    _, (log_probs, hidden, state) = loss(weights)
  log_probs = log_probs[0]
  new = dict(carry, state=state,
             position=carry['position'] + inputs.shape[0])
  if with_cache:
    log_probs, new['window'] = cache_log_probs(
        carry['window'], hidden[0], targets, carry['position'], log_probs,
        constants['theta'], constants['lam'])
  if rule:  # After scoring: no token is scored by weights that saw it.
    new['weights'] = _updated(rule, weights, grads, constants)
  return new, log_probs


# Compiled runs, per predictor and static choice (cache size, rule); the
# float hyperparameters are arguments, so a grid of them compiles once.
_COMPILED = weakref.WeakKeyDictionary()


def _compiled_run(predictor, with_cache, rule):
  """jit(fn(constants, carry, inputs, targets, mask (K, T)) ->
  (carry, log p (K, T))): K segments in one lax.scan."""
  runs = _COMPILED.setdefault(predictor, {})
  key = ('run', with_cache, rule)
  if key not in runs:
    forward = (predictor.pure_hidden_forward() if with_cache
               else predictor.pure_forward)

    def run(constants, carry, inputs, targets, mask):
      step = lambda c, s: _segment_step(forward, with_cache, rule, constants,
                                        c, s)
      return jax.lax.scan(step, carry, (inputs, targets, mask))
    runs[key] = jax.jit(run)
  return runs[key]


def _hidden_size(predictor):
  hidden, _, _ = jax.eval_shape(
      predictor.pure_hidden_forward(), predictor.weights,
      predictor.fresh_state(1), jax.ShapeDtypeStruct((1, 1), jnp.int32))
  return hidden.shape[-1]


def adapted_log_probs(predictor, ids, cache=None, dynamic=None,
                      chunk_len=700, statistics=None, progress=None):
  """log p(ids[t] | eos, ids[:t]) for every t, with the cache and/or dynamic
  evaluation (see the module docstring); the state carried throughout.

  Args:
    predictor: an lm_trax.inference.Predictor; its weights are not changed.
    ids: (N,) int token ids, e.g. a whole split.
    cache: a Cache, or None.
    dynamic: a Dynamic, or None.
    chunk_len: tokens per compiled call (whole segments of dynamic.segment
      tokens). The result does not depend on it beyond float rounding.
    statistics: (rms, rate) of `gradient_statistics`, for the rule 'rms'.
    progress: optional callable(n_tokens_done).

  Returns:
    (N,) float64 log-probabilities.

  Raises:
    UserError: the cache on a model that is not recurrent.
  """
  if dynamic is not None and dynamic.rule == 'rms' and statistics is None:
    raise ValueError("the rule 'rms' needs gradient_statistics(...)")
  ids = np.asarray(ids, np.int32)
  n = len(ids)
  segment = dynamic.segment if dynamic else chunk_len
  n_segments = max(1, -(-n // segment))
  per_call = min(max(1, chunk_len // segment), n_segments)
  n_calls = -(-n_segments // per_call)
  shape = (n_calls, per_call, segment)
  inputs = np.zeros(np.prod(shape), np.int32)
  targets = np.zeros(np.prod(shape), np.int32)
  mask = np.zeros(np.prod(shape), bool)
  inputs[:n], targets[:n] = inference.primed(predictor.vocab.eos_id, ids)[:-1], ids
  mask[:n] = True
  inputs, targets, mask = (a.reshape(shape) for a in (inputs, targets, mask))

  constants, carry = _start(predictor, cache, dynamic, statistics)
  run = _compiled_run(predictor, cache is not None,
                      dynamic.rule if dynamic else None)
  pieces = []
  reporter = inference.CompletedProgress(progress)
  for k in range(n_calls):
    carry, log_probs = run(constants, carry, inputs[k], targets[k], mask[k])
    pieces.append(log_probs)  # Stays on device: calls queue up.
    reporter.queued(log_probs, min(per_call * segment,
                                   n - k * per_call * segment))
  reporter.finish()
  return np.concatenate([np.asarray(p, np.float64).reshape(-1)
                         for p in pieces])[:n]


def _start(predictor, cache, dynamic, statistics):
  """(constants, carry) at the start of the text."""
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  constants = {'trained': jax.tree_util.tree_map(jnp.asarray,
                                                 predictor.weights)}
  carry = {'state': predictor.fresh_state(1),
           'position': jnp.asarray(0, jnp.int32)}
  if cache is not None:
    constants.update(theta=f32(cache.theta), lam=f32(cache.lam))
    carry['window'] = empty_window(cache.size, _hidden_size(predictor))
  if dynamic is not None:
    constants.update(lr=f32(dynamic.lr), decay=f32(dynamic.decay),
                     epsilon=f32(dynamic.epsilon))
    if dynamic.rule == 'rms':
      constants['rms'], constants['rate'] = statistics
    # A copy: the scan's carry, never the trained arrays themselves.
    carry['weights'] = jax.tree_util.tree_map(jnp.array, predictor.weights)
  return constants, carry


# The statistics of the rule 'rms' --------------------------------------------------

def _compiled_statistics(predictor):
  """jit(fn(state, sums, inputs, targets (K, B, T)) -> (state, sums)): sums
  of squared gradients of the mean loss over K batches."""
  runs = _COMPILED.setdefault(predictor, {})
  if 'statistics' not in runs:
    forward = predictor.pure_forward

    def run(weights, state, sums, inputs, targets):
      def step(carry, batch):
        state, sums = carry
        grads, (_, _, state) = jax.grad(
            lambda w: _model_loss(forward, False, w, state, batch[0], batch[1],
                                  jnp.ones(batch[0].shape, jnp.float32)),
            has_aux=True)(weights)
        sums = jax.tree_util.tree_map(lambda s, g: s + g * g, sums, grads)
        return (state, sums), None
      return jax.lax.scan(step, (state, sums), (inputs, targets))[0]
    runs['statistics'] = jax.jit(run)
  return runs['statistics']


def gradient_statistics(predictor, train_ids, segment, max_tokens=None,
                        chunk_len=7000, progress=None):
  """(rms, rate) for the rule 'rms', gathered on the train split.

  The ids are laid out as STATISTICS_ROWS contiguous rows (fewer for a short
  text) cut into batches of `segment` tokens, the state carried, and the
  gradient of each batch's mean loss taken with the trained weights:

    rms  = sqrt(mean over batches of g ** 2)      per weight
    rate = rms / (sum over weight arrays of mean(rms))

  Args:
    predictor: an lm_trax.inference.Predictor.
    train_ids: (N,) int token ids of the train split.
    segment: tokens per row of a batch (the dynamic evaluation's segment).
    max_tokens: use only the first this many ids.
    chunk_len: about how many tokens one compiled call reads.
    progress: optional callable(n_tokens_done).

  Returns:
    Two weight trees of the predictor's structure.

  Raises:
    UserError: if there is less than one batch of text.
  """
  ids = np.asarray(train_ids, np.int32)[:max_tokens]
  rows = min(STATISTICS_ROWS, len(ids) // segment)
  if rows < 1:
    raise UserError(f'the gradient statistics need at least {segment} train '
                    f'tokens, got {len(ids)}')
  n_batches = len(ids) // (rows * segment)
  per_call = min(n_batches, max(1, chunk_len // (rows * segment)))
  n_batches -= n_batches % per_call  # Whole calls: one compiled shape.
  used = n_batches * rows * segment
  inputs = inference.primed(predictor.vocab.eos_id, ids)[:used]
  # Row r reads ids[r * L : (r + 1) * L]; batch k is columns k*T .. k*T+T-1.
  layout = lambda a: a.reshape(rows, n_batches, segment).transpose(1, 0, 2)
  inputs, targets = layout(inputs), layout(ids[:used])
  run = _compiled_statistics(predictor)
  state = predictor.fresh_state(rows)
  sums = jax.tree_util.tree_map(jnp.zeros_like, predictor.weights)
  reporter = inference.CompletedProgress(progress)
  for k in range(0, n_batches, per_call):
    window = slice(k, k + per_call)
    state, sums = run(predictor.weights, state, sums, inputs[window],
                      targets[window])
    reporter.queued(sums, per_call * rows * segment)
  reporter.finish()
  rms = jax.tree_util.tree_map(lambda s: jnp.sqrt(s / n_batches), sums)
  total = sum(jnp.mean(r) for r in jax.tree_util.tree_leaves(rms))
  rate = jax.tree_util.tree_map(lambda r: r / total, rms)
  return rms, rate
