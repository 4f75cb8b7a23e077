r"""GNMT's training step under each `--training` method, at the same shapes.

    python -m benchmarks.seq2seq_training                   # tiny_cpu's model, B=64
    python -m benchmarks.seq2seq_training --json=/tmp/seq2seq_training.json

Rows (each the experiment's jitted `train_step`, Adam, dropout 0.2, on random
batches of fixed lengths, timed in alternating turns):
- `xent`: GNMT's own cross-entropy step (`decode_train`: a scan over the bottom
  layer and attention, each upper layer one fused `unroll`);
- `teacher_forcing`: cross-entropy with the decoder run step by step on the
  library's contract (`seq2seq.forcing.teacher_forcing`), what scheduled sampling
  does besides its draws;
- `scheduled_sampling`: ε = 0.5, samples fed (`--ss_feed=sample`);
- `mixer`: Δ = half the target, sentence BLEU of the sampled output on the host;
- `scst`: a sample and a greedy decode, both scored by sentence BLEU on the host.
The host reward is sacrebleu's sentence BLEU over strings made from the ids
("w17 w5 ..."; a real run detokenizes with sentencepiece first), called through
`jax.pure_callback` inside the step; its share of the step's time is measured
in the callback. Tokens/s counts target positions per second (B x U).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments.gnmt import model as model_lib  # noqa: E402
from experiments.gnmt import train as train_lib  # noqa: E402
from experiments.gnmt.config import GNMTConfig  # noqa: E402
from rnn_jax import training  # noqa: E402
from rnn_jax.seq2seq import forcing, mixer, objectives, rewards  # noqa: E402

_HIDDEN = flags.DEFINE_integer("hidden_size", 64, "H (the tiny_cpu flagfile's 64).")
_LAYERS = flags.DEFINE_integer("num_layers", 8, "Layers of the encoder and of the decoder.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Sentence pairs per step.")
_SOURCE_LEN = flags.DEFINE_integer("source_len", 20, "Source tokens per sentence.")
_TARGET_LEN = flags.DEFINE_integer("target_len", 22, "Target tokens per sentence (EOS last).")
_VOCAB = flags.DEFINE_integer("vocab_size", 600, "Vocabulary.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per turn.")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns per method.")
_METHODS = flags.DEFINE_list("methods", ["xent", "teacher_forcing", "scheduled_sampling",
                                         "mixer", "scst"], "Rows to time.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")

HOST_SECONDS = [0.0]


def _bleu_on_ids(tokens, lengths, targets, target_lengths):
  start = time.perf_counter()
  words = lambda row, n: " ".join(f"w{int(i)}" for i in row[:n])
  out = rewards.sentence_bleu([words(t, n) for t, n in zip(tokens, lengths)],
                              [[words(t, n)] for t, n in zip(targets, target_lengths)])
  HOST_SECONDS[0] += time.perf_counter() - start
  return out


def _teacher_forcing_loss(config, model):
  """Cross-entropy with the decoder stepped on the contract (no label smoothing)."""

  def loss_fn(params, extra, batch, key):
    k_enc, k_dec = jax.random.split(key)
    encoded = model.encode(params, batch["source"], batch["source_lengths"], training=True,
                           key=k_enc)
    logits, _ = forcing.teacher_forcing(model.decoder(), params, encoded,
                                        batch["target_in"][:, 0], batch["target_out"],
                                        step_kw={"training": True, "key": k_dec})
    mask = jnp.arange(logits.shape[1])[None] < batch["target_lengths"][:, None]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target_out"])
    return jnp.sum(ce * mask) / jnp.maximum(mask.sum(), 1), (extra, {})

  return loss_fn


def main(argv):
  del argv
  B, S, U, V = _BATCH.value, _SOURCE_LEN.value, _TARGET_LEN.value, _VOCAB.value
  base = dict(hidden_size=_HIDDEN.value, num_layers=_LAYERS.value, vocab_size=V,
              batch_size=B, dropout=0.2, label_smoothing=0.0)
  configs = {
      "xent": GNMTConfig(**base),
      "teacher_forcing": GNMTConfig(**base),
      "scheduled_sampling": GNMTConfig(**base, training="scheduled_sampling",
                                       ss_schedule="linear", ss_k=0.5, ss_c=0.0),
      "mixer": GNMTConfig(**base, training="mixer", mixer_delta_step=U // 2,
                          mixer_delta_every=1),
      "scst": GNMTConfig(**base, training="scst"),
  }
  rng = np.random.default_rng(0)
  batch = {"source": rng.integers(4, V, (B, S), dtype=np.int32),
           "source_lengths": np.full(B, S, np.int32),
           "target_in": np.concatenate([np.full((B, 1), 2, np.int32),
                                        rng.integers(4, V, (B, U - 1), dtype=np.int32)], 1),
           "target_lengths": np.full(B, U, np.int32),
           "step": np.full(B, 1, np.int32)}
  batch["target_out"] = np.concatenate([batch["target_in"][:, 1:], np.full((B, 1), 3,
                                                                          np.int32)], 1)
  reward = objectives.host_reward(_bleu_on_ids)
  runs = {}
  for name in _METHODS.value:
    config = configs[name]
    model = model_lib.GNMT(config, V)
    params = model.init(jax.random.key(0))
    if name == "mixer":
      params[objectives.BASELINE] = mixer.init_baseline(config.hidden_size)
    optimizer = train_lib.make_optimizer(config, 1000)
    state = training.state.create_state(params, optimizer)
    loss_fn = (_teacher_forcing_loss(config, model) if name == "teacher_forcing"
               else train_lib.make_loss_fn(config, model, reward))
    step = jax.jit(training.make_train_step(loss_fn, optimizer))
    jax.block_until_ready(step(state, batch, jax.random.key(1)))
    runs[name] = {"step": step, "state": state, "ms": [], "host_ms": []}
  for _ in range(_TURNS.value):
    for name, r in runs.items():
      HOST_SECONDS[0] = 0.0
      start = time.perf_counter()
      for i in range(_STEPS.value):
        _, metrics = r["step"](r["state"], batch, jax.random.key(i))
      jax.block_until_ready(metrics)
      r["ms"].append(1e3 * (time.perf_counter() - start) / _STEPS.value)
      r["host_ms"].append(1e3 * HOST_SECONDS[0] / _STEPS.value)

  print(f"GNMT train step by --training, H={_HIDDEN.value}, {_LAYERS.value}+{_LAYERS.value} "
        f"layers, V={V}, B={B}, source {S}, target {U} tokens, dropout 0.2 "
        f"({jax.default_backend()}, {os.cpu_count()} cores)")
  rows = []
  ref = statistics.median(runs["teacher_forcing"]["ms"]) if "teacher_forcing" in runs else None
  for name, r in runs.items():
    ms, host = statistics.median(r["ms"]), statistics.median(r["host_ms"])
    row = {"method": name, "ms_per_step": ms, "turns_ms": r["ms"], "host_reward_ms": host,
           "tokens_per_s": B * U / (ms / 1e3)}
    if ref:
      row["vs_teacher_forcing"] = ms / ref
    rows.append(row)
    print(f"{name:>18}: {ms:8.1f} ms/step, {row['tokens_per_s']:8.0f} target tokens/s"
          + (f", {ms / ref:4.2f}x teacher forcing" if ref else "")
          + (f", host reward {host:6.1f} ms ({100 * host / ms:4.1f}%)" if host else ""))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "jax": jax.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
