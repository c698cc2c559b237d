"""One place that opens a run directory for evaluation, scoring and generation.

A run directory written by train() holds the operative gin config
(config.gin), the vocabulary (vocab.json) and the trax checkpoint
(model.pkl.gz); nothing else, in particular no corpus, is needed to rebuild
the trained model.
"""

import pathlib

import jax
import numpy as np
from trax import shapes

from lm_trax import averaging
from lm_trax import checkpoints
from lm_trax import config
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError

class Run:
  """A trained run: its vocabulary, config and a way to build its model.

  Opening a run reads its config.gin once and keeps what it sets (the model
  function with its hyperparameters, the corpus and the batching) as plain
  values: the process's gin configuration is left as it was, and several
  runs can be open side by side.
  """

  def __init__(self, output_dir, checkpoint=checkpoints.LATEST):
    """Opens output_dir; checkpoint is 'latest', 'best' or a step number."""
    self.output_dir = pathlib.Path(output_dir).expanduser()
    if not self.output_dir.is_dir():
      raise UserError(f'run directory {self.output_dir} does not exist; '
                      'train one first: python train.py --gin_file=...')
    try:
      checkpoint = checkpoints.parse_choice(checkpoint)
    except ValueError as e:
      raise UserError(f'{e}; {self.output_dir} has '
                      f'{checkpoints.describe(self.output_dir)}') from None
    self.checkpoint = checkpoints.model_file(self.output_dir, checkpoint)
    if self.checkpoint is None:
      what = (f'checkpoint at step {checkpoint}'
              if isinstance(checkpoint, int) else f'{checkpoint} checkpoint')
      raise UserError(f'{self.output_dir} has no {what}; it has '
                      f'{checkpoints.describe(self.output_dir)}')
    if not (self.output_dir / 'config.gin').is_file():
      raise UserError(f'{self.output_dir}/config.gin is missing: '
                      f'{self.output_dir} is not a run directory of train.py')
    self.vocab = vocab_lib.Vocab.load(self.output_dir)
    from lm_trax import corpora  # pylint: disable=g-import-not-at-top
    from lm_trax import data  # pylint: disable=g-import-not-at-top
    with config.isolated():
      config.parse([str(self.output_dir / 'config.gin')])
      self._model_fn = config.bound_model('train.model')
      self._batching_settings = config.settings(data.Batching)
      self._corpus_settings = config.settings(corpora.Corpus)

  def batching(self):
    """The run's Batching."""
    from lm_trax import data  # pylint: disable=g-import-not-at-top
    return data.Batching(**self._batching_settings)

  def corpus(self, data_dir=None):
    """The run's Corpus, read from data_dir if given."""
    from lm_trax import corpora  # pylint: disable=g-import-not-at-top
    settings = dict(self._corpus_settings)
    if data_dir:
      settings['data_dir'] = data_dir
    return corpora.Corpus(**settings)

  def model(self, mode='eval', batch_size=1, seq_len=1, carry_state=True):
    """The trained model, weights loaded, for inputs (batch_size, seq_len).

    Raises:
      UserError: if the checkpoint's weights do not fit the configured model.
    """
    model = self._model_fn(vocab_size=self.vocab.size, mode=mode,
                           carry_state=carry_state)
    signature = shapes.ShapeDtype((batch_size, seq_len), np.int32)
    _, init_state = model.init(signature)
    expected = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    try:
      model.init_from_file(str(self.checkpoint), weights_only=True,
                           input_signature=signature)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'cannot load {self.checkpoint} into the model of '
                      f'{self.output_dir}/config.gin ({type(e).__name__}: '
                      f'{e}); was config.gin edited?') from e
    loaded = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    if loaded != expected:
      raise UserError(f'the checkpoint {self.checkpoint} does not fit the '
                      f'model in {self.output_dir}/config.gin (weight shapes '
                      f'{loaded[:3]}... vs {expected[:3]}...); was config.gin '
                      'edited?')
    averaged = averaging.load(self.checkpoint.parent, model.weights)
    if averaged is not None:  # NT-ASGD: the averaged weights are the model.
      model.weights = averaged[1]
    model.state = init_state  # Fresh zero state for this batch size.
    return model
