"""Facts about the machine for the benchmarks' headers, with no framework
imported (bench/train_speed.py's own process imports none)."""

import os
import platform
import time


def cpu_name():
  """The CPU's model name from /proc/cpuinfo, else platform's guess."""
  try:
    for line in open('/proc/cpuinfo', encoding='utf-8'):
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown CPU'


def busy_cores(seconds=3.0):
  """How many cores' worth of CPU time the machine spent busy over the next
  `seconds` (from /proc/stat), or None where there is no /proc/stat. Unlike
  the load average, which decays over minutes, it shows what runs now, not
  what ran a minute ago (e.g. the benchmark's own previous process)."""
  def totals():
    with open('/proc/stat', encoding='utf-8') as f:
      fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])
  try:
    busy_0, all_0 = totals()
    time.sleep(seconds)
    busy_1, all_1 = totals()
  except OSError:
    return None
  cores = os.cpu_count() or 1
  return cores * (busy_1 - busy_0) / max(1, all_1 - all_0)
