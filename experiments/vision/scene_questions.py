"""Questions about the procedural scenes, with one-word answers, and the checker that proves them.

`scenes.py` draws the images and `scene_captions.py` says what is in them; this module asks
about them, for the VQA experiment. Questions are lowercase words separated by single
spaces, without a question mark (the checker ignores one at the end, as `tokenize` does).

Grammar (`the_np` must single out exactly one object of the scene):

    question := "how many" plural_np "are there"                          count
              | "what colour is" the_np                                  colour
              | "what" ("shape" | "digit") "is" the_np                   shape
              | "is there" a_np                                          exist
              | "is" the_np relation the_np                              relation (yes/no)
              | "what" ("shape" | "digit") "is" relation the_np          relation (a name)
    the_np    := "the" [size] [colour] noun
    a_np      := ("a" | "an") [size] [colour] noun
    plural_np := [size] [colour] nouns
    noun      := circle | square | triangle | 0 | ... | 9 | object       (nouns: plurals)
    relation  := "above" | "below" | "to the left of" | "to the right of"

Examples: "how many small red circles are there" -> "two", "what colour is the large
square" -> "blue", "what shape is the small green object" -> "triangle", "what digit is
the white object" -> "7", "is there a large yellow triangle" -> "no", "is the red circle
above the blue square" -> "yes", "what shape is to the left of the green square" ->
"circle".

Answers (`ANSWERS`): counts as number words "zero" .. "four" (`COUNT_ANSWERS`; words, not
digits, so that a count never reads as a digit's name), colours (`COLOURS`), names
(`SHAPES`, `DIGITS` "0".."9") and "yes"/"no". Every answer is one token.

Meaning (what `check_question` verifies). An np matches the objects of its noun, size and
colour ("object" any object; `matches`). count: the number of matches. colour / shape: the
colour / name of the one object the np names; a question that states what it asks for
("what colour is the red circle", "what shape is the small circle") is not well posed.
exist: whether any object matches. relation yes/no: whether `relation(a, b)` is the
relation asked, where a and b are the objects the two nps name; the relation must be clear
(`relation(a, b)` not None, so "no" always means "it is another, clear relation").
relation name: the name of the one object that lies on that side of the named object; it
must be the only object even roughly there (its centre within 45 degrees of that
direction) and its relation must be clear.

Writing (`write_questions`) draws a type of `QUESTION_TYPES`, then the answer, then a
question with that answer; when the scene cannot give one it draws a type again (so the
balance below holds over all scenes, not scene by scene). Types are drawn with weights of
about 1 / the share of draws a scene can answer, so that each comes out about a fifth of
the time. Answers are balanced within each type, so that the question alone says little:

* count: the count t in 0..max_objects is drawn with probability proportional to
  r_t ** -1.6, where r_t is the share of scenes that hold t objects or more (r_0 = r_1 =
  1, r_t = (M - t + 1) / M for M = max_objects; the power, measured, also makes up for
  the scenes with few objects, which have fewer other questions to ask), then the
  question is drawn among the nps with exactly t matches (t = 0: a level of detail --
  which of name, size and colour are stated -- then an absent combination at that level).
* colour, shape: a random object, described by a random one of its descriptions that
  single it out without stating the colour (shape: the name); the answers are uniform by
  the scenes' symmetry.
* exist: a level of detail with both a present and an absent combination, then "yes" or
  "no" with probability 1/2 each, then a present (absent) combination at that level: so
  50/50 within every level by construction.
* relation: the yes/no form or the name form, 1/2 each. Yes/no: an ordered pair with a
  clear relation whose objects both have singling-out descriptions, then "yes" (ask the
  true relation) or "no" (one of the three others), 1/2 each: 50/50 by construction.
  Name: a relation, then an object with exactly one object there.

Measured (10,000 shapes scenes x 5 questions; seed 0, train): types count 18.9%, colour
19.2, shape 20.6, exist 21.5, relation 19.7; count zero / one / two / three / four 19.7 /
22.0 / 20.9 / 18.6 / 18.7%; colours 16.5-17.1% each; shapes 32.2-34.5%; exist yes 50.1%;
relation yes 31.4, no 30.1 (yes/no 51/49), names 12.3-13.4% each. Digits (3,000 scenes):
count 18.3-21.1% each, colours 14.9-17.6%, digits 8.8-11.0% (MNIST's label frequencies),
exist yes 51.0%, relation yes/no 49/51. Dropping a duplicate question of an image moves
yes/no by a point (a "yes" has fewer wordings than a "no"). A question-only model that
answers each exact question (seen in one half of the questions, tried on the other) with
its most frequent answer, else its type's, gets 38% (shapes; count 42%, relation 45%, as
"what shape is below the circle" is never "circle") or 30% (digits).

Reading (`parse_question`, `answer_question`, `check_question`) parses the words by the
grammar above and recomputes the answer from the object list; it shares nothing with the
writer but the vocabulary tables and the geometry and matching (`matches`, `relation`,
`_roughly`).

Splits (`make_qa_split`): the scenes of `scenes.make_split` with `questions_per_image`
distinct questions each, drawn from `np.random.default_rng([seed, split index, index, kind
index, 2])`: scenes.py draws image i's objects from stream ...0 and its captions from ...1,
so questions never change an image or a caption. Image i's questions depend only on
(seed, split, i, kind, max_objects), so a smaller split is a prefix of a larger one, and
the first k questions of an image are the same for any questions_per_image >= k.

Speed: 10,000 scenes x 5 questions take about 2.5 s of one core besides the scenes
themselves (about 4 s for shapes).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np

from experiments.vision.scene_captions import (COLOURS, DIGITS, NUMBER_WORDS, RELATION_WORDS,
                                               RELATIONS, SHAPES, SIZES, SceneObject, matches,
                                               relation)
from experiments.vision.scenes import KINDS, MAX_OBJECTS, SPLITS, Digits, make_split

__all__ = [
    "ANSWERS", "COUNT_ANSWERS", "QUESTIONS_PER_IMAGE", "QUESTION_TYPES", "QUESTION_WORDS",
    "YES_NO", "ParsedQuestion", "Phrase", "QuestionError", "SceneQA", "answer_question",
    "answers_of_type", "check_question", "make_qa_split", "parse_question", "write_questions",
]

QUESTION_TYPES = ("count", "colour", "shape", "exist", "relation")
COUNT_ANSWERS = ("zero",) + NUMBER_WORDS  # counts 0..4
YES_NO = ("yes", "no")
ANSWERS = COUNT_ANSWERS + COLOURS + SHAPES + DIGITS + YES_NO
QUESTIONS_PER_IMAGE = 5
GENERIC = "object"
_STREAM = 2  # the last entry of the questions' seed (scenes.py uses 0 and 1)


def answers_of_type(qtype: str, kind: str = "shapes") -> tuple[str, ...]:
  """The answers a question of `qtype` about scenes of `kind` can have."""
  names = SHAPES if kind == "shapes" else DIGITS
  return {"count": COUNT_ANSWERS, "colour": COLOURS, "shape": names, "exist": YES_NO,
          "relation": YES_NO + names}[qtype]


def _plural(noun: str) -> str:
  return noun + "s"


def _vocabulary() -> tuple[str, ...]:
  words = ["how", "many", "are", "there", "what", "colour", "shape", "digit", "is", "the",
           "a", "an"]
  words += list(SIZES + COLOURS + SHAPES + DIGITS) + [_plural(n) for n in SHAPES + DIGITS]
  words += [GENERIC, _plural(GENERIC)]
  words += [w for phrase in RELATION_WORDS.values() for w in phrase]
  return tuple(dict.fromkeys(words))


QUESTION_WORDS = _vocabulary()  # every word a question of either kind can hold, each once

# ----------------------------------------------------------------------------- writing questions

# A description: (noun, size, colour), noun a name or "object", size / colour None when not
# stated. A level of detail: which of (name, size, colour) a description states.
_LEVELS = tuple(itertools.product((False, True), repeat=3))


def _pick(rng: np.random.Generator, seq: Sequence):
  return seq[int(rng.random() * len(seq))]


def _describe(obj: SceneObject, level: tuple[bool, bool, bool]) -> tuple:
  return (obj.name if level[0] else GENERIC, obj.size if level[1] else None,
          obj.colour if level[2] else None)


def _all_at_level(level, names) -> list[tuple]:
  return list(itertools.product(names if level[0] else (GENERIC,),
                                SIZES if level[1] else (None,),
                                COLOURS if level[2] else (None,)))


def _members(objects, description) -> list[int]:
  return [k for k, o in enumerate(objects) if matches(o, *description)]


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou8" else "a"


def _np_words(description, det: str | None = None, plural: bool = False) -> list[str]:
  noun, size, colour = description
  words = [w for w in (size, colour) if w is not None]
  words.append(_plural(noun) if plural else noun)
  if det == "a":
    det = _article(words[0])
  return ([det] if det else []) + words


def _singling_out(objects, i, name: bool = True, colour: bool = True) -> list[tuple]:
  """The descriptions of object i that match it alone (optionally not stating its name or
  colour)."""
  out = []
  for level in _LEVELS:
    if (level[0] and not name) or (level[2] and not colour):
      continue
    d = _describe(objects[i], level)
    if len(_members(objects, d)) == 1:
      out.append(d)
  return out


_COUNT_POWER = 1.6  # measured: 1 under-asks "three" and "four", 1.8 over-asks them


def _count_weights(max_count: int) -> np.ndarray:
  """The cumulative P(count = t) for t = 0..4: proportional to r_t ** -1.6, r_t the share of
  scenes with >= t objects (module docstring)."""
  share = np.array([1.0] + [(max_count - t + 1) / max_count if t <= max_count else 0.0
                            for t in range(1, len(COUNT_ANSWERS))])
  w = np.where(share > 0, np.maximum(share, 1e-9) ** -_COUNT_POWER, 0.0)
  return np.cumsum(w / w.sum())


def _ask_count(objects, rng, names, cum_weights):
  t = int(np.searchsorted(cum_weights, rng.random(), side="right"))
  t = min(t, int(np.searchsorted(cum_weights, cum_weights[-1])))  # the last possible count
  if t == 0:
    level = _pick(rng, _LEVELS[1:])  # "how many objects" always has an answer >= 1
    present = {_describe(o, level) for o in objects}
    candidates = [d for d in _all_at_level(level, names) if d not in present]
  else:
    seen = {_describe(o, level) for o in objects for level in _LEVELS}
    candidates = sorted((d for d in seen if len(_members(objects, d)) == t), key=repr)
  if not candidates:
    return None
  d = _pick(rng, candidates)
  return ["how", "many"] + _np_words(d, plural=True) + ["are", "there"], COUNT_ANSWERS[t]


def _ask_colour(objects, rng, names):
  i = int(rng.random() * len(objects))
  candidates = _singling_out(objects, i, colour=False)
  if not candidates:
    return None
  d = _pick(rng, candidates)
  return ["what", "colour", "is"] + _np_words(d, "the"), objects[i].colour


def _name_word(names) -> str:
  return "shape" if names is SHAPES else "digit"


def _ask_shape(objects, rng, names):
  i = int(rng.random() * len(objects))
  candidates = _singling_out(objects, i, name=False)
  if not candidates:
    return None
  d = _pick(rng, candidates)
  return ["what", _name_word(names), "is"] + _np_words(d, "the"), objects[i].name


def _ask_exist(objects, rng, names):
  level = _pick(rng, _LEVELS[1:])  # "is there an object" is always yes
  present = sorted({_describe(o, level) for o in objects}, key=repr)
  absent = [d for d in _all_at_level(level, names) if d not in present]
  if not absent:
    return None
  answer = _pick(rng, YES_NO)
  d = _pick(rng, present if answer == "yes" else absent)
  return ["is", "there"] + _np_words(d, "a"), answer


def _roughly(a: SceneObject, b: SceneObject, rel: str) -> bool:
  """Whether a lies even roughly on the `rel` side of b: its centre within 45 degrees
  (inclusive) of that direction from b's centre."""
  ax0, ay0, ax1, ay1 = a.box
  bx0, by0, bx1, by1 = b.box
  dx = (ax0 + ax1 - bx0 - bx1) / 2  # a's centre minus b's
  dy = (ay0 + ay1 - by0 - by1) / 2
  along, across = {"above": (-dy, dx), "below": (dy, dx), "left": (-dx, dy),
                   "right": (dx, dy)}[rel]
  return along > 0 and along >= abs(across)


def _ask_relation(objects, rng, names):
  if rng.random() < 0.5:  # the yes/no form
    pairs = [(i, j) for i in range(len(objects)) for j in range(len(objects))
             if i != j and relation(objects[i], objects[j]) is not None]
    pairs = [(i, j, di, dj) for i, j in pairs
             for di, dj in [(_singling_out(objects, i), _singling_out(objects, j))] if di and dj]
    if not pairs:
      return None
    i, j, di, dj = _pick(rng, pairs)
    a, b = _pick(rng, di), _pick(rng, dj)
    true = relation(objects[i], objects[j])
    answer = _pick(rng, YES_NO)
    asked = true if answer == "yes" else _pick(rng, [r for r in RELATIONS if r != true])
    return (["is"] + _np_words(a, "the") + list(RELATION_WORDS[asked]) + _np_words(b, "the"),
            answer)
  rel = _pick(rng, RELATIONS)
  options = []
  for j in range(len(objects)):
    there = [k for k in range(len(objects)) if k != j and _roughly(objects[k], objects[j], rel)]
    if len(there) == 1 and relation(objects[there[0]], objects[j]) == rel:
      dj = _singling_out(objects, j)
      if dj:
        options.append((there[0], dj))
  if not options:
    return None
  k, dj = _pick(rng, options)
  words = ["what", _name_word(names), "is"] + list(RELATION_WORDS[rel]) + _np_words(
      _pick(rng, dj), "the")
  return words, objects[k].name


_WRITERS = {"count": _ask_count, "colour": _ask_colour, "shape": _ask_shape,
            "exist": _ask_exist, "relation": _ask_relation}
# How often each type is drawn: about 1 / the share of draws a scene can answer (measured
# with 4 objects at most: count 0.40-0.42, colour 0.78-0.91, shape 0.87-0.88, exist 0.90-0.92,
# relation 0.52-0.54), so that the types come out about equally often.
_TYPE_WEIGHTS = np.array([2.8, 1.2, 1.15, 1.0, 2.0])
_TYPE_CUMULATIVE = np.cumsum(_TYPE_WEIGHTS / _TYPE_WEIGHTS.sum())


def write_questions(objects: Sequence[SceneObject], rng: np.random.Generator, n: int, *,
                    max_objects: int = MAX_OBJECTS) -> list[tuple[str, str, str]]:
  """`n` distinct true questions about `objects`, drawn from `rng` (module docstring).

  Args:
    objects: the scene's objects (at least one; the kind is read from their names).
    rng: the question stream.
    n: how many questions.
    max_objects: the most objects a scene of this split can hold (the count answers are
      balanced for it).

  Returns:
    [(question, answer, type), ...], n distinct questions.

  Raises:
    RuntimeError: when 50 * n draws give fewer than n distinct questions (never seen).
  """
  if not objects:
    raise ValueError("a scene without objects")
  names = DIGITS if objects[0].name in DIGITS else SHAPES
  cum_weights = _count_weights(max_objects)
  out, seen = [], set()
  for _ in range(50 * n + 100):
    if len(out) == n:
      return out
    k = int(np.searchsorted(_TYPE_CUMULATIVE, rng.random(), side="right"))
    qtype = QUESTION_TYPES[min(k, len(QUESTION_TYPES) - 1)]
    args = (cum_weights,) if qtype == "count" else ()
    asked = _WRITERS[qtype](objects, rng, names, *args)
    if asked is None:
      continue
    question = " ".join(asked[0])
    if question not in seen:
      seen.add(question)
      out.append((question, asked[1], qtype))
  if len(out) == n:
    return out
  raise RuntimeError(f"only {len(out)} distinct questions about {objects}: {out}")


# ----------------------------------------------------------------------------- reading questions

class QuestionError(ValueError):
  """A question the grammar does not derive."""


class Phrase(NamedTuple):
  """A parsed noun phrase: determiner ("the", "a", "an" or None), modifiers, noun (a name or
  "object", singular), whether it was plural, and its words."""
  det: str | None
  size: str | None
  colour: str | None
  noun: str
  plural: bool
  text: str

  @property
  def description(self) -> tuple:
    return (self.noun, self.size, self.colour)


class ParsedQuestion(NamedTuple):
  """A question by the grammar: its type, what it asks ("count", "colour", "name",
  "exist", "relation yes/no", "relation name"), the name word ("shape"/"digit") of a name
  question, its phrases and its relation."""
  qtype: str
  asks: str
  name_word: str | None
  subject: Phrase | None
  relation: str | None = None
  object_: Phrase | None = None


_NOUNS = {**{n: (n, False) for n in SHAPES + DIGITS + (GENERIC,)},
          **{_plural(n): (n, True) for n in SHAPES + DIGITS + (GENERIC,)}}


def _tokens(question: str | Sequence[str]) -> list[str]:
  tokens = question.lower().split() if isinstance(question, str) else [t.lower() for t in question]
  if tokens and tokens[-1] == "?":
    tokens = tokens[:-1]
  elif tokens and tokens[-1].endswith("?"):
    tokens[-1] = tokens[-1][:-1]
  return tokens


def _parse_np(tokens, i, dets) -> tuple[Phrase, int]:
  start = i
  det = None
  if dets:
    if i >= len(tokens) or tokens[i] not in dets:
      got = tokens[i] if i < len(tokens) else "the end"
      raise QuestionError(f"expected {' or '.join(map(repr, dets))} at word {i + 1}, got {got!r}")
    det, i = tokens[i], i + 1
  size = colour = None
  while i < len(tokens) and (tokens[i] in SIZES or tokens[i] in COLOURS):
    if tokens[i] in SIZES:
      if size is not None:
        raise QuestionError(f"two sizes at word {i + 1}")
      size = tokens[i]
    else:
      if colour is not None:
        raise QuestionError(f"two colours at word {i + 1}")
      colour = tokens[i]
    i += 1
  if i >= len(tokens) or tokens[i] not in _NOUNS:
    got = tokens[i] if i < len(tokens) else "the end"
    raise QuestionError(f"expected a noun at word {i + 1}, got {got!r}")
  noun, plural = _NOUNS[tokens[i]]
  if plural != (not dets):
    raise QuestionError(f"{tokens[i]!r} at word {i + 1}: expected a "
                        f"{'plural' if not dets else 'singular'} noun")
  return Phrase(det, size, colour, noun, plural, " ".join(tokens[start:i + 1])), i + 1


def _parse_relation(tokens, i) -> tuple[str | None, int]:
  for name, phrase in RELATION_WORDS.items():
    if tuple(tokens[i:i + len(phrase)]) == phrase:
      return name, i + len(phrase)
  return None, i


def _expect_end(tokens, i, what=()):
  if tuple(tokens[i:]) != tuple(what):
    raise QuestionError(f"expected {' '.join(what) or 'the end'} at word {i + 1}, got "
                        f"{' '.join(tokens[i:]) or 'the end'!r}")


def parse_question(question: str | Sequence[str]) -> ParsedQuestion:
  """A question (a string or its tokens) by the module docstring's grammar.

  Raises:
    QuestionError: when the grammar does not derive it.
  """
  t = _tokens(question)
  if t[:2] == ["how", "many"]:
    np_, i = _parse_np(t, 2, ())
    _expect_end(t, i, ("are", "there"))
    return ParsedQuestion("count", "count", None, np_)
  if t[:1] == ["what"] and t[1:2] in (["colour"], ["color"]) and t[2:3] == ["is"]:
    np_, i = _parse_np(t, 3, ("the",))
    _expect_end(t, i)
    return ParsedQuestion("colour", "colour", None, np_)
  if t[:1] == ["what"] and t[1:2] in (["shape"], ["digit"]) and t[2:3] == ["is"]:
    rel, i = _parse_relation(t, 3)
    np_, i = _parse_np(t, i, ("the",))
    _expect_end(t, i)
    if rel:
      return ParsedQuestion("relation", "relation name", t[1], np_, rel)
    return ParsedQuestion("shape", "name", t[1], np_)
  if t[:2] == ["is", "there"]:
    np_, i = _parse_np(t, 2, ("a", "an"))
    _expect_end(t, i)
    return ParsedQuestion("exist", "exist", None, np_)
  if t[:1] == ["is"]:
    a, i = _parse_np(t, 1, ("the",))
    rel, i = _parse_relation(t, i)
    if rel is None:
      raise QuestionError(f"expected a relation at word {i + 1}, got "
                          f"{t[i] if i < len(t) else 'the end'!r}")
    b, i = _parse_np(t, i, ("the",))
    _expect_end(t, i)
    return ParsedQuestion("relation", "relation yes/no", None, a, rel, b)
  raise QuestionError(f"no question starts {' '.join(t[:3])!r}")


def _the(phrase: Phrase, objects, problems) -> int | None:
  """The index of the one object `phrase` names, or None (with the problem noted)."""
  found = _members(objects, phrase.description)
  if len(found) != 1:
    problems.append(f"{phrase.text!r} names {len(found)} objects, not one")
    return None
  return found[0]


def _name_kind_ok(word: str, name: str) -> bool:
  return (name in SHAPES) if word == "shape" else (name in DIGITS)


def answer_question(question: str | Sequence[str] | ParsedQuestion,
                    objects: Sequence[SceneObject]) -> tuple[str | None, list[str]]:
  """The true answer to a question about `objects`, and why it has none.

  Returns:
    (answer, []) for a well-posed question; (None, [problems]) for one outside the grammar
    or not well posed (a "the" phrase that does not name one object, an unclear relation,
    a question that states its answer, a shape asked of a digit).
  """
  try:
    q = question if isinstance(question, ParsedQuestion) else parse_question(question)
  except QuestionError as e:
    return None, [f"not in the grammar: {e}"]
  problems: list[str] = []
  s = q.subject
  if q.asks == "count":
    n = len(_members(objects, s.description))
    if n >= len(COUNT_ANSWERS):
      return None, [f"{s.text!r}: {n} objects, more than the answers count"]
    return COUNT_ANSWERS[n], []
  if q.asks == "exist":
    return YES_NO[0] if _members(objects, s.description) else YES_NO[1], []
  if q.asks == "colour" and s.colour is not None:
    problems.append(f"{s.text!r} states the colour asked for")
  if q.asks == "name" and s.noun != GENERIC:
    problems.append(f"{s.text!r} states the {q.name_word} asked for")
  k = _the(s, objects, problems)
  if q.asks == "relation yes/no":
    k2 = _the(q.object_, objects, problems)
    if problems:
      return None, problems
    true = relation(objects[k], objects[k2])
    if true is None:
      return None, [f"{s.text!r} and {q.object_.text!r}: no clear relation"]
    return YES_NO[0] if true == q.relation else YES_NO[1], []
  if problems:
    return None, problems
  if q.asks == "colour":
    return objects[k].colour, []
  if q.asks == "name":
    target = k
  else:  # relation name: the one object on that side of the named one
    there = [m for m in range(len(objects))
             if m != k and _roughly(objects[m], objects[k], q.relation)]
    if len(there) != 1:
      return None, [f"{len(there)} objects lie {q.relation} of {s.text!r}, not one"]
    if relation(objects[there[0]], objects[k]) != q.relation:
      return None, [f"the object {q.relation} of {s.text!r} is not clearly so"]
    target = there[0]
  if not _name_kind_ok(q.name_word, objects[target].name):
    return None, [f"asks for a {q.name_word} but the object is {objects[target].name!r}"]
  return objects[target].name, []


def check_question(question: str, answer: str, objects: Sequence[SceneObject]) -> list[str]:
  """What is wrong with `answer` to `question` about `objects`; [] when it is the answer.

  Each entry says why: "not in the grammar: ...", "'the red circle' names 2 objects, not
  one", "answer 'two': it is 'three'", ...
  """
  truth, problems = answer_question(question, objects)
  if problems:
    return problems
  if answer.strip().lower() != truth:
    return [f"answer {answer!r}: it is {truth!r}"]
  return []


# ----------------------------------------------------------------------------- splits

class SceneQA(NamedTuple):
  """A split of scenes with questions.

  Attributes:
    images: [N, 64, 64, 3] uint8.
    ids: [N] int64 image ids (`scenes.make_split`'s).
    objects: N tuples of `SceneObject`.
    questions: N lists of Q questions (str).
    answers: N lists of Q one-word answers.
    types: N lists of Q types of `QUESTION_TYPES`.
  """
  images: np.ndarray
  ids: np.ndarray
  objects: list
  questions: list
  answers: list
  types: list


def make_qa_split(split: str, num_images: int,
                  questions_per_image: int = QUESTIONS_PER_IMAGE, *, seed: int = 0,
                  kind: str = "shapes", digits: Digits | None = None,
                  max_objects: int = MAX_OBJECTS) -> SceneQA:
  """Scenes 0..num_images-1 of `split` (`scenes.make_split`), each with
  `questions_per_image` distinct questions from its own stream (module docstring).

  Returns:
    `SceneQA`: images [N, 64, 64, 3] uint8, ids [N], and N lists of Q questions, answers
    and types.
  """
  if questions_per_image < 1:
    raise ValueError(f"questions_per_image={questions_per_image}: expected >= 1")
  scenes = make_split(split, num_images, seed=seed, kind=kind, digits=digits,
                      max_objects=max_objects)
  questions, answers, types = [], [], []
  for i, objects in enumerate(scenes.objects):
    rng = np.random.default_rng([seed, SPLITS.index(split), i, KINDS.index(kind), _STREAM])
    qa = write_questions(objects, rng, questions_per_image, max_objects=max_objects)
    questions.append([q for q, _, _ in qa])
    answers.append([a for _, a, _ in qa])
    types.append([t for _, _, t in qa])
  return SceneQA(scenes.images, scenes.ids, list(scenes.objects), questions, answers, types)
