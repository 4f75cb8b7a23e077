r"""ActivityNet's temporal action detection mAP, computed as the official evaluation code does.

Reads ActivityNet's JSON formats:

- ground truth: `{"database": {video: {"subset": "training" | "validation" | "testing",
  "annotations": [{"segment": [start, end], "label": name}], ...}}, ...}` (other keys, e.g.
  "duration", "url", "version", "taxonomy", are ignored);
- predictions: `{"results": {video: [{"label": name, "score": s, "segment": [start, end]}]},
  ...}` ("version" and "external_data" are ignored: the official code requires them, this
  one does not);

and prints (CLI) or returns (`evaluate`) the AP of every class at every tIoU threshold,
the mAP per threshold (the mean over classes) and the average mAP (the mean over
thresholds):

  python -m experiments.activity.evaluate --ground_truth=activity_net.v1-3.min.json \
      --predictions=results.json [--tiou=0.5:0.05:0.95] [--subset=validation] \
      [--blocked_videos=blocked.json]

The procedure is that of activitynet/ActivityNet's Evaluation/eval_detection.py
(`ANETdetection(...).evaluate()`, `compute_average_precision_detection`) and its utils.py
(`segment_iou`, `interpolated_prec_rec`), quirks included (the procedure is the same in
the Python 2 versions and the later Python 3 one; they differ in the empty-class case and
in which top-level keys they require):

- the ground truth is the videos whose "subset" equals `subset`, minus the blocked videos;
  the classes are the labels of that ground truth only, numbered in order of first
  appearance (videos in file order, each video's annotations in list order). A prediction
  whose label is not among them is an error (a KeyError in the official code; here a
  `UserError` naming the label). A subset without ground truth is an error too (the
  official gives NaN);
- the predictions are not filtered by subset, only the blocked videos are dropped: a
  prediction on a video that is not in the subset's ground truth, or on a video with no
  ground truth of the prediction's class, is a false positive at every threshold, and
  counts in its class's precision;
- segments and scores are read with `float(...)` into float64 (here they must be numbers:
  the official also takes numeric strings); the scores of all predictions form one
  column, int64 when every score is an integer, else float64 (the dtype pandas gives the
  official's column), which matters because it decides how ties are broken:
- per class, the predictions (videos in file order, each video's list in order, kept to
  the class in that order) are ranked by `scores.argsort()[::-1]`: numpy's default sort,
  reversed, so tied scores come out in whatever order that call leaves them: not a stable
  order, and one that depends on numpy's version and the CPU (numpy 2 sorts with AVX-512
  where it can, and then even arrays of eight differ from a stable sort). This module
  calls the same argsort on the same array, so its ties are the official's on the same
  machine and numpy;
- `segment_iou(p, g)`: intersection max(0, min(p_end, g_end) - max(p_start, g_start)),
  union (g_end - g_start) + (p_end - p_start) - intersection, in that order of operations,
  tIoU = intersection / union. Two zero-length segments at the same instant have tIoU
  0/0 = NaN, and NaN is never below a threshold: such a prediction matches that ground
  truth at every threshold (ActivityNet 1.3 holds 12 zero-length annotations);
- matching, in rank order, at each threshold separately: the prediction's tIoUs with the
  ground truth of its video and class are visited in `tious.argsort()[::-1]` order
  (highest first, NaN first of all, ties as that call leaves them); the first one below
  the threshold ends the search (false positive); a ground truth already matched at this
  threshold is skipped; the first one not matched becomes this prediction's (true
  positive). tIoU equal to the threshold matches (the official stops on `<`; at a
  threshold of 0 any prediction on a video with a free instance of its class matches,
  overlapping or not). A second detection of a matched instance is thus a false
  positive, unless a lower-tIoU instance above the threshold is still free;
- AP: precision tp / (tp + fp) and recall tp / n_gt, cumulated in rank order, n_gt being
  the class's ground-truth instances; `interpolated_prec_rec` (VOC 2011): precision padded
  with 0 at both ends and recall with 0 and 1, precision made non-increasing from the
  right, AP = sum over the points where recall changes of (recall step) x precision. A
  class without predictions has AP 0 at every threshold (the later official versions
  return zeros with a warning; the first one crashed);
- mAP = the [threshold, class] AP array's mean over classes, average mAP = their mean;
- the blocked videos: the official downloads a list from ActivityNet's server (now gone)
  and drops those videos from the ground truth and from the predictions; here the list is
  an optional JSON file (`--blocked_videos`, a list of video ids).

The default thresholds are the official default, `np.linspace(0.5, 0.95, 10)` (its ninth
value is 0.8999999999999999, not 0.9); `--tiou=a:s:b` is `np.linspace(a, b, n)` with
n = round((b - a) / s) + 1 (b included), so "0.5:0.05:0.95" is that very array; a comma
list ("0.3,0.5,0.7") gives the numbers as written.

Speed: the official loops over pandas rows, one prediction at a time. Here the matching of
different (video, class) pairs is independent, so all pairs advance together: the
predictions of pairs with the same number k of ground-truth instances are stacked, their
tIoUs computed at once ([n, k]) and argsorted row by row, and the greedy loop runs over
the position of a prediction within its pair (one step for all pairs), vectorised over
pairs, thresholds and candidates. The numbers are the official's bit for bit:
`tests/test_activity_evaluate.py` checks them against a loop-for-loop transcription.

`ground_truth_from_bmn` builds the ground truth in this format from BMN's
`anet_anno_action.json` and `video_info_new.csv` (ActivityNet 1.3 as BMN, G-TAD and
their successors ship it).
"""

from __future__ import annotations

import csv
import json
import os
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

import numpy as np

from experiments import common
from experiments.common import UserError

DEFAULT_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
"""The official default: 0.5, 0.55, ..., 0.95 as np.linspace makes them."""

_INTEGER = frozenset({int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                      np.uint32, np.uint64})
_NUMBER = _INTEGER | {float, np.float16, np.float32, np.float64}
"""Types read as numbers (exact types: a bool is not a number here)."""


# ------------------------------------------------------------------------------------------
# The official building blocks (utils.py), as pure numpy functions.


def segment_iou(target_segment, candidate_segments) -> np.ndarray:
  """The temporal IoU of one segment with each of N segments (utils.segment_iou).

  Args:
    target_segment: [2] (start, end), e.g. a prediction.
    candidate_segments: [N, 2], e.g. the ground truth of its video.

  Returns:
    [N] float64: max(0, min(ends) - max(starts)) / (candidate length + target length -
    intersection). Zero-length segments at the same instant give NaN (0 / 0), as in the
    official code.
  """
  target = np.asarray(target_segment, dtype=np.float64)
  candidates = np.asarray(candidate_segments, dtype=np.float64).reshape(-1, 2)
  return _tiou(target[None, 0], target[None, 1], candidates[None, :, 0],
               candidates[None, :, 1])[0]


def _tiou(t_start, t_end, c_start, c_end) -> np.ndarray:
  """segment_iou broadcast: [n] targets against [n, k] candidates -> [n, k]. The same
  operations in the same order as the official, so the same float64 values."""
  t_start, t_end = np.asarray(t_start)[:, None], np.asarray(t_end)[:, None]
  intersection = (np.minimum(t_end, c_end) - np.maximum(t_start, c_start)).clip(0)
  union = (c_end - c_start) + (t_end - t_start) - intersection
  with np.errstate(divide="ignore", invalid="ignore"):
    return intersection.astype(float) / union


def interpolated_prec_rec(prec, rec) -> float:
  """Interpolated AP, VOCdevkit 2011 (utils.interpolated_prec_rec).

  Args:
    prec: [P] precision after each ranked prediction.
    rec: [P] recall after each ranked prediction.

  Returns:
    sum over the indices i where the padded recall [0, rec..., 1] changes of
    (mrec[i] - mrec[i-1]) * mprec[i], mprec being [0, prec..., 0] made non-increasing from
    the right (its running maximum from the end).
  """
  mprec = np.hstack([[0], prec, [0]])
  mrec = np.hstack([[0], rec, [1]])
  mprec = np.maximum.accumulate(mprec[::-1])[::-1]  # the official's right-to-left max loop
  idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
  return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def _class_ap(tp: np.ndarray, npos: float) -> np.ndarray:
  """compute_average_precision_detection's last lines: tp [T, P] in rank order -> AP [T]."""
  tp = tp.astype(np.float64)
  fp = 1.0 - tp  # every prediction is one or the other at each threshold
  tp_cumsum = np.cumsum(tp, axis=1).astype(float)
  fp_cumsum = np.cumsum(fp, axis=1).astype(float)
  with np.errstate(divide="ignore", invalid="ignore"):
    recall_cumsum = tp_cumsum / npos
    precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
    return np.array([interpolated_prec_rec(precision_cumsum[t, :], recall_cumsum[t, :])
                     for t in range(tp.shape[0])], dtype=np.float64).reshape(tp.shape[0])


# ------------------------------------------------------------------------------------------
# Matching: every (video, class) pair at once.


def _true_positives(gt_pair, gt_start, gt_end, pred_pair, pred_rank, pred_start, pred_end,
                    thresholds) -> np.ndarray:
  """Which predictions are true positives at each threshold, as the official's greedy
  loop decides.

  Args:
    gt_pair: [G] int, the (video, class) pair of each ground-truth instance, the instances
      in the official order (within a pair: file order).
    gt_start, gt_end: [G] float64.
    pred_pair: [P] int, the pair of each prediction; -1 when its video has no ground truth
      of its class.
    pred_rank: [P] int, the prediction's position in its class's ranking (the order in
      which the official visits them; only the order within a pair matters).
    pred_start, pred_end: [P] float64.
    thresholds: [T] float64.

  Returns:
    [T, P] bool.
  """
  thresholds = np.asarray(thresholds, dtype=np.float64)
  num_t = len(thresholds)
  tp = np.zeros((num_t, len(pred_pair)), dtype=bool)
  if not len(gt_pair):
    return tp
  gt_order = np.argsort(gt_pair, kind="stable")  # each pair's instances, in file order
  num_pairs = int(gt_pair.max()) + 1
  gt_count = np.bincount(gt_pair, minlength=num_pairs)
  gt_first = np.concatenate([[0], np.cumsum(gt_count)[:-1]])
  has_gt = pred_pair >= 0
  k_of_pred = np.where(has_gt, gt_count[np.where(has_gt, pred_pair, 0)], 0)
  t_index = np.arange(num_t)
  for k in np.unique(k_of_pred[has_gt]):
    sel = np.flatnonzero(k_of_pred == k)
    sel = sel[np.lexsort((pred_rank[sel], pred_pair[sel]))]  # by pair, then rank
    pairs = pred_pair[sel]
    gts = gt_order[gt_first[pairs][:, None] + np.arange(k)]  # [n, k] in the pair's order
    tiou = _tiou(pred_start[sel], pred_end[sel], gt_start[gts], gt_end[gts])  # [n, k]
    # Row by row this is the official's tiou_arr.argsort()[::-1] (numpy sorts each row of
    # the last axis with the same 1-D kernel).
    candidates = np.argsort(tiou, axis=1)[:, ::-1]  # [n, k] local gt indices
    tiou_sorted = np.take_along_axis(tiou, candidates, axis=1)
    # Pairs in this bucket, and each prediction's position within its pair.
    new_pair = np.concatenate([[True], pairs[1:] != pairs[:-1]])
    slot = np.cumsum(new_pair) - 1  # [n] the pair's slot in `locked`
    start_of = np.flatnonzero(new_pair)
    position = np.arange(len(sel)) - start_of[slot]
    locked = np.zeros((len(start_of), num_t, k), dtype=bool)  # [pairs, T, k]
    by_position = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[by_position], np.arange(position.max() + 2))
    for step in range(position.max() + 1):
      rows = by_position[bounds[step]:bounds[step + 1]]  # one prediction per pair
      s, c, g = tiou_sorted[rows], candidates[rows], slot[rows]
      # Candidates before the first one below the threshold: [m, T, k].
      reachable = np.logical_and.accumulate(~(s[:, None, :] < thresholds[None, :, None]),
                                            axis=2)
      taken = locked[g[:, None, None], t_index[None, :, None], c[:, None, :]]
      free = reachable & ~taken
      hit = free.any(axis=2)  # [m, T]
      chosen = np.take_along_axis(c, free.argmax(axis=2), axis=1)  # [m, T]
      m_idx, t_idx = np.nonzero(hit)
      locked[g[m_idx], t_idx, chosen[m_idx, t_idx]] = True
      tp[:, sel[rows]] = hit.T
  return tp


def average_precision_detection(gt_videos: Sequence, gt_segments, pred_videos: Sequence,
                                pred_segments, pred_scores,
                                tiou_thresholds=DEFAULT_TIOU_THRESHOLDS) -> np.ndarray:
  """The AP of one class at each threshold (compute_average_precision_detection).

  Args:
    gt_videos: [G] video ids of the class's ground-truth instances, in file order.
    gt_segments: [G, 2] their (start, end).
    pred_videos: [P] video ids of the class's predictions, in file order.
    pred_segments: [P, 2] their (start, end).
    pred_scores: [P] their scores; ranked by `np.asarray(pred_scores).argsort()[::-1]`, so
      pass them with the dtype the official's column would have (see the module docstring).
    tiou_thresholds: [T].

  Returns:
    [T] float64: zeros when there are no predictions; NaN when there is no ground truth
    (the official's 0 / 0 recall).
  """
  thresholds = np.atleast_1d(np.asarray(tiou_thresholds, dtype=np.float64))
  scores = np.asarray(pred_scores)
  if not len(scores):
    return np.zeros(len(thresholds))
  gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
  pred_segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
  codes = {v: i for i, v in enumerate(dict.fromkeys(list(gt_videos)))}
  gt_pair = np.array([codes[v] for v in gt_videos], dtype=np.int64)
  pred_pair = np.array([codes.get(v, -1) for v in pred_videos], dtype=np.int64)
  order = scores.argsort()[::-1]
  rank = np.empty(len(order), dtype=np.int64)
  rank[order] = np.arange(len(order))
  tp = _true_positives(gt_pair, gt_segments[:, 0], gt_segments[:, 1], pred_pair, rank,
                       pred_segments[:, 0], pred_segments[:, 1], thresholds)
  return _class_ap(tp[:, order], float(len(gt_pair)))


# ------------------------------------------------------------------------------------------
# The files.


def _load_json(value, what):
  if not isinstance(value, (str, os.PathLike)):
    return value
  return common.read_json(value, what)


def _segment(segment, where) -> tuple[float, float]:
  if (not isinstance(segment, (list, tuple)) or len(segment) != 2 or
      not all(type(x) in _NUMBER for x in segment)):  # bools are not numbers
    raise UserError(f"{where}: 'segment' is not two numbers [start, end]: {segment!r}")
  return float(segment[0]), float(segment[1])


def _read_ground_truth(data, subset, blocked, where):
  """ANETdetection._import_ground_truth -> (video ids [G], labels [G] (class indices),
  starts [G], ends [G], class names in index order)."""
  if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
    raise UserError(f"{where}: expected a JSON object with a 'database' object")
  activity_index: dict[str, int] = {}
  videos, labels, starts, ends = [], [], [], []
  for video, v in data["database"].items():
    if not isinstance(v, dict) or "subset" not in v:
      raise UserError(f"{where}: database[{video!r}] has no 'subset'")
    if v["subset"] != subset or video in blocked:
      continue
    annotations = v.get("annotations")
    if not isinstance(annotations, list):
      raise UserError(f"{where}: database[{video!r}] has no 'annotations' list")
    for k, ann in enumerate(annotations):
      here = f"{where}: database[{video!r}].annotations[{k}]"
      if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
        raise UserError(f"{here} has no string 'label'")
      start, end = _segment(ann.get("segment"), here)
      label = activity_index.setdefault(ann["label"], len(activity_index))
      videos.append(video)
      labels.append(label)
      starts.append(start)
      ends.append(end)
  if not labels:
    raise UserError(f"{where}: no ground truth in subset {subset!r}"
                    + (" (after removing the blocked videos)" if blocked else ""))
  return videos, labels, starts, ends, list(activity_index)


def _read_predictions(data, activity_index, blocked, subset, where):
  """ANETdetection._import_prediction -> (videos [V], predictions per video [V], labels [P],
  scores [P] (as read), starts [P], ends [P] (float64))."""
  if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
    raise UserError(f"{where}: expected a JSON object with a 'results' object")
  videos, counts, labels, scores, starts, ends = [], [], [], [], [], []
  sequence = (list, tuple)
  for video, results in data["results"].items():
    if video in blocked:
      continue
    if not isinstance(results, list):
      raise UserError(f"{where}: results[{video!r}] is not a list")
    for k, r in enumerate(results):
      try:
        segment = r["segment"]
        start, end = segment
        label, score = activity_index[r["label"]], r["score"]
        ok = (type(score) in _NUMBER and type(start) in _NUMBER and type(end) in _NUMBER
              and type(segment) in sequence)
      except (KeyError, TypeError, ValueError):
        ok = False
      if not ok:
        _bad_prediction(r, f"{where}: results[{video!r}][{k}]", activity_index, subset)
      labels.append(label)
      scores.append(score)
      starts.append(start)
      ends.append(end)
    videos.append(video)
    counts.append(len(results))
  return (videos, counts, np.array(labels, dtype=np.int64), scores,
          np.array(starts, dtype=np.float64), np.array(ends, dtype=np.float64))


def _bad_prediction(r, here, activity_index, subset):
  """Raises the UserError that says what is wrong with the prediction `r`."""
  if not isinstance(r, dict) or not all(f in r for f in ("label", "score", "segment")):
    raise UserError(f"{here} is not an object with 'label', 'score' and 'segment'")
  if not isinstance(r["label"], str) or r["label"] not in activity_index:
    raise UserError(f"{here}: label {r['label']!r} does not occur in the ground truth of "
                    f"subset {subset!r}")
  if type(r["score"]) not in _NUMBER:
    raise UserError(f"{here}: 'score' is not a number: {r['score']!r}")
  _segment(r["segment"], here)
  raise UserError(f"{here} is malformed: {r!r}")


def _score_column(scores: list) -> np.ndarray:
  """The scores as pandas types the official's column: int64 if all are integers (and fit),
  else float64."""
  if all(type(s) in _INTEGER for s in scores):
    try:
      return np.array(scores, dtype=np.int64)
    except (OverflowError, ValueError):
      pass
  return np.array(scores, dtype=np.float64)


def _blocked_set(blocked_videos) -> set:
  if blocked_videos is None:
    return set()
  where = blocked_videos if isinstance(blocked_videos, (str, os.PathLike)) else "blocked videos"
  blocked = _load_json(blocked_videos, "blocked videos")
  if not isinstance(blocked, (list, tuple, set)) or not all(isinstance(v, str) for v in blocked):
    raise UserError(f"{where}: expected a JSON list of video ids")
  return set(blocked)


def evaluate(ground_truth, predictions, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS,
             subset: str = "validation", blocked_videos=None) -> dict[str, Any]:
  """The official ActivityNet detection mAP (see the module docstring for the procedure).

  Args:
    ground_truth: the ground-truth file's contents (a dict with "database") or its path.
    predictions: the prediction file's contents (a dict with "results") or its path.
    tiou_thresholds: [T] tIoU thresholds (default: the official's np.linspace(0.5, 0.95, 10)).
    subset: the ground truth's subset to evaluate on.
    blocked_videos: None, a list of video ids, or the path of a JSON list of them: dropped
      from the ground truth and the predictions.

  Returns:
    `{"tiou_thresholds": [T], "mAP": [T], "average_mAP": float, "ap": {label: [T]},
    "num_ground_truth": int, "num_predictions": int}`; the classes in order of first
    appearance in the subset's ground truth; the predictions counted after blocking.

  Raises:
    UserError (a ValueError): a missing or malformed file, a segment that is not two
      numbers, a subset without ground truth, a prediction whose label is not a class of
      the subset's ground truth.
  """
  where = {name: value if isinstance(value, (str, os.PathLike)) else name
           for name, value in (("ground truth", ground_truth), ("predictions", predictions))}
  thresholds = np.atleast_1d(np.asarray(tiou_thresholds, dtype=np.float64))
  if thresholds.ndim != 1 or not len(thresholds):
    raise UserError("tiou_thresholds: expected a non-empty list of numbers")
  blocked = _blocked_set(blocked_videos)
  gt_data = _load_json(ground_truth, "ground truth")
  pred_data = _load_json(predictions, "predictions")
  gt_videos, gt_labels, gt_start, gt_end, classes = _read_ground_truth(
      gt_data, subset, blocked, where["ground truth"])
  activity_index = {name: i for i, name in enumerate(classes)}
  pred_video_names, per_video, pred_labels, scores, pred_start, pred_end = _read_predictions(
      pred_data, activity_index, blocked, subset, where["predictions"])

  # (video, class) pairs: the ground truth's, numbered; a prediction's pair or -1.
  num_classes = len(classes)
  video_code = {v: i for i, v in enumerate(dict.fromkeys(gt_videos))}
  gt_labels = np.array(gt_labels, dtype=np.int64)
  gt_pair = np.array([video_code[v] for v in gt_videos], dtype=np.int64) * num_classes + gt_labels
  pair_keys, gt_pair = np.unique(gt_pair, return_inverse=True)
  pred_video = np.repeat(np.array([video_code.get(v, -1) for v in pred_video_names],
                                  dtype=np.int64), per_video)
  pred_key = pred_video * num_classes + pred_labels
  found = np.searchsorted(pair_keys, pred_key).clip(max=len(pair_keys) - 1)
  pred_pair = np.where((pred_video >= 0) & (pair_keys[found] == pred_key), found, -1)

  # Each class's ranking: its predictions in file order, score.argsort()[::-1].
  score_column = _score_column(scores)
  by_class = np.argsort(pred_labels, kind="stable")
  class_bounds = np.searchsorted(pred_labels[by_class], np.arange(num_classes + 1))
  rankings, rank = [], np.zeros(len(pred_labels), dtype=np.int64)
  for c in range(num_classes):
    members = by_class[class_bounds[c]:class_bounds[c + 1]]
    ranking = members[score_column[members].argsort()[::-1]]
    rank[ranking] = np.arange(len(ranking))
    rankings.append(ranking)

  tp = _true_positives(gt_pair, np.array(gt_start), np.array(gt_end), pred_pair, rank,
                       pred_start, pred_end, thresholds)
  npos = np.bincount(gt_labels, minlength=num_classes)
  ap = np.zeros((len(thresholds), num_classes))
  for c, ranking in enumerate(rankings):
    if len(ranking):  # no predictions: AP 0 (the official's empty-DataFrame return)
      ap[:, c] = _class_ap(tp[:, ranking], float(npos[c]))
  mean_ap = ap.mean(axis=1)
  return {"tiou_thresholds": thresholds.tolist(),
          "mAP": mean_ap.tolist(),
          "average_mAP": float(mean_ap.mean()),
          "ap": {name: ap[:, c].tolist() for c, name in enumerate(classes)},
          "num_ground_truth": len(gt_labels),
          "num_predictions": len(pred_labels)}


def parse_thresholds(text: str) -> np.ndarray:
  """"a:s:b" -> np.linspace(a, b, round((b - a) / s) + 1) (b included; "0.5:0.05:0.95" is
  the official default bit for bit); "x,y,z" -> those numbers; "x" -> [x]."""
  text = text.strip()
  try:
    if ":" in text:
      parts = text.split(":")
      if len(parts) != 3:
        raise ValueError
      a, s, b = (Decimal(p.strip()) for p in parts)
      if s <= 0 or b < a:
        raise UserError(f"--tiou={text}: needs a step > 0 and an end >= the start")
      steps = (b - a) / s
      if abs(steps - steps.to_integral_value()) > Decimal("1e-9"):
        raise UserError(f"--tiou={text}: the end is not a whole number of steps from the "
                        "start")
      return np.linspace(float(a), float(b), int(steps.to_integral_value()) + 1)
    values = [float(Decimal(p.strip())) for p in text.split(",")]
  except UserError:
    raise
  except (ValueError, InvalidOperation):
    raise UserError(f"--tiou={text}: expected a:step:b or a comma-separated list of "
                    "numbers") from None
  return np.array(values, dtype=np.float64)


# ------------------------------------------------------------------------------------------
# BMN's annotation files.


def ground_truth_from_bmn(anno_json_path, video_info_csv_path, *,
                          drop_prefix: str = "") -> dict[str, Any]:
  """ActivityNet's ground-truth format from BMN's ActivityNet 1.3 files.

  Args:
    anno_json_path: `anet_anno_action.json`: {video: {"duration_second", "duration_frame",
      "feature_frame", "annotations": [{"segment": [s, e], "label"}]}}.
    video_info_csv_path: `video_info_new.csv`, columns video, numFrame, seconds, fps,
      rfps, subset (training / validation / testing), featureFrame.
    drop_prefix: removed from the start of every video id (BMN's ids are YouTube ids
      prefixed "v_"; "v_" gives the ids of the official activity_net.v1-3.min.json).

  Returns:
    `{"version", "database": {video: {"subset", "duration", "annotations"}}}`, the videos
    in the JSON file's order, each with the subset the CSV gives it.

  Raises:
    UserError: a missing file, or a video of one file missing from the other.
  """
  annotations = _load_json(anno_json_path, "annotations")
  try:
    with open(video_info_csv_path, newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
  except OSError as e:
    raise UserError(f"video info {video_info_csv_path}: {e.strerror or e}") from None
  if not rows or not {"video", "subset"} <= set(rows[0]):
    raise UserError(f"video info {video_info_csv_path}: expected columns video and subset")
  subset_of = {r["video"]: r["subset"] for r in rows}
  if not isinstance(annotations, dict):
    raise UserError(f"annotations {anno_json_path}: expected a JSON object of videos")
  missing = [v for v in annotations if v not in subset_of]
  extra = [v for v in subset_of if v not in annotations]
  if missing or extra:
    raise UserError(f"{anno_json_path} and {video_info_csv_path} disagree: "
                    f"{len(missing)} video(s) without a CSV row, {len(extra)} CSV row(s) "
                    f"without annotations, e.g. {(missing or extra)[0]!r}")

  def strip(video):
    return video[len(drop_prefix):] if drop_prefix and video.startswith(drop_prefix) else video

  database = {strip(v): {"subset": subset_of[v], "duration": a.get("duration_second"),
                         "annotations": [{"segment": list(x["segment"]), "label": x["label"]}
                                         for x in a["annotations"]]}
              for v, a in annotations.items()}
  return {"version": "ActivityNet 1.3 (BMN's anet_anno_action.json, video_info_new.csv)",
          "database": database}


# ------------------------------------------------------------------------------------------
# The command line.


def _define_flags():
  from absl import flags  # noqa: PLC0415
  flags.DEFINE_string("ground_truth", None, "ActivityNet ground truth (JSON): {'database': "
                      "{video: {'subset', 'annotations': [{'segment', 'label'}]}}}.")
  flags.DEFINE_string("predictions", None, "Detections (JSON): {'results': {video: "
                      "[{'label', 'score', 'segment'}]}}.")
  flags.DEFINE_string("tiou", "0.5:0.05:0.95", "tIoU thresholds: a:step:b (b included; "
                      "np.linspace) or a comma-separated list.")
  flags.DEFINE_string("subset", "validation", "The ground truth's subset to evaluate on.")
  flags.DEFINE_string("blocked_videos", None, "Optional JSON list of video ids dropped from "
                      "the ground truth and the predictions (the official's blocked list).")
  return flags.FLAGS


def main(argv) -> None:
  """Prints the scores as one JSON object."""
  from absl import flags  # noqa: PLC0415
  from experiments import common  # noqa: PLC0415
  FLAGS = flags.FLAGS  # noqa: N806
  common.check_no_positional(argv)
  for name in ("ground_truth", "predictions"):
    if not FLAGS[name].value:
      raise UserError(f"--{name} is required")
  scores = evaluate(FLAGS.ground_truth, FLAGS.predictions, parse_thresholds(FLAGS.tiou),
                    subset=FLAGS.subset, blocked_videos=FLAGS.blocked_videos)
  print(json.dumps(scores), flush=True)


if __name__ == "__main__":
  from experiments import common

  _define_flags()
  common.run(main)
