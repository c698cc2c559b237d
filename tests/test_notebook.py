"""notebooks/tour.ipynb runs top to bottom at tiny size, with real outputs.

The notebook is executed once per session with nbclient (a Jupyter kernel on
this Python), in a temporary directory, with LM_TRAX_TOUR_TINY=1: its
parameter cell then picks smoke-test sizes. The tour trains on Penn Treebank
from lm_trax's data directory (LM_TRAX_DATA_DIR, else ~/.cache/lm_trax/data;
CI sets LM_TRAX_DATA_DIR in .ci/run).
"""

import json
import math
import pathlib

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


def test_the_stored_notebook_has_no_outputs():
  # Outputs of a run at one size would go stale and bloat the diffs: the
  # tour is stored clean, and this test is where it runs.
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  executed_cells = [i for i, cell in enumerate(notebook.cells)
                    if cell.cell_type == 'code' and
                    (cell.outputs or cell.execution_count is not None)]
  assert not executed_cells, (
      f'cells {executed_cells} of {NOTEBOOK.name} hold outputs: clear them '
      'before committing (Jupyter: Edit > Clear Outputs of All Cells)')


def test_it_runs_without_errors_and_writes_its_runs_in_its_folder(executed):
  notebook, workdir, report = executed
  assert not _outputs(notebook, 'error')
  stderr = ''.join(output.text for output in _outputs(notebook, 'stream')
                   if output.name == 'stderr')
  assert 'ERROR' not in stderr and 'Traceback' not in stderr, stderr
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
