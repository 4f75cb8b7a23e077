"""Regularizers for recurrent networks; every random mask comes from an explicit key."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def dropout(key: Array, x: Array, rate: float, *, broadcast_dims: tuple[int, ...] = ()) -> Array:
  """Inverted dropout: zeroes each entry with probability `rate`, scales the rest by 1/(1-rate).

  Args:
    key: PRNG key.
    x: the array to drop from.
    rate: drop probability in [0, 1).
    broadcast_dims: axes along which one mask value is shared, e.g. `(1,)` on
      `[B, T, D]` reuses one mask at every time step (a per-sequence mask).

  Returns:
    An array like `x`. With `rate == 0` it returns `x` itself.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"rate: expected a drop probability in [0, 1), got {rate}")
  if rate == 0.0:
    return x
  mask_shape = tuple(1 if d in broadcast_dims else n for d, n in enumerate(x.shape))
  keep = jax.random.bernoulli(key, 1.0 - rate, mask_shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
