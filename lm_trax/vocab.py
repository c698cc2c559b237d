"""Text -> token ids: word- and character-level vocabularies.

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
               error (or skipped, --skip_unknown).

A vocabulary is saved as JSON (vocab.json) in the run's output directory, so
evaluation and generation never need the corpus.
"""

import collections
import json
import pathlib

import numpy as np

from lm_trax import files
from lm_trax.errors import UserError

PAD, UNK, EOS = '<pad>', '<unk>', '<eos>'
PAD_ID = 0
FILENAME = 'vocab.json'
LEVELS = ('word', 'char')


class Vocab:
  """A token <-> id table for one level ('word' or 'char')."""

  def __init__(self, level, tokens):
    if level not in LEVELS:
      raise UserError(f'vocabulary level must be one of {LEVELS}, got {level!r}')
    self.level = level
    self.tokens = list(tokens)
    self.ids = {token: i for i, token in enumerate(self.tokens)}
    if len(self.ids) != len(self.tokens) or self.tokens[0] != PAD:
      raise ValueError('a vocabulary starts with <pad> and has no duplicates')
    self.eos_id = self.ids[EOS] if level == 'word' else self.ids.get('\n')
    self.unk_id = self.ids.get(UNK)

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
    shown = ', '.join(repr(t) for t in missing[:10])
    more = f' (and {len(missing) - 10} more)' if len(missing) > 10 else ''
    raise UserError(f'{len(missing)} {self.level}s not in the vocabulary: '
                    f'{shown}{more}; remove them or skip them '
                    f'(--skip_unknown)')

  def count_unknown(self, text):
    """Number of tokens of `text` outside the vocabulary."""
    return sum(1 for t in self.split(text) if self._known(t) is None)

  # Ids -> text ----------------------------------------------------------------

  def decode(self, ids):
    """Ids -> text: characters joined, or words joined by spaces with each
    <eos> a line break. Padding is dropped."""
    tokens = [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1)
              if int(i) != PAD_ID]
    if self.level == 'char':
      return ''.join(tokens)
    lines = ' '.join(tokens).split(EOS)
    return '\n'.join(line.strip() for line in lines)

  # Files ----------------------------------------------------------------------

  def save(self, directory):
    """Writes <directory>/vocab.json atomically; returns its path."""
    path = pathlib.Path(directory) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomically(path, json.dumps(
        {'level': self.level, 'tokens': self.tokens}, ensure_ascii=False))
    return path

  @classmethod
  def load(cls, directory):
    path = pathlib.Path(directory) / FILENAME
    if not path.exists():
      raise UserError(f'no vocabulary at {path}: is {directory} a run '
                      'directory written by train.py?')
    data = json.loads(path.read_text(encoding='utf-8'))
    return cls(data['level'], data['tokens'])


def build(text, level, max_size=None, min_count=1, held_out=()):
  """Builds a vocabulary from the train split's text.

  Args:
    text: the train split as one string.
    level: 'word' or 'char'.
    max_size: keep at most this many corpus tokens (most frequent), word level.
    min_count: drop words seen fewer times than this, word level.
    held_out: the other splits' texts, char level: if they hold a character
      the train split lacks, the vocabulary ends with <unk> (see the module
      docstring). Nothing else is taken from them.
  """
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
