"""Pipelined stacks: a stack's layers spread over the devices of a mesh axis and run as a
wavefront over time (GNMT's model parallelism, Wu et al. 2016, Section 3).

    mesh = jax.make_mesh((4,), ("layers",))
    layer = rnn_jax.pipeline.stack(
        [layers.bidirectional(cells.lstm(H))] + [layers.rnn(cells.lstm(H)) for _ in range(7)],
        mesh=mesh, axis="layers", residual_from=2, dropout_rate=0.2)
    params = layer.init(key, D)            # the params of rnn_jax.layers.stack(...)
    ys, finals = layer.apply(params, xs, seq_lengths=lengths, training=True, key=key)

`stack` takes the arguments of `rnn_jax.layers.stack` and gives the same params, outputs,
final carries and dropout masks (the same keys); only where and when the work runs
differs.

Placement. The L layers are cut into P contiguous groups, one per device of the mesh
axis, as even as possible with the larger groups last (`placement(L, P)`: 8 layers on 2
devices are 0-3 and 4-7). A bi-directional bottom layer needs the whole sequence before
anything above it can start, so it runs first, its forward direction on device 0 and its
backward direction on device 1 at the same time (both on device 0 when P = 1).

Schedule. The uni-directional layers above form the wavefront: each device holding any of
them is a stage, S stages in all. At wavefront step s, stage p runs its layers, bottom to
top, at time step t = s - p (t = T - 1 - (s - p) when the layers run in reverse), then
sends its top layer's output to stage p + 1 with `jax.lax.ppermute` inside
`jax.shard_map`. While stage p + 1 works on step t - 1, stage p works on step t. The
pipeline fills and drains over T + S - 1 steps, a bubble of (T + S - 1) / T; each step's
layers run one `cell.step` each (the per-step cost, not the fused kernels' hoisted input
projection: `benchmarks/pipeline.py` measures what that costs). Gradients are jax's own:
the transpose of the wavefront's scan runs it backwards in time with the ppermutes
reversed, so the backward pass is a wavefront too.

Padding, reverse, dropout: every layer keeps `rnn_jax.unroll`'s padding rule (a step past
a sequence's length leaves the carry and outputs zero); dropout between layers is drawn
for the whole `[B, T, D]` input exactly as `layers.stack` draws it and read one step at a
time. Params are replicated over the layers axis (each device reads only its own
layers'); a second mesh axis (`data_axis`) splits the batch too: data x layers.

`wavefront` is the engine without the stack around it, for models that schedule their own
layers: GNMT's decoder runs its upper layers through it with the attention context as a
side input to every layer (`experiments/gnmt/model.py`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from rnn_jax import regularizers
from rnn_jax.cells.base import Cell
from rnn_jax.layers import Layer
from rnn_jax.unroll import _where_valid, check_seq_lengths, unroll
from rnn_jax.varying import varying_axes, varying_over

Array = jax.Array


def placement(num_layers: int, num_devices: int) -> tuple[int, ...]:
  """How many consecutive layers each device holds: as even as possible, larger last."""
  if num_devices < 1:
    raise ValueError(f"num_devices: expected >= 1, got {num_devices}")
  base, extra = divmod(num_layers, num_devices)
  return tuple(base + (p >= num_devices - extra) for p in range(num_devices))


def _from_owner(tree, is_owner: Array, axis: str):
  """The owner device's `tree`, on every device: a psum of it and zeros."""
  return jax.tree_util.tree_map(
      lambda a: jax.lax.psum(jnp.where(is_owner, a, jnp.zeros_like(a)), axis), tree)


def _local_wavefront(cells: Sequence[Cell], params: Sequence[Any], xs: Array, carries,
                     *, axis: str, sizes: Sequence[int], reverse: bool, lengths, side,
                     keeps, rate: float, residual: Sequence[bool], timestamps,
                     training: bool, keys: Sequence[Any]):
  """The wavefront on one device (call inside `shard_map`): layer l of `cells` on the
  device that `sizes` gives it. `xs [B, T, D]` feeds layer 0; returns the top layer's
  outputs `[B, T, H]` and every layer's final carry, the same on every device."""
  B, T = xs.shape[:2]
  # The params vary over the axes here, so that their gradients' sums over the devices
  # (the transpose of this cast) happen out here, not inside the `switch` below, where a
  # collective would wait for devices that run another branch.
  # The same for every input with a gradient that the branches read.
  vary = tuple(sorted(varying_axes(xs) | {axis}))
  params, xs, side, timestamps = varying_over((tuple(params), xs, side, timestamps), vary)
  num_devices = len(sizes)
  starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
  stage_of = np.cumsum([n > 0 for n in sizes]) - 1  # stage index of each non-empty device
  num_stages = int(sum(n > 0 for n in sizes))
  last_device = max(p for p in range(num_devices) if sizes[p] > 0)
  owner = [p for p in range(num_devices) for _ in range(sizes[p])]
  H = cells[-1].hidden_size
  d = jax.lax.axis_index(axis)

  def step_kwargs(l, t):
    cell, kw = cells[l], {}
    if "training" in cell.step_kwargs:
      kw["training"] = training
    if "key" in cell.step_kwargs:
      kw["key"] = keys[l]
    if "t" in cell.step_kwargs:
      kw["t"] = t
    if "time" in cell.step_kwargs:
      kw["time"] = jax.lax.dynamic_index_in_dim(timestamps, t, 1, keepdims=False)
    return kw

  def device_step(p):
    ids = range(starts[p], starts[p + 1])
    offset = int(stage_of[p])

    def run(s, msg, carries):
      if not ids:  # a device with no layers here passes nothing on
        return jnp.zeros_like(msg), carries
      k = s - offset  # this stage's step in processing order
      t = jnp.clip(T - 1 - k if reverse else k, 0, T - 1)
      active = (k >= 0) & (k < T)
      valid = jnp.broadcast_to(active, (B,)) if lengths is None else active & (t < lengths)
      at_t = lambda a: jax.lax.dynamic_index_in_dim(a, t, 1, keepdims=False)
      x = at_t(xs) if ids[0] == 0 else msg  # [B, D]
      carries = list(carries)
      for l in ids:
        inp = x
        if keeps[l] is not None:  # [B, T, D], or [B, 1, D] per sequence
          keep = keeps[l][:, 0] if keeps[l].shape[1] == 1 else at_t(keeps[l])
          inp = regularizers.apply_keep(keep, x, rate)
        if side is not None:
          inp = jnp.concatenate([inp, at_t(side)], -1)
        new, y = cells[l].step(params[l], carries[l], inp, **step_kwargs(l, t))
        carries[l] = _where_valid(valid, new, carries[l])
        y = jnp.where(valid[:, None], y, jnp.zeros_like(y))
        x = jnp.where(valid[:, None], y + x, jnp.zeros_like(y)) if residual[l] else y
      return x, tuple(carries)

    return run

  branches = [device_step(p) for p in range(num_devices)]
  forward_perm = [(p, p + 1) for p in range(num_devices - 1)]

  def body(state, s):
    msg, carries = state
    out, carries = jax.lax.switch(d, branches, s, msg, carries)
    if num_devices > 1:
      msg = jax.lax.ppermute(out, axis, forward_perm)
    return (msg, carries), out

  msg0 = varying_over(jnp.zeros((B, H), xs.dtype), vary)
  carries = varying_over(tuple(carries), vary)
  (_, carries), outs = jax.lax.scan(body, (msg0, carries), jnp.arange(T + num_stages - 1))
  ys = outs[num_stages - 1:]  # [T, B, H]: the last stage's steps, in processing order
  if reverse:
    ys = ys[::-1]
  ys = _from_owner(jnp.swapaxes(ys, 0, 1), d == last_device, axis)  # [B, T, H]
  finals = tuple(_from_owner(c, d == owner[l], axis) for l, c in enumerate(carries))
  return ys, finals


def _check_mesh(mesh: Mesh, axis: str, data_axis: str | None) -> None:
  if axis not in mesh.axis_names:
    raise ValueError(f"axis: {axis!r} is not an axis of the mesh {mesh.axis_names}")
  if data_axis is not None and data_axis not in mesh.axis_names:
    raise ValueError(f"data_axis: {data_axis!r} is not an axis of the mesh "
                     f"{mesh.axis_names}")
  extra = set(mesh.axis_names) - {axis, data_axis}
  if extra:
    raise ValueError(f"mesh: axes {sorted(extra)} are neither the layers axis nor the "
                     "data axis")


def _check_batch(B: int, mesh: Mesh, data_axis: str | None) -> None:
  if data_axis is not None and B % mesh.shape[data_axis]:
    raise ValueError(f"xs: the batch of {B} does not split over the {mesh.shape[data_axis]} "
                     f"devices of {data_axis!r}")


def _place(tree, mesh: Mesh, data_axis: str | None):
  """Arrays of `[B, ...]` split over `data_axis` of `mesh`, as `shard_map` expects them:
  `reshard` on an Explicit axis, a sharding constraint on an Auto one."""
  if data_axis is None:
    return tree
  sharding = jax.sharding.NamedSharding(mesh, P(data_axis))
  explicit = dict(zip(mesh.axis_names, mesh.axis_types))[data_axis] == \
      jax.sharding.AxisType.Explicit
  place = ((lambda a: jax.sharding.reshard(a, sharding)) if explicit
           else (lambda a: jax.lax.with_sharding_constraint(a, sharding)))
  return jax.tree_util.tree_map(place, tree)


def _check_keys(cells: Sequence[Cell], training: bool, data_axis: str | None) -> None:
  if data_axis is not None and training and any("key" in c.step_kwargs for c in cells):
    raise ValueError("data_axis: cells that draw their own masks from a key draw them "
                     "per example of the whole batch; split the batch with jit instead")


def wavefront(cells: Sequence[Cell], params: Sequence[Any], xs: Array, *, mesh: Mesh,
              axis: str = "layers", sizes: Sequence[int] | None = None,
              seq_lengths: Array | None = None, reverse: bool = False,
              initial_carries: Sequence[Any] | None = None, side: Array | None = None,
              keep_masks: Sequence[Array | None] | None = None, dropout_rate: float = 0.0,
              residual: Sequence[bool] | None = None, timestamps: Array | None = None,
              training: bool = False, keys: Sequence[Array] | None = None,
              data_axis: str | None = None):
  """Uni-directional layers, one `cell` each, as a wavefront over the devices of `axis`.

  For layer l with input x_l (x_0 = xs):

      y_l     = cell_l(inp_l),   inp_l = [keep_l * x_l / (1 - rate); side]
      x_{l+1} = y_l + x_l if residual[l] else y_l

  step by step in time (in reverse with `reverse`), keeping `unroll`'s padding rule.

  Args:
    cells, params: the layers, bottom first.
    xs: `[B, T, D]`, the bottom layer's input.
    mesh, axis: the devices and the mesh axis the layers are spread over.
    sizes: how many consecutive layers each device of `axis` holds (zeros allowed);
      default `placement(len(cells), P)`.
    seq_lengths: `[B]`; None: all T.
    reverse: every layer runs each sequence's valid part backwards.
    initial_carries: one carry per layer, or None (zeros).
    side: `[B, T, M]` appended to every layer's input (after dropout), or None.
    keep_masks: one boolean mask per layer (`regularizers.keep_mask` of `[B, T, D_l]`,
      D_l the width of x_l, `[B, 1, D_l]` per sequence) or None for no dropout there.
    dropout_rate: the rate the masks were drawn with (the kept entries scale by
      1 / (1 - rate)).
    residual: one flag per layer.
    timestamps: `[B, T]` for cells with `uses_time`.
    training, keys: passed to cells that take them (one key per layer).
    data_axis: a second mesh axis that splits the batch, or None.

  Returns:
    `(ys [B, T, H], finals)`, the top layer's outputs and every layer's final carry.
  """
  cells, params = tuple(cells), tuple(params)
  L = len(cells)
  _check_mesh(mesh, axis, data_axis)
  num_devices = mesh.shape[axis]
  sizes = placement(L, num_devices) if sizes is None else tuple(int(n) for n in sizes)
  if len(sizes) != num_devices or sum(sizes) != L or min(sizes) < 0:
    raise ValueError(f"sizes: expected {num_devices} counts (one per device of {axis!r}) "
                     f"that sum to the {L} layers, got {sizes}")
  first_busy = next(p for p, n in enumerate(sizes) if n > 0) if L else 0
  if any(n == 0 for n in sizes[first_busy:]):
    raise ValueError(f"sizes: a device without layers can only come before the first "
                     f"one with layers (outputs pass from device p to p + 1), got {sizes}")
  widths = {c.hidden_size for c in cells}
  if len(widths) != 1:
    raise ValueError(f"cells: the wavefront passes one width between devices; the layers' "
                     f"hidden sizes differ: {sorted(widths)}")
  if len(params) != L:
    raise ValueError(f"params: expected one per cell ({L}), got {len(params)}")
  B, T = xs.shape[:2]
  if seq_lengths is not None:
    check_seq_lengths(seq_lengths, (B, T), "xs")
  _check_batch(B, mesh, data_axis)
  _check_keys(cells, training, data_axis)
  keep_masks = (None,) * L if keep_masks is None else tuple(keep_masks)
  residual = (False,) * L if residual is None else tuple(bool(r) for r in residual)
  keys = (None,) * L if keys is None else tuple(keys)
  if initial_carries is None:
    initial_carries = tuple(c.initial_carry((B,), xs.dtype) for c in cells)
  lengths = None if seq_lengths is None else jnp.clip(jnp.asarray(seq_lengths, jnp.int32), 0, T)

  batch = P(data_axis)
  masks_in = {l: m for l, m in enumerate(keep_masks) if m is not None}

  def local(params, xs, carries, lengths, side, masks, timestamps, keys):
    keeps = [masks.get(l) for l in range(L)]
    return _local_wavefront(cells, params, xs, carries, axis=axis, sizes=sizes,
                            reverse=reverse, lengths=lengths, side=side, keeps=keeps,
                            rate=dropout_rate, residual=residual, timestamps=timestamps,
                            training=training, keys=keys)

  mapped = jax.shard_map(
      local, mesh=mesh,
      in_specs=(P(), batch, batch, batch, batch, batch, batch, P()),
      out_specs=(batch, batch))
  split = _place((xs, tuple(initial_carries), lengths, side, masks_in, timestamps), mesh,
                 data_axis)
  return mapped(params, *split, keys)


def stack(layers: Sequence[Layer], *, mesh: Mesh, axis: str = "layers",
          residual_from: int | None = None, dropout_rate: float = 0.0,
          dropout_per_sequence: bool = False, data_axis: str | None = None) -> Layer:
  """`rnn_jax.layers.stack(layers, ...)` pipelined over the devices of `mesh`'s `axis`.

  `layers`: `layers.rnn` layers, all forward or all reverse, with one hidden size; the
  bottom one may be `layers.bidirectional` instead. Every device of `axis` must hold at
  least one layer (`placement`). `data_axis`: a second mesh axis splitting the batch.
  Same params, outputs, final carries and dropout as the plain stack (see the module
  docstring for the schedule).
  """
  from rnn_jax import layers as layers_lib  # the plain stack: init, checks, output_size
  layers = tuple(layers)
  plain = layers_lib.stack(layers, residual_from=residual_from, dropout_rate=dropout_rate,
                           dropout_per_sequence=dropout_per_sequence)
  _check_mesh(mesh, axis, data_axis)
  L, num_devices = len(layers), mesh.shape[axis]
  if L < num_devices:
    raise ValueError(f"mesh: {L} layers cannot give each of the {num_devices} devices of "
                     f"{axis!r} a layer")
  bidirectional = layers[0].direction.startswith("bidirectional")
  uni = layers[1:] if bidirectional else layers
  for l, layer in enumerate(layers):
    if layer.direction not in ("forward", "reverse") and not (l == 0 and bidirectional):
      raise ValueError(f"layers: layer {l} ({layer.name}) cannot be pipelined: the "
                       "wavefront takes layers.rnn layers, and layers.bidirectional at "
                       "the bottom only")
  directions = {layer.direction for layer in uni}
  if len(directions) > 1:
    raise ValueError("layers: the pipelined layers must all run forward or all in "
                     f"reverse, got {sorted(directions)}")
  reverse = directions == {"reverse"}
  uni_cells = tuple(layer.cells[0] for layer in uni)
  sizes = list(placement(L, num_devices))
  if bidirectional:
    sizes[0] -= 1  # device 0 holds the bottom (its forward direction)
  has_residual = lambda l: residual_from is not None and l >= residual_from
  first = 1 if bidirectional else 0

  def apply(params, xs, *, seq_lengths=None, initial_carry=None, timestamps=None,
            training=False, key=None):
    if training and dropout_rate > 0 and key is None:
      raise ValueError("key: a stack with dropout_rate > 0 needs a PRNG key when "
                       "training=True")
    if initial_carry is not None and len(initial_carry) != L:
      raise ValueError(f"initial_carry: expected one carry per layer ({L}), "
                       f"got {len(initial_carry)}")
    if not hasattr(xs, "shape") or len(xs.shape) != 3:
      raise ValueError(f"xs: expected a batch-major array [B, T, D], got "
                       f"{getattr(xs, 'shape', type(xs).__name__)}")
    B, T, D = xs.shape
    if seq_lengths is not None:
      check_seq_lengths(seq_lengths, (B, T), "xs")
    _check_batch(B, mesh, data_axis)
    _check_keys([c for layer in layers for c in layer.cells], training, data_axis)
    # Dropout masks and layer keys, drawn as layers.stack draws them.
    widths = [D]
    for layer in layers[:-1]:
      widths.append(layer.output_size(widths[-1]))
    keeps = {}
    if training and dropout_rate > 0:
      for l in range(max(first, 1), L):
        keeps[l - first] = regularizers.keep_mask(
            jax.random.fold_in(key, l), (B, T, widths[l]), dropout_rate,
            broadcast_dims=(1,) if dropout_per_sequence else ())
    layer_keys = [None if key is None else jax.random.fold_in(key, L + l) for l in range(L)]
    carries = (tuple(None for _ in range(L)) if initial_carry is None
               else tuple(initial_carry))
    carries = tuple(layer.cells[0].initial_carry((B,), xs.dtype) if c is None and
                    not (l == 0 and bidirectional) else c
                    for l, (layer, c) in enumerate(zip(layers, carries)))
    lengths = (None if seq_lengths is None
               else jnp.clip(jnp.asarray(seq_lengths, jnp.int32), 0, T))
    batch = P(data_axis)

    def local(params, xs, carries, lengths, timestamps, keeps, layer_keys):
      d = jax.lax.axis_index(axis)
      vary = tuple(sorted(varying_axes(xs) | {axis}))
      # The bottom's params and input vary over the axes, so that the sums of gradients
      # over devices happen out here, not inside the `switch` (see _local_wavefront).
      # (A collective inside a branch either waits forever for the devices that run
      # another branch or, worse, pairs up with another branch's collective.)
      bottom_params, bottom_xs, bottom_carry, bottom_times = (
          (params.get("layer_0"), xs, carries[0], timestamps) if num_devices == 1 else
          varying_over((params.get("layer_0"), xs, carries[0], timestamps), vary))
      x = xs
      bottom_final = None
      if bidirectional:
        fw_cell, bw_cell = layers[0].cells
        c_fw, c_bw = (None, None) if bottom_carry is None else bottom_carry
        k_fw, k_bw = ((None, None) if layer_keys[0] is None
                      else jax.random.split(layer_keys[0]))
        common = dict(seq_lengths=lengths, timestamps=bottom_times, training=training)
        run_fw = lambda: unroll(fw_cell, bottom_params["fw"], bottom_xs, initial_carry=c_fw,
                                key=k_fw, **common)
        run_bw = lambda: unroll(bw_cell, bottom_params["bw"], bottom_xs, reverse=True,
                                initial_carry=c_bw, key=k_bw, **common)
        if num_devices == 1:
          (ys_fw, fin_fw), (ys_bw, fin_bw) = run_fw(), run_bw()
        else:  # forward on device 0, backward on device 1, at the same time
          shapes = jax.eval_shape(lambda: (run_fw(), run_bw()))
          zeros = lambda tree: varying_over(jax.tree_util.tree_map(
              lambda s: jnp.zeros(s.shape, s.dtype), tree), vary)
          both = lambda fw, bw: varying_over((fw, bw), vary)
          branches = [lambda: both(run_fw(), zeros(shapes[1])),
                      lambda: both(zeros(shapes[0]), run_bw()),
                      lambda: both(zeros(shapes[0]), zeros(shapes[1]))]
          fw, bw = jax.lax.switch(jnp.minimum(d, 2), branches)
          (ys_fw, fin_fw) = _from_owner(fw, d == 0, axis)
          (ys_bw, fin_bw) = _from_owner(bw, d == 1, axis)
        if layers[0].direction == "bidirectional:concat":
          y = jnp.concatenate([ys_fw, ys_bw], axis=-1)
        else:
          y = ys_fw + ys_bw
        x = layers_lib._mask_padding(y + xs, lengths) if has_residual(0) else y
        bottom_final = (fin_fw, fin_bw)
      keep_list = [keeps.get(l) for l in range(len(uni))]
      ys, finals = _local_wavefront(
          uni_cells, [params[f"layer_{l + first}"] for l in range(len(uni))], x,
          carries[first:], axis=axis, sizes=sizes, reverse=reverse, lengths=lengths,
          side=None, keeps=keep_list, rate=dropout_rate,
          residual=[has_residual(l + first) for l in range(len(uni))],
          timestamps=timestamps, training=training, keys=layer_keys[first:])
      if bidirectional:
        finals = (bottom_final,) + tuple(finals)
      return ys, tuple(finals)

    mapped = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), batch, batch, batch, batch, batch, P()),
        out_specs=(batch, batch))
    split = _place((xs, carries, lengths, timestamps, keeps), mesh, data_axis)
    return mapped(params, *split, layer_keys)

  return Layer(name=f"pipeline({plain.name}, {axis}={num_devices})", init=plain.init,
               apply=apply, output_size=plain.output_size)
