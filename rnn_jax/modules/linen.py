"""rnn_jax's layers as Flax Linen modules: `RNN`, `Bidirectional`, `Stack`, `LayerModule`.

    from rnn_jax import cells
    from rnn_jax.modules import linen as rnn_nn

    class Classifier(nn.Module):
      @nn.compact
      def __call__(self, tokens, lengths, training=False):            # tokens: [B, T]
        x = nn.Embed(1000, 64)(tokens)                                 # [B, T, E]
        ys, final = rnn_nn.RNN(cells.lstm(128))(x, seq_lengths=lengths,
                                                 training=training)    # ys: [B, T, H]
        return nn.Dense(10)(final.h)                                   # [B, K]

Each module is a thin adapter over a `rnn_jax.layers.Layer`: `__call__` takes what
`Layer.apply` takes (`seq_lengths`, `initial_carry`, `timestamps`, `training`, `key`) and
returns what it returns, `(ys, final_carry)`, with the library's padding rule (outputs past
each length are zero, the final carry is the one at the last valid step, `reverse` runs the
valid part backwards and keeps each output at its own position). The params sit in the
`params` collection as exactly the plain dict the layer's `init` makes (`RNN(lstm)`:
`{"w_ih", "w_hh", "b"}`; `Bidirectional`: `{"fw": ..., "bw": ...}`; `Stack`:
`{"layer_0": ..., ...}`), so `layer.apply(variables["params"], ...)` is the same function,
and `rnn_jax.unroll` picks its fused kernels inside a Flax model as it does outside.

Randomness: with `training=True`, a layer that draws masks (cells wrapped by
`rnn_jax.regularizers`, a stack's dropout) takes its key from `key=` if given, else from
the module's rng stream `rng_collection` ("dropout" by default: `model.apply(variables, x,
training=True, rngs={"dropout": key})`). With `training=False` nothing is drawn.

How it differs from `flax.linen.RNN`: it returns `(ys, final_carry)` (nn.RNN returns `ys`,
or `(carry, ys)` with `return_carry=True`); an LSTM's carry is `LSTMState(h, c)`, not
`(c, h)`; outputs past a length are zero; reverse outputs stay in place (nn.RNN's
`keep_order=True`). `rnn_jax.interop.flax` converts nn.RNN's cells and weights.

Flax's lifted transforms apply as to any module: `nn.jit`, `nn.remat`, `nn.vmap` (e.g. an
ensemble, `variable_axes={"params": 0}`) and `nn.scan` over a stack of identical layers
(`variable_axes={"params": 0}, split_rngs={"params": True}`). The fused kernels define
their backward pass with `jax.custom_vjp`: reverse mode only, as in `rnn_jax.unroll`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from rnn_jax import layers as rnn_layers
from rnn_jax.cells.base import Cell
from rnn_jax.modules import common


def _layer_params(module: nn.Module, layer: rnn_layers.Layer, input_size: int) -> dict:
  """Declares the layer's params in `module`'s `params` collection, one entry per key of
  `layer.init`'s dict, all drawn by ONE `layer.init` call (so the collection is exactly
  what `layer.init(key, input_size)` returns, for the first param's key)."""
  shapes = jax.eval_shape(lambda k: layer.init(k, input_size), jax.random.key(0))
  if not isinstance(shapes, dict):
    raise ValueError(f"layer: {layer.name}'s init returns {type(shapes).__name__}; the "
                     "Linen adapter needs a dict of params")
  made = {}

  def init(rng, name):
    if "params" not in made:
      made["params"] = layer.init(rng, input_size)
    return made["params"][name]

  return {name: common.plain(module.param(name, init, name)) for name in shapes}


def _apply(module: nn.Module, layer: rnn_layers.Layer, draws_masks: bool | None, xs, *,
           seq_lengths, initial_carry, timestamps, training, key):
  if getattr(xs, "ndim", None) != 3:
    raise ValueError(f"xs: expected a batch-major array [B, T, D], got "
                     f"{getattr(xs, 'shape', type(xs).__name__)}")
  params = _layer_params(module, layer, xs.shape[-1])
  if training and key is None and draws_masks is not False:
    if module.has_rng(module.rng_collection):
      key = module.make_rng(module.rng_collection)
    elif draws_masks:
      raise common.missing_rng_error(layer.name, module.rng_collection, "linen")
  return layer.apply(params, xs, seq_lengths=seq_lengths, initial_carry=initial_carry,
                     timestamps=timestamps, training=training, key=key)


class RNN(nn.Module):
  """`rnn_jax.layers.rnn(cell)` as a Linen module: one direction of `cell` over `[B, T, D]`.

  Attributes:
    cell: an rnn_jax `Cell` (e.g. `cells.lstm(128)`, or one wrapped by a regularizer).
    reverse: run each sequence's valid part backwards.
    unroll: `lax.scan` unroll factor.
    remat: rematerialise in the backward pass (see `rnn_jax.unroll`).
    rng_collection: the rng stream masks are drawn from when training.
  """
  cell: Cell
  reverse: bool = False
  unroll: int = 1
  remat: bool = False
  rng_collection: str = "dropout"

  @property
  def layer(self) -> rnn_layers.Layer:
    return common.rnn_layer(self.cell, self.reverse, self.unroll, self.remat)

  @nn.compact
  def __call__(self, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
               training: bool = False, key=None) -> tuple[jax.Array, Any]:
    """`(ys [B, T, H], final_carry)` for `xs [B, T, D]`; arguments as `Layer.apply`."""
    return _apply(self, self.layer, common.cell_draws_masks(self.cell), xs,
                  seq_lengths=seq_lengths, initial_carry=initial_carry,
                  timestamps=timestamps, training=training, key=key)


class Bidirectional(nn.Module):
  """`rnn_jax.layers.bidirectional` as a Linen module; params `{"fw": ..., "bw": ...}`.

  Attributes:
    cell: the forward cell.
    backward_cell: the backward cell; default `cell`'s architecture (its own params).
    merge: "concat" (`ys [B, T, 2H]`) or "sum" (`[B, T, H]`).
    unroll, remat, rng_collection: as `RNN`.
  """
  cell: Cell
  backward_cell: Cell | None = None
  merge: str = "concat"
  unroll: int = 1
  remat: bool = False
  rng_collection: str = "dropout"

  @property
  def layer(self) -> rnn_layers.Layer:
    return common.bidirectional_layer(self.cell, self.backward_cell, self.merge, self.unroll,
                                      self.remat)

  @nn.compact
  def __call__(self, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
               training: bool = False, key=None):
    """`(ys, (fw_carry, bw_carry))`; `initial_carry`, if given, is such a pair."""
    cells_ = (self.cell, self.backward_cell or self.cell)
    return _apply(self, self.layer, any(map(common.cell_draws_masks, cells_)), xs,
                  seq_lengths=seq_lengths, initial_carry=initial_carry,
                  timestamps=timestamps, training=training, key=key)


class Stack(nn.Module):
  """`rnn_jax.layers.stack` as a Linen module; params `{"layer_0": ..., ...}`.

  Attributes:
    layers: bottom first, each an rnn_jax `Cell` (run forwards, `layers.rnn(cell)`) or
      `Layer` (e.g. `rnn_jax.layers.bidirectional(cells.lstm(64))`).
    residual_from: first layer index with a residual connection, or None.
    dropout_rate: dropout between layers (when training, from the rng stream or `key`).
    dropout_per_sequence: one dropout mask per sequence instead of per step.
    rng_collection: as `RNN`.
  """
  layers: Sequence[Cell | rnn_layers.Layer]
  residual_from: int | None = None
  dropout_rate: float = 0.0
  dropout_per_sequence: bool = False
  rng_collection: str = "dropout"

  @property
  def layer(self) -> rnn_layers.Layer:
    return common.stack_layer(self.layers, self.residual_from, self.dropout_rate,
                              self.dropout_per_sequence)

  @nn.compact
  def __call__(self, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
               training: bool = False, key=None):
    """`(ys, finals)`, one final carry per layer; `initial_carry`, if given, likewise."""
    return _apply(self, self.layer, common.stack_draws_masks(self.layers, self.dropout_rate),
                  xs, seq_lengths=seq_lengths, initial_carry=initial_carry,
                  timestamps=timestamps, training=training, key=key)


class LayerModule(nn.Module):
  """Any `rnn_jax.layers.Layer` (one of your own too) as a Linen module.

  Attributes:
    layer: the layer; its `init` must return a dict.
    draws_masks: whether it draws random masks when training (None: unknown, so a key is
      taken from the rng stream when there is one, and the layer itself says if it needs
      one and none came).
    rng_collection: as `RNN`.
  """
  layer: rnn_layers.Layer
  draws_masks: bool | None = None
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
               training: bool = False, key=None):
    return _apply(self, self.layer, self.draws_masks, xs, seq_lengths=seq_lengths,
                  initial_carry=initial_carry, timestamps=timestamps, training=training,
                  key=key)
