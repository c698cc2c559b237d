"""Learning-rate schedules measured in passes over the training data.

train() calls the configured schedule as `schedule(steps_per_epoch=S)` and
passes the returned function step -> learning rate (steps count from 1) to
trax's TrainTask. S comes from the data, so configs speak in epochs.
"""

import gin


@gin.configurable(module='lm_trax')
def constant_lr(steps_per_epoch, learning_rate=1e-3):
  """The same learning rate at every step."""
  del steps_per_epoch
  return lambda step: learning_rate


@gin.configurable(module='lm_trax')
def epoch_decay(steps_per_epoch, learning_rate=1.0, constant_epochs=4,
                decay=0.5):
  """Zaremba et al. 2014: `learning_rate` for the first `constant_epochs`
  epochs, then multiplied by `decay` at the start of every further epoch.

  With the defaults, epochs 1-4 use 1.0, epoch 5 uses 0.5, epoch 6 0.25, ...
  """
  def schedule(step):
    epoch = (int(step) - 1) // steps_per_epoch  # 0-based epoch of this step.
    return learning_rate * decay ** max(0, epoch + 1 - constant_epochs)
  return schedule
