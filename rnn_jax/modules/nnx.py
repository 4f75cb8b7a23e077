"""rnn_jax's layers as Flax NNX modules: `RNN`, `Bidirectional`, `Stack`, `LayerModule`.

    from flax import nnx
    from rnn_jax import cells
    from rnn_jax.modules import nnx as rnn_nnx

    rnn = rnn_nnx.RNN(cells.lstm(128), input_size=64, rngs=nnx.Rngs(params=0, dropout=1))
    ys, final = rnn(xs, seq_lengths=lengths)          # xs: [B, T, 64] -> ys: [B, T, 128]

The NNX twins of `rnn_jax.modules.linen`: each module holds `params`, an `nnx.Dict` laid
out as the plain dict the `rnn_jax.layers.Layer` makes, one `nnx.Param` per array
(`nnx.to_pure_dict(nnx.state(rnn, nnx.Param))["params"]` is `{"w_ih", "w_hh", "b"}` for an
LSTM; `rnn.param_dict()` reads it), and `__call__` is `Layer.apply` on that dict: the same
arguments, `(ys, final_carry)` back, the library's padding rule, its fused kernels.

Training mode follows NNX: `training=None` (the default) reads `not self.deterministic`,
which `model.train()` / `model.eval()` set (modules start in eval mode, `training=False`,
like `rnn_jax.layers`). When training, a layer that draws masks (regularizer-wrapped cells,
a stack's dropout) takes its key from `key=`, else from `rngs=` given to the call (an
`nnx.Rngs`, `RngStream` or key), else from the stream `rng_collection` ("dropout") of the
`rngs` the module was built with, as `nnx.Dropout` does.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from flax import nnx

from rnn_jax import layers as rnn_layers
from rnn_jax.cells.base import Cell
from rnn_jax.modules import common


def _variables(tree):
  """A layer's params dict as nested `nnx.Dict`s of `nnx.Param`s."""
  if isinstance(tree, dict):
    return nnx.Dict({k: _variables(v) for k, v in tree.items()})
  return nnx.Param(tree)


def _arrays(tree):
  """The inverse of `_variables`: plain dicts of arrays."""
  if isinstance(tree, nnx.Variable):
    return tree[...]
  return {k: _arrays(v) for k, v in tree.items()}


def _stream(rngs: nnx.Rngs, rng_collection: str):
  """The module's own fork of `rngs[rng_collection]` (or of its default), else None."""
  try:
    return rngs[rng_collection].fork()
  except (KeyError, AttributeError):
    return None


class LayerModule(nnx.Module):
  """Any `rnn_jax.layers.Layer` as an NNX module (the base of the others).

  Args:
    layer: the layer.
    input_size: D, the width of `xs`.
    draws_masks: whether it draws random masks when training (None: unknown).
    deterministic: eval mode (`training=False`) unless a call says otherwise.
    rng_collection: the stream masks are drawn from.
    rngs: `nnx.Rngs`; its `params` stream (or default) draws the params.
  """

  def __init__(self, layer: rnn_layers.Layer, input_size: int, *,
               draws_masks: bool | None = None, deterministic: bool = True,
               rng_collection: str = "dropout", rngs: nnx.Rngs):
    if not isinstance(layer, rnn_layers.Layer):
      raise ValueError(f"layer: expected an rnn_jax.layers.Layer, got {type(layer).__name__}")
    self.layer = layer
    self.input_size = input_size
    self.draws_masks = draws_masks
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    self.params = _variables(layer.init(rngs.params(), input_size))
    self.rngs = nnx.data(_stream(rngs, rng_collection) if draws_masks is not False else None)

  def param_dict(self) -> dict:
    """The params as the layer's plain dict of arrays."""
    return _arrays(self.params)

  def _key(self, training: bool, key, rngs):
    if not training or key is not None or self.draws_masks is False:
      return key
    if isinstance(rngs, nnx.Rngs):
      return rngs[self.rng_collection]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if rngs is not None:
      return rngs  # a key
    if self.rngs is not None:
      return self.rngs()
    if self.draws_masks:
      raise common.missing_rng_error(self.layer.name, self.rng_collection, "nnx")
    return None

  def __call__(self, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
               training: bool | None = None, key=None, rngs=None) -> tuple[jax.Array, Any]:
    """`(ys, final_carry)` for `xs [B, T, D]`; arguments as `Layer.apply`, plus `rngs`."""
    if training is None:
      training = not self.deterministic
    key = self._key(training, key, rngs)
    return self.layer.apply(self.param_dict(), xs, seq_lengths=seq_lengths,
                            initial_carry=initial_carry, timestamps=timestamps,
                            training=training, key=key)


class RNN(LayerModule):
  """`rnn_jax.layers.rnn(cell)` as an NNX module.

  Args:
    cell: an rnn_jax `Cell`.
    input_size: D.
    reverse, unroll, remat: as `rnn_jax.layers.rnn`.
    deterministic, rng_collection, rngs: as `LayerModule`.
  """

  def __init__(self, cell: Cell, input_size: int, *, reverse: bool = False, unroll: int = 1,
               remat: bool = False, deterministic: bool = True,
               rng_collection: str = "dropout", rngs: nnx.Rngs):
    super().__init__(common.rnn_layer(cell, reverse, unroll, remat), input_size,
                     draws_masks=common.cell_draws_masks(cell), deterministic=deterministic,
                     rng_collection=rng_collection, rngs=rngs)


class Bidirectional(LayerModule):
  """`rnn_jax.layers.bidirectional` as an NNX module; params `{"fw": ..., "bw": ...}`.

  Args:
    cell: the forward cell.
    input_size: D.
    backward_cell: the backward cell; default `cell`'s architecture (its own params).
    merge: "concat" or "sum".
    unroll, remat, deterministic, rng_collection, rngs: as `RNN`.
  """

  def __init__(self, cell: Cell, input_size: int, *, backward_cell: Cell | None = None,
               merge: str = "concat", unroll: int = 1, remat: bool = False,
               deterministic: bool = True, rng_collection: str = "dropout", rngs: nnx.Rngs):
    draws = any(map(common.cell_draws_masks, (cell, backward_cell or cell)))
    super().__init__(common.bidirectional_layer(cell, backward_cell, merge, unroll, remat),
                     input_size, draws_masks=draws, deterministic=deterministic,
                     rng_collection=rng_collection, rngs=rngs)


class Stack(LayerModule):
  """`rnn_jax.layers.stack` as an NNX module; params `{"layer_0": ..., ...}`.

  Args:
    layers: bottom first, each an rnn_jax `Cell` (run forwards) or `Layer`.
    input_size: D.
    residual_from, dropout_rate, dropout_per_sequence: as `rnn_jax.layers.stack`.
    deterministic, rng_collection, rngs: as `RNN`.
  """

  def __init__(self, layers: Sequence[Cell | rnn_layers.Layer], input_size: int, *,
               residual_from: int | None = None, dropout_rate: float = 0.0,
               dropout_per_sequence: bool = False, deterministic: bool = True,
               rng_collection: str = "dropout", rngs: nnx.Rngs):
    super().__init__(
        common.stack_layer(layers, residual_from, dropout_rate, dropout_per_sequence),
        input_size, draws_masks=common.stack_draws_masks(layers, dropout_rate),
        deterministic=deterministic, rng_collection=rng_collection, rngs=rngs)
