"""Phased LSTM (Neil, Pfeiffer & Liu 2016): an LSTM opened by a learned time gate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnn_jax.cells import base
from rnn_jax.cells.lstm import LSTMState, lstm

Array = jax.Array


def time_gate(time: Array, log_tau: Array, shift: Array, r_on: Array,
              alpha: float) -> Array:
  """The openness k_t `[*B, H]` of the time gate at timestamps `time: [*B]`."""
  tau = jnp.exp(log_tau)
  phi = jnp.mod(time[..., None] - shift, tau) / tau  # [*B, H], phase in [0, 1)
  rising = 2.0 * phi / r_on
  falling = 2.0 - 2.0 * phi / r_on
  closed = alpha * phi
  return jnp.where(phi < 0.5 * r_on, rising, jnp.where(phi < r_on, falling, closed))


def phased_lstm(hidden_size: int, *, r_on: float = 0.05, leak: float = 1e-3,
                period_init_range: tuple[float, float] = (1.0, 1000.0),
                peephole: bool = False, forget_bias: float = 1.0,
                kernel_init: base.Initializer | None = None,
                recurrent_init: base.Initializer | None = None,
                param_dtype=jnp.float32) -> base.Cell:
  r"""Phased LSTM: an LSTM whose state only moves while its time gate is open.

  Each step receives x_t `[*B, D]` and a timestamp `time: [*B]` (any real
  numbers, so irregular sampling needs nothing else). With the LSTM proposal
  (c̃_t, h̃_t) = LSTM(x_t, (h_{t-1}, c_{t-1})), see `lstm` for its equations:

      τ     = exp(log_tau)                                   # period, kept in log space
      φ_t   = ((t - s) mod τ) / τ                            # phase in [0, 1)
      k_t   = 2 φ_t / r_on            if φ_t < r_on / 2      # opening
              2 - 2 φ_t / r_on        if φ_t < r_on          # closing
              α φ_t                   otherwise              # closed, leaking
      c_t   = k_t ⊙ c̃_t + (1 - k_t) ⊙ c_{t-1}
      h_t   = k_t ⊙ h̃_t + (1 - k_t) ⊙ h_{t-1}

  α = `leak` while training (`step(..., training=True)`) and 0 at evaluation,
  as in the paper. Every layer of a stack gets the same timestamps.

  Params: the `lstm` params (w_ih, w_hh, b, and peepholes if asked) plus
  `log_tau [H]`, `shift [H]` and `r_on [H]`. Init as in the paper: periods
  log-uniform in `period_init_range`, shifts uniform in [0, τ], r_on constant.
  All three are trainable; exclude them from the optimizer to freeze them.

  Args:
    hidden_size: H.
    r_on: initial open ratio.
    leak: α, the leak while the gate is closed during training.
    period_init_range: (min, max) of the log-uniform period initialisation.
    peephole: peephole connections in the underlying LSTM (the paper uses them).
    forget_bias: initial forget-gate bias of the underlying LSTM.
    kernel_init: initializer for w_ih.
    recurrent_init: initializer for w_hh.
    param_dtype: dtype of the params.

  Returns:
    A `Cell` with `uses_time=True` whose carry is `LSTMState`; its step is
    `step(params, carry, x_t, *, time, training=False)`.
  """
  base.check_hidden_size(hidden_size)
  lo, hi = period_init_range
  if not 0 < lo <= hi:
    raise ValueError(f"period_init_range: expected 0 < min <= max, got {period_init_range}")
  if not 0 < r_on <= 1:
    raise ValueError(f"r_on: expected a ratio in (0, 1], got {r_on}")
  H = hidden_size
  inner = lstm(H, forget_bias=forget_bias, peephole=peephole,
               kernel_init=kernel_init, recurrent_init=recurrent_init,
               param_dtype=param_dtype)

  def init(key, input_size: int) -> base.Params:
    k_lstm, k_tau, k_shift = jax.random.split(key, 3)
    params = inner.init(k_lstm, input_size)
    log_tau = jax.random.uniform(k_tau, (H,), param_dtype, math.log(lo), math.log(hi))
    params["log_tau"] = log_tau
    params["shift"] = jax.random.uniform(k_shift, (H,), param_dtype) * jnp.exp(log_tau)
    params["r_on"] = jnp.full((H,), r_on, param_dtype)
    return params

  def step(params: base.Params, carry: LSTMState, x_t: Array, *,
           time: Array | None = None, training: bool = False):
    if time is None:
      raise ValueError("time: phased_lstm needs a timestamp per example at every "
                       "step (pass `timestamps=[B, T]` to unroll)")
    time = jnp.asarray(time)
    if time.shape != x_t.shape[:-1]:
      raise ValueError(f"time: expected shape {tuple(x_t.shape[:-1])} (one timestamp "
                       f"per example), got {tuple(time.shape)}")
    (h_prop, c_prop), _ = inner.step(params, carry, x_t)
    k = time_gate(time.astype(h_prop.dtype), params["log_tau"], params["shift"],
                  params["r_on"], leak if training else 0.0)
    h_prev, c_prev = carry
    c = k * c_prop + (1.0 - k) * c_prev
    h = k * h_prop + (1.0 - k) * h_prev
    return LSTMState(h, c), h

  return base.Cell(
      name="phased_lstm",
      hidden_size=H,
      init=init,
      initial_carry=inner.initial_carry,
      step=step,
      input_size=inner.input_size,
      step_kwargs=frozenset({"time", "training"}),
      hparams=dict(r_on=r_on, leak=leak, period_init_range=period_init_range,
                   peephole=peephole, forget_bias=forget_bias))
