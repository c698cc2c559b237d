"""Every registered cell (lm_trax.cells), through everything a model does.

* A cell's hand-written backward pass, where it has one, equals JAX's autodiff
  of the scanned step, in value and in every gradient.
* The worked example (MGU) computes the paper's formulas, written here again.
* Every cell trains with all the regularizers on (variational, weight and
  embedding dropout, AR/TAR, tied weights), evaluates exactly, with the cache
  and with dynamic evaluation, scores and generates, through lm_trax.load.
* gin/tiny.gin shrinks every shipped config and every cell.
* Runs saved by lm_trax 0.2.0 (tests/data/runs_0.2.0, made with that
  release's code: a tied LSTM with every regularizer, a GRU and an RNN) load,
  give the log-probabilities that release computed, and resume training.
To add a cell: nothing here changes, the registry parametrizes every test.
"""

import json
import math
import pathlib
import shutil

import gin
import jax
from jax import numpy as jnp
import numpy as np
import pytest

import lm_trax
from lm_trax import cells
from lm_trax import config
from lm_trax import configurables
from lm_trax import layers
from lm_trax import models
from lm_trax import recurrence
from lm_trax import trained
from lm_trax import training
from lm_trax.errors import UserError

from conftest import ADAM_6_STEPS, REPO

CELLS = cells.names()
FAST = [name for name in CELLS if cells.make(name).fast_backward is not None]
T, B, D = 6, 3, 8
OLD_RUNS = REPO / 'tests' / 'data' / 'runs_0.2.0'


def _close(a, b, rtol=2e-5, atol=2e-6):
  assert (jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol)


def _random_loop_inputs(cell, seed=2):
  """x_proj (T, B, G*d), the recurrent weights, a non-zero initial state."""
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 16))
  x_proj = jax.random.normal(next(keys), (T, B, cell.n_gates * D))
  weights = {w.name: 0.3 * jax.random.normal(next(keys), w.shape)
             for w in cell.weights(D, D) if w.name not in ('w_x', 'b')}
  initial = tuple(0.5 * jax.random.normal(next(keys), (B, D))
                  for _ in cell.state_names)
  return x_proj, weights, initial


def test_the_shipped_cells_are_registered():
  assert {'lstm', 'gru', 'rnn', 'mgu'} <= set(CELLS)
  assert {'lstm', 'gru', 'rnn'} <= set(FAST)  # The benchmarked fast paths.


@pytest.mark.parametrize('name', FAST)
def test_the_hand_written_backward_equals_autodiff(name):
  cell = cells.make(name, **({'forget_bias': 0.7} if 'forget_bias' in
                             cells.option_names(name) else {}))
  x_proj, weights, initial = _random_loop_inputs(cell)
  probe = jax.random.normal(jax.random.PRNGKey(9), (T, B, D))

  def loss(loop):
    def f(x_proj, weights, initial):
      hs, final = loop(cell, x_proj, weights, initial)
      return jnp.sum(hs * probe) + sum(jnp.sum(jnp.cos(s)) for s in final)
    return f
  fast = loss(recurrence.recurrence)
  reference = loss(recurrence.reference_recurrence)
  _close(fast(x_proj, weights, initial), reference(x_proj, weights, initial))
  _close(jax.grad(fast, (0, 1, 2))(x_proj, weights, initial),
         jax.grad(reference, (0, 1, 2))(x_proj, weights, initial))


@pytest.mark.parametrize('name', CELLS)
def test_the_step_carries_the_declared_state(name):
  cell = cells.make(name)
  x_proj, weights, initial = _random_loop_inputs(cell)
  carry, h = cell.step(weights, initial, x_proj[0])
  assert len(carry) == len(cell.state_names)
  assert all(s.shape == (B, D) for s in carry) and h.shape == (B, D)


def _sigmoid(x):
  return 1. / (1. + np.exp(-x))


def test_the_mgu_layer_computes_the_papers_formulas():
  """Zhou et al. 2016, eq. (3): f = sigmoid(W_f x + U_f h + b_f),
  h~ = tanh(W_h x + U_h (f * h) + b_h), h = (1 - f) h + f h~, in numpy."""
  layer = layers.Recurrent(cells.make('mgu', forget_bias=0.3), D)
  x = np.random.default_rng(0).normal(size=(B, T, 5)).astype(np.float32)
  layer.init(jax.ShapeDtypeStruct(x.shape, x.dtype))
  w = {k: np.asarray(v, np.float64)
       for k, v in layer.cell.named(layer.weights).items()}
  h = np.zeros((B, D))
  expected = []
  for t in range(T):
    xp = x[:, t] @ w['w_x'] + w['b']
    f = _sigmoid(xp[:, :D] + h @ w['u_f'] + 0.3)
    candidate = np.tanh(xp[:, D:] + (f * h) @ w['u_n'])
    h = (1 - f) * h + f * candidate
    expected.append(h)
  np.testing.assert_allclose(np.asarray(layer(x)), np.stack(expected, 1),
                             rtol=1e-5, atol=1e-5)


def test_a_cell_option_it_lacks_or_an_unknown_cell_is_one_clear_error():
  with pytest.raises(ValueError, match='the gru cell has no forget_bias'):
    models.RecurrentLM(20, cell='gru', forget_bias=1.0)
  with pytest.raises(ValueError, match=r"cell must be one of gru, lstm.*'lstn'"):
    models.RecurrentLM(20, cell='lstn')


def test_weight_dropping_masks_every_recurrent_matrix_of_the_mgu():
  """DropConnect reaches both of the MGU's hidden-to-hidden matrices: with
  a rate near 1, most of each is zeroed in the step's weights."""
  layer = layers.Recurrent(cells.make('mgu'), D, weight_dropout=0.9)
  layer.init(jax.ShapeDtypeStruct((B, T, 5), jnp.float32))
  dropped = layer._dropped(layer.cell.recurrent(layer.weights))  # pylint: disable=protected-access
  assert set(dropped) == {'u_f', 'u_n'}
  for name in ('u_f', 'u_n'):
    assert np.mean(np.asarray(dropped[name]) == 0) > 0.7, name


# Every cell, end to end -------------------------------------------------------

@pytest.fixture(scope='module', params=CELLS)
def cell_run(request, train_tiny_run):
  """ptb_lstm_tied.gin (tied, variational, weight and embedding dropout,
  AR/TAR) at tiny size with the cell swapped in: six Adam steps."""
  name = request.param
  return name, train_tiny_run(
      'ptb_lstm_tied.gin', ADAM_6_STEPS + [f"RecurrentLM.cell = '{name}'",
                                           'train.eval_every = 3'])


def test_every_cell_trains_evaluates_adapts_scores_and_generates(
    cell_run, tiny_data_dir):
  name, output_dir = cell_run
  described = json.loads((output_dir / 'model.json').read_text())['model']
  assert sum(f'{name.upper()}_' in line for line in described) == 2
  losses = [r['loss'] for r in map(json.loads, (
      output_dir / 'metrics.jsonl').read_text().splitlines())
            if r['kind'] == 'train']
  assert len(losses) >= 2 and all(map(math.isfinite, losses))
  assert losses[-1] < losses[0]  # It learns.

  lm = lm_trax.load(output_dir)
  plain = lm.perplexity('valid', data_dir=tiny_data_dir)
  assert math.isfinite(plain.ppl) and 1 < plain.ppl < lm.vocab.size
  cached = lm.perplexity('valid', data_dir=tiny_data_dir,
                         cache=dict(size=20, theta=1.0, lam=0.1))
  dynamic = lm.perplexity('valid', data_dir=tiny_data_dir,
                          dynamic=dict(rule='sgd', lr=0.5))
  for adapted in (cached, dynamic):
    assert adapted.tokens == plain.tokens and adapted.ppl != plain.ppl
    assert math.isfinite(adapted.ppl)
  (score,) = lm.score(['the cat sees the ball'])
  assert score.tokens == 6 and score.logprob < 0
  (sample,) = lm.generate('the cat', length=5, seed=1)
  assert sample.lower().startswith('the cat') and len(sample.split()) > 2


# tiny.gin ----------------------------------------------------------------------

def _tiny_model(gin_file, bindings=()):
  gin.clear_config()
  config.parse([str(REPO / 'gin' / gin_file), str(REPO / 'gin' / 'tiny.gin')],
               list(bindings))
  model = config.bound_model('train.model')(vocab_size=30, mode='eval')
  model.init(layers.signature(2, 4))
  return model


def _recurrent_layers(model):
  def leaves(layer):
    yield layer
    for sublayer in layer.sublayers:
      yield from leaves(sublayer)
  return [layer for layer in leaves(model)
          if isinstance(layer, layers.Recurrent)]


def _widths(model):
  return {layer.d_model for layer in _recurrent_layers(model)}


SHIPPED = sorted(p.name for p in (REPO / 'gin').glob('*.gin')
                 if p.name not in ('tiny.gin', 'base.gin'))  # Model configs.


@pytest.mark.parametrize('gin_file', SHIPPED)
def test_tiny_gin_shrinks_every_shipped_config(gin_file):
  model = _tiny_model(gin_file)
  assert _widths(model) <= {16}
  assert layers.count_parameters(model) < 12_000


# Every cell under RecurrentLM, and each model name that fixes a cell
# (LSTMLM: 'lstm', ...) with its own cell.
_FIXED_CELL_MODELS = [m.__name__ for m in configurables.MODELS
                      if m not in (models.RecurrentLM, models.NPLM)]
_CELL_UNDER_MODEL = ([(name, 'RecurrentLM') for name in CELLS] +
                     [(m.removesuffix('LM').lower(), m)
                      for m in _FIXED_CELL_MODELS])


@pytest.mark.parametrize('name,model_name', _CELL_UNDER_MODEL)
def test_tiny_gin_shrinks_every_cell_under_every_model_name(name, model_name):
  """A recipe written for one cell applies to any cell, and so does tiny.gin,
  under RecurrentLM and the names that fix a cell."""
  if model_name == 'RecurrentLM':
    bindings = [f"RecurrentLM.cell = '{name}'"]
  else:
    assert name in CELLS, f'{model_name} names no registered cell'
    bindings = [f'train.model = @{model_name}']
  model = _tiny_model('ptb_lstm_tied.gin', bindings)
  assert _widths(model) == {16}
  assert layers.count_parameters(model) < 12_000
  if model_name == 'RecurrentLM':  # The recipe's own settings still apply.
    assert gin.query_parameter('RecurrentLM.weight_dropout') == 0.2


# Runs saved by an earlier release ----------------------------------------------

@pytest.mark.parametrize('name', ['lstm_tied', 'gru', 'rnn'])
def test_runs_saved_by_0_2_0_load_and_give_the_same_log_probs(name):
  expected = json.loads((OLD_RUNS / 'expected.json').read_text())
  predictor = trained.Run(OLD_RUNS / name).predictor()
  got = predictor.stream_log_probs(np.array(expected['ids'], np.int32), 4)
  np.testing.assert_allclose(got, expected['log_probs'][name], rtol=1e-5,
                             atol=1e-5)


def test_a_run_saved_by_0_2_0_resumes(tmp_path, tiny_data_dir):
  """Its checkpoint (weights, optimizer slots, random key) fits the model
  the same config builds now, and training goes on from its step."""
  output_dir = tmp_path / 'lstm_tied'
  shutil.copytree(OLD_RUNS / 'lstm_tied', output_dir)
  config.parse([str(output_dir / 'config.gin')],
               [f"Corpus.data_dir = '{tiny_data_dir}'", 'train.n_steps = 7'])
  training.train(output_dir=str(output_dir))
  records = [json.loads(line) for line in
             (output_dir / 'metrics.jsonl').read_text().splitlines()]
  assert max(r['step'] for r in records) == 7
  assert trained.Run(output_dir).checkpoint.parent.name == 'step-00000007'


def test_an_unknown_cell_in_a_config_is_a_one_line_user_error(tiny_data_dir):
  with pytest.raises((UserError, ValueError), match='cell must be one of'):
    _tiny_model('ptb_lstm.gin', ["RecurrentLM.cell = 'lstn'"])


def test_a_cell_outside_the_package_registers_from_its_gin_file(
    tmp_path, monkeypatch):
  """`import my_cells.leaky` in a gin file registers the cell; the run's
  config.gin keeps the import, so every command that loads it finds it."""
  (tmp_path / 'my_cells').mkdir()
  (tmp_path / 'my_cells' / '__init__.py').write_text('')
  (tmp_path / 'my_cells' / 'leaky.py').write_text(
      'import dataclasses\n'
      'from jax import numpy as jnp\n'
      'from lm_trax import cells\n\n'
      '@cells.register\n'
      '@dataclasses.dataclass(frozen=True)\n'
      'class Leaky(cells.Cell):\n'
      "  name = 'leaky_test'\n"
      '  def weights(self, d_in, d):\n'
      "    return (cells.Weight('w_x', (d_in, d)),\n"
      "            cells.Weight('b', (d,), cells.zeros),\n"
      "            cells.Weight('w_h', (d, d)))\n"
      '  def step(self, weights, carry, xp):\n'
      "    h = 0.5 * carry[0] + 0.5 * jnp.tanh(xp + carry[0] @ weights['w_h'])\n"
      '    return (h,), h\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  gin_file = tmp_path / 'leaky.gin'
  gin_file.write_text("import my_cells.leaky\ninclude 'ptb_lstm.gin'\n"
                      "RecurrentLM.cell = 'leaky_test'\n")
  model = _tiny_model(str(gin_file))
  assert 'leaky_test' in cells.names()
  assert [layer.cell.name for layer in _recurrent_layers(model)] == [
      'leaky_test'] * 2
  assert gin.operative_config_str().startswith('import my_cells.leaky')


@pytest.mark.parametrize('name', ['lstm_tied', 'gru'])
def test_a_0_2_0_config_trains_again_to_the_same_model(name, tmp_path,
                                                       tiny_data_dir):
  """Same config, same seed, same data: the same initial weights, dropout
  masks and updates as lm_trax 0.2.0, so the same log-probabilities (up to
  float rounding of compilations made with other XLA settings)."""
  config.parse([str(OLD_RUNS / name / 'config.gin')],
               [f"Corpus.data_dir = '{tiny_data_dir}'"])
  training.train(output_dir=str(tmp_path / name))
  gin.clear_config()
  expected = json.loads((OLD_RUNS / 'expected.json').read_text())
  predictor = trained.Run(tmp_path / name).predictor()
  got = predictor.stream_log_probs(np.array(expected['ids'], np.int32), 4)
  np.testing.assert_allclose(got, expected['log_probs'][name], rtol=1e-4,
                             atol=1e-4)
