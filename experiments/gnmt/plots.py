"""Attention heatmaps with the tokens on the axes (matplotlib, written as PNG)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def attention_heatmap(weights, source_tokens, output_tokens, path: str, title: str = "") -> None:
  """`weights [U, S]`: row u is the attention that fed output token u (`Decoded.weights`)."""
  U, S = len(output_tokens), len(source_tokens)
  weights = weights[:U, :S]
  fig, ax = plt.subplots(figsize=(max(4, 0.35 * S + 2), max(3, 0.3 * U + 1.5)))
  image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
  ax.set_xticks(range(S), source_tokens, rotation=90, fontsize=8)
  ax.set_yticks(range(U), output_tokens, fontsize=8)
  ax.set_xlabel("source")
  ax.set_ylabel("output")
  if title:
    ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.03)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
