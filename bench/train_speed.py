"""Training tokens/s: lm_trax's train.py vs PyTorch's word_language_model.

  python bench/train_speed.py [--config ptb_lstm|ptb_gru|all] [--repeats R]
                              [--window S] [--warmup S] [--log_every N]
                              [--precision float32|bfloat16|float32,bfloat16]
                              [--no_trax] [--data_dir DIR] [--json FILE]
  python bench/train_speed.py --lm_trax_only --config CONFIG [...]
  python bench/train_speed.py --breakdown [--config ...] [--repeats R]
                              [--precision ...]

Prints the speed table of docs/speed.md. For each config, each measurement is a
process of its own, started fresh, the columns taking turns (lm_trax,
PyTorch, plain trax, lm_trax, PyTorch, ...) R times, so that a change in the
machine's load hits all alike; each column is reported as its median over the
R processes and its spread (min-max):

  lm_trax:  `python train.py --gin_file=gin/<config>.gin` as a user runs it
            (real PTB, its data pipeline, Loop and logging), into a temporary
            --output_dir, with `train.log_every = N` so that it prints its
            training line (tokens/s over training time) every N steps. The
            first line (compilation) and then at least --warmup seconds of
            lines are skipped; the lines of the next --window seconds are
            the measurement (their tokens / their training seconds); then
            the process is stopped.
  PyTorch:  bench/word_language_model.py: pytorch/examples'
            word_language_model written again (seq-first nn.LSTM / nn.GRU,
            its batchify/get_batch over PTB's train split, its training loop
            and manual SGD), torch's default threads; it imports neither JAX
            nor TensorFlow (its process reports sys.modules: checked). Same
            sizes, batch (20 x 20), learning rate and clipping as the config.
  plain trax (unless --no_trax): bench/trax_steps.py in its own process:
            lm_trax's model and stock trax's of the same sizes, each a trax
            Loop step on synthetic batches without data or logging, timed
            over the same windows. Their ratio is what lm_trax's layers gain
            over trax's; the step is not train.py's number.

--precision (default float32) picks the number format of lm_trax's matmuls
(lm_trax.precision), one lm_trax column per precision listed, each beside
its PyTorch peer:

  float32:   the columns above.
  bfloat16:  train.py with --gin_bindings="train.precision='bfloat16'", and
             lm_trax's synthetic step in bfloat16 (plain trax has no such
             option: it stays float32); its PyTorch peer, "PyTorch bf16
             autocast", is word_language_model.py --autocast in a process of
             its own: the same model, its forward pass and loss under
             torch.autocast('cpu', dtype=torch.bfloat16).

On a CPU without bfloat16 units (the header says which it has, from
/proc/cpuinfo), bfloat16 matmuls are emulated and slower than float32's.

This process imports none of JAX, TensorFlow or torch: versions come from the
installed packages' metadata. The table says the date, the CPU, its bfloat16
units and cores, the load average before and after, and how many cores were
busy in the 3 s before it started (publish nothing measured while anything
else runs: the table warns at >= 0.25 cores; the load average also counts
what ran in the last minutes).
--breakdown runs `bench/trax_steps.py --breakdown`: where the time of an
lm_trax LSTM / GRU step goes (in each --precision), and the CPU's matmul
throughput in float32 and bfloat16 at the model's shapes.
--lm_trax_only times train.py alone, for any gin/<CONFIG>.gin (e.g. the
regularized ptb_lstm_tied, which pytorch/examples has no peer for).
"""

import argparse
import dataclasses
from importlib import metadata
import json
import os
import pathlib
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import machine
from lm_trax import cli
from lm_trax import download

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH = REPO / 'bench'

# The PyTorch peer's settings for each config: gin/recipes/zaremba_small.gin
# (2 x 200, batch 20 x 20, SGD) and the config's learning rate and gradient
# norm clip (tests/test_bench.py checks them against gin).
PEERS = {
    'ptb_lstm': {'model': 'LSTM', 'lr': 20.0, 'clip': 0.25},
    'ptb_gru': {'model': 'GRU', 'lr': 10.0, 'clip': 0.1},
}
PEER_COMMON = {'emsize': 200, 'nhid': 200, 'nlayers': 2,
               'batch_size': 20, 'bptt': 20, 'dropout': 0.0}
# The PyTorch column beside lm_trax's in each precision (lm_trax.precision).
TORCH_COLUMNS = {'float32': 'PyTorch word_language_model',
                 'bfloat16': 'PyTorch bf16 autocast'}

# train.py's training line (lm_trax/loop.py _log_training_line).
TRAINING_LINE = re.compile(
    r'^step\s+(\d+)/\d+ \| train loss (\S+) .*\| ([\d,.]+) tok/s \|')
BUSY_CORES = 0.25  # Cores' worth of CPU busy before the run: too many to publish.
CHILD_TIMEOUT = 900  # Seconds: a stuck child fails the benchmark.


class BenchError(Exception):
  """A measurement failed; the message says which and why."""


@dataclasses.dataclass
class Settings:
  data_dir: pathlib.Path
  warmup: float
  window: float
  log_every: int


def precision_list(text):
  """--precision's value: 'float32', 'bfloat16' or both, comma-separated,
  as a tuple in the order given."""
  names = tuple(dict.fromkeys(name.strip() for name in text.split(',')))
  unknown = [name for name in names if name not in cli.PRECISIONS]
  if unknown or not names:
    raise argparse.ArgumentTypeError(
        f'{text!r}: give {" or ".join(cli.PRECISIONS)}, or both separated by '
        'a comma')
  return names


def key(name, precision):
  """A measurement's name in the results: `name` for float32 (as before
  precisions existed), `name_bfloat16` for bfloat16."""
  return name if precision == 'float32' else f'{name}_{precision}'


def missing_ptb(data_dir):
  """None if data_dir holds PTB's train split, else the message saying how
  to get it."""
  data_dir = pathlib.Path(data_dir)
  if (data_dir / 'ptb' / 'ptb.train.txt').is_file():
    return None
  # The command downloads into lm_trax's data directory unless told another.
  elsewhere = ('' if data_dir == download.default_data_dir() else
               f' --data_dir {data_dir}')
  return (f'no PTB in {data_dir}/ptb: get it with `python -m lm_trax.download '
          f'ptb{elsewhere}`, or point {download.ENV_VAR} (or --data_dir) at '
          'a data directory that has it')


# lm_trax: train.py -----------------------------------------------------------

def train_py_command(config, output_dir, log_every, precision='float32'):
  """train.py's command line for the config, in precision."""
  command = [sys.executable, 'train.py', f'--gin_file=gin/{config}.gin',
             f'--output_dir={output_dir}',
             f'--gin_bindings=train.log_every = {log_every}']
  if precision != 'float32':
    command.append(f"--gin_bindings=train.precision = '{precision}'")
  return command


def lm_trax_train_py(config, settings, precision='float32'):
  """tokens/s of `python train.py --gin_file=gin/<config>.gin` over a window
  of its training lines (see the module docstring), with the window's steps
  and the seconds from its start to its first training line."""
  with tempfile.TemporaryDirectory(prefix='lm_trax_bench_') as tmp:
    command = train_py_command(config, f'{tmp}/run', settings.log_every,
                               precision)
    env = dict(os.environ, LM_TRAX_DATA_DIR=str(settings.data_dir))
    with open(pathlib.Path(tmp) / 'stderr', 'w+', encoding='utf-8') as err:
      started = time.time()
      process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=err)
      try:
        return _read_window(process, settings, started)
      except BenchError as e:
        err.seek(0)
        tail = ''.join(err.readlines()[-15:])
        raise BenchError(f'{" ".join(command)}: {e}\n{tail}') from None
      finally:
        process.kill()
        process.wait()


def _read_window(process, settings, started):
  lines = queue.Queue()

  def read():
    for line in process.stdout:
      lines.put(line)
    lines.put(None)
  threading.Thread(target=read, daemon=True).start()
  deadline = time.time() + CHILD_TIMEOUT
  seen, last_step = [], 0
  warm_since = window_since = None
  window = []  # (steps, tok/s) of each line in the window.
  while True:
    try:
      line = lines.get(timeout=max(0.1, deadline - time.time()))
    except queue.Empty:
      raise BenchError(f'no result after {CHILD_TIMEOUT} s') from None
    if line is None:
      raise BenchError(f'exited (status {process.wait()}) before the window '
                       'ended; its output:\n' + ''.join(seen[-10:]))
    seen.append(line)
    match = TRAINING_LINE.match(line)
    if not match:
      continue
    now = time.time()
    step, loss = int(match.group(1)), float(match.group(2))
    tokens_per_sec = float(match.group(3).replace(',', ''))
    steps, last_step = step - last_step, step
    if warm_since is None:  # The first line: compilation.
      warm_since = now
      first_line_seconds = now - started
    elif window_since is None:
      if now - warm_since >= settings.warmup:
        window_since = now  # The window starts after this line.
    else:
      window.append((steps, tokens_per_sec))
      if now - window_since >= settings.window:
        # Each line's tokens/s is its tokens over its training seconds; the
        # window's is the sum of tokens over the sum of seconds.
        n_steps = sum(s for s, _ in window)
        rate = n_steps / sum(s / r for s, r in window)
        return {'tokens_per_sec': rate, 'steps': n_steps,
                'lines': len(window), 'last_step': step, 'loss': loss,
                'window_seconds': now - window_since,
                'first_line_seconds': first_line_seconds}


# PyTorch: bench/word_language_model.py, and the trax step ---------------------

def json_child(command, name, env=None):
  """Runs a child that prints one JSON line last; its dict."""
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=CHILD_TIMEOUT, check=False, env=env)
  lines = done.stdout.strip().splitlines()
  if done.returncode or not lines:
    raise BenchError(f'{name} failed (status {done.returncode}): '
                     f'{" ".join(command)}\n{done.stderr[-2000:]}')
  return json.loads(lines[-1])


def torch_child(command, name):
  """Runs a bench/word_language_model.py command; its report, checked to
  come from a process that imported neither JAX nor TensorFlow."""
  result = json_child(command, name)
  imported = [m for m, present in result['modules'].items() if present]
  if imported:
    raise BenchError(f'the PyTorch process imported {imported}')
  return result


def torch_command(config, settings, precision='float32'):
  """word_language_model.py's command line, the peer of the config's
  train.py in precision (bfloat16: under autocast)."""
  options = dict(PEER_COMMON, **PEERS[config], warmup=settings.warmup,
                 window=settings.window)
  command = [sys.executable, str(BENCH / 'word_language_model.py'),
             '--data', str(settings.data_dir / 'ptb')]
  for name, value in options.items():
    command += [f'--{name}', str(value)]
  if precision == 'bfloat16':
    command.append('--autocast')
  return command


def torch_word_language_model(config, settings, precision='float32'):
  return torch_child(torch_command(config, settings, precision),
                     f'the {TORCH_COLUMNS[precision]}')


def _this_checkout():
  """The environment for a bench/ script: it imports the lm_trax of this
  checkout, as train.py (run from it) does."""
  return dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))


def trax_steps(config, settings, precisions=('float32',)):
  command = [sys.executable, str(BENCH / 'trax_steps.py'), '--config', config,
             '--warmup', str(settings.warmup), '--window',
             str(settings.window), '--precision', ','.join(precisions)]
  result = json_child(command, 'bench/trax_steps.py', _this_checkout())
  if result['modules'].get('torch'):
    raise BenchError('the trax process imported torch')
  return result


# The table ------------------------------------------------------------------

def measure(configs, repeats, settings, with_trax, progress=sys.stderr,
            with_torch=True, precisions=('float32',)):
  """{config: {'lm_trax': [tok/s...], 'torch': [...], 'lm_trax_step': [...],
  'plain_trax_step': [...], 'first_line_seconds': [train.py's start-up]},
  '_torch': the last PyTorch child's report (None without torch)}: the keys
  of float32; bfloat16's are the same with '_bfloat16' appended (`key`),
  e.g. 'lm_trax_bfloat16' and 'torch_bfloat16' (PyTorch bf16 autocast), and
  a config's 'autocast_dtypes' say what its autocast process ran in which
  dtype; plain trax's step is float32 only."""
  names = ('lm_trax', 'torch', 'lm_trax_step', 'first_line_seconds')
  results = {c: {key(name, p): [] for p in precisions for name in names}
             for c in configs}
  for c in configs:
    results[c]['plain_trax_step'] = []
  reports = {p: None for p in precisions}
  for repeat in range(repeats):
    for config in configs:
      r = results[config]
      started = time.time()
      done = []
      for p in precisions:
        ours = lm_trax_train_py(config, settings, p)
        r[key('lm_trax', p)].append(ours['tokens_per_sec'])
        r[key('first_line_seconds', p)].append(ours['first_line_seconds'])
        done.append(f'lm_trax{_label(p, precisions)} '
                    f'{r[key("lm_trax", p)][-1]:,.0f}')
        if with_torch:
          reports[p] = torch_word_language_model(config, settings, p)
          r[key('torch', p)].append(reports[p]['tokens_per_sec'])
          if reports[p]['autocast_dtypes']:
            r['autocast_dtypes'] = reports[p]['autocast_dtypes']
          done.append(f'{TORCH_COLUMNS[p]} {r[key("torch", p)][-1]:,.0f}')
      if with_trax:
        steps = trax_steps(config, settings, precisions)
        for p in precisions:
          r[key('lm_trax_step', p)].append(steps[key('lm_trax', p)])
        r['plain_trax_step'].append(steps['plain_trax'])
        done.append('steps ' + ' / '.join(
            f'{r[key("lm_trax_step", p)][-1]:,.0f}' for p in precisions)
                    + f' / {r["plain_trax_step"][-1]:,.0f}')
      print(f'{config} run {repeat + 1}/{repeats}: {", ".join(done)} tok/s '
            f'({time.time() - started:.0f} s)', file=progress, flush=True)
  for p in precisions:
    results[key('_torch', p)] = reports[p]
  return results


def _label(precision, precisions):
  """' bfloat16' after a column's name, or '' when the table has float32
  alone (its columns named as before precisions existed)."""
  return '' if precisions == ('float32',) else f' {precision}'


def _ratio_header(precision, precisions):
  """The header of lm_trax's column over its PyTorch peer's."""
  if precision == 'float32':
    return f'lm_trax{_label(precision, precisions)} / PyTorch'
  return f'lm_trax {precision} / PyTorch bf16'


def cell(values):
  """'9,512 (9,400-9,600)': median (min-max)."""
  return (f'{statistics.median(values):,.0f} '
          f'({min(values):,.0f}-{max(values):,.0f})')


def ratio(numerator, denominator):
  return f'{statistics.median(numerator) / statistics.median(denominator):.2f}x'


def package_version(package):
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return 'not installed'


def print_table(results, configs, repeats, settings, load_before, load_after,
                with_trax, busy_before=None, out=sys.stdout,
                precisions=('float32',)):
  reports = {p: results.get(key('_torch', p)) for p in precisions}
  torch_report = next((r for r in reports.values() if r is not None), None)
  load = lambda avg: ' '.join(f'{x:.2f}' for x in avg)
  print('Training speed, tokens/s: median (min-max) of '
        f'{repeats} processes per column, taking turns; windows of '
        f'>= {settings.window:g} s after compilation and >= '
        f'{settings.warmup:g} s of warm-up', file=out)
  print(f'date: {time.strftime("%Y-%m-%d %H:%M %Z")}', file=out)
  print(f'machine: {machine.cpu_name()} ({machine.bf16_text()}), '
        f'{os.cpu_count()} cores; load average '
        f'(1, 5, 15 min) before {load(load_before)}, after '
        f'{load(load_after)}' + (
            '' if busy_before is None else
            f'; busy in the 3 s before: {busy_before:.2f} cores'), file=out)
  torch_line = ('not run' if torch_report is None else
                f'{torch_report["torch"]} ({torch_report["threads"]} threads, '
                f'{torch_report["interop_threads"]} inter-op; environment: '
                f'{torch_report["env"] or "no OMP_/MKL_ variables"})')
  print(f'versions: Python {platform.python_version()}, jax '
        f'{package_version("jax")}, jaxlib {package_version("jaxlib")}, '
        f'trax {package_version("trax")}, tensorflow '
        f'{package_version("tensorflow")}, torch {torch_line}; '
        f'LM_TRAX_MALLOC {os.environ.get("LM_TRAX_MALLOC") or "unset"}',
        file=out)
  if busy_before is not None and busy_before >= BUSY_CORES:
    print(f'WARNING: {busy_before:.2f} cores were busy before the run: '
          'something else was running; do not publish these figures',
          file=out)
  print(file=out)
  header = ['config']
  for p in precisions:
    header.append(f'lm_trax train.py{_label(p, precisions)}')
    if reports[p] is not None:
      header += [TORCH_COLUMNS[p], _ratio_header(p, precisions)]
  if with_trax:
    header += [f'lm_trax step{_label(p, precisions)}, synthetic'
               for p in precisions]
    header.append('plain trax step, synthetic')
    header += [f'lm_trax{_label(p, precisions)} / plain trax'
               for p in precisions]
  print('| ' + ' | '.join(header) + ' |', file=out)
  print('|' + '---|' * len(header), file=out)
  for config in configs:
    r = results[config]
    row = [config]
    for p in precisions:
      row.append(cell(r[key('lm_trax', p)]))
      if reports[p] is not None:
        row += [cell(r[key('torch', p)]),
                ratio(r[key('lm_trax', p)], r[key('torch', p)])]
    if with_trax:
      row += [cell(r[key('lm_trax_step', p)]) for p in precisions]
      row.append(cell(r['plain_trax_step']))
      row += [ratio(r[key('lm_trax_step', p)], r['plain_trax_step'])
              for p in precisions]
    print('| ' + ' | '.join(row) + ' |', file=out)
  print(file=out)
  print('lm_trax: python train.py --gin_file=gin/<config>.gin (train.log_every '
        f'= {settings.log_every})' + ('' if torch_report is None else
        '; PyTorch: python bench/word_language_model.py (batch 20, bptt 20, '
        '2 x 200, lr 20 / clip 0.25 LSTM, 10 / 0.1 GRU, dropout 0); the '
        'ratio is of the medians'), file=out)
  if 'bfloat16' in precisions:
    print("bfloat16: train.py with --gin_bindings=\"train.precision="
          "'bfloat16'\" (bfloat16 matmul operands, float32 sums; weights, "
          'state and loss float32)' + ('' if reports['bfloat16'] is None else
          "; PyTorch bf16 autocast: word_language_model.py --autocast (its "
          "forward pass and loss under torch.autocast('cpu', "
          "dtype=torch.bfloat16))") +
          ('; plain trax stays float32 (it has no precision option)'
           if with_trax else ''), file=out)
    for config in configs:
      if 'autocast_dtypes' in results[config]:
        print(f'{config}: PyTorch bf16 autocast ran '
              f'{_autocast_note(results[config]["autocast_dtypes"])}',
              file=out)
  for config in configs:
    for p in precisions:
      seconds = results[config][key('first_line_seconds', p)]
      print(f'{config}{_label(p, precisions)}: train.py from its start to '
            'its first training line (imports, corpus, vocabulary, model, '
            f'compilation, {settings.log_every} steps): '
            f'{statistics.median(seconds):.1f} s '
            f'({min(seconds):.1f}-{max(seconds):.1f})', file=out)
  out.flush()


def _autocast_note(dtypes):
  """'the decoder in bfloat16, the RNN in float32 (...)': what autocast ran
  in which dtype (word_language_model.py's autocast_dtypes)."""
  note = f"the decoder in {dtypes['decoder']}, the RNN in {dtypes['rnn']}"
  if dtypes['rnn_outside_autocast']:
    note += (" (kept out of autocast: this CPU's oneDNN has no bfloat16 "
             'kernel for it)')
  return note


def build_parser():
  """The command line's parser (its defaults read when it is built)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='all',
                      help=f'one of {", ".join(PEERS)} or all (default); with '
                      '--lm_trax_only, any gin/<CONFIG>.gin')
  parser.add_argument('--repeats', type=int, default=3,
                      help='processes per column and config (default 3)')
  parser.add_argument('--window', type=float, default=30.0,
                      help='seconds timed in each process (default 30)')
  parser.add_argument('--warmup', type=float, default=10.0,
                      help='seconds of training after compilation before '
                      'the window (default 10)')
  parser.add_argument('--log_every', type=int, default=50,
                      help="train.py's train.log_every: the window is made "
                      'of whole lines of this many steps (default 50)')
  parser.add_argument('--precision', type=precision_list,
                      default=('float32',),
                      help="lm_trax's matmuls in float32 (default), bfloat16 "
                      '(train.precision, beside PyTorch under bfloat16 '
                      'autocast), or float32,bfloat16: both, in one table')
  parser.add_argument('--no_trax', action='store_true',
                      help='leave out the synthetic trax step columns')
  parser.add_argument('--data_dir', type=pathlib.Path,
                      default=download.default_data_dir(),
                      help="holds ptb/ptb.train.txt (default: lm_trax's data "
                      f'directory, ${download.ENV_VAR} else '
                      '~/.cache/lm_trax/data)')
  parser.add_argument('--lm_trax_only', action='store_true',
                      help='time train.py only (no PyTorch or trax column)')
  parser.add_argument('--json', type=pathlib.Path,
                      help='also write the measurements to this file')
  parser.add_argument('--breakdown', action='store_true',
                      help='instead, where the time of an lm_trax step goes '
                      '(bench/trax_steps.py --breakdown)')
  return parser


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  configs = tuple(PEERS) if args.config == 'all' else (args.config,)
  if args.lm_trax_only:
    args.no_trax = True
    if not all((REPO / 'gin' / f'{c}.gin').is_file() for c in configs):
      parser.error(f'no gin/{args.config}.gin')
  elif not set(configs) <= set(PEERS):
    parser.error(f'--config: {args.config} has no PyTorch peer (one of '
                 f'{", ".join(PEERS)}, all, or --lm_trax_only)')
  if args.breakdown:
    for config in configs:
      subprocess.run([sys.executable, str(BENCH / 'trax_steps.py'),
                      '--breakdown', '--config', config, '--repeats',
                      str(args.repeats), '--precision',
                      ','.join(args.precision)], cwd=REPO,
                     env=_this_checkout(), check=True)
    return
  if missing_ptb(args.data_dir):
    parser.error(missing_ptb(args.data_dir))
  if package_version('torch') == 'not installed' and not args.lm_trax_only:
    parser.error('torch is not installed: pip install torch==2.13.0 (or the '
                 "package's bench extra)")
  settings = Settings(args.data_dir.resolve(), args.warmup, args.window,
                      args.log_every)
  busy_before = machine.busy_cores()
  load_before = os.getloadavg()
  try:
    results = measure(configs, args.repeats, settings, not args.no_trax,
                      with_torch=not args.lm_trax_only,
                      precisions=args.precision)
  except BenchError as e:
    sys.exit(f'error: {e}')
  load_after = os.getloadavg()
  print_table(results, configs, args.repeats, settings, load_before,
              load_after, not args.no_trax, busy_before,
              precisions=args.precision)
  if args.json:
    args.json.write_text(json.dumps(
        {'results': results, 'load_before': load_before,
         'busy_cores_before': busy_before,
         'load_after': load_after, 'settings': {
             'warmup': args.warmup, 'window': args.window,
             'log_every': args.log_every, 'repeats': args.repeats,
             'precisions': list(args.precision)}},
        indent=1) + '\n')


if __name__ == '__main__':
  main()
