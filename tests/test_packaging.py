"""What installing lm_trax provides: the lm-trax-train command and the gin
configs, usable outside a clone of the repository."""

import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys
import zipfile

import gin
import pytest

from lm_trax import config
from lm_trax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = sorted(str(p.relative_to(REPO / 'gin'))
                 for p in (REPO / 'gin').rglob('*') if p.is_file())
# As pip writes a console script (pip/_internal/operations/install/wheel.py).
CONSOLE_SCRIPT = '''\
import re
import sys
from {module} import {function}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({function}())
'''


def _setup_arguments(monkeypatch):
  """The keyword arguments setup.py passes to setuptools.setup()."""
  setuptools = pytest.importorskip('setuptools')
  captured = {}
  monkeypatch.setattr(setuptools, 'setup', captured.update)
  runpy.run_path(str(REPO / 'setup.py'))
  return captured


def _run(command, cwd):
  # The command is imported from this checkout, whatever is installed.
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=120, check=False)


def test_lm_trax_train_is_a_console_script_with_its_own_usage(monkeypatch,
                                                              tmp_path):
  scripts = _setup_arguments(monkeypatch)['entry_points']['console_scripts']
  targets = dict(s.replace(' ', '').split('=') for s in scripts)
  module, function = targets['lm-trax-train'].split(':')
  script = tmp_path / 'bin' / 'lm-trax-train'
  script.parent.mkdir()
  script.write_text(CONSOLE_SCRIPT.format(module=module, function=function))
  # In a fresh process: trax.trainer, which other tests import, defines absl
  # flags of the same names (--output_dir).
  installed = _run([sys.executable, str(script), '--help'], tmp_path)
  assert '\n  lm-trax-train --gin_file=gin/ptb_lstm.gin\n' in installed.stdout
  assert 'python train.py' not in installed.stdout
  assert '--gin_file: Gin config files' in installed.stdout  # Flags listed.
  clone = _run([sys.executable, 'train.py', '--help'], REPO)
  assert '\n  python train.py --gin_file=gin/ptb_lstm.gin\n' in clone.stdout
  assert '--gin_file: Gin config files' in clone.stdout
  assert 'lm-trax-train --gin_file' not in clone.stdout


@pytest.mark.parametrize('name', ['ptb_lstm.gin', 'gin/ptb_lstm.gin',
                                  'corpora/ptb.gin', 'gin/corpora/ptb.gin'])
def test_a_shipped_config_is_found_from_any_directory(name, monkeypatch,
                                                      tmp_path):
  monkeypatch.chdir(tmp_path)
  found = config.find_gin_file(name)
  in_repo = REPO / 'gin' / name.removeprefix('gin/')
  assert found.is_absolute() and found.read_text() == in_repo.read_text()


def test_shipped_configs_parse_with_their_includes_from_any_directory(
    monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  # ptb_lstm.gin includes recipes/zaremba_small.gin, which includes
  # corpora/ptb.gin (not beside it: found among the shipped configs).
  config.parse(['ptb_lstm.gin', 'gin/tiny.gin'])
  config.check_trainable()
  assert gin.query_parameter('Corpus.name') == 'ptb'
  assert gin.query_parameter('RecurrentLM.d_model') == 16  # tiny.gin, parsed last.


def test_an_existing_path_wins_over_a_shipped_config(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'ptb_lstm.gin').write_text('train.n_steps = 1\n')
  assert config.find_gin_file('ptb_lstm.gin') == pathlib.Path('ptb_lstm.gin')


@pytest.mark.parametrize('name', ['no_such.gin', 'gin/no_such.gin',
                                  '/nowhere/ptb_lstm.gin'])
def test_a_gin_file_found_nowhere_is_a_one_line_error_naming_the_configs(
    name, monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(UserError) as error:
    config.parse([name])
  message = str(error.value)
  assert f'gin file {name} does not exist' in message
  assert str(config.GIN_DIR) in message and '\n' not in message


def test_setup_py_installs_every_shipped_config(monkeypatch):
  arguments = _setup_arguments(monkeypatch)
  assert arguments['package_dir']['lm_trax.gin'] == 'gin'
  declared = set()
  for package, patterns in arguments['package_data'].items():
    assert package in arguments['packages']
    if package.split('.')[:2] != ['lm_trax', 'gin']:
      continue
    folder = REPO / 'gin' / '/'.join(package.split('.')[2:])
    declared.update(str(p.relative_to(REPO / 'gin'))
                    for pattern in patterns for p in folder.glob(pattern))
  assert sorted(declared) == SHIPPED


def test_every_extra_the_docs_install_is_declared(monkeypatch):
  """`pip install -e '.[x,y]'` in README.md, docs/ and the tour names extras
  that setup.py declares, and the notebook extra opens and runs the tour."""
  extras = _setup_arguments(monkeypatch)['extras_require']
  pages = [REPO / 'README.md', REPO / 'notebooks' / 'tour.ipynb'] + sorted(
      (REPO / 'docs').glob('*.md'))
  named = {(page.name, extra) for page in pages
           for extras_named in re.findall(r"pip install -e '\.\[([\w,-]+)\]'",
                                          page.read_text())
           for extra in extras_named.split(',')}
  assert ('README.md', 'notebook') in named
  undeclared = sorted(pair for pair in named if pair[1] not in extras)
  assert not undeclared, f'setup.py EXTRAS_REQUIRE has no {undeclared}'
  # `jupyter lab`, and the kernel it runs the tour on.
  notebook = {re.match(r'[\w-]+', r)[0] for r in extras['notebook']}
  assert {'jupyterlab', 'ipykernel'} <= notebook


def test_the_long_description_has_no_relative_links(monkeypatch):
  """An index page cannot follow the README's links into the source tree:
  setup.py writes them as paths; absolute links and the README's text stay."""
  description = _setup_arguments(monkeypatch)['long_description']
  links = re.findall(r'\]\(([^)\s]+)\)', description)
  assert [link for link in links if not link.startswith(('http://',
                                                         'https://'))] == []
  readme = (REPO / 'README.md').read_text()
  assert re.findall(r'\]\((docs/[^)]+)\)', readme)  # There were some.
  assert '`docs/sharing.md`' in description
  assert description.count('\n') == readme.count('\n')


def _can_build_wheels():
  """Whether setuptools builds a wheel here without downloading anything (it
  needs the `wheel` package before setuptools 70.1)."""
  if not importlib.util.find_spec('setuptools'):
    return False
  version = importlib.metadata.version('setuptools')
  major, minor = (int(part) for part in version.split('.')[:2])
  return (major, minor) >= (70, 1) or bool(importlib.util.find_spec('wheel'))


@pytest.mark.skipif(not _can_build_wheels(),
                    reason='setuptools cannot build a wheel offline here')
def test_the_wheel_contains_every_shipped_config(tmp_path):
  source = tmp_path / 'source'  # A copy: building writes build/ and egg-info.
  ignore = shutil.ignore_patterns('__pycache__', '*.egg-info')
  for folder in ('lm_trax', 'gin'):
    shutil.copytree(REPO / folder, source / folder, ignore=ignore)
  for name in ('setup.py', 'README.md', 'LICENSE'):
    shutil.copy(REPO / name, source)
  built = _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                '--no-build-isolation', '--no-index', '-w',
                str(tmp_path / 'wheels'), str(source)], tmp_path)
  assert built.returncode == 0, built.stderr[-3000:]
  (wheel,) = (tmp_path / 'wheels').glob('lm_trax-*.whl')
  names = zipfile.ZipFile(wheel).namelist()
  assert sorted(n.removeprefix('lm_trax/gin/') for n in names
                if n.startswith('lm_trax/gin/')) == SHIPPED
  assert 'lm_trax/train_command.py' in names
  source_modules = sorted(str(p.relative_to(REPO)) for p in
                          (REPO / 'lm_trax').rglob('*.py')
                          if 'gin' not in p.parts)
  assert sorted(n for n in names if n.startswith('lm_trax/') and
                n.endswith('.py') and '/gin/' not in n) == source_modules
  entry_points = zipfile.ZipFile(wheel).read(next(
      n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
  assert 'lm-trax-train = lm_trax.train_command:main' in entry_points
  # Whoever receives the wheel receives the license with it.
  metadata = zipfile.ZipFile(wheel).read(next(
      n for n in names if n.endswith('.dist-info/METADATA'))).decode()
  assert 'License: Apache-2.0' in metadata
  (license_file,) = [n for n in names if n.endswith('/LICENSE')]
  assert zipfile.ZipFile(wheel).read(license_file) == (
      REPO / 'LICENSE').read_bytes()


@pytest.mark.parametrize('module', ['evaluate', 'score', 'generate', 'plot',
                                    'sweep', 'download'])
def test_each_commands_usage_names_it_as_typed(module, monkeypatch, capsys):
  command = importlib.import_module(f'lm_trax.{module}')
  script = f'lm-trax-{module}'
  for argv0, expected in [(f'/venv/bin/{script}', script),
                          (command.__file__, f'python -m lm_trax.{module}')]:
    monkeypatch.setattr(sys, 'argv', [argv0, '--help'])
    with pytest.raises(SystemExit):
      command.main(['--help'])
    assert capsys.readouterr().out.startswith(f'usage: {expected} ')
