"""Data-parallel and multi-process training (lm_trax.parallel).

Two forced CPU devices (XLA_FLAGS, in a subprocess: set before JAX starts) and
two local processes (train.py with --coordinator_address) train the same
global batches as one device here, to the same losses; line batches keep
static shapes, so nothing compiles again after the first steps.
"""

import gzip
import json
import os
import pathlib
import pickle
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lm_trax import data
from lm_trax import parallel
from lm_trax import run_dir
from lm_trax import training
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent
GIN_FILES = [str(REPO / 'gin' / 'ptb_lstm.gin'), str(REPO / 'gin' / 'tiny.gin')]
CONTIGUOUS = ['train.checkpoint_every = 2']  # tiny.gin: 4 rows, eval each step.
# Gradient ascent makes the second exact validation (step 2) worse than the
# first: NT-ASGD (nonmono 0) averages steps 3 and 4, across the resume.
REGULARIZED = ['train.lr_schedule = @constant_lr',
               'train.nt_asgd_nonmono = 0', 'train.exact_eval_every = 1',
               'train.checkpoint_every = 2', 'constant_lr.learning_rate = -1.0']
LINES = ["Batching.kind = 'lines'", 'Batching.boundaries = (8,)',
         'Batching.batch_sizes = (3, 1)', 'Batching.max_length = 16',
         'RecurrentLM.carry_state = False', 'train.n_steps = 12',
         'train.eval_every = 4', 'train.exact_eval_every = 4']


def _bindings(data_dir, extra):
  return ['Corpus.download = False', f"Corpus.data_dir = '{data_dir}'"] + extra


def _losses(output_dir, kind, steps=None):
  return {r['step']: r['loss'] for r in run_dir.MetricsLog.read(output_dir)
          if r['kind'] == kind and (steps is None or r['step'] in steps)}


def _checkpoint(output_dir, step):
  path = pathlib.Path(output_dir) / 'checkpoints' / f'step-{step:08d}'
  with gzip.open(path / 'model.pkl.gz', 'rb') as f:
    return pickle.load(f)


def _assert_close(a, b):
  assert a.keys() == b.keys(), (a, b)
  np.testing.assert_allclose([a[k] for k in sorted(a)],
                             [b[k] for k in sorted(b)], rtol=2e-5)


# Batches over devices and processes (one device here) ---------------------------

def test_a_contiguous_batch_size_must_split_over_the_devices():
  batching = data.Batching(batch_size=20)
  with pytest.raises(UserError) as error:
    batching.check_devices(3)
  assert str(error.value) == ('Batching.batch_size = 20 is not divisible by '
                              'the 3 devices; set it to a multiple of 3')
  assert batching.check_devices(4) is None


def test_line_batches_get_weight_0_rows_up_to_the_device_count():
  vocab = vocab_lib.build('a b c d e\n', 'word')
  text = 'a b\na b c d e a b c d\nc\nd e a\n' * 8
  batching = data.Batching(kind='lines', boundaries=(4, 8),
                           batch_sizes=(3, 2, 1), max_length=16)
  assert batching.rows(2) == (4, 2, 2)
  assert 'padded to [4, 2, 2]' in batching.check_devices(2)
  one = list(batching.stream(vocab, text, n_passes=1))
  two = list(batching.stream(vocab, text, n_passes=1, n_devices=2))
  assert len(one) == len(two) > 0
  for a, b in zip(one, two):
    n = a[0].shape[0]
    assert b[0].shape[0] % 2 == 0 and b[0].shape[1:] == a[0].shape[1:]
    for x, y in zip(a, b):
      np.testing.assert_array_equal(y[:n], x)  # The same rows, in order,
      np.testing.assert_array_equal(y[n:], 0)  # then padding of weight 0.


def test_processes_take_consecutive_rows_that_make_up_the_global_batch():
  batch = tuple(np.arange(24).reshape(8, 3) + k for k in range(3))
  shards = [next(parallel.TakeRows(parallel.Layout(4, 2, p))(iter([batch])))
            for p in range(2)]
  for k in range(3):
    np.testing.assert_array_equal(
        np.concatenate([shard[k] for shard in shards]), batch[k])
  assert next(parallel.TakeRows(parallel.Layout(2))(iter([batch]))) is batch


def test_the_loss_on_one_device_is_trax_weighted_cross_entropy():
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from lm_trax import losses  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(4, 5)).astype(np.int32)
  weights = (rng.random((4, 5)) > 0.3).astype(np.float32)
  ours = losses.WeightedCrossEntropy()((logits, targets, weights))
  theirs = tl.WeightedCategoryCrossEntropy()((logits, targets, weights))
  assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


# The same runs on one device, here ----------------------------------------------

def write_lines_data_dir(root):
  """A ptb-like corpus whose lines have 2..12 words: two length buckets."""
  words = ('the cat a dog sees likes the ball a tree my friend follows the '
           'house some food finds').split()
  (root / 'ptb').mkdir(parents=True, exist_ok=True)
  for split, n in (('train', 300), ('valid', 60), ('test', 10)):
    lines = [' '.join(words[(i * 7 + k) % len(words)]
                      for k in range(2 + (i * 5) % 11)) for i in range(n)]
    (root / 'ptb' / f'ptb.{split}.txt').write_text(
        ''.join(f' {line} \n' for line in lines))
  return root


@pytest.fixture(scope='module')
def lines_data_dir(tmp_path_factory):
  return write_lines_data_dir(tmp_path_factory.mktemp('lines_data'))


@pytest.fixture(scope='module')
def one_device(tiny_data_dir, lines_data_dir, tmp_path_factory):
  """Reference runs on one device: contiguous to step 2 then resumed to 4,
  and 12 steps on line batches."""
  from lm_trax import config  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('one_device')
  for n_steps in (2, 4):
    config.parse(GIN_FILES, _bindings(tiny_data_dir, CONTIGUOUS + [
        f'train.n_steps = {n_steps}']))
    training.train(output_dir=str(root / 'contiguous'))
  config.parse(GIN_FILES, _bindings(lines_data_dir, LINES))
  training.train(output_dir=str(root / 'lines'))
  return root


# Two devices, one process ---------------------------------------------------------

_TWO_DEVICES = textwrap.dedent('''
    import json, pathlib, sys
    import jax
    import lm_trax
    from lm_trax import config, evaluate, generate, parallel, trained, training
    from lm_trax.errors import UserError, one_line
    jax.config.update('jax_disable_most_optimizations', True)
    assert jax.device_count() == 2
    gin_files, tiny, lines_dir, out = json.loads(sys.argv[1])
    out = pathlib.Path(out)
    bindings = lambda d, extra: ['Corpus.download = False',
                                 f"Corpus.data_dir = '{d}'"] + extra
    result = {}

    # Contiguous: trained to step 2, then resumed to 4 in a new Loop (the
    # carried state goes through a checkpoint).
    for n_steps in (2, 4):
      config.parse(gin_files, bindings(tiny, %(contiguous)r + [
          f'train.n_steps = {n_steps}']))
      loop = training.train(output_dir=str(out / 'contiguous'))
    state = loop._trainer_per_task[0].accelerated_model_with_loss.state[0]
    result['state_shapes'] = [list(x.shape) for x in
                              jax.tree_util.tree_leaves(state)]
    run = trained.Run(out / 'contiguous')
    result['evaluate'] = evaluate.evaluate(out / 'contiguous', data_dir=tiny,
                                           progress=False).loss
    result['generate'] = generate.generate(run, 'the cat', length=6,
                                           num_samples=2, seed=1)

    # The regularized tied model (dropout's 0-d state, AR/TAR sums, NT-ASGD's
    # average) to step 2, then resumed to 4.
    for n_steps in (2, 4):
      config.parse([str(pathlib.Path(gin_files[0]).with_name(
          'ptb_lstm_tied.gin')), gin_files[1]], bindings(tiny, %(regularized)r
          + [f'train.n_steps = {n_steps}']))
      loop = training.train(output_dir=str(out / 'regularized'))
    result['regularized'] = {'step': loop.step,
                             'averaged': loop._average.count}

    config.parse(gin_files, bindings(tiny, ['Batching.batch_size = 5']))
    try:
      training.train(output_dir=str(out / 'odd'))
    except UserError as e:
      result['error'] = one_line(e)  # As train.py prints it.

    # Lines, batch sizes (3, 1) padded to (4, 2): after 12 steps, 12 more
    # (with evals and checkpoints) compile nothing.
    config.parse(gin_files, bindings(lines_dir, %(lines)r))
    with parallel.count_compilations() as compiled:
      loop = training.train(output_dir=str(out / 'lines'))
      result['first_compilations'] = len(compiled)
      del compiled[:]
      task, shapes = loop._tasks[0], set()
      def spy(stream):
        for batch in stream:
          shapes.add(batch[0].shape)
          yield batch
      task._labeled_data = spy(task._labeled_data)
      loop._n_total_steps = 24
      loop.run(12)
    result['later_compilations'] = compiled
    result['later_shapes'] = sorted(shapes)
    print('RESULT ' + json.dumps(result), flush=True)
''') % {'contiguous': CONTIGUOUS, 'lines': LINES,
       'regularized': REGULARIZED}


def _run(command, env=None):
  return subprocess.Popen(
      command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outputs(procs, timeout=600):
  """(stdout, stderr) of each process; kills them all if one hangs (a
  process whose peer died waits in a collective)."""
  try:
    return [proc.communicate(timeout=timeout) for proc in procs]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope='module')
def two_devices(tiny_data_dir, lines_data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp('two_devices')
  proc = _run([sys.executable, '-c', _TWO_DEVICES, json.dumps(
      [GIN_FILES, str(tiny_data_dir), str(lines_data_dir), str(out)])],
              env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  [(stdout, stderr)] = _outputs([proc])
  assert proc.returncode == 0, stderr[-3000:]
  assert 'data-parallel over 2 devices' in stdout
  return out, json.loads(stdout.split('RESULT ')[1])


def test_two_devices_train_like_one_device_and_resume_exactly(one_device,
                                                              two_devices):
  out, result = two_devices
  ours, reference = out / 'contiguous', one_device / 'contiguous'
  _assert_close(_losses(ours, 'train'), _losses(reference, 'train'))
  _assert_close(_losses(ours, 'eval'), _losses(reference, 'eval'))
  _assert_close(_losses(ours, 'valid'), _losses(reference, 'valid'))
  # Each device holds its half of the carried state: LSTM (c, h) x 2 layers
  # for 4 rows of width 16; all 4 rows are saved, as on one device.
  assert result['state_shapes'] == [[2, 2, 16]] * 4
  saved, expected = _checkpoint(ours, 4), _checkpoint(reference, 4)
  assert len(saved['flat_state']) == len(expected['flat_state']) == 4
  for a, b in zip(saved['flat_state'], expected['flat_state']):
    assert a.shape == (4, 16)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_evaluation_and_generation_run_with_two_devices(two_devices):
  out, result = two_devices
  valid = _losses(out / 'contiguous', 'valid')
  assert result['evaluate'] == pytest.approx(valid[4], rel=1e-5)
  assert len(result['generate']) == 2
  assert all(len(sample.split()) > 2 for sample in result['generate'])


def test_the_regularized_model_trains_and_resumes_on_two_devices(two_devices):
  out, result = two_devices
  assert result['regularized'] == {'step': 4, 'averaged': 2}
  assert (out / 'regularized' / 'checkpoints' / 'step-00000004' /
          'averaged_weights.npz').exists()


def test_a_batch_size_the_devices_cannot_split_is_a_one_line_error(two_devices):
  _, result = two_devices
  assert result['error'] == ('Batching.batch_size = 5 is not divisible by the '
                             '2 devices; set it to a multiple of 2')


def test_padded_line_batches_train_like_one_device_and_never_recompile(
    one_device, two_devices):
  out, result = two_devices
  # Rows of weight 0 change nothing: the losses of (3, 1) batches.
  _assert_close(_losses(out / 'lines', 'train', {4, 8, 12}),
                _losses(one_device / 'lines', 'train'))
  _assert_close(_losses(out / 'lines', 'valid', {4, 8, 12}),
                _losses(one_device / 'lines', 'valid'))
  assert result['first_compilations'] > 0
  assert sorted(map(tuple, result['later_shapes'])) == [(2, 16), (4, 8)]
  assert result['later_compilations'] == []


# Two processes -----------------------------------------------------------------------

def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one_process(tiny_data_dir, one_device,
                                              tmp_path):
  port = _free_port()
  bindings = _bindings(tiny_data_dir, CONTIGUOUS + ['train.n_steps = 4'])
  command = [sys.executable, 'train.py', f'--output_dir={tmp_path / "run"}',
             f'--coordinator_address=localhost:{port}', '--num_processes=2']
  command += [f'--gin_file={f}' for f in GIN_FILES]
  command += [f'--gin_bindings={b}' for b in bindings]
  env = {'JAX_DISABLE_MOST_OPTIMIZATIONS': '1'}
  procs = [_run(command + [f'--process_id={i}'], env) for i in range(2)]
  outputs = _outputs(procs)
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]
  chief, other = outputs[0][0], outputs[1][0]
  assert 'process 0 of 2, 1 local of 2 devices' in chief
  assert 'step       4/4 | train loss' in chief
  assert 'step' not in other and 'Step' not in other  # Only process 0 logs.

  run, reference = tmp_path / 'run', one_device / 'contiguous'
  records = [json.loads(line) for line in
             (run / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if r['kind'] == 'train'] == [1, 2, 3, 4]
  _assert_close(_losses(run, 'train'), _losses(reference, 'train'))
  # (The reference restarted its eval stream at its resume from step 2.)
  _assert_close(_losses(run, 'eval', {1, 2}), _losses(reference, 'eval', {1, 2}))
  _assert_close(_losses(run, 'valid'), _losses(reference, 'valid', {4}))
  # trax's multi-host checkpoint: process 0 writes it, with the data position
  # of every process.
  checkpoint = run / 'checkpoints' / 'step-00000004'
  assert (checkpoint / 'data_counters1.pkl').read_bytes() == (
      checkpoint / 'data_counters0.pkl').read_bytes()
