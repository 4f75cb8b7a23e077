"""experiments.vqa.evaluate (the official VQA accuracy) and experiments.vqa.wups (DAQUAR's
accuracy and WUPS) on hand-built cases. Every expected figure is worked out here from the
official procedures (GT-Vision-Lab/VQA's vqaEval.py and vqa.py; Malinowski's
calculate_wups.py), not taken from the code under test."""

import json
import os
import subprocess
import sys

import pytest

from experiments.common import UserError
from experiments.vqa import evaluate as vqa_eval
from experiments.vqa import wups

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ten(*groups):
  """Answer dicts as the annotations hold them, ids 1, 2, ...: _ten(("dog", 3), ("cat", 7))."""
  words = [w for w, n in groups for _ in range(n)]
  return [{"answer": w, "answer_confidence": "yes", "answer_id": i + 1}
          for i, w in enumerate(words)]


def _hand_accuracy(matches, total=10):
  """The 10-choose-9 average written out: leaving out one of the `matches` answers equal to
  the result leaves matches - 1 of them, leaving out another leaves all `matches`."""
  return (matches * min(1, (matches - 1) / 3) + (total - matches) * min(1, matches / 3)) / total


# ------------------------------------------------------------------------------------------
# One question.


@pytest.mark.parametrize("matches", range(11))
def test_ten_choose_nine_average(matches):
  answers = _ten(("dog", matches), ("cat", 10 - matches))
  assert vqa_eval.question_accuracy("dog", answers) == pytest.approx(_hand_accuracy(matches))


def test_ten_choose_nine_by_hand():
  # 2 x dog, 8 x cat: without a dog 1 match (1/3), without a cat 2 matches (2/3).
  assert vqa_eval.question_accuracy("dog", _ten(("dog", 2), ("cat", 8))) == pytest.approx(
      (2 * (1 / 3) + 8 * (2 / 3)) / 10)
  # 3 x dog: without a dog 2 matches (2/3), without a cat 3 matches (1).
  assert vqa_eval.question_accuracy("dog", _ten(("dog", 3), ("cat", 7))) == pytest.approx(
      (3 * (2 / 3) + 7 * 1) / 10)
  # Plain strings are distinct answers too.
  assert vqa_eval.question_accuracy("dog", ["dog"] * 4 + ["cat"] * 6) == 1


@pytest.mark.parametrize("result, truth, match", [
    ("two", "2", True), ("2", "two", True), ("Two", "2", True), ("none", "0", True),
    ("zero", "0", True), ("ten", "10", True), ("eleven", "11", False),
    ("a dog", "dog", True), ("the dog", "dog", True), ("An apple", "apple", True),
    ("yes.", "yes", True), ("yes!", "yes", True), ("dog?", "dog", True),
    ("dog's", "dogs", False), ("dog's", "dog's", True),  # the apostrophe is kept
    ("1,000", "1000", True), ("3.5", "35", False), ("3.5", "3.5", True),
    ("red,blue", "red blue", True), ("red, blue", "red blue", True),
    ("t-shirt", "t shirt", True), ("U.S.", "us", True),
    ("dont", "don't", True), ("Dont", "don't", True), ("do not", "don't", False),
    (" yes\n", "yes", True), ("yes\tsir", "yes sir", True),
])
def test_normalisation_when_answers_disagree(result, truth, match):
  """3 of 10 answers are `truth` (0.9 when the result matches them), 7 something else."""
  answers = _ten((truth, 3), ("something else", 7))
  assert vqa_eval.question_accuracy(result, answers) == pytest.approx(0.9 if match else 0.0)


def test_identical_ground_truth_is_not_normalised():
  yes = _ten(("yes", 10))
  assert vqa_eval.question_accuracy("yes", yes) == 1
  assert vqa_eval.question_accuracy(" yes\n", yes) == 1  # tabs, newlines and strip: always
  assert vqa_eval.question_accuracy("Yes", yes) == 0
  assert vqa_eval.question_accuracy("yes.", yes) == 0
  assert vqa_eval.question_accuracy("two", _ten(("2", 10))) == 0
  assert vqa_eval.question_accuracy("a dog", _ten(("dog", 10))) == 0
  # One different answer normalises all ten and the result ...
  assert vqa_eval.question_accuracy("Yes", _ten(("yes", 9), ("Yes", 1))) == 1
  # ... but one that differs only by surrounding white space is identical once stripped.
  assert vqa_eval.question_accuracy("Yes", _ten(("yes", 9), ("yes ", 1))) == 0


def test_answers_are_compared_as_whole_dicts():
  """The official leaves out of "the others" every answer dict equal to the one left out:
  ten equal dicts (no answer ids) leave nothing to match."""
  assert vqa_eval.question_accuracy("yes", [{"answer": "yes"}] * 10) == 0
  # 3 equal "yes" dicts leave one another out (0 matches), a "no" leaves all 3 (1) ...
  assert vqa_eval.question_accuracy("yes", [{"answer": "yes"}] * 3 + _ten(("no", 7))) == (
      pytest.approx((3 * 0 + 7 * 1) / 10))
  # ... while distinct ids give the usual 0.9.
  assert vqa_eval.question_accuracy("yes", _ten(("yes", 3), ("no", 7))) == pytest.approx(0.9)


def test_process_punctuation_quirks():
  # Each mark is deleted when it touches a space in the *input*, else spaced out.
  assert vqa_eval.process_punctuation("black/white") == "black white"
  assert vqa_eval.process_punctuation("black / white") == "black  white"
  assert vqa_eval.process_punctuation("(a) b") == " a b"  # ")" touches a space, "(" does not
  # A digit-comma-digit anywhere deletes every mark.
  assert vqa_eval.process_punctuation("10,000/yr") == "10000yr"
  assert vqa_eval.process_punctuation("1,000") == "1000"
  assert vqa_eval.process_punctuation("a,b") == "a b"
  # Periods not followed by a digit go, but only 32 of them (re.UNICODE passed as count).
  assert vqa_eval.process_punctuation("3.5. ") == "3.5 "
  assert vqa_eval.process_punctuation("yes" + "." * 32) == "yes"
  assert vqa_eval.process_punctuation("yes" + "." * 33) == "yes."
  # The apostrophe and the colon are not in the list.
  assert vqa_eval.process_punctuation("it's 2:30") == "it's 2:30"


def test_process_digit_article():
  assert vqa_eval.process_digit_article("The  Two dogs") == "2 dogs"
  assert vqa_eval.process_digit_article("a an the") == ""
  assert vqa_eval.process_digit_article("Whats up") == "what's up"
  assert vqa_eval.process_digit_article("one hundred") == "1 hundred"
  assert vqa_eval.normalize_answer("The dog's, toy.") == "dog's toy"


# ------------------------------------------------------------------------------------------
# Files.


def _dataset():
  """Six questions, their accuracies worked out in `_EXPECTED`."""
  specs = [  # (question id, question type, answer type, answers, result)
      (1, "is the", "yes/no", _ten(("yes", 10)), "yes"),  # 1
      (2, "is the", "yes/no", _ten(("no", 3), ("yes", 7)), "no"),  # 0.9
      (3, "how many", "number", _ten(("2", 2), ("3", 8)), "two"),  # normalised: 2 matches
      (4, "what color", "other", _ten(("red", 4), ("blue", 6)), "Red."),  # 1
      (5, "how many", "number", _ten(("2", 10)), "two"),  # not normalised: 0
      (6, "is there", "yes/no", _ten(("yes", 2), ("no", 8)), "yes"),  # 2 matches
  ]
  questions = {"questions": [{"image_id": 10 + q, "question": "?", "question_id": q}
                             for q, *_ in specs]}
  annotations = {"annotations": [
      {"question_id": q, "image_id": 10 + q, "question_type": qt, "answer_type": at,
       "answers": answers, "multiple_choice_answer": answers[-1]["answer"]}
      for q, qt, at, answers, _ in specs]}
  results = [{"question_id": q, "answer": r} for q, *_, r in reversed(specs)]
  return questions, annotations, results


_TWO = _hand_accuracy(2)  # (2 * 1/3 + 8 * 2/3) / 10
_EXPECTED = {
    "overall": round(100 * (1 + 0.9 + _TWO + 1 + 0 + _TWO) / 6, 2),
    "perQuestionType": {"is the": round(100 * (1 + 0.9) / 2, 2),
                        "how many": round(100 * (_TWO + 0) / 2, 2),
                        "what color": 100.0, "is there": round(100 * _TWO, 2)},
    "perAnswerType": {"yes/no": round(100 * (1 + 0.9 + _TWO) / 3, 2),
                      "number": round(100 * (_TWO + 0) / 2, 2), "other": 100.0},
}


def test_evaluate_groups_and_rounds():
  questions, annotations, results = _dataset()
  got = vqa_eval.evaluate(questions, annotations, results)
  assert got == _EXPECTED
  assert got["perAnswerType"]["yes/no"] == 83.33 and got["overall"] == 68.33
  assert list(got["perAnswerType"]) == ["yes/no", "number", "other"]  # first appearance


def test_evaluate_leaves_its_inputs_alone():
  questions, annotations, results = _dataset()
  before = json.dumps([questions, annotations, results])
  vqa_eval.evaluate(questions, annotations, results)
  assert json.dumps([questions, annotations, results]) == before


def test_results_must_cover_exactly_the_annotated_questions():
  questions, annotations, results = _dataset()
  with pytest.raises(ValueError, match="do not correspond"):
    vqa_eval.evaluate(questions, annotations, results[1:])
  with pytest.raises(ValueError, match="do not correspond"):
    vqa_eval.evaluate(questions, annotations, results + [{"question_id": 99, "answer": "x"}])
  with pytest.raises(UserError, match="array"):
    vqa_eval.evaluate(questions, annotations, {"question_id": 1, "answer": "yes"})
  with pytest.raises(UserError, match="answer"):
    vqa_eval.evaluate(questions, annotations, [dict(results[0], answer=2)] + results[1:])
  del annotations["annotations"][0]["answer_type"]
  with pytest.raises(UserError, match="answer_type"):
    vqa_eval.evaluate(questions, annotations, results)


def test_a_repeated_result_counts_last():
  questions, annotations, results = _dataset()
  # Question 4 answered "blue" after "Red.": 6 blue answers -> 1; "green" after it -> 0.
  got = vqa_eval.evaluate(questions, annotations, results + [{"question_id": 4,
                                                              "answer": "green"}])
  assert got["perAnswerType"]["other"] == 0.0


def test_a_repeated_annotation_is_scored_each_time_against_the_last():
  anns = [{"question_id": 1, "image_id": 1, "question_type": "a", "answer_type": "x",
           "answers": _ten(("yes", 10))},
          {"question_id": 1, "image_id": 1, "question_type": "b", "answer_type": "y",
           "answers": _ten(("no", 3), ("yes", 7))}]
  got = vqa_eval.evaluate({"questions": []}, {"annotations": anns},
                          [{"question_id": 1, "answer": "no"}])
  assert got == {"overall": 90.0, "perQuestionType": {"b": 90.0}, "perAnswerType": {"y": 90.0}}


def test_multiple_choice_answers_must_be_choices():
  questions, annotations, results = _dataset()
  questions = {"task_type": "Multiple Choice", "questions": [
      dict(q, multiple_choices=["yes", "no", "two", "Red."]) for q in questions["questions"]]}
  assert vqa_eval.evaluate(questions, annotations, results) == _EXPECTED
  with pytest.raises(UserError, match="multiple choices"):
    vqa_eval.evaluate(questions, annotations, [dict(results[0], answer="maybe")] + results[1:])


def test_cli(tmp_path):
  for name, value in zip(("q", "a", "r"), _dataset()):
    (tmp_path / f"{name}.json").write_text(json.dumps(value))
  (tmp_path / "bad.json").write_text("{not json")
  cmd = [sys.executable, "-m", "experiments.vqa.evaluate", f"--questions={tmp_path / 'q.json'}",
         f"--annotations={tmp_path / 'a.json'}"]
  ok = subprocess.run(cmd + [f"--results={tmp_path / 'r.json'}"], cwd=REPO,
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr
  assert json.loads(ok.stdout) == _EXPECTED
  for results in ("missing.json", "bad.json"):
    bad = subprocess.run(cmd + [f"--results={tmp_path / results}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().startswith("error: ") and results in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# DAQUAR: accuracy and WUPS.

_SIMILARITY = {frozenset(("chair", "table")): 0.8, frozenset(("chair", "sofa")): 0.95,
               frozenset(("table", "sofa")): 0.5}


def _stub(a, b):
  return _SIMILARITY.get(frozenset((a, b)), 0.0)


@pytest.mark.parametrize("truth, predicted, threshold, expected", [
    ("chair", "chair", 0.9, 1.0),
    ("chair", "table", 0.9, 0.8 * 0.1),  # below the threshold: down-weighted
    ("chair", "table", 0.0, 0.8),
    ("chair", "table", 0.8, 0.8),  # at the threshold: kept
    ("chair", "sofa", 0.9, 0.95),
    ("chair", "lamp", 0.0, 0.0),  # no similarity
    # truth side: chair -> 1; predicted side: chair -> 1, table -> 0.08; min(1, 0.08).
    ("chair", "chair, table", 0.9, 0.08),
    # truth: chair -> max(0.08, 0.95), table -> 1; predicted: table -> 1, sofa -> 0.95.
    ("chair, table", "table,sofa", 0.9, 0.95),
    # a repeated item counts twice: truth side 0.8 * 0.8, predicted side 0.8.
    ("chair, chair", "table", 0.0, 0.64),
    (" chair ,table", "table, chair", 0.9, 1.0),  # items stripped, order free
])
def test_wups_by_hand(truth, predicted, threshold, expected):
  assert wups.wups([truth], [predicted], threshold, _stub) == pytest.approx(expected)


def test_wups_and_accuracy_average_over_questions():
  assert wups.wups(["chair", "chair"], ["chair", "table"], 0.0, _stub) == pytest.approx(0.9)
  truths = ["chair, table", "chair", "chair", "book", "book"]
  predicted = ["table,chair", "Chair", "chairs", "book, book", "book, lamp"]
  assert wups.accuracy(truths, predicted) == pytest.approx((1 + 0 + 0 + 1 + 0) / 5)
  got = wups.evaluate(truths, predicted, similarity=_stub)
  assert set(got) == {"accuracy", "WUPS@0.9", "WUPS@0.0"}
  with pytest.raises(UserError, match="2 true answers but 1"):
    wups.accuracy(["a", "b"], ["a"])


def test_without_wordnet_accuracy_alone(monkeypatch, capsys):
  def missing():
    raise wups.WordNetUnavailable("WordNet 3.0 is not installed")

  monkeypatch.setattr(wups, "load_wordnet", missing)
  assert wups.evaluate(["chair"], ["chair"]) == {"accuracy": 1.0}
  err = capsys.readouterr().err
  assert err == "WUPS skipped: WordNet 3.0 is not installed\n"


def test_read_answers_drops_empty_lines(tmp_path):
  (tmp_path / "t.txt").write_text("chair, table\n\n  sofa \n")
  assert wups.read_answers(tmp_path / "t.txt") == ["chair, table", "sofa"]


def test_crlf_copy_of_wordnet_is_refused(tmp_path):
  pytest.importorskip("nltk")
  (tmp_path / "data.noun").write_bytes(b"  1 header\r\n")
  with pytest.raises(wups.WordNetUnavailable, match="CRLF"):
    wups.load_wordnet.__wrapped__(str(tmp_path))


needs_wordnet = pytest.mark.skipif(wups.wordnet_unavailable() is not None,
                                   reason=f"WordNet unavailable: {wups.wordnet_unavailable()}")


@needs_wordnet
def test_wups_with_wordnet():
  assert wups.wups(["chair"], ["chair"], 0.9) == 1
  # dog.n.01 and cat.n.01: Wu-Palmer 0.857 (NLTK's WordNet how-to), the best pair of senses.
  assert wups.wups(["dog"], ["cat"], 0.0) == pytest.approx(0.857, abs=1e-3)
  assert wups.wups(["dog"], ["cat"], 0.9) == pytest.approx(0.0857, abs=1e-4)
  assert wups.wups(["book"], ["sofa"], 0.9) < 0.1  # unrelated nouns
  assert wups.wups(["xyzzy"], ["chair"], 0.0) == 0  # no noun synset
  # WordNet finds "chairs" under "chair": WUPS counts it, the accuracy does not.
  assert wups.wups(["chairs"], ["chair"], 0.9) == 1
  assert wups.accuracy(["chairs"], ["chair"]) == 0


def test_daquar_cli(tmp_path):
  (tmp_path / "truth.txt").write_text("chair\n\nbook, lamp\n")
  (tmp_path / "pred.txt").write_text("chair\nlamp,book\n")
  cmd = [sys.executable, "-m", "experiments.vqa.evaluate", f"--answers={tmp_path / 'truth.txt'}",
         f"--predictions={tmp_path / 'pred.txt'}"]
  ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr
  got = json.loads(ok.stdout)
  if wups.wordnet_unavailable() is None:
    assert got == {"accuracy": 1.0, "WUPS@0.9": 1.0, "WUPS@0.0": 1.0}
  else:
    assert got == {"accuracy": 1.0} and ok.stderr.startswith("WUPS skipped: ")
