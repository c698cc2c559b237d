"""Score text with a trained run: per-line log-probabilities, next tokens.

  python -m lm_trax.score --output_dir RUN [FILE|-] [--json] [--skip_unknown]
                          [--checkpoint latest|best|STEP]
                          [--precision float32|bfloat16]
  python -m lm_trax.score --output_dir RUN --next "the stock market" --top_k 5

Each input line is scored on its own, from a fresh state primed with the
end-of-line token, and its end (<eos> for words, '\\n' for characters) is
scored too. For every line it prints the total log-probability (natural log),
the number of tokens scored and the perplexity exp(-logprob / tokens):

  logprob=-41.9230  tokens=7  ppl=398.06  the stock market fell sharply

This is the building block for comparing texts (classification by
likelihood) and for autocomplete (--next: the k most likely next tokens).
"""

import dataclasses
import json
import math
import sys

import numpy as np

from lm_trax import cli
from lm_trax import errors
from lm_trax import inference
from lm_trax import opener
from lm_trax import process
from lm_trax import vocab as vocab_lib
from lm_trax.errors import UserError
from lm_trax.errors import is_whole_number, require


@dataclasses.dataclass
class LineScore:
  text: str
  logprob: float  # Sum of log p over the line's tokens, natural log.
  tokens: int
  unknown: int  # Words scored as <unk>.

  @property
  def ppl(self):
    return math.exp(-self.logprob / self.tokens) if self.tokens else math.nan

  def as_dict(self):
    return {'text': self.text, 'logprob': self.logprob, 'tokens': self.tokens,
            'ppl': self.ppl, 'unknown': self.unknown}


def _unknown_policy(vocab, skip_unknown):
  if skip_unknown:
    return 'skip'
  return 'map' if vocab.unk_id is not None else 'error'


def score_lines(run, lines, skip_unknown=False, batch_size=32):
  """Scores each line of text on its own.

  Args:
    run: a lm_trax.trained.Run.
    lines: strings, without their line ends.
    skip_unknown: drop tokens outside the vocabulary instead of mapping words
      to <unk> (or, for characters, raising UserError naming them).
    batch_size: lines per compiled call.

  Returns:
    A list of LineScore, one per line.

  Raises:
    UserError: if lines is not a list of strings; vocab.UnknownTokens for
      characters a vocabulary without <unk> lacks (unless skip_unknown).
  """
  if isinstance(lines, str):
    raise UserError('lines must be a list of lines, got one string; pass '
                    '[text] (or text.splitlines())')
  try:
    lines = list(lines)
  except TypeError:
    raise UserError(f'lines must be a list of strings, got '
                    f'{type(lines).__name__}') from None
  for i, line in enumerate(lines):
    if not isinstance(line, str):
      raise UserError(f'lines must be a list of strings, got '
                      f'{type(line).__name__} {line!r} at index {i}')
  require(isinstance(skip_unknown, (bool, np.bool_)), 'skip_unknown',
          'True or False', skip_unknown)
  vocab = run.vocab
  policy = _unknown_policy(vocab, skip_unknown)
  encoded, unknowns = [], []
  for i, line in enumerate(lines):
    text = line + '\n'
    unknowns.append(vocab.count_unknown(text))
    try:
      encoded.append(vocab.encode(text, unknown=policy))
    except vocab_lib.UnknownTokens as e:
      raise e.restated(f'line {i + 1}') from None
  if not lines:
    return []
  sums, counts = run.predictor().lines_log_probs(encoded, batch_size)
  return [LineScore(line, float(s), int(c), u)
          for line, s, c, u in zip(lines, sums, counts, unknowns)]


def next_tokens(run, prompt, top_k=5, skip_unknown=False, name=cli.flag):
  """The top_k most likely tokens after `prompt`: [(token, probability)].

  The prompt is read as `lm_trax.inference.encode_prompt` reads it (an
  unfinished last line gets no <eos>) and primed like every text. Messages
  name top_k as name('top_k') spells it (the command's flag by default).
  """
  require(is_whole_number(top_k), name('top_k'), 'a whole number', top_k)
  require(top_k >= 1, name('top_k'), '>= 1', top_k)
  vocab = run.vocab
  ids, _ = inference.encode_prompt(vocab, prompt,
                                   _unknown_policy(vocab, skip_unknown))
  probs = run.predictor().next_token_probs(ids)
  best = np.argsort(-probs, kind='stable')[:min(top_k, vocab.size - 1)]
  return [(vocab.tokens[i], float(probs[i])) for i in best]


def _read_lines(source):
  if source in (None, '-'):
    return sys.stdin.read().splitlines()
  try:
    with open(source, encoding='utf-8') as f:
      return f.read().splitlines()
  except FileNotFoundError:
    raise UserError(f'no such file: {source}') from None
  except UnicodeDecodeError:
    raise UserError(f'{source} is not UTF-8 text') from None


def main(argv=None):
  parser = cli.parser(
      'lm_trax.score',
      'Per-line log-probabilities, or the most likely next tokens.')
  parser.add_argument('file', nargs='?', default='-',
                      help='text to score, one item per line (- for stdin)')
  cli.add_run_arguments(parser)
  parser.add_argument('--next', default=None, metavar='PROMPT',
                      help='print the most likely next tokens after PROMPT')
  parser.add_argument('--top_k', type=int, default=5)
  parser.add_argument('--json', action='store_true', help='JSON lines output')
  parser.add_argument('--skip_unknown', action='store_true',
                      help='drop tokens outside the vocabulary')
  args = parser.parse_args(argv)
  process.set_up()
  with errors.reported(args.verbose):
    run = opener.open_model(args.output_dir, args.checkpoint,
                               args.precision)
    if args.next is not None:
      for token, prob in next_tokens(run, args.next, args.top_k,
                                     args.skip_unknown):
        if args.json:
          print(json.dumps({'token': token, 'prob': prob}))
        else:
          print(f'{prob:.4f}  {token}' if run.vocab.level == 'word'
                else f'{prob:.4f}  {token!r}')
      return
    try:
      scores = score_lines(run, _read_lines(args.file), args.skip_unknown)
    except vocab_lib.UnknownTokens as e:
      raise e.restated(skip='--skip_unknown') from None
    n_unknown = sum(s.unknown for s in scores)
    if n_unknown and not args.skip_unknown:
      print(f'{n_unknown} words not in the vocabulary were scored as <unk>',
            file=sys.stderr)
    for s in scores:
      if args.json:
        print(json.dumps(s.as_dict(), ensure_ascii=False))
      else:
        print(f'logprob={s.logprob:.4f}\ttokens={s.tokens}\tppl={s.ppl:.2f}\t'
              f'{s.text}')


if __name__ == '__main__':
  main()
