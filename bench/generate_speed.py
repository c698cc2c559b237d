"""Characters per second: lm_trax.generate vs a bare loop and trax's sampler.

  python bench/generate_speed.py [--output_dir RUN] [--length N] [--repeats R]
                                 [--batch_sizes 1 8]
                                 [--precision float32|bfloat16]

On one 2-layer GRU-512 character model (GRULM(vocab_size=66, d_model=512,
n_layers=2), random init, or the model of --output_dir), in one process, it
times

  (a) lm_trax.generate.make_sampler, as `python -m lm_trax.generate` samples:
      priming and all N steps in one compiled call (lax.scan);
  (b) the bound: bench/bare.py's sample_recurrent, the same cell arithmetic
      and a Gumbel-max draw written in bare JAX, all N steps in one compiled
      call, with (a)'s weights;
  (c) trax.supervised.decoding.autoregressive_sample(model, batch_size=B,
      temperature=1.0, max_length=N, eos_id=-1): one jitted model call per
      token (through tl.Accelerate) and sampling on the host (same weights
      as (a)),

at batch 1 and 8: a warm-up call each, then R calls taking turns, the median.
It prints a table of chars/s (B * N / seconds per call), lm_trax's time over
the bound's and its speed over trax's, and the time to the first character
of (a) from nothing: build (or load) the model, compile, draw the first
sample (the first character arrives with the whole sample: the loop is one
call).

--precision is the number format of the model's matmuls (lm_trax.precision),
as `python -m lm_trax.generate --precision` takes it (default: the run's
own; float32 for the random model); (a), (b) and (c) all run in it, the bare
loop's cell and output layer multiplying as the model's do.
"""

import argparse
import statistics
import sys
import time

_STARTED = time.time()
# pylint: disable=g-import-not-at-top,wrong-import-position
from lm_trax import process
process.set_up()  # As the commands do: before TensorFlow and XLA start.
from lm_trax import configurables  # pylint: disable=unused-import  (trax fixes, gin names)
import jax
import numpy as np
from trax.supervised import decoding

from lm_trax import generate
from lm_trax import inference
from lm_trax import layers
from lm_trax import models
from lm_trax import precision as precision_lib

import bare
import common

_IMPORTED = time.time()

VOCAB_SIZE, D_MODEL, N_LAYERS = 66, 512, 2
START_ID = 1  # Any id primes the random model; a run uses its eos ('\n').


class Models:
  """The benchmarked model, one instance per batch size, all sharing weights,
  its matmuls in `precision` (lm_trax.precision)."""

  def __init__(self, output_dir=None, precision=None):
    """precision: 'float32', 'bfloat16', or None: the run's own (float32 for
    the random model)."""
    self._run = None
    self._weights = None
    self.start_id = START_ID
    self.precision = precision or 'float32'
    if output_dir:
      from lm_trax import trained
      from lm_trax.errors import UserError
      try:
        self._run = trained.Run(output_dir, precision=precision)
      except UserError as e:
        raise SystemExit(f'error: {e}') from None
      self.start_id = self._run.vocab.eos_id
      self.precision = self._run.precision

  def describe(self):
    if self._run:
      return f'the model of {self._run.output_dir}, in {self.precision}'
    return (f'GRULM(vocab_size={VOCAB_SIZE}, d_model={D_MODEL}, '
            f'n_layers={N_LAYERS}, precision={self.precision!r}), random '
            'init')

  def model(self, batch_size):
    """A 'predict'-mode model for (batch_size, 1) ids with a zero state."""
    if self._run:
      return self._run.model(mode='predict', batch_size=batch_size, seq_len=1)
    model = models.GRULM(vocab_size=VOCAB_SIZE, d_model=D_MODEL,
                         n_layers=N_LAYERS, mode='predict',
                         precision=self.precision)
    model.init(layers.signature(batch_size, 1), rng=jax.random.PRNGKey(0))
    if self._weights is None:
      self._weights = model.weights
    model.weights = self._weights
    return model


def bound(model, batch_size, length, start_id):
  """A timed call of the bare loop (bench/bare.py) with the model's weights
  and precision (its cell's): fn(seed) -> seconds."""
  try:
    cell, params = bare.recurrent_params_of(model)
  except ValueError as e:
    raise SystemExit(f'error: the bare loop: {e}') from None
  d_model = params['layers'][0]['w_h'].shape[0]
  state = bare.zero_state(cell, len(params['layers']), batch_size, d_model)
  start_ids = np.full((batch_size,), start_id, np.int32)

  def call(seed):
    started = time.perf_counter()
    ids = bare.sample_recurrent(cell, params, state, start_ids, length,
                                jax.random.PRNGKey(seed))
    ids.block_until_ready()
    return time.perf_counter() - started
  return call


def ours(model, batch_size, length, start_id):
  """A timed call of our compiled sampler: fn(seed) -> seconds."""
  sampler = generate.make_sampler(inference.pure_forward(model), length)
  prompt = np.full((batch_size, 1), start_id, np.int32)
  zeros = layers.zero_state_tree(model.state)

  def call(seed):
    started = time.perf_counter()
    ids = sampler(model.weights, zeros, prompt, jax.random.PRNGKey(seed))
    ids.block_until_ready()
    return time.perf_counter() - started
  return call


def theirs(model, batch_size, length, start_id):
  """A timed call of trax's autoregressive_sample: fn(seed) -> seconds."""
  zeros = layers.zero_state_tree(model.state)

  def call(seed):
    np.random.seed(seed)  # logsoftmax_sample draws from numpy's global RNG.
    model.state = zeros
    started = time.perf_counter()
    ids = decoding.autoregressive_sample(
        model, batch_size=batch_size, temperature=1.0, start_id=start_id,
        eos_id=-1, max_length=length)
    seconds = time.perf_counter() - started
    assert ids.shape == (batch_size, length), ids.shape
    return seconds
  return call


def time_to_first_character(factory, length):
  """(build s, compile + first sample s) of our sampler at batch 1."""
  started = time.perf_counter()
  model = factory.model(1)
  built = time.perf_counter()
  sampler = generate.make_sampler(inference.pure_forward(model), length)
  ids = sampler(model.weights, layers.zero_state_tree(model.state),
                np.full((1, 1), factory.start_id, np.int32),
                jax.random.PRNGKey(0))
  np.asarray(ids)  # On the host: the text could be printed now.
  return built - started, time.perf_counter() - built


def median_seconds(calls, repeats):
  """Warms each call up, then times them taking turns; medians in order."""
  for call in calls:
    call(0)
  times = [[] for _ in calls]
  for r in range(repeats):
    for call, seconds in zip(calls, times):
      seconds.append(call(r + 1))
  return [statistics.median(seconds) for seconds in times]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output_dir', default=None,
                      help='a character-level run to load (default: a '
                      'randomly initialized GRU-512 x 2)')
  parser.add_argument('--length', type=int, default=400,
                      help='characters per sample')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--batch_sizes', type=int, nargs='+', default=[1, 8])
  parser.add_argument('--precision', default=None,
                      choices=precision_lib.PRECISIONS,
                      help="the matmuls' number format (lm_trax.precision; "
                      "default: the run's own, float32 for the random model)")
  args = parser.parse_args(argv)

  factory = Models(args.output_dir, args.precision)
  build_s, first_s = time_to_first_character(factory, args.length)

  rows = []
  for batch_size in args.batch_sizes:
    model = factory.model(batch_size)
    ours_s, bound_s, theirs_s, theirs_setup_s = median_seconds(
        [ours(model, batch_size, args.length, factory.start_id),
         bound(model, batch_size, args.length, factory.start_id),
         theirs(model, batch_size, args.length, factory.start_id),
         theirs(model, batch_size, 1, factory.start_id)],  # Per-call set-up.
        args.repeats)
    chars = batch_size * args.length
    rows.append((batch_size, chars / ours_s, chars / bound_s, chars / theirs_s,
                 theirs_setup_s, batch_size * (args.length - 1) /
                 max(theirs_s - theirs_setup_s, 1e-9)))
    print(f'batch {batch_size}: {ours_s:.3f} s, bare loop {bound_s:.3f} s, '
          f'trax {theirs_s:.3f} s per call', file=sys.stderr)

  print(f'{factory.describe()}; {args.length} characters per sample; median '
        f'of {args.repeats} calls after a warm-up; the bare loop: '
        'bench/bare.py with the same weights')
  print(common.machine_line())
  print()
  print('batch | lm_trax.generate chars/s | bare loop chars/s | '
        'lm_trax time / bare | trax autoregressive_sample chars/s | '
        'lm_trax / trax')
  print('------|--------------------------|-------------------|-'
        '--------------------|------------------------------------|'
        '---------------')
  for batch_size, ours_cps, bound_cps, theirs_cps, _, _ in rows:
    print(f'{batch_size:5d} | {ours_cps:24,.0f} | {bound_cps:17,.0f} | '
          f'{bound_cps / ours_cps:18.2f}x | {theirs_cps:34,.0f} | '
          f'{ours_cps / theirs_cps:13.1f}x')
  print()
  for batch_size, ours_cps, _, _, setup_s, per_token_cps in rows:
    print(f'batch {batch_size}: autoregressive_sample spends {setup_s:.2f} s '
          'per call before its first character (it wraps the model in a new '
          'tl.Accelerate, a new jitted function, on every call); past it, '
          f'{per_token_cps:,.0f} chars/s ({ours_cps / per_token_cps:.1f}x '
          'slower than lm_trax.generate)')
  print(f'time to first character (lm_trax.generate, batch 1): '
        f'{build_s + first_s:.1f} s = build/load model {build_s:.1f} s + '
        f'compile and first sample of {args.length} {first_s:.1f} s '
        f'(after {_IMPORTED - _STARTED:.1f} s of importing TensorFlow/trax)')
  sys.stdout.flush()


if __name__ == '__main__':
  main()
