"""Recurrent cells: what an LSTM, a GRU or a new cell means, each in one file.

A cell is one record (a frozen dataclass, subclass of `Cell`):

  name         the registry key, e.g. 'lstm' (`RecurrentLM.cell = 'lstm'`).
  state_names  the carried state, e.g. ('c', 'h'): one (B, d) array each.
  n_gates      G: every input x_t (B, d_in) is projected to x_t w_x + b,
               (B, G*d), for all time steps at once, outside the time loop.
  weights(d_in, d)  the cell's weights in their stored order, as Weight
               records (name, shape, initializer). Two are required: 'w_x'
               (d_in, G*d) and 'b' (G*d,), the input projection; the others
               are the recurrent weights the step reads. Every 2-D
               recurrent weight is a hidden-to-hidden matrix, the one that
               weight dropping (DropConnect) masks.
  step(weights, carry, xp) -> (carry, h)
               one time step, pure: weights a dict of the recurrent weights,
               carry a tuple of (B, d) arrays in state_names order, xp the
               step's input projection (B, G*d); h (B, d) is the output.
               Every product with a weight is `self.matmul(x, w)`, which
               multiplies in the cell's precision (lm_trax.precision: float32,
               or bfloat16 operands with float32 sums); the rest of the step
               is float32.

That is all a cell needs: layers.Recurrent scans `step` over time and JAX
differentiates it. A cell may add a hand-written backward pass for speed
(`FastBackward`, as LSTM and GRU do); tests/test_cells.py checks, for every
registered cell, that it equals autodiff in value and gradient.

Every module in this package is imported when the package is, and its cells
register themselves (`@register`), so a new cell is one new file here
(lm_trax/cells/mgu.py is the worked example). A cell outside the package
registers the same way once its module is imported (a gin file can do that:
`import my_project.my_cell`).
"""

import dataclasses
import importlib
import pkgutil
from typing import Callable, Tuple

from jax import numpy as jnp

from lm_trax import precision as precision_lib

_REGISTRY = {}


def glorot_uniform(shape, rng):
  """Glorot (Xavier) uniform, fan-in and fan-out from the last two axes:
  trax's default kernel initializer, so the cells start as before."""
  from trax import layers as tl  # pylint: disable=g-import-not-at-top  (trax only when a model is built)
  return tl.GlorotUniformInitializer()(shape, rng)


def zeros(shape, unused_rng):
  return jnp.zeros(shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Weight:
  """One named weight of a cell: its shape and its initializer
  (shape, rng) -> array. `init_scale` replaces every initializer with
  uniform(-init_scale, init_scale)."""
  name: str
  shape: Tuple[int, ...]
  initializer: Callable = glorot_uniform


@dataclasses.dataclass(frozen=True)
class FastBackward:
  """An optional hand-written backward pass of a cell's whole time loop.

  forward(weights, x_proj (T, B, G*d), initial) ->
      ((hs (T, B, d), final state), residuals)
  backward(weights, residuals, (d_hs (T, B, d), d_final)) ->
      (d_x_proj (T, B, G*d), d_weights (dict like weights), d_initial)

  forward must compute exactly the value of scanning the cell's step; only
  the gradient may be computed another way (lm_trax.recurrence).
  """
  forward: Callable
  backward: Callable


@dataclasses.dataclass(frozen=True)
class Cell:
  """The interface every cell implements (see the module docstring).

  Subclasses are frozen dataclasses: their fields are the cell's options
  (e.g. LSTM.forget_bias), so a cell is a hashable value that jit can treat
  as static. Every cell also has `precision` (lm_trax.precision), which the
  model sets: its steps multiply in it through `matmul`.
  """
  precision: str = dataclasses.field(default=precision_lib.DEFAULT,
                                     kw_only=True)

  name = None
  state_names = ('h',)
  n_gates = 1

  def weights(self, d_in, d):
    """The cell's Weight records in stored order (see the module docstring)."""
    raise NotImplementedError

  def step(self, weights, carry, xp):
    """One step: (carry, h (B, d)) from carry and xp (B, G*d)."""
    raise NotImplementedError

  @property
  def fast_backward(self):
    """A FastBackward, or None to differentiate the scanned step."""
    return None

  def matmul(self, x, w):
    """x (..., k) @ w (k, n) -> (..., n) float32 in the cell's precision."""
    return precision_lib.matmul(x, w, self.precision)

  def zero_state(self, batch_size, d):
    """The state before any input: a tuple of (B, d) float32 zeros."""
    return tuple(jnp.zeros((batch_size, d), jnp.float32)
                 for _ in self.state_names)

  def weight_names(self):
    return tuple(w.name for w in self.weights(1, 1))

  def named(self, weights):
    """The stored weight tuple as a dict, name -> array."""
    return dict(zip(self.weight_names(), weights))

  def recurrent(self, weights):
    """The weights the step reads: every one but w_x and b (a dict)."""
    return {name: w for name, w in self.named(weights).items()
            if name not in ('w_x', 'b')}


def register(cell_class):
  """Class decorator: makes a Cell subclass available by its name."""
  if not (isinstance(cell_class, type) and issubclass(cell_class, Cell)
          and cell_class.name):
    raise TypeError(f'{cell_class!r} is not a Cell subclass with a name')
  if _REGISTRY.get(cell_class.name, cell_class) is not cell_class:
    raise ValueError(f'a cell named {cell_class.name!r} is registered '
                     f'already ({_REGISTRY[cell_class.name].__module__})')
  _REGISTRY[cell_class.name] = cell_class
  return cell_class


def names():
  """The registered cells' names, sorted."""
  return sorted(_REGISTRY)


def option_names(name):
  """The options a registered cell takes, e.g. ('forget_bias',) for lstm."""
  return tuple(f.name for f in dataclasses.fields(_cell_class(name))
               if f.name != 'precision')


def make(name, precision=precision_lib.DEFAULT, **options):
  """The registered cell `name` with `options` (its dataclass fields),
  multiplying in `precision`.

  Raises:
    ValueError: naming the registered cells, or the cell's options.
  """
  cell_class = _cell_class(name)
  unknown = sorted(set(options) - set(option_names(name)))
  if unknown:
    takes = ', '.join(option_names(name)) or 'no options'
    raise ValueError(f'the {name} cell has no {", ".join(unknown)} (it takes '
                     f'{takes})')
  return cell_class(precision=precision_lib.check(precision), **options)


def _cell_class(name):
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(f'cell must be one of {", ".join(names())}, got '
                     f'{name!r} (a new cell registers with '
                     f'@lm_trax.cells.register)')
  return _REGISTRY[name]


def _import_package_modules():
  for module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{module.name}')


_import_package_modules()
