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


def test_a_compiled_program_is_written_to_the_cache(tmp_path):
  # JAX's cache needs the filelock package for its size limit: without it,
  # every read and write fails with a warning, and nothing is cached.
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  program = ('import jax\n'
             'from lm_trax import process\n'
             'process.set_up()  # What each command does first.\n'
             'print(jax.jit(lambda x: x * 2 + 1)(1.0))\n')
  result = subprocess.run(
      [sys.executable, '-W', 'error::UserWarning', '-c', program],
      env=dict(os.environ, LM_TRAX_JAX_CACHE=str(tmp_path / 'jax')),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'compilation cache' not in result.stderr, result.stderr[-2000:]
  assert any((tmp_path / 'jax').iterdir())
