"""Layers built from cells: one direction, both directions, and stacks.

A layer is a pair of pure functions, like a cell but over whole sequences:

    layer = rnn_jax.layers.bidirectional(rnn_jax.cells.lstm(256))
    params = layer.init(key, input_size)
    ys, final_carry = layer.apply(params, xs, seq_lengths=lengths)   # xs: [B, T, D]

Every layer keeps the padding rule of `rnn_jax.unroll` (outputs past a
sequence's length are zero, final carries at the last valid step).
`layer.output_size(input_size)` says how wide `ys` is, so stacks can size the
next layer.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from rnn_jax import regularizers
from rnn_jax.cells.base import Cell
from rnn_jax.unroll import unroll as _unroll

Array = jax.Array


class Layer(NamedTuple):
  """A sequence layer as pure functions.

  Attributes:
    name: what the layer is, e.g. "bidirectional(lstm)".
    init: `init(key, input_size) -> params`.
    apply: `apply(params, xs, *, seq_lengths=None, initial_carry=None,
      timestamps=None, training=False, key=None) -> (ys, final_carry)`.
    output_size: `output_size(input_size) -> width of ys`.
    cells: the cells it runs, for code that schedules layers itself
      (`rnn_jax.pipeline`): `(cell,)` for `rnn`, `(forward, backward)` for
      `bidirectional`, `()` for a stack or a layer of your own.
    direction: "forward" or "reverse" (`rnn`), "bidirectional:concat" or
      "bidirectional:sum", or "" (unknown to schedulers).
  """
  name: str
  init: Callable[[Array, int], Any]
  apply: Callable[..., tuple[Array, Any]]
  output_size: Callable[[int], int]
  cells: tuple = ()
  direction: str = ""


def rnn(cell: Cell, *, reverse: bool = False, unroll: int = 1,
        remat: bool = False, implementation: str = "auto") -> Layer:
  """One direction of `cell` over the sequence; params are the cell's params.

  Args:
    cell: a `Cell`.
    reverse: run each sequence's valid part backwards.
    unroll: `lax.scan` unroll factor.
    remat: rematerialise each step in the backward pass.
    implementation: `unroll`'s ("auto", "scan", "fused", "pallas", "onednn").
  """

  def apply(params, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
            training=False, key=None):
    return _unroll(cell, params, xs, seq_lengths=seq_lengths, reverse=reverse,
                   initial_carry=initial_carry, timestamps=timestamps,
                   training=training, key=key, unroll=unroll, remat=remat,
                   implementation=implementation)

  return Layer(name=f"rnn({cell.name}{', reverse' if reverse else ''})",
               init=cell.init, apply=apply, output_size=lambda _: cell.hidden_size,
               cells=(cell,), direction="reverse" if reverse else "forward")


_MERGES = ("concat", "sum")


def bidirectional(cell: Cell, backward_cell: Cell | None = None, *,
                  merge: str = "concat", unroll: int = 1,
                  remat: bool = False, implementation: str = "auto") -> Layer:
  """A forward and a backward pass over each sequence, merged per step.

  `ys[b, t]` is `concat(fw[b, t], bw[b, t])` (`[B, T, 2H]`) or their sum
  (`[B, T, H]`), where `bw[b, t]` has read `xs[b, t:len_b]`. Params are
  `{"fw": ..., "bw": ...}`; the final carry is the pair `(fw_carry, bw_carry)`,
  the backward one taken after reaching t = 0.

  Args:
    cell: the forward cell.
    backward_cell: the backward cell; default the same architecture as `cell`
      (with its own params).
    merge: "concat" or "sum".
    unroll: `lax.scan` unroll factor.
    remat: rematerialise each step in the backward pass.
    implementation: `unroll`'s, for both directions.
  """
  if merge not in _MERGES:
    raise ValueError(f"merge: expected one of {_MERGES}, got {merge!r}")
  backward_cell = backward_cell or cell
  if merge == "sum" and backward_cell.hidden_size != cell.hidden_size:
    raise ValueError("merge: 'sum' needs both directions to have the same hidden "
                     f"size, got {cell.hidden_size} and {backward_cell.hidden_size}")
  forward = rnn(cell, unroll=unroll, remat=remat, implementation=implementation)
  backward = rnn(backward_cell, reverse=True, unroll=unroll, remat=remat,
                 implementation=implementation)

  def init(key, input_size):
    k_fw, k_bw = jax.random.split(key)
    return {"fw": forward.init(k_fw, input_size), "bw": backward.init(k_bw, input_size)}

  def apply(params, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
            training=False, key=None):
    carry_fw, carry_bw = (None, None) if initial_carry is None else initial_carry
    key_fw, key_bw = (None, None) if key is None else jax.random.split(key)
    common = dict(seq_lengths=seq_lengths, timestamps=timestamps, training=training)
    ys_fw, final_fw = forward.apply(params["fw"], xs, initial_carry=carry_fw, key=key_fw,
                                    **common)
    ys_bw, final_bw = backward.apply(params["bw"], xs, initial_carry=carry_bw, key=key_bw,
                                     **common)
    if merge == "concat":
      ys = jnp.concatenate([ys_fw, ys_bw], axis=-1)  # [B, T, H_fw + H_bw]
    else:
      ys = ys_fw + ys_bw  # [B, T, H]
    return ys, (final_fw, final_bw)

  def output_size(_):
    if merge == "concat":
      return cell.hidden_size + backward_cell.hidden_size
    return cell.hidden_size

  return Layer(name=f"bidirectional({cell.name}, {merge})", init=init, apply=apply,
               output_size=output_size, cells=(cell, backward_cell),
               direction=f"bidirectional:{merge}")


def _mask_padding(ys: Array, seq_lengths: Array | None) -> Array:
  if seq_lengths is None:
    return ys
  valid = jnp.arange(ys.shape[1])[None, :] < jnp.asarray(seq_lengths)[:, None]  # [B, T]
  return jnp.where(valid[..., None], ys, jnp.zeros_like(ys))


def stack(layers: Sequence[Layer], *, residual_from: int | None = None,
          dropout_rate: float = 0.0, dropout_per_sequence: bool = False) -> Layer:
  """L layers on top of each other, with residuals and dropout between them.

  For layer l (0-based) with input x_l:

      y_l     = layer_l(dropout(x_l))   if l > 0, else layer_0(x_0)
      x_{l+1} = y_l + x_l               if residual_from is not None and l >= residual_from
      x_{l+1} = y_l                     otherwise

  so `residual_from=2` gives GNMT's residual connections "from the third layer
  on" (Wu et al. 2016). The residual adds the input before dropout, as in
  GNMT's equations. Dropout (inverted, `rate = dropout_rate`) acts only on the
  connections between layers, never on the recurrence (Zaremba et al. 2014);
  it needs `training=True` and a `key`, one fresh key per layer folded from it.
  With `dropout_per_sequence` each sequence keeps one mask for all its steps
  (Gal & Ghahramani 2016) instead of a fresh mask per step.
  Outputs past each length stay zero.

  Params are `{"layer_0": ..., "layer_1": ...}`; the final carry is a tuple with
  one entry per layer; `initial_carry`, if given, is such a tuple too.

  Args:
    layers: the layers, bottom first.
    residual_from: first layer index with a residual connection, or None.
    dropout_rate: dropout probability between layers.
    dropout_per_sequence: share each dropout mask over the time axis.
  """
  layers = tuple(layers)
  broadcast_dims = (1,) if dropout_per_sequence else ()
  if not layers:
    raise ValueError("layers: a stack needs at least one layer")
  if residual_from is not None and not 0 <= residual_from < len(layers):
    raise ValueError(f"residual_from: expected an index in [0, {len(layers)}) or None, "
                     f"got {residual_from}")
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate: expected a value in [0, 1), got {dropout_rate}")

  def has_residual(l):
    return residual_from is not None and l >= residual_from

  def init(key, input_size):
    params = {}
    size = input_size
    for l, (layer, k) in enumerate(zip(layers, jax.random.split(key, len(layers)))):
      params[f"layer_{l}"] = layer.init(k, size)
      out = layer.output_size(size)
      if has_residual(l) and out != size:
        raise ValueError(f"residual_from: layer {l} ({layer.name}) maps width {size} to "
                         f"{out}; a residual connection needs equal widths")
      size = out
    return params

  def apply(params, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
            training=False, key=None):
    if training and dropout_rate > 0 and key is None:
      raise ValueError("key: a stack with dropout_rate > 0 needs a PRNG key when "
                       "training=True")
    if initial_carry is not None and len(initial_carry) != len(layers):
      raise ValueError(f"initial_carry: expected one carry per layer ({len(layers)}), "
                       f"got {len(initial_carry)}")
    finals = []
    x = xs
    for l, layer in enumerate(layers):
      layer_in = x
      if l > 0 and training and dropout_rate > 0:
        layer_in = regularizers.dropout(jax.random.fold_in(key, l), x, dropout_rate,
                                        broadcast_dims=broadcast_dims)
      carry = None if initial_carry is None else initial_carry[l]
      layer_key = None if key is None else jax.random.fold_in(key, len(layers) + l)
      y, final = layer.apply(params[f"layer_{l}"], layer_in, seq_lengths=seq_lengths,
                             initial_carry=carry, timestamps=timestamps,
                             training=training, key=layer_key)
      x = _mask_padding(y + x, seq_lengths) if has_residual(l) else y
      finals.append(final)
    return x, tuple(finals)

  def output_size(input_size):
    size = input_size
    for layer in layers:
      size = layer.output_size(size)
    return size

  return Layer(name=f"stack({', '.join(layer.name for layer in layers)})", init=init,
               apply=apply, output_size=output_size)
