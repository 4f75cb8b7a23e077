r"""LSTM / GRU sequence speed: rnn_jax's paths against Flax, PyTorch and the GEMM-only limit.

    python -m benchmarks.rnn                               # every size, LSTM and GRU
    python -m benchmarks.rnn --cells=lstm --sizes=32x512x100 --json=/tmp/rnn.json

For each size (B, H, T) with D = H, float32, loss = sum of the outputs,
gradients for the params and the inputs, it times in one process, taking
turns round-robin so every implementation sees the same machine state:

  rnn_jax/scan    `rnn_jax.unroll(..., implementation="scan")` (lax.scan, autodiff)
  rnn_jax/fused   `implementation="fused"` (hoisted projection, hand-written backward)
  flax            `flax.linen.RNN(OptimizedLSTMCell / GRUCell)`
  torch           `torch.nn.LSTM / nn.GRU` on the CPU (oneDNN), CUDA when present
  gemm_limit      the same GEMMs with no recurrence: what a perfect kernel costs

and prints milliseconds, GFLOP/s and the ratio to torch, forward and
forward+backward. `--compile_sizes` reports compile time against T.

    python -m benchmarks.rnn --memory --sizes=32x512x10000

`--memory` runs nothing: it compiles forward+backward (the same loss and
gradients) for each size, with and without `remat`, for the fused kernels and
the scan path, and prints XLA's compile-time memory analysis
(`compiled.memory_analysis()`: arguments, outputs, temporaries and their total,
the peak the program needs), so sizes far beyond the machine's memory can be read.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import rnn_jax
from rnn_jax import cells, kernels

_CELLS = flags.DEFINE_list("cells", ["lstm", "gru"], "Cells to time.")
_SIZES = flags.DEFINE_list("sizes", ["32x512x100", "64x256x200", "8x1024x50", "64x64x30",
                                     "32x512x2000"], "BxHxT sizes (D = H).")
_TURNS = flags.DEFINE_integer("turns", 3, "Round-robin turns.")
_MIN_TIME = flags.DEFINE_float("min_time", 0.3, "Seconds of repeats per measurement.")
_IMPLS = flags.DEFINE_list("implementations", ["rnn_jax/scan", "rnn_jax/fused", "flax", "torch",
                                               "gemm_limit"], "What to time.")
_COMPILE_T = flags.DEFINE_list("compile_sizes", ["100", "1000", "10000"],
                               "T values for the compile-time report (B=32, H=512).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_MEMORY = flags.DEFINE_bool("memory", False, "Compile only and report the compile-time memory "
                            "analysis of forward+backward with and without remat, then exit.")
_MEMORY_DTYPE = flags.DEFINE_enum("memory_dtype", "float32", ["float32", "bfloat16"],
                                  "Params and inputs dtype for --memory.")

GATES = {"lstm": 4, "gru": 3}


def flops(cell: str, B: int, H: int, T: int, backward: bool) -> float:
  """Matmul FLOPs: forward 2*B*T*(D+H)*G*H (D = H); the backward pass doubles it."""
  f = 2.0 * B * T * (2 * H) * GATES[cell] * H
  return 3 * f if backward else f


def _timer(fn, *args):
  """Seconds per call: repeats for at least --min_time after one warm-up call."""
  jax.block_until_ready(fn(*args))

  def run():
    n, start = 0, time.perf_counter()
    while True:
      jax.block_until_ready(fn(*args))
      n += 1
      elapsed = time.perf_counter() - start
      if elapsed >= _MIN_TIME.value:
        return elapsed / n

  return run


def jax_fns(cell_name, impl, B, H, T):
  cell = cells.lstm(H) if cell_name == "lstm" else cells.gru(H, reset_after=True)
  params = cell.init(jax.random.key(0), H)
  xs = jax.random.normal(jax.random.key(1), (B, T, H))
  if impl == "rnn_jax/fused" and not kernels.fused_supports(cell):
    return None
  implementation = impl.split("/")[1]
  forward = jax.jit(lambda p, x: rnn_jax.unroll(cell, p, x, implementation=implementation)[0])
  loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, implementation=implementation)[0])
  both = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return _timer(forward, params, xs), _timer(both, params, xs)


def flax_fns(cell_name, B, H, T):
  import flax.linen as nn
  cell = nn.OptimizedLSTMCell(H) if cell_name == "lstm" else nn.GRUCell(H)
  model = nn.RNN(cell)
  xs = jax.random.normal(jax.random.key(1), (B, T, H))
  params = model.init(jax.random.key(0), xs)
  forward = jax.jit(model.apply)
  both = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x)), argnums=(0, 1)))
  return _timer(forward, params, xs), _timer(both, params, xs)


def gemm_limit_fns(cell_name, B, H, T):
  """The recurrence's GEMMs batched over all steps, as if nothing were sequential."""
  G = GATES[cell_name]
  k = jax.random.split(jax.random.key(0), 4)
  w_ih = jax.random.normal(k[0], (H, G * H)) * 0.01
  w_hh = jax.random.normal(k[1], (H, G * H)) * 0.01
  xs = jax.random.normal(k[2], (T * B, H))
  hs = jax.random.normal(k[3], (T * B, H))

  @jax.jit
  def forward(w_ih, w_hh, xs, hs):
    return xs @ w_ih + hs @ w_hh  # [T*B, G*H]

  @jax.jit
  def both(w_ih, w_hh, xs, hs):
    z = xs @ w_ih + hs @ w_hh
    dz = jnp.tanh(z)  # stands for the gate derivatives
    return xs.T @ dz, hs.T @ dz, dz @ w_ih.T, dz @ w_hh.T

  return _timer(forward, w_ih, w_hh, xs, hs), _timer(both, w_ih, w_hh, xs, hs)


def torch_fns(cell_name, B, H, T):
  import torch
  device = "cuda" if torch.cuda.is_available() else "cpu"
  module = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(H, H, batch_first=True).to(device)
  xs = torch.randn(B, T, H, device=device, requires_grad=True)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def timed(fn):
    fn()
    sync()

    def run():
      n, start = 0, time.perf_counter()
      while True:
        fn()
        sync()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= _MIN_TIME.value:
          return elapsed / n
    return run

  def forward():
    with torch.no_grad():
      module(xs)

  def both():
    module.zero_grad()
    xs.grad = None
    module(xs)[0].sum().backward()

  return timed(forward), timed(both)


def measure_compile(cell_name: str, impl: str, T: int) -> float:
  cell = cells.lstm(512) if cell_name == "lstm" else cells.gru(512, reset_after=True)
  params = cell.init(jax.random.key(0), 512)
  xs = jax.ShapeDtypeStruct((32, T, 512), jnp.float32)
  implementation = impl.split("/")[1]
  loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, implementation=implementation)[0])
  start = time.perf_counter()
  jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
  return time.perf_counter() - start


def measure_memory(cell_name: str, implementation: str, remat: bool, B: int, H: int, T: int,
                   dtype=jnp.float32) -> dict[str, int] | None:
  """Compile-time memory of forward+backward (loss = sum of the outputs, gradients for the
  params and the inputs `[B, T, H]`), from XLA's buffer assignment; nothing runs.

  Returns bytes, or None where `memory_analysis` is unavailable: `argument`, `output`,
  `temp` (the one allocation XLA packs every temporary into: the peak of the live
  temporaries), `alias`, and `total` = argument + output + temp - alias, the peak this
  program needs. (`peak_memory_in_bytes`, kept as `xla_peak`, counts only the arguments
  and outputs on the CPU in jax 0.10.2.)
  """
  cell = cells.lstm(H) if cell_name == "lstm" else cells.gru(H, reset_after=True)
  params = jax.eval_shape(lambda: jax.tree_util.tree_map(
      lambda a: a.astype(dtype), cell.init(jax.random.key(0), H)))
  xs = jax.ShapeDtypeStruct((B, T, H), dtype)
  loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, remat=remat,
                                             implementation=implementation)[0])
  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  row = {name: int(getattr(stats, f"{name}_size_in_bytes"))
         for name in ("argument", "output", "temp", "alias")}
  row["total"] = row["argument"] + row["output"] + row["temp"] - row["alias"]
  row["xla_peak"] = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
  return row


def memory_report(results) -> None:
  """`--memory`: the compile-time memory table for every cell and size."""
  dtype = jnp.dtype(_MEMORY_DTYPE.value)
  gib = lambda n: n / 2**30
  results["memory"] = []
  for cell_name in _CELLS.value:
    for size in _SIZES.value:
      B, H, T = (int(v) for v in size.split("x"))
      print(f"\n{cell_name} B={B} H={H} T={T} {dtype.name}: compile-time memory of "
            "forward+backward (GiB, XLA memory_analysis; nothing executed)")
      print(f"{'implementation':>22} | {'arguments':>9} {'outputs':>9} {'temp':>9} {'total':>9}")
      for implementation in ("fused", "scan"):
        for remat in (False, True):
          row = measure_memory(cell_name, implementation, remat, B, H, T, dtype)
          name = f"rnn_jax/{implementation}" + (" remat" if remat else "")
          if row is None:
            print(f"{name:>22} | memory_analysis unavailable on {jax.default_backend()}")
            continue
          results["memory"].append({"cell": cell_name, "B": B, "H": H, "T": T,
                                    "dtype": dtype.name, "implementation": name, **row})
          print(f"{name:>22} | {gib(row['argument']):9.3f} {gib(row['output']):9.3f} "
                f"{gib(row['temp']):9.3f} {gib(row['total']):9.3f}")


def main(argv):
  del argv
  results = {"machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores",
             "jax": jax.__version__, "backend": jax.default_backend(), "rows": []}
  if _MEMORY.value:
    memory_report(results)
    if _JSON.value:
      with open(_JSON.value, "w") as f:
        json.dump(results, f, indent=2)
    return
  for cell_name in _CELLS.value:
    for size in _SIZES.value:
      B, H, T = (int(v) for v in size.split("x"))
      runners = {}
      for impl in _IMPLS.value:
        if impl.startswith("rnn_jax/"):
          fns = jax_fns(cell_name, impl, B, H, T)
        elif impl == "flax":
          fns = flax_fns(cell_name, B, H, T)
        elif impl == "torch":
          fns = torch_fns(cell_name, B, H, T)
        elif impl == "gemm_limit":
          fns = gemm_limit_fns(cell_name, B, H, T)
        else:
          raise app.UsageError(f"--implementations: unknown {impl!r}")
        if fns is not None:
          runners[impl] = fns
      times = {impl: ([], []) for impl in runners}
      for _ in range(_TURNS.value):
        for impl, (fwd, both) in runners.items():
          times[impl][0].append(fwd())
          times[impl][1].append(both())
      base = times.get("torch")
      print(f"\n{cell_name} B={B} H={H} T={T}")
      print(f"{'implementation':>15} | {'fwd ms':>8} {'GFLOP/s':>8} {'vs torch':>8} | "
            f"{'fwd+bwd ms':>10} {'GFLOP/s':>8} {'vs torch':>8}")
      for impl, (fwd, both) in times.items():
        f, b = statistics.median(fwd), statistics.median(both)
        row = {"cell": cell_name, "B": B, "H": H, "T": T, "implementation": impl,
               "fwd_ms": 1e3 * f, "fwd_bwd_ms": 1e3 * b,
               "fwd_gflops": flops(cell_name, B, H, T, False) / f / 1e9,
               "fwd_bwd_gflops": flops(cell_name, B, H, T, True) / b / 1e9}
        if base:
          row["fwd_vs_torch"] = f / statistics.median(base[0])
          row["fwd_bwd_vs_torch"] = b / statistics.median(base[1])
        results["rows"].append(row)
        print(f"{impl:>15} | {row['fwd_ms']:8.2f} {row['fwd_gflops']:8.1f} "
              f"{row.get('fwd_vs_torch', float('nan')):8.2f} | {row['fwd_bwd_ms']:10.2f} "
              f"{row['fwd_bwd_gflops']:8.1f} {row.get('fwd_bwd_vs_torch', float('nan')):8.2f}")
  if _COMPILE_T.value:
    print("\ncompile time (s) of forward+backward, B=32 H=512, against T")
    results["compile_s"] = {}
    for cell_name in _CELLS.value:
      for impl in ("rnn_jax/scan", "rnn_jax/fused"):
        cell = cells.lstm(8) if cell_name == "lstm" else cells.gru(8, reset_after=True)
        if impl == "rnn_jax/fused" and not kernels.fused_supports(cell):
          continue
        seconds = {T: measure_compile(cell_name, impl, int(T)) for T in _COMPILE_T.value}
        results["compile_s"][f"{cell_name} {impl}"] = seconds
        print(f"{cell_name} {impl:>15}: " + "  ".join(f"T={T}: {s:.2f}" for T, s in seconds.items()))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)

