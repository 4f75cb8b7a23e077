"""The results contract: metrics.jsonl, results.json and TensorBoard events in the workdir.

    workdir/metrics.jsonl   one JSON object per log or eval step: {"step": N, "name": value, ...}
    workdir/results.json    the final metrics, one flat JSON object
    workdir/tensorboard/    TensorBoard event files (tensorboardX)

`launch/` builds its tables from these files.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def _scalar(value) -> float | int | str:
  if isinstance(value, (str, bool)):
    return value
  value = np.asarray(value).item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no nan/inf; keep them readable
  return value


def write_results(workdir: str, results: Mapping[str, Any]) -> None:
  """Writes `workdir/results.json` (atomically): the run's final metrics, one flat object."""
  flat = {k: (v if isinstance(v, (list, dict)) else _scalar(v)) for k, v in results.items()}
  tmp = os.path.join(workdir, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump(flat, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(workdir, "results.json"))


class MetricsWriter:
  """Appends metrics to `metrics.jsonl` and TensorBoard; writes `results.json`.

  On resume, rows of `metrics.jsonl` at or after the resumed step are dropped
  first, so a resumed run's file reads like an uninterrupted one's.
  """

  def __init__(self, workdir: str, *, resume_step: int = 0, tensorboard: bool = True,
               enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [line for line in f if line.strip()]
      kept = [r for r in rows if json.loads(r).get("step", 0) < resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)
    if tensorboard:
      from tensorboardX import SummaryWriter  # imported here: only the writer needs it
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step or None)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for name, value in row.items():
        if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tb.add_scalar(name, value, int(step))

  def write_results(self, results: Mapping[str, Any]) -> None:
    if self.enabled:
      write_results(self.workdir, results)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
