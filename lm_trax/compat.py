"""Makes trax 1.4.1 work on current JAX, and keeps its imports quiet.

Everything lm_trax changes in its dependencies is listed here. Fixes (a)-(f)
live in this module and are applied once, by `apply()`, when it is first
imported: trax does not work without them. Every lm_trax module that imports
trax imports this one before it (`import lm_trax` alone imports neither, so
commands' --help, plots and sweep reports start without TensorFlow). Fix (g)
changes the whole process rather than trax, so importing this module does
not apply it: the commands do, at their start (lm_trax.process.set_up).

Fixes (each has a test in tests/test_compat.py that shows the breakage):

  (a) trax.fastmath.numpy.tree_unflatten compares a subtree with ``in``, i.e.
      with ``==``; a jax.Array compared with ``()`` now raises TypeError, so
      resuming a Loop from its checkpoint fails. We compare leaves by identity
      or structure instead (trax.fastmath.tree_unflatten is the same function).
  (b) Multi-device training: jax.device_put_replicated is gone (trax calls it in
      tl.for_n_devices), and tl.on_cpu moves arrays sharded over several devices
      onto one, which pmap then rejects. We replicate through a NamedSharding,
      and leave multi-device arrays where they are.
  (c) trax.trainer imports ``jax.lib.xla_extension``, which no longer exists;
      its distributed-runtime functions now live in jax's ``_jax`` extension,
      which we register under the old name.
  (d) Start-up time: trax's @assert_shape decorator (65 uses, run while trax
      is imported) calls ``inspect.stack()`` only to record "Defined at
      file:line". inspect.stack() reads the source of every frame and scans
      every loaded module for each one -- with TensorFlow loaded, most of
      the time `import trax` takes. While trax is imported, inspect.stack and
      inspect.getframeinfo read no source (context=0); file and line, all
      that trax keeps, are unchanged.
  (e) trax registers gin configurables named like lm_trax's (train, GRULM,
      RNNLM), which makes bindings such as `train.n_steps` ambiguous; their
      registrations are dropped.
  (f) gin has one process-wide configuration and no public way to save and
      restore it; `gin_isolated()` does, so that opening a run directory
      (which parses its config.gin) leaves the caller's configuration, and
      other open runs, alone.
  (g) Memory (Linux, glibc): XLA:CPU allocates the temporaries of each run
      of a compiled program as one buffer (tens of MB for a training step
      of a word-level LM: the (B*T, V) logits and their gradient). glibc
      serves an allocation above 32 MB (its largest mmap threshold) by mmap
      and returns it by munmap, so each step maps the buffer afresh and
      page-faults every 4 KB page of it in again; in arenas of other
      threads, freed memory is also given back and faulted in again.
      `lm_trax.process.reuse_freed_memory()` has glibc serve large
      allocations from its heap (M_MMAP_MAX 0), never give the heap back
      (M_TRIM_THRESHOLD) and use one arena (M_ARENA_MAX 1), so that each step
      reuses memory that is already mapped. The process keeps its peak memory
      until it ends. LM_TRAX_MALLOC=default leaves glibc as it is, as does a
      malloc setting of the user's own (GLIBC_TUNABLES, MALLOC_*_, a
      preloaded malloc). It must run before TensorFlow and XLA start their
      threads, which importing this module does: so it lives in the
      standard-library-only lm_trax.process, whose set_up() each command
      calls first.

Quiet imports: no gym banner, no TensorFlow C++ start-up lines, no warnings that
trax raises on today's JAX for things lm_trax cannot change.
"""

import contextlib
import inspect
import os
import sys
import warnings

from gin import config as gin_config
import jax
import jax.lib
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

# TensorFlow and trax are imported by `_quiet_imports`, quietly and with fix
# (d) in place; the fixes below import trax's modules after it, inside their
# functions for that reason.

_APPLIED = False

# Saved originals, so tests can show what breaks without the fixes.
ORIGINALS = {}


@contextlib.contextmanager
def _stderr_fd_silenced():
  """Redirects file descriptor 2 (C++ logging bypasses sys.stderr)."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # No real fd 2 (e.g. captured stderr).
    yield
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


@contextlib.contextmanager
def _frames_without_source():
  """(d) inspect.stack/getframeinfo with context=0 (no source read)."""
  ORIGINALS['inspect.stack'] = stack = inspect.stack
  ORIGINALS['inspect.getframeinfo'] = getframeinfo = inspect.getframeinfo
  # stack()[0] would be this lambda's frame: skip it like inspect.stack does.
  inspect.stack = lambda context=1: stack(0)[1:]
  inspect.getframeinfo = lambda frame, context=1: getframeinfo(frame, 0)
  try:
    yield
  finally:
    inspect.stack, inspect.getframeinfo = stack, getframeinfo


def _quiet_imports():
  """Imports TensorFlow and trax once, with their start-up noise dropped."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  # gym prints a 4-line banner from gym_notices; trax imports gym through
  # trax.supervised.callbacks -> trax.rl. gym imports fine without it.
  sys.modules.setdefault('gym_notices', None)
  warnings.filterwarnings(
      'ignore', message='GzipFile was opened for writing', category=FutureWarning)
  warnings.filterwarnings('ignore', module=r'gym(\.|$)')
  warnings.filterwarnings('ignore', message=r'.*jax\.host_count.*')
  warnings.filterwarnings('ignore', message=r'.*jax\.process_count has been renamed.*')
  with _stderr_fd_silenced():
    import tensorflow  # pylint: disable=unused-import,g-import-not-at-top  (silenced)
    tensorflow.get_logger().setLevel('ERROR')
    with _frames_without_source():
      import trax  # pylint: disable=unused-import,g-import-not-at-top  (under fix (d))
  # trax calls the deprecated alias jax.host_count(); give it the new name.
  jax.host_count = jax.process_count


# (a) ------------------------------------------------------------------------

def _in_by_identity(tree, candidates):
  """``tree in candidates`` without calling Array.__eq__ on arrays."""
  for candidate in candidates:
    if tree is candidate:
      return True
    if isinstance(tree, (tuple, list, dict)) and type(tree) is type(candidate):
      try:
        if tree == candidate:  # Only containers: () == (), {} == {}.
          return True
      except (TypeError, ValueError):
        continue
  return False


def tree_unflatten(flat, tree, copy_from_tree=None):
  """trax.fastmath.numpy.tree_unflatten, safe for jax.Array leaves."""
  if copy_from_tree is not None and _in_by_identity(tree, copy_from_tree):
    return tree, flat
  if isinstance(tree, (list, tuple)):
    new_tree, rest = [], flat
    for t in tree:
      new_t, rest = tree_unflatten(rest, t, copy_from_tree=copy_from_tree)
      new_tree.append(new_t)
    new_tree = tuple(new_tree) if isinstance(tree, tuple) else new_tree
    return new_tree, rest
  if isinstance(tree, dict):
    new_tree, rest = {}, flat
    for k in tree:
      new_v, rest = tree_unflatten(rest, tree[k], copy_from_tree=copy_from_tree)
      new_tree[k] = new_v
    return new_tree, rest
  return flat[0], flat[1:]


def _fix_tree_unflatten():
  from trax import fastmath  # pylint: disable=g-import-not-at-top  (after _quiet_imports)
  # `from trax.fastmath import numpy` would give the backend's numpy proxy.
  fastmath_numpy = sys.modules['trax.fastmath.numpy']
  ORIGINALS['tree_unflatten'] = fastmath_numpy.tree_unflatten
  fastmath_numpy.tree_unflatten = tree_unflatten
  fastmath.tree_unflatten = tree_unflatten


# (b) ------------------------------------------------------------------------

def device_put_replicated(x, devices):
  """Stacks ``len(devices)`` copies of ``x``, one per device (leading axis)."""
  devices = list(devices)
  x = np.asarray(x) if not isinstance(x, jax.Array) else x
  stacked = jax.numpy.broadcast_to(x[None], (len(devices),) + tuple(x.shape))
  sharding = NamedSharding(Mesh(np.array(devices), ('devices',)),
                           PartitionSpec('devices'))
  return jax.device_put(stacked, sharding)


def on_cpu(x):
  """tl.on_cpu that leaves arrays spanning several devices in place."""
  cpu = jax.devices('cpu')[0]

  def put(leaf):
    if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
      return leaf
    return jax.device_put(leaf, cpu)
  return jax.tree_util.tree_map(put, x)


def _fix_multi_device():
  from trax import layers as tl  # pylint: disable=g-import-not-at-top  (after _quiet_imports)
  from trax.layers import acceleration  # pylint: disable=g-import-not-at-top  (after _quiet_imports)
  ORIGINALS['on_cpu'] = acceleration.on_cpu
  try:
    jax.device_put_replicated(0, jax.local_devices()[:1])
  except (AttributeError, NotImplementedError):
    # trax looks the function up on the jax module at call time.
    jax.device_put_replicated = device_put_replicated
  acceleration.on_cpu = on_cpu
  tl.on_cpu = on_cpu
  # Modules that imported the name directly keep their own reference.
  for module_name in ('trax.supervised.training', 'trax.optimizers.trainer',
                      'trax.layers.base'):
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, 'on_cpu', None) is ORIGINALS['on_cpu']:
      module.on_cpu = on_cpu


# (c) ------------------------------------------------------------------------

def _fix_xla_extension():
  if 'jax.lib.xla_extension' in sys.modules or hasattr(jax.lib, 'xla_extension'):
    return
  from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top  (a private module, only where the old name is gone)
  sys.modules['jax.lib.xla_extension'] = _jax
  jax.lib.xla_extension = _jax


# (e) ------------------------------------------------------------------------

# trax registers gin configurables under names lm_trax defines too, which would
# make `train.n_steps = 30` or `GRULM.d_model = 512` ambiguous. lm_trax never
# uses these trax functions, so their registrations are dropped.
_SHADOWED_TRAX_CONFIGURABLES = (
    'trax.supervised.trainer_lib.train',
    'trax.models.GRULM',
    'trax.models.RNNLM',
)


def _drop_shadowed_trax_configurables():
  registry = gin_config._REGISTRY  # pylint: disable=protected-access
  for selector in _SHADOWED_TRAX_CONFIGURABLES:
    if selector in registry:
      ORIGINALS[selector] = registry.pop(selector)


# (f) ------------------------------------------------------------------------

@contextlib.contextmanager
def gin_isolated():
  """Runs a block with gin's global configuration saved, then restored.

  gin keeps one process-wide configuration; opening a run directory parses
  the run's config.gin into it. Inside this block that leaves the caller's
  configuration (and any other loaded run) untouched. gin has no public way
  to save it: these are gin-config 0.5.0's module-level tables (bindings,
  the operative record, imports, singletons, search paths, the lock).
  """
  g = gin_config  # pylint: disable=protected-access
  saved = ({key: dict(value) for key, value in g._CONFIG.items()},
           {key: dict(value) for key, value in g._OPERATIVE_CONFIG.items()},
           set(g._IMPORTS), dict(g._SINGLETONS), list(g._LOCATION_PREFIXES),
           g._CONFIG_IS_LOCKED)
  try:
    yield
  finally:
    config, operative, imports, singletons, prefixes, locked = saved
    g._CONFIG.clear()
    g._CONFIG.update(config)
    with g._OPERATIVE_CONFIG_LOCK:
      g._OPERATIVE_CONFIG.clear()
      g._OPERATIVE_CONFIG.update(operative)
    g._IMPORTS.clear()
    g._IMPORTS.update(imports)
    g._SINGLETONS.clear()
    g._SINGLETONS.update(singletons)
    g._LOCATION_PREFIXES[:] = prefixes
    g._set_config_is_locked(locked)


def apply():
  """Applies fixes (a)-(f) once; safe to call again."""
  global _APPLIED
  if _APPLIED:
    return
  _quiet_imports()
  _fix_tree_unflatten()
  _fix_multi_device()
  _fix_xla_extension()
  _drop_shadowed_trax_configurables()
  _APPLIED = True


# Importing this module applies the fixes: every lm_trax module that imports
# trax imports compat first, so trax is never used unfixed.
apply()
