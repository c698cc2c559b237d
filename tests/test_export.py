"""lm-trax-export: an exported model scores and samples as its run does, its
weights are laid out as documented, and it runs without trax or TensorFlow."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

import lm_trax
from lm_trax import export as export_lib
from lm_trax import exported
from lm_trax import opener
from lm_trax.errors import UserError

from conftest import ADAM_6_STEPS, REPO  # pylint: disable=g-bad-import-order

# (gin file, extra bindings): each architecture and cell kind, both levels.
RUNS = {
    'lstm': ('ptb_lstm.gin', []),
    'lstm_tied_narrow_embedding': ('ptb_lstm_tied.gin',
                                   ['RecurrentLM.d_embed = 12']),
    'gru': ('ptb_gru.gin', []),
    'mgu': ('ptb_mgu.gin', []),  # No hand-written backward.
    'nplm_direct': ('ptb_nplm_direct.gin', []),
    'char_gru': ('shakespeare_char.gin', []),
}
TEXT = 'the cat sees the ball\na dog likes a tree\n'
CHAR_TEXT = 'First Citizen:\nSpeak, speak.\n'


# The exports whose recorded scores a test reads; the others skip scoring.
SCORED = ('lstm', 'lstm_tied_narrow_embedding')


@pytest.fixture(scope='module')
def runs(train_tiny_run, word_run):
  """Every RUNS entry trained once (6 Adam steps); 'lstm' is the session's
  word_run, trained by the same config and bindings."""
  assert RUNS['lstm'] == ('ptb_lstm.gin', [])
  return {name: word_run if name == 'lstm' else
          train_tiny_run(gin, ADAM_6_STEPS + bindings)
          for name, (gin, bindings) in RUNS.items()}


@pytest.fixture(scope='module')
def exports(runs, tiny_data_dir, tmp_path_factory):
  """Each run exported (best checkpoint; SCORED ones scored on valid)."""
  root = tmp_path_factory.mktemp('exports')
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('LM_TRAX_DATA_DIR', str(tiny_data_dir))
    return {name: export_lib.export(
        run, root / name, evaluate=('valid',) if name in SCORED else (),
        progress=False) for name, run in runs.items()}


@pytest.mark.parametrize('name', RUNS)
def test_export_scores_and_samples_as_its_run(name, runs, exports,
                                              use_tiny_data):
  del use_tiny_data
  run = lm_trax.load(runs[name], checkpoint='best')
  model = lm_trax.load(exports[name])
  assert isinstance(model.run, exported.Export)
  text = CHAR_TEXT if name.startswith('char') else TEXT
  assert model.perplexity(split='valid').loss == pytest.approx(
      run.perplexity(split='valid').loss, abs=1e-5)
  lines = text.splitlines()
  for got, expected in zip(model.score(lines), run.score(lines)):
    assert got.logprob == pytest.approx(expected.logprob, abs=1e-5)
  assert model.next_tokens(lines[0], k=3)[0][0] == run.next_tokens(
      lines[0], k=3)[0][0]
  assert model.generate(lines[0][:4], length=12, seed=5, num_samples=2) == (
      run.generate(lines[0][:4], length=12, seed=5, num_samples=2))


def test_an_export_adapts_as_its_run(runs, exports, use_tiny_data):
  """The continuous cache and dynamic evaluation (which differentiates the
  export's forward) give the run's numbers."""
  del use_tiny_data
  adapt = dict(cache=dict(size=8, theta=1.0, lam=0.2),
               dynamic=dict(rule='sgd', lr=0.5, decay=0.01, segment=4))
  run = lm_trax.load(runs['gru'], checkpoint='best')
  model = lm_trax.load(exports['gru'])
  expected = run.perplexity(text=TEXT * 3, **adapt)
  assert expected.loss != pytest.approx(run.perplexity(text=TEXT * 3).loss,
                                        abs=1e-3)  # Adapting changed it.
  assert model.perplexity(text=TEXT * 3, **adapt).loss == pytest.approx(
      expected.loss, abs=1e-5)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _documented_lstm_log_probs(directory, ids):
  """log p(ids[t] | <eos>, ids[:t]) by the layout docs/sharing.md and
  lm_trax.exported document, in float64 numpy: gates i, f, g, o; logits
  h output.weight + output.bias, or h embedding^T + output.bias if tied."""
  config = json.loads((directory / 'config.json').read_text())
  hyper = config['hyperparameters']
  w = {k: v.astype(np.float64) for k, v in safetensors_numpy.load_file(
      str(directory / 'model.safetensors')).items()}
  eos = json.loads((directory / 'vocab.json').read_text())['tokens'].index(
      '<eos>')
  inputs = [eos] + list(ids[:-1])
  forget_bias = hyper['cell_options']['forget_bias']
  states = [None] * hyper['n_layers']
  log_probs = []
  for token, target in zip(inputs, ids):
    x = w['embedding'][token]
    for k in range(hyper['n_layers']):
      w_h = w[f'layers.{k}.w_h']
      d = w_h.shape[0]
      c, h = states[k] or (np.zeros(d), np.zeros(d))
      a = x @ w[f'layers.{k}.w_x'] + w[f'layers.{k}.b'] + h @ w_h
      i, f, g, o = a[:d], a[d:2 * d], a[2 * d:3 * d], a[3 * d:]
      c = _sigmoid(f + forget_bias) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
      states[k] = (c, h)
      x = h
    table = w['embedding'].T if hyper['tie_weights'] else w['output.weight']
    logits = x @ table + w['output.bias']
    log_probs.append(logits[target] - np.log(np.sum(np.exp(logits))))
  return np.array(log_probs)


@pytest.mark.parametrize('name', ['lstm', 'lstm_tied_narrow_embedding'])
def test_exported_lstm_is_the_documented_layout(name, exports):
  model = lm_trax.load(exports[name])
  ids = model.encode(TEXT)
  expected = _documented_lstm_log_probs(exports[name], ids)
  got = model.run.predictor().stream_log_probs(ids, chunk_len=8)
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_layout_names_every_weight_once(exports):
  for name, directory in exports.items():
    config = json.loads((directory / 'config.json').read_text())
    saved = safetensors_numpy.load_file(str(directory / 'model.safetensors'))
    names = exported.layout(config['architecture'],
                            config['hyperparameters'], config['vocab_size'])
    assert [n for n, _ in names] == sorted(saved, key=[n for n, _ in
                                                      names].index), name
    assert {n: tuple(s) for n, s in names} == {
        n: w.shape for n, w in saved.items()}, name
    assert config['parameters'] == sum(w.size for w in saved.values())


def _run_parameter_count(run_dir):
  """From the run's own record of its weights (model.json), a tied table
  once."""
  shapes = json.loads((pathlib.Path(run_dir) / 'model.json').read_text())[
      'weight_shapes']
  return sum(int(np.prod(s)) for s in shapes)


def test_config_and_card_say_what_the_model_is(runs, exports, use_tiny_data):
  del use_tiny_data
  directory = exports['lstm_tied_narrow_embedding']
  config = json.loads((directory / 'config.json').read_text())
  assert config['architecture'] == 'RecurrentLM'
  hyper = config['hyperparameters']
  assert (hyper['cell'], hyper['d_embed'], hyper['tie_weights']) == (
      'lstm', 12, True)
  assert config['precision'] == 'float32'
  assert config['parameters'] == _run_parameter_count(
      runs['lstm_tied_narrow_embedding'])
  valid = lm_trax.load(runs['lstm_tied_narrow_embedding'],
                       checkpoint='best').perplexity(split='valid')
  assert config['evaluated']['valid']['ppl'] == pytest.approx(valid.ppl,
                                                              rel=1e-5)
  card = (directory / 'README.md').read_text()
  assert f'| valid | {valid.tokens:,} | {valid.loss:.4f} | {valid.ppl:.2f} |' \
      in card
  assert f'{config["parameters"]:,} parameters' in card
  assert 'layers.1.w_h' in card and 'i, f, g, o' in card
  assert 'License' in card and "lm_trax.load('.')" in card
  recorded = json.loads((pathlib.Path(runs['lstm_tied_narrow_embedding']) /
                         'run.json').read_text())['starts'][0]['command']
  assert config['source']['command'] == recorded


# Runs the three commands and the API on an export in one process, then
# prints which heavy packages got imported.
_PROBE = '''
import json, runpy, sys
out = sys.argv[1]
def command(module, *argv):
  sys.argv = [module, '--output_dir', out, *argv]
  try:
    runpy.run_module(module, run_name='__main__', alter_sys=True)
  except SystemExit as e:
    assert e.code in (0, None), (module, e.code)
command('lm_trax.evaluate', '--split', 'valid')
command('lm_trax.generate', '--prompt', 'the', '--length', '5', '--seed', '1')
command('lm_trax.score', '--next', 'the cat')
import lm_trax
print('API', lm_trax.load(out).perplexity(split='valid').ppl)
heavy = sorted({m.split('.')[0] for m in sys.modules} &
               {'tensorflow', 'trax', 'tensorflow_datasets', 'gym'})
print('HEAVY=' + json.dumps(heavy))
'''


def test_an_export_runs_without_trax_or_tensorflow(exports, tiny_data_dir):
  env = dict(os.environ, LM_TRAX_DATA_DIR=str(tiny_data_dir))
  result = subprocess.run(
      [sys.executable, '-c', _PROBE, str(exports['lstm'])], cwd=REPO,
      env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert json.loads(lines[-1][len('HEAVY='):]) == []
  config = json.loads((exports['lstm'] / 'config.json').read_text())
  assert any(line.startswith('split=valid') for line in lines)
  api_ppl = float([l for l in lines if l.startswith('API')][0].split()[1])
  assert api_ppl == pytest.approx(config['evaluated']['valid']['ppl'],
                                  rel=1e-6)


def test_export_refuses_what_it_cannot_do(runs, exports, tmp_path,
                                          use_tiny_data):
  del use_tiny_data
  taken = tmp_path / 'taken'
  taken.mkdir()
  (taken / 'notes.txt').write_text('mine')
  with pytest.raises(UserError, match='exists'):
    export_lib.export(runs['gru'], taken, progress=False)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['taken']  # No debris.
  with pytest.raises(UserError, match='splits are'):
    export_lib.export(runs['gru'], tmp_path / 'new', evaluate=('dev',))
  with pytest.raises(UserError, match='holds one checkpoint'):
    lm_trax.load(exports['gru'], checkpoint='best')
  with pytest.raises(UserError, match='an export already'):
    lm_trax.load(exports['gru']).export(tmp_path / 'again')
  with pytest.raises(UserError, match='no checkpoint at step 999'):
    export_lib.export(runs['gru'], tmp_path / 'new', checkpoint=999)


def _copy(directory, to):
  to.mkdir()
  for path in directory.iterdir():
    (to / path.name).write_bytes(path.read_bytes())
  return to


def test_damaged_exports_are_one_line_errors(exports, tmp_path):
  weights = _copy(exports['gru'], tmp_path / 'weights')
  saved = safetensors_numpy.load_file(str(weights / 'model.safetensors'))
  del saved['layers.0.b_hn']
  safetensors_numpy.save_file(saved, str(weights / 'model.safetensors'))
  with pytest.raises(UserError, match=r"does not fit config.json \(missing "
                     r"\['layers.0.b_hn'\]"):
    lm_trax.load(weights).score(['the cat'])
  config = _copy(exports['gru'], tmp_path / 'config')
  (config / 'config.json').write_text(
      (config / 'config.json').read_text().replace('"hyperparameters"', '"h"'))
  with pytest.raises(UserError, match='is damaged .*export the run again'):
    lm_trax.load(config)
  for name in ('weights', 'config'):
    with pytest.raises(SystemExit) as exit_info:
      from lm_trax import score  # pylint: disable=g-import-not-at-top
      score.main(['--output_dir', str(tmp_path / name), '--next', 'the'])
    assert exit_info.value.code == 2


def test_export_files_take_the_umask(runs, tmp_path, use_tiny_data):
  del use_tiny_data
  for mask, directory_mode, file_mode in ((0o022, 0o755, 0o644),
                                          (0o077, 0o700, 0o600)):
    old = os.umask(mask)
    try:
      out = export_lib.export(runs['nplm_direct'], tmp_path / f'{mask:o}',
                              evaluate=(), progress=False)
    finally:
      os.umask(old)
    assert out.stat().st_mode & 0o777 == directory_mode
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {file_mode}


def test_the_command_exports_and_names_the_way_to_load(runs, tmp_path,
                                                      capsys, use_tiny_data):
  del use_tiny_data
  out = tmp_path / 'cmd'
  export_lib.main([str(runs['nplm_direct']), str(out), '--checkpoint',
                   'latest', '--evaluate', 'valid,test'])
  config = json.loads((out / 'config.json').read_text())
  assert sorted(config['evaluated']) == ['test', 'valid']
  assert config['source']['checkpoint'].startswith('step-')
  assert f"lm_trax.load('{out}')" in capsys.readouterr().err
  assert opener.open_model(out).architecture == 'NPLM'
