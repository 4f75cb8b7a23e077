r"""ActivityNet's detection mAP on the full 1.3 validation set: experiments.activity.evaluate's
time, against the loop-for-loop transcription of the official code on a subset.

    python -m benchmarks.activity_evaluate                      # 100 predictions per video
    python -m benchmarks.activity_evaluate --predictions_per_video=20 --reference_videos=0

The ground truth is built from BMN's files under `$RNN_JAX_DATA/activitynet`
(`ground_truth_from_bmn`: 4,728 validation videos, 200 classes). Each validation video gets
N seeded predictions: half jittered copies of its instances (start and end moved by up to a
fifth of the instance's length, the instance's label 80% of the time, else a random
class), half random segments within the video with random classes; scores on a 0.001 grid,
so many tie. Timed: `evaluate(ground_truth, predictions)` on the in-memory dicts at the ten
default thresholds (median of --turns), and once from JSON files (`json.load` included).
With --reference_videos=K, the first K validation videos alone (their predictions of the
classes they hold) are scored by both this module and `official_reference`
(tests/test_activity_evaluate.py: the official procedure with its per-prediction loops,
on plain lists instead of pandas frames, so faster than the official), which must agree
exactly; both times are printed.

Reading (2-core Xeon, shared with training jobs, load ~3; numpy 2.4.6):

    472800 predictions on 4728 videos (7293 instances, 200 classes): evaluate 0.41 s
    (median of 3), from JSON files 1.84 s; first 200 videos (15358 predictions):
    evaluate 0.029 s, the official's loops 0.21 s (7x), identical results.
    With --reference_videos=4728 (everything): 0.40 s against 6.07 s, identical.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

from experiments.activity import evaluate as anet

_PER_VIDEO = flags.DEFINE_integer("predictions_per_video", 100, "Predictions per video.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the predictions.")
_TURNS = flags.DEFINE_integer("turns", 3, "Timed calls of evaluate on the dicts.")
_REFERENCE_VIDEOS = flags.DEFINE_integer(
    "reference_videos", 200, "Also time the official procedure's transcription on this many "
    "validation videos (0: skip).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", os.path.join(os.environ.get("RNN_JAX_DATA") or "../shared/data",
                             "activitynet"),
    "Holds anet_anno_action.json and video_info_new.csv.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_predictions(ground_truth: dict, per_video: int, seed: int) -> dict:
  """Seeded detections on every validation video (see the module docstring)."""
  rng = np.random.default_rng(seed)
  validation = {v: d for v, d in ground_truth["database"].items()
                if d["subset"] == "validation"}
  classes = sorted({a["label"] for d in validation.values() for a in d["annotations"]})
  results = {}
  for video, d in validation.items():
    anns = d["annotations"]
    duration = float(d["duration"] or max(a["segment"][1] for a in anns))
    n_copies = per_video // 2 if anns else 0
    picks = rng.integers(0, max(len(anns), 1), n_copies)
    jitter = rng.uniform(-0.2, 0.2, (n_copies, 2))
    starts = rng.uniform(0, duration, per_video - n_copies)
    lengths = rng.uniform(0, duration, per_video - n_copies)
    random_labels = rng.integers(0, len(classes), per_video)
    keep_label = rng.uniform(size=n_copies) < 0.8
    scores = np.round(rng.uniform(size=per_video), 3)
    out = []
    for i in range(n_copies):
      a = anns[picks[i]]
      s, e = a["segment"]
      length = e - s
      out.append({"label": a["label"] if keep_label[i] else classes[random_labels[i]],
                  "score": float(scores[i]),
                  "segment": [max(0.0, s + float(jitter[i, 0]) * length),
                              e + float(jitter[i, 1]) * length]})
    for j in range(per_video - n_copies):
      s = float(starts[j])
      out.append({"label": classes[random_labels[n_copies + j]],
                  "score": float(scores[n_copies + j]),
                  "segment": [s, min(duration, s + float(lengths[j]))]})
    results[video] = out
  return {"version": "VERSION 1.3", "external_data": {}, "results": results}


def _reference_module():
  path = os.path.join(ROOT, "tests", "test_activity_evaluate.py")
  spec = importlib.util.spec_from_file_location("activity_evaluate_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv) -> None:
  del argv
  ground_truth = anet.ground_truth_from_bmn(
      os.path.join(_DATA_DIR.value, "anet_anno_action.json"),
      os.path.join(_DATA_DIR.value, "video_info_new.csv"))
  start = time.perf_counter()
  predictions = make_predictions(ground_truth, _PER_VIDEO.value, _SEED.value)
  print(f"generated in {time.perf_counter() - start:.1f} s", flush=True)

  times = []
  for _ in range(_TURNS.value):
    start = time.perf_counter()
    result = anet.evaluate(ground_truth, predictions)
    times.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as tmp:
    gt_path, pred_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "pred.json")
    with open(gt_path, "w") as f:
      json.dump(ground_truth, f)
    with open(pred_path, "w") as f:
      json.dump(predictions, f)
    start = time.perf_counter()
    from_files = anet.evaluate(gt_path, pred_path)
    file_seconds = time.perf_counter() - start
  assert from_files == result
  summary = {"videos": sum(d["subset"] == "validation"
                           for d in ground_truth["database"].values()),
             "ground_truth": result["num_ground_truth"], "classes": len(result["ap"]),
             "predictions": result["num_predictions"],
             "evaluate_seconds_median": statistics.median(times),
             "evaluate_seconds": times, "from_files_seconds": file_seconds,
             "average_mAP": result["average_mAP"], "mAP": result["mAP"]}

  if _REFERENCE_VIDEOS.value:
    reference = _reference_module()
    videos = [v for v, d in ground_truth["database"].items()
              if d["subset"] == "validation"][:_REFERENCE_VIDEOS.value]
    gt_sub = {"database": {v: ground_truth["database"][v] for v in videos}}
    labels = {a["label"] for v in videos for a in gt_sub["database"][v]["annotations"]}
    pred_sub = {"results": {v: [p for p in predictions["results"][v] if p["label"] in labels]
                            for v in videos}}
    start = time.perf_counter()
    fast = anet.evaluate(gt_sub, pred_sub)
    fast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ap, mean_ap, average, _ = reference.official_reference(gt_sub, pred_sub,
                                                           anet.DEFAULT_TIOU_THRESHOLDS)
    reference_seconds = time.perf_counter() - start
    assert np.array_equal(np.array(list(fast["ap"].values())).T, ap)
    assert fast["mAP"] == mean_ap.tolist() and fast["average_mAP"] == average
    summary["subset"] = {"videos": len(videos), "predictions": fast["num_predictions"],
                         "evaluate_seconds": fast_seconds,
                         "reference_seconds": reference_seconds, "identical": True}
  print(json.dumps(summary), flush=True)
  print(f"{summary['predictions']} predictions on {summary['videos']} videos "
        f"({summary['ground_truth']} instances, {summary['classes']} classes): evaluate "
        f"{summary['evaluate_seconds_median']:.2f} s (median of {len(times)}), from JSON "
        f"files {file_seconds:.2f} s; average mAP {result['average_mAP']:.4f}")
  if "subset" in summary:
    s = summary["subset"]
    print(f"first {s['videos']} videos ({s['predictions']} predictions): evaluate "
          f"{s['evaluate_seconds']:.3f} s, the official's loops {s['reference_seconds']:.2f} s "
          f"({s['reference_seconds'] / s['evaluate_seconds']:.0f}x), identical results")


if __name__ == "__main__":
  app.run(main)
