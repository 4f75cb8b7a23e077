"""A fused GRU sequence kernel in XLA, with a hand-written backward pass.

The reference is `rnn_jax.unroll(cells.gru(H, reset_after=...), ...)` with
`implementation="scan"`; see `fused_lstm.py` for the scheme (one GEMM for the
input projection of all steps, a recurrence that saves its gate activations,
a reverse scan that computes only the pre-activation gradients, and the
weight and input gradients as large GEMMs over all steps), for `remat` (chunks
of `ceil(sqrt(T))` steps recomputed in the backward pass from the saved `h` at
each chunk's start) and for the precision rules (bfloat16 operands, float32
accumulation, gate math and carry). Both GRU forms of `cells.gru` are
supported, gate order `r, z, n`:

  reset_after=True  (cuDNN/PyTorch):  n = tanh(x W_in + b_n + r ⊙ (h W_hn + b_hn))
  reset_after=False (Cho et al.):     n = tanh(x W_in + b_n + (r ⊙ h) W_hn)

and h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}. The bias b may be `[B, 3H]`, one per sequence (a
conditional GRU's b + c W_c, `cells.gru`), its gradient then `[B, 3H]` too.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnn_jax.kernels.fused_lstm import (_bias, _bits, _chunk, _contract, _contract_steps, _dot,
                                        _previous_outputs, _project_gates, _remat_backward,
                                        _remat_forward, _step_mask, _step_projection,
                                        _time_major, _unbits, accumulation_dtype, chunk_length,
                                        compute_dtype)
from rnn_jax.varying import cotangent_like


def _forward(params, inputs, h0, mask, reverse: bool, reset_after: bool, save: bool,
             hoisted: bool, dtype):
  """The recurrence over `inputs`: the projections (`_project_gates`: three `[T, B, H]`
  arrays, without the bias, added here) when `hoisted`, else `xs`.
  `h0 [B, H]` and the carry stay in the accumulation dtype; `ys [T, B, H]` is in `dtype`."""
  w_hh = params["w_hh"]
  H = h0.shape[-1]
  b = _bias(params, "b", dtype) if hoisted and "b" in params else None
  b_parts = jnp.split(b, 3, axis=-1) if b is not None else None  # [3H] or [B, 3H]
  rounded = jnp.dtype(dtype) != jnp.dtype(h0.dtype)  # outputs rounded below the carry's dtype

  def body(h, inp):
    in_t, m_t = inp
    if hoisted:  # three [B, H] arrays, each read whole (fused_lstm._project_gates)
      x_r, x_z, x_n = in_t if b is None else (x + c for x, c in zip(in_t, b_parts))
    else:
      x_r, x_z, x_n = jnp.split(_step_projection(params, in_t, dtype), 3, axis=-1)
    if reset_after:
      h_r, h_z, h_n = jnp.split(_dot(h, w_hh, dtype), 3, axis=-1)
      if "b_hn" in params:
        h_n = h_n + _bias(params, "b_hn", dtype)
      r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
      n = jnp.tanh(x_n + r * h_n)
      extra = h_n
    else:
      h_rz = _dot(h, w_hh[:, :2 * H], dtype)
      r, z = jax.nn.sigmoid(x_r + h_rz[:, :H]), jax.nn.sigmoid(x_z + h_rz[:, H:])
      n = jnp.tanh(x_n + _dot(r * h, w_hh[:, 2 * H:], dtype))
      extra = None
    h_new = (1.0 - z) * n + z * h
    y = h_new.astype(dtype)
    if m_t is not None:
      h_new = jnp.where(m_t, h_new, h)
      y = jnp.where(m_t, y, jnp.zeros_like(y))
    # h_{t-1} is saved only when the outputs are rounded (bfloat16): otherwise it is the
    # previous output (`_previous_outputs`), one write per step fewer.
    residuals = (r, z, n, extra, h if rounded else None) if save else None
    return h_new, (_bits(y), residuals)  # _bits: written step by step (fused_lstm._bits)

  h_n, (ys, residuals) = jax.lax.scan(body, h0, (inputs, mask), reverse=reverse)
  ys = _unbits(ys, dtype)
  if save and not rounded:
    residuals = residuals[:4] + (_previous_outputs(ys, h0, mask, reverse),)
  return ys, h_n, residuals


def _grads(params, xs, residuals, mask, d_ys, dh_n, reverse: bool, reset_after: bool, dtype):
  """The backward pass over a stretch of steps whose residuals `(r, z, n, h_n, h_{t-1})`
  (each `[T, B, H]`) are at hand; `d_ys [T, B, H]`, `dh_n [B, H]` the cotangents.

  Returns:
    `(dh_0, grads, d_xs)`: grads `{w_ih, w_hh[, b][, b_hn]}` in the accumulation
    dtype, `d_xs [T, B, D]` in xs's dtype.
  """
  r, z, n, h_n_pre, h_prev = residuals
  acc = accumulation_dtype(dtype)
  H = dh_n.shape[-1]
  w_hh_t = params["w_hh"].T  # [3H, H], transposed once, outside the loop

  def body(dh_next, inp):
    dy, r_t, z_t, n_t, hn_t, h_p, m_t = inp
    dh = dh_next + dy.astype(acc)
    dn_pre = dh * (1.0 - z_t) * (1.0 - n_t * n_t)
    dz_pre = dh * (h_p - n_t) * z_t * (1.0 - z_t)
    if reset_after:
      dr_pre = dn_pre * hn_t * r_t * (1.0 - r_t)
      d_hh = jnp.concatenate([dr_pre, dz_pre, dn_pre * r_t], -1)  # d(h W_hh + b_hh part)
      dh_prev = dh * z_t + _dot(d_hh, w_hh_t, dtype)
    else:
      d_rh = _dot(dn_pre, w_hh_t[2 * H:], dtype)  # d(r ⊙ h)
      dr_pre = d_rh * h_p * r_t * (1.0 - r_t)
      dh_prev = (dh * z_t + d_rh * r_t
                 + _dot(jnp.concatenate([dr_pre, dz_pre], -1), w_hh_t[:2 * H], dtype))
    d_zx = jnp.concatenate([dr_pre, dz_pre, dn_pre], -1)  # [B, 3H]
    if m_t is not None:
      d_zx = jnp.where(m_t, d_zx, jnp.zeros_like(d_zx))
      dh_prev = jnp.where(m_t, dh_prev, dh_next)
    return dh_prev, d_zx

  hn_seq = h_n_pre if reset_after else r  # a placeholder of the right shape when unused
  # The loop writes only d_zx, the gradient of the input projection's pre-activations.
  # The hidden projection's gradient differs from it only in its n part (times r with
  # reset_after; not at all without), which is rebuilt after the loop in one pass over
  # all steps rather than written as a second [B, 3H] per step (benchmarks/RESULTS.md).
  dh0, d_zx = jax.lax.scan(body, dh_n, (d_ys, r, z, n, hn_seq, h_prev, mask),
                           reverse=not reverse)
  # Contractions over [T, B] without flattening it, so a batch sharded over devices
  # stays sharded (fused_lstm._contract).
  if reset_after:
    d_hn = d_zx[..., 2 * H:] * r  # the gradient of h W_hn + b_hn, [T, B, H]
    dw_hh = _contract_steps(h_prev, jnp.concatenate([d_zx[..., :2 * H], d_hn], -1), dtype)
  else:  # d_hh is d_zx; its n part multiplies r ⊙ h, not h
    dw_hh = jnp.concatenate([_contract_steps(h_prev, d_zx[..., :2 * H], dtype),
                             _contract_steps(r * h_prev, d_zx[..., 2 * H:], dtype)], -1)
  grads = {"w_ih": _contract_steps(xs, d_zx, dtype), "w_hh": dw_hh}
  if "b" in params:  # [3H], or [B, 3H] per sequence (cells.gru)
    grads["b"] = d_zx.sum((0, 1)) if params["b"].ndim == 1 else d_zx.sum(0)
  if "b_hn" in params:  # read only with reset_after
    grads["b_hn"] = d_hn.sum((0, 1)) if reset_after else jnp.zeros_like(d_zx[0, 0, :H])
  d_xs = _contract("tbg,dg->tbd", d_zx, params["w_ih"], dtype).astype(xs.dtype)  # [T, B, D]
  return dh0, grads, d_xs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def gru_sequence(params, xs, h0, lengths, reverse=False, reset_after=True, remat=False,
                 chunk_size=None, batch_major=False):
  """Runs a GRU over `xs: [T, B, D]` (`[B, T, D]` with `batch_major`); returns
  `(ys [T, B, H] (or [B, T, H]), h_n [B, H])`.

  `remat`, `chunk_size` and `batch_major` as in `fused_lstm.lstm_sequence`; ys comes
  out in the promoted dtype of the params, xs and h0, h_n in h0's dtype.
  """
  T = xs.shape[int(batch_major)]
  if remat:  # it only changes what the backward pass keeps; check chunk_size all the same
    chunk_length(T, chunk_size)
  dtype = compute_dtype(params, xs, h0)
  h = h0.astype(accumulation_dtype(dtype))
  # Without differentiation the projection stays inside the scan (see fused_lstm).
  if batch_major:  # chunk by chunk, transposing one chunk at a time

    def run(xs_c, start, h):
      ys_c, h, _ = _forward(params, xs_c, h, _step_mask(lengths, xs_c.shape[0], start), reverse,
                            reset_after, save=False, hoisted=False, dtype=dtype)
      return h, ys_c

    B = xs.shape[0]
    ys, h_n, _ = _remat_forward(run, xs, h, jnp.zeros((B, T, h0.shape[-1]), dtype),
                                chunk_length(T, chunk_size), reverse, batch_major=True)
  else:
    ys, h_n, _ = _forward(params, xs, h, _step_mask(lengths, T), reverse, reset_after,
                          save=False, hoisted=False, dtype=dtype)
  return ys, h_n.astype(h0.dtype)


def _gru_fwd(params, xs, h0, lengths, reverse, reset_after, remat, chunk_size, batch_major):
  dtype = compute_dtype(params, xs, h0)
  h = h0.astype(accumulation_dtype(dtype))
  if remat:
    T = xs.shape[int(batch_major)]

    def run(xs_c, start, h):
      mask = _step_mask(lengths, xs_c.shape[0], start)
      ys_c, h, _ = _forward(params, _project_gates(params, xs_c, dtype, 3), h, mask, reverse,
                            reset_after, save=False, hoisted=True, dtype=dtype)
      return h, ys_c

    ys = jnp.zeros(xs.shape[:2] + h0.shape[-1:], dtype)  # [T, B, H] or [B, T, H]
    ys, h_n, residuals = _remat_forward(run, xs, h, ys, chunk_length(T, chunk_size), reverse,
                                        batch_major)
  else:
    xs = _time_major(xs, batch_major)  # [T, B, D]
    ys, h_n, residuals = _forward(params, _project_gates(params, xs, dtype, 3), h,
                                  _step_mask(lengths, xs.shape[0]), reverse, reset_after,
                                  save=True, hoisted=True, dtype=dtype)
    ys = _time_major(ys, batch_major)
  return (ys, h_n.astype(h0.dtype)), (params, xs, lengths, residuals)


def _gru_bwd(reverse, reset_after, remat, chunk_size, batch_major, saved, cotangents):
  params, xs, lengths, residuals = saved  # xs: as given with remat, else time-major
  d_ys, d_hn = cotangents  # d_hn in h0's dtype
  dtype = compute_dtype(params, xs, d_hn)
  acc = accumulation_dtype(dtype)
  if remat:
    T = xs.shape[int(batch_major)]

    def chunk_bwd(start, size, h_in, dh):
      xs_c = _chunk(xs, start, size, batch_major)  # [size, B, D]
      mask = _step_mask(lengths, size, start)
      _, _, res = _forward(params, _project_gates(params, xs_c, dtype, 3), h_in, mask, reverse,
                           reset_after, save=True, hoisted=True, dtype=dtype)
      return _grads(params, xs_c, res, mask, _chunk(d_ys, start, size, batch_major), dh,
                    reverse, reset_after, dtype)

    zeros = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    dh0, grads, d_xs = _remat_backward(chunk_bwd, residuals, d_hn.astype(acc), zeros,
                                       jnp.zeros_like(xs), chunk_length(T, chunk_size), reverse,
                                       batch_major)
  else:
    dh0, grads, d_xs = _grads(params, xs, residuals, _step_mask(lengths, xs.shape[0]),
                              _time_major(d_ys, batch_major), d_hn.astype(acc), reverse,
                              reset_after, dtype)
    d_xs = _time_major(d_xs, batch_major)
  grads = {name: cotangent_like(g.astype(params[name].dtype), params[name])
           for name, g in grads.items()}
  return grads, d_xs, dh0.astype(d_hn.dtype), None


gru_sequence.defvjp(_gru_fwd, _gru_bwd)
