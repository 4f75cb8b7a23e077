"""Gated recurrent unit, in Cho et al.'s form and in the cuDNN/PyTorch form."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax.cells import base

Array = jax.Array


def gru(hidden_size: int, *, reset_after: bool = False, use_bias: bool = True,
        kernel_init: base.Initializer | None = None,
        recurrent_init: base.Initializer | None = None,
        param_dtype=jnp.float32) -> base.Cell:
  r"""Gated recurrent unit (Cho et al. 2014).

  Equations, x_t `[*B, D]`, h `[*B, H]`, gate order `r, z, n` (PyTorch's):

      h̄   = h_{t-1} ⊙ m_s                                  # the h the matmuls see
      r_t = σ(x_t W_ir + h̄ W_hr + b_r)
      z_t = σ(x_t W_iz + h̄ W_hz + b_z)
      n_t = tanh(x_t W_in + (r_t ⊙ h̄) W_hn + b_n)            # reset_after=False
      n_t = tanh(x_t W_in + b_n + r_t ⊙ (h̄ W_hn + b_hn))     # reset_after=True
      h_t = (1 - z_t) ⊙ (n_t ⊙ m_u) + z_t ⊙ h_{t-1}

  `reset_after=False` is the original form, as the lecture writes it: the
  reset gate scales h before the recurrent matmul, so that matmul waits for
  r_t. `reset_after=True` is the form of cuDNN, PyTorch `nn.GRU` and Keras
  (`reset_after=True`): all three recurrent matmuls run at once.

  m_s and m_u are optional masks `[*B, H]` (`step(..., state_mask=m_s,
  update_mask=m_u)`; both default to ones, and without them the step runs no
  extra ops). `state_mask` scales h_{t-1} wherever it enters a recurrent
  matmul, all three of them (Gal & Ghahramani 2016); the h_{t-1} carried into
  the interpolation z_t ⊙ h_{t-1} is never masked. `update_mask` scales the
  candidate n_t only (Semeniuta et al. 2016), so a dropped unit keeps z_t ⊙
  h_{t-1} instead of losing its memory. The masks are plain multipliers:
  `rnn_jax.regularizers` draws them (and scales them by 1/(1 - rate)).

  Params: `w_ih [D, 3H]`, `w_hh [H, 3H]`, `b [3H]`, and `b_hn [H]` when
  `reset_after` (b_hn sits inside r ⊙ (...), so it cannot fold into b).
  `b` may be replaced by a per-sequence bias `[B, 3H]`: with b + c W_c for a context
  c `[B, C]` the GRU is conditioned on c at every step (Kiros et al.'s conditional GRU,
  Cho et al.'s decoder) at the cost of one `[B, C] x [C, 3H]` matmul, instead of
  concatenating c to every x_t. `unroll`'s scan and fused paths take it;
  `unroll_reference`, which runs one example at a time, does not.
  The carry is h `[*B, H]`; the output y_t is h_t.

  Args:
    hidden_size: H.
    reset_after: apply the reset gate after the recurrent matmul.
    use_bias: whether the cell has biases.
    kernel_init: initializer for w_ih; default LeCun normal.
    recurrent_init: initializer for w_hh; default orthogonal per gate block.
    param_dtype: dtype of the params.
  """
  base.check_hidden_size(hidden_size)
  H = hidden_size
  kernel_init = kernel_init or jax.nn.initializers.lecun_normal()
  recurrent_init = recurrent_init or base.stacked_init(
      jax.nn.initializers.orthogonal(), 3)

  def init(key, input_size: int) -> base.Params:
    if not isinstance(input_size, int) or input_size <= 0:
      raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
    k_ih, k_hh = jax.random.split(key)
    params = {
        "w_ih": base.init_param(kernel_init, k_ih, (input_size, 3 * H), param_dtype),
        "w_hh": base.init_param(recurrent_init, k_hh, (H, 3 * H), param_dtype),
    }
    if use_bias:
      params["b"] = jnp.zeros((3 * H,), param_dtype)
      if reset_after:
        params["b_hn"] = jnp.zeros((H,), param_dtype)
    return params

  def step(params: base.Params, h: Array, x_t: Array, *,
           state_mask: Array | None = None, update_mask: Array | None = None):
    base.check_input_size(x_t, params["w_ih"], "gru")
    h_rec = h if state_mask is None else h * state_mask  # [*B, H], enters the matmuls
    xw = x_t @ params["w_ih"]  # [*B, 3H]
    if use_bias:
      xw = xw + params["b"]
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    w_hh = params["w_hh"]
    if reset_after:
      h_r, h_z, h_n = jnp.split(h_rec @ w_hh, 3, axis=-1)  # one [H, 3H] matmul
      if use_bias:
        h_n = h_n + params["b_hn"]
      r = jax.nn.sigmoid(x_r + h_r)
      z = jax.nn.sigmoid(x_z + h_z)
      n = jnp.tanh(x_n + r * h_n)
    else:
      h_rz = h_rec @ w_hh[:, :2 * H]  # [*B, 2H]
      r = jax.nn.sigmoid(x_r + h_rz[..., :H])
      z = jax.nn.sigmoid(x_z + h_rz[..., H:])
      n = jnp.tanh(x_n + (r * h_rec) @ w_hh[:, 2 * H:])
    if update_mask is not None:
      n = n * update_mask
    h_new = (1.0 - z) * n + z * h  # the carried h, never state-masked
    return h_new, h_new

  return base.Cell(
      name="gru",
      hidden_size=H,
      init=init,
      initial_carry=base.zeros_carry(H, 1, None),
      step=step,
      input_size=lambda params: params["w_ih"].shape[0],
      step_kwargs=frozenset({"state_mask", "update_mask"}),
      hparams=dict(reset_after=reset_after, use_bias=use_bias))
