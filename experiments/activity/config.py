"""The activity experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import RunConfig, field

MODELS = ("lstm", "cnn", "attention")
RANKINGS = ("none", "score", "margin")
CORPORA = ("streams", "activitynet", "thumos14")


@dataclasses.dataclass(frozen=True)
class ActivityConfig(RunConfig):
  """Activity detection and early detection with ranking losses (Ma, Sigal & Sclaroff
  2016), and action highlighting by attention over frames (Torabi & Sigal 2017)."""
  model: str = field("lstm", "lstm (a per-step softmax over K activities + background; "
                     "with --ranking: Ma et al.'s LSTM, LSTM-s, LSTM-m), cnn (the paper's "
                     "CNN baseline: a per-frame classifier, no recurrence) or attention "
                     "(action highlighting: attention over a clip's frames, trained from "
                     "its label alone).")
  ranking: str = field("none", "The ranking loss added to the classification loss: none "
                       "(LSTM), score (L_s, LSTM-s) or margin (L_m, LSTM-m).")
  lambda_r: float = field(1.0, "λ_r, the ranking loss's weight.")
  # Data.
  corpus: str = field("streams", "streams (generated, no files), activitynet or thumos14 "
                      "(data_dir/<corpus> annotations with --features_dir).")
  features_dir: str = field("", "Real corpora: one <video>.npy [T, D] per video.")
  num_classes: int = field(10, "Streams: K activity classes.")
  feature_size: int = field(32, "Streams: D, the size of a step's feature vector.")
  noise: float = field(2.0, "Streams: per-step noise η (module docstring of streams.py).")
  train_videos: int = field(800, "Streams: training videos.")
  valid_videos: int = field(100, "Streams: validation videos.")
  test_videos: int = field(200, "Streams: test videos.")
  data_seed: int = field(0, "Streams: the seed of the videos (the same for every --seed, "
                         "so seeds vary the model only).")
  # Model.
  hidden_size: int = field(128, "LSTM size H (attention: per direction).")
  num_layers: int = field(1, "LSTM layers.")
  mlp_size: int = field(128, "cnn: the per-frame classifier's hidden width.")
  dropout: float = field(0.2, "Dropout on the features and before the output layer.")
  # Training.
  batch_size: int = field(16, "Videos (attention: clips) per training batch.")
  train_steps: int = field(3000, "Training steps.")
  optimizer: str = field("adam", "sgd, adam or rmsprop.")
  learning_rate: float = field(2e-3, "Peak learning rate.")
  warmup_steps: int = field(100, "Linear warmup steps.")
  decay: str = field("cosine", "constant or cosine decay to 0 after the warmup.")
  max_grad_norm: float = field(5.0, "Clip gradients to this global norm (0: off).")
  eval_batch_size: int = field(64, "Videos per evaluation batch.")
  # Detection (detect.py); every threshold a flag.
  thresholds: list = field(["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"],
                           "Detection: a class is active at a step where its score is at "
                           "least θ, for each θ.")
  detect_rule: str = field("threshold", "Detection: threshold (a class is active where its "
                           "score is at least θ), argmax (where it is the top class) or "
                           "actionness (class-agnostic: where 1 - p_background is at least "
                           "θ, each segment then labelled with its best classes).")
  labels_per_segment: int = field(2, "Detection with --detect_rule=actionness: the classes "
                                  "each segment is proposed as.")
  smoothing: int = field(1, "Detection: moving-average window over the scores (1: none).")
  min_length: int = field(2, "Detection: drop segments shorter than this many steps.")
  max_gap: int = field(1, "Detection: merge runs of a class this many steps apart or less.")
  nms_threshold: float = field(0.5, "Detection: per-class temporal NMS at this tIoU.")
  max_detections: int = field(100, "Detection: at most this many per video.")
  early_fraction: float = field(0.3, "Early detection: the fraction of each activity seen.")
  early_top_k: int = field(3, "Early detection: labels reported per activity view.")
  early_rule: str = field("argmax", "Early detection: what keeps the ongoing run going back "
                          "from the last observed step: argmax (its class is the top one), "
                          "threshold (its class's score >= --early_threshold) or "
                          "actionness (1 - p_background >= --early_threshold).")
  early_threshold: float = field(0.5, "Early detection: the threshold of --early_rule.")
  tiou: str = field("0.1:0.1:0.8", "The tIoU thresholds of the reported mAP (Ma et al.'s "
                    "table); ActivityNet's 0.5:0.05:0.95 average is reported too.")
  # Highlighting.
  top_k_frames: int = field(0, "attention: precision of the top-k attended frames against "
                            "the key frames (0: k = each clip's number of key frames).")
