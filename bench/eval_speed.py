"""Exact-evaluation tokens/s: lm_trax.evaluate vs a bare loop and PyTorch.

  python bench/eval_speed.py [--config ptb_lstm|ptb_gru|ptb_nplm|all]
                             [--chunks N] [--repeats R] [--torch_window S]
                             [--precision float32|bfloat16]
                             [--no_torch] [--data_dir DIR]

For each config (the model and batch of gin/<config>.gin, PTB's vocabulary
V = 10,001), one stream of N chunks of B * T tokens (synthetic ids, uniform
random: speed does not depend on them), it times

  (a) exact evaluation as `python -m lm_trax.evaluate` runs it:
      lm_trax.inference.Predictor.stream_log_probs, every token scored once
      from everything before it, one compiled call per chunk (one row, the
      state carried), the model in 'eval' mode;
  (b) the bound: bench/bare.py's bare compiled loop, the same arithmetic in
      plain JAX (per chunk the input projections and the output layer as
      matmuls, the recurrent matrix-vector products step by step), the whole
      stream in one compiled call, with (a)'s weights;
  (c) lm_trax training on batches of the config (bench/trax_steps.py's
      trax Loop step), for scale;
  (d) the matmul peak (2048 x 2048 @ 2048 x 2048, jitted);
  (e) PyTorch (LSTM and GRU; torch installed, no --no_torch), in a process
      of its own: bench/word_language_model.py --evaluate, pytorch/examples'
      evaluate() at batch 1 and bptt B * T (the same rule: one stream, the
      state carried) over PTB's train split, timed over --torch_window
      seconds after 2 s of warm-up.

--precision (default float32) is the number format of the matmuls
(lm_trax.precision) in (a), as `python -m lm_trax.evaluate --precision`
runs the model, and in (b), (c) and (d) alike; PyTorch's (e) in bfloat16 is
word_language_model.py --evaluate --autocast (bfloat16 autocast).

After a warm-up each runs in turn, R times (the PyTorch process included);
medians. GFLOP/s counts the forward matmuls (formula printed).
"""

import argparse
import functools
import sys
import time

# pylint: disable=g-import-not-at-top,wrong-import-position
from lm_trax import process
process.set_up()  # As the commands do: before TensorFlow and XLA start.
from lm_trax import configurables  # pylint: disable=unused-import  (trax fixes, gin names)
import numpy as np

import bare
import common
import train_speed
import trax_steps
from lm_trax import download
from lm_trax import inference
from lm_trax import precision as precision_lib
from lm_trax import vocab as vocab_lib


def predictor_of(spec, precision='float32'):
  """The config's model in an lm_trax Predictor (random weights) over a
  vocabulary of spec.vocab_size made-up words, its matmuls in precision."""
  words = [f'w{i}' for i in range(spec.vocab_size - 3)]
  vocab = vocab_lib.Vocab('word', [vocab_lib.PAD, vocab_lib.UNK,
                                   vocab_lib.EOS] + words)
  return inference.Predictor(precision_lib.bind(spec.model_fn, precision),
                             vocab)


def lm_trax_eval(spec, predictor, ids):
  """A timed call: exact log-probabilities of `ids` -> seconds."""
  def call():
    started = time.perf_counter()
    log_probs = predictor.stream_log_probs(ids, spec.tokens_per_batch)
    seconds = time.perf_counter() - started
    assert log_probs.shape == ids.shape and np.isfinite(log_probs).all()
    return seconds
  return call


def bare_eval(spec, predictor, ids, precision='float32'):
  """A timed call of the bound (bench/bare.py) on the same stream, with the
  predictor's weights (the NPLM's: random ones of the same shapes) and
  precision (a recurrent model's: its cell's) -> seconds."""
  chunk_len = spec.tokens_per_batch
  inputs = inference.primed(predictor.vocab.eos_id, ids)[:-1]
  n_chunks = len(ids) // chunk_len
  targets = ids.reshape(n_chunks, chunk_len)
  if spec.model == 'nplm':
    params = bare.nplm_params(spec.vocab_size, spec.d_model, spec.d_hidden,
                              spec.n_context, spec.n_layers)
    windows = bare.nplm_windows(inputs, spec.n_context).reshape(
        n_chunks, chunk_len, spec.n_context)
    score = lambda: bare.score_nplm(params, windows, targets, precision)
  else:
    cell, params = bare.recurrent_params_of(predictor.model)
    state = bare.zero_state(cell, spec.n_layers, 1, spec.d_model)
    inputs = inputs.reshape(n_chunks, chunk_len)
    score = lambda: bare.score_recurrent(cell, params, state, inputs,
                                         targets)

  def call():
    started = time.perf_counter()
    log_probs = np.asarray(score())
    seconds = time.perf_counter() - started
    assert log_probs.shape == targets.shape and np.isfinite(log_probs).all()
    return seconds
  return call


def torch_eval(spec, n_tokens, data_dir, window, precision='float32'):
  """A timed PyTorch process (bench/word_language_model.py --evaluate, with
  --autocast in bfloat16): a call -> the seconds it takes for n_tokens at
  the process's tokens/s."""
  command = [sys.executable, str(train_speed.BENCH / 'word_language_model.py'),
             '--data', str(data_dir / 'ptb'), '--evaluate',
             '--model', spec.model.upper(), '--emsize', str(spec.d_model),
             '--nhid', str(spec.d_model), '--nlayers', str(spec.n_layers),
             '--batch_size', '1', '--bptt', str(spec.tokens_per_batch),
             '--warmup', '2', '--window', str(window)]
  if precision == 'bfloat16':
    command.append('--autocast')

  def call():
    result = train_speed.torch_child(command, 'the PyTorch evaluate()')
    return n_tokens / result['tokens_per_sec']
  return call


def benchmark(spec, n_chunks, repeats, torch_settings, precision='float32'):
  ids = np.random.default_rng(0).integers(
      1, spec.vocab_size, n_chunks * spec.tokens_per_batch).astype(np.int32)
  batches = common.synthetic_batches(spec, 8)
  train, _, _ = trax_steps.loop_step(
      spec, functools.partial(trax_steps.lm_trax_model, precision=precision),
      batches)
  n_steps = trax_steps.DEFAULT_STEPS[spec.name]
  predictor = predictor_of(spec, precision)
  calls = [lm_trax_eval(spec, predictor, ids),
           bare_eval(spec, predictor, ids, precision),
           trax_steps.seconds_per_step(train, n_steps),
           common.matmul_peak(precision)]
  if torch_settings and spec.model in ('lstm', 'gru'):
    calls.append(torch_eval(spec, len(ids), *torch_settings, precision))
  seconds = common.interleaved_medians(calls, repeats)
  result = {
      'eval': len(ids) / seconds[0],
      'bound': len(ids) / seconds[1],
      'train': spec.tokens_per_batch / seconds[2],
      'peak_gflops': common.PEAK_FLOPS / seconds[3] / 1e9,
      'torch': len(ids) / seconds[4] if len(seconds) > 4 else None,
      'n_tokens': len(ids),
  }
  result['eval_gflops'] = result['eval'] * spec.forward_flops_per_token() / 1e9
  return result


def print_table(specs, results, repeats, torch_version, precision='float32'):
  torch_autocast = (" under torch.autocast('cpu', dtype=torch.bfloat16)"
                    if precision == 'bfloat16' else '')
  print('Exact evaluation (one stream in chunks of B*T tokens, the state '
        f'carried), matmuls in {precision} (lm_trax.precision), median of '
        f'{repeats} runs in turn after a warm-up')
  print(common.machine_line() + (f', torch {torch_version} (its own process'
                                 f'{torch_autocast})'
                                 if torch_version else ', no PyTorch column'))
  print()
  print('config   | tokens | eval tok/s | bare loop tok/s | eval time / bare '
        '| PyTorch eval tok/s | vs PyTorch | train tok/s | eval GFLOP/s | '
        '% of peak')
  print('---------|--------|------------|-----------------|-----------------'
        '-|--------------------|------------|-------------|--------------|'
        '----------')
  for spec, r in zip(specs, results):
    torch_tps, vs_torch = common.torch_columns(r['eval'], r['torch'], 18)
    print(f'{spec.name:8} | {r["n_tokens"]:6d} | {r["eval"]:10,.0f} | '
          f'{r["bound"]:15,.0f} | {r["bound"] / r["eval"]:15.2f}x | '
          f'{torch_tps} | {vs_torch} | {r["train"]:11,.0f} | '
          f'{r["eval_gflops"]:12.1f} | '
          f'{100 * r["eval_gflops"] / r["peak_gflops"]:8.1f}%')
  print()
  for spec, r in zip(specs, results):
    print(f'{spec.describe()}; eval {spec.forward_flops_per_token() / 1e6:.2f}'
          f' MFLOP/token; {precision} matmul peak {r["peak_gflops"]:.0f} '
          'GFLOP/s')
  print(common.FLOPS_FORMULA)
  sys.stdout.flush()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='ptb_lstm',
                      choices=common.CONFIGS + ('all',))
  parser.add_argument('--chunks', type=int, default=20,
                      help='chunks of B * T tokens scored per timed run')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--torch_window', type=float, default=10.0,
                      help="seconds each PyTorch process times (default 10)")
  parser.add_argument('--precision', default='float32',
                      choices=precision_lib.PRECISIONS,
                      help="the matmuls' number format (lm_trax.precision; "
                      'PyTorch: bfloat16 autocast)')
  parser.add_argument('--no_torch', action='store_true',
                      help='leave out the PyTorch column')
  parser.add_argument('--data_dir', type=train_speed.pathlib.Path,
                      default=download.default_data_dir(),
                      help='the folder with ptb/ for the PyTorch process '
                      "(default: lm_trax's data directory, "
                      f'${download.ENV_VAR} else ~/.cache/lm_trax/data)')
  args = parser.parse_args(argv)
  names = common.CONFIGS if args.config == 'all' else (args.config,)

  torch_version, torch_settings = None, None
  if not args.no_torch:
    torch_version = train_speed.package_version('torch')
    if torch_version == 'not installed':
      print('torch is not installed: no PyTorch column (pip install '
            'torch==2.13.0)', file=sys.stderr)
    elif train_speed.missing_ptb(args.data_dir):
      parser.error(f'{train_speed.missing_ptb(args.data_dir)}; the PyTorch '
                   'process reads it (or --no_torch)')
    else:
      torch_settings = (args.data_dir.resolve(), args.torch_window)
  specs, results = [], []
  for name in names:
    spec = common.load_spec(name)
    print(f'{spec.describe()} ...', file=sys.stderr)
    specs.append(spec)
    try:
      results.append(benchmark(spec, args.chunks, args.repeats,
                               torch_settings, args.precision))
    except train_speed.BenchError as e:
      sys.exit(f'error: {e}')
  print_table(specs, results, args.repeats,
              torch_version if torch_settings else None, args.precision)


if __name__ == '__main__':
  main()
