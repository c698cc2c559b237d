"""Exact-evaluation tokens/s: lm_trax.evaluate vs our training and PyTorch.

  PYTHONPATH=. python bench/eval_speed.py [--config ptb_lstm|ptb_gru|ptb_nplm|all]
                                          [--chunks N] [--repeats R]

For each config (the model and batch of gin/<config>.gin, PTB's vocabulary
V = 10,001), in one process, on synthetic ids (uniform random), it times

  (a) exact evaluation as `python -m lm_trax.evaluate` runs it on a
      contiguous corpus: lm_trax.inference.Predictor.stream_log_probs, every
      token scored once from everything before it, in chunks of B * T tokens
      (one row, the state carried), the model in 'eval' mode;
  (b) lm_trax training on batches of the same config (bench/trax_steps.py's
      (a): trax's Loop), for the ratio the issue asks for (>= 4x);
  (c) PyTorch (bench/torch_models.py), model.eval() under torch.no_grad(), the
      same chunks and carried state, log_softmax + gather, if installed;
  (d) the float32 matmul peak (2048 x 2048 @ 2048 x 2048, jitted).

After a warm-up each runs in turn, R times; medians. GFLOP/s counts the
forward matmuls (formula printed).
"""

import argparse
import sys
import time

# pylint: disable=g-import-not-at-top,wrong-import-position
from lm_trax import configurables  # pylint: disable=unused-import  (trax fixes, gin names)
import numpy as np

import common
import trax_steps
from lm_trax import inference
from lm_trax import vocab as vocab_lib


def lm_trax_eval(spec, ids):
  """A timed call: exact log-probabilities of `ids` -> seconds."""
  words = [f'w{i}' for i in range(spec.vocab_size - 3)]
  vocab = vocab_lib.Vocab('word', [vocab_lib.PAD, vocab_lib.UNK,
                                   vocab_lib.EOS] + words)
  predictor = inference.Predictor(spec.model_fn, vocab)

  def call():
    started = time.perf_counter()
    log_probs = predictor.stream_log_probs(ids, spec.tokens_per_batch)
    seconds = time.perf_counter() - started
    assert log_probs.shape == ids.shape and np.isfinite(log_probs).all()
    return seconds
  return call


def torch_eval(spec, ids, torch):
  """The same rule in PyTorch: chunks of one row, the state carried."""
  import torch_models  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_models.build(spec).eval()
  chunk_len = spec.tokens_per_batch
  n_chunks = -(-len(ids) // chunk_len)
  inputs = np.zeros(n_chunks * chunk_len, np.int64)
  targets = np.zeros(n_chunks * chunk_len, np.int64)
  inputs[0], inputs[1:len(ids)], targets[:len(ids)] = 1, ids[:-1], ids
  inputs = torch.from_numpy(inputs).reshape(n_chunks, 1, chunk_len)
  targets = torch.from_numpy(targets).reshape(n_chunks, 1, chunk_len)

  def call():
    model.state = model.history = None
    started = time.perf_counter()
    pieces = [torch_models.log_probs(model, x, y)
              for x, y in zip(inputs, targets)]
    log_probs = torch.cat(pieces, dim=-1)[0, :len(ids)].numpy()
    seconds = time.perf_counter() - started
    assert np.isfinite(log_probs).all()
    return seconds
  return call


def benchmark(spec, n_chunks, repeats, torch):
  ids = np.random.default_rng(0).integers(
      1, spec.vocab_size, n_chunks * spec.tokens_per_batch).astype(np.int32)
  batches = common.synthetic_batches(spec, 8)
  train, _, _ = trax_steps.loop_step(spec, trax_steps.lm_trax_model, batches)
  n_steps = trax_steps.DEFAULT_STEPS[spec.name]
  calls = [lm_trax_eval(spec, ids),
           trax_steps.seconds_per_step(train, n_steps),
           common.matmul_peak()]
  if torch is not None:
    calls.append(torch_eval(spec, ids, torch))
  seconds = common.interleaved_medians(calls, repeats)
  flops = spec.forward_flops_per_token()
  result = {
      'eval': len(ids) / seconds[0],
      'train': spec.tokens_per_batch / seconds[1],
      'peak_gflops': common.PEAK_FLOPS / seconds[2] / 1e9,
      'torch': len(ids) / seconds[3] if torch is not None else None,
      'n_tokens': len(ids),
  }
  result['eval_gflops'] = result['eval'] * flops / 1e9
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='ptb_lstm',
                      choices=common.CONFIGS + ('all',))
  parser.add_argument('--chunks', type=int, default=20,
                      help='chunks of B * T tokens scored per timed run')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  names = common.CONFIGS if args.config == 'all' else (args.config,)
  torch = common.import_torch()
  if torch is None:
    print('torch is not installed: no PyTorch column (pip install '
          'torch==2.13.0)', file=sys.stderr)
  specs, results = [], []
  for name in names:
    spec = common.load_spec(name)
    print(f'{spec.describe()} ...', file=sys.stderr)
    specs.append(spec)
    results.append(benchmark(spec, args.chunks, args.repeats, torch))

  common.print_header(
      f'Exact evaluation (chunks of B*T tokens, one row, state carried), '
      f'median of {args.repeats} runs in turn after a warm-up; synthetic ids',
      torch)
  print('config   | tokens | eval tok/s | train tok/s | eval / train | '
        'PyTorch eval tok/s | vs PyTorch | eval GFLOP/s | peak GFLOP/s | '
        '% of peak')
  print('---------|--------|------------|-------------|--------------|-'
        '-------------------|------------|--------------|--------------|'
        '----------')
  for spec, r in zip(specs, results):
    torch_tps, vs_torch = common.torch_columns(r['eval'], r['torch'], 18)
    print(f'{spec.name:8} | {r["n_tokens"]:6d} | {r["eval"]:10,.0f} | '
          f'{r["train"]:11,.0f} | {r["eval"] / r["train"]:11.2f}x | '
          f'{torch_tps} | {vs_torch} | {r["eval_gflops"]:12.1f} | '
          f'{r["peak_gflops"]:12.1f} | '
          f'{100 * r["eval_gflops"] / r["peak_gflops"]:8.1f}%')
  print()
  for spec in specs:
    print(f'{spec.describe()}; eval {spec.forward_flops_per_token() / 1e6:.2f}'
          ' MFLOP/token')
  print(common.FLOPS_FORMULA)
  sys.stdout.flush()


if __name__ == '__main__':
  main()
