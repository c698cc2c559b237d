"""The README's commands are the ones CI and users run."""

import pathlib
import re
import shlex
import subprocess
import sys

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


def _block_after(marker):
  """The commands of the README's code block after `<!-- marker -->`, each
  with its continuation lines joined."""
  readme = (REPO / 'README.md').read_text()
  block = readme[readme.index(f'<!-- {marker} -->'):].split('```')[1]
  return [line for line in block.replace('\\\n', ' ').splitlines()
          if line.strip()]


def test_the_own_text_commands_train_evaluate_and_sample(tmp_path):
  from conftest import tiny_sentences  # pylint: disable=g-import-not-at-top
  corpus = tmp_path / 'my_corpus'
  corpus.mkdir()
  for split, n in (('train', 400), ('valid', 100)):
    (corpus / f'{split}.txt').write_text(''.join(
        line.capitalize() + '.\n' for line in tiny_sentences(n)))
  train, evaluate, generate = _block_after('own-text')
  # At tiny size: the shipped tiny.gin and four steps.
  train += " --gin_file=gin/tiny.gin --gin_bindings='train.n_steps = 4'"
  outputs = []
  for command in (train, evaluate, generate):
    argv = shlex.split(command.replace('python train.py',
                                       f'python {REPO / "train.py"}'))
    assert argv[0] == 'python'
    done = subprocess.run([sys.executable] + argv[1:], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (command, done.stderr[-2000:])
    outputs.append(done.stdout)
  assert re.search(r'^split=valid tokens=\d+ ', outputs[1], re.M)
  assert outputs[2].startswith('The ') and len(outputs[2]) > 100
