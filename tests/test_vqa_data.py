"""experiments.vqa.corpora and experiments.vqa.data: DAQUAR's real files (when $RNN_JAX_DATA
has them) and malformed copies, VQA's official JSON written here, TFDS clevr through
tfds.testing.mock_data (no network, no files); vocabularies, answer classes, arrays and
batches on hand-made splits; `load` on scenes."""

import dataclasses
import json
import os
import re
import types

import numpy as np
import pytest
from PIL import Image

from experiments.common import UserError
from experiments.vqa import corpora, data

DATA = os.environ.get("RNN_JAX_DATA", "")
DAQUAR = os.path.join(DATA, "daquar")
needs_daquar = pytest.mark.skipif(
    not DATA or not os.path.exists(os.path.join(DAQUAR, "all_qa_pairs.txt")),
    reason="$RNN_JAX_DATA/daquar is absent")

COLORS = [(255, 0, 0), (0, 128, 255), (20, 200, 40), (250, 250, 0)]


def _fails(fn, message):
  with pytest.raises(UserError, match=message) as e:
    fn()
  assert "\n" not in str(e.value)


def _write_images(folder, names, size=(30, 20)):
  os.makedirs(folder, exist_ok=True)
  for k, name in enumerate(names):
    Image.new("RGB", size, COLORS[k % len(COLORS)]).save(os.path.join(folder, name),
                                                         format="JPEG", quality=95)


def _write_features(folder, stems, shape):
  os.makedirs(folder, exist_ok=True)
  for k, s in enumerate(stems):
    np.save(os.path.join(folder, s + ".npy"), np.full(shape, k, np.float64))


# ----------------------------------------------------------------------------- DAQUAR

@needs_daquar
def test_daquar_real_files():
  train, test = corpora.daquar(DAQUAR, "train"), corpora.daquar(DAQUAR, "test")
  assert (len(train), len(test)) == (6795, 5673)
  assert (len(train.image_ids), len(test.image_ids)) == (795, 654)
  assert not set(train.image_ids) & set(test.image_ids)
  ids = sorted(r.question_id for r in train.records + test.records)
  assert ids == list(range(12468))  # every pair of the file, in one split or the other
  with open(os.path.join(DAQUAR, "all_qa_pairs.txt"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  for r in train.records[:50] + test.records[-50:]:
    assert lines[2 * r.question_id] == r.question and lines[2 * r.question_id + 1] == r.answer
    assert r.image_id == re.findall(r"image\d+", r.question)[-1]
    assert "image" in r.tokens and not any(re.fullmatch(r"image\d+", t) for t in r.tokens)
    assert "?" not in r.tokens and r.split in ("train", "test") and r.all_answers == ()
  assert train.records[0].image_id == "image3" == train.image_ids[0]
  lists = [r for r in train.records if "," in r.answer]
  assert lists and all(len(r.answer_list) == r.answer.count(",") + 1 for r in lists)
  assert all(" " not in a for r in lists for a in r.answer_list)
  rows = train.image_index
  assert rows.shape == (6795,) and rows.dtype == np.int32
  assert all(train.image_ids[rows[k]] == r.image_id for k, r in enumerate(train.records))
  split = data.from_qa_split(test)
  counts = {t: split.qtypes.count(t) for t in data.TYPES}
  assert counts["count"] > 500 and counts["colour"] > 300 and counts["object"] > 3000, counts
  few = corpora.daquar(DAQUAR, "test", limit=2)
  assert few.image_ids == test.image_ids[:2]
  assert [r.question_id for r in few.records] == [r.question_id for r in test.records
                                                   if r.image_id in few.image_ids]


@needs_daquar
def test_daquar_images_and_features(tmp_path):
  s = corpora.daquar(DAQUAR, "train", limit=3, image_dir=corpora.daquar_images(DAQUAR),
                     image_size=(17, 22))
  assert s.images.shape == (3, 17, 22, 3) and s.images.dtype == np.uint8
  assert s.images.std() > 10  # real photographs
  square = corpora.daquar(DAQUAR, "train", limit=2, image_dir=corpora.daquar_images(DAQUAR),
                          image_size=8)
  assert square.images.shape == (2, 8, 8, 3)
  _write_features(str(tmp_path / "f"), s.image_ids, (5, 3))
  f = corpora.daquar(DAQUAR, "train", limit=3, feature_dir=str(tmp_path / "f"))
  assert f.features.shape == (3, 5, 3) and f.images is None
  np.testing.assert_array_equal(f.features[:, 0, 0], [0, 1, 2])


def _daquar_files(folder, pairs, train=("image1", "image2"), test=("image3",)):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "all_qa_pairs.txt"), "w") as f:
    f.write("\n".join(line for q, a in pairs for line in (q, a)))
  (folder / "train_images_list.txt").write_text("\n".join(train) + "\n")
  (folder / "test_images_list.txt").write_text("\n".join(test) + "\n")
  return str(folder)


PAIRS = [("what is on the table in the image1 ?", "lamp"),
         ("how many chairs are there in the image3 ?", "2"),
         ("what is the colour of the bed in the image2 ?", "white"),
         ("what is on the left of the image2 behind the door in the image2 ?", "book, pen"),
         ("what are the things on the desk in the image1 ?", "tape_dispenser, cup")]


def test_daquar_small_files_and_errors(tmp_path):
  root = _daquar_files(tmp_path / "d", PAIRS)
  train = corpora.daquar(root, "train")
  assert [r.question_id for r in train.records] == [0, 2, 3, 4]
  assert [r.image_id for r in train.records] == ["image1", "image2", "image2", "image1"]
  assert train.records[2].tokens == ("what", "is", "on", "the", "left", "of", "the", "image",
                                     "behind", "the", "door", "in", "the", "image")
  assert train.records[2].answer == "book, pen" and train.records[2].answer_list == ("book",
                                                                                     "pen")
  assert train.records[3].answer_list == ("tape_dispenser", "cup")
  np.testing.assert_array_equal(train.image_index, [0, 1, 1, 0])
  test = corpora.daquar(root, "test")
  assert len(test) == 1 and test.records[0].question_id == 1 and test.names == ["image3.jpg"]
  assert [r.question_id for r in corpora.daquar(root, "train", limit=1).records] == [0, 4]
  _write_images(str(tmp_path / "d" / "images"), ["image1.jpg", "image2.jpg"])
  s = corpora.daquar(root, "train", image_dir=corpora.daquar_images(root), image_size=(4, 6))
  assert s.images.shape == (2, 4, 6, 3)
  np.testing.assert_allclose(s.images[1].reshape(-1, 3).mean(0), COLORS[1], atol=6)

  _fails(lambda: corpora.daquar(root, "valid"), "daquar split 'valid'")
  _fails(lambda: corpora.daquar(str(tmp_path / "none"), "train"), "train_images_list.txt")
  _fails(lambda: corpora.daquar(root, "train", limit=0), "limit=0")
  _fails(lambda: corpora.daquar(root, "test", image_dir=str(tmp_path / "d" / "images")),
         "1 of 1 image files are missing, the first .*image3.jpg")
  bad = _daquar_files(tmp_path / "odd", PAIRS[:2] + [("what is in the image1 ?", "")])
  _fails(lambda: corpora.daquar(bad, "train"), "all_qa_pairs.txt:5: the question has no answer")
  bad = _daquar_files(tmp_path / "noimage", PAIRS[:1] + [("what is on the table ?", "lamp")])
  _fails(lambda: corpora.daquar(bad, "train"), "all_qa_pairs.txt:3: expected a question naming")
  bad = _daquar_files(tmp_path / "blank", [("what is in the image1 ?", " "),
                                           ("what is in the image2 ?", "lamp")])
  _fails(lambda: corpora.daquar(bad, "train"), "all_qa_pairs.txt:2: expected an answer")
  bad = _daquar_files(tmp_path / "swapped", [("what is in the image1 ?",
                                              "what is in the image2 ?")])
  _fails(lambda: corpora.daquar(bad, "train"), "all_qa_pairs.txt:2: expected an answer")
  bad = _daquar_files(tmp_path / "two", [("is image1 like the image2 ?", "no")])
  _fails(lambda: corpora.daquar(bad, "train"), ":1: the question names several images")
  bad = _daquar_files(tmp_path / "list", PAIRS, train=("image1", "img 2"))
  _fails(lambda: corpora.daquar(bad, "train"), "train_images_list.txt:2: expected an image")


# ----------------------------------------------------------------------------- VQA v2 JSON

def _vqa_files(tmp_path, subtype="val2014"):
  questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
               "data_subtype": subtype, "license": {}, "questions": [
                   {"image_id": 42, "question": "What color is the cat?", "question_id": 420},
                   {"image_id": 7, "question": "Is it raining?", "question_id": 70},
                   {"image_id": 42, "question": "How many cats are there?",
                    "question_id": 421}]}

  def answers(*words):
    return [{"answer": w, "answer_confidence": "yes", "answer_id": k + 1}
            for k, w in enumerate(words)]

  annotations = {"annotations": [
      {"question_id": 70, "image_id": 7, "question_type": "is it", "answer_type": "yes/no",
       "answers": answers(*["no"] * 8, "yes", "no"), "multiple_choice_answer": "no"},
      {"question_id": 421, "image_id": 42, "question_type": "how many",
       "answer_type": "number", "answers": answers(*["2"] * 9, "two"),
       "multiple_choice_answer": "2"},
      {"question_id": 420, "image_id": 42, "question_type": "what color is the",
       "answer_type": "other", "answers": answers(*["black"] * 6, *["black and white"] * 4),
       "multiple_choice_answer": "black"}]}
  q, a = tmp_path / "questions.json", tmp_path / "annotations.json"
  q.write_text(json.dumps(questions))
  a.write_text(json.dumps(annotations))
  return str(q), str(a), questions, annotations


def test_vqa_json(tmp_path):
  q, a, questions, annotations = _vqa_files(tmp_path)
  s = corpora.vqa_json(q, a)
  assert s.image_ids == [42, 7] and s.names == ["COCO_val2014_000000000042.jpg",
                                                "COCO_val2014_000000000007.jpg"]
  assert [r.question_id for r in s.records] == [420, 70, 421]
  np.testing.assert_array_equal(s.image_index, [0, 1, 0])
  r = s.records[0]
  assert (r.question, r.tokens, r.answer, r.answer_list, r.qtype, r.split) == (
      "What color is the cat?", ("what", "color", "is", "the", "cat"), "black", ("black",),
      "other", "val2014")
  assert r.all_answers == ("black",) * 6 + ("black and white",) * 4
  assert [x.qtype for x in s.records] == ["other", "yes/no", "number"]
  blind = corpora.vqa_json(q)  # test questions: no annotations
  assert [x.answer for x in blind.records] == ["", "", ""] and blind.records[0].all_answers == ()
  assert corpora.vqa_json(q, a, limit=1).image_ids == [42]
  assert len(corpora.vqa_json(q, a, limit=1)) == 2
  _write_images(str(tmp_path / "coco"), s.names)
  _write_features(str(tmp_path / "feats"), [corpora.stem(n) for n in s.names], (4,))
  full = corpora.vqa_json(q, a, image_dir=str(tmp_path / "coco"), image_size=5,
                          feature_dir=str(tmp_path / "feats"))
  assert full.images.shape == (2, 5, 5, 3) and full.features.shape == (2, 4)
  np.testing.assert_allclose(full.images[1].reshape(-1, 3).mean(0), COLORS[1], atol=6)
  split = data.from_qa_split(full)
  assert split.all_answers[0] == r.all_answers and split.qtypes == ["other", "yes/no",
                                                                    "number"]
  np.testing.assert_array_equal(split.image_index, [0, 1, 0])


def test_vqa_json_errors(tmp_path):
  q, a, questions, annotations = _vqa_files(tmp_path)
  del questions["data_subtype"]
  (tmp_path / "nosub.json").write_text(json.dumps(questions))
  _fails(lambda: corpora.vqa_json(str(tmp_path / "nosub.json")), "no 'data_subtype'")
  s = corpora.vqa_json(str(tmp_path / "nosub.json"), a, data_subtype="train2014")
  assert s.names[0] == "COCO_train2014_000000000042.jpg"
  (tmp_path / "short.json").write_text(json.dumps({"annotations": annotations["annotations"][:2]}))
  _fails(lambda: corpora.vqa_json(q, str(tmp_path / "short.json")),
         "no annotation for question_id 420")
  annotations["annotations"][0]["image_id"] = 8
  (tmp_path / "moved.json").write_text(json.dumps(annotations))
  _fails(lambda: corpora.vqa_json(q, str(tmp_path / "moved.json")),
         "question_id 70: image_id 7 in .* but 8 in")
  (tmp_path / "list.json").write_text("[1, 2]")
  _fails(lambda: corpora.vqa_json(str(tmp_path / "list.json")), "expected VQA's questions")
  _fails(lambda: corpora.vqa_json(q, str(tmp_path / "list.json")), "expected VQA's annotations")
  (tmp_path / "broken.json").write_text("{")
  _fails(lambda: corpora.vqa_json(str(tmp_path / "broken.json")), "is not JSON")
  (tmp_path / "lacking.json").write_text(json.dumps(
      {"data_subtype": "x", "questions": [{"image_id": 1, "question": "why?"}]}))
  _fails(lambda: corpora.vqa_json(str(tmp_path / "lacking.json")), "questions\\[0\\] lacks")
  _fails(lambda: corpora.vqa_json(q, a, feature_dir=str(tmp_path)),
         "2 of 2 feature files are missing")


# ----------------------------------------------------------------------------- CLEVR

def test_clevr_records_by_hand():
  ex = {"file_name": b"CLEVR_val_000003.png", "question_answer": {
      "question": np.array([b"Is there a cube?", b"How many spheres are there?"]),
      "answer": np.array([b"yes", b"2"])}}
  records = corpora.clevr_records(ex, "validation", 10)
  assert [(r.image_id, r.question_id, r.answer, r.tokens[:2]) for r in records] == [
      ("CLEVR_val_000003", 10, "yes", ("is", "there")),
      ("CLEVR_val_000003", 11, "2", ("how", "many"))]
  test = {"file_name": "CLEVR_test_000000.png",
          "question_answer": {"question": ["What color is it?"], "answer": []}}
  assert [(r.answer, r.answer_list) for r in corpora.clevr_records(test, "test")] == [("", ())]
  with pytest.raises(UserError, match="2 answers for 1 questions"):
    corpora.clevr_records({"file_name": "a.png", "question_answer": {
        "question": ["q"], "answer": ["a", "b"]}}, "train")
  assert [data.question_type(r.tokens) for r in records] == ["yes/no", "count"]


def test_tfds_clevr_through_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    val = corpora.tfds_clevr("val", data_dir=str(tmp_path), image_size=(6, 9))
    two = corpora.tfds_clevr("train", data_dir=str(tmp_path), image_size=4, limit=2)
  assert val.images.shape == (3, 6, 9, 3) and val.images.dtype == np.uint8
  assert two.images.shape == (2, 4, 4, 3) and len(two.image_ids) == 2
  assert len(val) > 0 and all(r.split == "validation" for r in val.records)
  assert [r.question_id for r in val.records] == list(range(len(val)))
  assert all(isinstance(r.question, str) and isinstance(r.answer, str) for r in val.records)
  assert set(val.image_index) <= {0, 1, 2} and val.image_ids == [corpora.stem(n)
                                                                 for n in val.names]
  split = data.from_qa_split(val)
  assert len(split) == len(val) and all(t in data.TYPES for t in split.qtypes)
  _fails(lambda: corpora.tfds_clevr("dev"), "clevr split 'dev'")


# ----------------------------------------------------------------------------- data: words, classes

def test_question_type():
  cases = {"how many chairs are there in the image": "count",
           "what number of cubes are there": "count",
           "what is the colour of the bed": "colour", "what color is the cat": "colour",
           "which colour is the sofa": "colour", "is there a cube": "yes/no",
           "are there more spheres than cubes": "yes/no", "does it have legs": "yes/no",
           "what is on the table": "object", "which object is largest": "object",
           "why is the man sad": "other", "": "other"}
  for text, qtype in cases.items():
    assert data.question_type(text.split()) == qtype, text


def test_answers_compare_and_normalize():
  assert data.normalize_answer(" Table,  chair ") == "table, chair"
  assert data.normalize_answer("Tape_dispenser") == "tape_dispenser"
  assert data.same_answer("chair table", "table, chair")  # a generated list
  assert data.same_answer("table, chair", "chair, table")
  assert not data.same_answer("table", "table, chair")
  assert data.same_answer("Yes.", "yes") and not data.same_answer("red white", "white red")
  assert data.answer_words(("tape_dispenser", "black cup")) == ["tape_dispenser", "black",
                                                                "cup"]


def _split(answers, questions=None, images=None, qtypes=None):
  n = len(answers)
  questions = questions or [f"what is thing {k % 3}" for k in range(n)]
  images = np.arange(3 * 4 * 5 * 3, dtype=np.uint8).reshape(3, 4, 5, 3) if images is None \
      else images
  lists = [tuple(x.strip() for x in a.split(",")) for a in answers]
  return data.Split(
      image_ids=["a", "b", "c"], images=images, features=None,
      image_index=np.arange(n, dtype=np.int32) % 3, questions=questions,
      tokens=[tuple(corpora.tokenize(q)) for q in questions], answers=list(answers),
      answer_lists=lists, all_answers=None,
      qtypes=qtypes or [data.question_type(corpora.tokenize(q)) for q in questions])


ANSWERS = ["table", "chair", "table", "lamp", "chair, table", "table", "bed", "lamp", "chair",
           "sofa, bed, table"]


def test_vocabularies_and_answer_classes(tmp_path):
  questions = ["how many chairs", "what is on the desk", "what is on the bed",
               "what colour is the bed", "what is under the desk"] * 2
  train = _split(ANSWERS, questions)
  vocab = data.Vocabularies.build(train, min_count=3, num_answers=3)
  # table 3, chair 2, lamp 2 (tie broken by the answer), the rest outside the K.
  assert vocab.answers == ["table", "chair", "lamp"]
  np.testing.assert_array_equal(vocab.answer_classes(ANSWERS),
                                [0, 1, 0, 2, -1, 0, -1, 2, 1, -1])
  assert vocab.answer_class("Table") == 0 and vocab.answer_class("piano") == data.OTHER
  assert vocab.words.words[:4] == list(data.SPECIALS)
  assert vocab.words.words[4:] == ["bed", "desk", "is", "on", "the", "what"]  # >= 3 times
  assert vocab.words.encode(["what", "chairs"]) == [vocab.words.index["what"], data.UNK]
  assert set(vocab.answer_vocab.words[4:]) == {"bed", "chair", "lamp", "sofa", "table"}
  ids = vocab.answer_vocab.encode(["sofa", "bed"]) + [data.EOS, data.PAD]
  assert vocab.decode_answer(ids) == "sofa bed"
  path = str(tmp_path / "vocab.json")
  vocab.save(path)
  again = data.Vocabularies.load(path)
  assert (again.words.words, again.answers, again.answer_vocab.words) == (
      vocab.words.words, vocab.answers, vocab.answer_vocab.words)
  assert data.vocabularies_for(str(tmp_path), _split(["x"] * 3), 1, 5).answers == vocab.answers
  with pytest.raises(UserError, match="num_answers=0"):
    data.Vocabularies.build(train, 1, 0)


def test_encode_arrays():
  questions = ["what is on the desk", "how many chairs are there in the big room",
               "what colour is it"]
  train = _split(["table", "tape_dispenser, cup, chair, lamp", "white"], questions)
  vocab = data.Vocabularies.build(train, 1, 2)
  enc = data.encode(train, vocab, max_question_len=6, max_answer_len=3)
  a = enc.arrays
  assert a["questions"].shape == (3, 6) and a["questions"].dtype == np.int32
  np.testing.assert_array_equal(a["question_lengths"], [5, 6, 4])  # the second is cut
  assert a["questions"][0, 5] == data.PAD and (a["questions"][2, 4:] == data.PAD).all()
  assert vocab.words.decode(a["questions"][0]) == questions[0].split()
  assert a["answer_tokens"].shape == (3, 4) and a["answer_tokens"].dtype == np.int32
  np.testing.assert_array_equal(a["answer_lengths"], [2, 4, 2])
  assert vocab.decode_answer(a["answer_tokens"][1]) == "tape_dispenser cup chair"  # cut to 3
  assert a["answer_tokens"][1, 3] == data.EOS and a["answer_tokens"][0, 1] == data.EOS
  np.testing.assert_array_equal(a["answer_class"], vocab.answer_classes(train.answers))
  assert [data.QTYPE_NAMES[k] for k in a["qtype"]] == ["object", "count", "colour"]
  assert all(v.shape[0] == 3 for v in a.values())


# ----------------------------------------------------------------------------- data: batches

def test_batches_are_deterministic_and_cover_each_epoch():
  split = _split(ANSWERS)
  vocab = data.Vocabularies.build(split, 1, 4)
  enc = data.encode(split, vocab, 5, 3)
  batches = data.Batches(enc, batch_size=4, seed=3)
  b = batches(0)
  assert set(b) == {"images", "image_index", "questions", "question_lengths", "answer_class",
                    "answer_tokens", "answer_lengths", "qtype"}
  assert b["images"].shape == (4, 4, 5, 3) and b["images"].dtype == np.uint8
  np.testing.assert_array_equal(b["images"], split.images[b["image_index"]])
  assert b["questions"].shape == (4, 5) and b["answer_tokens"].shape == (4, 4)
  for k in b:
    np.testing.assert_array_equal(b[k], data.Batches(enc, 4, 3)(0)[k])
  rows = np.concatenate([data.batch_rows(s, 10, 4, 3) for s in range(5)])  # two epochs
  assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))
  assert list(rows[:10]) != list(range(10))
  assert list(data.batch_rows(0, 10, 4, 4)) != list(rows[:4])  # the seed matters
  halves = [batches(2, process=(p, 2)) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h["answer_class"] for h in halves]),
                                batches(2)["answer_class"])
  known = data.known_rows(enc)
  np.testing.assert_array_equal(known, np.flatnonzero(enc.arrays["answer_class"] >= 0))
  only = data.Batches(enc, 8, 0, rows=known)
  assert all((only(s)["answer_class"] >= 0).all() for s in range(4))
  with pytest.raises(ValueError, match="encoded split"):
    data.batch(split, [0])


def _many_images_split(counts, seed=0):
  """A split whose image m has counts[m] questions, the questions in a shuffled order."""
  rng = np.random.default_rng(seed)
  index = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
  n = len(index)
  split = _split([ANSWERS[k % len(ANSWERS)] for k in range(n)],
                 images=rng.integers(0, 255, (len(counts), 4, 5, 3), dtype=np.uint8))
  split = dataclasses.replace(split, image_ids=[f"i{m}" for m in range(len(counts))],
                              image_index=index)
  return data.encode(split, data.Vocabularies.build(split, 1, 4), 5, 3)


@pytest.mark.parametrize("counts,B", [([5] * 13, 16), ([3, 7, 2, 5, 9, 4, 2, 6], 8),
                                      ([1, 4, 2], 4)])
def test_batches_by_image_read_each_image_once(counts, B):
  enc = _many_images_split(counts)
  n, fewest = len(enc), min(counts)
  batches = data.Batches(enc, B, seed=5, by_image=True)
  M = batches.num_images()
  assert M == min(B, 4 + (B - 4) // fewest)
  steps = 3 * n // B + 2  # three epochs and more, batches across the epochs' ends
  seen = []
  for step in range(steps):
    b = batches(step)
    assert b["images"].shape == (M, 4, 5, 3) and b["image_slot"].shape == (B,)
    # every question is shown its own image, the batch's images are distinct (but padding)
    np.testing.assert_array_equal(b["images"][b["image_slot"]],
                                  enc.images[b["image_index"]])
    used = np.unique(b["image_slot"])
    assert len({enc.images[i].tobytes() for i in b["image_index"]}) == len(used)
    seen.append(b["image_index"])
    for k in ("questions", "answer_class"):  # deterministic, a function of the step
      np.testing.assert_array_equal(b[k], data.Batches(enc, B, 5, by_image=True)(step)[k])
  rows = np.concatenate([data.batch_rows(s, n, B, 5, batches.order) for s in range(steps)])
  for e in range(3):  # each epoch visits every row once, an image's rows together
    epoch = rows[e * n:(e + 1) * n]
    assert sorted(epoch) == list(range(n))
    images = enc.image_index[epoch]
    runs = images[np.r_[True, images[1:] != images[:-1]]]
    assert len(runs) == len(counts)  # contiguous: one run per image
  assert not np.array_equal(rows[:n], rows[n:2 * n])  # epochs differ
  halves = [batches(4, process=(p, 2)) for p in (0, 1)]  # two processes: slots offset
  images = np.concatenate([h["images"] for h in halves])
  slots = np.concatenate([h["image_slot"] for h in halves])
  np.testing.assert_array_equal(images[slots], enc.images[batches(4)["image_index"]])


def test_batch_with_num_images_and_multiple():
  enc = _many_images_split([2, 2, 2, 2])
  b = data.batch(enc, [0, 1, 2, 3], num_images=4)
  np.testing.assert_array_equal(b["images"][b["image_slot"]], enc.images[b["image_index"]])
  with pytest.raises(ValueError, match="more than num_images"):
    data.batch(enc, np.arange(8), num_images=3)
  assert data.Batches(enc, 8, 0, by_image=True, image_multiple=4).num_images() == 8
  assert data.Batches(enc, 8, 0, by_image=True, image_multiple=3).num_images() == 6
  assert data.Batches(enc, 8, 0).num_images() is None


def test_in_order_pads_the_last_batch():
  split = _split(ANSWERS[:7])
  enc = data.encode(split, data.Vocabularies.build(split, 1, 3), 5, 2)
  batches = list(data.in_order(enc, 3))
  assert len(batches) == 3 and all(b["questions"].shape == (3, 5) for b in batches)
  np.testing.assert_array_equal(batches[2]["valid"], [True, False, False])
  got = np.concatenate([b["answer_class"][b["valid"]] for b in batches])
  np.testing.assert_array_equal(got, enc.arrays["answer_class"])


def test_features_take_images_and_hold_out():
  split = _split(ANSWERS)
  feats = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
  split = data.Split(**{**split.__dict__, "images": None, "features": feats})
  enc = data.encode(split, data.Vocabularies.build(split, 1, 3), 5, 2)
  b = data.batch(enc, [0, 4])
  np.testing.assert_array_equal(b["images"], feats[[0, 1]])  # questions 0, 4: images a, b
  train, valid = data.hold_out(enc, 1)
  assert (train.image_ids, valid.image_ids) == (["a", "b"], ["c"])
  assert len(train) == 7 and len(valid) == 3
  np.testing.assert_array_equal(valid.image_index, [0, 0, 0])
  np.testing.assert_array_equal(valid.arrays["image_index"], [0, 0, 0])
  assert valid.answers == [ANSWERS[k] for k in (2, 5, 8)]
  np.testing.assert_array_equal(valid.features, feats[2:])
  np.testing.assert_array_equal(data.batch(valid, [1])["images"], feats[2:3])
  assert data.hold_out(enc, 0)[1].image_ids == []
  with pytest.raises(UserError, match="valid_images=3"):
    data.hold_out(enc, 3)


# ----------------------------------------------------------------------------- load

def _config(**kw):
  base = dict(corpus="scenes", scenes="shapes", scenes_max_objects=4, questions_per_image=3,
              train_images=6, valid_images=2, test_images=3, data_dir=DATA, image_dir="",
              features_dir="", vqa_questions=[], vqa_annotations=[], image_size=16)
  return types.SimpleNamespace(**{**base, **kw})


def test_load_scenes():
  corpus = data.load(_config())
  assert [len(s.image_ids) for s in corpus] == [6, 2, 3]
  assert [len(s) for s in corpus] == [18, 6, 9]
  train = corpus.train
  assert train.images.shape == (6, 64, 64, 3) and len(train.objects) == 6
  np.testing.assert_array_equal(train.image_index, np.repeat(np.arange(6), 3))
  from experiments.vision import scene_questions
  for k in range(len(train)):
    objs = train.objects[train.image_index[k]]
    assert scene_questions.check_question(train.questions[k], train.answers[k], objs) == []
    assert train.answer_lists[k] == (train.answers[k],)
  assert set(train.qtypes) <= set(scene_questions.QUESTION_TYPES)
  vocab = data.Vocabularies.build(train, 1, 50)
  enc = data.encode(train, vocab, 12, 1)
  assert (enc.arrays["answer_class"] >= 0).all()
  assert set(data.QTYPE_NAMES[k] for k in enc.arrays["qtype"]) == set(train.qtypes)
  _fails(lambda: data.load(_config(corpus="coco")), "--corpus: expected scenes")
  _fails(lambda: data.load(_config(scenes="letters")), "--scenes: expected shapes or digits")
  _fails(lambda: data.load(_config(test_images=0)), "--test_images")


@needs_daquar
def test_load_daquar_holds_out_validation(tmp_path):
  _write_features(str(tmp_path), [f"image{k}" for k in range(1, 1450)], (3,))
  corpus = data.load(_config(corpus="daquar", train_images=0, valid_images=45, test_images=5,
                             features_dir=str(tmp_path)))
  assert len(corpus.train.image_ids) == 750 and len(corpus.valid.image_ids) == 45
  assert len(corpus.train) + len(corpus.valid) == 6795
  assert len(corpus.test.image_ids) == 5 and corpus.train.features.shape == (750, 3)
  assert corpus.train.images is None and corpus.train.all_answers is None
