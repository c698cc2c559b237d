"""Facts about the machine for the benchmarks' headers, with no framework
imported (bench/train_speed.py's own process imports none)."""

import os
import platform
import time

# The /proc/cpuinfo flags of x86 units that multiply bfloat16 in hardware:
# AVX-512's bfloat16 dot products, and AMX's tiles with their bfloat16
# multiplier. Without them, bfloat16 matmuls are emulated with float32
# arithmetic, and are no faster than float32's (on XLA:CPU, slower).
BF16_FLAGS = ('avx512_bf16', 'amx_bf16', 'amx_tile')


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


def bf16_units(cpuinfo=None):
  """The CPU's bfloat16 units: the BF16_FLAGS among the `flags` of
  /proc/cpuinfo (or of the text cpuinfo), in BF16_FLAGS' order; () when it
  has none, or where there is no /proc/cpuinfo."""
  if cpuinfo is None:
    try:
      with open('/proc/cpuinfo', encoding='utf-8') as f:
        cpuinfo = f.read()
    except OSError:
      return ()
  for line in cpuinfo.splitlines():
    name, _, value = line.partition(':')
    if name.strip() == 'flags':  # Every core lists the same flags.
      flags = set(value.split())
      return tuple(flag for flag in BF16_FLAGS if flag in flags)
  return ()


def bf16_text(units=None):
  """'bf16 units: avx512_bf16 amx_bf16 amx_tile' (those the CPU has), or
  'no bf16/AMX units'; units default to this CPU's (bf16_units)."""
  units = bf16_units() if units is None else units
  return f'bf16 units: {" ".join(units)}' if units else 'no bf16/AMX units'
