"""Trains a language model from gin configs; rerun the same command to resume.

  python train.py --gin_file=gin/ptb_lstm.gin
  python train.py --gin_file=gin/ptb_lstm.gin --gin_bindings='train.n_steps = 30'
  python train.py --gin_file=gin/shakespeare_gru.gin --output_dir=runs/bard

The run directory defaults to runs/<name of the last gin file>.

Every local device (GPU, TPU core, or forced CPU device) trains data-parallel.
Several hosts: run the same command on each, adding

  --coordinator_address=HOST0:PORT --num_processes=N --process_id=I

(on a TPU pod slice, under SLURM or mpirun these are found automatically).
See README.md, "Scaling out".
"""

import sys

from absl import app
from absl import flags
from absl import logging

import lm_trax  # pylint: disable=unused-import  (applies trax fixes, registers)
from lm_trax import config
from lm_trax import parallel
from lm_trax import training
from lm_trax.errors import UserError, exit_with, one_line

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', [], 'Gin config files, in order.')
flags.DEFINE_multi_string('gin_bindings', [],
                          "Gin bindings applied after the files, e.g. "
                          "'train.n_steps = 30'.")
flags.DEFINE_string('output_dir', None,
                    'Run directory (default: runs/<last gin file name>).')
flags.DEFINE_bool('verbose', False, 'Show tracebacks for user errors.')
flags.DEFINE_string('coordinator_address', None,
                    'Several processes: host:port of process 0, for '
                    'jax.distributed.initialize (default: auto-detected on '
                    'TPU pods, SLURM and Open MPI; else one process).')
flags.DEFINE_integer('num_processes', None,
                     'Several processes: how many in all.')
flags.DEFINE_integer('process_id', None,
                     'Several processes: this one, 0 .. num_processes - 1.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # trax prints its progress itself.
  try:
    processes = parallel.initialize(FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id)
    if processes and parallel.is_chief():
      print(processes, flush=True)
    if not FLAGS.gin_file:
      raise UserError('give a config: --gin_file=gin/ptb_lstm.gin (see gin/)')
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    config.check_trainable()
    output_dir = FLAGS.output_dir or f'runs/{config.run_name(FLAGS.gin_file)}'
    training.train(output_dir=output_dir)
  except training.Interrupted as e:
    print(one_line(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except UserError as e:
    exit_with(e, FLAGS.verbose)


if __name__ == '__main__':
  app.run(main)
