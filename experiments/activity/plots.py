r"""The lecture's "ideally what we want" figure from finished runs: the mean score of the
true class against progress through the activities, one curve per variant (mean ± std over
its seeds), with and without the ranking losses.

    python -m experiments.activity.plots --runs=runs/activity_ranking \
        --out=runs/activity_ranking/progression.png

A run is a directory with results.json (`progression/score_at_*`, written by every
detector run); runs are grouped by their name without the `,seed=N` part (the sweep's
trial names), or by directory name.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
from absl import flags

from experiments.common import UserError

_RUNS = flags.DEFINE_string("runs", "", "A sweep's root, or a directory of run directories.")
_OUT = flags.DEFINE_string("out", "", "The figure (default: <runs>/progression.png).")


def progression_curves(root: str) -> dict[str, np.ndarray]:
  """{variant: [seeds, bins]} of every run under `root` that has a progression curve."""
  curves: dict[str, list] = {}
  for path in sorted(glob.glob(os.path.join(root, "*", "results.json"))):
    with open(path) as f:
      results = json.load(f)
    keys = sorted(k for k in results if k.startswith("progression/score_at_"))
    if not keys:
      continue
    name = re.sub(r",?seed=\d+", "", os.path.basename(os.path.dirname(path))) or "baseline"
    curves.setdefault(name, []).append([results[k] for k in keys])
  return {k: np.asarray(v) for k, v in curves.items()}


def plot(curves: dict[str, np.ndarray], out: str) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  for name, c in sorted(curves.items()):
    x = (np.arange(c.shape[1]) + 0.5) / c.shape[1]
    mean, std = c.mean(0), c.std(0)
    ax.plot(x, mean, marker="o", markersize=3, label=f"{name} ({len(c)} seeds)")
    ax.fill_between(x, mean - std, mean + std, alpha=0.2)
  ax.set_xlabel("progress through the activity")
  ax.set_ylabel("score of the true class")
  ax.set_ylim(0, 1)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)


def main(argv) -> None:
  del argv
  if not _RUNS.value:
    raise UserError("--runs is required")
  curves = progression_curves(_RUNS.value)
  if not curves:
    raise UserError(f"--runs={_RUNS.value}: no run with a progression curve under it")
  out = _OUT.value or os.path.join(_RUNS.value, "progression.png")
  plot(curves, out)
  for name, c in sorted(curves.items()):
    print(f"{name:14s} " + " ".join(f"{m:.2f}" for m in c.mean(0)))
  print(f"wrote {out}")


if __name__ == "__main__":
  from experiments import common  # noqa: PLC0415
  common.run(main)
