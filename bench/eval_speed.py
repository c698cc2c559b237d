"""Exact-evaluation tokens/s: lm_trax.evaluate vs a bare loop and PyTorch.

  python bench/eval_speed.py [--config ptb_lstm|ptb_gru|ptb_nplm|all]
                             [--chunks N] [--repeats R] [--torch_window S]
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
  (d) the float32 matmul peak (2048 x 2048 @ 2048 x 2048, jitted);
  (e) PyTorch (LSTM and GRU; torch installed, no --no_torch), in a process
      of its own: bench/word_language_model.py --evaluate, pytorch/examples'
      evaluate() at batch 1 and bptt B * T (the same rule: one stream, the
      state carried) over PTB's train split, timed over --torch_window
      seconds after 2 s of warm-up.

After a warm-up each runs in turn, R times (the PyTorch process included);
medians. GFLOP/s counts the forward matmuls (formula printed).
"""

import argparse
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
from lm_trax import inference
from lm_trax import vocab as vocab_lib


def predictor_of(spec):
  """The config's model in an lm_trax Predictor (random weights) over a
  vocabulary of spec.vocab_size made-up words."""
  words = [f'w{i}' for i in range(spec.vocab_size - 3)]
  vocab = vocab_lib.Vocab('word', [vocab_lib.PAD, vocab_lib.UNK,
                                   vocab_lib.EOS] + words)
  return inference.Predictor(spec.model_fn, vocab)


def lm_trax_eval(spec, predictor, ids):
  """A timed call: exact log-probabilities of `ids` -> seconds."""
  def call():
    started = time.perf_counter()
    log_probs = predictor.stream_log_probs(ids, spec.tokens_per_batch)
    seconds = time.perf_counter() - started
    assert log_probs.shape == ids.shape and np.isfinite(log_probs).all()
    return seconds
  return call


def bare_eval(spec, predictor, ids):
  """A timed call of the bound (bench/bare.py) on the same stream, with the
  predictor's weights (the NPLM's: random ones of the same shapes) ->
  seconds."""
  chunk_len = spec.tokens_per_batch
  inputs = inference.primed(predictor.vocab.eos_id, ids)[:-1]
  n_chunks = len(ids) // chunk_len
  targets = ids.reshape(n_chunks, chunk_len)
  if spec.model == 'nplm':
    params = bare.nplm_params(spec.vocab_size, spec.d_model, spec.d_hidden,
                              spec.n_context, spec.n_layers)
    windows = bare.nplm_windows(inputs, spec.n_context).reshape(
        n_chunks, chunk_len, spec.n_context)
    score = lambda: bare.score_nplm(params, windows, targets)
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


def torch_eval(spec, n_tokens, data_dir, window):
  """A timed PyTorch process (bench/word_language_model.py --evaluate):
  a call -> the seconds it takes for n_tokens at the process's tokens/s."""
  command = [sys.executable, str(train_speed.BENCH / 'word_language_model.py'),
             '--data', str(data_dir / 'ptb'), '--evaluate',
             '--model', spec.model.upper(), '--emsize', str(spec.d_model),
             '--nhid', str(spec.d_model), '--nlayers', str(spec.n_layers),
             '--batch_size', '1', '--bptt', str(spec.tokens_per_batch),
             '--warmup', '2', '--window', str(window)]

  def call():
    result = train_speed.torch_child(command, 'the PyTorch evaluate()')
    return n_tokens / result['tokens_per_sec']
  return call


def benchmark(spec, n_chunks, repeats, torch_settings):
  ids = np.random.default_rng(0).integers(
      1, spec.vocab_size, n_chunks * spec.tokens_per_batch).astype(np.int32)
  batches = common.synthetic_batches(spec, 8)
  train, _, _ = trax_steps.loop_step(spec, trax_steps.lm_trax_model, batches)
  n_steps = trax_steps.DEFAULT_STEPS[spec.name]
  predictor = predictor_of(spec)
  calls = [lm_trax_eval(spec, predictor, ids), bare_eval(spec, predictor, ids),
           trax_steps.seconds_per_step(train, n_steps), common.matmul_peak()]
  if torch_settings and spec.model in ('lstm', 'gru'):
    calls.append(torch_eval(spec, len(ids), *torch_settings))
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


def print_table(specs, results, repeats, torch_version):
  print('Exact evaluation (one stream in chunks of B*T tokens, the state '
        f'carried), median of {repeats} runs in turn after a warm-up')
  print(common.machine_line() + (f', torch {torch_version} (its own process)'
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
          f' MFLOP/token; matmul peak {r["peak_gflops"]:.0f} GFLOP/s')
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
  parser.add_argument('--no_torch', action='store_true',
                      help='leave out the PyTorch column')
  parser.add_argument('--data_dir', type=train_speed.pathlib.Path,
                      default=train_speed.default_data_dir(),
                      help='the folder with ptb/ for the PyTorch process '
                      '(default: $LM_TRAX_DATA_DIR or ../shared/data)')
  args = parser.parse_args(argv)
  names = common.CONFIGS if args.config == 'all' else (args.config,)

  torch_version, torch_settings = None, None
  if not args.no_torch:
    torch_version = train_speed.package_version('torch')
    if torch_version == 'not installed':
      print('torch is not installed: no PyTorch column (pip install '
            'torch==2.13.0)', file=sys.stderr)
    elif not (args.data_dir / 'ptb' / 'ptb.train.txt').is_file():
      parser.error(f'no PTB in {args.data_dir}/ptb for the PyTorch process '
                   '(--data_dir, or --no_torch)')
    else:
      torch_settings = (args.data_dir.resolve(), args.torch_window)
  specs, results = [], []
  for name in names:
    spec = common.load_spec(name)
    print(f'{spec.describe()} ...', file=sys.stderr)
    specs.append(spec)
    try:
      results.append(benchmark(spec, args.chunks, args.repeats,
                               torch_settings))
    except train_speed.BenchError as e:
      sys.exit(f'error: {e}')
  print_table(specs, results, args.repeats,
              torch_version if torch_settings else None)


if __name__ == '__main__':
  main()
