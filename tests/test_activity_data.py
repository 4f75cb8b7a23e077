"""experiments.activity.streams and experiments.activity.data: the generated streams (their
structure checked step by step, what single frames and whole activities tell checked with
class means in numpy), the real ActivityNet 1.3 and THUMOS'14 files (when $RNN_JAX_DATA
has them; counts against plain json / csv), hand-made and malformed copies, features
written here, labels from seconds on hand-computed cases, ActivityNet's JSON formats,
batches and early views."""

import collections
import csv
import json
import math
import os

import numpy as np
import pytest

from experiments.activity import data, streams
from experiments.activity.streams import Video
from experiments.common import UserError

DATA = os.environ.get("RNN_JAX_DATA", "")
ANET = os.path.join(DATA, "activitynet")
THUMOS = os.path.join(DATA, "thumos14")
needs_anet = pytest.mark.skipif(
    not DATA or not os.path.exists(os.path.join(ANET, "anet_anno_action.json")),
    reason="$RNN_JAX_DATA/activitynet is absent")
needs_thumos = pytest.mark.skipif(
    not DATA or not os.path.exists(os.path.join(THUMOS, "val_Annotation.csv")),
    reason="$RNN_JAX_DATA/thumos14 is absent")


def _fails(fn, message):
  with pytest.raises(UserError, match=message) as e:
    fn()
  assert "\n" not in str(e.value)


def _write_features(folder, lengths, size=3):
  """`<name>.npy` [T, size] for {name: T}; entry (t, d) = 100 k + 10 t + d (k the file)."""
  os.makedirs(folder, exist_ok=True)
  for k, (name, T) in enumerate(lengths.items()):
    x = 100 * k + 10 * np.arange(T)[:, None] + np.arange(size)[None]
    np.save(os.path.join(folder, name + ".npy"), x.astype(np.float64))


def _labels_by_loop(times, duration, T):
  """The documented rule, step by step: the latest-starting segment (then the shortest,
  then the last listed) whose [s, e) holds the step's centre."""
  out = []
  for j in range(T):
    c = (j + 0.5) * duration / T
    best = None
    for i, (s, e, k) in enumerate(times):
      if s <= c < e:
        key = (s, -e, i)
        if best is None or key > best[0]:
          best = (key, k)
    out.append(0 if best is None else best[1])
  return np.array(out, np.int32)


# ----------------------------------------------------------------------------- streams

def test_streams_are_deterministic():
  a, b = streams.generate(6, seed=3), streams.generate(6, seed=3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.features, y.features)
    np.testing.assert_array_equal(x.labels, y.labels)
    assert x.segments == y.segments and x.name == y.name
  other = streams.generate(6, seed=4)
  assert all(x.features.shape != y.features.shape or not np.allclose(x.features, y.features)
             for x, y in zip(a, other))
  for x, y in zip(streams.generate(3, seed=3), a):  # a prefix of the longer call
    np.testing.assert_array_equal(x.features, y.features)
  s = streams.splits(4, 3, 2, seed=0)
  assert [len(s[k]) for k in streams.SPLITS] == [4, 3, 2]
  assert s["valid"][0].name == "valid_00000" and s["valid"][0].subset == "valid"
  names = [v.name for k in streams.SPLITS for v in s[k]]
  assert len(set(names)) == len(names)
  assert not np.allclose(s["train"][0].features[:80], s["test"][0].features[:80])
  np.testing.assert_array_equal(streams.splits(1, 1, 1, seed=0)["test"][0].features,
                                s["test"][0].features)
  assert streams.split_seed(0, "train") != streams.split_seed(0, "valid")
  # the world does not depend on the video seed, only on world_seed
  w = streams.world()
  np.testing.assert_array_equal(w.own, streams.world(streams.StreamConfig()).own)
  assert not np.allclose(w.own, streams.world(streams.StreamConfig(world_seed=1)).own)


def test_streams_structure():
  c = streams.StreamConfig()
  videos = streams.generate(60, seed=1)
  seen = collections.Counter()
  for v in videos:
    T = v.features.shape[0]
    assert v.features.shape == (T, c.feature_size) and v.features.dtype == np.float32
    assert c.min_length <= T <= c.max_length and np.isfinite(v.features).all()
    assert v.labels.shape == (T,) and v.labels.dtype == np.int32
    assert v.key_frames.shape == (T,) and v.key_frames.dtype == bool
    assert c.min_activities <= len(v.segments) <= c.max_activities
    assert v.duration == T and v.times == tuple((float(s), float(e), k)
                                                for s, e, k in v.segments)
    labels = np.zeros(T, np.int32)
    key = np.zeros(T, bool)
    previous_end = 0
    for s, e, k in v.segments:
      assert s - previous_end >= c.min_gap  # background before, between
      assert c.min_activity_length <= e - s <= c.max_activity_length
      assert 1 <= k <= c.num_classes
      previous_end = e
      seen[k] += 1
      for t in range(s, e):
        labels[t] = k
        key[t] = (t - s + 0.5) / (e - s) > c.shared_fraction
    assert T - previous_end >= c.min_gap  # and after
    np.testing.assert_array_equal(v.labels, labels)
    np.testing.assert_array_equal(v.key_frames, key)
    assert not v.key_frames[v.labels == 0].any()
  assert sorted(seen) == list(range(1, c.num_classes + 1))
  assert streams.class_names(10)[0] == "activity_01" and len(streams.class_names(10)) == 10
  assert streams.class_names(120)[0] == "activity_001"
  more = streams.generate(5, seed=0, num_classes=12, feature_size=7, max_activities=1)
  assert all(v.features.shape[1] == 7 and len(v.segments) == 1 for v in more)
  tight = dict(min_length=40, max_length=60, min_activities=2, max_activities=3)
  for v in streams.generate(20, seed=0, **tight):
    assert 2 <= len(v.segments) <= 3 and v.segments[-1][1] + 3 <= v.num_steps
  _fails(lambda: streams.generate(1, seed=0, num_classes=1), "num_classes=1")
  _fails(lambda: streams.generate(1, seed=0, min_length=20, min_activities=2),
         "cannot hold")


def test_mean_path_anchors():
  c = streams.StreamConfig()
  w = streams.world(c)
  rho, m = c.shared_fraction, (1 + c.shared_fraction) / 2
  amp = lambda r: c.min_amplitude + (1 - c.min_amplitude) * r  # noqa: E731
  np.testing.assert_allclose(np.linalg.norm(w.own, axis=1), np.sqrt(c.feature_size))
  for k in (1, 2, 3, 10):
    g, succ = (k - 1) // c.group_size, (k - 1 + c.group_size) % c.num_classes
    path = streams.mean_path(w, c, [k] * 5, [0.0, rho / 2, rho, m, 1.0])
    np.testing.assert_allclose(path[0], amp(0) * w.shared[g], atol=1e-12)
    np.testing.assert_allclose(path[1], amp(rho / 2) * w.shared[g], atol=1e-12)
    np.testing.assert_allclose(path[2], amp(rho) * w.shared[g], atol=1e-12)
    np.testing.assert_allclose(path[3], amp(m) * w.own[k - 1], atol=1e-12)
    np.testing.assert_allclose(path[4], w.own[succ], atol=1e-12)
    half = streams.mean_path(w, c, [k], [(m + 1) / 2])[0]
    np.testing.assert_allclose(half, amp((m + 1) / 2) * (w.own[k - 1] + w.own[succ]) / 2,
                               atol=1e-12)
  # the two classes of a group share their early phase and nothing after it
  early = streams.mean_path(w, c, [1, 2], [0.1, 0.1])
  np.testing.assert_allclose(early[0], early[1])
  late = streams.mean_path(w, c, [1, 2], [0.9, 0.9])
  assert np.linalg.norm(late[0] - late[1]) > 3


def _activity_frames(videos):
  X, K, R = [], [], []
  for v in videos:
    for s, e, k in v.segments:
      X.append(v.features[s:e])
      K.append(np.full(e - s, k))
      R.append((np.arange(e - s) + 0.5) / (e - s))
  return np.concatenate(X), np.concatenate(K), np.concatenate(R)


def test_what_frames_and_activities_tell():
  """Nearest class mean: one early frame is at chance within its group, one late frame is
  well above chance, one frame of any progress is weak, an activity's thirds near sure."""
  c = streams.StreamConfig()
  K, G = c.num_classes, c.group_size
  train, test = streams.generate(150, seed=11), streams.generate(100, seed=12)
  X, Kx, R = _activity_frames(train)
  Xt, Kt, Rt = _activity_frames(test)

  def nearest_mean(train_mask, test_mask, within_group):
    means = np.stack([X[train_mask & (Kx == k)].mean(0) for k in range(1, K + 1)])
    d = ((Xt[test_mask][:, None] - means[None]) ** 2).sum(-1)  # [N, K]
    if within_group:
      other = (np.arange(K)[None] // G) != ((Kt[test_mask] - 1) // G)[:, None]
      d[other] = np.inf
    return np.mean(d.argmin(1) + 1 == Kt[test_mask]), test_mask.sum()

  early, n = nearest_mean(R < c.shared_fraction, Rt < c.shared_fraction, True)
  assert n > 800 and abs(early - 1 / G) < 0.07, early
  late_group, _ = nearest_mean(R > 0.7, Rt > 0.7, True)
  late, _ = nearest_mean(R > 0.7, Rt > 0.7, False)
  assert late_group > 0.8 and late > 0.45, (late_group, late)
  anywhere, _ = nearest_mean(R >= 0, Rt >= 0, False)
  assert anywhere < 0.45, anywhere

  def thirds(videos):
    f = [np.concatenate([p.mean(0) for p in np.array_split(v.features[s:e], 3)])
         for v in videos for s, e, _ in v.segments]
    return np.array(f), np.array([k for v in videos for _, _, k in v.segments])
  F, Y = thirds(train)
  Ft, Yt = thirds(test)
  means = np.stack([F[Y == k].mean(0) for k in range(1, K + 1)])
  whole = np.mean(((Ft[:, None] - means[None]) ** 2).sum(-1).argmin(1) + 1 == Yt)
  assert whole > 0.95, whole


def test_distractors_and_background():
  c = streams.StreamConfig(distractor_prob=1.0, noise=0.0, offset=0.0, min_scale=1.0,
                           max_scale=1.0)
  w = streams.world(c)
  bursts = 0
  for v in streams.generate(10, seed=5, config=c):
    bg = v.labels == 0
    is_b = np.isclose(v.features, w.background[None], atol=1e-5).all(1)
    bursts += int((bg & ~is_b).any())
    # a background step is the background prototype or a scaled shared prototype
    for t in np.flatnonzero(bg & ~is_b):
      x = v.features[t].astype(np.float64)
      cos = w.shared @ x / (np.linalg.norm(w.shared, axis=1) * np.linalg.norm(x))
      assert cos.max() > 1 - 1e-5
  assert bursts >= 5


# ----------------------------------------------------------------------------- labels from seconds

def test_labels_from_times_by_hand():
  # d = 10 s, T = 5: steps of 2 s, centres 1, 3, 5, 7, 9.
  times = [(0.5, 3.0, 1),    # centre 1 (3 is not < 3): step 0
           (3.0, 9.5, 2),    # centres 3..9: steps 1-4
           (4.0, 6.0, 3),    # nested, starts later: step 2
           (7.5, 8.5, 4)]    # no centre inside: empty, at step 4
  labels, segments = data.labels_from_times(times, 10.0, 5)
  np.testing.assert_array_equal(labels, [1, 2, 3, 2, 2])
  assert segments == ((0, 1, 1), (1, 5, 2), (2, 3, 3), (4, 4, 4))
  # the later start wins over the tail of an earlier one; past the end is clipped
  labels, segments = data.labels_from_times([(0.0, 6.0, 1), (4.0, 12.0, 2)], 10.0, 5)
  np.testing.assert_array_equal(labels, [1, 1, 2, 2, 2])
  assert segments == ((0, 3, 1), (2, 5, 2))
  # equal starts: the shorter; equal segments: the later annotation
  labels, _ = data.labels_from_times([(0.0, 2.0, 5), (0.0, 8.0, 6)], 10.0, 5)
  np.testing.assert_array_equal(labels, [5, 6, 6, 6, 0])
  labels, _ = data.labels_from_times([(2.0, 6.0, 7), (2.0, 6.0, 8)], 10.0, 5)
  np.testing.assert_array_equal(labels, [0, 8, 8, 0, 0])
  rng = np.random.default_rng(0)
  for _ in range(50):
    times = [(float(s), float(s + rng.uniform(0, 30)), int(rng.integers(1, 5)))
             for s in rng.uniform(-2, 40, rng.integers(0, 6))]
    duration, T = float(rng.uniform(5, 40)), int(rng.integers(1, 30))
    labels, _ = data.labels_from_times(times, duration, T)
    np.testing.assert_array_equal(labels, _labels_by_loop(times, duration, T))
  # a generated stream's times give back its labels (one step = one second)
  for v in streams.generate(5, seed=2):
    labels, segments = data.labels_from_times(v.times, v.duration, v.num_steps)
    np.testing.assert_array_equal(labels, v.labels)
    assert segments == v.segments
  _fails(lambda: data.labels_from_times([], 0.0, 3), "positive duration")


# ----------------------------------------------------------------------------- ActivityNet

def _anet_files(root, *, annotations=None, info=None, names=("Ballet", "Doing crunches")):
  os.makedirs(root, exist_ok=True)
  annotations = annotations if annotations is not None else {
      "v_a": {"duration_second": 10.0, "duration_frame": 300, "feature_frame": 288,
              "annotations": [{"segment": [1.0, 4.0], "label": "Ballet"},
                              {"segment": [6.0, 10.5], "label": "Doing crunches"}]},
      "v_b": {"duration_second": 20.0, "duration_frame": 600, "feature_frame": 592,
              "annotations": [{"segment": [0.0, 20.0], "label": "Doing crunches"}]},
      "v_c": {"duration_second": 5.0, "duration_frame": 150, "feature_frame": 144,
              "annotations": []}}
  with open(os.path.join(root, "anet_anno_action.json"), "w") as f:
    json.dump(annotations, f)
  info = info if info is not None else (
      "video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
      "v_a,300,10.0,30.0,30.0,validation,288\n"
      "v_c,150,5.0,30.0,30.0,testing,144\n"
      "v_b,600,20.0,30.0,30.0,validation,592\n")
  with open(os.path.join(root, "video_info_new.csv"), "w") as f:
    f.write(info)
  with open(os.path.join(root, "action_name.csv"), "w") as f:
    f.write("action\n" + "".join(n + "\n" for n in names))
  return root


def test_activitynet_hand_made(tmp_path):
  root = _anet_files(str(tmp_path / "anet"))
  val = data.load_activitynet(root, "validation")
  assert val.classes == ("Ballet", "Doing crunches") and val.name == "validation"
  assert [v.name for v in val.videos] == ["v_a", "v_b"]  # the CSV's order
  a = val.videos[0]
  assert a.times == ((1.0, 4.0, 1), (6.0, 10.5, 2)) and a.duration == 10.0
  assert a.features is None and a.labels is None and a.segments is None
  assert a.subset == "validation"
  assert len(data.load_activitynet(root, "testing")) == 1
  assert len(data.load_activitynet(root, "training")) == 0
  assert [v.name for v in data.load_activitynet(root, "validation", limit=1).videos] == ["v_a"]
  # features: v_a 5 steps (2 s each, centres 1, 3, 5, 7, 9), v_b 4 steps (5 s each)
  feats = str(tmp_path / "feats")
  _write_features(feats, {"v_a": 5, "v_b": 4})
  val = data.load_activitynet(root, "validation", features_dir=feats)
  a, b = val.videos
  assert a.features.shape == (5, 3) and a.features.dtype == np.float32
  np.testing.assert_array_equal(a.features[2], [20, 21, 22])
  np.testing.assert_array_equal(a.labels, [1, 1, 0, 2, 2])
  assert a.segments == ((0, 2, 1), (3, 5, 2)) and a.key_frames is None
  np.testing.assert_array_equal(b.labels, [2, 2, 2, 2])
  assert data.seconds_per_step(a) == 2.0 and data.seconds_per_step(b) == 5.0
  # a missing feature file: an error, or skipped and counted
  os.remove(os.path.join(feats, "v_b.npy"))
  _fails(lambda: data.load_activitynet(root, "validation", features_dir=feats),
         r"1 of 2 videos have no feature file .*v_b\.npy")
  skipped = data.load_activitynet(root, "validation", features_dir=feats, missing="skip")
  assert [v.name for v in skipped.videos] == ["v_a"] and skipped.skipped == ("v_b",)


def test_activitynet_errors(tmp_path):
  def root(name, **kw):
    return _anet_files(str(tmp_path / name), **kw)
  ok = root("ok")
  _fails(lambda: data.load_activitynet(ok, "val"), "activitynet subset 'val'")
  _fails(lambda: data.load_activitynet(str(tmp_path / "none"), "validation"),
         "action_name.csv: No such file")
  bad = root("json")
  with open(os.path.join(bad, "anet_anno_action.json"), "w") as f:
    f.write("{not json")
  _fails(lambda: data.load_activitynet(bad, "validation"), "anet_anno_action.json is not JSON")
  _fails(lambda: data.load_activitynet(root("cols", info="video,numFrame\nv_a,3\n"),
                                       "validation"), "subset missing from the header")
  _fails(lambda: data.load_activitynet(root("short", info="video,subset,x\nv_a\n"),
                                       "validation"), r"video_info_new.csv:2: expected 3")
  _fails(lambda: data.load_activitynet(root("label", names=("Ballet",)), "validation"),
         r"v_a: annotations\[1\]: label 'Doing crunches' is not a class")
  _fails(lambda: data.load_activitynet(root("twice", names=("Ballet", "Ballet")),
                                       "validation"), "class 'Ballet' appears 2 times")
  _fails(lambda: data.load_activitynet(
      root("gone", info="video,subset\nv_a,validation\nv_x,validation\n"), "validation"),
      "1 validation videos of .* are not in .*, the first 'v_x'")
  backwards = {"v_a": {"duration_second": 3.0, "annotations": [
      {"segment": [2.0, 1.0], "label": "Ballet"}]}}
  _fails(lambda: data.load_activitynet(root("back", annotations=backwards,
                                            info="video,subset\nv_a,validation\n"),
                                       "validation"), "ends before it starts")
  feats = str(tmp_path / "f")
  os.makedirs(feats)
  np.save(os.path.join(feats, "v_a.npy"), np.zeros(4))
  np.save(os.path.join(feats, "v_b.npy"), np.zeros((4, 3)))
  _fails(lambda: data.load_activitynet(ok, "validation", features_dir=feats),
         r"v_a\.npy has shape \(4,\)")
  np.save(os.path.join(feats, "v_a.npy"), np.zeros((4, 2)))
  _fails(lambda: data.load_activitynet(ok, "validation", features_dir=feats),
         "has D=3, .* D=2: all must agree")
  _fails(lambda: data.load_activitynet(ok, "validation", features_dir=str(tmp_path / "no")),
         "feature folder .* does not exist")
  _fails(lambda: data.load_activitynet(ok, "validation", missing="ignore"), "missing='ignore'")


@needs_anet
def test_activitynet_real_files(tmp_path):
  with open(os.path.join(ANET, "anet_anno_action.json"), encoding="utf-8") as f:
    anno = json.load(f)
  with open(os.path.join(ANET, "video_info_new.csv"), newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  with open(os.path.join(ANET, "action_name.csv"), encoding="utf-8") as f:
    names = [line.strip() for line in f.read().splitlines()[1:] if line.strip()]
  subsets = {}
  for sub in data.ACTIVITYNET_SUBSETS:
    got = data.load_activitynet(ANET, sub)
    subsets[sub] = got
    want = [r["video"] for r in rows if r["subset"] == sub]
    assert [v.name for v in got.videos] == want
    assert sum(len(v.times) for v in got.videos) == sum(len(anno[n]["annotations"])
                                                      for n in want)
    assert got.classes == tuple(names)
  counts = {s: (len(g), sum(len(v.times) for v in g.videos)) for s, g in subsets.items()}
  assert counts == {"training": (9649, 14859), "validation": (4728, 7293),
                    "testing": (4851, 0)}
  assert len(names) == 200 and len(anno) == 19228
  val = subsets["validation"]
  for v in val.videos[:200]:
    a = anno[v.name]
    assert v.duration == a["duration_second"]
    assert v.times == tuple((x["segment"][0], x["segment"][1], names.index(x["label"]) + 1)
                            for x in a["annotations"])
  # features for a handful of real videos: labels by the documented rule
  few = val.videos[:4]
  lengths = {v.name: 7 + 5 * k for k, v in enumerate(few[:3])}
  _write_features(str(tmp_path), lengths, size=4)
  got = data.load_activitynet(ANET, "validation", features_dir=str(tmp_path), limit=4,
                              missing="skip")
  assert [v.name for v in got.videos] == [v.name for v in few[:3]]
  assert got.skipped == (few[3].name,)
  for v in got.videos:
    assert v.features.shape == (lengths[v.name], 4)
    np.testing.assert_array_equal(v.labels, _labels_by_loop(v.times, v.duration,
                                                            lengths[v.name]))
  gt = data.to_ground_truth_json(val.videos, val.classes)
  assert len(gt["database"]) == 4728
  first = gt["database"][val.videos[0].name]
  assert first["annotations"] == [{"segment": x["segment"], "label": x["label"]}
                                  for x in anno[val.videos[0].name]["annotations"]]


# ----------------------------------------------------------------------------- THUMOS'14

def _thumos_file(root, body, subset="val"):
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, f"{subset}_Annotation.csv"), "w") as f:
    f.write("video,type,type_idx,start,end,startFrame,endFrame\n" + body)
  return root


def test_thumos14_hand_made(tmp_path):
  root = _thumos_file(str(tmp_path / "t"),
                      "v1,Billiards,12,1.0,3.0,30,90\n"
                      "v1,Ambiguous,0,4.0,5.0,120,150\n"
                      "v2,Diving,26,0.2,0.9,6,27\n"
                      "v1,BaseballPitch,7,6.0,7.9,180,237\n")
  val = data.load_thumos14(root, "validation")
  assert val.classes[:3] == ("BaseballPitch", "BasketballDunk", "Billiards")
  assert len(val.classes) == 20
  v1, v2 = val.videos
  assert (v1.name, v2.name) == ("v1", "v2") and v1.duration is None
  assert v1.times == ((1.0, 3.0, 3), (6.0, 7.9, 1)) and v2.times == ((0.2, 0.9, 8),)
  assert val.ambiguous == {"v1": ((4.0, 5.0),)}
  feats = str(tmp_path / "f")
  _write_features(feats, {"v1": 8, "v2": 2})  # 1 step a second: centres 0.5, 1.5, ...
  val = data.load_thumos14(root, "validation", features_dir=feats, feature_fps=1.0)
  v1 = val.videos[0]
  assert v1.duration == 8.0
  np.testing.assert_array_equal(v1.labels, [0, 3, 3, 0, 0, 0, 1, 1])
  assert v1.segments == ((1, 3, 3), (6, 8, 1))
  val = data.load_thumos14(root, "validation", features_dir=feats, feature_fps=2.0)
  assert val.videos[0].duration == 4.0  # T / fps
  np.testing.assert_array_equal(val.videos[0].labels, [0, 0, 3, 3, 3, 3, 0, 0])
  _fails(lambda: data.load_thumos14(root, "validation", features_dir=feats),
         "feature_fps=None")
  _fails(lambda: data.load_thumos14(root, "val"), "thumos14 subset 'val'")
  os.remove(os.path.join(feats, "v2.npy"))
  _fails(lambda: data.load_thumos14(root, "validation", features_dir=feats, feature_fps=1.0),
         "1 of 2 videos have no feature file")
  got = data.load_thumos14(root, "validation", features_dir=feats, feature_fps=1.0,
                           missing="skip")
  assert [v.name for v in got.videos] == ["v1"] and got.skipped == ("v2",)
  for body, message in [("v1,Running,99,1,2,3,4\n", "type 'Running' is not one of"),
                        ("v1,Diving,27,1,2,3,4\n", "type_idx 27 of Diving: expected 26"),
                        ("v1,Diving,26,one,2,3,4\n", r"val_Annotation.csv:2: start"),
                        ("v1,Diving,26,1,2,3,4\nv2,Diving,26,3,2,3,4\n",
                         r":3: segment \[3.0, 2.0\] ends before")]:
    bad = _thumos_file(str(tmp_path / "bad"), body)
    _fails(lambda bad=bad: data.load_thumos14(bad, "validation"), message)


@needs_thumos
def test_thumos14_real_files(tmp_path):
  for sub, file in data.THUMOS14_FILES.items():
    with open(os.path.join(THUMOS, file), newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
    got = data.load_thumos14(THUMOS, sub)
    videos = list(dict.fromkeys(r["video"] for r in rows))
    assert [v.name for v in got.videos] == videos
    ambiguous = [r for r in rows if r["type"] == "Ambiguous"]
    assert sum(len(v.times) for v in got.videos) == len(rows) - len(ambiguous)
    assert sum(len(a) for a in got.ambiguous.values()) == len(ambiguous)
    assert sorted({r["type"] for r in rows} - {"Ambiguous"}) == sorted(got.classes)
    counts = (len(got), sum(len(v.times) for v in got.videos), len(ambiguous))
    assert counts == {"validation": (200, 3007, 89), "test": (213, 3358, 99)}[sub]
  few = got.videos[:2]
  _write_features(str(tmp_path), {v.name: 40 for v in few})
  feat = data.load_thumos14(THUMOS, "test", features_dir=str(tmp_path), feature_fps=0.25,
                            limit=2)
  for v in feat.videos:
    assert v.duration == 160.0
    np.testing.assert_array_equal(v.labels, _labels_by_loop(v.times, 160.0, 40))


# ----------------------------------------------------------------------------- JSON formats

Named = collections.namedtuple("Named", "label start end score")  # another field order


def test_ground_truth_and_predictions_json(tmp_path):
  videos = streams.generate(8, seed=6, subset="valid")
  names = streams.class_names(10)
  path = str(tmp_path / "gt.json")
  gt = data.to_ground_truth_json(videos, names, "validation", path=path)
  with open(path) as f:
    raw = json.load(f)
  assert raw == gt and raw["version"] == "VERSION 1.3"
  assert list(raw["database"]) == [v.name for v in videos]
  back = data.read_ground_truth(path)
  for v in videos:
    entry = raw["database"][v.name]
    assert entry["subset"] == "validation" and entry["duration"] == v.num_steps
    assert [tuple(a["segment"]) for a in entry["annotations"]] == [(s, e) for s, e, _ in
                                                                   v.segments]
    assert back[v.name].segments == tuple((float(s), float(e), names[k - 1])
                                          for s, e, k in v.segments)
    assert back[v.name].duration == v.num_steps and back[v.name].subset == "validation"
  own = data.to_ground_truth_json(videos[:1], names)
  assert own["database"][videos[0].name]["subset"] == "valid"
  # an unknown duration is left out
  bare = Video("x", None, None, None, None, None, ((1.0, 2.5, 2),), "test")
  assert data.to_ground_truth_json([bare], names)["database"]["x"] == {
      "subset": "test", "annotations": [{"segment": [1.0, 2.5], "label": "activity_02"}]}
  pred_path = str(tmp_path / "pred.json")
  pred = data.to_predictions_json(
      {"video_00000": [(3, 9, 4, 0.75), Named(label=10, start=1.5, end=2.0, score=1)],
       "video_00001": [{"label": "activity_01", "score": 0.5, "segment": [0, 4.5]}],
       "video_00002": []}, names, path=pred_path)
  with open(pred_path) as f:
    assert json.load(f) == pred
  assert pred == {"version": "VERSION 1.3", "external_data": {}, "results": {
      "video_00000": [{"label": "activity_04", "score": 0.75, "segment": [3.0, 9.0]},
                      {"label": "activity_10", "score": 1.0, "segment": [1.5, 2.0]}],
      "video_00001": [{"label": "activity_01", "score": 0.5, "segment": [0.0, 4.5]}],
      "video_00002": []}}
  _fails(lambda: data.to_predictions_json({"v": [(0, 1, 0, 1.0)]}, names), "class 0")
  _fails(lambda: data.to_predictions_json({"v": [(0, 1, "run", 1.0)]}, names), "'run'")
  _fails(lambda: data.to_predictions_json({"v": [(0, 1, 2)]}, names), "expected .start")
  _fails(lambda: data.to_predictions_json({"v": [{"label": 2}]}, names), "expected {'label'")
  _fails(lambda: data.read_ground_truth({"results": {}}), "'database'")


# ----------------------------------------------------------------------------- batches, early views

def _videos(lengths, D=3):
  out = []
  for k, T in enumerate(lengths):
    x = (1000 * (k + 1) + np.arange(T * D).reshape(T, D)).astype(np.float32)
    labels = (np.arange(T) % 3 == 1).astype(np.int32) * (k + 1)
    out.append(Video(f"v{k}", x, labels, (), None, float(T), (), "train"))
  return out


def test_batches_cover_each_epoch_and_pad():
  videos = _videos([5, 2, 7, 3, 6, 4, 1])  # N = 7
  epochs = []
  for epoch in range(3):
    got = list(data.batches(videos, 3, seed=1, epoch=epoch))
    assert len(got) == 3
    rows = np.concatenate([b["rows"][b["valid"]] for b in got])
    assert sorted(rows) == list(range(7))
    assert list(got[-1]["valid"]) == [True, False, False]
    epochs.append(list(rows))
    for b in got:
      assert b["features"].shape == (3, 7, 3) and b["labels"].shape == (3, 7)
      assert b["features"].dtype == np.float32 and b["labels"].dtype == np.int32
      assert b["lengths"].dtype == np.int32
      for i, r in enumerate(b["rows"]):
        n = videos[r].num_steps if r >= 0 else 0
        assert b["lengths"][i] == n
        if r >= 0:
          np.testing.assert_array_equal(b["features"][i, :n], videos[r].features)
          np.testing.assert_array_equal(b["labels"][i, :n], videos[r].labels)
        assert not b["features"][i, n:].any() and not b["labels"][i, n:].any()
  assert epochs[0] != epochs[1]  # reshuffled each epoch
  again = [b["rows"] for b in data.batches(videos, 3, seed=1, epoch=1)]
  assert list(np.concatenate(again)[:7]) == epochs[1]
  assert list(np.concatenate([b["rows"] for b in data.batches(videos, 3, seed=2, epoch=1)])
              [:7]) != epochs[1]
  assert next(data.batches(videos, 3, seed=1, epoch=0, length=9))["features"].shape[1] == 9
  # the step-indexed stream: full batches, each epoch exactly once in turn
  stream = data.Batches(videos, 3, seed=1)
  rows = np.concatenate([stream(s)["rows"] for s in range(7)])  # 21 rows: three epochs
  for e in range(3):
    assert list(rows[7 * e:7 * (e + 1)]) == epochs[e]
  assert all(stream(s)["valid"].all() for s in range(4))
  np.testing.assert_array_equal(stream(2)["features"], data.Batches(videos, 3, 1)(2)["features"])
  # evaluation: in order, the last batch padded
  got = list(data.in_order(videos, 4))
  assert [list(b["rows"]) for b in got] == [[0, 1, 2, 3], [4, 5, 6, -1]]
  assert got[1]["lengths"][3] == 0 and not got[1]["features"][3].any()
  _fails(lambda: list(data.batches(videos, 3, seed=0, epoch=0, length=5)), "length=5")
  _fails(lambda: data.Batches([], 3, 0), "no videos")
  _fails(lambda: data.Batches(videos, 0, 0), "batch_size=0")
  bare = Video("x", None, None, None, None, 3.0, (), "")
  _fails(lambda: list(data.in_order([bare], 2)), "have no features")


def test_streams_batch():
  videos = streams.generate(5, seed=0)
  b = next(data.in_order(videos, 5))
  T = max(v.num_steps for v in videos)
  assert b["features"].shape == (5, T, 32)
  np.testing.assert_array_equal(b["lengths"], [v.num_steps for v in videos])


def test_early_views_by_hand():
  T = 40
  x = np.arange(T * 2, dtype=np.float32).reshape(T, 2)
  v = Video("v", x, np.zeros(T, np.int32), ((5, 15, 1), (20, 33, 2), (36, 36, 3)), None,
            float(T), (), "")
  views = data.early_views(v)  # f = 0.3: ceil(3) = 3, ceil(3.9) = 4; the empty one left out
  assert [len(view.features) for view in views] == [8, 24]
  assert [view.segment for view in views] == [(5, 15, 1), (20, 33, 2)]
  np.testing.assert_array_equal(views[1].features, x[:24])
  assert [len(w.features) for w in data.early_views(v, 1.0)] == [15, 33]
  assert [len(w.features) for w in data.early_views(v, 0.25)] == [8, 24]  # 2.5, 3.25
  assert [len(w.features) for w in data.early_views(v, 0.1)] == [6, 22]  # 1, 1.3
  # a fraction computed as 0.1 * 3 (an np.arange of fractions) times 10 is 3.0000000000000004
  assert data.early_length(0, 10, 0.1 * 3) == 3 and math.ceil(0.1 * 3 * 10) == 4
  _fails(lambda: data.early_views(v, 0.0), "fraction=0.0")
  for video in streams.generate(3, seed=1):
    for view in data.early_views(video, 0.3):
      s, e, _ = view.segment
      assert len(view.features) == s + math.ceil(round(0.3 * (e - s), 9))
