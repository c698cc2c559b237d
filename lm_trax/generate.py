"""Text from a trained run: seeded Gumbel-max sampling, compiled as one loop.

  python -m lm_trax.generate --output_dir RUN [--prompt TEXT] [--length N]
      [--temperature T] [--top_k K] [--top_p P] [--num_samples S]
      [--seed SEED] [--stop_at_eos] [--precision float32|bfloat16] [--verbose]

prints the samples on stdout (with a `=== sample i/S ===` line before each
when S > 1) and what it did on stderr: the run, the seed, the timings.

How a sample is drawn:

  1. Priming. The vocabulary's end-of-line id (<eos> for words, '\\n' for
     characters), then the prompt's ids, run through the model once as a
     (S, 1 + P) batch. That sets the carried state (RNN hidden states; the
     NPLM's last n_context - 1 ids) exactly as running the text through the
     model in eval mode does, and gives the logits of the first new token.
     Without a prompt, the model starts a fresh line (or sentence).
  2. Sampling. Each step turns the last logits (S, V) into ids (S,) by
     Gumbel-max, argmax(log p / T + g) with g ~ Gumbel(0, 1) from jax.random,
     after dropping the tokens outside the top k / top p; T = 0 is argmax.
     Padding (id 0) is never drawn. The ids are fed back as a (S, 1) batch,
     which advances the state and gives the next logits.
  3. Compilation. The priming and all `length` steps are one jitted function
     (jax.lax.scan over the steps, carrying the logits and the state; the
     PRNG keys of all steps are split up front), so a sample costs one call
     and no host round trip per token.

The same seed gives the same samples; sample i of S does not depend on S
(each row draws its own noise, from fold_in(step key, i); up to the float
rounding of the batched model), and a shorter sample is the start of a longer
one (step t's key is the t-th of jax.random.split(key, length), which does
not depend on length with jax's default partitionable threefry).

From Python:

  sample_logits(logits (S, V), key, temperature, top_k, top_p) -> ids (S,)
  make_sampler(forward, length, ...) -> jitted fn(weights, state, prompt_ids
      (S, P), key) -> ids (S, length)
  sample(model, prompt_ids (S, P), length, key, ...) -> ids (S, length)
  generate(run, prompt, length, ...) -> list of S strings

Word-level samples are detokenized (clitics such as 's and n't attached,
sentences capitalized, one sentence per line); character- and subword-level
samples are the text itself. --stop_at_eos cuts each sample at its first
end-of-line id.
"""

import re
import secrets
import sys
import time

import jax
from jax import numpy as jnp
import numpy as np

from lm_trax import cli
from lm_trax import errors
from lm_trax import inference
from lm_trax import opener
from lm_trax import process
from lm_trax import vocab as vocab_lib
from lm_trax.errors import is_real_number
from lm_trax.errors import is_whole_number
from lm_trax.errors import require
from lm_trax.errors import UserError


# Validation -------------------------------------------------------------------

def check_options(length, temperature=1.0, top_k=None, top_p=None,
                  num_samples=1, seed=0, name=cli.flag):
  """Raises UserError for options sampling cannot use, naming each option
  as name(option) spells it: the command's flags by default; the Python API
  passes its own spelling (its parameters)."""
  _require_whole(length, name('length'))
  if length < 1:
    raise UserError(f'{name("length")} must be >= 1 (tokens to generate), '
                    f'got {length}')
  require(is_real_number(temperature), name('temperature'), 'a number',
          temperature)
  if not temperature >= 0:  # Also catches NaN.
    raise UserError(f'{name("temperature")} must be >= 0 (0 = greedy), got '
                    f'{temperature}')
  if top_k is not None:
    _require_whole(top_k, name('top_k'), ' or None')
    require(top_k >= 1, name('top_k'), '>= 1', top_k)
  if top_p is not None:
    require(is_real_number(top_p), name('top_p'), 'a number or None', top_p)
    require(0 < top_p <= 1, name('top_p'), 'in (0, 1]', top_p)
  _require_whole(num_samples, name('num_samples'))
  require(num_samples >= 1, name('num_samples'), '>= 1', num_samples)
  _require_whole(seed, name('seed'))
  # Seeds outside [0, 2**32) would wrap around to another seed's samples.
  require(0 <= seed < 2**32, name('seed'), 'in [0, 2**32)', seed)


def _require_whole(value, name, alternative=''):
  require(is_whole_number(value), name, f'a whole number{alternative}', value)


# One step: logits -> ids --------------------------------------------------------

def sample_logits(logits, key, temperature=1.0, top_k=None, top_p=None):
  """Draws one token per row by Gumbel-max: argmax(log p / T + g).

  Args:
    logits: (S, V) float scores; log p = log_softmax(logits). Entries of -inf
      are never drawn.
    key: a jax.random key. Row s draws its noise from fold_in(key, s), so a
      row's draw does not depend on how many rows there are.
    temperature: T >= 0, a Python float; 0 means argmax (greedy), and then
      top_k, top_p and key do not matter.
    top_k: keep only the k highest-scoring tokens of each row (None: all).
    top_p: keep only the most likely tokens of each row whose probabilities
      (at temperature T, after top_k) first sum to at least top_p (None: all).

  Returns:
    (S,) int32 token ids.
  """
  logits = logits.astype(jnp.float32)
  if temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = jax.nn.log_softmax(logits, axis=-1) / temperature  # log p / T
  scores, ids = _keep_top_k_top_p(scaled, top_k, top_p)  # (S, K) each
  choice = jnp.argmax(scores + _gumbel_noise(key, scores.shape), axis=-1)
  if ids is None:  # No filter: the scores are the whole vocabulary.
    return choice.astype(jnp.int32)
  return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(
      jnp.int32)


def _keep_top_k_top_p(scaled, top_k, top_p):
  """The candidates of each row, best first: (scores (S, K), ids (S, K)).

  scaled: (S, V) log-probabilities / T. Dropped candidates score -inf. When
  nothing is filtered, returns (scaled, None) and K = V.
  """
  vocab_size = scaled.shape[-1]
  k = vocab_size if top_k is None else min(top_k, vocab_size)
  filter_p = top_p is not None and top_p < 1
  if k == vocab_size and not filter_p:
    return scaled, None
  scores, ids = jax.lax.top_k(scaled, k)  # Sorted, best first.
  if filter_p:
    probs = jax.nn.softmax(scores, axis=-1)  # Renormalized over the top k.
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # Exclusive; 0 for best.
    scores = jnp.where(mass_before < top_p, scores, -jnp.inf)
  return scores, ids


def _gumbel_noise(key, shape):
  """(S, K) Gumbel(0, 1) noise whose row s comes from fold_in(key, s)."""
  rows = jnp.arange(shape[0])
  row_keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(rows)
  return jax.vmap(lambda k: jax.random.gumbel(k, shape[1:], jnp.float32))(
      row_keys)


# The compiled loop --------------------------------------------------------------

def prime(forward, weights, state, prompt_ids):
  """Runs the prompt through the model once.

  Args:
    forward: the model's pure forward, (weights, state, ids (S, T)) ->
      (logits (S, T, V), state) (lm_trax.inference.pure_forward).
    weights: the model's weights.
    state: the model's state to start from (zeros: a fresh start).
    prompt_ids: (S, P) int32 ids, P >= 1.

  Returns:
    (logits (S, V) float32 scoring the token after the prompt, the state after
    the prompt).
  """
  logits, state = forward(weights, state, prompt_ids)
  return logits[:, -1].astype(jnp.float32), state


def make_sampler(forward, length, temperature=1.0, top_k=None, top_p=None,
                 banned_ids=()):
  """Compiles priming plus `length` sampling steps into one function.

  Args:
    forward: a language model's pure forward, (weights, state, ids (S, T)
      int32) -> (logits (S, T, V), state), whose state continues a sequence
      from call to call (lm_trax.inference: Predictor.pure_forward, or
      pure_forward(model) of an lm_trax model with carry_state=True in mode
      'eval' or 'predict').
    length: number of tokens to generate (static: one compilation per length).
    temperature, top_k, top_p: as in `sample_logits`.
    banned_ids: ids never generated (e.g. padding).

  Returns:
    A jitted fn(weights, state, prompt_ids (S, P) int32, key) -> (S, length)
    int32 ids; state is where the prompt starts (zeros for a fresh start).

  Raises:
    UserError: for options `check_options` refuses.
  """
  check_options(length, temperature, top_k, top_p)
  banned_ids = tuple(banned_ids)

  def next_ids(logits, key):  # (S, V) -> (S,)
    if banned_ids:
      logits = logits.at[:, jnp.array(banned_ids)].set(-jnp.inf)
    return sample_logits(logits, key, temperature, top_k, top_p)

  def advance(weights, state, ids):  # (S,) ids -> (logits (S, V), state)
    return prime(forward, weights, state, ids[:, None])

  def sample_all(weights, state, prompt_ids, key):
    logits, state = prime(forward, weights, state, prompt_ids)
    step_keys = jax.random.split(key, length)

    def step(carry, step_key):
      logits, state = carry
      ids = next_ids(logits, step_key)
      return advance(weights, state, ids), ids

    # The last token needs no model call after it: scan length - 1 steps.
    (logits, _), ids = jax.lax.scan(step, (logits, state), step_keys[:-1])
    last = next_ids(logits, step_keys[-1])
    return jnp.concatenate([ids.T, last[:, None]], axis=1)  # (S, length)

  return jax.jit(sample_all)


def sample(model, prompt_ids, length, key, temperature=1.0, top_k=None,
           top_p=None, banned_ids=(), state=None):
  """Samples `length` tokens after each prompt row, from a fresh state.

  Args:
    model: an initialized trax language model (see `make_sampler`).
    prompt_ids: (S, P) int ids, P >= 1; row s primes sample s.
    length: number of tokens to generate.
    key: a jax.random key; the same key gives the same samples.
    temperature, top_k, top_p: as in `sample_logits`.
    banned_ids: ids never generated.
    state: the state to start from; default: model.state with every array
      zeroed.

  Returns:
    (S, length) int32 numpy array of the generated ids (without the prompt).
  """
  prompt_ids = np.asarray(prompt_ids, np.int32)
  if prompt_ids.ndim != 2 or prompt_ids.shape[1] < 1:
    raise ValueError(f'prompt_ids must be (S, P) with P >= 1, got shape '
                     f'{prompt_ids.shape}')
  if state is None:
    from lm_trax import layers  # pylint: disable=g-import-not-at-top  (trax: not for --help or lm_trax.load)
    state = layers.zero_state_tree(model.state)
  sampler = make_sampler(inference.pure_forward(model), length, temperature,
                         top_k, top_p, banned_ids)
  return np.asarray(sampler(model.weights, state, prompt_ids, key))


# Text <-> ids ---------------------------------------------------------------------

def cut_at_eos(ids, eos_id):
  """(L,) ids up to (not including) the first eos_id; all of them if none."""
  ids = np.asarray(ids)
  hits = np.flatnonzero(ids == eos_id)
  return ids[:hits[0]] if len(hits) else ids


_ATTACH_LEFT = frozenset(["'s", "'re", "'ve", "'m", "'ll", "'d", "n't", "'",
                          '.', ',', ';', ':', '?', '!', '%', ')', ']', '}'])
_ATTACH_RIGHT = frozenset(['$', '#', '(', '[', '{'])


def detokenize(text):
  """Space-separated word tokens -> readable text, line by line.

  Clitics and closing punctuation join the previous word ("do n't" ->
  "don't", "it 's" -> "it's"), currency signs and opening brackets the next
  one ("$ N" -> "$N"), "i" becomes "I" and every line starts with a capital.
  """
  return '\n'.join(_detokenize_line(line) for line in text.split('\n'))


def _detokenize_line(line):
  pieces = []
  glue_next = True  # No space before the first word.
  for token in line.split():
    if token == 'i':
      token = 'I'
    if not (glue_next or token in _ATTACH_LEFT):
      pieces.append(' ')
    pieces.append(token)
    glue_next = token in _ATTACH_RIGHT or token.endswith('$')
  text = ''.join(pieces)
  return re.sub(r'^([^\w<]*)(\w)', lambda m: m.group(1) + m.group(2).upper(),
                text, count=1)


def to_text(vocab, prompt, prompt_ids, generated):
  """One sample as text: the prompt followed by the generated ids (L,).

  Character level: the prompt as given, then the characters. Subword level:
  the prompt's ids and the generated ones decoded together (a space between
  two words is implied by the subwords on both sides; the prompt decodes to
  itself). Word level: the prompt's words (unknown ones as <unk>) and the
  generated words, detokenized.
  """
  if vocab.level == 'char':
    return prompt + vocab.decode(generated)
  text = vocab.decode(np.concatenate([prompt_ids, generated]))
  return text if vocab.level == 'subword' else detokenize(text)


# From a run directory ---------------------------------------------------------------

def generate(run, prompt='', length=200, temperature=1.0, top_k=None,
             top_p=None, num_samples=1, seed=0, stop_at_eos=False,
             name=cli.flag):
  """Samples text from a trained run (see the module docstring).

  Args:
    run: a lm_trax.trained.Run.
    prompt: text that primes the model ('' or None: a fresh line).
    length: tokens (words, characters or subwords) to generate per sample.
    temperature: T >= 0; 0 is greedy.
    top_k: sample only from the k most likely tokens (None: all).
    top_p: sample only from the most likely tokens holding mass top_p.
    num_samples: S, the samples drawn in parallel (one batch).
    seed: the PRNG seed; the same seed gives the same samples.
    stop_at_eos: cut each sample at its first end of line / sentence.
    name: how messages name the options (`check_options`).

  Returns:
    A list of S strings, each the prompt followed by its continuation.

  Raises:
    UserError: for bad options, prompt characters outside the vocabulary, or
      a run directory whose checkpoint does not fit its config.
  """
  check_options(length, temperature, top_k, top_p, num_samples, seed, name)
  require(isinstance(stop_at_eos, (bool, np.bool_)), name('stop_at_eos'),
          'True or False', stop_at_eos)
  key = jax.random.PRNGKey(seed)
  prompt = '' if prompt is None else prompt
  vocab = run.vocab
  prompt_ids, unknown = inference.encode_prompt(vocab, prompt)
  if unknown:
    shown = ', '.join(repr(w) for w in dict.fromkeys(unknown))
    _log(f'warning: {len(unknown)} prompt {vocab.level}(s) not in the '
         f'vocabulary are read as {vocab_lib.UNK}: {shown}')
  primer = inference.primed(vocab.eos_id, prompt_ids)
  predictor = run.predictor()
  started = time.time()
  sampler = make_sampler(predictor.pure_forward, length, temperature, top_k,
                         top_p, banned_ids=(vocab_lib.PAD_ID,))
  ids = np.asarray(sampler(predictor.weights,
                           predictor.fresh_state(num_samples),
                           np.tile(primer, (num_samples, 1)), key))
  seconds = time.time() - started
  _log(f'{num_samples} x {length} {vocab.level}s in {seconds:.1f} s '
       f'(compilation included)')
  return [to_text(vocab, prompt, prompt_ids,
                  cut_at_eos(row, vocab.eos_id) if stop_at_eos else row)
          for row in ids]


def _log(message):
  print(message, file=sys.stderr, flush=True)


def _write_samples(samples, out=None):
  """Prints the samples, each ending in a line break, separated when > 1."""
  out = out or sys.stdout
  for i, text in enumerate(samples):
    if len(samples) > 1:
      out.write(f'=== sample {i + 1}/{len(samples)} ===\n')
    out.write(text if text.endswith('\n') else text + '\n')
  out.flush()


def main(argv=None):
  """The command line (console script lm-trax-generate)."""
  parser = cli.parser('lm_trax.generate',
                      'Sample text from a trained run directory.')
  cli.add_run_arguments(parser)
  parser.add_argument('--prompt', default='',
                      help="text to continue (bash: --prompt $'ROMEO:\\n' for "
                      'a line break); default: start a fresh line')
  parser.add_argument('--length', type=int, default=200,
                      help='tokens (words, characters or subwords) to '
                      'generate per sample (default: 200)')
  parser.add_argument('--temperature', type=float, default=1.0,
                      help='>= 0; lower is more conservative, 0 is greedy '
                      '(default: 1)')
  parser.add_argument('--top_k', type=int, default=None,
                      help='sample only from the k most likely tokens')
  parser.add_argument('--top_p', type=float, default=None,
                      help='sample only from the most likely tokens whose '
                      'probabilities sum to p, in (0, 1]')
  parser.add_argument('--num_samples', type=int, default=1,
                      help='samples to draw, in parallel (one batch)')
  parser.add_argument('--seed', type=int, default=None,
                      help='PRNG seed (default: a random one, logged)')
  parser.add_argument('--stop_at_eos', action='store_true',
                      help='end each sample at its first end of line '
                      '(characters) or sentence (words)')
  args = parser.parse_args(argv)
  process.set_up()
  with errors.reported(args.verbose):
    check_options(args.length, args.temperature, args.top_k, args.top_p,
                  args.num_samples)
    seed = args.seed
    if seed is None:
      seed = secrets.randbelow(2**31)
      _log(f'seed {seed} (random; --seed {seed} draws the same samples)')
    started = time.time()
    run = opener.open_model(args.output_dir, args.checkpoint,
                               args.precision)
    _log(f'run {run.output_dir}: {run.vocab.level} level, {run.vocab.size:,}'
         f' ids, {run.precision}; seed {seed}')
    samples = generate(run, args.prompt, args.length, args.temperature,
                       args.top_k, args.top_p, args.num_samples, seed,
                       args.stop_at_eos)
    _log(f'total {time.time() - started:.1f} s (loading included)')
    _write_samples(samples)


if __name__ == '__main__':
  main()
