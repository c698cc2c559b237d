"""lm_trax.load: the README's snippet runs, and agrees with the commands."""

import pathlib
import re

import numpy as np
import pytest

import lm_trax
from lm_trax import evaluate
from lm_trax import score
from lm_trax.errors import UserError
from conftest import ADAM_6_STEPS  # pylint: disable=g-bad-import-order


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


@pytest.fixture(scope='module')
def char_run(train_tiny_run):
  """A character-level run whose vocabulary has no <unk>: the tiny
  Shakespeare's held-out text has no character its train text lacks."""
  return train_tiny_run('shakespeare_lstm.gin', ADAM_6_STEPS)


# Each public method given an argument of the wrong type or value, and the
# parameter its message must name as the API spells it.
_CACHE = dict(size=20, theta=0.5, lam=0.2)
_WRONG_ARGUMENTS = [
    ('perplexity', dict(text=5), 'text'),
    ('perplexity', dict(text=b'the cat\n'), 'text'),
    ('perplexity', dict(text=''), 'text'),
    ('perplexity', dict(text='the cat\n', batch_size=0), 'batch_size'),
    ('perplexity', dict(text='the cat\n', batch_size=1.5), 'batch_size'),
    ('perplexity', dict(split='valid', data_dir=5), 'data_dir'),
    ('perplexity', dict(text='the cat\n', cache=dict(_CACHE, size=0)),
     "cache['size']"),
    ('perplexity', dict(text='the cat\n', cache=dict(_CACHE, lam=1.5)),
     "cache['lam']"),
    ('perplexity', dict(text='the cat\n', dynamic=dict(rule='adam', lr=0.1)),
     "dynamic['rule']"),
    ('perplexity', dict(text='the cat\n', dynamic=dict(rule='sgd', lr=-1.0)),
     "dynamic['lr']"),
    ('perplexity', dict(text='the cat\n', dynamic=dict(
        rule='rms', lr=1.0, statistics_tokens=0)),
     "dynamic['statistics_tokens']"),
    ('score', dict(lines=[1, 2]), 'lines'),
    ('score', dict(lines=5), 'lines'),
    ('score', dict(lines=[b'the cat']), 'lines'),
    ('score', dict(lines=['the cat'], skip_unknown='yes'), 'skip_unknown'),
    ('next_tokens', dict(prompt='the', k=0), 'k'),
    ('next_tokens', dict(prompt='the', k='3'), 'k'),
    ('next_tokens', dict(prompt='the', k=1.5), 'k'),
    ('next_tokens', dict(prompt=5), 'prompt'),
    ('generate', dict(prompt=['the']), 'prompt'),
    ('generate', dict(length=0), 'length'),
    ('generate', dict(length='5'), 'length'),
    ('generate', dict(temperature=-1.0), 'temperature'),
    ('generate', dict(temperature='1'), 'temperature'),
    ('generate', dict(seed=-1), 'seed'),
    ('generate', dict(seed=1.5), 'seed'),
    ('generate', dict(seed=None), 'seed'),
    ('generate', dict(num_samples=0), 'num_samples'),
    ('generate', dict(top_k=0), 'top_k'),
    ('generate', dict(top_k=1.5), 'top_k'),
    ('generate', dict(top_p=1.5), 'top_p'),
    ('generate', dict(stop_at_eos='yes'), 'stop_at_eos'),
    ('encode', dict(text=5), 'text'),
    ('encode', dict(text=b'the cat'), 'text'),
    ('decode', dict(ids=[999999]), 'ids'),
    ('decode', dict(ids=[-1]), 'ids'),
    ('decode', dict(ids=[1.5]), 'ids'),
    ('decode', dict(ids='the'), 'ids'),
    ('decode', dict(ids=None), 'ids'),
]


def _assert_names_the_parameter(error, parameter):
  message = str(error.value)
  assert '\n' not in message
  assert re.search(rf'(^|\W){re.escape(parameter)}(\W|$)', message), message
  assert '--' not in message, message


@pytest.mark.parametrize(
    'method, arguments, parameter', _WRONG_ARGUMENTS,
    ids=[f'{m}-{i}' for i, (m, _, _) in enumerate(_WRONG_ARGUMENTS)])
def test_wrong_arguments_are_one_line_errors_naming_the_parameter(
    word_run, use_tiny_data, method, arguments, parameter):
  lm = lm_trax.load(word_run)
  with pytest.raises(UserError) as error:
    getattr(lm, method)(**arguments)
  _assert_names_the_parameter(error, parameter)


@pytest.mark.parametrize('arguments, parameter', [
    (dict(output_dir=5), 'output_dir'), (dict(checkpoint=2.5), 'checkpoint'),
    (dict(precision='fp16'), 'precision')])
def test_wrong_arguments_to_load_name_the_parameter(word_run, arguments,
                                                    parameter):
  arguments = dict(dict(output_dir=word_run), **arguments)
  with pytest.raises(UserError) as error:
    lm_trax.load(**arguments)
  _assert_names_the_parameter(error, parameter)


@pytest.mark.parametrize('method, arguments, parameter', [
    ('perplexity', dict(text='Zounds\n'), 'text'),
    ('encode', dict(text='Zounds\n'), 'text'),
    ('score', dict(lines=['Zounds']), 'skip_unknown=True'),
    ('next_tokens', dict(prompt='Zounds'), 'prompt'),
    ('generate', dict(prompt='Zounds', length=2), 'prompt')])
def test_unknown_characters_name_the_api_way_to_deal_with_them(
    char_run, method, arguments, parameter):
  lm = lm_trax.load(char_run)
  assert not lm.vocab.knows('Z') and lm.vocab.unk_id is None
  with pytest.raises(UserError, match="'Z'") as error:
    getattr(lm, method)(**arguments)
  _assert_names_the_parameter(error, parameter)
  if method != 'score':  # Only score() can skip them.
    assert 'skip' not in str(error.value)


def test_score_takes_any_iterable_of_lines(word_run):
  lm = lm_trax.load(word_run)
  lines = ['the cat sees the ball', 'a dog likes a tree']
  assert lm.score(line for line in lines) == lm.score(lines)
