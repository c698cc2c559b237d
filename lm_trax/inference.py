"""Running a trained model: one forward, one priming rule, one prompt reading.

Every way lm_trax runs a trained model goes through a Predictor: exact
evaluation (lm_trax.evaluation: the evaluate command and the exact validation
during training), scoring lines and next tokens (lm_trax.score), sampling
(lm_trax.generate) and the Python API (lm_trax.api).

  forward(weights, state, ids (B, T)) -> (logits (B, T, V), state)

is the model in eval mode (no dropout) as a pure function, the state carried
in and out (RNN hidden states; the NPLM's last n_context - 1 ids). It is the
only function that runs the model; it is jitted once per input shape.
`hidden_forward` runs the same layers with the same weights and also returns
the output of the model's body (lm_trax.models.RecurrentModel), the last
recurrent layer's states (B, T, d), which the continuous cache of
lm_trax.adaptation reads.

Priming: text is read as if it followed a line end. The model's first input
is the end-of-line id (<eos> for words and subwords, '\\n' for characters;
padding for characters without '\\n', as in text8), so the first token of a
split, of a scored line, of a prompt is predicted from a fresh state that has
seen one line end, as in training, where every line follows one.

The module imports trax only when a Predictor is built from a trax model, so
the commands that import it answer --help without it, and an exported model
(lm_trax.exported) runs without it.
"""

import jax
from jax import numpy as jnp
import numpy as np

from lm_trax import losses
from lm_trax.errors import UserError
from lm_trax.vocab import PAD_ID

# Lines scored together are padded to a multiple of this length, so that a
# few shapes (compilations) serve lines of every length.
LINE_PAD_MULTIPLE = 16
_UNUSED_RNG = jax.random.PRNGKey(0)  # Eval mode draws no randomness.


def pure_forward(model):
  """The forward of a trax language model with its state carried in and out:
  fn(weights, state, ids (B, T) int32) -> (logits (B, T, V), new state)."""
  def forward(weights, state, ids):
    return model.pure_fn(ids, weights, state, _UNUSED_RNG)
  return forward


def pure_hidden_forward(model):
  """The forward of a recurrent language model that also returns the vectors
  its head reads: fn(weights, state, ids (B, T) int32) ->
  (hidden (B, T, d), logits (B, T, V), new state).

  hidden is the output of the model's body (lm_trax.models.RecurrentModel),
  the last recurrent layer's states (in eval mode the dropout and penalty
  layers after it are identities): the h_t of the continuous cache
  (lm_trax.adaptation). The model's own layers run, with the same weights
  and state, in one trax Serial that keeps a copy of the body's output
  beside the logits.

  Raises:
    UserError: if the model is not recurrent (the NPLM).
  """
  if not hasattr(model, 'body'):
    raise _not_recurrent()
  from trax import layers as tl  # pylint: disable=g-import-not-at-top  (trax only with a model)
  n_body = len(model.body)
  # ids -> (logits, hidden): the body, a copy of its output, the head.
  with_hidden = tl.Serial(model.body, tl.Select([0, 0]), model.head)

  def forward(weights, state, ids):
    with_select = lambda tree: tuple(tree[:n_body]) + ((),) + tuple(
        tree[n_body:])
    (logits, hidden), new_state = with_hidden.pure_fn(
        ids, with_select(weights), with_select(state), _UNUSED_RNG)
    return hidden, logits, tuple(new_state[:n_body]) + tuple(
        new_state[n_body + 1:])
  return forward


def _not_recurrent():
  return UserError('this needs the hidden states of a recurrent model '
                   '(RecurrentLM: LSTMLM, GRULM, RNNLM or any cell); the '
                   'run\'s model has no recurrent layer (an NPLM?)')


class CompletedProgress:
  """Reports the tokens of a queued compiled call once it has been computed.

  JAX returns from a call before computing it, so a loop of calls counted at
  dispatch runs a progress bar ahead of the work (most of a split in its
  first seconds). Here call k's tokens are reported once call k has finished,
  waited for only after call k + 1 is queued, so the device is never idle.

    reporter = CompletedProgress(progress)   # progress: callable(n) or None
    for ...: out = run(...); reporter.queued(out, n_tokens)
    reporter.finish()
  """

  def __init__(self, progress):
    self._progress = progress
    self._pending = None

  def queued(self, result, n_tokens):
    """result: the call's output (any tree of arrays), n_tokens: its work."""
    if self._progress is None:
      return
    self.finish()
    self._pending = (result, n_tokens)

  def finish(self):
    """Waits for the last queued call and reports it."""
    if self._pending is not None:
      result, n_tokens = self._pending
      self._pending = None
      jax.block_until_ready(result)
      self._progress(n_tokens)


def primed(eos_id, ids):
  """The model's inputs for predicting ids: (T,) -> (T + 1,) int32, the
  end-of-line id first (see the module docstring). A character vocabulary
  without '\\n' (text8 is one line with none) has no end-of-line id
  (eos_id None): the padding id comes first instead."""
  start = PAD_ID if eos_id is None else eos_id
  return np.concatenate([[start], np.asarray(ids, np.int32)]).astype(np.int32)


def encode_prompt(vocab, prompt, unknown='map'):
  """A prompt's ids, and the tokens read as unknown.

  The vocabulary's rule (lm_trax.vocab: words split on whitespace, a line
  break is <eos>, a word missing from the vocabulary is read in lowercase if
  that is known, else as <unk>; subwords as encoded), except that an
  unfinished last line gets no <eos>: the model continues it. A subword
  prompt's last word counts as finished (its last subword ends in '_').

  Args:
    vocab: a lm_trax.vocab.Vocab.
    prompt: text, possibly empty.
    unknown: 'map' (<unk>), 'skip' (drop) or 'error', for tokens outside the
      vocabulary. Characters a char vocabulary without <unk> lacks are always
      an error (or skipped).

  Returns:
    (ids (P,) int32, unknown tokens in order).

  Raises:
    UserError: if the prompt is not a string, or naming the tokens that
      cannot be read.
  """
  if not isinstance(prompt, str):
    raise UserError(f'prompt must be a string, got {type(prompt).__name__}')
  tokens = vocab.split(prompt)
  if vocab.level == 'word' and not prompt.endswith('\n') and tokens:
    tokens = tokens[:-1]  # vocab.split ends every line with <eos>.
  unknown_tokens = [t for t in tokens if not vocab.knows(t)]
  if vocab.level == 'char' and unknown_tokens and unknown != 'skip' and (
      vocab.unk_id is None or unknown == 'error'):
    shown = ', '.join(repr(c) for c in sorted(set(unknown_tokens)))
    raise UserError(f'the prompt has {len(set(unknown_tokens))} character(s) '
                    f'the model does not know: {shown}; remove them (the '
                    f'vocabulary has {vocab.size - 1} characters)')
  return vocab.encode_tokens(tokens, unknown=unknown), unknown_tokens


class Predictor:
  """A language model in eval mode with its weights (see the module docstring).

  Built from an lm_trax model function (a trax model) or, for a model that
  runs without trax (lm_trax.exported), from its pure functions
  (`Predictor.from_functions`).

  Attributes:
    vocab: the lm_trax.vocab.Vocab the model reads.
    weights: the weights every method uses; may be replaced (the training
      loop hands in its current weights before each exact validation).
    pure_forward: (weights, state, ids) -> (logits, state), not jitted.
    forward: the same, jitted.
    model: the trax model, or None for a Predictor of pure functions.
  """

  def __init__(self, model_fn, vocab, weights=None):
    """model_fn(vocab_size=, mode=, carry_state=) builds the trax model (an
    lm_trax model function with its hyperparameters bound); weights default
    to a fresh initialization."""
    from lm_trax import layers  # pylint: disable=g-import-not-at-top  (trax)
    model = model_fn(vocab_size=vocab.size, mode='eval', carry_state=True)
    _, state = model.init(layers.signature(1, 1))
    self._set_up(vocab, pure_forward(model), state,
                 model.weights if weights is None else weights,
                 lambda: pure_hidden_forward(model))
    self.model = model

  @classmethod
  def from_functions(cls, vocab, forward, state, weights,
                     hidden_forward=None):
    """A Predictor of pure functions: forward(weights, state, ids (B, T)) ->
    (logits (B, T, V), state); state the state tree for one row (leaves
    (1, ...)); hidden_forward(weights, state, ids) -> (hidden (B, T, d),
    logits, state), or None if the model is not recurrent."""
    predictor = cls.__new__(cls)
    def hidden():
      if hidden_forward is None:
        raise _not_recurrent()
      return hidden_forward
    predictor._set_up(vocab, forward, state, weights, hidden)
    predictor.model = None
    return predictor

  def _set_up(self, vocab, forward, state, weights, hidden_forward_fn):
    self.vocab = vocab
    self._state_tree = state
    self._fresh_states = {}
    self.weights = weights
    self.pure_forward = forward
    self.forward = jax.jit(forward)
    self._log_probs = jax.jit(self._pure_log_probs)
    self._hidden_forward_fn = hidden_forward_fn
    self._hidden_forward = None

  def pure_hidden_forward(self):
    """(weights, state, ids (B, T)) -> (hidden (B, T, d), logits (B, T, V),
    state), not jitted: the last recurrent layer's outputs beside the
    logits (the module's `pure_hidden_forward` for a trax model).

    Raises:
      UserError: if the model is not recurrent.
    """
    return self._hidden_forward_fn()

  def hidden_forward(self, weights, state, ids):
    """`pure_hidden_forward()`, jitted, applied to (weights, state, ids)."""
    if self._hidden_forward is None:
      self._hidden_forward = jax.jit(self.pure_hidden_forward())
    return self._hidden_forward(weights, state, ids)

  def fresh_state(self, batch_size):
    """The state before any input, for batch_size rows (all zeros)."""
    if batch_size not in self._fresh_states:
      self._fresh_states[batch_size] = jax.tree_util.tree_map(
          lambda s: jnp.zeros((batch_size,) + s.shape[1:], s.dtype)
          if np.ndim(s) else jnp.zeros_like(s), self._state_tree)
    return self._fresh_states[batch_size]

  def _pure_log_probs(self, weights, state, inputs, targets):
    logits, state = self.pure_forward(weights, state, inputs)
    # logsumexp - target logit, without writing the (B, T, V) log-softmax.
    return -losses.cross_entropy(logits, targets), state

  def log_probs(self, state, inputs, targets):
    """(log p(targets) (B, T) float32, new state) for inputs (B, T)."""
    return self._log_probs(self.weights, state, inputs, targets)

  def stream_log_probs(self, ids, chunk_len, progress=None):
    """log p(ids[t] | eos, ids[:t]) for every t, the state carried throughout.

    Args:
      ids: (N,) int token ids, e.g. a whole split.
      chunk_len: tokens per compiled call; the last chunk is padded. The
        result does not depend on it beyond float rounding.
      progress: optional callable(n_tokens_done).

    Returns:
      (N,) float64 log-probabilities.
    """
    ids = np.asarray(ids, np.int32)
    n = len(ids)
    n_chunks = -(-n // chunk_len)
    inputs = np.zeros(n_chunks * chunk_len, np.int32)
    targets = np.zeros(n_chunks * chunk_len, np.int32)
    inputs[:n], targets[:n] = primed(self.vocab.eos_id, ids)[:-1], ids
    state = self.fresh_state(1)
    pieces = []
    reporter = CompletedProgress(progress)
    for k in range(n_chunks):
      window = slice(k * chunk_len, (k + 1) * chunk_len)
      log_probs, state = self.log_probs(state, inputs[None, window],
                                        targets[None, window])
      pieces.append(log_probs)  # Stays on device: calls queue up.
      reporter.queued(log_probs, min(chunk_len, n - k * chunk_len))
    reporter.finish()
    return np.concatenate([np.asarray(p[0], np.float64) for p in pieces])[:n]

  def lines_log_probs(self, lines, batch_size, progress=None):
    """Each line from a fresh state: (sum of log p, n_tokens) per line.

    Args:
      lines: list of (n_i,) int id arrays, each line's tokens including its
        end.
      batch_size: lines per compiled call (similar lengths are grouped).
      progress: optional callable(n_tokens_done).

    Returns:
      (sums (L,) float64, counts (L,) int) in the order of `lines`.
    """
    sums = np.zeros(len(lines))
    counts = np.array([len(line) for line in lines], int)
    order = np.argsort(counts, kind='stable')
    fresh = self.fresh_state(batch_size)
    for start in range(0, len(order), batch_size):
      group = order[start:start + batch_size]
      length = max(1, int(counts[group].max()))
      length = -(-length // LINE_PAD_MULTIPLE) * LINE_PAD_MULTIPLE
      inputs = np.zeros((batch_size, length), np.int32)
      targets = np.zeros((batch_size, length), np.int32)
      for row, i in enumerate(group):
        line = np.asarray(lines[i], np.int32)
        inputs[row, :len(line)] = primed(self.vocab.eos_id, line)[:-1]
        targets[row, :len(line)] = line
      log_probs, _ = self.log_probs(fresh, inputs, targets)
      log_probs = np.asarray(log_probs, np.float64)
      for row, i in enumerate(group):
        sums[i] = log_probs[row, :counts[i]].sum()
      if progress is not None:
        progress(int(counts[group].sum()))
    return sums, counts

  def next_token_probs(self, ids):
    """p(next token | eos, ids): (V,) float64, padding's probability 0."""
    inputs = primed(self.vocab.eos_id, ids)[None]
    logits, _ = self.forward(self.weights, self.fresh_state(1), inputs)
    probs = np.array(jax.nn.softmax(logits[0, -1].astype(jnp.float32)),
                     np.float64)
    probs[0] = 0.0  # Padding is never a next token.
    return probs
