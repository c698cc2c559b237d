"""Every name a gin config of lm_trax can use, registered with gin once.

Importing this module imports the modules that define gin configurables
(train, Corpus, Batching, the schedules) and registers the model functions
and SGD, which do not import gin themselves. lm_trax.config imports it before
parsing any config; nothing else needs to.
"""

import gin

from lm_trax import corpora  # Corpus
from lm_trax import data  # Batching
from lm_trax import models
from lm_trax import optimizers
from lm_trax import schedules  # constant_lr, epoch_decay
from lm_trax import training  # train

MODELS = (models.RecurrentLM, models.NPLM, models.LSTMLM, models.GRULM,
          models.RNNLM)

# precision is train.precision's to set (one knob for every model and every
# command that runs the model), so a model binding of it is refused.
for _model in MODELS:
  gin.external_configurable(_model, module='lm_trax', denylist=['precision'])
# Bound fully qualified (@lm_trax.SGD), as trax's own is (@trax.optimizers.SGD).
gin.external_configurable(optimizers.SGD, module='lm_trax')

del corpora, data, schedules, training  # Imported for their registrations.
