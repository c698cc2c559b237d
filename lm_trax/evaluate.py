"""Exact perplexity (and bits per character) of a trained run over a split.

  python -m lm_trax.evaluate --output_dir RUN [--split valid|test]
                             [--batch_size N] [--data_dir D]

prints, as its last line,

  split=test tokens=82430 loss=4.7421 ppl=114.68            (word level)
  split=valid tokens=111540 loss=1.4702 ppl=4.35 bpc=2.1211  (char level)

with a progress bar and tokens/s on stderr.

The rule: every token of the split is predicted exactly once, from everything
before it in the split, as if the split were one stream (the start of the
split is primed with the end-of-line token: <eos> for words, '\\n' for
characters). RNNs carry their state through the whole split; the NPLM sees
its n_context previous tokens. So the result does not depend on how the work
is cut: --batch_size only sets how many tokens each compiled call scores
(batch_size x the run's seq_len, as one row), and changes nothing but float
rounding. Runs trained on lines (Batching.kind = 'lines') are scored line by
line, each line from a fresh state, as they were trained; blank lines are
skipped.

loss is the mean negative log-likelihood in nats per token; ppl = exp(loss);
bpc = loss / ln 2.
"""

import argparse
import dataclasses
import math
import sys
import time

import jax
import numpy as np

from lm_trax import losses
from lm_trax.errors import UserError

_PAD_MULTIPLE = 16  # Line batches are padded to a multiple of this length.


@dataclasses.dataclass
class EvalResult:
  split: str
  tokens: int
  loss: float  # Mean negative log-likelihood, nats per token.
  level: str
  unknown: int = 0  # Tokens mapped to <unk>.

  @property
  def ppl(self):
    return math.exp(self.loss)

  @property
  def bpc(self):
    return self.loss / math.log(2)

  def line(self):
    text = (f'split={self.split} tokens={self.tokens} loss={self.loss:.4f} '
            f'ppl={self.ppl:.2f}')
    if self.level == 'char':
      text += f' bpc={self.bpc:.4f}'
    return text


# Scoring primitives ------------------------------------------------------------

def make_token_log_probs(model):
  """A jitted (weights, state, inputs (B, T), targets (B, T)) ->
  (log p(targets) (B, T) float32, new_state) for a trax model."""
  rng = jax.random.PRNGKey(0)  # Unused in eval mode (no dropout).

  def token_log_probs(weights, state, inputs, targets):
    logits, new_state = model.pure_fn(inputs, weights, state, rng)
    # logsumexp - target logit, without writing the (B, T, V) log-softmax.
    return -losses.cross_entropy(logits, targets), new_state
  return jax.jit(token_log_probs)


def stream_log_probs(model, ids, start_id, chunk_len, progress=None,
                     token_log_probs=None):
  """log p(ids[t] | start, ids[:t]) for every t, the state carried throughout.

  Args:
    model: a trax model in eval mode with carry_state=True, initialized for
      inputs (1, chunk_len).
    ids: (N,) int token ids of the whole split.
    start_id: the token that primes the stream (predicts ids[0]).
    chunk_len: tokens per compiled call; the last chunk is padded.
    progress: optional callable(n_tokens_done).
    token_log_probs: make_token_log_probs(model), to reuse its compilations
      across calls (default: made here).

  Returns:
    (N,) float64 log-probabilities.
  """
  ids = np.asarray(ids, np.int32)
  n = len(ids)
  n_chunks = -(-n // chunk_len)
  inputs = np.zeros(n_chunks * chunk_len, np.int32)
  targets = np.zeros(n_chunks * chunk_len, np.int32)
  inputs[0], inputs[1:n], targets[:n] = start_id, ids[:-1], ids
  token_log_probs = token_log_probs or make_token_log_probs(model)
  weights, state = model.weights, model.state
  pieces = []
  for k in range(n_chunks):
    window = slice(k * chunk_len, (k + 1) * chunk_len)
    log_probs, state = token_log_probs(weights, state, inputs[None, window],
                                       targets[None, window])
    pieces.append(log_probs)  # Stays on device: calls queue up, no sync.
    if progress is not None:
      progress(min(chunk_len, n - k * chunk_len))
  return np.concatenate([np.asarray(p[0], np.float64) for p in pieces])[:n]


def lines_log_probs(model, lines, start_id, batch_size, progress=None,
                    token_log_probs=None):
  """Each line scored from a fresh state: (sum of log p, n_tokens) per line.

  Args:
    model: a trax model in eval mode with carry_state=False.
    lines: list of (n_i,) int id arrays, each line's tokens including its end.
    start_id: the token that primes every line.
    batch_size: lines per compiled call (similar lengths are grouped).
    progress: optional callable(n_tokens_done).
    token_log_probs: make_token_log_probs(model), to reuse its compilations
      across calls (default: made here).

  Returns:
    (sums (L,) float64, counts (L,) int) in the order of `lines`.
  """
  token_log_probs = token_log_probs or make_token_log_probs(model)
  sums = np.zeros(len(lines))
  counts = np.array([len(line) for line in lines])
  order = np.argsort(counts, kind='stable')
  for start in range(0, len(order), batch_size):
    group = order[start:start + batch_size]
    length = max(1, int(counts[group].max()))
    length = -(-length // _PAD_MULTIPLE) * _PAD_MULTIPLE
    inputs = np.zeros((batch_size, length), np.int32)
    targets = np.zeros((batch_size, length), np.int32)
    for row, i in enumerate(group):
      line = np.asarray(lines[i], np.int32)
      inputs[row, 0], inputs[row, 1:len(line)] = start_id, line[:-1]
      targets[row, :len(line)] = line
    log_probs, _ = token_log_probs(model.weights, model.state, inputs, targets)
    log_probs = np.asarray(log_probs, np.float64)
    for row, i in enumerate(group):
      sums[i] = log_probs[row, :counts[i]].sum()
    if progress is not None:
      progress(int(counts[group].sum()))
  return sums, counts


# Whole splits --------------------------------------------------------------------

class _Progress:
  """A tqdm bar on stderr counting tokens, with tokens/s."""

  def __init__(self, total, description, enabled=True):
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    self.bar = tqdm(total=total, desc=description, unit='tok', unit_scale=True,
                    file=sys.stderr, disable=not enabled, leave=False)

  def __call__(self, n):
    self.bar.update(n)

  def close(self):
    self.bar.close()


def evaluate_text(run, text, split, batch_size=None, progress=True):
  """Exact loss of a run over a split's text (see the module docstring)."""
  from lm_trax import data  # pylint: disable=g-import-not-at-top
  vocab, batching = run.vocab, run.batching()
  unknown = vocab.count_unknown(text)
  if batching.kind == 'lines':
    lines = data.split_lines(vocab, text)
    batch_size = batch_size or batching.batch_size
    model = run.model(mode='eval', batch_size=batch_size,
                      seq_len=_PAD_MULTIPLE, carry_state=False)
    bar = _Progress(int(sum(map(len, lines))), split, progress)
    sums, counts = lines_log_probs(model, lines, vocab.eos_id, batch_size, bar)
    bar.close()
    return EvalResult(split, int(counts.sum()),
                      float(-sums.sum() / counts.sum()), vocab.level, unknown)
  ids = vocab.encode(text, unknown='map')
  chunk_len = (batch_size or batching.batch_size) * batching.seq_len
  model = run.model(mode='eval', batch_size=1, seq_len=chunk_len)
  bar = _Progress(len(ids), split, progress)
  log_probs = stream_log_probs(model, ids, vocab.eos_id, chunk_len, bar)
  bar.close()
  return EvalResult(split, len(ids), float(-log_probs.mean()), vocab.level,
                    unknown)


def evaluate(output_dir, split='valid', batch_size=None, data_dir=None,
             progress=True, checkpoint='latest'):
  """Exact perplexity of the run in output_dir over a split of its corpus,
  with its latest checkpoint or the best one on exact validation."""
  from lm_trax import run_dir  # pylint: disable=g-import-not-at-top
  if batch_size is not None and batch_size < 1:
    raise UserError(f'--batch_size must be >= 1, got {batch_size}')
  run = run_dir.Run(output_dir, checkpoint)
  corpus = run.corpus(data_dir)
  return evaluate_text(run, corpus.text(split), split, batch_size, progress)


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m lm_trax.evaluate',
      description='Exact perplexity of a trained run over a whole split.')
  parser.add_argument('--output_dir', required=True, help='the run directory')
  parser.add_argument('--split', default='valid', choices=('train', 'valid',
                                                           'test'))
  parser.add_argument('--batch_size', type=int, default=None,
                      help='windows per compiled call (default: the run\'s)')
  parser.add_argument('--data_dir', default=None,
                      help='data directory (default: the run\'s corpus '
                      'settings, LM_TRAX_DATA_DIR)')
  parser.add_argument('--checkpoint', default='latest',
                      help="'latest', 'best' (the best exact validation loss "
                      'during training) or a step number')
  parser.add_argument('--verbose', action='store_true')
  args = parser.parse_args(argv)
  try:
    started = time.time()
    result = evaluate(args.output_dir, args.split, args.batch_size,
                      args.data_dir, checkpoint=args.checkpoint)
    seconds = time.time() - started
    if result.unknown:
      print(f'{result.unknown} {result.level}s not in the vocabulary were '
            'scored as <unk>', file=sys.stderr)
    print(f'{result.tokens:,} tokens in {seconds:.1f} s '
          f'({result.tokens / seconds:,.0f} tokens/s including set-up)',
          file=sys.stderr)
    print(result.line(), flush=True)
  except UserError as e:
    from lm_trax.errors import exit_with  # pylint: disable=g-import-not-at-top
    exit_with(e, args.verbose)


if __name__ == '__main__':
  main()
