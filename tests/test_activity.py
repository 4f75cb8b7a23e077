"""The activity experiment end to end: training, detection, early detection, highlighting."""

import json
import pathlib

import numpy as np
import pytest

from experiments import common
from experiments.activity import streams
from experiments.activity import train as train_lib
from experiments.activity.config import ActivityConfig
from experiments.common import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tiny(**kw):
  base = dict(train_videos=160, valid_videos=0, test_videos=40, train_steps=300,
              hidden_size=32, mlp_size=32, batch_size=16, progress=False, eval_every=0,
              checkpoint_every=0, log_every=100, warmup_steps=10, learning_rate=5e-3)
  return ActivityConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def lstm_and_cnn(tmp_path_factory):
  out = {}
  for model in ("lstm", "cnn"):
    workdir = tmp_path_factory.mktemp(model)
    out[model] = (train_lib.train_and_evaluate(_tiny(model=model), str(workdir)), workdir)
  return out


def test_the_cpu_run_beats_the_cnn_baseline(lstm_and_cnn):
  lstm, _ = lstm_and_cnn["lstm"]
  cnn, _ = lstm_and_cnn["cnn"]
  assert lstm["test/mAP@0.50"] > cnn["test/mAP@0.50"] + 0.05, (lstm, cnn)
  assert lstm["test/mAP"] > cnn["test/mAP"], (lstm, cnn)
  assert lstm["test/frame_accuracy"] > cnn["test/frame_accuracy"]


def test_outputs_are_the_official_formats_and_rescore_the_same(lstm_and_cnn):
  from experiments.activity import evaluate as anet  # noqa: PLC0415
  results, workdir = lstm_and_cnn["lstm"]
  gt = json.loads((workdir / "test_ground_truth.json").read_text())
  detections = json.loads((workdir / "test_detections.json").read_text())
  assert set(gt["database"]) == set(detections["results"])
  present = {a["label"] for d in gt["database"].values() for a in d["annotations"]}
  detections["results"] = {v: [r for r in rs if r["label"] in present]
                           for v, rs in detections["results"].items()}
  table = anet.evaluate(gt, detections, anet.parse_thresholds("0.1:0.1:0.8"), subset="test")
  assert table["average_mAP"] == pytest.approx(results["test/mAP"], abs=1e-12)
  assert (workdir / "progression.png").exists()


def test_progression_curve_by_hand():
  v = streams.Video(name="v", features=np.zeros((12, 2), np.float32),
                    labels=np.array([0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0], np.int32),
                    segments=((1, 11, 2),), key_frames=None, duration=12.0,
                    times=((1.0, 11.0, 2),), subset="test")
  probs = np.zeros((12, 3))
  probs[1:11, 2] = np.linspace(0.1, 1.0, 10)  # one step per tenth of the activity
  np.testing.assert_allclose(train_lib.progression_curve([v], [probs]),
                             np.linspace(0.1, 1.0, 10))


def test_highlight_precision_and_clips_by_hand():
  keys = np.array([0, 0, 1, 1, 1, 0], bool)
  v = streams.Video(name="c", features=np.zeros((6, 2), np.float32), labels=None,
                    segments=((1, 5, 1),), key_frames=keys, duration=6.0, times=(),
                    subset="test")
  alpha = np.array([0.3, 0.0, 0.4, 0.1, 0.2, 0.0])
  # top 3 (k = the 3 key frames): steps 2, 0, 4 -> two of them key frames
  assert train_lib.highlight_precision([v], [alpha]) == pytest.approx((2 / 3, 0.5))
  assert train_lib.highlight_precision([v], [alpha], top_k=1) == pytest.approx((1.0, 0.5))
  video = streams.generate(1, seed=3, min_activities=2, max_activities=2)[0]
  cut = train_lib.clips([video])
  assert len(cut) == 2
  for clip, (s, e, k) in zip(cut, video.segments):
    (cs, ce, ck), = clip.segments
    assert ck == k and ce - cs == e - s
    assert set(np.unique(clip.labels)) <= {0, k}  # never another activity's steps
    assert cs <= train_lib.CONTEXT and clip.num_steps - ce <= train_lib.CONTEXT


def test_attention_highlights_the_key_frames(tmp_path):
  results = train_lib.train_and_evaluate(
      _tiny(model="attention", train_videos=120, train_steps=200, test_videos=30),
      str(tmp_path))
  assert results["test/accuracy"] > 0.3  # 10 classes: chance 0.1
  assert results["test/highlight_precision"] > results["test/highlight_chance"]
  assert (tmp_path / "attention.png").exists()


@pytest.mark.parametrize("name", ["lstm_cpu", "lstm_s_cpu", "lstm_m_cpu", "cnn_cpu",
                                  "highlight_cpu", "activitynet_paper"])
def test_flagfiles_parse_and_validate(name):
  config = common.config_from_flagfile(
      ActivityConfig, f"experiments/flagfiles/activity/{name}.flags", root=str(ROOT))
  train_lib.check_config(config)


def test_bad_flags_are_one_line_errors():
  for kw, match in ((dict(model="gru"), "--model"), (dict(ranking="hinge"), "--ranking"),
                    (dict(model="cnn", ranking="score"), "--ranking"),
                    (dict(thresholds=["0"]), "--thresholds"), (dict(tiou="a:b"), "--tiou"),
                    (dict(early_fraction=0.0), "--early_fraction"),
                    (dict(lambda_r=-1.0), "--lambda_r")):
    with pytest.raises(UserError, match=match):
      train_lib.check_config(_tiny(**kw))


def test_progression_plot_groups_seeds(tmp_path):
  from experiments.activity import plots  # noqa: PLC0415
  for name, level in (("lstm_cpu,seed=0", 0.2), ("lstm_cpu,seed=1", 0.4),
                      ("lstm_s_cpu,seed=0", 0.6)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(
        {f"progression/score_at_{(i + 0.5) / 10:.2f}": level + i / 100 for i in range(10)}))
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "results.json").write_text(json.dumps({"test/mAP": 0.5}))
  curves = plots.progression_curves(str(tmp_path))
  assert sorted(curves) == ["lstm_cpu", "lstm_s_cpu"]
  assert curves["lstm_cpu"].shape == (2, 10)
  np.testing.assert_allclose(curves["lstm_cpu"].mean(0), 0.3 + np.arange(10) / 100)
  plots.plot(curves, str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").stat().st_size > 0
