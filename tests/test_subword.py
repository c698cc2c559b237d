"""A subword-level run end to end: its vocabulary, evaluate, score, generate
and the Python API, all from the run directory."""

import math

import numpy as np
import pytest

import lm_trax
from lm_trax import corpora
from lm_trax import evaluate
from lm_trax import generate
from lm_trax import score
from lm_trax import vocab as vocab_lib

from conftest import ADAM_6_STEPS  # pylint: disable=g-bad-import-order

# Words and characters never trained on.
UNSEEN = 'Zounds, café 🙂 snake_case!\n'


@pytest.fixture(scope='module')
def subword_run(train_tiny_run):
  return train_tiny_run('shakespeare_subword.gin', ADAM_6_STEPS)


@pytest.fixture
def corpus(tiny_data_dir):
  return corpora.Corpus('tinyshakespeare', data_dir=tiny_data_dir)


def test_the_run_saves_the_subword_vocabulary_of_its_train_split(subword_run,
                                                                 corpus):
  saved = vocab_lib.Vocab.load(subword_run)
  assert saved.level == 'subword' and saved.target_size == 4000
  assert saved == vocab_lib.build(corpus.text('train'), 'subword',
                                  target_size=4000)
  assert 'Corpus.vocab_size = 4000' in (subword_run / 'config.gin').read_text()


def test_evaluate_reports_bits_per_character_of_the_text(subword_run, corpus,
                                                          capsys):
  result = evaluate.evaluate(subword_run, 'valid', progress=False)
  text = corpus.text('valid')
  assert result.level == 'subword'
  assert result.tokens == len(lm_trax.load(subword_run).encode(text))
  assert result.characters == len(text) > result.tokens
  assert result.words == len(text.split()) + text.count('\n')
  assert result.bpc == pytest.approx(
      result.loss * result.tokens / (len(text) * math.log(2)))
  assert result.word_ppl == pytest.approx(
      math.exp(result.loss * result.tokens / result.words))
  evaluate.main(['--output_dir', str(subword_run), '--data_dir',
                 str(corpus.data_dir)])
  assert capsys.readouterr().out.strip().splitlines()[-1] == result.line()


def test_score_next_tokens_and_generate_read_the_run(subword_run, capsys):
  lm = lm_trax.load(subword_run)
  lines = ['Speak, speak.', UNSEEN.strip()]
  scores = score.score_lines(lm.run, lines)
  assert [s.tokens for s in scores] == [len(lm.encode(l + '\n'))
                                        for l in lines]
  assert all(s.unknown == 0 and np.isfinite(s.logprob) for s in scores)
  best = lm.next_tokens('All:\nSpeak', k=3)
  assert len(best) == 3 and all(token in lm.vocab.ids for token, _ in best)
  samples = lm.generate('All:\n', length=12, seed=1, num_samples=2)
  assert len(samples) == 2 and all(s.startswith('All:\n') for s in samples)
  assert samples == lm.generate('All:\n', length=12, seed=1, num_samples=2)
  generate.main(['--output_dir', str(subword_run), '--prompt', UNSEEN,
                 '--length', '5', '--seed', '0'])
  assert capsys.readouterr().out.startswith(UNSEEN)


def test_the_api_encodes_losslessly_and_agrees_with_evaluate(subword_run):
  lm = lm_trax.load(subword_run)
  text = 'First Citizen:\nSpeak, speak.\n' + UNSEEN
  assert lm.decode(lm.encode(text)) == text
  result = lm.perplexity(text=text)
  assert result.tokens == len(lm.encode(text))
  assert result.characters == len(text)
  (line,) = lm.score([UNSEEN.strip()])
  assert line.logprob == pytest.approx(
      -lm.perplexity(text=UNSEEN).nats, rel=1e-5)
