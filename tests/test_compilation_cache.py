"""Where JAX's persistent compilation cache goes, and how to turn it off."""

import pathlib

from lm_trax import compilation_cache


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('LM_TRAX_JAX_CACHE', 'off')
  assert compilation_cache.directory() is None
  monkeypatch.setenv('LM_TRAX_JAX_CACHE', str(tmp_path / 'jax'))
  assert compilation_cache.directory() == tmp_path / 'jax'
  monkeypatch.delenv('LM_TRAX_JAX_CACHE')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert compilation_cache.directory() == tmp_path / 'lm_trax' / 'jax'
  monkeypatch.setenv('XDG_CACHE_HOME', 'relative/paths/are/ignored')
  assert compilation_cache.directory() == (
      pathlib.Path.home() / '.cache' / 'lm_trax' / 'jax')
