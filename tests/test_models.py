"""Every model: (B, T) ids -> (B, T, V) logits, causal, with carried state."""

import jax
import numpy as np
import pytest
from trax import shapes

from lm_trax import layers
from lm_trax import models

V, B, T = 20, 3, 7

MODELS = {
    'lstm': lambda **kw: models.LSTMLM(V, d_model=16, **kw),
    'gru': lambda **kw: models.GRULM(V, d_model=16, n_layers=3, **kw),
    'rnn': lambda **kw: models.RNNLM(V, d_model=16, tie_weights=True, **kw),
    'lstm_tied_dropout': lambda **kw: models.LSTMLM(
        V, d_model=16, tie_weights=True, dropout=0.3, init_scale=0.1, **kw),
    'nplm': lambda **kw: models.NPLM(V, d_model=8, d_hidden=12, n_context=3,
                                     **kw),
    'nplm_direct': lambda **kw: models.NPLM(V, d_model=8, d_hidden=12,
                                            n_context=3, n_layers=2,
                                            direct=True, **kw),
}


def _ids(seed=0, shape=(B, T)):
  return np.random.default_rng(seed).integers(1, V, size=shape).astype(np.int32)


def _init(name, **kw):
  """The model initialized from a fixed key: without one, trax draws the key
  from numpy's global generator, which earlier tests have moved."""
  model = MODELS[name](mode='eval', **kw)
  model.init(shapes.signature(_ids()), rng=jax.random.PRNGKey(0))
  return model


def _run_fresh(model, ids):
  """Runs from the zero state, leaving the model's state as it was."""
  saved = model.state
  layers.reset_carried_state(model)
  out = np.asarray(model(ids))
  model.state = saved
  return out


@pytest.mark.parametrize('name', sorted(MODELS))
def test_output_is_finite_logits_close_to_uniform_at_initialization(name):
  model = _init(name)
  logits = _run_fresh(model, _ids())
  assert logits.shape == (B, T, V) and logits.dtype == np.float32
  assert np.isfinite(logits).all()
  # A fresh model spreads its bets: each position's entropy is near log V
  # (a saturated initialization would start training far from it).
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  entropy = -(p * np.log(p)).sum(-1)
  assert (entropy > 0.9 * np.log(V)).all(), entropy.min()


@pytest.mark.parametrize('name', sorted(MODELS))
def test_position_t_never_depends_on_later_tokens(name):
  model = _init(name)
  ids = _ids()
  base = _run_fresh(model, ids)
  for t in range(T - 1):
    changed = ids.copy()
    changed[:, t + 1:] = _ids(seed=t + 1)[:, t + 1:]
    out = _run_fresh(model, changed)
    np.testing.assert_allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6)
    assert not np.allclose(out[:, t + 1:], base[:, t + 1:])


@pytest.mark.parametrize('name', sorted(MODELS))
def test_carried_state_continues_the_sequence(name):
  """Two halves with the state carried == the whole sequence at once."""
  model = _init(name)
  ids = _ids(shape=(B, 8))
  whole = _run_fresh(model, ids)
  layers.reset_carried_state(model)
  first, second = np.asarray(model(ids[:, :4])), np.asarray(model(ids[:, 4:]))
  np.testing.assert_allclose(np.concatenate([first, second], 1), whole,
                             atol=1e-5)
  # ... and differs from starting the second half from the zero state.
  assert not np.allclose(_run_fresh(model, ids[:, 4:]), second, atol=1e-4)


@pytest.mark.parametrize('chunk', [1, 2, 3])
def test_nplm_windows_shorter_than_its_context_reach_into_earlier_batches(
    chunk):
  """seq_len < n_context is fine: the context window is carried across
  batches, so chunks of 1..3 tokens give the logits of the whole sequence."""
  model = models.NPLM(V, d_model=8, d_hidden=12, n_context=5, mode='eval')
  ids = _ids(shape=(B, 12))
  model.init(shapes.signature(ids[:, :chunk]))
  whole = _run_fresh(model, ids)
  layers.reset_carried_state(model)
  pieces = [np.asarray(model(ids[:, i:i + chunk]))
            for i in range(0, 12, chunk)]
  np.testing.assert_allclose(np.concatenate(pieces, 1), whole, atol=1e-5)


@pytest.mark.parametrize('name', ['lstm', 'nplm'])
def test_carry_state_false_starts_every_batch_from_zeros(name):
  model = _init(name, carry_state=False)
  ids = _ids()
  first = np.asarray(model(ids))
  np.testing.assert_allclose(np.asarray(model(ids)), first, atol=1e-6)


def test_state_of_another_batch_size_is_not_used():
  model = _init('lstm')
  model(_ids(shape=(B, T)))  # Carries a (B, d) state.
  single = _ids(shape=(1, T))
  np.testing.assert_allclose(np.asarray(model(single)),
                             _run_fresh(model, single), atol=1e-6)


def _n_weights(model):
  return sum(w.size for w in jax.tree_util.tree_leaves(model.weights))


@pytest.mark.parametrize('direct', [False, True])
@pytest.mark.parametrize('n_layers', [1, 2])
def test_nplm_parameter_count_matches_the_formula(direct, n_layers):
  v, m, h, n = 50, 6, 10, 4
  model = models.NPLM(v, d_model=m, d_hidden=h, n_context=n, n_layers=n_layers,
                      direct=direct)
  model.init(shapes.signature(_ids()))
  expected = (v * m                        # C: word features
              + n * m * h + h              # H, d
              + (n_layers - 1) * (h * h + h)
              + h * v + v                  # U, b
              + (n * m * v if direct else 0))  # W
  assert _n_weights(model) == expected


def test_lstm_parameter_count_and_tying():
  d = 16
  lstm = 2 * (4 * d * d + 4 * d * d + 4 * d)
  untied = models.LSTMLM(V, d_model=d)
  untied.init(shapes.signature(_ids()))
  assert _n_weights(untied) == V * d + lstm + d * V + V
  tied = models.LSTMLM(V, d_model=d, tie_weights=True)
  tied.init(shapes.signature(_ids()))
  assert _n_weights(tied) == V * d + lstm + V


def test_init_scale_bounds_every_weight():
  model = models.GRULM(V, d_model=16, init_scale=0.05)
  model.init(shapes.signature(_ids()))
  for w in jax.tree_util.tree_leaves(model.weights):
    assert np.abs(np.asarray(w)).max() <= 0.05


def test_dropout_is_active_only_in_train_mode():
  train = models.LSTMLM(V, d_model=16, dropout=0.5, carry_state=False,
                        mode='train')
  train.init(shapes.signature(_ids()))
  evaluate = models.LSTMLM(V, d_model=16, dropout=0.5, carry_state=False,
                           mode='eval')
  evaluate.init(shapes.signature(_ids()))
  evaluate.weights = train.weights
  without = models.LSTMLM(V, d_model=16, dropout=0.0, carry_state=False,
                          mode='eval')
  without.init(shapes.signature(_ids()))
  without.weights = jax.tree_util.tree_unflatten(  # No dropout sublayers.
      jax.tree_util.tree_structure(without.weights),
      jax.tree_util.tree_leaves(train.weights))
  ids = _ids()
  expected = np.asarray(without(ids))
  for seed in (1, 2):  # Eval mode is the model without dropout, any key.
    np.testing.assert_allclose(
        np.asarray(evaluate(ids, rng=jax.random.key(seed))), expected,
        rtol=1e-6)
  first, second = (np.asarray(train(ids, rng=jax.random.key(seed)))
                   for seed in (1, 2))
  assert not np.allclose(first, expected)
  assert not np.allclose(first, second)  # A new mask per key.


def test_invalid_sizes_are_rejected():
  with pytest.raises(ValueError):
    models.LSTMLM(V, n_layers=0)
  with pytest.raises(ValueError):
    models.NPLM(V, n_context=0)
