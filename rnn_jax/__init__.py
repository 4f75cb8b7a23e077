"""rnn_jax: recurrent neural networks in JAX.

    import rnn_jax
    cell = rnn_jax.cells.lstm(hidden_size=128)
    params = cell.init(jax.random.key(0), input_size=32)
    ys, final_carry = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths)  # xs: [B, T, D]

`rnn_jax.interop` (PyTorch and cuDNN weights) is imported on demand, so torch stays optional.
"""

from rnn_jax import cells, layers, regularizers
from rnn_jax.unroll import unroll, unroll_reference

__version__ = "0.1.0"

__all__ = ["cells", "layers", "regularizers", "unroll", "unroll_reference"]
