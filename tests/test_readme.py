"""The README's commands are the ones CI and users run."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
TEST_COMMAND = "pip install -e '.[test]' && pytest -q"
MAIN_COMMAND = 'pip install -e . && python train.py --gin_file=gin/ptb_lstm.gin'


def test_ci_runs_the_readme_test_command_verbatim():
  readme = (REPO / 'README.md').read_text().splitlines()
  ci = (REPO / '.ci' / 'run').read_text().splitlines()
  assert TEST_COMMAND in readme
  assert ci[-1] == TEST_COMMAND


def test_readme_main_command_names_a_shipped_config():
  assert MAIN_COMMAND in (REPO / 'README.md').read_text().splitlines()
  assert (REPO / 'gin' / 'ptb_lstm.gin').is_file()
