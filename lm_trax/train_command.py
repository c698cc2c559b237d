"""The train command: `lm-trax-train` (installed) or `python train.py` (clone).

Both run `main`; rerunning the same command resumes the run. A --gin_file
that is not an existing path names a config shipped with the package
(ptb_lstm.gin or gin/ptb_lstm.gin), so the command works outside a clone.
"""

import contextlib
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging

from lm_trax import config
from lm_trax import process
from lm_trax import trax_internals
from lm_trax.errors import UserError, exit_with, one_line

# How the help names the command; {command} is the command as typed.
USAGE = """\
Trains a language model from gin configs; rerun the same command to resume.

  {command} --gin_file=gin/ptb_lstm.gin
  {command} --gin_file=gin/ptb_lstm.gin --gin_bindings='train.n_steps = 30'
  {command} --gin_file=gin/shakespeare_gru.gin --output_dir=runs/bard

A --gin_file that is not an existing file names a config shipped with
lm_trax (ptb_lstm.gin or gin/ptb_lstm.gin), so these work from any directory.
The shipped configs are in

  {gin_dir}

The run directory defaults to runs/<name of the last gin file>.

Every local device (GPU, TPU core, or forced CPU device) trains data-parallel.
Several hosts: run the same command on each, adding

  --coordinator_address=HOST0:PORT --num_processes=N --process_id=I

(on a TPU pod slice, under SLURM or mpirun these are found automatically).
See docs/scaling.md.
"""

FLAGS = flags.FLAGS
_FLAGS = (
    flags.DEFINE_multi_string('gin_file', [], 'Gin config files, in order.'),
    flags.DEFINE_multi_string('gin_bindings', [],
                              "Gin bindings applied after the files, e.g. "
                              "'train.n_steps = 30'."),
    flags.DEFINE_string('output_dir', None,
                        'Run directory (default: runs/<last gin file name>).'),
    flags.DEFINE_bool('verbose', False, 'Show tracebacks for user errors.'),
    flags.DEFINE_string('coordinator_address', None,
                        'Several processes: host:port of process 0, for '
                        'jax.distributed.initialize (default: auto-detected '
                        'on TPU pods, SLURM and Open MPI; else one process).'),
    flags.DEFINE_integer('num_processes', None,
                         'Several processes: how many in all.'),
    flags.DEFINE_integer('process_id', None,
                         'Several processes: this one, 0 .. num_processes - 1.'),
)


def main(argv=None):
  """Runs the command on argv (default sys.argv) and exits: the entry point
  of the lm-trax-train console script and of train.py."""
  argv = list(sys.argv if argv is None else argv)
  with _usage(command_name(argv[0])):
    app.run(run, argv=argv)


def run(argv):
  """Trains as the parsed flags say (absl's main: argv holds no flags)."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # trax prints its progress itself.
  process.set_up()  # Before TensorFlow and XLA start their threads.
  # Imported here, not above, so that --help answers at once instead of after
  # the seconds that importing trax, JAX and TensorFlow takes; compat first,
  # as its fixes (and quieter imports) must precede trax's import.
  from lm_trax import compat  # pylint: disable=g-import-not-at-top,unused-import
  from lm_trax import parallel  # pylint: disable=g-import-not-at-top
  from lm_trax import signals  # pylint: disable=g-import-not-at-top
  try:
    processes = parallel.initialize(FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id)
    if processes and parallel.is_chief():
      print(processes, flush=True)
    # After initialize: importing training starts JAX's devices
    # (lm_trax.inference makes a random key when it is imported).
    from lm_trax import training  # pylint: disable=g-import-not-at-top
    if not FLAGS.gin_file:
      raise UserError('give a config: --gin_file=gin/ptb_lstm.gin (shipped '
                      f'configs: {config.GIN_DIR})')
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    config.check_trainable()
    output_dir = FLAGS.output_dir or f'runs/{config.run_name(FLAGS.gin_file)}'
    training.train(output_dir=output_dir)
  except signals.Interrupted as e:
    print(one_line(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except UserError as e:
    exit_with(e, FLAGS.verbose)


def command_name(program):
  """The command as the user typed it, from argv[0]: `lm-trax-train` for the
  console script (whatever directory it is in), `python train.py` for the
  script, `python -m lm_trax.train_command` for this module."""
  path = pathlib.Path(program)
  if path.suffix != '.py':
    return path.name
  if path.resolve() == pathlib.Path(__file__).resolve():
    return 'python -m lm_trax.train_command'
  return f'python {path.name}'


@contextlib.contextmanager
def _usage(command):
  """Makes absl's --help and usage errors show USAGE for `command`.

  absl prints the __main__ module's docstring as the usage and lists the
  flags of the module named sys.argv[0]: neither is this module when the
  console script or train.py imports it, so both are pointed here.
  """
  text = USAGE.format(command=command, gin_dir=config.GIN_DIR)
  for flag in _FLAGS:
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[flag.name])
  # absl expands %s in the usage text.
  with trax_internals.main_docstring(text.replace('%', '%%')):
    yield


if __name__ == '__main__':
  main()
