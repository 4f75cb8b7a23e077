r"""Per-step class scores -> scored activity segments: detection and early detection.

A per-step classifier (the LSTM of Ma, Sigal & Sclaroff 2016, or a per-frame CNN) gives, at
every step t of a video, scores over K activities and the background (column 0):
`probs [T, K+1]`, usually a softmax. This module turns them into detections
`Detection(label, start, end, score)`: label in 1..K, the segment [start, end) in steps (step
t covers [t, t + 1)), and a score that ranks detections for ActivityNet's temporal mAP
(`experiments.activity.evaluate`). `detections_to_results` writes them in ActivityNet's
result format, converting steps to seconds there, once.

Sources. The paper's own detection and early-detection procedures could not be read here:
the stored public copies of the paper hold its abstract and introduction only ("for early
detection, we detect the activity segment after observing only a fraction of the
activity"), and no reimplementation was found. What follows is a documented, standard
equivalent: runs of per-step scores above several thresholds, as the temporal actionness
grouping (TAG) of Zhao et al.'s structured segment networks (ICCV 2017) forms proposals
(TAG thresholds a class-agnostic actionness and tolerates a fraction of low steps; here each
class's own score, with a gap tolerance), followed by per-class temporal NMS. Every
threshold is a keyword argument, so an experiment can expose it as a flag.

## Detection (`detect`)

1. Smoothing (optional): each class's scores are replaced by their moving average over a
   centred window of `smoothing` steps (default 1: none), truncated at the video's ends
   (the mean over the steps that exist), so rows stay distributions. It reads future steps:
   fine offline, never for early detection of a stream that has not arrived (there
   `early_detect` smooths the observed prefix only).
2. Active steps, per activity c (never the background) and per threshold θ in `thresholds`:
   `rule="threshold"` (default): p_c(t) >= θ, one mask per θ (default θ = 0.1, 0.2, ..., 0.9:
   the low thresholds give long segments, the high ones their cores, nested inside);
   `rule="argmax"`: c is the argmax of row t over all K+1 columns (background included,
   ties to the lowest index); `thresholds` is then unused;
   `rule="actionness"`: class-agnostic, as TAG groups actionness: the steps where
   1 - p_0(t) >= θ (anything but the background), per θ; each run (after steps 3's merging
   and length rule) is then labelled with the `labels_per_segment` activities of highest
   mean score over it (ties to the lower label), one candidate each. A class that becomes
   certain only part-way through an activity still gets the activity's whole extent.
3. Runs: each maximal run of active steps [s, e) is a candidate. Runs of the same (c, θ)
   separated by at most `max_gap` inactive steps are merged first (default 0: none), the
   gap joining the segment; then segments shorter than `min_length` steps are dropped
   (default 1: none). Merging first lets two halves of an activity split by a short dip
   make a segment long enough to keep.
4. Score: the mean of p_c over the segment's steps [s, e) (`score="mean"`, default; gap
   steps included), or its maximum (`score="max"`), on the smoothed scores. No length prior.
5. Duplicates: the same (c, s, e) found at several thresholds is one candidate; then greedy
   temporal NMS per class: in order of decreasing score (ties: lower label, earlier start,
   earlier end first), a candidate is kept unless its tIoU with an already kept candidate of
   its class exceeds `nms_threshold` (default 0.5; tIoU = |A ∩ B| / |A ∪ B|, strictly
   greater suppresses, so 1.0 keeps everything distinct). Detections of different classes
   never suppress each other.
6. At most `max_detections` per video (default 100, ActivityNet's customary cap), the
   highest scores first; the list is returned in that order.

A video whose scores are one-hot on its true labels (background elsewhere), with instances
of the same class never adjacent, gives back exactly its true segments with score 1.0
(`tests/test_activity_detect.py` checks this on random segmentations).

## Early detection (`early_detect`, `early_detect_instances`)

The protocol (the paper's early-detection task as issue #17 states it): each ground-truth instance
[s, e) of a video is evaluated in its own truncated view. The detector sees the stream up
to `observed_end(s, e, fraction)` = s + ceil(fraction * (e - s)) steps (fraction 0.3: the
first 3/10 of the activity, plus everything before it) and nothing after; it is not told s.
It must report the whole segment, scored against the whole [s, e). The detections of all
the views of a video are pooled into that video's one result list, and the pooled lists of
all videos are scored with ActivityNet's mAP against all the ground truth, as full detection
is. A view's detections may match another instance of the video: mAP's matching decides,
as it does for any detection.

For a causal model (a unidirectional LSTM, a per-frame CNN) the scores of a prefix are the
first rows of the scores of the whole video, so `early_detect_instances` runs the model
once per video and cuts `probs[:observed_end]` per instance. A bidirectional model, or
smoothing over the whole video, would let the view read the future: don't.

`early_detect(probs_prefix)`: the activity is ongoing at the last observed step t_last (the
protocol guarantees it), so:

1. smooth the prefix as in detection (`smoothing`; the centred window is truncated at the
   prefix's end, so no unobserved step is read);
2. the ongoing class c* = the argmax of row t_last over the activities (background left out);
3. its start: going back from t_last (always included) while c* is active, under `rule`:
   `"argmax"` (default), c* is the argmax of the row over all K+1 columns; `"threshold"`,
   p_c*(t) >= `threshold`; `"actionness"`, 1 - p_0(t) >= `threshold` (any activity); gaps of at most `max_gap` inactive steps are crossed. The run's
   first step is the detected start s';
4. the extent: `extent="extrapolate"` (default) assumes what was seen, [s', observed_end),
   is `fraction` of the activity, so end = s' + (observed_end - s') / fraction (6 observed
   steps at 0.3 give s' + 20). When s' is the true start this overshoots the true end by
   less than 1 / fraction steps (the ceil in observed_end). `extent="observed"` reports
   [s', observed_end) instead: what was seen, no guess (tIoU about `fraction` at best);
   `clip_end` (e.g. the video's length) caps the extrapolated end;
5. labels: every activity is scored over the segment's observed steps [s', t_last]:
   `score="mean"` (default) the mean of p_c there, `score="last"` p_c(t_last); the `top_k`
   best (default 3, distinct labels, ties to the lower label) are returned, best first, all
   with the same segment: mAP rewards ranked alternatives, and at most one can be right.

Example:

    dets = detect(probs, thresholds=(0.3, 0.5, 0.7), nms_threshold=0.5)
    views = early_detect_instances(probs, [(40, 60), (90, 130)], fraction=0.3)
    results = {video: detections_to_results(video, dets, class_names, seconds_per_step=0.5)}
    # class_names: the K activity names, class c = class_names[c - 1]
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The default multi-threshold grid of `detect` (rule "threshold")."""

RULES = ("threshold", "argmax", "actionness")
SCORES = ("mean", "max")
EARLY_SCORES = ("mean", "last")
EXTENTS = ("extrapolate", "observed")
_CEIL_SLACK = 1e-9
"""observed_end's ceil ignores float noise below this (0.3 * 10 = 3.0000000000000004)."""


class Detection(NamedTuple):
  """One detected activity instance.

  label: the activity, 1..K (the column of `probs`; 0, the background, is never detected).
  start, end: the segment [start, end) in steps (floats: early detection extrapolates).
  score: its confidence, used only to rank detections.
  """
  label: int
  start: float
  end: float
  score: float


# ------------------------------------------------------------------------------------------
# Checks.


def _check_probs(probs, name: str = "probs", *, min_steps: int = 0) -> np.ndarray:
  """`probs [T, K+1]` as finite float64, K >= 1, T >= min_steps."""
  array = np.asarray(probs)
  if array.ndim != 2:
    raise ValueError(f"{name}: expected [T, K+1] scores (steps x classes, background "
                     f"first), got shape {array.shape}")
  if array.shape[1] < 2:
    raise ValueError(f"{name}: expected at least 2 columns (the background and one "
                     f"activity), got shape {array.shape}")
  if array.shape[0] < min_steps:
    raise ValueError(f"{name}: expected at least {min_steps} step(s), got shape "
                     f"{array.shape}")
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
          or array.dtype == np.bool_):
    raise ValueError(f"{name}: expected numbers, got dtype {array.dtype}")
  array = array.astype(np.float64)
  if not np.isfinite(array).all():
    bad = np.argwhere(~np.isfinite(array))[0]
    raise ValueError(f"{name}: non-finite score {array[tuple(bad)]} at step {bad[0]}, "
                     f"class {bad[1]}")
  return array


def _check_int(value, name: str, minimum: int) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
  return int(value)


def _check_choice(value, name: str, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
  return value


def _check_threshold(value, name: str) -> float:
  """A score threshold: a finite number > 0 (scores need not be probabilities)."""
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}: expected a number > 0, got {value!r}") from None
  if not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name}: expected a finite number > 0, got {value}")
  return value


def _check_fraction(fraction) -> float:
  try:
    fraction = float(fraction)
  except (TypeError, ValueError):
    raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}") from None
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction: expected a number in (0, 1], got {fraction}")
  return fraction


# ------------------------------------------------------------------------------------------
# Building blocks.


def smooth(probs, window: int) -> np.ndarray:
  """Centred moving average of each column over `window` steps, truncated at the ends.

  Step t averages steps [t - (window - 1) // 2, t + window // 2] that lie in [0, T): the
  window is centred (for an even window, one more step after t than before), and near the
  ends it holds fewer steps. Rows that are distributions stay distributions.

  Args:
    probs: [T, K+1] scores.
    window: >= 1; 1 returns the scores unchanged.

  Returns:
    [T, K+1] float64.
  """
  probs = _check_probs(probs)
  window = _check_int(window, "smoothing", 1)
  if window == 1:
    return probs
  T = probs.shape[0]
  cumulative = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
  t = np.arange(T)
  lo = np.maximum(t - (window - 1) // 2, 0)
  hi = np.minimum(t + window // 2 + 1, T)
  return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]


def _runs(mask: np.ndarray, max_gap: int):
  """The maximal runs of True in each row of `mask [N, T]`, merged across small gaps.

  Returns:
    rows, starts, ends: [M] int arrays, runs [start, end) in row-major order; runs of one
    row separated by at most `max_gap` False steps are one run.
  """
  N = mask.shape[0]
  padded = np.zeros((N, mask.shape[1] + 2), np.int8)                 # [N, T + 2]
  padded[:, 1:-1] = mask
  edges = np.diff(padded, axis=1)                                     # [N, T + 1]
  rows, starts = np.nonzero(edges == 1)   # row-major: runs of a row in order, and the
  _, ends = np.nonzero(edges == -1)       # k-th rise pairs with the k-th fall
  if rows.size and max_gap > 0:
    new = np.concatenate([[True], (rows[1:] != rows[:-1]) | (starts[1:] - ends[:-1] > max_gap)])
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:], [rows.size]]) - 1
    rows, starts, ends = rows[first], starts[first], ends[last]
  return rows, starts, ends


def _segment_scores(probs: np.ndarray, labels, starts, ends, how: str) -> np.ndarray:
  """The mean or the max of probs[:, label] over each [start, end) (all non-empty).

  One reduceat over the columns laid end to end (column c at offset c * T), with the
  indices start_0, end_0, start_1, end_1, ...: its even outputs reduce [start_i, end_i)
  (the odd ones are discarded); a sentinel element makes an end at the last offset valid.
  Each sum starts at its segment (no prefix-sum differences): ones give exactly 1.
  """
  T = probs.shape[0]
  flat = np.concatenate([probs.T.ravel(), [0.0]])                      # [(K+1) * T + 1]
  indices = np.stack([labels * T + starts, labels * T + ends], axis=1).ravel()
  if how == "mean":
    return np.add.reduceat(flat, indices)[0::2] / (ends - starts)
  return np.maximum.reduceat(flat, indices)[0::2]


def _tiou(start: float, end: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
  """tIoU of [start, end) with each [starts, ends) (lengths > 0)."""
  intersection = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0, None)
  return intersection / ((end - start) + (ends - starts) - intersection)


def temporal_nms(labels, starts, ends, scores, nms_threshold: float) -> np.ndarray:
  """Greedy per-class temporal NMS.

  In order of decreasing score (ties: lower label, earlier start, earlier end first), a
  segment is kept unless its tIoU with an already kept segment of the same label exceeds
  `nms_threshold`.

  Args:
    labels, starts, ends, scores: [N] each; segments [start, end) with end > start.
    nms_threshold: in [0, 1].

  Returns:
    [n] int indices of the kept segments, in that order.
  """
  labels, starts, ends, scores = (np.asarray(a) for a in (labels, starts, ends, scores))
  order = np.lexsort((ends, starts, labels, -scores))  # the last key is the primary one
  kept = []
  kept_by_label: dict[int, list[int]] = {}
  for i in order:
    same = kept_by_label.setdefault(int(labels[i]), [])
    if same and (_tiou(starts[i], ends[i], starts[same], ends[same]) > nms_threshold).any():
      continue
    same.append(i)
    kept.append(i)
  return np.asarray(kept, dtype=np.int64)


# ------------------------------------------------------------------------------------------
# Detection.


def detect(probs, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, rule: str = "threshold",
           smoothing: int = 1, min_length: int = 1, max_gap: int = 0, score: str = "mean",
           nms_threshold: float = 0.5, max_detections: int | None = 100,
           labels_per_segment: int = 2) -> list[Detection]:
  """Scored activity segments of one video from its per-step class scores.

  The procedure is the module docstring's "Detection" (smooth, threshold or argmax, runs,
  merge gaps, drop short runs, score, deduplicate, per-class NMS, cap).

  Args:
    probs: [T, K+1] per-step scores, column 0 the background (a softmax, usually; any
      finite scores work, thresholds then being on their scale). T may be 0.
    thresholds: the thresholds θ of rule "threshold" (each finite, > 0).
    rule: "threshold" (p_c >= θ), "argmax" (c is the row's argmax; thresholds unused) or
      "actionness" (1 - p_0 >= θ, each run labelled with its best activities).
    smoothing: moving-average window in steps (1: none).
    min_length: the shortest segment kept, in steps (after gap merging).
    max_gap: runs of one class and threshold separated by at most this many steps merge.
    score: "mean" or "max" of p_c over the segment.
    nms_threshold: per-class NMS tIoU in [0, 1]; a candidate overlapping a better kept one
      by more is dropped.
    max_detections: keep at most this many (the best); None keeps all.
    labels_per_segment: rule "actionness": the activities each run is proposed as.

  Returns:
    Detections in steps, best first (ties as in `temporal_nms`).

  Raises:
    ValueError: bad shapes, non-finite scores, or an argument out of range.
  """
  probs = _check_probs(probs)
  rule = _check_choice(rule, "rule", RULES)
  score = _check_choice(score, "score", SCORES)
  min_length = _check_int(min_length, "min_length", 1)
  max_gap = _check_int(max_gap, "max_gap", 0)
  if max_detections is not None:
    max_detections = _check_int(max_detections, "max_detections", 1)
  thresholds = np.asarray([_check_threshold(θ, "thresholds") for θ in np.ravel(thresholds)])
  if rule != "argmax" and thresholds.size == 0:
    raise ValueError(f"thresholds: expected at least one threshold for rule {rule!r}")
  labels_per_segment = _check_int(labels_per_segment, "labels_per_segment", 1)
  nms_threshold = float(nms_threshold)
  if not 0 <= nms_threshold <= 1:
    raise ValueError(f"nms_threshold: expected a tIoU in [0, 1], got {nms_threshold}")
  probs = smooth(probs, smoothing)
  T, K = probs.shape[0], probs.shape[1] - 1
  if T == 0:
    return []

  activities = probs[:, 1:]                                               # [T, K]
  if rule == "actionness":
    return _actionness(probs, thresholds, min_length, max_gap, score, nms_threshold,
                       max_detections, min(labels_per_segment, K))
  if rule == "threshold":
    mask = activities.T[None] >= thresholds[:, None, None]                # [n_θ, K, T]
  else:
    mask = (np.argmax(probs, axis=1)[None, :] == np.arange(1, K + 1)[:, None])[None]  # [1, K, T]
  rows, starts, ends = _runs(mask.reshape(-1, T), max_gap)
  labels = rows % K + 1          # row = θ index * K + (label - 1)
  long_enough = ends - starts >= min_length
  labels, starts, ends = labels[long_enough], starts[long_enough], ends[long_enough]
  if labels.size == 0:
    return []
  labels, starts, ends = np.unique(np.stack([labels, starts, ends]), axis=1)  # one per segment
  scores = _segment_scores(probs, labels, starts, ends, score)
  kept = temporal_nms(labels, starts, ends, scores, nms_threshold)[:max_detections]
  return [Detection(int(labels[i]), float(starts[i]), float(ends[i]), float(scores[i]))
          for i in kept]


def _actionness(probs, thresholds, min_length, max_gap, score, nms_threshold,
                max_detections, labels_per_segment) -> list[Detection]:
  """`detect` with rule "actionness" (arguments checked there)."""
  T, K = probs.shape[0], probs.shape[1] - 1
  actionness = 1.0 - probs[:, 0]                                         # [T]
  mask = actionness[None, :] >= thresholds[:, None]                       # [n_θ, T]
  _, starts, ends = _runs(mask, max_gap)
  long_enough = ends - starts >= min_length
  if not long_enough.any():
    return []
  starts, ends = np.unique(np.stack([starts[long_enough], ends[long_enough]]), axis=1)
  totals = np.concatenate([np.zeros((1, K)), np.cumsum(probs[:, 1:], axis=0)])  # [T + 1, K]
  means = (totals[ends] - totals[starts]) / (ends - starts)[:, None]      # [S, K]
  best = np.argsort(-means, axis=1, kind="stable")[:, :labels_per_segment]  # [S, L]
  labels = (best + 1).ravel()
  starts = np.repeat(starts, labels_per_segment)
  ends = np.repeat(ends, labels_per_segment)
  scores = _segment_scores(probs, labels, starts, ends, score)
  kept = temporal_nms(labels, starts, ends, scores, nms_threshold)[:max_detections]
  return [Detection(int(labels[i]), float(starts[i]), float(ends[i]), float(scores[i]))
          for i in kept]


# ------------------------------------------------------------------------------------------
# Early detection.


def observed_end(start: float, end: float, fraction: float = 0.3) -> int:
  """The steps an early-detection view of the instance [start, end) holds: probs[:n].

  n = ceil(start + fraction * (end - start)), which for an integer start is start +
  ceil(fraction * length): the activity's first `fraction`, rounded up to whole steps,
  and at least the step holding `start` (a zero-length instance still shows one step).
  Float noise below 1e-9 is ignored by the ceil (0.3 * 10 is 3, not 4).
  """
  fraction = _check_fraction(fraction)
  start, end = float(start), float(end)
  if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
    raise ValueError(f"instance [{start}, {end}): expected 0 <= start <= end")
  n = math.ceil(start + fraction * (end - start) - _CEIL_SLACK)
  return max(n, math.floor(start) + 1)


def early_detect(probs_prefix, *, fraction: float = 0.3, offset: int = 0, top_k: int = 3,
                 rule: str = "argmax", threshold: float = 0.5, max_gap: int = 0,
                 smoothing: int = 1, score: str = "mean", extent: str = "extrapolate",
                 clip_end: float | None = None) -> list[Detection]:
  """The ongoing activity's whole segment, from the scores of a stream seen so far.

  The procedure is the module docstring's "Early detection": the class ongoing at the last
  observed step, its run back from there, the segment extrapolated assuming the seen part
  is `fraction` of the activity, and the `top_k` labels for it.

  Args:
    probs_prefix: [t_obs, K+1] scores of the observed steps (t_obs >= 1), column 0 the
      background; unsmoothed (smoothing happens here, on the prefix only).
    fraction: the part of the activity the view shows, in (0, 1].
    offset: the video step of probs_prefix[0] (0 for a prefix of the video); the returned
      segment is in video steps.
    top_k: how many labels to report for the segment (at most K).
    rule: "argmax" (c* is the row's argmax over all K+1 columns), "threshold"
      (p_c* >= threshold) or "actionness" (1 - p_0 >= threshold: any activity, so a
      class that becomes certain late keeps the activity's start): what keeps the run
      going back.
    threshold: rule "threshold"'s threshold (finite, > 0).
    max_gap: inactive steps the run may cross going back.
    smoothing: moving-average window over the prefix (1: none).
    score: "mean" of p_c over the observed part of the segment, or its "last" step's p_c.
    extent: "extrapolate" (end = start + observed length / fraction) or "observed"
      (end = observed_end).
    clip_end: if given, the reported end is at most this (e.g. the video's length in steps).

  Returns:
    Up to `top_k` detections with distinct labels and one segment, best score first.

  Raises:
    ValueError: bad shapes, non-finite scores, or an argument out of range.
  """
  probs = smooth(_check_probs(probs_prefix, "probs_prefix", min_steps=1), smoothing)
  fraction = _check_fraction(fraction)
  offset = _check_int(offset, "offset", 0)
  rule = _check_choice(rule, "rule", RULES)
  score = _check_choice(score, "score", EARLY_SCORES)
  extent = _check_choice(extent, "extent", EXTENTS)
  threshold = _check_threshold(threshold, "threshold")
  max_gap = _check_int(max_gap, "max_gap", 0)
  T, K = probs.shape[0], probs.shape[1] - 1
  top_k = min(_check_int(top_k, "top_k", 1), K)

  last = T - 1
  ongoing = int(np.argmax(probs[last, 1:])) + 1
  if rule == "argmax":
    active = np.argmax(probs, axis=1) == ongoing                          # [t_obs]
  elif rule == "actionness":
    active = 1.0 - probs[:, 0] >= threshold                               # any activity
  else:
    active = probs[:, ongoing] >= threshold
  active[last] = True             # the protocol: an activity is ongoing at the last step
  # Going back from the last step: the run's start is the first active step after the
  # last inactive stretch longer than max_gap.
  _, starts, _ = _runs(active[None], max_gap)
  start = int(starts[-1])

  if score == "mean":
    class_scores = probs[start:, 1:].mean(axis=0)                         # [K]
  else:
    class_scores = probs[last, 1:]
  labels = np.argsort(-class_scores, kind="stable")[:top_k] + 1           # ties: lower label

  seen_start, seen_end = offset + start, offset + T
  end = seen_start + (seen_end - seen_start) / fraction if extent == "extrapolate" else seen_end
  if clip_end is not None:
    end = max(min(end, float(clip_end)), float(seen_end))
  return [Detection(int(c), float(seen_start), float(end), float(class_scores[c - 1]))
          for c in labels]


def early_detect_instances(probs, instances, *, fraction: float = 0.3,
                           **early_detect_kwargs) -> list[Detection]:
  """Early detection of every instance of one video, each in its own view, pooled.

  For each instance [start, end) (in steps), the view is probs[:observed_end(start, end,
  fraction)]: `probs` must come from a causal model (a prefix's scores are the first rows
  of the whole video's). `early_detect` runs on each view with the same `fraction`; the
  detections of all views are concatenated, in the order of `instances`, to be written as
  the video's result list.

  Args:
    probs: [T, K+1] the whole video's per-step scores (unsmoothed).
    instances: [N, 2] the ground-truth segments (start, end) in steps, within [0, T]; rows
      (start, end, class), as `streams.Video.segments`, work too (the class is unused).
    fraction: the observed part of each instance.
    **early_detect_kwargs: passed to `early_detect` (top_k, rule, ..., not offset).

  Returns:
    Up to N * top_k detections. `clip_end` defaults to T.
  """
  probs = _check_probs(probs)
  if "offset" in early_detect_kwargs:
    raise ValueError("offset: each view is a prefix of the video, its offset is 0")
  early_detect_kwargs.setdefault("clip_end", probs.shape[0])
  instances = np.asarray(instances, dtype=np.float64)
  if instances.size == 0:
    return []
  if instances.ndim != 2 or instances.shape[1] not in (2, 3):
    raise ValueError(f"instances: expected rows (start, end) or (start, end, class), got "
                     f"shape {instances.shape}")
  pooled = []
  for start, end in instances[:, :2]:
    n = observed_end(start, end, fraction)
    if n > probs.shape[0]:
      raise ValueError(f"instance [{start}, {end}): its view needs {n} steps, the video "
                       f"has {probs.shape[0]}")
    pooled += early_detect(probs[:n], fraction=fraction, **early_detect_kwargs)
  return pooled


# ------------------------------------------------------------------------------------------
# ActivityNet's result format.


def detections_to_results(video_name: str, detections: Sequence[Detection],
                          class_names: Sequence[str] | Mapping[int, str],
                          seconds_per_step: float = 1.0) -> list[dict]:
  """One video's detections as ActivityNet result entries, segments in seconds.

  Args:
    video_name: the video (named in errors; the caller files the list under it, e.g.
      `results.setdefault(video_name, []).extend(...)` to pool views).
    detections: from `detect` / `early_detect`, segments in steps.
    class_names: the K activity names, activity c (column c of probs) being
      class_names[c - 1], as `streams.class_names(K)` gives them (no background entry);
      or a mapping {label: name}.
    seconds_per_step: a step's duration; [start, end) in steps becomes
      [start * seconds_per_step, end * seconds_per_step].

  Returns:
    [{"label": name, "score": float, "segment": [start_s, end_s]}], in the given order.
  """
  seconds_per_step = float(seconds_per_step)
  if not (math.isfinite(seconds_per_step) and seconds_per_step > 0):
    raise ValueError(f"seconds_per_step: expected a finite number > 0, got {seconds_per_step}")
  results = []
  for d in detections:
    label = int(d.label)
    if isinstance(class_names, Mapping):
      name = class_names.get(label) if label >= 1 else None
    else:
      name = class_names[label - 1] if 1 <= label <= len(class_names) else None
    if name is None:
      raise ValueError(f"video {video_name!r}: detection label {label} has no class name "
                       f"(activities are 1..K, named class_names[label - 1]; "
                       f"{len(class_names)} names given)")
    if not (math.isfinite(d.start) and math.isfinite(d.end) and d.start <= d.end):
      raise ValueError(f"video {video_name!r}: bad segment [{d.start}, {d.end})")
    results.append({"label": name, "score": float(d.score),
                    "segment": [float(d.start) * seconds_per_step,
                                float(d.end) * seconds_per_step]})
  return results
