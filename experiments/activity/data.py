r"""Activity data: real annotations and features, batches, early views, ActivityNet's JSON.

    anet = data.load_activitynet(root, "validation", features_dir=dir)   # a `Subset`
    thumos = data.load_thumos14(root, "test", features_dir=dir, feature_fps=5.0)
    videos = streams.splits()["train"]                     # the same `Video` records
    for b in data.batches(videos, 16, seed=0, epoch=3): ...   # or data.Batches(...)(step)
    views = data.early_views(video, 0.3)                   # [EarlyView(features, segment)]
    gt = data.to_ground_truth_json(videos, classes, "validation", path="gt.json")
    pred = data.to_predictions_json({name: [(start_s, end_s, k, score)]}, classes)

Every corpus comes as `experiments.activity.streams.Video` records (name, features [T, D],
labels [T], segments in steps, key_frames, duration and times in seconds, subset), so a
model cannot tell a generated stream from a real video. Class ids are 1..K, 0 is the
background; class k is `classes[k - 1]`.

## ActivityNet 1.3 (`$RNN_JAX_DATA/activitynet`, BMN's files)

- `anet_anno_action.json`: {video: {"duration_second", "duration_frame", "feature_frame",
  "annotations": [{"segment": [start, end] seconds, "label": name}]}}; 19,228 videos.
- `video_info_new.csv`: video, numFrame, seconds, fps, rfps, subset (training /
  validation / testing), featureFrame: the subset of each video.
- `action_name.csv`: a header line "action", then the 200 class names, one a line: class k
  is the k-th name in the file's order.

`load_activitynet(root, subset)` gives the subset's videos in the CSV's order (training
9,649 videos with 14,859 annotations, validation 4,728 with 7,293, testing 4,851 without
annotations), video ids as BMN writes them ("v_" + the YouTube id), each with its duration
(`duration_second`) and its annotations as `times` (start, end, class) in seconds,
unchanged (215 end up to 0.85 s past the duration; 12 have zero length; 219 overlap
the next one of their video by start).

## THUMOS'14 (`$RNN_JAX_DATA/thumos14`, G-TAD's files)

`val_Annotation.csv` (subset "validation") and `test_Annotation.csv` ("test"): columns
video, type, type_idx, start, end, startFrame, endFrame; one row per segment, times in
seconds. The classes are the 20 of `THUMOS14_CLASSES`, ordered by THUMOS' type_idx. The
"Ambiguous" rows (type_idx 0) are not a class: they go to `Subset.ambiguous` (video ->
((start, end), ...), the regions THUMOS' own evaluation ignores), and their steps are
labelled background. Videos come in the order of their first row; a video whose rows are
all Ambiguous is a video without activities. The files hold no durations: a THUMOS video
has `duration` None unless it is loaded with features, and then duration = T /
`feature_fps` (the caller's feature rate, steps per second: e.g. 30 fps video and a
feature every 16 frames give 1.875).

## Features (`features_dir=`)

One `<video>.npy` per video, `[T, D]` (any float dtype, read as float32; all videos the
same D). Videos without a file: `missing="error"` (the default) raises a UserError
naming the count and the first; `missing="skip"` leaves them out and lists them in
`Subset.skipped`. Without `features_dir`, `features`, `labels` and `segments` are None
(the annotations alone still make the ground-truth JSON).

## Steps from seconds (`labels_from_times`)

The T steps divide the video's duration evenly: step j covers [j d/T, (j + 1) d/T) and its
centre is c_j = (j + 1/2) d / T (ActivityNet: d = duration_second, so the features are
taken to span the whole video, as BMN's rescaled features do; THUMOS: d = T / feature_fps,
so c_j = (j + 1/2) / feature_fps). A segment [s, e) covers the steps whose centre lies in
it, s <= c_j < e: in steps it is (first j with c_j >= s, first j with c_j >= e), which may
be empty (s == e in steps) for a segment shorter than a step, and is clipped to the
video. Where segments overlap, the one that starts later wins (a nested segment keeps
its steps, the tail of the earlier one is cut); at equal starts the shorter wins, at
equal segments the later annotation. For a generated stream (one step is one second,
integer times) this rule gives back its own labels exactly.

## ActivityNet's JSON formats

`to_ground_truth_json`: {"version": "VERSION 1.3", "database": {video: {"subset",
"duration", "annotations": [{"segment": [s, e], "label": name}]}}}: the times unchanged
("duration" left out where unknown). `to_predictions_json`: {"version": "VERSION 1.3",
"results": {video: [{"label", "score", "segment": [s, e]}]}, "external_data": {}}.
These are what `experiments.activity.evaluate` (and ActivityNet's eval_detection.py)
read. A detection found in steps is in seconds at `seconds_per_step(video)` per step
(1 for generated streams).

## Batches

A batch is a dict of numpy arrays over B videos, padded to a fixed T (`length`, default
the longest video given) so every batch has one shape:

    "features"  [B, T, D] float32   zeros past the length
    "labels"    [B, T] int32        0 past the length
    "lengths"   [B] int32           the number of valid steps (0 for a padding row)
    "rows"      [B] int64           the video's index in the list (-1 for a padding row)
    "valid"     [B] bool            False for a padding row

`batches(videos, B, seed=, epoch=)`: epoch e's videos, each once, in the order
`default_rng([seed, e]).permutation(N)`, in ceil(N / B) batches, the last filled up with
padding rows (length 0: nothing to score). `Batches(videos, B, seed)(step)`: batch
`step` of the endless stream of such epochs (every batch full, an epoch's tail runs into
the next one's head: a pure function of the step, as `rnn_jax.training.fit` wants).
`in_order(videos, B)`: every video once in order, the last batch padded.

## Early detection (`early_views`)

Ma et al. observe the first 3/10 of each activity: for an activity (start, end, class) of
L = end - start steps the view is the stream's first start + ceil(f L) steps (the
background before it, earlier activities included, and the first ceil(f L) steps of the
activity; f L is rounded to 9 decimals first, so 0.3 x 10 is 3).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import os
from typing import Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from experiments import common
from experiments.common import UserError
from experiments.activity.streams import Video

ACTIVITYNET_SUBSETS = ("training", "validation", "testing")
ACTIVITYNET_FILES = ("anet_anno_action.json", "video_info_new.csv", "action_name.csv")
THUMOS14_FILES = {"validation": "val_Annotation.csv", "test": "test_Annotation.csv"}
# THUMOS'14's 20 detection classes with their type_idx (UCF101's class numbers).
THUMOS14_CLASSES = (
    (7, "BaseballPitch"), (9, "BasketballDunk"), (12, "Billiards"), (21, "CleanAndJerk"),
    (22, "CliffDiving"), (23, "CricketBowling"), (24, "CricketShot"), (26, "Diving"),
    (31, "FrisbeeCatch"), (33, "GolfSwing"), (36, "HammerThrow"), (40, "HighJump"),
    (45, "JavelinThrow"), (51, "LongJump"), (68, "PoleVault"), (79, "Shotput"),
    (85, "SoccerPenalty"), (92, "TennisSwing"), (93, "ThrowDiscus"), (97, "VolleyballSpiking"))
AMBIGUOUS = "Ambiguous"
JSON_VERSION = "VERSION 1.3"
MISSING = ("error", "skip")


@dataclasses.dataclass(frozen=True)
class Subset:
  """One subset of a real corpus.

  Attributes:
    videos: the `Video`s (module docstring).
    classes: the K class names; class k is classes[k - 1].
    name: the subset ("training", "validation", "test", ...).
    skipped: videos left out for want of a feature file (`missing="skip"`).
    ambiguous: THUMOS: video -> ((start, end), ...) seconds of its Ambiguous rows.
  """
  videos: list
  classes: tuple
  name: str
  skipped: tuple = ()
  ambiguous: dict = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.videos)


# ----------------------------------------------------------------------------- steps <-> seconds

def step_centres(duration: float, num_steps: int) -> np.ndarray:
  """[T] float64: c_j = (j + 1/2) d / T, the centre of each step in seconds."""
  return (np.arange(num_steps) + 0.5) * (float(duration) / num_steps)


def seconds_per_step(video: Video) -> float:
  """d / T: a step's length in seconds (1 for generated streams)."""
  if video.duration is None or video.features is None:
    raise UserError(f"video {video.name}: no duration or no features, so no step length")
  return float(video.duration) / video.num_steps


def labels_from_times(times: Sequence, duration: float, num_steps: int
                      ) -> tuple[np.ndarray, tuple]:
  """Per-step labels and segments in steps from segments in seconds (module docstring).

  Args:
    times: ((start, end, class), ...) in seconds.
    duration: d, the seconds the T steps span.
    num_steps: T.

  Returns:
    (labels [T] int32, segments ((start, end, class), ...) in steps, one per time, in the
    same order).
  """
  if num_steps < 1 or not duration or duration <= 0:
    raise UserError(f"labels_from_times: expected T >= 1 steps over a positive duration, "
                    f"got T={num_steps}, duration={duration}")
  centres = step_centres(duration, num_steps)
  segments = []
  for s, e, k in times:
    a = int(np.searchsorted(centres, s, side="left"))   # the first centre >= s
    b = int(np.searchsorted(centres, e, side="left"))   # the first centre >= e
    segments.append((a, max(a, b), int(k)))
  labels = np.zeros(num_steps, np.int32)
  # paint the earliest first: a later start (at equal starts the shorter, at equal
  # segments the later annotation) overwrites
  order = sorted(range(len(times)), key=lambda i: (times[i][0], -times[i][1], i))
  for i in order:
    a, b, k = segments[i]
    labels[a:b] = k
  return labels, tuple(segments)


# ----------------------------------------------------------------------------- files

def _check_missing(missing: str) -> None:
  if missing not in MISSING:
    raise UserError(f"missing={missing!r}: expected 'error' or 'skip'")


def _check_limit(limit) -> None:
  if limit is not None and (not isinstance(limit, int) or limit < 1):
    raise UserError(f"limit={limit!r}: expected a positive number of videos or None")


def _read_json(path: str):
  return common.read_json(path)


def _read_csv(path: str, columns: Sequence[str]) -> list[dict]:
  try:
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      header = reader.fieldnames or []
      lacking = [c for c in columns if c not in header]
      if lacking:
        raise UserError(f"{path}: expected the columns {', '.join(columns)}; "
                        f"{', '.join(lacking)} missing from the header {header[:8]}")
      rows = []
      for row in reader:
        if None in row or any(row.get(c) is None for c in columns):
          raise UserError(f"{path}:{reader.line_num}: expected {len(header)} fields")
        rows.append(row)
      return rows
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None
  except csv.Error as e:
    raise UserError(f"{path}: not CSV: {e}") from None


def _number(text, where) -> float:
  try:
    x = float(text)
  except (TypeError, ValueError):
    raise UserError(f"{where}: expected a number, got {str(text)[:40]!r}") from None
  if not math.isfinite(x):
    raise UserError(f"{where}: expected a finite number, got {text!r}")
  return x


def read_features(features_dir: str, names: Sequence[str], *, missing: str = "error"
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
  """The `<name>.npy` files of a folder: ({name: [T, D] float32}, [names skipped]).

  Raises:
    UserError: the folder is missing; files are missing (their count and the first) under
      missing="error"; a file is unreadable, not [T, D] with T >= 1, or of another D than
      the first.
  """
  _check_missing(missing)
  if not os.path.isdir(features_dir):
    raise UserError(f"feature folder {features_dir} does not exist")
  paths = {n: os.path.join(features_dir, n + ".npy") for n in names}
  absent = [n for n in names if not os.path.isfile(paths[n])]
  if absent and missing == "error":
    raise UserError(f"{len(absent)} of {len(names)} videos have no feature file in "
                    f"{features_dir}, the first {paths[absent[0]]} (missing='skip' leaves "
                    "them out)")
  out, size = {}, None
  for n in names:
    if n in absent:
      continue
    try:
      x = np.load(paths[n], allow_pickle=False)
    except (OSError, ValueError) as e:
      raise UserError(f"feature file {paths[n]} is unreadable: {e}") from None
    if x.ndim != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.number):
      raise UserError(f"feature file {paths[n]} has shape {x.shape} and dtype {x.dtype}: "
                      "expected numbers [T, D] with T >= 1")
    if size is None:
      size = (x.shape[1], paths[n])
    elif x.shape[1] != size[0]:
      raise UserError(f"feature file {paths[n]} has D={x.shape[1]}, {size[1]} "
                      f"D={size[0]}: all must agree")
    out[n] = np.asarray(x, np.float32)
  return out, absent


def _make_video(name, times, duration, subset, features) -> Video:
  """A real video; with features, its labels and segments by `labels_from_times`."""
  if features is None:
    return Video(name, None, None, None, None, duration, tuple(times), subset)
  labels, segments = labels_from_times(times, duration, features.shape[0])
  return Video(name, features, labels, segments, None, duration, tuple(times), subset)


def _with_features(names, features_dir, missing):
  if features_dir is None:
    return {}, []
  return read_features(features_dir, names, missing=missing)


# ----------------------------------------------------------------------------- ActivityNet 1.3

def activitynet_classes(path: str) -> tuple[str, ...]:
  """`action_name.csv`: the header "action", then one class name a line (file order).

  Raises:
    UserError: the file is missing, has no names, or names a class twice.
  """
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = [r for r in csv.reader(f) if r and any(x.strip() for x in r)]
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None
  if rows and [x.strip() for x in rows[0]] == ["action"]:
    rows = rows[1:]
  for k, r in enumerate(rows):
    if len(r) != 1:
      raise UserError(f"{path}: class {k + 1}: expected one name a line, got {len(r)} "
                      f"fields {r[:3]}")
  names = tuple(r[0].strip() for r in rows)
  if not names:
    raise UserError(f"{path}: no class names")
  counts = collections.Counter(names)
  twice = [n for n in names if counts[n] > 1]
  if twice:
    raise UserError(f"{path}: class {twice[0]!r} appears {counts[twice[0]]} times")
  return names


def load_activitynet(root: str, subset: str, *, features_dir: str | None = None,
                     missing: str = "error", limit: int | None = None) -> Subset:
  """An ActivityNet 1.3 subset (module docstring).

  Args:
    root: the folder of anet_anno_action.json, video_info_new.csv, action_name.csv
      ($RNN_JAX_DATA/activitynet).
    subset: "training", "validation" or "testing".
    features_dir: the folder of `<video>.npy` [T, D] features, or None.
    missing: a video without a feature file: "error" or "skip" (module docstring).
    limit: the subset's first this many videos (CSV order), or None for all.

  Returns:
    A `Subset` of `Video`s with subset `subset` and the 200 classes.

  Raises:
    UserError: a missing or malformed file (named, with the video or line), a video of the
      CSV not in the JSON, an unknown label, a segment ending before it starts, a
      non-positive duration; feature problems as `read_features`.
  """
  if subset not in ACTIVITYNET_SUBSETS:
    raise UserError(f"activitynet subset {subset!r}: choose training, validation or testing")
  _check_missing(missing)
  _check_limit(limit)
  anno_path, info_path, names_path = (os.path.join(root, f) for f in ACTIVITYNET_FILES)
  classes = activitynet_classes(names_path)
  class_of = {n: k for k, n in enumerate(classes, start=1)}
  rows = _read_csv(info_path, ("video", "subset"))
  names = [r["video"] for r in rows if r["subset"] == subset][:limit]
  annotations = _read_json(anno_path)
  if not isinstance(annotations, dict):
    raise UserError(f"{anno_path}: expected a JSON object {{video: {{'duration_second', "
                    "'annotations'}}}")
  absent = [n for n in names if n not in annotations]
  if absent:
    raise UserError(f"{len(absent)} {subset} videos of {info_path} are not in {anno_path}, "
                    f"the first {absent[0]!r}")
  features, skipped = _with_features(names, features_dir, missing)
  videos = []
  for name in names:
    if features_dir is not None and name not in features:
      continue
    a = annotations[name]
    where = f"{anno_path}: {name}"
    if not isinstance(a, dict) or not isinstance(a.get("annotations"), list):
      raise UserError(f"{where}: expected {{'duration_second', 'annotations': [...]}}")
    duration = _number(a.get("duration_second"), f"{where}: duration_second")
    if duration <= 0:
      raise UserError(f"{where}: duration_second={duration}: expected > 0")
    times = []
    for i, x in enumerate(a["annotations"]):
      here = f"{where}: annotations[{i}]"
      seg = x.get("segment") if isinstance(x, dict) else None
      if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise UserError(f"{here}: expected {{'segment': [start, end], 'label': name}}")
      s, e = (_number(v, f"{here}: segment") for v in seg)
      if e < s:
        raise UserError(f"{here}: segment [{s}, {e}] ends before it starts")
      if x.get("label") not in class_of:
        raise UserError(f"{here}: label {x.get('label')!r} is not a class of {names_path}")
      times.append((s, e, class_of[x["label"]]))
    videos.append(_make_video(name, times, duration, subset, features.get(name)))
  return Subset(videos, classes, subset, tuple(skipped))


# ----------------------------------------------------------------------------- THUMOS'14

def thumos14_classes() -> tuple[str, ...]:
  """The 20 class names in type_idx order."""
  return tuple(n for _, n in THUMOS14_CLASSES)


def load_thumos14(root: str, subset: str, *, features_dir: str | None = None,
                  feature_fps: float | None = None, missing: str = "error",
                  limit: int | None = None) -> Subset:
  """A THUMOS'14 subset (module docstring).

  Args:
    root: the folder of val_Annotation.csv and test_Annotation.csv ($RNN_JAX_DATA/thumos14).
    subset: "validation" or "test".
    features_dir: the folder of `<video>.npy` [T, D] features, or None.
    feature_fps: with features: the features' steps per second (duration = T / fps).
    missing: a video without a feature file: "error" or "skip".
    limit: the first this many videos (order of first appearance), or None for all.

  Returns:
    A `Subset` with the 20 classes and the Ambiguous regions.

  Raises:
    UserError: a missing or malformed file (with the line), an unknown type or a type_idx
      that disagrees with it, a segment ending before it starts, features without a
      positive feature_fps; feature problems as `read_features`.
  """
  if subset not in THUMOS14_FILES:
    raise UserError(f"thumos14 subset {subset!r}: choose validation or test")
  _check_missing(missing)
  _check_limit(limit)
  if features_dir is not None and (feature_fps is None or not feature_fps > 0):
    raise UserError(f"thumos14 with features: feature_fps={feature_fps!r}: give the "
                    "features' steps per second (THUMOS' files hold no durations)")
  path = os.path.join(root, THUMOS14_FILES[subset])
  rows = _read_csv(path, ("video", "type", "type_idx", "start", "end"))
  index = {n: (i, k) for k, (i, n) in enumerate(THUMOS14_CLASSES, start=1)}
  times, ambiguous = {}, {}
  for line, r in enumerate(rows, start=2):
    where = f"{path}:{line}"
    name, kind = r["video"], r["type"]
    s, e = _number(r["start"], f"{where}: start"), _number(r["end"], f"{where}: end")
    if e < s:
      raise UserError(f"{where}: segment [{s}, {e}] ends before it starts")
    times.setdefault(name, [])
    if kind == AMBIGUOUS:
      ambiguous.setdefault(name, []).append((s, e))
      continue
    if kind not in index:
      raise UserError(f"{where}: type {kind!r} is not one of THUMOS'14's 20 classes or "
                      f"{AMBIGUOUS}")
    idx = _number(r["type_idx"], f"{where}: type_idx")
    if idx != index[kind][0]:
      raise UserError(f"{where}: type_idx {r['type_idx']} of {kind}: expected "
                      f"{index[kind][0]}")
    times[name].append((s, e, index[kind][1]))
  names = list(times)[:limit]
  features, skipped = _with_features(names, features_dir, missing)
  videos = []
  for name in names:
    if features_dir is None:
      videos.append(_make_video(name, times[name], None, subset, None))
    elif name in features:
      x = features[name]
      videos.append(_make_video(name, times[name], x.shape[0] / feature_fps, subset, x))
  kept = {v.name for v in videos}
  return Subset(videos, thumos14_classes(), subset, tuple(skipped),
                {n: tuple(a) for n, a in ambiguous.items() if n in kept})


# ----------------------------------------------------------------------------- ActivityNet JSON

class GroundTruth(NamedTuple):
  """One video of a ground-truth JSON."""
  subset: str
  duration: float | None
  segments: tuple  # ((start, end, label name), ...) seconds


def _label_name(label, classes, where) -> str:
  if isinstance(label, str):
    if label not in classes:
      raise UserError(f"{where}: label {label!r} is not one of the {len(classes)} classes")
    return label
  k = int(label)
  if not 1 <= k <= len(classes):
    raise UserError(f"{where}: class {k}: expected 1..{len(classes)} (0 is the background)")
  return classes[k - 1]


def write_json(path: str, obj) -> None:
  """`obj` as JSON at `path`, atomically."""
  from rnn_jax.training.workdir import atomic_write  # noqa: PLC0415
  atomic_write(path, json.dumps(obj) + "\n")


def to_ground_truth_json(videos: Iterable[Video], classes: Sequence[str],
                         subset: str | None = None, path: str | None = None) -> dict:
  """ActivityNet's ground-truth format (module docstring) of the videos' `times`.

  Args:
    videos: `Video`s.
    classes: the K class names.
    subset: every video's "subset", or None for each video's own.
    path: also written there (atomically) when given.
  """
  classes = tuple(classes)
  database = {}
  for v in videos:
    entry = {"subset": subset if subset is not None else v.subset}
    if v.duration is not None:
      entry["duration"] = float(v.duration)
    entry["annotations"] = [{"segment": [float(s), float(e)],
                             "label": _label_name(k, classes, f"video {v.name}")}
                            for s, e, k in v.times]
    database[v.name] = entry
  out = {"version": JSON_VERSION, "database": database}
  if path is not None:
    write_json(path, out)
  return out


def _detection(d, where) -> tuple:
  """(start, end, label, score) of a detection given in any of `to_predictions_json`'s
  forms."""
  if isinstance(d, Mapping):
    seg = d.get("segment")
    if not isinstance(seg, (list, tuple)) or len(seg) != 2 or "label" not in d \
        or "score" not in d:
      raise UserError(f"{where}: expected {{'label', 'score', 'segment': [s, e]}}, got "
                      f"{str(d)[:80]}")
    return seg[0], seg[1], d["label"], d["score"]
  if all(hasattr(d, a) for a in ("start", "end", "label", "score")):
    return d.start, d.end, d.label, d.score
  if isinstance(d, (list, tuple)) and len(d) == 4:
    return tuple(d)
  raise UserError(f"{where}: expected (start, end, class, score), got {str(d)[:80]}")


def to_predictions_json(detections: Mapping[str, Iterable], classes: Sequence[str],
                        path: str | None = None) -> dict:
  """ActivityNet's predictions format (module docstring).

  Args:
    detections: {video: [detection, ...]}, segments in seconds; a detection is a tuple
      (start, end, class, score), an object with those attributes (by name, e.g.
      `experiments.activity.detect.Detection` once its steps are made seconds), or a
      result entry {"label", "score", "segment"}; the class is a 1..K id or a name.
    classes: the K class names.
    path: also written there (atomically) when given.
  """
  classes = tuple(classes)
  results = {}
  for video, dets in detections.items():
    results[video] = []
    for d in dets:
      where = f"video {video}"
      s, e, label, score = _detection(d, where)
      results[video].append({"label": _label_name(label, classes, where),
                             "score": float(score), "segment": [float(s), float(e)]})
  out = {"version": JSON_VERSION, "results": results, "external_data": {}}
  if path is not None:
    write_json(path, out)
  return out


def read_ground_truth(source) -> dict[str, GroundTruth]:
  """A ground-truth JSON (a path or its contents): {video: GroundTruth}, file order."""
  where = source if isinstance(source, str) else "ground truth"
  data = _read_json(source) if isinstance(source, str) else source
  if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
    raise UserError(f"{where}: expected a JSON object with a 'database' object")
  out = {}
  for video, v in data["database"].items():
    here = f"{where}: database[{video!r}]"
    if not isinstance(v, dict) or not isinstance(v.get("annotations"), list):
      raise UserError(f"{here}: expected {{'subset', 'annotations': [...]}}")
    segments = []
    for i, a in enumerate(v["annotations"]):
      seg = a.get("segment") if isinstance(a, dict) else None
      if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise UserError(f"{here}.annotations[{i}]: expected {{'segment': [s, e], 'label'}}")
      segments.append((_number(seg[0], here), _number(seg[1], here), str(a.get("label"))))
    duration = v.get("duration")
    out[video] = GroundTruth(str(v.get("subset", "")),
                             None if duration is None else _number(duration, here),
                             tuple(segments))
  return out


# ----------------------------------------------------------------------------- batches

def max_length(videos: Sequence[Video]) -> int:
  """The longest video's T."""
  return max((v.num_steps for v in videos), default=0)


def _check_batchable(videos: Sequence[Video], batch_size: int, length: int | None) -> int:
  if batch_size < 1:
    raise UserError(f"batch_size={batch_size}: expected at least 1")
  if not videos:
    raise UserError("no videos to batch")
  bare = [v.name for v in videos if v.features is None]
  if bare:
    raise UserError(f"{len(bare)} videos have no features (load them with features_dir), "
                    f"the first {bare[0]}")
  longest = max_length(videos)
  if length is None:
    return longest
  if length < longest:
    raise UserError(f"length={length}: a video has {longest} steps")
  return length


def batch(videos: Sequence[Video], rows: Sequence[int], length: int) -> dict:
  """The videos `rows` (-1: a padding row) padded to `length` steps (module docstring)."""
  rows = np.asarray(rows, np.int64)
  B = len(rows)
  D = next(v.features.shape[1] for v in videos)
  features = np.zeros((B, length, D), np.float32)  # [B, T, D]
  labels = np.zeros((B, length), np.int32)         # [B, T]
  lengths = np.zeros(B, np.int32)
  for i, r in enumerate(rows):
    if r < 0:
      continue
    v = videos[r]
    n = v.num_steps
    features[i, :n] = v.features
    labels[i, :n] = v.labels
    lengths[i] = n
  return {"features": features, "labels": labels, "lengths": lengths, "rows": rows,
          "valid": rows >= 0}


def epoch_order(num_rows: int, seed: int, epoch: int) -> np.ndarray:
  """[N] int64: epoch `epoch`'s order, `default_rng([seed, epoch]).permutation(N)`."""
  return np.random.default_rng([seed, epoch]).permutation(num_rows)


def batch_rows(step: int, num_rows: int, batch_size: int, seed: int) -> np.ndarray:
  """[B] int64: the rows of batch `step` of the endless stream of epochs."""
  pos = np.arange(step * batch_size, (step + 1) * batch_size)
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(pos // num_rows):
    here = pos // num_rows == epoch
    out[here] = epoch_order(num_rows, seed, int(epoch))[pos[here] % num_rows]
  return out


def batches(videos: Sequence[Video], batch_size: int, *, seed: int, epoch: int,
            length: int | None = None) -> Iterator[dict]:
  """Epoch `epoch`: every video once, shuffled, the last batch padded (module docstring)."""
  length = _check_batchable(videos, batch_size, length)
  order = epoch_order(len(videos), seed, epoch)
  for lo in range(0, len(order), batch_size):
    rows = order[lo:lo + batch_size]
    yield batch(videos, np.concatenate([rows, np.full(batch_size - len(rows), -1)]), length)


class Batches:
  """`batches(step)`: training batch `step`, every one full, a pure function of (videos,
  batch_size, seed, step); `length` as `batches`."""

  def __init__(self, videos: Sequence[Video], batch_size: int, seed: int,
               length: int | None = None):
    self.length = _check_batchable(videos, batch_size, length)
    self.videos, self.batch_size, self.seed = videos, batch_size, seed

  def __len__(self) -> int:
    return len(self.videos)

  def __call__(self, step: int) -> dict:
    rows = batch_rows(step, len(self.videos), self.batch_size, self.seed)
    return batch(self.videos, rows, self.length)


def in_order(videos: Sequence[Video], batch_size: int, length: int | None = None
             ) -> Iterator[dict]:
  """Every video once, in order; the last batch padded with padding rows."""
  length = _check_batchable(videos, batch_size, length)
  n = len(videos)
  for lo in range(0, n, batch_size):
    rows = np.arange(lo, lo + batch_size)
    yield batch(videos, np.where(rows < n, rows, -1), length)


# ----------------------------------------------------------------------------- early detection

class EarlyView(NamedTuple):
  """What an early detector sees of one activity: the stream up to start + ceil(f L)."""
  features: np.ndarray  # [start + ceil(f L), D]
  segment: tuple        # (start, end, class) in steps


def early_length(start: int, end: int, fraction: float) -> int:
  """start + ceil(f (end - start)), f L rounded to 9 decimals first."""
  if not 0 < fraction <= 1:
    raise UserError(f"fraction={fraction}: expected 0 < f <= 1")
  return int(start) + math.ceil(round(fraction * (end - start), 9))


def early_views(video: Video, fraction: float = 0.3) -> list[EarlyView]:
  """One `EarlyView` per activity of `video` (its segments in steps; empty ones left out)."""
  if video.features is None:
    raise UserError(f"video {video.name} has no features (load it with features_dir)")
  return [EarlyView(video.features[:early_length(s, e, fraction)], (s, e, k))
          for s, e, k in video.segments if e > s]
