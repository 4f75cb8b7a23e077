"""A fused LSTM sequence kernel in XLA, with a hand-written backward pass.

The reference is `rnn_jax.unroll(cells.lstm(H), ...)` with `implementation="scan"`
(a `lax.scan` over `cell.step`, differentiated by autodiff); this kernel
computes the same function, values and gradients, faster:

Forward:
  * the input projection of all steps is computed before the recurrence, as one
    GEMM per gate, `Zx_k = X W_ih[:, kH:(k+1)H]`, `[T*B, D] x [D, H]`, so that
    the loop reads each gate's `[B, H]` whole (`_project_gates`);
  * the scan then does one `[B, H] x [H, 4H]` matmul per step and the gate
    math, and saves the gate activations (four `[T, B, H]` arrays) and
    `c_{t-1}` for the backward pass; `h_{t-1}` is the previous output and
    `tanh(c_t)` is recomputed, so neither is written per step.

Backward (`jax.custom_vjp`):
  * a reverse scan computes only `dZ_t` (`[B, 4H]`, the gradient of the gate
    pre-activations) and the carry gradients, one `[B, 4H] x [4H, H]` matmul
    per step;
  * the weight and input gradients are then four large GEMMs over all steps:
    `dW_hh = H_prev^T dZ`, `dW_ih = X^T dZ`, `db = sum dZ`, `dX = dZ W_ih^T`.
    Autodiff through `lax.scan` instead accumulates `h_{t-1}^T dZ_t` into
    `dW_hh` at every step, rewriting the whole matrix T times.

Rematerialisation (`remat=True`, for long sequences): the steps are cut into
chunks of k (`chunk_size`, default `ceil(sqrt(T))`). The forward pass projects
and runs one chunk at a time and keeps only the carry `(h, c)` entering each
chunk; the backward pass walks the chunks in reverse, recomputes a chunk's
projection `[k, B, 4H]` and gate activations from its saved carry, runs the
reverse scan over it and adds the chunk's share to the weight gradients (GEMMs
over `k*B` rows). Saved between the passes: `O(T/k * B * H)` carries instead
of `O(T * B * 5H)` activations (`i, f, g, o, c_{t-1}`), and the per-gate projections
(`[T, B, 4H]` in all) are never materialised: at most `O(k * B * 4H)` per chunk. It costs a second forward
pass. The last chunk holds `T mod k` steps when k does not divide T.

Precision: the matmul operands are in the promoted dtype of the inputs, params
and carry (`dtype`: bfloat16 when they all are), with float32 accumulation
(`preferred_element_type`); the gate math, the carry `(h, c)` and the gradients
`dZ` are float32 throughout the recurrence (float64 in float64). Outputs are
`ys` in `dtype` and the final carry in the initial carry's dtype; gradients come
back in each primal's dtype. With bfloat16 this is therefore more accurate than
the scan path in bfloat16 (which rounds `c` at every step): the tests hold it
to the float32 scan on the same bfloat16-rounded numbers.

Layout: time-major inside (`[T, B, ...]`), gate order `i, f, g, o` in the
fused `[*, 4H]` matrices, as in `cells.lstm`. The kernels take `xs [T, B, D]`,
or `[B, T, D]` with `batch_major=True`: with `remat` they then slice each chunk
`xs[:, lo:hi]`, transpose only that chunk, and write its `ys` and `dX` back into
batch-major buffers in place, so the whole sequence is never transposed (at
B=32, H=D=512, T=10000 float32 each transposed copy of xs, ys or dX is 0.61 GiB).
The padding rule is the one of `rnn_jax.unroll` (steps at `t >= len_b` leave
the carry and output zero; `reverse` runs the valid part backwards).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from rnn_jax.varying import cotangent_like

Array = jax.Array


# ---------------------------------------------------------------- precision


def compute_dtype(params, *arrays):
  """The dtype the scan path would compute in: params, inputs and carry promoted."""
  return jnp.result_type(*jax.tree_util.tree_leaves(params), *arrays)


def accumulation_dtype(dtype):
  """The dtype of the carry, gate math and matmul results: `dtype`, at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def _dot(a: Array, b: Array, dtype) -> Array:
  """`a @ b` with both operands in `dtype` and float32 (or wider) accumulation and result."""
  return jnp.matmul(a.astype(dtype), b.astype(dtype),
                    preferred_element_type=accumulation_dtype(dtype))


def _contract(spec: str, a: Array, b: Array, dtype) -> Array:
  """`jnp.einsum(spec, a, b)` with the precision of `_dot`.

  The all-steps GEMMs contract `[T, B, ...]` arrays with einsum rather than
  flattening them to `[T*B, ...]`: on one device it is the same GEMM (the
  reshape is free), but under `jax.jit` with the batch sharded over devices
  (`rnn_jax.training.parallel`) a `[T, B/n, D] -> [T*B, D]` reshape cannot keep
  the batch sharding, so XLA gathers the whole batch and every device computes
  every row; einsum keeps B as a dimension, sharded.
  """
  return jnp.einsum(spec, a.astype(dtype), b.astype(dtype),
                    preferred_element_type=accumulation_dtype(dtype))


def _bias(params, name, dtype):
  return params[name].astype(accumulation_dtype(dtype))


# ---------------------------------------------------------------- shared pieces


def _step_mask(lengths, T, start=0):
  """`[T, B, 1]` validity of steps `start .. start + T - 1`, or None without lengths."""
  if lengths is None:
    return None
  t = start + jnp.arange(T)
  return (t[:, None] < lengths[None, :])[..., None]  # [T, B, 1]


def _step_projection(params, x_t, dtype):
  """The input projection of one step, `[B, D]` -> `[B, G*H]` (+ b), accumulation dtype."""
  z = _dot(x_t, params["w_ih"], dtype)
  return z + _bias(params, "b", dtype) if "b" in params else z


def _project_gates(params, xs, dtype, gates: int) -> tuple[Array, ...]:
  """The input projection of every step, one `[T, B, H]` array per gate (no bias): gate k
  is `xs W_ih[:, kH:(k+1)H]`, one GEMM each.

  The recurrence then reads gate k at step t as a whole `[B, H]` slice of its own array.
  Reading it as a column slice of one `[T, B, G*H]` projection (a dynamic slice, then a
  static one, in the same loop fusion) made a forward step, matmul included, 1.2x
  (B=32, H=512) to 2x (B=64, H=64) slower on XLA's CPU runtime than reading separate
  arrays (`python -m benchmarks.cpu_loops --probe=slices`, benchmarks/RESULTS.md); G
  GEMMs of width H cost about what one of width G*H does."""
  w_ih = params["w_ih"]
  H = w_ih.shape[-1] // gates
  return tuple(_contract("tbd,dg->tbg", xs, w_ih[:, k * H:(k + 1) * H], dtype)
               for k in range(gates))


def chunk_length(T: int, chunk_size: int | None = None) -> int:
  """Steps per rematerialised chunk: `chunk_size`, by default `ceil(sqrt(T))`, at most T."""
  if chunk_size is None:
    chunk_size = math.isqrt(T - 1) + 1 if T > 0 else 1
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
  return max(1, min(chunk_size, T))


def _tree_add(a, b):
  return jax.tree_util.tree_map(jnp.add, a, b)


def _time_major(a: Array, batch_major: bool) -> Array:
  """`[B, T, ...]` -> `[T, B, ...]` when `batch_major`, else `a` as it is."""
  return jnp.swapaxes(a, 0, 1) if batch_major else a


def _chunk(a: Array, start, size: int, batch_major: bool) -> Array:
  """Steps `start .. start + size - 1` of `a` (`[T, B, ...]`, or `[B, T, ...]` when
  `batch_major`), time-major: `[size, B, ...]`. Only the chunk is ever transposed."""
  return _time_major(jax.lax.dynamic_slice_in_dim(a, start, size, int(batch_major)),
                     batch_major)


def _bits(a: Array) -> Array:
  """A 16-bit float array as its uint16 bits (exact and free), for arrays a loop writes
  piece by piece. XLA on the CPU turns a dynamic-update-slice of a bfloat16 array into
  convert-to-float32, update, convert back: a pass over the WHOLE array per write, so a
  bfloat16 scan output cost O(T^2) (a T = 2000 forward pass ran 2.5x slower than in
  float32). On uint16 the update is in place. `_unbits` undoes it."""
  if a.dtype.itemsize == 2 and jnp.issubdtype(a.dtype, jnp.floating):
    return jax.lax.bitcast_convert_type(a, jnp.uint16)
  return a


def _unbits(a: Array, dtype) -> Array:
  """The inverse of `_bits`: `a` back in `dtype`."""
  return jax.lax.bitcast_convert_type(a, dtype) if a.dtype != jnp.dtype(dtype) else a


def _put(buffer: Array, chunk: Array, start, batch_major: bool, dtype) -> Array:
  """Writes a time-major `chunk [size, B, ...]` over steps `start ..` of `buffer` (in place
  inside a loop; `buffer` holds `dtype` as `_bits`), the inverse of `_chunk`."""
  return jax.lax.dynamic_update_slice_in_dim(
      buffer, _bits(_time_major(chunk, batch_major).astype(dtype)), start, int(batch_major))


def _remat_forward(run, xs, carry, ys, k: int, reverse: bool, batch_major: bool):
  """Runs `xs` chunk by chunk, keeping only the carry that enters each chunk.

  `xs` is `[T, B, ...]`, or `[B, T, ...]` when `batch_major`; `ys` is the buffer
  (zeros, same layout) the outputs are written into, chunk by chunk, so no
  whole-sequence array is ever transposed, stacked or concatenated.
  `run(xs_c [k', B, ...], start, carry) -> (carry, ys_c [k', B, ...])` runs the
  steps `start .. start + k' - 1` (in reverse when `reverse`), time-major. The
  full chunks go through one `lax.scan`; the last `T mod k` steps are a chunk of
  their own.

  Returns:
    `(ys, final carry, boundaries)`; boundaries is `(carries entering the full chunks,
    stacked [T // k, ...]; the carry entering the short chunk or None)`, what
    `_remat_backward` recomputes the chunks from.
  """
  n, r = divmod(xs.shape[int(batch_major)], k)
  dtype, ys = ys.dtype, _bits(ys)

  def chunk(carry, ys, start, size):
    carry, ys_c = run(_chunk(xs, start, size, batch_major), start, carry)
    return carry, _put(ys, ys_c, start, batch_major, dtype)

  def full(state, j):
    carry_in, ys = state
    return chunk(carry_in, ys, j * k, k), carry_in

  rest_in = None
  if reverse and r:  # the short chunk holds the last steps, so in reverse it runs first
    rest_in = carry
    carry, ys = chunk(carry, ys, n * k, r)
  (carry, ys), full_in = jax.lax.scan(full, (carry, ys), jnp.arange(n), reverse=reverse)
  if not reverse and r:
    rest_in = carry
    carry, ys = chunk(carry, ys, n * k, r)
  return _unbits(ys, dtype), carry, (full_in, rest_in)


def _remat_backward(chunk_bwd, boundaries, d_carry, grads, d_xs, k: int, reverse: bool,
                    batch_major: bool):
  """The backward pass of `_remat_forward`: the chunks in the opposite order.

  `chunk_bwd(start, size, carry_in, d_carry) -> (d_carry_in, grads_c, d_xs_c [size, B, D])`
  recomputes one chunk from the carry that entered it and runs its backward
  pass; `grads` (the zeros to add the chunks' weight gradients to) is a
  pytree like `grads_c`; `d_xs` is the zero buffer, laid out like `xs`, that
  the chunks' input gradients are written into.

  Returns:
    `(d_carry at the start, summed grads, d_xs)`.
  """
  n, r = divmod(d_xs.shape[int(batch_major)], k)
  full_in, rest_in = boundaries
  dtype, d_xs = d_xs.dtype, _bits(d_xs)

  def chunk(d_carry, grads, d_xs, start, size, carry_in):
    d_carry, g, d_xs_c = chunk_bwd(start, size, carry_in, d_carry)
    return d_carry, _tree_add(grads, g), _put(d_xs, d_xs_c, start, batch_major, dtype)

  def full(state, inp):
    j, carry_in = inp
    return chunk(*state, j * k, k, carry_in), None

  state = (d_carry, grads, d_xs)
  if not reverse and r:  # the short chunk ran last, so its backward pass runs first
    state = chunk(*state, n * k, r, rest_in)
  state, _ = jax.lax.scan(full, state, (jnp.arange(n), full_in), reverse=not reverse)
  if reverse and r:
    state = chunk(*state, n * k, r, rest_in)
  d_carry, grads, d_xs = state
  return d_carry, grads, _unbits(d_xs, dtype)


# ---------------------------------------------------------------- the LSTM


def _gates(z: Array, zx_t: tuple[Array, ...] | None = None):
  """Activations i, f, g, o of the pre-activations `z [B, 4H]`, plus, gate by gate, the
  hoisted projection's four `[B, H]` arrays `zx_t` when given."""
  zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
  if zx_t is not None:
    zi, zf, zg, zo = (a + b for a, b in zip(zx_t, (zi, zf, zg, zo)))
  return jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)


def _forward(params, inputs, h0, c0, mask, reverse: bool, save: bool, hoisted: bool, dtype):
  """The recurrence over `inputs`: the projections (`_project_gates`: four `[T, B, H]`
  arrays, without the bias, added here) when `hoisted`, else the raw `xs [T, B, D]`,
  projected step by step. `h0, c0 [B, H]` and the carry stay in the accumulation dtype;
  `ys [T, B, H]` comes out in `dtype`."""
  w_hh = params["w_hh"]
  b = _bias(params, "b", dtype) if hoisted and "b" in params else None

  def body(carry, inp):
    h, c = carry
    in_t, m_t = inp
    zh = _dot(h, w_hh, dtype)  # [B, 4H]
    if hoisted:  # four [B, H] pre-activations, each read whole (see _project_gates)
      zh = zh if b is None else zh + b
      i, f, g, o = _gates(zh, in_t)
    else:
      i, f, g, o = _gates(_step_projection(params, in_t, dtype) + zh)
    c_new = f * c + i * g
    tanh_c = jnp.tanh(c_new)
    h_new = o * tanh_c
    y = h_new.astype(dtype)
    if m_t is not None:
      h_new = jnp.where(m_t, h_new, h)
      c_new = jnp.where(m_t, c_new, c)
      y = jnp.where(m_t, y, jnp.zeros_like(y))
    # The four gates saved as four arrays: the backward pass then reads whole arrays, not
    # column slices of one `[B, 4H]` (XLA's CPU loops over several slices of one array
    # ran several times slower; benchmarks/RESULTS.md). h_{t-1} is not saved (it is the
    # previous output: `_previous_outputs`) nor tanh(c_t) (the backward pass recomputes
    # it): every saved array is one more write per step, which costs at small widths.
    residuals = ((i, f, g, o), c) if save else None
    return (h_new, c_new), (_bits(y), residuals)  # _bits: written step by step

  (h_n, c_n), (ys, residuals) = jax.lax.scan(body, (h0, c0), (inputs, mask), reverse=reverse)
  ys = _unbits(ys, dtype)
  if save:
    acts, c_prev = residuals
    residuals = (acts, _previous_outputs(ys, h0, mask, reverse), c_prev)
  return ys, h_n, c_n, residuals


def _previous_outputs(ys, h0, mask, reverse: bool):
  """`h_{t-1}`, the carry entering each step, from the outputs `ys [T, B, H]` and `h0`,
  in ys's dtype, at every step that counts (a padded step's value is never used: its
  dZ is zero). Forwards, step t starts from output t - 1 (h0 at t = 0). In reverse
  it starts from output t + 1, or from h0 when step t + 1 is past the end or padding
  (whose outputs are zero while the carry passed h0 through)."""
  h0 = h0.astype(ys.dtype)[None]
  if not reverse:
    return jnp.concatenate([h0, ys[:-1]], 0)
  nxt = jnp.concatenate([ys[1:], h0], 0)
  if mask is None:
    return nxt
  valid_next = jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])], 0)  # [T, B, 1]
  return jnp.where(valid_next, nxt, h0)


def _grads(params, xs, residuals, mask, d_ys, dh_n, dc_n, reverse: bool, dtype):
  """The backward pass over a stretch of steps whose residuals are at hand.

  Args:
    params, xs `[T, B, D]`, mask: as in the forward pass over these steps.
    residuals: what `_forward(..., save=True)` saved: the gate activations
      `(i, f, g, o)`, `h_{t-1}` (in dtype), `c_{t-1}`, each `[T, B, H]`.
    d_ys: `[T, B, H]` cotangents of the outputs; dh_n, dc_n: of the carry
      after the last step run (accumulation dtype).

  Returns:
    `((dh_0, dc_0), grads, d_xs)`: the carry cotangents before the first step
    run, `{w_ih, w_hh[, b]}` in the accumulation dtype, `d_xs [T, B, D]` in xs's dtype.
  """
  acts, h_prev, c_prev = residuals
  acc = accumulation_dtype(dtype)
  w_hh_t = params["w_hh"].T  # [4H, H], transposed once, outside the loop

  def body(carry, inp):
    dh_next, dc_next = carry
    dy, (i, f, g, o), c_p, m_t = inp
    t_c = jnp.tanh(f * c_p + i * g)  # tanh(c_t), recomputed rather than saved
    dh = dh_next + dy.astype(acc)
    do = dh * t_c
    dc = dc_next + dh * o * (1.0 - t_c * t_c)
    dz = jnp.concatenate([dc * g * i * (1.0 - i),       # d z_i
                          dc * c_p * f * (1.0 - f),     # d z_f
                          dc * i * (1.0 - g * g),       # d z_g
                          do * o * (1.0 - o)], -1)      # d z_o   [B, 4H]
    dh_prev = _dot(dz, w_hh_t, dtype)
    dc_prev = dc * f
    if m_t is not None:  # a padded step passed its carry through unchanged
      dz = jnp.where(m_t, dz, jnp.zeros_like(dz))
      dh_prev = jnp.where(m_t, dh_prev, dh_next)
      dc_prev = jnp.where(m_t, dc_prev, dc_next)
    return (dh_prev, dc_prev), dz

  d_carry, dz = jax.lax.scan(body, (dh_n, dc_n), (d_ys, acts, c_prev, mask),
                             reverse=not reverse)
  dw_ih, dw_hh = _weight_grads(xs, h_prev, dz, dtype)
  grads = {"w_ih": dw_ih, "w_hh": dw_hh}
  if "b" in params:
    grads["b"] = dz.sum((0, 1))
  d_xs = _contract("tbg,dg->tbd", dz, params["w_ih"], dtype).astype(xs.dtype)  # [T, B, D]
  return d_carry, grads, d_xs


# From this `D + H` on, dW_ih and dW_hh are two GEMMs rather than one over `[X, H_prev]`.
STACK_BELOW = 1024


def _weight_grads(xs, h_prev, dz, dtype):
  """`(dW_ih, dW_hh) = (X^T dZ, H_prev^T dZ)`, `[D, G*H]` and `[H, G*H]` (`xs [T, B, D]`,
  `h_prev [T, B, H]`, `dz [T, B, G*H]`). Below `D + H = STACK_BELOW` as ONE GEMM over
  `[X, H_prev]`, which beats two at small widths; from there on as two GEMMs, which saves
  copying xs and h_prev into the concatenation (benchmarks/RESULTS.md)."""
  D = xs.shape[-1]
  if D + h_prev.shape[-1] >= STACK_BELOW:
    return _contract_steps(xs, dz, dtype), _contract_steps(h_prev, dz, dtype)
  xh = jnp.concatenate([xs.astype(dtype), h_prev.astype(dtype)], axis=-1)  # [T, B, D + H]
  dw = _contract_steps(xh, dz, dtype)  # [D + H, G*H]
  return dw[:D], dw[D:]


def _contract_steps(a: Array, b: Array, dtype) -> Array:
  """`sum_{t,b} a[t, b, :]^T b[t, b, :]`: `[T, B, K] x [T, B, N] -> [K, N]`, the weight
  gradients' GEMM over all steps, without flattening `[T, B]` (see `_contract`). As a
  `dot_general` over both dims it compiles to one GEMM; `jnp.einsum` would also copy b."""
  return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), (((0, 1), (0, 1)), ((), ())),
                             preferred_element_type=accumulation_dtype(dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def lstm_sequence(params, xs, h0, c0, lengths, reverse=False, remat=False, chunk_size=None,
                  batch_major=False):
  """Runs a plain LSTM over `xs: [T, B, D]` (time-major; `[B, T, D]` with `batch_major`).

  Args:
    params: `cells.lstm` params: `w_ih [D, 4H]`, `w_hh [H, 4H]`, optional `b [4H]`.
    xs: inputs `[T, B, D]`, or `[B, T, D]` when `batch_major`.
    h0, c0: initial carry `[B, H]`.
    lengths: `[B]` int lengths or None.
    reverse: run the valid part of each sequence backwards.
    remat: keep only the carry at chunk boundaries for the backward pass and
      recompute each chunk there (see the module docstring); same results.
    chunk_size: steps per chunk with `remat`; default `ceil(sqrt(T))`.
    batch_major: `xs` and `ys` are `[B, T, ...]`. With `remat` the chunks are
      sliced from and written back to that layout one at a time, so neither pass
      holds a transposed copy of the whole `xs`, `ys` or `dX` (what
      `kernels.fused_unroll(remat=True)` uses); without remat the kernel works on
      a time-major copy, as `fused_unroll` does.

  Returns:
    `(ys [T, B, H] (or [B, T, H]), h_n [B, H], c_n [B, H])`: ys in the promoted
    dtype of the params, xs and carry; h_n, c_n in h0's and c0's dtypes.
  """
  T = xs.shape[int(batch_major)]
  if remat:  # it only changes what the backward pass keeps; check chunk_size all the same
    chunk_length(T, chunk_size)
  dtype = compute_dtype(params, xs, h0, c0)
  acc = accumulation_dtype(dtype)
  carry = (h0.astype(acc), c0.astype(acc))
  # Without differentiation the projection stays inside the scan: hoisting it only
  # pays for itself together with the backward pass (benchmarks/RESULTS.md).
  if batch_major:  # chunk by chunk, transposing one chunk at a time

    def run(xs_c, start, carry):
      ys_c, h, c, _ = _forward(params, xs_c, *carry, _step_mask(lengths, xs_c.shape[0], start),
                               reverse, save=False, hoisted=False, dtype=dtype)
      return (h, c), ys_c

    B = xs.shape[0]
    ys, (h_n, c_n), _ = _remat_forward(run, xs, carry, jnp.zeros((B, T, h0.shape[-1]), dtype),
                                       chunk_length(T, chunk_size), reverse, batch_major=True)
  else:
    ys, h_n, c_n, _ = _forward(params, xs, *carry, _step_mask(lengths, T), reverse, save=False,
                               hoisted=False, dtype=dtype)
  return ys, h_n.astype(h0.dtype), c_n.astype(c0.dtype)


def _lstm_fwd(params, xs, h0, c0, lengths, reverse, remat, chunk_size, batch_major):
  dtype = compute_dtype(params, xs, h0, c0)
  acc = accumulation_dtype(dtype)
  carry = (h0.astype(acc), c0.astype(acc))
  if remat:
    T = xs.shape[int(batch_major)]

    def run(xs_c, start, carry):
      mask = _step_mask(lengths, xs_c.shape[0], start)
      ys_c, h, c, _ = _forward(params, _project_gates(params, xs_c, dtype, 4), *carry, mask, reverse,
                               save=False, hoisted=True, dtype=dtype)
      return (h, c), ys_c

    ys = jnp.zeros(xs.shape[:2] + h0.shape[-1:], dtype)  # [T, B, H] or [B, T, H]
    ys, (h_n, c_n), residuals = _remat_forward(run, xs, carry, ys, chunk_length(T, chunk_size),
                                               reverse, batch_major)
  else:
    xs = _time_major(xs, batch_major)  # [T, B, D]
    ys, h_n, c_n, residuals = _forward(params, _project_gates(params, xs, dtype, 4), *carry,
                                       _step_mask(lengths, xs.shape[0]), reverse, save=True,
                                       hoisted=True, dtype=dtype)
    ys = _time_major(ys, batch_major)
  return (ys, h_n.astype(h0.dtype), c_n.astype(c0.dtype)), (params, xs, lengths, residuals)


def _lstm_bwd(reverse, remat, chunk_size, batch_major, saved, cotangents):
  params, xs, lengths, residuals = saved  # xs: as given with remat, else time-major
  d_ys, d_hn, d_cn = cotangents  # d_hn, d_cn in h0's and c0's dtypes
  dtype = compute_dtype(params, xs, d_hn, d_cn)
  acc = accumulation_dtype(dtype)
  d_carry = (d_hn.astype(acc), d_cn.astype(acc))
  if remat:
    T = xs.shape[int(batch_major)]

    def chunk_bwd(start, size, carry_in, d_carry):
      xs_c = _chunk(xs, start, size, batch_major)  # [size, B, D]
      mask = _step_mask(lengths, size, start)
      _, _, _, res = _forward(params, _project_gates(params, xs_c, dtype, 4), *carry_in, mask, reverse,
                              save=True, hoisted=True, dtype=dtype)
      return _grads(params, xs_c, res, mask, _chunk(d_ys, start, size, batch_major), *d_carry,
                    reverse, dtype)

    zeros = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    (dh0, dc0), grads, d_xs = _remat_backward(chunk_bwd, residuals, d_carry, zeros,
                                              jnp.zeros_like(xs), chunk_length(T, chunk_size),
                                              reverse, batch_major)
  else:
    (dh0, dc0), grads, d_xs = _grads(params, xs, residuals, _step_mask(lengths, xs.shape[0]),
                                     _time_major(d_ys, batch_major), *d_carry, reverse, dtype)
    d_xs = _time_major(d_xs, batch_major)
  grads = {name: cotangent_like(g.astype(params[name].dtype), params[name])
           for name, g in grads.items()}
  return grads, d_xs, dh0.astype(d_hn.dtype), dc0.astype(d_cn.dtype), None


lstm_sequence.defvjp(_lstm_fwd, _lstm_bwd)
