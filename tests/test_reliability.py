"""Crash safety and clean errors: signals, NaN, damaged checkpoints."""

import importlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from trax import layers as tl

from lm_trax import checkpoints
from lm_trax import config
from lm_trax import loop as loop_lib
from lm_trax import run_dir
from lm_trax import training
from lm_trax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent
GIN = REPO / 'gin'
FILES = [str(GIN / 'ptb_lstm.gin'), str(GIN / 'tiny.gin')]
ADAM = ['train.optimizer = @trax.optimizers.Adam',
        'train.lr_schedule = @constant_lr', 'constant_lr.learning_rate = 0.01',
        'train.exact_eval_every = 0']


def _train(output_dir, bindings):
  config.parse(FILES, ['Corpus.download = False'] + ADAM + list(bindings))
  return training.train(output_dir=str(output_dir))


def _latest(output_dir):
  return (pathlib.Path(output_dir) / 'checkpoints' / 'latest').read_text().strip()


def test_checkpoint_writes_are_all_or_nothing(tmp_path):
  def good(directory):
    (directory / 'model.pkl.gz').write_bytes(b'one')
  checkpoints.write(tmp_path, checkpoints.LATEST, 10, good)

  def crash(directory):
    (directory / 'model.pkl.gz').write_bytes(b'partial')
    raise KeyboardInterrupt  # Killed halfway through the files.
  with pytest.raises(KeyboardInterrupt):
    checkpoints.write(tmp_path, checkpoints.LATEST, 20, crash)
  assert checkpoints.pointed(tmp_path, checkpoints.LATEST).name == (
      'step-00000010')
  assert checkpoints.model_file(tmp_path).read_bytes() == b'one'
  for step in (30, 40, 50):
    checkpoints.write(tmp_path, checkpoints.LATEST, step, good)
  names = sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()
                 if p.is_dir())
  assert names == ['step-00000040', 'step-00000050']  # Last 2; no leftovers.


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(
    use_tiny_data, tmp_path, capsys):
  _train(tmp_path, ['train.n_steps = 4', 'train.checkpoint_every = 2'])
  weights = tmp_path / 'checkpoints' / 'step-00000004' / 'model.weights.npy.gz'
  weights.write_bytes(weights.read_bytes()[:100])  # Truncated on disk.
  loop = _train(tmp_path, ['train.n_steps = 4', 'train.checkpoint_every = 2'])
  assert 'resumed from' in capsys.readouterr().out
  assert loop.step == 4  # Resumed at 2, trained on to 4.
  for directory in checkpoints.candidates(tmp_path):
    (directory / 'model.pkl.gz').write_bytes(b'garbage')
  with pytest.raises(UserError, match='no loadable checkpoint'):
    _train(tmp_path, ['train.n_steps = 6'])


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
    use_tiny_data, tmp_path):
  sgd = ['train.optimizer = @trax.optimizers.SGD']
  _train(tmp_path, sgd + ['train.n_steps = 2'])
  with pytest.raises(loop_lib.Diverged, match='NaN or infinite by step') as e:
    _train(tmp_path, sgd + ['train.n_steps = 6',
                            'constant_lr.learning_rate = 1e38'])
  diverged_at = int(str(e.value).split('by step ')[1].split(';')[0])
  latest = _latest(tmp_path)
  assert int(latest.split('-')[1]) < diverged_at
  assert f'the last good checkpoint (step {int(latest.split("-")[1])})' in str(
      e.value)
  saved = tl.np_from_file(str(tmp_path / 'checkpoints' / latest /
                              'model.weights.npy.gz'), compresslevel=2)
  assert all(np.isfinite(w).all() for w in saved)


def test_a_run_directory_of_another_model_is_refused(use_tiny_data, tmp_path):
  _train(tmp_path, ['train.n_steps = 2'])
  with pytest.raises(UserError, match='different model'):
    _train(tmp_path, ['train.n_steps = 2', 'RecurrentLM.d_model = 24'])


def test_a_run_of_another_optimizer_is_refused(use_tiny_data, tmp_path):
  _train(tmp_path, ['train.n_steps = 2'])  # Adam.
  with pytest.raises(UserError, match='trained with Adam, whose optimizer '
                     'state does not fit SGD'):
    _train(tmp_path, ['train.n_steps = 4',
                      'train.optimizer = @trax.optimizers.SGD'])
  assert _latest(tmp_path) == 'step-00000002'  # Nothing overwritten.


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_data_dir,
                                                           tmp_path):
  env = dict(os.environ, LM_TRAX_DATA_DIR=str(tiny_data_dir))
  command = [sys.executable, str(REPO / 'train.py'),
             f'--gin_file={FILES[0]}', f'--gin_file={FILES[1]}',
             '--gin_bindings=train.n_steps = 100000',
             '--gin_bindings=train.eval_every = 50',
             '--gin_bindings=train.exact_eval_every = 0',
             '--gin_bindings=Corpus.download = False',
             f'--output_dir={tmp_path}']
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=REPO)
  for line in proc.stdout:  # Wait until training runs.
    if line.startswith('step '):
      break
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM, err
  message = err.strip().splitlines()[-1]
  assert 'stopped by SIGTERM at step' in message
  assert 'rerun the same command to resume' in message
  step = int(message.split('at step ')[1].split(';')[0])
  assert step > 50 and _latest(tmp_path) == f'step-{step:08d}'


@pytest.mark.parametrize('binding, message', [
    ("Batching.batch_size = 'twenty'", 'Batching.batch_size must be a whole'),
    ('Batching.seq_len = 0', 'Batching.seq_len must be >= 1'),
    ('train.n_steps = 2.5', 'train.n_steps must be a whole number'),
    ('RecurrentLM.n_layers = 0', 'RecurrentLM: n_layers must be a whole number >= 1'),
    ('RecurrentLM.dropout = 1.5', r'RecurrentLM: dropout must be a rate in \[0, 1\)'),
    ("RecurrentLM.tie_weights = 'yes'", 'RecurrentLM: tie_weights must be True or False'),
    ('RecurrentLM.d_embed = 0', 'RecurrentLM: d_embed must be None or a whole number'),
    ('RecurrentLM.activation_reg = -1.0', 'activation_reg must be a number >= 0'),
    ('train.nt_asgd_nonmono = 2.5', 'train.nt_asgd_nonmono must be a whole'),
    ("train.average_from_epoch = 'late'", 'train.average_from_epoch must be a number'),
    ('train.average_from_epoch = 1000.0', 'train.average_from_epoch = 1000.0 starts at step'),
])
def test_values_of_the_wrong_type_are_one_line_errors(binding, message,
                                                      use_tiny_data, tmp_path):
  with pytest.raises(UserError, match=message):
    _train(tmp_path, [binding])


def test_the_same_seed_gives_identical_losses(use_tiny_data, tmp_path):
  # The loss of every step is logged; evals (and so checkpoints) every 10
  # steps come in between.
  every_step = ['train.n_steps = 100', 'train.log_every = 1',
                'train.eval_every = 10', 'train.n_eval_batches = 1',
                'RecurrentLM.dropout = 0.2']
  losses = []
  for name in ('a', 'b'):
    _train(tmp_path / name, every_step)
    losses.append([r['loss'] for r in run_dir.MetricsLog.read(tmp_path / name)
                   if r['kind'] == 'train'])
  assert len(losses[0]) == 100
  assert losses[0] == losses[1]


def _latest_step(output_dir):
  directory = checkpoints.pointed(output_dir, checkpoints.LATEST)
  return int(directory.name.split('-')[1]) if directory else 0


def _wait_until(proc, ready, timeout=300):
  """Polls until ready() (True) or the process has ended (False)."""
  deadline = time.time() + timeout
  while proc.poll() is None:
    if ready():
      return True
    assert time.time() < deadline, 'the training process made no progress'
    time.sleep(0.002)
  return False


def test_sigkill_at_random_moments_never_loses_work(use_tiny_data, tmp_path):
  """10 SIGKILLs (half of them while a checkpoint is being written): every
  restart resumes, the saved step never goes back, and the run ends with the
  weights of a run that was never interrupted."""
  run = tmp_path / 'killed'
  bindings = ['train.n_steps = 150', 'train.checkpoint_every = 1',
              'train.eval_every = 50', 'train.exact_eval_every = 0',
              'RecurrentLM.dropout = 0.3']  # Dropout: the RNG must resume too.
  env = dict(os.environ, LM_TRAX_DATA_DIR=str(use_tiny_data),
             JAX_DISABLE_MOST_OPTIMIZATIONS='1')  # As in this process.
  command = [sys.executable, str(REPO / 'train.py'),
             f'--gin_file={FILES[0]}', f'--gin_file={FILES[1]}',
             f'--output_dir={run}', '--gin_bindings=Corpus.download = False']
  command += [f'--gin_bindings={b}' for b in ADAM + bindings]
  rng = np.random.default_rng(int(time.time()))
  saved_steps, mid_write_kills = [0], 0
  for life in range(10):
    with open(tmp_path / f'life{life}.log', 'w') as log:
      proc = subprocess.Popen(command, env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=REPO)
    # Wait for this life's first new checkpoint (training is under way), then
    # kill at a random moment, or as soon as a checkpoint write has begun.
    before = saved_steps[-1]
    assert _wait_until(proc, lambda: _latest_step(run) > before), (  # pylint: disable=cell-var-from-loop
        'the run finished before it was killed 10 times')
    if life % 2:
      writes = lambda: {p.name for p in checkpoints.root(run).iterdir()  # pylint: disable=g-long-lambda
                        if p.name.startswith('.tmp-')}
      leftovers = writes()
      mid_write_kills += _wait_until(proc, lambda: writes() - leftovers)  # pylint: disable=cell-var-from-loop
    else:
      time.sleep(rng.uniform(0, 0.5))
    proc.kill()
    proc.wait()
    log_text = (tmp_path / f'life{life}.log').read_text()
    if life:
      assert f'resuming at step {saved_steps[-1]} ' in log_text, log_text
    step = _latest_step(run)
    assert step >= saved_steps[-1], (saved_steps, step)  # Never backwards.
    checkpoints.verify(checkpoints.pointed(run, checkpoints.LATEST))
    saved_steps.append(step)
  assert mid_write_kills >= 3, mid_write_kills
  finished = subprocess.run(command, env=env, capture_output=True, text=True,
                            cwd=REPO, timeout=600, check=False)
  assert finished.returncode == 0, finished.stderr[-2000:]
  assert f'resuming at step {saved_steps[-1]} ' in finished.stdout

  straight = _train(tmp_path / 'straight', bindings)
  assert straight.step == 150
  final = checkpoints.pointed(run, checkpoints.LATEST)
  assert final.name == 'step-00000150'
  resumed = tl.np_from_file(str(final / 'model.weights.npy.gz'),
                            compresslevel=2)
  weights = jax.tree_util.tree_leaves(straight.model.weights)
  for a, b in zip(jax.tree_util.tree_leaves(resumed), weights):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


_CLI_DRIVER = textwrap.dedent('''
    # Runs train.py's main() for each argv in a fresh process (trax.trainer,
    # which other tests import, defines absl flags of the same names).
    import contextlib, importlib.util, io, json, sys
    spec = importlib.util.spec_from_file_location('train_script', sys.argv[1])
    train_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_py)
    results = []
    for argv in json.loads(sys.argv[2]):
      train_py.FLAGS.unparse_flags()
      train_py.FLAGS(argv)
      err = io.StringIO()
      try:
        with contextlib.redirect_stderr(err):
          train_py.main(['train.py'])
        code = 0
      except SystemExit as e:
        code = e.code
      except Exception as e:  # --verbose: the error itself is raised.
        code, err = 'raised', io.StringIO(type(e).__name__)
      results.append({'code': code, 'stderr': err.getvalue()})
    print('RESULTS ' + json.dumps(results))
''')

BAD_INPUT = [
    ([f'--gin_file={GIN}/no_such.gin'], 'no_such.gin does not exist'),
    ([f'--gin_file={FILES[0]}', '--gin_bindings=RecurrentLM.d_modle = 3'],
     'd_modle'),
    ([f'--gin_file={FILES[0]}', "--gin_bindings=Corpus.data_dir = '/nope'"],
     'ptb is missing /nope/ptb/ptb.train.txt'),
    ([f'--gin_file={FILES[0]}', '--gin_bindings=train.n_steps = -1'],
     'train.n_steps must be a whole number >= 1'),
    ([f'--gin_file={GIN}/tiny.gin'], 'the gin config names no model'),
    ([f'--gin_file={FILES[0]}', "--gin_bindings=RecurrentLM.d_model = 'big'"],
     "RecurrentLM: d_model must be a whole number >= 1, got 'big'"),
    ([f'--gin_file={FILES[0]}', '--output_dir=a_file'],
     'the run directory a_file is a file'),
]


def test_train_py_reports_bad_input_in_one_line(tmp_path):
  run = tmp_path / 'run'
  (tmp_path / 'a_file').write_text('not a run directory')
  argvs = []
  for flags, _ in BAD_INPUT:
    argv = ['train.py', f'--output_dir={run}',
            '--gin_bindings=Corpus.download = False'] + flags
    argvs += [argv, argv + ['--verbose']]
  proc = subprocess.run([sys.executable, '-c', _CLI_DRIVER,
                         str(REPO / 'train.py'), json.dumps(argvs)],
                        capture_output=True, text=True, timeout=600,
                        check=False, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.split('RESULTS ')[1])
  for (_, message), quiet, verbose in zip(BAD_INPUT, results[::2],
                                          results[1::2]):
    assert quiet['code'] == 2
    err = quiet['stderr'].strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: '), err
    assert message in err[0]
    assert verbose['code'] == 'raised'  # --verbose: the traceback.
  assert not (run / 'checkpoints').exists()  # Nothing was written.


# Damaged run files ------------------------------------------------------------

@pytest.fixture(scope='module')
def averaged_run(train_tiny_run):
  """A tiny run with tail averaging: its latest checkpoint holds
  averaged_weights.npz beside model.pkl.gz."""
  return train_tiny_run('ptb_lstm.gin', ADAM_TAIL)


ADAM_TAIL = ['train.n_steps = 4', 'train.optimizer = @trax.optimizers.Adam',
             'train.lr_schedule = @constant_lr',
             'constant_lr.learning_rate = 0.01',
             'train.average_from_epoch = 0.04']


def _cut_short(path):
  """Damages a file as a crash or a bad copy does: its first half only."""
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _one_line_error(call, capsys):
  with pytest.raises(SystemExit) as exit_info:
    call()
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), lines
  return lines[0]


@pytest.mark.parametrize('name', ['vocab.json', 'config.gin', 'model.pkl.gz',
                                  'averaged_weights.npz', 'manifest.json'])
def test_a_damaged_file_a_command_reads_is_one_line_naming_it(
    name, averaged_run, tmp_path, capsys):
  from lm_trax import evaluate  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'run'
  shutil.copytree(averaged_run, run)
  latest = checkpoints.pointed(run, checkpoints.LATEST)
  assert (latest / 'averaged_weights.npz').is_file()
  _cut_short(latest / name if (latest / name).exists() else run / name)
  line = _one_line_error(
      lambda: evaluate.main(['--output_dir', str(run), '--split', 'valid']),
      capsys)
  assert name in line, line
  if name == 'vocab.json':
    assert 'rerun the training command' in line
  elif name == 'config.gin':
    assert 'run.json records the command' in line
  else:  # A checkpoint's file: the others are named.
    assert 'load another checkpoint' in line and 'latest (step 4)' in line


@pytest.mark.parametrize('name', ['model.json', 'run.json'])
def test_resuming_a_run_with_a_damaged_record_is_one_line_naming_it(
    name, averaged_run, tiny_data_dir, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(averaged_run, run)
  _cut_short(run / name)
  config.parse(FILES, ['Corpus.download = False',
                       f"Corpus.data_dir = '{tiny_data_dir}'"] + ADAM_TAIL
               + ['train.n_steps = 6'])
  with pytest.raises(UserError, match=f'{name} is .*; delete it'):
    training.train(output_dir=str(run))


def test_a_metrics_log_cut_short_is_read_without_its_last_line(
    averaged_run, tmp_path, capsys):
  run = tmp_path / 'run'
  shutil.copytree(averaged_run, run)
  path = run / 'metrics.jsonl'
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(lines[:-1] + [lines[-1][:len(lines[-1]) // 2]]))
  records = run_dir.MetricsLog.read(run)
  expected = {(r['kind'], r['step']): r for r in map(json.loads, lines[:-1])}
  assert records == sorted(expected.values(),
                           key=lambda r: (r['step'], r['kind']))
  warning = capsys.readouterr().err.strip().splitlines()
  assert warning == [f'warning: skipped 1 damaged line(s) of {path} '
                     f'(line {len(lines)})']


@pytest.mark.parametrize('module, argv', [
    ('evaluate', ['--output_dir', 'r', '--dynamic_eval', 'adam']),
    ('evaluate', ['--split', 'dev']),
    ('generate', ['--output_dir', 'r', '--temperature', 'warm']),
    ('score', ['--output_dir', 'r', '--top_k', 'x']),
    ('plot', ['--no_such_flag']),
    ('sweep', ['--workers', 'two']),
    ('download', ['no_such_corpus']),
])
def test_a_bad_argument_is_two_lines_not_the_whole_usage(module, argv,
                                                         capsys):
  command = importlib.import_module(f'lm_trax.{module}')
  with pytest.raises(SystemExit) as exit_info:
    command.main(argv)
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 2, lines
  assert lines[0].startswith(f'python -m lm_trax.{module}: error: ')
  assert lines[1] == f'python -m lm_trax.{module} --help lists the options'


def _interrupt(*args, **kwargs):
  raise KeyboardInterrupt


@pytest.mark.parametrize('command, patched, argv', [
    ('evaluate', 'lm_trax.evaluate.evaluate_points', ['--output_dir', 'RUN']),
    ('score', 'lm_trax.opener.open_model', ['--output_dir', 'RUN', '--next',
                                            'the']),
    ('generate', 'lm_trax.opener.open_model', ['--output_dir', 'RUN',
                                               '--seed', '1']),
    ('export', 'lm_trax.export.export', ['RUN', 'OUT']),
])
def test_ctrl_c_in_a_command_is_one_line_and_the_sigint_status(
    command, patched, argv, monkeypatch, capsys):
  module = importlib.import_module(f'lm_trax.{command}')
  monkeypatch.setattr(patched, _interrupt)
  try:
    module.main(argv)
    status = None
  except SystemExit as e:
    status = e.code
  except KeyboardInterrupt:  # Not raised on: pytest would stop the session.
    status = 'a traceback'
  assert status == 128 + signal.SIGINT
  assert capsys.readouterr().err.strip().splitlines() == ['interrupted']
  with pytest.raises(KeyboardInterrupt):  # --verbose keeps the traceback.
    module.main(argv + ['--verbose'])
