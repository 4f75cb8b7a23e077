"""Plots of the long-range experiment: ||dLoss/dh_t|| against t (matplotlib, PNG)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def gradient_norms(curves: dict[str, np.ndarray], path: str, title: str = "") -> None:
  """`curves`: label -> `[T]` norms of dLoss/dh_t; drawn on a log scale against t."""
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  for label, norms in curves.items():
    norms = np.asarray(norms, np.float64)
    ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-30), label=label)
  ax.set_xlabel("t (the loss is read at the last step)")
  ax.set_ylabel("mean ||dLoss / dh_t||")
  if title:
    ax.set_title(title, fontsize=9)
  ax.grid(True, which="major", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
