"""train(): every shipped config runs, loss drops, resume is exact."""

import pathlib

import jax
import numpy as np
import pytest

from lm_trax import config
from lm_trax import run_dir
from lm_trax import trained
from lm_trax import training
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'gin'
EXPERIMENTS = sorted(p.name for p in GIN_DIR.glob('*.gin')
                     if p.name not in ('base.gin', 'tiny.gin'))
TINY = str(GIN_DIR / 'tiny.gin')


def _train(gin_files, bindings, output_dir):
  config.parse(gin_files, ['Corpus.download = False'] + list(bindings))
  return training.train(output_dir=str(output_dir))


def _eval_losses(loop):
  return [v for _, v in loop.history.get(
      'eval', 'metrics/WeightedCategoryCrossEntropy')]


def _weights(loop):
  return [np.asarray(w) for w in jax.tree_util.tree_leaves(loop.model.weights)]


def test_the_shipped_configs_are_the_expected_ones():
  assert EXPERIMENTS == ['enwik8_lstm.gin', 'ptb_awd_lstm.gin',
                         'ptb_char_lstm.gin', 'ptb_gru.gin', 'ptb_lstm.gin',
                         'ptb_lstm_large.gin', 'ptb_lstm_medium.gin',
                         'ptb_lstm_tied.gin', 'ptb_lstm_tied_400.gin',
                         'ptb_mgu.gin', 'ptb_nplm.gin', 'ptb_nplm_direct.gin',
                         'shakespeare_char.gin', 'shakespeare_gru.gin',
                         'shakespeare_lstm.gin', 'shakespeare_subword.gin',
                         'text8_lstm.gin', 'wikitext2_lstm_tied.gin']


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_config_trains_two_steps_at_tiny_size(name, use_tiny_data,
                                                    tmp_path):
  loop = _train([str(GIN_DIR / name), TINY], [], tmp_path)
  assert loop.step == 2
  for filename in ('checkpoints/step-00000002/model.pkl.gz',
                   'checkpoints/step-00000002/data_counters0.pkl',
                   'checkpoints/latest', 'config.gin', 'vocab.json',
                   'model.json', 'metrics.jsonl'):
    assert (tmp_path / filename).exists(), filename
  assert 'train.model' in (tmp_path / 'config.gin').read_text()
  assert all(np.isfinite(_eval_losses(loop)))
  level = ('subword' if name.endswith('subword.gin') else
           'char' if name.startswith(('shakespeare', 'enwik8', 'text8'))
           else 'word')
  assert vocab_lib.Vocab.load(tmp_path).level == level


def test_a_tiny_corpus_trains_and_its_loss_clearly_drops(use_tiny_data,
                                                         tmp_path):
  loop = _train([str(GIN_DIR / 'ptb_lstm.gin'), TINY], [
      'train.n_steps = 150', 'train.eval_every = 50', 'train.n_eval_batches = 4',
      'train.optimizer = @trax.optimizers.Adam', 'train.lr_schedule = @constant_lr',
      'constant_lr.learning_rate = 0.01', 'RecurrentLM.d_model = 32',
      'Batching.batch_size = 8', 'train.exact_eval_every = 50',
  ], tmp_path)
  losses = _eval_losses(loop)
  assert len(losses) == 3
  assert losses[-1] < 0.7 * losses[0], losses
  assert losses[-1] < np.log(18) - 1.0  # Well below a uniform guess.
  records = run_dir.MetricsLog.read(tmp_path)
  assert [r['step'] for r in records if r['kind'] == 'train'] == [50, 100, 150]
  np.testing.assert_allclose(
      [r['loss'] for r in records if r['kind'] == 'eval'], losses, rtol=1e-6)
  assert all(r['tokens_per_sec'] > 0 for r in records if r['kind'] == 'train')
  # Exact validation over the whole split, and the best checkpoint beside it.
  valid = [r for r in records if r['kind'] == 'valid']
  assert [r['step'] for r in valid] == [50, 100, 150]
  assert valid[-1]['loss'] < 0.7 * valid[0]['loss']
  assert loop.best_valid_loss == min(r['loss'] for r in valid)
  assert (tmp_path / 'checkpoints' / 'best').read_text().strip() == (
      f'best-{int(min(valid, key=lambda r: r["loss"])["step"]):08d}')


RESUME_BINDINGS = ['train.eval_every = 2', 'train.checkpoint_every = 2',
                   'train.optimizer = @trax.optimizers.Adam',
                   'train.lr_schedule = @constant_lr',
                   'constant_lr.learning_rate = 0.01',
                   'RecurrentLM.dropout = 0.3']  # The random key must resume too.


@pytest.mark.parametrize('precision', ['float32', 'bfloat16'])
def test_resume_continues_at_the_saved_step_with_identical_weights(
    use_tiny_data, tmp_path, precision):
  files = [str(GIN_DIR / 'ptb_lstm.gin'), TINY]
  bindings = RESUME_BINDINGS + [f"train.precision = '{precision}'"]
  straight = _train(files, bindings + ['train.n_steps = 6'],
                    tmp_path / 'straight')
  # Rerunning the finished run restores it and trains no further.
  again = _train(files, bindings + ['train.n_steps = 6'],
                 tmp_path / 'straight')
  assert again.step == 6
  for a, b in zip(_weights(straight), _weights(again)):
    np.testing.assert_array_equal(a, b)

  # Stopped at step 4 and resumed to 6: same data position and carried state,
  # so the same weights as the uninterrupted run.
  first = _train(files, bindings + ['train.n_steps = 4'],
                 tmp_path / 'resumed')
  assert first.step == 4
  resumed = _train(files, bindings + ['train.n_steps = 6'],
                   tmp_path / 'resumed')
  assert resumed.step == 6
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_variable_windows_train_at_scaled_rates_and_resume_exactly(
    use_tiny_data, tmp_path):
  files = [str(GIN_DIR / 'ptb_lstm.gin'), TINY]
  bindings = RESUME_BINDINGS + [
      'Batching.seq_lens = (4, 8, 12)', 'Batching.seq_len_weights = (1, 2, 1)',
      'train.log_every = 1']
  straight = _train(files, bindings + ['train.n_steps = 8'],
                    tmp_path / 'straight')
  rates = {r['lr'] for r in run_dir.MetricsLog.read(tmp_path / 'straight')
           if r['kind'] == 'train'}
  assert len(rates) > 1 and rates <= {0.005, 0.01, 0.015}  # 0.01 x T / 8.
  _train(files, bindings + ['train.n_steps = 4'], tmp_path / 'resumed')
  resumed = _train(files, bindings + ['train.n_steps = 8'],
                   tmp_path / 'resumed')
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_of_another_vocabulary_is_not_resumed(use_tiny_data, tmp_path):
  _train([str(GIN_DIR / 'ptb_lstm.gin'), TINY], [], tmp_path)
  with pytest.raises(UserError, match='different vocabulary'):
    _train([str(GIN_DIR / 'shakespeare_lstm.gin'), TINY], [], tmp_path)


def test_bad_gin_input_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    config.parse([str(tmp_path / 'nope.gin')])
  with pytest.raises(UserError, match='bad gin config'):
    config.parse([str(GIN_DIR / 'ptb_lstm.gin')], ['RecurrentLM.no_such_arg = 3'])


def test_real_ptb_lstm_trains_30_steps_and_resumes_to_40(real_data_dir,
                                                         monkeypatch, tmp_path):
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(real_data_dir))
  files = [str(GIN_DIR / 'ptb_lstm.gin')]
  fast = ['train.eval_every = 30', 'train.n_eval_batches = 2',
          'train.exact_eval_every = 0']  # Not what this test checks.
  loop = _train(files, fast + ['train.n_steps = 30'], tmp_path)
  assert loop.step == 30
  assert (tmp_path / 'checkpoints' / 'latest').read_text() == 'step-00000030\n'
  assert vocab_lib.Vocab.load(tmp_path).size == 10001
  resumed = _train(files, fast + ['train.n_steps = 40'], tmp_path)
  assert resumed.step == 40


def test_a_users_text_file_trains_at_the_configs_level_despite_new_characters(
    tmp_path):
  # The last 10% (valid) holds 'Z' and ';', which the first 90% lacks.
  text = 'to be or not to be\n' * 60 + 'Zoe; to be\n' * 4
  corpus_file = tmp_path / 'mine.txt'
  corpus_file.write_text(text)
  loop = _train([str(GIN_DIR / 'shakespeare_char.gin'), TINY],
                [f"Corpus.name = '{corpus_file}'"], tmp_path / 'run')
  vocab = vocab_lib.Vocab.load(tmp_path / 'run')
  assert vocab.level == 'char' and vocab.tokens[-1] == '<unk>'
  assert loop.step == 2
  from lm_trax import evaluate  # pylint: disable=g-import-not-at-top
  result = evaluate.evaluate(tmp_path / 'run', 'valid', progress=False)
  assert result.unknown == 8 and np.isfinite(result.loss)


def test_train_takes_the_corpus_and_batching_and_the_run_records_them(
    tiny_data_dir, tmp_path):
  from lm_trax import corpora, data  # pylint: disable=g-import-not-at-top
  config.parse([str(GIN_DIR / 'ptb_lstm.gin'), TINY], ['train.n_steps = 2'])
  corpus = corpora.Corpus('ptb', data_dir=str(tiny_data_dir), download=False)
  batching = data.Batching(kind='lines', boundaries=(8,), batch_sizes=(4, 2))
  training.train(output_dir=str(tmp_path), corpus=corpus, batching=batching)
  run = trained.Run(tmp_path)
  assert vars(run.batching()) == vars(batching)
  reread = run.corpus(data_dir=str(tiny_data_dir))
  assert (reread.name, reread.level) == (corpus.name, corpus.level)
  assert run.predictor().vocab.size == vocab_lib.Vocab.load(tmp_path).size
