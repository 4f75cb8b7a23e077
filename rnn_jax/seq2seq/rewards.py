"""Sequence-level rewards computed on the host: sentence BLEU and CIDEr-D.

Sequence-level training (REINFORCE, MIXER, self-critical) scores whole sampled outputs
with the metric the task is judged by. These metrics are string functions, so they run
on the host between two jitted calls: sample (jitted) -> `tokens` to text -> reward here
-> the policy-gradient update (jitted) with the rewards as an input.

- `sentence_bleu`: sacrebleu's sentence BLEU (effective order, as sacrebleu recommends
  for single sentences), on detokenized text; in [0, 1].
- `CiderD`: the captioning reward of Rennie et al. (2017): CIDEr-D with the document
  frequencies of a fixed reference corpus (the training captions), computed as
  pycocoevalcap's `CiderScorer` computes it (clipped n-gram counts, the Gaussian length
  penalty with sigma = 6, the factor 10, lengths counted in bigrams as there), so that
  with the corpus equal to the scored set it gives pycocoevalcap's numbers exactly.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Sequence

import numpy as np


def sentence_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *,
                  tokenize: str = "13a") -> np.ndarray:
  """sacrebleu sentence BLEU / 100 of each hypothesis against its references: `[B]`."""
  from sacrebleu.metrics import BLEU  # noqa: PLC0415 - sacrebleu's import is slow

  if len(hypotheses) != len(references):
    raise ValueError(f"sentence_bleu: {len(hypotheses)} hypotheses but {len(references)} "
                     "reference lists")
  bleu = BLEU(effective_order=True, tokenize=tokenize)
  return np.array([bleu.sentence_score(h, list(refs)).score / 100.0
                   for h, refs in zip(hypotheses, references)], np.float64)


def _ngrams(sentence: str, n: int) -> collections.Counter:
  words = sentence.split()
  return collections.Counter(tuple(words[i:i + k]) for k in range(1, n + 1)
                             for i in range(len(words) - k + 1))


class CiderD:
  """CIDEr-D with document frequencies from `corpus`, one reference list per image.

  `score(hypotheses, references) -> [B]`: hypothesis b against references[b]. Sentences
  are whitespace-tokenized (lower-case and tokenize them as the corpus was, e.g. with the
  PTB tokenizer that the COCO evaluation runs).
  """

  def __init__(self, corpus: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0):
    if not corpus:
      raise ValueError("CiderD: the reference corpus is empty")
    self.n, self.sigma = n, sigma
    self.document_frequency: collections.Counter = collections.Counter()
    for refs in corpus:
      self.document_frequency.update({g for ref in refs for g in _ngrams(ref, n)})
    self.ref_len = math.log(float(len(corpus)))
    # A reward scores the same references step after step: their vectors are computed once.
    self._vector = functools.lru_cache(maxsize=1 << 16)(self._vector)

  def _vector(self, sentence: str):
    """tf-idf vectors per n-gram order, their norms, and the length (in bigrams)."""
    vec = [{} for _ in range(self.n)]
    norm = np.zeros(self.n)
    length = 0
    for gram, tf in _ngrams(sentence, self.n).items():
      k = len(gram) - 1
      df = math.log(max(1.0, self.document_frequency.get(gram, 0.0)))
      vec[k][gram] = float(tf) * (self.ref_len - df)
      norm[k] += vec[k][gram] ** 2
      if k == 1:  # pycocoevalcap counts the length in bigrams; kept to match it
        length += tf
    return vec, np.sqrt(norm), length

  def _similarity(self, hyp, ref) -> np.ndarray:
    (vh, nh, lh), (vr, nr, lr) = hyp, ref
    val = np.zeros(self.n)
    for k in range(self.n):
      val[k] = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
      if nh[k] != 0 and nr[k] != 0:
        val[k] /= nh[k] * nr[k]
    return val * math.exp(-(float(lh - lr) ** 2) / (2 * self.sigma ** 2))

  def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    if len(hypotheses) != len(references):
      raise ValueError(f"CiderD: {len(hypotheses)} hypotheses but {len(references)} "
                       "reference lists")
    out = np.zeros(len(hypotheses), np.float64)
    for b, (h, refs) in enumerate(zip(hypotheses, references)):
      if not refs:
        raise ValueError(f"CiderD: hypothesis {b} has no references")
      hyp = self._vector(h)
      total = sum(self._similarity(hyp, self._vector(r)) for r in refs)
      out[b] = np.mean(total) / len(refs) * 10.0
    return out
