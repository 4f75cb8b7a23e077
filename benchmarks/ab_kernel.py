r"""A/B of the fused kernels: this checkout against a git revision, in one process.

    python -m benchmarks.ab_kernel --rev=HEAD~1 --cell=lstm --sizes=64x64x30,32x512x100

Loads `rnn_jax/kernels/fused_lstm.py` (and `fused_gru.py`) as they are at `--rev`
(`git show`), and times forward+backward through `rnn_jax.unroll(...,
implementation="fused")` (loss = sum of the outputs, gradients for the params
and the inputs) with the old kernel and with this checkout's, turns
alternating, so both see the same machine state. On a machine whose speed
drifts between runs (benchmarks/RESULTS.md) this is the comparison to trust
for a kernel change; it also checks that both give the same gradients.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import rnn_jax
from benchmarks import timing
from rnn_jax import cells, kernels

_REV = flags.DEFINE_string("rev", "HEAD~1", "The git revision to compare against.")
_CELL = flags.DEFINE_enum("cell", "lstm", ["lstm", "gru"], "Which kernel.")
_SIZES = flags.DEFINE_list("sizes", ["64x64x30", "32x512x100"], "BxHxT sizes (D = H).")
_TURNS = flags.DEFINE_integer("turns", 7, "Alternating turns.")
_MIN_TIME = flags.DEFINE_float("min_time", 0.3, "Seconds of repeats per measurement.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_at(rev: str, folder: str):
  """The fused kernel modules at `rev`, imported from `folder` under private names."""
  def source(path):
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout

  def load(name, text):
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w") as f:
      f.write(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

  lstm = load("_ab_fused_lstm", source("rnn_jax/kernels/fused_lstm.py"))
  gru = load("_ab_fused_gru", source("rnn_jax/kernels/fused_gru.py").replace(
      "from rnn_jax.kernels.fused_lstm import", "from _ab_fused_lstm import"))
  return lstm, gru


def timed(fn, *args):
  """Seconds per call, repeated for at least --min_time after one warm-up call."""
  jax.block_until_ready(fn(*args))
  return timing.repeat(lambda: jax.block_until_ready(fn(*args)), _MIN_TIME.value)[0]


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as folder:
    old_lstm, old_gru = load_at(_REV.value, folder)
    name = "lstm_sequence" if _CELL.value == "lstm" else "gru_sequence"
    versions = {_REV.value: getattr(old_lstm if _CELL.value == "lstm" else old_gru, name),
                "this checkout": getattr(kernels, name)}
    for size in _SIZES.value:
      B, H, T = (int(v) for v in size.split("x"))
      cell = cells.lstm(H) if _CELL.value == "lstm" else cells.gru(H, reset_after=True)
      params = cell.init(jax.random.key(0), H)
      xs = jax.random.normal(jax.random.key(1), (B, T, H))
      fns, grads = {}, {}
      for label, kernel in versions.items():
        setattr(kernels, name, kernel)  # what fused_unroll calls, while this one is traced
        loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, implementation="fused")[0])
        fns[label] = jax.jit(jax.grad(loss, argnums=(0, 1)))
        grads[label] = fns[label](params, xs)
      setattr(kernels, name, versions["this checkout"])
      for a, b in zip(*(jax.tree_util.tree_leaves(g) for g in grads.values())):
        # float32 sums in another order: agree to 1e-5 of the gradient's scale
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
      times = timing.in_turns({label: (lambda fn=fn: timed(fn, params, xs))
                               for label, fn in fns.items()}, _TURNS.value)
      old, new = (1e3 * statistics.median(t) for t in times.values())
      print(f"{_CELL.value} {size}: {_REV.value} {old:.2f} ms, this checkout {new:.2f} ms, "
            f"ratio {new / old:.3f} (median of {_TURNS.value} alternating turns; same "
            "gradients)", flush=True)


if __name__ == "__main__":
  app.run(main)
