"""A trained run: its vocabulary, its configuration and its model.

`Run` opens a run directory of train.py (its files: lm_trax.run_dir) and
rebuilds what was trained: the model with its checkpoint's weights, as a trax
model (`Run.model`) or as the lm_trax.inference.Predictor every command runs
(`Run.predictor`), and the corpus and batching it was trained with. What
opens a run for evaluation, scoring, generation and the Python API comes
here; the training code never does, so it does not depend on this module.
"""

import pathlib

import jax
import numpy as np
from lm_trax import compat  # pylint: disable=g-bad-import-order  (before trax)
from trax import shapes

from lm_trax import averaging
from lm_trax import checkpoints
from lm_trax import config
from lm_trax import corpora
from lm_trax import data
from lm_trax import inference
from lm_trax import precision as precision_lib
from lm_trax import training
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError, one_line
from lm_trax.run_dir import CONFIG_FILE


class Run:
  """A trained run: its vocabulary, config and a way to build its model.

  Opening a run reads its config.gin once and keeps what it sets (the model
  function with its hyperparameters, the corpus and the batching) as plain
  values: the process's gin configuration is left as it was, and several
  runs can be open side by side.

  The model runs in the precision it was trained in (train.precision), or in
  the one given (lm_trax.precision: the same float32 weights, matmuls in
  another number format).

  Attributes:
    output_dir, checkpoint (the model file), vocab, precision,
    trained_precision; model_fn (the model function, hyperparameters and
    precision bound), batching_settings and corpus_settings (the run's
    Batching and Corpus arguments).
  """

  def __init__(self, output_dir, checkpoint=checkpoints.LATEST,
               precision=None):
    """Opens output_dir; checkpoint is 'latest', 'best' or a step number;
    precision 'float32', 'bfloat16' or None (the run's own)."""
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
    try:
      checkpoints.verify(self.checkpoint.parent)
    except ValueError as e:
      raise UserError(f'{e}: load another checkpoint; {self.output_dir} has '
                      f'{checkpoints.describe(self.output_dir)}') from None
    if not (self.output_dir / CONFIG_FILE).is_file():
      raise UserError(f'{self.output_dir}/{CONFIG_FILE} is missing: '
                      f'{self.output_dir} is not a run directory of train.py')
    self.vocab = vocab_lib.Vocab.load(self.output_dir)
    with compat.gin_isolated():
      try:
        config.parse([str(self.output_dir / CONFIG_FILE)])
        model_fn = config.bound_model('train.model')
      except (UserError, ValueError) as e:
        raise UserError(f'{self.output_dir}/{CONFIG_FILE} is not a whole run '
                        f'config ({one_line(e)}); was it edited? run.json '
                        'records the command that trained the run') from None
      self.trained_precision = config.settings(training.train)['precision']
      self.batching_settings = config.settings(data.Batching)
      self.corpus_settings = config.settings(corpora.Corpus)
    self.precision = precision or self.trained_precision
    try:
      self.model_fn = precision_lib.bind(model_fn, self.precision)
    except ValueError as e:
      raise UserError(str(e)) from None
    self._predictor = None

  def batching(self):
    """The run's Batching."""
    return data.Batching(**self.batching_settings)

  def corpus(self, data_dir=None):
    """The run's Corpus, read from data_dir if given."""
    settings = dict(self.corpus_settings)
    if data_dir:
      settings['data_dir'] = data_dir
    return corpora.Corpus(**settings)

  def predictor(self):
    """The trained model as an lm_trax.inference.Predictor: what every
    command runs. Built once per Run (weights loaded, jitted functions kept).

    Raises:
      UserError: if the checkpoint's weights do not fit the configured model.
    """
    if self._predictor is None:
      self._predictor = inference.Predictor(self.model_fn, self.vocab,
                                            self.model().weights)
    return self._predictor

  def model(self, mode='eval', batch_size=1, seq_len=1, carry_state=True):
    """The trained trax model, weights loaded (NT-ASGD's average once
    averaging started), state fresh for inputs (batch_size, seq_len).

    Raises:
      UserError: if the checkpoint's weights do not fit the configured model.
    """
    model = self.model_fn(vocab_size=self.vocab.size, mode=mode,
                           carry_state=carry_state)
    signature = shapes.ShapeDtype((batch_size, seq_len), np.int32)
    _, init_state = model.init(signature)
    expected = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    try:
      model.init_from_file(str(self.checkpoint), weights_only=True,
                           input_signature=signature)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'cannot load {self.checkpoint} into the model of '
                      f'{self.output_dir}/{CONFIG_FILE} ({type(e).__name__}: '
                      f'{e}); was {CONFIG_FILE} edited?') from e
    loaded = [np.shape(w) for w in jax.tree_util.tree_leaves(model.weights)]
    if loaded != expected:
      raise UserError(f'the checkpoint {self.checkpoint} does not fit the '
                      f'model in {self.output_dir}/{CONFIG_FILE} (weight '
                      f'shapes {loaded[:3]}... vs {expected[:3]}...); was '
                      f'{CONFIG_FILE} edited?')
    averaged = averaging.load(self.checkpoint.parent, model.weights)
    if averaged is not None:  # Averaged weights (NT-ASGD, tail) are the model.
      model.weights = averaged[1]
    model.state = init_state  # Fresh zero state for this batch size.
    return model
