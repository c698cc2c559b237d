"""A pytest plugin (tests/conftest.py loads it): with
LM_TRAX_TESTS_SKIP_NOTHING=1, as CI sets it, a skipped test (a missing
corpus, extra or free core) fails the run and is listed with its reason, so
that no test goes unrun there unnoticed."""

import os

import pytest

ENV_VAR = 'LM_TRAX_TESTS_SKIP_NOTHING'
_skipped = []


def pytest_runtest_logreport(report):
  if report.skipped and not hasattr(report, 'wasxfail'):
    _skipped.append(report)


def pytest_sessionfinish(session):
  if not (os.environ.get(ENV_VAR) and _skipped):
    return
  reasons = sorted({f'{r.nodeid}: {r.longrepr[2]}'
                    if isinstance(r.longrepr, tuple) else r.nodeid
                    for r in _skipped})
  print(f'\n{ENV_VAR} is set and {len(reasons)} test(s) skipped:\n  ' +
        '\n  '.join(reasons))
  session.exitstatus = pytest.ExitCode.TESTS_FAILED
