r"""LSTM / GRU sequence speed: rnn_jax's paths against Flax, PyTorch and the GEMM-only limit.

    python -m benchmarks.rnn                               # every size, LSTM and GRU
    python -m benchmarks.rnn --cells=lstm --sizes=32x512x100 --json=/tmp/rnn.json

For each size (B, H, T) with D = H, float32, loss = sum of the outputs,
gradients for the params and the inputs, it times in one process, taking
turns round-robin so every implementation sees the same machine state:

  rnn_jax/scan    `rnn_jax.unroll(..., implementation="scan")` (lax.scan, autodiff)
  rnn_jax/fused   `implementation="fused"` (hoisted projection, hand-written backward)
  rnn_jax/fused_bf16  the same with bfloat16 params and inputs (float32 accumulation,
                  gate math and carry): a different precision, not a like-for-like row
  rnn_jax/fused_dp    the fused kernel under `jax.jit` with the batch split over all
                  devices, as `rnn_jax.training.parallel` runs a training step; on the
                  CPU `--host_devices=2` makes two host devices of one machine's cores
  rnn_jax/pallas  `implementation="pallas"`: the persistent Pallas LSTM kernel (LSTM only;
                  on a GPU; `--pallas_interpret` runs it interpreted on the CPU, slowly)
  rnn_jax/onednn  `implementation="onednn"`: oneDNN's LSTM / GRU primitives through an XLA
                  FFI call (CPU only; needs the `onednn` extra; its threads are OpenMP's,
                  `OMP_NUM_THREADS`, not XLA's)
  rnn_jax/onednn_bf16  oneDNN's LSTM / GRU in bfloat16 (x, h, weights; c, bias and
                  gradients float32 inside): a different precision, like fused_bf16
  flax            `flax.linen.RNN(OptimizedLSTMCell / GRUCell)`
  torch           `torch.nn.LSTM / nn.GRU` on the CPU (oneDNN), CUDA when present
  jax_cudnn       `jax.experimental.rnn.lstm`, JAX's cuDNN LSTM (LSTM only; it has no
                  CPU lowering, so it runs on a GPU only)
  gemm_limit      the same GEMMs with no recurrence: what a perfect kernel costs

On a GPU every row's float32 matmuls are exact float32, as on the CPU, unless
`--tf32` lets them all run in TF32 (JAX's and cuDNN's faster default there).

Rows an implementation cannot run here (a GPU-only one on the CPU, an LSTM-only one
for the GRU, `fused_dp` on one device, the Pallas one above H = 64) are left out with
one line saying why. On a GPU machine `benchmarks/gpu.sh` is the whole check (the kernel
tests compiled for the GPU, then this benchmark); with torch on CUDA in the same process,
run it with `XLA_PYTHON_CLIENT_PREALLOCATE=false`, as that script does, so that JAX does
not take most of the GPU's memory up front.

and prints milliseconds, GFLOP/s, the ratio to torch and the cores used (process
CPU time over wall time while the forward+backward was timed), forward and
forward+backward. `--compile_sizes` reports compile time against T.

    python -m benchmarks.rnn --memory --sizes=32x512x10000

`--memory` runs nothing: it compiles forward+backward (the same loss and
gradients) for each size, with and without `remat`, for the fused kernels and
the scan path, and prints XLA's compile-time memory analysis
(`compiled.memory_analysis()`: arguments, outputs, temporaries and their total,
the peak the program needs), so sizes far beyond the machine's memory can be read.

    python -m benchmarks.rnn --memory_run --cells=lstm --sizes=32x512x10000

    python -m benchmarks.rnn --parts --sizes=32x512x100

`--parts` times the pieces of the fused LSTM's forward+backward, each jitted
alone on the arrays the real pass makes (the projection GEMMs, the forward
recurrence, the backward pass and its all-steps GEMMs), beside the whole: where
the time goes.

`--memory_run` measures instead of predicting: for each size it starts fresh
Python processes (`python -m benchmarks.rnn --memory_child=...`) and reads each
one's peak resident set size from the kernel (`os.wait4`'s `ru_maxrss`, KiB on
Linux: the per-child form of `getrusage(RUSAGE_CHILDREN)`):

  baseline        imports jax and rnn_jax and builds the params and `xs [B, T, H]`
                  (one example at a time: drawing xs whole would peak at about 4x xs)
  fused [remat]   the same, then compiles and runs ONE jitted forward+backward step
                  of the fused kernel (loss = sum of the outputs, gradients of the
                  params and the inputs), with and without `remat` (`--memory_remat`);
                  `--memory_implementations=fused,onednn` adds oneDNN's

and prints each peak beside XLA's compile-time total for the same program. A
step whose compile-time total exceeds the machine's available memory (less
1 GiB) is skipped, not run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import rnn_jax
from benchmarks import timing
from rnn_jax import cells, kernels, training
from rnn_jax.kernels import onednn, pallas_lstm

_CELLS = flags.DEFINE_list("cells", ["lstm", "gru"], "Cells to time.")
_SIZES = flags.DEFINE_list("sizes", ["32x512x100", "64x256x200", "8x1024x50", "64x64x30",
                                     "32x512x2000"], "BxHxT sizes (D = H).")
_TURNS = flags.DEFINE_integer("turns", 3, "Round-robin turns.")
_MIN_TIME = flags.DEFINE_float("min_time", 0.3, "Seconds of repeats per measurement.")
_IMPLS = flags.DEFINE_list("implementations", ["rnn_jax/scan", "rnn_jax/fused", "rnn_jax/fused_bf16",
                                               "rnn_jax/fused_dp", "rnn_jax/pallas", "rnn_jax/onednn",
                                               "rnn_jax/onednn_bf16", "flax",
                                               "torch", "jax_cudnn", "gemm_limit"],
                            "What to time (rnn_jax/fused_dp only with several devices; "
                            "rnn_jax/pallas and jax_cudnn only on a GPU).")
_TF32 = flags.DEFINE_bool("tf32", False, "On a GPU, let float32 matmuls run in TF32 (JAX's "
                          "and cuDNN's fast default) rather than exact float32, in every "
                          "row: JAX, cuDNN through jax.experimental.rnn, and torch.")
_PALLAS_INTERPRET = flags.DEFINE_bool("pallas_interpret", False, "Off the GPU, time "
                                      "rnn_jax/pallas in Pallas's interpret mode (slow: "
                                      "for checking the row, not for its figures).")
_HOST_DEVICES = flags.DEFINE_integer("host_devices", 1, "On the CPU, split the machine into "
                                     "this many host devices (XLA's "
                                     "--xla_force_host_platform_device_count) for "
                                     "rnn_jax/fused_dp; other rows run on the first.")
_COMPILE_T = flags.DEFINE_list("compile_sizes", ["100", "1000", "10000"],
                               "T values for the compile-time report (B=32, H=512).")
_RAGGED = flags.DEFINE_bool("ragged", False, "Give the rnn_jax rows per-row lengths (drawn "
                            "uniformly from [T/2, T], seed 0) through `seq_lengths`: what "
                            "padding costs each kernel (the other rows run full length).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_MEMORY = flags.DEFINE_bool("memory", False, "Compile only and report the compile-time memory "
                            "analysis of forward+backward with and without remat, then exit.")
_MEMORY_DTYPE = flags.DEFINE_enum("memory_dtype", "float32", ["float32", "bfloat16"],
                                  "Params and inputs dtype for --memory and --memory_run.")
_MEMORY_RUN = flags.DEFINE_bool("memory_run", False, "Run one jitted forward+backward step of "
                                "the fused kernel per cell, size and --memory_remat setting, "
                                "each in a fresh process, report its peak resident memory "
                                "beside a baseline process that only builds the inputs, then "
                                "exit.")
_MEMORY_REMAT = flags.DEFINE_list("memory_remat", ["true", "false"],
                                  "remat settings for --memory_run, in order.")
_MEMORY_IMPLS = flags.DEFINE_list("memory_implementations", ["fused"], "unroll "
                                   "implementations for --memory_run (fused, onednn, scan).")
_MEMORY_TIMEOUT = flags.DEFINE_float("memory_timeout", 900.0,
                                     "Seconds allowed to each --memory_run process.")
_PARTS = flags.DEFINE_bool("parts", False, "Time the parts of the fused LSTM's forward+backward "
                           "separately (projection, forward recurrence, reverse recurrence, "
                           "the backward GEMMs) against the whole, then exit.")
_MEMORY_CHILD = flags.DEFINE_string("memory_child", None, "Internal to --memory_run: a JSON "
                                    "spec this process runs, printing one JSON line.")

GATES = {"lstm": 4, "gru": 3}


def flops(cell: str, B: int, H: int, T: int, backward: bool) -> float:
  """Matmul FLOPs: forward 2*B*T*(D+H)*G*H (D = H); the backward pass doubles it."""
  f = 2.0 * B * T * (2 * H) * GATES[cell] * H
  return 3 * f if backward else f


def _repeat(call):
  """`timing.repeat` for --min_time: `(seconds per call, cores)`."""
  return timing.repeat(call, _MIN_TIME.value)


def _timer(fn, *args):
  """A runner of `_repeat` for a jitted function, after one warm-up call."""
  jax.block_until_ready(fn(*args))
  return lambda: _repeat(lambda: jax.block_until_ready(fn(*args)))


def unavailable(impl: str, cell_name: str, H: int) -> str | None:
  """Why `impl` cannot run for `cell_name` at width H here, or None when it can."""
  on_gpu = jax.default_backend() == "gpu"
  if impl in ("rnn_jax/pallas", "jax_cudnn") and cell_name != "lstm":
    return "an LSTM kernel only"
  if impl == "rnn_jax/pallas" and not on_gpu and not _PALLAS_INTERPRET.value:
    return "needs a GPU (--pallas_interpret runs it interpreted, slowly)"
  if impl == "rnn_jax/pallas" and on_gpu and not pallas_lstm.fits_on_chip(H):
    return f"W_hh [{H}, {4 * H}] float32 does not fit one block's shared memory"
  if impl == "jax_cudnn" and not on_gpu:
    return "needs a GPU: jax.experimental.rnn.lstm has no CPU lowering"
  if impl == "rnn_jax/fused_dp" and len(jax.devices()) == 1:
    return "1 device; on the CPU pass --host_devices=2"
  if impl in ("rnn_jax/onednn", "rnn_jax/onednn_bf16"):  # never the fused fallback, mislabelled
    if jax.default_backend() != "cpu":
      return "a CPU kernel only"
    ok, reason = onednn.available()
    if not ok:
      return f"the oneDNN extension is unavailable: {reason}"
  return None


def jax_fns(cell_name, impl, B, H, T):
  cell = cells.lstm(H) if cell_name == "lstm" else cells.gru(H, reset_after=True)
  params = cell.init(jax.random.key(0), H)
  xs = jax.random.normal(jax.random.key(1), (B, T, H))
  if impl.startswith("rnn_jax/fused") and not kernels.fused_supports(cell):
    return None
  implementation = {"rnn_jax/scan": "scan", "rnn_jax/pallas": "pallas",
                    "rnn_jax/onednn": "onednn", "rnn_jax/onednn_bf16": "onednn"}.get(impl, "fused")
  if impl in ("rnn_jax/fused_bf16", "rnn_jax/onednn_bf16"):
    params, xs = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), (params, xs))
  if impl == "rnn_jax/fused_dp":  # the batch split over every device, params replicated
    mesh = training.data_mesh()
    if mesh.size == 1 or B % mesh.size:
      return None
    params = jax.device_put(params, training.parallel.replicated(mesh))
    xs = jax.device_put(xs, training.parallel.batch_sharded(mesh))
  lengths = None
  if _RAGGED.value:  # [B] in [T/2, T]
    lengths = jnp.asarray(np.random.default_rng(0).integers(T // 2, T + 1, B), jnp.int32)
  run = lambda p, x: rnn_jax.unroll(cell, p, x, seq_lengths=lengths,
                                    implementation=implementation)[0]
  forward = jax.jit(run)
  loss = lambda p, x: jnp.sum(run(p, x).astype(jnp.float32))
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


def jax_cudnn_fns(B, H, T):
  """`jax.experimental.rnn.lstm` (cuDNN), one layer, D = H, every sequence full length;
  gradients for the flat weights and the inputs."""
  from jax.experimental import rnn as jax_rnn
  weights = jax_rnn.init_lstm_weight(jax.random.key(0), H, H, 1, False)
  xs = jax.random.normal(jax.random.key(1), (B, T, H))
  h0 = c0 = jnp.zeros((1, B, H))
  lengths = jnp.full((B,), T, jnp.int32)
  run = lambda w, x: jax_rnn.lstm(x, h0, c0, w, lengths, H, H, 1, 0.0, False)[0]
  forward = jax.jit(run)
  both = jax.jit(jax.grad(lambda w, x: jnp.sum(run(w, x)), argnums=(0, 1)))
  return _timer(forward, weights, xs), _timer(both, weights, xs)


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


def exact_float32_on_gpu() -> bool:
  """On a GPU without `--tf32`: every row's float32 matmuls exact, as on the CPU (JAX's
  default matmul precision set to highest, which also reaches the Pallas kernel's dots
  and jax.experimental.rnn's cuDNN call; torch's TF32 switches off)."""
  if jax.default_backend() != "gpu" or _TF32.value:
    return False
  jax.config.update("jax_default_matmul_precision", "highest")
  return True


def torch_fns(cell_name, B, H, T):
  import torch
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda":  # like-for-like with the JAX rows (exact_float32_on_gpu)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = _TF32.value
  module = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(H, H, batch_first=True).to(device)
  xs = torch.randn(B, T, H, device=device, requires_grad=True)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def timed(fn):
    fn()
    sync()
    return lambda: _repeat(lambda: (fn(), sync()))

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


_CHILD_TAG = "memory_child: "
_GiB = 2**30


def _memory_inputs(cell_name: str, B: int, H: int, T: int, dtype):
  """The cell, params and `xs [B, T, H]` of a --memory_run process. xs is drawn one example
  at a time into a preallocated buffer: `jax.random.normal` of the whole array holds its
  random bits beside it (about 4x the array at its peak)."""
  cell = cells.lstm(H) if cell_name == "lstm" else cells.gru(H, reset_after=True)
  params = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.init(jax.random.key(0), H))

  @jax.jit
  def draw(key):
    def example(b, xs):  # xs: [B, T, H]
      return xs.at[b].set(jax.random.normal(jax.random.fold_in(key, b), (T, H), dtype))
    return jax.lax.fori_loop(0, B, example, jnp.zeros((B, T, H), dtype))

  return cell, params, jax.block_until_ready(draw(jax.random.key(1)))


def _mem_available() -> int | None:
  """MemAvailable from /proc/meminfo in bytes, or None off Linux."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def memory_child(spec: dict) -> None:
  """`--memory_child`: one --memory_run process. Builds the inputs; with `spec["step"]`
  compiles and runs one forward+backward step; prints `_CHILD_TAG` and a JSON row."""
  dtype = jnp.dtype(spec["dtype"])
  cell, params, xs = _memory_inputs(spec["cell"], spec["B"], spec["H"], spec["T"], dtype)
  row = {"status": "ok"}
  if spec["step"]:
    loss = lambda p, x: jnp.sum(rnn_jax.unroll(
        cell, p, x, remat=spec["remat"], implementation=spec.get("implementation", "fused"))[0])
    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
    row["compile_s"] = time.perf_counter() - start
    stats = compiled.memory_analysis()
    if stats is not None:
      row["xla_total_bytes"] = int(stats.argument_size_in_bytes + stats.output_size_in_bytes
                                   + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    available = _mem_available()
    if available is not None and row.get("xla_total_bytes", 0) > available - _GiB:
      row["status"] = (f"skipped: needs {row['xla_total_bytes'] / _GiB:.1f} GiB, "
                       f"{available / _GiB:.1f} GiB available")
    else:
      start = time.perf_counter()
      d_params, d_xs = jax.block_until_ready(compiled(params, xs))
      row["step_s"] = time.perf_counter() - start
      squares = jax.jit(lambda grads: sum(  # jitted: fused reductions, no full-size temporary
          jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree_util.tree_leaves(grads)))
      row["gradients_finite"] = bool(jnp.isfinite(squares((d_params, d_xs))))
  row["self_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(_CHILD_TAG + json.dumps(row), flush=True)


def _run_child(spec: dict, timeout: float) -> dict:
  """Runs `memory_child(spec)` in a fresh process; its row plus `peak_rss_bytes`, the peak
  resident set size the kernel recorded for that process (`os.wait4`, ru_maxrss in KiB)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, "-m", "benchmarks.rnn", f"--memory_child={json.dumps(spec)}"]
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=err, text=True)
    deadline, timed_out = time.monotonic() + timeout, False
    while True:  # wait4, not Popen.wait: only it returns the child's own rusage
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      if time.monotonic() > deadline:
        proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = True
        break
      time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    out.seek(0)
    err.seek(0)
    lines = [l[len(_CHILD_TAG):] for l in out.read().splitlines() if l.startswith(_CHILD_TAG)]
    if lines:
      row = json.loads(lines[-1])
    else:
      tail = err.read().strip().splitlines()[-1:] or [""]
      row = {"status": ("timed out" if timed_out else f"failed (exit {proc.returncode})")
                       + f": {tail[0][:200]}"}
  row["peak_rss_bytes"] = usage.ru_maxrss * 1024
  return row


def memory_run_report(results) -> None:
  """`--memory_run`: the measured peak resident memory for every cell and size."""
  dtype = jnp.dtype(_MEMORY_DTYPE.value)
  remats = [{"true": True, "false": False}[v.lower()] for v in _MEMORY_REMAT.value]
  results["memory_run"] = []
  for cell_name in _CELLS.value:
    for size in _SIZES.value:
      B, H, T = (int(v) for v in size.split("x"))
      spec = {"cell": cell_name, "B": B, "H": H, "T": T, "dtype": dtype.name}
      print(f"\n{cell_name} B={B} H={H} T={T} {dtype.name}: peak resident memory of one "
            "jitted forward+backward step, a fresh process each (GiB; ru_maxrss)")
      print(f"{'process':>20} | {'peak RSS':>8} {'over base':>10} {'XLA total':>9} | "
            f"{'compile s':>9} {'step s':>7} | status")
      baseline = _run_child({**spec, "step": False, "remat": False}, _MEMORY_TIMEOUT.value)
      rows = [("baseline", None, baseline)]
      for impl in _MEMORY_IMPLS.value:
        for remat in remats:
          rows.append((f"rnn_jax/{impl}" + (" remat" if remat else ""), remat,
                       _run_child({**spec, "step": True, "remat": remat, "implementation": impl},
                                  _MEMORY_TIMEOUT.value)))
      for name, remat, row in rows:
        row = {**spec, "process": name, "remat": remat, **row,
               "baseline_rss_bytes": baseline["peak_rss_bytes"]}
        results["memory_run"].append(row)
        gib = lambda key: (f"{row[key] / _GiB:.3f}" if key in row else "-")
        above = (f"{(row['peak_rss_bytes'] - row['baseline_rss_bytes']) / _GiB:.3f}"
                 if remat is not None else "-")
        secs = lambda key: f"{row[key]:.1f}" if key in row else "-"
        print(f"{name:>20} | {gib('peak_rss_bytes'):>8} {above:>10} "
              f"{gib('xla_total_bytes'):>9} | {secs('compile_s'):>9} {secs('step_s'):>7} | "
              f"{row['status']}")


def parts_report(results) -> None:
  """`--parts`: where the fused LSTM's forward+backward time goes, each part jitted alone
  on the intermediate arrays of the real pass (float32, no lengths), in turns."""
  from rnn_jax.kernels import fused_lstm as fl
  f32 = jnp.float32
  results["parts"] = []
  for size in _SIZES.value:
    B, H, T = (int(v) for v in size.split("x"))
    cell = cells.lstm(H)
    params = cell.init(jax.random.key(0), H)
    xs = jax.random.normal(jax.random.key(1), (T, B, H))  # time-major, as inside the kernel
    h0 = jnp.zeros((B, H))
    project = jax.jit(lambda p, x: fl._project_gates(p, x, f32, 4))
    zx = project(params, xs)
    forward = jax.jit(lambda p, zx: fl._forward(p, zx, h0, h0, None, False, True, True, f32))
    ys, _, _, res = forward(params, zx)
    h_prev = res[1]  # [T, B, H]

    dz = jax.random.normal(jax.random.key(2), (T, B, 4 * H))
    pieces = {
        "projection GEMMs": (project, (params, xs)),
        "forward recurrence": (forward, (params, zx)),
        "backward (recurrence + GEMMs)": (
            jax.jit(lambda p, x, res, d: fl._grads(p, x, res, None, d, h0, h0, False, f32)),
            (params, xs, res, ys)),
        "backward GEMMs (dW, db, dX)": (
            jax.jit(lambda p, x, hp, dz: (fl._weight_grads(x, hp, dz, f32),
                                          dz.sum((0, 1)),
                                          fl._contract("tbg,dg->tbd", dz, p["w_ih"], f32))),
            (params, xs, h_prev, dz)),
        "whole fused forward+backward": (
            jax.jit(jax.grad(lambda p, x: jnp.sum(fl.lstm_sequence(p, x, h0, h0, None)[0]),
                             argnums=(0, 1))), (params, xs)),
    }
    runners = {name: _timer(fn, *args) for name, (fn, args) in pieces.items()}
    times = timing.in_turns(runners, _TURNS.value)  # (seconds, cores) per turn
    ms = {name: 1e3 * statistics.median(s for s, _ in t) for name, t in times.items()}
    whole = ms["whole fused forward+backward"]
    print(f"\nlstm B={B} H={H} T={T}: parts of the fused forward+backward (ms, share of the whole)")
    for name, t in ms.items():
      print(f"{name:>32} | {t:9.2f} {100 * t / whole:6.1f}%")
    derived = {
        "  of which the reverse recurrence": (ms["backward (recurrence + GEMMs)"]
                                              - ms["backward GEMMs (dW, db, dX)"]),
        # Timed alone, each part also allocates and returns its outputs, so the parts
        # can add up to more than the whole.
        "sum of the parts": (ms["projection GEMMs"] + ms["forward recurrence"]
                             + ms["backward (recurrence + GEMMs)"]),
    }
    for name, t in derived.items():
      print(f"{name:>32} | {t:9.2f} {100 * t / whole:6.1f}%")
    results["parts"].append({"B": B, "H": H, "T": T, "ms": ms, "derived_ms": derived})


def main(argv):
  del argv
  if _MEMORY_CHILD.value:
    memory_child(json.loads(_MEMORY_CHILD.value))
    return
  if _HOST_DEVICES.value > 1:  # before any jax work
    training.parallel.use_host_devices(_HOST_DEVICES.value)
  exact = exact_float32_on_gpu()  # sets JAX's matmul precision: before anything is traced
  results = {"machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores",
             "jax": jax.__version__, "backend": jax.default_backend(),
             "devices": len(jax.devices()), "rows": [], "gpu_exact_float32": exact,
             "ragged": _RAGGED.value}
  if _PARTS.value:
    parts_report(results)
    _write_json(results)
    return
  if _MEMORY.value or _MEMORY_RUN.value:
    if _MEMORY.value:
      memory_report(results)
    if _MEMORY_RUN.value:
      memory_run_report(results)
    _write_json(results)
    return
  for cell_name in _CELLS.value:
    for size in _SIZES.value:
      B, H, T = (int(v) for v in size.split("x"))
      runners = {}
      for impl in _IMPLS.value:
        reason = unavailable(impl, cell_name, H)
        if reason is not None:
          print(f"({impl} skipped for {cell_name} {size}: {reason})")
          continue
        make = {"flax": lambda: flax_fns(cell_name, B, H, T),
                "torch": lambda: torch_fns(cell_name, B, H, T),
                "jax_cudnn": lambda: jax_cudnn_fns(B, H, T),
                "gemm_limit": lambda: gemm_limit_fns(cell_name, B, H, T)}.get(impl)
        if impl.startswith("rnn_jax/"):
          make = lambda: jax_fns(cell_name, impl, B, H, T)
        if make is None:
          raise app.UsageError(f"--implementations: unknown {impl!r}")
        try:  # builds, compiles and runs each function once
          fns = make()
        except Exception as e:  # a row that fails here (a kernel too big for this chip, say)
          print(f"({impl} failed for {cell_name} {size}: {type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})")
          results.setdefault("failed", []).append(
              {"cell": cell_name, "size": size, "implementation": impl, "error": repr(e)[:2000]})
          continue
        if fns is not None:
          runners[impl] = fns
      turns = timing.in_turns({impl: (lambda fwd=fwd, both=both: (fwd(), both()))
                               for impl, (fwd, both) in runners.items()}, _TURNS.value)
      times = {impl: tuple(zip(*runs)) for impl, runs in turns.items()}  # (fwd runs, both runs)
      median = lambda runs, i: statistics.median(run[i] for run in runs)
      base = times.get("torch")
      print(f"\n{cell_name} B={B} H={H} T={T}")
      print(f"{'implementation':>18} | {'fwd ms':>8} {'GFLOP/s':>8} {'vs torch':>8} | "
            f"{'fwd+bwd ms':>10} {'GFLOP/s':>8} {'vs torch':>8} {'cores':>5}")
      for impl, (fwd, both) in times.items():
        f, b = median(fwd, 0), median(both, 0)
        row = {"cell": cell_name, "B": B, "H": H, "T": T, "implementation": impl,
               "fwd_ms": 1e3 * f, "fwd_bwd_ms": 1e3 * b,
               "fwd_gflops": flops(cell_name, B, H, T, False) / f / 1e9,
               "fwd_bwd_gflops": flops(cell_name, B, H, T, True) / b / 1e9,
               "fwd_cores": median(fwd, 1), "fwd_bwd_cores": median(both, 1)}
        if base:
          row["fwd_vs_torch"] = f / median(base[0], 0)
          row["fwd_bwd_vs_torch"] = b / median(base[1], 0)
        results["rows"].append(row)
        print(f"{impl:>18} | {row['fwd_ms']:8.2f} {row['fwd_gflops']:8.1f} "
              f"{row.get('fwd_vs_torch', float('nan')):8.2f} | {row['fwd_bwd_ms']:10.2f} "
              f"{row['fwd_bwd_gflops']:8.1f} {row.get('fwd_bwd_vs_torch', float('nan')):8.2f} "
              f"{row['fwd_bwd_cores']:5.2f}")
  if _COMPILE_T.value:
    print("\ncompile time (s) of forward+backward, B=32 H=512, against T")
    results["compile_s"] = {}
    for cell_name in _CELLS.value:
      for impl in ("rnn_jax/scan", "rnn_jax/fused", "rnn_jax/onednn"):
        cell = cells.lstm(8) if cell_name == "lstm" else cells.gru(8, reset_after=True)
        if impl == "rnn_jax/fused" and not kernels.fused_supports(cell):
          continue
        if impl == "rnn_jax/onednn" and (impl not in _IMPLS.value
                                         or not kernels.onednn.available()[0]):
          continue
        seconds = {T: measure_compile(cell_name, impl, int(T)) for T in _COMPILE_T.value}
        results["compile_s"][f"{cell_name} {impl}"] = seconds
        print(f"{cell_name} {impl:>15}: " + "  ".join(f"T={T}: {s:.2f}" for T, s in seconds.items()))
  _write_json(results)


def _write_json(results) -> None:
  """Writes `results` to --json, when given."""
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)

