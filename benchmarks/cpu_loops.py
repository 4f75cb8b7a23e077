r"""Probes of XLA's CPU runtime behind the fused kernels' layout (benchmarks/RESULTS.md).

    python -m benchmarks.cpu_loops --probe=slices    # gate math per step: slices vs arrays
    python -m benchmarks.cpu_loops --probe=faults    # a big GEMM's output: page faults
    python -m benchmarks.cpu_loops --probe=step      # fused LSTM and PyTorch, one step each
    python -m benchmarks.cpu_loops --probe=concurrency --sizes=64x64x30,64x64x300,64x256x200

`slices`: an LSTM's gate math (no matmul) in a `lax.scan`, microseconds per
step, with the step's pre-activations read three ways: column slices of one
`[T, B, 4H]` array (a dynamic slice, then static slices: what `lax.scan` over
it and `jnp.split` make), row slices of a `[T, 4H, B]` array, one
`lax.dynamic_slice` per gate of the `[T, B, 4H]` array, and four `[T, B, H]`
arrays (what the kernels do).

`faults`: the input projection `[T*B, H] x [H, 4H]` as a jitted function that
returns it, against one that returns its sum (the same GEMM, nothing written
out), with the minor page faults per call (`getrusage`).

`step`: a forward+backward of the fused LSTM and of `torch.nn.LSTM`, medians
of `--turns` alternating steps. Run it under different glibc settings to
compare them, one fresh process each:

    for t in "" glibc.malloc.hugetlb=1; do GLIBC_TUNABLES=$t python -m benchmarks.cpu_loops --probe=step; done

`concurrency`: does XLA's CPU runtime run independent work side by side? A
recurrence `h = tanh(h W)` (`[B, H] x [H, H]` per step) in a `lax.scan`, timed
alone, as two independent scans in one jitted function (the two directions of
a bi-directional layer), as one scan stepping both chains, and beside an
independent all-steps GEMM `[T*B, H] x [H, 4H]` (its tanh summed, so nothing
large is written out), with the GEMM alone; milliseconds per call and cores (process CPU
time over wall time).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import rnn_jax
from benchmarks import timing
from rnn_jax import cells

_PROBE = flags.DEFINE_enum("probe", "slices", ["slices", "faults", "step", "concurrency"],
                           "What to measure.")
_SIZES = flags.DEFINE_list("sizes", ["64x256x200", "32x512x100"], "BxHxT sizes (D = H).")
_TURNS = flags.DEFINE_integer("turns", 7, "Alternating turns; the median is printed.")


def _median_seconds(calls: dict) -> dict:
  """`{name: (fn, args)}`: each `fn(*args)` timed in turns after one warm-up call;
  returns the median seconds per name."""
  def seconds(fn, args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start

  for fn, args in calls.values():
    jax.block_until_ready(fn(*args))
  times = timing.in_turns({name: (lambda c=c: seconds(*c)) for name, c in calls.items()},
                          _TURNS.value)
  return {name: statistics.median(t) for name, t in times.items()}


def _gates(i, f, g, o, c):
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


def slices(B, H, T):
  zx = jax.random.normal(jax.random.key(0), (T, B, 4 * H))
  zero = jnp.zeros((B, H))

  def loop(read, zero):
    def run(zs):
      def body(carry, z_t):
        h, c = carry
        i, f, g, o = read(z_t)
        return _gates(i + h, f, g, o, c), None
      return jax.lax.scan(body, (zero, zero), zs)[0]
    return jax.jit(run)

  def by_step(zx):  # one lax.dynamic_slice per gate, at step t, of the whole [T, B, 4H]
    def run(zx):
      def body(carry, t):
        h, c = carry
        i, f, g, o = (jax.lax.dynamic_slice(zx, (t, 0, k * H), (1, B, H))[0] for k in range(4))
        return _gates(i + h, f, g, o, c), None
      return jax.lax.scan(body, (zero, zero), jnp.arange(T))[0]
    return jax.jit(run)

  seconds = _median_seconds({
      "column slices of one [T, B, 4H]": (loop(lambda z: jnp.split(z, 4, -1), zero), (zx,)),
      "row slices of one [T, 4H, B]": (loop(lambda z: jnp.split(z, 4, 0), zero.T),
                                       (jnp.swapaxes(zx, 1, 2),)),
      "a dynamic_slice per gate of [T, B, 4H]": (by_step(zx), (zx,)),
      "four [T, B, H] arrays": (loop(lambda z: z, zero), (tuple(jnp.split(zx, 4, -1)),)),
  })
  print(f"\nLSTM gate math per step, B={B} H={H} T={T} (us per step, median)")
  for name, t in seconds.items():
    print(f"{name:>40} | {1e6 * t / T:8.1f}")


def faults(B, H, T):
  xs = jax.random.normal(jax.random.key(0), (T, B, H))
  w = jax.random.normal(jax.random.key(1), (H, 4 * H))
  project = lambda x, w: jnp.einsum("tbd,dg->tbg", x, w)
  fns = {"written out": jax.jit(project), "summed": jax.jit(lambda x, w: project(x, w).sum())}
  print(f"\nprojection [{T * B}, {H}] x [{H}, {4 * H}], {T * B * 4 * H * 4 / 2**20:.0f} MiB out "
        f"(GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r})")

  def call(fn):  # (seconds, minor page faults) of one call
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    jax.block_until_ready(fn(xs, w))
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

  for fn in fns.values():
    jax.block_until_ready(fn(xs, w))
  runs = timing.in_turns({name: (lambda fn=fn: call(fn)) for name, fn in fns.items()},
                         _TURNS.value)
  for name, turns in runs.items():
    times, faults = zip(*turns)
    print(f"{name:>12} | {1e3 * statistics.median(times):7.1f} ms | "
          f"{statistics.median(faults):8.0f} minor faults per call")


def step(B, H, T):
  import torch
  cell = cells.lstm(H)
  params = cell.init(jax.random.key(0), H)
  xs = jax.random.normal(jax.random.key(1), (B, T, H))
  loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, implementation="fused")[0])
  fused = jax.jit(jax.grad(loss, argnums=(0, 1)))
  module = torch.nn.LSTM(H, H, batch_first=True)
  txs = torch.randn(B, T, H, requires_grad=True)

  def torch_step(*_):
    module.zero_grad()
    txs.grad = None
    module(txs)[0].sum().backward()

  ms = {k: 1e3 * v for k, v in _median_seconds({"fused": (fused, (params, xs)),
                                                  "torch": (torch_step, ())}).items()}
  print(f"LSTM B={B} H={H} T={T} forward+backward: fused {ms['fused']:.1f} ms, "
        f"torch {ms['torch']:.1f} ms (GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r})")


def concurrency(B, H, T):
  keys = jax.random.split(jax.random.key(0), 4)
  args = (jax.random.normal(keys[0], (B, H)),                    # h0
          jax.random.normal(keys[1], (H, H)) / H ** 0.5,          # w
          jax.random.normal(keys[2], (T, B, H)),                  # xs
          jax.random.normal(keys[3], (H, 4 * H)) / H ** 0.5)      # w_ih

  def chain(h0, w, reverse=False):  # [B, H] -> the sum of its T states
    step = lambda h, _: (jnp.tanh(h @ w), jnp.sum(h))
    return jax.lax.scan(step, h0, None, length=T, reverse=reverse)[1].sum()

  def both_in_one_loop(h0, w):
    step = lambda hs, _: ((jnp.tanh(hs[0] @ w), jnp.tanh(hs[1] @ w)), hs[0].sum() + hs[1].sum())
    return jax.lax.scan(step, (h0, h0 + 1.0), None, length=T)[1].sum()

  # tanh: a plain sum of the product would let XLA sum xs and w_ih first, no GEMM at all.
  gemm = lambda xs, w_ih: jnp.tanh(jnp.einsum("tbd,dg->tbg", xs, w_ih)).sum()
  fns = {"one loop": lambda h0, w, xs, w_ih: chain(h0, w),
         "two loops, independent": lambda h0, w, xs, w_ih: (chain(h0, w)
                                                            + chain(h0 + 1.0, w, reverse=True)),
         "one loop stepping two chains": lambda h0, w, xs, w_ih: both_in_one_loop(h0, w),
         "one loop beside a GEMM": lambda h0, w, xs, w_ih: chain(h0, w) + gemm(xs, w_ih),
         "the GEMM alone": lambda h0, w, xs, w_ih: gemm(xs, w_ih)}
  calls = {name: jax.jit(fn) for name, fn in fns.items()}  # arrays as arguments: no folding
  for call in calls.values():
    jax.block_until_ready(call(*args))
  runs = timing.in_turns(
      {name: (lambda c=call: timing.repeat(lambda: jax.block_until_ready(c(*args)), 0.2))
       for name, call in calls.items()}, _TURNS.value)
  print(f"\nB={B} H={H} T={T}: ms per call (cores)")
  for name, turns in runs.items():
    seconds, cores = zip(*turns)
    print(f"{name:>30} | {1e3 * statistics.median(seconds):8.2f} ms | "
          f"{statistics.median(cores):.2f}")


def main(argv):
  del argv
  probe = {"slices": slices, "faults": faults, "step": step,
           "concurrency": concurrency}[_PROBE.value]
  for size in _SIZES.value:
    probe(*(int(v) for v in size.split("x")))


if __name__ == "__main__":
  app.run(main)
