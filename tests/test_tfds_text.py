"""Tests for lm_trax.tfds_text, all offline (network access fails the test)."""

import socket
import time
from unittest import mock

from lm_trax import compat  # pylint: disable=unused-import  # Quiet TF before TFDS.
import pytest
import tensorflow_datasets as tfds

from lm_trax import tfds_text
from lm_trax.errors import UserError

SOURCE = ('First Citizen:\nBefore we proceed any further, hear me speak.\n\n'
          'All:\nSpeak, speak. \u2019Tis the \u00c9lan of Rome.\n') * 10


@pytest.fixture
def no_network(monkeypatch):
  """Makes any Python-level network access fail the test."""

  def refuse(*args, **kwargs):
    raise AssertionError(f'network access: {args} {kwargs}')

  monkeypatch.setattr(socket, 'getaddrinfo', refuse)
  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)


@pytest.fixture(scope='module')
def prepared_dir(tmp_path_factory):
  """A TFDS data dir where tiny_shakespeare is really built, from SOURCE.

  The builder's one download is replaced by a local file, so this is the
  real prepare-then-read path with no network.
  """
  root = tmp_path_factory.mktemp('tfds_prepared')
  source = root / 'input.txt'
  source.write_text(SOURCE, encoding='utf-8')
  data_dir = root / 'data'
  with mock.patch.object(tfds.download.DownloadManager, 'download',
                         lambda self, url_or_urls: str(source)):
    tfds.builder('tiny_shakespeare', data_dir=str(data_dir)
                ).download_and_prepare()
  return str(data_dir)


# With tfds.testing.mock_data --------------------------------------------------


@pytest.mark.parametrize('num_examples', [1, 3])
def test_read_split_on_mock_data(tmp_path, monkeypatch, no_network,
                                 num_examples):
  # mock_data does not make is_prepared() true: it points the builder at a
  # (missing) metadata dir, so the real check would refuse to read.
  monkeypatch.setattr(tfds_text, 'is_prepared', lambda builder: True)
  with tfds.testing.mock_data(num_examples=num_examples):
    text = tfds_text.read_split('tiny_shakespeare', 'train',
                                data_dir=str(tmp_path))
  assert isinstance(text, str)
  # Mock texts are random strings over ' abcdefghij', joined with '\n'.
  lines = text.split('\n')
  assert len(lines) == num_examples
  assert all(line and set(line) <= set(' abcdefghij') for line in lines)


# Not prepared, unknown names --------------------------------------------------


def test_not_prepared_fails_fast_without_network(tmp_path, no_network):
  start = time.monotonic()
  with pytest.raises(UserError) as error:
    tfds_text.read_split('tiny_shakespeare', 'train', data_dir=str(tmp_path))
  assert time.monotonic() - start < 10
  message = str(error.value)
  assert 'not prepared' in message
  assert f'tfds build tiny_shakespeare --data_dir {tmp_path}' in message
  assert 'TFDS_DATA_DIR' in message
  assert '\n' not in message
  assert not list(tmp_path.iterdir())  # Nothing downloaded or created.


def test_unknown_dataset(tmp_path, no_network):
  with pytest.raises(UserError, match="unknown TFDS dataset 'no_such_corpus'"):
    tfds_text.read_split('no_such_corpus', 'train', data_dir=str(tmp_path))


def test_bad_version(tmp_path, no_network):
  with pytest.raises(UserError, match='only: 1.0.0'):
    tfds_text.read_split('tiny_shakespeare:9.9.9', 'train',
                         data_dir=str(tmp_path))


def test_split_names():
  assert tfds_text.split_names('train') == ['train']
  assert tfds_text.split_names('train[:10%] + test[5:]') == ['train', 'test']


# A really prepared dataset ----------------------------------------------------


def test_reads_the_prepared_splits(prepared_dir, no_network):
  texts = [tfds_text.read_split('tiny_shakespeare', split,
                                data_dir=prepared_dir)
           for split in ('train', 'validation', 'test')]
  assert ''.join(texts) == SOURCE  # One example per split: no '\n' added.
  assert len(texts[0]) == int(len(SOURCE) * 0.9)
  both = tfds_text.read_split('tiny_shakespeare', 'validation+test',
                              data_dir=prepared_dir)
  assert both == f'{texts[1]}\n{texts[2]}'


def test_unknown_split_lists_the_splits(prepared_dir, no_network):
  with pytest.raises(UserError) as error:
    tfds_text.read_split('tiny_shakespeare', 'dev', data_dir=prepared_dir)
  assert "no split 'dev'" in str(error.value)
  assert 'train, validation, test' in str(error.value)


def test_bad_slice(prepared_dir, no_network):
  with pytest.raises(UserError, match="cannot read split 'train.:x.'"):
    tfds_text.read_split('tiny_shakespeare', 'train[:x]',
                         data_dir=prepared_dir)


def test_unknown_text_key(prepared_dir, no_network):
  with pytest.raises(UserError, match="no feature 'content'.* text"):
    tfds_text.read_split('tiny_shakespeare', 'test', text_key='content',
                         data_dir=prepared_dir)
