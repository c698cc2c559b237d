"""The precision policy (lm_trax.precision): bfloat16 matmul operands with
float32 sums, everything else float32, in every model and every way a model
runs; the precision recorded with the run and chosen again by the commands."""

import json
import math
import re

import jax
from jax import numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import lm_trax
from lm_trax import cells
from lm_trax import cli
from lm_trax import config
from lm_trax import layers
from lm_trax import losses
from lm_trax import models
from lm_trax import precision
from lm_trax import recurrence
from lm_trax import training
from lm_trax.errors import UserError, one_line
from conftest import ADAM_6_STEPS, REPO  # pylint: disable=g-bad-import-order

CELLS = cells.names()


def _rounded(x):
  """x rounded to bfloat16 (to nearest even), as float64: what the policy
  multiplies, computed by ml_dtypes, not by JAX."""
  return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(
      np.float64)


def _random(key, shape):
  return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32)


# The matmul ----------------------------------------------------------------------

def test_bfloat16_matmul_multiplies_rounded_operands_and_sums_in_float32():
  x, w = _random(0, (6, 40)), _random(1, (40, 5))
  product = precision.matmul(x, w, 'bfloat16')
  assert product.dtype == jnp.float32
  expected = _rounded(x) @ _rounded(w)
  # A float32 sum of 40 exact bfloat16 products: float32's rounding only.
  np.testing.assert_allclose(product, expected, rtol=1e-5, atol=1e-5)
  unrounded = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  assert np.max(np.abs(product - unrounded)) > 1e-3  # Really rounded.
  # float32 is x @ w itself.
  np.testing.assert_array_equal(precision.matmul(x, w, 'float32'), x @ w)


def test_bfloat16_matmul_gradients_are_bfloat16_matmuls_returned_in_float32():
  x, w, g = _random(0, (2, 3, 40)), _random(1, (40, 5)), _random(2, (2, 3, 5))
  dx, dw = jax.grad(lambda x, w: jnp.sum(precision.matmul(x, w, 'bfloat16')
                                         * g), (0, 1))(x, w)
  assert dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(dx, _rounded(g) @ _rounded(w).T,
                             rtol=1e-5, atol=1e-5)
  flat_x, flat_g = _rounded(x).reshape(-1, 40), _rounded(g).reshape(-1, 5)
  np.testing.assert_allclose(dw, flat_x.T @ flat_g, rtol=1e-5, atol=1e-5)


def test_a_bad_precision_is_one_clear_error():
  with pytest.raises(ValueError, match="precision must be 'float32' or "
                     "'bfloat16', got 'float16'"):
    precision.matmul(jnp.ones((1, 1)), jnp.ones((1, 1)), 'float16')
  with pytest.raises(ValueError, match='precision must be'):
    models.RecurrentLM(10, precision='bf16')
  with pytest.raises(ValueError, match='precision must be'):
    cells.make('lstm', precision=None)


def test_the_commands_offer_the_policys_precisions():
  assert cli.PRECISIONS == precision.PRECISIONS


# Cells ---------------------------------------------------------------------------

T, B, D = 5, 3, 8


@pytest.mark.parametrize('name', CELLS)
def test_every_cells_loop_in_bfloat16_is_close_to_float32_forward_and_back(
    name):
  # recurrence() takes the cell's hand-written backward where it has one
  # (lstm, gru, rnn), autodiff of its step otherwise (mgu): both honour it.
  results = {}
  for policy in precision.PRECISIONS:
    cell = cells.make(name, precision=policy)
    specs = cell.weights(D, D)
    weights = cell.recurrent(tuple(
        0.3 * _random(i, spec.shape) for i, spec in enumerate(specs)))
    x_proj = _random(10, (T, B, cell.n_gates * D))
    initial = tuple(0.1 * _random(20 + i, (B, D))
                    for i, _ in enumerate(cell.state_names))
    probe = _random(30, (T, B, D))

    def loss(x_proj, weights, initial, cell=cell, probe=probe):
      hs, final = recurrence.recurrence(cell, x_proj, weights, initial)
      return jnp.sum(hs * probe) + sum(jnp.sum(s) for s in final)
    results[policy] = (loss(x_proj, weights, initial),
                       jax.grad(loss, (0, 1, 2))(x_proj, weights, initial))
  (loss_32, grads_32), (loss_16, grads_16) = (results['float32'],
                                              results['bfloat16'])
  assert abs(loss_16 - loss_32) < 2e-2 * abs(loss_32) + 1e-2
  assert loss_16 != loss_32  # bfloat16 was used.
  for g32, g16 in zip(jax.tree_util.tree_leaves(grads_32),
                      jax.tree_util.tree_leaves(grads_16)):
    assert g16.dtype == jnp.float32
    assert np.linalg.norm(g16 - g32) < 3e-2 * np.linalg.norm(g32) + 1e-4


# Models --------------------------------------------------------------------------

MODELS = {
    **{f'{name}': dict(fn=models.RecurrentLM, cell=name, d_model=16)
       for name in CELLS},
    'lstm_tied': dict(fn=models.RecurrentLM, cell='lstm', d_model=16,
                      tie_weights=True),
    'nplm_direct': dict(fn=models.NPLM, d_model=8, d_hidden=16, n_context=3,
                        direct=True),
}
V = 40


def _model(spec, policy, mode='eval'):
  spec = dict(spec)
  fn = spec.pop('fn')
  model = fn(vocab_size=V, mode=mode, precision=policy, **spec)
  model.init(layers.signature(2, 6), rng=jax.random.PRNGKey(0))
  return model


def _loss_fn(model):
  loss_layer = losses.WeightedCrossEntropy()
  ids = jax.random.randint(jax.random.PRNGKey(5), (2, 6), 0, V)
  targets = jnp.roll(ids, -1, axis=1)

  def loss(weights):
    logits, _ = model.pure_fn(ids, weights, model.state,
                              jax.random.PRNGKey(1), use_cache=False)
    return loss_layer((logits, targets, jnp.ones(ids.shape))), logits
  return loss


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_model_in_bfloat16_is_close_to_float32_in_value_and_gradient(
    name):
  model_32 = _model(MODELS[name], 'float32')
  model_16 = _model(MODELS[name], 'bfloat16')
  weights = model_32.weights  # The same float32 weights in both.
  (loss_32, logits_32), grads_32 = jax.value_and_grad(
      _loss_fn(model_32), has_aux=True)(weights)
  (loss_16, logits_16), grads_16 = jax.value_and_grad(
      _loss_fn(model_16), has_aux=True)(weights)
  assert logits_16.dtype == loss_16.dtype == jnp.float32
  assert abs(float(loss_16) - float(loss_32)) < 1e-2 * float(loss_32)
  assert float(loss_16) != float(loss_32)
  np.testing.assert_allclose(logits_16, logits_32, atol=5e-2)
  flat_32 = jnp.concatenate([g.ravel() for g in
                             jax.tree_util.tree_leaves(grads_32)])
  flat_16 = jnp.concatenate([g.ravel() for g in
                             jax.tree_util.tree_leaves(grads_16)])
  assert all(g.dtype == jnp.float32
             for g in jax.tree_util.tree_leaves(grads_16))
  assert jnp.linalg.norm(flat_16 - flat_32) < 3e-2 * jnp.linalg.norm(flat_32)


def _matmul_operand_types(model):
  """The operand element types of every dot_general in the compiled
  training step (forward and backward, loops included), as StableHLO
  writes them: e.g. ['bf16', 'bf16']."""
  loss = _loss_fn(model)
  text = jax.jit(jax.grad(lambda w: loss(w)[0])).lower(
      model.weights).as_text()
  types = []
  for line in text.splitlines():
    if 'stablehlo.dot_general' in line:
      operands = line.rsplit(':', 1)[1].split('->')[0]
      types.append(re.findall(r'x(bf16|f32)>', operands))
  return types


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_matmul_of_a_bfloat16_model_multiplies_bfloat16_forward_and_back(
    name):
  # Holds for every registered cell: one that multiplied with `@` instead of
  # Cell.matmul would leave float32 products here.
  types_16 = _matmul_operand_types(_model(MODELS[name], 'bfloat16', 'train'))
  types_32 = _matmul_operand_types(_model(MODELS[name], 'float32', 'train'))
  assert len(types_16) == len(types_32) >= 3
  assert all(t == ['bf16', 'bf16'] for t in types_16), types_16
  assert all(t == ['f32', 'f32'] for t in types_32), types_32


def test_the_weights_and_the_carried_state_stay_float32():
  model = _model(MODELS['lstm'], 'bfloat16', 'train')
  model(jnp.zeros((2, 6), jnp.int32))
  for leaf in jax.tree_util.tree_leaves((model.weights, model.state)):
    assert leaf.dtype == jnp.float32


# Runs ----------------------------------------------------------------------------

BF16 = ["train.precision = 'bfloat16'"]


@pytest.fixture(scope='module')
def bfloat16_run(train_tiny_run):
  return train_tiny_run('ptb_lstm.gin', ADAM_6_STEPS + BF16)


def test_the_run_records_its_precision_and_every_way_to_run_it_uses_it(
    bfloat16_run, tiny_data_dir):
  assert "train.precision = 'bfloat16'" in (
      bfloat16_run / 'config.gin').read_text()
  (start,) = json.loads((bfloat16_run / 'run.json').read_text())['starts']
  assert start['precision'] == 'bfloat16'
  own = lm_trax.load(bfloat16_run)
  assert own.run.precision == own.run.trained_precision == 'bfloat16'
  valid_16 = own.perplexity('valid', data_dir=tiny_data_dir)
  assert valid_16.precision == 'bfloat16'
  assert valid_16.line().endswith(' precision=bfloat16')
  as_32 = lm_trax.load(bfloat16_run, precision='float32')
  assert as_32.run.precision == 'float32'
  valid_32 = as_32.perplexity('valid', data_dir=tiny_data_dir)
  assert 'precision' not in valid_32.line()
  # The same float32 weights: close, not equal.
  assert valid_16.loss != valid_32.loss
  assert abs(valid_16.loss - valid_32.loss) < 1e-2 * valid_32.loss


def test_evaluation_generation_and_both_adaptations_run_in_bfloat16(
    bfloat16_run, tiny_data_dir):
  lm_16 = lm_trax.load(bfloat16_run)
  lm_32 = lm_trax.load(bfloat16_run, precision='float32')
  for options in (dict(cache=dict(size=20, theta=1.0, lam=0.1)),
                  dict(dynamic=dict(rule='sgd', lr=0.5)),
                  dict(dynamic=dict(rule='rms', lr=0.002, epsilon=2e-5))):
    adapted_16 = lm_16.perplexity('valid', data_dir=tiny_data_dir, **options)
    adapted_32 = lm_32.perplexity('valid', data_dir=tiny_data_dir, **options)
    assert math.isfinite(adapted_16.ppl) and adapted_16.ppl != adapted_32.ppl
    assert abs(adapted_16.loss - adapted_32.loss) < 2e-2 * adapted_32.loss
  (score_16,), (score_32,) = (lm.score(['the cat sees the ball'])
                              for lm in (lm_16, lm_32))
  assert score_16.tokens == score_32.tokens
  assert abs(score_16.logprob - score_32.logprob) < 2e-2 * abs(score_32.logprob)
  (sample,) = lm_16.generate('the cat', length=5, seed=1)
  assert sample.lower().startswith('the cat') and len(sample.split()) > 2


def test_a_20_step_curve_in_bfloat16_stays_close_to_float32(train_tiny_run):
  curves = {}
  for policy in precision.PRECISIONS:
    run = train_tiny_run('ptb_lstm.gin', [
        'train.n_steps = 20', 'train.log_every = 1', 'train.eval_every = 20',
        'train.optimizer = @trax.optimizers.Adam',
        'train.lr_schedule = @constant_lr', 'constant_lr.learning_rate = 0.01',
        f"train.precision = '{policy}'"])
    records = map(json.loads, (run / 'metrics.jsonl').read_text().splitlines())
    curves[policy] = np.array([r['loss'] for r in records
                               if r['kind'] == 'train'])
  assert len(curves['float32']) == len(curves['bfloat16']) == 20
  assert np.ptp(curves['float32']) > 0.5  # The weights moved a long way.
  # Step by step within 0.01 nats (seen: within 0.001).
  np.testing.assert_allclose(curves['bfloat16'], curves['float32'], atol=0.01)
  assert not np.array_equal(curves['bfloat16'], curves['float32'])


def test_a_bad_precision_binding_is_a_one_line_error_naming_train_precision(
    tiny_data_dir, tmp_path):
  files = [str(REPO / 'gin' / 'ptb_lstm.gin'), str(REPO / 'gin' / 'tiny.gin')]
  data = ['Corpus.download = False', f"Corpus.data_dir = '{tiny_data_dir}'"]
  config.parse(files, data + ["train.precision = 'fp16'"])
  with pytest.raises(UserError) as raised:
    training.train(output_dir=str(tmp_path / 'run'))
  assert one_line(raised.value) == ("train.precision must be 'float32' or "
                                    "'bfloat16', got 'fp16'; fix the gin "
                                    'binding')
  with pytest.raises(UserError, match='set by train.precision'):
    config.parse(files, data + ["RecurrentLM.precision = 'bfloat16'"])


def test_a_model_without_a_precision_parameter_runs_in_float32_only():
  def own_model(vocab_size, mode='train'):
    return models.RecurrentLM(vocab_size, mode=mode)
  assert precision.bind(own_model, 'float32') is own_model
  with pytest.raises(ValueError, match='own_model takes no precision'):
    precision.bind(own_model, 'bfloat16')
  bound = precision.bind(models.NPLM, 'bfloat16')
  assert bound.keywords == {'precision': 'bfloat16'}


def test_a_bad_precision_flag_or_argument_is_one_line(word_run, capsys):
  from lm_trax import evaluate  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit):
    evaluate.main(['--output_dir', str(word_run), '--precision', 'fp8'])
  assert "invalid choice: 'fp8'" in capsys.readouterr().err
  with pytest.raises(UserError, match="^precision must be 'float32' or "
                     "'bfloat16', got 'fp8'$"):
    lm_trax.load(word_run, precision='fp8')


def test_a_resume_in_another_precision_is_said_and_recorded(
    train_tiny_run, tmp_path, capsys):
  run = train_tiny_run('ptb_lstm.gin', ['train.n_steps = 2'] + BF16,
                       output_dir=tmp_path / 'run')
  capsys.readouterr()
  train_tiny_run('ptb_lstm.gin', ['train.n_steps = 4'], output_dir=run)
  assert ('the run trained in bfloat16 so far and goes on in float32'
          in capsys.readouterr().out)
  starts = json.loads((run / 'run.json').read_text())['starts']
  assert [s['precision'] for s in starts] == ['bfloat16', 'float32']
  assert lm_trax.load(run).run.precision == 'float32'  # The last config's.
