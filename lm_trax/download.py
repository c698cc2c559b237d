"""Fetches the known public corpora when they are missing from the data dir.

Layout of a data directory (paths relative to it are in `CORPUS_FILES`):

  <data_dir>/ptb/ptb.{train,valid,test}.txt
  <data_dir>/ptb_char/ptb.char.{train,valid,test}.txt
  <data_dir>/tinyshakespeare/input.txt
  <data_dir>/wikitext2/wiki.{train,valid,test}.tokens
  <data_dir>/wikitext103/wiki.{train,valid,test}.tokens
  <data_dir>/enwik8/enwik8
  <data_dir>/text8/text8

Every download is verified before anything is written: each file against its
SHA-256 (`SHA256`) or, where only the archive's digest is published, the whole
archive (`ARCHIVE_DIGESTS`); the character PTB, for which neither is
published, by the word-level PTB files in the same archive. Files are written
atomically (lm_trax.files: a temporary file in the same directory, fsync,
os.replace; every file of a corpus checked before any replaces its target),
so a failed or corrupt download never leaves a partial or wrong file behind.
A corpus may have several sources (`URLS`), tried in order: one that cannot
be reached, refuses the request or serves something that fails the checks
passes to the next, each tried once (no retries). When all fail, UserError
names every source and where to put the files by hand.

Command line:

  python -m lm_trax.download NAME [--data_dir DIR] [--force]

This module imports only the standard library and tqdm: no trax, TensorFlow
or JAX.
"""

import hashlib
import http.client
import os
import pathlib
import sys
import tarfile
import typing
import urllib.error
import urllib.request
import zipfile
import zlib

import tqdm

from lm_trax import cli
from lm_trax import files
from lm_trax.errors import UserError, exit_with

ENV_VAR = 'LM_TRAX_DATA_DIR'

CORPUS_FILES = {
    'enwik8': ('enwik8/enwik8',),
    'ptb': ('ptb/ptb.train.txt', 'ptb/ptb.valid.txt', 'ptb/ptb.test.txt'),
    'ptb_char': ('ptb_char/ptb.char.train.txt', 'ptb_char/ptb.char.valid.txt',
                 'ptb_char/ptb.char.test.txt'),
    'text8': ('text8/text8',),
    'tinyshakespeare': ('tinyshakespeare/input.txt',),
    'wikitext103': ('wikitext103/wiki.train.tokens',
                    'wikitext103/wiki.valid.tokens',
                    'wikitext103/wiki.test.tokens'),
    'wikitext2': ('wikitext2/wiki.train.tokens', 'wikitext2/wiki.valid.tokens',
                  'wikitext2/wiki.test.tokens'),
}

# Where each corpus comes from: its sources, tried in order, each checked
# against the same digests. Both PTBs are Mikolov's preprocessed versions
# from one archive; WikiText is the tokenized release (its own <unk>), served
# by its author, Stephen Merity, and by the Salesforce (formerly MetaMind) S3
# bucket it was first published in, which has answered 403 since 2024 and is
# kept second in case it comes back; enwik8 and text8 are Mahoney's, of the
# Large Text Compression Benchmark; Tiny Shakespeare is a single file from
# Karpathy's char-rnn repository.
_SIMPLE_EXAMPLES = 'http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz'
_WIKITEXT = ('https://wikitext.smerity.com/',
             'https://s3.amazonaws.com/research.metamind.io/wikitext/')
URLS = {
    'enwik8': ('http://mattmahoney.net/dc/enwik8.zip',),
    'ptb': (_SIMPLE_EXAMPLES,),
    'ptb_char': (_SIMPLE_EXAMPLES,),
    'text8': ('http://mattmahoney.net/dc/text8.zip',),
    'tinyshakespeare': ('https://raw.githubusercontent.com/karpathy/char-rnn/'
                        'master/data/tinyshakespeare/input.txt',),
    'wikitext103': tuple(base + 'wikitext-103-v1.zip' for base in _WIKITEXT),
    'wikitext2': tuple(base + 'wikitext-2-v1.zip' for base in _WIKITEXT),
}

# Sent with every request: wikitext.smerity.com refuses (403) Python's
# default User-Agent. The version is read from the package, imported before
# any of its modules, rather than by importing it here: the package reaches
# this module again through lm_trax.load (tests/test_imports.py).
USER_AGENT = f'lm_trax/{sys.modules["lm_trax"].__version__}'

# The corpora that come in an archive: its format, and the folder in it that
# holds the files under the names of CORPUS_FILES (a leading './' is ignored).
# Nothing else in an archive is extracted, and never under its own path.
ARCHIVES = {
    'enwik8': ('zip', ''),
    'ptb': ('tgz', 'simple-examples/data'),
    'ptb_char': ('tgz', 'simple-examples/data'),
    'text8': ('zip', ''),
    'wikitext103': ('zip', 'wikitext-103'),
    'wikitext2': ('zip', 'wikitext-2'),
}

# SHA-256 of the files themselves, computed from the real files.
SHA256 = {
    'ptb/ptb.train.txt':
        'fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf',
    'ptb/ptb.valid.txt':
        'c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2',
    'ptb/ptb.test.txt':
        'dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0',
    'tinyshakespeare/input.txt':
        '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed',
}

# (algorithm, hex digest) of whole archives, as others publish them; the files
# they hold have no published digest, so the archive is what is checked, as it
# streams in, before anything is extracted.
ARCHIVE_DIGESTS = {
    # Hugging Face datasets, datasets/wikitext/dataset_infos.json
    # ("download_checksums"; archives of 4,475,746 and 190,229,076 bytes).
    'wikitext2': ('sha256', '92675f1d63015c1c8b51f1656a52d5bd'
                            'bc33aafa60cc47a218a66e7ee817488c'),
    'wikitext103': ('sha256', '242ba0f20b329cfdf1ccc61e9e9e5b59'
                              'becf189db7f7a81cd2a0e2fc31539590'),
    # Hugging Face datasets, datasets/enwik8/dataset_infos.json (36,445,475
    # bytes).
    'enwik8': ('sha256', '547994d9980ebed1288380d652999f38'
                         'a14fe291a6247c157c3d33d4932534bc'),
    # GluonNLP, src/gluonnlp/data/corpora/large_text_compression_benchmark.py
    # (Text8.archive_file): only a SHA-1 is published for text8.zip.
    'text8': ('sha1', '6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e'),
}

# Neither simple-examples.tgz nor its ptb.char.* files have a published digest.
# The archive is recognized instead by the word-level PTB files it also holds
# (read and hashed, never written), whose SHA-256 are known.
_RECOGNIZED_BY = {'ptb_char': 'ptb'}

_CHUNK = 1 << 16


class _NetworkError(Exception):
  """A failure while talking to the server (wraps the original error)."""


# Public API -------------------------------------------------------------------


def default_data_dir():
  """Returns $LM_TRAX_DATA_DIR, else $XDG_CACHE_HOME/lm_trax/data.

  XDG_CACHE_HOME defaults to ~/.cache (and is ignored unless absolute, as the
  XDG spec says).
  """
  if os.environ.get(ENV_VAR):
    return pathlib.Path(os.environ[ENV_VAR]).expanduser()
  cache = os.environ.get('XDG_CACHE_HOME', '')
  if not os.path.isabs(cache):
    cache = os.path.join(os.path.expanduser('~'), '.cache')
  return pathlib.Path(cache) / 'lm_trax' / 'data'


def expected_files(name, data_dir):
  """Returns the paths corpus `name` has in `data_dir` (`CORPUS_FILES`)."""
  _check_name(name)
  root = pathlib.Path(data_dir).expanduser()
  return [root / relative for relative in CORPUS_FILES[name]]


def missing_files(name, data_dir):
  """Returns the files of corpus `name` that are not in `data_dir`.

  Args:
    name: A key of `CORPUS_FILES`, e.g. 'ptb'.
    data_dir: The data directory (str or path).

  Returns:
    A list of pathlib.Path, empty when the corpus is complete.

  Raises:
    UserError: `name` is not a known corpus.
  """
  return [path for path in expected_files(name, data_dir)
          if not path.is_file()]


def fetch(name, data_dir, url=None, timeout=10.0, progress=True,
          expected_sha256=None, archive_digest=None):
  """Downloads corpus `name` into `data_dir`, replacing any files it has.

  Args:
    name: A key of `CORPUS_FILES`.
    data_dir: The data directory; created if needed.
    url: Overrides the sources `URLS[name]`: one URL (a mirror, or a local
      server in tests), or a list of them, tried in order.
    timeout: Seconds to wait on each network operation (connect, each read)
      before giving up; there are no retries.
    progress: Whether to show a progress bar on stderr.
    expected_sha256: Optional {relative path: hex digest} overriding `SHA256`
      (for tests with small fake files).
    archive_digest: Optional (algorithm, hex digest) overriding
      `ARCHIVE_DIGESTS[name]` (for tests with small fake archives).

  Returns:
    The written files: `data_dir` joined with each of `CORPUS_FILES[name]`.

  Raises:
    UserError: unknown corpus, or every source failed: network failure,
      corrupt archive, or a file or archive whose digest does not match.
      Nothing is written in these cases. With one source, the message is
      that source's failure; with several, it names each and how it failed.
  """
  targets = expected_files(name, data_dir)
  _make_dirs(targets)
  hashes = {**SHA256, **(expected_sha256 or {})}
  checks = _Checks(
      files={path: hashes.get(relative)
             for path, relative in zip(targets, CORPUS_FILES[name])},
      archive=archive_digest or ARCHIVE_DIGESTS.get(name),
      known_members=_known_members(name, hashes))
  sources = _sources(url or URLS[name])
  failures = []  # (source, why it failed)
  for source in sources:
    staged = {}
    try:
      _download(name, source, timeout, progress, checks, staged)
      files.commit(staged)
      return targets
    except (_NetworkError, UserError) as error:
      # UserError: it served something that fails the checks, a message
      # complete in itself when it is the only source.
      if isinstance(error, UserError) and len(sources) == 1:
        raise
      failures.append((source, str(error)))
      failed = error
    finally:
      files.remove(staged.values())
  raise UserError(_network_message(name, failures, targets)) from failed


def _sources(urls):
  """A tuple of URLs from one URL or a sequence of them."""
  return (urls,) if isinstance(urls, str) else tuple(urls)


def ensure(name, data_dir, download=True):
  """Makes sure corpus `name` is in `data_dir`, downloading it if allowed.

  Args:
    name: A key of `CORPUS_FILES`.
    data_dir: The data directory.
    download: Whether to fetch missing files; if False they are an error.

  Raises:
    UserError: files are missing and may not (or could not) be downloaded.
  """
  missing = missing_files(name, data_dir)
  if not missing:
    return
  if download:
    fetch(name, data_dir)
    return
  command = (f'python -m lm_trax.download {name} '
             f'--data_dir {_absolute(data_dir)}')
  raise UserError(f'{name} is missing {_join_paths(missing)}; get it with '
                  f'`{command}` or put the files there by hand')


# Downloading ------------------------------------------------------------------


def _check_name(name):
  if name not in CORPUS_FILES:
    raise UserError(f'unknown corpus {name!r}; use one of '
                    f'{", ".join(sorted(CORPUS_FILES))}')


def _make_dirs(targets):
  """Creates the directories of `targets`, or says to pick another dir."""
  for parent in sorted({path.parent for path in targets}):
    try:
      parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
      raise UserError(f'cannot create {parent} ({error.strerror}); pass a '
                      f'writable --data_dir or set {ENV_VAR}') from error


class _Checks(typing.NamedTuple):
  """What a download is verified against."""
  files: dict  # {target path: its SHA-256, or None if not known}
  archive: tuple  # (algorithm, hex digest) of the whole archive, or None
  known_members: dict  # {archive member: SHA-256} that identify the archive


def _known_members(name, hashes):
  """{member name: SHA-256} of the files that identify `name`'s archive (see
  `_RECOGNIZED_BY`); empty for the other corpora."""
  other = _RECOGNIZED_BY.get(name)
  if other is None:
    return {}
  folder = ARCHIVES[other][1]
  return {_member_path(folder, relative): hashes[relative]
          for relative in CORPUS_FILES[other]}


def _member_path(folder, relative):
  """The archive member that holds the file `relative` (a CORPUS_FILES path)."""
  return '/'.join(filter(None, (folder, relative.split('/')[-1])))


def _download(name, url, timeout, progress, checks, staged):
  """Streams `url` into verified temporary files, recorded in `staged`."""
  kind, folder = ARCHIVES.get(name, (None, ''))
  members = {_member_path(folder, path.name): path for path in checks.files}
  with _open_url(url, timeout) as response:
    reader = _Reader(response, progress, desc=name)
    try:
      if kind == 'tgz':
        _stage_from_tgz(reader, url, members, checks, staged)
      elif kind == 'zip':
        _stage_from_zip(reader, url, members, checks, staged)
      else:
        (target,) = checks.files
        staged[target] = _stage(reader, target, checks.files[target])
    finally:
      reader.close()


def _open_url(url, timeout):
  """Opens `url`, as `USER_AGENT`; any failure becomes _NetworkError."""
  try:
    request = urllib.request.Request(url,
                                     headers={'User-Agent': USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)
  except (OSError, http.client.HTTPException, ValueError) as error:
    # URLError/HTTPError and timeouts are OSErrors; ValueError: bad URL.
    raise _NetworkError(_reason(error)) from error


def _reason(error):
  """A short description of a network error."""
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code} {error.reason}'
  if isinstance(error, urllib.error.URLError):
    return str(error.reason)
  return str(error) or type(error).__name__


class _Reader:
  """A file-like view of an HTTP response that shows progress.

  Errors while reading become _NetworkError, so they are not mistaken for
  errors writing the files.
  """

  def __init__(self, response, progress, desc):
    self._response = response
    self._bar = _progress_bar(response, progress, desc)

  def read(self, size=-1):
    try:
      data = self._response.read(size)
    except (OSError, http.client.HTTPException) as error:
      raise _NetworkError(_reason(error)) from error
    if self._bar is not None:
      self._bar.update(len(data))
    return data

  def close(self):
    if self._bar is not None:
      self._bar.close()


def _progress_bar(response, enabled, desc):
  """A tqdm bar on stderr sized by Content-Length, or None."""
  if not enabled:
    return None
  length = response.headers.get('Content-Length')
  total = int(length) if length and length.isdigit() else None
  return tqdm.tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                   desc=desc, file=sys.stderr, leave=False)


def _stage_from_tgz(reader, url, members, checks, staged):
  """Stages `members` ({member name: target}) from the .tgz stream `reader`.

  The tar is read as it streams in, once. Each target is checked against its
  SHA-256 (if known), and the archive must hold `checks.known_members` with
  their digests.
  """
  seen = {}
  try:
    with tarfile.open(fileobj=reader, mode='r|gz') as archive:
      for member in archive:
        name = _member_name(member)
        if name in members and members[name] not in staged:
          target = members[name]
          staged[target] = _stage(archive.extractfile(member), target,
                                  checks.files[target])
        elif name in checks.known_members:
          seen[name] = _digest(archive.extractfile(member))
  except (tarfile.TarError, EOFError, zlib.error) as error:
    raise UserError(f'{url} is not a valid .tgz archive ({error}); retry, or '
                    f'use another --url') from error
  _check_complete(url, members, staged)
  _check_known_members(url, checks.known_members, seen)


def _member_name(member):
  """A tar member's path without '.' parts, or None if not a regular file."""
  if not member.isfile():
    return None
  return '/'.join(part for part in member.name.split('/')
                  if part not in ('', '.'))


def _stage_from_zip(reader, url, members, checks, staged):
  """Stages `members` ({member name: target}) from the .zip stream `reader`.

  A zip's index is at its end, so the archive is first saved to a temporary
  file (hashed on the way and checked against `checks.archive`), then the
  members are extracted from it; the temporary archive is always removed.
  """
  algorithm, expected = checks.archive or ('sha256', None)
  digest = hashlib.new(algorithm)
  temp = []  # The saved archive, once written.
  try:
    temp.append(files.stage(
        next(iter(members.values())).with_name('archive.zip'),
        _copy_hashing(reader, digest)))
    actual = digest.hexdigest()
    if expected is not None and actual != expected.lower():
      raise UserError(_mismatch(url, algorithm, expected, actual))
    with zipfile.ZipFile(temp[0]) as archive:
      present = set(archive.namelist())
      for name, target in members.items():
        if name in present:
          with archive.open(name) as source:
            staged[target] = _stage(source, target, checks.files[target])
  except (zipfile.BadZipFile, EOFError, zlib.error) as error:
    raise UserError(f'{url} is not a valid .zip archive ({error}); retry, or '
                    f'use another --url') from error
  finally:
    files.remove(temp)
  _check_complete(url, members, staged)


def _check_complete(url, members, staged):
  absent = [name for name, target in members.items() if target not in staged]
  if absent:
    raise UserError(f'the archive at {url} has no {", ".join(absent)}; use '
                    f'the original archive or another --url')


def _check_known_members(url, known, seen):
  """Raises UserError unless every member of `known` was seen with its
  SHA-256: otherwise the archive is not the one the files should come from."""
  for name, sha256 in known.items():
    if name not in seen:
      raise UserError(f'the archive at {url} has no {name}, so it is not the '
                      f'original; use the original archive or another --url')
    if seen[name] != sha256.lower():
      raise UserError(_mismatch(f'{url} ({name})', 'sha256', sha256,
                                seen[name]))


# Atomic, verified writes ------------------------------------------------------


def _stage(source, target, sha256):
  """Copies `source` to a file staged beside `target` (lm_trax.files.stage),
  checking its SHA-256.

  Args:
    source: A readable file-like object.
    target: The final path.
    sha256: Its expected hex digest, or None where the archive it comes from
      was checked instead.

  Returns:
    The staged file's path, fsynced, for `files.commit` to move over
    `target`.

  Raises:
    UserError: the content does not have hash `sha256` (the staged file is
      removed).
  """
  digest = hashlib.sha256()
  temp = files.stage(target, _copy_hashing(source, digest))
  actual = digest.hexdigest()
  if sha256 is not None and actual != sha256.lower():
    files.remove([temp])
    raise UserError(_mismatch(target, 'sha256', sha256, actual))
  return temp


def _copy_hashing(source, digest):
  """A writer for `files.stage`: copies `source` into the file it is given,
  feeding `digest` (a hashlib object) with every chunk on the way."""
  def write(out):
    for chunk in iter(lambda: source.read(_CHUNK), b''):
      digest.update(chunk)
      out.write(chunk)
  return write


def _digest(source, algorithm='sha256'):
  """The hex digest of what `source` holds (read, not kept)."""
  digest = hashlib.new(algorithm)
  for chunk in iter(lambda: source.read(_CHUNK), b''):
    digest.update(chunk)
  return digest.hexdigest()


# Messages ---------------------------------------------------------------------


def _absolute(path):
  return pathlib.Path(path).expanduser().absolute()


def _join_paths(paths):
  return ', '.join(str(path.absolute()) for path in paths)


def _mismatch(what, algorithm, expected, actual):
  name = {'sha256': 'SHA-256', 'sha1': 'SHA-1'}.get(algorithm, algorithm)
  return (f'{what}: {name} mismatch (expected {expected}, got {actual}); the '
          f'download is corrupt or the source changed, so nothing was written')


def _network_message(name, failures, targets):
  """Every source failed: failures is [(source, why)], in the order tried."""
  (first, reason), *others = failures
  tried = f'from {first} failed ({reason})'
  tried += ''.join(f', then from {source} ({why})' for source, why in others)
  return (f'downloading {name} {tried}; put the files there by hand '
          f'({_join_paths(targets)}) or set {ENV_VAR} to a directory that '
          f'has {", ".join(CORPUS_FILES[name])}')


# Command line -----------------------------------------------------------------


def _parse(argv):
  parser = cli.parser('lm_trax.download',
                      'Downloads a public corpus into the data directory.')
  parser.add_argument('name', choices=sorted(CORPUS_FILES))
  parser.add_argument(
      '--data_dir', default=None,
      help=f'data directory (default: ${ENV_VAR}, else '
           '$XDG_CACHE_HOME/lm_trax/data, i.e. ~/.cache/lm_trax/data)')
  parser.add_argument('--force', action='store_true',
                      help='download even if the files are already there')
  parser.add_argument('--url', default=None,
                      help='fetch from this URL (a mirror) instead')
  cli.add_verbose_argument(parser)
  return parser.parse_args(argv)


def main(argv=None):
  """Runs the command line; errors exit 2 with one line on stderr."""
  args = _parse(argv)
  data_dir = pathlib.Path(args.data_dir or default_data_dir()).expanduser()
  try:
    if not args.force and not missing_files(args.name, data_dir):
      print(f'{args.name}: all files present in {data_dir}')
      return
    for path in fetch(args.name, data_dir, url=args.url):
      print(path)
  except UserError as error:
    exit_with(error, verbose=args.verbose)


if __name__ == '__main__':
  main()
