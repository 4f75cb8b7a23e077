"""Running a cell over a padded batch of sequences: `unroll` and its loop twin.

The padding rule, for `xs: [B, T, D]` and `seq_lengths: [B]` (written once,
here; every unroll path and layer in the library keeps it):

  * outputs past a sequence's length are zero: `ys[b, t] = 0` for `t >= len_b`;
  * the final carry is the carry at the last valid step (`t = len_b - 1`);
  * `reverse=True` runs each sequence's valid part backwards, from
    `t = len_b - 1` down to `t = 0`; outputs stay at their own positions,
    padding stays at the end, and the final carry is the one after `t = 0`
    (what PyTorch's packed sequences give for the reverse direction);
  * a sequence of length 0 returns its initial carry and all-zero outputs.

`unroll` implements it with one `lax.scan` over time and a mask per step: in
reverse the scan starts at `t = T - 1`, and every padded step leaves the carry
as it is, so the first real step is `t = len_b - 1`. `unroll_reference` is a
Python loop over examples and steps with no masking at all; it is the oracle
the tests hold every fast path to.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import kernels
from rnn_jax.cells.base import Cell
from rnn_jax.varying import varying_like

IMPLEMENTATIONS = ("auto", "scan", "fused", "pallas", "onednn")  # `unroll`'s implementation=


def check_implementation(implementation: str, name: str = "implementation") -> None:
  """Raises ValueError, naming `name`, unless `implementation` is one of `IMPLEMENTATIONS`."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"{name}: expected {', '.join(IMPLEMENTATIONS[:-1])} or "
                     f"{IMPLEMENTATIONS[-1]}, got {implementation!r}")

Array = jax.Array


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_seq_lengths(seq_lengths, batch_and_time: tuple[int, int], against: str) -> None:
  """`seq_lengths` must be `[B]` integers in `[0, T]` (checked when concrete)."""
  B, T = batch_and_time
  if not hasattr(seq_lengths, "shape"):
    seq_lengths = np.asarray(seq_lengths)
  if tuple(seq_lengths.shape) != (B,):
    raise ValueError(f"seq_lengths: expected shape [B]=({B},) to match {against} "
                     f"[B, T]=({B}, {T}), got {tuple(seq_lengths.shape)}")
  if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
    raise ValueError(f"seq_lengths: expected integers, got dtype {seq_lengths.dtype}")
  if _is_concrete(seq_lengths):
    lengths = np.asarray(seq_lengths)
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
      raise ValueError(f"seq_lengths: every length must lie in [0, T={T}], "
                       f"got {lengths.tolist()}")


def check_unroll_inputs(cell: Cell, params, xs, seq_lengths=None,
                        initial_carry=None, timestamps=None) -> None:
  """Validates `unroll`'s arguments; raises a ValueError naming the bad one.

  Value checks on `seq_lengths` run only when it is concrete (outside `jit`);
  under `jit`, lengths are clipped to `[0, T]`.
  """
  if not hasattr(xs, "shape") or len(xs.shape) != 3:
    raise ValueError(f"xs: expected a batch-major array [B, T, D], got "
                     f"{getattr(xs, 'shape', type(xs).__name__)}")
  B, T, D = xs.shape
  expected_d = cell.input_size(params)
  if D != expected_d:
    raise ValueError(f"xs: the {cell.name} params expect input size D={expected_d}, "
                     f"got xs of shape {tuple(xs.shape)}")
  if seq_lengths is not None:
    check_seq_lengths(seq_lengths, xs.shape[:2], "xs")
  if initial_carry is not None:
    for leaf in jax.tree_util.tree_leaves(initial_carry):
      if leaf.ndim < 1 or leaf.shape[0] != B or leaf.shape[-1] != cell.hidden_size:
        raise ValueError(
            f"initial_carry: expected leaves of shape [B, H]=({B}, {cell.hidden_size}) "
            f"to match xs {tuple(xs.shape)}, got a leaf of shape {tuple(leaf.shape)}")
  if cell.uses_time:
    if timestamps is None:
      raise ValueError(f"timestamps: the {cell.name} cell needs a timestamp for every "
                       f"step, timestamps of shape [B, T]=({B}, {T})")
    if tuple(jnp.shape(timestamps)) != (B, T):
      raise ValueError(f"timestamps: expected shape [B, T]=({B}, {T}) to match xs, "
                       f"got {tuple(jnp.shape(timestamps))}")
  elif timestamps is not None:
    raise ValueError(f"timestamps: the {cell.name} cell does not use timestamps")


def _step_kwargs(cell: Cell, training: bool, key) -> dict[str, Any]:
  """The keywords every step gets: `training` and the sequence `key`, if the cell takes them."""
  kwargs = {}
  if "training" in cell.step_kwargs:
    kwargs["training"] = training
  if "key" in cell.step_kwargs:
    if training and key is None:
      raise ValueError(f"key: the {cell.name} cell draws random masks when training; "
                       "pass a PRNG key")
    kwargs["key"] = key
  return kwargs


def _where_valid(valid: Array, new, old):
  """Per example, `new` where `valid: [B]` else `old` (pytrees of `[B, ...]`)."""

  def select(n, o):
    return jnp.where(valid.reshape(valid.shape + (1,) * (n.ndim - 1)), n, o)

  return jax.tree_util.tree_map(select, new, old)


def unroll(cell: Cell, params, xs: Array, *, seq_lengths: Array | None = None,
           reverse: bool = False, initial_carry=None,
           timestamps: Array | None = None, training: bool = False,
           key: Array | None = None, unroll: int = 1, remat: bool = False,
           implementation: str = "auto"):
  """Runs `cell` over the time axis of a padded batch.

  Args:
    cell: a `Cell`.
    params: the cell's params.
    xs: inputs `[B, T, D]`, batch-major.
    seq_lengths: `[B]` integer lengths in `[0, T]`; None means all are T.
    reverse: run each sequence's valid part from its end to t = 0.
    initial_carry: the carry at the start (pytree of `[B, H]`); default zeros.
    timestamps: `[B, T]` time of each step, for cells with `uses_time`.
    training: passed to cells whose step takes `training` (Phased LSTM's
      leak, the stochastic regularizers of `rnn_jax.regularizers`).
    key: PRNG key for cells that draw masks (`"key" in cell.step_kwargs`);
      required when such a cell is training. Every step gets this same key
      and its time index `t`, so a cell can draw one mask per sequence (from
      `key`) or one per step (from `fold_in(key, t)`).
    unroll: how many steps `lax.scan` unrolls per iteration.
    remat: rematerialise in the backward pass, for long sequences. The fused
      kernels keep only the carry at the start of each chunk of ceil(sqrt(T))
      steps and recompute a chunk's input projection and gates before its
      reverse scan: saved memory O(sqrt(T) * B * H) plus one chunk's
      activations, instead of O(T * B * (G + 3) * H). The scan path wraps each
      step in `jax.checkpoint`: O(T * carry) instead of O(T * all activations);
      "onednn" makes one oneDNN call per chunk of ceil(sqrt(T)) steps, each
      recomputed in the backward pass (one chunk's workspace held at a time);
      "pallas" ignores it.
    implementation: "scan" (`lax.scan` over `cell.step`, autodiff backward),
      "fused" (a kernel of `rnn_jax.kernels`: hoisted input projection and a
      hand-written backward pass), or "auto": fused where a kernel supports
      the cell (with or without `remat`), scan otherwise (timestamps, random
      masks, peepholes, layer norm); or "pallas" (plain LSTM cells only: the
      Pallas kernels of `rnn_jax.kernels.pallas_lstm`, the whole recurrence in one
      launch with W_hh on chip; interpret mode off the GPU, so slow on the
      CPU; "auto" never picks it). All compute the same function. The fused
      and Pallas kernels define their backward pass with `jax.custom_vjp`, so
      they support reverse-mode differentiation (grad, vjp; rev-over-rev for
      the fused ones only) but not forward mode: for `jax.jvp` /
      `jax.jacfwd` pass `implementation="scan"`. "onednn" (plain float32 LSTM
      and GRU cells on the CPU: oneDNN's RNN primitives through XLA FFI calls,
      `rnn_jax.kernels.onednn`; falls back to "fused" with one warning where
      the extension is unavailable; "auto" does not pick it: slower than
      "fused" at every size measured, `benchmarks/RESULTS.md`).

  Returns:
    `(ys, final_carry)`: ys `[B, T, H]`, zero past each length; final_carry
    the carry at each sequence's last valid step (see the module docstring).
  """
  check_unroll_inputs(cell, params, xs, seq_lengths, initial_carry, timestamps)
  check_implementation(implementation)
  B, T, _ = xs.shape
  if initial_carry is None:
    initial_carry = cell.initial_carry((B,), xs.dtype)
  initial_carry = varying_like(initial_carry, xs)  # inside shard_map: vary like the batch
  if implementation == "onednn":
    return kernels.onednn_unroll(cell, params, xs, seq_lengths=seq_lengths, reverse=reverse,
                                 initial_carry=initial_carry, remat=remat)
  if implementation == "pallas":
    return kernels.pallas_unroll(cell, params, xs, seq_lengths=seq_lengths, reverse=reverse,
                                 initial_carry=initial_carry)
  if implementation == "fused" or (implementation == "auto" and kernels.fused_supports(cell)):
    return kernels.fused_unroll(cell, params, xs, seq_lengths=seq_lengths, reverse=reverse,
                                initial_carry=initial_carry, remat=remat)
  kwargs = _step_kwargs(cell, training, key)
  takes_t = "t" in cell.step_kwargs

  scanned = {"x": jnp.swapaxes(xs, 0, 1), "t": jnp.arange(T)}  # x: [T, B, D]
  if timestamps is not None:
    scanned["time"] = jnp.swapaxes(jnp.asarray(timestamps), 0, 1)  # [T, B]
  lengths = None if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)

  def body(carry, inp):
    step_kwargs = dict(kwargs)
    if "time" in inp:
      step_kwargs["time"] = inp["time"]
    if takes_t:
      step_kwargs["t"] = inp["t"]
    new_carry, y = cell.step(params, carry, inp["x"], **step_kwargs)
    if lengths is not None:
      valid = inp["t"] < lengths  # [B]
      new_carry = _where_valid(valid, new_carry, carry)
      y = jnp.where(valid[:, None], y, jnp.zeros_like(y))
    return new_carry, y

  if remat:
    body = jax.checkpoint(body)
  final_carry, ys = jax.lax.scan(body, initial_carry, scanned, reverse=reverse,
                                 unroll=unroll)
  return jnp.swapaxes(ys, 0, 1), final_carry  # [B, T, H]


def unroll_reference(cell: Cell, params, xs: Array, *, seq_lengths=None,
                     reverse: bool = False, initial_carry=None, timestamps=None,
                     training: bool = False, key=None):
  """The Python-loop twin of `unroll`: the oracle, not a fast path.

  Loops over examples and, within each, over its valid steps only (no masks),
  calling `cell.step` on one example at a time. Same arguments and results as
  `unroll`; `seq_lengths` must be concrete.
  """
  check_unroll_inputs(cell, params, xs, seq_lengths, initial_carry, timestamps)
  B, T, _ = xs.shape
  if initial_carry is None:
    initial_carry = cell.initial_carry((B,), xs.dtype)
  lengths = [T] * B if seq_lengths is None else [int(n) for n in np.asarray(seq_lengths)]
  kwargs = _step_kwargs(cell, training, key)
  ys = [[None] * T for _ in range(B)]
  finals = []
  for b in range(B):
    carry = jax.tree_util.tree_map(lambda leaf: leaf[b], initial_carry)
    order = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
    for t in order:
      step_kwargs = dict(kwargs)
      if timestamps is not None:
        step_kwargs["time"] = timestamps[b, t]
      if "t" in cell.step_kwargs:
        step_kwargs["t"] = jnp.asarray(t)
      if "key" in kwargs:
        # Cells that draw masks draw them per example, from fold_in(key, b)
        # (see rnn_jax.regularizers), so the loop passes the example index
        # and its masks equal row b of the batched ones.
        step_kwargs["example"] = b
      carry, y = cell.step(params, carry, xs[b, t], **step_kwargs)
      ys[b][t] = y
    finals.append(carry)
  zeros = jnp.zeros((cell.hidden_size,), xs.dtype)
  ys = jnp.stack([jnp.stack([zeros if y is None else y for y in row]) for row in ys])
  final_carry = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *finals)
  return ys, final_carry
