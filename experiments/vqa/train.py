"""`train_and_evaluate(config, workdir)` and `answer(config, workdir)` for VQA."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.common import UserError
from experiments.vqa import data as data_lib
from experiments.vqa import model as model_lib
from experiments.vqa.config import CLASSIFIERS, CORPORA, MODELS
from rnn_jax import seq2seq, training


def check_config(config) -> None:
  if config.model not in MODELS:
    raise UserError(f"--model: expected one of {', '.join(MODELS)}, got {config.model!r}")
  if config.corpus not in CORPORA:
    raise UserError(f"--corpus: expected one of {', '.join(CORPORA)}, got {config.corpus!r}")
  if config.mode not in ("train", "answer"):
    raise UserError(f"--mode: expected train or answer, got {config.mode!r}")
  for name in ("embed_size", "hidden_size", "common_size", "mlp_size", "attention_size",
               "attention_layers", "question_layers", "batch_size", "train_steps",
               "eval_batch_size", "image_size", "min_word_count", "max_question_len",
               "num_answers", "max_answer_len", "questions_per_image", "top_k"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  if not config.cnn_features or any(not str(f).isdigit() or int(f) < 1
                                    for f in config.cnn_features):
    raise UserError(f"--cnn_features: expected positive widths, got {config.cnn_features}")
  if not 0.0 <= config.dropout < 1.0:
    raise UserError(f"--dropout: expected a probability in [0, 1), got {config.dropout}")
  if config.image_pool not in model_lib.POOLS:
    raise UserError(f"--image_pool: expected one of {', '.join(model_lib.POOLS)}, got "
                    f"{config.image_pool!r}")
  if config.decay not in ("constant", "cosine"):
    raise UserError(f"--decay: expected constant or cosine, got {config.decay!r}")
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected one of {', '.join(training.optim.OPTIMIZERS)}, "
                    f"got {config.optimizer!r}")


def learning_rate_schedule(config, num_steps: int):
  """Linear warmup to `learning_rate`, then constant or a cosine decay to 0."""
  return training.optim.warmup_decay_schedule(config.learning_rate, num_steps,
                                              warmup_steps=config.warmup_steps,
                                              decay=config.decay)


# Losses.


def classifier_loss(model: model_lib.VQAModel):
  """Softmax cross-entropy over the K answers; questions whose answer is not among them
  (class -1) are left out of the mean."""

  def loss_fn(params, extra, batch, key):
    logits, _ = model.logits(params, batch["images"], batch["questions"],
                             batch["question_lengths"], image_slot=batch.get("image_slot"),
                             training=True, key=key)
    labels = batch["answer_class"]
    known = (labels >= 0).astype(logits.dtype)  # [B]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    count = jnp.maximum(known.sum(), 1.0)
    loss = jnp.sum(nll * known) / count
    accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * known) / count
    return loss, (extra, {"nll": loss, "accuracy": accuracy})

  return loss_fn


def generation_loss(model: model_lib.VQAModel):
  """Teacher-forced cross-entropy per answer word (</s> included)."""
  decoder = model.decoder()

  def loss_fn(params, extra, batch, key):
    k_read, k_step = jax.random.split(key)
    targets, lengths = batch["answer_tokens"], batch["answer_lengths"]
    memory = model.memory(params, batch["images"], batch["questions"],
                          batch["question_lengths"], image_slot=batch.get("image_slot"),
                          training=True, key=k_read)
    start = jnp.full(targets.shape[:1], data_lib.BOS, jnp.int32)
    logits, _ = seq2seq.teacher_forcing(decoder, params, memory, start, targets,
                                        step_kw={"training": True, "key": k_step})
    mask = (jnp.arange(targets.shape[1])[None, :] < lengths[:, None]).astype(logits.dtype)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    words = jnp.maximum(mask.sum(), 1.0)
    loss = jnp.sum(nll * mask) / words
    exact = jnp.all((jnp.argmax(logits, -1) == targets) | (mask == 0), axis=1)
    return loss, (extra, {"nll": loss, "accuracy": jnp.mean(exact)})

  return loss_fn


# Prediction.


class Answerer:
  """Batched, jitted answering: the classifiers' answer distribution, or the generated
  answer's words."""

  def __init__(self, config, model: model_lib.VQAModel, vocab: data_lib.Vocabularies,
               mesh=None):
    self.config, self.model, self.vocab = config, model, vocab
    self.mesh = mesh if mesh is not None else training.data_mesh(config.num_devices or None)

    def classify(params, images, questions, lengths):
      logits, attention = model.logits(params, images, questions, lengths)
      return jax.nn.log_softmax(logits), attention

    def generate(params, images, questions, lengths):
      memory = model.memory(params, images, questions, lengths)
      start = jnp.full(questions.shape[:1], data_lib.BOS, jnp.int32)
      out = seq2seq.greedy(model.decoder(), params, memory, start,
                           max_len=config.max_answer_len + 1, eos=data_lib.EOS,
                           pad=data_lib.PAD)
      return out.tokens, out.lengths, out.scores

    self._run = jax.jit(generate if model.generates else classify)

  @property
  def batch_size(self) -> int:
    d = self.mesh.size
    return -(-self.config.eval_batch_size // d) * d

  def run(self, params, split: data_lib.Split):
    """Every question of `split`, in order: `(answers: list[str], log-probs `[N, K]` (or
    None), attention `[N, layers, R]` (SAN) or None)`."""
    params = jax.device_put(params, training.parallel.replicated(self.mesh))
    n, N = self.batch_size, len(split)
    answers, log_probs, attention = [], [], []
    for lo in range(0, N, n):
      rows = np.arange(lo, min(lo + n, N))
      fill = n - len(rows)
      rows = np.concatenate([rows, np.full((fill,), rows[0])]) if fill else rows
      batch = data_lib.batch(split, rows)  # constant shapes: one compile
      batch = training.place_batch({k: batch[k] for k in ("images", "questions",
                                                          "question_lengths")}, self.mesh)
      out = training.parallel.fetch(self._run(params, batch["images"], batch["questions"],
                                              batch["question_lengths"]))
      keep = n - fill
      if self.model.generates:
        tokens, lengths, _ = out
        answers += [self.vocab.decode_answer(tokens[i, :lengths[i]]) for i in range(keep)]
      else:
        lp, att = out
        log_probs.append(lp[:keep])
        answers += [self.vocab.answers[int(k)] for k in np.argmax(lp[:keep], -1)]
        if att is not None:
          attention.append(att[:keep])
    return (answers, np.concatenate(log_probs) if log_probs else None,
            np.concatenate(attention) if attention else None)


def answer_prior(train: data_lib.Split, test: data_lib.Split) -> list[str]:
  """The answer prior: each test question gets the most frequent training answer of its
  question type (the overall most frequent one for a type unseen in training)."""
  by_type = collections.defaultdict(collections.Counter)
  for qtype, ans in zip(train.qtypes, train.answers):
    by_type[qtype][ans] += 1
  overall = collections.Counter(train.answers).most_common(1)[0][0]
  best = {t: c.most_common(1)[0][0] for t, c in by_type.items()}
  return [best.get(t, overall) for t in test.qtypes]


# Scores.


def daquar_answer(answer: str) -> str:
  """An answer in DAQUAR's file format for WUPS: list items joined by ", " (a generated
  "chair table" is the list chair, table)."""
  answer = data_lib.normalize_answer(answer)
  return answer if "," in answer else ", ".join(answer.split())


def score(config, split: data_lib.Split, answers: list[str], prefix: str,
          wups: bool = False) -> dict:
  """Accuracy overall and per question type; DAQUAR's accuracy is Malinowski and Fritz's
  (answers as sets of items) and, with `wups`, WUPS at 0.9 and 0.0 too; VQA-format data adds
  the official VQA accuracy (min(#humans / 3, 1) over the 10-choose-9 subsets)."""
  from experiments.vqa import evaluate
  from experiments.vqa import wups as wups_lib
  correct = np.array([data_lib.same_answer(a, g) for a, g in zip(answers, split.answers)])
  out = {f"{prefix}/accuracy": float(correct.mean())}
  for qtype in sorted(set(split.qtypes)):
    rows = np.array([t == qtype for t in split.qtypes])
    out[f"{prefix}/accuracy_{qtype.replace('/', '_')}"] = float(correct[rows].mean())
  if config.corpus == "daquar":
    truths = [data_lib.normalize_answer(a) for a in split.answers]
    predictions = [daquar_answer(a) for a in answers]
    if wups:
      scores = wups_lib.evaluate(truths, predictions)
    else:
      scores = {"accuracy": wups_lib.accuracy(truths, predictions)}
    out.update({f"{prefix}/{k.lower()}": v for k, v in scores.items()})
  if split.all_answers is not None:
    out[f"{prefix}/vqa_accuracy"] = float(np.mean(
        [evaluate.question_accuracy(a, gts) for a, gts in zip(answers, split.all_answers)]))
  return out


def count_confusion(split: data_lib.Split, answers: list[str]) -> dict:
  """Counting questions: {gold answer: {predicted answer: how often}}."""
  table = collections.defaultdict(collections.Counter)
  for qtype, gold, pred in zip(split.qtypes, split.answers, answers):
    if qtype == "count":
      table[gold][pred] += 1
  return {g: dict(sorted(c.items())) for g, c in sorted(table.items())}


# Building, training, evaluating.


def build(config, workdir: str, train: data_lib.Split | None = None,
          feature_size: int | None = None):
  """Vocabularies, model, optimizer and a fresh train state (the structure checkpoints
  restore into). Without `train` the workdir's vocab.json must exist."""
  path = os.path.join(workdir, "vocab.json")
  if train is None:
    if not os.path.exists(path):
      raise UserError(f"{workdir} has no vocab.json: is it a trained VQA run?")
    vocab = data_lib.Vocabularies.load(path)
  else:
    vocab = data_lib.vocabularies_for(workdir, train, config.min_word_count,
                                      config.num_answers)
  model = model_lib.VQAModel(config, len(vocab.words), len(vocab.answers),
                             len(vocab.answer_vocab), feature_size)
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
  optimizer = training.optimizer(config.optimizer, learning_rate_schedule(config, num_steps),
                                 config.max_grad_norm)
  if config.weight_decay > 0:
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay), optimizer)
  key = jax.random.key(config.seed)
  state = training.state.create_state(model.init(jax.random.fold_in(key, 0)), optimizer)
  return vocab, model, optimizer, state, num_steps, key


def _feature_size(split: data_lib.Split) -> int | None:
  return None if split.features is None else split.features.shape[-1]


def restore(workdir: str, feature_size: int | None = None):
  """`(config, vocab, params, model)` of a trained VQA run."""
  from experiments import common
  from experiments.vqa.config import VQAConfig
  flags_path = os.path.join(workdir, "flags.txt")
  if common.flagfile_experiment(flags_path) != "vqa":
    raise UserError(f"{workdir} is not a VQA run (no vqa flags.txt there)")
  config = common.config_from_flagfile(VQAConfig, flags_path)
  if config.model == "prior":
    raise UserError(f"{workdir} holds the answer prior, which has no model to restore")
  vocab, model, _, state, _, _ = build(config, workdir, None, feature_size)
  checkpointer = training.Checkpointer(workdir, "vqa")
  checkpointer.check_owner()
  restored, _ = checkpointer.restore_latest(state)
  checkpointer.close()
  if restored is None:
    raise UserError(f"{workdir} has no checkpoint")
  return config, vocab, restored.params, model


def _encode(config, vocab, corpus: data_lib.Corpus) -> data_lib.Corpus:
  return data_lib.Corpus(*(data_lib.encode(s, vocab, config.max_question_len,
                                           config.max_answer_len) for s in corpus))


def _describe(config, corpus, vocab, num_steps) -> str:
  kind = f"/{config.scenes}" if config.corpus == "scenes" else ""
  return (f"{config.model} on {config.corpus}{kind}: {len(corpus.train)} training questions "
          f"about {len(corpus.train.image_ids)} images, {len(corpus.valid)} valid, "
          f"{len(corpus.test)} test; {len(vocab.words)} question words, "
          f"{len(vocab.answers)} answer classes, {num_steps} steps")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the model in `workdir` (resuming if it can) and writes results.json: test
  accuracy overall and per question type, the answer prior's, and the count confusion."""
  check_config(config)
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  corpus = data_lib.load(config)
  if config.model == "prior":
    vocab = data_lib.vocabularies_for(workdir, corpus.train, config.min_word_count,
                                      config.num_answers)
    print(_describe(config, corpus, vocab, 0), flush=True)
    return evaluate_test(config, workdir, corpus, None, None, start_time)
  vocab, model, optimizer, state, num_steps, key = build(config, workdir, corpus.train,
                                                         _feature_size(corpus.train))
  corpus = _encode(config, vocab, corpus)
  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  rows = None if model.generates else data_lib.known_rows(corpus.train)
  by_image = config.batch_by_image and model.kind != "question_only"
  batches = data_lib.Batches(corpus.train, config.batch_size, config.seed, rows=rows,
                             by_image=by_image,
                             image_multiple=mesh.size // jax.process_count())
  process = (jax.process_index(), jax.process_count())
  print(_describe(config, corpus, vocab, num_steps) + f", {mesh.size} device(s)", flush=True)
  answerer = Answerer(config, model, vocab, mesh)

  def evaluate_valid(state):
    if len(corpus.valid) == 0:
      return {}
    answers, _, _ = answerer.run(state.params, corpus.valid)
    return score(config, corpus.valid, answers, "valid")

  loss_fn = generation_loss(model) if model.generates else classifier_loss(model)
  inputs = ("images", "questions", "question_lengths",
            "answer_tokens" if model.generates else "answer_class")
  if model.generates:
    inputs += ("answer_lengths",)
  if by_image:
    inputs += ("image_slot",)
  state = training.fit(
      workdir=workdir, experiment="vqa", state=state,
      train_step=training.make_train_step(loss_fn, optimizer),
      batch_at=lambda step: {k: v for k, v in batches(step, process=process).items()
                             if k in inputs},
      num_steps=num_steps, key=jax.random.fold_in(key, 1), evaluate=evaluate_valid,
      eval_every=config.eval_every or max(num_steps // 3, 1),
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size, items_name="questions", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)
  return evaluate_test(config, workdir, corpus, answerer, state, start_time)


def evaluate_test(config, workdir, corpus, answerer, state, start_time) -> dict:
  """The test split's scores, the answer prior's beside them, the count confusion, the
  answers as VQA results JSON, and (SAN on images) attention plots."""
  test = corpus.test
  prior = answer_prior(corpus.train, test)
  if answerer is None:  # --model=prior
    answers, attention = prior, None
  else:
    answers, _, attention = answerer.run(state.params, test)
  results = score(config, test, answers, "test", wups=True)
  if answerer is not None:
    results.update(score(config, test, prior, "prior"))
  results["count_confusion"] = count_confusion(test, answers)
  results["step"] = 0 if state is None else int(jax.device_get(state.step))
  results["wall_time_s"] = time.time() - start_time
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "test_answers.json"), "w") as f:
      json.dump([{"question_id": i, "question": q, "answer": a, "gold": g, "type": t}
                 for i, (q, a, g, t) in enumerate(zip(test.questions, answers, test.answers,
                                                      test.qtypes))], f, indent=0)
    if attention is not None and test.images is not None:
      plot_attention(config, workdir, test, answers, attention)
    training.metrics.write_results(workdir, results)
  print("test: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()
                             if isinstance(v, float) and not k.startswith("wall")), flush=True)
  return results


def plot_attention(config, workdir, split, answers, attention) -> None:
  """SAN: each attention layer's map over the image, for the first test questions."""
  from experiments.captioning import attention as plots_lib
  from experiments.vision import cnn
  model = model_lib.VQAModel(config, 1, 1)
  h, w = cnn.grid_shape(model.encoder, config.image_size)
  out = os.path.join(workdir, "attention")
  os.makedirs(out, exist_ok=True)
  for i in range(min(config.num_attention_plots, len(split))):
    image = split.images[split.image_index[i]]
    maps = np.asarray(attention[i]).reshape(-1, h, w)  # [layers, h, w]
    labels = [f"layer {k + 1}" for k in range(len(maps))]
    plots_lib.attention_grid(image, labels, maps, os.path.join(out, f"attention_{i}.png"),
                             title=f"{split.questions[i]}? {answers[i]}")


def answer(config, workdir: str) -> list[tuple[str, float]]:
  """`--mode=answer`: the workdir's model answers `--question` about `--image`; prints the
  answer and the top `--top_k` with their probabilities (answer generation: its answer
  and the answer's probability)."""
  from experiments.vqa import corpora
  check_config(config)
  if not config.image or not config.question:
    raise UserError("--mode=answer needs --image=FILE (an image or .npy features) and "
                    "--question=\"...\"")
  if not os.path.exists(config.image):
    raise UserError(f"--image: no such file {config.image}")
  is_features = config.image.endswith(".npy")
  features = np.load(config.image).astype(np.float32) if is_features else None
  trained, vocab, params, model = restore(
      workdir, None if features is None else features.shape[-1])
  if model.use_cnn == is_features:
    raise UserError(f"--image={config.image} is {'features' if is_features else 'an image'}, "
                    f"but the run in {workdir} read "
                    f"{'images' if model.use_cnn else 'features'}")
  if is_features:
    inputs = features[None]
  else:
    path = os.path.abspath(config.image)
    inputs = corpora.image_folder(os.path.dirname(path), [os.path.basename(path)],
                                  trained.image_size)
  tokens = corpora.tokenize(config.question)
  questions, lengths = data_lib.encode_questions([tokens], vocab.words,
                                                 trained.max_question_len)
  unknown = [w for w in tokens if w not in vocab.words.index]
  if unknown:
    print(f"words the model never saw (read as <unk>): {' '.join(unknown)}",
          file=sys.stderr)
  if model.generates:
    memory = model.memory(params, inputs, questions, lengths)
    out = seq2seq.greedy(model.decoder(), params, memory, np.array([data_lib.BOS]),
                         max_len=trained.max_answer_len + 1, eos=data_lib.EOS,
                         pad=data_lib.PAD)
    words = vocab.decode_answer(np.asarray(out.tokens[0, :int(out.lengths[0])]))
    top = [(words, float(np.exp(out.scores[0])))]
  else:
    logits, _ = model.logits(params, inputs, questions, lengths)
    probs = np.asarray(jax.nn.softmax(logits[0]))
    order = np.argsort(-probs)[:config.top_k]
    top = [(vocab.answers[int(k)], float(probs[k])) for k in order]
  print(top[0][0])
  for a, p in top:
    print(f"  {p:.3f}  {a}")
  return top
