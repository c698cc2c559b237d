"""Training tokens/s: lm_trax vs plain trax vs PyTorch, against the matmul peak.

  PYTHONPATH=. python bench/train_speed.py [--config ptb_lstm|ptb_gru|ptb_nplm|all]
                                           [--steps N] [--repeats R]
                                           [--breakdown]

For each config, the model, sizes, batch and optimizer of gin/<config>.gin
(PTB's vocabulary, V = 10,001), in one process, on the same synthetic batches
(uniform random ids: the speed does not depend on them, and no data is
needed), it times

  (a) lm_trax: the model, loss layer (lm_trax.losses.WeightedCrossEntropy)
      and optimizer that lm_trax.training.train builds, trained by trax's
      Loop, whose step is trax's Trainer: one jitted update;
  (b) plain trax: the same sizes from stock trax (trax.models.RNNLM with
      LSTMCell, trax.models.GRULM, or an NPLM of stock layers: Embedding,
      ShiftRight window, Dense, Tanh, Dense), tl.WeightedCategoryCrossEntropy,
      the same optimizer class and the same Loop;
  (c) PyTorch (bench/torch_models.py: nn.LSTM / nn.GRU / a feed-forward NPLM,
      F.cross_entropy, the same optimizer and clipping), if torch is
      installed (pip install torch==2.13.0);
  (d) the float32 matmul peak: a jitted 2048 x 2048 @ 2048 x 2048.

After a warm-up (compilation and a few steps) each runs N steps in turn, R
times; the medians are reported: tokens/s = B * T / (seconds per step), and
GFLOP/s from the model's matmul FLOPs (formula printed). It also reports the
time from nothing to lm_trax's first training step: imports, building the
Loop (model initialization) and compiling the step (on a rerun, compiled
programs come from the persistent cache, lm_trax.compilation_cache).

--breakdown instead times the parts of our LSTM / GRU step, each compiled
alone (output layer + loss, recurrent layers, forward only; the optimizer
update and Loop as the rest), with their GFLOP/s: where the time goes.
"""

import argparse
import contextlib
import io
import itertools
import sys
import time

_STARTED = time.time()
# pylint: disable=g-import-not-at-top,wrong-import-position
from lm_trax import configurables  # pylint: disable=unused-import  (trax fixes, gin names)
import jax
from trax import layers as tl
from trax import models as trax_models
from trax.supervised import training as trax_training

import common
from lm_trax import losses

_IMPORTED = time.time()

DEFAULT_STEPS = {'ptb_lstm': 10, 'ptb_gru': 10, 'ptb_nplm': 3}


# (a) and (b): a trax Loop ------------------------------------------------------

def lm_trax_model(spec):
  return spec.model_fn(vocab_size=spec.vocab_size, mode='train'), \
      losses.WeightedCrossEntropy()


def plain_trax_model(spec):
  """The same sizes from stock trax layers, and trax's stock loss."""
  v = spec.vocab_size
  if spec.model == 'lstm':
    model = trax_models.RNNLM(v, d_model=spec.d_model, n_layers=spec.n_layers,
                              rnn_cell=tl.LSTMCell,
                              rnn_cell_d_state_multiplier=2, dropout=0.0)
  elif spec.model == 'gru':
    model = trax_models.GRULM(v, d_model=spec.d_model, n_layers=spec.n_layers)
  else:
    identity = tl.Fn('Identity', lambda x: x)
    window = tl.Branch(*[tl.ShiftRight(n_positions=k, mode='train') if k
                         else identity for k in range(spec.n_context)])
    hidden = [[tl.Dense(spec.d_hidden), tl.Tanh()]
              for _ in range(spec.n_layers)]
    model = tl.Serial(
        tl.Embedding(v, spec.d_model),                   # (B, T, d)
        window,                                          # n shifted copies
        tl.Concatenate(n_items=spec.n_context, axis=-1),  # (B, T, n*d)
        hidden,
        tl.Dense(v))                                     # (B, T, V) logits
  return model, tl.WeightedCategoryCrossEntropy()


def loop_step(spec, model_and_loss, batches):
  """A timed call (run `steps` steps of trax's Loop) and the Loop's build
  and first-step (compile) seconds."""
  started = time.perf_counter()
  model, loss = model_and_loss(spec)
  task = trax_training.TrainTask(
      labeled_data=itertools.cycle(batches), loss_layer=loss,
      optimizer=spec.optimizer_cls(),
      lr_schedule=lambda step: spec.learning_rate, sample_batch=batches[0])
  with contextlib.redirect_stdout(io.StringIO()):  # "Will not write ..."
    loop = trax_training.Loop(model, [task], output_dir=None,
                              checkpoint_at=lambda step: False,
                              eval_at=lambda step: False, random_seed=0)
  trainer = loop._trainer_per_task[0]  # pylint: disable=protected-access
  built = time.perf_counter()

  def run(n_steps):
    loop.run(n_steps)
    jax.block_until_ready(trainer.accelerated_model_with_loss.weights)
  run(1)
  return run, built - started, time.perf_counter() - built


# (c) PyTorch ---------------------------------------------------------------------

def torch_step(spec, batches, torch):
  import torch_models  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_models.build(spec)
  optimizer = torch_models.optimizer(spec, model)
  data = [tuple(torch.from_numpy(x).long() for x in batch[:2])
          for batch in batches]
  counter = itertools.count()

  def run(n_steps):
    for _ in range(n_steps):
      inputs, targets = data[next(counter) % len(data)]
      loss = torch_models.train_step(model, optimizer, inputs, targets,
                                     spec.clip_grad_norm)
    loss.item()
  return run


# Where the time of our step goes (--breakdown) ----------------------------------

def breakdown(spec, repeats):
  """Times the parts of our recurrent LM's step, each compiled alone.

  Returns rows (part, ms per step, GFLOP per step). Parts: the whole Loop
  step; forward + backward of model and loss; the same without the
  recurrent layers (embedding, output layer, loss); embedding and recurrent
  layers alone (a sum-of-squares loss on their output); the forward pass.
  """
  from trax import shapes  # pylint: disable=g-import-not-at-top
  from lm_trax import layers  # pylint: disable=g-import-not-at-top
  batches = common.synthetic_batches(spec, 8)
  batch = batches[0]
  run, _, _ = loop_step(spec, lm_trax_model, batches)
  model, loss = lm_trax_model(spec)
  embedding, output = model.sublayers[0], model.sublayers[-1]
  recurrent = [l for l in model.sublayers if isinstance(l, layers.Recurrent)]
  parts = {
      'model + loss': tl.Serial(model, loss),
      'embedding + output layer + loss': tl.Serial(embedding, output, loss),
      'embedding + recurrent layers': tl.Serial(
          tl.Select([0], n_in=3), embedding, recurrent,
          tl.Fn('SumOfSquares', lambda x: (x * x).sum())),
  }
  rng = jax.random.PRNGKey(0)

  def compiled(layer, backward=True):
    layer.init(shapes.signature(batch), rng=rng)
    weights, state = layer.weights, layer.state
    fn = lambda w: layer.pure_fn(batch, w, state, rng)[0]
    fn = jax.jit(jax.value_and_grad(fn) if backward else fn)

    def call():
      started = time.perf_counter()
      for _ in range(5):
        out = fn(weights)
      jax.block_until_ready(out)
      return (time.perf_counter() - started) / 5
    return call
  calls = [seconds_per_step(run, DEFAULT_STEPS[spec.name])]
  calls += [compiled(layer) for layer in parts.values()]
  calls += [compiled(parts['model + loss'], backward=False),
            common.matmul_peak()]
  seconds = common.interleaved_medians(calls, repeats)
  tokens, d, v = spec.tokens_per_batch, spec.d_model, spec.vocab_size
  output_flops = 3 * 2 * d * v * tokens
  total_flops = 3 * spec.forward_flops_per_token() * tokens
  names = ['whole step (trax Loop: forward, backward, SGD/clipping update)',
           'forward + backward, model + loss'] + list(parts)[1:] + [
               'forward only, model + loss']
  flops = [total_flops, total_flops, output_flops, total_flops - output_flops,
           total_flops / 3]
  rows = [(name, s * 1e3, f / 1e9) for name, s, f in
          zip(names, seconds[:-1], flops)]
  return rows, common.PEAK_FLOPS / seconds[-1] / 1e9


def print_breakdown(spec, repeats):
  rows, peak = breakdown(spec, repeats)
  whole = rows[0][1]
  print(f'Where the time of a {spec.name} step goes (each part compiled '
        f'alone; median of {repeats}; matmul peak {peak:.1f} GFLOP/s):')
  print()
  print('part                                                           | '
        'ms/step | share | GFLOP | GFLOP/s | % of peak')
  print('---------------------------------------------------------------|-'
        '--------|-------|-------|---------|----------')
  for name, ms, gflop in rows:
    print(f'{name:62} | {ms:7.1f} | {100 * ms / whole:4.0f}% | {gflop:5.2f} '
          f'| {gflop / ms * 1e3:7.1f} | {100 * gflop / ms * 1e3 / peak:8.1f}%')
  print('(optimizer update + Loop: whole step - forward + backward = '
        f'{rows[0][1] - rows[1][1]:.1f} ms)')
  sys.stdout.flush()


# The benchmark --------------------------------------------------------------------

def seconds_per_step(run, n_steps):
  def call():
    started = time.perf_counter()
    run(n_steps)
    return (time.perf_counter() - started) / n_steps
  return call


def benchmark(spec, n_steps, repeats, torch):
  batches = common.synthetic_batches(spec, 8)
  ours, build_s, first_step_s = loop_step(spec, lm_trax_model, batches)
  theirs, _, _ = loop_step(spec, plain_trax_model, batches)
  calls = [seconds_per_step(ours, n_steps), seconds_per_step(theirs, n_steps),
           common.matmul_peak()]
  if torch is not None:
    calls.append(seconds_per_step(torch_step(spec, batches, torch), n_steps))
  seconds = common.interleaved_medians(calls, repeats)
  tokens = spec.tokens_per_batch
  flops = 3 * spec.forward_flops_per_token()
  result = {
      'ours': tokens / seconds[0],
      'trax': tokens / seconds[1],
      'peak_gflops': common.PEAK_FLOPS / seconds[2] / 1e9,
      'torch': tokens / seconds[3] if torch is not None else None,
      'mflop_per_token': flops / 1e6,
      'build_s': build_s,
      'first_step_s': first_step_s,
  }
  result['ours_gflops'] = result['ours'] * flops / 1e9
  return result


def print_table(specs, results, n_steps, repeats, torch):
  common.print_header(f'Training, median of {repeats} runs of N steps in '
                      'turn after a warm-up; synthetic batches', torch)
  print('config   | N  | lm_trax tok/s | plain trax tok/s | PyTorch tok/s | '
        'lm_trax GFLOP/s | matmul peak GFLOP/s | vs trax | vs PyTorch | '
        '% of peak')
  print('---------|----|---------------|------------------|---------------|-'
        '----------------|---------------------|---------|------------|'
        '----------')
  for spec, r in zip(specs, results):
    torch_tps, vs_torch = common.torch_columns(r['ours'], r['torch'], 13)
    print(f'{spec.name:8} | {n_steps[spec.name]:2d} | {r["ours"]:13,.0f} | '
          f'{r["trax"]:16,.0f} | {torch_tps} | {r["ours_gflops"]:15.1f} | '
          f'{r["peak_gflops"]:19.1f} | {r["ours"] / r["trax"]:6.2f}x | '
          f'{vs_torch} | {100 * r["ours_gflops"] / r["peak_gflops"]:8.1f}%')
  print()
  for spec, r in zip(specs, results):
    print(f'{spec.describe()}; {r["mflop_per_token"]:.2f} MFLOP/token')
  print(common.FLOPS_FORMULA)
  print()
  for spec, r in zip(specs, results):
    print(f'time to the first training step ({spec.name}): '
          f'{_IMPORTED - _STARTED + r["build_s"] + r["first_step_s"]:.1f} s '
          f'= imports {_IMPORTED - _STARTED:.1f} s + build Loop '
          f'{r["build_s"]:.1f} s + compile and run step 1 '
          f'{r["first_step_s"]:.1f} s')
  sys.stdout.flush()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='ptb_lstm',
                      choices=common.CONFIGS + ('all',))
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per timed run (default: 10, NPLM 3)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--breakdown', action='store_true',
                      help='instead, time the parts of our step (LSTM/GRU)')
  args = parser.parse_args(argv)
  names = common.CONFIGS if args.config == 'all' else (args.config,)
  if args.breakdown:
    for name in names:
      if name != 'ptb_nplm':
        print_breakdown(common.load_spec(name), args.repeats)
    return
  torch = common.import_torch()
  if torch is None:
    print('torch is not installed: no PyTorch column (pip install '
          'torch==2.13.0)', file=sys.stderr)
  specs, results, n_steps = [], [], {}
  for name in names:
    spec = common.load_spec(name)
    n_steps[name] = args.steps or DEFAULT_STEPS[name]
    print(f'{spec.describe()} ...', file=sys.stderr)
    specs.append(spec)
    results.append(benchmark(spec, n_steps[name], args.repeats, torch))
  print_table(specs, results, n_steps, args.repeats, torch)


if __name__ == '__main__':
  main()
