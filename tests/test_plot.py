"""lm_trax.plot: curves drawn from the runs' own metrics.jsonl."""

import json
import pathlib

import gin
from matplotlib.figure import Figure
import pytest

from lm_trax import config
from lm_trax import plot
from lm_trax import training

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def two_tiny_runs(tiny_data_dir, tmp_path_factory):
  """Two tiny PTB LSTM runs of 3 steps, trained once for this module."""
  root = tmp_path_factory.mktemp('runs')
  runs = [root / 'lstm8', root / 'lstm16']
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('LM_TRAX_DATA_DIR', str(tiny_data_dir))
    for run, d_model in zip(runs, (8, 16)):
      config.parse([str(GIN_DIR / 'ptb_lstm.gin'), str(GIN_DIR / 'tiny.gin')],
                   ['Corpus.download = False', f'RecurrentLM.d_model = {d_model}',
                    'train.n_steps = 3'])
      training.train(output_dir=str(run))
  gin.clear_config()
  return runs


def _file_records(run):
  """metrics.jsonl read line by line, independently of MetricsLog.read."""
  lines = (run / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines if line.strip()]


def test_the_plot_command_writes_a_png_of_two_runs(two_tiny_runs, tmp_path,
                                                   capsys):
  out = tmp_path / 'plots' / 'curves.png'
  plot.main([str(run) for run in two_tiny_runs] + ['--out', str(out)])
  png = out.read_bytes()
  assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
  assert f'wrote {out}' in capsys.readouterr().out
  plot.main([str(two_tiny_runs[0]), '--out', str(out), '--metric', 'loss'])
  assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_the_drawn_curves_are_the_runs_metrics_records(two_tiny_runs):
  axes = Figure().add_subplot()
  runs = [(run.name, plot.read_records(run)) for run in two_tiny_runs]
  plot.draw_curves(axes, runs, 'ppl')

  drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
           for line in axes.get_lines()}
  expected = {}
  for run in two_tiny_runs:
    for kind in plot.KINDS:
      records = [r for r in _file_records(run) if r['kind'] == kind]
      if records:
        expected[f'{run.name} ({kind})'] = ([r['step'] for r in records],
                                            [r['ppl'] for r in records])
  assert drawn == expected
  assert {'lstm8 (train)', 'lstm8 (eval)', 'lstm16 (train)'} <= set(drawn)
  assert len(drawn['lstm8 (train)'][0]) == 3
  colours = {line.get_label(): line.get_color() for line in axes.get_lines()}
  assert colours['lstm8 (train)'] == colours['lstm8 (eval)']
  assert colours['lstm8 (train)'] != colours['lstm16 (train)']
  assert axes.get_yscale() == 'log'


def test_series_takes_one_kind_and_metric_in_step_order():
  records = [
      {'step': 20, 'kind': 'train', 'loss': 4.0, 'ppl': 54.6},
      {'step': 10, 'kind': 'train', 'loss': 5.0, 'ppl': 148.4},
      {'step': 10, 'kind': 'eval', 'loss': 5.5, 'ppl': 244.7},
  ]
  assert plot.series(records, 'train') == ([10, 20], [148.4, 54.6])
  assert plot.series(records, 'eval', 'loss') == ([10], [5.5])
  assert plot.series(records, 'valid') == ([], [])


@pytest.mark.parametrize('exists', [False, True])
def test_a_run_without_metrics_is_a_one_line_error(exists, tmp_path, capsys):
  run = tmp_path / 'run'
  if exists:
    run.mkdir()
  with pytest.raises(SystemExit) as exited:
    plot.main([str(run), '--out', str(tmp_path / 'x.png')])
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.startswith('error: ') and error.count('\n') == 1
  assert str(run) in error
  assert not (tmp_path / 'x.png').exists()


def test_runs_are_labeled_by_directory_name_unless_names_repeat():
  assert plot.run_labels(['runs/a/lstm', 'runs/gru/']) == ['lstm', 'gru']
  assert plot.run_labels(['runs/a/lstm', 'runs/b/lstm']) == [
      'runs/a/lstm', 'runs/b/lstm']
