"""Where text comes from: named corpora, user files and TFDS, split by split.

A corpus is named by a string:

  'ptb'              Penn Treebank, Mikolov's 10k version: <data_dir>/ptb/
                     ptb.{train,valid,test}.txt, word level.
  'ptb_char'         PTB's character version from the same archive:
                     <data_dir>/ptb_char/ptb.char.{train,valid,test}.txt.
                     Its symbols are separated by spaces ('_' between words),
                     so it is read at word level, one symbol a token, and
                     <eos> ends every line, as AWD-LSTM reads it (bpc =
                     loss / ln 2 per symbol).
  'wikitext2'        WikiText-2 and -103, the tokenized release (with its own
  'wikitext103'      <unk>): <data_dir>/wikitext2/wiki.{train,valid,test}.tokens
                     (and wikitext103/), word level.
  'enwik8'           <data_dir>/enwik8/enwik8, 10^8 bytes of Wikipedia XML, at
                     byte level: each byte is read as one character (Latin-1
                     decoding: lossless, one character per byte), so it fits
                     the char level. Train is the first 90% of the bytes,
                     valid the next 5%, test the last 5% (90M / 5M / 5M).
  'text8'            <data_dir>/text8/text8, 10^8 characters (a-z and space),
                     char level, split 90M / 5M / 5M like enwik8.
  'tinyshakespeare'  <data_dir>/tinyshakespeare/input.txt, char level. It has
                     no official split: train is the first 90% of the
                     characters, valid the last 10% (as nanoGPT); no test.
  'tfds:NAME'        a text dataset of tensorflow-datasets already prepared in
                     the TFDS data dir (e.g. 'tfds:tiny_shakespeare'); never
                     downloaded by us.
  a path             a directory with {train,valid,test}.txt (test optional),
                     or one text file split 90/10 like tinyshakespeare.

Any corpus can be read at any level (Corpus.level): words, characters, or
subwords learned from its train split (Corpus.vocab_size of them).

The data directory is, in order: the `data_dir` gin parameter, the
LM_TRAX_DATA_DIR environment variable, then ~/.cache/lm_trax/data
($XDG_CACHE_HOME/lm_trax/data where that is set). The last two are
lm_trax.download.default_data_dir(), the one rule every command, benchmark
and test asks (it lives in lm_trax.download, which imports no gin, numpy or
JAX, so that bench/train_speed.py's process can ask it too). Missing known
corpora are downloaded there (lm_trax.download) unless download=False.
"""

import pathlib

import gin

from lm_trax import download as download_lib
from lm_trax import tfds_text
from lm_trax.errors import UserError
from lm_trax.vocab import LEVELS

SPLITS = ('train', 'valid', 'test')
KNOWN = {'ptb': 'word', 'ptb_char': 'word', 'wikitext2': 'word',
         'wikitext103': 'word', 'enwik8': 'char', 'text8': 'char',
         'tinyshakespeare': 'char'}
TRAIN_FRACTION = 0.9  # For corpora stored as one file.
# enwik8 and text8: [start, stop) of each split in percent of the file, the
# standard 90M / 5M / 5M of their 10^8 bytes (e.g. Merity et al.'s
# prep_enwik8.py); a smaller file splits in the same proportions.
BYTE_SPLITS = {'train': (0, 90), 'valid': (90, 95), 'test': (95, 100)}


@gin.configurable(module='lm_trax')
class Corpus:
  """A text corpus with train/valid[/test] splits.

  Attributes:
    name: as in the module docstring.
    level: 'word', 'char' or 'subword' (known corpora and TFDS text default
      to their own: word for PTB, char for the others).
    vocab_size: subword level only: about how many ids the vocabulary learned
      from the train split has (lm_trax.vocab.build_subwords), e.g. 4000.
  """

  def __init__(self, name='ptb', level=None, data_dir=None, download=True,
               tfds_text_key='text', vocab_size=None):
    self.name = name
    self.data_dir = (pathlib.Path(data_dir).expanduser() if data_dir
                     else download_lib.default_data_dir())
    self.download = download
    self.tfds_text_key = tfds_text_key
    if level is None:
      level = KNOWN.get(name, 'char' if name.startswith('tfds:') else 'word')
    if level not in LEVELS:
      raise UserError(f"Corpus.level must be 'word', 'char' or 'subword', "
                      f'got {level!r}')
    _check_vocab_size(level, vocab_size)
    self.level = level
    self.vocab_size = vocab_size

  def __repr__(self):
    size = f', vocab_size={self.vocab_size}' if self.vocab_size else ''
    return f'Corpus({self.name!r}, level={self.level!r}{size})'

  def text(self, split):
    """The whole split as one string."""
    if split not in SPLITS:
      raise UserError(f'unknown split {split!r}; use one of {", ".join(SPLITS)}')
    if self.name.startswith('tfds:'):
      tfds_split = {'valid': 'validation'}.get(split, split)
      return tfds_text.read_split(self.name[len('tfds:'):], tfds_split,
                                  text_key=self.tfds_text_key)
    if self.name in KNOWN:
      download_lib.ensure(self.name, self.data_dir, download=self.download)
      paths = download_lib.expected_files(self.name, self.data_dir)
      if self.name == 'tinyshakespeare':
        return _split_one_file(paths[0], split)
      if self.name in ('enwik8', 'text8'):
        return _read_byte_split(paths[0], split)
      return _read(paths[SPLITS.index(split)])  # A file per split.
    return self._user_text(split)

  def held_out_texts(self):
    """The valid and (where there is one) test splits' texts, for the
    character set of a char vocabulary (lm_trax.vocab.build)."""
    if self.level != 'char':
      return []
    texts = [self.text('valid')]
    if self.has_test_split():
      texts.append(self.text('test'))
    return texts

  def has_test_split(self):
    """Whether the corpus has a test split."""
    if self.name.startswith('tfds:'):
      return False  # Not every TFDS text dataset has one: not assumed.
    if self.name in KNOWN:
      return self.name != 'tinyshakespeare'
    path = pathlib.Path(self.name).expanduser()
    return path.is_dir() and (path / 'test.txt').is_file()

  def _user_text(self, split):
    path = pathlib.Path(self.name).expanduser()
    if path.is_file():
      return _split_one_file(path, split)
    if path.is_dir():
      return _read(path / f'{split}.txt')
    raise UserError(
        f'unknown corpus {self.name!r}: use {", ".join(sorted(KNOWN))}, '
        'tfds:NAME, a directory with train.txt/valid.txt[/test.txt], or a '
        'text file')


def _check_exists(path):
  if not path.is_file():
    raise UserError(f'missing corpus file {path}; put it there or point '
                    'LM_TRAX_DATA_DIR (or Corpus.data_dir) at the data')


def _check_vocab_size(level, vocab_size):
  """Raises UserError unless vocab_size is set exactly for subwords."""
  if level != 'subword':
    if vocab_size is not None:
      raise UserError('Corpus.vocab_size sets the size of a subword '
                      f"vocabulary, and Corpus.level is {level!r}; set "
                      "Corpus.level = 'subword' or remove it (word "
                      'vocabularies are cut with train.vocab_max_size)')
    return
  if (vocab_size is None or isinstance(vocab_size, bool) or
      not isinstance(vocab_size, int) or vocab_size < 3):
    raise UserError(f"Corpus.level = 'subword' needs Corpus.vocab_size, a "
                    f'whole number >= 3 (e.g. 4000), got {vocab_size!r}')


def _read(path):
  """Reads a UTF-8 text file; missing, empty or undecodable is a UserError."""
  path = pathlib.Path(path)
  _check_exists(path)
  data = path.read_bytes()
  try:
    text = data.decode('utf-8-sig')  # Without a byte-order mark, if any.
  except UnicodeDecodeError as e:
    raise UserError(f'{path} is not UTF-8 text (byte {e.start}: '
                    f'{data[e.start:e.start + 4]!r}); convert it, e.g. '
                    f'iconv -f latin1 -t utf-8') from None
  if not text.strip():
    raise UserError(f'corpus file {path} is empty; put the text there')
  return text


def _split_one_file(path, split):
  """First 90% of the characters for train, last 10% for valid."""
  if split == 'test':
    raise UserError(f'{path} has only train and valid splits (first 90% / '
                    'last 10%); use --split valid')
  text = _read(path)
  cut = int(len(text) * TRAIN_FRACTION)
  return text[:cut] if split == 'train' else text[cut:]


def byte_split_bounds(n_bytes, split):
  """[start, stop) byte offsets of `split` in a file of n_bytes (BYTE_SPLITS):
  (0, 90_000_000), (90_000_000, 95_000_000), (95_000_000, 100_000_000) for
  the 10^8 bytes of enwik8 and text8."""
  start, stop = BYTE_SPLITS[split]
  return n_bytes * start // 100, n_bytes * stop // 100


def _read_byte_split(path, split):
  """One split of a byte-level corpus, read alone, each byte one character.

  Latin-1 maps bytes 0-255 to the characters U+0000-U+00FF, so the text has
  exactly one character per byte (the UTF-8 of enwik8 is never decoded) and
  `text.encode('latin-1')` gives the bytes back.
  """
  _check_exists(path)
  start, stop = byte_split_bounds(path.stat().st_size, split)
  with open(path, 'rb') as f:
    f.seek(start)
    data = f.read(stop - start)
  if not data:
    raise UserError(f'the {split} split of {path} is empty; put the whole '
                    'file there')
  return data.decode('latin-1')
