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
