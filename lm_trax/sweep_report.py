"""A sweep's report: results.csv, results.md and curves.png.

One row per point, from its metrics records (run_dir.MetricsLog) and its
status.json. Reading them needs neither trax nor TensorFlow.
"""

import csv
import math
import pathlib
import statistics

from lm_trax import plot
from lm_trax import run_dir
from lm_trax import sweep_grid
from lm_trax import sweep_run


def validation_kind(records_per_point):
  """'valid' (exact, whole split) if any point has such records, else 'eval'."""
  return ('valid' if any(r['kind'] == 'valid' for records in records_per_point
                         for r in records) else 'eval')


def summarize(point, records, status, valid_kind):
  """One point's row of the table, from its metrics records and status.

  Returns:
    A dict: name, bindings ({param: value text}), status, steps,
    final_train_loss, best_valid_ppl, final_valid_ppl (of the `valid_kind`
    records), tokens_per_sec (median over the train records), wall_time_s,
    error; None where there is no record yet. With weight averaging the
    best is over raw and averaged scores (what checkpoints/best keeps), the
    final one the averaged weights' (the latest checkpoint's).
  """
  valid = [r['ppl'] for r in records if r['kind'] == valid_kind]
  best = [min(r['ppl'], math.exp(r.get('raw_loss', math.inf)))
          for r in records if r['kind'] == valid_kind]
  train = [r for r in records if r['kind'] == 'train']
  speeds = [r['tokens_per_sec'] for r in train if 'tokens_per_sec' in r]
  return {
      'name': point.name,
      'bindings': dict(point.assignments),
      'status': status['status'],
      'steps': max((r['step'] for r in records), default=None),
      'final_train_loss': train[-1]['loss'] if train else None,
      'best_valid_ppl': min(best) if best else None,
      'final_valid_ppl': valid[-1] if valid else None,
      'tokens_per_sec': statistics.median(speeds) if speeds else None,
      'wall_time_s': status.get('wall_time'),
      'error': status.get('error') or '',
  }


CSV_COLUMNS = ('status', 'steps', 'final_train_loss', 'best_valid_ppl',
               'final_valid_ppl', 'tokens_per_sec', 'wall_time_s', 'error')

VALID_KIND_NOTES = {
    'valid': 'exact, over the whole validation split (`valid` records)',
    'eval': ("trax's sampled-window eval (`eval` records: "
             '`train.n_eval_batches` windows, each from a zero state; noisy '
             'and pessimistic); these runs have no exact `valid` records'),
}


CURVES_TITLES = {
    'valid': 'validation perplexity (exact, whole split)',
    'eval': 'validation perplexity (sampled-window eval)',
}


def _csv_point_columns(sweep):
  """results.csv's first columns: the name, then every grid param's value
  (a named point's own bindings in a points sweep)."""
  if sweep.named_points is not None:
    return ['name', 'bindings']
  return ['name'] + [param for param, _ in sweep.grid]


def _csv_point_cells(sweep, row):
  if sweep.named_points is not None:
    return [row['name'], '; '.join(sweep.own_bindings(row['name']))]
  return [row['name']] + [row['bindings'][param] for param, _ in sweep.grid]


def write_csv(path, sweep, valid_kind, rows):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(_csv_point_columns(sweep) + list(CSV_COLUMNS) +
                    ['valid_from'])
    for row in rows:
      writer.writerow(_csv_point_cells(sweep, row) +
                      ['' if row[c] is None else row[c] for c in CSV_COLUMNS]
                      + [valid_kind])


def _cell(value, spec):
  return '-' if value is None else format(value, spec)


def _display_path(path):
  try:
    return str(pathlib.Path(path).relative_to(pathlib.Path.cwd()))
  except ValueError:
    return str(path)


def _shared_bindings(sweep):
  """The bindings every point has: --gin_bindings, then one-value params
  (all of every_point's in a points sweep)."""
  varying = ([] if sweep.named_points is not None else
             sweep_grid.varying_params(sweep.grid))
  return sweep.bindings + [f'{param} = {values[0]}' for param, values
                           in sweep.grid if param not in varying]


def _table_point_columns(sweep):
  """results.md's first columns: the swept values, or in a points sweep the
  point's name and its own bindings."""
  if sweep.named_points is not None:
    return ['point', 'bindings']
  return sweep_grid.varying_params(sweep.grid)


def _table_point_cells(sweep, row):
  if sweep.named_points is not None:
    own = ', '.join(f'`{b}`' for b in sweep.own_bindings(row['name']))
    return [row['name'], own or '-']
  return [row['bindings'][param]
          for param in sweep_grid.varying_params(sweep.grid)]


def markdown_table(sweep, valid_kind, rows):
  """The results as Markdown: what was swept, the table, failed points."""
  fixed = _shared_bindings(sweep)
  gin_files = ' '.join(_display_path(path) for path in sweep.gin_files)
  with_fixed = ' with ' + ', '.join(f'`{b}`' for b in fixed) if fixed else ''
  header = _table_point_columns(sweep) + [
      'best valid ppl', 'final valid ppl', 'final train loss', 'steps',
      'wall time', 'tokens/s', 'status']
  lines = [
      f'{len(rows)} points, each `{gin_files}`{with_fixed}.',
      f'Validation perplexity: {VALID_KIND_NOTES[valid_kind]}.',
      '',
      '| ' + ' | '.join(header) + ' |',
      '|' + '---|' * len(header),
  ]
  for row in rows:
    cells = _table_point_cells(sweep, row) + [
        _cell(row['best_valid_ppl'], '.2f'),
        _cell(row['final_valid_ppl'], '.2f'),
        _cell(row['final_train_loss'], '.4f'),
        _cell(row['steps'], 'd'),
        ('-' if row['wall_time_s'] is None else
         sweep_run.format_duration(row['wall_time_s'])),
        _cell(row['tokens_per_sec'], ',.0f'),
        row['status']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  failed = [row for row in rows if row['error']]
  if failed:
    lines += ['', 'Errors:']
    lines += [f'- `{row["name"]}`: {row["error"]}' for row in failed]
  return '\n'.join(lines) + '\n'


def curve_label(sweep, point):
  """'RecurrentLM.d_model=200, RecurrentLM.dropout=0.5': the point's swept values, or
  its name in a points sweep."""
  if sweep.named_points is not None:
    return point.name
  values = dict(point.assignments)
  return ', '.join(f'{param}={values[param]}'
                   for param in sweep_grid.varying_params(sweep.grid))


def write_report(output_dir):
  """Writes results.csv, results.md and curves.png; prints the table.

  Returns:
    The table's rows (see `summarize`), one per point in grid order.

  Raises:
    UserError: if output_dir is not a sweep directory.
  """
  output_dir = pathlib.Path(output_dir)
  sweep = sweep_run.Sweep.load(output_dir)
  points = sweep.points()
  records_per_point = [run_dir.MetricsLog.read(output_dir / p.name)
                       for p in points]
  valid_kind = validation_kind(records_per_point)
  rows = [summarize(point, records,
                    sweep_run.read_status(output_dir / point.name),
                    valid_kind)
          for point, records in zip(points, records_per_point)]
  write_csv(output_dir / 'results.csv', sweep, valid_kind, rows)
  table = markdown_table(sweep, valid_kind, rows)
  (output_dir / 'results.md').write_text(table, encoding='utf-8')
  written = ['results.csv', 'results.md']
  curves = [(curve_label(sweep, point), records)
            for point, records in zip(points, records_per_point)
            if any(r['kind'] == valid_kind for r in records)]
  if curves:
    plot.save_curves(curves, output_dir / 'curves.png', 'ppl', (valid_kind,),
                     title=CURVES_TITLES[valid_kind])
    written.append('curves.png')
  print(f'\n{table}\nwrote {", ".join(written)} in {output_dir}', flush=True)
  return rows
