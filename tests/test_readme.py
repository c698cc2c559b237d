"""The README's commands are the ones CI and users run, and the README and
the pages of docs/ stay true to the code and to each other."""

import argparse
import copy
import importlib
import importlib.util
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = REPO / 'docs'
TEST_COMMAND = ("pip install -e '.[test,bench]' && "
                "pytest -q -n 2 --dist loadfile")
MAIN_COMMAND = 'pip install -e . && python train.py --gin_file=gin/ptb_lstm.gin'


def test_ci_runs_the_readme_test_command_verbatim():
  readme = (REPO / 'README.md').read_text().splitlines()
  ci = (REPO / '.ci' / 'run').read_text().splitlines()
  assert TEST_COMMAND in readme
  assert ci[-1] == TEST_COMMAND


def test_readme_main_command_names_a_shipped_config():
  assert MAIN_COMMAND in (REPO / 'README.md').read_text().splitlines()
  assert (REPO / 'gin' / 'ptb_lstm.gin').is_file()


def test_the_development_page_names_every_module():
  """docs/development.md's module list and drawing keep up with lm_trax/:
  every module (and the cells package) is named there."""
  development = (DOCS / 'development.md').read_text()
  modules = [f'lm_trax/{p.name}' for p in (REPO / 'lm_trax').glob('*.py')
             if p.name != '__init__.py'] + ['lm_trax/cells/']
  missing = [m for m in modules if m not in development]
  assert not missing, f'docs/development.md: add {missing}'
  for module in modules:  # And the drawing names each one.
    name = module.removeprefix('lm_trax/')
    drawing = development[:development.index('lm_trax/corpora.py')]
    assert name in drawing, f'docs/development.md, the drawing: add {name}'


def _code_lines(text):
  """Python source without docstrings, comments and blank lines."""
  text = re.sub(r'"""[\s\S]*?"""', '', text)
  lines = (re.sub(r'\s+#.*$', '', line).rstrip() for line in text.split('\n'))
  return [line for line in lines if line.strip()]


def test_the_docs_show_the_worked_example_cell_as_the_file_has_it():
  readme = (DOCS / 'models.md').read_text()
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


# The README and docs/ pages: links, the results table, the command lines.

FENCE = re.compile(r'^```[^\n]*\n(.*?)^```[^\n]*$', re.S | re.M)


def _pages():
  return [REPO / 'README.md'] + sorted(DOCS.glob('*.md'))


def _prose(text):
  """Markdown without its fenced code blocks."""
  return FENCE.sub('', text)


def _anchors(page):
  """The #anchors GitHub makes for the page's headings."""
  anchors, seen = set(), {}
  for heading in re.findall(r'^#{1,6} (.+?)\s*$', _prose(page.read_text()),
                            re.M):
    slug = re.sub(r'[^\w\- ]', '', heading.replace('`', '').lower())
    slug = slug.replace(' ', '-')
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    anchors.add(f'{slug}-{n}' if n else slug)
  return anchors


def test_every_relative_link_and_anchor_resolves():
  broken = []
  for page in _pages():
    prose = re.sub(r'`[^`]*`', '', _prose(page.read_text()))
    for target in re.findall(r'\]\(([^)\s]+)\)', prose):
      if re.match(r'[a-z]+:', target):  # https:, mailto:
        continue
      path, _, anchor = target.partition('#')
      linked = (page.parent / path).resolve() if path else page
      if not linked.exists():
        broken.append(f'{page.name}: {target} (no such file)')
      elif anchor and anchor not in _anchors(linked):
        broken.append(f'{page.name}: {target} (no such heading)')
  assert not broken, broken


def test_the_readme_links_every_docs_page():
  readme = (REPO / 'README.md').read_text()
  missing = [p.name for p in DOCS.glob('*.md')
             if f'](docs/{p.name})' not in readme]
  assert not missing, f'README.md, Where to go next: link {missing}'


def test_the_readme_configs_table_names_every_shipped_config():
  readme = (REPO / 'README.md').read_text()
  configs = readme[readme.index('\n## Configs\n'):]
  configs = configs[:configs.index('\n## ', 1)]
  missing = [f'gin/{p.name}' for p in (REPO / 'gin').glob('*.gin')
             if p.name != 'base.gin' and f'`gin/{p.name}`' not in configs]
  assert not missing, f'README.md, Configs: add {missing}'


def _cells(line):
  """A table row's cells; a | inside `code` does not split."""
  cells, cell, code = [], '', False
  for char in line.strip().strip('|'):
    if char == '`':
      code = not code
    if char == '|' and not code:
      cells.append(cell.strip())
      cell = ''
    else:
      cell += char
  return cells + [cell.strip()]


def _table(text, start):
  """The table whose header row begins with `start`: a list of rows, each a
  {column: cell}."""
  lines = text[text.index(start):].splitlines()
  lines = lines[:next((i for i, line in enumerate(lines)
                       if not line.startswith('|')), len(lines))]
  header = _cells(lines[0])
  return [dict(zip(header, _cells(line))) for line in lines[2:]]


NUMBER = re.compile(r'\d+(?::\d\d)+|\d+(?:,\d{3})*(?:\.\d+)?')


def _command(cell):
  """The first command of a table cell: what names its experiment."""
  return re.search(r'`([^`]+)`', cell).group(1)


def _results_mismatches(readme, results):
  """Where the README's results table and docs/results.md disagree."""
  readme_rows = _table(readme[readme.index('<!-- results -->'):], '| model |')
  results_rows = {_command(row['config, command']): row
                  for row in _table(results, '| model |')}
  columns = {'model': 'model', 'command': 'config, command',
             'valid': 'valid ppl', 'test': 'test ppl',
             'wall time': 'wall time, speed'}
  problems = []
  for row in readme_rows:
    command = _command(row['command'])
    if command not in results_rows:
      problems.append(f'{command}: no docs/results.md row runs it')
      continue
    for column, results_column in columns.items():
      numbers = NUMBER.findall(results_rows[command][results_column])
      for number in NUMBER.findall(row[column]):
        if number not in numbers:
          problems.append(f'{command}: {column} {number} is not in '
                          f'docs/results.md ({results_column}: {numbers})')
  shown = {_command(row['command']) for row in readme_rows}
  problems += [f'{c}: a docs/results.md row the README leaves out'
               for c in results_rows if c not in shown]
  return problems


def test_the_readme_results_are_those_of_the_results_page():
  """Each row of the README's compact table is a row of docs/results.md
  (found by its command), and each of its numbers is in the same column
  there; every docs/results.md row is in the README."""
  problems = _results_mismatches((REPO / 'README.md').read_text(),
                                 (DOCS / 'results.md').read_text())
  assert not problems, problems


# A command line's words of the form `--flag VALUE` or positional that stand
# for the reader's own value, as the command's parser would take them.
PLACEHOLDERS = {'NAME': 'ptb', 'N': '2', 'I': '0'}
COMMAND = re.compile(r'(python train\.py|python -m lm_trax\.\w+|lm-trax-[\w-]+)'
                     r'(?=\s|$)')


def _command_lines():
  """(page, command) for each command line of README.md and docs/*.md:
  code block lines (after `$ `, continuations joined, the block's shell
  variables and the first value of a `for` loop put in) and inline code."""
  commands = []
  for page in _pages():
    text = page.read_text()
    for block in FENCE.findall(text):
      variables = dict(re.findall(r'^(\w+)="([^"]*)"$', block, re.M))
      variables.update((name, values.split()[0]) for name, values in
                       re.findall(r'^for (\w+) in ([^;]+);', block, re.M))
      for line in block.replace('\\\n', ' ').splitlines():
        line = line.strip().removeprefix('$ ')
        if COMMAND.match(line):
          commands.append((page.name, re.sub(
              r'\$(\w+)', lambda m: variables.get(m[1], m[0]), line)))
    for span in re.findall(r'`([^`]+)`', _prose(text)):
      span = ' '.join(span.split())
      if COMMAND.match(span):
        commands.append((page.name, span))
  return commands


def _words(command):
  """The command's words as its parser gets them: optional `[--flag x]`
  kept, `a|b` alternatives as their first, placeholders given a value, and
  --help left out (every command has it)."""
  command = re.sub(r'\[(--[^\]]*)\]', r'\1', command)
  words = []
  for word in shlex.split(command, comments=True):
    if word in ('|', '>', '&&', ';'):
      break
    if word in ('...', '--help'):
      continue
    word = re.sub(r'^([\w.-]+)(\|[\w.-]+)+$', r'\1', word)
    flag, equals, value = word.partition('=') if word.startswith('--') else (
        '', '', word)
    words.append(flag + equals + PLACEHOLDERS.get(value, value))
  return words


def _console_scripts():
  """{'lm-trax-evaluate': 'lm_trax.evaluate', ...} from setup.py."""
  return dict(re.findall(r"'(lm-trax-[\w-]+) = ([\w.]+):main'",
                         (REPO / 'setup.py').read_text()))


class _Parsed(Exception):
  """Raised in place of running a command once its arguments parsed."""


def _problems_of(command, monkeypatch, capsys):
  """What is wrong with a command line: its program, its files, or an
  argument its parser refuses ([] if nothing). Nothing runs."""
  words = _words(command)
  program = COMMAND.match(' '.join(words))[1]
  argv = words[len(program.split()):]
  problems = []
  for flag, path in re.findall(r'--(gin_file|grid)[= ](\S+)', ' '.join(argv)):
    if not ((REPO / path).is_file() or
            (flag == 'gin_file' and (REPO / 'gin' / path).is_file())):
      problems.append(f'--{flag} {path}: no such file')
  if program in ('python train.py', 'lm-trax-train'):
    from absl import flags  # pylint: disable=g-import-not-at-top
    from lm_trax import train_command  # pylint: disable=g-import-not-at-top
    values = flags.FlagValues()  # A copy: the process's FLAGS stay unparsed.
    for flag in flags.FLAGS.get_flags_for_module(train_command.__name__):
      values[flag.name] = copy.deepcopy(flag)
    try:
      rest = values(['train.py'] + argv)
      if rest[1:]:
        problems.append(f'unexpected arguments {rest[1:]}')
    except flags.Error as e:
      problems.append(str(e))
    return problems
  module = (program.removeprefix('python -m ') if program.startswith('python')
            else _console_scripts().get(program))
  if module is None or importlib.util.find_spec(module) is None:
    return problems + [f'{program}: no such command']
  if not argv:  # The command named in prose, not a command line.
    return problems
  parse_args = argparse.ArgumentParser.parse_args

  def parse_then_stop(parser, args=None, namespace=None):
    parse_args(parser, args, namespace)
    raise _Parsed

  monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_then_stop)
  try:
    importlib.import_module(module).main(argv)
    problems.append(f'{module}.main returned without parsing its arguments')
  except _Parsed:
    pass
  except SystemExit:
    problems.append(capsys.readouterr().err.strip())
  return problems


@pytest.mark.parametrize('page,command', _command_lines())
def test_each_command_line_names_real_files_and_flags(page, command,
                                                      monkeypatch, capsys):
  """Every `python train.py`, `python -m lm_trax.X` and `lm-trax-X` line of
  the README and docs/ names a command that exists, gin files and grids
  that exist, and arguments its parser accepts (parsed, not run)."""
  problems = _problems_of(command, monkeypatch, capsys)
  assert not problems, (page, command, problems)
