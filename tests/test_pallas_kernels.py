"""The Pallas LSTM kernels against their references: interpreted on the CPU, compiled
(Triton) on a GPU, the same cases.

Values against `unroll_reference` (the Python loop, no masks) and gradients
against autodiff through the `lax.scan` path, for every padding case, both
directions, a random initial carry and batches that do not fill the last
block. The cases keep to the compiled kernel's sizes (H and the batch block powers of
2, >= 16: `pallas_lstm.check_gpu_sizes`) so that a GPU runs them all compiled; the one
case below those sizes passes `interpret=True`. Sizes stay small otherwise: on the CPU
every case evaluates an interpreted kernel. On a GPU run them under
`JAX_DEFAULT_MATMUL_PRECISION=highest` (benchmarks/gpu.sh does): the references are
float32, and the default lets both XLA and Triton multiply in TF32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, kernels
from rnn_jax.kernels import lstm_sequence, lstm_sequence_pallas

ON_GPU = jax.default_backend() == "gpu"
# Compiled, Triton's exp and tanh and its order of summation differ from XLA's in the last
# bits, and the differences compound over the steps.
TOL = dict(rtol=1e-4, atol=1e-5) if ON_GPU else dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-4) if ON_GPU else dict(rtol=1e-5, atol=1e-5)  # sums over B, T


def _setup(B, T, D, H, seed=0, dtype=jnp.float32):
  cell = cells.lstm(H)
  keys = jax.random.split(jax.random.key(seed), 4)
  params = cell.init(keys[0], D)
  params = jax.tree_util.tree_map(
      lambda a: (a + 0.3 * jax.random.normal(keys[1], a.shape)).astype(dtype), params)
  xs = jax.random.normal(keys[2], (B, T, D), dtype)
  carry = jax.tree_util.tree_map(lambda a: jax.random.normal(keys[3], a.shape, dtype),
                                 cell.initial_carry((B,)))
  return cell, params, xs, carry


def _pallas(cell, params, xs, *, seq_lengths, reverse, initial_carry, block_b,
            interpret=None):
  """`unroll`'s contract over `lstm_sequence_pallas` with a chosen batch block."""
  ys, h_n, c_n = lstm_sequence_pallas(params, jnp.swapaxes(xs, 0, 1), initial_carry.h,
                                      initial_carry.c, seq_lengths, reverse,
                                      block_b=block_b, interpret=interpret)  # ys: [T, B, H]
  return jnp.swapaxes(ys, 0, 1), cells.LSTMState(h_n, c_n)


def _loss(cell, lengths, reverse, implementation, block_b=None, interpret=None):
  """A scalar touching every output and both final carries, and the outputs themselves;
  `implementation` as in `unroll`, or "pallas" with `block_b` to call the kernel directly."""

  def loss(params, xs, carry):
    kw = dict(seq_lengths=lengths, reverse=reverse, initial_carry=carry)
    if block_b is None:
      ys, final = rnn_jax.unroll(cell, params, xs, implementation=implementation, **kw)
    else:
      ys, final = _pallas(cell, params, xs, block_b=block_b, interpret=interpret, **kw)
    w = jnp.arange(ys.size, dtype=jnp.float32).reshape(ys.shape) / ys.size
    value = jnp.sum(w * ys) + jnp.sum(jnp.sin(final.h)) + jnp.sum(final.c ** 2)
    return value.astype(jnp.float32), (ys, final)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _assert_close(a, b, **tol):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


# (B, T, D, H, lengths, reverse, block_b): distinct small sizes; lengths with 0 and T.
# block_b None runs through `unroll(..., implementation="pallas")` (blocks of 16).
RAGGED_20 = [7, 1, 0, 5, 7, 2, 3, 6, 7, 7, 4, 0, 1, 2, 6, 5, 3, 7, 1, 2]
CASES = {
    "full": (3, 6, 5, 16, None, False, 16),
    "full_reverse": (3, 6, 5, 16, None, True, 16),
    "ragged": (3, 6, 5, 16, [6, 0, 3], False, 16),
    "ragged_reverse": (3, 6, 5, 16, [6, 0, 3], True, 16),
    "one_step_reverse": (5, 1, 3, 16, [1, 0, 1, 1, 0], True, 16),
    "two_blocks_via_unroll": (20, 7, 4, 32, RAGGED_20, False, None),
    "two_blocks_reverse": (20, 7, 4, 32, RAGGED_20, True, 16),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pallas_equals_loop_and_scan_gradients(name):
  _check_against_loop_and_scan(*CASES[name])


def test_interpreted_blocks_of_3_below_the_compiled_sizes():
  """Interpret mode takes any H and batch block: three blocks of 3 rows (the last
  partly padding), H = 8."""
  _check_against_loop_and_scan(8, 7, 4, 8, RAGGED_20[:8], True, 3, interpret=True)


def _check_against_loop_and_scan(B, T, D, H, lengths, reverse, block_b, interpret=None):
  cell, params, xs, carry = _setup(B, T, D, H)
  lengths = None if lengths is None else jnp.array(lengths)
  (_, (ys, final)), grads = _loss(cell, lengths, reverse, "pallas", block_b,
                                  interpret)(params, xs, carry)
  loop = rnn_jax.unroll_reference(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                                  initial_carry=carry)
  _assert_close((ys, final), loop, **TOL)
  (_, scanned), scan_grads = _loss(cell, lengths, reverse, "scan")(params, xs, carry)
  _assert_close((ys, final), scanned, **TOL)
  _assert_close(grads, scan_grads, **GRAD_TOL)


def test_time_major_api_matches_fused_lstm_without_bias_and_carry():
  """`lstm_sequence_pallas` directly: zero carry, no bias, lengths all T given explicitly."""
  T, B, D, H = 4, 6, 3, 16
  cell = cells.lstm(H, use_bias=False)
  params = cell.init(jax.random.key(1), D)
  xs = jax.random.normal(jax.random.key(2), (T, B, D))  # time-major
  zeros = jnp.zeros((B, H))
  lengths = jnp.full((B,), T)

  def loss(fn):
    def value(params, xs, h0, c0):
      ys, h_n, c_n = fn(params, xs, h0, c0, lengths)
      return jnp.sum(ys ** 3) + jnp.sum(h_n * c_n), (ys, h_n, c_n)
    return jax.jit(jax.value_and_grad(value, argnums=(0, 1, 2, 3), has_aux=True))

  pallas = loss(lambda *a: lstm_sequence_pallas(*a, block_b=16))(params, xs, zeros, zeros)
  fused = loss(lstm_sequence)(params, xs, zeros, zeros)
  _assert_close(pallas, fused, **GRAD_TOL)
  assert set(pallas[1][0]) == {"w_ih", "w_hh"}


def test_bfloat16_accumulates_in_float32():
  """bfloat16 params and inputs: dtypes kept, values near the float32 kernel's."""
  B, T, D, H = 3, 5, 4, 16
  cell, params, xs, carry = _setup(B, T, D, H, seed=3)
  lengths = jnp.array([5, 2, 0])
  to_bf16 = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), t)
  run = _loss(cell, lengths, True, "pallas")
  (_, out16), grads16 = run(to_bf16(params), to_bf16(xs), to_bf16(carry))
  for leaf in jax.tree_util.tree_leaves((out16, grads16)):
    assert leaf.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
  # The float32 kernel on the same bfloat16-rounded numbers: only rounding differs.
  to_f32 = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), t)
  (_, out32), grads32 = run(*to_f32(to_bf16((params, xs, carry))))
  _assert_close(to_f32(out16), out32, rtol=3e-2, atol=3e-2)
  _assert_close(to_f32(grads16), grads32, rtol=5e-2, atol=5e-2)


def test_unroll_selects_pallas_only_when_asked():
  cell, params, xs, _ = _setup(2, 5, 3, 16)
  jaxpr = lambda c, p, **kw: str(jax.make_jaxpr(
      lambda p, x: rnn_jax.unroll(c, p, x, **kw))(p, xs))
  assert "pallas_call" in jaxpr(cell, params, implementation="pallas")
  assert "pallas_call" not in jaxpr(cell, params)  # auto stays on the fused kernel
  assert kernels.pallas_supports(cell)
  for other in (cells.gru(4), cells.lstm(4, peephole=True), cells.lstm(4, coupled=True)):
    assert not kernels.pallas_supports(other)
    with pytest.raises(ValueError, match="cell: no Pallas kernel"):
      rnn_jax.unroll(other, other.init(jax.random.key(0), 3), xs, implementation="pallas")
  with pytest.raises(ValueError, match="expected auto, scan, fused, pallas or onednn"):
    rnn_jax.unroll(cell, params, xs, implementation="triton")


def test_lowers_to_triton_for_gpu_and_checks_its_sizes():
  """Compiled mode, lowered (not compiled: no GPU here) for CUDA: both kernels become
  Triton calls; sizes Triton cannot take are refused before lowering."""
  T, B, D, H = 5, 20, 3, 16
  cell, params, xs, carry = _setup(B, T, D, H)
  xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]

  def loss(params, xs_tm, h0, c0, block_b=16):
    ys, h_n, c_n = lstm_sequence_pallas(params, xs_tm, h0, c0, jnp.full((B,), 3), True,
                                        interpret=False, block_b=block_b)
    return jnp.sum(ys ** 2) + jnp.sum(h_n) + jnp.sum(c_n)

  try:
    lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).trace(
        params, xs_tm, carry.h, carry.c).lower(lowering_platforms=("cuda",))
  except (ImportError, NotImplementedError, RuntimeError) as e:  # a jaxlib without Triton
    pytest.skip(f"no Triton lowering in this jaxlib: {e}")
  assert lowered.as_text().count("xla.gpu.triton") == 2  # forward and backward kernels
  with pytest.raises(ValueError, match="block_b: .* power of 2"):
    loss(params, xs_tm, carry.h, carry.c, block_b=8)
  _, params12, _, carry12 = _setup(B, T, D, 12)
  with pytest.raises(ValueError, match="H: .* power of 2"):
    lstm_sequence_pallas(params12, xs_tm, carry12.h, carry12.c, None, interpret=False)


def test_fits_on_chip_counts_w_hh_bytes():
  """W_hh [H, 4H] against 227 KiB of shared memory: 4 H^2 * itemsize bytes."""
  from rnn_jax.kernels import pallas_lstm
  assert pallas_lstm.fits_on_chip(64)                       # 64 KiB
  assert not pallas_lstm.fits_on_chip(128)                  # 256 KiB
  assert pallas_lstm.fits_on_chip(128, jnp.bfloat16)        # 128 KiB
  assert not pallas_lstm.fits_on_chip(256, jnp.bfloat16)    # 512 KiB
  assert pallas_lstm.fits_on_chip(64, shared_memory_bytes=64 * 1024)
  assert not pallas_lstm.fits_on_chip(64, shared_memory_bytes=64 * 1024 - 1)
