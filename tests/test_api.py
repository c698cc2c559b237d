"""lm_trax.load: the README's snippet runs, and agrees with the commands."""

import pathlib
import re

import numpy as np
import pytest

import lm_trax
from lm_trax import evaluate
from lm_trax import score
from lm_trax.errors import UserError


REPO = pathlib.Path(__file__).resolve().parent.parent


def _readme_snippet():
  readme = (REPO / 'README.md').read_text()
  section = readme.split('## Python API', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_the_readme_snippet_runs(word_run, use_tiny_data, capsys):
  snippet = _readme_snippet().replace("'runs/ptb_lstm'", repr(str(word_run)))
  exec(compile(snippet, 'README.md', 'exec'), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  assert lm_trax.__version__ in printed


def test_the_api_gives_the_commands_numbers(word_run, use_tiny_data):
  lm = lm_trax.load(word_run)
  assert lm.perplexity(split='valid').loss == pytest.approx(
      evaluate.evaluate(word_run, 'valid', progress=False).loss, rel=1e-6)
  lines = ['the cat sees the ball', 'the ball sees the cat']
  assert [s.logprob for s in lm.score(lines)] == [
      s.logprob for s in score.score_lines(lm.run, lines)]
  probabilities = [p for _, p in lm.next_tokens('the cat', k=3)]
  assert probabilities == sorted(probabilities, reverse=True)
  assert len(lm.generate('the cat', length=5, seed=3, num_samples=2)) == 2
  np.testing.assert_array_equal(lm.encode('the cat\n'),
                                lm.vocab.encode('the cat\n'))
  assert lm.decode(lm.encode('the cat\n')).strip() == 'the cat'


def test_wrong_input_is_a_clear_error(word_run):
  lm = lm_trax.load(word_run)
  with pytest.raises(UserError, match='one of split= or text='):
    lm.perplexity()
  with pytest.raises(UserError, match='a list of lines, got one string'):
    lm.score('the cat sees the ball')
  with pytest.raises(UserError, match='has no checkpoint at step 12345'):
    lm_trax.load(word_run, checkpoint=12345)
