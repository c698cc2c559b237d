"""Trains a language model from gin configs; rerun the same command to resume.

  python train.py --gin_file=gin/ptb_lstm.gin
  python train.py --gin_file=gin/ptb_lstm.gin --gin_bindings='train.n_steps = 30'
  python train.py --gin_file=gin/shakespeare_gru.gin --output_dir=runs/bard

The run directory defaults to runs/<name of the last gin file>.
"""

import sys

from absl import app
from absl import flags
from absl import logging

import lm_trax  # pylint: disable=unused-import  (applies trax fixes, registers)
from lm_trax import config
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # trax prints its progress itself.
  try:
    if not FLAGS.gin_file:
      raise UserError('give a config: --gin_file=gin/ptb_lstm.gin (see gin/)')
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    output_dir = FLAGS.output_dir or f'runs/{config.run_name(FLAGS.gin_file)}'
    training.train(output_dir=output_dir)
  except training.Interrupted as e:
    print(one_line(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except UserError as e:
    exit_with(e, FLAGS.verbose)


if __name__ == '__main__':
  app.run(main)
