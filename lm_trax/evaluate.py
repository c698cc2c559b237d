"""Exact perplexity, bits per character and perplexity per word over a split.

  python -m lm_trax.evaluate --output_dir RUN [--split valid|test]
                             [--batch_size N] [--data_dir D]

prints, as its last line,

  split=test tokens=N loss=X ppl=Y bpc=Z word_ppl=W

with a progress bar and tokens/s on stderr.

The rule: every token of the split is predicted exactly once, from everything
before it in the split, as if the split were one stream (the start of the
split is primed with the end-of-line token: <eos> for words and subwords,
'\\n' for characters). RNNs carry their state through the whole split; the
NPLM sees its n_context previous tokens. So the result does not depend on how
the work is cut: --batch_size only sets how many tokens each compiled call
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
text. (At character level C = N and bpc = loss / ln 2.)

Adapting while reading (lm_trax.adaptation; recurrent models, stream runs):

  --cache_size N --cache_theta T --cache_lambda L     the continuous cache
  --dynamic_eval sgd|rms --dynamic_lr X [--dynamic_decay L]
      [--dynamic_segment T] [--dynamic_epsilon E]     dynamic evaluation

alone or together; the last line then names them, e.g.

  split=valid tokens=73760 loss=4.5012 ppl=90.13 cache=2000/1.0/0.1

Every token is still predicted once, from the tokens before it only. Choose
the hyperparameters on the valid split, then run test once: a flag given a
comma-separated list (--cache_theta 0.3,1.0) makes a search over every
combination, allowed on valid only; it prints one line per point, then the
best point's line last.
"""

import dataclasses
import itertools
import math
import sys
import time
import weakref

from lm_trax import cli
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
    return text


def _ratio(total, count):
  return total / count if count else math.nan


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


def evaluate_text(run, text, split, batch_size=None, progress=True,
                  cache=None, dynamic=None, data_dir=None):
  """Exact loss of a run over a split's text (see the module docstring),
  with the continuous cache and/or dynamic evaluation if given
  (lm_trax.adaptation.Cache, .Dynamic; data_dir: where the train split is,
  for the statistics of dynamic evaluation's rule 'rms')."""
  vocab = run.vocab
  batching = run.batching()
  scored = scored_ids(vocab, batching, text)
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
  from lm_trax import adaptation  # pylint: disable=g-import-not-at-top
  return EvalResult(split, tokens, loss, vocab.level,
                    *scored_lengths(vocab, scored), vocab.count_unknown(text),
                    adaptation.label(cache, dynamic), seconds)


def scored_ids(vocab, batching, text):
  """The ids a text is scored as: a list of int32 arrays, one per line for
  runs trained on lines (`data.split_lines`), else one, the whole text."""
  from lm_trax import data  # pylint: disable=g-import-not-at-top
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
  from lm_trax import adaptation  # pylint: disable=g-import-not-at-top
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
  from lm_trax import adaptation  # pylint: disable=g-import-not-at-top
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
    from lm_trax import inference  # pylint: disable=g-import-not-at-top
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


def evaluate(output_dir, split='valid', batch_size=None, data_dir=None,
             progress=True, checkpoint='latest', cache=None, dynamic=None):
  """Exact perplexity of the run in output_dir over a split of its corpus,
  with its latest checkpoint or the best one on exact validation; with the
  continuous cache and/or dynamic evaluation if given
  (lm_trax.adaptation.Cache, .Dynamic)."""
  return evaluate_points(output_dir, [(cache, dynamic)], split, batch_size,
                         data_dir, progress, checkpoint)[0]


def evaluate_points(output_dir, points, split='valid', batch_size=None,
                    data_dir=None, progress=True, checkpoint='latest',
                    report=None):
  """`evaluate` at each (cache, dynamic) point of a search, the run opened
  and its functions compiled once: a list of EvalResult. report(result), if
  given, is called as each is done."""
  from lm_trax import run_dir  # pylint: disable=g-import-not-at-top
  if batch_size is not None and batch_size < 1:
    raise UserError(f'--batch_size must be >= 1, got {batch_size}')
  run = run_dir.Run(output_dir, checkpoint)
  text = run.corpus(data_dir).text(split)
  results = []
  for cache, dynamic in points:
    results.append(evaluate_text(run, text, split, batch_size, progress,
                                 cache, dynamic, data_dir))
    if report is not None:
      report(results[-1])
  return results


# The adaptation flags: (name, type, help). Each takes one value or a
# comma-separated list; lists make a search (every combination, on valid).
_ADAPTATION_FLAGS = (
    ('cache_size', int, 'continuous cache: the last N hidden states'),
    ('cache_theta', float, 'continuous cache: attention inverse temperature'),
    ('cache_lambda', float, 'continuous cache: its weight in [0, 1]'),
    ('dynamic_lr', float, 'dynamic evaluation: step size'),
    ('dynamic_decay', float, 'dynamic evaluation: pull towards the trained '
     'weights (default 0)'),
    ('dynamic_segment', int, 'dynamic evaluation: tokens per update '
     '(default 5)'),
    ('dynamic_epsilon', float, "rule 'rms': added to the gradients' rms "
     '(default 0.001)'),
    ('dynamic_stats_tokens', int, "rule 'rms': gather the gradient "
     'statistics on the first N train tokens (default: all)'),
)


def _add_adaptation_arguments(parser):
  group = parser.add_argument_group(
      'adaptation while reading (lm_trax.adaptation); a comma-separated list '
      'of values makes a search on --split valid')
  group.add_argument('--dynamic_eval', choices=('sgd', 'rms'), default=None,
                     help='dynamic evaluation with this update rule')
  for name, _, description in _ADAPTATION_FLAGS:
    group.add_argument(f'--{name}', default=None, metavar='V[,V...]',
                       help=description)


def _flag_values(args, name, kind):
  """The values of a flag as a list ([None] if not given)."""
  text = getattr(args, name)
  if text is None:
    return [None]
  try:
    return [kind(v) for v in text.split(',')]
  except ValueError:
    raise UserError(f'--{name} takes {kind.__name__} values separated by '
                    f'commas, got {text!r}') from None


def adaptation_from_args(args):
  """The (Cache or None, Dynamic or None) points the command's flags ask
  for: one, or every combination of the listed values (a search).

  Raises:
    UserError: for a partial or invalid choice.
  """
  from lm_trax import adaptation  # pylint: disable=g-import-not-at-top
  given = {name: _flag_values(args, name, kind)
           for name, kind, _ in _ADAPTATION_FLAGS}
  cache_names = ('cache_size', 'cache_theta', 'cache_lambda')
  if any(given[n] != [None] for n in cache_names):
    missing = [f'--{n}' for n in cache_names if given[n] == [None]]
    if missing:
      raise UserError(f'the continuous cache needs --cache_size, '
                      f'--cache_theta and --cache_lambda; missing '
                      f'{", ".join(missing)} (choose them on valid)')
    caches = [adaptation.Cache(*values) for values in
              itertools.product(*(given[n] for n in cache_names))]
  else:
    caches = [None]
  option_names = {'dynamic_decay': 'decay', 'dynamic_segment': 'segment',
                  'dynamic_epsilon': 'epsilon',
                  'dynamic_stats_tokens': 'statistics_tokens'}
  if args.dynamic_eval is None:
    if any(given[n] != [None] for n in ['dynamic_lr', *option_names]):
      raise UserError('the --dynamic_* options need --dynamic_eval sgd|rms')
    dynamics = [None]
  elif given['dynamic_lr'] == [None]:
    raise UserError('--dynamic_eval needs --dynamic_lr (choose it on valid)')
  else:
    dynamics = []
    for lr, *values in itertools.product(
        given['dynamic_lr'], *(given[n] for n in option_names)):
      options = {option_names[n]: v for n, v in zip(option_names, values)
                 if v is not None}
      dynamics.append(adaptation.Dynamic(args.dynamic_eval, lr, **options))
  return list(itertools.product(caches, dynamics))


def main(argv=None):
  parser = cli.parser('lm_trax.evaluate',
                      'Exact perplexity of a trained run over a whole split.')
  cli.add_run_arguments(parser)
  parser.add_argument('--split', default='valid', choices=('train', 'valid',
                                                           'test'))
  parser.add_argument('--batch_size', type=int, default=None,
                      help='windows per compiled call (default: the run\'s)')
  parser.add_argument('--data_dir', default=None,
                      help='data directory (default: the run\'s corpus '
                      'settings, LM_TRAX_DATA_DIR)')
  _add_adaptation_arguments(parser)
  args = parser.parse_args(argv)
  try:
    points = adaptation_from_args(args)
    search = len(points) > 1
    if search and args.split != 'valid':
      raise UserError('a list of values is a search: run it with --split '
                      'valid, then the chosen values once on test')
    started = time.time()
    report = (lambda r: print(r.line(), flush=True)) if search else None
    results = evaluate_points(args.output_dir, points, args.split,
                              args.batch_size, args.data_dir,
                              checkpoint=args.checkpoint, report=report)
    seconds = time.time() - started
    result = min(results, key=lambda r: r.loss)
    if result.unknown:
      print(f'{result.unknown} {result.level}s not in the vocabulary were '
            'scored as <unk>', file=sys.stderr)
    if search:
      print(f'{len(results)} points in {seconds:.1f} s; the best on valid '
            'is the last line', file=sys.stderr)
    else:
      print(f'{result.tokens:,} tokens in {seconds:.1f} s '
            f'({result.tokens / seconds:,.0f} tokens/s including set-up); '
            f'scoring {result.seconds:.1f} s '
            f'({result.tokens / result.seconds:,.0f} tokens/s, compilation '
            'included)', file=sys.stderr)
    print(result.line(), flush=True)
  except UserError as e:
    from lm_trax.errors import exit_with  # pylint: disable=g-import-not-at-top
    exit_with(e, args.verbose)


if __name__ == '__main__':
  main()
