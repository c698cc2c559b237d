"""Tests for lm_trax.download with a local HTTP server (never real hosts)."""

import ast
import functools
import hashlib
import http.server
import io
import pathlib
import socket
import tarfile
import threading
import time

import pytest

from lm_trax import download
from lm_trax.errors import UserError

PTB_TEXT = {
    'ptb.train.txt': b' the cat sat on the mat \n a dog <unk> N times \n',
    'ptb.valid.txt': b' the dog sat \n',
    'ptb.test.txt': b' a cat \n the end \n',
}
SHAKESPEARE = b'First Citizen:\nBefore we proceed any further, hear me speak.\n'


def _sha(data):
  return hashlib.sha256(data).hexdigest()


FAKE_SHA256 = {
    **{f'ptb/{name}': _sha(data) for name, data in PTB_TEXT.items()},
    'tinyshakespeare/input.txt': _sha(SHAKESPEARE),
}


def _tgz(members):
  """A .tgz holding {archive name: bytes}, like simple-examples.tgz."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def _ptb_members(**replace):
  """The members of a fake simple-examples.tgz, with extra files to skip."""
  members = {'./simple-examples/README': b'readme\n',
             './simple-examples/data/ptb.char.train.txt': b'a _ b\n',
             './simple-examples/models/ptb.train.txt': b'not data\n'}
  for name, data in PTB_TEXT.items():
    members[f'./simple-examples/data/{name}'] = replace.get(name, data)
  return members


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  """Serves fake sources; yields the base URL."""
  root = tmp_path_factory.mktemp('www')
  files = {
      'simple-examples.tgz': _tgz(_ptb_members()),
      'corrupt/simple-examples.tgz': _tgz(
          _ptb_members(**{'ptb.valid.txt': b' the dog sat down \n'})),
      'incomplete/simple-examples.tgz': _tgz(
          {'./simple-examples/data/ptb.train.txt': PTB_TEXT['ptb.train.txt']}),
      'notgz/simple-examples.tgz': b'<html>not an archive</html>',
      'input.txt': SHAKESPEARE,
      'corrupt/input.txt': SHAKESPEARE.upper(),
  }
  for name, data in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  handler = functools.partial(_QuietHandler, directory=str(root))
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}'
  httpd.shutdown()
  httpd.server_close()


@pytest.fixture
def closed_port_url():
  """A URL on a localhost port nobody listens on."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
  return f'http://127.0.0.1:{port}/x'


def _fetch(name, data_dir, url, **kwargs):
  kwargs.setdefault('progress', False)
  return download.fetch(name, data_dir, url=url, timeout=5.0,
                        expected_sha256=FAKE_SHA256, **kwargs)


def _all_files(directory):
  return sorted(p.relative_to(directory).as_posix()
                for p in pathlib.Path(directory).rglob('*') if p.is_file())


# fetch: success ---------------------------------------------------------------


def test_fetch_ptb_keeps_only_the_data_files(server, tmp_path):
  paths = _fetch('ptb', tmp_path, f'{server}/simple-examples.tgz')
  assert paths == [tmp_path / rel for rel in download.CORPUS_FILES['ptb']]
  for path in paths:
    assert path.read_bytes() == PTB_TEXT[path.name]
  assert _all_files(tmp_path) == sorted(download.CORPUS_FILES['ptb'])
  assert download.missing_files('ptb', tmp_path) == []


def test_fetch_tinyshakespeare(server, tmp_path):
  paths = _fetch('tinyshakespeare', tmp_path, f'{server}/input.txt')
  assert paths == [tmp_path / 'tinyshakespeare' / 'input.txt']
  assert paths[0].read_bytes() == SHAKESPEARE
  assert _all_files(tmp_path) == ['tinyshakespeare/input.txt']


def test_fetch_with_progress_bar_replaces_a_wrong_file(server, tmp_path,
                                                       capsys):
  target = tmp_path / 'tinyshakespeare' / 'input.txt'
  target.parent.mkdir()
  target.write_bytes(b'old')
  _fetch('tinyshakespeare', tmp_path, f'{server}/input.txt', progress=True)
  assert target.read_bytes() == SHAKESPEARE
  assert capsys.readouterr().out == ''  # The bar goes to stderr.


# fetch: failures leave nothing behind -----------------------------------------


@pytest.mark.parametrize('name, url_path, bad_file, served', [
    ('ptb', 'corrupt/simple-examples.tgz', 'ptb/ptb.valid.txt',
     b' the dog sat down \n'),
    ('tinyshakespeare', 'corrupt/input.txt', 'tinyshakespeare/input.txt',
     SHAKESPEARE.upper()),
])
def test_checksum_mismatch_writes_nothing(server, tmp_path, name, url_path,
                                          bad_file, served):
  with pytest.raises(UserError) as error:
    _fetch(name, tmp_path, f'{server}/{url_path}')
  message = str(error.value)
  assert str(tmp_path / bad_file) in message
  assert FAKE_SHA256[bad_file] in message
  assert _sha(served) in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []  # No corpus file, no temp file.


def test_checksum_mismatch_keeps_the_existing_file(server, tmp_path):
  target = tmp_path / 'tinyshakespeare' / 'input.txt'
  target.parent.mkdir()
  target.write_bytes(b'old')
  with pytest.raises(UserError, match='SHA-256 mismatch'):
    _fetch('tinyshakespeare', tmp_path, f'{server}/corrupt/input.txt')
  assert _all_files(tmp_path) == ['tinyshakespeare/input.txt']
  assert target.read_bytes() == b'old'


def test_real_checksums_reject_fake_files(server, tmp_path):
  with pytest.raises(UserError, match=download.SHA256['ptb/ptb.train.txt']):
    download.fetch('ptb', tmp_path, url=f'{server}/simple-examples.tgz',
                   progress=False)
  assert _all_files(tmp_path) == []


def test_unreachable_server_fails_fast_naming_the_paths(tmp_path,
                                                        closed_port_url):
  start = time.monotonic()
  with pytest.raises(UserError) as error:
    _fetch('ptb', tmp_path, closed_port_url)
  assert time.monotonic() - start < 5
  message = str(error.value)
  assert message.startswith('downloading ptb from')
  for rel in download.CORPUS_FILES['ptb']:
    assert str(tmp_path / rel) in message
  assert 'LM_TRAX_DATA_DIR' in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []


def test_http_error_is_a_user_error(server, tmp_path):
  with pytest.raises(UserError, match='HTTP 404'):
    _fetch('tinyshakespeare', tmp_path, f'{server}/no/such/input.txt')
  assert _all_files(tmp_path) == []


def test_archive_without_all_members(server, tmp_path):
  with pytest.raises(UserError, match='data/ptb.valid.txt, data/ptb.test.txt'):
    _fetch('ptb', tmp_path, f'{server}/incomplete/simple-examples.tgz')
  assert _all_files(tmp_path) == []


def test_not_an_archive(server, tmp_path):
  with pytest.raises(UserError, match='not a valid .tgz archive'):
    _fetch('ptb', tmp_path, f'{server}/notgz/simple-examples.tgz')
  assert _all_files(tmp_path) == []


def test_unknown_corpus(tmp_path):
  with pytest.raises(UserError, match='ptb, tinyshakespeare'):
    download.fetch('wikitext', tmp_path)
  with pytest.raises(UserError, match='unknown corpus'):
    download.missing_files('wikitext', tmp_path)


# missing_files and ensure -----------------------------------------------------


def test_missing_files(tmp_path):
  (tmp_path / 'ptb').mkdir()
  (tmp_path / 'ptb' / 'ptb.valid.txt').write_text('x')
  assert download.missing_files('ptb', str(tmp_path)) == [
      tmp_path / 'ptb' / 'ptb.train.txt', tmp_path / 'ptb' / 'ptb.test.txt']


def _no_fetch(*args, **kwargs):
  raise AssertionError(f'unexpected fetch{args}{kwargs}')


def test_ensure_without_download_names_files_and_command(tmp_path,
                                                         monkeypatch):
  monkeypatch.setattr(download, 'fetch', _no_fetch)
  with pytest.raises(UserError) as error:
    download.ensure('tinyshakespeare', tmp_path, download=False)
  message = str(error.value)
  assert str(tmp_path / 'tinyshakespeare' / 'input.txt') in message
  assert (f'python -m lm_trax.download tinyshakespeare --data_dir {tmp_path}'
          in message)


def test_ensure_does_nothing_when_files_exist(tmp_path, monkeypatch):
  monkeypatch.setattr(download, 'fetch', _no_fetch)
  for rel in download.CORPUS_FILES['ptb']:
    (tmp_path / rel).parent.mkdir(exist_ok=True)
    (tmp_path / rel).write_text('x')
  download.ensure('ptb', tmp_path)
  download.ensure('ptb', tmp_path, download=False)


def test_ensure_fetches_missing_files(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(download, 'fetch', lambda *args: calls.append(args))
  download.ensure('ptb', tmp_path)
  assert calls == [('ptb', tmp_path)]


# Command line -----------------------------------------------------------------


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tmp_path / 'data'))
  assert download.default_data_dir() == tmp_path / 'data'
  monkeypatch.delenv('LM_TRAX_DATA_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  assert download.default_data_dir() == tmp_path / 'cache' / 'lm_trax' / 'data'
  monkeypatch.setenv('XDG_CACHE_HOME', 'relative')  # Ignored, per XDG.
  monkeypatch.setenv('HOME', str(tmp_path))
  assert download.default_data_dir() == tmp_path / '.cache' / 'lm_trax' / 'data'


def test_cli_bad_url_exits_2_with_one_line(tmp_path, closed_port_url, capsys):
  with pytest.raises(SystemExit) as exit_info:
    download.main(['ptb', '--data_dir', str(tmp_path), '--url',
                   closed_port_url])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('error: downloading ptb from')
  assert err.count('\n') == 1
  assert _all_files(tmp_path) == []


def test_cli_downloads_then_reports_present(server, tmp_path, monkeypatch,
                                            capsys):
  monkeypatch.setattr(download, 'SHA256', FAKE_SHA256)
  monkeypatch.setenv('LM_TRAX_DATA_DIR', str(tmp_path))
  download.main(['tinyshakespeare', '--url', f'{server}/input.txt'])
  assert capsys.readouterr().out == f'{tmp_path}/tinyshakespeare/input.txt\n'
  assert (tmp_path / 'tinyshakespeare' / 'input.txt').read_bytes() == (
      SHAKESPEARE)
  download.main(['tinyshakespeare', '--url', 'http://127.0.0.1:1/unused'])
  assert 'all files present' in capsys.readouterr().out
  with pytest.raises(SystemExit):  # --force downloads again.
    download.main(['tinyshakespeare', '--force', '--url',
                   f'{server}/corrupt/input.txt'])


def test_imports_no_heavy_libraries():
  tree = ast.parse(pathlib.Path(download.__file__).read_text())
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      imported.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      imported.add(node.module.split('.')[0])
  assert not imported & {'trax', 'tensorflow', 'jax', 'tensorflow_datasets',
                         'numpy', 'gin'}
