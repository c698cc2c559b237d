"""What loads what: the commands answer --help, plots and sweep reports are
drawn, without importing TensorFlow or trax; `import lm_trax` is light."""

import json
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
