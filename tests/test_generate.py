"""Sampling: exact sequences from fake models, frequencies, seeds, priming, CLI."""

import json
import shutil

import jax
from jax import numpy as jnp
import numpy as np
import pytest
from trax import layers as tl
from trax.layers import base

from lm_trax import generate
from lm_trax import inference
from lm_trax import layers
from lm_trax import trained
from lm_trax.errors import UserError

# Fake models ----------------------------------------------------------------------

def _init(model, batch_size=1):
  model.init(layers.signature(batch_size, 1))
  return model


def next_id_lm(vocab_size):
  """Stateless: the logits of position t point at (ids[t] + 1) % V."""
  return _init(tl.Fn('NextId', lambda ids: 10.0 * jax.nn.one_hot(
      (ids + 1) % vocab_size, vocab_size)))


def fixed_logits_lm(logits):
  """Stateless: the same logits (V,) at every position."""
  logits = jnp.asarray(logits, jnp.float32)
  return _init(tl.Fn('FixedLogits', lambda ids: jnp.broadcast_to(
      logits, ids.shape + logits.shape)))


def descending_from_next_lm(vocab_size):
  """Stateless: logits[v] = -((v - ids[t] - 1) % V), so the top k after a
  token y are y+1, ..., y+k (mod V)."""
  def logits(ids):
    offsets = (jnp.arange(vocab_size) - ids[..., None] - 1) % vocab_size
    return -offsets.astype(jnp.float32)
  return _init(tl.Fn('DescendingFromNext', logits))


class RunningSumLM(base.Layer):
  """Stateful: the logits after a token point at (sum of all ids seen + 1) % V;
  the running sum (B,) is the carried state."""

  def __init__(self, vocab_size):
    super().__init__(n_in=1, n_out=1, name='RunningSumLM')
    self._vocab_size = vocab_size

  def init_weights_and_state(self, input_signature):
    self.state = jnp.zeros((input_signature.shape[0],), jnp.int32)

  def forward(self, ids):
    sums = self.state[:, None] + jnp.cumsum(ids, axis=1)  # (B, T)
    self.state = sums[:, -1]
    return 10.0 * jax.nn.one_hot((sums + 1) % self._vocab_size,
                                 self._vocab_size)


# Exact sequences at T = 0 -----------------------------------------------------------

def test_greedy_sampling_of_a_fake_model_gives_the_exact_sequence():
  ids = generate.sample(next_id_lm(10), [[3], [7]], 6, jax.random.PRNGKey(0),
                        temperature=0.0)
  np.testing.assert_array_equal(ids, [[4, 5, 6, 7, 8, 9], [8, 9, 0, 1, 2, 3]])
  assert ids.dtype == np.int32


def test_the_state_set_by_the_prompt_carries_through_every_step():
  # Prompt 2, 3 -> sum 5 -> 6; sum 11 -> 2; 13 -> 4; 17 -> 8; 25 -> 6; ...
  model = _init(RunningSumLM(10))
  ids = generate.sample(model, [[2, 3]], 8, jax.random.PRNGKey(0),
                        temperature=0.0)
  np.testing.assert_array_equal(ids, [[6, 2, 4, 8, 6, 2, 4, 8]])


def test_banned_ids_are_never_generated():
  ids = generate.sample(next_id_lm(10), [[8]], 3, jax.random.PRNGKey(0),
                        temperature=0.0, banned_ids=(0,))
  assert ids[0, 0] == 9 and 0 not in ids


# Frequencies ------------------------------------------------------------------------

def _chi_square(ids, probs):
  """Pearson's statistic of the ids' counts against probs (K,)."""
  counts = np.bincount(np.ravel(ids), minlength=len(probs))
  expected = np.ravel(ids).size * np.asarray(probs, np.float64)
  return float(np.sum((counts - expected) ** 2 / expected))


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


# Chi-square critical values at p = 0.001 by degrees of freedom
# (scipy's chi2.ppf(0.999, df)).
CRITICAL = {1: 10.828, 2: 13.816, 4: 18.467}
LOGITS = np.array([1.2, 0.4, 0.0, -0.7, -1.5], np.float32)


def test_token_frequencies_follow_softmax_of_logits_over_temperature():
  temperature = 0.6
  ids = generate.sample(fixed_logits_lm(LOGITS), np.ones((40, 1)), 250,
                        jax.random.PRNGKey(42), temperature=temperature)
  assert ids.shape == (40, 250)
  assert _chi_square(ids, _softmax(LOGITS / temperature)) < CRITICAL[4]
  for wrong in (0.5, 0.75, 1.0):  # The test tells temperatures apart.
    assert _chi_square(ids, _softmax(LOGITS / wrong)) > 10 * CRITICAL[4], wrong


def test_top_k_frequencies_follow_the_renormalized_top_k():
  logits = np.array([0.3, 2.0, -1.0, 1.5, 0.9, -0.2, 1.1, 0.0], np.float32)
  rows = np.tile(logits, (6000, 1))
  ids = np.asarray(generate.sample_logits(rows, jax.random.PRNGKey(1),
                                          temperature=1.5, top_k=3))
  top3 = [1, 3, 6]
  assert set(ids.tolist()) == set(top3)
  rank = np.array([top3.index(i) for i in ids])
  assert _chi_square(rank, _softmax(logits[top3] / 1.5)) < CRITICAL[2]


def test_top_k_never_emits_a_token_outside_the_top_k_at_any_step():
  vocab_size, k = 12, 3
  ids = generate.sample(descending_from_next_lm(vocab_size),
                        np.arange(8)[:, None], 60, jax.random.PRNGKey(3),
                        temperature=5.0, top_k=k)
  previous = np.concatenate([np.arange(8)[:, None], ids[:, :-1]], axis=1)
  steps = (ids - previous) % vocab_size  # The top k after y: y+1 .. y+k.
  assert set(np.unique(steps).tolist()) == {1, 2, 3}


def test_top_p_keeps_the_fewest_tokens_that_reach_p():
  logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
  rows = np.tile(logits, (4000, 1))
  draw = lambda **kw: np.asarray(generate.sample_logits(
      rows, jax.random.PRNGKey(5), **kw))
  ids = draw(top_p=0.7)  # 0.5 < 0.7 <= 0.8: tokens 0 and 1.
  assert set(ids.tolist()) == {0, 1}
  assert _chi_square(ids, [0.625, 0.375]) < CRITICAL[1]
  assert set(draw(top_p=0.01).tolist()) == {0}
  assert set(draw(top_p=1.0).tolist()) == {0, 1, 2, 3}
  # top_p applies to the top k renormalized: 0.5 + 0.3 = 0.8 < 0.82, but
  # (0.5 + 0.3) / 0.95 = 0.84 >= 0.82.
  assert set(draw(top_p=0.82).tolist()) == {0, 1, 2}
  assert set(draw(top_k=3, top_p=0.82).tolist()) == {0, 1}


def test_temperature_zero_is_argmax_whatever_the_filters():
  logits = jax.random.normal(jax.random.PRNGKey(0), (16, 30))
  for kw in ({}, {'top_k': 5}, {'top_p': 0.3}):
    ids = generate.sample_logits(logits, jax.random.PRNGKey(1), 0.0, **kw)
    np.testing.assert_array_equal(ids, np.argmax(logits, axis=-1))


# Seeds ------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_sample_and_other_seeds_differ():
  model = descending_from_next_lm(50)
  draw = lambda seed, n: generate.sample(
      model, np.ones((n, 1)), 40, jax.random.PRNGKey(seed))
  first = draw(7, 3)
  np.testing.assert_array_equal(first, draw(7, 3))
  assert not np.array_equal(first, draw(8, 3))
  assert not np.array_equal(first[0], first[1])  # Rows draw their own noise.
  np.testing.assert_array_equal(first[:1], draw(7, 1))  # Row 0 ignores S.
  shorter = generate.sample(model, np.ones((3, 1)), 15, jax.random.PRNGKey(7))
  np.testing.assert_array_equal(shorter, first[:, :15])  # Length neither.


# Trained run directories ----------------------------------------------------------

NO_EXACT_EVAL = ['train.exact_eval_every = 0']


@pytest.fixture(scope='module')
def char_run(train_tiny_run):
  """A character-level GRU trained 2 steps on lines of the tiny Shakespeare.

  Its config.gin says RecurrentLM.carry_state = False (lines start from zeros);
  generation must still carry the state from the prompt on.
  """
  return train_tiny_run('shakespeare_gru.gin', NO_EXACT_EVAL)


@pytest.fixture(scope='module')
def nplm_run(train_tiny_run):
  """A word-level NPLM trained 2 steps on the tiny PTB."""
  return train_tiny_run('ptb_nplm.gin', NO_EXACT_EVAL)


def _allclose_trees(a, b):
  a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(a) == len(b) and a
  for x, y in zip(a, b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('which,prompt', [('char_run', 'All:\nSpeak'),
                                          ('nplm_run', 'the cat sees the')])
def test_priming_equals_running_the_prompt_through_the_model_in_eval_mode(
    which, prompt, request):
  run = trained.Run(request.getfixturevalue(which))
  ids, _ = inference.encode_prompt(run.vocab, prompt)
  primer = np.concatenate([[run.vocab.eos_id], ids]).astype(np.int32)[None]
  eval_model = run.model(mode='eval', batch_size=1, seq_len=primer.shape[1])
  expected_logits, expected_state = eval_model.pure_fn(
      primer, eval_model.weights, eval_model.state, jax.random.PRNGKey(0))
  model = run.model(mode='predict', batch_size=1, seq_len=1)
  logits, state = jax.jit(lambda w, s, p: generate.prime(
      inference.pure_forward(model), w, s, p))(
      model.weights, model.state, primer)
  np.testing.assert_allclose(logits, expected_logits[:, -1], rtol=1e-5,
                             atol=1e-5)
  _allclose_trees(state, expected_state)

  # Greedy continuation = the argmax of the eval model over the whole text.
  generated = generate.sample(model, primer, 12, jax.random.PRNGKey(0),
                              temperature=0.0)
  text = np.concatenate([primer, generated], axis=1)
  eval_model = run.model(mode='eval', batch_size=1, seq_len=text.shape[1])
  all_logits, _ = eval_model.pure_fn(text, eval_model.weights,
                                     eval_model.state, jax.random.PRNGKey(0))
  after_prompt = np.asarray(all_logits[0, primer.shape[1] - 1:-1])  # (12, V)
  picked = np.take_along_axis(after_prompt, generated.T, axis=-1)[:, 0]
  np.testing.assert_allclose(picked, after_prompt.max(-1), atol=1e-4)


def test_char_generation_continues_the_prompt_and_repeats_by_seed(char_run):
  run = trained.Run(char_run)
  samples = generate.generate(run, 'All:', length=30, num_samples=2, seed=3)
  assert len(samples) == 2 and all(s.startswith('All:') for s in samples)
  assert all(len(s) == 4 + 30 for s in samples)
  assert generate.generate(run, 'All:', length=30, num_samples=2,
                           seed=3) == samples
  assert generate.generate(run, 'All:', length=30, num_samples=2,
                           seed=4) != samples
  cut = generate.generate(run, '', length=30, num_samples=4, seed=3,
                          temperature=0.0, stop_at_eos=True)
  assert all('\n' not in s for s in cut)


def test_word_generation_maps_unknown_words_and_detokenizes(nplm_run, capsys):
  run = trained.Run(nplm_run)
  (text,) = generate.generate(run, 'The cat zzyzx', length=10, seed=0,
                              stop_at_eos=True)
  assert text.startswith('The cat <unk>')  # 'The' is read as 'the'.
  assert '\n' not in text and '<pad>' not in text
  err = capsys.readouterr().err
  assert "1 prompt word(s) not in the vocabulary are read as <unk>: 'zzyzx'" \
      in err


def test_detokenize_joins_clitics_and_capitalizes_sentences():
  assert (generate.detokenize("i do n't know if it 's $ N\nthe cat 's toy .")
          == "I don't know if it's $N\nThe cat's toy.")
  assert generate.detokenize('<unk> said mr. <unk>') == '<unk> said mr. <unk>'


def test_cut_at_eos():
  np.testing.assert_array_equal(generate.cut_at_eos([4, 5, 2, 6, 2], 2),
                                [4, 5])
  np.testing.assert_array_equal(generate.cut_at_eos([4, 5], 2), [4, 5])


# Bad input --------------------------------------------------------------------------

@pytest.mark.parametrize('options,flag', [
    ({'length': 0}, '--length'), ({'temperature': -0.5}, '--temperature'),
    ({'temperature': float('nan')}, '--temperature'), ({'top_k': 0}, '--top_k'),
    ({'top_p': 0.0}, '--top_p'), ({'top_p': 1.5}, '--top_p'),
    ({'num_samples': 0}, '--num_samples')])
def test_bad_options_are_user_errors(options, flag):
  kwargs = dict(length=10, temperature=1.0, top_k=None, top_p=None,
                num_samples=1)
  kwargs.update(options)
  with pytest.raises(UserError, match=flag):
    generate.check_options(**kwargs)
  if flag != '--num_samples':  # A sampler does not know S before a call.
    del kwargs['num_samples']
    with pytest.raises(UserError, match=flag):
      generate.make_sampler(next_id_lm(5), **kwargs)


def test_unknown_prompt_characters_are_an_error_naming_them(char_run):
  run = trained.Run(char_run)
  with pytest.raises(UserError, match=r"2 character\(s\).*'Z', 'é'"):
    generate.generate(run, 'All: Zé', length=5)


def test_unknown_prompt_characters_are_read_as_unk_with_one_warning(
    char_run, tmp_path, capsys):
  run_dir = tmp_path / 'run'
  shutil.copytree(char_run, run_dir)
  # A vocabulary with <unk> (as when the held-out splits have characters
  # the train split lacks), of the same size: its last character becomes
  # <unk>.
  saved = json.loads((run_dir / 'vocab.json').read_text())
  lost = saved['tokens'][-1]
  saved['tokens'][-1] = '<unk>'
  (run_dir / 'vocab.json').write_text(json.dumps(saved))
  run = trained.Run(run_dir)
  (text,) = generate.generate(run, f'All: Z{lost}éZ', length=5, seed=0)
  assert text.startswith(f'All: Z{lost}éZ') and len(text) == 9 + 5
  warnings = [line for line in capsys.readouterr().err.splitlines()
              if 'warning' in line]
  assert warnings == [
      "warning: 4 prompt char(s) not in the vocabulary are read as <unk>: "
      f"'Z', {lost!r}, 'é'"]


def test_a_checkpoint_that_does_not_fit_its_config_is_a_user_error(char_run,
                                                                    tmp_path):
  broken = tmp_path / 'broken'
  shutil.copytree(char_run, broken)
  gin_path = broken / 'config.gin'
  text = gin_path.read_text()
  assert 'RecurrentLM.d_model = 16' in text
  gin_path.write_text(text.replace('RecurrentLM.d_model = 16', 'RecurrentLM.d_model = 24'))
  with pytest.raises(UserError, match='does not fit|cannot load'):
    generate.generate(trained.Run(broken), 'All:', length=5)


# Command line -----------------------------------------------------------------------

def test_the_command_line_prints_separated_samples(char_run, capsys):
  generate.main(['--output_dir', str(char_run), '--prompt', 'All:',
                 '--length', '12', '--num_samples', '2', '--seed', '9',
                 '--top_k', '5', '--top_p', '0.9', '--temperature', '0.8'])
  captured = capsys.readouterr()
  lines = captured.out.split('=== sample ')
  assert lines[0] == '' and len(lines) == 3
  assert lines[1].startswith('1/2 ===\nAll:') and lines[2].startswith(
      '2/2 ===\nAll:')
  assert 'seed 9' in captured.err
  with pytest.raises(SystemExit):  # This run kept no best checkpoint.
    generate.main(['--output_dir', str(char_run), '--checkpoint', 'best'])
  assert 'has no best checkpoint' in capsys.readouterr().err


@pytest.mark.parametrize('argv,message', [
    (['--length', '-3'], '--length must be >= 1'),
    (['--prompt', 'Zé'], "'Z', 'é'"),
    (['--seed', str(2**32)], '--seed must be in [0, 2**32)')])
def test_command_line_errors_are_one_line_exit_2(char_run, argv, message,
                                                 capsys):
  with pytest.raises(SystemExit) as exit_info:
    generate.main(['--output_dir', str(char_run)] + argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith('error: ') and message in err[-1]
