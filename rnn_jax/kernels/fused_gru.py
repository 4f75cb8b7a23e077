"""A fused GRU sequence kernel in XLA, with a hand-written backward pass.

The reference is `rnn_jax.unroll(cells.gru(H, reset_after=...), ...)` with
`implementation="scan"`; see `fused_lstm.py` for the scheme (one GEMM for the
input projection of all steps, a recurrence that saves its gate activations,
a reverse scan that computes only the pre-activation gradients, and the
weight and input gradients as large GEMMs over all steps). Both GRU forms of
`cells.gru` are supported, gate order `r, z, n`:

  reset_after=True  (cuDNN/PyTorch):  n = tanh(x W_in + b_n + r ⊙ (h W_hn + b_hn))
  reset_after=False (Cho et al.):     n = tanh(x W_in + b_n + (r ⊙ h) W_hn)

and h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnn_jax.kernels.fused_lstm import _project, _step_mask, _step_projection


def _forward(params, inputs, h0, mask, reverse: bool, reset_after: bool, save: bool,
             hoisted: bool):
  """The recurrence over `inputs`: projections `zx [T, B, 3H]` when `hoisted`, else `xs`."""
  w_hh = params["w_hh"]
  H = h0.shape[-1]

  def body(h, inp):
    in_t, m_t = inp
    zx_t = in_t if hoisted else _step_projection(params, in_t)
    x_r, x_z, x_n = jnp.split(zx_t, 3, axis=-1)
    if reset_after:
      h_r, h_z, h_n = jnp.split(h @ w_hh, 3, axis=-1)
      if "b_hn" in params:
        h_n = h_n + params["b_hn"]
      r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
      n = jnp.tanh(x_n + r * h_n)
      extra = h_n
    else:
      h_rz = h @ w_hh[:, :2 * H]
      r, z = jax.nn.sigmoid(x_r + h_rz[:, :H]), jax.nn.sigmoid(x_z + h_rz[:, H:])
      n = jnp.tanh(x_n + (r * h) @ w_hh[:, 2 * H:])
      extra = None
    h_new = (1.0 - z) * n + z * h
    y = h_new
    if m_t is not None:
      h_new = jnp.where(m_t, h_new, h)
      y = jnp.where(m_t, y, jnp.zeros_like(y))
    residuals = (r, z, n, extra, h) if save else None
    return h_new, (y, residuals)

  h_n, (ys, residuals) = jax.lax.scan(body, h0, (inputs, mask), reverse=reverse)
  return ys, h_n, residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def gru_sequence(params, xs, h0, lengths, reverse=False, reset_after=True):
  """Runs a GRU over `xs: [T, B, D]`; returns `(ys [T, B, H], h_n [B, H])`."""
  # Without differentiation the projection stays inside the scan (see fused_lstm).
  ys, h_n, _ = _forward(params, xs, h0, _step_mask(lengths, xs.shape[0]), reverse, reset_after,
                        save=False, hoisted=False)
  return ys, h_n


def _gru_fwd(params, xs, h0, lengths, reverse, reset_after):
  ys, h_n, residuals = _forward(params, _project(params, xs), h0,
                                _step_mask(lengths, xs.shape[0]), reverse, reset_after, save=True,
                                hoisted=True)
  return (ys, h_n), (params, xs, lengths, residuals)


def _gru_bwd(reverse, reset_after, saved, cotangents):
  params, xs, lengths, (r, z, n, h_n_pre, h_prev) = saved
  d_ys, d_hn = cotangents
  w_hh = params["w_hh"]
  T, B, D = xs.shape
  H = d_hn.shape[-1]
  mask = _step_mask(lengths, T)

  def body(dh_next, inp):
    dy, r_t, z_t, n_t, hn_t, h_p, m_t = inp
    dh = dh_next + dy
    dn_pre = dh * (1.0 - z_t) * (1.0 - n_t * n_t)
    dz_pre = dh * (h_p - n_t) * z_t * (1.0 - z_t)
    if reset_after:
      dr_pre = dn_pre * hn_t * r_t * (1.0 - r_t)
      d_hh = jnp.concatenate([dr_pre, dz_pre, dn_pre * r_t], -1)  # d(h W_hh + b_hh part)
      dh_prev = dh * z_t + d_hh @ w_hh.T
    else:
      d_rh = dn_pre @ w_hh[:, 2 * H:].T  # d(r ⊙ h)
      dr_pre = d_rh * h_p * r_t * (1.0 - r_t)
      d_hh = jnp.concatenate([dr_pre, dz_pre, dn_pre], -1)
      dh_prev = dh * z_t + d_rh * r_t + jnp.concatenate([dr_pre, dz_pre], -1) @ w_hh[:, :2 * H].T
    d_zx = jnp.concatenate([dr_pre, dz_pre, dn_pre], -1)  # [B, 3H]
    if m_t is not None:
      d_zx = jnp.where(m_t, d_zx, jnp.zeros_like(d_zx))
      d_hh = jnp.where(m_t, d_hh, jnp.zeros_like(d_hh))
      dh_prev = jnp.where(m_t, dh_prev, dh_next)
    return dh_prev, (d_zx, d_hh)

  hn_seq = h_n_pre if reset_after else r  # a placeholder of the right shape when unused
  dh0, (d_zx, d_hh) = jax.lax.scan(body, d_hn, (d_ys, r, z, n, hn_seq, h_prev, mask),
                                   reverse=not reverse)
  d_zx = d_zx.reshape(T * B, 3 * H)
  d_hh = d_hh.reshape(T * B, 3 * H)
  h_flat = h_prev.reshape(T * B, H)
  if reset_after:
    dw_hh = h_flat.T @ d_hh  # [H, 3H]
  else:
    rh = (r * h_prev).reshape(T * B, H)
    dw_hh = jnp.concatenate([h_flat.T @ d_hh[:, :2 * H], rh.T @ d_hh[:, 2 * H:]], -1)
  grads = {"w_ih": xs.reshape(T * B, D).T @ d_zx, "w_hh": dw_hh}
  if "b" in params:
    grads["b"] = d_zx.sum(0)
  if "b_hn" in params:
    grads["b_hn"] = d_hh[:, 2 * H:].sum(0)
  d_xs = (d_zx @ params["w_ih"].T).reshape(T, B, D)
  return grads, d_xs, dh0, None


gru_sequence.defvjp(_gru_fwd, _gru_bwd)
