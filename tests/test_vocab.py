import numpy as np
import pytest

from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError

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
