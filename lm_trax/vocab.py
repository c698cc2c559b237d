"""Text -> token ids: word-, character- and subword-level vocabularies.

Ids are dense and fixed once built: 0 is always padding (never a real token,
masked out of the loss), then the reserved tokens, then the corpus tokens.

  word level:  0 <pad>, 1 <unk>, 2 <eos>, then words by descending train-split
               frequency (ties alphabetical). A line "a b" -> [a, b, <eos>];
               a word not in the vocabulary is read as its lowercase form if
               that is in it (PTB is lowercase: "The" -> "the"), else as
               <unk>. Every command reads text this way. On PTB, whose text
               already holds <unk> and <eos>, V = 10,000 + 1.
  char level:  0 <pad>, then every character of the train split, sorted,
               then <unk> if the held-out splits (valid, test) hold
               characters the train split lacks: those map to it, and are
               counted and reported like unknown words. A line ends with its
               '\n', which doubles as eos. Tiny Shakespeare gives V = 65 + 1.
               Characters outside the vocabulary and without an <unk> are an
               error (or skipped, as lm_trax.score can).
  subword:     0 <pad>, 1 <eos>, then the subwords of trax's
               SubwordTextEncoder learned from the train split, about
               `target_size` ids in all (`SubwordVocab`). Each line is
               encoded on its own and every '\n' is <eos>; any text, even
               with characters the train split never had, encodes and
               decodes back to itself exactly, so nothing is ever <unk>.

A vocabulary is saved as JSON (vocab.json) in the run's output directory, so
evaluation and generation never need the corpus.

Why trax's SubwordTextEncoder for subwords, not sentencepiece: it is already
installed with trax (no new dependency); it is lossless by construction
(characters outside its alphabet are written as escapes of characters it
always has, so no text is unknown); building it is deterministic (every
choice ends in a sort by count, then string); and it builds a 4,000-id
vocabulary of Tiny Shakespeare's train split or an 8,000-id one of PTB's in
seconds to tens of seconds, once per run (a resumed run reuses the saved
one). sentencepiece would build faster and offers unigram segmentation, but
its byte fallback is off by default and it is one more compiled package to
install.
"""

import collections
import hashlib
import json
import pathlib

import numpy as np

from lm_trax import files
from lm_trax import trax_internals
from lm_trax.errors import UserError

PAD, UNK, EOS = '<pad>', '<unk>', '<eos>'
PAD_ID = 0
FILENAME = 'vocab.json'
LEVELS = ('word', 'char', 'subword')


def _spells_text(level, tokens):
  """Whether a vocabulary's words are the characters of a spelled-out text,
  as in Mikolov's character-level PTB ("a e r _ b a n k", read at word level
  so that <eos> ends a line): word level, every token but the reserved ones
  one character long, and '_', the spelling's space, among them."""
  regular = [t for t in tokens if t not in (PAD, UNK, EOS)]
  return (level == 'word' and '_' in regular and
          all(len(t) == 1 for t in regular))


class Vocab:
  """A token <-> id table for one level ('word' or 'char'; `SubwordVocab`
  for 'subword').

  `spelled` is True for a word-level vocabulary of single characters with
  '_' between words (character-level PTB): `lengths` then counts the
  characters and words of the text it spells."""

  def __init__(self, level, tokens):
    if level not in LEVELS:
      raise UserError(f'vocabulary level must be one of {LEVELS}, got {level!r}')
    self.level = level
    self.tokens = list(tokens)
    self.ids = {token: i for i, token in enumerate(self.tokens)}
    if len(self.ids) != len(self.tokens) or self.tokens[0] != PAD:
      raise ValueError('a vocabulary starts with <pad> and has no duplicates')
    self.eos_id = self.ids.get('\n') if level == 'char' else self.ids[EOS]
    self.unk_id = self.ids.get(UNK)
    self.spelled = _spells_text(level, self.tokens)

  def __len__(self):
    return len(self.tokens)

  def __eq__(self, other):
    return (isinstance(other, Vocab) and self.level == other.level and
            self.tokens == other.tokens)

  @property
  def size(self):
    """V, the number of ids (padding included): the models' vocab_size."""
    return len(self.tokens)

  # Text -> ids ----------------------------------------------------------------

  def split(self, text):
    """Splits text into tokens: words (+ <eos> per line) or characters."""
    if self.level == 'char':
      return list(text)  # '<unk>' is never one of them: one id, not 5 chars.
    return [token for line in text.splitlines() for token in line.split() + [EOS]]

  def encode(self, text, unknown='map'):
    """Returns the ids of `text` as an int32 array (T,).

    Args:
      text: a string (for word level, lines end in <eos>).
      unknown: what to do with tokens not in the vocabulary: 'map' (word level:
        <unk>), 'skip' (drop them) or 'error' (raise UserError naming them).
        Character vocabularies have no <unk>, so 'map' means 'error' there.
    """
    _require_text(text)
    return self.encode_tokens(self.split(text), unknown=unknown)

  def _known(self, token):
    """The vocabulary's form of a token (see the module docstring), or None."""
    if token in self.ids:
      return token
    if self.level == 'word' and token.lower() in self.ids:
      return token.lower()
    return None

  def knows(self, token):
    """Whether a token is read as itself or its lowercase form, not <unk>."""
    return self._known(token) is not None

  def encode_tokens(self, tokens, unknown='map'):
    if self.level == 'word':
      tokens = [self._known(t) or t for t in tokens]
    ids = self.ids
    if all(token in ids for token in tokens):
      return np.fromiter((ids[t] for t in tokens), np.int32, len(tokens))
    missing = sorted(set(t for t in tokens if t not in ids))
    if unknown == 'skip':
      return np.array([ids[t] for t in tokens if t in ids], np.int32)
    if unknown == 'map' and self.unk_id is not None:
      unk = self.unk_id
      return np.array([ids.get(t, unk) for t in tokens], np.int32)
    raise UnknownTokens(self.level, missing)

  def count_unknown(self, text):
    """Number of tokens of `text` outside the vocabulary."""
    return sum(1 for t in self.split(text) if self._known(t) is None)

  def lengths(self, ids):
    """(characters, words) of the text the ids (T,) stand for: what bits per
    character and perplexity per word divide by (lm_trax.evaluation).

    The text is the decoded one: words joined by single spaces with a '\n'
    per <eos> (an <unk> counts as its 5 characters, as PTB writes it);
    characters and subwords exactly as read. A character-level id is one
    character, an <unk> included. Words are the whitespace-separated pieces
    of the text plus one per '\n', the line end, as a word-level model
    counts <eos>: at word level words == tokens.

    A spelled vocabulary (`spelled`: character-level PTB) stands for the
    text it spells: each token is one character of it ('_' a space, <eos>
    the line end), so characters == tokens (bits per symbol, as published),
    and its words are the '_'-separated ones plus one per line end, as
    word-level PTB counts the same text.
    """
    if self.spelled:
      tokens = [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1)
                if int(i) != PAD_ID]
      text = ''.join({'_': ' ', EOS: '\n'}.get(t, t) for t in tokens)
      return len(text), len(text.split()) + text.count('\n')
    text = self.decode(ids)
    characters = np.size(ids) if self.level == 'char' else len(text)
    return characters, len(text.split()) + text.count('\n')

  # Ids -> text ----------------------------------------------------------------

  def decode(self, ids):
    """Ids -> text: characters joined, or words joined by spaces with each
    <eos> a line break. Padding is dropped; a value that is not one of the
    vocabulary's ids is a UserError (`checked_ids`)."""
    tokens = [self.tokens[i] for i in self.checked_ids(ids) if i != PAD_ID]
    if self.level == 'char':
      return ''.join(tokens)
    lines = ' '.join(tokens).split(EOS)
    return '\n'.join(line.strip() for line in lines)

  def checked_ids(self, ids):
    """ids (any shape, or one id) as a flat int array, each checked to be
    one of the vocabulary's ids.

    Raises:
      UserError: naming the first value that is not an id.
    """
    rule = f'whole numbers in [0, {self.size}) (this vocabulary\'s ids)'
    try:
      array = np.asarray(ids).reshape(-1)
    except ValueError:  # Rows of different lengths.
      raise UserError(f'ids must be {rule}, got {ids!r}') from None
    if array.size == 0:
      return array.astype(np.int64)
    if array.dtype.kind in 'iu':
      bad = np.flatnonzero((array < 0) | (array >= self.size))
    else:
      bad = [0]  # Not integers (floats, strings, None): the first is shown.
    if len(bad):
      first = array[bad[0]:bad[0] + 1].tolist()[0]  # A Python value.
      raise UserError(f'ids must be {rule}, got {first!r}')
    return array

  # Files ----------------------------------------------------------------------

  def fields(self):
    """What vocab.json holds."""
    return {'level': self.level, 'tokens': self.tokens}

  def built_from(self, unused_text, unused_target_size):
    """Whether this vocabulary is known to be what `build` makes of a train
    split, without building it (see SubwordVocab); word and character
    vocabularies are cheap to rebuild and compare instead."""
    return False

  def save(self, directory):
    """Writes <directory>/vocab.json atomically; returns its path."""
    path = pathlib.Path(directory) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomically(path, json.dumps(self.fields(),
                                                 ensure_ascii=False))
    return path

  @classmethod
  def load(cls, directory):
    """The vocabulary saved in <directory>/vocab.json: a Vocab, or a
    SubwordVocab for level 'subword'."""
    path = pathlib.Path(directory) / FILENAME
    if not path.exists():
      raise UserError(f'no vocabulary at {path}: is {directory} a run '
                      'directory written by train.py?')
    try:
      data = json.loads(path.read_text(encoding='utf-8'))
      if data['level'] == 'subword':
        return SubwordVocab(data['tokens'], data['target_size'],
                            data['train_sha256'])
      return cls(data['level'], data['tokens'])
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'{path} is damaged ({type(e).__name__}: {e}); delete '
                      'it and rerun the training command of this run '
                      'directory: it rebuilds the vocabulary from the '
                      'corpus') from None


class SubwordVocab(Vocab):
  """Subword ids of trax's SubwordTextEncoder (see the module docstring).

  tokens[2:] are the encoder's subword strings in its own escaped form: a
  piece ending in '_' ends a word (an alphanumeric run, or a run of the other
  characters), '\\123;' writes a character by its code point. The encoder
  is made when first used, so loading a vocabulary does not import trax.

  Attributes (besides Vocab's):
    target_size: the size the vocabulary was built for (Corpus.vocab_size).
    train_sha256: the SHA-256 of the train split it was built from.
  """

  def __init__(self, tokens, target_size, train_sha256):
    super().__init__('subword', tokens)
    if self.tokens[1] != EOS:
      raise ValueError('a subword vocabulary has <eos> at id 1')
    self.target_size = target_size
    self.train_sha256 = train_sha256
    self._encoder = None

  @property
  def encoder(self):
    """The trax SubwordTextEncoder: ids 0 and 1 are trax's reserved <pad>
    and <EOS>, as ours."""
    if self._encoder is None:
      self._encoder = _text_encoder().SubwordTextEncoder()
      # The lines of a trax vocabulary file: one quoted subword each.
      trax_internals.load_subwords(
          self._encoder,
          [f"'{piece}'" for piece in _trax_reserved() + self.tokens[2:]])
    return self._encoder

  def fields(self):
    return {'level': self.level, 'tokens': self.tokens,
            'target_size': self.target_size, 'train_sha256': self.train_sha256}

  def built_from(self, text, target_size):
    """Whether `build(text, 'subword', target_size=target_size)` made this
    vocabulary: building is deterministic, so the same train split and size
    give it again, and a resumed run need not spend the time."""
    return (target_size, _sha256(text)) == (self.target_size,
                                            self.train_sha256)

  def split(self, text):
    """The subword strings of `text`, an <eos> per '\n'."""
    return [self.tokens[i] for i in self.encode(text)]

  def encode(self, text, unknown='map'):  # pylint: disable=unused-argument
    """Returns the ids of `text` as an int32 array (T,): each line's
    subwords, and <eos> for each '\n'. No text has unknown tokens."""
    _require_text(text)
    encode = self.encoder.encode
    ids = []
    for k, line in enumerate(text.split('\n')):
      if k:
        ids.append(self.eos_id)
      ids.extend(encode(line))
    return np.array(ids, np.int32)

  def count_unknown(self, text):
    return 0

  def decode(self, ids):
    """Ids -> text; decode(encode(text)) == text. Padding is dropped."""
    ids = [int(i) for i in self.checked_ids(ids) if i != PAD_ID]
    lines, line = [], []
    for i in ids:
      if i == self.eos_id:
        lines.append(line)
        line = []
      else:
        line.append(i)
    lines.append(line)
    return '\n'.join(self.encoder.decode(line) for line in lines)


class UnknownTokens(UserError):
  """Tokens outside a vocabulary that has no <unk> for them (or that were
  to be refused). The message says to remove them; a caller that offers a
  way to skip them restates it naming that way (`restated`)."""

  def __init__(self, level, missing, subject='the text', skip=None):
    shown = ', '.join(repr(t) for t in missing[:10])
    more = f' (and {len(missing) - 10} more)' if len(missing) > 10 else ''
    fix = f'remove them or skip them ({skip})' if skip else 'remove them'
    super().__init__(f'{subject} has {len(missing)} {level}s not in the '
                     f'vocabulary: {shown}{more}; {fix}')
    self.level, self.missing, self.subject = level, missing, subject

  def restated(self, subject=None, skip=None):
    """The same error about `subject` (e.g. 'lines'; None: the same one),
    naming `skip`, the caller's way to skip the tokens, if it has one."""
    return UnknownTokens(self.level, self.missing, subject or self.subject,
                         skip)


def _require_text(text):
  if not isinstance(text, str):
    raise UserError(f'text must be a string, got {type(text).__name__}')


def _text_encoder():
  """trax.data.text_encoder, imported when first needed (it imports
  TensorFlow)."""
  # Not above: only subword vocabularies need trax, and the modules that
  # must start without TensorFlow (the commands' --help, plots) import this
  # one. compat before trax.
  from lm_trax import compat  # pylint: disable=g-import-not-at-top,unused-import
  from trax.data import text_encoder  # pylint: disable=g-import-not-at-top
  return text_encoder


def _trax_reserved():
  """trax's reserved subwords, ids 0 and 1, as its encoder stores them: each
  reserved token with the '_' that ends a word."""
  return [token + '_' for token in _text_encoder().RESERVED_TOKENS]


def _sha256(text):
  return hashlib.sha256(text.encode('utf-8')).hexdigest()


def build_subwords(text, target_size):
  """A SubwordVocab learned from the train split's text, of about
  target_size ids (trax searches the minimum subword count whose vocabulary
  comes within 1% of it; a small text may give fewer)."""
  encoder = _text_encoder().SubwordTextEncoder.build_from_generator(
      text.split('\n'), target_size)
  pieces = list(encoder.all_subtoken_strings)
  if pieces[:2] != _trax_reserved():
    raise ValueError(f'trax\'s subwords start with {pieces[:2]}, not its '
                     'reserved <pad> and <EOS>')
  return SubwordVocab([PAD, EOS] + pieces[2:], target_size, _sha256(text))


def build(text, level, max_size=None, min_count=1, held_out=(),
          target_size=None):
  """Builds a vocabulary from the train split's text.

  Args:
    text: the train split as one string.
    level: 'word', 'char' or 'subword'.
    max_size: keep at most this many corpus tokens (most frequent), word level.
    min_count: drop words seen fewer times than this, word level.
    held_out: the other splits' texts, char level: if they hold a character
      the train split lacks, the vocabulary ends with <unk> (see the module
      docstring). Nothing else is taken from them.
    target_size: subword level: about how many ids (`build_subwords`).
  """
  if level == 'subword':
    if max_size is not None:
      raise UserError('train.vocab_max_size cuts word vocabularies; a '
                      'subword vocabulary is sized by Corpus.vocab_size')
    return build_subwords(text, target_size)
  if level == 'char':
    chars = set(text)
    unseen = any(set(other) - chars for other in held_out)
    return Vocab('char', [PAD] + sorted(chars) + ([UNK] if unseen else []))
  counts = collections.Counter(
      token for line in text.splitlines() for token in line.split())
  counts.pop(UNK, None)
  words = sorted((w for w, c in counts.items() if c >= min_count),
                 key=lambda w: (-counts[w], w))
  if max_size is not None:
    words = words[:max_size]
  return Vocab('word', [PAD, UNK, EOS] + [w for w in words if w != EOS])
