"""An exported model: the files `lm-trax-export` writes, and the model they
hold, run without trax or TensorFlow.

An export directory (lm_trax.export writes it, docs/sharing.md shows one):

  config.json        what the model is: the architecture and every
                     hyperparameter, the precision it trained in, the
                     vocabulary's level and size, the corpus and batching it
                     was evaluated with, and where it came from (run, step,
                     command, metrics)
  model.safetensors  the weights by name, float32 (layout below)
  vocab.json         the vocabulary (lm_trax.vocab)
  README.md          the model card

Weight layout. V ids (padding is id 0), E = d_embed (= d_model unless set),
D = d_model, G the cell's number of gates; layer k reads d_in = E (k = 0)
or D, and outputs D (or E: the last layer of a tied model):

  RecurrentLM
    embedding            (V, E)      row i is id i's vector
    layers.k.w_x         (d_in, G*d) the input projection, the gates side by
                                     side in the cell's order
    layers.k.b           (G*d,)      its bias
    layers.k.<name>      the cell's recurrent weights, e.g. w_h (d, G*d)
    output.weight        (D, V)      logits = h output.weight + output.bias
    output.bias          (V,)        (tied: logits = h embedding^T + output.bias)
  NPLM (Bengio et al. 2003; n = n_context, m = d_model, H = d_hidden)
    features             (V, m)      C: id i's feature vector
    hidden.k.weight      (n*m or H, H), hidden.k.bias (H,)   tanh layers
    output.weight        (H, V), output.bias (V,)
    direct.weight        (n*m, V)    the direct connections (if direct)

A cell's equations and gate order are its module's docstring (lm_trax.cells:
LSTM i, f, g, o; GRU r, z, n); the model card repeats them.

`Export(directory)` opens one as the commands open a run directory
(lm_trax.trained.Run): the same vocabulary, corpus, batching and Predictor,
the Predictor built on `forward` here, plain JAX, instead of the trax model.
`forward` runs the same functions the trax layers run (lm_trax.recurrence,
lm_trax.precision, lm_trax.losses), so an export scores what its run scores.
"""

import dataclasses
import json
import pathlib
import sys

import jax
from jax import numpy as jnp

from lm_trax import cells
from lm_trax import inference
from lm_trax import precision as precision_lib
from lm_trax import recurrence
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError, one_line

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
CARD_FILE = 'README.md'
FORMAT = 'lm_trax-export'
FORMAT_VERSION = 1
ARCHITECTURES = ('RecurrentLM', 'NPLM')


def is_export(path):
  """Whether path is a directory lm-trax-export wrote (its config.json says
  so), rather than a run directory of train.py."""
  config_path = pathlib.Path(path).expanduser() / CONFIG_FILE
  if not config_path.is_file():
    return False
  try:
    return json.loads(config_path.read_text())['format'] == FORMAT
  except (ValueError, KeyError, TypeError):
    return False


# The layout -------------------------------------------------------------------

def _cell(hyper, precision):
  """The lm_trax.cells cell of a RecurrentLM's exported hyperparameters."""
  try:
    return cells.make(hyper['cell'], precision, **hyper['cell_options'])
  except ValueError as e:
    raise UserError(f'{e}; a cell from outside lm_trax is registered when its '
                    'module is imported: import it before loading') from None


def layout(architecture, hyper, vocab_size):
  """[(name, shape)] of every weight, in the order of the trax model's
  weight leaves (jax.tree_util.tree_leaves of a model's weights; a tied
  table once)."""
  if architecture == 'NPLM':
    m, n, h = hyper['d_model'], hyper['n_context'], hyper['d_hidden']
    names = [('features', (vocab_size, m))]
    for k in range(hyper['n_layers']):
      names += [(f'hidden.{k}.weight', (n * m if k == 0 else h, h)),
                (f'hidden.{k}.bias', (h,))]
    names += [('output.weight', (h, vocab_size)), ('output.bias', (vocab_size,))]
    if hyper['direct']:
      names.append(('direct.weight', (n * m, vocab_size)))
    return names
  cell = _cell(hyper, precision_lib.DEFAULT)
  d_embed = hyper['d_embed'] or hyper['d_model']
  names = [('embedding', (vocab_size, d_embed))]
  for k in range(hyper['n_layers']):
    d_in = d_embed if k == 0 else hyper['d_model']
    last = k == hyper['n_layers'] - 1
    d = d_embed if last and hyper['tie_weights'] else hyper['d_model']
    names += [(f'layers.{k}.{w.name}', w.shape) for w in cell.weights(d_in, d)]
  if not hyper['tie_weights']:
    names.append(('output.weight', (hyper['d_model'], vocab_size)))
  names.append(('output.bias', (vocab_size,)))
  return names


# The forward --------------------------------------------------------------------

def _recurrent_forward(hyper, precision, with_hidden):
  cell = _cell(hyper, precision)
  n_layers = hyper['n_layers']

  def forward(weights, state, ids):
    x = jnp.take(weights['embedding'], ids, axis=0, mode='clip')  # (B, T, E)
    new_state = []
    for k in range(n_layers):
      prefix = f'layers.{k}.'
      named = {name[len(prefix):]: w for name, w in weights.items()
               if name.startswith(prefix)}
      x, final = _recurrent_layer(cell, x, named, state[k])
      new_state.append(final)
    hidden = x  # (B, T, d): what the continuous cache reads.
    flat = x.reshape((-1, x.shape[-1]))
    if hyper['tie_weights']:
      logits = precision_lib.matmul(flat, weights['embedding'].T, precision)
    else:
      logits = precision_lib.matmul(flat, weights['output.weight'], precision)
    logits = (logits + weights['output.bias']).reshape(
        x.shape[:-1] + (-1,))  # (B, T, V)
    if with_hidden:
      return hidden, logits, tuple(new_state)
    return logits, tuple(new_state)
  return forward


def _recurrent_layer(cell, x, weights, state):
  """One layer, as the trax layer runs it (its state not differentiated)."""
  state = tuple(jax.lax.stop_gradient(s) for s in state)
  return recurrence.layer(cell, x, weights, state)


def _nplm_forward(hyper, precision):
  n = hyper['n_context']

  def dense(x, weight, bias=None):
    flat = x.reshape((-1, x.shape[-1]))
    y = precision_lib.matmul(flat, weight, precision)
    if bias is not None:
      y = y + bias
    return y.reshape(x.shape[:-1] + (-1,))

  def forward(weights, state, ids):
    length = ids.shape[1]
    padded = jnp.concatenate([state, ids.astype(jnp.int32)], axis=1)
    windows = jnp.stack([padded[:, k:k + length] for k in range(n)], axis=-1)
    x = jnp.take(weights['features'], windows, axis=0, mode='clip')
    x = x.reshape(x.shape[:2] + (-1,))  # (B, T, n*m)
    h = x
    for k in range(hyper['n_layers']):
      h = jnp.tanh(dense(h, weights[f'hidden.{k}.weight'],
                         weights[f'hidden.{k}.bias']))
    logits = dense(h, weights['output.weight'], weights['output.bias'])
    if hyper['direct']:
      logits = logits + dense(x, weights['direct.weight'])
    return logits, padded[:, padded.shape[1] - (n - 1):]
  return forward


def forward_fn(architecture, hyper, precision, with_hidden=False):
  """The model as a pure function, eval mode (no dropout):
  fn(weights {name: array}, state, ids (B, T) int32) -> (logits (B, T, V),
  state), or (hidden (B, T, d), logits, state) with with_hidden (recurrent
  models only)."""
  if architecture == 'NPLM':
    return _nplm_forward(hyper, precision)
  return _recurrent_forward(hyper, precision, with_hidden)


def zero_state(architecture, hyper, batch_size=1):
  """The state before any input: per recurrent layer a tuple of (B, d)
  zeros; the NPLM's (B, n_context - 1) padding ids."""
  if architecture == 'NPLM':
    return jnp.zeros((batch_size, hyper['n_context'] - 1), jnp.int32)
  cell = _cell(hyper, precision_lib.DEFAULT)
  d_embed = hyper['d_embed'] or hyper['d_model']
  widths = [hyper['d_model']] * hyper['n_layers']
  if hyper['tie_weights']:
    widths[-1] = d_embed
  return tuple(cell.zero_state(batch_size, d) for d in widths)


# Opening an export ------------------------------------------------------------------

class Export:
  """An exported model, opened as the commands open a run (lm_trax.trained.
  Run): vocab, precision, batching(), corpus(), predictor().

  Attributes:
    output_dir: the export directory.
    config: its config.json, a dict.
    vocab: its lm_trax.vocab.Vocab.
    precision: the matmuls' number format it runs in.
    checkpoint: the weights file.
  """

  def __init__(self, directory, precision=None):
    self.output_dir = pathlib.Path(directory).expanduser()
    self.checkpoint = self.output_dir / WEIGHTS_FILE
    self.config = _read_config(self.output_dir)
    self.architecture = self.config['architecture']
    self.hyperparameters = self.config['hyperparameters']
    self.trained_precision = self.config['precision']
    self.precision = precision or self.trained_precision
    try:
      precision_lib.check(self.precision)
    except ValueError as e:
      raise UserError(str(e)) from None
    self.vocab = vocab_lib.Vocab.load(self.output_dir)
    if self.vocab.size != self.config['vocab_size']:
      raise UserError(f'{self.output_dir}/vocab.json has {self.vocab.size} '
                      f'ids, config.json says {self.config["vocab_size"]}: '
                      'the files come from different exports; export again')
    self._predictor = None

  def batching(self):
    """The run's lm_trax.data.Batching."""
    from lm_trax import data  # pylint: disable=g-import-not-at-top
    return data.Batching(**self.config['batching'])

  def corpus(self, data_dir=None):
    """The run's lm_trax.corpora.Corpus, read from data_dir if given (else
    lm_trax's data directory rule)."""
    from lm_trax import corpora  # pylint: disable=g-import-not-at-top
    return corpora.Corpus(**self.config['corpus'], data_dir=data_dir)

  def weights(self):
    """{name: float32 array} from model.safetensors, checked against the
    layout of config.json."""
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    try:
      loaded = safetensors_numpy.load_file(str(self.checkpoint))
    except (OSError, ValueError, RuntimeError) as e:  # safetensors' errors.
      raise UserError(f'cannot read {self.checkpoint} ({one_line(e)}); '
                      'export the run again') from None
    expected = dict(layout(self.architecture, self.hyperparameters,
                           self.vocab.size))
    found = {name: tuple(w.shape) for name, w in loaded.items()}
    if found != {name: tuple(s) for name, s in expected.items()}:
      missing = sorted(set(expected) - set(found))
      wrong = sorted(n for n in set(expected) & set(found)
                     if found[n] != tuple(expected[n]))
      raise UserError(f'{self.checkpoint} does not fit {CONFIG_FILE} '
                      f'(missing {missing[:3]}, other shapes {wrong[:3]}, '
                      f'extra {sorted(set(found) - set(expected))[:3]}); '
                      'export the run again')
    return {name: jnp.asarray(w, jnp.float32) for name, w in loaded.items()}

  def predictor(self):
    """The model as the lm_trax.inference.Predictor every command runs,
    built once."""
    if self._predictor is None:
      recurrent = self.architecture == 'RecurrentLM'
      self._predictor = inference.Predictor.from_functions(
          self.vocab,
          forward_fn(self.architecture, self.hyperparameters, self.precision),
          zero_state(self.architecture, self.hyperparameters),
          self.weights(),
          forward_fn(self.architecture, self.hyperparameters, self.precision,
                     with_hidden=True) if recurrent else None)
    return self._predictor


def _read_config(directory):
  path = directory / CONFIG_FILE
  if not path.is_file():
    raise UserError(f'{path} is missing: {directory} is not a model exported '
                    'by lm-trax-export')
  try:
    config = json.loads(path.read_text(encoding='utf-8'))
    if config['format'] != FORMAT:
      raise ValueError(f'format {config["format"]!r}')
    if config['format_version'] > FORMAT_VERSION:
      raise UserError(f'{path} is format version {config["format_version"]}; '
                      f'this lm_trax reads up to {FORMAT_VERSION}: upgrade '
                      'lm_trax')
    if config['architecture'] not in ARCHITECTURES:
      raise ValueError(f'architecture {config["architecture"]!r}')
    for key in ('hyperparameters', 'precision', 'vocab_size', 'batching',
                'corpus'):
      config[key]  # pylint: disable=pointless-statement
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is damaged ({type(e).__name__}: {one_line(e)}); '
                    'export the run again') from None
  return config


def describe_cell(hyper):
  """The equations and weight order of a RecurrentLM's cell (its module's
  and class's docstrings), for the model card."""
  cell = _cell(hyper, precision_lib.DEFAULT)
  module_doc = sys.modules[type(cell).__module__].__doc__ or ''
  options = {f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)
             if f.name != 'precision'}
  return module_doc.strip(), (type(cell).__doc__ or '').strip(), options
