"""Training steps of lm_trax's model and of plain trax, timed in this process
(JAX only), on synthetic batches: a worker of bench/train_speed.py.

  PYTHONPATH=. python bench/trax_steps.py --config ptb_lstm|ptb_gru|ptb_nplm
      [--warmup S] [--window S] [--chunk STEPS]
      [--precision float32|bfloat16|float32,bfloat16]
  PYTHONPATH=. python bench/trax_steps.py --breakdown --config ptb_lstm
      [--repeats R] [--precision ...]

For one config, the model, sizes, batch and optimizer of gin/<config>.gin
(PTB's vocabulary, V = 10,001), on the same synthetic batches (uniform random
ids: the speed does not depend on them, and no data is needed), it times

  (a) lm_trax: the model, loss layer (lm_trax.losses.WeightedCrossEntropy)
      and optimizer that lm_trax.training.train builds, trained by trax's
      Loop, whose step is trax's Trainer: one jitted update; once for each
      --precision (lm_trax.precision: the model's matmuls in float32 or
      bfloat16, as train.precision sets them);
  (b) plain trax: the same sizes from stock trax (trax.models.RNNLM with
      LSTMCell, trax.models.GRULM, or an NPLM of stock layers: Embedding,
      ShiftRight window, Dense, Tanh, Dense), tl.WeightedCategoryCrossEntropy,
      the same optimizer class and the same Loop; float32 (stock trax
      has no precision option).

Each is compiled and warmed up (at least `--warmup` seconds), then trains
whole steps for at least `--window` seconds; it prints one JSON line with
tokens/s = B * T * steps / seconds of each ('lm_trax' in float32,
'lm_trax_bfloat16', 'plain_trax'), and which of torch, jax and tensorflow
are in sys.modules. Unlike `python train.py`, this step has no data
pipeline, logging or evaluation: it is the step alone.

--breakdown instead first times this CPU's matmuls at the model's shapes
(the output layer's logits, its input gradient, one recurrent step, and a
large square one) in float32 and in bfloat16 (bfloat16 operands, float32
sums), beside the CPU's bfloat16 units. Then, in each --precision, it times
the parts of our LSTM / GRU step, each compiled alone (output layer + loss,
recurrent layers, forward only; the optimizer update and Loop as the rest),
with their GFLOP/s: where the time goes. Then it traces the real step (the
Loop's jitted update, jax.profiler) and lists the XLA operations that take
its time, each with its shape and the JAX operation it came from. XLA:CPU
runs some matmuls asynchronously: their time can show up in the operation
that waits for them (e.g. the gradient norm's reduction after the output
layer's weight gradient).
"""

import argparse
import collections
import contextlib
import functools
import io
import itertools
import json
import pathlib
import re
import sys
import tempfile
import time

# pylint: disable=g-import-not-at-top,wrong-import-position
from lm_trax import process
process.set_up()  # As the commands do: before TensorFlow and XLA start.
from lm_trax import configurables  # pylint: disable=unused-import  (trax fixes, gin names)
import jax
from trax import layers as tl
from trax import models as trax_models
from trax.supervised import training as trax_training

import common
import machine
import train_speed
from lm_trax import cells
from lm_trax import losses
from lm_trax import precision as precision_lib

DEFAULT_STEPS = {'ptb_lstm': 10, 'ptb_gru': 10, 'ptb_nplm': 3}


# (a) and (b): a trax Loop ------------------------------------------------------

def lm_trax_model(spec, precision='float32'):
  """The model (its matmuls in precision, as train.precision builds it) and
  loss layer that lm_trax.training.train trains."""
  model_fn = precision_lib.bind(spec.model_fn, precision)
  return (model_fn(vocab_size=spec.vocab_size, mode='train'),
          losses.WeightedCrossEntropy())


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
  run.trainer = trainer  # For op_profile: the program the Loop runs.
  run(1)
  return run, built - started, time.perf_counter() - built


# Where the time of our step goes (--breakdown) ----------------------------------

def breakdown(spec, repeats, precision='float32'):
  """Times the parts of our recurrent LM's step in precision, each compiled
  alone.

  Returns rows (part, ms per step, GFLOP per step) and the matmul peak in
  precision (GFLOP/s). Parts: the whole Loop step; forward + backward of
  model and loss; the same without the recurrent layers (embedding, output
  layer, loss); embedding and recurrent layers alone (a sum-of-squares loss
  on their output); the forward pass.
  """
  from trax import shapes  # pylint: disable=g-import-not-at-top
  from lm_trax import layers  # pylint: disable=g-import-not-at-top
  batches = common.synthetic_batches(spec, 8)
  batch = batches[0]
  model_and_loss = functools.partial(lm_trax_model, precision=precision)
  run, _, _ = loop_step(spec, model_and_loss, batches)
  model, loss = model_and_loss(spec)
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
            common.matmul_peak(precision)]
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


def matmul_shapes(spec):
  """{what: (m, k, n)}: the matmuls of the config's step that take its time,
  and a large square one."""
  tokens, d, v = spec.tokens_per_batch, spec.d_model, spec.vocab_size
  shapes_ = {'output layer: logits': (tokens, d, v),
             "output layer: its input's gradient": (tokens, v, d)}
  if spec.model != 'nplm':
    recurrent = [w.shape for w in cells.make(spec.model).weights(d, d)
                 if len(w.shape) == 2][-1]  # The recurrent matrix (d, G*d).
    shapes_['one recurrent step'] = (spec.batch_size,) + recurrent
  shapes_['large square'] = (common.PEAK_N,) * 3
  return shapes_


def matmul_throughput(shapes_, repeats):
  """{what: (float32 GFLOP/s, bfloat16 GFLOP/s)} of each (m, k, n) in
  shapes_ (common.matmul_call), medians of repeats taking turns."""
  precisions = ('float32', 'bfloat16')
  calls = [common.matmul_call(m, k, n, precision)
           for m, k, n in shapes_.values() for precision in precisions]
  seconds = common.interleaved_medians(calls, repeats)
  per_shape = len(precisions)
  return {what: tuple(2 * m * k * n / seconds[per_shape * i + j] / 1e9
                      for j in range(per_shape))
          for i, (what, (m, k, n)) in enumerate(shapes_.items())}


def print_matmul_throughput(spec, repeats):
  units = machine.bf16_units()
  shapes_ = matmul_shapes(spec)
  gflops = matmul_throughput(shapes_, repeats)
  print(f'Matmul throughput of this CPU ({machine.cpu_name()}; '
        f'{machine.bf16_text(units)}) at the {spec.name} step\'s shapes: a '
        'jitted jnp.dot in float32, and with bfloat16 operands and '
        f'preferred_element_type=float32; median of {repeats}:')
  if not units:
    print('no bfloat16 units on this CPU: XLA:CPU emulates bfloat16 '
          'matmuls, so they are expected to be slower than float32 here')
  print()
  print('matmul                              | shape (m, k) @ (k, n)         '
        '| float32 GFLOP/s | bfloat16 GFLOP/s | bfloat16 / float32')
  print('------------------------------------|-------------------------------'
        '|-----------------|------------------|-------------------')
  for what, (m, k, n) in shapes_.items():
    f32, bf16 = gflops[what]
    shape = f'({m}, {k}) @ ({k}, {n})'
    print(f'{what:35} | {shape:29} | {f32:15.1f} | {bf16:16.1f} | '
          f'{bf16 / f32:17.2f}x')
  print()


def print_breakdown(spec, repeats, precision='float32'):
  rows, peak = breakdown(spec, repeats, precision)
  whole = rows[0][1]
  print(f'Where the time of a {spec.name} step in {precision} goes (each part '
        f'compiled alone; median of {repeats}; {precision} matmul peak '
        f'{peak:.1f} GFLOP/s):')
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
  print()
  print_op_profile(spec, precision=precision)
  sys.stdout.flush()


# The XLA operations of the real step (a jax.profiler trace) -----------------------

HLO_LINE = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = (\S+) ')
OP_NAME = re.compile(r'op_name="([^"]*)"')
# The trace's own bookkeeping, not operations of the program.
NOT_OPS = ('ThunkExecutor', 'SlinkyThreadPool')


def op_times(profile_data, n_steps):
  """{op name: (ms per step, calls per step)} of XLA:CPU's operations in a
  jax.profiler.ProfileData: the events of its worker threads."""
  total, calls = collections.Counter(), collections.Counter()
  for plane in profile_data.planes:
    for line in plane.lines:
      if 'XLA' not in line.name:
        continue
      for event in line.events:
        if not event.name.startswith(NOT_OPS):
          total[event.name] += event.duration_ns
          calls[event.name] += 1
  return {name: (ns / n_steps / 1e6, calls[name] / n_steps)
          for name, ns in total.items()}


def traced_op_times(call, n_steps):
  """Runs call() (n_steps steps, ending when their results are ready) under
  jax.profiler: (op_times of its trace, its wall seconds)."""
  with tempfile.TemporaryDirectory(prefix='lm_trax_trace_') as tmp:
    jax.profiler.start_trace(tmp)
    started = time.perf_counter()
    call()
    seconds = time.perf_counter() - started
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(tmp).rglob('*.xplane.pb'))
    profile = jax.profiler.ProfileData.from_file(str(trace))
  return op_times(profile, n_steps), seconds


def hlo_ops(hlo_text):
  """{instruction name: 'shape  jax op'} from compiled HLO text."""
  ops = {}
  for line in hlo_text.splitlines():
    match = HLO_LINE.match(line)
    if match:
      name, shape = match.groups()
      op_name = OP_NAME.search(line)
      ops[name] = shape + ('  ' + op_name.group(1).split('/', 1)[-1]
                           if op_name else '')
  return ops


def op_profile(spec, n_steps=20, precision='float32'):
  """(rows (op, ms per step, calls per step, what), wall ms per step) of the
  Loop's jitted update over n_steps, traced."""
  batches = common.synthetic_batches(spec, 8)
  run, _, _ = loop_step(
      spec, functools.partial(lm_trax_model, precision=precision), batches)
  run(5)
  times, seconds = traced_op_times(lambda: run(n_steps), n_steps)
  trainer = run.trainer
  model = trainer.accelerated_model_with_loss
  hlo = trainer._accelerated_update_fn.lower(  # pylint: disable=protected-access
      (model.weights, trainer._slots), 1, trainer._opt_params,  # pylint: disable=protected-access
      batches[0], model.state, jax.random.PRNGKey(0)).compile().as_text()
  ops = hlo_ops(hlo)
  rows = sorted(((name, ms, n, ops.get(name, '')) for name, (ms, n)
                 in times.items()), key=lambda row: -row[1])
  return rows, seconds / n_steps * 1e3


def print_op_profile(spec, top=15, n_steps=20, precision='float32'):
  rows, wall = op_profile(spec, n_steps, precision)
  summed = sum(ms for _, ms, _, _ in rows)
  print(f'The XLA operations of the {spec.name} step in {precision} (trax '
        'Loop, traced over '
        f'{n_steps} steps: {wall:.1f} ms a step, its operations '
        f'{summed:.1f} ms):')
  print()
  print(' ms/step | share | calls/step | operation: shape, from')
  print('---------|-------|------------|----------------------')
  for name, ms, calls, what in rows[:top]:
    print(f'{ms:8.2f} | {100 * ms / summed:4.0f}% | {calls:10.0f} | '
          f'{name}: {what}')
  rest = rows[top:]
  print(f'{sum(ms for _, ms, _, _ in rest):8.2f} | '
        f'{100 * sum(ms for _, ms, _, _ in rest) / summed:4.0f}% | '
        f'{sum(n for _, _, n, _ in rest):10.0f} | the other {len(rest)} '
        'operations')


# The benchmark --------------------------------------------------------------------

def seconds_per_step(run, n_steps):
  def call():
    started = time.perf_counter()
    run(n_steps)
    return (time.perf_counter() - started) / n_steps
  return call


def run_for(run, seconds, chunk):
  """Trains steps of `run` until `seconds` have passed: (steps, seconds
  taken). Steps go in calls of `chunk` (JAX dispatches them ahead), each
  call ending when its weights are ready."""
  n_steps, started = 0, time.perf_counter()
  while not n_steps or time.perf_counter() - started < seconds:
    run(chunk)
    n_steps += chunk
  return n_steps, time.perf_counter() - started


def window(spec, warmup, seconds, chunk=10, precisions=('float32',)):
  """{'lm_trax': tok/s, 'plain_trax': tok/s, ...} of the config's step:
  lm_trax's in each precision (train_speed.key: 'lm_trax' float32,
  'lm_trax_bfloat16'), plain trax's in float32."""
  batches = common.synthetic_batches(spec, 8)
  result = {}
  steps = [(train_speed.key('lm_trax', p),
            functools.partial(lm_trax_model, precision=p)) for p in precisions]
  for name, model_and_loss in steps + [('plain_trax', plain_trax_model)]:
    run, _, _ = loop_step(spec, model_and_loss, batches)
    run_for(run, warmup, chunk)
    n_steps, taken = run_for(run, seconds, chunk)
    result[name] = spec.tokens_per_batch * n_steps / taken
    result[name + '_steps'] = n_steps
    result[name + '_seconds'] = taken
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='ptb_lstm', choices=common.CONFIGS)
  parser.add_argument('--warmup', type=float, default=2.0)
  parser.add_argument('--window', type=float, default=5.0)
  parser.add_argument('--chunk', type=int, default=10,
                      help='steps per timed call (default 10)')
  parser.add_argument('--breakdown', action='store_true',
                      help='instead, time the parts of our step (LSTM/GRU)')
  parser.add_argument('--repeats', type=int, default=5,
                      help='--breakdown: median of this many runs')
  parser.add_argument('--precision', type=train_speed.precision_list,
                      default=('float32',),
                      help="lm_trax's step in float32 (default), bfloat16 or "
                      'float32,bfloat16 (lm_trax.precision)')
  args = parser.parse_args(argv)
  spec = common.load_spec(args.config)
  if args.breakdown:
    print_matmul_throughput(spec, args.repeats)
    for precision in args.precision:
      print_breakdown(spec, args.repeats, precision)
    return
  result = window(spec, args.warmup, args.window, args.chunk, args.precision)
  result.update(framework='jax', config=args.config, modules={
      m: m in sys.modules for m in ('torch', 'jax', 'tensorflow')})
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
