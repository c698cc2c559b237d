"""What bench/trax_steps.py and bench/eval_speed.py share: the benchmarked
configs (read from gin/*.gin), their FLOP counts, synthetic batches, timed
matmuls in float32 and bfloat16 (lm_trax.precision), PyTorch set-up and
interleaved timing."""

import dataclasses
import logging
import os
import pathlib
import statistics
import time

import gin
import jax
from jax import numpy as jnp
import numpy as np

from lm_trax import cells
from lm_trax import config
from lm_trax import precision as precision_lib

import machine

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'
CONFIGS = ('ptb_lstm', 'ptb_gru', 'ptb_nplm')
PTB_VOCAB_SIZE = 10001  # Mikolov's 10k words + the padding id 0.
PEAK_N = 2048  # The peak is an (N, N) @ (N, N) matmul.
# A timed matmul call does at least this many FLOPs (small matmuls are
# repeated within it), so that it times the matmul, not the dispatch.
MIN_FLOPS_PER_CALL = 1e9

FLOPS_FORMULA = """\
FLOPs per token, counted from the matmuls (2 per multiply-add; element-wise
ops, embedding lookups and the optimizer not counted); training (forward +
backward) = 3x forward, evaluation = 1x forward:
  recurrent: forward = 2 * (n_layers * (the cell's w_x and recurrent
              matrices, e.g. G * (d*d + d*d)) + d*V), G = 4 / 3 LSTM / GRU
              gates
  NPLM:       forward = 2 * (n_context*d_model*d_hidden
                             + (n_layers-1)*d_hidden^2 + d_hidden*V)"""


@dataclasses.dataclass
class Spec:
  """One benchmarked config: gin/<name>.gin, vocabulary V = PTB's."""
  name: str
  model: str  # A cell's name ('lstm', 'gru', ...) or 'nplm'.
  model_fn: object  # The gin-configured lm_trax model function.
  hparams: dict  # Its gin bindings (d_model, n_layers, ...).
  batch_size: int
  seq_len: int
  optimizer_cls: object  # The gin-configured trax optimizer class.
  optimizer: str  # 'sgd' | 'adam'
  learning_rate: float
  clip_grad_norm: float = None
  vocab_size: int = PTB_VOCAB_SIZE

  def __getattr__(self, name):  # d_model, n_layers, d_hidden, n_context.
    hparams = self.__dict__.get('hparams', {})
    if name in hparams:
      return hparams[name]
    raise AttributeError(name)

  @property
  def tokens_per_batch(self):
    return self.batch_size * self.seq_len

  def describe(self):
    sizes = ', '.join(f'{k}={v}' for k, v in self.hparams.items()
                      if k in ('d_model', 'd_hidden', 'n_context', 'n_layers'))
    clip = f', clip {self.clip_grad_norm}' if self.clip_grad_norm else ''
    return (f'{self.name}: {self.model.upper()} ({sizes}, V={self.vocab_size})'
            f', batch {self.batch_size} x {self.seq_len}, '
            f'{self.optimizer.upper()} lr {self.learning_rate:g}{clip}')

  def forward_flops_per_token(self):
    v = self.vocab_size
    if self.model == 'nplm':
      return 2 * (self.n_context * self.d_model * self.d_hidden +
                  (self.n_layers - 1) * self.d_hidden ** 2 + self.d_hidden * v)
    d = self.d_model
    matrices = [w.shape for w in cells.make(self.model).weights(d, d)
                if len(w.shape) == 2]  # w_x and the recurrent matrices.
    return 2 * (self.n_layers * sum(a * b for a, b in matrices) + d * v)


# The model functions that fix their cell (lm_trax.models), and the NPLM.
_LEGACY_CELLS = {'LSTMLM': 'lstm', 'GRULM': 'gru', 'RNNLM': 'rnn',
                 'NPLM': 'nplm'}


def load_spec(name):
  """The model, sizes, batch and optimizer that gin/<name>.gin trains."""
  logging.disable(logging.ERROR)  # gin logs each include path it tries.
  try:
    config.parse([str(GIN_DIR / f'{name}.gin')])
  finally:
    logging.disable(logging.NOTSET)
  model_ref = gin.query_parameter('lm_trax.train.model')
  model_name = model_ref.configurable.name
  hparams = dict(_defaults(model_ref.scoped_configurable_fn))
  hparams.update(gin.get_bindings(model_ref.configurable.selector,
                                  resolve_references=True))
  optimizer_ref = gin.query_parameter('lm_trax.train.optimizer')
  optimizer_name = optimizer_ref.configurable.name
  # The full selector: 'SGD' alone matches lm_trax.SGD and trax's.
  optimizer_bindings = gin.get_bindings(optimizer_ref.configurable.selector)
  schedule = gin.query_parameter('lm_trax.train.lr_schedule')
  learning_rate = float(schedule.scoped_configurable_fn(steps_per_epoch=1)(1))
  batching = gin.get_bindings('Batching')
  return Spec(
      name=name,
      model=hparams.pop('cell', None) or _LEGACY_CELLS[model_name],
      model_fn=model_ref.scoped_configurable_fn,
      hparams=hparams,
      batch_size=batching.get('batch_size', 20),
      seq_len=batching.get('seq_len', 20),
      optimizer_cls=optimizer_ref.scoped_configurable_fn,
      optimizer=optimizer_name.lower(),
      learning_rate=learning_rate,
      clip_grad_norm=optimizer_bindings.get('clip_grad_norm'))


def _defaults(fn):
  import inspect  # pylint: disable=g-import-not-at-top
  fn = getattr(fn, '__wrapped__', fn)
  # mode and precision are how the model runs, not its hyperparameters.
  return {k: p.default for k, p in inspect.signature(fn).parameters.items()
          if p.default is not inspect.Parameter.empty and
          k not in ('mode', 'precision')}


def synthetic_batches(spec, n, seed=0):
  """n (inputs, targets, weights) batches of uniform random ids in [1, V)."""
  rng = np.random.default_rng(seed)
  shape = (spec.batch_size, spec.seq_len)
  return [(rng.integers(1, spec.vocab_size, shape).astype(np.int32),
           rng.integers(1, spec.vocab_size, shape).astype(np.int32),
           np.ones(shape, np.float32)) for _ in range(n)]


def summed_products(precision):
  """A jitted fn(a (c, m, k), b (k, n)) -> (m, n) float32, the sum over i of
  a[i] @ b: c matmuls of different left operands by one right operand, one
  after the other in a loop (none hoisted or batched), each by
  lm_trax.precision.matmul in `precision` (for 'bfloat16', operands given
  already rounded, so that only the matmuls are timed)."""
  @jax.jit
  def fn(a, b):
    total = jnp.zeros((a.shape[1], b.shape[1]), jnp.float32)
    return jax.lax.scan(
        lambda t, a_i: (t + precision_lib.matmul(a_i, b, precision), None),
        total, a)[0]
  return fn


def matmul_operands(count, m, k, n, precision='float32'):
  """Random operands for summed_products: a (count, m, k) and b (k, n),
  float32, or rounded to bfloat16 for 'bfloat16' (before the timed call,
  so that it times the matmuls alone)."""
  dtype = jnp.float32 if precision == 'float32' else jnp.bfloat16
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  return (jax.random.normal(key_a, (count, m, k), jnp.float32).astype(dtype),
          jax.random.normal(key_b, (k, n), jnp.float32).astype(dtype))


def matmul_call(m, k, n, precision='float32'):
  """A timed call of (m, k) @ (k, n) matmuls in precision ('float32' or
  'bfloat16': bfloat16 operands, float32 sums), enough of them to do
  MIN_FLOPS_PER_CALL in one jitted call (summed_products) -> seconds per
  matmul. FLOPs per matmul: 2 * m * k * n."""
  count = max(1, int(MIN_FLOPS_PER_CALL // (2 * m * k * n)))
  a, b = matmul_operands(count, m, k, n, precision)
  fn = summed_products(precision)

  def call():
    started = time.perf_counter()
    fn(a, b).block_until_ready()
    return (time.perf_counter() - started) / count
  return call


def matmul_peak(precision='float32'):
  """A timed call of the (N, N) @ (N, N) matmul in precision -> seconds.
  FLOPs: PEAK_FLOPS."""
  return matmul_call(PEAK_N, PEAK_N, PEAK_N, precision)


PEAK_FLOPS = 2 * PEAK_N ** 3


def import_torch():
  """torch as its users get it (default threads: one per core, OpenMP's
  default wait policy), or None if it is not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def interleaved_medians(calls, repeats):
  """Warms each call up, then runs them in turn `repeats` times (so a
  change in machine load hits all alike); the median seconds of each."""
  for call in calls:
    call()
  times = [[] for _ in calls]
  for _ in range(repeats):
    for call, seconds in zip(calls, times):
      seconds.append(call())
  return [statistics.median(seconds) for seconds in times]


def machine_line():
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return (f'jax {jax.__version__}, trax {metadata.version("trax")}, '
          f'{os.cpu_count()} CPU core(s) ({machine.cpu_name()}; '
          f'{machine.bf16_text()}), load average '
          f'{os.getloadavg()[0]:.1f} at the end, '
          f'{time.strftime("%Y-%m-%d")}')


def print_header(title, torch):
  """The table's title, the machine and the library versions."""
  print(title)
  print(machine_line() + (f', torch {torch.__version__} '
                          f'({torch.get_num_threads()} threads)'
                          if torch else ', torch not installed'))
  print()


def torch_columns(ours, torch_tokens_per_sec, width):
  """(PyTorch tok/s, ours / PyTorch) cells, '-' without torch."""
  if not torch_tokens_per_sec:
    return f'{"-":>{width}}', f'{"-":>10}'
  return (f'{torch_tokens_per_sec:{width},.0f}',
          f'{ours / torch_tokens_per_sec:9.2f}x')
