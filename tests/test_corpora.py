import pytest

from lm_trax import corpora
from lm_trax import tfds_text
from lm_trax.errors import UserError


def test_known_corpora_read_from_the_data_dir(use_tiny_data):
  ptb = corpora.Corpus('ptb', download=False)
  assert ptb.level == 'word'
  assert ptb.text('valid').startswith(' the cat sees')
  bard = corpora.Corpus('tinyshakespeare', download=False)
  assert bard.level == 'char'
  whole = (use_tiny_data / 'tinyshakespeare' / 'input.txt').read_text()
  train, valid = bard.text('train'), bard.text('valid')
  assert train + valid == whole and len(train) == int(0.9 * len(whole))
  with pytest.raises(UserError, match='only train and valid'):
    bard.text('test')


def test_missing_known_corpus_names_the_files(tmp_path, monkeypatch):
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tmp_path))
  with pytest.raises(UserError, match='ptb.train.txt'):
    corpora.Corpus('ptb', download=False).text('train')


def test_user_directory_and_single_file_corpora(tmp_path):
  (tmp_path / 'train.txt').write_text('a b\n')
  (tmp_path / 'valid.txt').write_text('b a\n')
  corpus = corpora.Corpus(str(tmp_path))
  assert corpus.level == 'word' and corpus.text('valid') == 'b a\n'
  with pytest.raises(UserError, match='test.txt'):
    corpus.text('test')
  single = tmp_path / 'book.txt'
  single.write_text('x' * 90 + 'y' * 10)
  assert corpora.Corpus(str(single), level='char').text('valid') == 'y' * 10


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
  (tmp_path / 'train.txt').write_bytes(b'\xef\xbb\xbfhello world\n')
  (tmp_path / 'valid.txt').write_bytes(b'\xef\xbb\xbfworld hello\n')
  corpus = corpora.Corpus(str(tmp_path))
  assert corpus.text('train') == 'hello world\n'
  assert corpus.text('valid').split()[0] == 'world'


def test_empty_and_non_utf8_files_are_user_errors(tmp_path):
  (tmp_path / 'train.txt').write_text('  \n')
  with pytest.raises(UserError, match='empty'):
    corpora.Corpus(str(tmp_path)).text('train')
  (tmp_path / 'train.txt').write_bytes(b'caf\xe9\n')
  with pytest.raises(UserError, match='not UTF-8'):
    corpora.Corpus(str(tmp_path)).text('train')


def test_unknown_corpus_and_split_and_level(tmp_path):
  with pytest.raises(UserError, match='unknown corpus'):
    corpora.Corpus(str(tmp_path / 'nothing')).text('train')
  with pytest.raises(UserError, match='unknown split'):
    corpora.Corpus('ptb').text('dev')
  with pytest.raises(UserError, match='level'):
    corpora.Corpus('ptb', level='byte')


def test_subword_level_needs_a_vocab_size_and_only_it_does(tmp_path):
  corpus = corpora.Corpus(str(tmp_path), level='subword', vocab_size=4000)
  assert (corpus.level, corpus.vocab_size) == ('subword', 4000)
  assert 'vocab_size=4000' in repr(corpus)
  with pytest.raises(UserError, match='needs Corpus.vocab_size'):
    corpora.Corpus('tinyshakespeare', level='subword')
  with pytest.raises(UserError, match="Corpus.level = 'subword' or remove"):
    corpora.Corpus('ptb', vocab_size=4000)


def test_tfds_corpora_read_the_prepared_dataset(monkeypatch):
  calls = []
  def fake_read_split(name, split, text_key='text', data_dir=None):
    calls.append((name, split, text_key))
    return 'to be or not'
  monkeypatch.setattr(tfds_text, 'read_split', fake_read_split)
  corpus = corpora.Corpus('tfds:tiny_shakespeare')
  assert corpus.level == 'char'
  assert corpus.text('valid') == 'to be or not'
  assert calls == [('tiny_shakespeare', 'validation', 'text')]
