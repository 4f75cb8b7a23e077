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

from rnn_jax.interop.stacked import stacked_apply


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


def from_torch(module, implementation: str = "auto"):
  """Converts a `torch.nn.LSTM` or `torch.nn.GRU` into `(apply, params)`.

  Args:
    module: the PyTorch module (any num_layers, bidirectional or not,
      batch_first or not, with or without biases).
    implementation: `unroll`'s, for every layer: "auto" (the fused kernels),
      "scan", "onednn" (oneDNN's LSTM and linear-before-reset GRU primitives,
      the GRU form PyTorch computes), "pallas".

  Returns:
    `(apply, params)`, with
    `apply(params, xs, seq_lengths=None, hx=None) -> (ys, h_n)` for a GRU and
    `-> (ys, (h_n, c_n))` for an LSTM, in the module's layout. `xs` is
    `[B, T, D]` if `module.batch_first` else `[T, B, D]`; `hx`, if given, is
    the module's initial state (`h_0`, or `(h_0, c_0)` for an LSTM), each
    `[L * num_directions, B, H]`.
  """
  apply = stacked_apply(_kind(module), module.hidden_size, module.num_layers,
                        module.bidirectional, module.bias, module.batch_first,
                        implementation)
  return apply, params_from_torch(module)


