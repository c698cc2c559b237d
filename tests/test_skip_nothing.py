"""CI's rule: with LM_TRAX_TESTS_SKIP_NOTHING=1 a skipped test fails the
run (tests/skip_nothing.py); without it a skip is only reported."""

import os
import subprocess
import sys

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order

A_SKIP = """
import pytest

def test_passes():
  pass

def test_needs_what_is_missing():
  pytest.skip('the thing is missing: install it')
"""


def _pytest(tmp_path, skip_nothing):
  (tmp_path / 'test_some.py').write_text(A_SKIP)
  env = dict(os.environ, PYTHONPATH=str(REPO / 'tests'))
  env.pop('LM_TRAX_TESTS_SKIP_NOTHING', None)
  if skip_nothing:
    env['LM_TRAX_TESTS_SKIP_NOTHING'] = '1'
  return subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-p', 'skip_nothing',
       '-p', 'no:cacheprovider', '--rootdir', str(tmp_path),
       str(tmp_path / 'test_some.py')],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
      check=False)


@pytest.mark.parametrize('skip_nothing', [True, False])
def test_a_skip_fails_the_run_only_where_nothing_may_skip(tmp_path,
                                                          skip_nothing):
  done = _pytest(tmp_path, skip_nothing)
  assert '1 passed, 1 skipped' in done.stdout, done.stdout + done.stderr
  if skip_nothing:
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert ('test_some.py::test_needs_what_is_missing: Skipped: the thing '
            'is missing: install it') in done.stdout
  else:
    assert done.returncode == 0, done.stdout
