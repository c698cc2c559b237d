"""Text from TensorFlow Datasets (TFDS) as a corpus source. Never downloads.

`read_split('tiny_shakespeare', 'train')` returns the text of a split of a
dataset that is already prepared in the TFDS data directory (`data_dir`, else
$TFDS_DATA_DIR, else ~/tensorflow_datasets). A dataset that is not prepared is
an error naming how to prepare it, not a download: lm_trax runs offline.

tensorflow_datasets is imported lazily, in the functions; import `lm_trax`
first (as every lm_trax entry point does) so TensorFlow's start-up logging is
silenced.
"""

from lm_trax.errors import UserError

_ALL = 'all'  # TFDS's name for all the splits of a dataset, merged.


def read_split(name, split, text_key='text', data_dir=None):
  """Returns the text of one split of a prepared TFDS dataset.

  Args:
    name: A TFDS dataset name, e.g. 'tiny_shakespeare' (optionally with
      '/config' and ':version').
    split: A TFDS split spec: 'train', 'validation', 'train[:10%]+test', ...
    text_key: The feature that holds the text.
    data_dir: The TFDS data directory; None means TFDS's default
      ($TFDS_DATA_DIR, else ~/tensorflow_datasets).

  Returns:
    The examples' texts, decoded as UTF-8 and joined with '\\n' (a dataset
    with one example per split, like tiny_shakespeare, gives that example).

  Raises:
    UserError: unknown dataset, split or feature, or a dataset that is not
      prepared in the data directory.
  """
  builder = _builder(name, data_dir)
  if not is_prepared(builder):
    raise UserError(_not_prepared_message(name, builder))
  _check_split(name, split, builder)
  _check_text_key(name, text_key, builder)
  return '\n'.join(_texts(name, builder, split, text_key))


def is_prepared(builder):
  """Whether `builder`'s data is in its data directory (no network access).

  A separate function so tests can stand in for it: under
  `tfds.testing.mock_data` the builder points at a metadata directory that
  does not exist, so the real check says False although reading is mocked.

  Args:
    builder: A tfds.core.DatasetBuilder.

  Returns:
    True if the dataset has been built (downloaded and prepared) there.
  """
  # Checking the directory first avoids TFDS's warning about a missing
  # dataset_info.json.
  return builder.data_path.exists() and builder.is_prepared()


def _tfds():
  # Not above: only TFDS corpora need TensorFlow (see the module docstring).
  from lm_trax import compat  # pylint: disable=g-import-not-at-top,unused-import  (quiet TensorFlow)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def _builder(name, data_dir):
  """The TFDS builder for `name`, reading from `data_dir`; never downloads."""
  tfds = _tfds()
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError as error:
    raise UserError(f'unknown TFDS dataset {name!r}; see the names in '
                    '`tfds.list_builders()` or '
                    'https://www.tensorflow.org/datasets/catalog') from error
  except (ValueError, AssertionError) as error:  # Bad config or version.
    raise UserError(f'cannot use TFDS dataset {name!r} '
                    f'({_first_line(error)}); fix the name, config or '
                    'version') from error


def _first_line(error):
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def _not_prepared_message(name, builder):
  root = builder.data_dir_root
  return (f'TFDS dataset {name!r} is not prepared in the TFDS data dir {root} '
          f'(no {builder.data_path}); prepare it on a machine with network '
          f'with `tfds build {name} --data_dir {root}` (or '
          f'tfds.load({name!r}, download=True)) and copy it there, or set '
          'TFDS_DATA_DIR (or data_dir) to where it is prepared')


def split_names(split):
  """The split names in a split spec: 'train[:10%]+test' -> train, test."""
  return [part.split('[', 1)[0].strip() for part in str(split).split('+')]


def _check_split(name, split, builder):
  """Raises UserError naming the available splits if `split` is not one."""
  available = list(builder.info.splits)
  if not available:
    # A prepared dataset always records its splits; only a mocked one (see
    # is_prepared) does not, and then TFDS accepts any split.
    return
  unknown = [s for s in split_names(split) if s not in available + [_ALL]]
  if unknown:
    raise UserError(f'TFDS dataset {name!r} has no split {unknown[0]!r}; use '
                    f'one of {", ".join(available)}')


def _check_text_key(name, text_key, builder):
  """Raises UserError naming the features if `text_key` is not one."""
  features = builder.info.features
  keys = list(features.keys()) if hasattr(features, 'keys') else []
  if text_key not in keys:
    raise UserError(f'TFDS dataset {name!r} has no feature {text_key!r}; pass '
                    f'text_key as one of {", ".join(keys) or "(none)"}')


def _texts(name, builder, split, text_key):
  """Yields the decoded `text_key` of each example of `split`, in order."""
  try:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
  except ValueError as error:  # E.g. a malformed slice: 'train[:x]'.
    raise UserError(f'cannot read split {split!r} of TFDS dataset {name!r} '
                    f'({_first_line(error)}); see '
                    'https://www.tensorflow.org/datasets/splits') from error
  for example in _tfds().as_numpy(dataset):
    yield _decode(name, text_key, example[text_key])


def _decode(name, text_key, value):
  """A feature value as str; bytes are decoded as UTF-8."""
  if isinstance(value, str):
    return value
  if isinstance(value, bytes):
    return value.decode('utf-8')
  raise UserError(f'feature {text_key!r} of TFDS dataset {name!r} is not '
                  f'text (got {type(value).__name__}); pass another text_key')
