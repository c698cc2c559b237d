"""Small file helpers shared by the run-directory writers."""

import os
import pathlib


def write_text_atomically(path, text):
  """Writes `text` to `path` through a temporary file and a rename, so readers
  (and a crash) see either the old content or the new, never a mix."""
  path = pathlib.Path(path)
  temporary = path.with_name(f'.{path.name}.tmp')
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
