"""What the Linen and NNX adapters share: the `Layer` each module builds, and whether it
draws random masks (so that `training=True` without a key fails early, naming the rng)."""

from __future__ import annotations

from typing import Mapping, Sequence

from rnn_jax import layers
from rnn_jax.cells.base import Cell

MERGES = ("concat", "sum")


def plain(tree):
  """Nested mappings as plain dicts. Inside NNX's transforms a Param's dict value comes back
  as an `nnx.State`, and Linen may hold a `FrozenDict`; the fused kernels' `custom_vjp`
  needs the same container in and out."""
  if isinstance(tree, Mapping):
    return {k: plain(v) for k, v in tree.items()}
  return tree


def as_layer(entry: Cell | layers.Layer) -> layers.Layer:
  """A stack entry as a `Layer`: a `Cell` becomes `layers.rnn(cell)`."""
  if isinstance(entry, Cell):
    return layers.rnn(entry)
  if isinstance(entry, layers.Layer):
    return entry
  raise ValueError(f"layers: expected rnn_jax Cells or Layers, got {type(entry).__name__}")


def cell_draws_masks(cell: Cell) -> bool:
  """True for cells that draw random masks when training (the `rnn_jax.regularizers`
  wrappers): they take a `key`."""
  return "key" in cell.step_kwargs


def stack_draws_masks(entries: Sequence[Cell | layers.Layer],
                      dropout_rate: float) -> bool | None:
  """True if the stack draws masks when training, False if it surely does not, None when
  an entry is a `Layer` (whose randomness cannot be read off it)."""
  if dropout_rate > 0 or any(isinstance(e, Cell) and cell_draws_masks(e) for e in entries):
    return True
  if all(isinstance(e, Cell) for e in entries):
    return False
  return None


def rnn_layer(cell: Cell, reverse: bool, unroll: int, remat: bool) -> layers.Layer:
  if not isinstance(cell, Cell):
    raise ValueError(f"cell: expected an rnn_jax Cell (e.g. rnn_jax.cells.lstm(64)), got "
                     f"{type(cell).__name__}")
  return layers.rnn(cell, reverse=reverse, unroll=unroll, remat=remat)


def bidirectional_layer(cell: Cell, backward_cell: Cell | None, merge: str, unroll: int,
                        remat: bool) -> layers.Layer:
  for name, c in (("cell", cell), ("backward_cell", backward_cell)):
    if c is not None and not isinstance(c, Cell):
      raise ValueError(f"{name}: expected an rnn_jax Cell, got {type(c).__name__}")
  return layers.bidirectional(cell, backward_cell, merge=merge, unroll=unroll, remat=remat)


def stack_layer(entries: Sequence[Cell | layers.Layer], residual_from: int | None,
                dropout_rate: float, dropout_per_sequence: bool) -> layers.Layer:
  return layers.stack([as_layer(e) for e in entries], residual_from=residual_from,
                      dropout_rate=dropout_rate, dropout_per_sequence=dropout_per_sequence)


def missing_rng_error(layer_name: str, rng_collection: str, api: str) -> ValueError:
  if api == "linen":
    how = (f"pass rngs={{'{rng_collection}': key}} to `apply` (or `key=` to the call)")
  else:
    how = (f"build the module with rngs=nnx.Rngs(params=..., {rng_collection}=...), or pass "
           f"`rngs=` or `key=` to the call")
  return ValueError(f"rngs: {layer_name} draws random masks when training; {how}")
