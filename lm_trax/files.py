"""Atomic file writes: a reader, or a crash, sees the old content or the new.

Every file lm_trax writes in place goes the same way (the run directory's
config.gin, model.json, run.json, the checkpoint pointers, a sweep's status
files, downloaded corpora):

  1. `stage`: the new content goes to a new hidden file beside the target
     (.<name>.<random>.tmp, in the same directory, so on the same file
     system), which is flushed and fsynced;
  2. `commit`: os.replace moves it over the target (atomic on POSIX), then
     the directory is fsynced (`fsync_dir`), so the rename is on disk too.

A crash before the rename leaves the target as it was (and a stray .tmp
file); after it, the new content, complete. `write_text_atomically` is both
steps for one file; a download stages every file of a corpus and checks each
before it commits any of them.
"""

import os
import pathlib
import secrets

TEMP_SUFFIX = '.tmp'


def write_text_atomically(path, text):
  """Replaces the file `path` with `text` (UTF-8) so that a reader or a
  crash sees either the old file or the new one, never a mix."""
  data = text.encode('utf-8')
  path = pathlib.Path(path)
  commit({path: stage(path, lambda f: f.write(data))})


def stage(target, write):
  """Writes a new file beside `target`, to be moved over it by `commit`.

  Args:
    target: the final path (its directory must exist).
    write: callable(f) that writes the content to f, a file open for writing
      bytes. If it raises, the new file is removed and the error propagates.

  Returns:
    The path of the new file, its content flushed and fsynced.
  """
  temp = _new_temp(pathlib.Path(target))
  try:
    with open(temp, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    remove([temp])
    raise
  return temp


def commit(staged):
  """Moves each staged file over its target, then fsyncs their directories.

  Args:
    staged: {target path: staged file path} (from `stage`). Each entry is
      removed once its file is in place, so that what remains after an
      error are the staged files still to clean up (`remove`).
  """
  parents = {pathlib.Path(target).parent for target in staged}
  for target in list(staged):
    os.replace(staged[target], target)
    del staged[target]
  for parent in parents:
    fsync_dir(parent)


def fsync_dir(path):
  """Makes the renames in directory `path` durable (best effort: not every
  OS can open or fsync a directory)."""
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


def remove(paths):
  """Deletes the files, those already gone included."""
  for path in list(paths):
    try:
      os.unlink(path)
    except FileNotFoundError:
      pass


def _new_temp(target):
  """A new, empty, hidden file beside `target`, created exclusively, so that
  two processes writing the same target never share one."""
  while True:
    temp = target.with_name(
        f'.{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}')
    try:
      os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
      return temp
    except FileExistsError:
      continue
