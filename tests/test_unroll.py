"""`unroll` (lax.scan) against `unroll_reference` (a Python loop) for every cell.

The loop runs each example on its own over its valid steps only, with no
masks; the scan must agree with it on outputs, final carries and gradients,
for every padding case, both directions, under jit and vmap.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from fixtures import randomize
from rnn_jax import cells

B, T, D, H = 2, 5, 3, 4  # pairwise distinct, so a swapped axis fails loudly

CELLS = {
    "rnn_tanh": lambda: cells.simple_rnn(H),
    "irnn": lambda: cells.simple_rnn(H, nonlinearity="relu", identity_init=True),
    "lstm": lambda: cells.lstm(H),
    "lstm_peephole": lambda: cells.lstm(H, peephole=True),
    "lstm_coupled": lambda: cells.lstm(H, coupled=True),
    "lstm_layer_norm": lambda: cells.lstm(H, layer_norm=True),
    "gru": lambda: cells.gru(H),
    "gru_reset_after": lambda: cells.gru(H, reset_after=True),
    "phased_lstm": lambda: cells.phased_lstm(H, period_init_range=(2.0, 8.0), r_on=0.3),
}

LENGTHS = {
    "none": None,
    "ragged": [3, 5],
    "zero_and_full": [0, T],
    "one": [1, 2],
}


def _setup(name, seed=0, batch=B):
  cell = CELLS[name]()
  k_init, k_rand, k_x, k_t, k_c = jax.random.split(jax.random.key(seed), 5)
  params = randomize(cell.init(k_init, D), k_rand)
  if cell.name == "phased_lstm":
    params["r_on"] = jnp.abs(params["r_on"]) + 0.1  # a meaningful open ratio
  xs = jax.random.normal(k_x, (batch, T, D))
  timestamps = None
  if cell.uses_time:  # irregular, increasing timestamps
    timestamps = jnp.cumsum(jax.random.uniform(k_t, (batch, T), minval=0.1, maxval=3.0), 1)
  carry = jax.tree_util.tree_map(
      lambda z: jax.random.normal(k_c, z.shape), cell.initial_carry((batch,)))
  return cell, params, xs, timestamps, carry


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                              rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("name", list(CELLS))
def test_scan_equals_loop(name, lengths, reverse):
  cell, params, xs, ts, carry = _setup(name)
  seq_lengths = None if LENGTHS[lengths] is None else jnp.array(LENGTHS[lengths])
  kwargs = dict(seq_lengths=seq_lengths, reverse=reverse, initial_carry=carry,
                timestamps=ts)
  ys, final = rnn_jax.unroll(cell, params, xs, **kwargs)
  ys_ref, final_ref = rnn_jax.unroll_reference(cell, params, xs, **kwargs)
  assert ys.shape == (B, T, H)
  _assert_trees_close(ys, ys_ref)
  _assert_trees_close(final, final_ref)


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_rule(name):
  """Zeros past each length; length 0 keeps the initial carry; nothing NaN."""
  cell, params, xs, ts, carry = _setup(name)
  lengths = jnp.array([0, 3])
  # Garbage (but finite) padding must not leak into anything.
  xs = xs.at[1, 3:].set(1e3)
  for reverse in (False, True):
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                               initial_carry=carry, timestamps=ts)
    np.testing.assert_array_equal(ys[0], 0.0)
    np.testing.assert_array_equal(ys[1, 3:], 0.0)
    assert np.any(ys[1, :3] != 0)
    jax.tree_util.tree_map(lambda f, c: np.testing.assert_array_equal(f[0], c[0]),
                           final, carry)
    # The padded values of example 1 must not matter.
    ys_clean, final_clean = rnn_jax.unroll(
        cell, params, xs.at[1, 3:].set(0.0), seq_lengths=lengths, reverse=reverse,
        initial_carry=carry, timestamps=ts)
    _assert_trees_close((ys, final), (ys_clean, final_clean), rtol=0, atol=0)

  def loss(params, xs):
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, timestamps=ts)
    return jnp.sum(ys) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(final))

  grads = jax.grad(loss, argnums=(0, 1))(params, xs)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  np.testing.assert_array_equal(grads[1][0], 0.0)  # a length-0 sequence gets no gradient
  np.testing.assert_array_equal(grads[1][1, 3:], 0.0)


@pytest.mark.parametrize("name", ["lstm", "gru", "phased_lstm"])
def test_reverse_is_forward_over_the_flipped_valid_part(name):
  """An independent statement of the reverse rule, per example."""
  cell, params, xs, ts, carry = _setup(name)
  lengths = [4, 2]
  ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=jnp.array(lengths),
                             reverse=True, initial_carry=carry, timestamps=ts)
  for b, n in enumerate(lengths):
    one = lambda a: a[b:b + 1]
    flipped_ts = None if ts is None else one(ts)[:, :n][:, ::-1]
    ys_b, final_b = rnn_jax.unroll(
        cell, params, one(xs)[:, :n][:, ::-1], timestamps=flipped_ts,
        initial_carry=jax.tree_util.tree_map(one, carry))
    _assert_trees_close(ys[b, :n], ys_b[0, ::-1])
    _assert_trees_close(jax.tree_util.tree_map(one, final), final_b)


@pytest.mark.parametrize("name", list(CELLS))
def test_gradients_equal_loop_gradients(name):
  cell, params, xs, ts, carry = _setup(name)
  lengths = jnp.array([2, 5])

  def loss(fn, params, xs, carry):
    ys, final = fn(cell, params, xs, seq_lengths=lengths, initial_carry=carry,
                   timestamps=ts, reverse=True)
    # Weighted, so that a permuted gradient would not sum to the same value.
    w = jnp.arange(1, ys.size + 1, dtype=ys.dtype).reshape(ys.shape) / ys.size
    return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(leaf))
                                 for leaf in jax.tree_util.tree_leaves(final))

  grads = jax.grad(functools.partial(loss, rnn_jax.unroll), argnums=(0, 1, 2))(
      params, xs, carry)
  grads_ref = jax.grad(functools.partial(loss, rnn_jax.unroll_reference),
                       argnums=(0, 1, 2))(params, xs, carry)
  _assert_trees_close(grads, grads_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after", "lstm_layer_norm"])
def test_check_grads_float64(name):
  from jax.test_util import check_grads
  with jax.enable_x64(True):
    cell, params, xs, ts, carry = _setup(name)
    to64 = lambda tree: jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), tree)
    params, xs, carry = to64(params), to64(xs), to64(carry)

    @jax.jit
    def f(params, xs):
      # The scan path: forward mode ("fwd") needs it, the fused kernels are reverse-only.
      ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=jnp.array([3, 5]),
                                 initial_carry=carry, implementation="scan")
      return jnp.sum(ys ** 2) + jnp.sum(jax.tree_util.tree_leaves(final)[0])

    order = 2 if name == "lstm" else 1
    check_grads(f, (params, xs), order=order, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "phased_lstm"])
def test_jit_and_vmap(name):
  cell, params, xs, ts, carry = _setup(name)
  lengths = jnp.array([3, 5])

  def run(xs, lengths, ts, carry):
    return rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, timestamps=ts,
                          initial_carry=carry)

  expected = run(xs, lengths, ts, carry)
  _assert_trees_close(jax.jit(run)(xs, lengths, ts, carry), expected)

  # vmap over an extra leading axis: N independent batches.
  N = 3
  cell, params, xs_n, ts_n, carry_n = _setup(name, seed=1, batch=N * B)
  split = lambda a: None if a is None else a.reshape(N, B, *a.shape[1:])
  lengths_n = jnp.array([[1, 5], [0, 2], [4, 4]])
  out = jax.vmap(run)(split(xs_n), lengths_n, split(ts_n),
                      jax.tree_util.tree_map(split, carry_n))
  for i in range(N):
    pick = lambda a: None if a is None else a[i]
    expected_i = rnn_jax.unroll_reference(
        cell, params, split(xs_n)[i], seq_lengths=lengths_n[i], timestamps=pick(split(ts_n)),
        initial_carry=jax.tree_util.tree_map(lambda a: split(a)[i], carry_n))
    _assert_trees_close(jax.tree_util.tree_map(lambda a: a[i], out), expected_i)


def test_traced_lengths_outside_range_are_clipped():
  """Under jit the lengths cannot be checked; they act as if clipped to [0, T]."""
  cell, params, xs, _, _ = _setup("lstm")
  run = jax.jit(lambda lengths: rnn_jax.unroll(cell, params, xs, seq_lengths=lengths))
  _assert_trees_close(run(jnp.array([-2, T + 3])), run(jnp.array([0, T])), rtol=0, atol=0)


@pytest.mark.parametrize("options", [dict(unroll=2), dict(unroll=T), dict(remat=True),
                                     dict(unroll=3, remat=True)])
def test_unroll_and_remat_options_change_nothing(options):
  cell, params, xs, _, carry = _setup("lstm")
  lengths = jnp.array([4, 1])

  def loss(params, **kw):
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, initial_carry=carry,
                               reverse=True, **kw)
    return jnp.sum(jnp.tanh(ys)) + jnp.sum(final.c)

  value, grads = jax.value_and_grad(loss)(params)
  value_opt, grads_opt = jax.jit(jax.value_and_grad(functools.partial(loss, **options)))(params)
  _assert_trees_close((value, grads), (value_opt, grads_opt), rtol=1e-5)


def test_phased_lstm_training_flag_reaches_the_cell():
  """The leak only acts in training: outputs differ while the gate is closed."""
  cell, params, xs, ts, carry = _setup("phased_lstm")
  ys_eval, _ = rnn_jax.unroll(cell, params, xs, timestamps=ts, initial_carry=carry)
  ys_train, _ = rnn_jax.unroll(cell, params, xs, timestamps=ts, initial_carry=carry,
                               training=True)
  ys_train_ref, _ = rnn_jax.unroll_reference(cell, params, xs, timestamps=ts,
                                             initial_carry=carry, training=True)
  _assert_trees_close(ys_train, ys_train_ref)
  assert not np.allclose(ys_eval, ys_train)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_is_kept(dtype):
  cell = cells.lstm(H, param_dtype=dtype)
  params = cell.init(jax.random.key(0), D)
  xs = jnp.ones((B, T, D), dtype)
  ys, final = jax.jit(lambda p, x: rnn_jax.unroll(cell, p, x))(params, xs)
  assert ys.dtype == dtype and final.h.dtype == dtype and final.c.dtype == dtype
  assert np.all(np.isfinite(np.asarray(ys, np.float32)))
