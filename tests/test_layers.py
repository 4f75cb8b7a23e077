"""Bi-directional, stacked and residual layers against loops over the reference unroll."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, layers

B, T, D, H = 2, 5, 3, 4
LENGTHS = jnp.array([5, 2])


def _inputs(seed=0, d=D):
  return jax.random.normal(jax.random.key(seed), (B, T, d))


def _close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                              rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("lengths", [None, LENGTHS, jnp.array([0, 3])])
def test_bidirectional_equals_two_reference_loops(merge, lengths):
  cell = cells.gru(H, reset_after=True)
  layer = layers.bidirectional(cell, merge=merge)
  params = layer.init(jax.random.key(1), D)
  xs = _inputs()
  ys, (final_fw, final_bw) = layer.apply(params, xs, seq_lengths=lengths)
  fw, fw_final = rnn_jax.unroll_reference(cell, params["fw"], xs, seq_lengths=lengths)
  bw, bw_final = rnn_jax.unroll_reference(cell, params["bw"], xs, seq_lengths=lengths,
                                          reverse=True)
  expected = jnp.concatenate([fw, bw], -1) if merge == "concat" else fw + bw
  assert ys.shape == (B, T, layer.output_size(D))
  assert layer.output_size(D) == (2 * H if merge == "concat" else H)
  _close(ys, expected)
  _close((final_fw, final_bw), (fw_final, bw_final))


def test_bidirectional_with_different_backward_cell():
  layer = layers.bidirectional(cells.lstm(H), cells.gru(H + 1))
  params = layer.init(jax.random.key(0), D)
  ys, (fw, bw) = layer.apply(params, _inputs(), seq_lengths=LENGTHS)
  assert ys.shape == (B, T, 2 * H + 1)
  assert fw.h.shape == (B, H) and bw.shape == (B, H + 1)


def _reference_stack(cell_list, params, xs, lengths, residual_from):
  """The stack written out: reference unrolls, residual adds, padding zeroed."""
  x = xs
  finals = []
  for l, cell in enumerate(cell_list):
    p = params[f"layer_{l}"]
    if isinstance(cell, list):  # [fw, bw]: bi-directional, concatenated
      fw, f_fw = rnn_jax.unroll_reference(cell[0], p["fw"], x, seq_lengths=lengths)
      bw, f_bw = rnn_jax.unroll_reference(cell[1], p["bw"], x, seq_lengths=lengths,
                                          reverse=True)
      y, final = jnp.concatenate([fw, bw], -1), (f_fw, f_bw)
    else:
      y, final = rnn_jax.unroll_reference(cell, p, x, seq_lengths=lengths)
    if residual_from is not None and l >= residual_from:
      mask = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
      y = jnp.where(mask, y + x, 0.0)
    x = y
    finals.append(final)
  return x, tuple(finals)


def test_gnmt_encoder_shaped_stack():
  """Bi-directional bottom, then unidirectional layers, residuals from the third on."""
  H2 = 2 * H  # the bottom layer's concatenated width feeds a 2H-wide stack
  bottom = cells.lstm(H)
  rest = [cells.lstm(H2) for _ in range(4)]
  stack = layers.stack([layers.bidirectional(bottom)] + [layers.rnn(c) for c in rest],
                       residual_from=2)
  params = stack.init(jax.random.key(0), D)
  assert sorted(params) == [f"layer_{l}" for l in range(5)]
  assert params["layer_1"]["w_ih"].shape == (2 * H, 4 * H2)
  xs = _inputs()
  ys, finals = jax.jit(lambda p, x: stack.apply(p, x, seq_lengths=LENGTHS))(params, xs)
  expected, expected_finals = _reference_stack([[bottom, bottom]] + rest, params, xs,
                                               LENGTHS, residual_from=2)
  _close(ys, expected)
  _close(finals, expected_finals)
  np.testing.assert_array_equal(ys[1, 2:], 0.0)
  assert len(finals) == 5 and len(finals[0]) == 2


def test_residual_changes_the_output():
  cell_list = [cells.gru(H) for _ in range(3)]
  params = layers.stack([layers.rnn(c) for c in cell_list]).init(jax.random.key(0), H)
  xs = _inputs(d=H)
  plain, _ = layers.stack([layers.rnn(c) for c in cell_list]).apply(params, xs)
  residual, _ = layers.stack([layers.rnn(c) for c in cell_list],
                             residual_from=1).apply(params, xs)
  expected, _ = _reference_stack(cell_list, params, xs, jnp.array([T, T]), residual_from=1)
  _close(residual, expected)
  assert not np.allclose(plain, residual)


def test_residual_needs_equal_widths():
  stack = layers.stack([layers.rnn(cells.lstm(H)), layers.rnn(cells.lstm(H + 1))],
                       residual_from=1)
  with pytest.raises(ValueError, match="residual_from"):
    stack.init(jax.random.key(0), D)


def test_stack_initial_carry_and_phased_lstm_timestamps():
  """Every layer of a Phased LSTM stack receives the same timestamps."""
  cell_list = [cells.phased_lstm(H, period_init_range=(2.0, 6.0), r_on=0.3) for _ in range(2)]
  stack = layers.stack([layers.rnn(c) for c in cell_list])
  params = stack.init(jax.random.key(0), D)
  xs = _inputs()
  ts = jnp.cumsum(jax.random.uniform(jax.random.key(3), (B, T), minval=0.2, maxval=2.0), 1)
  carry = tuple(jax.tree_util.tree_map(lambda z: z + 0.3, c.initial_carry((B,)))
                for c in cell_list)
  ys, finals = stack.apply(params, xs, seq_lengths=LENGTHS, timestamps=ts,
                           initial_carry=carry)
  y0, f0 = rnn_jax.unroll_reference(cell_list[0], params["layer_0"], xs,
                                    seq_lengths=LENGTHS, timestamps=ts, initial_carry=carry[0])
  y1, f1 = rnn_jax.unroll_reference(cell_list[1], params["layer_1"], y0,
                                    seq_lengths=LENGTHS, timestamps=ts, initial_carry=carry[1])
  _close(ys, y1)
  _close(finals, (f0, f1))
  with pytest.raises(ValueError, match="timestamps"):
    stack.apply(params, xs)
  with pytest.raises(ValueError, match="initial_carry"):
    stack.apply(params, xs, timestamps=ts, initial_carry=carry[:1])


def test_dropout_between_layers_only():
  cell_list = [cells.lstm(H) for _ in range(3)]
  stack = layers.stack([layers.rnn(c) for c in cell_list], dropout_rate=0.5)
  params = stack.init(jax.random.key(0), D)
  xs = _inputs()
  key = jax.random.key(7)
  clean, _ = stack.apply(params, xs)
  # Evaluation ignores the key: no randomness.
  _close(stack.apply(params, xs, key=key)[0], clean, rtol=0, atol=0)
  noisy, _ = stack.apply(params, xs, training=True, key=key)
  again, _ = stack.apply(params, xs, training=True, key=key)
  other, _ = stack.apply(params, xs, training=True, key=jax.random.key(8))
  _close(noisy, again, rtol=0, atol=0)
  assert not np.allclose(noisy, clean) and not np.allclose(noisy, other)
  # A single layer has no connection between layers: dropout never applies.
  single = layers.stack([layers.rnn(cell_list[0])], dropout_rate=0.5)
  p1 = {"layer_0": params["layer_0"]}
  _close(single.apply(p1, xs, training=True, key=key)[0], single.apply(p1, xs)[0],
         rtol=0, atol=0)
  with pytest.raises(ValueError, match="key"):
    stack.apply(params, xs, training=True)


def test_dropout_statistics():
  x = jnp.ones((200, 50))
  y = rnn_jax.regularizers.dropout(jax.random.key(0), x, 0.3)
  kept = np.asarray(y != 0)
  assert abs(kept.mean() - 0.7) < 0.02
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
  # One mask per sequence, shared over time (axis 1).
  z = rnn_jax.regularizers.dropout(jax.random.key(1), jnp.ones((4, 6, 8)), 0.5,
                                   broadcast_dims=(1,))
  np.testing.assert_array_equal(z, jnp.broadcast_to(z[:, :1], z.shape))
  with pytest.raises(ValueError, match="rate"):
    rnn_jax.regularizers.dropout(jax.random.key(0), x, 1.0)


def test_layer_apply_is_differentiable_and_jittable():
  stack = layers.stack([layers.bidirectional(cells.gru(H), merge="sum"),
                        layers.rnn(cells.lstm(H, layer_norm=True))], residual_from=1,
                       dropout_rate=0.1)
  params = stack.init(jax.random.key(0), D)
  xs = _inputs()

  def loss(params, key):
    ys, _ = stack.apply(params, xs, seq_lengths=LENGTHS, training=True, key=key)
    return jnp.mean(ys ** 2)

  grads = jax.jit(jax.grad(loss))(params, jax.random.key(0))
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(np.any(g != 0) for g in leaves)
