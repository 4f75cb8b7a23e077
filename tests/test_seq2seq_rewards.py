"""rnn_jax.seq2seq.rewards against the reference implementations: pycocoevalcap's CIDEr
(which is CIDEr-D) and sacrebleu's sentence BLEU, on real captions when $RNN_JAX_DATA has
them (Flickr8k, Multi30k) and on hand-made edge cases always."""

import gzip
import os
import random

import numpy as np
import pytest
import sacrebleu

from rnn_jax.seq2seq import rewards

pycocoevalcap_cider = pytest.importorskip("pycocoevalcap.cider.cider")

DATA = os.environ.get("RNN_JAX_DATA", "")
FLICKR = os.path.join(DATA, "flickr8k", "Flickr8k.token.txt")
MULTI30K = os.path.join(DATA, "multi30k")


def official_cider(hypotheses, references):
  gts = {i: list(refs) for i, refs in enumerate(references)}
  res = {i: [h] for i, h in enumerate(hypotheses)}
  mean, scores = pycocoevalcap_cider.Cider().compute_score(gts, res)
  return mean, np.asarray(scores)


def check_cider(hypotheses, references):
  mean, expected = official_cider(hypotheses, references)
  got = rewards.CiderD(references).score(hypotheses, references)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
  assert np.mean(got) == pytest.approx(mean, rel=1e-12)


def test_cider_d_edge_cases_equal_pycocoevalcap():
  references = [
      ["a dog runs on the grass", "a brown dog is running", "the dog runs"],
      ["two men play football", "men playing a game of football in a park"],
      ["a child", "a small child smiles at the camera", "child smiling"],
      ["a woman rides a bike down the street", "a cyclist on a city street"],
  ]
  hypotheses = [
      "a dog runs on the grass",          # one reference exactly
      "",                                 # empty output: no n-grams at all
      "child",                            # one word: no bigrams, length 0
      "a a a a a a a a a a a a a a a a",  # repetition: clipping and the length penalty
  ]
  check_cider(hypotheses, references)


@pytest.mark.skipif(not os.path.exists(FLICKR), reason="Flickr8k captions not found under "
                    "$RNN_JAX_DATA")
def test_cider_d_equals_pycocoevalcap_on_flickr8k_captions():
  captions = {}
  with open(FLICKR, encoding="utf-8") as f:
    for line in f:
      name, text = line.rstrip("\n").split("\t")
      captions.setdefault(name.split("#")[0], []).append(" ".join(text.lower().split()))
  images = sorted(captions)[:300]
  rng = random.Random(0)
  # Each image's first caption scored against its other four; then captions of other
  # images (wrong content) and truncated captions (the length penalty).
  hypotheses, references = [], []
  for i, image in enumerate(images):
    refs = captions[image][1:]
    if i % 3 == 0:
      hyp = captions[image][0]
    elif i % 3 == 1:
      hyp = captions[rng.choice(images)][0]
    else:
      words = captions[image][0].split()
      hyp = " ".join(words[:max(1, len(words) // 2)])
    hypotheses.append(hyp)
    references.append(refs)
  check_cider(hypotheses, references)


def test_cider_d_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="2 hypotheses but 1"):
    rewards.CiderD([["a b"]]).score(["a", "b"], [["a b"]])


def test_sentence_bleu_edge_cases_equal_sacrebleu():
  hypotheses = ["the cat sat on the mat", "", "cat", "the the the the"]
  references = [["the cat sat on the mat"], ["a dog"], ["the cat", "a cat"],
                ["the cat is here", "there is a cat"]]
  got = rewards.sentence_bleu(hypotheses, references)
  expected = [sacrebleu.sentence_bleu(h, r).score / 100 for h, r in zip(hypotheses, references)]
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  assert got[0] == pytest.approx(1.0)


@pytest.mark.skipif(not os.path.exists(os.path.join(MULTI30K, "test_2016_flickr.de.gz")),
                    reason="Multi30k not found under $RNN_JAX_DATA")
def test_sentence_bleu_equals_sacrebleu_on_multi30k():
  with gzip.open(os.path.join(MULTI30K, "test_2016_flickr.de.gz"), "rt", encoding="utf-8") as f:
    lines = [line.strip() for line in f][:400]
  rng = random.Random(0)
  hypotheses = []
  for line in lines:  # references with words dropped and swapped: every BLEU from 0 to 1
    words = line.split()
    words = [w for w in words if rng.random() > 0.3] or words[:1]
    if len(words) > 2 and rng.random() < 0.5:
      i = rng.randrange(len(words) - 1)
      words[i], words[i + 1] = words[i + 1], words[i]
    hypotheses.append(" ".join(words))
  references = [[line] for line in lines]
  got = rewards.sentence_bleu(hypotheses, references)
  expected = [sacrebleu.sentence_bleu(h, r).score / 100 for h, r in zip(hypotheses, references)]
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  assert 0.0 < got.min() < 0.5 < got.max()
