"""Exact evaluation and scoring against brute-force per-token computations."""

import json
import math
import re

import jax
import numpy as np
import pytest

from lm_trax import corpora
from lm_trax import evaluate
from lm_trax import evaluation
from lm_trax import inference
from lm_trax import run_dir
from lm_trax import score
from lm_trax import trained
from lm_trax.errors import UserError

from conftest import ADAM_6_STEPS, tiny_sentences  # pylint: disable=g-bad-import-order


@pytest.fixture(scope='module')
def char_run(train_tiny_run):
  return train_tiny_run('shakespeare_lstm.gin', ADAM_6_STEPS)


@pytest.fixture(scope='module')
def nplm_run(train_tiny_run):
  return train_tiny_run('ptb_nplm.gin', ADAM_6_STEPS)


def _brute_force_log_probs(run, ids):
  """log p(ids[t] | eos, ids[:t]), each from a fresh run over the prefix."""
  inputs = np.concatenate([[run.vocab.eos_id], ids]).astype(np.int32)
  result = []
  for t in range(len(ids)):
    prefix = inputs[None, :t + 1]
    model = run.model(mode='eval', batch_size=1, seq_len=prefix.shape[1])
    logits, _ = model.pure_fn(prefix, model.weights, model.state,
                              jax.random.PRNGKey(0))
    result.append(float(jax.nn.log_softmax(logits[0, -1])[ids[t]]))
  return np.array(result)


class _QueuedResult:
  """Stands for a compiled call's output: records when it is waited for."""

  def __init__(self, k, events):
    self.k, self.events = k, events

  def block_until_ready(self):
    self.events.append(('computed', self.k))
    return self


def test_progress_counts_a_call_once_it_is_computed():
  events = []
  reporter = inference.CompletedProgress(
      lambda n: events.append(('reported', n)))
  for k in range(3):
    events.append(('queued', k))
    reporter.queued(_QueuedResult(k, events), 10 * (k + 1))
  reporter.finish()
  # Call k is reported after it is computed, and waited for only once call
  # k + 1 is queued.
  assert events == [('queued', 0), ('queued', 1), ('computed', 0),
                    ('reported', 10), ('queued', 2), ('computed', 1),
                    ('reported', 20), ('computed', 2), ('reported', 30)]
  # Without a progress callable nothing is waited for.
  quiet = []
  inference.CompletedProgress(None).queued(_QueuedResult(0, quiet), 5)
  assert not quiet


def test_stream_progress_reports_every_token_once(word_run):
  ids = trained.Run(word_run).vocab.encode('the cat sees the ball\n' * 3)
  reported = []
  trained.Run(word_run).predictor().stream_log_probs(
      ids, chunk_len=7, progress=reported.append)
  assert reported == [7] * (len(ids) // 7) + (
      [len(ids) % 7] if len(ids) % 7 else [])


@pytest.mark.parametrize('which', ['word_run', 'nplm_run'])
def test_stream_log_probs_equal_brute_force(which, request):
  run = trained.Run(request.getfixturevalue(which))
  ids = run.vocab.encode('the cat sees the ball\na dog likes a tree\n')
  fast = run.predictor().stream_log_probs(ids, chunk_len=5)
  np.testing.assert_allclose(fast, _brute_force_log_probs(run, ids),
                             rtol=1e-5, atol=1e-5)


def test_perplexity_does_not_depend_on_the_batch_size(word_run):
  results = [evaluate.evaluate(word_run, 'test', batch_size=b, progress=False)
             for b in (1, 3, 20)]
  assert len({r.tokens for r in results}) == 1
  assert results[0].tokens == 100 * 6  # 100 lines of 5 words + <eos>.
  for r in results[1:]:
    assert r.loss == pytest.approx(results[0].loss, rel=1e-5)


def test_word_results_report_bits_per_character_and_per_word(word_run):
  result = evaluate.evaluate(word_run, 'test', progress=False)
  # The tiny test split: 100 lines ' <sentence> \n'; they decode to the
  # words joined by single spaces, each line ending in '\n'.
  characters = sum(len(line) + 1 for line in tiny_sentences(100))
  assert (result.characters, result.words) == (characters, 600)
  assert result.nats == pytest.approx(result.loss * 600)
  assert result.bpc == pytest.approx(result.nats / (characters * math.log(2)))
  assert result.word_ppl == pytest.approx(result.ppl)  # W = N at word level.
  assert result.line() == (
      f'split=test tokens=600 loss={result.loss:.4f} ppl={result.ppl:.2f} '
      f'bpc={result.bpc:.4f} word_ppl={result.word_ppl:.2f}')


def test_training_validation_reports_the_bpc_evaluate_reports(word_run):
  # One definition of bpc: the exact validation during training (console,
  # metrics.jsonl, TensorBoard) divides by the characters the words stand
  # for, as evaluate does, not by the tokens.
  valid = [r for r in run_dir.MetricsLog.read(word_run)
           if r['kind'] == 'valid']
  last = max(valid, key=lambda r: r['step'])
  result = evaluate.evaluate(word_run, 'valid', progress=False)
  assert last['step'] == 6  # The last step: the latest checkpoint's weights.
  assert last['loss'] == pytest.approx(result.loss, rel=1e-5)
  assert last['bpc'] == pytest.approx(result.bpc, rel=1e-5)
  assert result.bpc < result.loss / math.log(2) / 2  # Words have characters.


def test_char_results_report_bits_per_character(char_run, tiny_data_dir):
  result = evaluate.evaluate(char_run, 'valid', progress=False)
  text = corpora.Corpus('tinyshakespeare', data_dir=tiny_data_dir).text(
      'valid')
  assert result.level == 'char' and result.characters == result.tokens
  assert result.bpc == pytest.approx(result.loss / math.log(2))
  assert result.words == len(text.split()) + text.count('\n')
  assert result.word_ppl == pytest.approx(
      math.exp(result.nats / result.words))
  assert result.line().startswith(f'split=valid tokens={result.tokens} ')
  assert f'bpc={result.bpc:.4f} word_ppl={result.word_ppl:.2f}' in (
      result.line())


def test_character_ptb_reports_bits_per_symbol_and_ptb_words(
    train_tiny_run):
  # Character-level PTB spells its text out (' t h e _ c a t \n'): each
  # symbol, '_' and <eos> included, is one character of the text, so bpc is
  # loss / ln 2 as every published number is (not bits per character of the
  # file, which puts a space between symbols), in training's validation as in
  # evaluate; its words are PTB's words plus one <eos> per line.
  output_dir = train_tiny_run('ptb_char_lstm.gin', ADAM_6_STEPS)
  result = evaluate.evaluate(output_dir, 'valid', progress=False)
  lines = tiny_sentences(100)
  assert result.tokens == sum(len(line) + 1 for line in lines)
  assert result.characters == result.tokens
  assert result.bpc == pytest.approx(result.loss / math.log(2))
  assert result.words == sum(len(line.split()) + 1 for line in lines)
  valid = [r for r in run_dir.MetricsLog.read(output_dir)
           if r['kind'] == 'valid']
  assert max(valid, key=lambda r: r['step'])['bpc'] == pytest.approx(
      result.bpc, rel=1e-5)


def test_line_trained_runs_are_scored_line_by_line(train_tiny_run, tmp_path):
  output_dir = train_tiny_run('shakespeare_gru.gin', ADAM_6_STEPS, tmp_path)
  run = trained.Run(output_dir)
  text = 'All:\nSpeak, speak.\n\nAll:\n'
  result = evaluation.evaluate_text(run, text, 'valid', progress=False)
  lines = score.score_lines(run, ['All:', 'Speak, speak.', 'All:'])
  assert result.tokens == sum(s.tokens for s in lines) == 5 + 14 + 5
  # The blank line is not scored: neither are its characters and words.
  assert (result.characters, result.words) == (24, 2 + 3 + 2)
  assert result.loss == pytest.approx(
      -sum(s.logprob for s in lines) / result.tokens, rel=1e-5)


def test_a_lines_score_is_the_sum_of_its_token_log_probs(word_run):
  run = trained.Run(word_run)
  line = 'the bird finds some food'
  (scored,) = score.score_lines(run, [line])
  ids = run.vocab.encode(line + '\n')
  assert scored.tokens == len(ids) == 6
  assert scored.logprob == pytest.approx(
      _brute_force_log_probs(run, ids).sum(), rel=1e-5)
  assert scored.ppl == pytest.approx(math.exp(-scored.logprob / 6))


def test_top_k_next_tokens_follow_the_models_distribution(word_run):
  run = trained.Run(word_run)
  best = score.next_tokens(run, 'the cat', top_k=4)
  assert len(best) == 4
  probs = [p for _, p in best]
  assert probs == sorted(probs, reverse=True)
  ids = np.array([run.vocab.eos_id] + list(run.vocab.encode_tokens(
      ['the', 'cat'])), np.int32)[None]
  model = run.model(mode='eval', batch_size=1, seq_len=3)
  logits, _ = model.pure_fn(ids, model.weights, model.state,
                            jax.random.PRNGKey(0))
  expected = np.asarray(jax.nn.softmax(logits[0, -1]))
  for token, prob in best:
    assert prob == pytest.approx(float(expected[run.vocab.ids[token]]),
                                 rel=1e-5)
  others = [i for i in range(1, run.vocab.size)
            if run.vocab.tokens[i] not in dict(best)]
  assert expected[others].max() <= min(probs) + 1e-7


def test_unknown_words_map_to_unk_and_unknown_chars_are_errors(word_run,
                                                               char_run):
  (scored,) = score.score_lines(trained.Run(word_run), ['the zebra sees'])
  assert scored.unknown == 1 and scored.tokens == 4
  char = trained.Run(char_run)
  with pytest.raises(UserError, match="'Z'"):
    score.score_lines(char, ['Zounds'])
  (skipped,) = score.score_lines(char, ['Zounds'], skip_unknown=True)
  assert skipped.tokens < len('Zounds\n')


def test_the_score_command_names_its_flag_to_skip_unknown_characters(
    char_run, tmp_path, capsys):
  text = tmp_path / 'lines.txt'
  text.write_text('Zounds\n')
  with pytest.raises(SystemExit) as exit_info:
    score.main(['--output_dir', str(char_run), str(text)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "'Z'" in err[0] and '(--skip_unknown)' in err[0]


def test_command_lines_print_the_documented_lines(word_run, tmp_path, capsys):
  evaluate.main(['--output_dir', str(word_run), '--split', 'valid'])
  printed = capsys.readouterr()
  last = printed.out.strip().splitlines()[-1]
  assert last.startswith('split=valid tokens=600 loss=') and ' ppl=' in last
  # stderr: the wall time with set-up, and the scoring time, which is part
  # of it, each with its tokens/s.
  match = re.search(r'600 tokens in ([\d.]+) s \(([\d,]+) tokens/s including '
                    r'set-up\); scoring ([\d.]+) s \(([\d,]+) tokens/s',
                    printed.err)
  total, total_rate, scoring, scoring_rate = (
      float(g.replace(',', '')) for g in match.groups())
  assert 0 < scoring <= total
  assert scoring_rate >= total_rate
  # Seconds are printed to 0.1 s, the rate from the unrounded seconds.
  assert 600 / (total + 0.05) - 1 <= total_rate <= 600 / max(total - 0.05,
                                                              1e-9) + 1
  text = tmp_path / 'lines.txt'
  text.write_text('the cat sees the ball\na dog likes a tree\n')
  score.main(['--output_dir', str(word_run), str(text), '--json'])
  rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert [r['tokens'] for r in rows] == [6, 6]
  score.main(['--output_dir', str(word_run), '--next', 'the', '--top_k', '3'])
  assert len(capsys.readouterr().out.splitlines()) == 3


def test_bad_arguments_are_one_line_errors(word_run, tmp_path, capsys):
  for argv in (['--output_dir', str(tmp_path / 'none')],
               ['--output_dir', str(word_run), '--batch_size', '0']):
    with pytest.raises(SystemExit) as exit_info:
      evaluate.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')
  with pytest.raises(SystemExit):
    score.main(['--output_dir', str(word_run), '--next', 'the',
                '--top_k', '0'])
  assert 'top_k' in capsys.readouterr().err


def test_the_best_checkpoint_scores_the_best_logged_validation_loss(
    train_tiny_run):
  # Gradient ascent (a negative rate): each exact validation is worse than
  # the one before, so the best checkpoint (step 2) is not the latest (6).
  run = train_tiny_run('ptb_lstm.gin', [
      'train.n_steps = 6', 'train.optimizer = @trax.optimizers.Adam',
      'train.lr_schedule = @constant_lr', 'constant_lr.learning_rate = -0.01',
      'train.exact_eval_every = 2', 'train.eval_every = 2'])
  valid = [r['loss'] for r in run_dir.MetricsLog.read(run)
           if r['kind'] == 'valid']
  assert len(valid) == 3 and valid[0] < valid[1] < valid[2]
  best = evaluate.evaluate(run, 'valid', progress=False, checkpoint='best')
  assert best.loss == pytest.approx(valid[0], abs=1e-4)
  latest = evaluate.evaluate(run, 'valid', progress=False)
  assert latest.loss == pytest.approx(valid[-1], abs=1e-4)


def test_a_checkpoint_is_chosen_by_step_and_a_missing_one_lists_the_others(
    word_run):
  from lm_trax import checkpoints  # pylint: disable=g-import-not-at-top
  steps = checkpoints.saved_steps(word_run)
  assert steps
  run = trained.Run(word_run, steps[-1])
  assert run.checkpoint.parent.name.endswith(f'{steps[-1]:08d}')
  assert trained.Run(word_run, str(steps[-1])).checkpoint == run.checkpoint
  with pytest.raises(UserError, match=r'has no checkpoint at step 99999; it '
                     r'has latest \(step \d+\)'):
    trained.Run(word_run, 99999)
  with pytest.raises(UserError, match="'latest', 'best' or a step number"):
    trained.Run(word_run, 'newest')


def test_scoring_one_string_instead_of_lines_is_a_clear_error(word_run):
  with pytest.raises(UserError, match='a list of lines, got one string'):
    score.score_lines(trained.Run(word_run), 'the cat sees the ball')


def test_two_runs_open_side_by_side_and_leave_gin_as_it_was(
    word_run, train_tiny_run):
  import gin  # pylint: disable=g-import-not-at-top
  gru_run = train_tiny_run('ptb_gru.gin', ADAM_6_STEPS)
  gin.clear_config()
  gin.bind_parameter('RecurrentLM.d_model', 99)  # The caller's own configuration.
  before = gin.config_str()
  lines = ['the cat sees the ball', 'a dog likes the tree']
  first = trained.Run(word_run)
  scores = [s.logprob for s in score.score_lines(first, lines)]
  second = trained.Run(gru_run)
  assert [s.logprob for s in score.score_lines(second, lines)] != scores
  assert [s.logprob for s in score.score_lines(first, lines)] == scores
  assert gin.config_str() == before
  assert gin.query_parameter('RecurrentLM.d_model') == 99
