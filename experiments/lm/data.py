"""PTB words and tinyshakespeare characters as id streams, batched for truncated BPTT."""

from __future__ import annotations

import collections
import gzip
import os
from typing import NamedTuple

import numpy as np

from experiments.common import UserError, data_path


class Corpus(NamedTuple):
  vocab: list[str]       # id -> token
  train: np.ndarray      # [N_train] int32 ids
  valid: np.ndarray
  test: np.ndarray


def _read(path: str) -> str:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    text = f.read()
  if not text.strip():
    raise UserError(f"{path} is empty: the corpus needs text")
  return text


def ptb_tokens(text: str) -> list[str]:
  """The standard tokenization: `line.split() + ["<eos>"]` for every line."""
  return [tok for line in text.splitlines() for tok in line.split() + ["<eos>"]]


def build_vocab(tokens) -> list[str]:
  """Ids by decreasing frequency, ties broken alphabetically: deterministic."""
  counts = collections.Counter(tokens)
  return sorted(counts, key=lambda t: (-counts[t], t))


def load_ptb(config) -> Corpus:
  """Mikolov's PTB from `data_dir/ptb`: ptb.train.txt(.gz), ptb.valid.txt, ptb.test.txt."""
  root = data_path(config, "ptb")

  def split(name):
    for candidate in (f"ptb.{name}.txt", f"ptb.{name}.txt.gz"):
      path = os.path.join(root, candidate)
      if os.path.exists(path):
        return ptb_tokens(_read(path))
    raise UserError(f"--data_dir={config.data_dir}: ptb/ptb.{name}.txt(.gz) not found there")

  train, valid, test = split("train"), split("valid"), split("test")
  vocab = build_vocab(train)
  index = {tok: i for i, tok in enumerate(vocab)}
  unk = index.get("<unk>")

  def ids(tokens):
    if unk is None:
      missing = {t for t in tokens if t not in index}
      if missing:
        raise UserError(f"tokens outside the training vocabulary and no <unk>: {sorted(missing)[:5]}")
    return np.array([index.get(t, unk) for t in tokens], np.int32)

  return Corpus(vocab, ids(train), ids(valid), ids(test))


def load_chars(config) -> Corpus:
  """tinyshakespeare as characters, split 90% / 5% / 5% in order."""
  text = _read(data_path(config, "tinyshakespeare", "input.txt"))
  vocab = sorted(set(text))
  index = {c: i for i, c in enumerate(vocab)}
  ids = np.array([index[c] for c in text], np.int32)
  n_train, n_valid = int(0.9 * len(ids)), int(0.05 * len(ids))
  return Corpus(vocab, ids[:n_train], ids[n_train:n_train + n_valid], ids[n_train + n_valid:])


def load(config) -> Corpus:
  if config.level == "word":
    corpus = load_ptb(config)
  elif config.level == "char":
    corpus = load_chars(config)
  else:
    raise UserError(f"--level: expected word or char, got {config.level!r}")
  if config.train_tokens > 0:
    corpus = corpus._replace(train=corpus.train[:config.train_tokens])
  if config.eval_tokens > 0:
    corpus = corpus._replace(valid=corpus.valid[:config.eval_tokens],
                             test=corpus.test[:config.eval_tokens])
  return corpus


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
  """`[N]` -> `[B, N // B]`: B contiguous streams, read left to right (Zaremba et al.)."""
  n = len(ids) // batch_size
  if n < 2:
    raise UserError(f"the corpus ({len(ids)} tokens) is too short for batch size {batch_size}")
  return ids[:batch_size * n].reshape(batch_size, n)


class Batches:
  """Truncated-BPTT batches as a pure function of the step.

  Step s reads `[B, T]` inputs at columns `[i*T, (i+1)*T)` of the batched
  stream and targets one column later, with `i = s mod steps_per_epoch`;
  `reset` is True at the first batch of every epoch (the carry starts at zero).
  """

  def __init__(self, ids: np.ndarray, batch_size: int, bptt: int):
    self.streams = batchify(ids, batch_size)  # [B, N]
    self.bptt = bptt
    self.steps_per_epoch = (self.streams.shape[1] - 1) // bptt
    if self.steps_per_epoch < 1:
      raise UserError(f"the training stream is shorter than one batch (bptt {bptt})")

  def __call__(self, step: int, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    i = step % self.steps_per_epoch
    lo, hi = i * self.bptt, (i + 1) * self.bptt
    return {"inputs": self.streams[rows, lo:hi], "targets": self.streams[rows, lo + 1:hi + 1],
            "reset": np.asarray(i == 0)}
