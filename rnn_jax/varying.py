"""Types inside `jax.shard_map`: which mesh axes a value varies over.

With `check_vma` on (jax's default), `shard_map` types every value by the mesh
axes it varies over. Two rules follow for sequence code:
  * `lax.scan` needs its carry to have one type in and out, so a zero (or
    replicated) initial carry must be cast to vary like the batch-split inputs
    (`varying_like`; `rnn_jax.unroll` does it);
  * a `custom_vjp` backward rule must return, for an input that does not vary
    (the replicated params), a gradient that does not vary either: the sum over
    the devices (`cotangent_like`; the fused and Pallas kernels do it).
Outside `shard_map` every function here returns its input as it is.
"""

from __future__ import annotations

import jax

Array = jax.Array


def varying_axes(a) -> frozenset:
  """The `jax.shard_map` mesh axes `a` varies over (empty outside `shard_map`). jax 0.10
  keeps them in `typeof(a).manual_axis_type.varying`; other versions as `typeof(a).vma`."""
  aval = jax.typeof(a)
  axes = getattr(aval, "vma", None)
  if axes is None:
    axes = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
  return frozenset(axes or ())


def varying_over(tree, axes):
  """`tree` cast to vary over the mesh `axes` too (`jax.lax.pcast`, no data moves)."""
  axes = frozenset(axes)
  if not axes or not hasattr(jax.lax, "pcast"):
    return tree

  def cast(a):
    missing = tuple(sorted(axes - varying_axes(a)))
    return jax.lax.pcast(a, missing, to="varying") if missing else a

  return jax.tree_util.tree_map(cast, tree)


def varying_like(tree, like: Array):
  """`tree` cast to vary over the mesh axes `like` varies over: the initial carry of a
  scan over the batch-split `like`."""
  return varying_over(tree, varying_axes(like))


def cotangent_like(g: Array, primal) -> Array:
  """`g`, the gradient of an input that does not vary over some `shard_map` axes (the
  replicated params) while the batch does, summed over those axes: what jax's own
  autodiff does there (the transpose of the implicit broadcast is a psum), and what
  `custom_vjp` requires of a backward rule."""
  extra = varying_axes(g) - varying_axes(primal)
  return jax.lax.psum(g, tuple(sorted(extra))) if extra else g
