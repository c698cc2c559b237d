"""The continuous cache and dynamic evaluation against plain evaluation and
brute-force computations (lm_trax.adaptation)."""

import dataclasses
import hashlib

import jax
from jax import numpy as jnp
import numpy as np
import pytest

import lm_trax
from lm_trax import adaptation
from lm_trax import evaluate
from lm_trax import inference
from lm_trax import trained
from lm_trax.errors import UserError

from conftest import ADAM_6_STEPS  # pylint: disable=g-bad-import-order

TEXT = 'the cat sees the ball\na dog likes a tree\nthe bird finds some food\n'


@pytest.fixture(scope='module')
def tied_run(train_tiny_run):
  """A tied LSTM with embedding dropout: its table is used twice, once inside
  a Branch."""
  return train_tiny_run('ptb_lstm_tied.gin', ADAM_6_STEPS)


@pytest.fixture(scope='module')
def nplm_run(train_tiny_run):
  return train_tiny_run('ptb_nplm.gin', ADAM_6_STEPS)


def _plain_log_probs(predictor, ids):
  return predictor.stream_log_probs(ids, chunk_len=len(ids))


def _model_pass(predictor, ids):
  """(hidden (T, d), log p_model (T, V)) of one pass over eos + ids[:-1]."""
  inputs = inference.primed(predictor.vocab.eos_id, ids)[None, :-1]
  hidden, logits, _ = predictor.hidden_forward(
      predictor.weights, predictor.fresh_state(1), inputs)
  return (np.asarray(hidden[0], np.float64),
          np.asarray(jax.nn.log_softmax(logits[0]), np.float64))


# The hidden states --------------------------------------------------------------

@pytest.mark.parametrize('which', ['word_run', 'tied_run'])
def test_the_hidden_forward_gives_the_models_logits(which, request):
  predictor = trained.Run(request.getfixturevalue(which)).predictor()
  ids = inference.primed(predictor.vocab.eos_id,
                         predictor.vocab.encode(TEXT))[None]
  state = predictor.fresh_state(1)
  logits, final = predictor.forward(predictor.weights, state, ids)
  hidden, split_logits, split_final = predictor.hidden_forward(
      predictor.weights, state, ids)
  assert hidden.shape == (1, ids.shape[1], 16)
  np.testing.assert_allclose(split_logits, logits, rtol=1e-6, atol=1e-6)
  assert (jax.tree_util.tree_structure(split_final) ==
          jax.tree_util.tree_structure(final))
  for a, b in zip(jax.tree_util.tree_leaves(split_final),
                  jax.tree_util.tree_leaves(final)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  if which == 'tied_run':  # The hidden states are what the output layer reads.
    (table,) = [w for w in jax.tree_util.tree_leaves(predictor.weights)
                if np.shape(w) == (predictor.vocab.size, 16)]  # Used twice.
    bias = jax.tree_util.tree_leaves(predictor.weights)[-1]
    np.testing.assert_allclose(hidden @ table.T + bias, logits, rtol=1e-5,
                               atol=1e-5)


def test_the_cache_needs_a_recurrent_model(nplm_run):
  with pytest.raises(UserError, match='recurrent'):
    evaluate.evaluate(nplm_run, 'valid', progress=False,
                      cache=adaptation.Cache(10, 1.0, 0.1))


# Exactness against plain evaluation -------------------------------------------------

@pytest.mark.parametrize('which', ['word_run', 'tied_run'])
def test_lambda_zero_and_lr_zero_give_the_plain_evaluation(which, request):
  output_dir = request.getfixturevalue(which)
  plain = evaluate.evaluate(output_dir, 'valid', progress=False)
  cache = adaptation.Cache(size=50, theta=1.0, lam=0.0)
  for kwargs in (dict(cache=cache),
                 dict(dynamic=adaptation.Dynamic('sgd', 0.0)),
                 dict(dynamic=adaptation.Dynamic('rms', 0.0, segment=3)),
                 dict(cache=cache, dynamic=adaptation.Dynamic('sgd', 0.0))):
    result = evaluate.evaluate(output_dir, 'valid', progress=False, **kwargs)
    assert result.tokens == plain.tokens
    assert result.loss == pytest.approx(plain.loss, rel=1e-6)
    assert result.line().startswith(plain.line() + ' ')


def test_dynamic_evaluation_runs_on_the_nplm(nplm_run):
  plain = evaluate.evaluate(nplm_run, 'valid', progress=False)
  still = evaluate.evaluate(nplm_run, 'valid', progress=False,
                            dynamic=adaptation.Dynamic('sgd', 0.0))
  assert still.loss == pytest.approx(plain.loss, rel=1e-6)
  moved = evaluate.evaluate(nplm_run, 'valid', progress=False,
                            dynamic=adaptation.Dynamic('sgd', 0.5))
  assert moved.loss != pytest.approx(plain.loss, rel=1e-4)


# Causality ------------------------------------------------------------------------

def test_changing_later_tokens_leaves_earlier_probabilities_alone(word_run):
  predictor = trained.Run(word_run).predictor()
  ids = predictor.vocab.encode(TEXT * 2)
  changed = ids.copy()
  t = 16  # Mid-segment: the segment of 3 holding t also holds t + 1.
  changed[t + 1:] = changed[t + 1:][::-1]
  assert (changed[t + 1:] != ids[t + 1:]).any()
  options = dict(cache=adaptation.Cache(8, 1.0, 0.3),
                 dynamic=adaptation.Dynamic('sgd', 1.0, segment=3),
                 chunk_len=6)
  before = adaptation.adapted_log_probs(predictor, ids, **options)
  after = adaptation.adapted_log_probs(predictor, changed, **options)
  np.testing.assert_allclose(after[:t + 1], before[:t + 1], rtol=1e-6)
  assert not np.allclose(before, _plain_log_probs(predictor, ids))


# The cache against brute force ---------------------------------------------------

def _brute_force_cache(hidden, next_ids, log_p_model, size, theta, lam):
  """p(w) at every step by the formula: (T, V) float64."""
  steps, vocab_size = log_p_model.shape
  p = np.exp(log_p_model)
  for t in range(steps):
    window = range(max(0, t - size), t)
    if not window:
      continue
    scores = np.array([theta * hidden[t] @ hidden[i] for i in window])
    attention = np.exp(scores - scores.max())
    attention /= attention.sum()
    p_cache = np.zeros(vocab_size)
    for a, i in zip(attention, window):
      p_cache[next_ids[i]] += a
    p[t] = (1 - lam) * p[t] + lam * p_cache
  return p


_JITTED_CACHE_LOG_PROBS = jax.jit(adaptation.cache_log_probs)


def _cache_in_segments(hidden, targets, log_p_model, cache, segment):
  """log p(targets) from cache_log_probs, the window carried across segments."""
  window = adaptation.empty_window(cache.size, hidden.shape[1])
  pieces = []
  for start in range(0, len(targets), segment):
    part = slice(start, start + segment)
    log_probs, window = _JITTED_CACHE_LOG_PROBS(
        window, hidden[part].astype(np.float32), targets[part].astype(np.int32),
        np.int32(start), log_p_model[part].astype(np.float32),
        np.float32(cache.theta), np.float32(cache.lam))
    pieces.append(np.asarray(log_probs, np.float64))
  return np.concatenate(pieces)


def test_the_cache_mixture_equals_the_formula_and_sums_to_one():
  rng = np.random.default_rng(0)
  steps, d, vocab_size = 13, 4, 6
  hidden = rng.normal(size=(steps, d))
  targets = rng.integers(1, vocab_size, size=steps)
  log_p_model = np.log(rng.dirichlet(np.ones(vocab_size), size=steps))
  cache = adaptation.Cache(size=4, theta=0.7, lam=0.25)
  expected = _brute_force_cache(hidden, targets, log_p_model, cache.size,
                                cache.theta, cache.lam)
  for segment in (steps, 5, 1):
    got = _cache_in_segments(hidden, targets, _picked(log_p_model, targets),
                             cache, segment)
    np.testing.assert_allclose(np.exp(got), _picked(expected, targets),
                               rtol=1e-5)
  # The whole distribution at each step: every word tried as the target there
  # (later steps would see it in the window; step t does not).
  for t in range(steps):
    total = 0.0
    for w in range(vocab_size):
      tried = targets.copy()
      tried[t] = w
      log_probs = _cache_in_segments(hidden, tried, _picked(log_p_model, tried),
                                     cache, steps)
      total += np.exp(log_probs[t])
    assert total == pytest.approx(1.0, abs=1e-5)


def _picked(table, targets):
  """table[t, targets[t]] for every t: (T, V) -> (T,)."""
  return table[np.arange(len(targets)), targets]


def test_the_cache_on_a_model_equals_the_formula_on_its_hidden_states(
    word_run):
  predictor = trained.Run(word_run).predictor()
  ids = predictor.vocab.encode(TEXT * 2)
  cache = adaptation.Cache(size=7, theta=0.5, lam=0.3)
  got = adaptation.adapted_log_probs(predictor, ids, cache=cache, chunk_len=8)
  hidden, log_p_model = _model_pass(predictor, ids)
  expected = _brute_force_cache(hidden, ids, log_p_model, cache.size,
                                cache.theta, cache.lam)
  np.testing.assert_allclose(np.exp(got), _picked(expected, ids), rtol=1e-4)


# Dynamic evaluation ---------------------------------------------------------------

def _checkpoint_digests(output_dir):
  return {path: hashlib.sha256(path.read_bytes()).hexdigest()
          for path in sorted((output_dir / 'checkpoints').rglob('*'))
          if path.is_file()}


def _replayed_dynamic_log_probs(predictor, ids, dynamic, statistics):
  """Dynamic evaluation written out segment by segment in numpy (float64
  weights), the gradients from jax.grad of the model's mean loss."""
  leaves, treedef = jax.tree_util.tree_flatten(predictor.weights)
  trained_leaves = [np.asarray(w, np.float64) for w in leaves]
  current = [w.copy() for w in trained_leaves]
  if dynamic.rule == 'rms':
    rms = [np.asarray(r, np.float64) for r in jax.tree_util.tree_leaves(
        statistics[0])]
    rate = [np.asarray(r, np.float64) for r in jax.tree_util.tree_leaves(
        statistics[1])]

  def segment_loss(leaves, state, inputs, targets):
    weights = jax.tree_util.tree_unflatten(treedef, leaves)
    logits, state = predictor.pure_forward(weights, state, inputs[None])
    log_p = jax.nn.log_softmax(logits[0])[np.arange(len(targets)), targets]
    return -log_p.mean(), (log_p, state)

  gradient = jax.jit(jax.grad(segment_loss, has_aux=True))
  inputs = inference.primed(predictor.vocab.eos_id, ids)[:-1]
  state, result = predictor.fresh_state(1), []
  for start in range(0, len(ids), dynamic.segment):
    piece = slice(start, start + dynamic.segment)
    as_float32 = [np.float32(w) for w in current]
    grads, (log_p, state) = gradient(as_float32, state, inputs[piece],
                                     ids[piece])
    result.extend(np.asarray(log_p))
    for i, g in enumerate(grads):
      g = np.asarray(g, np.float64)
      pull = trained_leaves[i] - current[i]
      if dynamic.rule == 'sgd':
        current[i] = current[i] - dynamic.lr * g + dynamic.decay * pull
      else:
        current[i] = (current[i] - dynamic.lr * g / (rms[i] + dynamic.epsilon)
                      + np.minimum(dynamic.decay * rate[i], 1.0) * pull)
  return np.array(result)


def test_gradient_statistics_are_the_rms_of_the_batch_gradients(word_run):
  run = trained.Run(word_run)
  predictor = run.predictor()
  ids = run.vocab.encode(run.corpus().text('train'))[:1000]
  rms, rate = adaptation.gradient_statistics(predictor, ids, segment=2)
  # By hand: 100 rows of 10 tokens (row r: ids[10r : 10r + 10], each read
  # after the token before it), 5 batches of 2 columns, the state carried
  # from batch to batch; g is the gradient of each batch's mean loss.
  inputs = np.concatenate([[run.vocab.eos_id], ids[:-1]]).reshape(100, 10)
  targets = ids.reshape(100, 10)

  def batch_loss(weights, state, x, y):
    logits, state = predictor.pure_forward(weights, state, x)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], -1)
    return -log_p.mean(), state

  gradient = jax.jit(jax.grad(batch_loss, has_aux=True))
  state, squares = predictor.fresh_state(100), []
  for k in range(5):
    columns = slice(2 * k, 2 * k + 2)
    grads, state = gradient(
        predictor.weights, state, inputs[:, columns], targets[:, columns])
    squares.append([np.asarray(g, np.float64) ** 2
                    for g in jax.tree_util.tree_leaves(grads)])
  expected = [np.sqrt(np.mean(s, axis=0)) for s in zip(*squares)]
  total = sum(r.mean() for r in expected)
  for got, want in zip(jax.tree_util.tree_leaves(rms), expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
  for got, want in zip(jax.tree_util.tree_leaves(rate), expected):
    np.testing.assert_allclose(got, want / total, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('dynamic', [
    adaptation.Dynamic('sgd', 0.5, decay=0.3, segment=4),
    adaptation.Dynamic('rms', 0.003, decay=0.3, segment=4, epsilon=1e-3)])
def test_dynamic_evaluation_is_its_update_rule_replayed_segment_by_segment(
    word_run, dynamic):
  run = trained.Run(word_run)
  predictor = run.predictor()
  ids = predictor.vocab.encode(TEXT)  # 18 tokens: 4 segments and a part.
  statistics = None
  if dynamic.rule == 'rms':
    statistics = adaptation.gradient_statistics(
        predictor, run.vocab.encode(run.corpus().text('train')),
        dynamic.segment)
  adapted = adaptation.adapted_log_probs(predictor, ids, dynamic=dynamic,
                                         statistics=statistics, chunk_len=8)
  replayed = _replayed_dynamic_log_probs(predictor, ids, dynamic, statistics)
  np.testing.assert_allclose(adapted, replayed, rtol=1e-4, atol=1e-4)
  # The updates and their decay move the numbers by far more than the
  # tolerance, so a wrong rule (a flipped decay, say) cannot pass.
  no_decay = dataclasses.replace(dynamic, decay=0.0)
  assert np.abs(replayed - _replayed_dynamic_log_probs(
      predictor, ids, no_decay, statistics)).max() > 2e-3
  assert np.abs(replayed - _plain_log_probs(predictor, ids)).max() > 1e-2


@pytest.mark.parametrize('dynamic', [adaptation.Dynamic('sgd', 1.0),
                                     adaptation.Dynamic('rms', 0.01,
                                                        decay=0.01,
                                                        epsilon=1e-3)])
def test_dynamic_evaluation_learns_a_repeated_text_and_changes_no_weights(
    word_run, dynamic):
  run = trained.Run(word_run)
  predictor = run.predictor()
  weights = [np.array(w) for w in jax.tree_util.tree_leaves(predictor.weights)]
  on_disk = _checkpoint_digests(word_run)
  ids = predictor.vocab.encode(TEXT)
  repeated = np.concatenate([ids, ids])
  statistics = None
  if dynamic.rule == 'rms':
    train_ids = run.vocab.encode(run.corpus().text('train'))
    statistics = adaptation.gradient_statistics(predictor, train_ids,
                                                dynamic.segment)
  adapted = adaptation.adapted_log_probs(predictor, repeated, dynamic=dynamic,
                                         statistics=statistics, chunk_len=20)
  plain = _plain_log_probs(predictor, repeated)
  second = slice(len(ids), None)
  assert -adapted[second].mean() < -plain[second].mean() - 0.02
  for before, after in zip(weights,
                           jax.tree_util.tree_leaves(predictor.weights)):
    np.testing.assert_array_equal(before, np.asarray(after))
  assert _checkpoint_digests(word_run) == on_disk
  np.testing.assert_array_equal(_plain_log_probs(predictor, repeated), plain)


# The command, the API, errors ------------------------------------------------------

def test_the_command_names_the_adaptation_on_its_last_line(word_run, capsys):
  evaluate.main(['--output_dir', str(word_run), '--split', 'valid',
                 '--cache_size', '20', '--cache_theta', '0.5',
                 '--cache_lambda', '0.2', '--dynamic_eval', 'sgd',
                 '--dynamic_lr', '0.1'])
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith('split=valid tokens=600 loss=') and ' ppl=' in last
  assert last.endswith(' cache=20/0.5/0.2 dynamic=sgd/0.1/0.0/5')


def test_a_search_runs_every_point_on_valid_and_ends_with_the_best(
    word_run, capsys):
  evaluate.main(['--output_dir', str(word_run), '--cache_size', '20',
                 '--cache_theta', '0.5,1.0', '--cache_lambda', '0.1,0.3'])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 5
  loss = lambda line: float(line.split(' loss=')[1].split()[0])
  assert lines[-1] == min(lines[:4], key=loss)
  assert {line.split()[-1] for line in lines[:4]} == {
      'cache=20/0.5/0.1', 'cache=20/0.5/0.3', 'cache=20/1.0/0.1',
      'cache=20/1.0/0.3'}
  with pytest.raises(SystemExit):
    evaluate.main(['--output_dir', str(word_run), '--split', 'test',
                   '--dynamic_eval', 'sgd', '--dynamic_lr', '0.1,1'])
  assert 'run it with --split valid' in capsys.readouterr().err


def test_the_api_takes_dicts_and_agrees_with_the_command(word_run):
  lm = lm_trax.load(word_run)
  cache = dict(size=20, theta=0.5, lam=0.2)
  result = lm.perplexity(split='valid', cache=cache)
  expected = evaluate.evaluate(word_run, 'valid', progress=False,
                               cache=adaptation.Cache(**cache))
  assert result.loss == pytest.approx(expected.loss, rel=1e-6)
  assert result.adaptation == 'cache=20/0.5/0.2'
  text = lm.perplexity(text=TEXT, dynamic=dict(rule='sgd', lr=0.0))
  assert text.loss == pytest.approx(lm.perplexity(text=TEXT).loss, rel=1e-6)
  with pytest.raises(UserError, match='keys among size, theta, lam'):
    lm.perplexity(split='valid', cache=dict(size=20, theta=0.5, lamda=0.2))
  with pytest.raises(UserError, match='missing'):
    lm.perplexity(split='valid', dynamic=dict(rule='sgd'))


@pytest.mark.parametrize('flags, message', [
    (['--cache_size', '-1', '--cache_theta', '1', '--cache_lambda', '0.1'],
     'cache_size'),
    (['--cache_size', '10', '--cache_theta', '-1', '--cache_lambda', '0.1'],
     'cache_theta'),
    (['--cache_size', '10', '--cache_theta', '1', '--cache_lambda', '1.5'],
     'cache_lambda'),
    (['--cache_size', '10'], 'missing --cache_theta, --cache_lambda'),
    (['--dynamic_lr', '0.1'], 'need --dynamic_eval'),
    (['--dynamic_eval', 'sgd'], 'needs --dynamic_lr'),
    (['--dynamic_eval', 'sgd', '--dynamic_lr', '-1'], 'dynamic_lr'),
    (['--dynamic_eval', 'rms', '--dynamic_lr', '1', '--dynamic_decay', '2'],
     'dynamic_decay'),
    (['--dynamic_eval', 'sgd', '--dynamic_lr', '1', '--dynamic_segment', '0'],
     'dynamic_segment'),
])
def test_bad_values_are_one_line_errors(word_run, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main(['--output_dir', str(word_run)] + flags)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]


def test_runs_scored_line_by_line_refuse_adaptation(train_tiny_run, tmp_path):
  output_dir = train_tiny_run('shakespeare_gru.gin', ADAM_6_STEPS, tmp_path)
  with pytest.raises(UserError, match='one stream'):
    evaluate.evaluate(output_dir, 'valid', progress=False,
                      dynamic=adaptation.Dynamic('sgd', 0.1))
