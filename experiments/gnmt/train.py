"""`train_and_evaluate(config, workdir)` and `translate(config, workdir)` for GNMT."""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sacrebleu
from tqdm import tqdm

from experiments import common
from experiments.common import UserError
from experiments.gnmt import checkpoints as checkpoints_lib
from experiments.gnmt import data as data_lib
from experiments.gnmt import decode as decode_lib
from experiments.gnmt import langid
from experiments.gnmt import model as model_lib
from experiments.gnmt import plots
from experiments.gnmt import synthetic
from rnn_jax import training
from rnn_jax.seq2seq import mixer, objectives, rewards


# tensorflow/nmt's decay schemes (nmt/model.py, `_get_decay_info`): the decay starts after this
# fraction of training, and the rest of it is cut into this many equal intervals.
DECAY_SCHEMES = {"luong5": ((1, 2), 5), "luong10": ((1, 2), 10), "luong234": ((2, 3), 4)}


def learning_rate_schedule(config, num_steps: int):
  """Linear warmup, then constant, or one of tensorflow/nmt's luong decays.

  With `start = num_steps * fraction` and `every = (num_steps - start) // times`
  (`DECAY_SCHEMES`), the rate is constant before `start` and then, as
  tensorflow/nmt's `exponential_decay(lr, step - start, every, 0.5, staircase=True)`,
  `lr * 0.5 ** ((step - start) // every)`: the first halving comes at `start + every`.
  """
  decay = DECAY_SCHEMES.get(config.decay_scheme)
  if decay:
    (num, den), times = decay
    start = (num * num_steps) // den  # int(num_steps * num / den), in integers
    every = max(1, (num_steps - start) // times)

  def schedule(step):
    lr = config.learning_rate
    if config.warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, (step + 1) / config.warmup_steps)
    if decay:
      halvings = jnp.maximum(step - start, 0) // every
      lr = lr * 0.5 ** halvings
    return lr

  return schedule


def make_optimizer(config, num_steps: int):
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected sgd or adam, got {config.optimizer!r}")
  return training.optimizer(config.optimizer, learning_rate_schedule(config, num_steps), config.max_grad_norm)


def cosine_distance(a, b, eps: float = 1e-8):
  """1 - cos(a, b) over the last axis: `[B, M], [B, M] -> [B]`."""
  dot = jnp.sum(a * b, axis=-1)
  return 1.0 - dot / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + eps)


def make_loss_fn(config, model, reward=None, languages=None):
  """`loss_fn(params, extra, batch, key)` of `--training` (cross-entropy by default).

  Cross-entropy runs the whole-sequence decoder (`decode_train`); the other methods run
  the decoder step by step on the library's contract (`rnn_jax.seq2seq.objectives`),
  reading the training step from `batch["step"]` and, for mixer and scst, the sentence
  reward `reward` (`objectives.host_reward`).

  With `--synthetic_pairs` (`languages`: `synthetic.Languages` of the training
  directions), from `--synthetic_start_step` on the first `--synthetic_rows` rows of
  each batch also get a synthetic source (`synthetic.make_sources`), and the loss is
  the mean over the B real and the `rows` synthetic pairs: `(B * real + rows * synthetic)
  / (B + rows)`, each term the batch's token cross-entropy. Before that step a `cond`
  skips the generation.
  """
  method = config.training_method()

  def token_xent(logits, batch):
    U = logits.shape[1]
    mask = (jnp.arange(U)[None, :] < batch["target_lengths"][:, None]).astype(logits.dtype)
    labels = jax.nn.one_hot(batch["target_out"], model.V)
    smoothed = optax.smooth_labels(labels, config.label_smoothing) if config.label_smoothing else labels
    ce = optax.softmax_cross_entropy(logits, smoothed)  # [B, U]
    nll = optax.softmax_cross_entropy(logits, labels)
    tokens = jnp.maximum(mask.sum(), 1.0)
    if config.loss_normalization == "sentences":  # tensorflow/nmt: summed loss / batch size
      loss = jnp.sum(ce * mask) / logits.shape[0]
    else:
      loss = jnp.sum(ce * mask) / tokens
    accuracy = jnp.sum((jnp.argmax(logits, -1) == batch["target_out"]) * mask) / tokens
    return loss, {"nll": jnp.sum(nll * mask) / tokens, "accuracy": accuracy}

  def loss_fn(params, extra, batch, key):
    k_enc, k_dec = jax.random.split(key)
    encoded = model.encode(params, batch["source"], batch["source_lengths"], training=True,
                           key=k_enc)

    def teacher(params):
      logits, _ = model.decode_train(params, encoded, batch["target_in"], training=True,
                                     key=k_dec)  # [B, U, V]
      return token_xent(logits, batch)

    if method.name == "xent":
      loss, metrics = teacher(params)
    else:
      loss, metrics = objectives.loss(
          method, model.decoder(), params, encoded, batch["target_in"][:, 0],
          batch["target_out"], batch["target_lengths"], jax.random.fold_in(k_dec, 1),
          batch["step"][0], xent=lambda logits: token_xent(logits, batch), eos=data_lib.EOS,
          pad=data_lib.PAD, reward=reward, step_kw={"training": True, "key": k_dec},
          teacher_loss=teacher)
      metrics = dict(metrics)
    if config.align_loss_weight > 0:
      # Arivazhagan et al. 2019: the encoder reads the target sentence too (behind the same
      # <2xx> token), and the two pooled encodings are pulled together by cosine distance.
      encoded_y = model.encode(params, batch["align_source"], batch["align_lengths"],
                               training=True, key=jax.random.fold_in(key, 1))
      align = jnp.mean(cosine_distance(model.sentence_vector(encoded, config.align_pooling),
                                       model.sentence_vector(encoded_y, config.align_pooling)))
      loss = loss + config.align_loss_weight * align
      metrics["align"] = align
    if config.synthetic_pairs:
      loss, metrics = with_synthetic(params, batch, jax.random.fold_in(key, 2), loss, metrics)
    return loss, (extra, metrics)

  def with_synthetic(params, batch, key, loss, metrics):
    B, rows = batch["source"].shape[0], min(config.synthetic_rows, batch["source"].shape[0])
    k_make, k_enc, k_dec = jax.random.split(key, 3)

    def synthetic_loss(params):
      source, lengths, _, cut = synthetic.make_sources(
          config.synthetic_pairs, model, params, batch, languages, k_make, rows=rows,
          bos=data_lib.start_token(config), max_source_len=config.max_source_len)
      sub = {k: batch[k][:rows] for k in ("target_in", "target_out", "target_lengths")}
      encoded = model.encode(params, source, lengths, training=True, key=k_enc)
      logits, _ = model.decode_train(params, encoded, sub["target_in"], training=True,
                                     key=k_dec)
      xent, m = token_xent(logits, sub)
      return xent, m["nll"], jnp.mean(cut.astype(jnp.float32))

    on = batch["step"][0] >= config.synthetic_start_step
    xent, nll, cut = jax.lax.cond(on, synthetic_loss,
                                  lambda params: (jnp.float32(0.0),) * 3, params)
    n = jnp.where(on, rows, 0)
    loss = (B * loss + n * xent) / (B + n)
    return loss, dict(metrics, synthetic_nll=nll, synthetic_cut=cut)

  return loss_fn


def bleu_reward(tokenizer):
  """The sentence-BLEU reward of mixer and scst on the host: each output and its
  reference detokenized, scored by sacrebleu (`rnn_jax.seq2seq.rewards.sentence_bleu`)."""

  def reward(tokens, lengths, targets, target_lengths):
    hyps = [tokenizer.decode(t[:n]) for t, n in zip(tokens, lengths)]
    refs = [[tokenizer.decode(t[:n])] for t, n in zip(targets, target_lengths)]
    return rewards.sentence_bleu(hyps, refs)

  return objectives.host_reward(reward)


def check_config(config) -> None:
  config.training_method()
  for name in ("hidden_size", "num_layers", "batch_size", "eval_batch_size", "vocab_size",
               "max_source_len", "max_target_len"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  if config.max_source_len < 3 or config.max_target_len < 2:
    raise UserError("--max_source_len must be >= 3 and --max_target_len >= 2")
  if not 0.0 <= config.dropout < 1.0:
    raise UserError(f"--dropout: expected a probability in [0, 1), got {config.dropout}")
  if config.decay_scheme and config.decay_scheme not in DECAY_SCHEMES:
    raise UserError(f"--decay_scheme: expected '' or one of {', '.join(DECAY_SCHEMES)}, got "
                    f"{config.decay_scheme!r}")
  for name in ("batch_tokens", "spm_input_sentence_size"):
    if getattr(config, name) < 0:
      raise UserError(f"--{name}: expected 0 (off) or a positive number, got "
                      f"{getattr(config, name)}")
  common.check_rnn_implementation(config.rnn_implementation)
  if config.spm_threads < 1:
    raise UserError(f"--spm_threads: expected 1 or more, got {config.spm_threads}")
  if config.decoder_start not in data_lib.DECODER_STARTS:
    raise UserError(f"--decoder_start: expected one of {', '.join(data_lib.DECODER_STARTS)}, "
                    f"got {config.decoder_start!r}")
  if config.align_loss_weight < 0:
    raise UserError(f"--align_loss_weight: expected 0 (off) or more, got {config.align_loss_weight}")
  if config.synthetic_pairs not in synthetic.METHODS:
    raise UserError(f"--synthetic_pairs: expected '', robt or pivot, got "
                    f"{config.synthetic_pairs!r}")
  if config.synthetic_pairs and (config.synthetic_rows < 1 or config.synthetic_start_step < 0):
    raise UserError("--synthetic_pairs needs --synthetic_rows >= 1 and "
                    "--synthetic_start_step >= 0")
  if config.synthetic_pairs and config.training != "xent":
    raise UserError("--synthetic_pairs works with --training=xent only")
  if config.align_pooling not in ("max", "mean"):
    raise UserError(f"--align_pooling: expected max or mean, got {config.align_pooling!r}")
  if config.attention_scale_init < 0:
    raise UserError(f"--attention_scale_init: expected 0 (tensorflow/nmt's default) or a "
                    f"positive scale, got {config.attention_scale_init}")
  if config.loss_normalization not in ("tokens", "sentences"):
    raise UserError(f"--loss_normalization: expected tokens or sentences, got "
                    f"{config.loss_normalization!r}")
  if config.decode_length_ratio < 0:
    raise UserError(f"--decode_length_ratio: expected 0 (the fixed --max_target_len) or a "
                    f"positive ratio, got {config.decode_length_ratio}")
  if config.test_params not in checkpoints_lib.CHOICES:
    raise UserError(f"--test_params: expected one of {', '.join(checkpoints_lib.CHOICES)}, "
                    f"got {config.test_params!r}")
  if config.average_last < 0:
    raise UserError(f"--average_last: expected 0 or more, got {config.average_last}")
  if config.test_params == "average" and config.average_last < 1:
    raise UserError("--test_params=average needs --average_last=N, the checkpoints to average")
  if config.average_last:
    num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
    scheduled = checkpoints_lib.checkpoint_steps(num_steps, config.checkpoint_every)
    if len(scheduled) < config.average_last:
      raise UserError(f"--average_last={config.average_last}: {num_steps} steps with "
                      f"--checkpoint_every={config.checkpoint_every} write only "
                      f"{len(scheduled)} checkpoint(s); checkpoint more often or average fewer")
  if config.mode not in ("train", "translate"):
    raise UserError(f"--mode: expected train or translate, got {config.mode!r}")
  from rnn_jax.seq2seq import attention
  if config.attention not in attention.TYPES:
    raise UserError(f"--attention: expected one of {attention.TYPES}, got {config.attention!r}")
  if config.attention_architecture not in model_lib.ARCHITECTURES:
    raise UserError(f"--attention_architecture: expected one of {model_lib.ARCHITECTURES}, "
                    f"got {config.attention_architecture!r}")
  if config.attention == "luong_dot" and config.num_layers == 1 and config.bidirectional_bottom:
    raise UserError("--attention=luong_dot needs the encoder output (2H with a single "
                    "bi-directional layer) to match the decoder's H")


class Translations(NamedTuple):
  texts: list        # the outputs, in the order of the sources
  cut: list          # whether each output reached its decoding limit without EOS
  limits: list       # each sentence's decoding limit (`decode.decoding_limits`)
  details: list      # (source ids, output ids, attention [rows, S]) per sentence


class Translator:
  """Batched, jitted, data-parallel decoding of text into a target language.

  Sentences are sorted by source length (longest first) and decoded in batches
  of `--eval_batch_size` (rounded up to a multiple of the devices), each split
  over the mesh's "data" axis as training batches are; outputs come back in the
  input order. Each sentence decodes for at most its own limit
  (`decode.decoding_limits`), so its output does not depend on the other
  sentences of its batch, on the order, or on the number of devices.
  """

  def __init__(self, config, model, tokenizer: data_lib.Tokenizer, mesh=None):
    self.config, self.model, self.tokenizer = config, model, tokenizer
    self.mesh = mesh if mesh is not None else (model.mesh if model.mesh is not None
                                               else make_mesh(config))
    kwargs = dict(max_len=config.max_target_len, bos=data_lib.start_token(config),
                  eos=data_lib.EOS)
    if config.temperature > 0:
      self._decode = jax.jit(functools.partial(decode_lib.greedy_or_sample, model,
                                               temperature=config.temperature, **kwargs))
    elif config.beam_size > 0:
      self._decode = jax.jit(functools.partial(
          decode_lib.beam_search, model, beam_size=config.beam_size,
          alpha=config.length_penalty, beta=config.coverage_penalty, **kwargs))
    else:
      self._decode = jax.jit(functools.partial(decode_lib.greedy_or_sample, model, **kwargs))

  @property
  def batch_size(self) -> int:
    """`--eval_batch_size` rounded up to a multiple of the devices that split a batch."""
    d = training.parallel.data_size(self.mesh)
    return -(-self.config.eval_batch_size // d) * d

  def __call__(self, params, sources: list[str], target_lang: str, key=None) -> Translations:
    """Translates `sources` into `target_lang`; returns them in the order given."""
    c = self.config
    ids = [self.tokenizer.encode_source(s, target_lang, c.max_source_len)[0] for s in sources]
    limits = decode_lib.decoding_limits([len(i) for i in ids], c.decode_length_ratio,
                                        c.max_target_len)
    params = jax.device_put(params, training.parallel.replicated(self.mesh))
    order = np.argsort([-len(i) for i in ids], kind="stable")  # longest first
    n = self.batch_size
    n_proc, proc = jax.process_count(), jax.process_index()
    mine = slice(proc * n // n_proc, (proc + 1) * n // n_proc)  # this process's rows
    texts, cut, details = [None] * len(ids), [False] * len(ids), [None] * len(ids)
    for lo in range(0, len(order), n):
      index = list(order[lo:lo + n])
      index += [index[0]] * (n - len(index))  # constant shapes: pad the last batch
      source = data_lib.pad([ids[i] for i in index], c.max_source_len)  # one shape, one compile
      batch = {"source": source, "lengths": np.array([len(ids[i]) for i in index], np.int32),
               "limits": limits[index]}
      batch = training.place_batch({k: v[mine] for k, v in batch.items()}, self.mesh)
      extra = {} if c.temperature <= 0 else {"key": jax.random.fold_in(key, lo)}
      out = training.parallel.fetch(self._decode(params, batch["source"], batch["lengths"],
                                                 max_lengths=batch["limits"], **extra))
      for row, i in enumerate(index[:min(n, len(order) - lo)]):
        length = int(out.lengths[row])
        cut[i] = length >= limits[i]
        tokens = out.tokens[row, :length]
        texts[i] = self.tokenizer.decode(tokens)
        # The rows of the tokens that were written, EOS included unless the output was cut.
        details[i] = (ids[i], tokens, out.weights[row, :length + (not cut[i]), :len(ids[i])])
    return Translations(texts, cut, [int(x) for x in limits], details)


def evaluate_directions(config, translator, params, pairs: dict, *, max_sentences: int | None,
                        plot_dir: str | None = None, identifier=None, label: str = "",
                        signatures: bool = False) -> dict:
  """Scores every direction of `pairs` against its references.

  Returns:
    `bleu/<src>-<tgt>` and `chrf/<src>-<tgt>` (sacrebleu, on detokenized text),
    `cut/<src>-<tgt>` (outputs that reached their decoding limit without EOS;
    a warning names the direction), `offtarget/<src>-<tgt>` (percent of outputs
    not in the target language, by `identifier`, when given), and with
    `signatures` sacrebleu's `signature/bleu` and `signature/chrf`.
  """
  metrics = {}
  bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()  # corpus_bleu's and corpus_chrf's defaults
  for (src, tgt), (src_lines, tgt_lines) in pairs.items():
    keep = [i for i, (s, t) in enumerate(zip(src_lines, tgt_lines)) if s.strip() and t.strip()]
    if max_sentences:
      keep = keep[:max_sentences]
    sources = [src_lines[i] for i in keep]
    references = [tgt_lines[i] for i in keep]
    out = translator(params, sources, tgt)
    hypotheses, details = out.texts, out.details
    name = f"{src}-{tgt}"
    metrics[f"bleu/{name}"] = bleu.corpus_score(hypotheses, [references]).score
    metrics[f"chrf/{name}"] = chrf.corpus_score(hypotheses, [references]).score
    metrics[f"cut/{name}"] = int(sum(out.cut))
    if any(out.cut):
      first = out.cut.index(True)
      tqdm.write(f"warning: {label + ' ' if label else ''}{name}: {sum(out.cut)} of "
                 f"{len(sources)} outputs reached their decoding limit without EOS and are "
                 f"cut (the first: sentence {first + 1}, {out.limits[first]} tokens)",
                 file=sys.stderr)
    if identifier is not None:
      metrics[f"offtarget/{name}"] = langid.offtarget_rate(identifier, hypotheses, tgt)
    if plot_dir:
      os.makedirs(plot_dir, exist_ok=True)
      for i in range(min(config.num_attention_plots, len(details))):
        source_ids, output_ids, weights = details[i]
        sp = translator.tokenizer.sp
        plots.attention_heatmap(
            weights, [sp.id_to_piece(int(t)) for t in source_ids],
            [sp.id_to_piece(int(t)) for t in output_ids] + ([] if out.cut[i] else ["</s>"]),
            os.path.join(plot_dir, f"attention_{name}_{i}.png"),
            title=f"{name}: {hypotheses[i][:60]}")
  if signatures and pairs:
    metrics["signature/bleu"] = str(bleu.get_signature())
    metrics["signature/chrf"] = str(chrf.get_signature())
  return metrics


def _summaries(metrics: dict, supervised, zero_shot) -> dict:
  out = {}
  for label, dirs in (("supervised", supervised), ("zero_shot", zero_shot)):
    values = [metrics[f"bleu/{d}"] for d in dirs if f"bleu/{d}" in metrics]
    if values:
      out[f"bleu/mean_{label}"] = float(np.mean(values))
      out[f"chrf/mean_{label}"] = float(np.mean([metrics[f"chrf/{d}"] for d in dirs]))
      if all(f"offtarget/{d}" in metrics for d in dirs):
        out[f"offtarget/mean_{label}"] = float(np.mean([metrics[f"offtarget/{d}"] for d in dirs]))
  return out


def make_mesh(config):
  """The devices: a "data" axis (data parallelism), and with `--pipeline_devices` > 1 a
  "layers" axis of that size (the model's layers spread over it)."""
  if config.pipeline_devices > 1:
    try:
      return training.parallel.data_layers_mesh(config.num_devices or None,
                                                config.pipeline_devices)
    except ValueError as e:
      raise UserError(f"--pipeline_devices: {e} (--host_devices makes CPU devices)") from None
  return training.data_mesh(config.num_devices or None)


def build(config, workdir: str, corpus=None):
  """Tokenizer, model and a fresh train state (the structure checkpoints restore into)."""
  tokenizer = data_lib.tokenizer_for(workdir, corpus, config)
  model = model_lib.GNMT(config, tokenizer.vocab_size, mesh=make_mesh(config))
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
  optimizer = make_optimizer(config, num_steps)
  key = jax.random.key(config.seed)
  params = model.init(jax.random.fold_in(key, 0))
  if config.training == "mixer":  # MIXER's linear baseline on the top decoder layer's h
    params[objectives.BASELINE] = mixer.init_baseline(config.hidden_size)
  state = training.state.create_state(params, optimizer)
  return tokenizer, model, optimizer, state, num_steps, key


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains multilingual GNMT in `workdir` (resuming if it can) and writes results.json."""
  check_config(config)
  start_time = time.time()
  corpus = data_lib.load(config)
  tokenizer, model, optimizer, state, num_steps, key = build(config, workdir, corpus)
  examples, truncated = data_lib.encode_pairs(tokenizer, corpus.splits["train"], config,
                                              progress=config.progress)
  mesh = model.mesh if model.mesh is not None else make_mesh(config)
  if not config.batch_tokens:
    training.parallel.check_divisible(config.batch_size, mesh)
  process = (jax.process_index(), jax.process_count())
  batches = data_lib.Batches(examples, config.batch_size, config.seed, config,
                             balance=config.balance_directions,
                             batch_tokens=config.batch_tokens,
                             multiple=training.parallel.data_size(mesh))
  supervised = list(config.train_directions)
  zero_shot = list(config.zero_shot_directions)
  print(f"GNMT on {config.corpus}: {len(examples.source)} training pairs over "
        f"{len(supervised)} directions ({truncated} truncated), vocabulary "
        f"{tokenizer.vocab_size}, {num_steps} steps, {mesh.size} device(s)"
        + (f" (layers over {config.pipeline_devices})" if config.pipeline_devices > 1 else ""),
        flush=True)

  identifier = langid.LanguageIdentifier.fit(langid.training_lines(corpus.splits["train"]))
  translator = Translator(config, model, tokenizer, mesh)
  best = checkpoints_lib.BestParams(workdir)
  if best.record:
    print(f"Best validation so far: step {best.step}, {best.metric} {best.score:.4g} "
          f"({best.directory})", flush=True)

  def evaluate_valid(state):
    metrics = evaluate_directions(config, translator, state.params, corpus.splits["valid"],
                                  max_sentences=config.eval_max_sentences,
                                  identifier=identifier, label="valid")
    metrics.update(_summaries(metrics, supervised, zero_shot))
    metrics = {f"valid/{k}": v for k, v in metrics.items()}
    if checkpoints_lib.BEST_METRIC in metrics:
      best.update(int(jax.device_get(state.step)), metrics[checkpoints_lib.BEST_METRIC],
                  state.params)
    return metrics

  reward = bleu_reward(tokenizer) if config.training in ("mixer", "scst") else None
  languages = (synthetic.Languages.of(tokenizer, list(corpus.splits["train"]))
               if config.synthetic_pairs else None)
  if config.synthetic_pairs == "pivot" and len(tokenizer.languages) < 3:
    raise UserError("--synthetic_pairs=pivot needs a third language")

  def batch_at(step):
    batch = batches(step, process=process)
    if config.training != "xent" or config.synthetic_pairs:  # schedules read the step
      batch["step"] = np.full((len(batch["source"]),), step, np.int32)
    return batch

  state = training.fit(
      workdir=workdir, experiment="gnmt", state=state,
      train_step=training.make_train_step(make_loss_fn(config, model, reward, languages),
                                          optimizer),
      batch_at=batch_at, num_steps=num_steps,
      key=jax.random.fold_in(key, 1), evaluate=evaluate_valid,
      eval_every=config.eval_every or 500, checkpoint_every=config.checkpoint_every,
      log_every=config.log_every, mesh=mesh,
      items_per_step=None if config.batch_tokens else config.batch_size,
      items_name="sentences", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates,
      max_to_keep=max(3, config.average_last))

  params, tested = params_to_test(config, workdir, state, best)
  metrics = evaluate_directions(config, translator, params, corpus.splits["test"],
                                max_sentences=None, plot_dir=os.path.join(workdir, "attention"),
                                identifier=identifier, label="test", signatures=True)
  results = dict(metrics)
  results.update(_summaries(metrics, supervised, zero_shot))
  results.update({"step": int(jax.device_get(state.step)), "zero_shot_directions": zero_shot,
                  "supervised_directions": supervised, "truncated_training_pairs": truncated,
                  "test_params": config.test_params, "test_params_steps": tested,
                  "wall_time_s": time.time() - start_time})
  if best.record:
    results.update({"best_valid_step": best.step, "best_valid_bleu": best.score})
  if jax.process_index() == 0:
    training.metrics.write_results(workdir, results)
  print(f"test (--test_params={config.test_params}: step(s) {', '.join(map(str, tested))}): "
        + ", ".join(f"{k} {v:.1f}" for k, v in results.items()
                    if isinstance(v, float) and k.startswith(("bleu", "chrf", "offtarget"))),
        flush=True)
  return results


def params_to_test(config, workdir: str, state, best=None) -> tuple[object, list[int]]:
  """The params `--test_params` chooses, and the step(s) they come from.

  Args:
    config: the run's config.
    workdir: the run's directory.
    state: the final train state (`last`), also the structure the others restore into.
    best: the run's `checkpoints.BestParams` (default: read from the workdir).
  """
  if config.test_params == "best":
    best = best or checkpoints_lib.BestParams(workdir)
    return best.restore(state.params), [best.step]
  if config.test_params == "average":
    return checkpoints_lib.average_last(workdir, state, config.average_last)
  return state.params, [int(jax.device_get(state.step))]


def translate(config, workdir: str, lines=None, out=None) -> list[str]:
  """Translates `lines` (default: --input_file or stdin) with the workdir's params.

  The params are `--test_params`'s choice (default: the latest checkpoint). An
  empty input line gives an empty output line (and a warning); a line longer
  than `max_source_len` tokens is truncated, and an output that reaches its
  decoding limit without EOS is cut (a warning says so for each).
  """
  check_config(config)
  if not config.target_lang:
    raise UserError("--target_lang is required in translate mode")
  tokenizer, model, _, state, _, _ = build(config, workdir)
  tokenizer.lang_token(config.target_lang)  # an unknown code fails before any work
  checkpointer = training.Checkpointer(workdir, "gnmt", max_to_keep=max(3, config.average_last))
  checkpointer.check_owner()
  restored, meta = checkpointer.restore_latest(state)
  checkpointer.close()
  if restored is None:
    raise UserError(f"--workdir={workdir} has no checkpoint to translate with")
  if lines is None:
    if config.input_file:
      with open(config.input_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    else:
      lines = sys.stdin.read().splitlines()
  config_max = config.max_source_len
  for n, line in enumerate(lines, 1):
    if not line.strip():
      print(f"warning: line {n} is empty; its translation is an empty line", file=sys.stderr)
    elif len(tokenizer.sp.encode(line)) + 2 > config_max:
      print(f"warning: line {n} is longer than --max_source_len={config_max} tokens; only its "
            "beginning is translated", file=sys.stderr)
  params, tested = params_to_test(config, workdir, restored)
  if config.test_params != "last":
    print(f"translating with --test_params={config.test_params}: step(s) "
          f"{', '.join(map(str, tested))}", file=sys.stderr)
  translator = Translator(config, model, tokenizer)
  todo = [i for i, line in enumerate(lines) if line.strip()]
  outputs = [""] * len(lines)
  if todo:
    done = translator(params, [lines[i] for i in todo], config.target_lang,
                      key=jax.random.key(config.seed))
    for i, text, cut, limit in zip(todo, done.texts, done.cut, done.limits):
      outputs[i] = text
      if cut:
        print(f"warning: line {i + 1}: the translation reached its decoding limit of {limit} "
              "tokens without EOS; it is cut", file=sys.stderr)
  if out is None and config.output_file:
    with open(config.output_file, "w", encoding="utf-8") as f:
      f.write("\n".join(outputs) + "\n")
  else:
    (out or sys.stdout).write("\n".join(outputs) + "\n")
  return outputs

