"""The multi-layer RNN contract that PyTorch's `nn.LSTM`/`nn.GRU` and cuDNN share, over
`rnn_jax.layers.stack`: states laid out `[num_layers * num_directions, B, H]`, index
`layer * num_directions + direction`, outputs zero past each length. Torch-free; used by
`interop.torch` and `interop.cudnn`."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from rnn_jax import cells, layers
from rnn_jax.cells.lstm import LSTMState


def stacked_apply(kind: str, hidden_size: int, num_layers: int, bidirectional: bool,
                  use_bias: bool = True, batch_first: bool = True,
                  implementation: str = "auto") -> Callable:
  """`apply(params, xs, seq_lengths=None, hx=None)` of a `num_layers`-deep LSTM or GRU
  (`kind`: "lstm" or "gru", the GRU in its `reset_after=True` form), as the frameworks lay
  it out.

  `params` are `layers.stack`'s: `{"layer_l": cell_params}`, or
  `{"layer_l": {"fw": ..., "bw": ...}}` when bi-directional. `xs` is `[B, T, D]` with
  `batch_first`, else `[T, B, D]`; `hx`, if given, is the initial state (`h_0`, or
  `(h_0, c_0)` for an LSTM), each `[num_layers * num_directions, B, H]`. Returns
  `(ys, h_n)` for a GRU and `(ys, (h_n, c_n))` for an LSTM, ys `[B, T, dirs * H]` (or
  time-major), the final states taken at each sequence's last valid step (for the
  reverse direction, after reaching t = 0). `implementation` is `unroll`'s, for every
  layer ("onednn": oneDNN's primitives on the CPU).
  """
  if kind == "lstm":
    cell = cells.lstm(hidden_size, use_bias=use_bias)
  elif kind == "gru":
    cell = cells.gru(hidden_size, reset_after=True, use_bias=use_bias)
  else:
    raise ValueError(f"kind: expected 'lstm' or 'gru', got {kind!r}")
  layer = (layers.bidirectional(cell, implementation=implementation) if bidirectional
           else layers.rnn(cell, implementation=implementation))
  network = layers.stack([layer] * num_layers)
  num_dirs = 2 if bidirectional else 1

  def to_carries(hx):
    """`[L * dirs, B, H]` -> one carry (or (fw, bw) pair) per layer."""
    if hx is None:
      return None
    if kind == "lstm":
      h0, c0 = hx
      per_dir = [LSTMState(h0[i], c0[i]) for i in range(h0.shape[0])]
    else:
      per_dir = [hx[i] for i in range(hx.shape[0])]
    if len(per_dir) != num_layers * num_dirs:
      raise ValueError(f"hx: expected {num_layers * num_dirs} states "
                       f"(num_layers * num_directions), got {len(per_dir)}")
    if num_dirs == 1:
      return tuple(per_dir)
    return tuple((per_dir[2 * l], per_dir[2 * l + 1]) for l in range(num_layers))

  def apply(params, xs, seq_lengths=None, hx=None):
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
      raise ValueError(f"xs: expected a 3-D batch, {'[B, T, D]' if batch_first else '[T, B, D]'}"
                       f", got shape {tuple(xs.shape)}")
    if not batch_first:
      xs = jnp.swapaxes(xs, 0, 1)  # [T, B, D] -> [B, T, D]
    ys, finals = network.apply(params, xs, seq_lengths=seq_lengths,
                               initial_carry=to_carries(hx))
    if not batch_first:
      ys = jnp.swapaxes(ys, 0, 1)  # [B, T, *] -> [T, B, *]
    # Index layer * num_dirs + direction.
    per_dir = [c for final in finals for c in (final if num_dirs == 2 else (final,))]
    if kind == "lstm":
      h_n = jnp.stack([c.h for c in per_dir])  # [L * dirs, B, H]
      c_n = jnp.stack([c.c for c in per_dir])
      return ys, (h_n, c_n)
    return ys, jnp.stack(per_dir)

  return apply
