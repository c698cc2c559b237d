"""The README's commands are the ones CI and users run."""

import pathlib
import re

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


def test_the_development_section_names_every_module():
  """The README's module list and drawing keep up with lm_trax/: every
  module (and the cells package) is named in its Development section."""
  readme = (REPO / 'README.md').read_text()
  development = readme[readme.index('\n## Development\n'):]
  modules = [f'lm_trax/{p.name}' for p in (REPO / 'lm_trax').glob('*.py')
             if p.name != '__init__.py'] + ['lm_trax/cells/']
  missing = [m for m in modules if m not in development]
  assert not missing, f'README.md, Development: add {missing}'
  for module in modules:  # And the drawing names each one.
    name = module.removeprefix('lm_trax/')
    drawing = development[:development.index('lm_trax/corpora.py')]
    assert name in drawing, f'README.md, Development drawing: add {name}'


def _code_lines(text):
  """Python source without docstrings, comments and blank lines."""
  text = re.sub(r'"""[\s\S]*?"""', '', text)
  lines = (re.sub(r'\s+#.*$', '', line).rstrip() for line in text.split('\n'))
  return [line for line in lines if line.strip()]


def test_the_readme_shows_the_worked_example_cell_as_the_file_has_it():
  readme = (REPO / 'README.md').read_text()
  start = readme.index('@cells.register\n@dataclasses.dataclass(frozen=True)'
                       '\nclass MGU')
  shown = readme[start:readme.index('```', start)]
  source = (REPO / 'lm_trax' / 'cells' / 'mgu.py').read_text()
  source = source[source.index('@cells.register'):]
  assert _code_lines(shown) == _code_lines(source)
