import pytest

from lm_trax import corpora
from lm_trax import inference
from lm_trax import tfds_text
from lm_trax import vocab as vocab_lib
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


# The benchmark corpora --------------------------------------------------------


def test_byte_splits_are_90m_5m_5m_of_enwik8_and_tile_any_file():
  assert [corpora.byte_split_bounds(10**8, split) for split in corpora.SPLITS
          ] == [(0, 90_000_000), (90_000_000, 95_000_000),
                (95_000_000, 100_000_000)]
  for n_bytes in (1_999, 2_000, 12_345):
    bounds = [corpora.byte_split_bounds(n_bytes, s) for s in corpora.SPLITS]
    assert bounds[0][0] == 0 and bounds[-1][1] == n_bytes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize('name', ['enwik8', 'text8'])
def test_byte_corpora_split_bytes_with_one_character_each(use_tiny_data, name):
  raw = (use_tiny_data / name / name).read_bytes()
  corpus = corpora.Corpus(name, download=False)
  assert corpus.level == 'char' and corpus.has_test_split()
  texts = [corpus.text(split) for split in corpora.SPLITS]
  assert [len(t) for t in texts] == [len(raw) * 90 // 100,
                                     len(raw) * 95 // 100 - len(raw) * 90 // 100,
                                     len(raw) - len(raw) * 95 // 100]
  assert ''.join(texts).encode('latin-1') == raw  # Byte-exact, lossless.


def test_enwik8_utf8_is_read_byte_by_byte(use_tiny_data):
  train = corpora.Corpus('enwik8', download=False).text('train')
  assert 'Caf\u00c3\u00a9' in train  # The two bytes of UTF-8 'é'.
  assert 'é' not in train


def test_ptb_char_reads_each_symbol_as_a_token(use_tiny_data):
  corpus = corpora.Corpus('ptb_char', download=False)
  assert corpus.level == 'word' and corpus.has_test_split()
  text = corpus.text('valid')
  assert text == (use_tiny_data / 'ptb_char' / 'ptb.char.valid.txt').read_text()
  vocab = vocab_lib.build(corpus.text('train'), 'word')
  tokens = vocab.split(text)
  assert tokens[:4] == ['t', 'h', 'e', '_'] and tokens.count('<eos>') == 100
  assert all(len(t) == 1 for t in tokens if t != '<eos>')
  assert all(len(t) == 1 for t in vocab.tokens[3:])  # After pad, unk, eos.


def test_wikitext_keeps_its_own_unk(use_tiny_data):
  corpus = corpora.Corpus('wikitext2', download=False)
  assert corpus.level == 'word' and corpus.has_test_split()
  train = corpus.text('train')
  assert train == (use_tiny_data / 'wikitext2' / 'wiki.train.tokens'
                   ).read_text()
  vocab = vocab_lib.build(train, 'word')
  ids = vocab.encode(corpus.text('test'))
  assert (ids == vocab.unk_id).sum() == corpus.text('test').count('<unk>')


@pytest.mark.parametrize('name, missing', [
    ('wikitext103', 'wikitext103/wiki.train.tokens'),
    ('enwik8', 'enwik8/enwik8'), ('text8', 'text8/text8'),
    ('ptb_char', 'ptb_char/ptb.char.train.txt')])
def test_missing_benchmark_corpus_names_its_files(tmp_path, monkeypatch, name,
                                                  missing):
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tmp_path))
  with pytest.raises(UserError, match=f'python -m lm_trax.download {name}'
                     ) as error:
    corpora.Corpus(name, download=False).text('train')
  assert str(tmp_path / missing) in str(error.value)


def test_text8_has_no_line_end_so_its_text_is_primed_with_padding(
    use_tiny_data):
  text = corpora.Corpus('text8', download=False).text('train')
  vocab = vocab_lib.build(text, 'char')
  assert '\n' not in text and vocab.eos_id is None
  assert list(inference.primed(vocab.eos_id, [3, 4])) == [vocab_lib.PAD_ID, 3,
                                                          4]
