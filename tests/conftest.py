"""Shared fixtures: tiny corpora made on the fly, the real data if present."""

import os
import pathlib

import gin
import jax
import pytest

# No persistent compilation cache in tests (or their subprocesses): they
# count and time compilations. Set before the process is set up.
os.environ['LM_TRAX_JAX_CACHE'] = 'off'

# The tests run in a process set up as the commands set up theirs (glibc
# reuses freed memory), before TensorFlow and trax are imported.
from lm_trax import process  # pylint: disable=wrong-import-position
process.set_up()

from lm_trax import configurables  # pylint: disable=unused-import,wrong-import-position  (trax fixes, gin names)
from lm_trax import download  # pylint: disable=wrong-import-position

# Compile fast: tests check behaviour, not speed (as flax's examples do).
jax.config.update('jax_disable_most_optimizations', True)

REPO = pathlib.Path(__file__).resolve().parent.parent

# CI's rule that no test may skip (tests/skip_nothing.py); tests that must
# run while no other xdist worker does (tests/workers.py).
pytest_plugins = ['skip_nothing', 'workers']

# A tiny word-level "language": sentences from a small grammar, so a model's
# loss drops clearly within a few dozen steps.
_SUBJECTS = ['the cat', 'a dog', 'the bird', 'my friend', 'the teacher']
_VERBS = ['sees', 'likes', 'finds', 'follows']
_OBJECTS = ['the ball', 'a tree', 'the house', 'some food', 'the river']


def tiny_sentences(n):
  """n deterministic sentences of 5-6 words."""
  lines = []
  for i in range(n):
    lines.append(f'{_SUBJECTS[i % 5]} {_VERBS[(i // 5) % 4]} '
                 f'{_OBJECTS[(i // 20) % 5]}')
  return lines


def write_tiny_data_dir(root):
  """A data dir laid out like lm_trax's (lm_trax.download), with tiny
  corpora."""
  root = pathlib.Path(root)
  (root / 'ptb').mkdir(parents=True, exist_ok=True)
  for split, n in (('train', 400), ('valid', 100), ('test', 100)):
    (root / 'ptb' / f'ptb.{split}.txt').write_text(
        ''.join(f' {line} \n' for line in tiny_sentences(n)))
  (root / 'tinyshakespeare').mkdir(exist_ok=True)
  verse = ('First Citizen:\nBefore we proceed any further, hear me speak.\n\n'
           'All:\nSpeak, speak.\n\n')
  (root / 'tinyshakespeare' / 'input.txt').write_text(verse * 60)
  _write_tiny_benchmark_corpora(root)
  return root


def _write_tiny_benchmark_corpora(root):
  """Tiny ptb_char, wikitext2, enwik8 and text8 in their real layouts."""
  for name in ('ptb_char', 'wikitext2', 'enwik8', 'text8'):
    (root / name).mkdir(exist_ok=True)
  for split, n in (('train', 400), ('valid', 100), ('test', 100)):
    lines = tiny_sentences(n)
    (root / 'ptb_char' / f'ptb.char.{split}.txt').write_text(''.join(
        ' ' + ' '.join(line.replace(' ', '_')) + '\n' for line in lines))
    (root / 'wikitext2' / f'wiki.{split}.tokens').write_text(
        ' \n = Tiny = \n \n' + ''.join(f' {line} <unk> . \n' for line in lines))
  xml = '<page><title>Café</title><text>the cat sees a tree</text></page>\n'
  (root / 'enwik8' / 'enwik8').write_bytes(xml.encode('utf-8') * 300)
  (root / 'text8' / 'text8').write_text(
      ' ' + ' '.join(tiny_sentences(600)))


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  return write_tiny_data_dir(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='session')
def train_tiny_run(tiny_data_dir, tmp_path_factory):
  """A function that trains a shipped config at tiny size on the tiny corpora:
  train_tiny_run('ptb_lstm.gin', bindings=[...], output_dir=None) -> run dir."""
  from lm_trax import config  # pylint: disable=g-import-not-at-top
  from lm_trax import training  # pylint: disable=g-import-not-at-top

  def train_run(gin_name, bindings=(), output_dir=None):
    output_dir = output_dir or tmp_path_factory.mktemp(gin_name.split('.')[0])
    config.parse([str(REPO / 'gin' / gin_name), str(REPO / 'gin' / 'tiny.gin')],
                 ['Corpus.download = False',
                  f"Corpus.data_dir = '{tiny_data_dir}'"] + list(bindings))
    training.train(output_dir=str(output_dir))
    return output_dir
  return train_run


# Six Adam steps: enough for a run whose scores differ from a fresh model's.
ADAM_6_STEPS = ['train.n_steps = 6', 'train.optimizer = @trax.optimizers.Adam',
                'train.lr_schedule = @constant_lr',
                'constant_lr.learning_rate = 0.01']


@pytest.fixture(scope='session')
def word_run(train_tiny_run):
  """A tiny word-level LSTM run (gin/ptb_lstm.gin), trained once per session
  and only read by the tests that use it."""
  return train_tiny_run('ptb_lstm.gin', ADAM_6_STEPS)


@pytest.fixture
def use_tiny_data(tiny_data_dir, monkeypatch):
  """Points LM_TRAX_DATA_DIR at the tiny corpora (no downloads)."""
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tiny_data_dir))
  return tiny_data_dir


@pytest.fixture
def real_data_dir():
  """lm_trax's data directory (lm_trax.download.default_data_dir:
  LM_TRAX_DATA_DIR, else ~/.cache/lm_trax/data) when it holds the real PTB;
  skips the test when it does not."""
  path = download.default_data_dir()
  if not (path / 'ptb' / 'ptb.train.txt').is_file():
    pytest.skip(f'the real PTB is not in {path}: get it with `python -m '
                f'lm_trax.download ptb`, or point {download.ENV_VAR} at a '
                'data directory that has it')
  return path


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()

