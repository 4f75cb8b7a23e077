"""Vocabulary expansion (Kiros et al. 2015, §3.2).

The encoder knows its `vocab_size` words; word2vec knows many more. A linear map
from the word-vector space into the encoder's word-embedding space,

    e(w) ≈ W^T x(w) + b,      x(w) [d_w2v], e(w) [d_emb], W [d_w2v, d_emb], b [d_emb],

is fit by least squares (with the bias, as the original code's
sklearn `LinearRegression` does) on the words both vocabularies hold, and gives
an embedding to every word word2vec knows. `expand` keeps the encoder's own rows
for its own words, at its own ids, and appends the mapped vectors of the rest, so
the encoder's ids stay valid and the lookup only grows.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from experiments.skip_thought.corpus import RESERVED  # never used to fit the map


class LinearMap(NamedTuple):
  weights: np.ndarray  # [d_w2v, d_emb]
  bias: np.ndarray     # [d_emb]

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """`x [..., d_w2v]` -> `[..., d_emb]`."""
    return x @ self.weights + self.bias


def fit(x: np.ndarray, y: np.ndarray) -> LinearMap:
  """The least-squares `LinearMap` with `map(x) ≈ y`, from `x [N, d_w2v]` and `y [N, d_emb]`
  (float64 inside; minimum-norm when underdetermined, as `np.linalg.lstsq`)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"x has {x.shape[0]} rows, y {y.shape[0]}")
  design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)  # [N, d_w2v + 1]
  solution, *_ = np.linalg.lstsq(design, y, rcond=None)            # [d_w2v + 1, d_emb]
  return LinearMap(solution[:-1].astype(np.float32), solution[-1].astype(np.float32))


def shared(encoder_vocab: Sequence[str], w2v_vocab: Sequence[str],
           exclude: Sequence[str] = RESERVED) -> tuple[np.ndarray, np.ndarray]:
  """The words both vocabularies hold (`exclude` left out): `(encoder rows [N], w2v rows [N])`
  int64, in the encoder's order."""
  w2v_index = {w: i for i, w in enumerate(w2v_vocab)}
  skip = set(exclude)
  pairs = [(i, w2v_index[w]) for i, w in enumerate(encoder_vocab)
           if w in w2v_index and w not in skip]
  if not pairs:
    return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
  enc, w2v = zip(*pairs)
  return np.array(enc, np.int64), np.array(w2v, np.int64)


class Expanded(NamedTuple):
  """The expanded vocabulary: `words[i]` has embedding `embeddings[i]` and `index[words[i]] == i`.
  Rows `[0, len(encoder_vocab))` are the encoder's, unchanged."""
  words: list
  embeddings: np.ndarray  # [N, d_emb] float32
  index: dict
  linear_map: LinearMap
  fit_words: int          # how many shared words the map was fit on

  def lookup(self, tokens: Sequence[str], unk: int = 1) -> np.ndarray:
    """`[len(tokens)]` int32 rows of `embeddings` (`unk` for words neither vocabulary holds)."""
    return np.array([self.index.get(t, unk) for t in tokens], np.int32)


def expand(encoder_vocab: Sequence[str], encoder_embeddings: np.ndarray,
           w2v_vocab: Sequence[str], w2v_vectors: np.ndarray,
           exclude: Sequence[str] = RESERVED) -> Expanded:
  """The encoder's vocabulary grown to every word of `w2v_vocab`.

  Args:
    encoder_vocab: the encoder's words, id -> word (`Corpus.vocab`).
    encoder_embeddings: `[len(encoder_vocab), d_emb]` its trained word embeddings.
    w2v_vocab: the word vectors' words (`Corpus.large_vocab(min_count)`).
    w2v_vectors: `[len(w2v_vocab), d_w2v]` (`word_vectors.train`).
    exclude: words never used to fit the map nor added (the reserved tokens).

  Returns:
    `Expanded`: the encoder's words with their own embeddings, then every other word of
    `w2v_vocab` (in its order) with `linear_map(x)`.
  """
  encoder_embeddings = np.asarray(encoder_embeddings)
  w2v_vectors = np.asarray(w2v_vectors)
  if len(encoder_vocab) != encoder_embeddings.shape[0]:
    raise ValueError(f"{len(encoder_vocab)} encoder words but {encoder_embeddings.shape[0]} rows")
  if len(w2v_vocab) != w2v_vectors.shape[0]:
    raise ValueError(f"{len(w2v_vocab)} word-vector words but {w2v_vectors.shape[0]} rows")
  enc_rows, w2v_rows = shared(encoder_vocab, w2v_vocab, exclude)
  if len(enc_rows) <= w2v_vectors.shape[1]:
    raise ValueError(f"{len(enc_rows)} shared words do not determine a map from "
                     f"{w2v_vectors.shape[1]} dimensions")
  linear_map = fit(w2v_vectors[w2v_rows], encoder_embeddings[enc_rows])
  known, skip = set(encoder_vocab), set(exclude)
  new = [i for i, w in enumerate(w2v_vocab) if w not in known and w not in skip]
  words = list(encoder_vocab) + [w2v_vocab[i] for i in new]
  mapped = linear_map(w2v_vectors[np.array(new, np.int64)]) if new else \
      np.zeros((0, encoder_embeddings.shape[1]))
  embeddings = np.concatenate([encoder_embeddings, mapped]).astype(np.float32)
  return Expanded(words, embeddings, {w: i for i, w in enumerate(words)}, linear_map,
                  len(enc_rows))
