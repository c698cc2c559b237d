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
  split = data.TrainingSplit(contiguous, vocab, text)
  assert split.steps_per_pass == (50 - 1) // 5
  assert split.n_tokens == 200 and split.windows is None
  lines = data.Batching(kind='lines', boundaries=(8,), batch_sizes=(5, 5))
  split = data.TrainingSplit(lines, vocab, text)
  assert split.steps_per_pass == len(
      list(lines.stream(vocab, text, n_passes=1))) == 10
  assert split.n_tokens == 200  # 3 words and <eos> per line.


# Variable-length windows: 4 rows of 250 tokens (1,000 ids), windows of 5, 10
# and 15 tokens weighted 1 : 2 : 1, a mean of 10: 24 windows of 249 tokens at
# most, 6 + 12 + 6 of them (240 tokens).
VARIABLE = dict(batch_size=4, seq_len=10, seq_lens=(5, 10, 15),
                seq_len_weights=(1, 2, 1))


def _variable_batches(n_passes, seed=0):
  vocab = vocab_lib.build(' '.join(str(i) for i in range(1000)) + '\n',
                          'word')
  text = ' '.join(str(i) for i in range(999)) + '\n'  # 1,000 tokens.
  batching = data.Batching(seed=seed, **VARIABLE)
  ids = vocab.encode(text)
  split = data.TrainingSplit(batching, vocab, text)
  return batching, split, vocab, text, ids, list(split.stream(n_passes))


def test_variable_windows_cut_each_pass_into_the_weighted_lengths():
  batching, split, vocab, text, ids, batches = _variable_batches(n_passes=2)
  assert split.steps_per_pass == 24 == len(batches) // 2
  rows = ids.reshape(4, 250)
  for one_pass in (batches[:24], batches[24:]):
    lengths = [inputs.shape[1] for inputs, _, _ in one_pass]
    assert sorted(lengths) == [5] * 6 + [10] * 12 + [15] * 6
    # Consecutive windows continue each row, targets one token ahead.
    inputs = np.concatenate([b[0] for b in one_pass], axis=1)
    targets = np.concatenate([b[1] for b in one_pass], axis=1)
    np.testing.assert_array_equal(inputs, rows[:, :240])
    np.testing.assert_array_equal(targets, rows[:, 1:241])
  orders = [[b[0].shape[1] for b in p] for p in (batches[:24], batches[24:])]
  assert orders[0] != orders[1]  # Shuffled anew each pass...
  again = _variable_batches(n_passes=2)[5]
  assert orders == [[b[0].shape[1] for b in p] for p in (again[:24],
                                                         again[24:])]
  # ...and by the seed.
  other = _variable_batches(n_passes=1, seed=1)[5]
  assert [b[0].shape[1] for b in other] != orders[0]
  # Evaluation keeps windows of seq_len.
  assert {b[0].shape[1] for b in batching.stream(vocab, text, 1)} == {10}


def test_the_rate_of_each_step_is_scaled_by_its_window_length():
  _, split, _, _, _, batches = _variable_batches(n_passes=2)
  schedule = split.schedule(lambda step: 30.0)
  for step, (inputs, _, _) in enumerate(batches, start=1):
    assert schedule(step) == pytest.approx(30.0 * inputs.shape[1] / 10)


@pytest.mark.parametrize('settings, message', [
    (dict(seq_lens=(5, 10)), 'together'),
    (dict(seq_lens=(5, 10), seq_len_weights=(1,)), 'must be 2 numbers > 0'),
    (dict(seq_lens=(5, 0), seq_len_weights=(1, 1)), 'seq_lens must be >= 1'),
    (dict(seq_lens=(5,), seq_len_weights=(1,), kind='lines'), 'contiguous'),
])
def test_bad_variable_lengths_are_one_line_errors(settings, message):
  with pytest.raises(UserError, match=message):
    data.Batching(**settings)
