"""The timing loops the benchmarks share: repeat a call for a while; take turns."""

from __future__ import annotations

import resource
import time


def cpu_seconds() -> float:
  """This process's user + system CPU time."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def repeat(call, min_time: float) -> tuple[float, float]:
  """`(seconds per call, cores)`: calls `call` until `min_time` seconds have passed;
  cores is the process CPU time over the wall time meanwhile (2.0 = both cores of a
  2-core machine)."""
  n, start, cpu = 0, time.perf_counter(), cpu_seconds()
  while True:
    call()
    n += 1
    elapsed = time.perf_counter() - start
    if elapsed >= min_time:
      return elapsed / n, (cpu_seconds() - cpu) / elapsed


def in_turns(runners: dict, turns: int) -> dict:
  """Calls every runner (name -> no-argument callable) once per turn, in order, for
  `turns` turns, so that all of them see the machine in the same states as its speed
  drifts; returns each name's results, in call order."""
  results = {name: [] for name in runners}
  for _ in range(turns):
    for name, run in runners.items():
      results[name].append(run())
  return results
