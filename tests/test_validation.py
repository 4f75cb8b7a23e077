"""Bad input raises a ValueError that names the offending argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, layers

B, T, D, H = 2, 5, 3, 4


@pytest.fixture(params=["scan", "loop"])
def unroll_fn(request):
  return rnn_jax.unroll if request.param == "scan" else rnn_jax.unroll_reference


def _lstm():
  cell = cells.lstm(H)
  return cell, cell.init(jax.random.key(0), D), jnp.ones((B, T, D))


def test_wrong_input_size(unroll_fn):
  cell, params, _ = _lstm()
  with pytest.raises(ValueError, match=r"xs: .*D=3.*\(2, 5, 7\)"):
    unroll_fn(cell, params, jnp.ones((B, T, 7)))


def test_xs_not_batch_major_3d(unroll_fn):
  cell, params, _ = _lstm()
  with pytest.raises(ValueError, match=r"xs: expected a batch-major array \[B, T, D\]"):
    unroll_fn(cell, params, jnp.ones((T, D)))


@pytest.mark.parametrize("lengths", [[6, 1], [-1, 2]])
def test_lengths_out_of_range(unroll_fn, lengths):
  cell, params, xs = _lstm()
  with pytest.raises(ValueError, match=r"seq_lengths: .*\[0, T=5\]"):
    unroll_fn(cell, params, xs, seq_lengths=jnp.array(lengths))


def test_lengths_batch_mismatch(unroll_fn):
  cell, params, xs = _lstm()
  with pytest.raises(ValueError, match=r"seq_lengths: expected shape \[B\]=\(2,\)"):
    unroll_fn(cell, params, xs, seq_lengths=jnp.array([1, 2, 3]))


def test_lengths_must_be_integers(unroll_fn):
  cell, params, xs = _lstm()
  with pytest.raises(ValueError, match="seq_lengths: expected integers"):
    unroll_fn(cell, params, xs, seq_lengths=np.array([1.0, 2.0]))


def test_lengths_as_a_python_list(unroll_fn):
  cell, params, xs = _lstm()
  ys, _ = unroll_fn(cell, params, xs, seq_lengths=[2, 5])
  np.testing.assert_array_equal(ys[0, 2:], 0.0)


def test_initial_carry_batch_mismatch(unroll_fn):
  cell, params, xs = _lstm()
  with pytest.raises(ValueError, match=r"initial_carry: .*\(2, 4\)"):
    unroll_fn(cell, params, xs, initial_carry=cell.initial_carry((3,)))


def test_phased_lstm_needs_timestamps(unroll_fn):
  cell = cells.phased_lstm(H)
  params = cell.init(jax.random.key(0), D)
  xs = jnp.ones((B, T, D))
  with pytest.raises(ValueError, match=r"timestamps: .*\[B, T\]=\(2, 5\)"):
    unroll_fn(cell, params, xs)
  with pytest.raises(ValueError, match=r"timestamps: expected shape \[B, T\]"):
    unroll_fn(cell, params, xs, timestamps=jnp.ones((B, T - 1)))


def test_phased_lstm_step_needs_time():
  cell = cells.phased_lstm(H)
  params = cell.init(jax.random.key(0), D)
  carry = cell.initial_carry((B,))
  with pytest.raises(ValueError, match="time: phased_lstm needs a timestamp"):
    cell.step(params, carry, jnp.ones((B, D)))
  with pytest.raises(ValueError, match=r"time: expected shape \(2,\)"):
    cell.step(params, carry, jnp.ones((B, D)), time=jnp.ones((B, 1)))


def test_timestamps_for_a_cell_without_time(unroll_fn):
  cell, params, xs = _lstm()
  with pytest.raises(ValueError, match="timestamps: the lstm cell does not use"):
    unroll_fn(cell, params, xs, timestamps=jnp.ones((B, T)))


@pytest.mark.parametrize("make", [cells.lstm, cells.gru, cells.simple_rnn, cells.phased_lstm])
def test_step_input_size(make):
  cell = make(H)
  params = cell.init(jax.random.key(0), D)
  kwargs = {"time": jnp.zeros((B,))} if cell.uses_time else {}
  with pytest.raises(ValueError, match=r"x_t: .*D=3"):
    cell.step(params, cell.initial_carry((B,)), jnp.ones((B, D + 1)), **kwargs)


@pytest.mark.parametrize("make", [cells.lstm, cells.gru, cells.simple_rnn, cells.phased_lstm])
def test_bad_sizes(make):
  with pytest.raises(ValueError, match="hidden_size"):
    make(0)
  with pytest.raises(ValueError, match="input_size"):
    make(H).init(jax.random.key(0), 0)


def test_bad_hyperparameters():
  with pytest.raises(ValueError, match="nonlinearity"):
    cells.simple_rnn(H, nonlinearity="sigmoid")
  with pytest.raises(ValueError, match="use_bias"):
    cells.lstm(H, layer_norm=True, use_bias=False)
  with pytest.raises(ValueError, match="r_on"):
    cells.phased_lstm(H, r_on=0.0)
  with pytest.raises(ValueError, match="period_init_range"):
    cells.phased_lstm(H, period_init_range=(10.0, 1.0))
  with pytest.raises(ValueError, match="merge"):
    layers.bidirectional(cells.lstm(H), merge="mean")
  with pytest.raises(ValueError, match="merge"):
    layers.bidirectional(cells.lstm(H), cells.lstm(H + 1), merge="sum")
  with pytest.raises(ValueError, match="layers"):
    layers.stack([])
  with pytest.raises(ValueError, match="residual_from"):
    layers.stack([layers.rnn(cells.lstm(H))], residual_from=1)
  with pytest.raises(ValueError, match="dropout_rate"):
    layers.stack([layers.rnn(cells.lstm(H))], dropout_rate=1.0)
