"""`train_and_evaluate(config, workdir)`: the skip-thought experiment, callable from tests.

In order, each stage skipped when its output is already in the workdir (a rerun resumes):
the corpus (`corpus.build`, cached under `--cache_dir`), the word vectors of the same
corpus for vocabulary expansion (`word_vectors.npz`), the skip-thought models (`fit`,
orbax checkpoints), their held-out NLL, then, with `--senteval`, the evaluation table
(`evaluate.evaluate_workdir`: our encoders and the two baselines on the seven tasks).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from experiments.common import UserError
from experiments.skip_thought import corpus as corpus_lib
from experiments.skip_thought import model as model_lib
from experiments.skip_thought import sentences as sentences_lib
from experiments.skip_thought import word_vectors as word_vectors_lib
from rnn_jax import sampled_softmax, training

WORD_VECTORS = "word_vectors.npz"
VOCAB = "vocab.json"
PUNKT = "punkt.pkl"


def check_config(config) -> None:
  for name in ("vocab_size", "max_len", "embed_size", "hidden_size", "batch_size",
               "train_steps"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  for name in ("softmax_samples", "w2v_steps", "max_novels", "eval_sentences"):
    if getattr(config, name) < 0:
      raise UserError(f"--{name}: expected 0 or more, got {getattr(config, name)}")
  try:
    model_lib.check_encoders(config.encoders)
  except ValueError as e:
    raise UserError(f"--{e}") from None
  if "bi" in config.encoders and config.hidden_size % 2:
    raise UserError(f"--hidden_size: bi-skip splits it between two directions, so it must "
                    f"be even, got {config.hidden_size}")
  if config.softmax_samples >= config.vocab_size:
    raise UserError(f"--softmax_samples {config.softmax_samples}: use 0 (the full softmax) "
                    f"for as many samples as the vocabulary has words")


def load_corpus(config, workdir: str) -> corpus_lib.Corpus:
  novels = os.path.join(config.data_dir, "novels")
  if not config.data_dir or not os.path.isdir(novels):
    raise UserError(f"no novels/ under --data_dir {config.data_dir!r} (set --data_dir or "
                    f"$RNN_JAX_DATA to the data root)")
  cache = config.cache_dir or os.path.join(workdir, "corpus")
  return corpus_lib.build(novels, cache, vocab_size=config.vocab_size,
                          max_novels=config.max_novels, progress=config.progress)


def save_vocabulary(corpus: corpus_lib.Corpus, workdir: str) -> None:
  """What the encoder needs to read new text as training did: the vocabulary and Punkt."""
  if jax.process_index():
    return
  training.workdir.atomic_write(os.path.join(workdir, VOCAB), json.dumps(corpus.vocab))
  sentences_lib.save_params(corpus.punkt, os.path.join(workdir, PUNKT))


def train_word_vectors(config, corpus, workdir: str) -> None:
  """Skip-gram vectors of every word seen `w2v_min_count` times -> workdir/word_vectors.npz
  (`vectors [W, d]`, `words [W]`); skipped when the file is there."""
  path = os.path.join(workdir, WORD_VECTORS)
  if config.w2v_steps == 0 or os.path.exists(path):
    return
  start = time.time()
  words = corpus.large_vocab(config.w2v_min_count)
  vectors = word_vectors_lib.train(
      corpus.word_stream(config.w2v_min_count, "train"),
      corpus.large_counts(config.w2v_min_count), dim=config.w2v_dim,
      window=config.w2v_window, negatives=config.w2v_negatives, steps=config.w2v_steps,
      batch_size=config.w2v_batch_size, learning_rate=config.w2v_learning_rate,
      key=jax.random.fold_in(jax.random.key(config.seed), 2), progress=config.progress)
  if jax.process_index() == 0:
    tmp = path + ".tmp.npz"
    np.savez(tmp, vectors=np.asarray(vectors, np.float32), words=np.asarray(words))
    os.replace(tmp, path)
  print(f"word vectors: {len(words)} words x {config.w2v_dim} in {time.time() - start:.0f} s",
        flush=True)


def make_loss_fn(model):

  def loss_fn(params, extra, batch, key):
    loss, metrics = model.loss(params, batch, key)
    metrics = {k: v for k, v in metrics.items() if not k.endswith(("_sum", "_tokens"))}
    return loss, (extra, metrics)

  return loss_fn


def make_evaluator(config, model, corpus):
  """`evaluate(params) -> {held_out/<name>_<prev|next>_nll, ..._ppl}`: the full softmax
  over the first `eval_sentences` held-out triples."""
  batch_size = min(config.batch_size, 256)
  batches = list(corpus_lib.eval_batches(corpus, batch_size, max_len=config.max_len,
                                         pad_multiple=config.max_len))
  batches = batches[:max(1, math.ceil(config.eval_sentences / batch_size))]
  sums = jax.jit(lambda params, batch: model.loss(params, batch)[1])

  def evaluate(params) -> dict[str, float]:
    totals = {}
    for batch in batches:
      for k, v in sums(params, batch).items():
        if k.endswith(("_sum", "_tokens")):
          totals[k] = totals.get(k, 0.0) + float(v)
    out = {}
    for name in model.names:
      for which in ("prev", "next"):
        nll = totals[f"{name}_{which}_nll_sum"] / max(totals[f"{which}_tokens"], 1.0)
        out[f"held_out/{name}_{which}_nll"] = nll
        out[f"held_out/{name}_{which}_ppl"] = math.exp(min(nll, 50.0))
    return out

  return evaluate


def make_optimizer(config):
  return training.optimizer("adam", config.learning_rate, config.max_grad_norm)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the skip-thought models of `config` in `workdir` (resuming from its
  checkpoints) and returns the results (also in results.json)."""
  check_config(config)
  start_time = time.time()
  corpus = load_corpus(config, workdir)
  save_vocabulary(corpus, workdir)
  s = corpus.stats
  print(f"novels: {s['novels']} novels, {s['sentences']} sentences, {s['tokens']} words, "
        f"{len(corpus.triples('train'))} training triples", flush=True)
  train_word_vectors(config, corpus, workdir)

  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  V = len(corpus.vocab)
  # The proposal of the sampled softmax: each encoder id's count (reserved ids 0, then
  # end-of-sentence and the unknown words' counts).
  counts = np.concatenate([np.zeros(corpus_lib.NUM_RESERVED),
                           corpus.counts[:config.vocab_size]]).astype(np.float64)
  counts[corpus_lib.EOS] = len(corpus.sentences)  # every sentence ends with one
  counts[corpus_lib.UNK] = corpus.counts[config.vocab_size:].sum()
  model = model_lib.build(config, V, log_q=sampled_softmax.unigram_proposal(counts))
  optimizer = make_optimizer(config)
  key = jax.random.key(config.seed)
  state = training.state.create_state(model.init(jax.random.fold_in(key, 0)), optimizer)
  train_step = training.make_train_step(make_loss_fn(model), optimizer)
  # Length-sorted batches padded to their longest row rounded up to 8 (one width for
  # source and targets: at most max_len / 8 + 1 compilations); without sorting, every
  # batch at max_len (one compilation: a batch of 128 random triples nearly always has a
  # sentence that long).
  sorting = config.sort_window > 0
  batches = corpus_lib.Batches(corpus, config.batch_size, seed=config.seed,
                               max_len=config.max_len, sort_window=config.sort_window,
                               pad_multiple=8 if sorting else config.max_len, same_width=True)
  evaluate = make_evaluator(config, model, corpus)
  print(f"skip-thought {'+'.join(model.names)}: V={V}, E={config.embed_size}, "
        f"D={config.hidden_size}, {batches.steps_per_epoch} steps per epoch, "
        f"{config.train_steps} steps, {mesh.size} device(s)", flush=True)
  num_steps = config.max_steps or config.train_steps
  state = training.fit(
      workdir=workdir, experiment="skip_thought", state=state, train_step=train_step,
      batch_at=batches.at, num_steps=num_steps, key=jax.random.fold_in(key, 1),
      evaluate=lambda state: evaluate(state.params),
      eval_every=config.eval_every or max(num_steps // 5, 1),
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size, items_name="triples", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)

  step = int(jax.device_get(state.step))
  results = {"step": step, "epochs": step / batches.steps_per_epoch}
  results.update(evaluate(state.params))
  results["train_wall_time_s"] = time.time() - start_time
  if config.senteval:
    from experiments.skip_thought import evaluate as evaluate_lib
    results.update(evaluate_lib.evaluate_workdir(workdir, config, corpus=corpus,
                                                 params=state.params))
  results["wall_time_s"] = time.time() - start_time
  common.report_results(workdir, results)
  return results
