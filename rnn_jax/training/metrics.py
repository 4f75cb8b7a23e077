"""The results contract: metrics.jsonl, results.json and TensorBoard events in the workdir.

    workdir/metrics.jsonl   one JSON object per log or eval step: {"step": N, "name": value, ...}
    workdir/metrics.dropped.jsonl  rows a resume dropped from metrics.jsonl (recomputed after it)
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

from rnn_jax.training.workdir import atomic_write

DROPPED = "metrics.dropped.jsonl"


def _scalar(value) -> float | int | str:
  if isinstance(value, (str, bool)):
    return value
  value = np.asarray(value).item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no nan/inf; keep them readable
  return value


def write_results(workdir: str, results: Mapping[str, Any]) -> None:
  """Writes `workdir/results.json` atomically (temporary file, fsync, rename): the run's
  final metrics, one flat object."""
  flat = {k: (v if isinstance(v, (list, dict)) else _scalar(v)) for k, v in results.items()}
  atomic_write(os.path.join(workdir, "results.json"),
               json.dumps(flat, indent=2, sort_keys=True))


def _read_rows(path: str) -> list[dict]:
  """The rows of metrics.jsonl; a line that does not parse (the partial last line a kill or a
  full disk leaves) is dropped with a one-line warning."""
  with open(path, errors="replace") as f:
    lines = [(n, line) for n, line in enumerate(f.read().split("\n"), 1) if line.strip()]
  rows, dropped = [], []
  for n, line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if isinstance(row, dict):
      rows.append(row)
    else:
      dropped.append(n)
  if dropped:
    where = "its last line" if dropped == [lines[-1][0]] else f"lines {dropped}"
    print(f"warning: {path}: dropped {where}, which did not parse (cut short by a kill or a "
          "full disk?)", flush=True)
  return rows


class MetricsWriter:
  """Appends metrics to `metrics.jsonl` and TensorBoard; writes `results.json`.

  On resume, rows of `metrics.jsonl` at or after the resumed step are dropped
  first (and any line that does not parse, with a warning), and the file is
  rewritten atomically, so a resumed run's file reads like an uninterrupted one's.
  The dropped rows are appended to `metrics.dropped.jsonl`, so that a restart
  from an earlier step (a damaged checkpoint, `--force_config_change`) loses none.
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
      rows = _read_rows(self.path)
      kept = [r for r in rows if r.get("step", 0) < resume_step]
      if len(kept) < len(rows):  # nothing is deleted: the dropped rows go to a side file
        with open(os.path.join(workdir, DROPPED), "a") as f:
          f.writelines(json.dumps(dict(r, dropped_at_resume_step=resume_step)) + "\n"
                       for r in rows if r.get("step", 0) >= resume_step)
      atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))
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
