"""Averaged weights: NT-ASGD's (Merity et al. 2018, AWD-LSTM) and the tail's.

Non-monotonically triggered averaged SGD: train with plain SGD; at each exact
validation check, if the validation loss is worse than the best of all checks
but the last `nonmono` ones, start averaging. From the next step on, the
weights used for validation, the best checkpoint, evaluation, scoring and
generation are the mean of the SGD iterates since then,

  average_k = (w_{t0+1} + ... + w_{t0+k}) / k,

while SGD itself goes on from its own iterate w_t (torch.optim.ASGD with
t0 = 0, lambd = 0, as AWD-LSTM uses it).

Tail averaging (train.average_from_epoch) starts at a fixed step instead, as
AWD-LSTM's fine-tuning stage starts ASGD again from a trained model. Either
way, each exact validation then scores the raw iterate too, and the best
checkpoint keeps whichever validates better (lm_trax.loop).

The average lives beside each checkpoint's trax files as AVERAGE_FILE (the
count and the mean's leaves in the order of the model's weights), so an
interrupted run resumes it exactly and `trained.Run` loads it in place of the
raw weights. When averaging started is not stored: NT-ASGD's start is
replayed from the run's exact validation record (metrics.jsonl), which its
rule depends on only; the tail's from its step.
"""

import pathlib

import jax
import numpy as np

AVERAGE_FILE = 'averaged_weights.npz'


def trigger_check(losses, nonmono):
  """The index of the check at which averaging starts, or None.

  Args:
    losses: the exact validation losses of the checks so far, in order.
    nonmono: how many of the latest checks the best is not taken from.

  Returns:
    The first k with k >= nonmono + 1 and losses[k] > min(losses[:k - nonmono])
    (AWD-LSTM: val_loss > min(best_val_loss[:-nonmono]) once more than
    nonmono losses were recorded), else None.
  """
  for k in range(nonmono + 1, len(losses)):
    if losses[k] > min(losses[:k - nonmono]):
      return k
  return None


@jax.jit
def _running_mean(average, weights, count):
  return jax.tree_util.tree_map(
      lambda a, w: a + (w - a) / count.astype(a.dtype), average, weights)


class WeightAverage:
  """The running mean of the weights after each step since averaging started.

  Attributes:
    started: whether averaging has started.
    count: how many iterates the mean holds (0 right after the trigger).
    mean: the mean, a weight tree like the model's (None while count is 0).
  """

  def __init__(self):
    self.started = False
    self.count = 0
    self.mean = None

  def start(self):
    self.started = True

  def add(self, weights):
    """Adds one iterate (a weight tree) to the mean."""
    self.count += 1
    if self.mean is None:
      self.mean = jax.tree_util.tree_map(lambda w: w + 0, weights)
    else:
      self.mean = _running_mean(self.mean, weights, np.int32(self.count))

  def save(self, directory, unreplicate=lambda tree: tree):
    """Writes the mean into a checkpoint directory (nothing while empty)."""
    if not self.count:
      return
    leaves = jax.tree_util.tree_leaves(unreplicate(self.mean))
    arrays = {f'leaf_{i:04d}': np.asarray(leaf) for i, leaf in
              enumerate(leaves)}
    np.savez(pathlib.Path(directory) / AVERAGE_FILE, count=self.count,
             **arrays)

  def load(self, directory, like):
    """Reads the mean saved in `directory`, shaped like the tree `like`;
    leaves the average empty if none was saved there."""
    self.count, self.mean = 0, None
    loaded = load(directory, like)
    if loaded is not None:
      self.count, self.mean = loaded


def load(directory, like):
  """(count, mean weight tree shaped like `like`) saved in a checkpoint
  directory, or None if it holds no average."""
  path = pathlib.Path(directory) / AVERAGE_FILE
  if not path.exists():
    return None
  with np.load(path) as saved:
    leaves = [saved[f'leaf_{i:04d}'] for i in range(len(saved.files) - 1)]
    count = int(saved['count'])
  treedef = jax.tree_util.tree_structure(like)
  if treedef.num_leaves != len(leaves):
    raise ValueError(f'{path} holds {len(leaves)} arrays, the model has '
                     f'{treedef.num_leaves} weights')
  return count, jax.tree_util.tree_unflatten(treedef, leaves)
