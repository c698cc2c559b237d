"""Fetches the known public corpora when they are missing from the data dir.

Layout of a data directory (paths relative to it are in `CORPUS_FILES`):

  <data_dir>/ptb/ptb.{train,valid,test}.txt
  <data_dir>/tinyshakespeare/input.txt

Every file is checked against its SHA-256 and written atomically (a temporary
file in the same directory, fsync, os.replace), so a failed or corrupt download
never leaves a partial or wrong file behind. Network failures raise UserError
at once (no retries) saying where to put the files by hand.

Command line:

  python -m lm_trax.download {ptb,tinyshakespeare} [--data_dir DIR] [--force]

This module imports only the standard library (and tqdm, lazily): no trax,
TensorFlow or JAX.
"""

import hashlib
import http.client
import os
import pathlib
import secrets
import sys
import tarfile
import urllib.error
import urllib.request
import zlib

from lm_trax import cli
from lm_trax.errors import UserError, exit_with

ENV_VAR = 'LM_TRAX_DATA_DIR'

CORPUS_FILES = {
    'ptb': ('ptb/ptb.train.txt', 'ptb/ptb.valid.txt', 'ptb/ptb.test.txt'),
    'tinyshakespeare': ('tinyshakespeare/input.txt',),
}

# Where each corpus comes from. PTB is Mikolov's preprocessed version, inside
# an archive (members ./simple-examples/data/ptb.*.txt); Tiny Shakespeare is a
# single file from Karpathy's char-rnn repository.
URLS = {
    'ptb': 'http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz',
    'tinyshakespeare': ('https://raw.githubusercontent.com/karpathy/char-rnn/'
                        'master/data/tinyshakespeare/input.txt'),
}
_ARCHIVES = frozenset({'ptb'})

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

_CHUNK = 1 << 16
_TEMP_SUFFIX = '.part'


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
          expected_sha256=None):
  """Downloads corpus `name` into `data_dir`, replacing any files it has.

  Args:
    name: A key of `CORPUS_FILES`.
    data_dir: The data directory; created if needed.
    url: Overrides the source URL (a mirror, or a local server in tests).
    timeout: Seconds to wait on each network operation (connect, each read)
      before giving up; there are no retries.
    progress: Whether to show a progress bar on stderr.
    expected_sha256: Optional {relative path: hex digest} overriding `SHA256`
      (for tests with small fake files).

  Returns:
    The written files: `data_dir` joined with each of `CORPUS_FILES[name]`.

  Raises:
    UserError: unknown corpus, network failure, corrupt archive, or a file
      whose SHA-256 does not match; nothing is written in these cases.
  """
  targets = expected_files(name, data_dir)
  _make_dirs(targets)
  hashes = {**SHA256, **(expected_sha256 or {})}
  expected = {path: hashes[relative]
              for path, relative in zip(targets, CORPUS_FILES[name])}
  url = url or URLS[name]
  staged = {}
  try:
    _download(name, url, timeout, progress, expected, staged)
    _commit(staged)
  except _NetworkError as error:
    raise UserError(_network_message(name, url, error, targets)) from error
  finally:
    _remove(staged.values())
  return targets


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


def _download(name, url, timeout, progress, expected, staged):
  """Streams `url` into verified temporary files, recorded in `staged`."""
  with _open_url(url, timeout) as response:
    reader = _Reader(response, progress, desc=name)
    try:
      if name in _ARCHIVES:
        _stage_from_archive(reader, url, expected, staged)
      else:
        (target,) = expected
        staged[target] = _stage(reader, target, expected[target])
    finally:
      reader.close()


def _open_url(url, timeout):
  """Opens `url`; any failure becomes _NetworkError."""
  try:
    return urllib.request.urlopen(url, timeout=timeout)
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
  import tqdm  # pylint: disable=g-import-not-at-top
  length = response.headers.get('Content-Length')
  total = int(length) if length and length.isdigit() else None
  return tqdm.tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                   desc=desc, file=sys.stderr, leave=False)


def _stage_from_archive(reader, url, expected, staged):
  """Stages the files in `expected` from the .tgz stream `reader`.

  Members are matched by basename in a `data/` folder (e.g.
  ./simple-examples/data/ptb.train.txt); everything else is skipped. Nothing
  is extracted with the archive's own paths.
  """
  wanted = {path.name: path for path in expected}
  try:
    with tarfile.open(fileobj=reader, mode='r|gz') as archive:
      for member in archive:
        target = wanted.get(_data_basename(member))
        if target is not None and target not in staged:
          source = archive.extractfile(member)
          staged[target] = _stage(source, target, expected[target])
  except (tarfile.TarError, EOFError, zlib.error) as error:
    raise UserError(f'{url} is not a valid .tgz archive ({error}); retry, or '
                    f'use another --url') from error
  _check_complete(url, expected, staged)


def _data_basename(member):
  """The basename of a regular file directly in a `data/` folder, or None."""
  parts = [part for part in member.name.split('/') if part not in ('', '.')]
  if member.isfile() and len(parts) >= 2 and parts[-2] == 'data':
    return parts[-1]
  return None


def _check_complete(url, expected, staged):
  absent = [path.name for path in expected if path not in staged]
  if absent:
    raise UserError(f'the archive at {url} has no data/{", data/".join(absent)}'
                    f'; use the original archive or another --url')


# Atomic, verified writes ------------------------------------------------------


def _stage(source, target, sha256):
  """Copies `source` to a temp file next to `target`, checking its SHA-256.

  Args:
    source: A readable file-like object.
    target: The final path.
    sha256: Its expected hex digest.

  Returns:
    The temp file's path, fsynced, for `_commit` to move over `target`.

  Raises:
    UserError: the content does not have hash `sha256` (the temp file is
      removed).
  """
  temp = _new_temp(target)
  try:
    actual = _copy_and_hash(source, temp)
    if actual != sha256.lower():
      raise UserError(
          f'{target}: SHA-256 mismatch (expected {sha256}, got {actual}); the '
          f'download is corrupt or the source changed, so nothing was written')
  except BaseException:
    _remove([temp])
    raise
  return temp


def _new_temp(target):
  """A new, empty, hidden temp file next to `target` (mode as umask allows)."""
  while True:
    temp = target.with_name(
        f'.{target.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}')
    try:
      os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
      return temp
    except FileExistsError:
      continue


def _copy_and_hash(source, temp):
  """Writes `source` to `temp`, fsyncs it, and returns its SHA-256."""
  digest = hashlib.sha256()
  with open(temp, 'wb') as out:
    for chunk in iter(lambda: source.read(_CHUNK), b''):
      digest.update(chunk)
      out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
  return digest.hexdigest()


def _commit(staged):
  """Moves every staged temp file over its target, then syncs the dirs."""
  parents = {target.parent for target in staged}
  for target in list(staged):
    os.replace(staged[target], target)
    del staged[target]  # In place now: not a temp file to clean up.
  for parent in parents:
    _fsync_dir(parent)


def _fsync_dir(path):
  """Makes a rename in `path` durable (best effort; not all OSes allow it)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _remove(paths):
  for path in list(paths):
    try:
      os.unlink(path)
    except FileNotFoundError:
      pass


# Messages ---------------------------------------------------------------------


def _absolute(path):
  return pathlib.Path(path).expanduser().absolute()


def _join_paths(paths):
  return ', '.join(str(path.absolute()) for path in paths)


def _network_message(name, url, reason, targets):
  return (f'downloading {name} from {url} failed ({reason}); put the files '
          f'there by hand ({_join_paths(targets)}) or set {ENV_VAR} to a '
          f'directory that has {", ".join(CORPUS_FILES[name])}')


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
