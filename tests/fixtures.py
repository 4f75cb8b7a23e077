"""Shared test helpers: random params, and a synthetic PTB-shaped corpus (no real data needed)."""

import os

import jax
import numpy as np


def randomize(params, key, scale=0.5):
  """Adds noise to every param, so zero-initialised ones (biases, peepholes) matter too."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                for leaf, k in zip(leaves, keys)])


def write_fake_ptb(root: str, *, train_lines=300, eval_lines=80, vocab=60, seed=0) -> str:
  """Writes root/ptb/ptb.{train,valid,test}.txt in PTB's format; returns root.

  Lines start with a space and end with " \\n" like Mikolov's files; words
  follow a simple Markov chain so that a model can learn something.
  """
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(vocab - 1)] + ["<unk>"]
  successor = rng.integers(0, vocab, size=vocab)

  def lines(n):
    out = []
    for _ in range(n):
      w = rng.integers(0, vocab)
      toks = []
      for _ in range(rng.integers(3, 12)):
        toks.append(words[w])
        w = successor[w] if rng.random() < 0.8 else rng.integers(0, vocab)
      out.append(" " + " ".join(toks) + " \n")
    return "".join(out)

  os.makedirs(os.path.join(root, "ptb"), exist_ok=True)
  for name, n in (("train", train_lines), ("valid", eval_lines), ("test", eval_lines)):
    with open(os.path.join(root, "ptb", f"ptb.{name}.txt"), "w") as f:
      f.write(lines(n))
  return root


def gnmt_fixed_batch(V: int, S: int = 6, U: int = 5) -> dict:
  """Four sentence pairs of GNMT's training batch (vocabulary V, source length S, target
  length U), ragged source and target lengths, padding zeroed; a fixed draw."""
  import numpy as np
  rng = np.random.default_rng(0)
  source_lengths = np.array([6, 2, 4, 5], np.int32)
  source = rng.integers(4, V, (4, S)).astype(np.int32)
  source[np.arange(S)[None] >= source_lengths[:, None]] = 0
  return {"source": source, "source_lengths": source_lengths,
          "target_in": rng.integers(4, V, (4, U)).astype(np.int32),
          "target_out": rng.integers(4, V, (4, U)).astype(np.int32),
          "target_lengths": np.array([5, 3, 1, 4], np.int32)}


def gnmt_config(hidden_size: int, vocab_size: int, **overrides):
  """A GNMT config at a test's size: all 8 + 8 layers kept, no dropout; `overrides` on top.

  `hidden_size` and `vocab_size` are the test's defaults: an override of either wins.
  """
  from experiments.gnmt import GNMTConfig
  return GNMTConfig(**{"hidden_size": hidden_size, "num_layers": 8, "vocab_size": vocab_size,
                       "dropout": 0.0, **overrides})
