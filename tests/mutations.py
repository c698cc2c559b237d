"""Mutation check: realistic bugs, each applied to a copy of lm_trax, must make
the tests written for them fail.

  python tests/mutations.py            # every mutation
  python tests/mutations.py NAME ...   # some of them (--list names them)

For each mutation: copy the repository's lm_trax/, tests/ and gin/ to a
temporary directory, replace the mutation's text in the copy (the text must
occur exactly once, so a mutation that no longer applies is reported, not
silently skipped), and run its tests there with that copy first on
PYTHONPATH. A mutation is `caught` when those tests fail, `SURVIVED` when
they pass. Prints one line per mutation; the exit status is 1 if any
survived or could not be applied.
"""

import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Mutation:
  name: str
  path: str  # Relative to the repository.
  edits: tuple  # ((old text, new text), ...), applied in order.
  tests: tuple  # pytest node ids that must fail.


REG = 'tests/test_regularization.py'
MUTATIONS = (
    Mutation(
        'weight dropping without its 1 / (1 - p) rescale', 'lm_trax/layers.py',
        (('recurrent[name] * mask.astype(jnp.float32) / keep',
          'recurrent[name] * mask.astype(jnp.float32)'),),
        (f'{REG}::test_weight_dropping_uses_one_mask_for_the_whole_sequence',)),
    Mutation(
        'weight dropping with one fixed mask', 'lm_trax/layers.py',
        (('rng = self.rng if index == 0',
          'rng = jax.random.PRNGKey(0) if index == 0'),),
        (f'{REG}::test_weight_dropping_uses_one_mask_for_the_whole_sequence',)),
    Mutation(
        'AR before the output dropout', 'lm_trax/models.py',
        (("      _dropout(rate(output_dropout), variational, mode),\n"
          "      _penalty('ar', activation_reg, mode),",
          "      _penalty('ar', activation_reg, mode),\n"
          "      _dropout(rate(output_dropout), variational, mode),"),),
        (f'{REG}::test_tar_sees_the_raw_states_and_ar_the_dropped_ones',)),
    Mutation(
        'NT-ASGD averages the weights before each step', 'lm_trax/loop.py',
        (('    loss, stats = super()._run_one_step(task_index, task_changed)\n',
          '    if self._average.started:\n'
          '      self._average.add(trax_internals.trainers(self)[task_index]'
          '.accelerated_model_with_loss.weights[0])\n'
          '    loss, stats = super()._run_one_step(task_index, task_changed)\n'),
         ('      self._average.add(trainer.accelerated_model_with_loss'
          '.weights[0])', '      pass'),),
        (f'{REG}::test_nt_asgd_averages_the_iterates_after_the_trigger',)),
    Mutation(
        'NT-ASGD triggers on a tie', 'lm_trax/averaging.py',
        (('if losses[k] > min(', 'if losses[k] >= min('),),
        (f'{REG}::test_the_trigger_fires_exactly_when_the_non_monotone_'
         'condition_holds',)),
    Mutation(
        'tail averaging includes the iterate of its start step',
        'lm_trax/loop.py',
        (('self.step > self._average_from_step)',
          'self.step >= self._average_from_step)'),),
        (f'{REG}::test_tail_averaging_averages_the_iterates_after_its_start',)),
    Mutation(
        'the best checkpoint always keeps the average', 'lm_trax/loop.py',
        (('self._best_is_averaged = raw is not None and chosen is result',
          'self._best_is_averaged = True'),),
        (f'{REG}::test_the_best_checkpoint_keeps_the_better_of_raw_and_'
         'averaged',)),
    Mutation(
        "dynamic evaluation's decay pushes away from the trained weights",
        'lm_trax/adaptation.py',
        (('g, w0: w - lr * g + decay * (w0 - w)',
          'g, w0: w - lr * g - decay * (w0 - w)'),
         ('jnp.minimum(decay * rate, 1.0) * (w0 - w)',
          'jnp.minimum(decay * rate, 1.0) * (w - w0)')),
        ('tests/test_adaptation.py::test_dynamic_evaluation_is_its_update_'
         'rule_replayed_segment_by_segment',)),
    Mutation(
        "the rule 'rms' sums the squared gradients", 'lm_trax/adaptation.py',
        (('jnp.sqrt(s / n_batches)', 'jnp.sqrt(s)'),),
        ('tests/test_adaptation.py::test_gradient_statistics_are_the_rms_of_'
         'the_batch_gradients',)),
    Mutation(
        'the logged perplexity is 2 ** loss', 'lm_trax/loop.py',
        (('np.exp(min(loss, 50.0))', 'np.exp2(min(loss, 50.0))'),),
        ('tests/test_seeing_a_run.py::test_every_logged_perplexity_is_e_to_'
         'the_loss',)),
    Mutation(
        '--checkpoint best loads the latest', 'lm_trax/checkpoints.py',
        (('  if text in (LATEST, BEST):\n    return text',
          '  if text in (LATEST, BEST):\n    return LATEST'),),
        ('tests/test_evaluate.py::test_the_best_checkpoint_scores_the_best_'
         'logged_validation_loss',)),
    Mutation(
        'character PTB in bits per file character', 'lm_trax/vocab.py',
        (('self.spelled = _spells_text(level, self.tokens)',
          'self.spelled = False'),),
        ('tests/test_evaluate.py::test_character_ptb_reports_bits_per_symbol_'
         'and_ptb_words',)),
    Mutation(
        "a variable window's rate taken from the next step's length",
        'lm_trax/data.py',
        (('divmod(int(step) - 1, self.steps_per_pass)',
          'divmod(int(step), self.steps_per_pass)'),),
        ('tests/test_data.py::test_the_rate_of_each_step_is_scaled_by_its_'
         'window_length',)),
    Mutation(
        'an exported model without its output bias', 'lm_trax/exported.py',
        (("    logits = (logits + weights['output.bias']).reshape(",
          "    logits = (logits + 0 * weights['output.bias']).reshape("),),
        ('tests/test_export.py::test_exported_lstm_is_the_documented_layout',)),
    Mutation(
        'progress counted when a call is queued, not computed',
        'lm_trax/inference.py',
        (('      jax.block_until_ready(result)\n', ''),),
        ('tests/test_evaluate.py::test_progress_counts_a_call_once_it_is_'
         'computed',)),
    Mutation(
        'Ctrl-C in a command left to a traceback', 'lm_trax/errors.py',
        (('  except KeyboardInterrupt:\n    exit_interrupted(verbose)\n',
          ''),),
        ('tests/test_reliability.py::test_ctrl_c_in_a_command_is_one_line_'
         'and_the_sigint_status',)),
)


def _mutated_copy(mutation, root):
  """Copies what the tests need into root and applies the mutation there."""
  ignore = shutil.ignore_patterns('__pycache__', '*.egg-info')
  for folder in ('lm_trax', 'tests', 'gin', 'docs'):
    shutil.copytree(REPO / folder, root / folder, ignore=ignore)
  for name in ('pytest.ini', 'train.py', 'setup.py', 'README.md'):
    shutil.copy(REPO / name, root / name)
  path = root / mutation.path
  text = path.read_text()
  for old, new in mutation.edits:
    if text.count(old) != 1:
      return f'{old.strip()[:60]!r} occurs {text.count(old)} times'
    text = text.replace(old, new)
  path.write_text(text)
  return None


def run_one(mutation):
  """('caught' | 'SURVIVED' | 'not applied: ...' | 'error ...', seconds)."""
  started = time.time()
  with tempfile.TemporaryDirectory(prefix='lm_trax_mutation_') as tmp:
    root = pathlib.Path(tmp)
    problem = _mutated_copy(mutation, root)
    if problem:
      return f'not applied: {problem}', time.time() - started
    env = dict(os.environ, PYTHONPATH=str(root))
    where = subprocess.run(
        [sys.executable, '-c', 'import lm_trax; print(lm_trax.__file__)'],
        cwd=root, env=env, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(root)):
      return f'error (the copy is not imported: {where!r})', 0.0
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-x', *mutation.tests],
        cwd=root, env=env, capture_output=True, text=True)
  seconds = time.time() - started
  if done.returncode == 1:
    return 'caught', seconds
  if done.returncode == 0:
    return 'SURVIVED', seconds
  last = (done.stdout + done.stderr).strip().splitlines()[-1:]
  return f'error (pytest exit {done.returncode}: {last})', seconds


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('names', nargs='*', help='mutations to run (default: '
                      'all); a name matches if it contains the text given')
  parser.add_argument('--list', action='store_true', help='list and exit')
  args = parser.parse_args(argv)
  chosen = [m for m in MUTATIONS
            if not args.names or any(n in m.name for n in args.names)]
  if args.list or not chosen:
    print('\n'.join(m.name for m in MUTATIONS))
    return 0 if args.list else 2
  failures = 0
  for mutation in chosen:
    outcome, seconds = run_one(mutation)
    failures += outcome != 'caught'
    print(f'{outcome:<9} {seconds:6.1f} s  {mutation.name}', flush=True)
  print(f'{len(chosen) - failures} of {len(chosen)} mutations caught')
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
