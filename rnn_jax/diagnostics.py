"""Diagnostics of recurrent networks: how the loss's gradient flows back through time.

`hidden_state_gradients` returns dLoss/dh_t for every step t: the total
derivative of the loss with respect to the hidden state h_t, through every
path that leaves step t (the output y_t and the carry into step t + 1). Its
norm as a function of t is the lecture's picture of vanishing and exploding
gradients: for a tanh RNN it decays geometrically with the distance from the
loss, for an LSTM the cell's additive path lets it through.

It is computed exactly, with one backward pass: the cell is wrapped so that
each step returns h̃_t = h_t + ε_t, with ε_t a zero input, and the gradient
with respect to ε is dLoss/dh_t.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rnn_jax.cells.base import Cell
from rnn_jax.cells.lstm import LSTMState
from rnn_jax.unroll import unroll

Array = jax.Array


def _add_to_h(carry, eps):
  """`carry` with `eps` added to its hidden state h (LSTMState.h, or the carry itself)."""
  if isinstance(carry, LSTMState):
    return LSTMState(carry.h + eps, carry.c)
  if isinstance(carry, jax.Array) or hasattr(carry, "shape"):
    return carry + eps
  raise TypeError(f"hidden_state_gradients: cannot find h in a carry of type "
                  f"{type(carry).__name__}; expected an array or LSTMState")


def perturbed(cell: Cell) -> Cell:
  """`cell` with an additive perturbation of h_t as extra input: x̃_t = [x_t, ε_t] `[*B, D + H]`.

  The step computes (carry, y) from x_t as `cell` does, then adds ε_t to the
  carry's h and to y_t (which equals h_t for every cell of `rnn_jax.cells`).
  With ε = 0 the outputs are the same as `cell`'s; the gradient with respect
  to ε_t is dLoss/dh_t.
  """
  H = cell.hidden_size

  def step(params, carry, x_t, **kwargs):
    x, eps = x_t[..., :-H], x_t[..., -H:]
    new_carry, y = cell.step(params, carry, x, **kwargs)
    return _add_to_h(new_carry, eps), y + eps

  return cell._replace(name=f"perturbed_{cell.name}", step=step,
                       input_size=lambda params: cell.input_size(params) + H)


def hidden_state_gradients(cell: Cell, params, xs: Array,
                           loss_fn: Callable[[Array, Any], Array], **unroll_kwargs) -> Array:
  """dLoss/dh_t `[B, T, H]` for `loss = loss_fn(ys, final_carry)` with `ys, final_carry = unroll(...)`.

  Args:
    cell: any cell whose carry is h or an `LSTMState`.
    params: the cell's params.
    xs: inputs `[B, T, D]`.
    loss_fn: `loss_fn(ys [B, T, H], final_carry) -> scalar`.
    **unroll_kwargs: passed to `unroll` (seq_lengths, timestamps, reverse, ...).

  Returns:
    `[B, T, H]`: entry `[b, t]` is the derivative of the loss with respect to
    h_t of example b. Steps past a sequence's length get zero.
  """
  B, T, _ = xs.shape
  wrapped = perturbed(cell)
  unroll_kwargs = dict(unroll_kwargs, implementation="scan")

  def loss_of_eps(eps):
    ys, final = unroll(wrapped, params, jnp.concatenate([xs, eps], axis=-1), **unroll_kwargs)
    return loss_fn(ys, final)

  return jax.grad(loss_of_eps)(jnp.zeros((B, T, cell.hidden_size), xs.dtype))


def gradient_norms(grads: Array) -> Array:
  """`[T]`: the batch mean of ||dLoss/dh_t||_2, from `hidden_state_gradients`'s `[B, T, H]`."""
  return jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0)
