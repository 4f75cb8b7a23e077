"""Procedural scenes with true captions: the data of the captioning and VQA experiments.

A scene is a 64x64 RGB image on a dark, slightly noisy background holding 1 to
`MAX_OBJECTS` objects that do not overlap (boxes at least `GAP` pixels apart), each with a
name, a colour of `COLOURS`, a size of `SIZES` (small: 10-14 px, large: 18-24 px) and a
position. Two kinds:

* "shapes": filled circles, squares and upward triangles (`SHAPES`) of flat colour.
* "digits": MNIST digits ("0".."9") cropped to their ink, resized so the height is the
  size, and tinted with the colour. Train scenes draw from MNIST's training images, valid
  scenes from its even-numbered test images and test scenes from the odd-numbered ones,
  so no digit image is shared between splits. `load_digits(data_dir)` reads
  `data_dir/mnist/mnist.npz`.

Determinism and splits. `scene(seed, split, index, kind=...)` is a pure function of its
arguments: its objects and noise come from `np.random.default_rng([seed, split, index,
kind, 0])` and its captions from the stream ending in 1, so changing how captions are
written never changes an image. `make_split(split, n)` stacks scenes 0..n-1, so a smaller
split is a prefix of a larger one. Splits never share a scene: a scene's object list is
redrawn until a hash of it, modulo 3, is its split's index (`SPLITS`), so the three
splits' object lists are disjoint for any seed. Image ids are `split index * ID_STRIDE +
index`, unique across splits.

Captions. Each image has `CAPTIONS_PER_IMAGE` (5) distinct reference captions from a small
grammar (lowercase, single spaces, no punctuation, at most 16 words, `VOCAB_WORDS`: 39
words for shapes, 61 with the digits): inventories ("two red circles and a blue square"),
counts ("there are three objects"), descriptions ("a small green triangle"), relations
("a red circle above a blue square", "a small red 3 to the left of a large blue 7") and a
count with a relation. A relation is stated only when it is clear (`relation`) and only
between objects that the words single out. The grammar, its meaning and the writer live
in `scene_captions.py`.

The checker. `check_caption(caption, objects)` parses a caption by the grammar (written
independently of the writer's random choices) and recomputes every claim -- counts,
colours, sizes, relations -- from the object list, returning the false ones ([] for a
true caption). `noun_objects(tokens, objects)` says which objects each noun of a caption
names, for scoring where the captioner looked when it wrote the noun; it works on model
output, ungrammatical or false captions included.

What the VQA experiment can reuse: `scene`/`make_split` for images, object lists and ids
(questions can be generated from `Scenes.objects`), `relation(a, b)` for spatial answers,
`matches(obj, noun, size, colour)` and the vocabulary tables (`SHAPES`, `DIGITS`,
`COLOURS`, `SIZES`, `NUMBER_WORDS`, `RELATION_WORDS`) for question words and counting
answers, and `check_caption` for any generated statement.

Speed: 10,000 scenes with their captions take about 4 s of one core for shapes and 5 s for
digits (123 MB of images).
"""

from __future__ import annotations

import os
import zlib
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from experiments.vision.scene_captions import (CAPTIONS_PER_IMAGE, COLOURS, DIGITS,
                                               MAX_WORDS, NUMBER_WORDS, RELATION_WORDS,
                                               SHAPES, SIZES, VOCAB_WORDS, CaptionError,
                                               SceneObject, check_caption, matches,
                                               noun_objects, parse_caption, relation,
                                               write_captions)

__all__ = [
    "CAPTIONS_PER_IMAGE", "COLOURS", "COLOUR_RGB", "DIGITS", "GAP", "ID_STRIDE", "IMAGE_SIZE",
    "KINDS", "MAX_OBJECTS", "MAX_WORDS", "NUMBER_WORDS", "RELATION_WORDS", "SHAPES", "SIZES",
    "SIZE_PIXELS", "SPLITS", "VOCAB_WORDS", "CaptionError", "Digits", "SceneObject", "Scenes",
    "check_caption", "load_digits", "make_split", "matches", "noun_objects", "parse_caption",
    "relation", "scene", "write_captions",
]

IMAGE_SIZE = 64
SPLITS = ("train", "valid", "test")
KINDS = ("shapes", "digits")
MAX_OBJECTS = 4
COLOUR_RGB = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 100, 255),
              "yellow": (240, 220, 40), "purple": (170, 60, 230), "white": (240, 240, 240)}
SIZE_PIXELS = {"small": (10, 14), "large": (18, 24)}  # height range in pixels, inclusive
BACKGROUND_MAX = 24  # background pixels are uniform in [0, BACKGROUND_MAX] per channel
BORDER = 1  # free pixels between an object and the image's edge
GAP = 2  # free pixels between two objects' boxes, at least
ID_STRIDE = 10_000_000  # image id = SPLITS.index(split) * ID_STRIDE + index


class Scenes(NamedTuple):
  """A split of scenes.

  Attributes:
    images: [N, 64, 64, 3] uint8.
    objects: N tuples of `SceneObject`.
    captions: N lists of 5 reference captions.
    ids: [N] int64 image ids, unique across splits.
  """
  images: np.ndarray
  objects: list
  captions: list
  ids: np.ndarray


class Digits(NamedTuple):
  """MNIST as `load_digits` reads it: [60000, 28, 28] / [10000, 28, 28] uint8 and labels."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def load_digits(data_dir: str | os.PathLike | None) -> Digits:
  """MNIST from `data_dir/mnist/mnist.npz` (keys x_train, y_train, x_test, y_test).

  Raises:
    FileNotFoundError: when the file is missing, naming the path.
  """
  path = os.path.join(data_dir or "", "mnist", "mnist.npz")
  if not data_dir or not os.path.isfile(path):
    raise FileNotFoundError(
        f"{path} not found: --scenes=digits needs MNIST there; set RNN_JAX_DATA or "
        f"--data_dir to the data root that holds mnist/mnist.npz (data_dir={data_dir!r})")
  with np.load(path) as f:
    return Digits(f["x_train"], f["y_train"], f["x_test"], f["y_test"])


def _digit_pool(digits: Digits, split: str) -> tuple[np.ndarray, np.ndarray]:
  """The MNIST images [M, 28, 28] and labels [M] a split draws from (disjoint across splits)."""
  if split == "train":
    return digits.train_images, digits.train_labels
  # Alternate rather than halve: the shared mnist.npz is sorted by label.
  part = slice(0, None, 2) if split == "valid" else slice(1, None, 2)
  return digits.test_images[part], digits.test_labels[part]


def _ink(digit: np.ndarray) -> np.ndarray:
  """A [28, 28] digit cropped to the rows and columns that hold ink."""
  rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
  return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
  """Whether boxes a and b come closer than `GAP` pixels."""
  return (a[0] < b[2] + GAP and b[0] < a[2] + GAP and a[1] < b[3] + GAP and b[1] < a[3] + GAP)


def _place(rng: np.random.Generator, width: int, height: int,
           boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
  """A box of that size at a random position clear of `boxes`, or None after 30 tries."""
  for _ in range(30):
    x0 = int(rng.integers(BORDER, IMAGE_SIZE - BORDER - width + 1))
    y0 = int(rng.integers(BORDER, IMAGE_SIZE - BORDER - height + 1))
    box = (x0, y0, x0 + width, y0 + height)
    if not any(_overlaps(box, b) for b in boxes):
      return box
  return None


def _sample_objects(rng: np.random.Generator, kind: str, pool: tuple | None,
                    max_objects: int = MAX_OBJECTS,
                    ) -> tuple[tuple[SceneObject, ...], list[np.ndarray | None]]:
  """The objects of one scene and, for digits, each one's inked MNIST crop."""
  while True:  # a scene whose objects do not fit is redrawn whole
    n = int(rng.integers(1, max_objects + 1))
    objects, crops = [], []
    for _ in range(n):
      colour = COLOURS[rng.integers(len(COLOURS))]
      size = SIZES[rng.integers(len(SIZES))]
      height = int(rng.integers(SIZE_PIXELS[size][0], SIZE_PIXELS[size][1] + 1))
      if kind == "shapes":
        name, crop, width = SHAPES[rng.integers(len(SHAPES))], None, height
      else:
        k = int(rng.integers(len(pool[0])))
        name, crop = str(int(pool[1][k])), _ink(pool[0][k])
        width = max(1, min(height, round(height * crop.shape[1] / crop.shape[0])))
      box = _place(rng, width, height, [o.box for o in objects])
      if box is None:
        break
      objects.append(SceneObject(name, colour, size, box))
      crops.append(crop)
    else:
      return tuple(objects), crops


def _fingerprint(objects: Sequence[SceneObject]) -> int:
  return zlib.crc32(repr(tuple(objects)).encode())


def _shape_mask(name: str, width: int, height: int) -> np.ndarray:
  """[height, width] bool: a filled circle, square or upward triangle filling its box."""
  u = (np.arange(width) + 0.5)[None, :] / width  # pixel centres in (0, 1)
  if name == "square":
    return np.ones((height, width), bool)
  if name == "circle":
    v = (np.arange(height) + 0.5)[:, None] / height
    return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
  # Triangle: apex at the top centre, base along the bottom row; row r spans half-width
  # (r + 1) / (2 height), so the top row holds the one or two centre pixels.
  v = (np.arange(height) + 1.0)[:, None] / height
  return np.abs(u - 0.5) <= v / 2 + 1e-9


def _draw(rng: np.random.Generator, objects: Sequence[SceneObject],
          crops: Sequence[np.ndarray | None]) -> np.ndarray:
  """[64, 64, 3] uint8: the background noise, then each object."""
  image = rng.integers(0, BACKGROUND_MAX + 1, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
  for obj, crop in zip(objects, crops):
    x0, y0, x1, y1 = obj.box
    rgb = np.array(COLOUR_RGB[obj.colour], np.float32)
    region = image[y0:y1, x0:x1]  # a view: [h, w, 3]
    if crop is None:
      region[_shape_mask(obj.name, x1 - x0, y1 - y0)] = rgb.astype(np.uint8)
    else:
      ink = np.asarray(Image.fromarray(crop).resize((x1 - x0, y1 - y0), Image.BILINEAR))
      # Shrinking fades thin strokes (a small "1"): stretch so the strongest ink is opaque.
      alpha = (ink.astype(np.float32) / max(int(ink.max()), 1))[..., None]  # [h, w, 1]
      region[...] = np.round(region * (1.0 - alpha) + rgb * alpha).astype(np.uint8)
  return image


def _check_args(split: str, kind: str, digits: Digits | None,
                max_objects: int = MAX_OBJECTS) -> None:
  if not 1 <= max_objects <= MAX_OBJECTS:
    raise ValueError(f"max_objects={max_objects}: expected 1..{MAX_OBJECTS}")
  if split not in SPLITS:
    raise ValueError(f"split={split!r}: expected one of {SPLITS}")
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
  if kind == "digits" and digits is None:
    raise ValueError("kind='digits' needs digits=load_digits(data_dir)")


def scene(seed: int, split: str, index: int, *, kind: str = "shapes",
          digits: Digits | None = None, max_objects: int = MAX_OBJECTS,
          ) -> tuple[np.ndarray, tuple[SceneObject, ...], list[str]]:
  """Scene `index` of `split` for run `seed`: a pure function of its arguments.

  Args:
    seed: the run's seed (a non-negative int).
    split: "train", "valid" or "test".
    index: the scene's position in its split (non-negative).
    kind: "shapes" or "digits".
    digits: `load_digits(...)`, needed for the digits kind.
    max_objects: scenes hold 1 to this many objects (easier scenes for quick checks; the
      default `MAX_OBJECTS` draws exactly what it always did).

  Returns:
    (image [64, 64, 3] uint8, objects: a tuple of `SceneObject`, captions: 5 distinct str).
  """
  _check_args(split, kind, digits, max_objects)
  key = [seed, SPLITS.index(split), index, KINDS.index(kind)]
  rng = np.random.default_rng(key + [0])
  pool = _digit_pool(digits, split) if kind == "digits" else None
  while True:
    objects, crops = _sample_objects(rng, kind, pool, max_objects)
    if _fingerprint(objects) % len(SPLITS) == SPLITS.index(split):
      break
  image = _draw(rng, objects, crops)
  captions = write_captions(objects, np.random.default_rng(key + [1]))
  return image, objects, captions


def make_split(split: str, num_images: int, *, seed: int = 0, kind: str = "shapes",
               digits: Digits | None = None, max_objects: int = MAX_OBJECTS) -> Scenes:
  """Scenes 0..num_images-1 of `split`; image i depends only on (seed, split, i, kind,
  max_objects).

  Returns:
    `Scenes` with images [N, 64, 64, 3] uint8 and ids [N].
  """
  _check_args(split, kind, digits, max_objects)
  if not 0 <= num_images <= ID_STRIDE:
    raise ValueError(f"num_images={num_images}: expected 0..{ID_STRIDE}")
  images = np.zeros((num_images, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  objects, captions = [], []
  for i in range(num_images):
    images[i], objs, caps = scene(seed, split, i, kind=kind, digits=digits,
                                  max_objects=max_objects)
    objects.append(objs)
    captions.append(caps)
  ids = SPLITS.index(split) * ID_STRIDE + np.arange(num_images, dtype=np.int64)
  return Scenes(images, objects, captions, ids)
