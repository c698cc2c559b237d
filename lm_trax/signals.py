"""Stopping training cleanly on SIGINT/SIGTERM.

While `stop_on_signals(loop)` is active, the first SIGINT or SIGTERM asks
the Loop's StopOnSignal callback to save a checkpoint after the current step
and raise Interrupted (a second signal stops at once). Rerunning the same
command resumes from that checkpoint.
"""

import signal

from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
from trax.supervised import callbacks as trax_callbacks

from lm_trax import trax_internals
from lm_trax.errors import UserError


class Interrupted(UserError):
  """Training was stopped by SIGINT/SIGTERM after saving a checkpoint."""

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum


class StopOnSignal(trax_callbacks.TrainingStepCallback):
  """Saves a checkpoint and raises Interrupted after SIGINT or SIGTERM.

  The signal handler only records the request; the checkpoint is written
  between two steps, so it is consistent.
  """

  def __init__(self, loop):
    super().__init__(loop)
    self.requested = None

  def request(self, signum, unused_frame=None):
    if self.requested is not None:  # A second signal: stop at once.
      raise KeyboardInterrupt
    self.requested = signum

  def call_at(self, step):
    return True

  def on_step_begin(self, step):
    pass

  def on_step_end(self, step):
    if self.requested is None:
      return
    self._loop.save_checkpoint('model')
    name = signal.Signals(self.requested).name
    raise Interrupted(f'stopped by {name} at step {step}; checkpoint saved in '
                      f'{self._loop.output_dir}; rerun the same command to '
                      'resume', self.requested)


class stop_on_signals:  # pylint: disable=invalid-name
  """Routes SIGINT/SIGTERM to the Loop's StopOnSignal while training."""

  def __init__(self, loop):
    self._stopper = next(c for c in trax_internals.callbacks(loop)
                         if isinstance(c, StopOnSignal))
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[signum] = signal.signal(signum, self._stopper.request)
      except ValueError:  # Not the main thread: leave signals alone.
        pass

  def __exit__(self, *unused_exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
