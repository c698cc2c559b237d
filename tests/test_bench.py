"""The benchmarks in bench/ run and print their tables (smallest settings)."""

import pathlib
import runpy
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / 'bench'


@pytest.fixture
def bench_script(monkeypatch):
  monkeypatch.syspath_prepend(str(BENCH))  # They import bench/common.py.
  return lambda name: runpy.run_path(str(BENCH / name), run_name='bench')


@pytest.mark.parametrize('script, argv, expected', [
    ('train_speed.py', ['--config', 'ptb_nplm', '--steps', '1',
                        '--repeats', '1'], ['ptb_nplm', 'plain trax']),
    ('eval_speed.py', ['--config', 'ptb_nplm', '--chunks', '1',
                       '--repeats', '1'], ['ptb_nplm']),
])
def test_a_benchmark_prints_its_table(script, argv, expected, bench_script,
                                      capsys):
  bench_script(script)['main'](argv)
  out = capsys.readouterr().out
  for text in expected:
    assert text in out, out
  assert 'x' in out  # Ratios.
  del sys.modules['common']  # Fresh for the next script.
