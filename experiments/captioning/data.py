"""Captioning data: corpora -> a word vocabulary -> batches of (image, caption) pairs.

    corpus = data.load(config)                    # Corpus(train, valid, test) of `Split`s
    vocab = data.Vocabulary.build(corpus.train.captions, min_count)
    batches = data.Batches(corpus.train, vocab, batch_size, max_len, seed)
    batch = batches(step)      # images [B, H, W, 3] uint8 (or features [B, R, D]),
                               # targets [B, U] (words, EOS, PAD), target_lengths [B] (with EOS),
                               # image_index [B] (row of the split: whose references score it)

Every (image, reference caption) pair is one training example; an epoch visits each
once in an order drawn from (seed, epoch), so `batches(step)` is a pure function of the
step and a resumed run sees the batches an uninterrupted one does. Captions are
lower-cased and split on whitespace after punctuation is removed (`tokenize`), the
training-side counterpart of the PTB tokenizer the COCO evaluation runs; words seen
fewer than `min_count` times in the training captions become `<unk>`.
"""

from __future__ import annotations

import collections
import json
import os
import re
from typing import NamedTuple

import numpy as np

from experiments.common import UserError, data_path

PAD, EOS, BOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "</s>", "<s>", "<unk>")
SCENES_SEED = 0  # the scenes' splits are fixed: the run's --seed does not change them
_PUNCTUATION = re.compile(r"[^\w\s']|_")


class Split(NamedTuple):
  """One split: images `[N, H, W, 3]` uint8 or features `[N, R, D]`, and their captions."""
  ids: list                    # image ids, as COCO files name them
  captions: list               # N lists of reference captions (raw strings)
  images: np.ndarray | None    # [N, H, W, 3] uint8
  features: np.ndarray | None  # [N, R, D] float32
  objects: list | None         # scenes only: N tuples of `scenes.SceneObject`

  @property
  def inputs(self) -> np.ndarray:
    return self.images if self.images is not None else self.features

  def __len__(self) -> int:
    return len(self.captions)


class Corpus(NamedTuple):
  train: Split
  valid: Split
  test: Split


def tokenize(caption: str) -> list[str]:
  """Lower-cased words without punctuation: "A dog, running." -> ["a", "dog", "running"]."""
  return _PUNCTUATION.sub(" ", caption.lower()).split()


class Vocabulary:
  """Words <-> ids; ids 0-3 are `SPECIALS` (pad, end, start, unknown)."""

  def __init__(self, words: list[str]):
    self.words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, captions: list[list[str]], min_count: int = 1) -> "Vocabulary":
    counts = collections.Counter(w for refs in captions for c in refs for w in tokenize(c))
    return cls(sorted(w for w, n in counts.items() if n >= min_count))

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, caption: str, max_len: int) -> list[int]:
    """Word ids, cut to `max_len` words, then EOS."""
    return [self.index.get(w, UNK) for w in tokenize(caption)[:max_len]] + [EOS]

  def decode(self, ids) -> str:
    """Ids up to the first EOS (or PAD) as a caption."""
    words = []
    for i in ids:
      i = int(i)
      if i in (EOS, PAD):
        break
      words.append(self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK])
    return " ".join(words)

  def save(self, path: str) -> None:
    from rnn_jax.training.workdir import atomic_write
    atomic_write(path, json.dumps(self.words[len(SPECIALS):]) + "\n")

  @classmethod
  def load(cls, path: str) -> "Vocabulary":
    with open(path) as f:
      return cls(json.load(f))


def vocabulary_for(workdir: str, corpus: Corpus, min_count: int) -> Vocabulary:
  """The workdir's vocabulary (built from the training captions on the first run)."""
  path = os.path.join(workdir, "vocab.json")
  if os.path.exists(path):
    return Vocabulary.load(path)
  vocab = Vocabulary.build(corpus.train.captions, min_count)
  vocab.save(path)
  return vocab


def _limit(n: int, total: int) -> int:
  return total if n <= 0 else min(n, total)


def _scenes(config) -> Corpus:
  from experiments.vision import scenes
  digits = None
  if config.scenes == "digits":
    try:
      digits = scenes.load_digits(config.data_dir)
    except FileNotFoundError as e:
      raise UserError(str(e)) from None
  elif config.scenes != "shapes":
    raise UserError(f"--scenes: expected shapes or digits, got {config.scenes!r}")
  out = []
  for split, n in (("train", config.train_images), ("valid", config.valid_images),
                   ("test", config.test_images)):
    if n <= 0:
      raise UserError(f"--{split}_images: scenes need a positive number, got {n}")
    try:
      s = scenes.make_split(split, n, seed=SCENES_SEED, kind=config.scenes, digits=digits,
                            max_objects=config.scenes_max_objects)
    except ValueError as e:
      raise UserError(f"--scenes_max_objects: {e}") from None
    out.append(Split([int(i) for i in s.ids], [list(c) for c in s.captions], s.images, None,
                     list(s.objects)))
  return Corpus(*out)


def _real(config) -> Corpus:
  from experiments.captioning import corpora
  kw = dict(image_dir=config.image_dir or None, feature_dir=config.features_dir or None,
            image_size=config.image_size)
  if not (config.image_dir or config.features_dir) and config.corpus != "coco":
    raise UserError(f"--corpus={config.corpus} needs --image_dir or --features_dir")
  out = []
  for split, n in (("train", config.train_images), ("valid", config.valid_images),
                   ("test", config.test_images)):
    limit = n if n > 0 else None
    if config.corpus == "flickr8k":
      s = corpora.flickr8k(data_path(config, "flickr8k"), split, limit=limit, **kw)
    elif config.corpus == "karpathy":
      if not config.karpathy_json:
        raise UserError("--corpus=karpathy needs --karpathy_json")
      s = corpora.karpathy_json(config.karpathy_json, {"valid": "val"}.get(split, split),
                                limit=limit, **kw)
    else:
      s = corpora.tfds_coco({"valid": "val"}.get(split, split), data_dir=config.data_dir or None,
                            image_size=config.image_size, limit=limit)
    features = None if s.features is None else np.asarray(s.features, np.float32)
    out.append(Split(list(s.ids), [list(c) for c in s.captions], s.images, features, None))
  return Corpus(*out)


def load(config) -> Corpus:
  """The corpus of `--corpus`, cut to `--{train,valid,test}_images`."""
  if config.corpus == "scenes":
    return _scenes(config)
  if config.corpus in ("flickr8k", "karpathy", "coco"):
    return _real(config)
  raise UserError(f"--corpus: expected scenes, flickr8k, karpathy or coco, got {config.corpus!r}")


def pad(rows: list[list[int]], length: int) -> np.ndarray:
  out = np.full((len(rows), length), PAD, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r[:length]
  return out


class Batches:
  """`batches(step, process=(index, count))`: training batch `step` (module docstring)."""

  def __init__(self, split: Split, vocab: Vocabulary, batch_size: int, max_len: int,
               seed: int):
    self.split, self.batch_size, self.seed = split, batch_size, seed
    self.U = max_len + 1  # words and EOS
    pairs = [(i, vocab.encode(c, max_len)) for i, refs in enumerate(split.captions)
             for c in refs]
    if not pairs:
      raise UserError("the training split has no captions")
    self.image_of = np.array([i for i, _ in pairs], np.int32)  # [P]
    self.targets = pad([ids for _, ids in pairs], self.U)       # [P, U]
    self.lengths = np.array([len(ids) for _, ids in pairs], np.int32)

  def __len__(self) -> int:
    return len(self.image_of)

  def rows(self, step: int) -> np.ndarray:
    """The pair indices of batch `step`: positions step * B ... of the epoch-wise stream."""
    P, B = len(self), self.batch_size
    pos = np.arange(step * B, (step + 1) * B)
    out = np.empty(B, np.int64)
    for epoch in np.unique(pos // P):
      order = np.random.default_rng([self.seed, int(epoch)]).permutation(P)
      here = pos // P == epoch
      out[here] = order[pos[here] % P]
    return out

  def __call__(self, step: int, process: tuple[int, int] = (0, 1)) -> dict:
    rows = self.rows(step)
    index, count = process
    B = self.batch_size
    rows = rows[index * B // count:(index + 1) * B // count]
    images = self.image_of[rows]
    return {"inputs": self.split.inputs[images], "targets": self.targets[rows],
            "target_lengths": self.lengths[rows], "image_index": images}
