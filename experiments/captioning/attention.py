"""Attention over image regions: how much of it falls on an object, and Xu et al.'s figures.

The regions are a grid of h x w cells covering an S x S image (S = image_size): cell (i, j)
(row i, column j; a flat index r = i * w + j, row-major, as `experiments.vision.cnn.regions`
orders them) covers rows [i S / h, (i + 1) S / h) and columns [j S / w, (j + 1) S / w).
Boxes are (x0, y0, x1, y1) in pixels, x the column and y the row, ends exclusive.

- `localisation_score(alpha, box, image_size)`: the share of the attention's mass that lies
  inside the box (or the union of several boxes), each cell's mass spread uniformly over its
  area. All the mass in cells inside the box gives 1; uniform attention gives the box's
  share of the image's area. `localisation_scores` does it for every step of a caption.
- `attention_grid(image, words, alphas, path)`: a PNG as in Xu et al. (2015), Fig. 2-3: the
  image, then one panel per word with its attention map upsampled (bilinear, then a
  Gaussian blur) and laid over the image in white. Written with matplotlib's Agg canvas (no
  display, no global backend change).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

def _grid(alpha: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
  """alpha as [..., h, w], from [..., h, w] or [..., R] with R = h * w."""
  h, w = grid
  if alpha.ndim >= 2 and alpha.shape[-2:] == (h, w):
    return alpha
  if alpha.shape[-1] == h * w:
    return alpha.reshape(*alpha.shape[:-1], h, w)
  raise ValueError(f"attention of shape {alpha.shape} does not fit a {h}x{w} grid")


def _square_grid(alpha: np.ndarray, batched: bool) -> np.ndarray:
  if alpha.ndim == (2 if batched else 1):
    r = alpha.shape[-1]
    side = math.isqrt(r)
    if side * side != r:
      raise ValueError(f"{r} regions are not a square grid: pass grid=(h, w)")
    return alpha.reshape(*alpha.shape[:-1], side, side)
  if alpha.ndim != (3 if batched else 2):
    raise ValueError(f"attention of shape {alpha.shape}: expected "
                     f"{'[U, h, w] or [U, R]' if batched else '[h, w] or [R]'}")
  return alpha


def _boxes(box) -> list[tuple[int, int, int, int]]:
  """One box or a list of boxes -> a list of integer boxes."""
  arr = np.asarray(box, np.float64)
  if arr.ndim == 1:
    arr = arr[None]
  if arr.size == 0:
    return []
  if arr.ndim != 2 or arr.shape[1] != 4:
    raise ValueError(f"a box is (x0, y0, x1, y1), or a list of them; got {box!r}")
  return [tuple(int(round(v)) for v in b) for b in arr]


def _overlap(cells: int, image_size: int) -> np.ndarray:
  """[cells, S]: the length of cell k's interval [k S / n, (k + 1) S / n) in pixel [p, p + 1)."""
  edges = np.arange(cells + 1) * (image_size / cells)
  pixels = np.arange(image_size + 1, dtype=np.float64)
  lo = np.maximum(edges[:-1, None], pixels[None, :-1])
  hi = np.minimum(edges[1:, None], pixels[None, 1:])
  return np.clip(hi - lo, 0.0, None)


def box_mask(boxes, image_size: int) -> np.ndarray:
  """The union of boxes as an `[S, S]` 0/1 pixel mask (rows y, columns x; clipped)."""
  mask = np.zeros((image_size, image_size), np.float64)  # [S, S]
  for x0, y0, x1, y1 in _boxes(boxes):
    x0, x1 = max(x0, 0), min(x1, image_size)
    y0, y1 = max(y0, 0), min(y1, image_size)
    if x1 > x0 and y1 > y0:
      mask[y0:y1, x0:x1] = 1.0
  return mask


def region_coverage(boxes, grid: tuple[int, int], image_size: int) -> np.ndarray:
  """`[h, w]`: the share of each cell's area inside the union of `boxes`."""
  h, w = grid
  mask = box_mask(boxes, image_size)  # [S, S]
  rows, cols = _overlap(h, image_size), _overlap(w, image_size)  # [h, S], [w, S]
  covered = rows @ mask @ cols.T  # [h, w] pixel area of each cell inside the union
  return covered / ((image_size / h) * (image_size / w))


def localisation_score(alpha, box, image_size: int, *,
                       grid: tuple[int, int] | None = None) -> float:
  """The share of attention mass inside a box (or the union of boxes).

  Args:
    alpha: `[h, w]` attention weights over the grid, or `[R]` (R = h * w, row-major; a
      square grid unless `grid` says otherwise). Normalised here (divided by its sum).
    box: (x0, y0, x1, y1) in pixels (x the column, y the row, ends exclusive; clipped to
      the image), or a list of boxes: their union, each pixel counted once.
    image_size: S, the side of the square image the grid covers.
    grid: (h, w) when alpha is `[R]` over a grid that is not square.

  Returns:
    sum_ij alpha_ij * |cell_ij inside the boxes| / |cell_ij|, in [0, 1].
  """
  alpha = np.asarray(alpha, np.float64)
  alpha = _grid(alpha, grid) if grid is not None else _square_grid(alpha, batched=False)
  if alpha.ndim != 2:
    raise ValueError(f"attention of shape {alpha.shape}: expected [h, w] or [R]")
  total = alpha.sum()
  if not total > 0:
    raise ValueError(f"attention with total mass {total}: nothing to localise")
  coverage = region_coverage(box, alpha.shape, image_size)  # [h, w]
  return float((alpha * coverage).sum() / total)


def localisation_scores(alphas, boxes: Sequence, image_size: int, *,
                        grid: tuple[int, int] | None = None) -> np.ndarray:
  """`localisation_score` for each step of a caption: `[U]`, NaN where a step has no box.

  Args:
    alphas: `[U, h, w]` or `[U, R]` attention of each generated word.
    boxes: U entries, each a box, a list of boxes (their union: e.g. "dogs" naming two
      dogs), or None / [] for a word with no object (its score is NaN).
    image_size: S, the side of the square image.
    grid: (h, w) when alphas are `[U, R]` over a grid that is not square.
  """
  alphas = np.asarray(alphas, np.float64)
  alphas = _grid(alphas, grid) if grid is not None else _square_grid(alphas, batched=True)
  if alphas.ndim != 3:
    raise ValueError(f"attention of shape {alphas.shape}: expected [U, h, w] or [U, R]")
  if len(boxes) != alphas.shape[0]:
    raise ValueError(f"{alphas.shape[0]} attention maps but {len(boxes)} box entries")
  out = np.full(alphas.shape[0], np.nan)  # [U]
  for u, b in enumerate(boxes):
    if b is None or (not isinstance(b, np.ndarray) and len(b) == 0):
      continue
    out[u] = localisation_score(alphas[u], b, image_size)
  return out


# ------------------------------------------------------------------------------------------
# Figures.


def upsample(alpha, size: tuple[int, int], *, sigma: float = 0.0) -> np.ndarray:
  """`[h, w]` -> `[H, W]`: bilinear (cell centres at their centres, edges clamped), then an
  optional Gaussian blur of `sigma` pixels; the values keep alpha's range."""
  alpha = np.asarray(alpha, np.float64)
  h, w = alpha.shape
  out_h, out_w = size

  def coords(n_out, n_in):  # output pixel centres in input cell units
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, x - lo

  r0, r1, fr = coords(out_h, h)
  c0, c1, fc = coords(out_w, w)
  top = alpha[r0][:, c0] * (1 - fc) + alpha[r0][:, c1] * fc  # [H, W]
  bottom = alpha[r1][:, c0] * (1 - fc) + alpha[r1][:, c1] * fc
  out = top * (1 - fr[:, None]) + bottom * fr[:, None]
  if sigma > 0:
    out = _gaussian_blur(out, sigma)
  return out


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
  radius = max(1, int(3 * sigma))
  t = np.arange(-radius, radius + 1)
  kernel = np.exp(-t ** 2 / (2 * sigma ** 2))
  kernel /= kernel.sum()
  padded = np.pad(x, radius, mode="edge")
  rows = np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), 1, padded)
  return np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), 0, rows)


def attention_grid(image, words: Sequence[str], alphas, path: str, *,
                   title: str | None = None, columns: int = 5, sigma: float | None = None,
                   grid: tuple[int, int] | None = None) -> str:
  """Writes Xu et al.'s figure: the image, then each word over its attention map.

  Args:
    image: `[H, W, 3]` uint8.
    words: the U generated words (a panel each); alphas beyond them are ignored.
    alphas: `[U', h, w]` or `[U', R]` attention (U' >= U), each map normalised to its max.
    path: the PNG to write (its folder is created).
    title: a title above the grid (e.g. the whole caption), or None.
    columns: panels per row.
    sigma: the blur in pixels after bilinear upsampling; None for a cell's side / 4.
    grid: (h, w) when alphas are `[U', R]` over a grid that is not square.

  Returns:
    path.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
  from matplotlib.figure import Figure  # noqa: PLC0415

  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image of shape {image.shape}: expected [H, W, 3]")
  alphas = np.asarray(alphas, np.float64)
  alphas = _grid(alphas, grid) if grid is not None else _square_grid(alphas, batched=True)
  if alphas.ndim != 3 or alphas.shape[0] < len(words):
    raise ValueError(f"attention of shape {alphas.shape} for {len(words)} words: expected "
                     "[U, h, w] with U >= the number of words")
  height, width = image.shape[:2]
  if sigma is None:
    sigma = min(height / alphas.shape[1], width / alphas.shape[2]) / 4
  panels = 1 + len(words)
  columns = max(1, min(columns, panels))
  rows = math.ceil(panels / columns)
  fig = Figure(figsize=(2.2 * columns, 2.4 * rows + (0.4 if title else 0)))
  FigureCanvasAgg(fig)
  for k in range(panels):
    ax = fig.add_subplot(rows, columns, k + 1)
    ax.imshow(image)
    if k:
      alpha = alphas[k - 1]
      peak = alpha.max()
      shown = upsample(alpha / peak if peak > 0 else alpha, (height, width), sigma=sigma)
      ax.imshow(shown, cmap="Greys_r", alpha=0.8, vmin=0.0, vmax=1.0)
      ax.set_title(words[k - 1], fontsize=10)
    ax.set_axis_off()
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fig.savefig(path, format="png", dpi=100)
  return path
