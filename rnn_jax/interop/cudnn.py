"""`jax.experimental.rnn`'s cuDNN LSTM: its flat weights as rnn_jax params, and its call on
any backend.

    from jax.experimental import rnn
    from rnn_jax.interop import cudnn

    weights = rnn.init_lstm_weight(key, D, H, num_layers=2, bidirectional=True)
    ys, h_n, c_n = cudnn.lstm(xs, h_0, c_0, weights, seq_lengths, D, H, 2, 0.0, True)
    params = cudnn.params_from_cudnn(weights, D, H, 2, True)   # rnn_jax.layers.stack params
    weights = cudnn.params_to_cudnn(params, D, H, 2, True)

`jax.experimental.rnn.lstm` runs only where cuDNN (or MIOpen) does: it has no CPU or TPU
lowering. `lstm` here takes the same arguments and returns the same `(y, h_n, c_n)`, through
`rnn_jax.layers.stack` and rnn_jax's fused kernels, on every backend: code written for the
cuDNN call runs on a laptop, and the two can be checked against each other on a GPU
(`tests/test_interop_cudnn.py`).

Weight layout (cuDNN's, as `jax.experimental.rnn.unpack_lstm_weights` reads it): for each
pseudo-layer (layer, then direction) `W_ih [4H, D_l]` and `W_hh [4H, H]`, then for each
pseudo-layer `b_ih [4H]` and `b_hh [4H]`; gate order i, f, g, o, the order of
`rnn_jax.cells.lstm`. So

    w_ih = W_ih.T   w_hh = W_hh.T   b = b_ih + b_hh

and back, `b_ih = b`, `b_hh = 0` (only the sum is a parameter of the function). Both
directions are pure JAX (reshapes, transposes, one add): gradients pass through them.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.experimental import rnn as jax_rnn

from rnn_jax.interop.stacked import stacked_apply


def _check(input_size: int, hidden_size: int, num_layers: int) -> None:
  for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                      ("num_layers", num_layers)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}: expected a positive int, got {value!r}")


def params_from_cudnn(weights, input_size: int, hidden_size: int, num_layers: int = 1,
                      bidirectional: bool = False) -> dict:
  """The flat cuDNN weights `[num_params]` as the params of the equivalent
  `rnn_jax.layers.stack` of `cells.lstm(hidden_size)` layers: `{"layer_l": params}`, or
  `{"layer_l": {"fw": ..., "bw": ...}}` when bi-directional (`interop.torch`'s layout)."""
  _check(input_size, hidden_size, num_layers)
  weights = jnp.asarray(weights)
  expected = jax_rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
  if weights.shape != (expected,):
    raise ValueError(f"weights: expected shape ({expected},) for input_size={input_size}, "
                     f"hidden_size={hidden_size}, num_layers={num_layers}, "
                     f"bidirectional={bidirectional}, got {tuple(weights.shape)}")
  W_ih, W_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                        num_layers, bidirectional)
  cell = lambda i: {"w_ih": W_ih[i].T, "w_hh": W_hh[i].T, "b": b_ih[i] + b_hh[i]}
  if not bidirectional:
    return {f"layer_{l}": cell(l) for l in range(num_layers)}
  return {f"layer_{l}": {"fw": cell(2 * l), "bw": cell(2 * l + 1)} for l in range(num_layers)}


def params_to_cudnn(params: dict, input_size: int, hidden_size: int, num_layers: int = 1,
                    bidirectional: bool = False):
  """The inverse of `params_from_cudnn`: flat cuDNN weights `[num_params]`, with the bias
  in `b_ih` and `b_hh = 0` (or zero biases where the params have none)."""
  _check(input_size, hidden_size, num_layers)
  per_dir = []
  for l in range(num_layers):
    layer = params[f"layer_{l}"]
    per_dir += [layer["fw"], layer["bw"]] if bidirectional else [layer]
  G, dirs = 4 * hidden_size, 2 if bidirectional else 1
  matrices, biases = [], []
  for i, p in enumerate(per_dir):  # pseudo-layer i: layer i // dirs, direction i % dirs
    d_in = input_size if i < dirs else dirs * hidden_size
    if p["w_ih"].shape != (d_in, G) or p["w_hh"].shape != (hidden_size, G):
      raise ValueError(f"params: pseudo-layer {i} has w_ih {tuple(p['w_ih'].shape)} and "
                       f"w_hh {tuple(p['w_hh'].shape)}; expected ({d_in}, {G}) and "
                       f"({hidden_size}, {G})")
    matrices += [p["w_ih"].T.ravel(), p["w_hh"].T.ravel()]
    b = p.get("b", jnp.zeros((G,), p["w_ih"].dtype))
    biases += [b, jnp.zeros_like(b)]
  return jnp.concatenate(matrices + biases)


def lstm(x, h_0, c_0, weights, seq_lengths, input_size: int, hidden_size: int,
         num_layers: int, dropout: float, bidirectional: bool, precision=None):
  """`jax.experimental.rnn.lstm`'s call, on any backend: `x [B, T, input_size]`
  (batch-first), `h_0, c_0 [num_layers * num_directions, B, H]`, the flat cuDNN
  `weights`, `seq_lengths [B]` int32. Returns `(y [B, T, dirs * H], h_n, c_n)`: y zero past
  each length, h_n and c_n at each sequence's last valid step (for the reverse direction,
  after reaching t = 0), as cuDNN and `jax.experimental.rnn.lstm_ref` give them.

  `dropout` must be 0: cuDNN's dropout masks between layers cannot be reproduced (use
  `rnn_jax.layers.stack(..., dropout_rate=...)` for dropout of rnn_jax's own). `precision`
  must be None: the matmuls run in the inputs' dtype, as everywhere in rnn_jax.
  """
  if dropout != 0.0:
    raise ValueError(f"dropout: only 0.0 is supported (cuDNN's dropout masks cannot be "
                     f"reproduced), got {dropout!r}")
  if precision is not None:
    raise ValueError(f"precision: only None is supported, got {precision!r}")
  if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != input_size:
    raise ValueError(f"x: expected [B, T, {input_size}] (batch-first, input_size features), "
                     f"got shape {tuple(jnp.shape(x))}")
  params = params_from_cudnn(weights, input_size, hidden_size, num_layers, bidirectional)
  apply = stacked_apply("lstm", hidden_size, num_layers, bidirectional)
  y, (h_n, c_n) = apply(params, x, seq_lengths=seq_lengths, hx=(h_0, c_0))
  return y, h_n, c_n
