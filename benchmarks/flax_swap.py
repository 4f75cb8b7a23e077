r"""A Flax user's model, faster in one line: nn.RNN(OptimizedLSTMCell) against rnn_jax's module.

    python -m benchmarks.flax_swap                         # the default sizes
    python -m benchmarks.flax_swap --sizes=32x100x256 --turns=5 --json=/tmp/swap.json

The model is a small sequence classifier as a Flax user writes it: token ids `[B, T]` ->
`nn.Embed` `[B, T, E]` -> an LSTM over the ragged batch (lengths drawn in [T/2, T]) ->
its final h at each sequence's last valid step `[B, H]` -> `nn.Dense` -> logits `[B, K]`,
softmax cross-entropy. Two versions differ in one line, the LSTM:

  flax      `nn.RNN(nn.OptimizedLSTMCell(H), return_carry=True)(x, seq_lengths=lengths)`
  rnn_jax   `rnn_jax.modules.linen.RNN(cells.lstm(H))(x, seq_lengths=lengths)`

The rnn_jax version runs on the weights converted from the Flax one
(`rnn_jax.interop.flax.params_from_flax`), and the script checks that both give the same
logits and gradients before timing. For each size (B, T, H; E = H / 2, K = 10, V = 1000)
it times, in turns so both see the same machine state, the jitted forward (logits) and
forward+backward (the loss and its gradients for every param), and prints milliseconds
(the median over turns), the speedup of the swap, and the cores used (process CPU time
over wall time while timing).
"""

from __future__ import annotations

import json
import os
import platform
import statistics

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import timing
from rnn_jax import cells
from rnn_jax.interop import flax as flax_interop
from rnn_jax.modules import linen as rnn_nn

_SIZES = flags.DEFINE_list("sizes", ["32x100x128", "32x100x256", "16x200x256"],
                            "BxTxH sizes (E = H / 2).")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns, each timing both models once.")
_MIN_TIME = flags.DEFINE_float("min_time", 1.0, "Seconds of repeats per measurement.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")

VOCAB, CLASSES = 1000, 10
MODELS = ("flax", "rnn_jax")


class Classifier(nn.Module):
  """Tokens `[B, T]` -> logits `[B, K]`; `lstm` picks which LSTM runs (the one-line swap)."""
  hidden: int
  embed: int
  lstm: str = "flax"

  @nn.compact
  def __call__(self, tokens, lengths):
    x = nn.Embed(VOCAB, self.embed)(tokens)  # [B, T, E]
    if self.lstm == "flax":
      (_, h), _ = nn.RNN(nn.OptimizedLSTMCell(self.hidden), return_carry=True,
                         name="lstm")(x, seq_lengths=lengths)
    else:
      _, final = rnn_nn.RNN(cells.lstm(self.hidden), name="lstm")(x, seq_lengths=lengths)
      h = final.h  # [B, H]
    return nn.Dense(CLASSES)(h)  # [B, K]


def swapped_variables(variables, hidden: int):
  """The Flax model's variables with its LSTM's converted to rnn_jax's layout. (A cell made
  inside a compact method belongs to that method's module: Flax keeps its params beside
  the RNN, as "OptimizedLSTMCell_0".)"""
  params = dict(variables["params"])
  cell_params = params.pop("OptimizedLSTMCell_0")
  params["lstm"] = flax_interop.params_from_flax(nn.OptimizedLSTMCell(hidden), cell_params)
  return {"params": params}


def make_fns(B: int, T: int, H: int):
  """`{model: (forward, fwd_bwd, variables)}` and the batch, after checking both agree."""
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, VOCAB, (B, T)), jnp.int32)
  lengths = jnp.asarray(rng.integers(T // 2, T + 1, (B,)), jnp.int32)
  labels = jnp.asarray(rng.integers(0, CLASSES, (B,)), jnp.int32)
  flax_model = Classifier(H, H // 2, "flax")
  variables = {"flax": flax_model.init(jax.random.key(0), tokens, lengths)}
  variables["rnn_jax"] = swapped_variables(variables["flax"], H)
  fns = {}
  for name in MODELS:
    model = Classifier(H, H // 2, name)

    def loss(v, model=model):
      logits = model.apply(v, tokens, lengths)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    forward = jax.jit(lambda v, model=model: model.apply(v, tokens, lengths))
    fns[name] = (forward, jax.jit(jax.value_and_grad(loss)), variables[name])
  # Same model, same weights: the same logits, loss and gradients (the LSTM's converted).
  logits = {n: fns[n][0](fns[n][2]) for n in MODELS}
  np.testing.assert_allclose(logits["rnn_jax"], logits["flax"], rtol=1e-4, atol=1e-5)
  (loss_f, g_f), (loss_r, g_r) = (fns[n][1](fns[n][2]) for n in MODELS)
  np.testing.assert_allclose(loss_r, loss_f, rtol=1e-5)
  g_f = swapped_variables({"params": g_f["params"]}, H)["params"]  # grads map like weights
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6), g_r["params"], g_f)
  return fns


def measure(size: str) -> dict:
  B, T, H = (int(n) for n in size.split("x"))
  fns = make_fns(B, T, H)
  runners = {}
  for name, (forward, fwd_bwd, v) in fns.items():
    for kind, fn in (("fwd", forward), ("fwd_bwd", fwd_bwd)):
      jax.block_until_ready(fn(v))  # warm up
      runners[f"{name} {kind}"] = (lambda fn=fn, v=v: timing.repeat(
          lambda: jax.block_until_ready(fn(v)), _MIN_TIME.value))
  turns = timing.in_turns(runners, _TURNS.value)
  row = dict(B=B, T=T, H=H, E=H // 2)
  for key, results in turns.items():
    name, kind = key.split()
    row[f"{name}_{kind}_ms"] = 1e3 * statistics.median(s for s, _ in results)
    row[f"{name}_{kind}_cores"] = statistics.median(c for _, c in results)
  for kind in ("fwd", "fwd_bwd"):
    row[f"{kind}_speedup"] = row[f"flax_{kind}_ms"] / row[f"rnn_jax_{kind}_ms"]
  return row


def main(argv):
  del argv
  rows = [measure(size) for size in _SIZES.value]
  print("| B, T, H (E = H/2) | flax fwd ms | rnn_jax fwd ms | fwd speedup "
        "| flax fwd+bwd ms | rnn_jax fwd+bwd ms | fwd+bwd speedup | cores (flax / rnn_jax) |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['B']}, {r['T']}, {r['H']} | {r['flax_fwd_ms']:.2f} | {r['rnn_jax_fwd_ms']:.2f}"
          f" | {r['fwd_speedup']:.2f}x | {r['flax_fwd_bwd_ms']:.2f}"
          f" | {r['rnn_jax_fwd_bwd_ms']:.2f} | **{r['fwd_bwd_speedup']:.2f}x**"
          f" | {r['flax_fwd_bwd_cores']:.2f} / {r['rnn_jax_fwd_bwd_cores']:.2f} |")
  if _JSON.value:
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "jax": jax.__version__, "rows": rows}
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
