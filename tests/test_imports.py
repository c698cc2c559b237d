"""What loads what: the commands answer --help, plots and sweep reports are
drawn, without importing TensorFlow or trax; `import lm_trax` is light."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order

# Runs a module or script as its command would, then prints which of the
# heavy packages it imported.
_PROBE = '''
import json, runpy, sys
target, argv = sys.argv[1], sys.argv[2:]
sys.argv = [target] + argv
try:
  if target.endswith('.py'):
    runpy.run_path(target, run_name='__main__')
  else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
except SystemExit as e:
  assert e.code in (0, 1, None), e.code  # absl's --help exits with 1.
heavy = sorted({m.split('.')[0] for m in sys.modules} &
               {'tensorflow', 'trax', 'tensorflow_datasets'})
print('HEAVY=' + json.dumps(heavy))
'''


def _heavy_modules_loaded(target, *argv):
  result = subprocess.run(
      [sys.executable, '-c', _PROBE, target, *argv], cwd=REPO,
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  line = [l for l in result.stdout.splitlines() if l.startswith('HEAVY=')][-1]
  return json.loads(line[len('HEAVY='):]), result.stdout


@pytest.mark.parametrize('command', [
    'train.py', 'lm_trax.evaluate', 'lm_trax.score', 'lm_trax.generate',
    'lm_trax.sweep', 'lm_trax.plot', 'lm_trax.download'])
def test_help_imports_neither_tensorflow_nor_trax(command):
  heavy, printed = _heavy_modules_loaded(command, '--help')
  assert 'usage:' in printed.lower() or 'flags:' in printed
  assert heavy == []


def test_import_lm_trax_and_its_api_is_light():
  code = ('import sys, lm_trax; lm_trax.load; print(sorted({m.split(".")[0] '
          'for m in sys.modules} & {"tensorflow", "trax"}))')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, check=True)
  assert result.stdout.strip() == '[]'


def test_plot_draws_without_tensorflow_or_trax(tmp_path):
  run = tmp_path / 'run'
  run.mkdir()
  records = [{'step': s, 'kind': k, 'loss': 5.0 - s / 100, 'ppl': 100.0,
              'time': 0.0} for s in (10, 20) for k in ('train', 'valid')]
  (run / 'metrics.jsonl').write_text(
      ''.join(json.dumps(r) + '\n' for r in records))
  heavy, _ = _heavy_modules_loaded('lm_trax.plot', str(run), '--out',
                                   str(tmp_path / 'curves.png'))
  assert (tmp_path / 'curves.png').stat().st_size > 0
  assert heavy == []


def import_graph(package_dir):
  """{module: the lm_trax modules it imports}, read from the source of every
  module under package_dir (lm_trax/), e.g. {'lm_trax.loop':
  {'lm_trax.checkpoints', ...}}. Every import statement counts, those inside
  function bodies too: an import deferred to a call is still a dependency,
  and a cycle through it is still a cycle."""
  package_dir = pathlib.Path(package_dir)
  root = package_dir.name
  modules = {}
  for path in sorted(package_dir.rglob('*.py')):
    parts = (root,) + path.relative_to(package_dir).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join(parts)] = path
  graph = {}
  for name, path in modules.items():
    is_package = path.name == '__init__.py'
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      if isinstance(node, ast.Import):
        imported.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:  # Relative: from . import x, from .y import x.
          package = name.split('.') if is_package else name.split('.')[:-1]
          package = package[:len(package) - node.level + 1]
          base = '.'.join(package + ([base] if base else []))
        for alias in node.names:  # A module, or a name in module `base`.
          full = f'{base}.{alias.name}'
          imported.add(full if full in modules else base)
    graph[name] = {m for m in imported if m in modules and m != name}
  return graph


def find_cycle(graph):
  """A cycle [a, b, ..., a] of the graph, or None."""
  done, path = set(), []

  def visit(node):
    if node in path:
      return path[path.index(node):] + [node]
    if node in done:
      return None
    path.append(node)
    for successor in sorted(graph[node]):
      cycle = visit(successor)
      if cycle:
        return cycle
    path.pop()
    done.add(node)
    return None
  for node in sorted(graph):
    cycle = visit(node)
    if cycle:
      return cycle
  return None


def test_the_modules_import_each_other_without_a_cycle():
  """Each module can be read and tested above the ones it imports: a layer
  order exists (lm_trax.errors ... lm_trax.training ... the commands)."""
  graph = import_graph(REPO / 'lm_trax')
  assert 'lm_trax.training' in graph and graph['lm_trax.training']
  cycle = find_cycle(graph)
  assert cycle is None, 'lm_trax imports in a cycle: ' + ' -> '.join(cycle)
