"""experiments.vision.scenes: determinism, splits, images true of their objects, captions
true of their images (and false ones caught), the caption parser and `noun_objects`.

The digits kind needs `$RNN_JAX_DATA/mnist/mnist.npz` and is skipped without it.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from experiments.vision import scenes
from experiments.vision.scenes import SceneObject, check_caption, noun_objects

NUM_CHECKED = 300  # scenes per kind whose captions are checked


def _mnist_path() -> str:
  return os.path.join(os.environ.get("RNN_JAX_DATA", ""), "mnist", "mnist.npz")


@pytest.fixture(scope="module")
def digits():
  if not os.environ.get("RNN_JAX_DATA") or not os.path.isfile(_mnist_path()):
    pytest.skip(f"{_mnist_path()} absent: set RNN_JAX_DATA to the data root")
  return scenes.load_digits(os.environ["RNN_JAX_DATA"])


@pytest.fixture(scope="module")
def shapes_split():
  return scenes.make_split("train", NUM_CHECKED, seed=3)


@pytest.fixture(scope="module")
def digits_split(digits):
  return scenes.make_split("valid", NUM_CHECKED, seed=3, kind="digits", digits=digits)


def _split(request, kind):
  return request.getfixturevalue("shapes_split" if kind == "shapes" else "digits_split")


# ----------------------------------------------------------------------------- determinism, splits

def _assert_same(a: scenes.Scenes, b: scenes.Scenes):
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.ids, b.ids)
  assert a.objects == b.objects and a.captions == b.captions


def test_scene_is_a_pure_function_of_its_arguments():
  image, objects, captions = scenes.scene(5, "valid", 17)
  image2, objects2, captions2 = scenes.scene(5, "valid", 17)
  np.testing.assert_array_equal(image, image2)
  assert objects == objects2 and captions == captions2
  assert image.shape == (64, 64, 3) and image.dtype == np.uint8
  assert isinstance(objects, tuple) and all(isinstance(o, SceneObject) for o in objects)
  # Another seed, split or index gives another scene.
  for other in (scenes.scene(6, "valid", 17), scenes.scene(5, "test", 17),
                scenes.scene(5, "valid", 18)):
    assert not np.array_equal(other[0], image)


def test_make_split_is_deterministic_and_a_smaller_split_is_a_prefix():
  big = scenes.make_split("train", 12, seed=1)
  _assert_same(big, scenes.make_split("train", 12, seed=1))
  small = scenes.make_split("train", 5, seed=1)
  _assert_same(small, scenes.Scenes(big.images[:5], big.objects[:5], big.captions[:5],
                                    big.ids[:5]))
  assert big.images.shape == (12, 64, 64, 3) and big.images.dtype == np.uint8
  assert big.ids.shape == (12,) and len(big.objects) == len(big.captions) == 12
  other = scenes.make_split("train", 12, seed=2)
  assert not np.array_equal(other.images, big.images) and other.captions != big.captions
  assert scenes.make_split("test", 0).images.shape == (0, 64, 64, 3)


def test_splits_have_unique_ids_and_share_no_scene():
  splits = {s: scenes.make_split(s, 200, seed=0) for s in scenes.SPLITS}
  ids = np.concatenate([s.ids for s in splits.values()])
  assert len(np.unique(ids)) == len(ids) == 600
  objects = {name: set(s.objects) for name, s in splits.items()}
  assert not objects["train"] & objects["valid"]
  assert not objects["train"] & objects["test"]
  assert not objects["valid"] & objects["test"]
  # Other seeds too: the split is part of every scene's object list, not of its seed.
  for seed in (1, 2):
    a, b = scenes.make_split("valid", 200, seed=seed), scenes.make_split("test", 200, seed=seed)
    assert not set(a.objects) & set(b.objects)


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="split"):
    scenes.scene(0, "validation", 0)
  with pytest.raises(ValueError, match="kind"):
    scenes.make_split("train", 2, kind="letters")
  with pytest.raises(ValueError, match="load_digits"):
    scenes.scene(0, "train", 0, kind="digits")
  for bad in (0, scenes.MAX_OBJECTS + 1):
    with pytest.raises(ValueError, match="max_objects"):
      scenes.make_split("train", 2, max_objects=bad)


def test_max_objects_bounds_the_scenes_and_its_default_changes_nothing():
  easy = scenes.make_split("train", 60, max_objects=1)
  assert all(len(objects) == 1 for objects in easy.objects)
  two = scenes.make_split("valid", 60, max_objects=2)
  assert {len(objects) for objects in two.objects} == {1, 2}
  for objects, captions in zip(two.objects, two.captions):
    assert all(scenes.check_caption(c, objects) == [] for c in captions)
  default, explicit = scenes.make_split("test", 8), scenes.make_split(
      "test", 8, max_objects=scenes.MAX_OBJECTS)
  np.testing.assert_array_equal(default.images, explicit.images)
  assert default.captions == explicit.captions


def test_load_digits_names_the_missing_path(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    scenes.load_digits(tmp_path)
  message = str(e.value)
  assert str(tmp_path / "mnist" / "mnist.npz") in message
  assert "--scenes=digits" in message and "RNN_JAX_DATA" in message and "--data_dir" in message
  with pytest.raises(FileNotFoundError, match="RNN_JAX_DATA"):
    scenes.load_digits("")


# ----------------------------------------------------------------------------- images

def _boxes_mask(objects) -> np.ndarray:
  mask = np.zeros((64, 64), bool)
  for x0, y0, x1, y1 in (o.box for o in objects):
    mask[y0:y1, x0:x1] = True
  return mask


@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_objects_fit_and_do_not_overlap(kind, request):
  data = _split(request, kind)
  counts = [len(objs) for objs in data.objects]
  assert min(counts) == 1 and max(counts) == scenes.MAX_OBJECTS
  for objs in data.objects:
    for o in objs:
      x0, y0, x1, y1 = o.box
      assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64, o
      assert all(isinstance(v, int) for v in o.box)
      lo, hi = scenes.SIZE_PIXELS[o.size]
      assert lo <= y1 - y0 <= hi, o  # the size is the height
      assert o.colour in scenes.COLOURS and o.size in scenes.SIZES
      assert o.name in (scenes.SHAPES if kind == "shapes" else scenes.DIGITS)
    for i, a in enumerate(objs):
      for b in objs[i + 1:]:  # apart by at least GAP pixels along some axis
        assert (a.box[2] + scenes.GAP <= b.box[0] or b.box[2] + scenes.GAP <= a.box[0]
                or a.box[3] + scenes.GAP <= b.box[1] or b.box[3] + scenes.GAP <= a.box[1]), (a, b)


def test_shape_images_are_true_of_their_objects(shapes_split):
  names = set()
  for image, objs in zip(shapes_split.images, shapes_split.objects):
    outside = ~_boxes_mask(objs)
    assert image[outside].max() <= scenes.BACKGROUND_MAX  # background: dark noise
    for o in objs:
      names.add(o.name)
      x0, y0, x1, y1 = o.box
      rgb = np.array(scenes.COLOUR_RGB[o.colour], np.uint8)
      w, h = x1 - x0, y1 - y0
      assert w == h  # shapes have square boxes
      # The centre (circle, square) or centroid (triangle, 2/3 of the way down) has the colour.
      cy = y0 + (2 * h // 3 if o.name == "triangle" else h // 2)
      np.testing.assert_array_equal(image[cy, x0 + w // 2], rgb, err_msg=str(o))
      # The box is tight: the object touches each of its four sides.
      coloured = np.all(image[y0:y1, x0:x1] == rgb, axis=-1)  # [h, w]
      assert coloured[0].any() and coloured[-1].any(), o
      assert coloured[:, 0].any() and coloured[:, -1].any(), o
      # Filled area against the shape's: 1, pi/4, 1/2 of the box.
      share = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}[o.name]
      assert coloured.mean() == pytest.approx(share, abs=0.12), o
      # A square's corners are coloured, a circle's and a triangle's top corners are not.
      corner = coloured[0, 0]
      assert corner == (o.name == "square"), o
  assert names == set(scenes.SHAPES)


def test_background_has_noise_but_stays_dark():
  image, _, _ = scenes.scene(0, "train", 0)
  assert len(np.unique(image[:1, :].reshape(-1, 3), axis=0)) > 1


def test_digit_images_are_true_of_their_objects(digits_split):
  labels = set()
  for image, objs in zip(digits_split.images, digits_split.objects):
    assert image[~_boxes_mask(objs)].max() <= scenes.BACKGROUND_MAX
    for o in objs:
      labels.add(o.name)
      x0, y0, x1, y1 = o.box
      rgb = np.array(scenes.COLOUR_RGB[o.colour], np.int32)
      region = image[y0:y1, x0:x1].astype(np.int32)  # [h, w, 3]
      # The ink's strongest pixel has exactly the colour.
      assert np.all(region == rgb, axis=-1).any(), o
      assert x1 - x0 <= y1 - y0  # digits are no wider than tall
  assert labels == set(scenes.DIGITS)


def test_digit_splits_draw_from_disjoint_mnist_images(digits):
  pools = {s: scenes._digit_pool(digits, s) for s in scenes.SPLITS}
  assert len(pools["train"][0]) == 60000 and len(pools["valid"][0]) == len(pools["test"][0])
  for split in ("valid", "test"):  # every label in both halves of the (sorted) test set
    assert set(np.unique(pools[split][1])) == set(range(10))
  assert np.shares_memory(pools["valid"][0], digits.test_images)
  assert not np.shares_memory(pools["train"][0], digits.test_images)


# ----------------------------------------------------------------------------- captions

@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_reference_captions_are_well_formed_and_true(kind, request):
  data = _split(request, kind)
  words = set()
  for objs, caps in zip(data.objects, data.captions):
    assert len(caps) == 5 and len(set(caps)) == 5, caps
    for c in caps:
      assert re.fullmatch(r"[a-z0-9]+( [a-z0-9]+)*", c), c
      assert len(c.split()) <= scenes.MAX_WORDS, c
      assert check_caption(c, objs) == [], (c, objs, check_caption(c, objs))
      words.update(c.split())
  assert words <= set(scenes.VOCAB_WORDS)
  # Every relation and every kind of caption appears.
  text = "\n".join(c for caps in data.captions for c in caps)
  for phrase in ("above", "below", "to the left of", "to the right of", "there are",
                 "there is", " and ", " with ", "a picture of", "one ", "two ", "three ",
                 "four ", "small", "large"):
    assert phrase in text, phrase


def test_vocabulary_is_small():
  shapes_words = [w for w in scenes.VOCAB_WORDS if not re.match(r"\d|digit", w)]
  assert len(shapes_words) == 39 and len(scenes.VOCAB_WORDS) == 61
  assert len(set(scenes.VOCAB_WORDS)) == len(scenes.VOCAB_WORDS)


@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_relations_only_between_objects_the_words_single_out(kind, request):
  data = _split(request, kind)
  relations = 0
  for objs, caps in zip(data.objects, data.captions):
    for c in caps:
      for clause in scenes.parse_caption(c):
        if clause.relation is None:
          continue
        relations += 1
        for np_ in (clause.subject, clause.object_):
          assert np_.count is None  # "a", "an"
          matched = [o for o in objs if scenes.matches(o, np_.noun, np_.size, np_.colour)]
          assert len(matched) == 1, (c, objs)
  assert relations > NUM_CHECKED // 2


def _perturbations(caption: str, objects):
  """(kind, caption) with one claim made false: a colour, a relation or a count changed."""
  words = caption.split()
  present = {o.colour for o in objects}
  absent = [c for c in scenes.COLOURS if c not in present]
  flips = {"above": "below", "below": "above", "left": "right", "right": "left"}
  numbers = scenes.NUMBER_WORDS
  for i, w in enumerate(words):
    if w in scenes.COLOURS and absent:
      yield "colour", " ".join(words[:i] + [absent[i % len(absent)]] + words[i + 1:])
    if w in flips:
      yield "relation", " ".join(words[:i] + [flips[w]] + words[i + 1:])
    if w in numbers:
      other = numbers[(numbers.index(w) + 1 + i % 3) % len(numbers)]
      yield "count", " ".join(words[:i] + [other] + words[i + 1:])


@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_perturbed_captions_are_caught(kind, request):
  data = _split(request, kind)
  seen = {"colour": 0, "relation": 0, "count": 0}
  for objs, caps in zip(data.objects, data.captions):
    for c in caps:
      for what, wrong in _perturbations(c, objs):
        seen[what] += 1
        assert check_caption(wrong, objs), (what, c, wrong, objs)
  assert min(seen.values()) > 50, seen


def test_relation_is_clear_and_antisymmetric():
  def at(x, y, s=10):
    return SceneObject("square", "red", "small", (x, y, x + s, y + s))
  a = at(5, 5)
  assert scenes.relation(a, at(5, 30)) == "above"
  assert scenes.relation(at(5, 30), a) == "below"
  assert scenes.relation(a, at(30, 8)) == "left"
  assert scenes.relation(at(30, 8), a) == "right"
  assert scenes.relation(a, at(30, 30)) is None  # on the diagonal: neither axis dominates
  assert scenes.relation(a, at(25, 18)) == "left"  # centres 20 right, 13 down: 20 >= 1.5 * 13
  assert scenes.relation(a, at(25, 19)) is None  # 20 right, 14 down: 20 < 1.5 * 14
  assert scenes.relation(a, at(8, 12)) is None  # boxes not apart along y
  opposite = {"above": "below", "below": "above", "left": "right", "right": "left", None: None}
  rng = np.random.default_rng(0)
  for _ in range(500):
    x, y = rng.integers(0, 54, 4), rng.integers(0, 54, 4)
    p, q = at(x[0], y[0]), at(x[1], y[1])
    assert scenes.relation(q, p) == opposite[scenes.relation(p, q)]


# The hand-built scene of the checker's and noun_objects' tests (x the column, y the row):
#   0 small red circle, top left;   1 large blue circle, top right;
#   2 large red square, bottom left; 3 small red circle, bottom right.
HAND = (SceneObject("circle", "red", "small", (2, 2, 12, 12)),
        SceneObject("circle", "blue", "large", (40, 2, 60, 22)),
        SceneObject("square", "red", "large", (2, 40, 22, 60)),
        SceneObject("circle", "red", "small", (50, 50, 60, 60)))


@pytest.mark.parametrize("caption, false", [
    ("two red circles and a blue circle", []),
    ("there are four objects with a large red square below a small red circle", []),
    ("a picture of three circles", []),
    ("an image with one square", []),
    ("a small red circle to the left of a large blue circle", []),
    ("a large blue circle to the right of a small red circle", []),
    ("a circle above two squares", ["'two squares': there are 1"]),
    ("three red objects and two large shapes", []),
    ("a red square above a red circle", ["'a red square above a red circle': not so"]),
    ("a green triangle", ["'a green triangle': there is none"]),
    ("one red circle", ["'one red circle': there are 2"]),
    ("a blue circle below a blue circle", ["'a blue circle below a blue circle': not so"]),
    ("two circles above a square",  # there are three, and not every one is above it
     ["'two circles': there are 3", "'two circles above a square': not so"]),
    ("there are two digits", ["'two digits': there are 0"]),
    ("a red circle a blue circle", ["not in the grammar: expected 'and', 'with' or a relation "
                                    "at word 4, got 'a'"]),
    ("red circle", ["not in the grammar: expected 'a', 'an' or a number at word 1, got 'red'"]),
    ("a small large circle", ["not in the grammar: two sizes in one noun phrase at word 3"]),
    ("a picture of", ["not in the grammar: empty caption"]),
    ("", ["not in the grammar: empty caption"]),
    ("a circle above", ["not in the grammar: a noun phrase is missing at the end"]),
])
def test_check_caption_on_hand_built_captions(caption, false):
  assert check_caption(caption, HAND) == false


def test_relation_claims_over_plurals():
  # Both small red circles vs the large red square: the top-left one is above it.
  assert check_caption("a small red circle above a large red square", HAND) == []
  assert check_caption("two small red circles above a large red square", HAND) == [
      "'two small red circles above a large red square': not so"]
  assert check_caption("a large red square to the left of two small red circles", HAND) == [
      "'a large red square to the left of two small red circles': not so"]
  # Upper-case and extra spaces are read as the words they are.
  assert check_caption("A  small red circle   above a large red square", HAND) == []


def test_noun_objects_on_hand_built_captions():
  assert noun_objects("a blue circle", HAND) == [(2, (1,))]
  assert noun_objects("two small red circles", HAND) == [(3, (0, 3))]  # a plural: all
  assert noun_objects("a circle", HAND) == [(1, (0, 1, 3))]  # a singular matched by three
  assert noun_objects("a large red square", HAND) == [(3, (2,))]
  # The relation singles out the red circle above the square.
  assert noun_objects("a red circle above a large square", HAND) == [(2, (0,)), (6, (2,))]
  assert noun_objects("a red circle below a blue circle".split(), HAND) == [(2, (3,)), (6, (1,))]
  # No red circle is to the right of the blue one: the relation narrows nothing.
  assert noun_objects("a red circle to the right of a blue circle", HAND) == [
      (2, (0, 3)), (9, (1,))]
  # Unresolvable nouns are left out; generic nouns name nothing.
  assert noun_objects("a green triangle and a blue circle", HAND) == [(6, (1,))]
  assert noun_objects("there are four objects", HAND) == []
  # Model output: ungrammatical or false captions still give the nouns that resolve.
  assert noun_objects("circle red red square <eos>", HAND) == [(0, (0, 1, 3)), (3, (2,))]
  assert noun_objects("a blue square above a blue circle", HAND) == [(6, (1,))]
  assert noun_objects([], HAND) == []


def test_noun_objects_on_digits():
  objects = (SceneObject("3", "red", "small", (2, 20, 10, 32)),
             SceneObject("7", "blue", "large", (30, 14, 44, 36)),
             SceneObject("3", "white", "large", (40, 40, 52, 60)))
  caption = "a small red 3 to the left of a large blue 7"
  assert check_caption(caption, objects) == []
  assert noun_objects(caption, objects) == [(3, (0,)), (11, (1,))]
  assert noun_objects("two 3s and a 7", objects) == [(1, (0, 2)), (4, (1,))]
  assert noun_objects("a white 3 and an 8", objects) == [(2, (2,))]
  assert check_caption("two 3s and an 8", objects) == ["'an 8': there is none"]


@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_noun_objects_on_reference_captions(kind, request):
  """Every shape word or digit of a reference caption names at least one object of its box,
  and in a relation exactly one."""
  data = _split(request, kind)
  for objs, caps in zip(data.objects[:100], data.captions[:100]):
    for c in caps:
      tokens = c.split()
      nouns = [i for i, w in enumerate(tokens) if w.rstrip("s") in scenes.SHAPES + scenes.DIGITS]
      found = noun_objects(tokens, objs)
      assert [pos for pos, _ in found] == nouns, (c, found)
      for pos, ks in found:
        assert all(objs[k].name == tokens[pos].rstrip("s") for k in ks)
      if any(w in c for w in ("above", "below", " left ", " right ")):
        clause = [cl for cl in scenes.parse_caption(c) if cl.relation][0]
        named = dict(found)
        assert len(named[clause.subject.noun_index]) == len(named[clause.object_.noun_index]) == 1
