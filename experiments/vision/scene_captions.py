"""The language of the procedural scenes: objects, relations, captions written and read back.

`scenes.py` draws the images; this module holds what is said about them.

Objects. A `SceneObject` is a name (a shape of `SHAPES`, or a digit "0".."9"), a colour of
`COLOURS`, a size of `SIZES` and a pixel box `(x0, y0, x1, y1)` (x the column, y the row,
x1 and y1 exclusive).

Relations. `relation(a, b)` is "above", "below", "left" or "right" (a is to the left of b)
when that is clear, else None: a's box lies entirely on that side of b's box, and the
offset of the box centres along that axis is at least `RELATION_RATIO` times the offset
along the other axis. So at most one relation holds for an ordered pair, and
`relation(b, a)` is its opposite.

Grammar (every caption is lowercase words separated by single spaces, no punctuation):

    caption  := [prefix] clause (("and" | "with") clause)*
    prefix   := "a picture of" | "an image of" | "an image with" | "a scene with"
              | "there is" | "there are"
    clause   := np [relation np]
    np       := det [size] [colour] noun          (size and colour in either order)
    det      := "a" | "an" | "one" | "two" | "three" | "four"
    noun     := circle | circles | square | ... | 3 | 3s | ... | object(s) | shape(s) | digit(s)
    relation := "above" | "below" | "to the left of" | "to the right of"

Meaning (what `check_caption` verifies). An np names the set S of objects that match its
noun and modifiers ("object(s)" matches every object, "shape(s)" every shape, "digit(s)"
every digit). "a"/"an" claims |S| >= 1; a number claims |S| equals it exactly ("one red
circle": exactly one). A clause `np1 relation np2` also claims the relation between the
two sets: for "a"/"one" some member, for a number >= 2 every member, i.e. "a red circle
above two squares" says some red circle lies above each of the two squares. Number
agreement ("a circles") and the article ("a"/"an") are not claims about the image and are
not checked. A caption the grammar does not derive is reported as one false claim
("not in the grammar: ...").

Writing (`write_captions`) draws five distinct captions from five kinds: an inventory of
all objects grouped by description ("two red circles and a blue square"), a count ("there
are three objects", "an image with two red objects"), one description ("a small green
triangle"), a relation ("a red circle above a blue square") and a count with a relation
("there are three objects with a red circle above a blue square"), each with a random
prefix and level of detail, and at most `MAX_WORDS` words. A relation is only written
between two objects whose descriptions each match exactly one object of the scene, so its
references are never ambiguous.

Reading (`parse_caption`, `check_caption`, `noun_objects`) is written from the grammar
above and shares nothing with the writer but the vocabulary tables and `relation`, the
geometric ground truth.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle")
DIGITS = tuple(str(d) for d in range(10))
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SIZES = ("small", "large")
RELATIONS = ("above", "below", "left", "right")
RELATION_RATIO = 1.5  # the relation's axis offset over the other axis's, at least
MAX_WORDS = 16
CAPTIONS_PER_IMAGE = 5

NUMBER_WORDS = ("one", "two", "three", "four")
ARTICLES = ("a", "an")
GENERIC_NOUNS = {"object": "object", "objects": "object", "shape": "shape", "shapes": "shape",
                 "digit": "digit", "digits": "digit"}
RELATION_WORDS = {"above": ("above",), "below": ("below",), "left": ("to", "the", "left", "of"),
                  "right": ("to", "the", "right", "of")}
PREFIXES = (("a", "picture", "of"), ("an", "image", "of"), ("an", "image", "with"),
            ("a", "scene", "with"), ("there", "is"), ("there", "are"))
SEPARATORS = ("and", "with")
_OPPOSITE = {"above": "below", "below": "above", "left": "right", "right": "left"}


def _plural(name: str) -> str:
  return name + "s"


# Every noun that names objects by their class: singular and plural shape words and digits.
NAME_NOUNS = {**{n: (n, False) for n in SHAPES + DIGITS},
              **{_plural(n): (n, True) for n in SHAPES + DIGITS}}


def _vocabulary() -> tuple[str, ...]:
  words = list(ARTICLES + NUMBER_WORDS + SIZES + COLOURS) + list(NAME_NOUNS) + list(GENERIC_NOUNS)
  words += [w for phrase in RELATION_WORDS.values() for w in phrase]
  words += [w for prefix in PREFIXES for w in prefix] + list(SEPARATORS)
  return tuple(dict.fromkeys(words))


VOCAB_WORDS = _vocabulary()  # every word a caption of either kind can hold, each once


class SceneObject(NamedTuple):
  """One object of a scene.

  Attributes:
    name: "circle", "square" or "triangle", or the digit "0".."9" for the digits kind.
    colour: one of `COLOURS`.
    size: one of `SIZES`.
    box: (x0, y0, x1, y1) in pixels, x1 and y1 exclusive; x is the column, y the row.
  """
  name: str
  colour: str
  size: str
  box: tuple[int, int, int, int]


def relation(a: SceneObject, b: SceneObject) -> str | None:
  """The clear spatial relation of `a` to `b` ("above", "below", "left", "right"), or None.

  "left" means a is to the left of b. A relation holds when a's box lies entirely on that
  side of b's box and the centres' offset along that axis is at least `RELATION_RATIO`
  times their offset along the other axis.
  """
  ax0, ay0, ax1, ay1 = a.box
  bx0, by0, bx1, by1 = b.box
  dx = (bx0 + bx1 - ax0 - ax1) / 2  # b's centre minus a's
  dy = (by0 + by1 - ay0 - ay1) / 2
  if abs(dy) >= RELATION_RATIO * abs(dx):
    if ay1 <= by0 and dy > 0:
      return "above"
    if by1 <= ay0 and dy < 0:
      return "below"
  if abs(dx) >= RELATION_RATIO * abs(dy):
    if ax1 <= bx0 and dx > 0:
      return "left"
    if bx1 <= ax0 and dx < 0:
      return "right"
  return None


def matches(obj: SceneObject, noun: str, size: str | None = None,
            colour: str | None = None) -> bool:
  """Whether `obj` is a `noun` (a name, or "object"/"shape"/"digit") of that size and colour."""
  if noun == "object":
    kind_ok = True
  elif noun == "shape":
    kind_ok = obj.name in SHAPES
  elif noun == "digit":
    kind_ok = obj.name in DIGITS
  else:
    kind_ok = obj.name == noun
  return kind_ok and size in (None, obj.size) and colour in (None, obj.colour)


# ----------------------------------------------------------------------------- writing captions

# Levels of detail of a description: which of (size, colour) it states beside the name.
_LEVELS = ((False, False), (False, True), (True, False), (True, True))


def _article(next_word: str) -> str:
  return "an" if next_word[0] in "aeiou8" else "a"


def _noun_phrase(count: int, noun: str, size: str | None, colour: str | None,
                 exact: bool = False) -> list[str]:
  """`count` objects named `noun` ("circle", "3", "object", ...): "a red circle", "two 3s"."""
  words = [w for w in (size, colour) if w is not None]
  words.append(noun if count == 1 else _plural(noun))
  if count == 1 and not exact:
    return [_article(words[0])] + words
  return [NUMBER_WORDS[count - 1]] + words


def _description(obj: SceneObject, level: tuple[bool, bool]) -> tuple[str | None, str | None]:
  return (obj.size if level[0] else None, obj.colour if level[1] else None)


def _count(objects: Sequence[SceneObject], noun: str, size=None, colour=None) -> int:
  return sum(matches(o, noun, size, colour) for o in objects)


def _prefix(rng: np.random.Generator, first_word: str, choices: Sequence[str]) -> list[str]:
  """A random prefix of `choices` ("", "picture", "image of", "image with", "scene", "there")."""
  choice = choices[rng.integers(len(choices))]
  if choice == "there":
    plural = first_word not in ("a", "an", "one")
    return ["there", "are" if plural else "is"]
  return {"": [], "picture": ["a", "picture", "of"], "image of": ["an", "image", "of"],
          "image with": ["an", "image", "with"], "scene": ["a", "scene", "with"]}[choice]


_ALL_PREFIXES = ("", "", "picture", "image of", "image with", "scene", "there")


def _inventory(objects, rng) -> list[str]:
  """All objects, grouped by their description at one level of detail."""
  level = _LEVELS[rng.integers(len(_LEVELS))]
  groups: dict[tuple, int] = {}
  for obj in objects:
    key = (obj.name, *_description(obj, level))
    groups[key] = groups.get(key, 0) + 1
  keys = list(groups)
  words: list[str] = []
  for k in rng.permutation(len(keys)):
    name, size, colour = keys[k]
    words += (["and"] if words else []) + _noun_phrase(groups[keys[k]], name, size, colour)
  return _prefix(rng, words[0], _ALL_PREFIXES) + words


def _generic_noun(objects, rng) -> str:
  if rng.random() < 0.5:
    return "object"
  return "shape" if objects[0].name in SHAPES else "digit"


def _count_phrase(objects, rng) -> list[str]:
  """The exact count of all objects, of one colour, or of one name: "three objects"."""
  obj = objects[rng.integers(len(objects))]
  what = rng.integers(3)
  if what == 0:
    noun, colour = _generic_noun(objects, rng), None
  elif what == 1:
    noun, colour = _generic_noun(objects, rng), obj.colour
  else:
    noun, colour = obj.name, (obj.colour if rng.random() < 0.5 else None)
  return _noun_phrase(_count(objects, noun, colour=colour), noun, None, colour, exact=True)


def _count_caption(objects, rng) -> list[str]:
  words = _count_phrase(objects, rng)
  return _prefix(rng, words[0], ("", "picture", "image with", "there", "there")) + words


def _single(objects, rng) -> list[str]:
  """One object's description; a number when the description matches more than one."""
  obj = objects[rng.integers(len(objects))]
  size, colour = _description(obj, _LEVELS[rng.integers(len(_LEVELS))])
  words = _noun_phrase(_count(objects, obj.name, size, colour), obj.name, size, colour)
  return _prefix(rng, words[0], _ALL_PREFIXES) + words


def _unique_levels(objects, i) -> list[tuple[bool, bool]]:
  """The levels of detail at which object i's description matches it alone."""
  obj = objects[i]
  return [level for level in _LEVELS if _count(objects, obj.name, *_description(obj, level)) == 1]


def _relation_clause(objects, rng) -> list[str] | None:
  """"a red circle above a blue square" for a random related pair told apart, or None."""
  pairs = [(i, j) for i in range(len(objects)) for j in range(len(objects))
           if i != j and relation(objects[i], objects[j]) is not None]
  for p in rng.permutation(len(pairs)):
    i, j = pairs[p]
    levels_i, levels_j = _unique_levels(objects, i), _unique_levels(objects, j)
    if levels_i and levels_j:
      a, b = objects[i], objects[j]
      words = _noun_phrase(1, a.name, *_description(a, levels_i[rng.integers(len(levels_i))]))
      words += RELATION_WORDS[relation(a, b)]
      words += _noun_phrase(1, b.name, *_description(b, levels_j[rng.integers(len(levels_j))]))
      return words
  return None


def _relation_caption(objects, rng) -> list[str] | None:
  words = _relation_clause(objects, rng)
  if words is None:
    return None
  return _prefix(rng, words[0], ("", "", "picture", "image of", "there")) + words


def _count_relation_caption(objects, rng) -> list[str] | None:
  words = _relation_clause(objects, rng)
  if words is None:
    return None
  n = len(objects)
  count = _noun_phrase(n, _generic_noun(objects, rng), None, None, exact=True)
  return _prefix(rng, count[0], ("", "picture", "there")) + count + ["with"] + words


_WRITERS = (_inventory, _count_caption, _single, _relation_caption, _count_relation_caption)
_WRITER_WEIGHTS = np.array([0.3, 0.2, 0.15, 0.25, 0.1])


def write_captions(objects: Sequence[SceneObject], rng: np.random.Generator,
                   num: int = CAPTIONS_PER_IMAGE) -> list[str]:
  """`num` distinct true captions of `objects`, drawn from `rng` (see the module docstring).

  Raises:
    RuntimeError: when 200 draws give fewer than `num` distinct captions (never seen).
  """
  captions: list[str] = []
  for _ in range(200):
    writer = _WRITERS[rng.choice(len(_WRITERS), p=_WRITER_WEIGHTS)]
    words = writer(objects, rng)
    if words is None or len(words) > MAX_WORDS:
      continue
    caption = " ".join(words)
    if caption not in captions:
      captions.append(caption)
      if len(captions) == num:
        return captions
  raise RuntimeError(f"only {len(captions)} distinct captions of {objects}: {captions}")


# ----------------------------------------------------------------------------- reading captions

class CaptionError(ValueError):
  """A caption the grammar does not derive."""


class NounPhrase(NamedTuple):
  """A parsed np: its determiner's count (None for "a"/"an"), modifiers, noun and position.

  Attributes:
    start: index of its first word in the caption's tokens.
    count: 1..4 for a number word, None for "a"/"an".
    size, colour: the modifiers stated, or None.
    noun: a name ("circle", "3") or a generic noun ("object", "shape", "digit").
    noun_index: index of the noun in the caption's tokens.
  """
  start: int
  count: int | None
  size: str | None
  colour: str | None
  noun: str
  noun_index: int

  def text(self, tokens: Sequence[str]) -> str:
    return " ".join(tokens[self.start:self.noun_index + 1])


class Clause(NamedTuple):
  """`subject` alone, or `subject relation object_`."""
  subject: NounPhrase
  relation: str | None = None
  object_: NounPhrase | None = None


def _parse_np(tokens: Sequence[str], i: int) -> tuple[NounPhrase, int]:
  if i >= len(tokens):
    raise CaptionError("a noun phrase is missing at the end")
  det = tokens[i]
  if det in ARTICLES:
    count = None
  elif det in NUMBER_WORDS:
    count = NUMBER_WORDS.index(det) + 1
  else:
    raise CaptionError(f"expected 'a', 'an' or a number at word {i + 1}, got {det!r}")
  size = colour = None
  j = i + 1
  while j < len(tokens) and (tokens[j] in SIZES or tokens[j] in COLOURS):
    if tokens[j] in SIZES:
      if size is not None:
        raise CaptionError(f"two sizes in one noun phrase at word {j + 1}")
      size = tokens[j]
    else:
      if colour is not None:
        raise CaptionError(f"two colours in one noun phrase at word {j + 1}")
      colour = tokens[j]
    j += 1
  if j >= len(tokens):
    raise CaptionError("a noun is missing at the end")
  word = tokens[j]
  if word in NAME_NOUNS:
    noun = NAME_NOUNS[word][0]
  elif word in GENERIC_NOUNS:
    noun = GENERIC_NOUNS[word]
  else:
    raise CaptionError(f"expected a noun at word {j + 1}, got {word!r}")
  return NounPhrase(i, count, size, colour, noun, j), j + 1


def _parse_relation(tokens: Sequence[str], i: int) -> tuple[str | None, int]:
  for name, phrase in RELATION_WORDS.items():
    if tuple(tokens[i:i + len(phrase)]) == phrase:
      return name, i + len(phrase)
  return None, i


def parse_caption(caption: str | Sequence[str]) -> list[Clause]:
  """The clauses of a caption (a string or its tokens) by the module docstring's grammar.

  Raises:
    CaptionError: when the grammar does not derive the caption.
  """
  tokens = caption.split() if isinstance(caption, str) else list(caption)
  i = 0
  for prefix in PREFIXES:
    if tuple(tokens[:len(prefix)]) == prefix:
      i = len(prefix)
      break
  if i == len(tokens):
    raise CaptionError("empty caption")
  clauses = []
  while True:
    subject, i = _parse_np(tokens, i)
    rel, i = _parse_relation(tokens, i)
    object_ = None
    if rel:
      object_, i = _parse_np(tokens, i)
    clauses.append(Clause(subject, rel, object_))
    if i == len(tokens):
      return clauses
    if tokens[i] not in SEPARATORS:
      raise CaptionError(f"expected 'and', 'with' or a relation at word {i + 1}, "
                         f"got {tokens[i]!r}")
    i += 1


def _members(np_: NounPhrase, objects: Sequence[SceneObject]) -> list[int]:
  return [k for k, o in enumerate(objects) if matches(o, np_.noun, np_.size, np_.colour)]


def _related(subject: list[int], rel: str, object_: list[int], objects,
             every_subject: bool, every_object: bool) -> bool:
  """Whether some (every) subject member has `rel` to some (every) other object member."""
  def holds(a):
    others = [b for b in object_ if b != a]
    found = [relation(objects[a], objects[b]) == rel for b in others]
    return bool(others) and (all(found) if every_object else any(found))
  return (all if every_subject else any)(holds(a) for a in subject)


def check_caption(caption: str, objects: Sequence[SceneObject]) -> list[str]:
  """The claims of `caption` that are false of `objects`; [] when the caption is true.

  Each entry names the phrase and why it is false, e.g. "'two red circles': there are 3",
  "'a red circle above a blue square': not so". A caption outside the grammar gives the
  single entry "not in the grammar: ...".
  """
  tokens = caption.lower().split()
  try:
    clauses = parse_caption(tokens)
  except CaptionError as e:
    return [f"not in the grammar: {e}"]
  false = []
  for clause in clauses:
    sets = []
    for np_ in (clause.subject, clause.object_):
      if np_ is None:
        continue
      members = _members(np_, objects)
      sets.append(members)
      if np_.count is None and not members:
        false.append(f"{np_.text(tokens)!r}: there is none")
      elif np_.count is not None and len(members) != np_.count:
        false.append(f"{np_.text(tokens)!r}: there are {len(members)}")
    if clause.relation and all(sets):
      every = [np_.count is not None and np_.count > 1 for np_ in (clause.subject, clause.object_)]
      if not _related(sets[0], clause.relation, sets[1], objects, *every):
        text = " ".join(tokens[clause.subject.start:clause.object_.noun_index + 1])
        false.append(f"{text!r}: not so")
  return false


def noun_objects(tokens: Sequence[str] | str,
                 objects: Sequence[SceneObject]) -> list[tuple[int, tuple[int, ...]]]:
  """For each noun naming objects, its token position and the indices of the objects named.

  A noun is a shape word, its plural, a digit or a digit's plural (generic nouns such as
  "objects" name no particular object). The size and colour words right before it narrow
  the match; a plural, or a singular matched by several objects, names all of them, except
  that when the caption parses, a singular in a relation clause keeps only the objects
  that take part in the relation when some do ("a red circle above a blue square" names the
  red circle above the square). Works on any token list (model output included): nouns that
  match no object are left out.

  Args:
    tokens: the caption's words (or the caption as one string).
    objects: the scene's objects.

  Returns:
    [(position, (object index, ...)), ...] in token order, each with at least one index.
  """
  tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
  named: dict[int, list[int]] = {}
  for pos, word in enumerate(tokens):
    if word not in NAME_NOUNS:
      continue
    size = colour = None
    j = pos - 1
    while j >= 0 and (tokens[j] in SIZES or tokens[j] in COLOURS):
      if tokens[j] in SIZES:
        size = size or tokens[j]
      else:
        colour = colour or tokens[j]
      j -= 1
    named[pos] = [k for k, o in enumerate(objects) if matches(o, NAME_NOUNS[word][0], size, colour)]
  try:
    clauses = parse_caption(tokens)
  except CaptionError:
    clauses = []
  for clause in clauses:
    if clause.relation is None:
      continue
    subject, object_ = clause.subject, clause.object_
    if subject.noun_index not in named or object_.noun_index not in named:
      continue
    s, o = named[subject.noun_index], named[object_.noun_index]
    pairs = [(a, b) for a in s for b in o
             if a != b and relation(objects[a], objects[b]) == clause.relation]
    if subject.count in (None, 1) and pairs:
      named[subject.noun_index] = sorted({a for a, _ in pairs})
    if object_.count in (None, 1) and pairs:
      named[object_.noun_index] = sorted({b for _, b in pairs})
  return [(pos, tuple(ks)) for pos, ks in sorted(named.items()) if ks]
