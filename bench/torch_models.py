"""The benchmarked models written in PyTorch, for bench/eval_speed.py (torch
is the optional `bench` extra: pip install torch==2.13.0, or pip install -e
.[bench]). bench/train_speed.py's PyTorch peer is
bench/word_language_model.py instead: pytorch/examples' own layout and loop.

Each mirrors an lm_trax model of the same sizes and computes the same function
family: (B, T) int64 ids -> (B, T, V) logits, the recurrent state carried
from batch to batch (detached), as lm_trax's models do with carry_state.

  LSTMLM / GRULM: nn.Embedding -> nn.LSTM / nn.GRU (n_layers, batch_first)
    -> nn.Linear(d_model, V). PyTorch's GRU is the "reset after" GRU that
    lm_trax's Recurrent('gru') computes.
  NPLM: the previous n_context ids' embeddings, concatenated (Bengio et al.
    2003) -> n_layers x (Linear, tanh) -> Linear(d_hidden, V).

The training step is the one in pytorch/examples word_language_model:
F.cross_entropy (mean over tokens), backward, clip_grad_norm_ (if the gin
config clips), optimizer.step().
"""

import torch
from torch import nn
from torch.nn import functional as F


class RecurrentLM(nn.Module):
  """Embedding -> nn.LSTM or nn.GRU -> Linear, with a carried state."""

  def __init__(self, cell, vocab_size, d_model, n_layers):
    super().__init__()
    self.embedding = nn.Embedding(vocab_size, d_model)
    rnn = {'lstm': nn.LSTM, 'gru': nn.GRU}[cell]
    self.rnn = rnn(d_model, d_model, num_layers=n_layers, batch_first=True)
    self.output = nn.Linear(d_model, vocab_size)
    self.state = None

  def forward(self, ids):
    hidden, state = self.rnn(self.embedding(ids), self.state)  # (B, T, d)
    self.state = tuple(s.detach() for s in state) if isinstance(
        state, tuple) else state.detach()
    return self.output(hidden)  # (B, T, V) logits


class NPLM(nn.Module):
  """Bengio et al. 2003: logits = b + U tanh(d + H x), x the concatenated
  feature vectors of the previous n_context ids (carried across batches)."""

  def __init__(self, vocab_size, d_model, d_hidden, n_context, n_layers=1):
    super().__init__()
    self.n_context = n_context
    self.features = nn.Embedding(vocab_size, d_model)
    hidden, d_in = [], n_context * d_model
    for _ in range(n_layers):
      hidden += [nn.Linear(d_in, d_hidden), nn.Tanh()]
      d_in = d_hidden
    self.hidden = nn.Sequential(*hidden)
    self.output = nn.Linear(d_hidden, vocab_size)
    self.history = None

  def forward(self, ids):
    batch_size, length = ids.shape
    if self.history is None or self.history.shape[0] != batch_size:
      self.history = ids.new_zeros((batch_size, self.n_context - 1))
    padded = torch.cat([self.history, ids], dim=1)  # (B, n-1+T)
    self.history = padded[:, padded.shape[1] - (self.n_context - 1):]
    windows = padded.unfold(1, self.n_context, 1)  # (B, T, n), oldest first
    x = self.features(windows).reshape(batch_size, length, -1)  # (B, T, n*d)
    return self.output(self.hidden(x))  # (B, T, V) logits


def build(spec):
  """A torch model from a bench spec (common.load_spec)."""
  if spec.model in ('lstm', 'gru'):
    return RecurrentLM(spec.model, spec.vocab_size, spec.d_model,
                       spec.n_layers)
  return NPLM(spec.vocab_size, spec.d_model, spec.d_hidden, spec.n_context,
              spec.n_layers)


def optimizer(spec, model):
  """SGD or Adam with the gin config's hyperparameters."""
  if spec.optimizer == 'sgd':
    return torch.optim.SGD(model.parameters(), lr=spec.learning_rate)
  return torch.optim.Adam(model.parameters(), lr=spec.learning_rate,
                          betas=(0.9, 0.999), eps=1e-5)  # trax's Adam eps.


def train_step(model, opt, inputs, targets, clip_grad_norm=None):
  """One step of word_language_model/main.py's train(); returns the loss."""
  opt.zero_grad(set_to_none=True)
  logits = model(inputs)
  loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                         targets.reshape(-1))
  loss.backward()
  if clip_grad_norm:
    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
  opt.step()
  return loss


@torch.no_grad()
def log_probs(model, inputs, targets):
  """log p(targets) (B, T), as lm_trax.evaluate scores (eval, no_grad)."""
  logits = model(inputs)
  return torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
