import numpy as np
import pytest

from lm_trax import data
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError


def test_contiguous_batches_continue_row_by_row():
  ids = np.arange(1, 104, dtype=np.int32)  # 103 tokens -> 4 rows of 25.
  stream = data.contiguous_batches(ids, batch_size=4, seq_len=6, n_passes=1)
  batches = list(stream)
  assert len(batches) == data.steps_per_pass(103, 4, 6) == 4  # (25 - 1) // 6
  rows = ids[:100].reshape(4, 25)
  for k, (inputs, targets, weights) in enumerate(batches):
    assert inputs.shape == targets.shape == weights.shape == (4, 6)
    assert inputs.dtype == np.int32 and weights.dtype == np.float32
    np.testing.assert_array_equal(inputs, rows[:, 6 * k:6 * k + 6])
    np.testing.assert_array_equal(targets, rows[:, 6 * k + 1:6 * k + 7])
    np.testing.assert_array_equal(weights, 1.0)
  # Batch k+1 starts where batch k's targets ended, in every row.
  np.testing.assert_array_equal(batches[1][0][:, 0], batches[0][1][:, -1])


def test_contiguous_batches_repeat_passes_in_order():
  ids = np.arange(1, 42, dtype=np.int32)
  stream = data.contiguous_batches(ids, batch_size=2, seq_len=5)
  n = data.steps_per_pass(41, 2, 5)
  first_pass = [next(stream) for _ in range(n)]
  second_pass = [next(stream) for _ in range(n)]
  np.testing.assert_array_equal(second_pass[0][0][:, 0], [1, 21])
  for a, b in zip(first_pass, second_pass):
    np.testing.assert_array_equal(a[0], b[0])


def test_too_short_split_is_a_user_error():
  with pytest.raises(UserError, match='batch_size'):
    next(data.contiguous_batches(np.arange(1, 4), batch_size=4, seq_len=2))


def test_line_batches_pad_and_mask():
  vocab = vocab_lib.build('a b c d e\n', 'word')
  text = 'a b\na b c d e a b c d\nc\nd e a\n' * 8
  lines = data.split_lines(vocab, text)
  assert list(lines[0]) == [vocab.ids['a'], vocab.ids['b'], vocab.eos_id]
  stream = data.line_batches(lines, vocab, boundaries=[4, 8],
                             batch_sizes=[4, 2, 1], max_length=16, n_passes=1)
  seen = 0
  for inputs, targets, weights in stream:
    assert inputs.shape == targets.shape == weights.shape
    assert inputs.shape[1] in (4, 8, 12, 16)  # Padded to a bucket boundary.
    np.testing.assert_array_equal(weights, (targets != vocab_lib.PAD_ID))
    # Inputs are the targets moved right by one, starting with eos.
    for x, y, w in zip(inputs, targets, weights):
      n = int(w.sum())
      assert x[0] == vocab.eos_id
      np.testing.assert_array_equal(x[1:n], y[:n - 1])
      assert y[n - 1] == vocab.eos_id
    seen += int(weights.sum())
  assert seen > 0


def test_line_order_is_reproducible_from_the_seed():
  vocab = vocab_lib.build('a b c\n', 'char')
  lines = data.split_lines(vocab, 'abc\nab\nc\nbca\ncab\n' * 4)
  def first_batches(seed):
    stream = data.line_batches(lines, vocab, [4], [2, 2], 8, seed=seed)
    return [next(stream)[0] for _ in range(3)]
  for a, b in zip(first_batches(1), first_batches(1)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in
             zip(first_batches(1), first_batches(2)))


def test_batching_steps_per_pass_counts_the_stream():
  vocab = vocab_lib.build('a b c\n', 'word')
  text = 'a b c\n' * 50  # 200 tokens
  contiguous = data.Batching(batch_size=4, seq_len=5)
  assert contiguous.steps_per_pass(vocab, text) == (50 - 1) // 5
  lines = data.Batching(kind='lines', boundaries=(8,), batch_sizes=(5, 5))
  assert lines.steps_per_pass(vocab, text) == len(
      list(lines.stream(vocab, text, n_passes=1))) == 10
