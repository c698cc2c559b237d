"""Training and validation curves of runs, drawn from their metrics.jsonl.

  python -m lm_trax.plot RUN [RUN ...] [--out curves.png] [--metric ppl|loss]

writes one PNG with a curve per run and kind of record (see
`lm_trax.run_dir.MetricsLog`), one colour per run, labeled by the run
directory's name:

  train  solid    mean training loss/perplexity over each logging interval
  valid  dashed   exact perplexity over the whole validation split
  eval   dotted   trax's sampled-window eval (n_eval_batches windows)

Perplexity is drawn on a log scale. A sweep's report (`lm_trax.sweep_report`)
draws its curves.png with the same function.
"""

import pathlib

from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lm_trax import cli
from lm_trax import run_dir as run_dir_lib
from lm_trax.errors import UserError, exit_with

KINDS = ('train', 'valid', 'eval')
LINE_STYLES = {'train': '-', 'valid': '--', 'eval': ':'}
METRIC_LABELS = {'ppl': 'perplexity', 'loss': 'loss (nats per token)'}


def read_records(run_dir):
  """The metrics records of a run (`MetricsLog.read`).

  Raises:
    UserError: if run_dir is missing or holds no metrics records.
  """
  run_dir = pathlib.Path(run_dir)
  if not run_dir.is_dir():
    raise UserError(f'run directory {run_dir} does not exist')
  records = run_dir_lib.MetricsLog.read(run_dir)
  if not records:
    raise UserError(f'{run_dir} has no metrics records '
                    f'({run_dir_lib.MetricsLog.FILENAME}); is it a run '
                    'directory of train.py that has logged at least once?')
  return records


def series(records, kind, metric='ppl'):
  """Steps and values of one kind of record, in step order.

  Args:
    records: metrics records, e.g. from `read_records`.
    kind: 'train', 'valid' or 'eval'.
    metric: 'ppl' or 'loss'.

  Returns:
    (steps, values): two lists of equal length.
  """
  chosen = [r for r in records if r['kind'] == kind and metric in r]
  chosen.sort(key=lambda r: r['step'])
  return [r['step'] for r in chosen], [r[metric] for r in chosen]


def draw_curves(axes, runs, metric='ppl', kinds=KINDS):
  """Draws each run's curves of `kinds` on matplotlib `axes`.

  Args:
    axes: a matplotlib Axes.
    runs: (label, records) pairs; each run gets its own colour.
    metric: 'ppl' (log scale) or 'loss'.
    kinds: the kinds of record to draw, each in its own line style; a
      legend entry is 'label' when one kind is drawn, else 'label (kind)'.
  """
  for i, (label, records) in enumerate(runs):
    for kind in kinds:
      steps, values = series(records, kind, metric)
      if steps:
        axes.plot(steps, values, LINE_STYLES[kind], color=f'C{i % 10}',
                  marker='.' if kind != 'train' else None,
                  label=label if len(kinds) == 1 else f'{label} ({kind})')
  axes.set_xlabel('step')
  axes.set_ylabel(METRIC_LABELS[metric])
  if metric == 'ppl':
    axes.set_yscale('log')
    axes.yaxis.set_major_formatter(ticker.LogFormatter())  # 100, not 10^2.
    axes.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
  axes.grid(True, which='both', alpha=0.3)
  if axes.get_lines():
    axes.legend(fontsize='small')


def save_curves(runs, out, metric='ppl', kinds=KINDS, title=None):
  """Draws `runs` (see `draw_curves`) into the PNG file `out`."""
  figure = Figure(figsize=(9, 5.5), layout='constrained')
  FigureCanvasAgg(figure)  # Renders with Agg, without pyplot's global state.
  axes = figure.add_subplot()
  draw_curves(axes, runs, metric, kinds)
  if title:
    axes.set_title(title)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(out, dpi=100)


def run_labels(run_dirs):
  """The runs' directory names, or the paths as given if names repeat."""
  names = [pathlib.Path(run).resolve().name for run in run_dirs]
  return names if len(set(names)) == len(names) else list(map(str, run_dirs))


def main(argv=None):
  """Command line: python -m lm_trax.plot RUN [RUN ...] [--out FILE.png]."""
  parser = cli.parser('lm_trax.plot', 'Plot training and validation curves of '
                      'runs from their metrics.jsonl.')
  parser.add_argument('runs', nargs='+', metavar='RUN',
                      help='run directories written by train.py')
  parser.add_argument('--out', default='curves.png',
                      help='the PNG to write (default: curves.png)')
  parser.add_argument('--metric', default='ppl', choices=('ppl', 'loss'),
                      help='perplexity (log scale) or loss in nats per token')
  cli.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  try:
    runs = list(zip(run_labels(args.runs), map(read_records, args.runs)))
    save_curves(runs, args.out, args.metric)
  except UserError as e:
    exit_with(e, args.verbose)
  print(f'wrote {args.out}: {args.metric} of {len(runs)} run(s)')


if __name__ == '__main__':
  main()
