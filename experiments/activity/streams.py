r"""The embedded default corpus: generated video streams of activities on a background.

    videos = streams.generate(200, seed=0)                 # list of `Video`
    corpus = streams.splits(num_train=800, seed=0)         # {"train", "valid", "test"}
    v = videos[0]
    v.features     # [T, D] float32       the per-step feature vectors
    v.labels       # [T] int32            0 background, 1..K the activity classes
    v.segments     # ((start, end, class), ...) in steps, end exclusive, in time order
    v.key_frames   # [T] bool             the steps that carry the class's own evidence
    v.times        # ((start, end, class), ...) in seconds (one step is one second here)

A stream stands in for the per-frame CNN features of an untrimmed video (what Ma, Sigal &
Sclaroff 2016 feed their LSTM): a few activities separated by background,
each activity a characteristic progression through "phase" prototypes whose class becomes
certain only part-way through, so a detector has to integrate over time and its confidence
can grow as it sees more of the activity. Everything is numpy and a function of the seeds.

## The world (fixed by `world_seed`, the same in every split)

K classes (class ids k = 1..K; 0 is the background), in groups of G consecutive ids,
g(k) = ⌊(k - 1) / G⌋. Every prototype is a Gaussian vector scaled to norm √D:

    p = √D z / |z|,   z ~ N(0, I_D)
    b             the background prototype
    s_g           the shared prototype of group g (the early phase of all its classes)
    u_k           the own prototype of class k
    π(k)          = ((k - 1 + G) mod K) + 1     (of another group when K >= 2G)

Class k's mean path over its normalised progress r ∈ [0, 1] is the piecewise-linear
interpolation of the anchors

    (0, s_g(k)),  (ρ, s_g(k)),  (m, u_k),  (1, u_π(k)),       m = (1 + ρ) / 2

so up to r = ρ (`shared_fraction`, default 0.25) all G classes of a group look alike,
from ρ to m the path turns to the class's own prototype, and from m to 1 towards the own
prototype of class π(k). Every own prototype thus appears in two classes, in the middle of
one and at the end of another: a single frame of it does not tell the two apart, the
order of the phases does. The amplitude grows with progress:

    μ_k(r) = a(r) path_k(r),    a(r) = a₀ + (1 - a₀) r           (a₀ = `min_amplitude`)

## A video (its own generator, `default_rng([*seed, index])`)

    T ~ U{min_length .. max_length}                          the length in steps
    n ~ U{min_activities .. max_activities}                  fewer while they do not fit
    L_i ~ U{min_activity_length .. max_activity_length}      n activity lengths (redrawn
          shorter if even min_activities do not fit)
    gaps: min_gap steps before, between and after the activities, the rest of the
          T - Σ L_i steps spread over the n + 1 gaps uniformly at random
    c_i ~ U{1 .. K}                                          the classes
    λ ~ U[min_scale, max_scale],  o ~ N(0, offset² I_D)      per-video nuisance

At step t of activity i (start a_i, progress r_t = (t - a_i + 1/2) / L_i, the centre of the
step) the clean signal is m_t = μ_{c_i}(r_t); on the background m_t = b, except for
distractor bursts: each background gap of at least `min_burst + 2` steps holds, with
probability `distractor_prob`, one burst of l ~ U{min_burst .. max_burst} steps (at a
random place, not touching the activities) of a random group's early phase,
m_t = a(ρ r'_t) s_g with r'_t = (t - start + 1/2) / l: the start of an activity that
never goes on (labelled background). The features:

    x_t = λ m_t + o + η ε_t,      ε_t ~ N(0, I_D)                  (η = `noise`)
    y_t = c_i inside activity i, else 0
    key_t = (t inside activity i) and r_t > ρ                      (the class's own evidence)

`key_frames` are the ground truth of which frames matter (Ma et al.'s action
highlighting): the steps after the shared early phase, where the path leaves s_g.

What a frame tells, with the defaults (D = 32, η = 2; measured on 400 training and 150
test videos with a linear discriminant, class means and a pooled covariance): one frame
gives the right one of the K + 1 labels for 0.60 of all steps but 0.28 of the activity
steps (0.21 at r < 0.2, where a group's classes look alike; at most 0.36 later, as every
own prototype is shared by two classes); the mean of the last 15 frames 0.55 of the
activity steps (0.69 to 0.89 at r >= 0.4); the means of an activity's thirds classify 0.997 of
the whole activities and 0.47 of their first 3/10. So a memoryless (per-frame) detector
is clearly worse than one that integrates over time and reads the order of the phases.

## Times

One step is one second: `times` are `segments` as floats and `duration` is T, so the
official ActivityNet formats (`experiments.activity.data.to_ground_truth_json`) hold
the streams as they hold real videos.

## Class names

`class_names(K)`: "activity_01" .. "activity_K" (two digits up to 99); class k is
`class_names(K)[k - 1]`. Classes 1..G form group 0, G+1..2G group 1, and so on.

Shape legend: T steps, D features, K classes (+ the background).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import NamedTuple

import numpy as np

from experiments.common import UserError

SPLITS = ("train", "valid", "test")
BACKGROUND = 0


class Video(NamedTuple):
  """One video: a generated stream, or a real video read by `experiments.activity.data`.

  Attributes:
    name: the video's id.
    features: [T, D] float32, or None (a real video loaded without features).
    labels: [T] int32, 0 background, 1..K classes; None without features.
    segments: ((start, end, class), ...) in steps, end exclusive; None without features.
      Generated streams: in time order, disjoint. Real videos: one per annotation, in
      the annotation's order (`times[i]` in steps; may overlap, may be empty).
    key_frames: [T] bool, the discriminative steps; None for real videos (unknown).
    duration: seconds (generated streams: T), or None when unknown.
    times: ((start, end, class), ...) in seconds, as the annotation gives them (generated
      streams: `segments`); what the official evaluation scores.
    subset: the split or subset the video belongs to.
  """
  name: str
  features: np.ndarray | None
  labels: np.ndarray | None
  segments: tuple | None
  key_frames: np.ndarray | None
  duration: float | None
  times: tuple
  subset: str = ""

  @property
  def num_steps(self) -> int:
    """T (0 without features)."""
    return 0 if self.features is None else int(self.features.shape[0])


@dataclasses.dataclass(frozen=True)
class StreamConfig:
  """The generator's parameters (module docstring)."""
  num_classes: int = 10           # K
  feature_size: int = 32          # D
  group_size: int = 2             # G: classes sharing their early phase
  shared_fraction: float = 0.25   # ρ: progress up to which a group's classes look alike
  min_amplitude: float = 0.5      # a₀: the amplitude at r = 0 (1 at r = 1)
  noise: float = 2.0              # η: per-frame noise, per feature
  offset: float = 0.5             # per-video offset o ~ N(0, offset² I)
  min_scale: float = 0.75         # per-video scale λ ~ U[min_scale, max_scale]
  max_scale: float = 1.25
  min_length: int = 80            # T
  max_length: int = 200
  min_activities: int = 1
  max_activities: int = 4
  min_activity_length: int = 15   # L
  max_activity_length: int = 50
  min_gap: int = 3                # background steps at least before, between, after
  distractor_prob: float = 0.3    # chance of a burst in a background gap
  min_burst: int = 3
  max_burst: int = 8
  world_seed: int = 0             # the prototypes: keep it fixed across splits

  def check(self) -> "StreamConfig":
    """Self, or a UserError naming the first bad parameter."""
    def need(ok, what):
      if not ok:
        raise UserError(f"activity streams: {what}")
    need(self.num_classes >= 2, f"num_classes={self.num_classes}: expected at least 2")
    need(self.feature_size >= 1, f"feature_size={self.feature_size}: expected at least 1")
    need(self.group_size >= 1, f"group_size={self.group_size}: expected at least 1")
    need(0 <= self.shared_fraction < 1,
         f"shared_fraction={self.shared_fraction}: expected 0 <= ρ < 1")
    need(0 <= self.min_amplitude <= 1,
         f"min_amplitude={self.min_amplitude}: expected 0..1")
    need(self.noise >= 0 and self.offset >= 0, "noise and offset must be >= 0")
    need(0 < self.min_scale <= self.max_scale,
         f"scales {self.min_scale}..{self.max_scale}: expected 0 < min <= max")
    need(1 <= self.min_activity_length <= self.max_activity_length,
         f"activity lengths {self.min_activity_length}..{self.max_activity_length}: "
         "expected 1 <= min <= max")
    need(0 <= self.min_activities <= self.max_activities,
         f"activities {self.min_activities}..{self.max_activities}: expected 0 <= min <= max")
    need(self.min_gap >= 0, f"min_gap={self.min_gap}: expected >= 0")
    need(1 <= self.min_length <= self.max_length,
         f"lengths {self.min_length}..{self.max_length}: expected 1 <= min <= max")
    need(self.min_length >= self.min_activities * (self.min_activity_length + self.min_gap)
         + self.min_gap,
         f"min_length={self.min_length} cannot hold min_activities={self.min_activities} "
         f"activities of {self.min_activity_length} steps with gaps of {self.min_gap}")
    need(0 <= self.distractor_prob <= 1,
         f"distractor_prob={self.distractor_prob}: expected 0..1")
    need(1 <= self.min_burst <= self.max_burst,
         f"bursts {self.min_burst}..{self.max_burst}: expected 1 <= min <= max")
    return self


def class_names(num_classes: int) -> tuple[str, ...]:
  """("activity_01", ..., "activity_K"): class k is the (k - 1)-th."""
  width = max(2, len(str(num_classes)))
  return tuple(f"activity_{k:0{width}d}" for k in range(1, num_classes + 1))


def group_of(k, group_size: int):
  """The group of class k (1..K; an int or an array)."""
  return (np.asarray(k) - 1) // group_size


class World(NamedTuple):
  """The prototypes (module docstring), fixed by `world_seed`.

  Attributes:
    background: [D] b.
    shared: [num_groups, D] s_g.
    own: [K, D] u_k (row k - 1).
    anchors: [K, 4, D] each class's path anchors (s_g, s_g, u_k, u_π(k)), row k - 1.
    positions: [4] the anchors' progress (0, ρ, m, 1).
  """
  background: np.ndarray
  shared: np.ndarray
  own: np.ndarray
  anchors: np.ndarray
  positions: np.ndarray


def _prototypes(rng, n, d):
  z = rng.standard_normal((n, d))
  return np.sqrt(d) * z / np.linalg.norm(z, axis=1, keepdims=True)


def world(config: StreamConfig | None = None) -> World:
  """The prototypes of `config` (the same for every split and video seed)."""
  c = (config or StreamConfig()).check()
  K, D, G = c.num_classes, c.feature_size, c.group_size
  num_groups = -(-K // G)
  rng = np.random.default_rng([c.world_seed, zlib.crc32(b"activity-world")])
  background = _prototypes(rng, 1, D)[0]
  shared = _prototypes(rng, num_groups, D)
  own = _prototypes(rng, K, D)
  ks = np.arange(1, K + 1)
  successor = (ks - 1 + G) % K                       # π(k) - 1
  s = shared[group_of(ks, G)]
  anchors = np.stack([s, s, own, own[successor]], axis=1)  # [K, 4, D]
  rho = c.shared_fraction
  positions = np.array([0.0, rho, (1 + rho) / 2, 1.0])
  return World(background, shared, own, anchors, positions)


def mean_path(w: World, config: StreamConfig, classes, progress) -> np.ndarray:
  """μ_k(r) (module docstring): `classes` [N] in 1..K, `progress` [N] in [0, 1] -> [N, D]."""
  classes = np.asarray(classes)
  r = np.clip(np.asarray(progress, np.float64), 0.0, 1.0)
  pos = w.positions
  # the anchor interval of each r: [pos[j], pos[j + 1]]; j in 0..2
  j = np.clip(np.searchsorted(pos, r, side="right") - 1, 0, len(pos) - 2)
  width = pos[j + 1] - pos[j]
  frac = np.where(width > 0, (r - pos[j]) / np.where(width > 0, width, 1.0), 0.0)
  a = w.anchors[classes - 1]                                   # [N, 4, D]
  rows = np.arange(len(r))
  path = (1 - frac)[:, None] * a[rows, j] + frac[:, None] * a[rows, j + 1]
  amp = config.min_amplitude + (1 - config.min_amplitude) * r
  return amp[:, None] * path


def _seed_entropy(seed) -> list[int]:
  if isinstance(seed, (int, np.integer)):
    return [int(seed)]
  return [int(s) for s in seed]


def _layout(rng, c: StreamConfig):
  """(T, [(start, end)]) of one video's activities."""
  T = int(rng.integers(c.min_length, c.max_length + 1))
  n = int(rng.integers(c.min_activities, c.max_activities + 1))
  lengths = rng.integers(c.min_activity_length, c.max_activity_length + 1, n)
  while n > c.min_activities and lengths.sum() + (n + 1) * c.min_gap > T:
    n -= 1
    lengths = lengths[:n]
  if n and lengths.sum() + (n + 1) * c.min_gap > T:
    # min_activities do not fit: shorter ones (`check` makes sure the minimum fits)
    cap = min(c.max_activity_length, (T - (n + 1) * c.min_gap) // n)
    lengths = rng.integers(c.min_activity_length, cap + 1, n)
  slack = T - int(lengths.sum()) - (n + 1) * c.min_gap
  # spread the slack over the n + 1 gaps: a uniformly random composition
  cuts = np.sort(rng.integers(0, slack + 1, n))
  gaps = np.diff(np.concatenate([[0], cuts, [slack]])) + c.min_gap
  spans, t = [], 0
  for i in range(n):
    t += int(gaps[i])
    spans.append((t, t + int(lengths[i])))
    t += int(lengths[i])
  return T, spans


def _video(w: World, c: StreamConfig, rng, name: str, subset: str) -> Video:
  T, spans = _layout(rng, c)
  D, K = c.feature_size, c.num_classes
  classes = rng.integers(1, K + 1, len(spans))
  scale = rng.uniform(c.min_scale, c.max_scale)
  offset = c.offset * rng.standard_normal(D)
  clean = np.tile(w.background, (T, 1))                       # [T, D]
  labels = np.zeros(T, np.int32)
  key = np.zeros(T, bool)
  for (start, end), k in zip(spans, classes):
    t = np.arange(start, end)
    r = (t - start + 0.5) / (end - start)
    clean[start:end] = mean_path(w, c, np.full(len(t), k), r)
    labels[start:end] = k
    key[start:end] = r > c.shared_fraction
  # distractor bursts in the background gaps
  bounds = [0] + [x for s in spans for x in s] + [T]
  for lo, hi in zip(bounds[0::2], bounds[1::2]):
    room = hi - lo - 2  # one background step kept on each side
    if room >= c.min_burst and rng.uniform() < c.distractor_prob:
      length = int(rng.integers(c.min_burst, min(c.max_burst, room) + 1))
      start = lo + 1 + int(rng.integers(0, room - length + 1))
      g = int(rng.integers(0, len(w.shared)))
      r = (np.arange(length) + 0.5) / length * c.shared_fraction
      amp = c.min_amplitude + (1 - c.min_amplitude) * r
      clean[start:start + length] = amp[:, None] * w.shared[g]
  noise = rng.standard_normal((T, D))
  features = (scale * clean + offset + c.noise * noise).astype(np.float32)
  segments = tuple((s, e, int(k)) for (s, e), k in zip(spans, classes))
  times = tuple((float(s), float(e), k) for s, e, k in segments)
  return Video(name, features, labels, segments, key, float(T), times, subset)


def generate(num_videos: int, *, seed, config: StreamConfig | None = None,
             name_prefix: str = "video", subset: str = "", **params) -> list[Video]:
  """`num_videos` generated videos (module docstring).

  Args:
    num_videos: how many.
    seed: an int or a sequence of ints; video i draws from `default_rng([*seed, i])`, so
      the first n videos of a longer call are the videos of a call for n.
    config: the generator's parameters (default `StreamConfig()`), ...
    name_prefix: names are f"{name_prefix}_{i:05d}".
    subset: recorded in each `Video.subset`.
    **params: ... or `StreamConfig` fields overriding it (`num_classes=12`).

  Returns:
    A list of `Video`s.
  """
  c = dataclasses.replace(config or StreamConfig(), **params).check()
  if num_videos < 0:
    raise UserError(f"num_videos={num_videos}: expected >= 0")
  w = world(c)
  entropy = _seed_entropy(seed)
  return [_video(w, c, np.random.default_rng([*entropy, i]), f"{name_prefix}_{i:05d}", subset)
          for i in range(num_videos)]


def split_seed(seed: int, split: str) -> tuple[int, int]:
  """The seed of a split: (seed, crc32(split)), so the splits are disjoint draws."""
  return (int(seed), zlib.crc32(split.encode()))


def splits(num_train: int = 800, num_valid: int = 100, num_test: int = 200, *, seed: int = 0,
           config: StreamConfig | None = None, **params) -> dict[str, list[Video]]:
  """{"train", "valid", "test"}: lists of videos named "<split>_<i>", drawn from
  `split_seed(seed, split)` with the same world (`config`, `params` as `generate`)."""
  sizes = {"train": num_train, "valid": num_valid, "test": num_test}
  return {name: generate(n, seed=split_seed(seed, name), config=config, name_prefix=name,
                         subset=name, **params)
          for name, n in sizes.items()}
