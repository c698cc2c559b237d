"""SGD with L2 weight decay, as PyTorch's SGD(weight_decay=...) applies it.

trax.optimizers.SGD has no weight decay. Here the gradient of each weight w
becomes g + weight_decay * w after gradient clipping (trax clips in
Optimizer.tree_update before calling update), then w <- w - lr * g: the
update of torch.optim.SGD that AWD-LSTM trains with (1.2e-6 on PTB).
"""

from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
import trax


class SGD(trax.optimizers.SGD):
  """Plain SGD with optional L2 weight decay (see the module docstring).

  Args:
    learning_rate: the step size (the schedule's value replaces it).
    clip_grad_norm: clip the global gradient norm to this, if set.
    weight_decay: the L2 coefficient; 0 gives trax's SGD exactly.
  """

  def __init__(self, learning_rate=0.01, clip_grad_norm=None, weight_decay=0.0):
    if weight_decay < 0:
      raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
    super().__init__(learning_rate=learning_rate,
                     clip_grad_norm=clip_grad_norm, weight_decay=weight_decay)

  def update(self, step, grads, weights, slots, opt_params):
    grads = grads + opt_params['weight_decay'] * weights
    return super().update(step, grads, weights, slots, opt_params)
