"""Training and evaluation of the activity detectors and the highlighting model.

Detectors (`lstm`, `cnn`) train on whole videos with the per-step loss of
`rnn_jax.ranking_losses.progression_loss` (cross-entropy plus λ_r L_s or L_m), then:

- detection: per-step softmax over each test video -> `detect.detect` -> ActivityNet's
  temporal mAP (`evaluate.evaluate`, the official procedure) at `--tiou` and the average
  over 0.5:0.05:0.95;
- early detection: each test activity in its own view (its first `--early_fraction`
  seen), `detect.early_detect_instances`, scored against the whole activity;
- the progression curve: the mean score of the true class at each tenth of an activity's
  progress (`progression/score_at_*`, plotted to progression.png).

`attention` trains on clips (each activity with the background around it, up to
`CONTEXT` steps each side), from the clip's label alone, and reports the precision of the
top-k attended frames against the streams' key frames, beside chance (the key frames'
share of the clip), with plots of attention over time.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.activity import data as data_lib
from experiments.activity import detect as detect_lib
from experiments.activity import evaluate as anet
from experiments.activity import model as model_lib
from experiments.activity import streams
from experiments.activity.config import CORPORA, MODELS, RANKINGS
from experiments.common import UserError, data_path
from rnn_jax import ranking_losses, training

CONTEXT = 10      # attention clips: background steps kept on each side of the activity
PROGRESS_BINS = 10


def check_config(config) -> None:
  for name, value, choices in (("model", config.model, MODELS),
                               ("ranking", config.ranking, RANKINGS),
                               ("corpus", config.corpus, CORPORA),
                               ("decay", config.decay, ("constant", "cosine")),
                               ("detect_rule", config.detect_rule, detect_lib.RULES),
                               ("early_rule", config.early_rule, detect_lib.RULES)):
    if value not in choices:
      raise UserError(f"--{name}: expected one of {', '.join(choices)}, got {value!r}")
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected one of {', '.join(training.optim.OPTIMIZERS)}, "
                    f"got {config.optimizer!r}")
  for name in ("hidden_size", "num_layers", "mlp_size", "batch_size", "train_steps",
               "eval_batch_size", "num_classes", "feature_size", "train_videos",
               "test_videos", "early_top_k", "max_detections", "min_length", "smoothing",
               "labels_per_segment"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  if not 0.0 <= config.dropout < 1.0:
    raise UserError(f"--dropout: expected a probability in [0, 1), got {config.dropout}")
  if config.lambda_r < 0:
    raise UserError(f"--lambda_r: expected >= 0, got {config.lambda_r}")
  if config.model != "lstm" and config.ranking != "none":
    raise UserError(f"--ranking={config.ranking} trains the LSTM detector (Ma et al.'s "
                    f"LSTM-s / LSTM-m), not --model={config.model}")
  if not 0 < config.early_fraction <= 1:
    raise UserError(f"--early_fraction: expected 0 < f <= 1, got {config.early_fraction}")
  if not 0 < config.early_threshold <= 1:
    raise UserError(f"--early_threshold: expected a score in (0, 1], got "
                    f"{config.early_threshold}")
  if not 0 <= config.nms_threshold <= 1:
    raise UserError(f"--nms_threshold: expected 0..1, got {config.nms_threshold}")
  try:
    thresholds = [float(t) for t in config.thresholds]
  except ValueError:
    raise UserError(f"--thresholds: expected numbers, got {config.thresholds}") from None
  if not thresholds or any(not 0 < t <= 1 for t in thresholds):
    raise UserError(f"--thresholds: expected scores in (0, 1], got {config.thresholds}")
  try:
    anet.parse_thresholds(config.tiou)
  except ValueError as e:
    raise UserError(f"--tiou: {e}") from None
  if config.model == "attention" and config.corpus != "streams":
    raise UserError("--model=attention needs the streams' key frames: --corpus=streams")


# Data.


class Corpus:
  """`train`, `valid`, `test`: lists of `streams.Video`; `classes`: the K names."""

  def __init__(self, train, valid, test, classes):
    self.train, self.valid, self.test, self.classes = train, valid, test, tuple(classes)


def load(config) -> Corpus:
  if config.corpus == "streams":
    split = streams.splits(config.train_videos, config.valid_videos, config.test_videos,
                           seed=config.data_seed, num_classes=config.num_classes,
                           feature_size=config.feature_size, noise=config.noise)
    return Corpus(split["train"], split["valid"], split["test"],
                  streams.class_names(config.num_classes))
  if not config.features_dir:
    raise UserError(f"--corpus={config.corpus} needs --features_dir (one <video>.npy each)")
  root = data_path(config, config.corpus)
  if config.corpus == "activitynet":
    train = data_lib.load_activitynet(root, "training", features_dir=config.features_dir,
                                      missing="skip")
    test = data_lib.load_activitynet(root, "validation", features_dir=config.features_dir,
                                     missing="skip")
  else:
    train = data_lib.load_thumos14(root, "validation", features_dir=config.features_dir,
                                   missing="skip")
    test = data_lib.load_thumos14(root, "test", features_dir=config.features_dir,
                                  missing="skip")
  videos = list(train.videos)
  n_valid = min(config.valid_videos, len(videos) // 10)
  return Corpus(videos[n_valid:], videos[:n_valid], list(test.videos), train.classes)


def clips(videos) -> list:
  """Each activity of each video as a clip with up to CONTEXT background steps on each
  side (never reaching into another activity); `labels` keep the per-step classes."""
  out = []
  for v in videos:
    bounds = [0] + [b for s, e, _ in v.segments for b in (s, e)] + [v.num_steps]
    for i, (s, e, k) in enumerate(v.segments):
      lo = max(s - CONTEXT, bounds[2 * i])
      hi = min(e + CONTEXT, bounds[2 * i + 3])
      out.append(streams.Video(
          name=f"{v.name}_{i}", features=v.features[lo:hi], labels=v.labels[lo:hi],
          segments=((s - lo, e - lo, k),), key_frames=v.key_frames[lo:hi],
          duration=float(hi - lo), times=((float(s - lo), float(e - lo), k),),
          subset=v.subset))
  return out


def _clip_classes(batch):
  return batch["labels"].max(axis=1)  # one activity per clip, background around it


# Losses.


def detection_loss(model, config):
  kind = None if config.ranking == "none" else config.ranking

  def loss_fn(params, extra, batch, key):
    logits = model.logits(params, batch["features"], batch["lengths"], training=True,
                          key=key)                                      # [B, T, K + 1]
    loss, parts = ranking_losses.progression_loss(logits, batch["labels"], batch["lengths"],
                                                  kind=kind, lambda_r=config.lambda_r)
    valid = ranking_losses.valid_steps(batch["lengths"], logits.shape[1])
    right = (jnp.argmax(logits, -1) == batch["labels"]) & valid
    accuracy = right.sum() / jnp.maximum(valid.sum(), 1)
    return loss, (extra, {"xent": parts["classification"], "ranking": parts["ranking"],
                          "accuracy": accuracy})

  return loss_fn


def clip_loss(model):

  def loss_fn(params, extra, batch, key):
    logits, _ = model.logits(params, batch["features"], batch["lengths"], training=True,
                             key=key)                                   # [B, K + 1]
    classes = _clip_classes(batch)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, classes)
    weight = (batch["lengths"] > 0).astype(logits.dtype)
    loss = jnp.sum(nll * weight) / jnp.maximum(weight.sum(), 1)
    accuracy = jnp.sum((jnp.argmax(logits, -1) == classes) * weight) / jnp.maximum(
        weight.sum(), 1)
    return loss, (extra, {"xent": loss, "accuracy": accuracy})

  return loss_fn


# Prediction.


class Scorer:
  """Jitted scores of every video, in order: per-step probabilities `[T_i, K + 1]` (the
  detectors), or (clip probabilities `[K + 1]`, attention `[T_i]`)."""

  def __init__(self, config, model):
    self.config, self.model = config, model
    if model.per_step:
      self._run = jax.jit(lambda p, x, n: jax.nn.softmax(model.logits(p, x, n), -1))
    else:
      def run(p, x, n):
        logits, alpha = model.logits(p, x, n)
        return jax.nn.softmax(logits, -1), alpha
      self._run = jax.jit(run)

  def run(self, params, videos) -> list:
    length = data_lib.max_length(videos)
    out = []
    for batch in data_lib.in_order(videos, self.config.eval_batch_size, length):
      scores = jax.device_get(self._run(params, batch["features"], batch["lengths"]))
      for i, n in enumerate(batch["lengths"]):
        if batch["valid"][i]:
          if self.model.per_step:
            out.append(np.asarray(scores[i, :n]))
          else:
            out.append((np.asarray(scores[0][i]), np.asarray(scores[1][i, :n])))
    return out


def _detect_kwargs(config) -> dict:
  return dict(thresholds=[float(t) for t in config.thresholds], rule=config.detect_rule,
              labels_per_segment=config.labels_per_segment, smoothing=config.smoothing,
              min_length=config.min_length, max_gap=config.max_gap,
              nms_threshold=config.nms_threshold, max_detections=config.max_detections)


def detection_results(config, videos, probs, classes) -> tuple[dict, dict]:
  """ActivityNet predictions of detection and of early detection, segments in seconds."""
  full, early = {}, {}
  for v, p in zip(videos, probs):
    step = data_lib.seconds_per_step(v)
    dets = detect_lib.detect(p, **_detect_kwargs(config))
    full[v.name] = detect_lib.detections_to_results(v.name, dets, classes, step)
    early_dets = detect_lib.early_detect_instances(
        p, [(s, e) for s, e, _ in v.segments if e > s], fraction=config.early_fraction,
        top_k=config.early_top_k, max_gap=config.max_gap, rule=config.early_rule,
        threshold=config.early_threshold)
    early[v.name] = detect_lib.detections_to_results(v.name, early_dets, classes, step)
  return ({"version": data_lib.JSON_VERSION, "results": full, "external_data": {}},
          {"version": data_lib.JSON_VERSION, "results": early, "external_data": {}})


def score_detection(config, videos, probs, classes, prefix: str, workdir=None) -> dict:
  """`<prefix>/mAP@α` at --tiou, their mean, ActivityNet's average mAP (0.5:0.95), for
  detection and (`<prefix>/early_*`) early detection."""
  subset = videos[0].subset if videos else prefix
  gt = data_lib.to_ground_truth_json(videos, classes, subset=subset)
  full, early = detection_results(config, videos, probs, classes)
  if workdir is not None and jax.process_index() == 0:
    for name, obj in (("ground_truth", gt), ("detections", full), ("early_detections", early)):
      data_lib.write_json(os.path.join(workdir, f"{prefix}_{name}.json"), obj)
  tious = anet.parse_thresholds(config.tiou)
  # A class absent from these videos' ground truth has no AP: the official code raises on
  # its detections, which could change no other class's AP, so they are left out here.
  present = {a["label"] for d in gt["database"].values() for a in d["annotations"]}
  out = {}
  for tag, predictions in (("", full), ("early_", early)):
    predictions = dict(predictions, results={
        v: [r for r in rs if r["label"] in present] for v, rs in predictions["results"].items()})
    # One pass over both threshold sets: each threshold's AP is computed on its own.
    both = np.concatenate([tious, anet.DEFAULT_TIOU_THRESHOLDS])
    mean_ap = np.asarray(anet.evaluate(gt, predictions, both, subset=subset)["mAP"])
    for t, m in zip(tious, mean_ap):
      out[f"{prefix}/{tag}mAP@{t:.2f}"] = float(m)
    out[f"{prefix}/{tag}mAP"] = float(mean_ap[:len(tious)].mean())
    out[f"{prefix}/{tag}average_mAP"] = float(mean_ap[len(tious):].mean())
  return out


def progression_curve(videos, probs) -> np.ndarray:
  """`[PROGRESS_BINS]`: the mean score of the true class at each tenth of the activities'
  progress (the lecture's "ideally what we want": rising through the activity)."""
  total, count = np.zeros(PROGRESS_BINS), np.zeros(PROGRESS_BINS)
  for v, p in zip(videos, probs):
    for s, e, k in v.segments:
      if e <= s:
        continue
      r = (np.arange(s, e) - s + 0.5) / (e - s)
      bins = np.minimum((r * PROGRESS_BINS).astype(int), PROGRESS_BINS - 1)
      np.add.at(total, bins, p[s:e, k])
      np.add.at(count, bins, 1)
  return total / np.maximum(count, 1)


def highlight_precision(videos, attention, top_k: int = 0) -> tuple[float, float]:
  """(precision of the top-k attended frames against the key frames, chance: the key
  frames' share of each clip), averaged over clips; k = each clip's key frames, or
  `top_k`."""
  precisions, chance = [], []
  for v, alpha in zip(videos, attention):
    keys = np.asarray(v.key_frames, bool)
    k = int(top_k) or int(keys.sum())
    if k == 0:
      continue
    top = np.argsort(-alpha, kind="stable")[:k]
    precisions.append(keys[top].mean())
    chance.append(keys.mean())
  return float(np.mean(precisions)), float(np.mean(chance))


def plot_progression(workdir, curve) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, ax = plt.subplots(figsize=(4.5, 3))
  x = (np.arange(PROGRESS_BINS) + 0.5) / PROGRESS_BINS
  ax.plot(x, curve, marker="o")
  ax.set_xlabel("progress through the activity")
  ax.set_ylabel("score of the true class")
  ax.set_ylim(0, 1)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "progression.png"), dpi=120)
  plt.close(fig)


def plot_attention(workdir, videos, attention, count: int = 6) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  n = min(count, len(videos))
  if n == 0:
    return
  fig, axes = plt.subplots(n, 1, figsize=(6, 1.4 * n), squeeze=False)
  for ax, v, alpha in zip(axes[:, 0], videos, attention):
    t = np.arange(len(alpha))
    ax.fill_between(t, 0, np.asarray(v.key_frames, float) * alpha.max(), color="tab:orange",
                    alpha=0.3, step="mid", label="key frames")
    (s, e, k), = v.segments
    ax.axvspan(s - 0.5, e - 0.5, color="grey", alpha=0.1)
    ax.plot(t, alpha, color="tab:blue", label="attention")
    ax.set_ylabel(f"class {k}", fontsize=7)
  axes[0, 0].legend(fontsize=7, loc="upper right")
  axes[-1, 0].set_xlabel("step")
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "attention.png"), dpi=110)
  plt.close(fig)


# The run.


def build(config, feature_size: int, num_outputs: int):
  model = model_lib.ActivityModel(config, feature_size, num_outputs)
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
  schedule = training.optim.warmup_decay_schedule(
      config.learning_rate, num_steps, warmup_steps=config.warmup_steps, decay=config.decay)
  optimizer = training.optimizer(config.optimizer, schedule, config.max_grad_norm)
  key = jax.random.key(config.seed)
  state = training.state.create_state(model.init(jax.random.fold_in(key, 0)), optimizer)
  return model, optimizer, state, num_steps, key


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains in `workdir` (resuming if it can); writes results.json with the test scores."""
  check_config(config)
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  corpus = load(config)
  train, valid, test = corpus.train, corpus.valid, corpus.test
  if config.model == "attention":
    train, valid, test = clips(train), clips(valid), clips(test)
  if not train or not test:
    raise UserError(f"--corpus={config.corpus}: no training or test videos")
  D = train[0].features.shape[1]
  model, optimizer, state, num_steps, key = build(config, D, len(corpus.classes) + 1)
  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  length = data_lib.max_length(train)
  batches = data_lib.Batches(train, config.batch_size, config.seed, length)
  index, count = jax.process_index(), jax.process_count()
  B = config.batch_size

  def batch_at(step):
    b = batches(step)
    return {k: b[k][index * B // count:(index + 1) * B // count]
            for k in ("features", "labels", "lengths")}

  scorer = Scorer(config, model)
  print(f"{config.model} (ranking: {config.ranking}) on {config.corpus}: {len(train)} "
        f"training {'clips' if config.model == 'attention' else 'videos'}, {len(valid)} "
        f"valid, {len(test)} test; K = {len(corpus.classes)}, D = {D}, {num_steps} steps, "
        f"{mesh.size} device(s)", flush=True)

  def evaluate_valid(state):
    if not valid:
      return {}
    scores = scorer.run(state.params, valid)
    if model.per_step:
      return score_detection(config, valid, scores, corpus.classes, "valid")
    precision, _ = highlight_precision(valid, [a for _, a in scores], config.top_k_frames)
    accuracy = np.mean([int(np.argmax(p)) == int(v.labels.max()) for (p, _), v in
                        zip(scores, valid)])
    return {"valid/accuracy": float(accuracy), "valid/highlight_precision": precision}

  loss_fn = detection_loss(model, config) if model.per_step else clip_loss(model)
  state = training.fit(
      workdir=workdir, experiment="activity", state=state,
      train_step=training.make_train_step(loss_fn, optimizer), batch_at=batch_at,
      num_steps=num_steps, key=jax.random.fold_in(key, 1), evaluate=evaluate_valid,
      eval_every=config.eval_every or max(num_steps // 3, 1),
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size, items_name="videos", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)
  scores = scorer.run(state.params, test)
  if model.per_step:
    results = score_detection(config, test, scores, corpus.classes, "test", workdir)
    curve = progression_curve(test, scores)
    results.update({f"progression/score_at_{(i + 0.5) / PROGRESS_BINS:.2f}": float(c)
                    for i, c in enumerate(curve)})
    steps = sum(len(p) for p in scores)
    results["test/frame_accuracy"] = float(sum(
        (np.argmax(p, -1) == v.labels).sum() for p, v in zip(scores, test)) / steps)
  else:
    attention = [a for _, a in scores]
    precision, chance = highlight_precision(test, attention, config.top_k_frames)
    results = {"test/accuracy": float(np.mean([int(np.argmax(p)) == int(v.labels.max())
                                               for (p, _), v in zip(scores, test)])),
               "test/highlight_precision": precision, "test/highlight_chance": chance}
  results["step"] = int(jax.device_get(state.step))
  results["wall_time_s"] = time.time() - start_time
  if jax.process_index() == 0:
    training.metrics.write_results(workdir, results)
    if model.per_step:
      plot_progression(workdir, curve)
    else:
      plot_attention(workdir, test, attention)
      with open(os.path.join(workdir, "attention.json"), "w") as f:
        json.dump([{"clip": v.name, "attention": a.round(5).tolist(),
                    "key_frames": np.asarray(v.key_frames).astype(int).tolist()}
                   for v, a in zip(test[:50], attention[:50])], f)
  print("test: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()
                             if isinstance(v, float) and not k.startswith("wall")), flush=True)
  return results
