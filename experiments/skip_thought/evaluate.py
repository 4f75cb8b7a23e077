r"""Skip-thought's evaluation table: our encoders and two baselines on the paper's seven tasks.

    python -m experiments.skip_thought.evaluate --workdir=runs/skip_thought

reads a trained run (flags.txt, vocab.json, punkt.pkl, word_vectors.npz, the latest
checkpoint) and writes `senteval.md` (one table beside the paper's combine-skip row),
`senteval.json` and `neighbours.txt` there. The encoders:

    uni-skip, bi-skip        each model's final state, L2-normalised (skip-thoughts' encode)
    combine-skip             [uni-skip, bi-skip]
    mean word vectors        the mean of the corpus's skip-gram vectors (baseline)
    untrained GRU            a GRU of width D with random weights over the same word vectors
                             (baseline: random recurrent encoders are strong, Wieting & Kiela
                             2019), its final state L2-normalised

Vocabulary expansion (Kiros et al. 2015, §3.2): each model's words are its 20,000; a word
outside them that has a skip-gram vector gets W v + b, the least-squares map from the
vector space into the model's embedding space fit on the words both share
(`expansion.py`); other words are <unk>. `--noexpand` turns it off.

`Encoder` encodes in length buckets: sentences sorted by length, cut into batches of
`batch_size`, each padded to its longest row rounded up to a multiple of 8 (one
compilation per bucket width), run by one jitted function.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments import common
from experiments.common import UserError
from experiments.skip_thought import corpus as corpus_lib
from experiments.skip_thought import expansion as expansion_lib
from experiments.skip_thought import model as model_lib
from experiments.skip_thought import sentences as sentences_lib
from experiments.skip_thought import senteval
from rnn_jax import cells, training, unroll

NAMES = {"uni": "uni-skip", "bi": "bi-skip"}
QUERIES = ("he ran his hand inquiringly over his beard .",
           "\"i do not know , \" she said .",
           "the rain fell all night and in the morning the river had risen .",
           "what would you have me do ?")


def l2_normalize(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Lookup:
  """Words -> ids of a table: `index[word]`, else `unk`; tokenizes with `sentences.tokenize`."""

  def __init__(self, words: Sequence[str], unk: int = corpus_lib.UNK):
    self.index = {w: i for i, w in enumerate(words)}
    self.unk = unk

  def __call__(self, sentence: str) -> np.ndarray:
    return np.array([self.index.get(w, self.unk) for w in sentences_lib.tokenize(sentence)],
                    np.int32)


class Encoder:
  """`encoder(sentences) -> {name: [N, D_name]}`: jitted `encode(params, ids [B, T], lengths
  [B]) -> {name: [B, D]}` over length buckets; sentences with no known word get id `unk`."""

  def __init__(self, encode: Callable, params, lookup: Lookup, *, batch_size: int = 256,
               max_len: int = 100, progress: bool = False):
    self._encode = jax.jit(encode)
    self.params, self.lookup = params, lookup
    self.batch_size, self.max_len, self.progress = batch_size, max_len, progress

  def __call__(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
    ids = [self.lookup(s)[:self.max_len] for s in sentences]
    ids = [row if len(row) else np.array([self.lookup.unk], np.int32) for row in ids]
    lengths = np.array([len(r) for r in ids])
    order = np.argsort(lengths, kind="stable")
    out = None
    B = self.batch_size
    for lo in tqdm(range(0, len(ids), B), desc="encode", disable=not self.progress,
                   leave=False):
      rows = order[lo:lo + B]
      width = -(-int(lengths[rows].max()) // 8) * 8
      batch = np.zeros((B, width), np.int32)
      for i, r in enumerate(rows):
        batch[i, :lengths[r]] = ids[r]
      batch_lengths = np.ones((B,), np.int32)
      batch_lengths[:len(rows)] = lengths[rows]
      codes = jax.device_get(self._encode(self.params, batch, batch_lengths))
      if out is None:
        out = {k: np.zeros((len(ids), v.shape[-1]), np.float32) for k, v in codes.items()}
      for k, v in codes.items():
        out[k][rows] = v[:len(rows)]
    return out


class Memo:
  """One `Encoder` call per distinct list of sentences, shared by the encoders that read
  its outputs (combine-skip reuses uni-skip's and bi-skip's vectors)."""

  def __init__(self, encoder: Callable):
    self.encoder, self._key, self._value = encoder, None, None

  def __call__(self, sentences):
    key = tuple(sentences)
    if key != self._key:
      self._key, self._value = key, self.encoder(sentences)
    return self._value


def skip_thought_encoders(config, model, params, vocab, word_vectors=None, *,
                          batch_size=256, progress=False) -> dict[str, Callable]:
  """The trained models' encoders by table name (`NAMES`, plus combine-skip when both
  are trained), with vocabulary expansion when `word_vectors` (words, vectors) is given."""
  if word_vectors is None:
    lookup, tables = Lookup(vocab), {n: params[n]["embed"] for n in model.names}
  else:
    words, vectors = word_vectors
    tables = {}
    for n in model.names:
      expanded = expansion_lib.expand(vocab, np.asarray(params[n]["embed"]), words, vectors)
      tables[n] = expanded.embeddings
    lookup = Lookup(expanded.words)
  params = {n: dict(params[n], embed=jnp.asarray(tables[n])) for n in model.names}
  memo = Memo(Encoder(model.encode, params, lookup, batch_size=batch_size, progress=progress))
  encoders = {NAMES[n]: (lambda s, n=n: l2_normalize(memo(s)[n])) for n in model.names}
  if len(model.names) == 2:
    encoders["combine-skip"] = lambda s: np.concatenate(
        [l2_normalize(memo(s)[n]) for n in model.names], axis=-1)
  return encoders


def mean_vectors_encoder(word_vectors) -> Callable:
  """The mean of the words' skip-gram vectors (zeros for a sentence with none)."""
  words, vectors = word_vectors
  lookup = Lookup(words, unk=-1)

  def encode(sentences):
    out = np.zeros((len(sentences), vectors.shape[1]), np.float32)
    for i, s in enumerate(sentences):
      ids = lookup(s)
      ids = ids[ids >= corpus_lib.NUM_RESERVED]
      if len(ids):
        out[i] = vectors[ids].mean(0)
    return out

  return encode


def untrained_gru_encoder(word_vectors, hidden_size: int, seed: int, *, batch_size=256,
                          progress=False) -> Callable:
  """A GRU of width `hidden_size` with random weights (the model's own initializers),
  reading the skip-gram vectors; its final state, L2-normalised."""
  words, vectors = word_vectors
  cell = cells.gru(hidden_size)
  params = {"embed": jnp.asarray(vectors),
            "gru": cell.init(jax.random.key(seed), vectors.shape[1])}

  def encode(p, ids, lengths):
    x = jnp.take(p["embed"], ids, axis=0)  # [B, T, d]
    _, h = unroll(cell, p["gru"], x, seq_lengths=lengths)
    return {"gru": h}

  encoder = Encoder(encode, params, Lookup(words), batch_size=batch_size, progress=progress)
  return lambda s: l2_normalize(encoder(s)["gru"])


def load_word_vectors(workdir: str):
  path = os.path.join(workdir, "word_vectors.npz")
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    return [str(w) for w in f["words"]], f["vectors"].astype(np.float32)


def restore(workdir: str):
  """`(config, vocab, model, params)` of a trained skip-thought run."""
  from experiments.skip_thought.config import SkipThoughtConfig
  flags_path = os.path.join(workdir, "flags.txt")
  if common.flagfile_experiment(flags_path) != "skip_thought":
    raise UserError(f"{workdir} is not a skip_thought run (no skip_thought flags.txt there)")
  config = common.config_from_flagfile(SkipThoughtConfig, flags_path)
  vocab = common.read_json(os.path.join(workdir, "vocab.json"), "the vocabulary")
  model = model_lib.build(config, len(vocab))
  from experiments.skip_thought import train as train_lib
  state = training.state.create_state(model.init(jax.random.key(0)),
                                      train_lib.make_optimizer(config))
  checkpointer = training.Checkpointer(workdir, "skip_thought")
  checkpointer.check_owner()
  restored, _ = checkpointer.restore_latest(state)
  checkpointer.close()
  if restored is None:
    raise UserError(f"{workdir} has no checkpoint")
  return config, vocab, model, restored.params


def nearest_neighbours(encode: Callable, corpus: corpus_lib.Corpus, queries: Sequence[str], *,
                       pool: int = 20000, k: int = 3, seed: int = 0) -> list[tuple]:
  """For each query, the `k` closest of `pool` corpus sentences (a fixed random sample, all
  of them if fewer) by cosine: `[(query, [(cosine, sentence), ...]), ...]`."""
  rng = np.random.default_rng(seed)
  n = len(corpus.sentences)
  rows = np.sort(rng.choice(n, size=min(pool, n), replace=False))
  words = corpus.words
  text = [" ".join(words[i - corpus_lib.NUM_RESERVED] for i in corpus.sentences.row(r))
          for r in rows]
  pool_vectors = l2_normalize(encode(text))
  query_vectors = l2_normalize(encode(list(queries)))
  out = []
  for q, v in zip(queries, query_vectors):
    cos = pool_vectors @ v
    best = np.argsort(-cos)[:k]
    out.append((q, [(float(cos[i]), text[i]) for i in best]))
  return out


def evaluate_workdir(workdir: str, config=None, *, corpus=None, params=None, tasks=None,
                     expand: bool = True, protocol=None, progress: bool = True,
                     neighbours: bool = True) -> dict[str, float]:
  """Writes senteval.md, senteval.json (and neighbours.txt) in `workdir`; returns the
  figures flattened as {"senteval/<encoder>/<task>_<metric>": value}."""
  start = time.time()
  if params is None:
    config, vocab, model, params = restore(workdir)
  else:
    vocab = common.read_json(os.path.join(workdir, "vocab.json"), "the vocabulary")
    model = model_lib.build(config, len(vocab))
  data_dir = config.data_dir
  word_vectors = load_word_vectors(workdir)
  encoders = skip_thought_encoders(config, model, params, vocab,
                                   word_vectors if expand else None, progress=progress)
  if word_vectors is not None:
    encoders["mean word vectors"] = mean_vectors_encoder(word_vectors)
    encoders["untrained GRU"] = untrained_gru_encoder(word_vectors, config.hidden_size,
                                                      seed=config.seed + 1000,
                                                      progress=progress)
  results = senteval.evaluate(encoders, data_dir, tasks or senteval.TASKS,
                              protocol=protocol or senteval.Protocol(), progress=progress)
  table = senteval.format_table(results)
  if jax.process_index() == 0:
    training.workdir.atomic_write(os.path.join(workdir, "senteval.md"), table + "\n")
    training.workdir.atomic_write(os.path.join(workdir, "senteval.json"),
                                  json.dumps(results, indent=1))
  print(table, flush=True)
  if neighbours:
    if corpus is None:
      from experiments.skip_thought import train as train_lib
      corpus = train_lib.load_corpus(config, workdir)
    name = "combine-skip" if "combine-skip" in encoders else NAMES[model.names[0]]
    pool = min(20000, len(corpus.sentences))
    lines = [f"nearest neighbours by {name}, among {pool:,} corpus sentences:"]
    for q, hits in nearest_neighbours(encoders[name], corpus, QUERIES):
      lines.append(f"\n{q}")
      lines += [f"  {c:.3f}  {s}" for c, s in hits]
    text = "\n".join(lines)
    print(text, flush=True)
    if jax.process_index() == 0:
      training.workdir.atomic_write(os.path.join(workdir, "neighbours.txt"), text + "\n")
  flat = {f"senteval/{enc}/{task}_{metric}": float(v)
          for enc, by_task in results.items() for task, metrics in by_task.items()
          for metric, v in metrics.items() if metric in ("acc", "f1", "pearson", "spearman",
                                                        "mse")}
  flat["senteval_wall_time_s"] = time.time() - start
  return flat


def main(argv):
  from absl import flags
  common.check_no_positional(argv)
  workdir = common.existing_workdir()
  tasks = flags.FLAGS.tasks
  unknown = [t for t in tasks if t not in senteval.TASKS]
  if unknown:
    raise UserError(f"--tasks: unknown {unknown}; expected some of {list(senteval.TASKS)}")
  evaluate_workdir(workdir, tasks=tasks, expand=flags.FLAGS.expand,
                   neighbours=flags.FLAGS.neighbours)


if __name__ == "__main__":
  from absl import flags
  flags.DEFINE_list("tasks", list(senteval.TASKS), "Tasks to run.")
  flags.DEFINE_bool("expand", True, "Vocabulary expansion from the run's word vectors.")
  flags.DEFINE_bool("neighbours", True, "Print nearest corpus neighbours of a few queries.")
  common.run(main)
