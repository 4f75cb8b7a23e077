"""experiments.vision.scene_questions: determinism and prefixes, every generated question true
of its scene (checked by the independent parser), wrong answers and ill-posed questions
caught, hand-checked answers on a built scene, and the answer balance within each type.

The digits kind needs `$RNN_JAX_DATA/mnist/mnist.npz` and is skipped without it.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from experiments.vision import scene_questions as sq
from experiments.vision import scenes
from experiments.vision.scenes import SceneObject

NUM_CHECKED = 300  # scenes per kind whose questions are all checked
NUM_BALANCE = 1500  # scenes whose answers are counted


def _mnist_path() -> str:
  return os.path.join(os.environ.get("RNN_JAX_DATA", ""), "mnist", "mnist.npz")


@pytest.fixture(scope="module")
def digits():
  if not os.environ.get("RNN_JAX_DATA") or not os.path.isfile(_mnist_path()):
    pytest.skip(f"{_mnist_path()} absent: set RNN_JAX_DATA to the data root")
  return scenes.load_digits(os.environ["RNN_JAX_DATA"])


@pytest.fixture(scope="module")
def shapes_qa():
  return sq.make_qa_split("train", NUM_CHECKED, 6, seed=3)


@pytest.fixture(scope="module")
def digits_qa(digits):
  return sq.make_qa_split("valid", NUM_CHECKED, 6, seed=3, kind="digits", digits=digits)


def _qa(request, kind):
  return request.getfixturevalue("shapes_qa" if kind == "shapes" else "digits_qa")


def _flat(qa):
  return [(objs, q, a, t) for objs, qs, ans, ts in zip(qa.objects, qa.questions, qa.answers,
                                                       qa.types)
          for q, a, t in zip(qs, ans, ts)]


# ----------------------------------------------------------------------------- determinism

def test_questions_are_deterministic_and_a_prefix():
  a = sq.make_qa_split("test", 30, 4, seed=7)
  b = sq.make_qa_split("test", 30, 4, seed=7)
  assert (a.questions, a.answers, a.types, a.objects) == (b.questions, b.answers, b.types,
                                                          b.objects)
  np.testing.assert_array_equal(a.images, b.images)
  small = sq.make_qa_split("test", 12, 4, seed=7)
  assert small.questions == a.questions[:12] and small.answers == a.answers[:12]
  np.testing.assert_array_equal(small.ids, a.ids[:12])
  fewer = sq.make_qa_split("test", 30, 2, seed=7)  # the first questions do not depend on Q
  assert fewer.questions == [qs[:2] for qs in a.questions]
  assert sq.make_qa_split("test", 30, 4, seed=8).questions != a.questions
  # The questions' stream is apart from the image's: images and captions are make_split's.
  plain = scenes.make_split("test", 30, seed=7)
  np.testing.assert_array_equal(plain.images, a.images)
  assert plain.objects == a.objects
  objs = a.objects[5]
  one = sq.write_questions(objs, np.random.default_rng([1, 2]), 5)
  assert one == sq.write_questions(objs, np.random.default_rng([1, 2]), 5)
  assert len({q for q, _, _ in one}) == 5


def test_split_shapes_and_vocabulary(shapes_qa):
  qa = shapes_qa
  assert qa.images.shape == (NUM_CHECKED, 64, 64, 3) and qa.images.dtype == np.uint8
  assert len(qa.questions) == len(qa.answers) == len(qa.types) == NUM_CHECKED
  assert all(len(qs) == 6 == len(set(qs)) for qs in qa.questions)
  for _, q, a, t in _flat(qa):
    assert t in sq.QUESTION_TYPES and a in sq.answers_of_type(t, "shapes")
    assert a in sq.ANSWERS and " " not in a
    assert q == q.lower() and "  " not in q and "?" not in q
    assert set(q.split()) <= set(sq.QUESTION_WORDS), q
  assert {t for *_, t in _flat(qa)} == set(sq.QUESTION_TYPES)
  with pytest.raises(ValueError, match="questions_per_image=0"):
    sq.make_qa_split("train", 2, 0)


# ----------------------------------------------------------------------------- truth

@pytest.mark.parametrize("kind", ["shapes", "digits"])
def test_every_question_is_true_and_wrong_answers_are_caught(request, kind):
  qa = _qa(request, kind)
  for objs, q, a, t in _flat(qa):
    assert sq.check_question(q, a, objs) == [], (q, a, objs)
    assert sq.check_question(q + " ?", a, objs) == []
    assert sq.parse_question(q).qtype == t
    for wrong in sq.answers_of_type(t, kind):
      if wrong != a:
        problems = sq.check_question(q, wrong, objs)
        assert len(problems) == 1 and f"it is {a!r}" in problems[0], (q, wrong, problems)
  if kind == "digits":
    names = {a for _, q, a, t in _flat(qa) if t == "shape"}
    assert names <= set(scenes.DIGITS) and len(names) >= 8
    assert all(q.startswith("what digit") for _, q, _, t in _flat(qa) if t == "shape")


# A built scene (boxes x0, y0, x1, y1; centres in brackets): a small red circle at the top
# left (10, 10), a large blue square below it (14, 46), a small green triangle to its right
# (46, 10) and a small red square at the bottom right (50, 50), diagonal to the circle.
SCENE = (SceneObject("circle", "red", "small", (4, 4, 16, 16)),
         SceneObject("square", "blue", "large", (4, 36, 24, 56)),
         SceneObject("triangle", "green", "small", (40, 4, 52, 16)),
         SceneObject("square", "red", "small", (44, 44, 56, 56)))


@pytest.mark.parametrize("question, answer", [
    ("how many squares are there", "two"),
    ("how many red objects are there", "two"),
    ("how many small red squares are there", "one"),
    ("how many large triangles are there", "zero"),
    ("how many objects are there", "four"),
    ("what colour is the large object", "blue"),
    ("what color is the triangle", "green"),
    ("what colour is the small square", "red"),
    ("what shape is the blue object", "square"),
    ("what shape is the green small object", "triangle"),
    ("is there a large square", "yes"),
    ("is there a red triangle", "no"),
    ("is there an object", "yes"),
    ("is the circle above the large square", "yes"),
    ("is the large square above the circle", "no"),
    ("is the circle to the left of the triangle", "yes"),
    ("is the triangle to the right of the circle", "yes"),
    ("is the triangle below the circle", "no"),
    ("is the large square to the left of the small red square", "yes"),
    ("what shape is to the right of the large square", "square"),
])
def test_hand_checked_answers(question, answer):
  assert sq.answer_question(question, SCENE) == (answer, [])
  assert sq.check_question(question, answer, SCENE) == []


# Three objects in an L: the square below the circle, the triangle to its right.
CORNER = SCENE[:3]


@pytest.mark.parametrize("question, answer", [
    ("what shape is below the circle", "square"),
    ("what shape is to the right of the circle", "triangle"),
    ("what shape is to the left of the triangle", "circle"),  # the square is 48 deg away
    ("what shape is above the square", None),  # the circle, and the triangle at 42 deg
])
def test_name_of_what_is_there(question, answer):
  assert sq.answer_question(question, CORNER)[0] == answer


@pytest.mark.parametrize("question, problem", [
    ("how many circle are there", "expected a plural noun"),
    ("how many red red circles are there", "two colours"),
    ("what colour is a circle", "expected 'the'"),
    ("what is the circle", "no question starts"),
    ("is there the circle", "expected 'a' or 'an'"),
    ("is the circle near the square", "expected a relation"),
    ("how many circles", "expected are there"),
    ("what colour is the square", "'the square' names 2 objects"),
    ("what colour is the red circle", "states the colour"),
    ("what shape is the small circle", "states the shape"),
    ("what digit is the circle", "states the digit"),
    ("what digit is the large object", "asks for a digit but the object is 'square'"),
    ("is the red circle above the red circle", "no clear relation"),
    ("is the circle above the small red square", "no clear relation"),  # at 45 degrees
    ("what shape is below the circle", "2 objects lie below"),
    ("what shape is above the triangle", "0 objects lie above"),
])
def test_ill_posed_questions_are_caught(question, problem):
  answer, problems = sq.answer_question(question, SCENE)
  assert answer is None and len(problems) == 1 and problem in problems[0], problems
  assert sq.check_question(question, "yes", SCENE) == problems


def test_what_is_roughly_there_blocks_a_name_answer():
  # The triangle is clearly right of the circle, but the square sits right and below it,
  # 40 degrees off: "what is to the right of the circle" has no single answer.
  objs = (SceneObject("circle", "red", "small", (4, 4, 16, 16)),
          SceneObject("triangle", "green", "small", (40, 4, 52, 16)),
          SceneObject("square", "blue", "small", (32, 24, 44, 36)))
  answer, problems = sq.answer_question("what shape is to the right of the circle", objs)
  assert answer is None and "2 objects lie right" in problems[0]
  assert sq.answer_question("what shape is to the right of the circle", objs[:2])[0] == (
      "triangle")


# ----------------------------------------------------------------------------- balance

def test_answers_are_balanced_within_each_type():
  qa = sq.make_qa_split("train", NUM_BALANCE, 5, seed=11)
  flat = [(q, a, t) for _, q, a, t in _flat(qa)]
  by_type = collections.defaultdict(collections.Counter)
  for _, a, t in flat:
    by_type[t][a] += 1
  share = {t: sum(c.values()) / len(flat) for t, c in by_type.items()}
  assert all(0.13 < s < 0.28 for s in share.values()), share
  top = {t: max(c.values()) / sum(c.values()) for t, c in by_type.items()}
  assert top["count"] < 0.27 and top["colour"] < 0.21 and top["shape"] < 0.38, top
  count = by_type["count"]
  assert min(count[a] for a in sq.COUNT_ANSWERS) / sum(count.values()) > 0.13, count
  exist = by_type["exist"]
  assert 0.45 < exist["yes"] / sum(exist.values()) < 0.55, exist
  rel = by_type["relation"]
  assert 0.45 < rel["yes"] / (rel["yes"] + rel["no"]) < 0.55, rel
  assert top["relation"] < 0.45 and set(rel) == set(sq.YES_NO + scenes.SHAPES), rel
  # A question-only model: the majority answer of each exact question seen in one half,
  # tried on the other (the type's majority for unseen questions), stays far from 1.
  half = len(flat) // 2
  seen = collections.defaultdict(collections.Counter)
  for q, a, t in flat[:half]:
    seen[q][a] += 1
  guess = [seen[q].most_common(1)[0][0] if q in seen else by_type[t].most_common(1)[0][0]
           for q, _, t in flat[half:]]
  accuracy = np.mean([g == a for g, (_, a, _) in zip(guess, flat[half:])])
  assert accuracy < 0.45, accuracy
