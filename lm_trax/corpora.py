"""Where text comes from: named corpora, user files and TFDS, split by split.

A corpus is named by a string:

  'ptb'              Penn Treebank, Mikolov's 10k version: <data_dir>/ptb/
                     ptb.{train,valid,test}.txt, word level.
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
LM_TRAX_DATA_DIR environment variable, then ~/.cache/lm_trax/data. Missing
known corpora are downloaded there (lm_trax.download) unless download=False.
"""

import pathlib

import gin

from lm_trax.errors import UserError
from lm_trax.vocab import LEVELS

SPLITS = ('train', 'valid', 'test')
KNOWN = {'ptb': 'word', 'tinyshakespeare': 'char'}
TRAIN_FRACTION = 0.9  # For corpora stored as one file.


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
    # (Imported here so `python -m lm_trax.download` finds it unimported.)
    from lm_trax import download as download_lib  # pylint: disable=g-import-not-at-top
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
      from lm_trax import tfds_text  # pylint: disable=g-import-not-at-top
      tfds_split = {'valid': 'validation'}.get(split, split)
      return tfds_text.read_split(self.name[len('tfds:'):], tfds_split,
                                  text_key=self.tfds_text_key)
    if self.name in KNOWN:
      from lm_trax import download as download_lib  # pylint: disable=g-import-not-at-top
      download_lib.ensure(self.name, self.data_dir, download=self.download)
      if self.name == 'ptb':
        return _read(self.data_dir / 'ptb' / f'ptb.{split}.txt')
      return _split_one_file(self.data_dir / 'tinyshakespeare' / 'input.txt',
                             split)
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
    if self.name == 'ptb':
      return True
    if self.name in KNOWN:
      return False
    path = pathlib.Path(self.name).expanduser()
    return path.is_dir() and (path / 'test.txt').is_file()

  def _user_text(self, split):
    path = pathlib.Path(self.name).expanduser()
    if path.is_file():
      return _split_one_file(path, split)
    if path.is_dir():
      return _read(path / f'{split}.txt')
    raise UserError(
        f'unknown corpus {self.name!r}: use ptb, tinyshakespeare, tfds:NAME, '
        'a directory with train.txt/valid.txt[/test.txt], or a text file')


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
  if not path.is_file():
    raise UserError(f'missing corpus file {path}; put it there or point '
                    'LM_TRAX_DATA_DIR (or Corpus.data_dir) at the data')
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
