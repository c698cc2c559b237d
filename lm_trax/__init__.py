"""lm_trax: neural language models in Trax.

Data flow, one module per stage:

  text (corpora) -> vocabulary (vocab) -> streams/batches (data) -> model
  (models, layers) -> trax Loop: train/eval, checkpoints (training, loop) ->
  a trained run (run_dir, trained, inference) -> perplexity (evaluation;
  the command: evaluate), scores (score), samples (generate)

A trained run from Python: lm = lm_trax.load('runs/ptb_lstm') (lm_trax.api).

Importing lm_trax imports neither trax nor TensorFlow: the modules that use
trax import lm_trax.compat (its fixes for current JAX) first, and gin
configurables are registered when a config is parsed (lm_trax.configurables).
"""

__version__ = '0.5.0'


def __getattr__(name):
  """lm_trax.load and lm_trax.LanguageModel (lm_trax.api), imported on first
  use, with trax."""
  if name in ('load', 'LanguageModel'):
    # Here, not above: `import lm_trax` imports no other module.
    from lm_trax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
