"""A pytest plugin (tests/conftest.py loads it) for running the tests in
pytest-xdist workers side by side (`pytest -n 2 --dist loadfile`).

A test marked `alone` measures the whole machine (bench/machine.py's
busy_cores reads every core's load), so another worker's test would show up
in what it measures. It waits until no other worker is running a test and
holds them off while it runs: every test takes a shared lock on one file per
test run, an `alone` test an exclusive one. Without xdist nothing is locked.
The file, empty, stays in the temporary directory: removing it while another
worker may still open it would give that worker a lock of its own.
"""

import pathlib
import tempfile

import pytest


def _lock_path(run):
  return pathlib.Path(tempfile.gettempdir()) / f'lm_trax_tests_{run}.lock'


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'alone: runs while no other xdist worker runs a test')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
  # The run's id, the same in every worker; none without xdist. Not
  # $PYTEST_XDIST_TESTRUNUID: a pytest that a test starts inherits it, and an
  # `alone` test there would wait forever for the shared lock of the test
  # that waits for it.
  run = getattr(item.config, 'workerinput', {}).get('testrunuid')
  if not run:
    yield
    return
  import fcntl  # pylint: disable=g-import-not-at-top  (xdist runs: POSIX)
  # Setup, call and teardown: a module's fixtures are built and torn down in
  # its tests' setup and teardown.
  with open(_lock_path(run), 'a', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX if item.get_closest_marker('alone')
                else fcntl.LOCK_SH)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)

