"""Real VQA corpora, each read into one `QASplit` of `QARecord`s.

    split = corpora.daquar(data_dir, "train", image_dir=corpora.daquar_images(data_dir))
    split.records[k]        # QARecord(question, tokens, image_id, answer, answer_list, ...)
    split.image_ids         # [M] the split's images; split.image_index [N]: each question's row
    split.images            # [M, H, W, 3] uint8 or None;  split.features [M, R, D] / [M, D] or None

Records. `QARecord` holds the question as the corpus writes it (`question`), its words
(`tokens`, from `tokenize`: lower case, punctuation dropped, "_" kept), the image id, the
answer as the corpus gives it (`answer`), its parts (`answer_list`: DAQUAR's comma-separated
items, else `(answer,)`), the human answers of VQA v2 (`all_answers`, ten; `()` elsewhere),
the split, a question id and the corpus' own question type (`qtype`; VQA v2's
`answer_type`, "" where the corpus has none: `experiments.vqa.data.question_type` derives
one from the words).

- `daquar(data_dir, split)`: DAQUAR (Malinowski & Fritz 2014), `data_dir/all_qa_pairs.txt`
  (question and answer on alternating lines; 12,468 pairs), `data_dir/{train,test}_images_list.txt`
  (795 / 654 images; 6,795 / 5,673 pairs) and `data_dir/images/imageN.jpg`. The image is
  named inside the question ("what is on the desk in the image1 ?"): its id is the last
  `imageN` word of the question (a few questions name it twice, never two images). The
  question keeps its text; in `tokens` every `imageN` becomes "image" ("... on the desk in
  the image"), so the words still read as a sentence but do not give the image away (the
  mention is the same for every question, so it carries nothing to learn). Answers may list
  several items ("table, chair"): `answer` keeps the line, `answer_list` the items.
  Question ids are the pairs' positions in the file (0-based; the question is on line
  2 id + 1).
- `vqa_json(questions, annotations)`: VQA v1/v2's official JSON: the questions file
  (`{"data_subtype": "train2014", "questions": [{"image_id", "question", "question_id"}]}`)
  and the annotations file (`{"annotations": [{"question_id", "image_id", "question_type",
  "answer_type", "answers": [10 x {"answer", "answer_confidence", "answer_id"}],
  "multiple_choice_answer"}]}`; optional: test questions have none, and their answers are
  ""). `answer` is the `multiple_choice_answer`, `all_answers` the ten answers, `qtype` the
  `answer_type` ("yes/no", "number", "other"). Images are COCO's files,
  `COCO_<data_subtype>_<image id, 12 digits>.jpg`.
- `tfds_clevr(split)`: TFDS `clevr` (CLEVR v1.0: image, file_name, objects,
  question_answer {question, answer}); one record per question, image ids the file
  stems, question ids the questions' positions in the split. TFDS downloads and prepares
  it (18 GB) on first use unless `download=False`. `clevr_records` converts one example.

Images (`image_dir=`): `image_folder` opens each file with Pillow, converts it to RGB and
resizes it to `image_size` (an int for a square, or (height, width); bilinear). Features
(`feature_dir=`): `feature_folder` reads `<feature_dir>/<stem>.npy` per image, `[R, D]` or
`[D]`. Problems with the files are one-line `UserError`s naming the file (and the line).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, NamedTuple, Sequence

import numpy as np

from experiments import common
from experiments.common import UserError

DAQUAR_SPLITS = ("train", "test")
DEFAULT_IMAGE_SIZE = 224
_PUNCTUATION = re.compile(r"[^\w\s']")
_DAQUAR_IMAGE = re.compile(r"\bimage(\d+)\b")


def tokenize(text: str) -> list[str]:
  """Lower-cased words without punctuation ("_" and "'" kept): "What's on it?" ->
  ["what's", "on", "it"]."""
  return _PUNCTUATION.sub(" ", text.lower()).split()


class QARecord(NamedTuple):
  """One question about one image (module docstring)."""
  question: str                  # as the corpus writes it
  tokens: tuple[str, ...]        # its words (DAQUAR: imageN -> "image")
  image_id: Any                  # DAQUAR "image1", VQA COCO's int id, CLEVR the file stem
  answer: str                    # as the corpus gives it ("" when it has none)
  answer_list: tuple[str, ...]   # DAQUAR's comma-separated items, else (answer,)
  all_answers: tuple[str, ...]   # VQA: the ten human answers; () elsewhere
  split: str
  question_id: int
  qtype: str = ""                # the corpus' own type, "" when it has none


@dataclasses.dataclass
class QASplit:
  """One split of a VQA corpus.

  Attributes:
    records: N `QARecord`s, in the corpus' order.
    image_ids: the split's M images (each record's `image_id` is one of them).
    names: their file names (relative to the image folder).
    images: `[M, H, W, 3]` uint8, or None.
    features: `[M, R, D]` or `[M, D]` float32, or None.
  """
  records: list
  image_ids: list
  names: list
  images: np.ndarray | None = None
  features: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.records)

  @property
  def image_index(self) -> np.ndarray:
    """[N] int32: the row of `image_ids` (and `images`) each record asks about."""
    row = {image_id: k for k, image_id in enumerate(self.image_ids)}
    return np.array([row[r.image_id] for r in self.records], np.int32)


def stem(name: str) -> str:
  """A file name without its folder and extension: the key of its feature file."""
  return os.path.splitext(os.path.basename(name))[0]


# ----------------------------------------------------------------------------- images, features

def _image_shape(image_size) -> tuple[int, int]:
  size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
    raise UserError(f"image_size={image_size!r}: expected a positive number of pixels or "
                    "(height, width)")
  return size


def _missing(paths, what):
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserError(f"{len(missing)} of {len(paths)} {what} missing, the first {missing[0]}")


def _resize(im, shape):
  from PIL import Image  # noqa: PLC0415
  return np.asarray(im.convert("RGB").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def image_folder(image_dir: str, names: Sequence[str],
                 image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE) -> np.ndarray:
  """Images read with Pillow, as RGB, resized: `[N, H, W, 3]` uint8.

  Args:
    image_dir: the folder the names are relative to.
    names: file names (or relative paths).
    image_size: S for S x S, or (H, W) (bilinear; a square does not keep the aspect ratio:
      DAQUAR's 224 x 170 images keep theirs at (170, 224)).

  Raises:
    UserError: the folder or a file is missing (the first one and the count), or an image
      is unreadable.
  """
  shape = _image_shape(image_size)
  if not os.path.isdir(image_dir):
    raise UserError(f"image folder {image_dir} does not exist")
  paths = [os.path.join(image_dir, n) for n in names]
  _missing(paths, "image files are")
  from PIL import Image  # noqa: PLC0415
  out = np.empty((len(paths), *shape, 3), np.uint8)  # [N, H, W, 3]
  for k, path in enumerate(paths):
    try:
      with Image.open(path) as im:
        out[k] = _resize(im, shape)
    except OSError as e:
      raise UserError(f"image {path} is unreadable: {e}") from None
  return out


def feature_folder(feature_dir: str, names: Sequence[str]) -> np.ndarray:
  """Precomputed features, one `<stem>.npy` per image: `[N, R, D]` or `[N, D]` float32.

  Raises:
    UserError: the folder or a file is missing (the first one and the count), a file is
      unreadable, or the files' shapes differ.
  """
  if not os.path.isdir(feature_dir):
    raise UserError(f"feature folder {feature_dir} does not exist")
  paths = [os.path.join(feature_dir, stem(n) + ".npy") for n in names]
  _missing(paths, "feature files are")
  out = None
  for k, path in enumerate(paths):
    try:
      x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise UserError(f"feature file {path} is unreadable: {e}") from None
    if x.ndim not in (1, 2):
      raise UserError(f"feature file {path} has shape {x.shape}: expected [R, D] or [D]")
    if out is None:
      out = np.empty((len(paths), *x.shape), np.float32)  # [N, R, D] or [N, D]
    elif x.shape != out.shape[1:]:
      raise UserError(f"feature file {path} has shape {x.shape}, {paths[0]} "
                      f"{out.shape[1:]}: all must agree")
    out[k] = x
  return np.zeros((0, 0), np.float32) if out is None else out


def _attach(split: QASplit, image_dir, feature_dir, image_size) -> QASplit:
  if image_dir is not None:
    split.images = image_folder(image_dir, split.names, image_size)
  if feature_dir is not None:
    split.features = feature_folder(feature_dir, split.names)
  return split


def _check_limit(limit):
  if limit is not None and (not isinstance(limit, int) or limit < 1):
    raise UserError(f"limit={limit!r}: expected a positive number of images or None")


def _read_lines(path):
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().splitlines()
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None


def _read_json(path):
  return common.read_json(path)


# ----------------------------------------------------------------------------- DAQUAR

def daquar_images(data_dir: str) -> str:
  """DAQUAR's image folder, `data_dir/images`."""
  return os.path.join(data_dir, "images")


def daquar_pairs(path: str) -> list[tuple[str, str, str]]:
  """`all_qa_pairs.txt` as [(question, image id, answer), ...] in the file's order.

  Raises:
    UserError: the file is missing, a question has no answer line, a question names no
      image, or an answer line is empty or names an image -- with the line number.
  """
  lines = _read_lines(path)
  while lines and not lines[-1].strip():
    lines.pop()
  if len(lines) % 2:
    raise UserError(f"{path}:{len(lines)}: the question has no answer line (questions and "
                    "answers alternate)")
  out = []
  for k in range(0, len(lines), 2):
    question, answer = lines[k].strip(), lines[k + 1].strip()
    images = _DAQUAR_IMAGE.findall(question)
    if not images:
      raise UserError(f"{path}:{k + 1}: expected a question naming its image ('... in the "
                      f"image1 ?'), got {question[:60]!r}")
    if len(set(images)) > 1:
      raise UserError(f"{path}:{k + 1}: the question names several images "
                      f"{sorted(set(images))}")
    if not answer or _DAQUAR_IMAGE.search(answer):
      raise UserError(f"{path}:{k + 2}: expected an answer, got {answer[:60]!r} (questions "
                      "and answers alternate)")
    out.append((question, f"image{images[-1]}", answer))
  return out


def daquar_tokens(question: str) -> tuple[str, ...]:
  """A DAQUAR question's words, each `imageN` made "image": "what is in the image1 ?" ->
  ("what", "is", "in", "the", "image")."""
  return tuple(tokenize(_DAQUAR_IMAGE.sub("image", question)))


def daquar(data_dir: str, split: str, *, image_dir: str | None = None,
           feature_dir: str | None = None,
           image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
           limit: int | None = None) -> QASplit:
  """A DAQUAR split (module docstring).

  Args:
    data_dir: the folder of all_qa_pairs.txt and the image lists ($RNN_JAX_DATA/daquar).
    split: "train" (795 images, 6,795 questions) or "test" (654, 5,673).
    image_dir: the folder of imageN.jpg (`daquar_images(data_dir)`), or None for no images.
    feature_dir: the folder of `imageN.npy` features, or None.
    image_size: S or (H, W) of the resized images.
    limit: the first this many images of the split's list (with all their questions), or
      None for all.

  Returns:
    A `QASplit`: image ids "imageN" in the list's order (one image of each list has no
    question), records in the file's order.
  """
  if split not in DAQUAR_SPLITS:
    raise UserError(f"daquar split {split!r}: choose train or test")
  _check_limit(limit)
  list_path = os.path.join(data_dir, f"{split}_images_list.txt")
  image_ids = [n.strip() for n in _read_lines(list_path) if n.strip()][:limit]
  for k, image_id in enumerate(image_ids):
    if not re.fullmatch(r"image\d+", image_id):
      raise UserError(f"{list_path}:{k + 1}: expected an image name such as image1, got "
                      f"{image_id[:60]!r}")
  wanted = set(image_ids)
  records = []
  for qid, (question, image_id, answer) in enumerate(
      daquar_pairs(os.path.join(data_dir, "all_qa_pairs.txt"))):
    if image_id in wanted:
      items = tuple(a.strip() for a in answer.split(",") if a.strip())
      records.append(QARecord(question, daquar_tokens(question), image_id, answer, items, (),
                              split, qid))
  out = QASplit(records, image_ids, [f"{i}.jpg" for i in image_ids])
  return _attach(out, image_dir, feature_dir, image_size)


# ----------------------------------------------------------------------------- VQA v2

def coco_file_name(data_subtype: str, image_id: int) -> str:
  """COCO's file name: `COCO_train2014_000000000009.jpg`."""
  return f"COCO_{data_subtype}_{int(image_id):012d}.jpg"


def vqa_json(questions_path: str, annotations_path: str | None = None, *,
             image_dir: str | None = None, feature_dir: str | None = None,
             image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
             limit: int | None = None, data_subtype: str | None = None) -> QASplit:
  """VQA's official questions (and annotations) JSON (module docstring).

  Args:
    questions_path: e.g. v2_OpenEnded_mscoco_train2014_questions.json.
    annotations_path: e.g. v2_mscoco_train2014_annotations.json, or None (answers "").
    image_dir: the folder of the COCO images (COCO_<subtype>_<id>.jpg), or None.
    feature_dir: the folder of `COCO_<subtype>_<id>.npy` features, or None.
    image_size: S or (H, W) of the resized images.
    limit: the questions of the first this many images (by first appearance), or None.
    data_subtype: "train2014", "val2014", ...: the file names' part; by default the
      questions file's "data_subtype".

  Returns:
    A `QASplit` in the questions file's order; image ids COCO's ints; split the subtype.
  """
  _check_limit(limit)
  data = _read_json(questions_path)
  if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
    raise UserError(f"{questions_path}: expected VQA's questions format, "
                    "{'questions': [{'image_id', 'question', 'question_id'}, ...]}")
  subtype = data_subtype or data.get("data_subtype")
  if not subtype:
    raise UserError(f"{questions_path} has no 'data_subtype': pass data_subtype= (e.g. "
                    "train2014), which names the COCO image files")
  annotations = None
  if annotations_path is not None:
    ann = _read_json(annotations_path)
    if not isinstance(ann, dict) or not isinstance(ann.get("annotations"), list):
      raise UserError(f"{annotations_path}: expected VQA's annotations format, "
                      "{'annotations': [{'question_id', 'answers', ...}, ...]}")
    try:
      annotations = {a["question_id"]: a for a in ann["annotations"]}
    except (KeyError, TypeError) as e:
      raise UserError(f"{annotations_path}: an annotation lacks {e}") from None
  records, image_ids, seen = [], [], set()
  for k, q in enumerate(data["questions"]):
    try:
      image_id, text, qid = int(q["image_id"]), str(q["question"]), int(q["question_id"])
    except (KeyError, TypeError, ValueError) as e:
      raise UserError(f"{questions_path}: questions[{k}] lacks {e} (image_id, question, "
                      "question_id)") from None
    if image_id not in seen:
      if limit is not None and len(image_ids) == limit:
        continue
      seen.add(image_id)
      image_ids.append(image_id)
    answer, all_answers, qtype = "", (), ""
    if annotations is not None:
      a = annotations.get(qid)
      if a is None:
        raise UserError(f"{annotations_path} has no annotation for question_id {qid} "
                        f"(questions[{k}])")
      try:
        answer = str(a["multiple_choice_answer"])
        all_answers = tuple(str(x["answer"]) for x in a["answers"])
        qtype = str(a.get("answer_type", ""))
        ann_image = int(a.get("image_id", image_id))
      except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{annotations_path}: the annotation of question_id {qid} lacks "
                        f"{e} (multiple_choice_answer, answers [{{answer}}])") from None
      if ann_image != image_id:
        raise UserError(f"question_id {qid}: image_id {image_id} in {questions_path} but "
                        f"{ann_image} in {annotations_path}")
    records.append(QARecord(text, tuple(tokenize(text)), image_id, answer,
                            (answer,) if answer else (), all_answers, subtype, qid, qtype))
  out = QASplit(records, image_ids, [coco_file_name(subtype, i) for i in image_ids])
  return _attach(out, image_dir, feature_dir, image_size)


# ----------------------------------------------------------------------------- CLEVR (TFDS)

CLEVR_SPLITS = {"train": "train", "validation": "validation", "val": "validation",
                "valid": "validation", "test": "test"}


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def clevr_records(example: dict, split: str, first_question_id: int = 0) -> list[QARecord]:
  """The records of one TFDS `clevr` example: one per question, in order.

  Args:
    example: {"file_name": str or bytes, "question_answer": {"question": [Q], "answer":
      [Q]}, ...} as `tfds.data_source("clevr")` gives it (the test split's answers are "").
    split: the split name the records carry.
    first_question_id: the id of the example's first question.

  Raises:
    UserError: more answers than questions.
  """
  name = _text(example["file_name"])
  qa = example.get("question_answer", {"question": [], "answer": []})
  questions = [_text(q) for q in np.asarray(qa["question"]).reshape(-1)]
  answers = [_text(a) for a in np.asarray(qa["answer"]).reshape(-1)]
  if len(answers) > len(questions):
    raise UserError(f"clevr {name}: {len(answers)} answers for {len(questions)} questions")
  answers += [""] * (len(questions) - len(answers))  # the test split has no answers
  return [QARecord(q, tuple(tokenize(q)), stem(name), a, (a,) if a else (), (), split,
                   first_question_id + k) for k, (q, a) in enumerate(zip(questions, answers))]


def tfds_clevr(split: str, *, data_dir: str | None = None,
               image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
               limit: int | None = None, download: bool = True) -> QASplit:
  """TFDS `clevr` (module docstring), images resized.

  Args:
    split: "train", "validation" ("val", "valid") or "test" (its answers are "").
    data_dir: TFDS's data dir, or None for its default (`~/tensorflow_datasets`).
    image_size: S or (H, W) of the resized images (CLEVR's are 480 x 320 RGBA).
    limit: the first this many images (with all their questions), or None for all.
    download: let TFDS download and prepare the dataset when it is not there.

  Returns:
    A `QASplit` with images; image ids and names are the file stems and names.
  """
  if split not in CLEVR_SPLITS:
    raise UserError(f"clevr split {split!r}: choose among train, validation (val, valid), "
                    "test")
  _check_limit(limit)
  shape = _image_shape(image_size)
  import tensorflow_datasets as tfds  # noqa: PLC0415 - a slow import
  try:
    source = tfds.data_source("clevr", split=CLEVR_SPLITS[split], data_dir=data_dir,
                              download=download)
  except Exception as e:  # noqa: BLE001 - TFDS raises several kinds for a missing dataset
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"clevr ({split}) is not available under "
                    f"{data_dir or 'the TFDS default data dir'}: {first}") from None
  from PIL import Image  # noqa: PLC0415
  records, image_ids, names, images = [], [], [], []
  for k in range(len(source) if limit is None else min(limit, len(source))):
    ex = source[k]
    records += clevr_records(ex, CLEVR_SPLITS[split], len(records))
    names.append(_text(ex["file_name"]))
    image_ids.append(stem(names[-1]))
    image = np.asarray(ex["image"])
    images.append(_resize(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image),
                          shape))
  stacked = np.stack(images) if images else np.zeros((0, *shape, 3), np.uint8)
  return QASplit(records, image_ids, names, images=stacked)
