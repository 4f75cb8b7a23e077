"""The vanilla (Elman) RNN, with the IRNN initialisation as an option."""

from __future__ import annotations


import jax
import jax.numpy as jnp

from rnn_jax.cells import base

Array = jax.Array

_NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def simple_rnn(hidden_size: int, *, nonlinearity: str = "tanh",
               identity_init: bool = False, identity_scale: float = 1.0,
               use_bias: bool = True,
               kernel_init: base.Initializer | None = None,
               recurrent_init: base.Initializer | None = None,
               param_dtype=jnp.float32) -> base.Cell:
  r"""Elman RNN: h_t = φ(x_t W_ih + h_{t-1} W_hh + b), φ = tanh or relu.

  With `identity_init=True` this is the IRNN of Le, Jaitly & Hinton (2015):
  W_hh = identity_scale * I, b = 0, and W_ih ~ N(0, 0.001^2); use it with
  `nonlinearity="relu"`.

  Params: `w_ih [D, H]`, `w_hh [H, H]`, `b [H]`. Carry and output: h `[*B, H]`.

  Args:
    hidden_size: H.
    nonlinearity: "tanh" or "relu".
    identity_init: IRNN initialisation of W_hh (and of W_ih, unless given).
    identity_scale: the scale of the identity (Le et al. also try 0.01).
    use_bias: whether the cell has a bias.
    kernel_init: initializer for w_ih.
    recurrent_init: initializer for w_hh (overrides identity_init).
    param_dtype: dtype of the params.
  """
  base.check_hidden_size(hidden_size)
  if nonlinearity not in _NONLINEARITIES:
    raise ValueError(f"nonlinearity: expected one of {sorted(_NONLINEARITIES)}, "
                     f"got {nonlinearity!r}")
  phi = _NONLINEARITIES[nonlinearity]
  H = hidden_size
  if identity_init:
    kernel_init = kernel_init or jax.nn.initializers.normal(1e-3)
    recurrent_init = recurrent_init or base.identity_init(identity_scale)
  else:
    kernel_init = kernel_init or jax.nn.initializers.lecun_normal()
    recurrent_init = recurrent_init or jax.nn.initializers.orthogonal()

  def init(key, input_size: int) -> base.Params:
    if not isinstance(input_size, int) or input_size <= 0:
      raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
    k_ih, k_hh = jax.random.split(key)
    params = {
        "w_ih": base.init_param(kernel_init, k_ih, (input_size, H), param_dtype),
        "w_hh": base.init_param(recurrent_init, k_hh, (H, H), param_dtype),
    }
    if use_bias:
      params["b"] = jnp.zeros((H,), param_dtype)
    return params

  def step(params: base.Params, h: Array, x_t: Array):
    base.check_input_size(x_t, params["w_ih"], "simple_rnn")
    z = x_t @ params["w_ih"] + h @ params["w_hh"]  # [*B, H]
    if use_bias:
      z = z + params["b"]
    h_new = phi(z)
    return h_new, h_new

  return base.Cell(
      name="simple_rnn",
      hidden_size=H,
      init=init,
      initial_carry=base.zeros_carry(H, 1, None),
      step=step,
      input_size=lambda params: params["w_ih"].shape[0],
      hparams=dict(nonlinearity=nonlinearity, identity_init=identity_init,
                   identity_scale=identity_scale, use_bias=use_bias))


