"""A persistent LSTM sequence kernel in Pallas, forward and backward.

Computes what `fused_lstm.lstm_sequence` computes (same arguments, results,
padding rule and gate order `i, f, g, o`; values and gradients), with the
recurrence of each direction of the pass in ONE kernel launch:

Forward:
  * the input projection of all steps is one GEMM in XLA before the kernel:
    `Zx = X W_ih + b`, `[T*B, D] x [D, 4H]`;
  * one `pl.pallas_call`, its grid over blocks of `block_b` batch rows, runs
    the whole recurrence: each program loads W_hh `[H, 4H]` once (as four
    `[H, H]` gate tiles) and keeps it on chip for all T steps while a
    `lax.fori_loop` over time does the `[block_b, H] x [H, H]` matmuls and the
    gate math (a persistent RNN, Diamos et al. 2016, with the weights held per
    batch block rather than split across processors). It writes `ys` and,
    when differentiated, the cell state `c_t` of every step.

Backward (`jax.custom_vjp`):
  * a second kernel runs the reverse recurrence in one launch, W_hh again
    resident: per step it recomputes the gates from `Zx_t + h_{t-1} W_hh`
    (`h_{t-1}` and `c_{t-1}` are the saved `ys` and `cs` shifted by one step),
    and writes `dZ_t` `[B, 4H]` (the gate pre-activation gradients), carrying
    `dh, dc` to `dh0, dc0`;
  * the weight and input gradients are then GEMMs in XLA over all steps, as
    in `fused_lstm`: `dW_hh = H_prev^T dZ`, `dW_ih = X^T dZ`, `db = sum dZ`,
    `dX = dZ W_ih^T`.
  Saved for the backward pass: `Zx [T, B, 4H]` (float32), `ys`, and
  `cs [T, B, H]` (float32): 6H numbers per step and row, as many as `fused_lstm`
  keeps (activations i, f, g, o, `c_{t-1}` and ys); the price is one more
  `[block_b, H] x [H, 4H]` matmul per step in the backward kernel.

Precision: the matmul operands are in W_hh's dtype (float32 or bfloat16), with
float32 accumulation (`preferred_element_type`); the gate math, the cell
state and the gradient `dZ` are float32. With bfloat16 params it therefore
differs from a bfloat16 `lax.scan` (which rounds every op) by rounding; the
tests hold it to the float32 kernel on the same rounded inputs.

Where it runs: `interpret=None` means interpret mode (the kernel evaluated as
ordinary JAX ops) unless the default backend is a GPU; that is how the tests
run it on the CPU. Compiled, Pallas lowers it through Triton, which brings
limits:

  * compiled and run on an H200 (jax 0.11.2, 2026-12-04): tests/test_pallas_kernels.py
    passes there compiled (H 16 and 32), and at B = 256, H = 64, T = 100 it halves
    the fused kernel's forward (0.73 against 1.52 ms) and edges out its
    forward+backward (2.55 against 2.91 ms), still 2.0x and 1.7x cuDNN's through
    torch (benchmarks/RESULTS.md, "On an H200"); H = 64 is the widest float32 size
    that fits, and spilling at that size was not examined;
  * every array a kernel loads or stores must have a power-of-2 size, and
    Triton's `dot` wants every matmul dimension >= 16: H and `block_b` must be
    powers of 2 and >= 16 (D and T are free: the projection is in XLA and the
    time index is a scalar); `check_gpu_sizes` enforces this when compiling;
  * W_hh stays live in registers / shared memory for the whole loop, so it
    must fit in one SM's shared memory (227 KiB per block on an H100, 99 KiB
    on consumer parts): 4 H^2 elements, i.e. H=64: 64 KiB float32 / 32 KiB
    bfloat16; H=128: 256 KiB float32 (does not fit) / 128 KiB bfloat16;
    H=256: 1 MiB / 512 KiB (does not fit). So H <= 64 in float32 and
    H <= 128 in bfloat16 (H100 / A100 class) at best, and even within these
    sizes Triton may spill to local memory (not measured). Larger H needs W_hh split over several SMs with a grid-wide
    barrier per step (the full Diamos et al. scheme), not implemented here:
    use `fused_lstm` there. The kernel does not enforce this limit (Triton fails
    to compile, or spills, when W_hh does not fit); `fits_on_chip(H, dtype)`
    says whether it holds, and `benchmarks.rnn` leaves larger H out.

`rnn_jax.unroll(..., implementation="pallas")` runs a plain LSTM cell through
this kernel; `"auto"` never picks it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from rnn_jax.kernels import fused_lstm
from rnn_jax.varying import cotangent_like

Array = jax.Array

DEFAULT_BLOCK_B = 16  # the smallest batch block a Triton matmul accepts


def _gates(z_i, z_f, z_g, z_o):
  """Pre-activations, each `[b, H]` float32 -> activations i, f, g, o."""
  return jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)


def _load_gate_tiles(w_ref, H: int):
  """W_hh `[H, 4H]` -> four `[H, H]` tiles (i, f, g, o), loaded once per program."""
  return [w_ref[:, pl.ds(k * H, H)] for k in range(4)]


def _preactivations(zx_ref, t, h_prev, w):
  """`Zx_t + h_{t-1} W_hh` per gate: four `[b, H]` float32 arrays."""
  H = w[0].shape[0]
  h_prev = h_prev.astype(w[0].dtype)
  return [zx_ref[t, :, pl.ds(k * H, H)].astype(jnp.float32)
          + jnp.dot(h_prev, w[k], preferred_element_type=jnp.float32) for k in range(4)]


def _forward_kernel(len_ref, zx_ref, w_ref, h0_ref, c0_ref, *out_refs,
                    reverse: bool, save: bool):
  """One batch block: the whole forward recurrence over T.

  Refs: len `[b]`, zx `[T, b, 4H]`, w `[H, 4H]`, h0 / c0 `[b, H]` in; ys
  `[T, b, H]`, (cs `[T, b, H]` when `save`), h_n / c_n `[b, H]` out.
  """
  if save:
    ys_ref, cs_ref, hn_ref, cn_ref = out_refs
  else:
    (ys_ref, hn_ref, cn_ref), cs_ref = out_refs, None
  T = zx_ref.shape[0]
  H = w_ref.shape[0]
  w = _load_gate_tiles(w_ref, H)
  lengths = len_ref[...]  # [b]

  def step(s, carry):
    h, c = carry  # [b, H] float32
    t = T - 1 - s if reverse else s
    valid = (t < lengths)[:, None]  # [b, 1]
    i, f, g, o = _gates(*_preactivations(zx_ref, t, h, w))
    c_new = f * c + i * g
    h_new = o * jnp.tanh(c_new)
    ys_ref[t] = jnp.where(valid, h_new, 0.0).astype(ys_ref.dtype)
    if save:
      cs_ref[t] = jnp.where(valid, c_new, 0.0)
    # The output is rounded to ys's dtype before it becomes the next h, so the
    # backward pass, which reads h_{t-1} back from ys, sees the same operand.
    h_new = h_new.astype(ys_ref.dtype).astype(jnp.float32)
    return jnp.where(valid, h_new, h), jnp.where(valid, c_new, c)

  h0 = h0_ref[...].astype(ys_ref.dtype).astype(jnp.float32)
  h, c = jax.lax.fori_loop(0, T, step, (h0, c0_ref[...].astype(jnp.float32)))
  hn_ref[...] = h.astype(hn_ref.dtype)
  cn_ref[...] = c.astype(cn_ref.dtype)


def _backward_kernel(len_ref, zx_ref, w_ref, hp_ref, cp_ref, dys_ref, dhn_ref, dcn_ref,
                     dz_ref, dh0_ref, dc0_ref, *, reverse: bool):
  """One batch block: the reverse recurrence, from the last step run to the first.

  Refs: len `[b]`, zx `[T, b, 4H]`, w `[H, 4H]`, h_prev / c_prev / d_ys
  `[T, b, H]`, dh_n / dc_n `[b, H]` in; dz `[T, b, 4H]`, dh0 / dc0 `[b, H]` out.
  """
  T = zx_ref.shape[0]
  H = w_ref.shape[0]
  w = _load_gate_tiles(w_ref, H)
  lengths = len_ref[...]  # [b]
  transposed = (((1,), (1,)), ((), ()))  # dz_k [b, H] x W_k^T: contract the gate axes

  def step(s, carry):
    dh_next, dc_next = carry  # [b, H] float32
    t = s if reverse else T - 1 - s
    valid = (t < lengths)[:, None]  # [b, 1]
    c_prev = cp_ref[t].astype(jnp.float32)
    i, f, g, o = _gates(*_preactivations(zx_ref, t, hp_ref[t], w))
    tanh_c = jnp.tanh(f * c_prev + i * g)
    dh = dh_next + dys_ref[t].astype(jnp.float32)
    dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
    dz = [dc * g * i * (1.0 - i),        # d z_i
          dc * c_prev * f * (1.0 - f),   # d z_f
          dc * i * (1.0 - g * g),        # d z_g
          dh * tanh_c * o * (1.0 - o)]   # d z_o
    dz = [jnp.where(valid, d, 0.0) for d in dz]  # a padded step passes its carry through
    dh_prev = jnp.zeros_like(dh)
    for k in range(4):
      dz_ref[t, :, pl.ds(k * H, H)] = dz[k].astype(dz_ref.dtype)
      dh_prev += jax.lax.dot_general(dz[k].astype(w[k].dtype), w[k], transposed,
                                     preferred_element_type=jnp.float32)
    return jnp.where(valid, dh_prev, dh_next), jnp.where(valid, dc * f, dc_next)

  dh, dc = jax.lax.fori_loop(0, T, step, (dhn_ref[...].astype(jnp.float32),
                                          dcn_ref[...].astype(jnp.float32)))
  dh0_ref[...] = dh.astype(dh0_ref.dtype)
  dc0_ref[...] = dc.astype(dc0_ref.dtype)


def _compiler_params(interpret: bool):
  if interpret:
    return None
  from jax.experimental.pallas import triton as pl_triton  # pylint: disable=g-import-not-at-top
  return pl_triton.CompilerParams(num_warps=4, num_stages=1)


def _pad_rows(x: Array, rows: int, axis: int) -> Array:
  """Zero rows appended along `axis` (the batch axis) up to `rows`."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, rows - x.shape[axis])
  return jnp.pad(x, pad)


def _run_forward(zx, w_hh, h0, c0, lengths, out_dtype, reverse, save, interpret, block_b):
  """The forward kernel over `zx [T, B, 4H]`: `(ys, cs or None, h_n, c_n)`, unpadded."""
  T, B, G = zx.shape
  H = G // 4
  Bp = pl.cdiv(B, block_b) * block_b  # padded rows have length 0: all zeros
  zx, h0, c0, lengths = (_pad_rows(zx, Bp, 1), _pad_rows(h0, Bp, 0), _pad_rows(c0, Bp, 0),
                         _pad_rows(lengths, Bp, 0))
  seq = lambda width: pl.BlockSpec((T, block_b, width), lambda b: (0, b, 0))  # [T, b, width]
  rows = pl.BlockSpec((block_b, H), lambda b: (b, 0))  # [b, H]
  out_shape = [jax.ShapeDtypeStruct((T, Bp, H), out_dtype)]
  out_specs = [seq(H)]
  if save:
    out_shape.append(jax.ShapeDtypeStruct((T, Bp, H), jnp.float32))
    out_specs.append(seq(H))
  out_shape += [jax.ShapeDtypeStruct((Bp, H), h0.dtype), jax.ShapeDtypeStruct((Bp, H), c0.dtype)]
  out_specs += [rows, rows]
  outs = pl.pallas_call(
      functools.partial(_forward_kernel, reverse=reverse, save=save),
      out_shape=out_shape,
      grid=(Bp // block_b,),
      in_specs=[pl.BlockSpec((block_b,), lambda b: (b,)),     # lengths [b]
                seq(G),                                       # zx [T, b, 4H]
                pl.BlockSpec((H, G), lambda b: (0, 0)),       # w_hh, the same for all blocks
                rows, rows],                                  # h0, c0 [b, H]
      out_specs=out_specs,
      interpret=interpret,
      compiler_params=_compiler_params(interpret),
      name="lstm_forward",
  )(lengths, zx, w_hh, h0, c0)
  if save:
    ys, cs, h_n, c_n = outs
  else:
    (ys, h_n, c_n), cs = outs, None
  return (ys[:, :B], None if cs is None else cs[:, :B], h_n[:B], c_n[:B])


def _run_backward(zx, w_hh, h_prev, c_prev, d_ys, d_hn, d_cn, lengths, reverse, interpret,
                  block_b):
  """The backward kernel: `(dz [T, B, 4H] float32, dh0 [B, H], dc0 [B, H])`, unpadded."""
  T, B, G = zx.shape
  H = G // 4
  Bp = pl.cdiv(B, block_b) * block_b
  zx, h_prev, c_prev, d_ys = (_pad_rows(a, Bp, 1) for a in (zx, h_prev, c_prev, d_ys))
  d_hn, d_cn, lengths = (_pad_rows(a, Bp, 0) for a in (d_hn, d_cn, lengths))
  seq = lambda width: pl.BlockSpec((T, block_b, width), lambda b: (0, b, 0))  # [T, b, width]
  rows = pl.BlockSpec((block_b, H), lambda b: (b, 0))  # [b, H]
  dz, dh0, dc0 = pl.pallas_call(
      functools.partial(_backward_kernel, reverse=reverse),
      out_shape=[jax.ShapeDtypeStruct((T, Bp, G), jnp.float32),
                 jax.ShapeDtypeStruct((Bp, H), jnp.float32),
                 jax.ShapeDtypeStruct((Bp, H), jnp.float32)],
      grid=(Bp // block_b,),
      in_specs=[pl.BlockSpec((block_b,), lambda b: (b,)),     # lengths [b]
                seq(G),                                       # zx [T, b, 4H]
                pl.BlockSpec((H, G), lambda b: (0, 0)),       # w_hh
                seq(H), seq(H), seq(H),                       # h_prev, c_prev, d_ys
                rows, rows],                                  # dh_n, dc_n [b, H]
      out_specs=[seq(G), rows, rows],
      interpret=interpret,
      compiler_params=_compiler_params(interpret),
      name="lstm_backward",
  )(lengths, zx, w_hh, h_prev, c_prev, d_ys, d_hn, d_cn)
  return dz[:, :B], dh0[:B], dc0[:B]


def _project(params, xs):
  """The input projection of every step as one GEMM, `[T, B, D]` -> `[T, B, 4H]` (+ b), in
  the kernels' float32: the Pallas kernels read each step's `[B, 4H]` block whole. (The
  XLA kernels project one array per gate instead: `fused_lstm._project_gates`.) Operands
  in W_hh's dtype, float32 accumulation, as in `fused_lstm`."""
  dtype = params["w_hh"].dtype
  zx = fused_lstm._contract("tbd,dg->tbg", xs, params["w_ih"], dtype)  # [T, B, D] x [D, 4H]
  if "b" in params:
    zx = zx + fused_lstm._bias(params, "b", dtype)
  return zx.astype(jnp.float32)


def _lengths_or_full(lengths, B: int, T: int) -> Array:
  if lengths is None:
    return jnp.full((B,), T, jnp.int32)
  return jnp.asarray(lengths, jnp.int32)


def _out_dtype(params, xs, h0):
  return jnp.result_type(xs.dtype, params["w_hh"].dtype, h0.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _lstm_pallas(params, xs, h0, c0, lengths, reverse, interpret, block_b):
  T, B, _ = xs.shape
  ys, _, h_n, c_n = _run_forward(_project(params, xs), params["w_hh"], h0, c0,
                                 _lengths_or_full(lengths, B, T), _out_dtype(params, xs, h0),
                                 reverse, False, interpret, block_b)
  return ys, h_n, c_n


def _lstm_pallas_fwd(params, xs, h0, c0, lengths, reverse, interpret, block_b):
  T, B, _ = xs.shape
  zx = _project(params, xs)  # [T, B, 4H]
  ys, cs, h_n, c_n = _run_forward(zx, params["w_hh"], h0, c0, _lengths_or_full(lengths, B, T),
                                  _out_dtype(params, xs, h0), reverse, True, interpret, block_b)
  return (ys, h_n, c_n), (params, xs, h0, c0, lengths, zx, ys, cs)


def _shifted_carries(ys, cs, h0, c0, lengths, reverse: bool):
  """The carry each step started from, `h_prev, c_prev [T, B, H]`, read off the outputs.

  Forward, step t > 0 starts from step t - 1's output. In reverse, step t starts
  from step t + 1's output when t + 1 is a valid step, else from the initial
  carry. Rows at padded steps are never used (their dZ is masked to zero).
  """
  h0 = h0.astype(ys.dtype)[None]  # [1, B, H]
  c0 = c0.astype(jnp.float32)[None]
  if not reverse:
    return (jnp.concatenate([h0, ys[:-1]], 0), jnp.concatenate([c0, cs[:-1]], 0))
  T = ys.shape[0]
  has_next = (jnp.arange(1, T + 1)[:, None] < lengths[None, :])[..., None]  # [T, B, 1]
  h_next = jnp.concatenate([ys[1:], jnp.zeros_like(h0)], 0)  # [T, B, H]
  c_next = jnp.concatenate([cs[1:], jnp.zeros_like(c0)], 0)
  return jnp.where(has_next, h_next, h0), jnp.where(has_next, c_next, c0)


def _lstm_pallas_bwd(reverse, interpret, block_b, saved, cotangents):
  params, xs, h0, c0, lengths, zx, ys, cs = saved
  d_ys, d_hn, d_cn = cotangents
  T, B, _ = xs.shape
  w_hh = params["w_hh"]
  lengths = _lengths_or_full(lengths, B, T)
  h_prev, c_prev = _shifted_carries(ys, cs, h0, c0, lengths, reverse)  # [T, B, H] each
  dz, dh0, dc0 = _run_backward(zx, w_hh, h_prev, c_prev, d_ys, d_hn, d_cn, lengths, reverse,
                               interpret, block_b)
  cdt = w_hh.dtype  # contractions over [T, B] unflattened: a sharded batch stays sharded
  grads = {
      "w_ih": fused_lstm._contract_steps(xs, dz, cdt).astype(params["w_ih"].dtype),
      "w_hh": fused_lstm._contract_steps(h_prev, dz, cdt).astype(cdt),
  }
  if "b" in params:
    grads["b"] = dz.sum((0, 1)).astype(params["b"].dtype)
  d_xs = fused_lstm._contract("tbg,dg->tbd", dz, params["w_ih"], cdt).astype(xs.dtype)
  grads = {name: cotangent_like(g, params[name]) for name, g in grads.items()}
  return grads, d_xs, dh0.astype(h0.dtype), dc0.astype(c0.dtype), None


_lstm_pallas.defvjp(_lstm_pallas_fwd, _lstm_pallas_bwd)


def _is_power_of_2(n: int) -> bool:
  return n > 0 and n & (n - 1) == 0


def check_gpu_sizes(hidden_size: int, block_b: int) -> None:
  """The compiled (Triton) kernel's size rules: H and block_b powers of 2, >= 16."""
  for name, n in (("H", hidden_size), ("block_b", block_b)):
    if not (_is_power_of_2(n) and n >= 16):
      raise ValueError(f"{name}: the compiled Pallas LSTM kernel (Triton) needs a power of 2 "
                       f">= 16, got {n}; pass interpret=True or use the fused kernel")


# Shared memory one block may use on an H100 (and A100: 227 / 163 KiB); consumer GPUs
# have 99 KiB.
SHARED_MEMORY_BYTES = 227 * 1024


def fits_on_chip(hidden_size: int, dtype=jnp.float32,
                 shared_memory_bytes: int = SHARED_MEMORY_BYTES) -> bool:
  """Whether W_hh `[H, 4H]` fits one block's shared memory, which the compiled kernel
  keeps it in for all T steps (see the module docstring): in float32 up to H = 64, in
  bfloat16 up to H = 128, on an H100. Beyond that Triton fails to compile or spills,
  and `fused_lstm` is the kernel to use."""
  return 4 * hidden_size * hidden_size * jnp.dtype(dtype).itemsize <= shared_memory_bytes


def lstm_sequence_pallas(params, xs, h0, c0, lengths, reverse=False, *, interpret=None,
                         block_b=None):
  """Runs a plain LSTM over `xs: [T, B, D]` (time-major) with the Pallas kernels.

  Same function as `fused_lstm.lstm_sequence`, values and gradients: first
  order, reverse mode only (the backward pass is a `jax.custom_vjp` around a
  kernel that is not itself differentiable, so no jvp, no grad of grad).

  Args:
    params: `cells.lstm` params: `w_ih [D, 4H]`, `w_hh [H, 4H]`, optional `b [4H]`;
      float32, or bfloat16 (float32 accumulation and gate math, see the
      module docstring).
    xs: inputs `[T, B, D]`.
    h0, c0: initial carry `[B, H]`.
    lengths: `[B]` int lengths or None.
    reverse: run the valid part of each sequence backwards.
    interpret: run the kernels in Pallas interpret mode; None: when the
      default backend is not a GPU.
    block_b: batch rows per kernel program (the grid is over batch blocks);
      default 16. B need not be a multiple (the batch is zero-padded).

  Raises:
    ValueError: compiled (not interpret), when H or block_b is not a power of 2
      >= 16 (`check_gpu_sizes`).

  Returns:
    `(ys [T, B, H], h_n [B, H], c_n [B, H])`.
  """
  if interpret is None:
    interpret = jax.default_backend() != "gpu"
  block_b = DEFAULT_BLOCK_B if block_b is None else int(block_b)
  if block_b <= 0:
    raise ValueError(f"block_b: expected a positive int, got {block_b}")
  if not interpret:
    check_gpu_sizes(h0.shape[-1], block_b)
  if xs.shape[0] == 0:  # no steps: nothing for a kernel to do
    T, B, _ = xs.shape
    ys = jnp.zeros((0, B, h0.shape[-1]), _out_dtype(params, xs, h0))
    return ys, h0, c0
  return _lstm_pallas(params, xs, h0, c0, lengths, bool(reverse), bool(interpret), block_b)
