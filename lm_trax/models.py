"""Language models as trax combinators: RecurrentLM (any lm_trax.cells cell;
LSTMLM, GRULM and RNNLM name three of them) and the NPLM.

Every model maps int32 token ids of shape (B, T) to **logits** of shape
(B, T, V), V = vocab_size, with no softmax: output[:, t] scores the token that
*follows* ids[:, t], and depends only on ids[:, :t+1] (plus the carried state).

Where the shift to next-token prediction happens: in the data (lm_trax.data
yields inputs = tokens[i : i+T], targets = tokens[i+1 : i+T+1]), not in the
model. That way every token is fed to the model exactly once, which an RNN whose
state is carried from batch to batch needs (a ShiftRight inside the model would
drop the last token of every batch from the inputs).

Shared hyperparameters: vocab_size, d_model, n_layers, dropout, mode
('train' | 'eval' | 'predict'; dropout is active only in 'train'), plus
carry_state (keep the recurrent state / NPLM context across batches) and
init_scale (uniform(-s, s) for every weight, as Zaremba et al.; None keeps
trax's defaults), and precision ('float32' | 'bfloat16', lm_trax.precision:
the number format of every matmul; chosen by train.precision, not bound on
the model). Models never import gin: lm_trax.configurables registers them.
"""

import functools
import inspect
import numbers

from lm_trax import compat  # pylint: disable=unused-import,g-bad-import-order  (before trax)
from trax import layers as tl

from lm_trax import cells
from lm_trax import layers
from lm_trax import precision as precision_lib


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


# What each hyperparameter may be: (test, description).
_SIZE = (lambda v: _is_int(v) and v >= 1, 'a whole number >= 1')
_RATE = (lambda v: _is_number(v) and 0 <= v < 1, 'a rate in [0, 1)')
_NON_NEGATIVE = (lambda v: _is_number(v) and v >= 0, 'a number >= 0')
_FLAG = (lambda v: isinstance(v, bool), 'True or False')
_OPTIONAL = lambda rule: (lambda v: v is None or rule[0](v),
                          f'None or {rule[1]}')
_RULES = {
    'vocab_size': _SIZE, 'd_model': _SIZE, 'n_layers': _SIZE,
    'd_hidden': _SIZE, 'n_context': _SIZE, 'd_embed': _OPTIONAL(_SIZE),
    'dropout': _RATE, 'input_dropout': _OPTIONAL(_RATE),
    'hidden_dropout': _OPTIONAL(_RATE), 'output_dropout': _OPTIONAL(_RATE),
    'embedding_dropout': _RATE, 'weight_dropout': _RATE,
    'activation_reg': _NON_NEGATIVE, 'temporal_activation_reg': _NON_NEGATIVE,
    'init_scale': _OPTIONAL((lambda v: _is_number(v) and v > 0,
                             'a number > 0')),
    'forget_bias': _OPTIONAL((_is_number, 'a number')),
    'tie_weights': _FLAG, 'carry_state': _FLAG, 'variational': _FLAG,
    'direct': _FLAG,
    'mode': (lambda v: v in ('train', 'eval', 'predict'),
             "'train', 'eval' or 'predict'"),
    'precision': (lambda v: v in precision_lib.PRECISIONS,
                  ' or '.join(map(repr, precision_lib.PRECISIONS))),
}


def check_hyperparameters(**values):
  """Raises ValueError naming the first hyperparameter of a wrong type or out
  of range, e.g. "d_model must be a whole number >= 1, got 'big'"."""
  for name, value in values.items():
    test, description = _RULES[name]
    if not test(value):
      raise ValueError(f'{name} must be {description}, got {value!r}')


def _output_layers(vocab_size, tied, initializer, precision):
  """(B, T, d) -> (B, T, vocab_size) logits, the tied table or a Dense."""
  if tied is not None:
    return [tied, layers.Bias(vocab_size, initializer)]
  return [_dense(vocab_size, initializer, precision)]


def _dense(n_units, initializer, precision, use_bias=True):
  """tl.Dense, computed as one flat matmul (layers.FlatDense: faster)."""
  if initializer is None:
    return layers.FlatDense(n_units, precision, use_bias=use_bias)
  return layers.FlatDense(n_units, precision, kernel_initializer=initializer,
                          bias_initializer=initializer, use_bias=use_bias)


def _dropout(rate, variational, mode):
  """tl.Dropout on (B, T, d), its mask shared over time if variational."""
  if not rate:
    return []
  return [tl.Dropout(rate=rate, shared_axes=[1] if variational else None,
                     mode=mode)]


def _penalty(kind, coefficient, mode):
  if not coefficient:
    return []
  return [layers.ActivationPenalty(kind, coefficient, mode=mode)]


def RecurrentLM(vocab_size, cell='lstm', d_model=200, n_layers=2, dropout=0.0,
                tie_weights=False, carry_state=True, init_scale=None,
                forget_bias=None, mode='train', d_embed=None,
                variational=False, input_dropout=None, hidden_dropout=None,
                output_dropout=None, embedding_dropout=0.0,
                weight_dropout=0.0, activation_reg=0.0,
                temporal_activation_reg=0.0, precision='float32'):
  """A recurrent language model: embedding -> n_layers x recurrent layer of
  any lm_trax.cells cell -> logits. Zaremba et al. 2014's "small" LSTM is
  the default; AWD-LSTM's regularizers (Merity et al. 2018) are options,
  all off by default.

  The model is a RecurrentModel, a flat tl.Serial of its body's layers and
  its head's: the body maps ids (B, T) to the last layer's hidden states
  (B, T, d) (dropout and AR/TAR included), the head maps those to logits
  (B, T, V). The continuous cache reads the body's output.

  Args:
    vocab_size: V, the number of token ids (pad id 0 included).
    cell: a registered cell's name (lm_trax.cells.names(): 'gru', 'lstm',
      'mgu', 'rnn', ...).
    d_model: width of every recurrent layer (and of the embeddings unless
      d_embed is set).
    n_layers: number of stacked recurrent layers (any >= 1).
    dropout: rate on the non-recurrent connections (embedding -> layer 1,
      between layers, last layer -> output); active in mode 'train' only.
      input_dropout, hidden_dropout and output_dropout override it for one
      of the three.
    tie_weights: share the embedding table with the output projection
      (Press & Wolf 2017, Inan et al. 2017); the last recurrent layer then
      outputs d_embed units.
    carry_state: start each batch from the previous batch's final state when
      the batch size matches (contiguous streams); else from zeros.
    init_scale: if set, every weight starts uniform in [-init_scale, init_scale].
    forget_bias: added to the forget gate's pre-activation, for cells with
      one (lstm, mgu); None keeps the cell's default. 0 is accepted by every
      cell (a recipe that sets it applies to any cell).
    mode: 'train', 'eval' or 'predict'.
    d_embed: width of the embeddings (default d_model), e.g. 400 against 1150
      hidden units in AWD-LSTM.
    variational: one dropout mask per sequence, reused at every time step
      ("locked" dropout, Gal & Ghahramani 2016), for the three rates above.
    input_dropout: rate on the embeddings (AWD-LSTM's dropouti).
    hidden_dropout: rate between recurrent layers (dropouth).
    output_dropout: rate on the last layer's output (dropout).
    embedding_dropout: drop whole word types from the embedding lookup,
      the same words at every position of a batch (dropoute).
    weight_dropout: DropConnect on the hidden-to-hidden matrices, one mask
      per batch (wdrop).
    activation_reg: AR, alpha * mean(h ** 2) of the last layer's dropped
      output, added to the training loss (alpha).
    temporal_activation_reg: TAR, beta * mean((h_t+1 - h_t) ** 2) of the last
      layer's output before dropout (beta).
    precision: 'float32', or 'bfloat16' matmuls with float32 sums, state
      and loss (lm_trax.precision); set by train.precision.

  Returns:
    A layer mapping (B, T) int32 ids to (B, T, vocab_size) float32 logits.
  """
  settings = dict(locals())
  name = settings.pop('cell')
  check_hyperparameters(**settings)
  cell = _cell(name, settings.pop('forget_bias'), settings['precision'])
  return _recurrent_lm(cell, **settings)


def _cell(name, forget_bias, precision):
  """The registered cell `name` in `precision`, with forget_bias if given.

  Raises:
    ValueError: if the name is not registered, or if forget_bias is not 0 and
      the cell has no forget gate.
  """
  options = {} if forget_bias is None else {'forget_bias': forget_bias}
  if forget_bias == 0 and 'forget_bias' not in cells.option_names(name):
    options = {}  # Adds nothing: a recipe's 0 fits any cell.
  return cells.make(name, precision, **options)


def _recurrent_lm(cell, vocab_size, d_model, n_layers, dropout, tie_weights,
                  carry_state, init_scale, mode, d_embed, variational,
                  input_dropout, hidden_dropout, output_dropout,
                  embedding_dropout, weight_dropout, activation_reg,
                  temporal_activation_reg, precision):
  """RecurrentLM's layers, its settings checked."""
  d_embed = d_embed or d_model
  rate = lambda specific: dropout if specific is None else specific
  initializer = layers.default_initializer(init_scale)
  if tie_weights:
    embedding = layers.TiedEmbedding(vocab_size, d_embed, initializer,
                                     precision)
  elif initializer is None:
    embedding = tl.Embedding(vocab_size, d_embed)
  else:
    embedding = tl.Embedding(vocab_size, d_embed, kernel_initializer=initializer)
  if embedding_dropout:
    embed = [tl.Branch(embedding, layers.WordTypeDropoutMask(
        vocab_size, embedding_dropout, mode=mode)), tl.Multiply()]
  else:
    embed = [embedding]
  stack = []
  for index in range(n_layers):
    # Non-recurrent edges only: into the first layer and between layers.
    stack += _dropout(rate(input_dropout if index == 0 else hidden_dropout),
                      variational, mode)
    last = index == n_layers - 1
    stack.append(layers.Recurrent(
        cell, d_embed if (last and tie_weights) else d_model,
        carry_state=carry_state, initializer=initializer,
        weight_dropout=weight_dropout, mode=mode))
  body = [
      embed,      # (B, T) ids -> (B, T, d_embed)
      stack,      # -> (B, T, d_model), or d_embed from the last layer if tied
      _penalty('tar', temporal_activation_reg, mode),   # on the raw states
      _dropout(rate(output_dropout), variational, mode),
      _penalty('ar', activation_reg, mode),             # on the dropped ones
  ]
  head = _output_layers(vocab_size, embedding if tie_weights else None,
                        initializer, precision)  # -> (B, T, V) logits
  return RecurrentModel(body, head)


class RecurrentModel(tl.Serial):
  """A RecurrentLM's layers: tl.Serial(*body, *head), one flat Serial (as
  trax initializes, runs and checkpoints it), that knows where its body ends.

  body: ids (B, T) -> the last recurrent layer's states (B, T, d), dropout
  and AR/TAR included; head: those states -> logits (B, T, V).
  """

  def __init__(self, body, head):
    super().__init__(body, head, name='Serial')
    self._n_body = len(_flat(body))

  @property
  def body(self):
    """The body's layers, a list."""
    return self.sublayers[:self._n_body]

  @property
  def head(self):
    """The head's layers, a list."""
    return self.sublayers[self._n_body:]


def _flat(nested):
  """The layers of nested lists, in order, as tl.Serial flattens them."""
  if isinstance(nested, (list, tuple)):
    return [layer for item in nested for layer in _flat(item)]
  return [nested]


def _named_model(name, cell, summary, **defaults):
  """RecurrentLM with its cell fixed, under a name of its own (LSTMLM, GRULM,
  RNNLM: the names shipped configs and saved runs bind). Its parameters are
  RecurrentLM's without cell (and without forget_bias for a cell that has
  none), `defaults` replacing RecurrentLM's defaults."""
  parameters = [
      p.replace(default=defaults.get(p.name, p.default))
      for p in inspect.signature(RecurrentLM).parameters.values()
      if p.name != 'cell' and (p.name != 'forget_bias' or
                               'forget_bias' in defaults)]
  signature = inspect.Signature(parameters)

  def model(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return RecurrentLM(cell=cell, **bound.arguments)
  model.__signature__ = signature
  model.cell = cell
  model.__name__ = model.__qualname__ = name
  model.__doc__ = (f'{summary}\n\n  RecurrentLM(cell={cell!r}, ...) with '
                   'the same arguments but cell.\n')
  return model


def NPLM(vocab_size, d_model=60, d_hidden=200, n_context=4, n_layers=1,
         direct=False, dropout=0.0, carry_state=True, init_scale=None,
         mode='train', precision='float32'):
  """Bengio et al. 2003's neural probabilistic language model.

  With x the concatenated feature vectors C(w) of the previous n_context words,
      logits = b + W x + U tanh(d + H x)          (W x only if direct=True)
  and a softmax over the vocabulary (in the loss). It predicts at every
  position: output[:, t] scores the word after ids[:, t] from
  ids[:, t-n_context+1 .. t], the window reaching into the previous batch
  (carry_state) or padding (id 0) at the start.

  Parameters: V*d_model (C) + n_context*d_model*d_hidden + d_hidden (H, d)
  [+ (n_layers-1)*(d_hidden*d_hidden + d_hidden)] + d_hidden*V + V (U, b)
  [+ n_context*d_model*V (W, direct)].

  Args:
    vocab_size: V, the number of token ids (pad id 0 included).
    d_model: size of each word's feature vector C(w) (Bengio's m).
    d_hidden: width of the tanh hidden layer(s) (Bengio's h).
    n_context: number of previous words seen (Bengio's n - 1).
    n_layers: number of tanh hidden layers (Bengio: 1).
    direct: add the direct connections W x from features to outputs.
    dropout: rate after the features and each hidden layer (mode 'train').
    carry_state: take the window's left context from the previous batch.
    init_scale: if set, every weight starts uniform in [-init_scale, init_scale].
    mode: 'train', 'eval' or 'predict'.
    precision: 'float32', or 'bfloat16' matmuls with float32 sums
      (lm_trax.precision); set by train.precision.

  Returns:
    A layer mapping (B, T) int32 ids to (B, T, vocab_size) float32 logits.
  """
  check_hyperparameters(
      vocab_size=vocab_size, d_model=d_model, d_hidden=d_hidden,
      n_context=n_context, n_layers=n_layers, direct=direct, dropout=dropout,
      carry_state=carry_state, init_scale=init_scale, mode=mode,
      precision=precision)
  initializer = layers.default_initializer(init_scale)
  if initializer is None:
    features = tl.Embedding(vocab_size, d_model)
  else:
    features = tl.Embedding(vocab_size, d_model, kernel_initializer=initializer)
  drop = lambda: [tl.Dropout(rate=dropout, mode=mode)] if dropout else []
  hidden = []
  for _ in range(n_layers):
    hidden += [_dense(d_hidden, initializer, precision), tl.Tanh()] + drop()
  # b + U tanh(d + H x):
  mlp = tl.Serial(hidden, _dense(vocab_size, initializer, precision))
  if direct:
    mlp = tl.Branch(mlp, _dense(vocab_size, initializer, precision,
                                use_bias=False))
  return tl.Serial(
      layers.ContextWindow(n_context, carry_state=carry_state),  # (B,T,n) ids
      features,                                    # -> (B, T, n, d_model)
      tl.Fn('Concatenate', lambda x: x.reshape(x.shape[:2] + (-1,))),  # (B,T,n*d)
      drop(),
      mlp,                                         # -> (B, T, V) [twice: +W x]
      [tl.Add()] if direct else [],                # logits (B, T, V)
  )


def architecture(model_fn, vocab_size):
  """What a bound model function builds, as plain values:
  ('RecurrentLM' or 'NPLM', {hyperparameter: value}), every hyperparameter
  given (defaults applied; a named model's cell spelled out, with its
  options as the cell takes them). What lm_trax.exported rebuilds.

  Raises:
    ValueError: for a model function that is neither (a user's own).
  """
  func, bound = model_fn, {}
  while isinstance(func, functools.partial):
    bound = {**func.keywords, **bound}
    func = func.func
  bound['vocab_size'] = vocab_size
  named_cell = getattr(func, 'cell', None)
  if func is NPLM:
    kind = 'NPLM'
  elif func is RecurrentLM or named_cell:
    kind = 'RecurrentLM'
  else:
    raise ValueError(f'{getattr(func, "__name__", func)} is neither '
                     'RecurrentLM (LSTMLM, GRULM, RNNLM) nor NPLM')
  arguments = inspect.signature(func).bind(**bound)
  arguments.apply_defaults()
  hyper = dict(arguments.arguments)
  if named_cell:
    hyper['cell'] = named_cell
  if kind == 'RecurrentLM':
    cell = _cell(hyper['cell'], hyper.get('forget_bias'), hyper['precision'])
    hyper['cell_options'] = {name: getattr(cell, name)
                             for name in cells.option_names(hyper['cell'])}
  return kind, hyper


LSTMLM = _named_model(
    'LSTMLM', 'lstm',
    'An LSTM language model (Zaremba et al. 2014; "small" = defaults).',
    forget_bias=1.0)
GRULM = _named_model(
    'GRULM', 'gru',
    'A GRU language model (Cho et al. 2014 cells, "reset after").')
RNNLM = _named_model(
    'RNNLM', 'rnn', 'A vanilla tanh-RNN language model (Mikolov et al. 2010).',
    n_layers=1)
