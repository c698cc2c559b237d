"""Process-wide settings that the commands apply when they start.

`set_up()` is what each command's entry point calls once its arguments are
read (train, evaluate, score, generate, sweep), before TensorFlow, trax or
XLA start their threads:

  * glibc keeps and reuses large freed memory (`reuse_freed_memory`, fix (g)
    of lm_trax.compat), and
  * JAX's persistent compilation cache (lm_trax.compilation_cache).

Both change the whole process, so importing a module never applies them: a
program of its own (a notebook, a script, the tests' conftest) that uses
lm_trax as a library calls `set_up()` first if it wants them too.

This module imports only the standard library (the cache imports JAX when
it is turned on).
"""

import ctypes
import os
import platform

from lm_trax import compilation_cache

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes a C int: about 2 GB, i.e. never.


def set_up():
  """Applies the process-wide settings of the module docstring; calling it
  again changes nothing more."""
  reuse_freed_memory()  # Before XLA starts its threads (and their arenas).
  compilation_cache.enable()  # Reruns load compiled programs.


def _users_malloc_settings():
  """The user's own malloc settings in the environment, if any."""
  return ([k for k in os.environ if k.startswith('MALLOC_')] +
          (['GLIBC_TUNABLES'] if 'malloc' in os.environ.get(
              'GLIBC_TUNABLES', '') else []) +
          (['LD_PRELOAD'] if 'malloc' in os.environ.get('LD_PRELOAD', '')
           else []))


def reuse_freed_memory():
  """Fix (g) of lm_trax.compat: large allocations from glibc's heap, kept
  for reuse. Returns whether glibc took the settings (False off glibc, with
  LM_TRAX_MALLOC=default, or when the user set malloc up themselves)."""
  if (platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc' or
      os.environ.get('LM_TRAX_MALLOC') == 'default' or
      _users_malloc_settings()):
    return False
  mallopt = ctypes.CDLL(None).mallopt
  return all(mallopt(parameter, value) == 1 for parameter, value in (
      (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
      (M_ARENA_MAX, 1)))
