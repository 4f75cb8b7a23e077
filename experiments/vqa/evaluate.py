"""The VQA accuracy (VQA v1/v2), computed as the official evaluation code computes it.

Reads the VQA formats:

- questions: `{"questions": [{"image_id", "question", "question_id"}], "task_type", ...}`;
- annotations: `{"annotations": [{"question_id", "image_id", "question_type", "answer_type",
  "answers": [{"answer", "answer_confidence", "answer_id"}], "multiple_choice_answer"}]}`;
- results: `[{"question_id", "answer"}]`;

and prints (CLI) or returns (`evaluate`) the accuracy in percent under the keys of the
official `VQAEval.accuracy` (`overall`, `perQuestionType`, `perAnswerType`):

  python -m experiments.vqa.evaluate --questions=v2_OpenEnded_mscoco_val2014_questions.json \
      --annotations=v2_mscoco_val2014_annotations.json --results=results.json

For DAQUAR (line-aligned text files of comma-separated answers, as `calculate_wups.py`
reads them) it prints the accuracy and WUPS@0.9 / WUPS@0.0 as fractions (`wups.py`):

  python -m experiments.vqa.evaluate --answers=truth.txt --predictions=predicted.txt

The procedure is that of GT-Vision-Lab/VQA: `VQA(annFile, quesFile)`, `loadRes(resFile,
quesFile)` and `VQAEval(vqa, vqaRes, n=2).evaluate()`, quirks included:

- loadRes: the results must be a list whose question ids are, as a set, exactly the
  annotations' (its assertion; here a `UserError`, a ValueError); a repeated result id is
  allowed and the last one wins; with `"task_type": "Multiple Choice"` in the questions
  file each raw answer must be one of its question's `multiple_choices`;
- the questions evaluated are the annotations' ids in file order, a repeated id once per
  occurrence, each scored against the last annotation with that id (its index), as the
  previous pass left it (the official normalises its index in place);
- each answer (the result and the ten ground-truth ones) has '\\n' and '\\t' turned into
  spaces and is stripped; only when the stripped ground-truth answers are not all identical
  are the ground truth and the result normalised (`process_punctuation` then
  `process_digit_article`): ten identical "yes" do not match "Yes" or "yes.";
- `process_punctuation`: each character of `PUNCT` is deleted when it touches a space in the
  input or when the input holds a digit-comma-digit anywhere, else replaced by a space ("1,000"
  -> "1000", "red,blue" -> "red blue"); then periods not followed by a digit are deleted, the
  first 32 only (the official passes `re.UNICODE`, 32, where `sub` takes its count); the
  apostrophe and ':' are not in `PUNCT` ("dog's" stays);
- `process_digit_article`: lower case, split on white space, number words to digits
  (`MANUAL_MAP`: "none" and "zero" -> "0" ... "ten" -> "10"), articles dropped, then
  `CONTRACTIONS` ("dont" -> "don't");
- the accuracy of a question averages, over its ground-truth answers, min(1, #matches among
  the others / 3), "the others" being the answers whose whole dict differs from this one (so
  identical dicts, e.g. answers without "answer_id", leave one another out together);
- overall, per question type and per answer type: `round(100 * float(sum(accs)) /
  len(accs), 2)`, averaged over unrounded question accuracies and rounded once, by Python 3's
  `round` (the official code is Python 2's, whose `round` differs only on exact ties).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

from experiments import common
from experiments.common import UserError

# VQAEval.contractions, verbatim (keys with capitals or quotes can never match: the words
# are lower-cased first and the input keeps its apostrophes).
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've"}

MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
"""VQAEval.manualMap: number words (and "none") to digits."""

ARTICLES = ("a", "an", "the")

PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
         "@", "`", ",", "?", "!")
"""VQAEval.punct, in its order (the order matters: each is replaced in turn)."""

# VQAEval.periodStrip and commaStrip, verbatim: "(?!<=\d)" is a lookahead for the text "<="
# (meant as a lookbehind), so every period not followed by a digit matches.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PERIOD_COUNT = int(re.UNICODE)  # what VQAEval passes as periodStrip.sub's count: 32


# ------------------------------------------------------------------------------------------
# Answers.


def process_punctuation(text: str) -> str:
  """VQAEval.processPunctuation: drops or spaces out punctuation, then strips periods.

  The test for each character looks at the input, not at the text being rewritten, and a
  digit-comma-digit anywhere deletes every punctuation character instead of spacing it out.
  """
  out = text
  delete_all = _COMMA_STRIP.search(text) is not None
  for p in PUNCT:
    if p + " " in text or " " + p in text or delete_all:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  return _PERIOD_STRIP.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
  """VQAEval.processDigitArticle: lower case, number words to digits, no articles,
  contractions restored, words joined by single spaces."""
  words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
  return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
  """The official normalisation of an answer: `process_punctuation`, then
  `process_digit_article` (applied only to questions whose ground truth disagrees)."""
  return process_digit_article(process_punctuation(text))


def _clean(text: str) -> str:
  """What is done to every answer, always: tabs and newlines to spaces, then strip."""
  return text.replace("\n", " ").replace("\t", " ").strip()


def _score(result: str, answers: Sequence[dict]) -> tuple[float, list[dict]]:
  """One question as VQAEval.evaluate scores it.

  Returns:
    (the accuracy in [0, 1], unrounded; the answer dicts as VQAEval leaves them in its
    index, which is what a second evaluation of the same question id sees).
  """
  answers = [{**a, "answer": _clean(a["answer"])} for a in answers]
  result = _clean(result)
  if len({a["answer"] for a in answers}) > 1:
    answers = [{**a, "answer": normalize_answer(a["answer"])} for a in answers]
    result = normalize_answer(result)
  accs = []
  for gt in answers:
    others = [a for a in answers if a != gt]  # whole dicts, as the official compares them
    matches = [a for a in others if a["answer"] == result]
    accs.append(min(1, float(len(matches)) / 3))
  return float(sum(accs)) / len(accs), answers


def question_accuracy(result: str, gt_answers: Sequence[str | dict]) -> float:
  """The VQA accuracy of one answer, in [0, 1] (unrounded).

  Args:
    result: the predicted answer, raw.
    gt_answers: the ground-truth answers (usually ten), raw: strings, or the annotation's
      answer dicts (`{"answer", "answer_confidence", "answer_id"}`). Strings are taken as
      distinct answers (numbered as answer ids are); dicts are compared whole, as the
      official code compares them.

  Returns:
    The mean over the ground-truth answers of min(1, #other answers equal to the result / 3),
    after the official normalisation when the ground-truth answers disagree.
  """
  answers = [a if isinstance(a, dict) else {"answer": a, "answer_id": i + 1}
             for i, a in enumerate(gt_answers)]
  if not answers:
    raise UserError("question_accuracy: no ground-truth answers")
  return _score(result, answers)[0]


# ------------------------------------------------------------------------------------------
# The three files.


def _load_json(value, what):
  if not isinstance(value, (str, os.PathLike)):
    return value
  return common.read_json(value, what)


def _id_ok(i):
  return isinstance(i, (int, str)) and not isinstance(i, bool)


def _entries(data, key, where):
  """`data[key]`, checked to be a list of objects with an acceptable "question_id"."""
  if not isinstance(data, dict) or not isinstance(data.get(key), list):
    raise UserError(f"{where}: expected a JSON object with a '{key}' list")
  for k, entry in enumerate(data[key]):
    if not isinstance(entry, dict) or not _id_ok(entry.get("question_id")):
      raise UserError(f"{where}: {key}[{k}] is not an object with an integer or string "
                      "'question_id'")
  return data[key]


def _check_annotations(annotations, where):
  for k, ann in enumerate(annotations):
    for field in ("image_id", "question_type", "answer_type"):
      if field not in ann:
        raise UserError(f"{where}: annotation {k} (question {ann['question_id']!r}) has no "
                        f"'{field}'")
    answers = ann.get("answers")
    if (not isinstance(answers, list) or not answers or
        not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers)):
      raise UserError(f"{where}: annotation {k} (question {ann['question_id']!r}) needs a "
                      "non-empty 'answers' list of {'answer': string, ...} objects")


def _check_results(results, where, annotation_ids, questions):
  """VQA.loadRes's checks: a list, covering exactly the annotations' questions."""
  if not isinstance(results, list):
    raise UserError(f"{where}: results is not an array of objects")
  results = _entries({"results": results}, "results", where)
  for k, r in enumerate(results):
    if not isinstance(r.get("answer"), str):
      raise UserError(f"{where}: results[{k}] (question {r['question_id']!r}) has no string "
                      "'answer'")
  ids = {r["question_id"] for r in results}
  missing, stray = set(annotation_ids) - ids, ids - set(annotation_ids)
  if missing or stray:
    first = sorted(missing or stray, key=str)[0]
    raise UserError(
        f"{where}: results do not correspond to the annotations' questions (the official "
        f"loadRes asserts it): {len(missing)} question(s) without a result, {len(stray)} "
        f"result(s) for questions not in the annotations, e.g. {first!r}")
  if questions.get("task_type") == "Multiple Choice":
    by_id = {q["question_id"]: q for q in questions["questions"]}
    for r in results:
      choices = by_id.get(r["question_id"], {}).get("multiple_choices")
      if not isinstance(choices, list) or r["answer"] not in choices:
        raise UserError(f"{where}: the answer {r['answer']!r} to question "
                        f"{r['question_id']!r} is not one of its multiple choices")


def _percent(accs: Sequence[float], precision: int) -> float:
  """VQAEval.setAccuracy's figure: the mean in percent, rounded once."""
  return round(100 * float(sum(accs)) / len(accs), precision)


def evaluate(questions, annotations, results, *, precision: int = 2) -> dict[str, Any]:
  """The official VQA accuracy of `results` (see the module docstring for the procedure).

  Args:
    questions: the questions file's contents (a dict) or its path.
    annotations: the annotations file's contents (a dict) or its path.
    results: the results (a list of {"question_id", "answer"}) or their file's path.
    precision: decimals kept (VQAEval's `n`).

  Returns:
    `{"overall": %, "perQuestionType": {type: %}, "perAnswerType": {type: %}}`, the types in
    the order they first appear in the annotations.

  Raises:
    UserError (a ValueError): a missing or malformed file, results that do not cover exactly
      the annotations' questions, a multiple-choice answer not among the choices.
  """
  where = {name: value if isinstance(value, (str, os.PathLike)) else name
           for name, value in (("questions", questions), ("annotations", annotations),
                               ("results", results))}
  questions = _load_json(questions, "questions")
  annotations = _load_json(annotations, "annotations")
  results = _load_json(results, "results")
  _entries(questions, "questions", where["questions"])
  anns = _entries(annotations, "annotations", where["annotations"])
  if not anns:
    raise UserError(f"{where['annotations']}: no annotations")
  _check_annotations(anns, where["annotations"])
  _check_results(results, where["results"], [a["question_id"] for a in anns], questions)

  qa = {a["question_id"]: a for a in anns}  # VQA.createIndex: the last one wins
  answers = {qid: a["answers"] for qid, a in qa.items()}
  answer_of = {r["question_id"]: r["answer"] for r in results}  # the result's index
  overall, per_question_type, per_answer_type = [], {}, {}
  for qid in (a["question_id"] for a in anns):  # VQA.getQuesIds(): repeats included
    acc, answers[qid] = _score(answer_of[qid], answers[qid])
    overall.append(acc)
    per_question_type.setdefault(qa[qid]["question_type"], []).append(acc)
    per_answer_type.setdefault(qa[qid]["answer_type"], []).append(acc)
  return {"overall": _percent(overall, precision),
          "perQuestionType": {k: _percent(v, precision) for k, v in per_question_type.items()},
          "perAnswerType": {k: _percent(v, precision) for k, v in per_answer_type.items()}}


# ------------------------------------------------------------------------------------------
# The command line.

_VQA_FLAGS = ("questions", "annotations", "results")
_DAQUAR_FLAGS = ("answers", "predictions")


def _define_flags():
  from absl import flags  # noqa: PLC0415
  flags.DEFINE_string("questions", None, "VQA questions (JSON): {'questions': [{'image_id', "
                      "'question', 'question_id'}], ...}.")
  flags.DEFINE_string("annotations", None, "VQA annotations (JSON): {'annotations': "
                      "[{'question_id', 'image_id', 'question_type', 'answer_type', "
                      "'answers': [{'answer', 'answer_confidence', 'answer_id'}]}]}.")
  flags.DEFINE_string("results", None, "VQA results (JSON): [{'question_id', 'answer'}].")
  flags.DEFINE_string("answers", None, "DAQUAR: the true answers, one line per question, "
                      "items comma-separated (instead of the three VQA files).")
  flags.DEFINE_string("predictions", None, "DAQUAR: the predicted answers, line-aligned "
                      "with --answers.")
  return flags.FLAGS


def main(argv) -> None:
  """Prints the scores as one JSON object."""
  from absl import flags  # noqa: PLC0415
  from experiments import common  # noqa: PLC0415
  FLAGS = flags.FLAGS  # noqa: N806
  common.check_no_positional(argv)
  given = {name for name in _VQA_FLAGS + _DAQUAR_FLAGS if FLAGS[name].value}
  if given & set(_DAQUAR_FLAGS):
    if given & set(_VQA_FLAGS):
      raise UserError("give either --questions, --annotations and --results (VQA) or "
                      "--answers and --predictions (DAQUAR), not both")
    missing = [n for n in _DAQUAR_FLAGS if n not in given]
    if missing:
      raise UserError(f"--{missing[0]} is required with --{(given - {missing[0]}).pop()}")
    from experiments.vqa import wups  # noqa: PLC0415
    scores = wups.evaluate_files(FLAGS.answers, FLAGS.predictions)
  else:
    for name in _VQA_FLAGS:
      if name not in given:
        raise UserError(f"--{name} is required (or --answers and --predictions for DAQUAR)")
    scores = evaluate(FLAGS.questions, FLAGS.annotations, FLAGS.results)
  print(json.dumps(scores), flush=True)


if __name__ == "__main__":
  from experiments import common

  _define_flags()
  common.run(main)
