"""A trained run as a Python object: `lm_trax.load`.

  import lm_trax
  lm = lm_trax.load('runs/ptb_lstm', checkpoint='best')  # or 'latest', a step
  lm.perplexity(split='test').ppl          # exact, as python -m lm_trax.evaluate
                                           # (also .bpc, .word_ppl)
  lm.perplexity(text='the cat sat on the mat\n')
  lm.perplexity(split='valid', cache=dict(size=2000, theta=1.0, lam=0.1),
                dynamic=dict(rule='rms', lr=0.002, decay=0.02))
  lm.score(['the company said', 'said the company'])   # one LineScore per line
  lm.next_tokens('the stock', k=5)         # [(token, probability)]
  lm.generate('the stock market', length=40, temperature=0.8, seed=1,
              num_samples=2)               # [text]
  lm.encode(text), lm.decode(ids), lm.vocab
  lm.export('models/ptb_lstm')             # named weights, config, card
  lm_trax.load('models/ptb_lstm')          # an export: no trax, no TensorFlow

Each method runs the same function as the command of the same job
(lm_trax.evaluate, lm_trax.score, lm_trax.generate), so the API and the
commands give the same numbers. A loaded model keeps its own configuration:
loading leaves the process's gin configuration alone, and several models can
be used side by side.

Loading changes nothing else in the process either: the commands' set-up
(glibc's reuse of freed memory, JAX's compilation cache) is the program's to
choose, with lm_trax.process.set_up() before anything else.

This module is light: trax and TensorFlow are imported when a run directory
is loaded, never for an exported model (lm_trax.export, lm_trax.exported).
"""

import os

from lm_trax import adaptation
from lm_trax import checkpoints
from lm_trax import exported
from lm_trax import generate as generate_lib
from lm_trax import opener
from lm_trax import score as score_lib
from lm_trax import vocab as vocab_lib
from lm_trax.errors import is_whole_number
from lm_trax.errors import require
from lm_trax.errors import UserError


def load(output_dir, checkpoint=checkpoints.LATEST, precision=None):
  """Opens a run directory of train.py, or a model lm-trax-export wrote.

  Args:
    output_dir: the run directory, or the export directory.
    checkpoint: 'latest', 'best' (best exact validation loss) or a step; an
      export holds one (leave the default).
    precision: the matmuls' number format, 'float32' or 'bfloat16'
      (lm_trax.precision); None: the one the run trained in.

  Returns:
    A LanguageModel.

  Raises:
    UserError: if the directory, or the checkpoint, does not exist (the
      message lists the checkpoints there are), or an argument is of the
      wrong type.
  """
  _require_path(output_dir, 'output_dir')
  return LanguageModel(opener.open_model(output_dir, checkpoint, precision))


class LanguageModel:
  """A trained language model (see the module docstring).

  Attributes:
    vocab: its lm_trax.vocab.Vocab.
    run: the lm_trax.trained.Run or lm_trax.exported.Export it was loaded
      from.
  """

  def __init__(self, run):
    self.run = run
    self.vocab = run.vocab

  def __repr__(self):
    return (f'LanguageModel({str(self.run.output_dir)!r}, checkpoint='
            f'{self.run.checkpoint.parent.name!r}, {self.vocab.level} level, '
            f'{self.vocab.size} ids)')

  def export(self, out, evaluate=('valid',), data_dir=None):
    """Writes this model to the new directory `out` to share it: named
    weights, config.json, the vocabulary and a model card, which
    lm_trax.load(out) opens without trax (lm_trax.export). evaluate: the
    splits scored for the card (add 'test' once the model is final).
    Returns out as a pathlib.Path."""
    if isinstance(self.run, exported.Export):
      raise UserError(f'{self.run.output_dir} is an export already: copy the '
                      'directory to share it')
    _require_path(out, 'out')
    require(isinstance(evaluate, (list, tuple)), 'evaluate',
            "a list of splits, e.g. ['valid', 'test']", evaluate)
    from lm_trax import export as export_lib  # pylint: disable=g-import-not-at-top
    return export_lib.export(self.run.output_dir, out, self._checkpoint(),
                             tuple(evaluate), data_dir, progress=False)

  def _checkpoint(self):
    """The step of the checkpoint this model was loaded from."""
    return checkpoints.step_of(self.run.checkpoint.parent)

  def perplexity(self, split=None, text=None, batch_size=None, data_dir=None,
                 cache=None, dynamic=None):
    """Exact perplexity of a split of the run's corpus, or of a text.

    Args:
      split: 'train', 'valid' or 'test'.
      text: a string to score instead, as one stream (lines end in '\\n').
      batch_size: windows per compiled call (the result does not depend on
        it beyond float rounding).
      data_dir: where the corpus is (default: the run's settings).
      cache: the continuous cache, dict(size=, theta=, lam=) or an
        lm_trax.adaptation.Cache; None for none.
      dynamic: dynamic evaluation, dict(rule='sgd'|'rms', lr=, decay=0,
        segment=5, epsilon=2e-5, statistics_tokens=None) or an
        lm_trax.adaptation.Dynamic; None for none. The rule 'rms' reads the
        run's train split for its gradient statistics.

    Returns:
      An lm_trax.evaluation.EvalResult: .loss (nats/token), .ppl, .bpc (bits
      per character), .word_ppl (perplexity per word), .tokens, .characters,
      .words, .nats (total), .unknown, .adaptation.

    Raises:
      UserError: for an argument of the wrong type or value, naming it.
    """
    # Imported here for the same reason as in `load` (it imports trax, which
    # the loaded run has imported by now).
    from lm_trax import evaluation  # pylint: disable=g-import-not-at-top
    if (split is None) == (text is None):
      raise UserError('give one of split= or text=')
    if batch_size is not None:
      require(is_whole_number(batch_size) and batch_size >= 1, 'batch_size',
              'a whole number >= 1 or None', batch_size)
    if data_dir is not None:
      _require_path(data_dir, 'data_dir')
    cache, dynamic = adaptation.as_cache(cache), adaptation.as_dynamic(dynamic)
    if text is not None:
      if not isinstance(text, str):
        raise UserError(f'text must be a string, got {type(text).__name__}')
      return evaluation.evaluate_text(self.run, text, 'text', batch_size,
                                      False, cache, dynamic, data_dir)
    corpus = self.run.corpus(data_dir)
    return evaluation.evaluate_text(self.run, corpus.text(split), split,
                                    batch_size, False, cache, dynamic,
                                    data_dir)

  def score(self, lines, skip_unknown=False):
    """Each line's log-probability, from a fresh state, its end included.

    Args:
      lines: a list of strings (one string is refused: wrap it in a list).
      skip_unknown: drop tokens outside the vocabulary instead of <unk>.

    Returns:
      A list of lm_trax.score.LineScore: .logprob (natural log), .tokens,
      .ppl, .unknown.
    """
    try:
      return score_lib.score_lines(self.run, lines, skip_unknown)
    except vocab_lib.UnknownTokens as e:
      raise e.restated(skip='skip_unknown=True') from None

  def next_tokens(self, prompt, k=5):
    """The k most likely next tokens after `prompt`: [(token, probability)]."""
    return score_lib.next_tokens(
        self.run, prompt, top_k=k,
        name=lambda option: 'k' if option == 'top_k' else option)

  def generate(self, prompt='', length=100, temperature=1.0, seed=0,
               num_samples=1, top_k=None, top_p=None, stop_at_eos=False):
    """Samples continuations of `prompt`: a list of num_samples strings, each
    the prompt followed by its continuation (lm_trax.generate.generate)."""
    return generate_lib.generate(self.run, prompt, length=length,
                                 temperature=temperature, top_k=top_k,
                                 top_p=top_p, num_samples=num_samples,
                                 seed=seed, stop_at_eos=stop_at_eos,
                                 name=_parameter)

  def encode(self, text):
    """Text -> (T,) int32 ids, the rule every command uses (lm_trax.vocab)."""
    return self.vocab.encode(text)

  def decode(self, ids):
    """Ids -> text."""
    return self.vocab.decode(ids)


def _parameter(option):
  """How the API names an option it shares with a command (length, top_k,
  ...) in messages: as its parameter, where the command names its flag."""
  return option


def _require_path(value, name):
  require(isinstance(value, (str, os.PathLike)), name,
          'a path (a string or a pathlib.Path)', value)
