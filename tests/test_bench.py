"""The benchmarks in bench/ run and report numbers that add up (smallest
settings: these check the machinery, not the speed)."""

import json
import math
import os
import pathlib
import re
import runpy
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / 'bench'


@pytest.fixture
def bench_script(monkeypatch):
  monkeypatch.syspath_prepend(str(BENCH))  # They import bench/common.py.
  yield lambda name: runpy.run_path(str(BENCH / name), run_name='bench')
  for name in ('common', 'trax_steps', 'bare', 'train_speed', 'machine'):
    sys.modules.pop(name, None)  # Fresh for the next script.


def _number(text):
  return float(text.replace(',', ''))


def test_the_speed_table_adds_up(real_data_dir, bench_script, capsys,
                                 tmp_path):
  """train_speed.py at tiny windows: train.py and the PyTorch peer each run
  in their own process, the cells are positive finite tokens/s, and the
  ratio is lm_trax's median over PyTorch's."""
  pytest.importorskip('torch')
  report = tmp_path / 'speed.json'
  bench_script('train_speed.py')['main'](
      ['--config', 'ptb_lstm', '--repeats', '1', '--window', '0.3',
       '--warmup', '0', '--log_every', '2', '--no_trax', '--data_dir',
       str(real_data_dir), '--json', str(report)])
  out = capsys.readouterr().out
  assert re.search(r'^date: \d{4}-\d\d-\d\d', out, re.M), out
  assert re.search(r'^machine: .+, \d+ cores; load average', out, re.M), out
  assert re.search(r'^versions: .*jax [\d.]+.*torch [\d.]+', out, re.M), out
  row = re.search(r'^\| ptb_lstm \| ([\d,.]+) \(([\d,.]+)-([\d,.]+)\) \| '
                  r'([\d,.]+) \(([\d,.]+)-([\d,.]+)\) \| ([\d.]+)x \|$', out,
                  re.M)
  assert row, out
  ours, ours_min, ours_max, torch, torch_min, torch_max, ratio = map(
      _number, row.groups())
  for value in (ours, torch):
    assert math.isfinite(value) and value > 0
  assert ours_min <= ours <= ours_max and torch_min <= torch <= torch_max
  # The ratio is of the unrounded medians, rounded to 0.01; the cells are
  # rounded to whole tokens/s.
  assert ratio == pytest.approx(ours / torch,
                                abs=0.0051 + (ours + torch) / torch ** 2)

  measured = json.loads(report.read_text())
  torch_report = measured['results']['_torch']
  assert torch_report['modules'] == {
      'jax': False, 'tensorflow': False, 'trax': False}
  assert torch_report['vocab_size'] == 10000  # PTB's words + <eos>.
  assert math.isfinite(torch_report['loss'])


def test_the_pytorch_peer_has_each_configs_settings(bench_script):
  """word_language_model.py runs with the sizes, batch, learning rate and
  clipping of gin/<config>.gin."""
  speed = bench_script('train_speed.py')
  common = bench_script('common.py')
  for config, peer in speed['PEERS'].items():
    spec = common['load_spec'](config)
    settings = dict(speed['PEER_COMMON'], **peer)
    assert (settings['model'], settings['emsize'], settings['nhid'],
            settings['nlayers'], settings['batch_size'], settings['bptt'],
            settings['lr'], settings['clip'], settings['dropout']) == (
                spec.model.upper(), spec.d_model, spec.d_model,
                spec.n_layers, spec.batch_size, spec.seq_len,
                spec.learning_rate, spec.clip_grad_norm,
                spec.hparams.get('dropout', 0.0)), config


def test_the_trax_step_worker_reports_tokens_per_second(bench_script,
                                                        capsys):
  bench_script('trax_steps.py')['main'](
      ['--config', 'ptb_nplm', '--warmup', '0', '--window', '0', '--chunk',
       '1'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for name in ('lm_trax', 'plain_trax'):
    assert math.isfinite(result[name]) and result[name] > 0, result
    assert result[name + '_steps'] >= 1
  # Reported for train_speed.py, which checks it in the worker's own process
  # (this one may have imported torch for another test).
  assert set(result['modules']) == {'torch', 'jax', 'tensorflow'}


def test_eval_speed_prints_its_table(bench_script, capsys):
  """eval_speed.py's row: positive tokens/s for lm_trax and the bare loop,
  their ratio the bare loop's speed over lm_trax's."""
  bench_script('eval_speed.py')['main'](
      ['--config', 'ptb_nplm', '--chunks', '1', '--repeats', '1',
       '--no_torch'])
  out = capsys.readouterr().out
  row = re.search(r'^ptb_nplm \| +\d+ \| +([\d,]+) \| +([\d,]+) \| +([\d.]+)x '
                  r'\| +- \|', out, re.M)
  assert row, out
  ours, bound, ratio = map(_number, row.groups())
  assert ours > 0 and bound > 0
  assert ratio == pytest.approx(bound / ours, abs=0.005 + bound / ours ** 2)


@pytest.mark.parametrize('cell', ['lstm', 'gru', 'mgu'])
def test_the_bare_loop_computes_the_models_log_probs(bench_script, cell):
  """The eval bound does the model's work, not less: with the model's
  weights, bench/bare.py's loop gives lm_trax.evaluate's log-probabilities
  (two chunks, the state carried across)."""
  import functools  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lm_trax import inference  # pylint: disable=g-import-not-at-top
  from lm_trax import models  # pylint: disable=g-import-not-at-top
  from lm_trax import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  bare = bench_script('bare.py')
  vocab = vocab_lib.Vocab('word', [vocab_lib.PAD, vocab_lib.UNK, vocab_lib.EOS]
                          + [f'w{i}' for i in range(27)])
  model_fn = functools.partial(models.RecurrentLM, cell=cell, d_model=8,
                               n_layers=2)
  predictor = inference.Predictor(model_fn, vocab)
  ids = np.random.default_rng(0).integers(1, vocab.size, 24).astype(np.int32)
  expected = predictor.stream_log_probs(ids, chunk_len=12)

  model_cell, params = bare['recurrent_params_of'](predictor.model)
  assert model_cell.name == cell
  inputs = inference.primed(vocab.eos_id, ids)[:-1].reshape(2, 12)
  state = bare['zero_state'](model_cell, 2, 1, 8)
  got = bare['score_recurrent'](model_cell, params, state, inputs,
                                ids.reshape(2, 12))
  np.testing.assert_allclose(np.asarray(got).reshape(-1), expected,
                             rtol=1e-5, atol=1e-5)


def test_generate_speed_prints_its_table(bench_script, capsys, word_run):
  """generate_speed.py on a run: tokens/s of lm_trax.generate, the bare
  loop and trax's sampler, and the ratios between them."""
  bench_script('generate_speed.py')['main'](
      ['--output_dir', str(word_run), '--length', '4', '--repeats', '1',
       '--batch_sizes', '2'])
  out = capsys.readouterr().out
  row = re.search(r'^ +2 \| +([\d,]+) \| +([\d,]+) \| +([\d.]+)x \| '
                  r'+([\d,]+) \| +([\d.]+)x$', out, re.M)
  assert row, out
  ours, bound, vs_bound, theirs, vs_theirs = map(_number, row.groups())
  assert min(ours, bound, theirs) > 0
  assert vs_bound == pytest.approx(bound / ours, abs=0.005 + bound / ours ** 2)
  assert vs_theirs == pytest.approx(ours / theirs,
                                    abs=0.05 + ours / theirs ** 2)


def test_the_op_profile_times_each_xla_operation_of_a_program(bench_script):
  """--breakdown's operation table: a traced program's XLA operations, each
  with its calls per step and the shape from the compiled HLO."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax import numpy as jnp  # pylint: disable=g-import-not-at-top
  steps = bench_script('trax_steps.py')
  a = jnp.ones((256, 256), jnp.float32)
  program = jax.jit(lambda x: jnp.tanh(x @ x))
  program(a).block_until_ready()

  def four_steps():
    for _ in range(4):
      out = program(a)
    out.block_until_ready()
  times, seconds = steps['traced_op_times'](four_steps, n_steps=4)
  assert seconds > 0
  ops = steps['hlo_ops'](program.lower(a).compile().as_text())
  profiled = {name: what for name, what in ops.items() if name in times}
  assert any(what.startswith('f32[256,256]') for what in profiled.values()), (
      times, ops)
  for name in profiled:
    ms, calls = times[name]
    assert ms > 0 and calls == 1, (name, times[name])


def test_busy_cores_sees_a_process_that_runs_now(monkeypatch):
  """train_speed.py's idleness check: a core kept busy during the
  measurement shows up as about one busy core."""
  monkeypatch.syspath_prepend(str(BENCH))
  import machine  # pylint: disable=g-import-not-at-top
  if not pathlib.Path('/proc/stat').exists():
    pytest.skip('no /proc/stat')
  spinner = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
  try:
    busy = machine.busy_cores(1.0)
  finally:
    spinner.kill()
    spinner.wait()
  assert 0.7 <= busy <= (os.cpu_count() or 1) + 0.1, busy
