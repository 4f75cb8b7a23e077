"""experiments.activity.detect: per-step scores -> segments, by hand.

Every case builds its scores step by step and writes the expected segments out; the
property tests check that one-hot scores of a random segmentation give back exactly its
segments (detection) and each instance's start and label (early detection).
"""

import math

import numpy as np
import pytest

from experiments.activity import detect as D
from experiments.activity.detect import Detection


def _probs(*activities):
  """[T, K+1] from K per-step activity score lists; the background takes the rest."""
  a = np.asarray(activities, dtype=np.float64).T                       # [T, K]
  return np.concatenate([1.0 - a.sum(axis=1, keepdims=True), a], axis=1)


def _as_tuples(detections, digits=9):
  return [(d.label, d.start, d.end, round(d.score, digits)) for d in detections]


# ------------------------------------------------------------------------------------------
# Detection.


def test_clean_single_activity():
  #                 0  1  2    3    4    5  6  7
  probs = _probs([0, 0, 0.95, 0.95, 0.95, 0, 0, 0], [0] * 8)
  # Every threshold 0.1..0.9 gives the run [2, 5): one candidate after deduplication.
  assert _as_tuples(D.detect(probs)) == [(1, 2.0, 5.0, 0.95)]
  assert all(isinstance(d, Detection) for d in D.detect(probs))


def test_two_activities_of_different_classes():
  #        0  1    2    3    4  5  6    7    8    9
  c2 = [0, 0.8, 0.8, 0.8, 0, 0, 0, 0, 0, 0]
  c3 = [0, 0, 0, 0, 0, 0, 0.7, 0.7, 0.7, 0]
  probs = _probs([0] * 10, c2, c3)
  assert _as_tuples(D.detect(probs)) == [(2, 1.0, 4.0, 0.8), (3, 6.0, 9.0, 0.7)]


def test_short_dip_merged_with_max_gap_split_without():
  #     0    1    2    3    4    5    6  7
  c1 = [0, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0]
  probs = _probs(c1)
  split = D.detect(probs, thresholds=[0.5])
  assert _as_tuples(split) == [(1, 1.0, 4.0, 0.9), (1, 5.0, 7.0, 0.9)]
  merged = D.detect(probs, thresholds=[0.5], max_gap=1)
  # The gap joins the segment and its score: (5 * 0.9 + 0.2) / 6.
  assert _as_tuples(merged) == [(1, 1.0, 7.0, round(4.7 / 6, 9))]
  # A gap of 2 is not crossed by max_gap=1.
  c1_wide = [0, 0.9, 0.9, 0.2, 0.2, 0.9, 0.9, 0]
  assert len(D.detect(_probs(c1_wide), thresholds=[0.5], max_gap=1)) == 2
  assert len(D.detect(_probs(c1_wide), thresholds=[0.5], max_gap=2)) == 1


def test_runs_shorter_than_min_length_are_dropped_after_merging():
  #     0    1    2  3    4    5    6    7  8
  c1 = [0.9, 0.9, 0, 0, 0.9, 0.9, 0.9, 0.9, 0]
  probs = _probs(c1)
  assert _as_tuples(D.detect(probs, min_length=3)) == [(1, 4.0, 8.0, 0.9)]
  assert sorted(_as_tuples(D.detect(probs, min_length=2))) == [(1, 0.0, 2.0, 0.9),
                                                               (1, 4.0, 8.0, 0.9)]
  # Two runs of 1 step across a 1-step dip: merged to 3 steps first, so min_length=3 keeps it.
  c1 = [0, 0.9, 0, 0.9, 0]
  assert _as_tuples(D.detect(_probs(c1), max_gap=1, min_length=3)) == [(1, 1.0, 4.0, 0.6)]
  assert D.detect(_probs(c1), min_length=3) == []


def test_nested_thresholds_and_nms():
  #     0    1    2    3    4    5    6    7
  c1 = [0.3, 0.3, 0.9, 0.9, 0.9, 0.9, 0.3, 0.3]
  probs = _probs(c1)
  # θ = 0.2: [0, 8) with mean (4 * 0.3 + 4 * 0.9) / 8 = 0.6; θ = 0.5: [2, 6), mean 0.9,
  # nested inside; tIoU 4 / 8 = 0.5.
  both = D.detect(probs, thresholds=[0.2, 0.5], nms_threshold=0.5)   # 0.5 is not > 0.5
  assert _as_tuples(both) == [(1, 2.0, 6.0, 0.9), (1, 0.0, 8.0, 0.6)]
  kept = D.detect(probs, thresholds=[0.2, 0.5], nms_threshold=0.4)
  assert _as_tuples(kept) == [(1, 2.0, 6.0, 0.9)]
  # With the max as the score the two tie at 0.9: the earlier start wins the tie.
  kept = D.detect(probs, thresholds=[0.2, 0.5], nms_threshold=0.4, score="max")
  assert _as_tuples(kept) == [(1, 0.0, 8.0, 0.9)]
  # NMS is per class: the same segment of another class survives.
  probs2 = _probs(c1, [0.0, 0.0, 0.05, 0.05, 0.05, 0.05, 0.0, 0.0])
  dets = D.detect(probs2, thresholds=[0.01], nms_threshold=0.0)
  assert [(d.label, d.start, d.end) for d in dets] == [(1, 0.0, 8.0), (2, 2.0, 6.0)]


def test_score_max():
  c1 = [0, 0.5, 0.9, 0.6, 0]
  assert _as_tuples(D.detect(_probs(c1), thresholds=[0.5], score="max")) == [(1, 1.0, 4.0, 0.9)]
  assert _as_tuples(D.detect(_probs(c1), thresholds=[0.5])) == [(1, 1.0, 4.0, round(2 / 3, 9))]
  # A segment of the last class ending at the last step (the last offset of the scores).
  probs = _probs([0.9, 0, 0], [0, 0.6, 0.8])
  assert _as_tuples(D.detect(probs, thresholds=[0.5], score="max")) == [
      (1, 0.0, 1.0, 0.9), (2, 1.0, 3.0, 0.8)]
  assert _as_tuples(D.detect(probs, thresholds=[0.5])) == [(1, 0.0, 1.0, 0.9), (2, 1.0, 3.0, 0.7)]


def test_argmax_rule():
  # Class 1 is the argmax at steps 1..3 with only 0.4: no threshold of 0.5 finds it.
  probs = np.array([[0.9, 0.05, 0.05],
                    [0.25, 0.4, 0.35],
                    [0.25, 0.4, 0.35],
                    [0.3, 0.4, 0.3],
                    [0.2, 0.3, 0.5],
                    [0.9, 0.05, 0.05]])
  assert D.detect(probs, thresholds=[0.55]) == []
  dets = D.detect(probs, rule="argmax")
  assert _as_tuples(dets) == [(2, 4.0, 5.0, 0.5), (1, 1.0, 4.0, 0.4)]


def test_smoothing():
  spike = [0, 0, 0.9, 0, 0]
  np.testing.assert_allclose(D.smooth(_probs(spike), 3)[:, 1], [0, 0.3, 0.3, 0.3, 0])
  # Truncated at the ends: step 0 averages steps 0 and 1.
  np.testing.assert_allclose(D.smooth(_probs([0.9, 0, 0]), 3)[:, 1], [0.45, 0.3, 0])
  # Even window: one more step after t than before (t - 1 .. t + 2).
  np.testing.assert_allclose(D.smooth(_probs([1, 0, 0, 0, 0]), 4)[:, 1], [1 / 3, 1 / 4, 0, 0, 0])
  np.testing.assert_allclose(D.smooth(_probs(spike), 3).sum(axis=1), 1)
  assert len(D.detect(_probs(spike), thresholds=[0.5])) == 1
  assert D.detect(_probs(spike), thresholds=[0.5], smoothing=3) == []
  assert _as_tuples(D.detect(_probs(spike), thresholds=[0.25], smoothing=3)) == [
      (1, 1.0, 4.0, 0.3)]


def test_max_detections_keeps_the_best():
  c1 = [0.6, 0, 0, 0, 0, 0, 0]
  c2 = [0, 0, 0.9, 0, 0, 0, 0]
  c3 = [0, 0, 0, 0, 0.7, 0.7, 0]
  probs = _probs(c1, c2, c3)
  assert [d.label for d in D.detect(probs)] == [2, 3, 1]
  assert _as_tuples(D.detect(probs, max_detections=2)) == [(2, 2.0, 3.0, 0.9), (3, 4.0, 6.0, 0.7)]
  assert len(D.detect(probs, max_detections=None)) == 3


def test_background_only_and_empty_video():
  probs = np.tile([0.7, 0.05, 0.05], (12, 1)) + 0.0
  assert D.detect(probs) == []
  assert D.detect(probs, rule="argmax") == []
  assert D.detect(np.zeros((0, 4))) == []


def test_seconds_conversion_in_results():
  dets = D.detect(_probs([0, 0, 0.95, 0.95, 0.95, 0, 0, 0]))
  results = D.detections_to_results("v_1", dets, ["juggling"], seconds_per_step=0.5)
  assert results == [{"label": "juggling", "score": pytest.approx(0.95), "segment": [1.0, 2.5]}]
  assert type(results[0]["score"]) is float
  # A mapping {label: name}; the default seconds_per_step of 1 leaves steps as seconds.
  results = D.detections_to_results("v_1", [Detection(3, 1.0, 24.0, 0.25)], {3: "x"})
  assert results == [{"label": "x", "score": 0.25, "segment": [1.0, 24.0]}]


# ------------------------------------------------------------------------------------------
# Early detection.


def _early_prefix():
  """10 observed steps: background on 0..3, class 2 on 4..9 (6 steps)."""
  rows = [[0.9, 0.05, 0.03, 0.02]] * 4 + [[0.05, 0.05, 0.7, 0.2]] * 6
  return np.array(rows)


def test_early_detect_extrapolates_the_end():
  dets = D.early_detect(_early_prefix(), fraction=0.3)
  # Start 4, observed end 10: 6 steps are 3/10 of the activity, so it ends at 4 + 20.
  assert [(d.label, d.start) for d in dets] == [(2, 4.0), (3, 4.0), (1, 4.0)]
  assert all(d.end == pytest.approx(24.0) for d in dets)
  assert [d.score for d in dets] == pytest.approx([0.7, 0.2, 0.05])
  # In video steps when the prefix starts later; what was seen, without a guess; capped.
  assert D.early_detect(_early_prefix(), offset=100)[0][1:3] == pytest.approx((104.0, 124.0))
  assert D.early_detect(_early_prefix(), extent="observed")[0][1:3] == (4.0, 10.0)
  assert D.early_detect(_early_prefix(), clip_end=18)[0].end == 18.0
  assert D.early_detect(_early_prefix(), clip_end=5)[0].end == 10.0  # never before the view's end
  assert D.early_detect(_early_prefix(), fraction=0.5)[0].end == pytest.approx(16.0)


def test_early_detect_label_is_the_class_ongoing_at_the_last_step():
  # Class 1 runs on 0..3, then class 3 on 4..6 (adjacent, no background between).
  rows = [[0.1, 0.8, 0.05, 0.05]] * 4 + [[0.1, 0.2, 0.1, 0.6]] * 3
  dets = D.early_detect(np.array(rows), top_k=1)
  assert _as_tuples(dets) == [(3, 4.0, 4.0 + 3 / 0.3, 0.6)]
  # Top-k: distinct labels ordered by their mean over the segment [4, 7).
  dets = D.early_detect(np.array(rows), top_k=3)
  assert [(d.label, d.score) for d in dets] == [(3, pytest.approx(0.6)), (1, pytest.approx(0.2)),
                                                 (2, pytest.approx(0.1))]
  # top_k above K gives K labels.
  assert len(D.early_detect(np.array(rows), top_k=10)) == 3


def test_early_detect_top_k_by_last_step_and_by_mean():
  # Segment [1, 4) (class 1 the argmax there). Means over it: class 1 1.5 / 3 = 0.5,
  # class 2 0.9 / 3 = 0.3, class 3 0.33 / 3 = 0.11; last step: 0.47, 0.45, 0.01.
  probs = np.array([[0.97, 0.01, 0.01, 0.01],
                    [0.1, 0.6, 0.2, 0.1],
                    [0.1, 0.43, 0.25, 0.22],
                    [0.07, 0.47, 0.45, 0.01]])
  mean = D.early_detect(probs, top_k=3)
  assert [d.label for d in mean] == [1, 2, 3]
  assert [d.score for d in mean] == pytest.approx([0.5, 0.3, 0.11])
  last = D.early_detect(probs, top_k=3, score="last")
  assert [d.label for d in last] == [1, 2, 3]
  assert [d.score for d in last] == pytest.approx([0.47, 0.45, 0.01])
  assert {d.start for d in mean + last} == {1.0}


def test_early_detect_rules_gaps_and_smoothing():
  # Class 1 ongoing at the end with a one-step dip (background argmax) at step 3.
  c1 = [0, 0.8, 0.8, 0.3, 0.8, 0.8]
  probs = _probs(c1)
  assert D.early_detect(probs)[0].start == 4.0
  assert D.early_detect(probs, max_gap=1)[0].start == 1.0
  assert D.early_detect(probs, rule="threshold", threshold=0.25)[0].start == 1.0
  assert D.early_detect(probs, rule="threshold", threshold=0.5)[0].start == 4.0
  # The last step counts even when the model does not (yet) say so.
  probs = _probs([0.1, 0.1, 0.2])
  assert D.early_detect(probs)[0][:2] == (1, 2.0)
  # Smoothing reads the prefix only: the window at the last step is cut short.
  smoothed = D.early_detect(_probs([0, 0, 0.9]), smoothing=3, score="last")
  assert smoothed[0].score == pytest.approx(0.45)


def test_observed_end():
  assert D.observed_end(4, 24, 0.3) == 10
  assert D.observed_end(30, 40, 0.3) == 33          # 0.3 * 10 = 3.0000000000000004
  assert D.observed_end(0, 7, 0.3) == 3             # ceil(2.1)
  assert D.observed_end(2.5, 12.5, 0.3) == 6        # ceil(5.5)
  assert D.observed_end(5, 5, 0.3) == 6             # zero length: the step holding it
  assert D.observed_end(4, 24, 1.0) == 24
  with pytest.raises(ValueError, match="start <= end"):
    D.observed_end(5, 4)


def test_early_detect_instances_pools_the_views():
  labels = np.zeros(50, np.int64)
  labels[4:24] = 2
  labels[24:34] = 1                   # adjacent to the first, another class
  labels[40:47] = 2
  probs = np.eye(3)[labels]
  dets = D.early_detect_instances(probs, [(4, 24), (24, 34), (40, 47)], fraction=0.3, top_k=2)
  # Views [0, 10), [0, 27), [0, 43): starts 4, 24, 40; ends 4 + 6/0.3, 24 + 3/0.3,
  # 40 + 3/0.3 = 50, at the video's length (clip_end defaults to T).
  assert [(d.label, d.start, round(d.end, 9), d.score) for d in dets] == [
      (2, 4.0, 24.0, 1.0), (1, 4.0, 24.0, 0.0),
      (1, 24.0, 34.0, 1.0), (2, 24.0, 34.0, 0.0),
      (2, 40.0, 50.0, 1.0), (1, 40.0, 50.0, 0.0)]
  results = D.detections_to_results("v", dets, ["a", "b"], seconds_per_step=2.0)
  assert [r["segment"] for r in results][:2] == [[8.0, pytest.approx(48.0)]] * 2
  assert [r["label"] for r in results][:2] == ["b", "a"]
  # Rows (start, end, class), as streams.Video.segments holds them, give the same views.
  assert D.early_detect_instances(probs, [(4, 24, 2), (24, 34, 1), (40, 47, 2)],
                                  top_k=2) == dets
  assert D.early_detect_instances(probs, []) == []
  with pytest.raises(ValueError, match=r"instances: expected rows"):
    D.early_detect_instances(probs, [4, 24])
  with pytest.raises(ValueError, match="needs 52 steps"):
    D.early_detect_instances(probs, [(49, 59)], fraction=0.3)


# ------------------------------------------------------------------------------------------
# Properties on random segmentations.


def _random_segmentation(rng, K):
  """[(label, start, end)] and [T] labels; instances of one class are never adjacent."""
  segments, t, previous = [], int(rng.integers(0, 3)), None
  for _ in range(int(rng.integers(0, 7))):
    label = int(rng.integers(1, K + 1))
    gap = int(rng.integers(0, 4))
    if previous is not None and previous[0] == label and previous[2] == t + gap:
      gap += 1
    start = t + gap
    end = start + int(rng.integers(1, 9))
    segments.append((label, start, end))
    previous, t = (label, start, end), end
  T = t + int(rng.integers(0, 4))
  frames = np.zeros(T, np.int64)
  for label, start, end in segments:
    frames[start:end] = label
  return segments, frames


@pytest.mark.parametrize("rule", D.RULES)
def test_one_hot_scores_give_back_the_segments(rule):
  rng = np.random.default_rng(17)
  tested = 0
  for _ in range(200):
    K = int(rng.integers(1, 5))
    segments, frames = _random_segmentation(rng, K)
    if rule == "actionness" and any(a[2] == b[1] for a, b in zip(segments, segments[1:])):
      continue  # class-agnostic: activities that touch are one run
    tested += 1
    probs = np.eye(K + 1)[frames]                                     # [T, K+1]
    dets = D.detect(probs, rule=rule, labels_per_segment=1)
    assert sorted((d.label, d.start, d.end) for d in dets) == sorted(segments)
    assert all(d.score == 1.0 for d in dets)
  assert tested > 50


def test_one_hot_early_detection_finds_each_start_and_label():
  rng = np.random.default_rng(3)
  for _ in range(200):
    K = int(rng.integers(1, 5))
    segments, frames = _random_segmentation(rng, K)
    probs = np.eye(K + 1)[frames]
    dets = D.early_detect_instances(probs, [(s, e) for _, s, e in segments], top_k=1,
                                    clip_end=None)
    assert len(dets) == len(segments)
    for (label, start, end), d in zip(segments, dets):
      seen = math.ceil(0.3 * (end - start) - 1e-9)
      assert (d.label, d.start, d.score) == (label, start, 1.0)
      assert d.end == pytest.approx(start + seen / 0.3)
      assert end <= d.end < end + 1 / 0.3


# ------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("probs, match", [
    (np.zeros(5), r"expected \[T, K\+1\]"),
    (np.zeros((2, 3, 4)), r"expected \[T, K\+1\]"),
    (np.zeros((5, 1)), "at least 2 columns"),
    (np.array([[0.5, 0.5], [np.nan, 1.0]]), "non-finite score nan at step 1, class 0"),
    (np.array([[0.5, np.inf]]), "non-finite"),
    (np.array([["a", "b"]]), "expected numbers"),
])
def test_bad_probs(probs, match):
  with pytest.raises(ValueError, match=match):
    D.detect(probs)
  with pytest.raises(ValueError, match=match):
    D.early_detect(probs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(thresholds=[0.5, -0.1]), "thresholds: expected a finite number > 0, got -0.1"),
    (dict(thresholds=[0.0]), "thresholds"),
    (dict(thresholds=[float("nan")]), "thresholds"),
    (dict(thresholds=[]), "at least one threshold"),
    (dict(rule="max"), "rule: expected one of 'threshold', 'argmax'"),
    (dict(score="median"), "score"),
    (dict(smoothing=0), "smoothing: expected an integer >= 1"),
    (dict(smoothing=2.5), "smoothing"),
    (dict(min_length=0), "min_length"),
    (dict(max_gap=-1), "max_gap"),
    (dict(nms_threshold=1.5), r"nms_threshold: expected a tIoU in \[0, 1\]"),
    (dict(max_detections=0), "max_detections"),
])
def test_bad_detect_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    D.detect(_probs([0, 0.9, 0]), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=0), r"fraction: expected a number in \(0, 1\]"),
    (dict(fraction=1.5), "fraction"),
    (dict(threshold=-0.5), "threshold: expected a finite number > 0"),
    (dict(top_k=0), "top_k"),
    (dict(offset=-1), "offset"),
    (dict(score="max"), "score"),
    (dict(extent="whole"), "extent"),
])
def test_bad_early_detect_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    D.early_detect(_probs([0, 0.9, 0]), **kwargs)
  with pytest.raises(ValueError, match="at least 1 step"):
    D.early_detect(np.zeros((0, 3)))


def test_bad_results_arguments():
  with pytest.raises(ValueError, match="label 0 has no class name"):
    D.detections_to_results("v", [Detection(0, 0.0, 1.0, 0.5)], ["a", "b"])
  with pytest.raises(ValueError, match="'v': detection label 3 has no class name.*2 names"):
    D.detections_to_results("v", [Detection(3, 0.0, 1.0, 0.5)], ["a", "b"])
  with pytest.raises(ValueError, match="label 2 has no class name"):
    D.detections_to_results("v", [Detection(2, 0.0, 1.0, 0.5)], {1: "a"})
  with pytest.raises(ValueError, match="bad segment"):
    D.detections_to_results("v", [Detection(1, 2.0, 1.0, 0.5)], ["a", "b"])
  with pytest.raises(ValueError, match="seconds_per_step"):
    D.detections_to_results("v", [], ["a", "b"], seconds_per_step=0)


def test_actionness_gives_the_whole_activity_to_a_class_that_is_certain_late():
  # steps 0-1 background, 2-9 an activity of class 2 whose first half looks like class 1
  # or 2 alike (0.45 each), steps 10-11 background.
  probs = np.zeros((12, 4))
  probs[:, 0] = 1.0
  probs[2:6] = [0.1, 0.45, 0.45, 0.0]
  probs[6:10] = [0.1, 0.1, 0.8, 0.0]
  by_class = D.detect(probs, thresholds=[0.5], nms_threshold=0.5)
  assert [(d.label, d.start, d.end) for d in by_class] == [(2, 6.0, 10.0)]
  dets = D.detect(probs, thresholds=[0.5], rule="actionness", labels_per_segment=2)
  # one run [2, 10) (actionness 0.9); class 2's mean (4 * 0.45 + 4 * 0.8) / 8 = 0.625,
  # class 1's (4 * 0.45 + 4 * 0.1) / 8 = 0.275
  assert [(d.label, d.start, d.end) for d in dets] == [(2, 2.0, 10.0), (1, 2.0, 10.0)]
  np.testing.assert_allclose([d.score for d in dets], [0.625, 0.275])
  one = D.detect(probs, thresholds=[0.5], rule="actionness", labels_per_segment=1)
  assert [(d.label, d.start, d.end) for d in one] == [(2, 2.0, 10.0)]
  with pytest.raises(ValueError, match="labels_per_segment"):
    D.detect(probs, rule="actionness", labels_per_segment=0)
  # Early detection with actionness keeps the activity's start (step 2) whichever class
  # leads: after 4 of its 8 steps the tie 0.45 / 0.45 goes to the lower label, after 6
  # class 2 leads.
  early = D.early_detect(probs[:6], fraction=0.5, rule="actionness", threshold=0.5, top_k=1)
  assert [(d.label, d.start, d.end) for d in early] == [(1, 2.0, 10.0)]  # tie 0.45: lower
  late = D.early_detect(probs[:8], fraction=0.75, rule="actionness", threshold=0.5, top_k=1)
  assert [(d.label, d.start, d.end) for d in late] == [(2, 2.0, 10.0)]
