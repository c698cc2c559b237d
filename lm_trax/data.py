"""Token ids -> batches: the two stream kinds, as trax.data.Serial stages.

Every batch is (inputs, targets, weights): inputs and targets int32 (B, T),
weights float32 (B, T), 0.0 where the target is padding. The shift to
next-token prediction happens here and only here: targets[:, t] is the token
after inputs[:, t]. Models map inputs to (B, T, V) logits with no shift.

(i) Contiguous batches (the PTB reader of Zaremba et al. / seed 001). A split of
N tokens is laid out as B parallel rows of L = N // B tokens, and cut into
consecutive windows of T, so batch k+1 continues batch k row by row and an RNN
can carry its state across batches:

      row 0:  t[0]      ... t[T-1]    | t[T]      ... t[2T-1]    | ...
      row 1:  t[L]      ... t[L+T-1]  | t[L+T]    ... t[L+2T-1]  | ...
      ...                  batch 0                 batch 1
      targets: the same grid moved one token to the right.

   A pass has (L - 1) // T batches; training drops the last partial window.

   Variable-length windows (AWD-LSTM's variable BPTT, with a few static
   lengths so that each compiles once): with Batching.seq_lens, training
   cuts each pass into windows of those lengths, as many of each as
   seq_len_weights apportions of the row, in an order shuffled per pass by
   (seed, pass) -- the same on resume. A pass always has the same windows,
   so steps per epoch stay fixed, and the learning rate of each step is
   scaled by its window's length / seq_len (`WindowSchedule.scaled`, as
   AWD-LSTM scales it). Evaluation keeps windows of seq_len.

(ii) Line batches (seeds 002/003): each line becomes [eos] + tokens(line) (the
line's own eos ends it), shuffled, filtered by length, bucketed by length with
padding to the bucket boundary (few distinct shapes, few compilations), and
AddLossWeights masks the padding out of the loss.

On several devices (lm_trax.parallel) every batch must split evenly over
them: a contiguous batch_size that does not is an error; line batches get
all-padding rows (weight 0) up to a multiple of the device count.
"""

import itertools

import gin
import numpy as np

from lm_trax.errors import UserError
from lm_trax.vocab import PAD_ID


def _trax():
  """trax, imported when a stream is built: the batching settings and
  split_lines serve exported models, which run without trax."""
  from lm_trax import compat  # pylint: disable=g-import-not-at-top,unused-import  (before trax)
  import trax  # pylint: disable=g-import-not-at-top
  return trax


# Contiguous stream stages -----------------------------------------------------

def RepeatPasses(ids, n_passes=None):  # pylint: disable=invalid-name
  """Source stage: yields the split's ids (N,) once per pass (None: forever)."""
  def source(unused_generator=None):
    passes = itertools.count() if n_passes is None else range(n_passes)
    for _ in passes:
      yield ids
  return source


def LayoutRows(batch_size):  # pylint: disable=invalid-name
  """(N,) ids -> (B, N // B) grid, row b holding tokens [b*L, (b+1)*L)."""
  def layout(generator):
    for ids in generator:
      n_per_row = len(ids) // batch_size
      if n_per_row < 2:
        raise UserError(f'a split of {len(ids)} tokens is too short for '
                        f'batch_size {batch_size}; lower the batch size')
      yield np.asarray(ids[:batch_size * n_per_row], np.int32).reshape(
          batch_size, n_per_row)
  return layout


def CutWindows(seq_len):  # pylint: disable=invalid-name
  """(B, L) grid -> (inputs, targets) windows of (B, seq_len), in order."""
  def cut(generator):
    for grid in generator:
      n_windows = (grid.shape[1] - 1) // seq_len
      if n_windows < 1:
        raise UserError(f'rows of {grid.shape[1]} tokens are too short for '
                        f'seq_len {seq_len}; lower seq_len or batch_size')
      for k in range(n_windows):
        start = k * seq_len
        yield (grid[:, start:start + seq_len],
               grid[:, start + 1:start + seq_len + 1])
  return cut


class WindowSchedule:
  """The window lengths of variable-length contiguous batches.

  Each pass over rows of `row_tokens` tokens is cut into `counts[i]` windows
  of `lengths[i]` tokens, shuffled per pass; `seq_len` is the length the
  learning rate is given for.
  """

  def __init__(self, row_tokens, lengths, weights, seq_len, seed=0):
    self.lengths = tuple(int(n) for n in lengths)
    self.seq_len = seq_len
    self.seed = seed
    total = float(sum(weights))
    mean = sum(n * w for n, w in zip(self.lengths, weights)) / total
    n_windows = int((row_tokens - 1) // mean)
    counts = [int(round(n_windows * w / total)) for w in weights]
    # Rounding may overshoot the row: drop windows, longest first.
    by_length = sorted(range(len(counts)), key=lambda i: -self.lengths[i])
    while sum(c * n for c, n in zip(counts, self.lengths)) > row_tokens - 1:
      counts[next(i for i in by_length if counts[i])] -= 1
    if not sum(counts):
      raise UserError(f'rows of {row_tokens} tokens are too short for '
                      f'windows of {self.lengths}; lower Batching.seq_lens '
                      'or batch_size')
    self.counts = tuple(counts)
    self.steps_per_pass = sum(counts)
    self._cached = (None, None)

  def pass_lengths(self, pass_index):
    """(steps_per_pass,) int array: the window lengths of one pass, in
    order."""
    if self._cached[0] != pass_index:
      order = np.repeat(np.array(self.lengths, np.int64), self.counts)
      np.random.default_rng([self.seed, pass_index]).shuffle(order)
      self._cached = (pass_index, order)
    return self._cached[1]

  def length_at(self, step):
    """The window length of training step `step` (counted from 1)."""
    pass_index, index = divmod(int(step) - 1, self.steps_per_pass)
    return int(self.pass_lengths(pass_index)[index])

  def scaled(self, schedule):
    """A learning-rate schedule (step -> rate) times each step's window
    length / seq_len."""
    return lambda step: schedule(step) * self.length_at(step) / self.seq_len


def CutVariableWindows(schedule):  # pylint: disable=invalid-name
  """(B, L) grid per pass -> (inputs, targets) windows of the lengths a
  WindowSchedule gives that pass, in order."""
  def cut(generator):
    for pass_index, grid in enumerate(generator):
      start = 0
      for length in schedule.pass_lengths(pass_index):
        yield (grid[:, start:start + length],
               grid[:, start + 1:start + length + 1])
        start += length
  return cut


def steps_per_pass(n_tokens, batch_size, seq_len):
  """Number of contiguous batches in one pass over a split of n_tokens."""
  return (n_tokens // batch_size - 1) // seq_len


def contiguous_batches(ids, batch_size, seq_len, n_passes=None,
                       windows=None):
  """Stream of contiguous (inputs, targets, weights) batches over `ids`;
  windows of seq_len, or of a WindowSchedule's lengths."""
  trax = _trax()
  return trax.data.Serial(
      RepeatPasses(ids, n_passes),
      LayoutRows(batch_size),
      CutWindows(seq_len) if windows is None else CutVariableWindows(windows),
      trax.data.AddLossWeights(id_to_mask=PAD_ID),
  )()


# Line stream stages -----------------------------------------------------------

def ShuffledLines(lines, seed, n_passes=None):  # pylint: disable=invalid-name
  """Source stage: yields the lines (each an int32 array), reshuffled every
  pass with a generator seeded by (seed, pass) -- the same order on resume."""
  def source(unused_generator=None):
    passes = itertools.count() if n_passes is None else range(n_passes)
    for k in passes:
      order = np.random.default_rng([seed, k]).permutation(len(lines))
      for i in order:
        yield lines[i]
  return source


def NextTokenPairs(start_id):  # pylint: disable=invalid-name
  """Line ids (n,) -> (inputs, targets) with inputs = [start] + ids[:-1]."""
  def pairs(generator):
    for ids in generator:
      yield (np.concatenate([[start_id], ids[:-1]]).astype(np.int32),
             np.asarray(ids, np.int32))
  return pairs


def split_lines(vocab, text):
  """A split's text -> list of int32 id arrays, one per non-empty line, each
  ending in the vocabulary's eos (<eos> for words and subwords, '\\n' for
  characters), a last line without its '\\n' too."""
  return [vocab.encode(line if line.endswith('\n') else line + '\n')
          for line in text.splitlines(keepends=True) if line.strip()]


def PadRows(multiple):  # pylint: disable=invalid-name
  """(inputs, targets) batches -> the same with all-padding rows (pad id 0,
  so AddLossWeights gives them weight 0) up to a multiple of `multiple` rows."""
  def pad(generator):
    for batch in generator:
      n_rows = batch[0].shape[0]
      missing = -n_rows % multiple
      if missing:
        batch = tuple(np.concatenate([x, np.full((missing,) + x.shape[1:],
                                                 PAD_ID, x.dtype)])
                      for x in batch)
      yield batch
  return pad


def line_batches(lines, vocab, boundaries, batch_sizes, max_length,
                 min_length=1, seed=0, n_passes=None, row_multiple=1):
  """Stream of bucketed, padded (inputs, targets, weights) line batches;
  each batch has a multiple of row_multiple rows (padding rows weigh 0)."""
  if len(batch_sizes) != len(boundaries) + 1:
    raise UserError(f'line batches need one batch size per bucket: '
                    f'{len(boundaries)} boundaries -> {len(boundaries) + 1} '
                    f'batch_sizes, got {len(batch_sizes)}')
  trax = _trax()
  return trax.data.Serial(
      ShuffledLines(lines, seed, n_passes),
      NextTokenPairs(vocab.eos_id),
      trax.data.FilterByLength(max_length=max_length, min_length=min_length,
                               length_keys=[0]),
      # The last bucket is padded to max_length too: static shapes only.
      trax.data.BucketByLength(boundaries=list(boundaries) + [max_length],
                               batch_sizes=list(batch_sizes) + [batch_sizes[-1]],
                               length_keys=[0], strict_pad_on_len=True),
      PadRows(row_multiple),
      trax.data.AddLossWeights(id_to_mask=PAD_ID),
  )()


# What training uses -------------------------------------------------------------

def _check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise UserError(f'{name} must be a whole number, got {value!r}; fix the '
                    'gin binding')
  if value < 1:
    raise UserError(f'{name} must be >= 1, got {value}')


def _check_variable_lengths(kind, seq_lens, seq_len_weights):
  """(seq_lens, seq_len_weights) as tuples, checked; (None, None) if unset."""
  if seq_lens is None and seq_len_weights is None:
    return None, None
  if kind != 'contiguous':
    raise UserError('Batching.seq_lens is for contiguous batches; line '
                    'batches take their lengths from the lines')
  if seq_lens is None or seq_len_weights is None:
    raise UserError('set Batching.seq_lens and Batching.seq_len_weights '
                    'together, e.g. (30, 35, 40) and (0.25, 0.5, 0.25)')
  seq_lens, seq_len_weights = tuple(seq_lens), tuple(seq_len_weights)
  for value in seq_lens:
    _check_positive_int('Batching.seq_lens', value)
  if len(seq_len_weights) != len(seq_lens) or not all(
      isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
      for w in seq_len_weights):
    raise UserError(f'Batching.seq_len_weights must be {len(seq_lens)} '
                    f'numbers > 0, one per seq_lens, got {seq_len_weights!r}')
  return seq_lens, seq_len_weights


@gin.configurable(module='lm_trax')
class Batching:
  """How a split becomes batches; the gin-configurable choice of stream.

  kind='contiguous': batch_size rows x seq_len windows (carried state);
    with seq_lens (e.g. (17, 30, 35, 40)) and seq_len_weights (e.g.
    (0.05, 0.24, 0.47, 0.24)) training windows have those lengths in those
    proportions, the learning rate scaled by length / seq_len (see the
    module docstring).
  kind='lines': one example per line, bucketed by length (boundaries,
    batch_sizes, max_length), padded and masked.
  """

  def __init__(self, kind='contiguous', batch_size=20, seq_len=20,
               boundaries=(32, 64, 128), batch_sizes=(64, 32, 16, 8),
               max_length=256, seed=0, seq_lens=None, seq_len_weights=None):
    if kind not in ('contiguous', 'lines'):
      raise UserError(f"Batching.kind must be 'contiguous' or 'lines', "
                      f'got {kind!r}')
    for name, value in (('batch_size', batch_size), ('seq_len', seq_len),
                        ('max_length', max_length)):
      _check_positive_int(f'Batching.{name}', value)
    for value in tuple(boundaries) + tuple(batch_sizes):
      _check_positive_int('Batching.boundaries and batch_sizes', value)
    self.kind = kind
    self.batch_size = batch_size
    self.seq_len = seq_len
    self.boundaries = tuple(boundaries)
    self.batch_sizes = tuple(batch_sizes)
    self.max_length = max_length
    self.seed = seed
    self.seq_lens, self.seq_len_weights = _check_variable_lengths(
        kind, seq_lens, seq_len_weights)

  def stream(self, vocab, text, n_passes=None, n_devices=1):
    """An endless (or n_passes) stream of batches over one split's text,
    each splitting evenly over n_devices (see check_devices); windows of
    seq_len (training's variable windows: `TrainingSplit`)."""
    return self.batches(vocab, self.encode(vocab, text), n_passes, n_devices)

  def encode(self, vocab, text):
    """A split's text as this kind of stream reads it: (N,) int32 ids for
    contiguous batches, else a list of int32 id arrays, one per line."""
    if self.kind == 'contiguous':
      return vocab.encode(text)
    return split_lines(vocab, text)

  def batches(self, vocab, encoded, n_passes=None, n_devices=1,
              windows=None):
    """The stream of batches over an `encode`d split; contiguous windows of
    seq_len, or of the WindowSchedule `windows`."""
    self.check_devices(n_devices)
    if self.kind == 'contiguous':
      return contiguous_batches(encoded, self.batch_size, self.seq_len,
                                n_passes, windows)
    return line_batches(encoded, vocab, self.boundaries, self.batch_sizes,
                        self.max_length, seed=self.seed, n_passes=n_passes,
                        row_multiple=n_devices)

  def check_devices(self, n_devices):
    """Raises UserError if contiguous batches cannot split over n_devices.

    Contiguous rows are parallel streams through the corpus, so the batch
    size cannot be rounded without changing what is trained: it must be a
    multiple of the device count. Line batches are padded with weight-0 rows
    instead (`rows`).

    Returns:
      A note for the log when line batches get padding rows, else None.
    """
    if self.kind == 'contiguous':
      if self.batch_size % n_devices:
        raise UserError(f'Batching.batch_size = {self.batch_size} is not '
                        f'divisible by the {n_devices} devices; set it to a '
                        f'multiple of {n_devices}')
      return None
    padded = self.rows(n_devices)
    if padded != tuple(self.batch_sizes):
      return (f'note: line batches of {list(self.batch_sizes)} rows are padded '
              f'to {list(padded)} (multiples of the {n_devices} devices; the '
              'extra rows have loss weight 0); make Batching.batch_sizes '
              f'multiples of {n_devices} to avoid the wasted compute')
    return None

  def rows(self, n_devices=1):
    """Rows of every batch: (batch_size,) for contiguous streams, else each
    bucket's batch size rounded up to a multiple of n_devices."""
    if self.kind == 'contiguous':
      return (self.batch_size,)
    return tuple(-(-b // n_devices) * n_devices for b in self.batch_sizes)

  def windows(self, n_tokens):
    """The WindowSchedule of training on a split of n_tokens tokens, or None
    for windows of seq_len."""
    if self.kind != 'contiguous' or self.seq_lens is None:
      return None
    return WindowSchedule(n_tokens // self.batch_size, self.seq_lens,
                          self.seq_len_weights, self.seq_len, self.seed)


class TrainingSplit:
  """The training split, tokenized once: its token count, window schedule
  (None for windows of seq_len), steps per pass, and stream of batches."""

  def __init__(self, batching, vocab, text):
    self.batching = batching
    self.vocab = vocab
    self.encoded = batching.encode(vocab, text)
    if batching.kind == 'contiguous':
      self.n_tokens = len(self.encoded)
      self.windows = batching.windows(self.n_tokens)
      self.steps_per_pass = (
          self.windows.steps_per_pass if self.windows is not None else
          steps_per_pass(self.n_tokens, batching.batch_size,
                         batching.seq_len))
    else:
      self.n_tokens = sum(len(line) for line in self.encoded)
      self.windows = None
      self.steps_per_pass = sum(1 for _ in self.stream(n_passes=1))

  def stream(self, n_passes=None, n_devices=1):
    """Training batches, each splitting evenly over n_devices."""
    return self.batching.batches(self.vocab, self.encoded, n_passes,
                                 n_devices, self.windows)

  def schedule(self, lr_schedule):
    """The learning-rate schedule (step -> rate) of these batches: with
    variable windows, each step's rate scaled by its length / seq_len."""
    if self.windows is None:
      return lr_schedule
    return self.windows.scaled(lr_schedule)
