"""lm_trax: neural language models in Trax.

Data flow, one module per arrow:

  text (corpora) -> vocabulary (vocab) -> streams/batches (data) -> model
  (models, layers) -> trax Loop: train/eval, checkpoints (training) ->
  perplexity -> samples

Importing lm_trax applies the fixes trax 1.4.1 needs on current JAX (compat)
and registers everything configurable with gin, here and only here.

A trained run from Python: lm = lm_trax.load('runs/ptb_lstm') (lm_trax.api).
"""

__version__ = '0.2.0'

from lm_trax import compat
from lm_trax import compilation_cache

compat.apply()
compilation_cache.enable()  # Reruns load compiled programs (compilation_cache).

# pylint: disable=g-import-not-at-top,wrong-import-position
import gin
from gin import config as _gin_config

# trax registers gin configurables under names lm_trax defines too, which would
# make `train.n_steps = 30` or `GRULM.d_model = 512` ambiguous. lm_trax never
# uses these trax functions, so their registrations are dropped.
_SHADOWED_TRAX_CONFIGURABLES = (
    'trax.supervised.trainer_lib.train',
    'trax.models.GRULM',
    'trax.models.RNNLM',
)
for _selector in _SHADOWED_TRAX_CONFIGURABLES:
  if _selector in _gin_config._REGISTRY:  # pylint: disable=protected-access
    _gin_config._REGISTRY.pop(_selector)  # pylint: disable=protected-access

from lm_trax import corpora  # Corpus
from lm_trax import data  # Batching
from lm_trax import models
from lm_trax import optimizers
from lm_trax import schedules  # constant_lr, epoch_decay
from lm_trax import training  # train

for _model in (models.NPLM, models.LSTMLM, models.GRULM, models.RNNLM):
  gin.external_configurable(_model, module='lm_trax')
# SGD with weight decay: bind it fully qualified (@lm_trax.SGD), as trax's is.
gin.external_configurable(optimizers.SGD, module='lm_trax')


def __getattr__(name):
  """lm_trax.load and lm_trax.LanguageModel (lm_trax.api), imported on first
  use: importing them here would import lm_trax.evaluate, .score and
  .generate with the package, which `python -m lm_trax.evaluate` warns about."""
  if name in ('load', 'LanguageModel'):
    from lm_trax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
