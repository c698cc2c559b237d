import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent
TRAIN = 'the cat sat\nthe dog sat on the mat\n'


def test_word_vocab_layout_and_round_trip(tmp_path):
  vocab = vocab_lib.build(TRAIN, 'word')
  assert vocab.tokens[:3] == ['<pad>', '<unk>', '<eos>']
  assert vocab.tokens[3] == 'the'  # Most frequent first.
  assert vocab.size == 3 + 6
  ids = vocab.encode('the cat sat on the mat\n')
  assert ids.dtype == np.int32
  assert vocab.decode(ids) == 'the cat sat on the mat\n'
  vocab.save(tmp_path)
  assert vocab_lib.Vocab.load(tmp_path) == vocab


def test_unknown_words_map_to_unk_and_are_counted():
  vocab = vocab_lib.build(TRAIN, 'word')
  ids = vocab.encode('the zebra sat\n')
  assert list(ids) == [vocab.ids['the'], vocab.unk_id, vocab.ids['sat'],
                       vocab.eos_id]
  assert vocab.count_unknown('the zebra ate\n') == 2


def test_ptb_style_unk_and_eos_are_not_duplicated():
  vocab = vocab_lib.build('a <unk> b\n<unk> a\n', 'word')
  assert vocab.tokens.count('<unk>') == 1 and vocab.tokens.count('<eos>') == 1
  assert vocab.size == 5


def test_char_vocab_has_the_characters_that_occur():
  vocab = vocab_lib.build('abca\nb', 'char')
  assert vocab.tokens == ['<pad>', '\n', 'a', 'b', 'c']
  assert vocab.eos_id == 1
  assert vocab.decode(vocab.encode('cab\n')) == 'cab\n'


def test_unknown_characters_are_an_error_naming_them():
  vocab = vocab_lib.build('abc', 'char')
  with pytest.raises(UserError, match="'z'"):
    vocab.encode('abz')
  assert list(vocab.encode('abz', unknown='skip')) == list(vocab.encode('ab'))


def test_max_size_keeps_the_most_frequent_words():
  vocab = vocab_lib.build('a a a b b c\n', 'word', max_size=2)
  assert vocab.tokens[3:] == ['a', 'b']
  assert vocab.encode('c\n')[0] == vocab.unk_id


def test_missing_vocab_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='vocab.json'):
    vocab_lib.Vocab.load(tmp_path)


def test_unseen_held_out_characters_get_an_unknown_id():
  vocab = vocab_lib.build('abc\n', 'char', held_out=['abz\n', 'q'])
  assert vocab.tokens == ['<pad>', '\n', 'a', 'b', 'c', '<unk>']
  ids = vocab.encode('azq', unknown='map')
  assert list(ids) == [vocab.ids['a'], vocab.unk_id, vocab.unk_id]
  assert vocab.count_unknown('azq') == 2
  # Held-out text with no new character leaves the vocabulary as it was.
  assert vocab_lib.build('abc\n', 'char', held_out=['cab\n']).tokens == [
      '<pad>', '\n', 'a', 'b', 'c']


def test_a_capitalized_word_is_read_as_its_lowercase_form_everywhere():
  vocab = vocab_lib.build('the stock fell\n', 'word')
  assert list(vocab.encode('The Stock rose')) == [
      vocab.ids['the'], vocab.ids['stock'], vocab.unk_id, vocab.eos_id]
  assert vocab.count_unknown('The Stock rose') == 1
  assert vocab.knows('The') and not vocab.knows('rose')


# Subwords ---------------------------------------------------------------------

SUBWORD_TRAIN = ('First Citizen:\nBefore we proceed any further, hear me '
                 'speak.\n\nAll:\nSpeak, speak.\n\n') * 20


@pytest.fixture(scope='module')
def subwords():
  return vocab_lib.build(SUBWORD_TRAIN, 'subword', target_size=60)


def test_subword_layout_and_size(subwords):
  assert subwords.level == 'subword'
  assert subwords.tokens[:2] == ['<pad>', '<eos>'] and subwords.eos_id == 1
  assert subwords.unk_id is None
  assert 'speak_' in subwords.ids  # A whole word learned as one subword.
  # The nearest size to the target that the little text allows.
  assert 50 <= subwords.size <= 70


@pytest.mark.parametrize('text', [
    'Speak, speak.\n',
    'First Citizen:\n\nAll:\n',  # Blank lines.
    '  Before  we, proceed\t(any) further?! \n',  # Runs of spaces, a tab.
    'Zounds, a quixotic jabberwock\n',  # Words never seen in training.
    'café — naïve «quotes» 🙂 日本\n',  # Characters never seen either.
    'snake_case \\ back\\slash \\65; <eos> <pad> <unk>',  # Escapes; no '\n'.
    '', '\n', '\n\n', 'a', ' ', '\r\n',
])
def test_subword_decode_gives_back_any_text(subwords, text):
  ids = subwords.encode(text)
  assert ids.dtype == np.int32 and (ids > 0).all()
  assert subwords.decode(ids) == text
  assert list(ids).count(subwords.eos_id) == text.count('\n')
  assert subwords.count_unknown(text) == 0


def test_subword_save_and_load_encode_identically(subwords, tmp_path):
  subwords.save(tmp_path)
  loaded = vocab_lib.Vocab.load(tmp_path)
  assert isinstance(loaded, vocab_lib.SubwordVocab) and loaded == subwords
  assert (loaded.target_size, loaded.train_sha256) == (
      60, subwords.train_sha256)
  text = SUBWORD_TRAIN[:200] + 'Zounds, café 🙂 snake_case\n'
  np.testing.assert_array_equal(loaded.encode(text), subwords.encode(text))
  assert loaded.decode(subwords.encode(text)) == text


def test_subword_building_is_deterministic_across_processes(subwords):
  # trax iterates over sets of strings, whose order changes with the hash
  # seed of the process: the vocabulary must not.
  code = ('import json, sys; from lm_trax import vocab; '
          'print(json.dumps(vocab.build(sys.stdin.read(), "subword", '
          'target_size=60).tokens))')
  env = dict(os.environ, PYTHONHASHSEED='12345', PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, '-c', code], input=SUBWORD_TRAIN,
                       capture_output=True, text=True, env=env, check=True)
  assert json.loads(out.stdout.strip().splitlines()[-1]) == subwords.tokens


def test_subword_vocab_is_learned_from_the_train_split_only(tmp_path):
  from lm_trax import corpora  # pylint: disable=g-import-not-at-top
  from lm_trax import training  # pylint: disable=g-import-not-at-top
  (tmp_path / 'train.txt').write_text(SUBWORD_TRAIN)
  # 'q' and 'quixotic' are only in valid and test.
  (tmp_path / 'valid.txt').write_text('quixotic quarrels\n' * 50)
  (tmp_path / 'test.txt').write_text('quixotic quips\n' * 50)
  corpus = corpora.Corpus(str(tmp_path), level='subword', vocab_size=60)
  vocab = training.prepare_vocab(tmp_path / 'run', corpus,
                                 corpus.text('train'),
                                 held_out=corpus.held_out_texts())
  assert vocab == vocab_lib.build(SUBWORD_TRAIN, 'subword', target_size=60)
  assert not any('q' in token for token in vocab.tokens)
  assert vocab_lib.Vocab.load(tmp_path / 'run') == vocab
  assert vocab.decode(vocab.encode('quixotic quips\n')) == 'quixotic quips\n'


def test_a_resumed_subword_run_reuses_its_vocabulary_unless_the_text_changed(
    subwords, tmp_path, monkeypatch):
  from lm_trax import corpora  # pylint: disable=g-import-not-at-top
  from lm_trax import training  # pylint: disable=g-import-not-at-top
  corpus = corpora.Corpus(str(tmp_path), level='subword', vocab_size=60)
  subwords.save(tmp_path / 'run')
  def no_building(*unused_args, **unused_kwargs):
    raise AssertionError('built again')
  monkeypatch.setattr(vocab_lib, 'build_subwords', no_building)
  assert training.prepare_vocab(tmp_path / 'run', corpus,
                                SUBWORD_TRAIN) == subwords
  monkeypatch.undo()
  with pytest.raises(UserError, match='different vocabulary'):
    training.prepare_vocab(tmp_path / 'run', corpus, 'Other text.\n' * 20)


def test_lengths_count_the_decoded_characters_and_words_with_line_ends(
    subwords):
  words = vocab_lib.build(TRAIN, 'word')
  # Decoded: 'the cat sat\nthe <unk>\n': 11 + 1 + 9 + 1 characters.
  assert words.lengths(words.encode(' the  cat sat \nthe zebra\n')) == (22, 7)
  # An <unk> character is one character.
  chars = vocab_lib.build('abc\n', 'char', held_out=['z'])
  assert chars.lengths(chars.encode('ab\nz\n', unknown='map')) == (5, 4)
  text = 'Speak,  speak.\nAll:'
  assert subwords.lengths(subwords.encode(text)) == (len(text), 4)


def test_a_spelled_text_counts_its_own_characters_and_words():
  # Character-level PTB: symbols read at word level, '_' between words.
  spelled = vocab_lib.build(' t h e _ c a t\n a _ d o g\n', 'word')
  assert spelled.spelled
  # 'the cat\na dog\n': 8 + 6 characters, 2 + 2 words and 2 line ends.
  assert spelled.lengths(spelled.encode(' t h e _ c a t\n a _ d o g\n')) == (
      14, 6)
  # One-letter words without the spelling's '_' are words.
  letters = vocab_lib.build('a b c\n', 'word')
  assert not letters.spelled
  assert letters.lengths(letters.encode('a b c\n')) == (6, 4)
  assert not vocab_lib.build('t h e _ c a t\n', 'char').spelled
