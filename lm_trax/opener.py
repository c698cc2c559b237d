"""Opening a trained model from disk, as every command and lm_trax.load do.

Two kinds of directory hold one: a run directory of train.py (a trax
checkpoint; lm_trax.trained.Run imports trax and TensorFlow to read it) and a
model exported by lm-trax-export (named weights; lm_trax.exported.Export
runs it without either). Both give the same interface: vocab, precision,
batching(), corpus() and predictor(), the lm_trax.inference.Predictor that
evaluation, scoring and generation run.
"""

from lm_trax import exported
from lm_trax.errors import UserError


def open_model(path, checkpoint='latest', precision=None):
  """The trained model in the directory `path`: an Export or a Run.

  Args:
    path: the directory.
    checkpoint: for a run, 'latest', 'best' or a step; an export holds one.
    precision: 'float32', 'bfloat16' or None (the one it trained in).

  Raises:
    UserError: if the directory is neither, or a checkpoint is chosen for
      an export.
  """
  if exported.is_export(path):
    if checkpoint != 'latest':
      raise UserError(f'{path} is an exported model: it holds one checkpoint; '
                      'open it without choosing one')
    return exported.Export(path, precision)
  # Imported here: trax and TensorFlow only for a run directory.
  from lm_trax import trained  # pylint: disable=g-import-not-at-top
  return trained.Run(path, checkpoint, precision)
