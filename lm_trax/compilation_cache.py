"""JAX's persistent compilation cache: a second run skips compiling.

Every lm_trax command compiles the same programs again on each start: the
training step, the evaluation and sampling functions, and a dozen small
random-number programs that initialize the weights. With the cache, a rerun
or a resumed run, `lm_trax.evaluate` and `lm_trax.generate` load them
instead (docs/speed.md, "Start-up"). The
commands turn it on when they start (lm_trax.process.set_up); importing a
module never does.

Where: $LM_TRAX_JAX_CACHE, else $XDG_CACHE_HOME/lm_trax/jax (~/.cache/...),
at most 1 GB (least recently used entries go first). LM_TRAX_JAX_CACHE=off
turns it off (the tests do, so that they compile what they check).
"""

import os
import pathlib

ENV_VAR = 'LM_TRAX_JAX_CACHE'
MAX_BYTES = 1 << 30


def directory():
  """The cache directory, or None if turned off."""
  value = os.environ.get(ENV_VAR, '')
  if value.lower() in ('off', '0', 'false', 'no'):
    return None
  if value:
    return pathlib.Path(value).expanduser()
  cache = os.environ.get('XDG_CACHE_HOME', '')
  root = pathlib.Path(cache) if os.path.isabs(cache) else (
      pathlib.Path.home() / '.cache')
  return root / 'lm_trax' / 'jax'


def enable():
  """Points JAX's persistent compilation cache at `directory()`."""
  # Not above: the commands import this module (through lm_trax.process)
  # before they answer --help, which needs no JAX.
  import jax  # pylint: disable=g-import-not-at-top
  path = directory()
  if path is None or jax.config.jax_compilation_cache_dir:
    return  # Off, or set by the user already.
  jax.config.update('jax_compilation_cache_dir', str(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
