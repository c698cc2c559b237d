"""Exact perplexity, bits per character and perplexity per word over a split.

  python -m lm_trax.evaluate --output_dir RUN [--split valid|test]
                             [--batch_size N] [--data_dir D]
                             [--precision float32|bfloat16]

prints, as its last line,

  split=test tokens=N loss=X ppl=Y bpc=Z word_ppl=W

with a progress bar and tokens/s on stderr.

The rule and the formulas are lm_trax.evaluation's: every token of the split
is predicted exactly once, from everything before it in the split, so
--batch_size (windows of the run's seq_len per compiled call) changes nothing
but float rounding; loss is in nats per token, ppl = exp(loss), bpc and
word_ppl divide the same total by the characters and words the scored tokens
stand for.

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

This module is the command, and `evaluate` (a run directory's perplexity)
for Python; the evaluation library it runs is lm_trax.evaluation.
"""

import itertools
import sys
import time

from lm_trax import cli
from lm_trax import errors
from lm_trax import process
from lm_trax.errors import UserError


def evaluate(output_dir, split='valid', batch_size=None, data_dir=None,
             progress=True, checkpoint='latest', cache=None, dynamic=None,
             precision=None):
  """Exact perplexity of the run in output_dir over a split of its corpus,
  with its latest checkpoint or the best one on exact validation; with the
  continuous cache and/or dynamic evaluation if given
  (lm_trax.adaptation.Cache, .Dynamic); in the run's precision or the one
  given (lm_trax.precision). Returns an lm_trax.evaluation.EvalResult."""
  return evaluate_points(output_dir, [(cache, dynamic)], split, batch_size,
                         data_dir, progress, checkpoint,
                         precision=precision)[0]


def evaluate_points(output_dir, points, split='valid', batch_size=None,
                    data_dir=None, progress=True, checkpoint='latest',
                    report=None, precision=None):
  """`evaluate` at each (cache, dynamic) point of a search, the run opened
  and its functions compiled once: a list of EvalResult. report(result), if
  given, is called as each is done."""
  # Imported at the call, not above, so that the command answers --help
  # without loading JAX, trax or TensorFlow.
  from lm_trax import evaluation  # pylint: disable=g-import-not-at-top
  from lm_trax import opener  # pylint: disable=g-import-not-at-top
  if batch_size is not None and batch_size < 1:
    raise UserError(f'--batch_size must be >= 1, got {batch_size}')
  run = opener.open_model(output_dir, checkpoint, precision)
  text = run.corpus(data_dir).text(split)
  results = []
  for cache, dynamic in points:
    results.append(evaluation.evaluate_text(run, text, split, batch_size,
                                            progress, cache, dynamic,
                                            data_dir))
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
     '(default 2e-5)'),
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


# The flag of each field of lm_trax.adaptation's Cache and Dynamic, for
# messages.
_SETTING_FLAGS = {
    ('cache', 'size'): '--cache_size', ('cache', 'theta'): '--cache_theta',
    ('cache', 'lam'): '--cache_lambda', ('dynamic', 'rule'): '--dynamic_eval',
    ('dynamic', 'lr'): '--dynamic_lr', ('dynamic', 'decay'): '--dynamic_decay',
    ('dynamic', 'segment'): '--dynamic_segment',
    ('dynamic', 'epsilon'): '--dynamic_epsilon',
    ('dynamic', 'statistics_tokens'): '--dynamic_stats_tokens'}


def adaptation_from_args(args):
  """The (Cache or None, Dynamic or None) points the command's flags ask
  for: one, or every combination of the listed values (a search).

  Raises:
    UserError: for a partial or invalid choice, naming the flags.
  """
  from lm_trax import adaptation  # pylint: disable=g-import-not-at-top  (JAX: not for --help)
  try:
    return _adaptation_points(args, adaptation)
  except adaptation.SettingError as e:
    raise e.named(_SETTING_FLAGS[e.owner, e.field]) from None


def _adaptation_points(args, adaptation):
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
  process.set_up()
  with errors.reported(args.verbose):
    points = adaptation_from_args(args)
    search = len(points) > 1
    if search and args.split != 'valid':
      raise UserError('a list of values is a search: run it with --split '
                      'valid, then the chosen values once on test')
    started = time.time()
    report = (lambda r: print(r.line(), flush=True)) if search else None
    results = evaluate_points(args.output_dir, points, args.split,
                              args.batch_size, args.data_dir,
                              checkpoint=args.checkpoint, report=report,
                              precision=args.precision)
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


if __name__ == '__main__':
  main()
