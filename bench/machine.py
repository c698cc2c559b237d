"""Facts about the machine for the benchmarks' headers, with no framework
imported (bench/train_speed.py's own process imports none)."""

import platform


def cpu_name():
  """The CPU's model name from /proc/cpuinfo, else platform's guess."""
  try:
    for line in open('/proc/cpuinfo', encoding='utf-8'):
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown CPU'
