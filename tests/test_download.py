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
import zipfile

import pytest

import lm_trax
from lm_trax import corpora
from lm_trax import download
from lm_trax.errors import UserError

PTB_TEXT = {
    'ptb.train.txt': b' the cat sat on the mat \n a dog <unk> N times \n',
    'ptb.valid.txt': b' the dog sat \n',
    'ptb.test.txt': b' a cat \n the end \n',
}
PTB_CHAR_TEXT = {
    'ptb.char.train.txt': b' t h e _ c a t _ s a t \n a _ d o g \n',
    'ptb.char.valid.txt': b' t h e _ d o g \n',
    'ptb.char.test.txt': b' a _ c a t \n',
}
SHAKESPEARE = b'First Citizen:\nBefore we proceed any further, hear me speak.\n'
WIKITEXT = {
    'wiki.train.tokens': b' \n = Valkyria = \n \n The <unk> game , 2011 . \n',
    'wiki.valid.tokens': b' \n = Homarus = \n \n The lobster . \n',
    'wiki.test.tokens': b' \n = Robert = \n \n He was <unk> . \n',
}
# Small stand-ins for the 10^8-byte files: UTF-8 XML, and a-z with spaces.
ENWIK8 = ('<page><title>Caf\u00e9</title></page>\n' * 60).encode('utf-8')
TEXT8 = b' anarchism originated as a term of abuse' * 50


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
             './simple-examples/models/ptb.train.txt': b'not data\n'}
  for name, data in {**PTB_TEXT, **PTB_CHAR_TEXT}.items():
    members[f'./simple-examples/data/{name}'] = replace.get(name, data)
  return members


def _zip(members, compression=zipfile.ZIP_DEFLATED):
  """A .zip holding {archive name: bytes} (a name ending in / is a folder),
  the same bytes on every call."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', compression) as archive:
    for name, data in members.items():
      archive.writestr(zipfile.ZipInfo(name, (2016, 9, 26, 0, 0, 0)), data)
  return buffer.getvalue()


def _wikitext_zip(folder, **replace):
  members = {f'{folder}/': b''}
  for name, data in WIKITEXT.items():
    if replace.get(name, data) is not None:
      members[f'{folder}/{name}'] = replace.get(name, data)
  return _zip(members)


# Each zip corpus: its fake archive (named as the real one) and its files.
ZIPS = {
    'wikitext2': ('wikitext-2-v1.zip', _wikitext_zip('wikitext-2'), WIKITEXT),
    'wikitext103': ('wikitext-103-v1.zip', _wikitext_zip('wikitext-103'),
                    WIKITEXT),
    'enwik8': ('enwik8.zip', _zip({'enwik8': ENWIK8}), {'enwik8': ENWIK8}),
    'text8': ('text8.zip', _zip({'text8': TEXT8}), {'text8': TEXT8}),
}
FAKE_ARCHIVE_DIGESTS = {name: ('sha256', _sha(archive))
                        for name, (_, archive, _) in ZIPS.items()}
CORRUPT_ENWIK8_ZIP = _zip({'enwik8': ENWIK8[:-1] + b'!'})
INCOMPLETE_WIKITEXT2_ZIP = _wikitext_zip(
    'wikitext-2', **{'wiki.valid.tokens': None, 'wiki.test.tokens': None})
# A valid archive, but not the one whose digest is expected.
MISMATCHED_WIKITEXT2_ZIP = _wikitext_zip(
    'wikitext-2', **{'wiki.valid.tokens': b' \n = Other = \n'})
# Stored uncompressed, with the last file's bytes changed after its CRC-32
# was written: its extraction fails once the other two are staged.
DAMAGED_WIKITEXT2_ZIP = _zip(
    {f'wikitext-2/{name}': data for name, data in WIKITEXT.items()},
    zipfile.ZIP_STORED).replace(b'He was', b'He WAS')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  """Serves the fake sources, and records each request (path, User-Agent) in
  REQUESTS. Paths under /forbidden/ answer 403, as the S3 bucket does; those
  under /agent_checked/ answer 403 to Python's default User-Agent, as
  wikitext.smerity.com does."""

  def do_GET(self):  # pylint: disable=invalid-name
    agent = self.headers.get('User-Agent', '')
    REQUESTS.append((self.path, agent))
    if self.path.startswith('/forbidden/') or (
        self.path.startswith('/agent_checked/') and
        agent.startswith('Python-urllib')):
      self.send_error(403)
      return
    super().do_GET()

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass


REQUESTS = []


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
      'forged/simple-examples.tgz': _tgz(
          _ptb_members(**{'ptb.test.txt': b' a dog \n'})),
      'input.txt': SHAKESPEARE,
      'corrupt/input.txt': SHAKESPEARE.upper(),
      'corrupt/enwik8.zip': CORRUPT_ENWIK8_ZIP,
      'incomplete/wikitext-2-v1.zip': INCOMPLETE_WIKITEXT2_ZIP,
      'damaged/wikitext-2-v1.zip': DAMAGED_WIKITEXT2_ZIP,
      'notzip/text8.zip': b'<html>not an archive</html>',
      'mismatch/wikitext-2-v1.zip': MISMATCHED_WIKITEXT2_ZIP,
      'agent_checked/wikitext-2-v1.zip': ZIPS['wikitext2'][1],
      **{filename: archive for filename, archive, _ in ZIPS.values()},
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
  kwargs.setdefault('archive_digest', FAKE_ARCHIVE_DIGESTS.get(name))
  return download.fetch(name, data_dir, url=url, timeout=5.0,
                        expected_sha256=FAKE_SHA256, **kwargs)


def _all_files(directory):
  return sorted(p.relative_to(directory).as_posix()
                for p in pathlib.Path(directory).rglob('*') if p.is_file())


# fetch: success ---------------------------------------------------------------


def test_fetch_tinyshakespeare(server, tmp_path):
  paths = _fetch('tinyshakespeare', tmp_path, f'{server}/input.txt')
  assert paths == [tmp_path / 'tinyshakespeare' / 'input.txt']
  assert paths[0].read_bytes() == SHAKESPEARE
  assert _all_files(tmp_path) == ['tinyshakespeare/input.txt']


# Each archive corpus: the archive it comes from and its files' contents.
ARCHIVE_CORPORA = {
    'ptb': ('simple-examples.tgz', PTB_TEXT),
    'ptb_char': ('simple-examples.tgz', PTB_CHAR_TEXT),
    **{name: (filename, contents)
       for name, (filename, _, contents) in ZIPS.items()},
}


@pytest.mark.parametrize('name', sorted(ARCHIVE_CORPORA))
def test_fetch_extracts_only_the_corpus_files(server, tmp_path, name):
  filename, contents = ARCHIVE_CORPORA[name]
  paths = _fetch(name, tmp_path, f'{server}/{filename}')
  assert paths == [tmp_path / rel for rel in download.CORPUS_FILES[name]]
  for path in paths:
    assert path.read_bytes() == contents[path.name]
  # Nothing else: no temporary archive, no other member (for ptb_char, not
  # the word-level files that identify its archive).
  assert _all_files(tmp_path) == sorted(download.CORPUS_FILES[name])
  assert download.missing_files(name, tmp_path) == []


def test_an_archive_checked_by_sha1(server, tmp_path):
  filename, archive, _ = ZIPS['text8']
  _fetch('text8', tmp_path, f'{server}/{filename}',
         archive_digest=('sha1', hashlib.sha1(archive).hexdigest()))
  assert (tmp_path / 'text8' / 'text8').read_bytes() == TEXT8
  with pytest.raises(UserError, match='SHA-1 mismatch'):
    _fetch('text8', tmp_path, f'{server}/{filename}',
           archive_digest=('sha1', hashlib.sha1(b'other').hexdigest()))


@pytest.mark.parametrize('name', sorted(ZIPS))
def test_a_known_corpus_downloads_on_first_use(server, tmp_path, monkeypatch,
                                               name):
  monkeypatch.setitem(download.URLS, name, f'{server}/{ZIPS[name][0]}')
  monkeypatch.setitem(download.ARCHIVE_DIGESTS, name,
                      FAKE_ARCHIVE_DIGESTS[name])
  corpus = corpora.Corpus(name, data_dir=tmp_path)
  assert corpus.text('valid')  # Fetched, verified and read.
  assert download.missing_files(name, tmp_path) == []


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


def test_zip_checksum_mismatch_writes_nothing(server, tmp_path):
  url = f'{server}/corrupt/enwik8.zip'
  with pytest.raises(UserError) as error:
    _fetch('enwik8', tmp_path, url)
  message = str(error.value)
  assert message.startswith(f'{url}: SHA-256 mismatch')
  assert FAKE_ARCHIVE_DIGESTS['enwik8'][1] in message
  assert _sha(CORRUPT_ENWIK8_ZIP) in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []  # Not the archive, not a file.


def test_a_damaged_member_leaves_nothing_behind(server, tmp_path):
  with pytest.raises(UserError) as error:
    _fetch('wikitext2', tmp_path, f'{server}/damaged/wikitext-2-v1.zip',
           archive_digest=('sha256', _sha(DAMAGED_WIKITEXT2_ZIP)))
  assert 'not a valid .zip archive' in str(error.value)
  assert 'wiki.test.tokens' in str(error.value)  # The bad CRC's member.
  assert '\n' not in str(error.value)
  assert _all_files(tmp_path) == []  # Nor the two good files.


def test_a_ptb_char_archive_with_other_ptb_files_is_refused(server, tmp_path):
  with pytest.raises(UserError) as error:
    _fetch('ptb_char', tmp_path, f'{server}/forged/simple-examples.tgz')
  message = str(error.value)
  assert 'simple-examples/data/ptb.test.txt' in message
  assert FAKE_SHA256['ptb/ptb.test.txt'] in message
  assert _sha(b' a dog \n') in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []


@pytest.mark.parametrize('name', sorted(ZIPS))
def test_real_archive_digests_reject_fake_archives(server, tmp_path, name):
  with pytest.raises(UserError, match=download.ARCHIVE_DIGESTS[name][1]):
    download.fetch(name, tmp_path, url=f'{server}/{ZIPS[name][0]}',
                   progress=False)
  assert _all_files(tmp_path) == []


def test_real_checksums_reject_fake_files(server, tmp_path):
  with pytest.raises(UserError, match=download.SHA256['ptb/ptb.train.txt']):
    download.fetch('ptb', tmp_path, url=f'{server}/simple-examples.tgz',
                   progress=False)
  assert _all_files(tmp_path) == []


@pytest.mark.parametrize('name', sorted(download.CORPUS_FILES))
def test_unreachable_server_fails_fast_naming_the_paths(tmp_path,
                                                        closed_port_url, name):
  start = time.monotonic()
  with pytest.raises(UserError) as error:
    _fetch(name, tmp_path, closed_port_url)
  assert time.monotonic() - start < 5
  message = str(error.value)
  assert message.startswith(f'downloading {name} from')
  for rel in download.CORPUS_FILES[name]:
    assert str(tmp_path / rel) in message
  assert 'LM_TRAX_DATA_DIR' in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []


def test_http_error_is_a_user_error(server, tmp_path):
  with pytest.raises(UserError, match='HTTP 404'):
    _fetch('tinyshakespeare', tmp_path, f'{server}/no/such/input.txt')
  assert _all_files(tmp_path) == []


@pytest.mark.parametrize('name, url_path, absent', [
    ('ptb', 'incomplete/simple-examples.tgz',
     'simple-examples/data/ptb.valid.txt, simple-examples/data/ptb.test.txt'),
    ('wikitext2', 'incomplete/wikitext-2-v1.zip',
     'wikitext-2/wiki.valid.tokens, wikitext-2/wiki.test.tokens'),
])
def test_archive_without_all_members(server, tmp_path, name, url_path, absent):
  digest = ('sha256', _sha(INCOMPLETE_WIKITEXT2_ZIP))  # Unused for the .tgz.
  with pytest.raises(UserError, match=f'has no {absent};'):
    _fetch(name, tmp_path, f'{server}/{url_path}', archive_digest=digest)
  assert _all_files(tmp_path) == []


@pytest.mark.parametrize('name, url_path, kind', [
    ('ptb', 'notgz/simple-examples.tgz', '.tgz'),
    ('text8', 'notzip/text8.zip', '.zip'),
])
def test_not_an_archive(server, tmp_path, name, url_path, kind):
  junk = ('sha256', _sha(b'<html>not an archive</html>'))
  with pytest.raises(UserError, match=f'not a valid {kind} archive'):
    _fetch(name, tmp_path, f'{server}/{url_path}', archive_digest=junk)
  assert _all_files(tmp_path) == []


def test_unknown_corpus(tmp_path):
  with pytest.raises(UserError, match='enwik8, ptb, ptb_char, text8, '
                     'tinyshakespeare, wikitext103, wikitext2'):
    download.fetch('wikitext', tmp_path)
  with pytest.raises(UserError, match='unknown corpus'):
    download.missing_files('wikitext', tmp_path)


# fetch: several sources, tried in order ---------------------------------------


@pytest.fixture
def requests_seen():
  """The requests the server answers during the test: [(path, User-Agent)]."""
  REQUESTS.clear()
  return REQUESTS


def test_wikitext_comes_from_its_author_then_the_s3_bucket():
  for name, filename in (('wikitext2', 'wikitext-2-v1.zip'),
                         ('wikitext103', 'wikitext-103-v1.zip')):
    assert download.URLS[name] == (
        f'https://wikitext.smerity.com/{filename}',
        f'https://s3.amazonaws.com/research.metamind.io/wikitext/{filename}')


def _fetch_wikitext2(data_dir, paths, server, **kwargs):
  return _fetch('wikitext2', data_dir, [
      path if path.startswith('http') else f'{server}/{path}'
      for path in paths], **kwargs)


def _assert_has_wikitext2(data_dir):
  for relative in download.CORPUS_FILES['wikitext2']:
    path = data_dir / relative
    assert path.read_bytes() == WIKITEXT[path.name]
  assert _all_files(data_dir) == sorted(download.CORPUS_FILES['wikitext2'])


def test_the_first_source_that_works_is_the_only_one_asked(
    server, tmp_path, requests_seen):
  _fetch_wikitext2(tmp_path, ['wikitext-2-v1.zip', 'forbidden/x.zip'], server)
  _assert_has_wikitext2(tmp_path)
  assert [path for path, _ in requests_seen] == ['/wikitext-2-v1.zip']


def test_a_refused_source_passes_to_the_next(server, tmp_path,
                                             requests_seen):
  _fetch_wikitext2(tmp_path, ['forbidden/wikitext-2-v1.zip',
                              'wikitext-2-v1.zip'], server)
  _assert_has_wikitext2(tmp_path)
  assert [path for path, _ in requests_seen] == [
      '/forbidden/wikitext-2-v1.zip', '/wikitext-2-v1.zip']


def test_an_unreachable_source_passes_to_the_next(server, tmp_path,
                                                  closed_port_url):
  _fetch_wikitext2(tmp_path, [closed_port_url, 'wikitext-2-v1.zip'], server)
  _assert_has_wikitext2(tmp_path)


def test_a_source_whose_archive_does_not_match_is_not_used(
    server, tmp_path, requests_seen):
  _fetch_wikitext2(tmp_path, ['mismatch/wikitext-2-v1.zip',
                              'wikitext-2-v1.zip'], server)
  _assert_has_wikitext2(tmp_path)  # The second source's files, not the first's.
  assert len(requests_seen) == 2
  with pytest.raises(UserError, match='SHA-256 mismatch'):
    _fetch_wikitext2(tmp_path / 'other', ['mismatch/wikitext-2-v1.zip'] * 2,
                     server)
  assert _all_files(tmp_path / 'other') == []


def test_requests_say_they_come_from_lm_trax(server, tmp_path, requests_seen):
  _fetch_wikitext2(tmp_path, ['agent_checked/wikitext-2-v1.zip'], server)
  _assert_has_wikitext2(tmp_path)
  ((_, agent),) = requests_seen
  assert agent == f'lm_trax/{lm_trax.__version__}'


def test_when_every_source_fails_the_error_names_each(server, tmp_path,
                                                      closed_port_url):
  paths = ['forbidden/wikitext-2-v1.zip', closed_port_url,
           'mismatch/wikitext-2-v1.zip']
  with pytest.raises(UserError) as error:
    _fetch_wikitext2(tmp_path, paths, server)
  message = str(error.value)
  assert message.startswith('downloading wikitext2 from ')
  urls = [f'{server}/{paths[0]}', closed_port_url, f'{server}/{paths[2]}']
  positions = [message.index(url) for url in urls]
  assert positions == sorted(positions)  # In the order they were tried.
  assert 'HTTP 403' in message and 'SHA-256 mismatch' in message
  for relative in download.CORPUS_FILES['wikitext2']:
    assert str(tmp_path / relative) in message
  assert 'LM_TRAX_DATA_DIR' in message
  assert '\n' not in message
  assert _all_files(tmp_path) == []


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


def test_cli_downloads_a_zip_corpus(server, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(download, 'ARCHIVE_DIGESTS', FAKE_ARCHIVE_DIGESTS)
  download.main(['enwik8', '--data_dir', str(tmp_path), '--url',
                 f'{server}/enwik8.zip'])
  assert capsys.readouterr().out == f'{tmp_path}/enwik8/enwik8\n'
  assert (tmp_path / 'enwik8' / 'enwik8').read_bytes() == ENWIK8


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
