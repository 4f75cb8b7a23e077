"""Optimizers by name, with global-norm clipping: what the experiments share."""

from __future__ import annotations

from typing import Callable

import optax

OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam, "rmsprop": optax.rmsprop}


def optimizer(name: str, learning_rate: float | Callable, max_grad_norm: float = 0.0):
  """`optax` optimizer `name` ("sgd", "adam" or "rmsprop") with `learning_rate` (a float or a schedule),
  after clipping the gradient's global norm to `max_grad_norm` (0: no clipping)."""
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {name!r}")
  opt = OPTIMIZERS[name](learning_rate)
  if max_grad_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(max_grad_norm), opt)
  return opt


def warmup_decay_schedule(learning_rate: float, num_steps: int, *, warmup_steps: int = 0,
                          decay: str = "constant"):
  """Linear warmup from `learning_rate / warmup_steps` to `learning_rate` over
  `warmup_steps`, then constant or ("cosine") a cosine decay to 0 at `num_steps`."""
  if decay not in ("constant", "cosine"):
    raise ValueError(f"decay: expected constant or cosine, got {decay!r}")
  warmup = max(warmup_steps, 0)
  if decay == "cosine":
    after = optax.cosine_decay_schedule(learning_rate, max(num_steps - warmup, 1))
  else:
    after = optax.constant_schedule(learning_rate)
  if warmup == 0:
    return after
  return optax.join_schedules(
      [optax.linear_schedule(learning_rate / warmup, learning_rate, warmup), after], [warmup])
