"""experiments.activity.evaluate (ActivityNet's detection mAP) against the official procedure.

The oracle is `official_reference` below: activitynet/ActivityNet's Evaluation/
eval_detection.py (ANETdetection._import_ground_truth, _import_prediction,
wrapper_compute_average_precision, evaluate, compute_average_precision_detection) and
utils.py (segment_iou, interpolated_prec_rec) transcribed loop for loop, the pandas frames
replaced by lists of rows in the same order and the same numpy calls on the same arrays
(the argsorts that break ties, the cumsums, the AP sum). The hand-built cases work their
figures out in the comments.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.activity import evaluate as anet
from experiments.common import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.environ.get("RNN_JAX_DATA") or "/work/shared/data", "activitynet")


# ------------------------------------------------------------------------------------------
# The official code, transcribed.


def _segment_iou_reference(target_segment, candidate_segments):
  tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
  tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
  segments_intersection = (tt2 - tt1).clip(0)
  segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
      + (target_segment[1] - target_segment[0]) - segments_intersection
  with np.errstate(divide="ignore", invalid="ignore"):
    return segments_intersection.astype(float) / segments_union


def _interpolated_prec_rec_reference(prec, rec):
  mprec = np.hstack([[0], prec, [0]])
  mrec = np.hstack([[0], rec, [1]])
  for i in range(len(mprec) - 1)[::-1]:
    mprec[i] = max(mprec[i], mprec[i + 1])
  idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
  return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def _compute_average_precision_detection(ground_truth, prediction, tiou_thresholds,
                                         score_dtype):
  """ground_truth, prediction: lists of row dicts (the class's frames after
  reset_index(drop=True), i.e. in file order)."""
  ap = np.zeros(len(tiou_thresholds))
  if not prediction:  # prediction.empty
    return ap
  npos = float(len(ground_truth))
  lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
  sort_idx = np.array([p["score"] for p in prediction], dtype=score_dtype).argsort()[::-1]
  prediction = [prediction[i] for i in sort_idx]
  tp = np.zeros((len(tiou_thresholds), len(prediction)))
  fp = np.zeros((len(tiou_thresholds), len(prediction)))
  # ground_truth.groupby('video-id'): each group's rows in order, with their 'index'.
  ground_truth_gbvn = {}
  for index, row in enumerate(ground_truth):
    ground_truth_gbvn.setdefault(row["video-id"], []).append(dict(row, index=index))
  for idx, this_pred in enumerate(prediction):
    if this_pred["video-id"] not in ground_truth_gbvn:
      fp[:, idx] = 1
      continue
    this_gt = ground_truth_gbvn[this_pred["video-id"]]
    tiou_arr = _segment_iou_reference(
        np.array([this_pred["t-start"], this_pred["t-end"]]),
        np.array([[g["t-start"], g["t-end"]] for g in this_gt]))
    tiou_sorted_idx = tiou_arr.argsort()[::-1]
    for tidx, tiou_thr in enumerate(tiou_thresholds):
      for jdx in tiou_sorted_idx:
        if tiou_arr[jdx] < tiou_thr:
          fp[tidx, idx] = 1
          break
        if lock_gt[tidx, this_gt[jdx]["index"]] >= 0:
          continue
        tp[tidx, idx] = 1
        lock_gt[tidx, this_gt[jdx]["index"]] = idx
        break
      if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
        fp[tidx, idx] = 1
  tp_cumsum = np.cumsum(tp, axis=1).astype(float)
  fp_cumsum = np.cumsum(fp, axis=1).astype(float)
  recall_cumsum = tp_cumsum / npos
  precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
  for tidx in range(len(tiou_thresholds)):
    ap[tidx] = _interpolated_prec_rec_reference(precision_cumsum[tidx, :],
                                                recall_cumsum[tidx, :])
  return ap


def official_reference(gt_data, pred_data, tiou_thresholds, subset="validation",
                       blocked_videos=()):
  """ANETdetection(...).evaluate() -> (ap [T, C], mAP [T], average_mAP, activity_index)."""
  activity_index, cidx = {}, 0
  ground_truth = []
  for videoid, v in gt_data["database"].items():
    if subset != v["subset"]:
      continue
    if videoid in blocked_videos:
      continue
    for ann in v["annotations"]:
      if ann["label"] not in activity_index:
        activity_index[ann["label"]] = cidx
        cidx += 1
      ground_truth.append({"video-id": videoid, "t-start": float(ann["segment"][0]),
                           "t-end": float(ann["segment"][1]),
                           "label": activity_index[ann["label"]]})
  prediction = []
  for videoid, v in pred_data["results"].items():
    if videoid in blocked_videos:
      continue
    for result in v:
      label = activity_index[result["label"]]
      prediction.append({"video-id": videoid, "t-start": float(result["segment"][0]),
                         "t-end": float(result["segment"][1]), "label": label,
                         "score": result["score"]})
  # The score column's dtype, as pandas infers it from the whole list.
  score_dtype = np.array([p["score"] for p in prediction]).dtype if prediction else float
  ap = np.zeros((len(tiou_thresholds), len(activity_index)))
  for label_name, cidx in activity_index.items():
    ap[:, cidx] = _compute_average_precision_detection(
        [g for g in ground_truth if g["label"] == cidx],
        [p for p in prediction if p["label"] == cidx], tiou_thresholds, score_dtype)
  mean_ap = ap.mean(axis=1)
  return ap, mean_ap, mean_ap.mean(), activity_index


def _assert_same(got, gt_data, pred_data, thresholds, subset="validation", blocked=()):
  ap, mean_ap, average, activity_index = official_reference(gt_data, pred_data, thresholds,
                                                            subset, blocked)
  assert list(got["ap"]) == list(activity_index)
  np.testing.assert_array_equal(np.array(list(got["ap"].values())).T, ap)
  np.testing.assert_array_equal(got["mAP"], mean_ap)
  assert got["average_mAP"] == average


# ------------------------------------------------------------------------------------------
# Building blocks.


def test_segment_iou_by_hand():
  # [2, 6] against: [4, 8] (2 / 6), [6, 9] (touching: 0), [0, 10] (4 / 10), [3, 5] (2 / 4).
  got = anet.segment_iou([2, 6], [[4, 8], [6, 9], [0, 10], [3, 5]])
  np.testing.assert_allclose(got, [2 / 6, 0, 0.4, 0.5], rtol=0, atol=1e-15)
  # Two zero-length segments at one instant: 0 / 0.
  assert np.isnan(anet.segment_iou([5, 5], [[5, 5]])[0])
  rng = np.random.default_rng(0)
  target, cands = rng.uniform(0, 10, 2), rng.uniform(0, 10, (40, 2))
  np.testing.assert_array_equal(anet.segment_iou(target, cands),
                                _segment_iou_reference(target, cands))


def test_interpolated_prec_rec_by_hand():
  # TP, FP, TP with 2 positives: prec 1, 1/2, 2/3; rec 1/2, 1/2, 1. The running max from
  # the right makes the precision 1, 2/3, 2/3; recall steps at 1/2 (x1) and 1 (x2/3):
  # 1/2 + 1/2 * 2/3 = 5/6.
  assert anet.interpolated_prec_rec([1, 0.5, 2 / 3], [0.5, 0.5, 1]) == pytest.approx(5 / 6)
  rng = np.random.default_rng(1)
  for _ in range(20):
    prec = rng.uniform(size=30)
    rec = np.sort(rng.integers(0, 5, 30)) / 5
    assert anet.interpolated_prec_rec(prec, rec) == _interpolated_prec_rec_reference(prec, rec)


def test_average_precision_detection_one_class():
  # Two instances in video a; three predictions: an exact hit (0.9), its duplicate (0.8,
  # FP) and a 50%-overlap with the second instance (0.7): at 0.5 TP, FP, TP:
  # AP 1/2 * 1 + 1/2 * 2/3 = 5/6; at 0.6 the third misses: 1/2.
  ap = anet.average_precision_detection(
      ["a", "a"], [[0, 10], [20, 30]], ["a", "a", "a"], [[0, 10], [0, 10], [20, 25]],
      [0.9, 0.8, 0.7], [0.5, 0.6])
  np.testing.assert_allclose(ap, [5 / 6, 1 / 2])
  assert (anet.average_precision_detection(["a"], [[0, 1]], [], np.zeros((0, 2)), [],
                                           [0.5, 0.7]) == 0).all()


@pytest.mark.parametrize("text, expected", [
    ("0.5:0.05:0.95", np.linspace(0.5, 0.95, 10)),
    ("0.1:0.1:0.8", np.linspace(0.1, 0.8, 8)),
    ("0.3,0.5, 0.7", np.array([0.3, 0.5, 0.7])),
    ("0.5", np.array([0.5])),
])
def test_parse_thresholds(text, expected):
  got = anet.parse_thresholds(text)
  np.testing.assert_array_equal(got, expected)  # bit for bit
  if text == "0.1:0.1:0.8":
    assert len(got) == 8


@pytest.mark.parametrize("text, match", [
    ("0.1:0.3:0.8", "not a whole number of steps"), ("0.5:0:1", "step > 0"),
    ("0.8:0.1:0.1", "step > 0"), ("a:b:c", "expected a:step:b"), ("0.1:0.2", "expected"),
    ("", "expected")])
def test_parse_thresholds_rejects(text, match):
  with pytest.raises(UserError, match=match):
    anet.parse_thresholds(text)


# ------------------------------------------------------------------------------------------
# Hand-built cases.


def _gt(videos):
  """{video: (subset, [(start, end, label)])} -> the ground-truth format."""
  return {"version": "test", "taxonomy": [], "database": {
      v: {"subset": subset, "duration": 100.0, "url": "",
          "annotations": [{"segment": [s, e], "label": label} for s, e, label in anns]}
      for v, (subset, anns) in videos.items()}}


def _pred(videos):
  """{video: [(start, end, label, score)]} -> the prediction format."""
  return {"version": "VERSION 1.3", "external_data": {}, "results": {
      v: [{"segment": [s, e], "label": label, "score": score} for s, e, label, score in preds]
      for v, preds in videos.items()}}


def _ap(gt, pred, thresholds, label, **kwargs):
  got = anet.evaluate(gt, pred, thresholds, **kwargs)
  _assert_same(got, gt, pred, thresholds, kwargs.get("subset", "validation"),
               set(kwargs.get("blocked_videos") or ()))
  return got["ap"][label]


GT = _gt({"v1": ("validation", [(0, 10, "run"), (20, 30, "run"), (40, 50, "jump")]),
          "v2": ("validation", [(0, 10, "run")]),
          "t1": ("training", [(0, 10, "run"), (0, 10, "swim")])})


def test_duplicates_are_false_positives():
  # run has 3 instances. v1 [0,10] twice (0.9 TP, 0.8 duplicate: its other candidate
  # [20,30] has tIoU 0 < 0.5: FP), then v2 [0,10] (0.7, TP): TP FP TP over 3 positives:
  # precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
  pred = _pred({"v1": [(0, 10, "run", 0.9), (0, 10, "run", 0.8)], "v2": [(0, 10, "run", 0.7)]})
  assert _ap(GT, pred, [0.5], "run") == pytest.approx([5 / 9])


def test_wrong_class_absent_video_and_other_subset_are_false_positives():
  # jump (one instance, v1 [40,50]): a "jump" on v1 at [0,10] (0.95: no jump there above
  # 0.5: FP), "jump" on t1 (training: not in the validation ground truth: FP, 0.9), "jump"
  # on a video absent from the ground truth (0.85: FP), then the hit (0.5): rank 4,
  # precision 1/4 at recall 1: AP 1/4. swim is only in the training subset: it is no class.
  pred = _pred({"v1": [(0, 10, "jump", 0.95), (40, 50, "jump", 0.5)],
                "t1": [(0, 10, "jump", 0.9)], "elsewhere": [(40, 50, "jump", 0.85)]})
  got = anet.evaluate(GT, pred, [0.5, 0.9])
  assert list(got["ap"]) == ["run", "jump"]
  assert got["ap"]["jump"] == pytest.approx([0.25, 0.25])
  assert got["ap"]["run"] == [0.0, 0.0]  # no predictions: AP 0
  assert got["mAP"] == pytest.approx([0.125, 0.125]) and got["num_predictions"] == 4
  _assert_same(got, GT, pred, [0.5, 0.9])
  # The training subset's classes are run and swim: a jump prediction is an error there.
  with pytest.raises(UserError, match="'jump' does not occur in the ground truth of subset "
                                      "'training'"):
    anet.evaluate(GT, pred, [0.5], subset="training")


def test_class_without_predictions_scores_zero():
  # run perfectly detected (AP 1), jump not predicted (AP 0): mAP 1/2.
  pred = _pred({"v1": [(0, 10, "run", 1.0), (20, 30, "run", 1.0)], "v2": [(0, 10, "run", 1)]})
  got = anet.evaluate(GT, pred, [0.5, 0.95])
  assert got["ap"] == {"run": [1.0, 1.0], "jump": [0.0, 0.0]}
  assert got["mAP"] == [0.5, 0.5] and got["average_mAP"] == 0.5


def test_tied_scores_follow_numpy_argsort():
  # Two run predictions tie at 0.5 on v2 (one instance [0,10]): a miss [50,60] listed first
  # and the hit [0,10] second. argsort of [0.5, 0.5] is [0, 1]; reversed, the hit comes
  # first: TP then FP, precision 1 at recall 1/3 (3 instances): AP 1/3. Listed the other way
  # round the miss is ranked first: FP, TP: 1/3 * 1/2 = 1/6.
  hit_second = _pred({"v2": [(50, 60, "run", 0.5), (0, 10, "run", 0.5)]})
  hit_first = _pred({"v2": [(0, 10, "run", 0.5), (50, 60, "run", 0.5)]})
  assert _ap(GT, hit_second, [0.5], "run") == pytest.approx([1 / 3])
  assert _ap(GT, hit_first, [0.5], "run") == pytest.approx([1 / 6])


def test_highest_unlocked_tiou_is_taken():
  # v1's run instances [0,10] and [20,30]. A [2,24] (0.9): tIoU with [0,10] 8 / (10 + 22 -
  # 8) = 1/3, with [20,30] 4 / (10 + 22 - 4) = 1/7. At 0.1 it takes [0,10] (the higher).
  # B [0,10] (0.8) then finds [0,10] locked and moves on to [20,30]: tIoU 0 < 0.1: FP.
  # Ranked TP, FP over 3 run instances: AP 1/3.
  gt = _gt({"v1": ("validation", [(0, 10, "run"), (20, 30, "run")]),
            "v2": ("validation", [(0, 10, "run")])})
  pred = _pred({"v1": [(2, 24, "run", 0.9), (0, 10, "run", 0.8)]})
  assert _ap(gt, pred, [0.1], "run") == pytest.approx([1 / 3])
  # C [5,25] (0.9) has tIoU 5/25 = 0.2 with both: it takes one; D [0,10] then takes [0,10]
  # if C took [20,30], else FP. argsort([0.2, 0.2]) = [0, 1] reversed: [20,30] first; so D
  # is a TP: precision 1, 1 over 3 instances: AP 2/3.
  pred = _pred({"v1": [(5, 25, "run", 0.9), (0, 10, "run", 0.8)]})
  assert _ap(gt, pred, [0.1], "run") == pytest.approx([2 / 3])
  # A prediction overlapping both above the threshold: the second one is not lost. E [0,10]
  # (0.9) takes [0,10]; F [0,10] (0.8) at 0.0 still matches [20,30] (tIoU 0 is not < 0):
  # two TPs of 3: AP 2/3.
  pred = _pred({"v1": [(0, 10, "run", 0.9), (0, 10, "run", 0.8)]})
  assert _ap(gt, pred, [0.0], "run") == pytest.approx([2 / 3])


def test_tied_tious_follow_numpy_argsort():
  # 22 run instances on one video: A = [0,10] at index 3, B = [10,20] at index 10, the rest
  # far away (tIoU 0). P [5,15] (0.9) overlaps A and B by 5 / 15 = 1/3 each; Q [0,10] (0.8)
  # overlaps only A. At 0.3 P takes whichever of the tie `tious.argsort()[::-1]` visits
  # first: A leaves Q a FP (AP 1/22), B leaves A to Q (AP 2/22). A stable sort would visit
  # B (index 10) first; numpy's default sort need not (with AVX-512 it visits A first).
  segments = [[100 + 2 * i, 101 + 2 * i] for i in range(22)]
  segments[3], segments[10] = [0, 10], [10, 20]
  gt = {"database": {"v": {"subset": "validation", "annotations": [
      {"segment": s, "label": "run"} for s in segments]}}}
  pred = _pred({"v": [(5, 15, "run", 0.9), (0, 10, "run", 0.8)]})
  tious = anet.segment_iou([5, 15], segments)
  assert tious[3] == tious[10] == 1 / 3
  first = tious.argsort()[::-1][0]
  assert first in (3, 10)
  assert _ap(gt, pred, [0.3], "run") == pytest.approx([1 / 22 if first == 3 else 2 / 22])


def test_tiou_exactly_at_the_threshold_matches():
  # [0,10] against [0,5]: 5 / 10 = 0.5 exactly; 0.5 < 0.5 is false: a match at 0.5 (AP 1/3
  # with run's 3 instances) and a miss at 0.55.
  pred = _pred({"v2": [(0, 5, "run", 1.0)]})
  assert _ap(GT, pred, [0.5, 0.55], "run") == pytest.approx([1 / 3, 0])
  # [0,10] against [0,9]: 0.9 exactly, the default's ninth threshold is 0.8999999999999999.
  pred = _pred({"v2": [(0, 9, "run", 1.0)]})
  assert _ap(GT, pred, anet.DEFAULT_TIOU_THRESHOLDS, "run")[8] == pytest.approx(1 / 3)


def test_zero_length_segments_match_as_nan():
  # A zero-length instance predicted exactly: tIoU 0/0 = NaN, which is not < any threshold.
  gt = _gt({"v": ("validation", [(5, 5, "blink")])})
  pred = _pred({"v": [(5, 5, "blink", 1.0)]})
  assert _ap(gt, pred, [0.5, 0.95], "blink") == [1.0, 1.0]


def test_blocked_videos_leave_both_sides():
  # Blocking v2 removes its run instance and its prediction: run keeps v1's two instances,
  # both detected: AP 1.
  pred = _pred({"v1": [(0, 10, "run", 0.9), (20, 30, "run", 0.8)], "v2": [(50, 60, "run", 1)]})
  assert _ap(GT, pred, [0.5], "run", blocked_videos=["v2"]) == [1.0]
  assert _ap(GT, pred, [0.5], "run") == pytest.approx([2 / 3 * 2 / 3])  # FP, TP, TP / 3


@pytest.mark.parametrize("gt, pred, match", [
    ({"db": {}}, _pred({}), "'database'"),
    (GT, {"res": {}}, "'results'"),
    (GT, _pred({"v1": [(0, "10", "run", 1.0)]}), "not two numbers"),
    ({"database": {"v": {"subset": "validation", "annotations": [{"segment": [0],
                                                                  "label": "run"}]}}},
     _pred({}), "not two numbers"),
    (GT, _pred({"v1": [(0, 10, "dance", 1.0)]}), "'dance' does not occur"),
    (GT, {"results": {"v1": [{"segment": [0, 1], "label": "run"}]}}, "'label', 'score'"),
    (GT, _pred({"v1": [(0, 1, "run", "high")]}), "'score' is not a number"),
])
def test_bad_input(gt, pred, match):
  with pytest.raises(UserError, match=match):
    anet.evaluate(gt, pred, [0.5])


def test_subset_without_ground_truth():
  with pytest.raises(UserError, match="no ground truth in subset 'testing'"):
    anet.evaluate(GT, _pred({}), [0.5], subset="testing")


# ------------------------------------------------------------------------------------------
# Random cases against the transcription.


def _random_case(rng, n_videos, n_classes, n_preds, grid, int_scores):
  classes = [f"c{i}" for i in range(n_classes)]
  database = {}
  for v in range(n_videos):
    subset = "validation" if v == 0 or rng.uniform() < 0.8 else "training"
    anns = [] if v else [{"segment": [1.0, 4.0], "label": classes[0]}]
    for _ in range(int(rng.integers(0, 6 if rng.uniform() < 0.9 else 24))):
      s = float(rng.integers(0, grid)) / 2
      e = s + float(rng.integers(0, grid)) / 2  # zero lengths included
      anns.append({"segment": [s, e], "label": str(rng.choice(classes[:max(1, n_classes - 1)]))})
    if anns and rng.uniform() < 0.2:
      anns.append(dict(anns[0]))  # a duplicated instance
    database[f"vid{v}"] = {"subset": subset, "annotations": anns}
  gt = {"database": database}
  labels = sorted({a["label"] for d in database.values() if d["subset"] == "validation"
                   for a in d["annotations"]})
  results = {}
  videos = list(database) + ["absent0", "absent1"]
  score_values = rng.integers(0, 4, n_preds) if int_scores else rng.integers(0, 6, n_preds) / 5
  for i in range(n_preds):
    video = str(rng.choice(videos))
    anns = database.get(video, {}).get("annotations", [])
    if anns and rng.uniform() < 0.6:  # a jittered copy of an instance
      a = anns[int(rng.integers(len(anns)))]
      s = a["segment"][0] + float(rng.integers(-2, 3)) / 2
      e = a["segment"][1] + float(rng.integers(-2, 3)) / 2
      label = a["label"] if a["label"] in labels and rng.uniform() < 0.8 else None
    else:
      s = float(rng.integers(0, grid)) / 2
      e = s + float(rng.integers(0, grid)) / 2
      label = None
    label = label or str(rng.choice(labels[:max(1, len(labels) - 1)]))  # the last: no preds
    score = score_values[i].item()
    results.setdefault(video, []).append({"label": label, "score": score, "segment": [s, e]})
  return gt, {"results": results}


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_equal_the_official(seed):
  rng = np.random.default_rng(seed)
  big = seed % 3 == 0  # > 16 tied scores per class and many instances per video
  gt, pred = _random_case(rng, n_videos=12 if big else 6, n_classes=3 if big else 4,
                          n_preds=400 if big else 60, grid=20 if big else 12,
                          int_scores=seed % 4 == 1)
  thresholds = [anet.DEFAULT_TIOU_THRESHOLDS, np.array([0.0, 0.1, 0.3, 0.5, 2 / 3, 1.0])][seed % 2]
  blocked = ["vid1"] if seed % 5 == 2 else None
  got = anet.evaluate(gt, pred, thresholds, blocked_videos=blocked)
  _assert_same(got, gt, pred, thresholds, blocked=set(blocked or ()))


@pytest.mark.parametrize("seed", range(4))
def test_dense_random_cases_equal_the_official(seed):
  # Many instances per video on a coarse grid: tied tIoUs, so which instance a prediction
  # locks depends on how argsort orders the ties.
  rng = np.random.default_rng(100 + seed)
  database = {f"v{v}": {"subset": "validation", "annotations": [
      {"segment": [float(s), float(s + d)], "label": "a" if rng.uniform() < 0.7 else "b"}
      for s, d in zip(rng.integers(0, 8, 24), rng.integers(1, 6, 24))]} for v in range(3)}
  results = {f"v{v}": [{"segment": [float(s), float(s + d)], "label": "a",
                        "score": float(c)}
                       for s, d, c in zip(rng.integers(0, 8, 60), rng.integers(1, 6, 60),
                                          rng.integers(0, 3, 60))] for v in range(3)}
  gt, pred = {"database": database}, {"results": results}
  thresholds = np.array([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.4, 0.5, 0.6, 0.75])
  _assert_same(anet.evaluate(gt, pred, thresholds), gt, pred, thresholds)


def test_one_class_api_equals_the_official():
  rng = np.random.default_rng(7)
  gt_videos = [f"v{int(i)}" for i in rng.integers(0, 5, 40)]
  gt_segments = np.sort(rng.integers(0, 30, (40, 2)), axis=1) / 2
  pred_videos = [f"v{int(i)}" for i in rng.integers(0, 7, 300)]
  pred_segments = np.sort(rng.integers(0, 30, (300, 2)), axis=1) / 2
  scores = rng.integers(0, 5, 300) / 4
  got = anet.average_precision_detection(gt_videos, gt_segments, pred_videos, pred_segments,
                                         scores)
  ground_truth = [{"video-id": v, "t-start": s, "t-end": e}
                  for v, (s, e) in zip(gt_videos, gt_segments)]
  prediction = [{"video-id": v, "t-start": s, "t-end": e, "score": c}
                for v, (s, e), c in zip(pred_videos, pred_segments, scores)]
  np.testing.assert_array_equal(got, _compute_average_precision_detection(
      ground_truth, prediction, anet.DEFAULT_TIOU_THRESHOLDS, np.float64))


# ------------------------------------------------------------------------------------------
# The command line.


def test_cli(tmp_path):
  pred = _pred({"v1": [(0, 10, "jump", 0.95), (40, 50, "jump", 0.5)], "v2": [(0, 5, "run", 1)]})
  (tmp_path / "gt.json").write_text(json.dumps(GT))
  (tmp_path / "pred.json").write_text(json.dumps(pred))
  (tmp_path / "bad.json").write_text("{not json")
  cmd = [sys.executable, "-m", "experiments.activity.evaluate",
         f"--ground_truth={tmp_path / 'gt.json'}", "--tiou=0.1:0.1:0.8"]
  ok = subprocess.run(cmd + [f"--predictions={tmp_path / 'pred.json'}"], cwd=REPO,
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr
  got = json.loads(ok.stdout)
  assert set(got) == {"tiou_thresholds", "mAP", "average_mAP", "ap", "num_ground_truth",
                      "num_predictions"}
  assert got["tiou_thresholds"] == np.linspace(0.1, 0.8, 8).tolist()
  # jump: FP then TP at every threshold: 1/2. run: [0,5] vs [0,10] is 0.5: a TP up to
  # 0.5 (1/3 of 3 instances), then nothing.
  assert got["ap"]["jump"] == pytest.approx([0.5] * 8)
  assert got["ap"]["run"] == pytest.approx([1 / 3] * 5 + [0] * 3)
  assert got["mAP"] == pytest.approx([(0.5 + 1 / 3) / 2] * 5 + [0.25] * 3)
  assert got["average_mAP"] == pytest.approx(np.mean(got["mAP"]))
  assert got["num_ground_truth"] == 4 and got["num_predictions"] == 3
  for preds in ("missing.json", "bad.json"):
    bad = subprocess.run(cmd + [f"--predictions={tmp_path / preds}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().startswith("error: ") and preds in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# The real ActivityNet 1.3 annotations (BMN's files), when present.


@pytest.fixture(scope="module")
def bmn_ground_truth():
  anno = os.path.join(DATA, "anet_anno_action.json")
  info = os.path.join(DATA, "video_info_new.csv")
  if not (os.path.exists(anno) and os.path.exists(info)):
    pytest.skip(f"no ActivityNet annotations under {DATA}")
  with open(info, newline="") as f:
    rows = list(csv.DictReader(f))
  return anet.ground_truth_from_bmn(anno, info), rows


def test_ground_truth_from_bmn_counts(bmn_ground_truth):
  gt, rows = bmn_ground_truth
  database = gt["database"]
  assert len(database) == len(rows) == 19228
  for subset, count in (("training", 9649), ("validation", 4728), ("testing", 4851)):
    assert sum(r["subset"] == subset for r in rows) == count
    assert sum(v["subset"] == subset for v in database.values()) == count
  assert all(not v["annotations"] for v in database.values() if v["subset"] == "testing")
  labels = {a["label"] for v in database.values() for a in v["annotations"]}
  assert len(labels) == 200
  stripped = anet.ground_truth_from_bmn(os.path.join(DATA, "anet_anno_action.json"),
                                        os.path.join(DATA, "video_info_new.csv"),
                                        drop_prefix="v_")
  assert list(stripped["database"]) == [v[2:] for v in database]


def test_ground_truth_as_predictions_scores_one(bmn_ground_truth):
  gt, _ = bmn_ground_truth
  validation = {v: d for v, d in gt["database"].items() if d["subset"] == "validation"}
  pred = {"results": {v: [dict(a, score=1.0) for a in d["annotations"]]
                      for v, d in validation.items()}}
  got = anet.evaluate(gt, pred)
  assert got["num_ground_truth"] == sum(len(d["annotations"]) for d in validation.values())
  assert len(got["ap"]) == 200
  assert got["mAP"] == [1.0] * 10 and got["average_mAP"] == 1.0
