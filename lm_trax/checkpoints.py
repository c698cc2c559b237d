"""Crash-safe checkpoint directories on top of trax's checkpoint files.

trax writes a checkpoint as several files (model.pkl.gz with the step,
model.weights.npy.gz, model.opt_slots0.npy.gz, data_counters0.pkl), each
atomically but not as a group: a kill between two files would leave new
weights beside an old step. So every checkpoint goes into a directory of its
own, and a one-line pointer file names the current one:

  <run>/checkpoints/step-00002323/   model.pkl.gz, model.weights.npy.gz, ...
  <run>/checkpoints/latest           "step-00002323"   (replaced atomically)
  <run>/checkpoints/best             "best-00002000"   (best validation)

A directory is complete before it gets its final name (written as .tmp-*,
with a manifest of its files' sizes and SHA-256, fsynced, then renamed), and
the pointer moves only after that, so a kill at any moment leaves the previous
checkpoint loadable; `verify` catches files damaged later. The last KEEP step
directories are kept, so a checkpoint damaged later on disk can fall back to
the one before it.
"""

import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil

from lm_trax import files

ROOT = 'checkpoints'
LATEST, BEST = 'latest', 'best'
KEEP = 2
_STEP_DIR = re.compile(r'^(step|best)-(\d{8})$')
MANIFEST = 'manifest.json'


def root(output_dir):
  return pathlib.Path(output_dir) / ROOT


def _fsync_tree(path):
  for file in pathlib.Path(path).iterdir():
    with open(file, 'rb') as f:
      os.fsync(f.fileno())
  files.fsync_dir(path)


def write(output_dir, kind, step, write_files):
  """Writes one checkpoint directory and points `kind` at it.

  Args:
    output_dir: the run directory.
    kind: LATEST (a periodic checkpoint) or BEST.
    step: the training step being saved.
    write_files: callable(directory) that writes the checkpoint's files there.

  Returns:
    The final checkpoint directory.
  """
  base = root(output_dir)
  base.mkdir(parents=True, exist_ok=True)
  name = f'{"step" if kind == LATEST else "best"}-{step:08d}'
  tmp = _new_temp_dir(base)
  write_files(tmp)
  manifest = {f.name: _digest(f) for f in sorted(tmp.iterdir())}
  (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding='utf-8')
  _fsync_tree(tmp)
  final = base / name
  if _is_complete(final):  # The same step saved again (e.g. after a resume):
    shutil.rmtree(tmp)     # keep it, never a moment without it.
  else:
    if final.exists():  # Damaged on disk: replace it.
      shutil.rmtree(final)
    os.rename(tmp, final)
  _point(base, kind, name)
  _prune(base)
  return final


def _new_temp_dir(base):
  """A new, empty, hidden directory in `base`, created exclusively, with the
  permissions any new directory of the user gets: tempfile.mkdtemp's 0700
  would keep collaborators on a shared file system out of the run. mkdir
  with 0777 lets the kernel apply the umask (and a default ACL, if the file
  system has one), which chmod after the fact could not."""
  while True:
    tmp = base / f'.tmp-{secrets.token_hex(4)}'
    try:
      os.mkdir(tmp, 0o777)
      return tmp
    except FileExistsError:
      continue


def _is_complete(directory):
  try:
    verify(directory)
  except ValueError:
    return False
  return True


def _digest(path):
  sha = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      sha.update(block)
  return {'size': path.stat().st_size, 'sha256': sha.hexdigest()}


def verify(directory):
  """Raises ValueError if a file of the checkpoint is missing or changed."""
  directory = pathlib.Path(directory)
  manifest_path = directory / MANIFEST
  if not manifest_path.is_file():
    raise ValueError(f'{manifest_path} is missing')
  try:
    manifest = dict(json.loads(manifest_path.read_text(encoding='utf-8')))
  except (ValueError, TypeError) as e:
    raise ValueError(f'{manifest_path} is damaged ({e})') from None
  for name, expected in manifest.items():
    path = directory / name
    if not path.is_file():
      raise ValueError(f'{path} is missing')
    if _digest(path) != expected:
      raise ValueError(f'{path} is damaged (size or SHA-256 differs)')


def _point(base, kind, name):
  files.write_text_atomically(base / kind, name + '\n')


def pointed(output_dir, kind):
  """The directory `kind` points at, or None."""
  pointer = root(output_dir) / kind
  if not pointer.is_file():
    return None
  directory = root(output_dir) / pointer.read_text(encoding='utf-8').strip()
  return directory if directory.is_dir() else None


def candidates(output_dir):
  """Checkpoint directories to try when resuming, newest first: the latest
  pointer's target, then the other kept step directories."""
  base = root(output_dir)
  found = []
  latest = pointed(output_dir, LATEST)
  if latest is not None:
    found.append(latest)
  if base.is_dir():
    steps = sorted((d for d in base.iterdir()
                    if d.is_dir() and d.name.startswith('step-')
                    and _STEP_DIR.match(d.name)), reverse=True)
    found += [d for d in steps if d not in found]
  return found


def _prune(base):
  """Keeps the KEEP newest step dirs, the targets of both pointers, and
  removes leftovers of interrupted writes."""
  keep = set()
  for kind in (LATEST, BEST):
    pointer = base / kind
    if pointer.is_file():
      keep.add(pointer.read_text(encoding='utf-8').strip())
  for prefix in ('step-', 'best-'):
    names = sorted((d.name for d in base.iterdir()
                    if d.is_dir() and d.name.startswith(prefix)), reverse=True)
    keep.update(names[:KEEP if prefix == 'step-' else 1])
  for entry in base.iterdir():
    if entry.is_dir() and entry.name not in keep:
      shutil.rmtree(entry, ignore_errors=True)
    elif (entry.is_file() and entry.name.startswith('.') and
          entry.name.endswith(files.TEMP_SUFFIX)):  # A pointer never moved.
      files.remove([entry])


def parse_choice(text):
  """'latest', 'best', or a step number (an int, or its digits) -> LATEST,
  BEST or the int; anything else is a ValueError."""
  if text in (LATEST, BEST):
    return text
  if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
    return text
  if isinstance(text, str) and text.isdigit():
    return int(text)
  raise ValueError(f"a checkpoint is 'latest', 'best' or a step number, got "
                   f'{text!r}')


def step_of(directory):
  """The step of a checkpoint directory (step-N or best-N), or None."""
  match = _STEP_DIR.match(pathlib.Path(directory).name)
  return int(match.group(2)) if match else None


def saved_steps(output_dir):
  """The steps of the checkpoint directories kept in a run, ascending."""
  base = root(output_dir)
  if not base.is_dir():
    return []
  return sorted({step for step in map(step_of, base.iterdir())
                 if step is not None})


def describe(output_dir):
  """What a run has to load, e.g. 'latest (step 40), best (step 30), steps
  20, 30, 40', for error messages."""
  parts = []
  for kind in (LATEST, BEST):
    directory = pointed(output_dir, kind)
    if directory is not None:
      parts.append(f'{kind} (step {step_of(directory)})')
  steps = saved_steps(output_dir)
  if steps:
    parts.append('steps ' + ', '.join(str(s) for s in steps))
  return ', '.join(parts) or 'no checkpoint'


def model_file(output_dir, kind=LATEST):
  """Path of the model.pkl.gz to load for evaluation (or None): kind is
  LATEST, BEST or a step number (a kept step-* or best-* directory)."""
  if not isinstance(kind, str):
    for prefix in ('step', 'best'):
      directory = root(output_dir) / f'{prefix}-{kind:08d}'
      if directory.is_dir():
        return directory / 'model.pkl.gz'
    return None
  directory = pointed(output_dir, kind)
  if directory is None and kind == LATEST:
    directories = candidates(output_dir)
    directory = directories[0] if directories else None
  return None if directory is None else directory / 'model.pkl.gz'
