"""lm_trax.sweep, sweep_grid, sweep_run, sweep_report: grids, point names,
skip/resume, failures, the report."""

import csv
import json
import math
import os
import pathlib
import signal
import statistics
import sys

import gin
import pytest

from lm_trax import config
from lm_trax import corpora
from lm_trax import run_dir
from lm_trax import signals
from lm_trax import sweep
from lm_trax import sweep_grid
from lm_trax import sweep_report
from lm_trax import sweep_run
from lm_trax import training
from lm_trax.errors import UserError

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'
PTB_LSTM = str(GIN_DIR / 'ptb_lstm.gin')
TINY = str(GIN_DIR / 'tiny.gin')
SHIPPED_GRID = GIN_DIR / 'sweeps' / 'ptb_lstm_width_dropout.yaml'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

WIDTH_X_DROPOUT = ['RecurrentLM.d_model = [100, 200, 400]',
                   'RecurrentLM.dropout = [0.0, 0.5]', 'train.n_steps = [1000]']


def _names(points):
  return [point.name for point in points]


def test_the_grid_is_the_product_with_the_first_parameter_slowest():
  points = sweep_grid.expand(sweep_grid.make_grid(sweep_flags=WIDTH_X_DROPOUT))
  assert len(points) == 3 * 2 * 1
  assert [p.bindings[:2] for p in points] == [
      ['RecurrentLM.d_model = 100', 'RecurrentLM.dropout = 0.0'],
      ['RecurrentLM.d_model = 100', 'RecurrentLM.dropout = 0.5'],
      ['RecurrentLM.d_model = 200', 'RecurrentLM.dropout = 0.0'],
      ['RecurrentLM.d_model = 200', 'RecurrentLM.dropout = 0.5'],
      ['RecurrentLM.d_model = 400', 'RecurrentLM.dropout = 0.0'],
      ['RecurrentLM.d_model = 400', 'RecurrentLM.dropout = 0.5'],
  ]
  assert all(p.bindings[2] == 'train.n_steps = 1000' for p in points)


def test_point_names_are_readable_unique_and_stable():
  points = sweep_grid.expand(sweep_grid.make_grid(sweep_flags=WIDTH_X_DROPOUT))
  # Named after the params that vary; train.n_steps is the same for all.
  assert points[1].name == 'RecurrentLM.d_model=100,RecurrentLM.dropout=0.5'
  assert len(set(_names(points))) == len(points)
  assert _names(points) == _names(
      sweep_grid.expand(sweep_grid.make_grid(sweep_flags=WIDTH_X_DROPOUT)))
  # More values for the swept params keep the names.
  wider = sweep_grid.expand(sweep_grid.make_grid(sweep_flags=[
      'RecurrentLM.d_model = [50, 100, 200, 400, 800]',
      'RecurrentLM.dropout = [0.0, 0.25, 0.5]', 'train.n_steps = [1000]']))
  assert set(_names(points)) < set(_names(wider))


def test_point_names_are_file_safe_even_for_awkward_values():
  points = sweep_grid.expand(sweep_grid.make_grid(sweep_flags=[
      "Corpus.name = ['a b', 'a_b', 'data/my corpus']",
      'train.optimizer = [@trax.optimizers.SGD, @trax.optimizers.Adam]',
      'Batching.boundaries = [(8, 16), (32,)]']))
  names = _names(points)
  assert names[8] == ('Corpus.name=data_my_corpus,train.optimizer='
                      'trax.optimizers.SGD,Batching.boundaries=8_16')
  # 'a b' and 'a_b' would both become a_b: each gets a hash of its bindings.
  assert len(set(names)) == len(names) == 12
  assert names[0].startswith('Corpus.name=a_b,') and names[0][-9] == '-'
  assert names[4].startswith('Corpus.name=a_b,') and names[4][-9] == '-'
  assert all(not set(name) & set('/ \'"@()[]') for name in names)
  long = sweep_grid.expand([('Corpus.name', [repr('x' * 300)])])[0].name
  assert len(long) <= 150


def test_a_yaml_grid_and_sweep_flags_give_the_same_grid(tmp_path):
  grid_file = tmp_path / 'grid.yaml'
  grid_file.write_text(
      '# As trax keeps sweeps: Configurable.param: [values]\n'
      'RecurrentLM.d_model: [100, 200]\n'
      'RecurrentLM.dropout: [0.0, 0.50]\n'
      'constant_lr.learning_rate: [1e-3, 0.01]\n'
      "train.optimizer: ['@trax.optimizers.SGD', '@trax.optimizers.Adam']\n"
      'Corpus.name: [ptb]\n'
      '# RecurrentLM.n_layers: [1, 2]\n')
  flags = ['RecurrentLM.d_model = [100, 200]', 'RecurrentLM.dropout = [0.0, 0.5]',
           'constant_lr.learning_rate = [0.001, 1e-2]',
           'train.optimizer = [@trax.optimizers.SGD, @trax.optimizers.Adam]',
           "Corpus.name = ['ptb']"]
  from_yaml = sweep_grid.make_grid(grid_file=grid_file)
  from_flags = sweep_grid.make_grid(sweep_flags=flags)
  assert from_yaml == from_flags
  assert sweep_grid.expand(from_yaml) == sweep_grid.expand(from_flags)
  assert sweep_grid.expand(from_yaml)[0].bindings == [
      'RecurrentLM.d_model = 100', 'RecurrentLM.dropout = 0.0',
      'constant_lr.learning_rate = 0.001',
      'train.optimizer = @trax.optimizers.SGD', "Corpus.name = 'ptb'"]
  # Every point's bindings are valid gin for the PTB LSTM config.
  grid_sweep = sweep_run.Sweep([PTB_LSTM], [], from_yaml)
  sweep_run.check_configs(grid_sweep, grid_sweep.points())


@pytest.mark.parametrize('gin_file, grid_file, varying', [
    (PTB_LSTM, SHIPPED_GRID, ['RecurrentLM.d_model', 'RecurrentLM.dropout']),
    (str(GIN_DIR / 'ptb_nplm.gin'),
     GIN_DIR / 'sweeps' / 'ptb_nplm_context_width.yaml',
     ['NPLM.n_context', 'NPLM.d_hidden']),
])
def test_the_shipped_grids_parse_with_their_configs(gin_file, grid_file,
                                                    varying):
  grid = sweep_grid.load_grid_file(grid_file)
  shipped = sweep_run.Sweep([gin_file], [], grid)
  points = shipped.points()
  assert len(points) == 4
  assert sweep_grid.varying_params(grid) == varying
  assert len(set(sweep_run.check_configs(shipped, points).values())) == 4


@pytest.mark.parametrize('flag, message', [
    ('RecurrentLM.d_model = 200', r'non-empty \[list\]'),
    ('RecurrentLM.d_model = []', r'non-empty \[list\]'),
    ('RecurrentLM.d_model = [1, 1]', 'lists 1 more than once'),
    ('RecurrentLM.d_model [1, 2]', 'not a gin binding'),
    ('RecurrentLM.d_model = [1]\nRecurrentLM.dropout = [0.5]', 'one binding'),
])
def test_a_bad_sweep_flag_is_a_user_error(flag, message):
  with pytest.raises(UserError, match=message):
    sweep_grid.parse_sweep_flag(flag)


def test_bad_grids_are_user_errors(tmp_path):
  with pytest.raises(UserError, match='more than once'):
    sweep_grid.make_grid(sweep_flags=['train.seed = [1]', 'train.seed = [2]'])
  with pytest.raises(UserError, match='give a grid'):
    sweep_grid.make_grid()
  with pytest.raises(UserError, match='does not exist'):
    sweep_grid.make_grid(grid_file=tmp_path / 'nope.yaml')
  (tmp_path / 'list.yaml').write_text('- 1\n- 2\n')
  with pytest.raises(UserError, match='must map gin parameters'):
    sweep_grid.make_grid(grid_file=tmp_path / 'list.yaml')


def _sweep_args(output_dir, *extra):
  return ['--gin_file', PTB_LSTM, '--gin_file', TINY,
          '--gin_bindings', 'Corpus.download = False',
          '--output_dir', str(output_dir), *extra]


def test_a_config_typo_fails_before_any_training(tmp_path, capsys):
  with pytest.raises(SystemExit) as exited:
    sweep.main(_sweep_args(tmp_path, '--sweep', 'RecurrentLM.no_such = [1, 2]'))
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.count('\n') == 1
  assert 'point RecurrentLM.no_such=1: bad gin config' in error
  assert not (tmp_path / 'RecurrentLM.no_such=1').exists()


def test_a_sweep_directory_is_not_reused_for_another_sweep(tmp_path, capsys):
  sweep_run.Sweep([PTB_LSTM, TINY], ['Corpus.download = False'],
                  [('train.seed', ['1'])]).save(tmp_path)
  with pytest.raises(SystemExit):
    sweep.main(_sweep_args(tmp_path, '--sweep', 'train.seed = [2]'))
  assert 'holds another sweep (its sweep.json has other grid)' in (
      capsys.readouterr().err)


def test_an_unexpected_exception_is_recorded_as_one_line(tmp_path,
                                                         monkeypatch):
  def crash(output_dir):
    raise ValueError('bad\nthing')
  monkeypatch.setattr(training, 'train', crash)
  one_point = sweep_run.Sweep([PTB_LSTM], [], [('train.seed', ['1'])])
  point = one_point.points()[0]
  status = sweep_run.run_point(one_point, point, tmp_path / point.name)
  assert status['status'] == 'failed'
  assert status['error'] == 'ValueError: bad thing'
  assert status['bindings'] == ['train.seed = 1']
  assert status['wall_time'] >= 0 and status['ended']


def _statuses(output_dir, points):
  return [sweep_run.read_status(output_dir / p.name)['status'] for p in points]


def _check_table_against_metrics(output_dir, points):
  """results.csv holds each run's own numbers from its metrics.jsonl."""
  with open(output_dir / 'results.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert [row['name'] for row in rows] == _names(points)
  all_records = [run_dir.MetricsLog.read(output_dir / p.name) for p in points]
  valid_kind = ('valid' if any(r['kind'] == 'valid' for records in all_records
                               for r in records) else 'eval')
  for row, records in zip(rows, all_records):
    assert row['valid_from'] == valid_kind
    if row['status'] != 'finished':
      assert row['best_valid_ppl'] == row['final_valid_ppl'] == ''
      continue
    valid = [r['ppl'] for r in records if r['kind'] == valid_kind]
    train = [r for r in records if r['kind'] == 'train']
    assert float(row['best_valid_ppl']) == min(valid)
    assert float(row['final_valid_ppl']) == valid[-1]
    assert float(row['final_train_loss']) == train[-1]['loss']
    assert int(row['steps']) == train[-1]['step'] == 4
    assert float(row['tokens_per_sec']) == statistics.median(
        r['tokens_per_sec'] for r in train)
    assert float(row['wall_time_s']) > 0
  return rows


def test_a_sweep_skips_finished_points_resumes_interrupted_ones_and_goes_on(
    use_tiny_data, tmp_path, monkeypatch, capsys):
  output_dir = tmp_path / 'sweep'
  flags = ['RecurrentLM.d_model = [8, 16]', "Corpus.name = ['ptb', 'missing']",
           'train.n_steps = [4]']
  args = _sweep_args(output_dir, *(arg for flag in flags
                                   for arg in ('--sweep', flag)))
  points = sweep_grid.expand(sweep_grid.make_grid(sweep_flags=flags))
  assert _names(points) == [
      'RecurrentLM.d_model=8,Corpus.name=ptb',
      'RecurrentLM.d_model=8,Corpus.name=missing',
      'RecurrentLM.d_model=16,Corpus.name=ptb',
      'RecurrentLM.d_model=16,Corpus.name=missing']
  real_train = training.train
  trained = []

  def train_interrupted_at_step_2(output_dir):
    trained.append(pathlib.Path(output_dir).name)
    if output_dir.endswith(points[2].name):  # As if Ctrl-C came at step 2.
      real_train(output_dir=output_dir, n_steps=2)
      raise signals.Interrupted('stopped by SIGINT at step 2', signal.SIGINT)
    return real_train(output_dir=output_dir)

  # First run: the failing 2nd point does not stop the 3rd, which is
  # interrupted at step 2; the 4th never starts.
  monkeypatch.setattr(training, 'train', train_interrupted_at_step_2)
  with pytest.raises(SystemExit) as exited:
    sweep.main(args)
  assert exited.value.code == 130
  assert capsys.readouterr().err.endswith(
      'sweep stopped: stopped by SIGINT at step 2\n')
  assert _statuses(output_dir, points) == [
      'finished', 'failed', 'interrupted', 'pending']
  first_records = run_dir.MetricsLog.read(output_dir / points[2].name)
  assert max(r['step'] for r in first_records) == 2

  # Second run: skips the finished point, retries the failed one, resumes the
  # interrupted one from its checkpoint and runs the last.
  trained.clear()
  monkeypatch.setattr(training, 'train', lambda output_dir: (
      trained.append(pathlib.Path(output_dir).name) or
      real_train(output_dir=output_dir)))
  sweep.main(args)
  assert trained == _names(points)[1:]
  assert _statuses(output_dir, points) == [
      'finished', 'failed', 'finished', 'failed']
  out = capsys.readouterr().out
  assert '1 finished, 3 to run' in out
  assert f'resuming at step 2 from {output_dir / points[2].name}' in out
  resumed_records = run_dir.MetricsLog.read(output_dir / points[2].name)
  assert resumed_records[:len(first_records)] == first_records
  assert [r['step'] for r in resumed_records if r['kind'] == 'train'] == [
      1, 2, 3, 4]
  failed = sweep_run.read_status(output_dir / points[3].name)
  assert failed['error'].startswith("unknown corpus 'missing'")
  assert '\n' not in failed['error']

  # The report: every number is the run's own, the plot is written.
  rows = _check_table_against_metrics(output_dir, points)
  assert [row['status'] for row in rows] == [
      'finished', 'failed', 'finished', 'failed']
  table = (output_dir / 'results.md').read_text()
  assert '| RecurrentLM.d_model | Corpus.name | best valid ppl |' in table
  assert '`train.n_steps = 4`' in table
  assert ("- `RecurrentLM.d_model=8,Corpus.name=missing`: unknown corpus "
          "'missing'") in table
  assert 'In call to configurable' not in table
  assert table in out
  png = (output_dir / 'curves.png').read_bytes()
  assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
  stored = json.loads((output_dir / 'sweep.json').read_text())
  assert stored['gin_files'] == [PTB_LSTM, TINY]

  # --report rewrites the same table, training nothing.
  trained.clear()
  (output_dir / 'results.md').unlink()
  sweep.main(['--report', str(output_dir)])
  assert trained == [] and (output_dir / 'results.md').read_text() == table


def test_points_trained_from_a_since_changed_gin_file_are_not_reused(
    use_tiny_data, tmp_path, capsys):
  seed_file = tmp_path / 'seed.gin'
  seed_file.write_text('train.seed = 0\n')
  output_dir = tmp_path / 'sweep'
  args = ['--gin_file', PTB_LSTM, '--gin_file', TINY, '--gin_file',
          str(seed_file), '--gin_bindings', 'Corpus.download = False',
          '--sweep', 'train.n_steps = [2]', '--output_dir', str(output_dir)]
  sweep.main(args)
  assert '0 finished, 1 to run' in capsys.readouterr().out
  sweep.main(args)  # Unchanged: the finished point is skipped.
  assert '1 finished, 0 to run' in capsys.readouterr().out

  seed_file.write_text('train.seed = 1\n')
  with pytest.raises(SystemExit) as exited:
    sweep.main(args)
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.count('\n') == 1
  assert ('point train.n_steps=2 in ' + str(output_dir) +
          ' was trained from another config (a gin file changed since)') in error


def _first_point_log(tmp_path):
  """A saved two-point sweep in tmp_path: (its first point's directory, that
  point's MetricsLog)."""
  grid_sweep = sweep_run.Sweep([PTB_LSTM], [],
                               [('RecurrentLM.d_model', ['8', '16'])])
  grid_sweep.save(tmp_path)
  first = tmp_path / grid_sweep.points()[0].name
  first.mkdir()
  log = run_dir.MetricsLog(first)
  return first, log


def test_the_best_of_an_averaged_run_is_raw_or_averaged_whichever_won(
    tmp_path):
  first, log = _first_point_log(tmp_path)
  # (step, averaged loss, raw loss): the raw weights win at step 20.
  for step, loss, raw_loss in ((10, 5.0, 5.1), (20, 4.6, 4.5), (30, 4.7, 4.8)):
    log.write(step, 'train', loss=loss, ppl=math.exp(loss))
    log.write(step, 'valid', loss=loss, ppl=math.exp(loss), raw_loss=raw_loss)
  (first / sweep_run.STATUS_FILE).write_text(
      json.dumps({'status': 'finished', 'wall_time': 61.0}))
  rows = sweep_report.write_report(tmp_path)
  assert rows[0]['best_valid_ppl'] == pytest.approx(math.exp(4.5))
  assert rows[0]['final_valid_ppl'] == pytest.approx(math.exp(4.7))


def test_the_report_falls_back_to_sampled_eval_records(tmp_path):
  first, log = _first_point_log(tmp_path)
  for step, loss, eval_loss in ((10, 5.0, 5.5), (20, 4.0, 4.2), (30, 3.5, 4.4)):
    log.write(step, 'train', loss=loss, ppl=2.0 ** loss, tokens_per_sec=step)
    log.write(step, 'eval', loss=eval_loss, ppl=2.0 ** eval_loss)
  (first / sweep_run.STATUS_FILE).write_text(
      json.dumps({'status': 'finished', 'wall_time': 61.0}))

  rows = sweep_report.write_report(tmp_path)
  assert rows[0]['best_valid_ppl'] == 2.0 ** 4.2
  assert rows[0]['final_valid_ppl'] == 2.0 ** 4.4
  assert rows[0]['final_train_loss'] == 3.5
  assert rows[0]['tokens_per_sec'] == 20
  assert rows[0]['steps'] == 30
  assert rows[1]['status'] == 'pending' and rows[1]['steps'] is None
  table = (tmp_path / 'results.md').read_text()
  assert "trax's sampled-window eval" in table
  assert '| 8 | 18.38 | 21.11 | 3.5000 | 30 | 0:01:01 | 20 | finished |' in (
      table)
  assert '| 16 | - | - | - | - | - | - | pending |' in table


def test_the_worker_entry_point_trains_the_named_point(use_tiny_data,
                                                      tmp_path):
  grid_sweep = sweep_run.Sweep([PTB_LSTM, TINY], ['Corpus.download = False'],
                               [('Corpus.name', ["'ptb'", "'missing'"])])
  grid_sweep.save(tmp_path)
  good, bad = grid_sweep.points()
  for point, exit_code in ((good, 0), (bad, 1)):
    with pytest.raises(SystemExit) as exited:
      sweep.main(sweep_run.worker_command(tmp_path, point)[3:])
    assert exited.value.code == exit_code
  assert sweep_run.read_status(tmp_path / good.name)['step'] == 2
  assert sweep_run.read_status(tmp_path / bad.name)['error'] == (
      f"unknown corpus 'missing': use {', '.join(sorted(corpora.KNOWN))}, "
      'tfds:NAME, a directory with train.txt/valid.txt[/test.txt], or a text '
      'file')


# Stands in for `python -m lm_trax.sweep --run_point` (25 s of imports):
# finishes its point, or crashes without recording anything.
FAKE_WORKER = """
import json, pathlib, sys
point_dir = pathlib.Path(sys.argv[1])
if point_dir.name.endswith('=2'):
  print('Fatal Python error: Aborted')
  sys.exit(134)
(point_dir / 'status.json').write_text(json.dumps({'status': 'finished'}))
"""


def test_workers_run_points_in_processes_and_a_crash_is_recorded(
    tmp_path, monkeypatch):
  monkeypatch.setattr(sweep_run, 'worker_command',
                      lambda output_dir, point, cores=None: [
                          sys.executable, '-c', FAKE_WORKER,
                          str(output_dir / point.name)])
  sweep.main(['--gin_file', PTB_LSTM, '--sweep', 'train.seed = [1, 2, 3]',
              '--output_dir', str(tmp_path), '--workers', '2'])
  points = [tmp_path / f'train.seed={seed}' for seed in (1, 2, 3)]
  assert _statuses(tmp_path, points) == ['finished', 'failed', 'finished']
  crashed = sweep_run.read_status(points[1])
  assert crashed['error'] == (
      'worker process exited with status 134: Fatal Python error: Aborted')
  assert 'Aborted' in (points[1] / sweep_run.LOG_FILE).read_text()
  assert all((point / sweep_run.LOG_FILE).exists() for point in points)
  assert (tmp_path / 'results.csv').exists()


# Stands in for a worker given `--cores`: holds its share's lock file while it
# runs, and fails if another worker holds it (two workers on one share).
SHARE_WORKER = """
import json, os, pathlib, sys, time
point_dir, cores = pathlib.Path(sys.argv[1]), sys.argv[2]
lock = point_dir.parent / f'cores-{cores}.lock'
try:
  os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
except FileExistsError:
  sys.exit(f'cores {cores} already taken')
time.sleep(0.3)
os.remove(lock)
(point_dir / 'status.json').write_text(
    json.dumps({'status': 'finished', 'cores': cores}))
"""


@pytest.mark.skipif(sweep_run.core_shares(2) is None,
                    reason='needs 2 CPU cores and CPU affinity')
def test_workers_run_at_once_on_disjoint_shares_of_the_cores(tmp_path,
                                                             monkeypatch):
  shares = sweep_run.core_shares(2)
  assert not set(shares[0]) & set(shares[1])
  assert len(shares[0]) == len(shares[1]) >= 1
  real_command = sweep_run.worker_command
  def command(output_dir, point, cores=None):
    full = real_command(output_dir, point, cores)
    assert full[-2] == '--cores'
    return [sys.executable, '-c', SHARE_WORKER, str(output_dir / point.name),
            full[-1]]
  monkeypatch.setattr(sweep_run, 'worker_command', command)
  sweep.main(['--gin_file', PTB_LSTM, '--sweep', 'train.seed = [1, 2, 3, 4]',
              '--output_dir', str(tmp_path), '--workers', '2'])
  statuses = [sweep_run.read_status(tmp_path / f'train.seed={seed}')
              for seed in (1, 2, 3, 4)]
  assert [s['status'] for s in statuses] == ['finished'] * 4
  used = {s['cores'] for s in statuses}
  assert used == {','.join(map(str, share)) for share in shares}


def test_a_worker_pins_itself_to_its_cores_before_training(monkeypatch):
  calls = []
  monkeypatch.setattr(os, 'sched_setaffinity',
                      lambda pid, cores: calls.append(('pin', pid, cores)),
                      raising=False)
  monkeypatch.setattr(sweep, '_run_one_point',
                      lambda output_dir, name: calls.append(('train', name)))
  with pytest.raises(SystemExit):
    sweep.main(['--output_dir', 'runs/x', '--run_point', 'p', '--cores',
                '0,1'])
  assert calls == [('pin', 0, [0, 1]), ('train', 'p')]


def test_real_workers_train_each_point_in_its_own_process(use_tiny_data,
                                                          tmp_path):
  output_dir = tmp_path / 'sweep'
  sweep.main(_sweep_args(output_dir, '--sweep',
                         "Corpus.name = ['ptb', 'missing']", '--workers', '2'))
  good = output_dir / 'Corpus.name=ptb'
  bad = output_dir / 'Corpus.name=missing'
  assert sweep_run.read_status(good)['status'] == 'finished'
  assert sweep_run.read_status(good)['step'] == 2
  assert 'trained to step 2' in (good / sweep_run.LOG_FILE).read_text()
  assert sweep_run.read_status(bad)['status'] == 'failed'
  assert sweep_run.read_status(bad)['error'].startswith(
      "unknown corpus 'missing'")
  assert (output_dir / 'results.csv').exists()


# Points files: named points, e.g. an ablation.

ABLATION = """\
# Not a product: one technique removed per point.
every_point:
  train.n_epochs: 6
  constant_lr.learning_rate: 1e-3
points:
  full: {}
  no_variational: {RecurrentLM.variational: false}
  no_ar_tar: {RecurrentLM.activation_reg: 0.0, RecurrentLM.temporal_activation_reg: 0.0}
  no nt-asgd:
    train.nt_asgd_nonmono: null
    train.optimizer: '@trax.optimizers.Adam'
  longer: {train.n_epochs: 12}
"""


def test_a_points_file_gives_its_named_points_in_order(tmp_path):
  points_file = tmp_path / 'ablation.yaml'
  points_file.write_text(ABLATION)
  points_sweep = sweep_run.make_sweep([PTB_LSTM], [], points_file)
  points = points_sweep.points()
  assert _names(points) == ['full', 'no_variational', 'no_ar_tar',
                            'no_nt-asgd', 'longer']
  every_point = ['train.n_epochs = 6', 'constant_lr.learning_rate = 0.001']
  assert [p.bindings for p in points] == [
      every_point,
      every_point + ['RecurrentLM.variational = False'],
      every_point + ['RecurrentLM.activation_reg = 0.0',
                     'RecurrentLM.temporal_activation_reg = 0.0'],
      every_point + ['train.nt_asgd_nonmono = None',
                     'train.optimizer = @trax.optimizers.Adam'],
      every_point + ['train.n_epochs = 12'],
  ]
  assert points_sweep.own_bindings('full') == []
  # A point's own bindings come last, so they win over every_point's.
  digests = sweep_run.check_configs(points_sweep, points)
  assert len(set(digests.values())) == 5
  config.parse([PTB_LSTM], points[3].bindings)
  assert gin.query_parameter('train.nt_asgd_nonmono') is None  # YAML null.
  assert gin.query_parameter('train.n_epochs') == 6
  config.parse([PTB_LSTM], points[4].bindings)
  assert gin.query_parameter('train.n_epochs') == 12
  assert sweep_run.Sweep.from_json(points_sweep.to_json()) == points_sweep


def test_a_file_without_points_keeps_its_cartesian_meaning(tmp_path):
  grid_file = tmp_path / 'grid.yaml'
  grid_file.write_text('RecurrentLM.d_model: [8, 16]\npoints: [1, 2]\n')
  grid_sweep = sweep_run.make_sweep([PTB_LSTM], [], grid_file,
                                    ['train.seed = [1]'])
  assert grid_sweep.named_points is None
  assert _names(grid_sweep.points()) == [
      'RecurrentLM.d_model=8,points=1', 'RecurrentLM.d_model=8,points=2',
      'RecurrentLM.d_model=16,points=1', 'RecurrentLM.d_model=16,points=2']
  assert 'named_points' not in json.loads(grid_sweep.to_json())


@pytest.mark.parametrize('text, message', [
    ('points:\n  full: {}\n  full: {RecurrentLM.variational: false}\n',
     "not valid YAML: 'full' appears twice in one mapping"),
    ('points:\n  no x: {}\n  no_x: {}\n',
     'two points are named no_x once made file-safe; rename one'),
    ("points:\n  '': {}\n", "the point name '' is empty once made file-safe"),
    ("points:\n  '@/': {}\n", "the point name '@/' is empty once made"),
    ("points:\n  '..': {}\n", "the point name '..' is empty once made"),
    ('points:\n  results.md: {}\n', 'cannot name its run directory'),
    ('points:\n  full: [RecurrentLM.variational]\n',
     'point full must map gin parameters to one value each'),
    ('points: {}\n', 'points must map point names to their bindings'),
    ('points:\n  full: {}\ntrain.n_epochs: 6\n',
     'a points file has only every_point and points, not train.n_epochs'),
    ('every_point: [train.n_epochs]\npoints:\n  full: {}\n',
     'every_point must map gin parameters'),
])
def test_bad_points_files_are_one_line_user_errors(tmp_path, text, message):
  points_file = tmp_path / 'points.yaml'
  points_file.write_text(text)
  with pytest.raises(UserError, match=message) as raised:
    sweep_run.make_sweep([PTB_LSTM], [], points_file)
  assert '\n' not in str(raised.value)


def test_sweep_flags_do_not_combine_with_a_points_file(tmp_path, capsys):
  points_file = tmp_path / 'ablation.yaml'
  points_file.write_text(ABLATION)
  with pytest.raises(SystemExit) as exited:
    sweep.main(_sweep_args(tmp_path / 'sweep', '--grid', str(points_file),
                           '--sweep', 'train.seed = [1, 2]'))
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.count('\n') == 1
  assert (f'--sweep cannot be combined with the points file {points_file}: '
          'add the values to it as points, or drop --sweep') in error
  assert not (tmp_path / 'sweep').exists()


def test_a_points_sweep_trains_each_point_reports_and_skips_them_after(
    use_tiny_data, tmp_path, monkeypatch, capsys):
  points_file = tmp_path / 'points.yaml'
  points_file.write_text('every_point: {train.n_steps: 2}\npoints:\n'
                         '  narrow: {RecurrentLM.d_model: 8}\n  full: {}\n')
  output_dir = tmp_path / 'sweep'
  args = _sweep_args(output_dir, '--grid', str(points_file))
  real_train = training.train
  trained = []
  monkeypatch.setattr(training, 'train', lambda output_dir: (
      trained.append(pathlib.Path(output_dir).name) or
      real_train(output_dir=output_dir)))
  sweep.main(args)
  assert trained == ['narrow', 'full']
  assert '0 finished, 2 to run' in capsys.readouterr().out
  points = sweep_run.Sweep.load(output_dir).points()
  assert _statuses(output_dir, points) == ['finished', 'finished']

  with open(output_dir / 'results.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert [(row['name'], row['bindings']) for row in rows] == [
      ('narrow', 'RecurrentLM.d_model = 8'), ('full', '')]
  table = (output_dir / 'results.md').read_text()
  assert '`train.n_steps = 2`.' in table.split('\n')[0]
  assert '| point | bindings | best valid ppl |' in table
  assert '| narrow | `RecurrentLM.d_model = 8` |' in table
  assert '| full | - |' in table
  assert (output_dir / 'curves.png').read_bytes().startswith(PNG_SIGNATURE)

  # Rerun: both finished, nothing trains; --report rewrites the same table.
  trained.clear()
  sweep.main(args)
  assert trained == []
  assert '2 finished, 0 to run' in capsys.readouterr().out
  (output_dir / 'results.md').unlink()
  sweep.main(['--report', str(output_dir)])
  assert (output_dir / 'results.md').read_text() == table

  # Another set of points is another sweep.
  points_file.write_text('every_point: {train.n_steps: 2}\npoints:\n'
                         '  narrow: {RecurrentLM.d_model: 16}\n  full: {}\n')
  with pytest.raises(SystemExit):
    sweep.main(args)
  assert 'holds another sweep (its sweep.json has other named_points)' in (
      capsys.readouterr().err)


def test_a_sweep_json_from_before_points_files_still_loads(tmp_path):
  (tmp_path / sweep_run.SWEEP_FILE).write_text(json.dumps({
      'gin_files': [PTB_LSTM], 'bindings': ['train.seed = 1'],
      'grid': [['RecurrentLM.d_model', ['8', '16']]]}, indent=2) + '\n')
  stored = sweep_run.Sweep.load(tmp_path)
  assert stored.named_points is None
  assert _names(stored.points()) == ['RecurrentLM.d_model=8', 'RecurrentLM.d_model=16']
  same = sweep_run.make_sweep([PTB_LSTM], ['train.seed = 1'],
                              sweep_flags=['RecurrentLM.d_model = [8, 16]'])
  assert same == stored
  same.save(tmp_path)  # The same sweep: accepted, the file left as it was.
  assert json.loads(same.to_json()) == json.loads(
      (tmp_path / sweep_run.SWEEP_FILE).read_text())
  assert sweep_report.write_report(tmp_path)[1]['status'] == 'pending'


def test_the_shipped_ablation_parses_with_its_config():
  ablation = sweep_run.make_sweep(
      [str(GIN_DIR / 'ptb_lstm_tied.gin')], [],
      GIN_DIR / 'sweeps' / 'ptb_lstm_tied_ablation.yaml')
  points = ablation.points()
  assert _names(points) == [
      'full', 'no_tying', 'no_variational', 'no_embedding_dropout',
      'no_weight_dropout', 'no_ar_tar', 'no_weight_decay', 'no_lr_decay',
      'no_dropout']
  compressed = ['train.n_epochs = 3', 'epoch_decay.constant_epochs = 1',
                'epoch_decay.decay = 0.5']
  assert all(p.bindings[:3] == compressed for p in points)
  assert points[7].bindings[3:] == ['epoch_decay.decay = 1.0']  # Wins.
  assert len(set(sweep_run.check_configs(ablation, points).values())) == 9


def test_the_shipped_awd_parts_sweep_parses_with_its_config():
  parts = sweep_run.make_sweep(
      [str(GIN_DIR / 'ptb_lstm_tied.gin')], [],
      GIN_DIR / 'sweeps' / 'ptb_lstm_tied_awd_parts.yaml')
  points = parts.points()
  assert _names(points) == ['full', 'tail_average', 'variable_bptt', 'both']
  assert points[3].bindings[3:] == [
      'train.average_from_epoch = 2',
      'Batching.seq_lens = [17, 30, 35, 40]',
      'Batching.seq_len_weights = [0.05, 0.2375, 0.475, 0.2375]']
  assert len(set(sweep_run.check_configs(parts, points).values())) == 4


def test_the_shipped_gru_grid_parses_with_its_config():
  grid_sweep = sweep_run.make_sweep(
      [str(GIN_DIR / 'ptb_gru.gin')], [],
      GIN_DIR / 'sweeps' / 'ptb_gru_lr_clip.yaml')
  points = grid_sweep.points()
  assert len(points) == 4 and grid_sweep.named_points is None
  assert sweep_grid.varying_params(grid_sweep.grid) == [
      'epoch_decay.learning_rate', 'trax.optimizers.SGD.clip_grad_norm']
  assert all(p.bindings[-1] == 'train.n_epochs = 4' for p in points)
  assert len(set(sweep_run.check_configs(grid_sweep, points).values())) == 4
