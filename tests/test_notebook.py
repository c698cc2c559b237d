"""notebooks/tour.ipynb runs top to bottom at tiny size, with real outputs,
and is stored with the outputs of one run at its default sizes.

The notebook is executed once per session with nbclient (a Jupyter kernel on
this Python), in a temporary directory, with LM_TRAX_TOUR_TINY=1: its
parameter cell then picks smoke-test sizes. nbclient clears each cell's
stored outputs before it runs the cell, so the tests of the execution see
only the tiny run's. The tour trains on Penn Treebank from lm_trax's data
directory (LM_TRAX_DATA_DIR, else ~/.cache/lm_trax/data; CI sets
LM_TRAX_DATA_DIR in .ci/run).
"""

import json
import math
import pathlib
import re

import nbclient
import nbformat
import pytest

import lm_trax
from lm_trax import download

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / 'notebooks' / 'tour.ipynb'

# Appended to the notebook before it runs: hands the values the tests check
# (from the notebook's own variables) back as one JSON line.
REPORT_CELL = """
import json
print(json.dumps({
    'test_ppl': {name: result.ppl for name, result in test.items()},
    'samples': {str(t): text for t, text in samples.items()},
    'runs': {name: os.path.abspath(run) for name, run in runs.items()},
}))
"""


def _ptb_dir():
  """The data directory the tour reads (lm_trax.download.default_data_dir);
  skips without PTB (which fails CI: tests/skip_nothing.py)."""
  path = download.default_data_dir()
  if not (path / 'ptb' / 'ptb.train.txt').is_file():
    pytest.skip(f'the tour trains on Penn Treebank, which is not in {path}: '
                f'python -m lm_trax.download ptb --data_dir {path}, or point '
                f'{download.ENV_VAR} at a data directory that has it')
  return path


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
  """(the executed notebook, its working directory, the reported values)."""
  data_dir = _ptb_dir()
  workdir = tmp_path_factory.mktemp('tour')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  notebook.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
  with pytest.MonkeyPatch.context() as patch:  # The kernel inherits these.
    patch.setenv('LM_TRAX_TOUR_TINY', '1')
    patch.setenv('LM_TRAX_DATA_DIR', str(data_dir))
    patch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')  # As conftest does.
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name='python3',
        resources={'metadata': {'path': str(workdir)}}).execute()
  report = json.loads(notebook.cells[-1].outputs[-1]['text'])
  return notebook, workdir, report


def _outputs(notebook, output_type):
  return [output for cell in notebook.cells if cell.cell_type == 'code'
          for output in cell.outputs if output.output_type == output_type]


def test_the_stored_notebook_shows_a_run_at_its_default_sizes():
  # Stored with its outputs so that a code host shows the tour as it runs:
  # one run, top to bottom, at the sizes a reader gets (not the tests' tiny
  # ones). To store a new run: execute it outside the repository (runs/ is
  # written beside the notebook), e.g. `jupyter nbconvert --to notebook
  # --execute tour.ipynb` on a copy, and update the first cell's numbers.
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  assert [cell.execution_count for cell in code] == list(
      range(1, len(code) + 1)), 'store one run, top to bottom'
  assert not _outputs(notebook, 'error')
  assert any('image/png' in output['data']
             for output in _outputs(notebook, 'display_data'))
  streams = _outputs(notebook, 'stream')
  stdout = ''.join(o.text for o in streams if o.name == 'stdout')
  stderr = ''.join(o.text for o in streams if o.name == 'stderr')
  assert 'WARNING' not in stderr and 'Traceback' not in stderr, stderr
  assert 'inputs (20, 20) int32' in stdout  # BATCH_SIZE, SEQ_LEN: not TINY's.
  times = re.findall(r'^trained to step 1000 in ([\d:]+);', stdout, re.M)
  ppls = re.findall(r'^\w+: test perplexity ([\d,.]+) ', stdout, re.M)
  assert len(times) == len(ppls) == 2, stdout
  # The first cell tells the reader when, where and what that run gave.
  stated = notebook.cells[0].source
  missing = [number for number in times + ppls if number not in stated]
  assert not missing, f'the first cell of {NOTEBOOK.name}: state {missing}'


def test_it_runs_without_errors_and_writes_its_runs_in_its_folder(executed):
  notebook, workdir, report = executed
  assert not _outputs(notebook, 'error')
  stderr = ''.join(output.text for output in _outputs(notebook, 'stream')
                   if output.name == 'stderr')
  assert 'ERROR' not in stderr and 'Traceback' not in stderr, stderr
  stdout = ''.join(output.text for output in _outputs(notebook, 'stream')
                   if output.name == 'stdout')
  assert 'inputs (4, 8) int32' in stdout  # The tiny run's, not the stored.
  for name in ('nplm', 'lstm'):
    run = pathlib.Path(report['runs'][name])
    assert run == workdir / 'runs' / 'tour' / name
    assert (run / 'config.gin').is_file() and (run / 'metrics.jsonl').is_file()


def test_the_test_perplexities_are_finite(executed):
  _, _, report = executed
  assert set(report['test_ppl']) == {'nplm', 'lstm'}
  for ppl in report['test_ppl'].values():
    assert math.isfinite(ppl) and ppl > 1


def test_the_curves_are_drawn_inline(executed):
  notebook, _, _ = executed
  assert any('image/png' in output['data']
             for output in _outputs(notebook, 'display_data'))


def test_the_samples_are_reproduced_from_their_seed(executed):
  # Another process (this one) draws the notebook's samples again.
  _, _, report = executed
  lstm = lm_trax.load(report['runs']['lstm'], checkpoint='best')
  assert set(report['samples']) == {'0.5', '1.0', '1.5'}
  for temperature, text in report['samples'].items():
    assert text.startswith('The stock market')
    assert lstm.generate('the stock market', length=20,
                         temperature=float(temperature), seed=0,
                         stop_at_eos=True) == [text]
