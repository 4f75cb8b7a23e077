"""`train_and_evaluate(config, workdir)` and `caption(config, workdir)` for captioning."""

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

from experiments.captioning import data as data_lib
from experiments.captioning import model as model_lib
from experiments.captioning.config import CORPORA, MODELS
from experiments.common import UserError
from rnn_jax import seq2seq, training
from rnn_jax.seq2seq import attention as attention_lib
from rnn_jax.seq2seq import mixer, objectives, rewards


def check_config(config) -> None:
  config.training_method()
  if config.model not in MODELS:
    raise UserError(f"--model: expected one of {', '.join(MODELS)}, got {config.model!r}")
  if config.corpus not in CORPORA:
    raise UserError(f"--corpus: expected one of {', '.join(CORPORA)}, got {config.corpus!r}")
  if config.mode not in ("train", "caption", "ensemble"):
    raise UserError(f"--mode: expected train, caption or ensemble, got {config.mode!r}")
  for name in ("embed_size", "hidden_size", "attention_size", "batch_size", "train_steps",
               "max_caption_len", "eval_batch_size", "image_size", "min_word_count"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  if not config.cnn_features or any(not str(f).isdigit() or int(f) < 1
                                    for f in config.cnn_features):
    raise UserError(f"--cnn_features: expected positive widths, got {config.cnn_features}")
  if not 0.0 <= config.dropout < 1.0:
    raise UserError(f"--dropout: expected a probability in [0, 1), got {config.dropout}")
  if config.doubly_stochastic < 0:
    raise UserError(f"--doubly_stochastic: expected 0 (off) or more, got "
                    f"{config.doubly_stochastic}")
  if config.decay not in ("constant", "cosine"):
    raise UserError(f"--decay: expected constant or cosine, got {config.decay!r}")
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected one of {', '.join(training.optim.OPTIMIZERS)}, "
                    f"got {config.optimizer!r}")
  if config.attention_type not in ("soft", "hard"):
    raise UserError(f"--attention_type: expected soft or hard, got {config.attention_type!r}")
  if config.attention_type == "hard" and config.training != "xent":
    raise UserError("--attention_type=hard trains with its own REINFORCE rule: use it with "
                    "--training=xent")
  if not 0.0 <= config.hard_expected_prob <= 1.0:
    raise UserError(f"--hard_expected_prob: expected a probability, got "
                    f"{config.hard_expected_prob}")
  if config.beam_size < 0:
    raise UserError(f"--beam_size: expected 0 (greedy) or more, got {config.beam_size}")


def learning_rate_schedule(config, num_steps: int):
  """Linear warmup to `learning_rate`, then constant or a cosine decay to 0."""
  return training.optim.warmup_decay_schedule(config.learning_rate, num_steps,
                                              warmup_steps=config.warmup_steps,
                                              decay=config.decay)


def token_xent(logits, targets, lengths):
  """Mean cross-entropy per word (EOS included) and accuracy: `[B, U, V]`, `[B, U]`, `[B]`."""
  U = logits.shape[1]
  mask = (jnp.arange(U)[None, :] < lengths[:, None]).astype(logits.dtype)  # [B, U]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, U]
  tokens = jnp.maximum(mask.sum(), 1.0)
  loss = jnp.sum(nll * mask) / tokens
  accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * mask) / tokens
  return loss, {"nll": loss, "accuracy": accuracy}


def attention_penalty(config, weights, lengths):
  """λ times the batch mean of the doubly stochastic penalty on `weights [B, U, R]` over
  each caption's `lengths [B]` words, divided by the mean caption length: Xu et al. add it
  to each caption's summed NLL, the loss here is a mean per word."""
  mask = jnp.arange(weights.shape[1])[None, :] < lengths[:, None]  # [B, U]
  per_caption = jnp.mean(attention_lib.doubly_stochastic_penalty(weights, mask))
  return config.doubly_stochastic * per_caption / jnp.mean(lengths.astype(jnp.float32))


HARD_BASELINE = "hard_baseline"  # the moving average of log p(y | s, a), in TrainState.extra
BASELINE_DECAY = 0.9


def hard_attention_loss(config, model, params, memory, targets, lengths, key, baseline):
  """Xu et al. (2015)'s hard attention, section 4.1: one sampled location sequence s̃ per
  caption, and the gradient of

      log p(y|s̃,a) + λ_r (log p(y|s̃,a) - b) log p(s̃|a) + λ_e H[s̃]

  (no gradient through the advantage), with b a moving average of log p(y|s̃,a); a
  caption uses the expected context instead with probability `hard_expected_prob` (and
  then only its likelihood). The likelihood enters as the mean NLL per word; the other
  terms, which the paper adds per caption, are divided by the mean caption length.

  Returns:
    `(loss, metrics, new_baseline)`; `loss` also holds the doubly stochastic penalty on α.
  """
  B, U = targets.shape
  k_coin, k_loc, k_drop = jax.random.split(key, 3)
  sample = jax.random.uniform(k_coin, (B,)) >= config.hard_expected_prob  # [B]
  inputs = jnp.concatenate([jnp.full((B, 1), data_lib.BOS, jnp.int32), targets[:, :-1]], 1)

  def body(state, xs):
    token, t = xs
    state, logits, alpha, weights = model.hard_step(
        params, memory, state, token, training=True, key=jax.random.fold_in(k_drop, t),
        location_key=jax.random.fold_in(k_loc, t), sample=sample)
    return state, (logits, alpha, weights)

  _, (logits, alpha, weights) = jax.lax.scan(  # time-major [U, B, ...]
      body, model.init_state(params, memory), (inputs.T, jnp.arange(U)))
  logits, alpha, weights = (jnp.swapaxes(x, 0, 1) for x in (logits, alpha, weights))
  mask = (jnp.arange(U)[None, :] < lengths[:, None]).astype(logits.dtype)  # [B, U]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets) * mask  # [B, U]
  log_p_y = -jnp.sum(nll, axis=1)  # [B]
  log_alpha = jnp.log(jnp.maximum(alpha, 1e-30))
  log_p_s = jnp.sum(jnp.sum(weights * log_alpha, -1) * mask, 1)  # [B], sampled rows
  entropy = -jnp.sum(jnp.sum(alpha * log_alpha, -1) * mask, 1)  # [B]
  n_sampled = jnp.maximum(jnp.sum(sample), 1)
  advantage = jax.lax.stop_gradient(log_p_y - baseline)
  reinforce = -jnp.sum(jnp.where(sample, advantage * log_p_s, 0.0)) / n_sampled
  mean_length = jnp.mean(lengths.astype(logits.dtype))
  word_nll = jnp.sum(nll) / jnp.maximum(jnp.sum(mask), 1.0)
  penalty = attention_penalty(config, alpha, lengths)
  loss = (word_nll + penalty + (config.hard_reinforce_weight * reinforce
                                - config.hard_entropy_weight * jnp.mean(entropy)) / mean_length)
  sampled_log_p_y = jnp.sum(jnp.where(sample, log_p_y, 0.0)) / n_sampled
  new_baseline = jnp.where(jnp.any(sample), BASELINE_DECAY * baseline
                           + (1 - BASELINE_DECAY) * jax.lax.stop_gradient(sampled_log_p_y),
                           baseline)
  accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * mask) / jnp.maximum(mask.sum(), 1)
  metrics = {"nll": word_nll, "accuracy": accuracy, "attention_penalty": penalty,
             "hard_baseline": baseline, "hard_entropy": jnp.mean(entropy / mean_length),
             "hard_advantage": jnp.sum(jnp.where(sample, advantage, 0.0)) / n_sampled}
  return loss, metrics, new_baseline


def make_loss_fn(config, model: model_lib.Captioner, reward=None):
  """`loss_fn(params, extra, batch, key)` of `--training` (rnn_jax.seq2seq.objectives).

  The loss is the mean NLL per word (EOS included). Show, Attend and Tell adds λ times
  the batch mean of the doubly stochastic penalty divided by the mean caption length (the
  paper's λ against each caption's summed NLL) to the teacher-forced and
  scheduled-sampling losses.
  """
  method = config.training_method()
  decoder = model.decoder()

  def loss_fn(params, extra, batch, key):
    k_drop, k_method = jax.random.split(key)
    targets, lengths = batch["targets"], batch["target_lengths"]
    memory = model.memory(params, model.encode(params, batch["inputs"]))
    if model.attend and config.attention_type == "hard":
      loss, metrics, baseline = hard_attention_loss(config, model, params, memory, targets,
                                                    lengths, key, extra[HARD_BASELINE])
      return loss, ({**extra, HARD_BASELINE: baseline}, metrics)
    start = jnp.full(targets.shape[:1], data_lib.BOS, jnp.int32)
    penalty = None
    if model.attend and config.doubly_stochastic > 0:
      penalty = lambda weights: attention_penalty(config, weights, lengths)  # noqa: E731
    step = batch["step"][0] if "step" in batch else 0
    loss, metrics = objectives.loss(
        method, decoder, params, memory, start, targets, lengths, k_method, step,
        xent=lambda logits: token_xent(logits, targets, lengths), eos=data_lib.EOS,
        pad=data_lib.PAD, reward=reward, step_kw={"training": True, "key": k_drop},
        reward_refs=(batch["image_index"][:, None], lengths), attention_penalty=penalty)
    return loss, (extra, dict(metrics))

  return loss_fn


def cider_reward(vocab: data_lib.Vocabulary, split: data_lib.Split):
  """SCST's reward on the host: CIDEr-D of each sampled caption against all references of
  its image, with document frequencies from the training references (Rennie et al. 2017)."""
  references = [[" ".join(data_lib.tokenize(c)) for c in refs] for refs in split.captions]
  scorer = rewards.CiderD(references)

  def reward(tokens, lengths, image_index, _):
    hyps = [vocab.decode(t[:n]) for t, n in zip(tokens, lengths)]
    return scorer.score(hyps, [references[int(i[0])] for i in image_index])

  return objectives.host_reward(reward)


def build(config, workdir: str, corpus: data_lib.Corpus | None = None,
          feature_size: int | None = None):
  """Vocabulary, model, optimizer and a fresh train state (the structure checkpoints restore
  into). Without `corpus` the workdir's vocab.json must exist; `feature_size` is D of
  precomputed features (None: the CNN reads images)."""
  vocab_path = os.path.join(workdir, "vocab.json")
  if corpus is None:
    if not os.path.exists(vocab_path):
      raise UserError(f"{workdir} has no vocab.json: is it a trained captioning run?")
    vocab = data_lib.Vocabulary.load(vocab_path)
  else:
    vocab = data_lib.vocabulary_for(workdir, corpus, config.min_word_count)
    if corpus.train.features is not None:
      feature_size = corpus.train.features.shape[-1]
  model = model_lib.Captioner(config, len(vocab), feature_size)
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
  optimizer = training.optimizer(config.optimizer, learning_rate_schedule(config, num_steps),
                                 config.max_grad_norm)
  key = jax.random.key(config.seed)
  params = model.init(jax.random.fold_in(key, 0))
  if config.training == "mixer":  # MIXER's linear baseline on the LSTM's h
    params[objectives.BASELINE] = mixer.init_baseline(config.hidden_size)
  if config.encoder_from:
    source = finished_run(config.encoder_from, workdir, "--encoder_from")
    params["encoder"] = restore(source, feature_size)[2]["encoder"]
  extra = ()  # soft attention carries nothing between batches
  if model.attend and config.attention_type == "hard":
    extra = {HARD_BASELINE: jnp.zeros((), jnp.float32)}
  state = training.state.create_state(params, optimizer, extra=extra)
  return vocab, model, optimizer, state, num_steps, key


def restore(workdir: str, feature_size: int | None = None):
  """`(config, vocab, params, model)` of a trained captioning run: its flags.txt, vocab.json
  and latest checkpoint."""
  from experiments import common
  from experiments.captioning.config import CaptioningConfig
  flags_path = os.path.join(workdir, "flags.txt")
  if common.flagfile_experiment(flags_path) != "captioning":
    raise UserError(f"{workdir} is not a captioning run (no captioning flags.txt there)")
  config = common.config_from_flagfile(CaptioningConfig, flags_path)
  config = dataclasses.replace(config, encoder_from="")  # the checkpoint holds the CNN
  vocab, model, _, state, _, _ = build(config, workdir, None, feature_size)
  checkpointer = training.Checkpointer(workdir, "captioning")
  checkpointer.check_owner()
  restored, _ = checkpointer.restore_latest(state)
  checkpointer.close()
  if restored is None:
    raise UserError(f"{workdir} has no checkpoint")
  return config, vocab, restored.params, model


class Captioner:
  """Batched, jitted captioning of images: tokens, lengths and attention.

  With several models (an ensemble, `seq2seq.ensemble`) their log-probs are averaged
  per step; `params` is then the tuple of their params.
  """

  def __init__(self, config, models, vocab, mesh=None):
    self.config, self.vocab = config, vocab
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    self.ensemble = len(models) > 1
    self.mesh = mesh if mesh is not None else training.data_mesh(config.num_devices or None)
    decoder = (seq2seq.ensemble([m.decoder() for m in models]) if self.ensemble
               else models[0].decoder())

    def run(params, inputs):
      params_all = params if self.ensemble else (params,)
      memory = tuple(m.memory(p, m.encode(p, inputs)) for m, p in zip(models, params_all))
      memory = memory if self.ensemble else memory[0]
      start = jnp.full((inputs.shape[0],), data_lib.BOS, jnp.int32)
      kw = dict(max_len=config.max_caption_len + 1, eos=data_lib.EOS, pad=data_lib.PAD)
      if config.beam_size > 0:
        return seq2seq.beam_search(decoder, params, memory, start,
                                   beam_size=config.beam_size, **kw)
      return seq2seq.greedy(decoder, params, memory, start, **kw)

    self._run = jax.jit(run)

  @property
  def batch_size(self) -> int:
    d = self.mesh.size
    return -(-self.config.eval_batch_size // d) * d

  def __call__(self, params, inputs: np.ndarray):
    """`inputs [N, ...]` -> (captions: list[str], tokens: list of arrays, attention: list of
    `[len + 1, R]` arrays or None), in the order given."""
    params = jax.device_put(params, training.parallel.replicated(self.mesh))
    n, N = self.batch_size, len(inputs)
    n_proc, proc = jax.process_count(), jax.process_index()
    mine = slice(proc * n // n_proc, (proc + 1) * n // n_proc)  # this process's rows
    captions, tokens, weights = [], [], []
    for lo in range(0, N, n):
      chunk = inputs[lo:lo + n]
      fill = n - len(chunk)
      if fill:  # constant shapes: one compile
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], fill, 0)])
      batch = training.place_batch(chunk[mine], self.mesh)
      out = training.parallel.fetch(self._run(params, batch))
      for row in range(n - fill):
        length = int(out.lengths[row])
        ids = out.tokens[row, :length]
        tokens.append(ids)
        captions.append(self.vocab.decode(ids))
        weights.append(None if out.weights is None else out.weights[row, :length + 1])
    return captions, tokens, weights


def most_frequent_caption(split: data_lib.Split) -> str:
  """The most frequent (tokenized) training caption: the captioner that ignores images."""
  counts = collections.Counter(" ".join(data_lib.tokenize(c)) for refs in split.captions
                               for c in refs)
  return counts.most_common(1)[0][0]


def localisation(split: data_lib.Split, vocab, tokens, weights, grid: tuple[int, int],
                 image_size: int) -> dict:
  """Attention localisation on scenes: at each step that emits a noun naming objects, the
  share of α inside their boxes, against the share a uniform α would have there."""
  from experiments.captioning import attention as plots_lib
  from experiments.vision import scenes
  h, w = grid
  ours, uniform = [], []
  for objects, ids, alpha in zip(split.objects, tokens, weights):
    words = [vocab.words[int(i)] for i in ids]
    for position, names in scenes.noun_objects(words, objects):
      boxes = [objects[j].box for j in names]
      ours.append(plots_lib.localisation_score(alpha[position].reshape(h, w), boxes,
                                               image_size))
      uniform.append(plots_lib.localisation_score(np.full((h, w), 1.0 / (h * w)), boxes,
                                                  image_size))
  if not ours:
    return {"localisation/nouns": 0}
  return {"localisation/attention": float(np.mean(ours)),
          "localisation/uniform": float(np.mean(uniform)), "localisation/nouns": len(ours)}


def score(split: data_lib.Split, captions: list[str], metrics=None) -> dict:
  from experiments.captioning import evaluate
  return evaluate.score_lists(list(split.ids), split.captions, captions, metrics=metrics)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the captioner in `workdir` (resuming if it can) and writes results.json."""
  check_config(config)
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  corpus = data_lib.load(config)
  vocab, model, optimizer, state, num_steps, key = build(config, workdir, corpus)
  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  batches = data_lib.Batches(corpus.train, vocab, config.batch_size, config.max_caption_len,
                             config.seed)
  process = (jax.process_index(), jax.process_count())
  print(f"{config.model} on {config.corpus}"
        f"{'/' + config.scenes if config.corpus == 'scenes' else ''}: {len(corpus.train)} "
        f"training images ({len(batches)} captions), vocabulary {len(vocab)}, {num_steps} "
        f"steps, {mesh.size} device(s)", flush=True)
  captioner = Captioner(config, model, vocab, mesh)

  def evaluate_valid(state):
    captions, _, _ = captioner(state.params, corpus.valid.inputs)
    return {f"valid/{k}": v for k, v in score(corpus.valid, captions,
                                              metrics=config.eval_metrics).items()}

  reward = (cider_reward(vocab, corpus.train) if config.training in ("scst", "mixer")
            else None)

  def batch_at(step):
    batch = batches(step, process=process)
    if config.training != "xent":  # the schedules of --training read the step
      batch["step"] = np.full((len(batch["targets"]),), step, np.int32)
    return batch

  state = training.fit(
      workdir=workdir, experiment="captioning", state=state,
      train_step=training.make_train_step(make_loss_fn(config, model, reward), optimizer),
      batch_at=batch_at, num_steps=num_steps, key=jax.random.fold_in(key, 1),
      evaluate=evaluate_valid, eval_every=config.eval_every or max(num_steps // 3, 1),
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size, items_name="captions", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)

  results = evaluate_test(config, workdir, corpus, vocab, model, captioner, state.params)
  results.update({"step": int(jax.device_get(state.step)), "wall_time_s": time.time() - start_time})
  if jax.process_index() == 0:
    training.metrics.write_results(workdir, results)
  print("test: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()
                             if isinstance(v, float) and not k.startswith("wall")), flush=True)
  return results


def evaluate_test(config, workdir, corpus, vocab, model, captioner, params) -> dict:
  """Every metric on the test split, the most-frequent-caption baseline, attention
  localisation (scenes), attention plots, and the COCO files that reproduce the scores."""
  from experiments.captioning import evaluate
  test = corpus.test
  captions, tokens, weights = captioner(params, test.inputs)
  results = {f"test/{k}": v for k, v in score(test, captions).items()}
  frequent = most_frequent_caption(corpus.train)
  results.update({f"most_frequent/{k}": v for k, v in
                  score(test, [frequent] * len(test), metrics=["bleu", "cider"]).items()})
  results["most_frequent/caption"] = frequent
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "test_references.json"), "w") as f:
      json.dump(evaluate.coco_references(list(test.ids), test.captions), f)
    with open(os.path.join(workdir, "test_captions.json"), "w") as f:
      json.dump(evaluate.coco_results(list(test.ids), captions), f)
  if model.attend and test.images is not None:
    from experiments.vision import cnn
    grid = cnn.grid_shape(model.encoder, config.image_size)
    if test.objects is not None:
      results.update(localisation(test, vocab, tokens, weights, grid, config.image_size))
    plot_attention(workdir, test, vocab, tokens, weights, grid, config.num_attention_plots)
  return results


def plot_attention(workdir, split, vocab, tokens, weights, grid, count: int) -> None:
  from experiments.captioning import attention as plots_lib
  if jax.process_index() != 0 or count <= 0:
    return
  out = os.path.join(workdir, "attention")
  os.makedirs(out, exist_ok=True)
  h, w = grid
  for i in range(min(count, len(tokens))):
    alphas = np.asarray(weights[i]).reshape(-1, h, w)  # [len + 1, h, w], [len] if cut
    words = [vocab.words[int(t)] for t in tokens[i]]
    words += ["</s>"] * (len(alphas) - len(words))
    plots_lib.attention_grid(split.images[i], words, alphas,
                             os.path.join(out, f"attention_{split.ids[i]}.png"),
                             title=" ".join(words[:-1]))


def caption(config, workdir: str) -> list[dict]:
  """Captions every image (or feature file) in `--caption_dir` with the workdir's latest
  checkpoint; writes COCO results JSON (`--output_file`, default workdir/captions.json)
  and, for Show, Attend and Tell on images, the attention plots under workdir/captions/."""
  from experiments.captioning import corpora, evaluate
  check_config(config)
  if not config.caption_dir:
    raise UserError("--mode=caption needs --caption_dir, a folder of images or .npy files")
  names, inputs, is_images = corpora.read_folder(config.caption_dir, config.image_size)
  trained, vocab, params, model = restore(workdir, None if is_images else inputs.shape[-1])
  if model.use_cnn != is_images:
    raise UserError(f"--caption_dir={config.caption_dir} holds "
                    f"{'images' if is_images else 'features'}, but the run in {workdir} "
                    f"read {'images' if model.use_cnn else 'features'}")
  captioner = Captioner(dataclasses.replace(trained, beam_size=config.beam_size,
                                            eval_batch_size=config.eval_batch_size),
                        model, vocab)
  captions, tokens, weights = captioner(params, inputs)
  results = evaluate.coco_results(names, captions)
  path = config.output_file or os.path.join(workdir, "captions.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=1)
  if model.attend and is_images:
    from experiments.vision import cnn
    split = data_lib.Split(names, [[] for _ in names], inputs, None, None)
    plot_attention(os.path.join(workdir, "captions"), split, vocab, tokens, weights,
                   cnn.grid_shape(model.encoder, trained.image_size), len(names))
  print(f"{len(captions)} captions written to {path}", file=sys.stderr)
  return results


def finished_run(path: str, workdir: str, flag: str) -> str:
  """The finished run `path` names: as given when it exists, otherwise (a relative path) the
  sibling of `workdir` of that name, as a sweep's trials are. A run that has not finished
  (no results.json) is refused: reading its latest checkpoint would read a half-trained
  model."""
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(os.path.dirname(os.path.abspath(workdir)), path)
  if not os.path.exists(os.path.join(path, "results.json")):
    raise UserError(f"{flag}: {path} has not finished (no results.json); rerun this "
                    "command once it has")
  return path


def ensemble_members(config, workdir: str) -> list[str]:
  """`--ensemble`'s workdirs; a relative path is a sibling of `workdir` (a sweep's trials)."""
  if not config.ensemble:
    raise UserError("--mode=ensemble needs --ensemble=WORKDIR,WORKDIR,...: the trained runs")
  parent = os.path.dirname(os.path.abspath(workdir))
  return [finished_run(p if os.path.isabs(p) else os.path.join(parent, p), workdir,
                       "--ensemble") for p in config.ensemble]


def evaluate_ensemble(config, workdir: str) -> dict:
  """`--mode=ensemble`: the test split captioned by the members of `--ensemble` together
  (log-probs averaged per step); writes results.json with the `test/` metrics."""
  check_config(config)
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  members = ensemble_members(config, workdir)
  corpus = data_lib.load(config)
  feature_size = None if corpus.test.features is None else corpus.test.features.shape[-1]
  restored = [restore(m, feature_size) for m in members]
  vocab = restored[0][1]
  for m, (_, v, _, _) in zip(members, restored):
    if v.words != vocab.words:
      raise UserError(f"--ensemble: {m} has another vocabulary than {members[0]}")
  models = [r[3] for r in restored]
  params = tuple(r[2] for r in restored)
  captioner = Captioner(config, models, vocab)
  test = corpus.test
  captions, tokens, weights = captioner(params, test.inputs)
  results = {f"test/{k}": v for k, v in score(test, captions).items()}
  if all(m.attend for m in models) and test.objects is not None:
    from experiments.vision import cnn
    grid = cnn.grid_shape(models[0].encoder, config.image_size)
    results.update(localisation(test, vocab, tokens, weights, grid, config.image_size))
  results.update({"ensemble/size": len(members), "ensemble/members": members,
                  "wall_time_s": time.time() - start_time})
  if jax.process_index() == 0:
    training.metrics.write_results(workdir, results)
  print(f"ensemble of {len(members)}: " + ", ".join(
      f"{k} {v:.3f}" for k, v in results.items() if k.startswith("test/")), flush=True)
  return results
