"""rnn_jax.interop.cudnn against jax.experimental.rnn: its reference `lstm_ref` on every
backend, its cuDNN `lstm` on a GPU.

`lstm_ref` is JAX's own LSTM written out step by step in the cuDNN weight layout (separate
gate matrices, `b_ih` and `b_hh`), independent of rnn_jax's cells, layers and kernels, so
agreement checks the weight mapping, the gate order, the stacking of layers and directions,
the reverse direction over ragged lengths and the final states. With a GPU the same
comparison runs against cuDNN itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jax_rnn

from rnn_jax.interop import cudnn

B, T, D, H = 3, 6, 5, 4
TOL = dict(rtol=2e-5, atol=2e-5)


def _inputs(num_layers, bidirectional, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  dirs = 2 if bidirectional else 1
  weights = jax_rnn.init_lstm_weight(keys[0], D, H, num_layers, bidirectional)
  x = jax.random.normal(keys[1], (B, T, D))
  h_0 = jax.random.normal(keys[2], (num_layers * dirs, B, H))
  c_0 = jax.random.normal(keys[3], (num_layers * dirs, B, H))
  lengths = jnp.array([T, 2, 1], jnp.int32)  # full, ragged, a single step
  return x, h_0, c_0, weights, lengths


def _reference(x, h_0, c_0, weights, lengths, num_layers, bidirectional):
  W_ih, W_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, D, H, num_layers, bidirectional)
  return jax_rnn.lstm_ref(x, h_0, c_0, W_ih, W_hh, b_ih, b_hh, lengths, D, H, num_layers, 0.0,
                          bidirectional)


def _loss(fn):
  """A loss that reads every output: y, h_n and c_n, weighted so no term cancels."""
  def loss(weights, x, h_0, c_0, lengths):
    y, h_n, c_n = fn(x, h_0, c_0, weights, lengths)
    return jnp.sum(y * jnp.cos(y)) + jnp.sum(h_n ** 2) + jnp.sum(jnp.sin(c_n))
  return loss


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True),
                                                      (2, True)])
def test_lstm_equals_jax_lstm_ref(num_layers, bidirectional):
  args = _inputs(num_layers, bidirectional)
  ours = lambda x, h, c, w, n: cudnn.lstm(x, h, c, w, n, D, H, num_layers, 0.0, bidirectional)
  ref = lambda x, h, c, w, n: _reference(x, h, c, w, n, num_layers, bidirectional)
  x, h_0, c_0, weights, lengths = args
  for a, b in zip(ours(*args), ref(*args)):
    np.testing.assert_allclose(a, b, **TOL)
  y = ours(*args)[0]
  assert y.shape == (B, T, (2 if bidirectional else 1) * H)
  assert not np.any(np.asarray(y[2, 1:])), "outputs past a length must be zero"
  grads = [jax.grad(_loss(fn), argnums=(0, 1, 2, 3))(weights, x, h_0, c_0, lengths)
           for fn in (ours, ref)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, **TOL)


def test_weights_round_trip():
  num_layers, bidirectional = 2, True
  x, h_0, c_0, weights, lengths = _inputs(num_layers, bidirectional, seed=1)
  params = cudnn.params_from_cudnn(weights, D, H, num_layers, bidirectional)
  assert params["layer_1"]["bw"]["w_ih"].shape == (2 * H, 4 * H)
  again = cudnn.params_to_cudnn(params, D, H, num_layers, bidirectional)
  assert again.shape == weights.shape
  # The bias moves into b_ih (b_hh = 0); the params, and so the function, are the same.
  jax.tree_util.tree_map(np.testing.assert_array_equal, params,
                         cudnn.params_from_cudnn(again, D, H, num_layers, bidirectional))
  _, _, _, b_hh = jax_rnn.unpack_lstm_weights(again, D, H, num_layers, bidirectional)
  assert all(not np.any(np.asarray(b)) for b in b_hh.values())
  for a, b in zip(cudnn.lstm(x, h_0, c_0, weights, lengths, D, H, 2, 0.0, True),
                  cudnn.lstm(x, h_0, c_0, again, lengths, D, H, 2, 0.0, True)):
    np.testing.assert_allclose(a, b, **TOL)


def test_bad_input():
  x, h_0, c_0, weights, lengths = _inputs(1, False)
  with pytest.raises(ValueError, match=r"weights: expected shape \(176,\)"):
    cudnn.params_from_cudnn(weights[:-1], D, H)
  with pytest.raises(ValueError, match="dropout: only 0.0"):
    cudnn.lstm(x, h_0, c_0, weights, lengths, D, H, 1, 0.5, False)
  with pytest.raises(ValueError, match=r"x: expected \[B, T, 5\]"):
    cudnn.lstm(x[..., :4], h_0, c_0, weights, lengths, D, H, 1, 0.0, False)
  params = cudnn.params_from_cudnn(weights, D, H)
  with pytest.raises(ValueError, match=r"pseudo-layer 0 has w_ih \(5, 16\).*expected \(6, 16\)"):
    cudnn.params_to_cudnn(params, D + 1, H)
  with pytest.raises(ValueError, match="hidden_size: expected a positive int"):
    cudnn.params_from_cudnn(weights, D, 0)
  with pytest.raises(ValueError, match=r"hx: expected 2 states"):
    cudnn.lstm(x, h_0, c_0, jax_rnn.init_lstm_weight(jax.random.key(0), D, H, 2, False),
               lengths, D, H, 2, 0.0, False)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs a GPU")
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_lstm_equals_cudnn_on_gpu(num_layers, bidirectional):
  with jax.default_matmul_precision("highest"):  # no TF32 on either side
    _compare_with_cudnn(num_layers, bidirectional)


def _compare_with_cudnn(num_layers, bidirectional):
  args = _inputs(num_layers, bidirectional)
  ours = lambda x, h, c, w, n: cudnn.lstm(x, h, c, w, n, D, H, num_layers, 0.0, bidirectional)
  theirs = lambda x, h, c, w, n: jax_rnn.lstm(x, h, c, w, n, D, H, num_layers, 0.0,
                                              bidirectional, precision=jax.lax.Precision.HIGHEST)
  tol = dict(rtol=1e-4, atol=1e-4)
  for a, b in zip(ours(*args), theirs(*args)):
    np.testing.assert_allclose(a, b, **tol)
  x, h_0, c_0, weights, lengths = args
  grads = [jax.grad(_loss(fn), argnums=(0, 1, 2, 3))(weights, x, h_0, c_0, lengths)
           for fn in (ours, theirs)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, **tol)
