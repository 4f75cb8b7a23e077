"""A fused LSTM sequence kernel in XLA, with a hand-written backward pass.

The reference is `rnn_jax.unroll(cells.lstm(H), ...)` with `implementation="scan"`
(a `lax.scan` over `cell.step`, differentiated by autodiff); this kernel
computes the same function, values and gradients, faster:

Forward:
  * the input projection of all steps is one GEMM before the recurrence:
    `Zx = X W_ih + b`, `[T*B, D] x [D, 4H]`;
  * the scan then does one `[B, H] x [H, 4H]` matmul per step and the gate
    math, and saves the gate activations for the backward pass.

Backward (`jax.custom_vjp`):
  * a reverse scan computes only `dZ_t` (`[B, 4H]`, the gradient of the gate
    pre-activations) and the carry gradients, one `[B, 4H] x [4H, H]` matmul
    per step;
  * the weight and input gradients are then four large GEMMs over all steps:
    `dW_hh = H_prev^T dZ`, `dW_ih = X^T dZ`, `db = sum dZ`, `dX = dZ W_ih^T`.
    Autodiff through `lax.scan` instead accumulates `h_{t-1}^T dZ_t` into
    `dW_hh` at every step, rewriting the whole matrix T times.

Layout: time-major inside (`[T, B, ...]`), gate order `i, f, g, o` in the
fused `[*, 4H]` matrices, as in `cells.lstm`. The padding rule is the one of
`rnn_jax.unroll` (steps at `t >= len_b` leave the carry and output zero;
`reverse` runs the valid part backwards).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _gates(z: Array):
  """Pre-activations `[B, 4H]` -> activations i, f, g, o."""
  i, f, g, o = jnp.split(z, 4, axis=-1)
  return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _step_projection(params, x_t):
  """The input projection of one step, `[B, D]` -> `[B, G*H]` (+ b)."""
  z = x_t @ params["w_ih"]
  return z + params["b"] if "b" in params else z


def _forward(params, inputs, h0, c0, mask, reverse: bool, save: bool, hoisted: bool):
  """The recurrence over `inputs`: the projections `zx [T, B, 4H]` when `hoisted`, else
  the raw `xs [T, B, D]`, projected step by step."""
  w_hh = params["w_hh"]

  def body(carry, inp):
    h, c = carry
    in_t, m_t = inp
    zx_t = in_t if hoisted else _step_projection(params, in_t)
    i, f, g, o = _gates(zx_t + h @ w_hh)
    c_new = f * c + i * g
    tanh_c = jnp.tanh(c_new)
    h_new = o * tanh_c
    y = h_new
    if m_t is not None:
      h_new = jnp.where(m_t, h_new, h)
      c_new = jnp.where(m_t, c_new, c)
      y = jnp.where(m_t, y, jnp.zeros_like(y))
    residuals = (jnp.concatenate([i, f, g, o], -1), h, c, tanh_c) if save else None
    return (h_new, c_new), (y, residuals)

  (h_n, c_n), (ys, residuals) = jax.lax.scan(body, (h0, c0), (inputs, mask), reverse=reverse)
  return ys, h_n, c_n, residuals


def _step_mask(lengths, T):
  if lengths is None:
    return None
  return (jnp.arange(T)[:, None] < lengths[None, :])[..., None]  # [T, B, 1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_sequence(params, xs, h0, c0, lengths, reverse=False):
  """Runs a plain LSTM over `xs: [T, B, D]` (time-major).

  Args:
    params: `cells.lstm` params: `w_ih [D, 4H]`, `w_hh [H, 4H]`, optional `b [4H]`.
    xs: inputs `[T, B, D]`.
    h0, c0: initial carry `[B, H]`.
    lengths: `[B]` int lengths or None.
    reverse: run the valid part of each sequence backwards.

  Returns:
    `(ys [T, B, H], h_n [B, H], c_n [B, H])`.
  """
  # Without differentiation the projection stays inside the scan: hoisting it only
  # pays for itself together with the backward pass (benchmarks/RESULTS.md).
  ys, h_n, c_n, _ = _forward(params, xs, h0, c0, _step_mask(lengths, xs.shape[0]),
                             reverse, save=False, hoisted=False)
  return ys, h_n, c_n

def _project(params, xs):
  """The input projection of every step as one GEMM: `[T, B, D]` -> `[T, B, G*H]` (+ b)."""
  T, B, D = xs.shape
  zx = (xs.reshape(T * B, D) @ params["w_ih"]).reshape(T, B, -1)  # one [T*B, D] x [D, G*H] GEMM
  if "b" in params:
    zx = zx + params["b"]
  return zx


def _lstm_fwd(params, xs, h0, c0, lengths, reverse):
  zx = _project(params, xs)
  mask = _step_mask(lengths, xs.shape[0])
  ys, h_n, c_n, residuals = _forward(params, zx, h0, c0, mask, reverse, save=True, hoisted=True)
  return (ys, h_n, c_n), (params, xs, lengths, residuals)


def _lstm_bwd(reverse, saved, cotangents):
  params, xs, lengths, (acts, h_prev, c_prev, tanh_c) = saved
  d_ys, d_hn, d_cn = cotangents
  w_hh = params["w_hh"]
  T, B, D = xs.shape
  mask = _step_mask(lengths, T)

  def body(carry, inp):
    dh_next, dc_next = carry
    dy, act, c_p, t_c, m_t = inp
    i, f, g, o = jnp.split(act, 4, axis=-1)
    dh = dh_next + dy
    do = dh * t_c
    dc = dc_next + dh * o * (1.0 - t_c * t_c)
    dz = jnp.concatenate([dc * g * i * (1.0 - i),       # d z_i
                          dc * c_p * f * (1.0 - f),     # d z_f
                          dc * i * (1.0 - g * g),       # d z_g
                          do * o * (1.0 - o)], -1)      # d z_o   [B, 4H]
    dh_prev = dz @ w_hh.T
    dc_prev = dc * f
    if m_t is not None:  # a padded step passed its carry through unchanged
      dz = jnp.where(m_t, dz, jnp.zeros_like(dz))
      dh_prev = jnp.where(m_t, dh_prev, dh_next)
      dc_prev = jnp.where(m_t, dc_prev, dc_next)
    return (dh_prev, dc_prev), dz

  (dh0, dc0), dz = jax.lax.scan(body, (d_hn, d_cn), (d_ys, acts, c_prev, tanh_c, mask),
                                reverse=not reverse)
  G = dz.shape[-1]
  dz_flat = dz.reshape(T * B, G)  # [T*B, 4H]
  grads = {
      "w_ih": xs.reshape(T * B, D).T @ dz_flat,                        # [D, 4H]
      "w_hh": h_prev.reshape(T * B, -1).T @ dz_flat,                   # [H, 4H]
  }
  if "b" in params:
    grads["b"] = dz_flat.sum(0)
  d_xs = (dz_flat @ params["w_ih"].T).reshape(T, B, D)
  return grads, d_xs, dh0, dc0, None


lstm_sequence.defvjp(_lstm_fwd, _lstm_bwd)
