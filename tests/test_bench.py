"""The benchmarks in bench/ run and report numbers that add up (smallest
settings: these check the machinery, not the speed)."""

import dataclasses
import io
import json
import math
import os
import pathlib
import re
import runpy
import subprocess
import sys

import pytest

from conftest import REPO, tiny_sentences  # pylint: disable=g-bad-import-order

BENCH = REPO / 'bench'
NO_TORCH = ('PyTorch (the peer) is not installed: '
            "pip install -e '.[test,bench]'")


@pytest.fixture
def bench_script(monkeypatch):
  monkeypatch.syspath_prepend(str(BENCH))  # They import bench/common.py.
  yield lambda name: runpy.run_path(str(BENCH / name), run_name='bench')
  for name in ('common', 'trax_steps', 'bare', 'train_speed', 'machine',
               'word_language_model'):
    sys.modules.pop(name, None)  # Fresh for the next script.


def _number(text):
  return float(text.replace(',', ''))


def test_the_speed_table_adds_up(real_data_dir, bench_script, capsys,
                                 tmp_path):
  """train_speed.py at tiny windows: train.py and the PyTorch peer each run
  in their own process, the cells are positive finite tokens/s, and the
  ratio is lm_trax's median over PyTorch's."""
  pytest.importorskip('torch', reason=NO_TORCH)
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
  """lm_trax's step in the precision asked for (here bfloat16 alone, which
  train_speed.py reads as 'lm_trax_bfloat16'), plain trax's in float32."""
  bench_script('trax_steps.py')['main'](
      ['--config', 'ptb_nplm', '--warmup', '0', '--window', '0', '--chunk',
       '1', '--precision', 'bfloat16'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert 'lm_trax' not in result
  for name in ('lm_trax_bfloat16', 'plain_trax'):
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


@pytest.mark.parametrize('precision', ['float32', 'bfloat16'])
@pytest.mark.parametrize('cell', ['lstm', 'gru', 'mgu'])
def test_the_bare_loop_computes_the_models_log_probs(bench_script, cell,
                                                     precision):
  """The eval bound does the model's work, not less: with the model's
  weights, bench/bare.py's loop gives lm_trax.evaluate's log-probabilities
  (two chunks, the state carried across), in the model's precision."""
  import functools  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lm_trax import inference  # pylint: disable=g-import-not-at-top
  from lm_trax import models  # pylint: disable=g-import-not-at-top
  from lm_trax import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  bare = bench_script('bare.py')
  vocab = vocab_lib.Vocab('word', [vocab_lib.PAD, vocab_lib.UNK, vocab_lib.EOS]
                          + [f'w{i}' for i in range(27)])
  model_fn = functools.partial(models.RecurrentLM, cell=cell, d_model=8,
                               n_layers=2, precision=precision)
  predictor = inference.Predictor(model_fn, vocab)
  ids = np.random.default_rng(0).integers(1, vocab.size, 24).astype(np.int32)
  expected = predictor.stream_log_probs(ids, chunk_len=12)

  model_cell, params = bare['recurrent_params_of'](predictor.model)
  assert (model_cell.name, model_cell.precision) == (cell, precision)
  inputs = inference.primed(vocab.eos_id, ids)[:-1].reshape(2, 12)
  state = bare['zero_state'](model_cell, 2, 1, 8)
  got = bare['score_recurrent'](model_cell, params, state, inputs,
                                ids.reshape(2, 12))
  # The same operands rounded the same way, summed in float32: as close as
  # float32's sums, where a float32 matmul instead of a bfloat16 one (in any
  # layer, the output layer included) is off by about 1e-4.
  np.testing.assert_allclose(np.asarray(got).reshape(-1), expected,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('precision', [None, 'bfloat16'])
def test_generate_speed_prints_its_table(bench_script, capsys, word_run,
                                         precision):
  """generate_speed.py on a run: tokens/s of lm_trax.generate, the bare
  loop and trax's sampler, and the ratios between them; in the run's
  precision (float32) or the one given."""
  bench_script('generate_speed.py')['main'](
      ['--output_dir', str(word_run), '--length', '4', '--repeats', '1',
       '--batch_sizes', '2'] +
      (['--precision', precision] if precision else []))
  out = capsys.readouterr().out
  assert out.startswith(f'the model of {word_run}, in '
                        f'{precision or "float32"};'), out
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


@pytest.mark.alone  # Another xdist worker's test would be seen as busy.
def test_busy_cores_sees_a_process_that_runs_now(monkeypatch):
  """train_speed.py's idleness check: a core kept busy during the
  measurement shows up as about one busy core."""
  monkeypatch.syspath_prepend(str(BENCH))
  import machine  # pylint: disable=g-import-not-at-top
  if not pathlib.Path('/proc/stat').exists():
    pytest.skip('no /proc/stat')
  before = machine.busy_cores(1.0)
  if before > (os.cpu_count() or 1) - 1.3:
    pytest.skip(f'{before:.1f} cores are busy already: no free core to see')
  spinner = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
  try:
    busy = machine.busy_cores(1.0)
  finally:
    spinner.kill()
    spinner.wait()
  assert 0.7 <= busy - before <= 1.3, (before, busy)


# Precision (lm_trax.precision) and the data directory ------------------------

def test_train_speed_finds_ptb_where_lm_trax_does(bench_script, monkeypatch,
                                                  tmp_path):
  """--data_dir defaults to lm_trax's data directory (LM_TRAX_DATA_DIR, else
  ~/.cache/lm_trax/data), and without PTB there the error names the command
  that fetches it and the variable."""
  speed = bench_script('train_speed.py')
  monkeypatch.delenv('LM_TRAX_DATA_DIR', raising=False)
  monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
  monkeypatch.setenv('HOME', str(tmp_path))
  cache = tmp_path / '.cache' / 'lm_trax' / 'data'
  assert speed['build_parser']().parse_args([]).data_dir == cache
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tmp_path / 'data'))
  assert speed['build_parser']().parse_args([]).data_dir == tmp_path / 'data'

  message = speed['missing_ptb'](tmp_path / 'data')
  assert message.startswith(f'no PTB in {tmp_path}/data/ptb: get it with '
                            '`python -m lm_trax.download ptb`'), message
  assert 'LM_TRAX_DATA_DIR' in message
  assert f'download ptb --data_dir {tmp_path}/other`' in speed['missing_ptb'](
      tmp_path / 'other')
  (tmp_path / 'data' / 'ptb').mkdir(parents=True)
  (tmp_path / 'data' / 'ptb' / 'ptb.train.txt').write_text(' a b \n')
  assert speed['missing_ptb'](tmp_path / 'data') is None


def test_bf16_units_are_read_from_the_cpu_flags(monkeypatch):
  """The bfloat16 units named in every table header: the x86 flags of
  /proc/cpuinfo's `flags` line, none on a CPU without them."""
  monkeypatch.syspath_prepend(str(BENCH))
  import machine  # pylint: disable=g-import-not-at-top
  sapphire_rapids = (
      'processor\t: 0\nvendor_id\t: GenuineIntel\n'
      'model name\t: Intel(R) Xeon(R) Platinum 8480+\n'
      'flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 '
      'amx_tile amx_int8\nvmx flags\t: vnmi preemption_timer\n'
      'bugs\t\t: spectre_v1\n\nprocessor\t: 1\n')
  assert machine.bf16_units(sapphire_rapids) == (
      'avx512_bf16', 'amx_bf16', 'amx_tile')
  assert machine.bf16_text(('avx512_bf16', 'amx_bf16', 'amx_tile')) == (
      'bf16 units: avx512_bf16 amx_bf16 amx_tile')
  epyc = ('processor\t: 0\nmodel name\t: AMD EPYC\n'
          'flags\t\t: fpu avx2 fma f16c sha_ni\nbugs\t\t: sysret_ss_attrs\n')
  assert machine.bf16_units(epyc) == ()
  assert machine.bf16_text(()) == 'no bf16/AMX units'
  assert machine.bf16_units('') == ()  # No flags line: none known.


def _speed_results():
  """train_speed.measure's results for ptb_lstm in both precisions, made up
  (tokens/s): lm_trax 3,000 / PyTorch 2,000 in float32, 1,500 / 1,000 in
  bfloat16."""
  report = {'torch': '2.13.0', 'threads': 2, 'interop_threads': 2, 'env': {}}
  return {
      'ptb_lstm': {
          'lm_trax': [3000.0], 'torch': [2000.0],
          'lm_trax_bfloat16': [1500.0], 'torch_bfloat16': [1000.0],
          'lm_trax_step': [], 'lm_trax_step_bfloat16': [],
          'plain_trax_step': [], 'first_line_seconds': [20.0],
          'first_line_seconds_bfloat16': [21.0],
          'autocast_dtypes': {'rnn': 'float32', 'decoder': 'bfloat16',
                              'rnn_outside_autocast': True}},
      '_torch': report,
      '_torch_bfloat16': dict(report, autocast='bfloat16'),
  }


def test_train_speed_times_lm_trax_in_each_precision_beside_its_peer(
    bench_script):
  """--precision float32,bfloat16: train.py with train.precision bound for
  bfloat16 (and gin reads the binding), word_language_model.py --autocast
  as its peer, and one table with a column pair per precision."""
  from lm_trax import config  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  speed = bench_script('train_speed.py')
  parse = speed['build_parser']().parse_args
  assert parse([]).precision == ('float32',)
  assert parse(['--precision', 'bfloat16']).precision == ('bfloat16',)
  assert parse(['--precision', 'float32,bfloat16']).precision == (
      'float32', 'bfloat16')
  with pytest.raises(SystemExit):
    parse(['--precision', 'float16'])

  float32 = speed['train_py_command']('ptb_lstm', 'run', 50)
  bfloat16 = speed['train_py_command']('ptb_lstm', 'run', 50, 'bfloat16')
  assert bfloat16[:-1] == float32
  flag, binding = bfloat16[-1].split('=', 1)
  assert flag == '--gin_bindings'
  config.parse([str(REPO / 'gin' / 'ptb_lstm.gin')], [binding])
  assert gin.query_parameter('lm_trax.train.precision') == 'bfloat16'

  settings = speed['Settings'](pathlib.Path('data'), 1.0, 2.0, 50)
  torch_float32 = speed['torch_command']('ptb_lstm', settings)
  assert '--autocast' not in torch_float32
  assert speed['torch_command']('ptb_lstm', settings, 'bfloat16') == (
      torch_float32 + ['--autocast'])

  out = io.StringIO()
  speed['print_table'](_speed_results(), ('ptb_lstm',), 1, settings,
                       (0, 0, 0), (0, 0, 0), False, out=out,
                       precisions=('float32', 'bfloat16'))
  out = out.getvalue()
  assert ('| config | lm_trax train.py float32 | PyTorch word_language_model '
          '| lm_trax float32 / PyTorch | lm_trax train.py bfloat16 | PyTorch '
          'bf16 autocast | lm_trax bfloat16 / PyTorch bf16 |\n') in out, out
  assert ('| ptb_lstm | 3,000 (3,000-3,000) | 2,000 (2,000-2,000) | 1.50x | '
          '1,500 (1,500-1,500) | 1,000 (1,000-1,000) | 1.50x |\n') in out, out
  assert 'the RNN in float32 (kept out of autocast' in out, out


def test_every_table_header_names_the_cpus_bf16_units(bench_script):
  """train_speed.py's machine line and the JAX benchmarks' (common.py) say
  which bfloat16 units the CPU has, or that it has none."""
  speed = bench_script('train_speed.py')
  common = bench_script('common.py')
  units = speed['machine'].bf16_text()
  out = io.StringIO()
  results = _speed_results()
  speed['print_table'](results, ('ptb_lstm',), 1,
                       speed['Settings'](pathlib.Path('data'), 1.0, 2.0, 50),
                       (0, 0, 0), (0, 0, 0), False, out=out)
  assert re.search(rf'^machine: .+ \({units}\), \d+ cores;', out.getvalue(),
                   re.M), out.getvalue()
  assert f'; {units}), load average' in common['machine_line']()


@pytest.mark.parametrize('job', [[], ['--evaluate']])
@pytest.mark.parametrize('model', ['LSTM', 'GRU'])
def test_the_pytorch_peer_runs_under_bfloat16_autocast(bench_script, capsys,
                                                       tmp_path, model, job):
  """word_language_model.py --autocast trains (and evaluates) a few steps
  of a tiny corpus with the decoder in bfloat16: a loss close to float32's,
  not equal to it."""
  pytest.importorskip('torch', reason=NO_TORCH)
  (tmp_path / 'train.txt').write_text(
      ''.join(f' {line} \n' for line in tiny_sentences(60)))
  main = bench_script('word_language_model.py')['main']
  reports = {}
  for autocast in ([], ['--autocast']):
    main(['--data', str(tmp_path), '--model', model, '--emsize', '16',
          '--nhid', '16', '--batch_size', '4', '--bptt', '5', '--lr', '1',
          '--warmup', '0', '--window', '0'] + job + autocast)
    reports[bool(autocast)] = json.loads(
        capsys.readouterr().out.strip().splitlines()[-1])
  plain, mixed = reports[False], reports[True]
  assert (plain['autocast'], mixed['autocast']) == (None, 'bfloat16')
  assert mixed['autocast_dtypes']['decoder'] == 'bfloat16'
  # The LSTM runs in bfloat16 where oneDNN can, else outside autocast.
  assert mixed['autocast_dtypes']['rnn'] == (
      'float32' if model == 'GRU' or
      mixed['autocast_dtypes']['rnn_outside_autocast'] else 'bfloat16')
  assert mixed['warmup_steps'] == plain['warmup_steps'] == 3
  assert math.isfinite(mixed['loss'])
  assert mixed['loss'] != plain['loss']
  assert mixed['loss'] == pytest.approx(plain['loss'], abs=0.05)


def test_the_bfloat16_matmul_timed_is_bfloat16_products_summed_in_float32(
    bench_script):
  """--breakdown's bfloat16 matmul: bfloat16 operands, float32 sums."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax import numpy as jnp  # pylint: disable=g-import-not-at-top
  common = bench_script('common.py')
  a, b = common['matmul_operands'](3, 4, 64, 5, 'bfloat16')
  assert a.shape == (3, 4, 64) and b.shape == (64, 5)
  assert a.dtype == b.dtype == jnp.bfloat16
  got = common['summed_products']('bfloat16')(a, b)
  assert got.dtype == jnp.float32
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  np.testing.assert_allclose(got, sum(x @ b for x in a), rtol=1e-5,
                             atol=1e-5)
  a, b = common['matmul_operands'](3, 4, 64, 5, 'float32')
  assert a.dtype == b.dtype == jnp.float32
  # The same random numbers, unrounded.
  assert np.array_equal(np.asarray(a).astype(ml_dtypes.bfloat16),
                        np.asarray(common['matmul_operands'](
                            3, 4, 64, 5, 'bfloat16')[0]))
  got = common['summed_products']('float32')(a, b)
  np.testing.assert_allclose(got, sum(x @ b for x in np.asarray(a)),
                             rtol=1e-5, atol=1e-5)


def test_the_breakdown_prints_matmul_throughput_in_both_precisions(
    bench_script, capsys, monkeypatch):
  """At the model's shapes and a square one (made small here), GFLOP/s in
  float32 and bfloat16, the CPU's bfloat16 units beside them, and one line
  saying when there are none."""
  steps = bench_script('trax_steps.py')
  common = steps['common']
  monkeypatch.setattr(common, 'PEAK_N', 64)
  monkeypatch.setattr(common, 'MIN_FLOPS_PER_CALL', 1e6)
  spec = common.load_spec('ptb_lstm')
  assert steps['matmul_shapes'](spec) == {
      'output layer: logits': (400, 200, 10001),
      "output layer: its input's gradient": (400, 10001, 200),
      'one recurrent step': (20, 200, 800), 'large square': (64, 64, 64)}
  spec = dataclasses.replace(spec, vocab_size=100, batch_size=2,
                             hparams=dict(spec.hparams, d_model=16))
  for units in ((), ('amx_bf16', 'amx_tile')):
    monkeypatch.setattr(steps['machine'], 'bf16_units', lambda: units)
    steps['print_matmul_throughput'](spec, repeats=1)
    out = capsys.readouterr().out
    assert steps['machine'].bf16_text(units) in out.splitlines()[0], out
    assert ('no bfloat16 units on this CPU' in out) == (not units), out
    rows = re.findall(r'^(.+?) +\| \((\d+), (\d+)\) @ \(\d+, (\d+)\) +\| +'
                      r'([\d.]+) \| +([\d.]+) \| +([\d.]+)x$', out, re.M)
    assert [row[0] for row in rows] == list(steps['matmul_shapes'](spec)), out
    for row in rows:
      float32, bfloat16, ratio = map(float, row[-3:])
      assert float32 > 0.05 and bfloat16 > 0.05, row
      # The ratio of the unrounded values; the values rounded to 0.1.
      assert ((bfloat16 - 0.05) / (float32 + 0.05) - 0.005 <= ratio <=
              (bfloat16 + 0.05) / (float32 - 0.05) + 0.005), row


def test_the_benchmarks_build_lm_traxs_model_in_the_precision(bench_script):
  """The synthetic trax step (train_speed.py's), eval_speed.py's model and
  its bare loop, and generate_speed.py's random model multiply in the
  precision asked for."""
  from lm_trax import layers  # pylint: disable=g-import-not-at-top
  steps = bench_script('trax_steps.py')
  spec = steps['common'].load_spec('ptb_lstm')

  def precisions(model):
    found = set()
    stack = [model]
    while stack:
      layer = stack.pop()
      stack += layer.sublayers
      if isinstance(layer, layers.Recurrent):
        found.add(layer.cell.precision)
      if isinstance(layer, layers.FlatDense):
        found.add(layer._precision)  # pylint: disable=protected-access
    return found
  for precision in ('float32', 'bfloat16'):
    model, _ = steps['lm_trax_model'](spec, precision)
    assert precisions(model) == {precision}
  evaluation = bench_script('eval_speed.py')
  small = dataclasses.replace(spec, vocab_size=50)
  predictor = evaluation['predictor_of'](small, 'bfloat16')
  assert precisions(predictor.model) == {'bfloat16'}
  cell, _ = evaluation['bare'].recurrent_params_of(predictor.model)
  assert cell.precision == 'bfloat16'
  generation = bench_script('generate_speed.py')
  factory = generation['Models'](precision='bfloat16')
  assert 'precision=' in factory.describe()
  model = factory.model(1)
  assert precisions(model) == {'bfloat16'}
