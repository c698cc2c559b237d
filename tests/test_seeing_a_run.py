"""Seeing a run: the training line at train.log_every, the console's numbers
in TensorBoard's event files, run.json."""

import contextlib
import io
import math
import os
import pathlib
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO  # pylint: disable=g-bad-import-order
from lm_trax import config
from lm_trax import run_dir
from lm_trax import training
from lm_trax.errors import UserError

GIN_FILES = [str(REPO / 'gin' / 'shakespeare_char.gin'),
             str(REPO / 'gin' / 'tiny.gin')]
# Training lines every 2 steps, evals every 3 (exact validation too): they
# coincide at 6, and both happen at the last step, 7, then 9 after resuming.
BINDINGS = ['train.eval_every = 3', 'train.log_every = 2',
            'train.exact_eval_every = 3']
LINE_STEPS = [2, 4, 6, 7, 8, 9]
EVAL_STEPS = [3, 6, 7, 9]


def _train(data_dir, output_dir, n_steps):
  config.parse(GIN_FILES, ['Corpus.download = False',
                           f"Corpus.data_dir = '{data_dir}'",
                           f'train.n_steps = {n_steps}'] + BINDINGS)
  console = io.StringIO()
  with contextlib.redirect_stdout(console):
    training.train(output_dir=str(output_dir))
  return console.getvalue()


@pytest.fixture(scope='module')
def run(tiny_data_dir, tmp_path_factory):
  """A tiny character run trained to step 7, then resumed to step 9:
  (run directory, what the first training printed)."""
  output_dir = tmp_path_factory.mktemp('char_run')
  printed = _train(tiny_data_dir, output_dir, 7)
  _train(tiny_data_dir, output_dir, 9)
  return output_dir, printed


def _records(output_dir, kind):
  return {r['step']: r for r in run_dir.MetricsLog.read(output_dir)
          if r['kind'] == kind}


def _scalars(output_dir, subdir, tag):
  """{step: value} of a scalar in the event files of output_dir/subdir."""
  values = {}
  for path in sorted((output_dir / subdir).glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = value.simple_value
  return values


def _as_stored(values):
  """Event files hold float32."""
  return {step: float(np.float32(v)) for step, v in values.items()}


def test_the_training_line_comes_every_log_every_steps_and_once(run):
  _, printed = run
  lines = printed.splitlines()
  train_lines = [l for l in lines if '| train loss' in l]
  assert [int(l.split()[1].split('/')[0]) for l in train_lines] == [2, 4, 6, 7]
  for line in train_lines:
    assert all(f in line for f in ('| ppl ', '| lr ', ' tok/s | ETA '))
  # trax's own `Step N:` lines stay at its evals only: none at 2 or 4.
  trax_steps = sorted({int(l.split()[1].rstrip(':')) for l in lines
                       if l.startswith('Step ')})
  assert trax_steps == [3, 6, 7]
  # The metrics.jsonl records are the lines.
  assert sorted(_records(run[0], 'train')) == LINE_STEPS


def test_every_logged_perplexity_is_e_to_the_loss(run):
  records = [r for r in run_dir.MetricsLog.read(run[0]) if 'ppl' in r]
  assert {r['kind'] for r in records} == {'train', 'eval', 'valid'}
  for record in records:
    assert record['ppl'] == pytest.approx(math.exp(record['loss']), rel=1e-9)
  for line in run[1].splitlines():  # The console prints the same.
    if '| ppl ' in line:
      loss = float(line.split(' loss ')[1].split()[0])
      ppl = float(line.split('| ppl ')[1].split()[0])
      assert ppl == pytest.approx(math.exp(loss), abs=0.006 + 1e-4 * ppl)


def test_tensorboard_has_the_exact_validation_of_metrics_jsonl(run):
  output_dir, _ = run
  valid = _records(output_dir, 'valid')
  assert sorted(valid) == EVAL_STEPS
  assert _scalars(output_dir, 'valid', 'lm_trax/perplexity') == _as_stored(
      {s: r['ppl'] for s, r in valid.items()})
  assert _scalars(output_dir, 'valid', 'lm_trax/loss') == _as_stored(
      {s: r['loss'] for s, r in valid.items()})
  # A character run: bits per character, the loss in bits.
  assert _scalars(output_dir, 'valid', 'lm_trax/bpc') == _as_stored(
      {s: r['loss'] / math.log(2) for s, r in valid.items()})


def test_tensorboard_has_the_training_line_and_the_eval_line(run):
  output_dir, _ = run
  train = _records(output_dir, 'train')
  for tag, key in (('perplexity', 'ppl'), ('loss', 'loss'),
                   ('tokens_per_sec', 'tokens_per_sec'),
                   ('learning_rate', 'lr')):
    assert _scalars(output_dir, 'train', f'lm_trax/{tag}') == _as_stored(
        {s: r[key] for s, r in train.items()}), tag
  assert all(r['tokens_per_sec'] > 0 for r in train.values())
  assert _scalars(output_dir, 'eval', 'lm_trax/perplexity') == _as_stored(
      {s: r['ppl'] for s, r in _records(output_dir, 'eval').items()})
  # Beside trax's own scalars, in the same event files.
  assert sorted(_scalars(output_dir, 'train',
                         'metrics/WeightedCategoryCrossEntropy')) == EVAL_STEPS
  assert sorted(_scalars(output_dir, 'eval',
                         'metrics/WeightedCategoryCrossEntropy')) == EVAL_STEPS


def test_run_json_records_each_start(run):
  output_dir, _ = run
  starts = run_dir.read_starts(output_dir)
  assert [(s['step'], s['to_step']) for s in starts] == [(0, 7), (7, 9)]
  start = starts[-1]
  assert start['command'] == sys.argv
  assert start['cwd'] == os.getcwd()
  import lm_trax  # pylint: disable=g-import-not-at-top
  assert start['versions']['jax'] == jax.__version__
  assert start['versions']['tensorflow'] == tf.__version__
  assert start['versions']['numpy'] == np.__version__
  assert start['versions']['lm_trax'] == lm_trax.__version__
  # trax and gin have no __version__: their distributions' are recorded.
  assert start['versions']['trax'] == _installed('trax') == '1.4.1'
  assert start['versions']['gin-config'] == _installed('gin-config')
  assert start['versions']['jaxlib'] == _installed('jaxlib')
  assert start['devices'] == {
      'count': len(jax.devices()),
      'kinds': sorted({d.device_kind for d in jax.devices()}),
      'platform': jax.devices()[0].platform}
  assert start['machine'] == {
      'hostname': platform.node(), 'platform': platform.platform(),
      'python': platform.python_version(), 'cpu_count': os.cpu_count()}
  assert start['git'] == run_dir.source_commit()
  if (REPO / '.git').exists():  # A clone or worktree (CI's is a clone).
    head = subprocess.run(['git', '-C', str(REPO), 'rev-parse', 'HEAD'],
                          capture_output=True, text=True, check=True)
    assert start['git']['commit'] == head.stdout.strip()


def _installed(distribution):
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  return importlib.metadata.version(distribution)


def test_the_commit_is_none_without_git_or_outside_a_checkout(tmp_path,
                                                             monkeypatch):
  package = tmp_path / 'site-packages' / 'lm_trax'
  package.mkdir(parents=True)
  (package / '__init__.py').write_text('')
  assert run_dir.source_commit(package) is None  # Not a repository.
  if subprocess.run(['git', '--version'], capture_output=True,
                    check=False).returncode == 0:
    # Inside some other repository that does not track the code.
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    assert run_dir.source_commit(package) is None
  monkeypatch.setenv('PATH', str(tmp_path / 'no-git-here'))
  assert run_dir.source_commit(REPO / 'lm_trax') is None


def test_an_unreadable_run_json_is_a_user_error(tmp_path):
  (tmp_path / run_dir.RUN_FILE).write_text('{"starts": [')
  with pytest.raises(UserError, match='delete it'):
    run_dir.read_starts(tmp_path)
  assert run_dir.read_starts(tmp_path / 'new') == []


@pytest.mark.parametrize('value', ['0', '-5', '2.5', 'True', "'10'"])
def test_a_bad_log_every_is_a_one_line_user_error(value, tiny_data_dir,
                                                  tmp_path):
  config.parse(GIN_FILES, ['Corpus.download = False',
                           f"Corpus.data_dir = '{tiny_data_dir}'",
                           f'train.log_every = {value}'])
  with pytest.raises(UserError, match=r'train\.log_every must be a whole '
                     r'number >= 1, got .*; fix the gin binding'):
    training.train(output_dir=str(tmp_path))
  assert not (tmp_path / run_dir.RUN_FILE).exists()
