"""Each fix in lm_trax.compat, shown failing without it and working with it."""

import contextlib
import json
import os
import platform
import subprocess
import sys
import textwrap

import gin
import jax
import numpy as np
import pytest

from lm_trax import compat
from lm_trax import process
from lm_trax.errors import UserError

from conftest import REPO  # pylint: disable=g-bad-import-order


def test_a_tree_unflatten_with_array_leaves():
  """trax's version compares jax.Arrays with () and raises (Loop resume)."""
  tree = (jax.numpy.ones(3), (), (jax.numpy.zeros(2),))
  flat = [np.full(3, 7.0), np.full(2, 8.0)]
  with pytest.raises(TypeError):  # (Its recursion now calls the fixed one.)
    compat.ORIGINALS['tree_unflatten'](flat, tree[0], copy_from_tree=[None, ()])
  new_tree, rest = compat.tree_unflatten(flat, tree, copy_from_tree=[None, ()])
  assert rest == []
  assert new_tree[1] == ()
  np.testing.assert_array_equal(new_tree[0], flat[0])
  np.testing.assert_array_equal(new_tree[2][0], flat[1])
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  assert fastmath.tree_unflatten is compat.tree_unflatten


def test_c_trax_trainer_imports():
  """trax.trainer imports jax.lib.xla_extension, gone from current JAX.

  In a fresh process: trax.trainer defines absl flags (--output_dir, ...)
  that lm_trax's train command, which other test files import, defines too.
  """
  code = ('from lm_trax import compat\n'
          'import trax.trainer\n'
          'from jax.lib import xla_extension\n'
          'assert callable(xla_extension.get_distributed_runtime_client)\n'
          'assert callable(xla_extension.get_distributed_runtime_service)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]


def test_d_assert_shape_reads_no_source_while_trax_imports():
  """trax's @assert_shape ran inspect.stack() 65 times during `import trax`."""
  import inspect  # pylint: disable=g-import-not-at-top
  from trax.layers import core  # pylint: disable=g-import-not-at-top
  assert inspect.stack is compat.ORIGINALS['inspect.stack']  # Restored.
  assert inspect.getframeinfo is compat.ORIGINALS['inspect.getframeinfo']
  # What trax keeps from the frame is unchanged: the decorator's file:line.
  message = core.Dense(3)._before_assert_fun._message  # pylint: disable=protected-access
  assert message.startswith(f'Defined at {core.__file__}:33 ')

  def frames_read(context):
    calls = []
    original = inspect.findsource

    def counting(obj):
      calls.append(obj)
      return original(obj)
    inspect.findsource = counting
    try:
      with context():
        inspect.getframeinfo(inspect.stack()[1][0])
    finally:
      inspect.findsource = original
    return len(calls)
  assert frames_read(contextlib.nullcontext) > 1  # The slow original.
  assert frames_read(compat._frames_without_source) == 0  # pylint: disable=protected-access


_TWO_DEVICE_SCRIPT = textwrap.dedent('''
    import json, sys
    import lm_trax
    print('IMPORTED', flush=True)
    import jax, numpy as np
    from lm_trax import compat
    from trax import layers as tl, optimizers, shapes
    from trax.supervised import training
    assert jax.local_device_count() == 2

    # (b) without the fixes: no device_put_replicated; on_cpu gathers arrays
    # that are sharded over both devices onto one device.
    replicated = jax.device_put_replicated(np.ones(3), jax.local_devices())
    moved = compat.ORIGINALS['on_cpu'](replicated)
    result = {'original_on_cpu_devices': len(moved.sharding.device_set),
              'fixed_on_cpu_devices':
                  len(tl.on_cpu(replicated).sharding.device_set)}

    # With the fixes a 2-device trax Loop trains and checkpoints.
    def batches():
      rng = np.random.default_rng(0)
      while True:
        x = rng.integers(1, 10, size=(4, 6)).astype(np.int32)
        yield x, x, np.ones((4, 6), np.float32)
    model = tl.Serial(tl.Embedding(10, 8), tl.Dense(10))
    task = training.TrainTask(batches(), tl.WeightedCategoryCrossEntropy(),
                              optimizers.Adam(0.01), n_steps_per_checkpoint=2)
    loop = training.Loop(model, task, output_dir=sys.argv[1])
    loop.run(2)
    result['n_devices'] = loop.n_devices
    result['step'] = loop.step
    print('RESULT ' + json.dumps(result), flush=True)
''')


def test_b_multi_device_loop_and_quiet_import(tmp_path):
  """On 2 (forced CPU) devices a trax Loop trains; importing lm_trax is quiet."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  proc = subprocess.run(
      [sys.executable, '-c', _TWO_DEVICE_SCRIPT, str(tmp_path / 'run')],
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  before_import, _, after = proc.stdout.partition('IMPORTED')
  assert before_import == '', before_import  # No gym banner, no noise.
  result = json.loads(after.split('RESULT ')[1])
  assert result['original_on_cpu_devices'] == 1  # The breakage.
  assert result['fixed_on_cpu_devices'] == 2
  assert result['n_devices'] == 2 and result['step'] == 2
  assert (tmp_path / 'run' / 'model.pkl.gz').exists()
  noise = [line for line in proc.stderr.splitlines()
           if 'Warning' in line or 'warning' in line or 'cuda' in line
           or 'oneDNN' in line or 'Gym' in line]
  assert not noise, noise


def test_e_trax_gin_names_do_not_shadow_lm_traxs():
  from gin import config as gin_config  # pylint: disable=g-import-not-at-top
  from lm_trax import config  # pylint: disable=g-import-not-at-top
  registry = gin_config._REGISTRY  # pylint: disable=protected-access
  shadowed = {s: compat.ORIGINALS[s] for s in compat._SHADOWED_TRAX_CONFIGURABLES}  # pylint: disable=protected-access
  bindings = ['train.n_steps = 3', 'GRULM.d_model = 8', 'RNNLM.n_layers = 1']
  for selector, entry in shadowed.items():  # As trax leaves them.
    registry[selector] = entry
  try:
    for binding in bindings:
      with pytest.raises(UserError, match='Ambiguous selector'):
        config.parse([], [binding])
  finally:
    for selector in shadowed:
      registry.pop(selector)
  config.parse([], bindings)  # With the fix: lm_trax's names.
  assert gin.query_parameter('train.n_steps') == 3


def test_f_gin_isolated_restores_the_callers_configuration():
  from lm_trax import config  # pylint: disable=g-import-not-at-top
  config.parse([], ['train.n_steps = 3'])
  config.parse([], ['train.n_steps = 7'])  # Without isolation: replaced.
  assert gin.query_parameter('train.n_steps') == 7
  with compat.gin_isolated():
    config.parse([], ['train.n_steps = 11', 'LSTMLM.d_model = 5'])
    assert gin.query_parameter('train.n_steps') == 11
  assert gin.query_parameter('train.n_steps') == 7
  with pytest.raises(ValueError):
    gin.query_parameter('LSTMLM.d_model')


# A program whose temporary, the (3000, 3000) float32 product, is 36 MB:
# above glibc's largest mmap threshold (32 MB).
_FAULTS_PER_RUN = textwrap.dedent('''
    import resource
    import jax
    from jax import numpy as jnp

    def faults_per_run():
      """Minor page faults of each of 3 runs, after 2 to warm up."""
      x = jnp.ones((3000, 3000), jnp.float32) / 3000
      program = jax.jit(lambda x: jnp.tanh(x @ x).sum())
      faults = []
      for run in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        program(x).block_until_ready()
        if run >= 2:
          faults.append(
              resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
      return sorted(faults)
''')
_PAGES = 3000 * 3000 * 4 // 4096


@pytest.mark.skipif(sys.platform != 'linux', reason='glibc on Linux only')
def test_g_large_temporaries_are_not_faulted_in_again_on_every_run(
    monkeypatch):
  """Without the fix (a process of JAX alone), each run of a program with a
  36 MB temporary page-faults its 8,800 pages in again (glibc mmaps it each
  time); with it (a process set up as a command sets up its own, by
  lm_trax.process.set_up before any other thread starts), the memory is
  reused. Both are fresh processes: a test process (an xdist worker above
  all) has started threads, with their own malloc arenas, before its
  conftest could set it up."""
  if platform.libc_ver()[0] != 'glibc':
    pytest.skip('glibc only')
  monkeypatch.delenv('LM_TRAX_MALLOC', raising=False)
  def faults_per_run(set_up):
    program = _FAULTS_PER_RUN + 'print(faults_per_run())'
    if set_up:
      program = 'from lm_trax import process\nprocess.set_up()\n' + program
    done = subprocess.run([sys.executable, '-c', program],
                          capture_output=True, text=True, check=True,
                          timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])
  without_fix = faults_per_run(set_up=False)
  assert without_fix[1] > 0.9 * _PAGES, without_fix
  with_fix = faults_per_run(set_up=True)
  assert with_fix[1] < 0.05 * _PAGES, with_fix


def test_g_the_users_own_malloc_settings_are_left_alone(monkeypatch):
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.arena_max=4')
  assert not process.reuse_freed_memory()
  monkeypatch.delenv('GLIBC_TUNABLES')
  monkeypatch.setenv('LM_TRAX_MALLOC', 'default')
  assert not process.reuse_freed_memory()


_PROCESS_SETTINGS = textwrap.dedent('''
    import ctypes, importlib, json, pkgutil
    import lm_trax
    calls = []  # Every mallopt(parameter, value) looked up through ctypes.
    find = ctypes.CDLL.__getattr__
    ctypes.CDLL.__getattr__ = lambda lib, name: (
        (lambda *args: calls.append(args) or 1) if name == 'mallopt'
        else find(lib, name))
    for module in sorted(m.name for m in pkgutil.iter_modules(lm_trax.__path__)):
      importlib.import_module('lm_trax.' + module)
    import jax
    imported = {'mallopt': len(calls),
                'cache': jax.config.jax_compilation_cache_dir}
    from lm_trax import process
    process.set_up()
    print(json.dumps({'imported': imported,
                      'set_up': {'mallopt': len(calls),
                                 'cache': jax.config.jax_compilation_cache_dir}}))
''')


def test_g_and_the_compilation_cache_are_set_up_by_entry_points_not_imports(
    tmp_path, monkeypatch):
  """Importing every library and command module (trax and compat included)
  neither calls mallopt nor points JAX at a compilation cache; the entry
  points' set-up does both."""
  for name in ('LM_TRAX_MALLOC', 'GLIBC_TUNABLES', 'LD_PRELOAD'):
    monkeypatch.delenv(name, raising=False)
  for name in [k for k in os.environ if k.startswith('MALLOC_')]:
    monkeypatch.delenv(name)
  monkeypatch.setenv('LM_TRAX_JAX_CACHE', str(tmp_path / 'jax'))
  done = subprocess.run([sys.executable, '-c', _PROCESS_SETTINGS],
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result['imported'] == {'mallopt': 0, 'cache': None}
  expected_mallopts = 3 if platform.libc_ver()[0] == 'glibc' else 0
  assert result['set_up'] == {'mallopt': expected_mallopts,
                              'cache': str(tmp_path / 'jax')}
