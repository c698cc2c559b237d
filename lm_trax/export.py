"""Export a trained run to share it: named weights, config.json, vocabulary and
a model card, which lm_trax loads and runs without trax or TensorFlow.

  lm-trax-export RUN OUT [--checkpoint best|latest|STEP] [--evaluate valid,test]
  python -m lm_trax.export RUN OUT ...

OUT's files and the weight layout are lm_trax.exported's (docs/sharing.md).
The exported model is scored on each split of --evaluate (default valid)
through the trax-free path, and the numbers go into config.json and the
model card: what a reader of the card gets is what the files compute. Ask
for test only when the model is final (test numbers are computed once).

From Python: lm_trax.load(RUN).export(OUT). Then, anywhere lm_trax is
installed: lm_trax.load(OUT), or any command with --output_dir OUT.
"""

import datetime
import json
import math
import pathlib
import secrets
import shlex
import shutil
import sys

from lm_trax import checkpoints
from lm_trax import cli
from lm_trax import errors
from lm_trax import exported
from lm_trax import files
from lm_trax import process
from lm_trax.errors import UserError

SPLITS = ('train', 'valid', 'test')
# Hyperparameters that are not the model's but the run's way of building it.
_NOT_HYPERPARAMETERS = ('vocab_size', 'mode', 'precision')


def export(output_dir, out, checkpoint='best', evaluate=('valid',),
           data_dir=None, progress=True):
  """Writes the run's model at `checkpoint` to the new directory `out`.

  Args:
    output_dir: the run directory of train.py.
    out: the export directory; must not exist (or be empty).
    checkpoint: 'best', 'latest' or a step.
    evaluate: the splits to score the exported model on, for the card.
    data_dir: where the run's corpus is (default: lm_trax's data directory
      rule).
    progress: show progress bars while scoring.

  Returns:
    out, a pathlib.Path.

  Raises:
    UserError: for a missing run or checkpoint, a model lm_trax cannot export
      (a user's own model function), an existing out, or a split that cannot
      be read.
  """
  from lm_trax import trained  # pylint: disable=g-import-not-at-top  (trax)
  out = pathlib.Path(out).expanduser()
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise UserError(f'{out} exists: export into a new directory, or delete '
                    'it first')
  unknown = sorted(set(evaluate) - set(SPLITS))
  if unknown:
    raise UserError(f'cannot evaluate on {", ".join(unknown)}: the splits are '
                    f'{", ".join(SPLITS)}')
  run = trained.Run(output_dir, checkpoint)
  architecture, hyperparameters = _architecture(run)
  weights = named_weights(run, architecture, hyperparameters)
  config = _config(run, architecture, hyperparameters, weights)
  out.parent.mkdir(parents=True, exist_ok=True)
  # Beside out (one file system, so the rename is atomic), with the umask's
  # permissions (mkdtemp's 0700 would keep collaborators out).
  staging = out.parent / f'.{out.name}.{secrets.token_hex(4)}.tmp'
  staging.mkdir()
  try:
    _write(staging, run, config, weights)
    config['evaluated'] = _evaluate(staging, evaluate, data_dir, progress)
    _write_config(staging, config)
    (staging / exported.CARD_FILE).write_text(model_card(config),
                                              encoding='utf-8')
    if out.exists():
      out.rmdir()
    staging.rename(out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return out


def _architecture(run):
  from lm_trax import models  # pylint: disable=g-import-not-at-top  (trax)
  try:
    architecture, hyper = models.architecture(run.model_fn, run.vocab.size)
  except ValueError as e:
    raise UserError(f'cannot export {run.output_dir}: {e}; lm_trax exports '
                    'the models it ships') from None
  return architecture, {name: value for name, value in hyper.items()
                        if name not in _NOT_HYPERPARAMETERS}


def named_weights(run, architecture, hyperparameters):
  """{name: float32 numpy array} of the run's model (averaged weights if the
  run averaged), named by lm_trax.exported.layout."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  leaves = jax.tree_util.tree_leaves(run.model().weights)
  names = exported.layout(architecture, hyperparameters, run.vocab.size)
  shapes = [tuple(np.shape(w)) for w in leaves]
  if shapes != [tuple(shape) for _, shape in names]:
    raise UserError(f'the weights of {run.checkpoint} ({shapes[:4]}...) are '
                    f'not laid out as lm_trax.exported expects '
                    f'({[s for _, s in names][:4]}...)')
  return {name: np.asarray(w, np.float32) for (name, _), w in zip(names, leaves)}


def _config(run, architecture, hyperparameters, weights):
  from lm_trax import run_dir  # pylint: disable=g-import-not-at-top
  starts = run_dir.read_starts(run.output_dir)
  corpus = dict(run.corpus_settings)
  corpus.pop('data_dir', None)  # The reader's own data directory rule.
  return {
      'format': exported.FORMAT,
      'format_version': exported.FORMAT_VERSION,
      'architecture': architecture,
      'hyperparameters': hyperparameters,
      'precision': run.trained_precision,
      'vocab_size': run.vocab.size,
      'level': run.vocab.level,
      'parameters': int(sum(w.size for w in weights.values())),
      'corpus': corpus,
      'batching': dict(run.batching_settings),
      'source': {
          'run': str(run.output_dir.resolve()),
          'checkpoint': run.checkpoint.parent.name,
          'step': checkpoints.step_of(run.checkpoint.parent),
          'command': starts[0].get('command') if starts else None,
          'trained': [start.get('time') for start in starts],
          'machine': starts[-1].get('machine') if starts else None,
          'exported': datetime.datetime.now(
              datetime.timezone.utc).isoformat(timespec='seconds'),
          'lm_trax': run_dir.package_versions()['lm_trax'],
      },
      'validation': _best_validation(run.output_dir),
  }


def _best_validation(output_dir):
  """The best exact validation training measured (metrics.jsonl), or None."""
  from lm_trax import run_dir  # pylint: disable=g-import-not-at-top
  records = [r for r in run_dir.MetricsLog.read(output_dir)
             if r.get('kind') == 'valid']
  if not records:
    return None
  # With weight averaging, a record scores both weights (loss: the average;
  # raw_loss: the raw ones) and the best checkpoint kept the better one.
  loss = lambda r: min(r['loss'], r.get('raw_loss', math.inf))
  best = min(records, key=loss)
  return {'step': best['step'], 'loss': loss(best),
          'ppl': math.exp(loss(best))}


def _write(directory, run, config, weights):
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  # Through lm_trax.files, not safetensors' save_file, which creates 0600
  # files: this one takes the umask's permissions, as every other.
  data = safetensors_numpy.save(weights, metadata={'format': exported.FORMAT})
  path = directory / exported.WEIGHTS_FILE
  files.commit({path: files.stage(path, lambda f: f.write(data))})
  run.vocab.save(directory)
  _write_config(directory, config)


def _write_config(directory, config):
  (directory / exported.CONFIG_FILE).write_text(
      json.dumps(config, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')


def _evaluate(directory, splits, data_dir, progress):
  """{split: its numbers} of the exported files, scored without trax."""
  from lm_trax import evaluation  # pylint: disable=g-import-not-at-top
  model = exported.Export(directory)
  results = {}
  for split in splits:
    text = model.corpus(data_dir).text(split)
    result = evaluation.evaluate_text(model, text, split, progress=progress)
    results[split] = {'tokens': result.tokens, 'loss': result.loss,
                      'ppl': result.ppl, 'bpc': result.bpc,
                      'word_ppl': result.word_ppl}
  return results


def model_card(config):
  """The export's README.md: what the model is, its data, numbers, command,
  size, license and how to load it."""
  hyper = config['hyperparameters']
  source = config['source']
  name = pathlib.Path(source['run']).name
  if config['architecture'] == 'RecurrentLM':
    what = (f'{hyper["n_layers"]}-layer {hyper["cell"].upper()} language '
            f'model, {hyper["d_model"]} units'
            + (', tied input and output embeddings' if hyper['tie_weights']
               else ''))
  else:
    what = (f'Bengio et al. 2003 feed-forward language model (NPLM), '
            f'{hyper["n_context"]} words of context')
  corpus = config['corpus'].get('name', '?')
  lines = [
      f'# {name}',
      '',
      f'A {config["level"]}-level {what}, trained with lm_trax on '
      f'`{corpus}`: '
      f'{config["parameters"]:,} parameters, {config["vocab_size"]:,} ids, '
      f'{config["precision"]} matmuls.',
      '',
      '## Numbers',
      '',
      '| split | tokens | loss (nats) | perplexity | bits per character |',
      '|---|---|---|---|---|',
  ]
  for split, r in config['evaluated'].items():
    lines.append(f'| {split} | {r["tokens"]:,} | {r["loss"]:.4f} | '
                 f'{r["ppl"]:.2f} | {_number(r["bpc"])} |')
  lines += [
      '',
      'Scored by `lm-trax-export` on these files, exactly (every token once,'
      ' the state carried through the split; lm_trax.evaluation).',
  ]
  if config.get('validation'):
    v = config['validation']
    lines.append(f'The best exact validation during training: loss '
                 f'{v["loss"]:.4f} (perplexity {v["ppl"]:.2f}) at step '
                 f'{v["step"]:,}.')
  command = source.get('command')
  lines += [
      '',
      '## How it was trained',
      '',
      f'Checkpoint `{source["checkpoint"]}` (step {source["step"]}) of '
      f'the run `{name}`, started {", resumed ".join(map(str, source["trained"]))}'
      f' on {_machine(source.get("machine"))}.',
      '',
      '```',
      _shell_command(command) if command else '(command not recorded)',
      '```',
      '',
      'Every hyperparameter is in `config.json`.',
      '',
      '## Use it',
      '',
      '```python',
      'import lm_trax',
      "lm = lm_trax.load('.')   # this directory; no trax or TensorFlow needed",
      "lm.perplexity(text='the company said\\n').ppl",
      "lm.generate('the company', length=20, seed=0)",
      '```',
      '',
      'or `python -m lm_trax.generate --output_dir . --prompt "the"`, '
      '`python -m lm_trax.score --output_dir . FILE`, '
      '`python -m lm_trax.evaluate --output_dir . --split test`.',
      '',
      '## Files',
      '',
      '- `model.safetensors`: the weights by name, float32:',
  ]
  lines += [f'  `{n}` {tuple(s)}' for n, s in exported.layout(
      config['architecture'], hyper, config['vocab_size'])]
  lines += [
      '- `config.json`: the architecture, every hyperparameter, the corpus '
      'and batching settings, where the weights come from.',
      '- `vocab.json`: the vocabulary, id i is `tokens[i]` (0 is padding).',
  ]
  if config['architecture'] == 'RecurrentLM':
    module_doc, class_doc, options = exported.describe_cell(hyper)
    lines += ['', f'## The {hyper["cell"]} cell', '', '```', module_doc, '',
              class_doc, f'options: {options}', '```']
  lines += [
      '',
      '## License',
      '',
      'The weights are released under the Apache License 2.0, as lm_trax '
      'is; the training data keeps its own license.',
      '',
  ]
  return '\n'.join(lines)


def _shell_command(argv):
  """The recorded command line as one would type it."""
  if argv[0].endswith('.py'):
    argv = ['python'] + list(argv)
  return shlex.join(argv)


def _number(value):
  return '' if value is None or math.isnan(value) else f'{value:.4f}'


def _machine(machine):
  if not machine:
    return 'an unrecorded machine'
  return f'{machine.get("platform", "?")}, {machine.get("cpu_count", "?")} CPUs'


def main(argv=None):
  parser = cli.parser('lm_trax.export', 'Export a trained run: named weights, '
                      'config.json, vocabulary and model card, loadable '
                      'without trax.')
  parser.add_argument('run', help='the run directory of train.py')
  parser.add_argument('out', help='the new export directory')
  parser.add_argument('--checkpoint', default='best',
                      help="'best' (default: the best exact validation loss), "
                      "'latest' or a step number")
  parser.add_argument('--evaluate', default='valid',
                      help='comma-separated splits to score the export on, '
                      'for the model card (default valid; add test once the '
                      'model is final)')
  parser.add_argument('--data_dir', default=None,
                      help="the corpus' data directory (default: "
                      'LM_TRAX_DATA_DIR, else ~/.cache/lm_trax/data)')
  parser.add_argument('--verbose', action='store_true',
                      help='show a traceback on errors')
  args = parser.parse_args(argv)
  process.set_up()
  with errors.reported(args.verbose):
    splits = tuple(s for s in args.evaluate.split(',') if s)
    out = export(args.run, args.out, args.checkpoint, splits, args.data_dir)
    print(f'exported {args.run} to {out}: lm_trax.load({str(out)!r}), or '
          f'--output_dir {out} with evaluate, score and generate',
          file=sys.stderr)


if __name__ == '__main__':
  main()
