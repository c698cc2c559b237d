"""Atomic writes (lm_trax.files): the old content or the new, never a mix,
and on disk before the rename."""

import os
import stat

import pytest

from lm_trax import checkpoints
from lm_trax import files


def _hidden(directory):
  return sorted(p.name for p in directory.iterdir() if p.name.startswith('.'))


def test_a_crash_before_the_rename_leaves_the_old_file(tmp_path,
                                                        monkeypatch):
  target = tmp_path / 'config.gin'
  target.write_text('old\n')

  def crash(unused_source, unused_target):
    raise KeyboardInterrupt  # As if killed just before os.replace.
  monkeypatch.setattr(os, 'replace', crash)
  with pytest.raises(KeyboardInterrupt):
    files.write_text_atomically(target, 'new\n' * 1000)
  assert target.read_text() == 'old\n'
  (staged,) = _hidden(tmp_path)  # The new content, complete, not in place.
  assert (tmp_path / staged).read_text() == 'new\n' * 1000
  monkeypatch.undo()
  files.write_text_atomically(target, 'new\n')  # The next write succeeds.
  assert target.read_text() == 'new\n'


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
  target = tmp_path / 'status.json'
  target.write_text('old')

  def half_then_fail(f):
    f.write(b'ne')
    raise OSError('disk full')
  with pytest.raises(OSError, match='disk full'):
    files.commit({target: files.stage(target, half_then_fail)})
  assert target.read_text() == 'old'
  assert _hidden(tmp_path) == []


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(
    tmp_path, monkeypatch):
  events = []
  fsync, replace = os.fsync, os.replace

  def recording_fsync(fd):
    kind = 'dir' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
    events.append(f'fsync {kind}')
    fsync(fd)

  def recording_replace(source, target):
    events.append('replace')
    replace(source, target)
  monkeypatch.setattr(os, 'fsync', recording_fsync)
  monkeypatch.setattr(os, 'replace', recording_replace)
  files.write_text_atomically(tmp_path / 'run.json', '{}\n')
  assert events == ['fsync file', 'replace', 'fsync dir']
  assert (tmp_path / 'run.json').read_text() == '{}\n'


def test_a_commit_moves_every_staged_file_only_after_all_are_written(
    tmp_path):
  """What a download does: every file of a corpus staged (and checked), then
  all moved; until then the targets are untouched."""
  targets = [tmp_path / 'ptb.train.txt', tmp_path / 'ptb.valid.txt']
  for target in targets:
    target.write_text('old')
  staged = {t: files.stage(t, lambda f: f.write(b'new')) for t in targets}
  assert [t.read_text() for t in targets] == ['old', 'old']
  files.commit(staged)
  assert staged == {}  # Nothing left to clean up.
  assert [t.read_text() for t in targets] == ['new', 'new']
  assert _hidden(tmp_path) == []


def test_the_checkpoint_pointer_is_written_atomically(tmp_path, monkeypatch):
  """checkpoints' `latest` pointer goes through the same helper: a crash
  before the rename leaves it pointing at the previous checkpoint."""
  def write_files(directory):
    (directory / 'model.pkl.gz').write_bytes(b'weights')
  checkpoints.write(tmp_path, checkpoints.LATEST, 10, write_files)
  pointer = checkpoints.root(tmp_path) / checkpoints.LATEST

  def crash(source, target):
    if os.path.basename(target) == checkpoints.LATEST:
      raise KeyboardInterrupt
    os.rename(source, target)
  monkeypatch.setattr(os, 'replace', crash)
  with pytest.raises(KeyboardInterrupt):
    checkpoints.write(tmp_path, checkpoints.LATEST, 20, write_files)
  assert pointer.read_text() == 'step-00000010\n'
  assert checkpoints.pointed(tmp_path, checkpoints.LATEST).name == (
      'step-00000010')
  monkeypatch.undo()  # The next checkpoint clears what the crash left.
  checkpoints.write(tmp_path, checkpoints.LATEST, 30, write_files)
  assert pointer.read_text() == 'step-00000030\n'
  assert [p.name for p in checkpoints.root(tmp_path).iterdir()
          if p.name.startswith('.')] == []


@pytest.fixture
def umask():
  """Sets the process's umask for one test: umask(mask); restored after."""
  before = os.umask(0o022)
  yield os.umask
  os.umask(before)


@pytest.mark.parametrize('mask, directory_mode, file_mode', [
    (0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_a_checkpoint_gets_the_permissions_the_umask_gives(
    tmp_path, umask, mask, directory_mode, file_mode):
  """Collaborators on a shared file system can read a run as they can read
  any directory the user makes."""
  umask(mask)

  def write_files(directory):
    (directory / 'model.pkl.gz').write_bytes(b'weights')
  final = checkpoints.write(tmp_path, checkpoints.LATEST, 10, write_files)
  assert stat.S_IMODE(final.stat().st_mode) == directory_mode
  for path in [*final.iterdir(),
               checkpoints.root(tmp_path) / checkpoints.LATEST]:
    assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
