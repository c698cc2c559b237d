"""Devices and processes: how one global batch is split, and multi-host set-up.

A run has P processes (hosts) with L local devices each, G = P * L devices in
all (jax.device_count()). Every process builds the same stream of global
batches of B rows and keeps its own shard of each, B / P consecutive rows;
trax's Loop then splits those over the process's L devices (pmap):

      global batch (B rows)           process p                 device d of p
      rows 0 .. B-1          ->  rows p*B/P .. (p+1)*B/P-1  ->  B/G rows each

so the devices, in process-then-device order, hold the global batch in row
order: together they train on exactly the rows one device would. Gradients
are averaged over all G devices; the loss (lm_trax.losses) is the
mask-weighted mean over the whole global batch, the same number as on one
device. The carried RNN state
is split along the batch like the data: row r of the state lives with row r
of the batches.

Batch sizes (why some are errors and some are rounded):
  * contiguous streams: Batching.batch_size must be a multiple of G; rows are
    parallel streams through the corpus, so adding rows would change what is
    trained. Otherwise: a one-line UserError naming the fix.
  * line streams: each bucket's batch is padded with all-padding rows (loss
    weight 0) up to a multiple of G. They change no loss or gradient, only
    cost compute; the note printed at start says so. Every batch of a bucket
    has one static shape, so nothing recompiles once each bucket has been
    seen (see tests/test_parallel.py, which counts compilations).

Multi-host: `initialize` calls jax.distributed.initialize before anything
touches a device. Only process 0 prints, writes metrics.jsonl, TensorBoard
files, config.gin and checkpoints (as trax's Loop does, `is_chief`); the run
directory must be on a file system all processes see, for resuming.
"""

import contextlib
import dataclasses
import functools
import os

import jax
from jax import numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from lm_trax import trax_internals
from lm_trax.errors import UserError


# Processes -----------------------------------------------------------------------

def detected_cluster():
  """The multi-process environment JAX can configure itself, or None.

  Looked up from environment variables and local hardware only (no network):
  SLURM with more than one task, Open MPI (mpirun), or a Cloud TPU VM (JAX
  then asks the TPU metadata server which workers belong to the slice).
  """
  env = os.environ
  if all(k in env for k in ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST',
                            'SLURM_NTASKS', 'SLURM_PROCID', 'SLURM_LOCALID')):
    if int(env['SLURM_NTASKS']) > 1:
      return 'slurm'
  if 'OMPI_MCA_orte_hnp_uri' in env:
    return 'openmpi'
  try:
    from jax._src import hardware_utils  # pylint: disable=g-import-not-at-top  (private: may be gone)
    n_tpu_chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
  except Exception:  # pylint: disable=broad-except  (a private JAX module)
    n_tpu_chips = 0
  return 'tpu' if n_tpu_chips else None


def initialize(coordinator_address=None, num_processes=None, process_id=None):
  """Starts JAX's multi-process runtime if this run has several processes.

  With any argument given, calls jax.distributed.initialize with them (JAX
  fills in the others from the environment where it can). With none, calls
  it without arguments when `detected_cluster()` finds SLURM, Open MPI or a
  TPU VM, and does nothing otherwise (one process). Must run before anything
  uses a device.

  Returns:
    A one-line description of the processes and devices, or None for a
    single process on which nothing was initialized.
  """
  given = (coordinator_address, num_processes, process_id)
  if all(v is None for v in given):
    cluster = detected_cluster()
    if cluster is None:
      return None
    jax.distributed.initialize()
    how = f'auto-detected ({cluster})'
  else:
    if num_processes is not None and num_processes < 1:
      raise UserError(f'--num_processes must be >= 1, got {num_processes}')
    if (process_id is not None and num_processes is not None and
        not 0 <= process_id < num_processes):
      raise UserError(f'--process_id must be in [0, {num_processes}), got '
                      f'{process_id}')
    try:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes,
                                 process_id=process_id)
    except (ValueError, RuntimeError) as e:
      raise UserError(f'jax.distributed.initialize failed: '
                      f'{" ".join(str(e).split())[:300]}; check '
                      '--coordinator_address, --num_processes and '
                      '--process_id') from e
    how = f'coordinator {coordinator_address or "(from the environment)"}'
  return (f'process {jax.process_index()} of {jax.process_count()}, '
          f'{jax.local_device_count()} local of {jax.device_count()} devices, '
          f'{how}')


def is_chief():
  """True in process 0, the one that prints and writes the run directory."""
  return jax.process_index() == 0


def quiet_unless_chief():
  """A context in which trax's Loop prints its 'Step ...' lines in process 0
  only (in the others they still go to absl logging); lm_trax.loop.Loop
  builds and runs inside it."""
  if is_chief():
    return contextlib.nullcontext()
  return trax_internals.loop_messages_to_log_only()


# How a global batch is split --------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
  """G devices over P processes; this is process `process_index`."""
  n_devices: int = 1
  n_processes: int = 1
  process_index: int = 0

  @classmethod
  def current(cls):
    return cls(jax.device_count(), jax.process_count(), jax.process_index())

  @property
  def n_local_devices(self):
    return self.n_devices // self.n_processes

  def rows_per_process(self, n_rows):
    return n_rows // self.n_processes

  def describe(self):
    if self.n_processes == 1:
      return f'{self.n_devices} device{"s" if self.n_devices > 1 else ""}'
    return (f'{self.n_devices} devices ({self.n_processes} processes x '
            f'{self.n_local_devices})')


def TakeRows(layout):  # pylint: disable=invalid-name
  """Stream stage: keeps this process's B / P consecutive rows of each batch."""
  def take(generator):
    for batch in generator:
      rows = layout.rows_per_process(batch[0].shape[0])
      start = layout.process_index * rows
      yield tuple(x[start:start + rows] for x in batch)
  if layout.n_processes == 1:
    return lambda generator: generator
  return take


# The carried state, split along the batch like the data -------------------------

def split_state(state, n_devices):
  """Batch-major state arrays (B, ...) -> (n_devices, B / n_devices, ...), one
  slice per local device, as trax's pmap expects (it would replicate them).

  Every array in an lm_trax model's state is batch-major (RNN hidden states,
  the NPLM's last ids, AR/TAR sums), so row r of the state goes with row r of
  the batch. The one exception, tl.Dropout's 0-d rate, gets a copy per
  device.
  """
  if n_devices == 1:
    return state
  sharding = NamedSharding(Mesh(np.array(jax.local_devices()), ('devices',)),
                           PartitionSpec('devices'))

  def split(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return jax.device_put(np.broadcast_to(x, (n_devices,)), sharding)
    return jax.device_put(
        x.reshape((n_devices, x.shape[0] // n_devices) + x.shape[1:]),
        sharding)
  return jax.tree_util.tree_map(split, state)


def gather_state(state, n_devices):
  """The inverse of split_state: (n_devices, b, ...) -> (n_devices * b, ...)."""
  if n_devices == 1:
    return state
  def gather(x):
    x = np.asarray(x)
    if x.ndim == 1:  # A 0-d array, one copy per device.
      return x[0]
    return x.reshape((-1,) + x.shape[2:])
  return jax.tree_util.tree_map(gather, state)


# One device per process -----------------------------------------------------------

def cross_process_update_fn(trainer, layout):
  """A training step for processes that each have one device.

  trax compiles the step with plain jit when a process has one device, so the
  gradients would never be averaged across processes. This one runs trax's
  multi-device step body under pmap over the one local device (a leading
  axis of 1), which averages over every device of every process; the rng is
  split over the processes as trax splits it over devices.
  """
  forward_and_backward = trax_internals.forward_and_backward_fn(trainer)
  optimizer = trainer.optimizer

  @functools.partial(jax.pmap, axis_name='batch')
  def update(weights_and_slots, step, opt_params, batch, state, rng):
    weights, slots = weights_and_slots
    (loss, state), gradients = forward_and_backward(batch, weights, state, rng)
    gradients = trax_internals.average_gradients_across_devices(gradients)
    weights, slots, stats = optimizer.tree_update(
        step, gradients, weights, slots, opt_params, store_slots=False)
    stats['loss'] = loss
    return (weights, slots), state, stats

  add_axis = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None],
                                                 tree)

  def one_device_update(weights_and_slots, step, opt_params, batch, state, rng):
    rng = jax.random.split(rng, layout.n_processes)[layout.process_index]
    out = update(add_axis(weights_and_slots),
                 np.asarray([step], np.int32), add_axis(opt_params),
                 add_axis(batch), add_axis(state), rng[None])
    return jax.tree_util.tree_map(lambda x: x[0], out)
  return one_device_update


@contextlib.contextmanager
def count_compilations():
  """Counts XLA compilations inside the block: yields a list that receives
  the name of every function compiled."""
  names = []
  event = '/jax/core/compile/backend_compile_duration'

  def listener(name, unused_seconds, **kwargs):
    if name == event:
      names.append(kwargs.get('fun_name', '?'))
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield names
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
