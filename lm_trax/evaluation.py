"""Exact perplexity, bits per character and perplexity per word of a text.

The evaluation library: `evaluate_text` scores a split (or any text) with a
trained run, `ExactValidation` does the same during training, and
`EvalResult` holds the numbers. The command is lm_trax.evaluate.

The rule: every token of the split is predicted exactly once, from everything
before it in the split, as if the split were one stream (the start of the
split is primed with the end-of-line token: <eos> for words and subwords,
'\\n' for characters). RNNs carry their state through the whole split; the
NPLM sees its n_context previous tokens. So the result does not depend on how
the work is cut: the batch size only sets how many tokens each compiled call
scores (batch_size x the run's seq_len, as one row), and changes nothing but
float rounding. Runs trained on lines (Batching.kind = 'lines') are scored
line by line, each line from a fresh state, as they were trained; blank lines
are skipped.

With N the tokens scored and L their total negative log-likelihood in nats:

  loss = L / N (nats per token), ppl = exp(loss)
  bpc = L / (C ln 2), C the characters the scored tokens stand for
  word_ppl = exp(L / W), W the words they stand for

C and W are counted on the text the scored tokens decode to
(lm_trax.vocab.Vocab.lengths), every '\\n' included: for characters and
subwords the text itself; for words, the words joined by single spaces with
a '\\n' per <eos>. W is its whitespace-separated words plus one per line end,
as PTB's word-level perplexity counts <eos>; so at word level W = N and
word_ppl = ppl, and bpc and word_ppl compare models of any level on the same
text. (At character level C = N and bpc = loss / ln 2; so too for
character-level PTB, whose symbols are read as words: each stands for the
one character it spells (`Vocab.spelled`), and W counts PTB's words.)

The continuous cache and dynamic evaluation (lm_trax.adaptation) read the
text as one stream too (`adapted_loss`): every token is still predicted once,
from the tokens before it only.
"""

import dataclasses
import math
import sys
import time
import weakref

from tqdm import tqdm

from lm_trax import adaptation
from lm_trax import data
from lm_trax import inference
from lm_trax.errors import UserError


@dataclasses.dataclass
class EvalResult:
  """One evaluation: the formulas are in the module docstring."""
  split: str
  tokens: int
  loss: float  # Mean negative log-likelihood, nats per token.
  level: str
  characters: int  # C: characters the scored tokens stand for.
  words: int  # W: words they stand for, line ends included.
  unknown: int = 0  # Tokens mapped to <unk>.
  adaptation: str = ''  # e.g. 'cache=2000/1.0/0.1' (lm_trax.adaptation).
  precision: str = 'float32'  # The matmuls' (lm_trax.precision).
  # Seconds spent scoring (compilation included; not the set-up before it,
  # nor dynamic evaluation's gradient statistics): what tokens/s divides by.
  seconds: float = dataclasses.field(default=math.nan, compare=False)

  @property
  def nats(self):
    """L, the total negative log-likelihood."""
    return self.loss * self.tokens

  @property
  def ppl(self):
    return math.exp(self.loss)

  @property
  def bpc(self):
    return _ratio(self.nats, self.characters * math.log(2))

  @property
  def word_ppl(self):
    return math.exp(_ratio(self.nats, self.words))

  def line(self):
    text = (f'split={self.split} tokens={self.tokens} loss={self.loss:.4f} '
            f'ppl={self.ppl:.2f} bpc={self.bpc:.4f} '
            f'word_ppl={self.word_ppl:.2f}')
    if self.adaptation:
      text += f' {self.adaptation}'
    if self.precision != 'float32':
      text += f' precision={self.precision}'
    return text


def _ratio(total, count):
  return total / count if count else math.nan


# Whole splits --------------------------------------------------------------------

class _Progress:
  """A tqdm bar on stderr counting tokens, with tokens/s."""

  def __init__(self, total, description, enabled=True):
    self.bar = tqdm(total=total, desc=description, unit='tok', unit_scale=True,
                    file=sys.stderr, disable=not enabled, leave=False)

  def __call__(self, n):
    self.bar.update(n)

  def close(self):
    self.bar.close()


def evaluate_text(run, text, split, batch_size=None, progress=True,
                  cache=None, dynamic=None, data_dir=None):
  """Exact loss of a run (an lm_trax.trained.Run) over a split's text (see
  the module docstring), with the continuous cache and/or dynamic evaluation
  if given (lm_trax.adaptation.Cache, .Dynamic; data_dir: where the train
  split is, for the statistics of dynamic evaluation's rule 'rms').
  Returns an EvalResult."""
  vocab = run.vocab
  batching = run.batching()
  scored = scored_ids(vocab, batching, text)
  if not any(len(ids) for ids in scored):
    raise UserError(f'no tokens to score in {split!r} (an empty text, or '
                    'only blank lines for a run scored line by line)')
  statistics = _statistics(run, dynamic, data_dir, progress)
  bar = _Progress(sum(map(len, scored)), split, progress)
  started = time.perf_counter()
  if cache is None and dynamic is None:
    loss, tokens = scored_loss(run.predictor(), batching, scored, batch_size,
                               bar)
  else:
    loss, tokens = adapted_loss(run.predictor(), batching, scored, cache,
                                dynamic, batch_size, statistics, bar)
  seconds = time.perf_counter() - started
  bar.close()
  return EvalResult(split, tokens, loss, vocab.level,
                    *scored_lengths(vocab, scored), vocab.count_unknown(text),
                    adaptation.label(cache, dynamic), run.precision, seconds)


def scored_ids(vocab, batching, text):
  """The ids a text is scored as: a list of int32 arrays, one per line for
  runs trained on lines (`data.split_lines`), else one, the whole text."""
  if batching.kind == 'lines':
    return data.split_lines(vocab, text)
  return [vocab.encode(text, unknown='map')]


def scored_lengths(vocab, scored):
  """(characters, words) the scored ids stand for (`Vocab.lengths`, summed
  over the arrays of `scored_ids`): bpc's C and word_ppl's W."""
  characters = words = 0
  for ids in scored:
    more_characters, more_words = vocab.lengths(ids)
    characters, words = characters + more_characters, words + more_words
  return characters, words


def adapted_loss(predictor, batching, scored, cache=None, dynamic=None,
                 batch_size=None, statistics=None, progress=None):
  """(mean negative log-likelihood in nats/token, tokens scored) of a text's
  `scored_ids`, read as one stream with the cache and/or dynamic evaluation
  (lm_trax.adaptation.adapted_log_probs; the same rule as `scored_loss`
  otherwise, and the same chunks of batch_size x seq_len tokens).

  Raises:
    UserError: for runs trained on lines, and models the cache cannot read.
  """
  if batching.kind == 'lines':
    raise UserError('the cache and dynamic evaluation read the text as one '
                    'stream; this run is scored line by line '
                    "(Batching.kind = 'lines')")
  batch_size = batch_size or batching.batch_size
  (ids,) = scored
  log_probs = adaptation.adapted_log_probs(
      predictor, ids, cache, dynamic, batch_size * batching.seq_len,
      statistics, progress)
  return float(-log_probs.mean()), len(ids)


# Gradient statistics per open run and (segment, tokens, data_dir): a
# search over lr and decay gathers them once.
_STATISTICS = weakref.WeakKeyDictionary()


def _statistics(run, dynamic, data_dir, progress):
  """The gradient statistics of the rule 'rms' on the run's train split, or
  None for other choices."""
  if dynamic is None or dynamic.rule != 'rms':
    return None
  if run.batching().kind == 'lines':
    return None  # adapted_loss refuses the run.
  kept = _STATISTICS.setdefault(run, {})
  key = (dynamic.segment, dynamic.statistics_tokens, data_dir)
  if key not in kept:
    ids = run.vocab.encode(run.corpus(data_dir).text('train'), unknown='map')
    ids = ids[:dynamic.statistics_tokens]
    bar = _Progress(len(ids), 'gradient statistics (train)', progress)
    kept[key] = adaptation.gradient_statistics(
        run.predictor(), ids, dynamic.segment, progress=bar)
    bar.close()
  return kept[key]


def scored_loss(predictor, batching, scored, batch_size=None,
                progress=None):
  """(mean negative log-likelihood in nats/token, tokens scored) of a text.

  Args:
    predictor: an lm_trax.inference.Predictor.
    batching: the run's lm_trax.data.Batching: its kind picks the rule
      (stream, or line by line), its batch_size and seq_len the work per
      compiled call.
    scored: the text's `scored_ids`: int32 arrays, one per line (lines) or
      one (stream).
    batch_size: windows (stream) or lines per compiled call; default the
      batching's.
    progress: optional callable(n_tokens_done).
  """
  batch_size = batch_size or batching.batch_size
  if batching.kind == 'lines':
    sums, counts = predictor.lines_log_probs(scored, batch_size, progress)
    return float(-sums.sum() / counts.sum()), int(counts.sum())
  (ids,) = scored
  log_probs = predictor.stream_log_probs(ids, batch_size * batching.seq_len,
                                         progress)
  return float(-log_probs.mean()), len(ids)


class ExactValidation:
  """The exact validation during training: `scored_loss` of the split with
  the weights the training loop hands in, compiled once; the split is
  encoded and measured (characters, words) once."""

  def __init__(self, model_fn, vocab, batching, valid_text):
    """model_fn(vocab_size=, mode=, carry_state=) builds the model."""
    self._predictor = inference.Predictor(model_fn, vocab)
    self._batching = batching
    self._scored = scored_ids(vocab, batching, valid_text)
    self._lengths = scored_lengths(vocab, self._scored)

  def __call__(self, weights):
    """The split's EvalResult with these weights (loss, ppl, bpc, ...)."""
    self._predictor.weights = weights
    loss, tokens = scored_loss(self._predictor, self._batching, self._scored)
    return EvalResult('valid', tokens, loss, self._predictor.vocab.level,
                      *self._lengths)
