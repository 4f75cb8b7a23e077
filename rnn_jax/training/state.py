"""The train state and the pure train step built from a loss function."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


class TrainState(NamedTuple):
  """Everything a run needs to continue exactly where it stopped.

  Attributes:
    step: int32 scalar, the number of train steps taken. The data position and
      the per-step key are functions of it (`batch_at(step)`,
      `fold_in(key, step)`), so it is all the progress there is to save.
    params: model params (a pytree of arrays).
    opt_state: optax state.
    extra: per-example state carried from one batch to the next, e.g. the
      LSTM carry of truncated BPTT, `[B, ...]` leaves sharded with the batch;
      `()` when there is none.
  """
  step: Array
  params: Any
  opt_state: Any
  extra: Any = ()


def create_state(params, optimizer: optax.GradientTransformation, extra=()) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), extra=extra)


LossFn = Callable[..., tuple[Array, tuple[Any, dict[str, Array]]]]


FINITE = "finite"   # the metric `make_train_step` adds: 1.0 if the update was applied


def tree_finite(tree) -> Array:
  """A bool scalar: no floating-point leaf of `tree` holds NaN or inf (jit-able)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    guard: bool = True):
  """Builds `train_step(state, batch, key) -> (state, metrics)`, pure and jit-able.

  Args:
    loss_fn: `loss_fn(params, extra, batch, key) -> (loss, (new_extra, metrics))`,
      where `loss` is what gets differentiated and `metrics` a dict of scalars.
    optimizer: the optax transformation (clipping and schedule included).
    guard: check the loss, the gradient's global norm and the updated params
      and optimizer state for NaN and inf before the update is applied. A
      step that fails the check returns the old params, optimizer state and
      extra (only `step` advances, past the batch) with the metric `finite`
      at 0; `loop.fit` then stops or skips it. One pass over the params.

  Returns:
    The step. Its metrics hold the loss fn's metrics plus `grad_norm` (before
    any clipping inside the optimizer), `loss` and, with `guard`, `finite`.
  """

  def train_step(state: TrainState, batch, key):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (extra, metrics)), grads = grad_fn(state.params, state.extra, batch, key)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                           extra=extra)
    if guard:
      finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
                & tree_finite((params, opt_state, extra)))
      # A cond, not a jnp.where per leaf: fused into the update's loops, the where changed
      # their rounding (one ulp of Adam's nu); the cond only picks buffers, so a guarded
      # step gives the same numbers as an unguarded one.
      skipped = state._replace(step=state.step + 1)
      new_state = jax.lax.cond(finite, lambda: new_state, lambda: skipped)
      metrics[FINITE] = finite.astype(jnp.float32)
    return new_state, metrics

  return train_step
