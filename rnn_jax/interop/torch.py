"""PyTorch `nn.LSTM` / `nn.GRU` as pure JAX functions, weights and all.

    module = torch.nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)
    apply, params = rnn_jax.interop.from_torch(module)
    ys, (h_n, c_n) = apply(params, xs, seq_lengths=lengths)    # jit- and grad-able

`apply` returns what the module returns on the same padded input, as packed
sequences (`pack_padded_sequence(..., enforce_sorted=False)` then
`pad_packed_sequence(..., total_length=T)`) behave: outputs past each length
are zero, `h_n`/`c_n` are taken at each sequence's last valid step (for the
reverse direction, after reaching t = 0), all in the module's own layout
(`[T, B, ...]` unless `batch_first`; `h_n: [L * num_directions, B, H]`).

Weight mapping (PyTorch stores `W: [G*H, D]`, gate order LSTM `i, f, g, o`,
GRU `r, z, n`, the same orders `rnn_jax.cells` use):

    LSTM:  w_ih = weight_ih.T   w_hh = weight_hh.T   b = bias_ih + bias_hh
    GRU:   w_ih = weight_ih.T   w_hh = weight_hh.T   (cells.gru(reset_after=True))
           b = [b_ir + b_hr, b_iz + b_hz, b_in],  b_hn = b_hn

Dropout between layers is a training-time option of the module; `apply` is
the module in eval mode. `proj_size > 0` (LSTMP) is not supported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch

from rnn_jax import cells, layers
from rnn_jax.cells.lstm import LSTMState


def _array(tensor: "torch.Tensor") -> jax.Array:
  return jnp.asarray(tensor.detach().cpu().numpy())


def _cell_params(module, kind: str, layer: int, suffix: str) -> dict:
  name = f"l{layer}{suffix}"
  H = module.hidden_size
  params = {
      "w_ih": _array(getattr(module, f"weight_ih_{name}")).T,  # [D, G*H]
      "w_hh": _array(getattr(module, f"weight_hh_{name}")).T,  # [H, G*H]
  }
  if module.bias:
    b_ih = _array(getattr(module, f"bias_ih_{name}"))
    b_hh = _array(getattr(module, f"bias_hh_{name}"))
    if kind == "lstm":
      params["b"] = b_ih + b_hh
    else:
      params["b"] = jnp.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
      params["b_hn"] = b_hh[2 * H:]
  return params


def _kind(module) -> str:
  if isinstance(module, torch.nn.LSTM):
    if getattr(module, "proj_size", 0):
      raise ValueError("module: nn.LSTM with proj_size > 0 (LSTMP) is not supported")
    return "lstm"
  if isinstance(module, torch.nn.GRU):
    return "gru"
  raise ValueError(f"module: expected a torch.nn.LSTM or torch.nn.GRU, got "
                   f"{type(module).__name__}")


def params_from_torch(module) -> dict:
  """The module's weights as the params of the equivalent `rnn_jax.layers.stack`.

  `{"layer_l": cell_params}`, or `{"layer_l": {"fw": ..., "bw": ...}}` when
  bi-directional, each `cell_params` laid out as in `rnn_jax.cells`.
  """
  kind = _kind(module)
  params = {}
  for l in range(module.num_layers):
    fw = _cell_params(module, kind, l, "")
    if module.bidirectional:
      params[f"layer_{l}"] = {"fw": fw, "bw": _cell_params(module, kind, l, "_reverse")}
    else:
      params[f"layer_{l}"] = fw
  return params


def from_torch(module):
  """Converts a `torch.nn.LSTM` or `torch.nn.GRU` into `(apply, params)`.

  Args:
    module: the PyTorch module (any num_layers, bidirectional or not,
      batch_first or not, with or without biases).

  Returns:
    `(apply, params)`, with
    `apply(params, xs, seq_lengths=None, hx=None) -> (ys, h_n)` for a GRU and
    `-> (ys, (h_n, c_n))` for an LSTM, in the module's layout. `xs` is
    `[B, T, D]` if `module.batch_first` else `[T, B, D]`; `hx`, if given, is
    the module's initial state (`h_0`, or `(h_0, c_0)` for an LSTM), each
    `[L * num_directions, B, H]`.
  """
  kind = _kind(module)
  H = module.hidden_size
  if kind == "lstm":
    cell = cells.lstm(H, use_bias=module.bias)
  else:
    cell = cells.gru(H, reset_after=True, use_bias=module.bias)
  layer = layers.bidirectional(cell) if module.bidirectional else layers.rnn(cell)
  network = layers.stack([layer] * module.num_layers)
  num_dirs = 2 if module.bidirectional else 1
  batch_first = module.batch_first

  def to_carries(hx):
    """Module layout `[L * dirs, B, H]` -> one carry (or (fw, bw) pair) per layer."""
    if hx is None:
      return None
    if kind == "lstm":
      h0, c0 = hx
      per_dir = [LSTMState(h0[i], c0[i]) for i in range(h0.shape[0])]
    else:
      per_dir = [hx[i] for i in range(hx.shape[0])]
    if len(per_dir) != module.num_layers * num_dirs:
      raise ValueError(f"hx: expected {module.num_layers * num_dirs} states "
                       f"(num_layers * num_directions), got {len(per_dir)}")
    if num_dirs == 1:
      return tuple(per_dir)
    return tuple((per_dir[2 * l], per_dir[2 * l + 1]) for l in range(module.num_layers))

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
    # Module layout: index layer * num_dirs + direction.
    per_dir = [c for final in finals for c in (final if num_dirs == 2 else (final,))]
    if kind == "lstm":
      h_n = jnp.stack([c.h for c in per_dir])  # [L * dirs, B, H]
      c_n = jnp.stack([c.c for c in per_dir])
      return ys, (h_n, c_n)
    return ys, jnp.stack(per_dir)

  return apply, params_from_torch(module)


