"""LSTM and its lecture variants: peephole, coupled gates, layer norm."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax.cells import base

Array = jax.Array

LAYER_NORM_EPSILON = 1e-5


class LSTMState(NamedTuple):
  """The LSTM carry: hidden state h `[*B, H]` and cell state c `[*B, H]`."""
  h: Array
  c: Array


def group_layer_norm(x: Array, scale: Array, bias: Array | None = None,
               num_groups: int = 1, eps: float = LAYER_NORM_EPSILON) -> Array:
  """Normalises each of `num_groups` equal slices of the last axis apart.

  `x: [..., G*H]` is viewed as `[..., G, H]`; each H-vector gets zero mean and
  unit variance, then `* scale (+ bias)` with `scale, bias: [G*H]`.
  """
  shape = x.shape
  x = x.reshape(*shape[:-1], num_groups, shape[-1] // num_groups)  # [..., G, H]
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  x = ((x - mean) * jax.lax.rsqrt(var + eps)).reshape(shape)  # [..., G*H]
  x = x * scale
  return x if bias is None else x + bias


def lstm(hidden_size: int, *, forget_bias: float = 1.0, peephole: bool = False,
         coupled: bool = False, layer_norm: bool = False, use_bias: bool = True,
         kernel_init: base.Initializer | None = None,
         recurrent_init: base.Initializer | None = None,
         param_dtype=jnp.float32) -> base.Cell:
  r"""Long short-term memory (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

  Equations (⊙ elementwise, σ the logistic sigmoid), for x_t `[*B, D]`,
  h, c `[*B, H]`:

      z   = x_t W_ih + (h_{t-1} ⊙ m_s) W_hh          # [*B, G*H], gates fused
      z   = LN_g(z) * γ_g                            # layer_norm: per gate g
      z   = z + b
      i_t = σ(z_i + w_ci ⊙ c_{t-1})                  # peephole: w_ci ⊙ c_{t-1}
      f_t = σ(z_f + w_cf ⊙ c_{t-1})                  # peephole: w_cf ⊙ c_{t-1}
      i_t = 1 - f_t                                  # coupled: replaces the above i_t
      g_t = tanh(z_g)
      c_t = f_t ⊙ c_{t-1} + i_t ⊙ (g_t ⊙ m_u)
      o_t = σ(z_o + w_co ⊙ c_t)                      # peephole sees the new c_t
      h_t = o_t ⊙ tanh(c_t)                          # layer_norm: tanh(LN(c_t) * γ_c + β_c)

  The output y_t is h_t; the carry is `LSTMState(h, c)` with c unnormalised.
  Layer norm follows RNMT+ (Chen et al. 2018): each gate's pre-activation is
  normalised on its own (b then acts as the LN shift), and so is the cell
  before its tanh.

  m_s and m_u are optional masks `[*B, H]` (`step(..., state_mask=m_s,
  update_mask=m_u)`; both default to ones, and without them the step runs no
  extra ops). `state_mask` scales h_{t-1} only where it enters the recurrent
  matmul (Gal & Ghahramani 2016, the tied form: one mask for all gates); the
  peepholes and the carried c_{t-1} never see it. `update_mask` scales the
  candidate g_t only, so dropping it never erases the memory c_{t-1}
  (Semeniuta et al. 2016, "recurrent dropout without memory loss"). The masks
  are plain multipliers: `rnn_jax.regularizers` draws them (and scales them by
  1/(1 - rate)).

  Params (a plain dict), gate order `i, f, g, o` (PyTorch's), or `f, g, o`
  when `coupled` (G = 3):

      w_ih [D, G*H]   w_hh [H, G*H]   b [G*H]          (b unless use_bias=False)
      w_ci [H], w_cf [H], w_co [H]                     (peephole; no w_ci if coupled)
      ln_gates_scale [G*H], ln_cell_scale [H], ln_cell_bias [H]   (layer_norm)

  `forget_bias` is where b's forget block starts (Gers et al.; Jozefowicz et
  al. 2015); it is an initial value, not a constant added at run time, so
  imported weights mean what they meant.

  Args:
    hidden_size: H.
    forget_bias: initial value of the forget-gate bias.
    peephole: diagonal peephole connections from the cell to the gates.
    coupled: input gate tied to the forget gate, i = 1 - f (Greff et al. 2017).
    layer_norm: per-gate layer normalisation and a normalised cell output.
    use_bias: whether the cell has a bias b (required with layer_norm).
    kernel_init: initializer for w_ih; default LeCun normal.
    recurrent_init: initializer for w_hh; default orthogonal per gate block.
    param_dtype: dtype of the params.

  Returns:
    A `Cell` whose carry is `LSTMState`.
  """
  base.check_hidden_size(hidden_size)
  if layer_norm and not use_bias:
    raise ValueError("use_bias: layer_norm uses b as the layer-norm shift; "
                     "use_bias=False is not supported with layer_norm=True")
  num_gates = 3 if coupled else 4
  H = hidden_size
  kernel_init = kernel_init or jax.nn.initializers.lecun_normal()
  recurrent_init = recurrent_init or base.stacked_init(
      jax.nn.initializers.orthogonal(), num_gates)
  forget_block = 0 if coupled else 1

  def init(key, input_size: int) -> base.Params:
    if not isinstance(input_size, int) or input_size <= 0:
      raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
    k_ih, k_hh = jax.random.split(key)
    params = {
        "w_ih": base.init_param(kernel_init, k_ih, (input_size, num_gates * H), param_dtype),
        "w_hh": base.init_param(recurrent_init, k_hh, (H, num_gates * H), param_dtype),
    }
    if use_bias:
      b = jnp.zeros((num_gates, H), param_dtype).at[forget_block].set(forget_bias)
      params["b"] = b.reshape(num_gates * H)
    if peephole:
      # Gers & Schmidhuber start the peepholes at zero: a plain LSTM at step 0.
      if not coupled:
        params["w_ci"] = jnp.zeros((H,), param_dtype)
      params["w_cf"] = jnp.zeros((H,), param_dtype)
      params["w_co"] = jnp.zeros((H,), param_dtype)
    if layer_norm:
      params["ln_gates_scale"] = jnp.ones((num_gates * H,), param_dtype)
      params["ln_cell_scale"] = jnp.ones((H,), param_dtype)
      params["ln_cell_bias"] = jnp.zeros((H,), param_dtype)
    return params

  def step(params: base.Params, carry: LSTMState, x_t: Array, *,
           state_mask: Array | None = None, update_mask: Array | None = None):
    base.check_input_size(x_t, params["w_ih"], "lstm")
    h, c = carry
    h_rec = h if state_mask is None else h * state_mask  # [*B, H]
    z = x_t @ params["w_ih"] + h_rec @ params["w_hh"]  # [*B, G*H]
    if layer_norm:
      z = group_layer_norm(z, params["ln_gates_scale"], None, num_gates)
    if use_bias:
      z = z + params["b"]
    if coupled:
      z_f, z_g, z_o = jnp.split(z, 3, axis=-1)
    else:
      z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
    if peephole:
      z_f = z_f + params["w_cf"] * c
      if not coupled:
        z_i = z_i + params["w_ci"] * c
    f = jax.nn.sigmoid(z_f)
    i = 1.0 - f if coupled else jax.nn.sigmoid(z_i)
    g = jnp.tanh(z_g)
    if update_mask is not None:
      g = g * update_mask
    c_new = f * c + i * g
    if peephole:
      z_o = z_o + params["w_co"] * c_new
    o = jax.nn.sigmoid(z_o)
    c_out = c_new
    if layer_norm:
      c_out = group_layer_norm(c_new, params["ln_cell_scale"],
                               params["ln_cell_bias"])
    h_new = o * jnp.tanh(c_out)
    return LSTMState(h_new, c_new), h_new

  return base.Cell(
      name="lstm",
      hidden_size=H,
      init=init,
      initial_carry=base.zeros_carry(H, 2, LSTMState),
      step=step,
      input_size=lambda params: params["w_ih"].shape[0],
      step_kwargs=frozenset({"state_mask", "update_mask"}),
      hparams=dict(forget_bias=forget_bias, peephole=peephole, coupled=coupled,
                   layer_norm=layer_norm, use_bias=use_bias))
