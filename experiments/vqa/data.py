"""VQA data: corpora -> vocabularies and answer classes -> batches of (image, question, answer).

    corpus = data.load(config)                         # Corpus(train, valid, test) of `Split`s
    vocab = data.Vocabularies.build(corpus.train, min_count, num_answers)
    train = data.encode(corpus.train, vocab, max_question_len, max_answer_len)
    batches = data.Batches(train, batch_size, seed, rows=data.known_rows(train))
    batch = batches(step)                              # or data.batch(train, rows)

A batch is a dict of numpy arrays, B questions:

    "images"            [B, H, W, 3] uint8, or features [B, R, D] / [B, D] float32
    "image_index"       [B] int32   the image's row in the split
    "questions"         [B, T] int32 word ids, PAD after the question (no EOS)
    "question_lengths"  [B] int32   words, at most T
    "answer_class"      [B] int32   0..K-1, or OTHER (-1) when the answer is not among the K
    "answer_tokens"     [B, A] int32 the answer's words then EOS, PAD after (A = max_answer_len + 1)
    "answer_lengths"    [B] int32   words + EOS
    "qtype"             [B] int32   index into `QTYPE_NAMES`

Words: `corpora.tokenize` (lower case, punctuation dropped, "_" kept; DAQUAR's imageN read
as "image"). Question words seen fewer than `min_count` times in the training questions
are `<unk>`; ids 0-3 are `SPECIALS`. Answer classes: the K most frequent training answers
(`normalize_answer`d; ties broken by the answer), most frequent first; every other answer
is class `OTHER` = -1, which the classifier loss leaves out (and which can never be
predicted, so such questions count as wrong at test time). Answer words (for answer
generation, Malinowski et al.'s "Ask Your Neurons"): DAQUAR's "chair, table" is "chair
table </s>"; the answer vocabulary holds every word of the training answers
(`min_count` does not apply); `decode_answer` joins words with spaces, and `same_answer`
compares a list answer ("table, chair") with one as sets of words.

Question types (`question_type`, for corpora without their own): "count" ("how many ...",
"what number of ..."), "colour" ("what is the colour of ...", "what color is ..."),
"yes/no" (starting is / are / does / do / can / was / has ...), "object" (other what /
which questions: DAQUAR's "what is on the desk"), "other". Scenes keep their generated
types (count, colour, shape, exist, relation) and VQA v2 its answer types (yes/no, number,
other).

Batches. An epoch visits every chosen row once in an order drawn from (seed, epoch), so
`batches(step)` is a pure function of the step and a resumed run sees the batches an
uninterrupted one does (captioning's rule). With `by_image=True` the order shuffles the
images and then the questions within each image, so an image's questions are consecutive,
and a batch carries each of its images once:

    "images"            [M, H, W, 3] (or features [M, ...]): the batch's distinct images,
                        padded to M by repeating the first
    "image_slot"        [B] int32   question b's image is images[image_slot[b]]

M = min(B, 4 + (B - 4) // q) for q the fewest questions of an image (two epochs' partial
images at most at each end of a batch), rounded up to `image_multiple`; the CNN then runs
on M images instead of B (about B / q: 16 instead of 64 for scenes' five questions).
`in_order(split, batch_size)` gives evaluation batches of constant size, the last padded
by repeating its first row, with `valid` [B].
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from experiments.common import UserError, data_path
from experiments.vqa import corpora
from experiments.vqa.corpora import tokenize

PAD, EOS, BOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "</s>", "<s>", "<unk>")
OTHER = -1  # the answer class of answers outside the K
TYPES = ("count", "colour", "yes/no", "object", "other")
# What arrays["qtype"] indexes: `TYPES`, then the scenes' own types, then VQA's answer types
# ("yes/no", "other" are shared); a type outside these counts as "other".
QTYPE_NAMES = TYPES + ("shape", "exist", "relation", "number")
SCENES_SEED = 0  # the scenes' splits are fixed: the run's --seed does not change them
_YES_NO_STARTS = ("is", "are", "does", "do", "did", "can", "could", "was", "were", "has",
                  "have", "will", "would", "should")


def question_type(tokens: Sequence[str]) -> str:
  """A question's type of `TYPES` from its first words (module docstring)."""
  t = list(tokens)
  head = t[:5]
  if t[:2] == ["how", "many"] or ("number" in head and "of" in head):
    return "count"
  if t[:1] in (["what"], ["which"]) and ("colour" in head or "color" in head):
    return "colour"
  if t[:1] and t[0] in _YES_NO_STARTS:
    return "yes/no"
  if t[:1] in (["what"], ["which"]):
    return "object"
  return "other"


def normalize_answer(answer: str) -> str:
  """An answer's words, lower case, single spaces; list items joined by ", "."""
  items = [" ".join(tokenize(item)) for item in answer.split(",")]
  return ", ".join(item for item in items if item)


def same_answer(predicted: str, gold: str) -> bool:
  """Whether two answers agree: the same words in order, or, when either is a list
  ("table, chair"), the same set of words."""
  if "," in predicted or "," in gold:
    return set(tokenize(predicted.replace(",", " "))) == set(tokenize(gold.replace(",", " ")))
  return tokenize(predicted) == tokenize(gold)


def answer_words(answer_list: Sequence[str]) -> list[str]:
  """The words an answer generator writes: ("chair", "table") -> ["chair", "table"]."""
  return [w for item in answer_list for w in tokenize(item)]


# ----------------------------------------------------------------------------- vocabularies

class Vocabulary:
  """Words <-> ids; ids 0-3 are `SPECIALS` (pad, end, start, unknown)."""

  def __init__(self, words: Sequence[str]):
    self.words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, token_lists: Sequence[Sequence[str]], min_count: int = 1) -> "Vocabulary":
    """The words seen at least `min_count` times, sorted."""
    counts = collections.Counter(w for tokens in token_lists for w in tokens)
    return cls(sorted(w for w, n in counts.items() if n >= min_count))

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, tokens: Sequence[str]) -> list[int]:
    return [self.index.get(w, UNK) for w in tokens]

  def decode(self, ids) -> list[str]:
    """Words up to the first EOS (or PAD)."""
    words = []
    for i in ids:
      i = int(i)
      if i in (EOS, PAD):
        break
      words.append(self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK])
    return words


class Vocabularies(NamedTuple):
  """Question words, the K answer classes (most frequent first) and the answer words."""
  words: Vocabulary
  answers: list[str]
  answer_vocab: Vocabulary

  @classmethod
  def build(cls, train: "Split", min_count: int = 1, num_answers: int = 1000
            ) -> "Vocabularies":
    if num_answers < 1:
      raise UserError(f"num_answers={num_answers}: expected a positive number")
    counts = collections.Counter(normalize_answer(a) for a in train.answers)
    counts.pop("", None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_answers]
    return cls(Vocabulary.build(train.tokens, min_count), [a for a, _ in ranked],
               Vocabulary.build([answer_words(a) for a in train.answer_lists]))

  def answer_class(self, answer: str) -> int:
    """The class of an answer: 0..K-1, or OTHER."""
    try:
      return self._class_index()[normalize_answer(answer)]
    except KeyError:
      return OTHER

  def _class_index(self) -> dict:
    return {a: k for k, a in enumerate(self.answers)}

  def answer_classes(self, answers: Sequence[str]) -> np.ndarray:
    """[N] int32 classes."""
    index = self._class_index()
    return np.array([index.get(normalize_answer(a), OTHER) for a in answers], np.int32)

  def decode_answer(self, ids) -> str:
    """A generated answer's ids (up to EOS) as its words joined by spaces."""
    return " ".join(self.answer_vocab.decode(ids))

  def save(self, path: str) -> None:
    from rnn_jax.training.workdir import atomic_write  # noqa: PLC0415
    atomic_write(path, json.dumps({"words": self.words.words[len(SPECIALS):],
                                   "answers": self.answers,
                                   "answer_words": self.answer_vocab.words[len(SPECIALS):]})
                 + "\n")

  @classmethod
  def load(cls, path: str) -> "Vocabularies":
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
    return cls(Vocabulary(d["words"]), list(d["answers"]), Vocabulary(d["answer_words"]))


def vocabularies_for(workdir: str, train: "Split", min_count: int,
                     num_answers: int) -> Vocabularies:
  """The workdir's vocabularies (built from the training split on the first run)."""
  path = os.path.join(workdir, "vocab.json")
  if os.path.exists(path):
    return Vocabularies.load(path)
  vocab = Vocabularies.build(train, min_count, num_answers)
  vocab.save(path)
  return vocab


# ----------------------------------------------------------------------------- splits

@dataclasses.dataclass(frozen=True)
class Split:
  """One split: M images and N questions about them (`encode` adds the arrays).

  Attributes:
    image_ids: [M] image ids.
    images: [M, H, W, 3] uint8, or None.
    features: [M, R, D] or [M, D] float32, or None.
    image_index: [N] int32, each question's image row.
    questions: [N] question texts as the corpus writes them.
    tokens: [N] tuples of question words.
    answers: [N] answers as the corpus gives them (DAQUAR: "table, chair").
    answer_lists: [N] tuples: the answer's items (DAQUAR's list, else (answer,)).
    all_answers: [N] tuples of VQA's ten human answers, or None for other corpora.
    qtypes: [N] question types.
    objects: scenes: [M] tuples of `SceneObject`; None for real corpora.
    arrays: `encode`'s arrays (module docstring), or None.
  """
  image_ids: list
  images: np.ndarray | None
  features: np.ndarray | None
  image_index: np.ndarray
  questions: list
  tokens: list
  answers: list
  answer_lists: list
  all_answers: list | None
  qtypes: list
  objects: list | None = None
  arrays: dict | None = None

  def __len__(self) -> int:
    return len(self.questions)

  @property
  def inputs(self) -> np.ndarray:
    return self.images if self.images is not None else self.features


class Corpus(NamedTuple):
  train: Split
  valid: Split
  test: Split


def from_qa_split(qa: corpora.QASplit) -> Split:
  """A corpus' `QASplit` as a `Split`; questions without their own type get
  `question_type`'s."""
  records = qa.records
  has_all = any(r.all_answers for r in records)
  return Split(
      image_ids=list(qa.image_ids), images=qa.images,
      features=None if qa.features is None else np.asarray(qa.features, np.float32),
      image_index=qa.image_index, questions=[r.question for r in records],
      tokens=[tuple(r.tokens) for r in records], answers=[r.answer for r in records],
      answer_lists=[tuple(r.answer_list) for r in records],
      all_answers=[tuple(r.all_answers) for r in records] if has_all else None,
      qtypes=[r.qtype or question_type(r.tokens) for r in records])


def scenes_split(split: str, num_images: int, questions_per_image: int, *,
                 seed: int = SCENES_SEED, kind: str = "shapes", digits=None,
                 max_objects: int = 4) -> Split:
  """`scene_questions.make_qa_split` as a `Split` (questions image by image)."""
  from experiments.vision import scene_questions  # noqa: PLC0415
  qa = scene_questions.make_qa_split(split, num_images, questions_per_image, seed=seed,
                                     kind=kind, digits=digits, max_objects=max_objects)
  flat = [(i, q, a, t) for i in range(len(qa.questions))
          for q, a, t in zip(qa.questions[i], qa.answers[i], qa.types[i])]
  return Split(image_ids=[int(i) for i in qa.ids], images=qa.images, features=None,
               image_index=np.array([i for i, *_ in flat], np.int32),
               questions=[q for _, q, _, _ in flat],
               tokens=[tuple(tokenize(q)) for _, q, _, _ in flat],
               answers=[a for _, _, a, _ in flat], answer_lists=[(a,) for _, _, a, _ in flat],
               all_answers=None, qtypes=[t for *_, t in flat], objects=list(qa.objects))


def take_images(split: Split, rows: Sequence[int]) -> Split:
  """The sub-split of those image rows (in that order) and all their questions."""
  rows = [int(r) for r in rows]
  new_row = {r: k for k, r in enumerate(rows)}
  keep = [n for n in range(len(split)) if int(split.image_index[n]) in new_row]
  pick = lambda xs: None if xs is None else [xs[n] for n in keep]  # noqa: E731
  image_index = np.array([new_row[int(split.image_index[n])] for n in keep], np.int32)
  arrays = None
  if split.arrays is not None:
    arrays = {k: v[np.array(keep, np.int64)] for k, v in split.arrays.items()}
    arrays["image_index"] = image_index
  return dataclasses.replace(
      split, image_ids=[split.image_ids[r] for r in rows],
      images=None if split.images is None else split.images[rows],
      features=None if split.features is None else split.features[rows],
      image_index=image_index, questions=pick(split.questions), tokens=pick(split.tokens),
      answers=pick(split.answers), answer_lists=pick(split.answer_lists),
      all_answers=pick(split.all_answers), qtypes=pick(split.qtypes),
      objects=None if split.objects is None else [split.objects[r] for r in rows],
      arrays=arrays)


def hold_out(split: Split, num_images: int) -> tuple[Split, Split]:
  """(the split without its last `num_images` images, those images): a validation split
  carved out of a training split that has none."""
  m = len(split.image_ids)
  if not 0 <= num_images < m:
    raise UserError(f"--valid_images={num_images}: expected 0 to {m - 1} of the {m} "
                    "training images")
  return take_images(split, range(m - num_images)), take_images(split, range(m - num_images, m))


# ----------------------------------------------------------------------------- loading

def _limit(split: Split, n: int) -> Split:
  return split if n <= 0 or n >= len(split.image_ids) else take_images(split, range(n))


def _scenes(config) -> Corpus:
  from experiments.vision import scenes  # noqa: PLC0415
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
      out.append(scenes_split(split, n, config.questions_per_image, kind=config.scenes,
                              digits=digits, max_objects=config.scenes_max_objects))
    except ValueError as e:
      raise UserError(f"--scenes_max_objects / --questions_per_image: {e}") from None
  return Corpus(*out)


def _real(config) -> Corpus:
  size = config.image_size
  features = config.features_dir or None
  if config.corpus == "daquar":
    root = data_path(config, "daquar")
    image_dir = None if features else corpora.daquar_images(root)
    read = lambda split: corpora.daquar(root, split, image_dir=image_dir,  # noqa: E731
                                        feature_dir=features, image_size=size)
    train, test = read("train"), read("test")
  elif config.corpus == "vqa":
    if len(config.vqa_questions) != 2 or len(config.vqa_annotations) != 2:
      raise UserError("--corpus=vqa needs --vqa_questions=TRAIN,TEST and "
                      "--vqa_annotations=TRAIN,TEST (the official JSON files)")
    if not (config.image_dir or features):
      raise UserError("--corpus=vqa needs --image_dir or --features_dir")
    train, test = (corpora.vqa_json(q, a, image_dir=config.image_dir or None,
                                    feature_dir=features, image_size=size)
                   for q, a in zip(config.vqa_questions, config.vqa_annotations))
  else:  # clevr: its test split has no answers, so its validation split is the test
    n_train = config.train_images + config.valid_images if config.train_images > 0 else None
    train = corpora.tfds_clevr("train", data_dir=config.data_dir or None, image_size=size,
                               limit=n_train)
    test = corpora.tfds_clevr("validation", data_dir=config.data_dir or None,
                              image_size=size,
                              limit=config.test_images if config.test_images > 0 else None)
  train, test = from_qa_split(train), from_qa_split(test)
  train, valid = hold_out(train, config.valid_images)
  return Corpus(_limit(train, config.train_images), valid, _limit(test, config.test_images))


def load(config) -> Corpus:
  """The corpus of `--corpus`: scenes are generated; DAQUAR, VQA v2 and CLEVR hold their
  last `--valid_images` training images out for validation, then keep the first
  `--train_images` / `--test_images` images (all when <= 0)."""
  if config.corpus == "scenes":
    return _scenes(config)
  if config.corpus in ("daquar", "vqa", "clevr"):
    return _real(config)
  raise UserError(f"--corpus: expected scenes, daquar, vqa or clevr, got {config.corpus!r}")


# ----------------------------------------------------------------------------- arrays, batches

def pad(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
  """[N, length] int32: each row cut to `length`, PAD after it."""
  out = np.full((len(rows), length), PAD, np.int32)
  for i, r in enumerate(rows):
    r = list(r)[:length]
    out[i, :len(r)] = r
  return out


def encode_questions(token_lists: Sequence[Sequence[str]], vocab: Vocabulary,
                     max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids [N, T] int32, lengths [N] int32): words cut to T = max_len, PAD after."""
  ids = [vocab.encode(t)[:max_len] for t in token_lists]
  return pad(ids, max_len), np.array([len(i) for i in ids], np.int32)


def encode_answers(answer_lists: Sequence[Sequence[str]], vocab: Vocabulary,
                   max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids [N, max_len + 1] int32, lengths [N] int32): the answer's words cut to max_len,
  then EOS, PAD after; lengths count the EOS."""
  ids = [vocab.encode(answer_words(a))[:max_len] + [EOS] for a in answer_lists]
  return pad(ids, max_len + 1), np.array([len(i) for i in ids], np.int32)


def encode(split: Split, vocab: Vocabularies, max_question_len: int,
           max_answer_len: int) -> Split:
  """The split with its arrays (module docstring: every key but "images")."""
  questions, question_lengths = encode_questions(split.tokens, vocab.words, max_question_len)
  answer_tokens, answer_lengths = encode_answers(split.answer_lists, vocab.answer_vocab,
                                                 max_answer_len)
  names = {t: k for k, t in enumerate(QTYPE_NAMES)}
  return dataclasses.replace(split, arrays={
      "image_index": np.asarray(split.image_index, np.int32),
      "questions": questions, "question_lengths": question_lengths,
      "answer_class": vocab.answer_classes(split.answers),
      "answer_tokens": answer_tokens, "answer_lengths": answer_lengths,
      "qtype": np.array([names.get(t, names["other"]) for t in split.qtypes], np.int32)})


def batch(split: Split, rows: Sequence[int], num_images: int | None = None) -> dict:
  """The questions `rows` of an encoded split with their images: a dict of numpy arrays.

  With `num_images` M, "images" holds the rows' distinct images once each (padded to M by
  repeating the first) and "image_slot" [B] points each question at its image."""
  if split.arrays is None:
    raise ValueError("batch() needs an encoded split: data.encode(split, vocab, ...)")
  rows = np.asarray(rows, np.int64)
  out = {k: v[rows] for k, v in split.arrays.items()}
  if num_images is None:
    out["images"] = split.inputs[out["image_index"]]
    return out
  distinct, slot = np.unique(out["image_index"], return_inverse=True)
  if len(distinct) > num_images:
    raise ValueError(f"the batch holds {len(distinct)} images, more than num_images="
                     f"{num_images}")
  distinct = np.concatenate([distinct, np.full(num_images - len(distinct), distinct[0])])
  out["images"] = split.inputs[distinct]
  out["image_slot"] = slot.reshape(-1).astype(np.int32)
  return out


def known_rows(split: Split) -> np.ndarray:
  """[n] int64: the rows whose answer is one of the K classes (what classifiers train on)."""
  return np.flatnonzero(split.arrays["answer_class"] >= 0)


def by_image_order(image_index: np.ndarray, seed: int, epoch: int) -> np.ndarray:
  """A permutation of the rows whose images `image_index [n]` come in a shuffled order,
  each image's rows together and shuffled among themselves (`Batches(by_image=True)`)."""
  rng = np.random.default_rng([seed, epoch, 1])
  rank = rng.permutation(int(image_index.max()) + 1)
  return np.lexsort((rng.random(len(image_index)), rank[image_index]))


def batch_rows(step: int, num_rows: int, batch_size: int, seed: int,
               order: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
  """[B] int64 positions 0..num_rows-1 of batch `step` in the epoch-wise shuffled stream:
  epoch e is `order(e)`, by default `default_rng([seed, e]).permutation(num_rows)`."""
  if num_rows < 1:
    raise UserError("no training questions to batch")
  pos = np.arange(step * batch_size, (step + 1) * batch_size)
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(pos // num_rows):
    order_e = (np.random.default_rng([seed, int(epoch)]).permutation(num_rows)
               if order is None else order(int(epoch)))
    here = pos // num_rows == epoch
    out[here] = order_e[pos[here] % num_rows]
  return out


class Batches:
  """`batches(step)`: training batch `step`, a pure function of (rows, batch_size, seed, step).

  Args:
    split: an encoded split.
    batch_size: B.
    seed: the shuffling seed.
    rows: the questions to draw from (e.g. `known_rows(split)`), or None for all.
    by_image: each image's questions together, each image once per batch (module
      docstring), so that the CNN runs once per image.
    image_multiple: with `by_image`, M is a multiple of this (the devices of a process).
  """

  def __init__(self, split: Split, batch_size: int, seed: int,
               rows: Sequence[int] | None = None, by_image: bool = False,
               image_multiple: int = 1):
    self.split, self.batch_size, self.seed = split, batch_size, seed
    self.rows = np.arange(len(split)) if rows is None else np.asarray(rows, np.int64)
    self.order, self._fewest, self._multiple = None, None, image_multiple
    if by_image and len(self.rows):
      index = np.asarray(split.image_index, np.int64)[self.rows]
      self.order = functools.lru_cache(maxsize=2)(
          lambda epoch: by_image_order(index, seed, epoch))
      self._fewest = int(np.bincount(index)[np.unique(index)].min())

  def num_images(self, process_count: int = 1) -> int | None:
    """M, the images of one process's batch (None without `by_image`)."""
    if self._fewest is None:
      return None
    b = self.batch_size // process_count
    return _round_up(min(b, 4 + max(b - 4, 0) // self._fewest), self._multiple)

  def __len__(self) -> int:
    return len(self.rows)

  def __call__(self, step: int, process: tuple[int, int] = (0, 1)) -> dict:
    rows = self.rows[batch_rows(step, len(self.rows), self.batch_size, self.seed,
                                self.order)]
    index, count = process
    B = self.batch_size
    m = self.num_images(count)
    out = batch(self.split, rows[index * B // count:(index + 1) * B // count], m)
    if m is not None:  # into the images of every process, concatenated in order
      out["image_slot"] += index * m
    return out


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def in_order(split: Split, batch_size: int) -> Iterator[dict]:
  """Every question once, in order, in batches of `batch_size`; the last is padded by
  repeating its first row, and "valid" [B] bool marks the real ones."""
  n = len(split)
  for lo in range(0, n, batch_size):
    rows = np.arange(lo, min(lo + batch_size, n))
    fill = batch_size - len(rows)
    valid = np.arange(batch_size) < len(rows)
    rows = np.concatenate([rows, np.full((fill,), rows[0])])
    out = batch(split, rows)
    out["valid"] = valid
    yield out
