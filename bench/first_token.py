"""Time from typing a generate command to its first sample: an exported model
(plain JAX) against the run directory it came from (trax and TensorFlow).

  python bench/first_token.py --run RUN --export OUT [--repeats 3]

Each repeat starts `python -m lm_trax.generate --output_dir DIR --prompt P
--length 20` in a fresh process, for the export and for the run in turn,
and times it from the start of the process to its exit (the sample is
printed at the end); medians over the repeats. JAX's persistent compilation
cache is measured both ways: 'cold' with a new, empty cache directory per
process (what a first use pays), 'warm' with one shared directory that an
untimed first call filled (every later use). The header names the CPU, its
bfloat16 units and how busy the cores were just before.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import machine


def _generate_seconds(directory, cache_dir, prompt):
  """Wall seconds of one generate command in a fresh process."""
  env = dict(os.environ, LM_TRAX_JAX_CACHE=cache_dir)
  started = time.perf_counter()
  subprocess.run([sys.executable, '-m', 'lm_trax.generate', '--output_dir',
                  str(directory), '--prompt', prompt, '--length', '20',
                  '--seed', '1'], env=env, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return time.perf_counter() - started


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--run', required=True, help='a run directory')
  parser.add_argument('--export', required=True,
                      help='the model exported from it (lm-trax-export)')
  parser.add_argument('--prompt', default='the stock')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  busy = machine.busy_cores()
  print(f'{machine.cpu_name()}, {os.cpu_count()} cores, bf16 units: '
        f'{", ".join(machine.bf16_units()) or "none"}; '
        f'{busy:.1f} cores busy before the start; '
        f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')
  targets = {'export': args.export, 'run': args.run}
  with tempfile.TemporaryDirectory() as root:
    warm = {name: os.path.join(root, f'warm-{name}') for name in targets}
    for name, directory in targets.items():  # Fills the warm caches.
      _generate_seconds(directory, warm[name], args.prompt)
    seconds = {(name, kind): [] for name in targets for kind in ('cold',
                                                                 'warm')}
    for repeat in range(args.repeats):  # Taking turns.
      for name, directory in targets.items():
        cold = os.path.join(root, f'cold-{name}-{repeat}')
        seconds[name, 'cold'].append(
            _generate_seconds(directory, cold, args.prompt))
        seconds[name, 'warm'].append(
            _generate_seconds(directory, warm[name], args.prompt))
  print(f'{"model":8} {"cache":6} {"median s":>9}  all (s)')
  for (name, kind), values in seconds.items():
    print(f'{name:8} {kind:6} {statistics.median(values):9.2f}  '
          + ' '.join(f'{v:.2f}' for v in values))


if __name__ == '__main__':
  main()
