"""The cell contract shared by every recurrent cell.

A cell is a bundle of pure functions closed over its hyperparameters:

    cell = rnn_jax.cells.lstm(hidden_size=512, peephole=True)
    params = cell.init(key, input_size)            # plain dict of arrays
    carry = cell.initial_carry(batch_shape)        # e.g. LSTMState(h, c)
    carry, y = cell.step(params, carry, x_t)       # x_t: [*batch_shape, D]

Params come first, so `functools.partial(cell.step, params)` is a scan body and
`jax.grad` differentiates params by default. Cells that read a timestamp per
step (Phased LSTM) declare `uses_time=True` and take it as `step(..., time=t)`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Any]
Initializer = Callable[..., Array]


class Cell(NamedTuple):
  """A recurrent cell as pure functions.

  Attributes:
    name: short name of the cell, e.g. "lstm".
    hidden_size: H, the size of the output y_t.
    init: `init(key, input_size) -> params`.
    initial_carry: `initial_carry(batch_shape, dtype=float32) -> carry` (zeros).
    step: `step(params, carry, x_t, **kw) -> (carry, y_t)`.
    input_size: `input_size(params) -> D`, read off the params.
    step_kwargs: names of the keyword arguments `step` takes beyond
      `(params, carry, x_t)`: "time" (a timestamp per example, `[*B]`) and
      "training" (a bool mode flag) are the ones `unroll` knows how to pass.
    hparams: the hyperparameters the cell was built with (for repr and docs).
  """
  name: str
  hidden_size: int
  init: Callable[[Array, int], Params]
  initial_carry: Callable[..., Any]
  step: Callable[..., tuple[Any, Array]]
  input_size: Callable[[Params], int]
  step_kwargs: frozenset[str] = frozenset()
  hparams: dict[str, Any] = {}

  @property
  def uses_time(self) -> bool:
    """True when `step` needs `time=`, a timestamp per example."""
    return "time" in self.step_kwargs


def init_param(init: Initializer, key: Array, shape, dtype) -> Array:
  """Runs `init` in float32 and casts: QR (orthogonal) has no bfloat16 kernel."""
  return init(key, shape, jnp.float32).astype(dtype)


def stacked_init(init: Initializer, num_blocks: int) -> Initializer:
  """An initializer for `[rows, num_blocks * H]` that inits each H-wide block apart.

  Gate matrices are stored fused (`[D, 4H]` for an LSTM), but schemes such as
  orthogonal initialisation are meant per gate.
  """

  def init_fn(key, shape, dtype=jnp.float32):
    rows, cols = shape
    if cols % num_blocks:
      raise ValueError(f"{cols} columns do not split into {num_blocks} blocks")
    keys = jax.random.split(key, num_blocks)
    blocks = [init(k, (rows, cols // num_blocks), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)

  return init_fn


def identity_init(scale: float = 1.0) -> Initializer:
  """`scale * I` for a square recurrent matrix (IRNN, Le et al. 2015)."""

  def init_fn(key, shape, dtype=jnp.float32):
    del key
    rows, cols = shape
    if rows != cols:
      raise ValueError(f"identity init needs a square matrix, got {shape}")
    return scale * jnp.eye(rows, dtype=dtype)

  return init_fn


def uniform_init(scale: float) -> Initializer:
  """U(-scale, scale), the init of Zaremba et al. and of PyTorch (scale = 1/sqrt(H))."""

  def init_fn(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init_fn


def check_input_size(x_t: Array, w_ih: Array, cell_name: str) -> None:
  """Raises a ValueError naming `x_t` when its last axis is not the cell's D."""
  if x_t.shape[-1] != w_ih.shape[0]:
    raise ValueError(
        f"x_t: {cell_name} params expect input size D={w_ih.shape[0]}, "
        f"got an input of shape {tuple(x_t.shape)} (last axis {x_t.shape[-1]})")


def check_hidden_size(hidden_size: int) -> None:
  if not isinstance(hidden_size, int) or hidden_size <= 0:
    raise ValueError(f"hidden_size: expected a positive int, got {hidden_size!r}")


def zeros_carry(hidden_size: int, num_states: int, state_type):
  """Builds `initial_carry(batch_shape, dtype)` returning zeros of `[*batch, H]`."""

  def initial_carry(batch_shape=(), dtype=jnp.float32):
    if isinstance(batch_shape, int):
      batch_shape = (batch_shape,)
    shape = (*batch_shape, hidden_size)
    if state_type is None:
      return jnp.zeros(shape, dtype)
    # Distinct buffers, so that donating a carry never donates one buffer twice.
    return state_type(*(jnp.zeros(shape, dtype) for _ in range(num_states)))

  return initial_carry
