"""The skip-thought SentEval protocols (experiments/skip_thought/senteval.py).

Synthetic task files (written in the formats of the real ones) with encoders whose answer is
known: a separating feature gives 100% accuracy, random features give chance. Leakage: the fake
encoders put each sentence's id in feature 0; the tests record every `LogisticRegression.fit`,
every scaling and SICK's training and early-stopping inputs, and check that no test row is ever
among them. The real files (under $RNN_JAX_DATA/senteval, skipped when absent) are read in full:
exact counts, labels, encodings, and a cheap hashed bag-of-words end to end.
"""

from __future__ import annotations

import os
import re
import zlib

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from experiments.skip_thought import senteval

DATA = os.environ.get("RNN_JAX_DATA", "")
needs_data = pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "senteval")),
                                reason="$RNN_JAX_DATA/senteval is absent")

# Small enough for tiny synthetic tasks, the same structure as the defaults.
FAST = senteval.Protocol(c_grid=(0.01, 1.0, 100.0))


# ---------------------------------------------------------------------------------------------
# Synthetic tasks: "word @<id> #<signal>" sentences, ids unique over all files.


def _sentence(words: str, ident: int, signal: float) -> str:
  return f"{words} @{ident} #{signal:g}"


def write_tasks(root, n: int = 60) -> str:
  """Writes every task file under root/senteval/ with n examples per class (binary tasks);
  returns root. Signals: +-1 by label (binary), the class index (TREC), the score and 1 (SICK:
  u * v is the score), the same (+1, +1) or opposite (+1, -1) signs of a pair (MSRP)."""
  folder = root / "senteval"
  folder.mkdir()
  ident = iter(range(1, 10**6))

  def lines(name, rows, encoding="latin-1", bom=False):
    text = ("\ufeff" if bom else "") + "".join(row + "\n" for row in rows)
    (folder / name).write_bytes(text.encode(encoding))

  for task, (pos, neg) in senteval.BINARY_FILES.items():
    lines(pos, [_sentence(f"good {task} café", next(ident), 1) for _ in range(n)])
    lines(neg, [_sentence(f"bad {task}", next(ident), -1) for _ in range(n + n // 2)])
  for split, per_class in (("train", 20), ("test", 6)):
    lines(f"TREC.{split}", [f"{c}:fine " + _sentence("what", next(ident), k)
                            for _ in range(per_class)
                            for k, c in enumerate(senteval.TREC_CLASSES)])
  rng = np.random.default_rng(0)
  for split, count in (("train", 150), ("trial", 40), ("test", 60)):
    rows = []
    for i in range(count):
      score = round(float(rng.uniform(1, 5)), 1)
      rows.append("\t".join([str(i), _sentence("a man", next(ident), score),
                             _sentence("a woman", next(ident), 1), str(score), "NEUTRAL"]))
    lines(senteval.SICK_FILES[split], rows, "utf-8")
  for split, count in (("train", 80), ("test", 40)):
    rows = []
    for i in range(count):
      label = i % 2
      rows.append("\t".join([str(label), str(2 * i), str(2 * i + 1),
                             _sentence('he said "yes', next(ident), 1),
                             _sentence("she said", next(ident), 1 if label else -1)]))
    lines(senteval.MSRP_FILES[split], rows, "utf-8", bom=True)
  return str(root)


def _parse(sentence: str) -> tuple[int, float]:
  return int(re.search(r"@(\d+)", sentence)[1]), float(re.search(r"#(\S+)", sentence)[1])


def known_encoder(sentences: list[str]) -> np.ndarray:
  """[id, signal, 3 noise features] `[N, 5]`: the signal decides every task."""
  rows = []
  for s in sentences:
    ident, signal = _parse(s)
    noise = np.random.default_rng(ident).standard_normal(3)
    rows.append([ident, signal, *(0.1 * noise)])
  return np.asarray(rows, np.float32)


def random_encoder(sentences: list[str]) -> np.ndarray:
  """8 standard normals seeded by the sentence's id `[N, 8]`: nothing to learn (the id itself
  is left out: ids run in label order in the files)."""
  return np.asarray([np.random.default_rng(_parse(s)[0]).standard_normal(8) for s in sentences],
                    np.float32)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
  return write_tasks(tmp_path_factory.mktemp("tasks"))


# ---------------------------------------------------------------------------------------------
# Folds


@pytest.mark.parametrize("k", [3, 10])
def test_folds_deterministic_stratified_partition(k):
  labels = np.repeat([0, 1, 2], [37, 101, 12])
  np.random.default_rng(0).shuffle(labels)
  folds = senteval.stratified_folds(labels, k=k, seed=7)
  again = senteval.stratified_folds(labels, k=k, seed=7)
  other = senteval.stratified_folds(labels, k=k, seed=8)
  assert len(folds) == k
  assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
  tests = np.concatenate([test for _, test in folds])
  assert np.array_equal(np.sort(tests), np.arange(len(labels)))         # disjoint, cover all
  overall = np.bincount(labels) / len(labels)
  for train, test in folds:
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    assert np.all(np.abs(np.bincount(labels[test], minlength=3) - overall * len(test)) <= 1)


# ---------------------------------------------------------------------------------------------
# SICK's target distribution


def test_score_distribution_is_tai_et_al():
  np.testing.assert_allclose(senteval.score_distribution(np.array([3.6]))[0],
                             [0, 0, 0.4, 0.6, 0], atol=1e-6)
  scores = np.array([1.0, 1.3, 2.5, 3.0, 4.9, 5.0])
  expected = np.zeros((len(scores), 5))
  for row, y in enumerate(scores):
    floor = int(np.floor(y))
    for i in range(1, 6):              # the classes are the scores 1..5
      if i == floor + 1:
        expected[row, i - 1] = y - floor
      if i == floor:
        expected[row, i - 1] = floor - y + 1
  got = senteval.score_distribution(scores)
  np.testing.assert_allclose(got, expected, atol=1e-6)
  np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(senteval.expected_score(got), scores, atol=1e-5)
  np.testing.assert_allclose(senteval.expected_score(np.eye(5, dtype=np.float32)), [1, 2, 3, 4, 5])


# ---------------------------------------------------------------------------------------------
# Synthetic end to end: the known answer


def test_known_features_score_perfectly_random_ones_chance(tasks_dir):
  known = senteval.evaluate({"known": known_encoder, "random": random_encoder}, tasks_dir,
                            protocol=FAST, progress=False)
  for task in senteval.BINARY_TASKS + ("TREC",):
    assert known["known"][task]["acc"] == pytest.approx(100.0), task
  assert known["known"]["MSRP"]["acc"] == pytest.approx(100.0)
  assert known["known"]["MSRP"]["f1"] == pytest.approx(100.0)
  assert known["known"]["SICK"]["pearson"] > 0.95
  assert known["known"]["SICK"]["spearman"] > 0.95
  assert known["known"]["SICK"]["mse"] < 0.5         # Pearson stops it; var(score) = 1.33
  for task in senteval.BINARY_TASKS:   # 60 + 90 examples: the majority class is 60%
    assert 30 < known["random"][task]["acc"] < 72, task
  assert known["random"]["TREC"]["acc"] < 45             # 6 balanced classes: chance 16.7%
  assert abs(known["random"]["SICK"]["pearson"]) < 0.45
  table = senteval.format_table(known)
  assert table.splitlines()[2].startswith("| known | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 0.9")
  assert table.splitlines()[-1] == ("| combine-skip (paper) | 76.5 | 80.1 | 93.6 | 87.1 | 92.2 "
                                    "| 0.8584 | 0.7916 | 0.2687 | 73.0 | 82.0 |")


def test_deterministic_and_dedupes(tasks_dir):
  calls = []

  def counting(sentences):
    calls.append(list(sentences))
    return random_encoder(sentences)

  a = senteval.evaluate_task("SICK", counting, tasks_dir, seed=3, protocol=FAST)
  b = senteval.evaluate_task("SICK", counting, tasks_dir, seed=3, protocol=FAST)
  assert a == b
  (first, _) = calls
  assert len(first) == len(set(first)) == 2 * (150 + 40 + 60)      # one call, each once
  x, y = senteval.encode_unique(random_encoder, [["a @1 #0", "b @2 #0", "a @1 #0"], ["b @2 #0"]])
  assert x.shape == (3, 8) and np.array_equal(x[0], x[2]) and np.array_equal(y[0], x[1])


def test_format_table_blank_when_missing():
  table = senteval.format_table({"enc": {"MR": {"acc": 71.234}}}, paper=None)
  assert table.splitlines() == [
      "| encoder | MR | CR | SUBJ | MPQA | TREC | SICK r | SICK ρ | SICK MSE | MSRP acc "
      "| MSRP F1 |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      "| enc | 71.2 |  |  |  |  |  |  |  |  |  |"]


# ---------------------------------------------------------------------------------------------
# No test example is ever fitted, scaled from, or used to choose C or to stop early


@pytest.fixture
def recorded(monkeypatch):
  """Records the rows (as bytes) and ids (feature 0) of every LogisticRegression fit and every
  fitted scaling, in order."""
  log = {"fit": [], "scaling": []}
  fit, fit_scaling = LogisticRegression.fit, senteval.fit_scaling

  def recording_fit(self, x, y, *args, **kwargs):
    log["fit"].append(np.array(x))
    return fit(self, x, y, *args, **kwargs)

  def recording_scaling(x, *args, **kwargs):
    log["scaling"].append(np.array(x))
    return fit_scaling(x, *args, **kwargs)

  monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
  monkeypatch.setattr(senteval, "fit_scaling", recording_scaling)
  return log


def _ids(x):
  return set(np.asarray(x)[:, 0].astype(int).tolist())


def _rows(x):
  return {row.tobytes() for row in np.asarray(x, np.float32)}


@pytest.mark.parametrize("standardize", [False, True])
def test_binary_outer_test_fold_never_fitted(tasks_dir, recorded, standardize):
  protocol = senteval.Protocol(c_grid=(0.01, 1.0, 100.0), standardize=standardize)
  sentences, labels = senteval.load_binary(tasks_dir, "CR")
  ids = known_encoder(sentences)[:, 0].astype(int)
  senteval.evaluate_task("CR", known_encoder, tasks_dir, seed=5, protocol=protocol)
  folds = senteval.stratified_folds(labels, protocol.folds, seed=5)
  # One scaling per outer fold, on exactly its training part.
  assert [_ids(x) for x in recorded["scaling"]] == [set(ids[train]) for train, _ in folds]
  if standardize:
    return                      # the fits see scaled features: ids checked unscaled above
  # Fits come fold by fold: inner fits on part of the fold's training part, then the final
  # fit on exactly all of it.
  fits = [_ids(x) for x in recorded["fit"]]
  per_fold = protocol.inner_splits * len(protocol.c_grid) + 1
  assert len(fits) == protocol.folds * per_fold
  for f, (train, test) in enumerate(folds):
    group = fits[f * per_fold:(f + 1) * per_fold]
    assert group[-1] == set(ids[train])
    for fitted in group:
      assert fitted <= set(ids[train]) and not fitted & set(ids[test])
    inner = set().union(*group[:-1])
    assert inner == set(ids[train])             # the inner folds cover the training part


def test_trec_and_msrp_test_split_never_fitted(tasks_dir, recorded):
  unscaled = senteval.Protocol(c_grid=(0.01, 1.0), standardize=False)
  data = senteval.load_trec(tasks_dir)
  senteval.evaluate_task("TREC", known_encoder, tasks_dir, protocol=unscaled)
  train, test = (_ids(known_encoder(data[s][0])) for s in ("train", "test"))
  assert recorded["fit"] and recorded["scaling"]
  for x in recorded["fit"] + recorded["scaling"]:
    assert _ids(x) <= train and not _ids(x) & test
  assert _ids(recorded["fit"][-1]) == train

  for log in recorded.values():
    log.clear()
  data = senteval.load_msrp(tasks_dir)
  senteval.evaluate_task("MSRP", known_encoder, tasks_dir, protocol=unscaled)
  train, test = (_rows(senteval.pair_features(known_encoder(data[s][0]),
                                              known_encoder(data[s][1])))
                 for s in ("train", "test"))
  assert recorded["fit"] and recorded["scaling"]
  for x in recorded["fit"] + recorded["scaling"]:
    assert _rows(x) <= train and not _rows(x) & test
  assert _rows(recorded["fit"][-1]) == train


def test_sick_test_split_never_trained_or_stopped_on(tasks_dir, monkeypatch):
  seen = []
  fit_relatedness = senteval.fit_relatedness

  def recording(x_train, scores_train, x_dev, scores_dev, **kwargs):
    seen.append((np.array(x_train), np.array(x_dev)))
    return fit_relatedness(x_train, scores_train, x_dev, scores_dev, **kwargs)

  monkeypatch.setattr(senteval, "fit_relatedness", recording)
  senteval.evaluate_task("SICK", known_encoder, tasks_dir, protocol=FAST)
  data = senteval.load_sick(tasks_dir)
  rows = {s: _rows(senteval.pair_features(known_encoder(data[s][0]), known_encoder(data[s][1])))
          for s in ("train", "trial", "test")}
  ((x_train, x_dev),) = seen
  assert _rows(x_train) == rows["train"] and _rows(x_dev) == rows["trial"]
  assert not (_rows(x_train) | _rows(x_dev)) & rows["test"]


# ---------------------------------------------------------------------------------------------
# The real files


@needs_data
@pytest.mark.parametrize("task, counts, non_empty", [
    ("MR", (5331, 5331), (5331, 5331)), ("CR", (2407, 1368), (2405, 1366)),
    ("SUBJ", (5000, 5000), (5000, 5000)), ("MPQA", (3312, 7294), (3311, 7292))])
def test_binary_files_read_in_full(task, counts, non_empty):
  sentences, labels = senteval.load_binary(DATA, task)
  assert len(sentences) == len(labels) == sum(counts)
  assert (int(np.sum(labels == 1)), int(np.sum(labels == 0))) == counts
  assert sum(not s for s in sentences) == sum(counts) - sum(non_empty)   # the files' blanks
  assert all(s == s.strip() for s in sentences)
  # What the evaluation scores (the paper's loaders skip blank lines): no empty sentence.
  kept, kept_labels = senteval.load_binary(DATA, task, drop_empty=True)
  assert (int(np.sum(kept_labels == 1)), int(np.sum(kept_labels == 0))) == non_empty
  assert len(kept) == sum(non_empty) and all(kept)


@needs_data
def test_latin1_lines_decode():
  mr, labels = senteval.load_binary(DATA, "MR")
  assert mr[2517] == "touché !" and labels[2517] == 1
  # Byte 0x85 (NEL in latin-1) opens this line: it is stripped, not a line break.
  assert mr[5331 + 473] == ("the maudlin way its story unfolds suggests a director fighting "
                            "against the urge to sensationalize his material .")
  subj, labels = senteval.load_binary(DATA, "SUBJ")          # subj.objective comes first
  assert subj[5000 + 184] == "not a stereotype is omitted nor a cliché left unsaid ."
  assert labels[5000 + 184] == 0
  trec = senteval.load_trec(DATA)
  question, label = trec["train"][0][65], trec["train"][1][65]
  assert question == "Which city has the oldest relationship as a sisterðcity with Los Angeles ?"
  assert senteval.TREC_CLASSES[label] == "LOC"


@needs_data
def test_trec_read_in_full():
  trec = senteval.load_trec(DATA)
  assert [len(trec[s][0]) for s in ("train", "test")] == [5452, 500]
  assert np.bincount(trec["train"][1]).tolist() == [86, 1162, 1250, 1223, 835, 896]
  assert np.bincount(trec["test"][1]).tolist() == [9, 138, 94, 65, 81, 113]
  assert trec["test"][0][0] == "How far is it from Denver to Aspen ?"
  assert all(all(trec[s][0]) for s in trec)


@needs_data
def test_sick_read_in_full():
  sick = senteval.load_sick(DATA)
  for split, count in (("train", 4500), ("trial", 500), ("test", 4927)):
    a, b, score = sick[split]
    assert len(a) == len(b) == len(score) == count
    assert score.min() >= 1 and score.max() <= 5 and all(a) and all(b)
  a, b, score = sick["train"]
  assert a[0] == ("A group of kids is playing in a yard and an old man is standing in the "
                  "background")                  # the first line is a pair, not a header
  assert score[0] == pytest.approx(4.5)


@needs_data
def test_msrp_read_in_full():
  msrp = senteval.load_msrp(DATA)
  for split, count, positives in (("train", 4076, 2753), ("test", 1725, 1147)):
    a, b, labels = msrp[split]
    assert len(a) == len(b) == len(labels) == count and int(labels.sum()) == positives
    assert all(a) and all(b) and not any("\ufeff" in s for s in a + b)
  a, b, labels = msrp["train"]
  assert labels[0] == 1
  assert a[0] == ('Amrozi accused his brother, whom he called "the witness", of deliberately '
                  'distorting his evidence.')
  assert b[0].startswith('Referring to him as only "the witness", Amrozi')


def hashed_bag_of_words(sentences: list[str], dim: int = 512) -> np.ndarray:
  """Signed feature hashing of lower-cased words: a cheap encoder `[N, dim]`."""
  x = np.zeros((len(sentences), dim), np.float32)
  for row, sentence in enumerate(sentences):
    for word in re.findall(r"\w+|[^\w\s]", sentence.lower()):
      h = zlib.crc32(word.encode())
      x[row, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
  return x


@needs_data
def test_real_tasks_with_a_bag_of_words():
  protocol = senteval.Protocol(c_grid=(4.0**-6, 4.0**-3), inner_folds=5, inner_splits=1,
                               cv_folds=3)
  encoded = []

  def encode(sentences):
    encoded.extend(sentences)
    return hashed_bag_of_words(sentences)

  results = senteval.evaluate({"bow": encode}, DATA, tasks=("CR", "TREC", "SICK", "MSRP"),
                              protocol=protocol, progress=False)["bow"]
  assert encoded and all(encoded)                 # no empty sentence reaches the encoder
  assert results["CR"]["acc"] > 66          # the majority class is 63.8%
  assert results["TREC"]["acc"] > 55        # the majority class is 22.6%
  assert results["SICK"]["pearson"] > 0.5
  assert results["MSRP"]["acc"] > 66.5      # the majority class is 66.5%
