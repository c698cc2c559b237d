"""Gin parameter sweeps: a grid of bindings -> one run per point -> a table.

  python -m lm_trax.sweep --gin_file gin/ptb_lstm.gin \\
      --sweep 'RecurrentLM.d_model = [200, 400]' --sweep 'train.n_steps = [1000]' \\
      --output_dir runs/my_sweep [--workers N]
  python -m lm_trax.sweep --gin_file gin/ptb_lstm.gin \\
      --grid gin/sweeps/ptb_lstm_width_dropout.yaml \\
      --output_dir runs/ptb_lstm_width_dropout
  python -m lm_trax.sweep --report runs/my_sweep

A grid maps gin parameters to lists of values, as trax's sweep files do:
`--sweep 'Configurable.param = [v1, v2]'` (gin syntax: @references and
%macros allowed), or a YAML file of `Configurable.param: [v1, v2]` lines
(write references as strings, '@trax.optimizers.Adam'; 1e-3 is a float).
Both give the same grid. The points are the cartesian product of the lists,
the first parameter varying slowest. Each point trains as train.py would,
with the --gin_file files, then the --gin_bindings, then the point's own
bindings, in its own run directory named after its values of the parameters
that vary (a parameter with one value is the same for all points):

  runs/my_sweep/
    sweep.json                      the sweep: gin files, bindings, grid
                                    (and named points, see below)
    RecurrentLM.d_model=200/
      (a run directory of train.py: checkpoint, config.gin, metrics.jsonl...)
      status.json                   running | finished | failed | interrupted,
                                    start/end time, wall time, error line
      train.log                     the run's output (--workers > 1 only)
    ...
    results.csv, results.md         the table, one row per point
    curves.png                      validation perplexity of every point

An ablation is not a product: a grid file whose top-level key is `points`
lists named points instead, each with its own bindings (one value per
param), applied after the optional `every_point` bindings shared by all:

  every_point:
    train.n_epochs: 6
  points:
    full: {}
    no_variational: {RecurrentLM.variational: false}
    no_ar_tar: {RecurrentLM.activation_reg: 0.0, RecurrentLM.temporal_activation_reg: 0.0}

Values follow the grid's rules (null is gin's None). The points train in file
order, each in a run directory named after it (runs/my_sweep/no_ar_tar/);
--sweep flags do not combine with a points file. Otherwise a points sweep
runs, resumes and reports as a grid does; its table gives each point's name
and own bindings.

Rerunning the same command (or just `--output_dir runs/my_sweep`) skips the
finished points, resumes interrupted ones from their checkpoints and retries
failed ones; if a gin file changed since a point started, the rerun refuses
(that point's run belongs to another config). A point that fails is recorded
with its error line and the others go on; Ctrl-C (or SIGTERM) saves the
running point's checkpoint and stops the sweep.

The table's validation perplexity comes from the points' 'valid' records
(exact, over the whole validation split) or, if no point has any, from
trax's sampled-window 'eval' records; results.md says which.

--workers 1 (the default) trains the points one after another in this
process, so TensorFlow/trax is imported once, and JAX spreads each training
over all the cores. --workers N trains N points at a time, each in its own
Python process (each importing TensorFlow and trax) pinned to its own 1/N of
the cores, so their thread pools do not compete (docs/sweeps.md, for what
that gives on 2 cores).

This module is the command line. lm_trax.sweep_grid reads grids and points
files into points, lm_trax.sweep_run keeps the sweep directory and trains the
points, lm_trax.sweep_report writes the table and the plot.
"""

import argparse
import os
import pathlib
import signal
import sys

from absl import logging

from lm_trax import cli
from lm_trax import config
from lm_trax import process
from lm_trax import sweep_report
from lm_trax import sweep_run
from lm_trax.errors import UserError, exit_with


def _parse_args(argv):
  parser = cli.parser('lm_trax.sweep', 'Train a grid of gin bindings, one run '
                      'per point, and report a results table and a plot.')
  parser.add_argument('--gin_file', action='append', default=[],
                      help='gin config file, in order (repeatable)')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help="a binding for every point, e.g. 'train.eval_every"
                      " = 100' (repeatable)")
  parser.add_argument('--sweep', action='append', default=[],
                      help="a swept parameter, 'Configurable.param = [v1, v2]'"
                      ' (repeatable)')
  parser.add_argument('--grid', help='a YAML grid or points file '
                      '(gin/sweeps/*.yaml)')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--output_dir', help='the sweep directory')
  target.add_argument('--report', metavar='SWEEP_DIR',
                      help='only write the results of SWEEP_DIR')
  parser.add_argument('--workers', type=int, default=1,
                      help='points trained at a time; with more than 1, each '
                      'in its own process on its share of the cores')
  cli.add_verbose_argument(parser)
  parser.add_argument('--run_point', help=argparse.SUPPRESS)
  parser.add_argument('--cores', help=argparse.SUPPRESS)  # With --run_point.
  return parser.parse_args(argv)


def sweep_from_args(args):
  """The Sweep the flags define, or the stored one if they define none."""
  if not (args.gin_file or args.gin_bindings or args.sweep or args.grid):
    return sweep_run.Sweep.load(args.output_dir)
  if not args.gin_file:
    raise UserError('give a config: --gin_file gin/ptb_lstm.gin (see gin/)')
  return sweep_run.make_sweep(
      [str(config.find_gin_file(p).resolve()) for p in args.gin_file],
      list(args.gin_bindings), args.grid, args.sweep)


def _run_one_point(output_dir, name):
  """The worker process of --workers > 1: trains the point called name."""
  sweep = sweep_run.Sweep.load(output_dir)
  points = {p.name: p for p in sweep.points()}
  if name not in points:
    raise UserError(f'{output_dir} has no point {name}')
  status = sweep_run.run_point(sweep, points[name],
                               pathlib.Path(output_dir) / name)
  return 0 if status['status'] == 'finished' else 1


def _interruptions():
  """What stops a sweep: Ctrl-C, or signals.Interrupted (SIGINT/SIGTERM,
  checkpoint saved). Only a point that trained can raise the latter, so it is
  looked up only if lm_trax.signals (and so trax) was imported."""
  signals = sys.modules.get('lm_trax.signals')
  return (KeyboardInterrupt,) + ((signals.Interrupted,) if signals else ())


def main(argv=None):
  """Command line; see the module docstring."""
  args = _parse_args(argv)
  logging.use_absl_handler()  # So gin's include search stays quiet.
  logging.set_verbosity(logging.WARNING)  # trax prints its progress itself.
  try:
    if args.report:
      sweep_report.write_report(args.report)
    elif args.run_point:
      if args.cores:  # Before JAX or TensorFlow size their thread pools.
        os.sched_setaffinity(0, [int(c) for c in args.cores.split(',')])
      process.set_up()
      sys.exit(_run_one_point(args.output_dir, args.run_point))
    else:
      if args.workers < 1:
        raise UserError(f'--workers must be at least 1, got {args.workers}')
      process.set_up()  # Points may train in this process.
      sweep_run.run_sweep(sweep_from_args(args), args.output_dir,
                          args.workers)
      sweep_report.write_report(args.output_dir)
  except _interruptions() as e:
    reason = ('interrupted; rerun the same command to resume'
              if isinstance(e, KeyboardInterrupt) else sweep_run.error_line(e))
    print(f'sweep stopped: {reason}', file=sys.stderr)
    sys.exit(128 + getattr(e, 'signum', signal.SIGINT))
  except UserError as e:
    exit_with(e, args.verbose)


if __name__ == '__main__':
  main()
