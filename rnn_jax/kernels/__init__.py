"""Custom sequence kernels, each beside the reference it is tested against.

`unroll(..., implementation="auto")` picks a fused kernel here when one
supports the cell, and the generic `lax.scan` over `cell.step` otherwise;
with `remat=True` the fused kernels rematerialise chunks of steps in their
backward pass. They take bfloat16 params and inputs (float32 accumulation,
gate math and carry).
`implementation="pallas"` runs a plain LSTM through the Pallas kernels of
`pallas_lstm` (interpret mode off the GPU); "auto" never picks them.
`implementation="onednn"` runs a plain float32 LSTM or GRU through oneDNN's primitives on
the CPU (`rnn_jax.kernels.onednn`, an XLA FFI call); where the extension cannot be built
or loaded it warns once and runs the fused kernel. "auto" does not pick it yet.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp

from rnn_jax.cells.base import Cell
from rnn_jax.cells.lstm import LSTMState
from rnn_jax.kernels.fused_gru import gru_sequence
from rnn_jax.kernels.fused_lstm import lstm_sequence
from rnn_jax.kernels import onednn
from rnn_jax.kernels.pallas_lstm import lstm_sequence_pallas


def fused_supports(cell: Cell) -> bool:
  """True when a fused kernel computes exactly what `cell.step` does."""
  hp = cell.hparams
  if cell.name == "gru":
    return True
  return (cell.name == "lstm" and not hp.get("peephole") and not hp.get("coupled")
          and not hp.get("layer_norm"))


def fused_unroll(cell: Cell, params, xs, *, seq_lengths=None, reverse=False,
                 initial_carry=None, remat=False, chunk_size=None):
  """`unroll` through the fused kernel: `xs [B, T, D]` -> `(ys [B, T, H], final_carry)`.

  `remat`: the backward pass recomputes chunks of `chunk_size` steps (default
  `ceil(sqrt(T))`) from the carry saved at each chunk's start (see `fused_lstm`).
  With `remat` the kernels take `xs [B, T, D]` as it is and transpose one chunk
  at a time, so no time-major copy of the whole `xs`, `ys` or `dX` is made;
  without it they run on a time-major copy (`[T, B, D]`).
  """
  if not fused_supports(cell):
    raise ValueError(f"cell: no fused kernel for {cell.name} with {cell.hparams}")
  B = xs.shape[0]
  if initial_carry is None:
    initial_carry = cell.initial_carry((B,), xs.dtype)
  lengths = None if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
  batch_major = bool(remat)
  xs_in = xs if batch_major else jnp.swapaxes(xs, 0, 1)  # [B, T, D] or [T, B, D]
  out = lambda ys: ys if batch_major else jnp.swapaxes(ys, 0, 1)  # -> [B, T, H]
  if cell.name == "gru":
    ys, h_n = gru_sequence(params, xs_in, initial_carry, lengths, reverse,
                           cell.hparams["reset_after"], remat, chunk_size, batch_major)
    return out(ys), h_n
  ys, h_n, c_n = lstm_sequence(params, xs_in, initial_carry.h, initial_carry.c, lengths,
                               reverse, remat, chunk_size, batch_major)
  return out(ys), LSTMState(h_n, c_n)


def pallas_supports(cell: Cell) -> bool:
  """True when the Pallas kernel computes exactly what `cell.step` does: a plain LSTM."""
  return cell.name == "lstm" and fused_supports(cell)


def pallas_unroll(cell: Cell, params, xs, *, seq_lengths=None, reverse=False,
                  initial_carry=None, interpret=None):
  """`unroll` through the Pallas kernel: `xs [B, T, D]` -> `(ys [B, T, H], LSTMState)`."""
  if not pallas_supports(cell):
    raise ValueError(f"cell: no Pallas kernel for {cell.name} with {cell.hparams} "
                     "(only a plain LSTM)")
  B = xs.shape[0]
  if initial_carry is None:
    initial_carry = cell.initial_carry((B,), xs.dtype)
  lengths = None if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
  xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]
  ys, h_n, c_n = lstm_sequence_pallas(params, xs_tm, initial_carry.h, initial_carry.c,
                                      lengths, reverse, interpret=interpret)  # ys: [T, B, H]
  return jnp.swapaxes(ys, 0, 1), LSTMState(h_n, c_n)


def onednn_supports(cell: Cell) -> bool:
  """True when oneDNN's primitives compute exactly what `cell.step` does: a plain LSTM, or a
  GRU of either form."""
  return pallas_supports(cell) or cell.name == "gru"


_onednn_fallback_warned = False


def onednn_unroll(cell: Cell, params, xs, *, seq_lengths=None, reverse=False,
                  initial_carry=None, remat=False):
  """`unroll` through oneDNN (`kernels.onednn.lstm_sequence` / `gru_sequence`): `xs [B, T, D]`
  -> `(ys [B, T, H], final carry)`. When the extension is unavailable, warns once per process
  (with the reason) and runs `fused_unroll` instead: the same function."""
  global _onednn_fallback_warned
  if not onednn_supports(cell):
    raise ValueError(f"cell: no oneDNN kernel for {cell.name} with {cell.hparams} "
                     "(only a plain LSTM or a GRU)")
  B = xs.shape[0]
  if initial_carry is None:
    initial_carry = cell.initial_carry((B,), xs.dtype)
  ok, reason = onednn.available()
  if not ok:
    if not _onednn_fallback_warned:
      warnings.warn(f"implementation='onednn': the oneDNN extension is unavailable ({reason}); "
                    "running the fused XLA kernel instead (pip install 'rnn-jax[onednn]')",
                    RuntimeWarning, stacklevel=3)
      _onednn_fallback_warned = True
    return fused_unroll(cell, params, xs, seq_lengths=seq_lengths, reverse=reverse,
                        initial_carry=initial_carry, remat=remat)
  if cell.name == "gru":
    return onednn.gru_sequence(params, xs, initial_carry, seq_lengths, reverse,
                               cell.hparams["reset_after"], remat=remat)
  return onednn.lstm_sequence(params, xs, initial_carry.h, initial_carry.c, seq_lengths,
                              reverse, remat=remat)


__all__ = ["fused_supports", "fused_unroll", "gru_sequence", "lstm_sequence",
           "lstm_sequence_pallas", "onednn_supports", "onednn_unroll", "pallas_supports",
           "pallas_unroll"]
