r"""What a skip-thought training step costs: the full softmax against the sampled one, and the
conditional decoder as a per-sentence bias against h_i concatenated to every input.

    python -m benchmarks.skip_thought_step
    python -m benchmarks.skip_thought_step --embed_size=620 --hidden_size=2400 --batch_size=32

`step` rows time the jitted forward+backward+Adam step of `model.loss` (random tokens,
every sentence `--length` long) for each `--samples` value (0: the full softmax).
`decoder` rows time one decoder's forward+backward: `cells.gru` over x_t with the bias
b + h_i C `[B, 3D]` (what model.py runs) and the same GRU over [x_t, h_i] `[B, U, E + D]`
(the concatenation it replaced); both compute the paper's conditional GRU. In turns;
the median of `--turns`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import timing
from experiments.skip_thought import model as model_lib
from rnn_jax import cells, unroll

_EMBED = flags.DEFINE_integer("embed_size", 256, "E.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 512, "D.")
_VOCAB = flags.DEFINE_integer("vocab_size", 20000, "V.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "B.")
_LENGTH = flags.DEFINE_integer("length", 20, "Tokens per sentence.")
_ENCODERS = flags.DEFINE_list("encoders", ["uni"], "Models in the step.")
_SAMPLES = flags.DEFINE_list("samples", ["0", "512"], "Sampled-softmax sizes (0: full).")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns.")
_MIN_TIME = flags.DEFINE_float("min_time", 1.0, "Seconds per timing.")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")


def step_runner(samples: int):
  config = types.SimpleNamespace(encoders=_ENCODERS.value, embed_size=_EMBED.value,
                                 hidden_size=_HIDDEN.value, softmax_samples=samples)
  model = model_lib.build(config, _VOCAB.value)
  params = model.init(jax.random.key(0))
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)
  rng = np.random.default_rng(0)
  B, L, V = _BATCH.value, _LENGTH.value, _VOCAB.value
  batch = {"source": rng.integers(4, V, (B, L)), "source_lengths": np.full(B, L)}
  for w in ("prev", "next"):
    batch[f"{w}_in"] = rng.integers(3, V, (B, L))
    batch[f"{w}_out"] = rng.integers(2, V, (B, L))
    batch[f"{w}_lengths"] = np.full(B, L)
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}

  @jax.jit
  def step(params, opt_state, key):
    grads = jax.grad(lambda p: model.loss(p, batch, key)[0])(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  state = [params, opt_state]

  def run():
    state[:] = step(*state, jax.random.key(1))
    jax.block_until_ready(state[0])

  return run


def decoder_runner(form: str):
  B, U, E, D = _BATCH.value, _LENGTH.value, _EMBED.value, _HIDDEN.value
  cell = cells.gru(D)
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (B, U, E))
  h = jax.random.normal(keys[1], (B, D))
  if form == "bias":
    params = dict(cell.init(keys[2], E), w_ctx=0.01 * jax.random.normal(keys[3], (D, 3 * D)))

    def loss(p, x, h):
      gru = {k: v for k, v in p.items() if k != "w_ctx"}
      gru["b"] = gru["b"] + h @ p["w_ctx"]
      return unroll(cell, gru, x)[0].sum()
  else:
    params = cell.init(keys[2], E + D)

    def loss(p, x, h):
      context = jnp.broadcast_to(h[:, None], (B, U, D))
      return unroll(cell, p, jnp.concatenate([x, context], -1))[0].sum()

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  return lambda: jax.block_until_ready(grad(params, x, h))


def main(argv):
  del argv
  calls = {f"step, samples={s}": step_runner(int(s)) for s in _SAMPLES.value}
  calls["decoder, per-sentence bias"] = decoder_runner("bias")
  calls["decoder, concatenated h_i"] = decoder_runner("concat")
  for call in calls.values():
    call()  # compile
  turns = timing.in_turns({n: (lambda c=c: timing.repeat(c, _MIN_TIME.value)) for n, c in
                           calls.items()}, _TURNS.value)
  print(f"skip-thought, E={_EMBED.value}, D={_HIDDEN.value}, V={_VOCAB.value}, "
        f"B={_BATCH.value}, {_LENGTH.value} tokens, encoders {','.join(_ENCODERS.value)} "
        f"({jax.default_backend()}, {os.cpu_count()} cores)")
  rows = []
  for name, results in turns.items():
    ms = statistics.median(1e3 * t for t, _ in results)
    cores = statistics.median(c for _, c in results)
    rows.append({"setting": name, "ms": ms, "cores": cores})
    print(f"{name:>28}: {ms:8.1f} ms ({cores:.1f} cores)")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "jax": jax.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
