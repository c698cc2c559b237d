"""PyTorch's word_language_model as its users run it, timed over a window.

  python bench/word_language_model.py --data DIR [--model LSTM|GRU] [--lr 20]
      [--bptt 20] [--warmup 2] [--window 5] [--evaluate] [--autocast]

The PyTorch peer of `python train.py --gin_file=gin/ptb_lstm.gin` (and ptb_gru)
in bench/train_speed.py, which runs it in a process of its own: this file
imports torch and the standard library only, never JAX or TensorFlow.

It is pytorch/examples' word_language_model (main.py, model.py, data.py in
https://github.com/pytorch/examples/tree/main/word_language_model), written
again here, small, with the same pieces doing the same work:

  data:  data.py's Corpus: each line's words + '<eos>', ids in order of first
         appearance; main.py's batchify (the id stream cut into batch_size
         columns, seq-first) and get_batch (bptt rows of inputs, the next
         rows flattened as targets);
  model: model.py's RNNModel: Embedding -> Dropout -> nn.LSTM / nn.GRU
         (seq-first, dropout between layers) -> Dropout -> Linear decoder ->
         log_softmax; init_weights: uniform(-0.1, 0.1) encoder and decoder,
         zero decoder bias (the RNN keeps PyTorch's own initialization);
  step:  main.py's train(): repackage_hidden (detach the carried state),
         model.zero_grad(), nn.NLLLoss on the log-probabilities, backward,
         clip_grad_norm_, the manual SGD update p.data.add_(p.grad,
         alpha=-lr), loss.item(); the hidden state is reset at each epoch.

What differs from main.py's defaults, to be lm_trax's PTB configs
(gin/recipes/zaremba_small.gin): bptt 20 (main.py: 35), dropout 0 (main.py:
0.2; nn.Dropout(0) returns its input), the GRU's lr 10 (passed by
bench/train_speed.py), and only the train split is read (the words of PTB's
valid and test splits are all in train, so the vocabulary is the same 10,000).

Threads: nothing is set. torch's defaults are what a user of main.py gets:
one intra-op thread per core (2 here) and OpenMP's default wait policy.
(bench/train_speed.py used to set OMP_WAIT_POLICY=PASSIVE; it made PyTorch's
threads sleep between the many small kernels of an RNN step.)

--evaluate times main.py's evaluate() instead (bench/eval_speed.py runs it
with --batch_size 1 --bptt <chunk>: lm_trax's exact-evaluation rule, one
stream scored in chunks, the state carried): model.eval(), torch.no_grad(),
each chunk's log-probabilities, NLLLoss and loss.item(), repackage_hidden;
over the train split, again from its start when it ends.

--autocast runs it in mixed precision as PyTorch's automatic mixed precision
docs tell CPU users: the forward pass and the loss under
torch.autocast('cpu', dtype=torch.bfloat16), the backward pass outside it,
no GradScaler (bfloat16 has float32's exponent range); the weights, their
gradients and the SGD update stay float32. Autocast runs each op in the
dtype of its list: nn.Linear (the decoder) in bfloat16; log_softmax on the
decoder's bfloat16 output; NLLLoss in float32; nn.GRU in float32 (not on the
list); nn.LSTM in bfloat16 through oneDNN, where oneDNN has a bfloat16
LSTM for this CPU. Where it has none (on this project's AMD EPYC, which has
no AVX-512, autocast raises "could not create a primitive descriptor for the
LSTM forward propagation primitive"), the LSTM runs in float32 in an
autocast(enabled=False) region, as PyTorch's autocast docs show for a region
that must run in float32; the report says which (`autocast_dtypes`).

It prints one JSON line: tokens/s over the timed window, the steps and
seconds it took, the mean loss, torch's version and threads, which of jax,
tensorflow and trax are in sys.modules (none should be), and the OpenMP / MKL
environment variables that were set.
"""

import argparse
import contextlib
import json
import os
import pathlib
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


class Corpus:
  """data.py's Corpus, the train split only: a 1-D int64 tensor of ids."""

  def __init__(self, path):
    self.word2idx = {}
    ids = []
    with open(path, encoding='utf-8') as f:
      for line in f:
        for word in line.split() + ['<eos>']:
          ids.append(self.word2idx.setdefault(word, len(self.word2idx)))
    self.train = torch.tensor(ids, dtype=torch.int64)


def batchify(data, bsz):
  """The id stream as bsz columns, seq-first: (n, bsz); main.py draws it as
  a grid, the alphabet a g m s / b h n t / ... for bsz 4."""
  nbatch = data.size(0) // bsz
  data = data.narrow(0, 0, nbatch * bsz)
  return data.view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
  """Inputs source[i:i+bptt] (seq, bsz); targets the next rows, flattened."""
  seq_len = min(bptt, len(source) - 1 - i)
  return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].view(-1)


def repackage_hidden(h):
  """Detaches the carried state from the graph of the previous batch."""
  if isinstance(h, torch.Tensor):
    return h.detach()
  return tuple(repackage_hidden(v) for v in h)


class RNNModel(nn.Module):
  """model.py's RNNModel (LSTM or GRU, untied): (seq, bsz) ids ->
  (seq * bsz, ntoken) log-probabilities and the new hidden state."""

  def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout):
    super().__init__()
    self.ntoken, self.rnn_type = ntoken, rnn_type
    self.nhid, self.nlayers = nhid, nlayers
    self.drop = nn.Dropout(dropout)
    self.encoder = nn.Embedding(ntoken, ninp)
    self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
    self.decoder = nn.Linear(nhid, ntoken)
    initrange = 0.1
    nn.init.uniform_(self.encoder.weight, -initrange, initrange)
    nn.init.zeros_(self.decoder.bias)
    nn.init.uniform_(self.decoder.weight, -initrange, initrange)

  def forward(self, inputs, hidden):
    emb = self.drop(self.encoder(inputs))
    output, hidden = self.rnn(emb, hidden)
    decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
    return F.log_softmax(decoded, dim=1), hidden

  def init_hidden(self, bsz):
    weight = next(self.parameters())
    zeros = lambda: weight.new_zeros(self.nlayers, bsz, self.nhid)
    return (zeros(), zeros()) if self.rnn_type == 'LSTM' else zeros()


class OutsideAutocast(nn.Module):
  """Runs the wrapped RNN in float32 inside an autocast region (its
  parameters are the RNN's own)."""

  def __init__(self, rnn):
    super().__init__()
    self.rnn = rnn

  def forward(self, inputs, hidden):
    with torch.autocast('cpu', enabled=False):
      return self.rnn(inputs.float(), hidden)


def mixed_precision(autocast):
  """A new context for each forward pass and loss: bfloat16 autocast, or
  nothing (float32, as main.py)."""
  if autocast:
    return lambda: torch.autocast('cpu', dtype=torch.bfloat16)
  return contextlib.nullcontext


def prepare_autocast(model):
  """Runs one token through the model under bfloat16 autocast and, if this
  CPU's oneDNN has no bfloat16 kernel for its RNN, takes the RNN out of
  autocast (OutsideAutocast). Returns what the RNN and the decoder compute
  in, e.g. {'rnn': 'float32', 'decoder': 'bfloat16', 'rnn_outside_autocast':
  True}."""
  inputs = torch.zeros((1, 1), dtype=torch.int64)
  outside = False
  with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
    emb = model.encoder(inputs)
    try:
      output, _ = model.rnn(emb, model.init_hidden(1))
    except RuntimeError as e:
      if 'primitive' not in str(e):  # oneDNN's: none for it on this CPU.
        raise
      model.rnn, outside = OutsideAutocast(model.rnn), True
      output, _ = model.rnn(emb, model.init_hidden(1))
    decoded = model.decoder(output)
  return {'rnn': str(output.dtype).replace('torch.', ''),
          'decoder': str(decoded.dtype).replace('torch.', ''),
          'rnn_outside_autocast': outside}


def training_steps(model, train_data, args):
  """main.py's train(), epoch after epoch: each next() trains one batch and
  gives (tokens in it, its loss). With --autocast, the forward pass and the
  loss run under bfloat16 autocast, the backward pass outside it."""
  criterion = nn.NLLLoss()
  ntokens = model.ntoken
  precision = mixed_precision(args.autocast)
  while True:
    model.train()
    hidden = model.init_hidden(args.batch_size)
    for i in range(0, train_data.size(0) - 1, args.bptt):
      data, targets = get_batch(train_data, i, args.bptt)
      model.zero_grad()
      hidden = repackage_hidden(hidden)
      with precision():
        output, hidden = model(data, hidden)
        loss = criterion(output.view(-1, ntokens), targets)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
      for p in model.parameters():
        p.data.add_(p.grad, alpha=-args.lr)
      yield targets.numel(), loss.item()


def evaluation_steps(model, data, args):
  """main.py's evaluate(), pass after pass: each next() scores one chunk
  and gives (tokens in it, its mean loss)."""
  criterion = nn.NLLLoss()
  precision = mixed_precision(args.autocast)
  model.eval()
  with torch.no_grad():
    while True:
      hidden = model.init_hidden(args.batch_size)
      for i in range(0, data.size(0) - 1, args.bptt):
        inputs, targets = get_batch(data, i, args.bptt)
        with precision():
          output, hidden = model(inputs, hidden)
          loss = criterion(output, targets)
        hidden = repackage_hidden(hidden)
        yield targets.numel(), loss.item()


def run_for(steps, seconds, min_steps=1):
  """Trains whole steps until `seconds` have passed (and at least
  min_steps): (steps, tokens, seconds taken, mean loss)."""
  n_steps, tokens, total_loss = 0, 0, 0.0
  started = time.perf_counter()
  while n_steps < min_steps or time.perf_counter() - started < seconds:
    n_tokens, loss = next(steps)
    n_steps, tokens, total_loss = n_steps + 1, tokens + n_tokens, total_loss + loss
  return n_steps, tokens, time.perf_counter() - started, total_loss / n_steps


def train_file(data):
  """<data>/ptb.train.txt (lm_trax's layout) or <data>/train.txt (main.py's)."""
  for name in ('ptb.train.txt', 'train.txt'):
    path = pathlib.Path(data) / name
    if path.is_file():
      return path
  raise SystemExit(f'error: no ptb.train.txt or train.txt in {data}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True,
                      help='folder with ptb.train.txt (or train.txt)')
  parser.add_argument('--model', default='LSTM', choices=('LSTM', 'GRU'))
  parser.add_argument('--emsize', type=int, default=200)
  parser.add_argument('--nhid', type=int, default=200)
  parser.add_argument('--nlayers', type=int, default=2)
  parser.add_argument('--lr', type=float, default=20)
  parser.add_argument('--clip', type=float, default=0.25)
  parser.add_argument('--batch_size', type=int, default=20)
  parser.add_argument('--bptt', type=int, default=20)
  parser.add_argument('--dropout', type=float, default=0.0)
  parser.add_argument('--seed', type=int, default=1111)
  parser.add_argument('--warmup', type=float, default=2.0,
                      help='seconds of training before the timed window')
  parser.add_argument('--window', type=float, default=5.0,
                      help='the timed window lasts at least this many seconds')
  parser.add_argument('--evaluate', action='store_true',
                      help="time main.py's evaluate() instead of training")
  parser.add_argument('--autocast', action='store_true',
                      help="forward pass and loss under torch.autocast('cpu', "
                      'dtype=torch.bfloat16) (mixed precision)')
  args = parser.parse_args(argv)

  torch.manual_seed(args.seed)
  corpus = Corpus(train_file(args.data))
  train_data = batchify(corpus.train, args.batch_size)
  model = RNNModel(args.model, len(corpus.word2idx), args.emsize, args.nhid,
                   args.nlayers, args.dropout)
  # After the seeded initialization, which it leaves as it was.
  autocast_dtypes = prepare_autocast(model) if args.autocast else None
  steps = (evaluation_steps if args.evaluate else training_steps)(
      model, train_data, args)

  warmup_steps = run_for(steps, args.warmup, min_steps=3)[0]
  n_steps, tokens, seconds, loss = run_for(steps, args.window)
  print(json.dumps({
      'framework': 'torch',
      'job': 'evaluate' if args.evaluate else 'train',
      'tokens_per_sec': tokens / seconds,
      'tokens': tokens,
      'seconds': seconds,
      'steps': n_steps,
      'warmup_steps': warmup_steps,
      'loss': loss,
      'autocast': 'bfloat16' if args.autocast else None,
      'autocast_dtypes': autocast_dtypes,
      'vocab_size': len(corpus.word2idx),
      'torch': torch.__version__,
      'threads': torch.get_num_threads(),
      'interop_threads': torch.get_num_interop_threads(),
      'modules': {m: m in sys.modules for m in ('jax', 'tensorflow', 'trax')},
      'env': {k: v for k, v in os.environ.items()
              if k.startswith(('OMP_', 'MKL_', 'KMP_', 'GOMP_'))},
  }), flush=True)


if __name__ == '__main__':
  main()
