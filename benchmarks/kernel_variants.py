r"""Two variants of the fused LSTM's training step that were measured and not adopted.

    python -m benchmarks.kernel_variants --variant=chunks --chunks=4,8,12 --sizes=64x256x200
    python -m benchmarks.kernel_variants --variant=unhoisted --sizes=64x64x30,32x128x50

Each times forward+backward (loss = sum of the outputs, gradients for the params and
the inputs; D = H, float32, no lengths, forwards) of the variant against
`fused_lstm.lstm_sequence` in one process, turns alternating, after checking that both
give the same gradients, and prints the variant's time over the kernel's with the minor
page faults per call (benchmarks/RESULTS.md, after the fifth reading):

`chunks`: the steps cut into K chunks, unrolled in Python, each with its own
projection GEMMs, recurrence (`fused_lstm._forward`) and backward pass
(`fused_lstm._grads`), nothing recomputed; the weight gradients are summed over the
chunks. Independent chunks could overlap if XLA's CPU runtime ran independent ops side
by side (it does not: `python -m benchmarks.cpu_loops --probe=concurrency`).

`unhoisted`: no hoisted input projection. Forward, one `[B, D + H] x [D + H, 4H]` per
step on `[x_t, h_{t-1}]`; backward, one `[B, 4H] x [4H, D + H]` per step, so dX comes
out of the reverse loop; only the weight gradients are all-steps GEMMs
(`fused_lstm._weight_grads`).
"""

from __future__ import annotations

import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import timing
from rnn_jax.kernels import fused_lstm as F

_VARIANT = flags.DEFINE_enum("variant", "chunks", ["chunks", "unhoisted"], "What to time.")
_SIZES = flags.DEFINE_list("sizes", ["64x64x30", "64x256x200", "32x512x100"],
                           "BxHxT sizes (D = H).")
_CHUNKS = flags.DEFINE_list("chunks", ["4", "8", "12"], "--variant=chunks: values of K.")
_TURNS = flags.DEFINE_integer("turns", 7, "Alternating turns; the median is printed.")

F32 = jnp.float32


def chunked(K: int):
  """`(params, xs [T, B, D], h0, c0) -> ys [T, B, H]` over K chunks, its backward pass
  chunk by chunk in reverse."""

  def bounds(T):
    edges = np.linspace(0, T, K + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))

  def fwd(params, xs, h0, c0):
    carry, ys, saved = (h0, c0), [], []
    for a, b in bounds(xs.shape[0]):
      y, h, c, res = F._forward(params, F._project_gates(params, xs[a:b], F32, 4), *carry, None,
                                False, save=True, hoisted=True, dtype=F32)
      carry = (h, c)
      ys.append(y)
      saved.append(res)
    return jnp.concatenate(ys), (params, xs, saved)

  def bwd(residuals, d_ys):
    params, xs, saved = residuals
    B, H = d_ys.shape[1], d_ys.shape[2]
    d_carry, grads, d_xs = (jnp.zeros((B, H), F32),) * 2, None, []
    for (a, b), res in reversed(list(zip(bounds(xs.shape[0]), saved))):
      d_carry, g, d_x = F._grads(params, xs[a:b], res, None, d_ys[a:b], *d_carry, False, F32)
      grads = g if grads is None else F._tree_add(grads, g)
      d_xs.insert(0, d_x)
    return grads, jnp.concatenate(d_xs), *d_carry

  run = jax.custom_vjp(lambda params, xs, h0, c0: fwd(params, xs, h0, c0)[0])
  run.defvjp(fwd, bwd)
  return run


def unhoisted():
  """`(params, xs [T, B, D], h0, c0) -> ys [T, B, H]` with one matmul per step each way."""

  def fwd(params, xs, h0, c0):
    w = jnp.concatenate([params["w_ih"], params["w_hh"]])  # [D + H, 4H]

    def step(carry, x_t):
      h, c = carry
      i, f, g, o = F._gates(jnp.concatenate([x_t, h], -1) @ w + params["b"])
      c_new = f * c + i * g
      h_new = o * jnp.tanh(c_new)
      return (h_new, c_new), (h_new, ((i, f, g, o), c))

    _, (ys, res) = jax.lax.scan(step, (h0, c0), xs)
    return ys, (params, xs, h0, ys, res)

  def bwd(residuals, d_ys):
    params, xs, h0, ys, (acts, c_prev) = residuals
    D = xs.shape[-1]
    w_t = jnp.concatenate([params["w_ih"], params["w_hh"]]).T  # [4H, D + H]

    def step(carry, inp):
      dh_next, dc_next = carry
      dy, (i, f, g, o), c_p = inp
      t_c = jnp.tanh(f * c_p + i * g)
      dh = dh_next + dy
      dc = dc_next + dh * o * (1.0 - t_c * t_c)
      dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_p * f * (1.0 - f),
                            dc * i * (1.0 - g * g), dh * t_c * o * (1.0 - o)], -1)
      d_xh = dz @ w_t  # [B, D + H]
      return (d_xh[:, D:], dc * f), (dz, d_xh[:, :D])

    zeros = jnp.zeros_like(h0)
    (dh0, dc0), (dz, d_xs) = jax.lax.scan(step, (zeros, zeros), (d_ys, acts, c_prev),
                                          reverse=True)
    h_prev = jnp.concatenate([h0[None], ys[:-1]])
    dw_ih, dw_hh = F._weight_grads(xs, h_prev, dz, F32)
    return {"w_ih": dw_ih, "w_hh": dw_hh, "b": dz.sum((0, 1))}, d_xs, dh0, dc0

  run = jax.custom_vjp(lambda params, xs, h0, c0: fwd(params, xs, h0, c0)[0])
  run.defvjp(fwd, bwd)
  return run


def kernel(params, xs, h0, c0):
  return F.lstm_sequence(params, xs, h0, c0, None)[0]


def compare(B: int, H: int, T: int, variants: dict) -> None:
  keys = jax.random.split(jax.random.key(0), 3)
  params = {"w_ih": jax.random.normal(keys[0], (H, 4 * H)) / H ** 0.5,
            "w_hh": jax.random.normal(keys[1], (H, 4 * H)) / H ** 0.5, "b": jnp.zeros(4 * H)}
  args = (params, jax.random.normal(keys[2], (T, B, H)), jnp.zeros((B, H)), jnp.zeros((B, H)))
  step = lambda run: jax.jit(jax.grad(lambda p, x, h, c: run(p, x, h, c).sum(), argnums=(0, 1)))
  fns = {"fused": step(kernel), **{name: step(run) for name, run in variants.items()}}
  want = jax.tree_util.tree_leaves(fns["fused"](*args))
  for name, fn in fns.items():
    for a, b in zip(jax.tree_util.tree_leaves(fn(*args)), want):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()),
                                 err_msg=name)

  def call(fn):  # (seconds, minor page faults) of one call
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

  runs = timing.in_turns({name: (lambda fn=fn: call(fn)) for name, fn in fns.items()},
                         _TURNS.value)
  seconds = {name: statistics.median(s for s, _ in r) for name, r in runs.items()}
  faults = {name: statistics.median(f for _, f in r) for name, r in runs.items()}
  print(f"\nLSTM B={B} H={H} T={T} forward+backward (same gradients), median of "
        f"{_TURNS.value} alternating turns")
  for name in fns:
    print(f"{name:>12} | {1e3 * seconds[name]:9.2f} ms | {seconds[name] / seconds['fused']:6.3f}"
          f" | {faults[name]:8.0f} minor faults per call")


def main(argv):
  del argv
  if _VARIANT.value == "chunks":
    variants = {f"K={k}": chunked(int(k)) for k in _CHUNKS.value}
  else:
    variants = {"unhoisted": unhoisted()}
  for size in _SIZES.value:
    compare(*(int(v) for v in size.split("x")), variants)


if __name__ == "__main__":
  app.run(main)
