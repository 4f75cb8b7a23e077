"""Fused sequence kernels against their reference: values and gradients.

Float32 against the loop and the scan path; bfloat16 against the float32 scan
on the same rounded numbers; `remat=True` against `remat=False`.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, kernels

B, T, D, H = 3, 6, 5, 4


def _setup(seed=0, cell=None):
  cell = cell or cells.lstm(H)
  keys = jax.random.split(jax.random.key(seed), 4)
  params = cell.init(keys[0], D)
  params = jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.normal(keys[1], a.shape), params)
  xs = jax.random.normal(keys[2], (B, T, D))
  carry = jax.tree_util.tree_map(lambda a: jax.random.normal(keys[3], a.shape),
                                 cell.initial_carry((B,)))
  return cell, params, xs, carry


def _loss(implementation, lengths, reverse, cell):
  def loss(params, xs, carry):
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                               initial_carry=carry, implementation=implementation)
    w = jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape) / ys.size
    leaves = jax.tree_util.tree_leaves(final)
    return jnp.sum(w * ys) + jnp.sum(jnp.sin(leaves[0])) + jnp.sum(leaves[-1] ** 2)
  return loss


FUSED_CELLS = {"lstm": lambda: cells.lstm(H), "gru": lambda: cells.gru(H),
               "gru_reset_after": lambda: cells.gru(H, reset_after=True),
               "gru_no_bias": lambda: cells.gru(H, reset_after=True, use_bias=False)}


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 0, 3], [1, 6, 6]])
@pytest.mark.parametrize("name", list(FUSED_CELLS))
def test_fused_equals_scan_and_loop(name, lengths, reverse):
  cell, params, xs, carry = _setup(cell=FUSED_CELLS[name]())
  lengths = None if lengths is None else jnp.array(lengths)
  kw = dict(seq_lengths=lengths, reverse=reverse, initial_carry=carry)
  fused = rnn_jax.unroll(cell, params, xs, implementation="fused", **kw)
  loop = rnn_jax.unroll_reference(cell, params, xs, **kw)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         fused, loop)
  grad = lambda impl: jax.jit(jax.grad(_loss(impl, lengths, reverse, cell),
                                       argnums=(0, 1, 2)))(params, xs, carry)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         grad("fused"), grad("scan"))


@pytest.mark.parametrize("reset_after,remat", [(False, False), (True, True)])
def test_fused_gru_with_a_bias_per_sequence(reset_after, remat):
  """b `[B, 3H]` (a conditional GRU's b + c W_c): the fused kernel and the scan path agree
  on values and gradients, the bias's `[B, 3H]` included, and each row equals a GRU run
  alone with that row's bias."""
  cell, params, xs, carry = _setup(cell=cells.gru(H, reset_after=reset_after))
  params = dict(params, b=jax.random.normal(jax.random.key(7), (B, 3 * H)))
  lengths = jnp.array([6, 0, 3])
  kw = dict(seq_lengths=lengths, initial_carry=carry, remat=remat)
  fused = rnn_jax.unroll(cell, params, xs, implementation="fused", **kw)
  for i in range(B):
    alone = rnn_jax.unroll_reference(cell, dict(params, b=params["b"][i]), xs[i:i + 1],
                                     seq_lengths=lengths[i:i + 1], initial_carry=carry[i:i + 1])
    np.testing.assert_allclose(fused[0][i], alone[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused[1][i], alone[1][0], rtol=1e-5, atol=1e-6)

  def grad(impl):
    def loss(params, xs, carry):
      ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, initial_carry=carry,
                                 remat=remat, implementation=impl)
      return jnp.sum(jnp.sin(ys)) + jnp.sum(final ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, xs, carry)

  g_fused, g_scan = grad("fused"), grad("scan")
  assert g_fused[0]["b"].shape == (B, 3 * H)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         g_fused, g_scan)


@pytest.mark.parametrize("stack_below", [0, 10 ** 9])
def test_fused_lstm_weight_gradients_stacked_or_not(monkeypatch, stack_below):
  """dW_ih and dW_hh as one GEMM over `[X, H_prev]` (narrow layers) or as two (wide
  ones, `fused_lstm.STACK_BELOW`): the same gradients as the scan path either way."""
  from rnn_jax.kernels import fused_lstm
  monkeypatch.setattr(fused_lstm, "STACK_BELOW", stack_below)
  cell, params, xs, carry = _setup()
  lengths = jnp.array([6, 0, 3])
  grad = lambda impl: jax.grad(_loss(impl, lengths, False, cell), argnums=(0, 1, 2))(
      params, xs, carry)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         grad("fused"), grad("scan"))


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_after"])
def test_fused_check_grads_float64(name):
  from jax.test_util import check_grads
  with jax.enable_x64(True):
    cell, params, xs, carry = _setup(cell=FUSED_CELLS[name]())
    to64 = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), t)
    loss = jax.jit(_loss("fused", jnp.array([4, 6, 2]), True, cell))
    check_grads(loss, (to64(params), to64(xs), to64(carry)), order=1, modes=("rev",),
                atol=1e-6, rtol=1e-6)


def test_fused_lstm_without_bias_and_under_vmap():
  cell = cells.lstm(H, use_bias=False)
  params = cell.init(jax.random.key(0), D)
  xs = jax.random.normal(jax.random.key(1), (2, B, T, D))
  run = lambda impl: jax.vmap(lambda x: rnn_jax.unroll(cell, params, x, implementation=impl))(xs)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         run("fused"), run("scan"))
  g = lambda impl: jax.grad(lambda p: run_p(p, impl))(params)
  run_p = lambda p, impl: jnp.sum(rnn_jax.unroll(cell, p, xs[0], implementation=impl)[0] ** 2)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         g("fused"), g("scan"))


def test_auto_picks_the_fused_kernel_only_where_it_applies():
  cell, params, xs, _ = _setup()
  jaxpr = lambda c, p, **kw: str(jax.make_jaxpr(
      lambda p, x: rnn_jax.unroll(c, p, x, **kw))(p, xs))
  assert "custom_vjp" in jaxpr(cell, params)
  assert "custom_vjp" in jaxpr(cell, params, remat=True)  # the fused kernel's own remat
  assert "custom_vjp" not in jaxpr(cell, params, implementation="scan")
  assert "remat" in jaxpr(cell, params, implementation="scan", remat=True)  # jax.checkpoint
  peephole = cells.lstm(H, peephole=True)
  assert not kernels.fused_supports(peephole)
  assert "custom_vjp" not in jaxpr(peephole, peephole.init(jax.random.key(0), D))
  with pytest.raises(ValueError, match="cell: no fused kernel"):
    rnn_jax.unroll(peephole, peephole.init(jax.random.key(0), D), xs, implementation="fused")
  with pytest.raises(ValueError, match="implementation"):
    rnn_jax.unroll(cell, params, xs, implementation="cudnn")


def _trees_close(a, b, **tol):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(
      np.asarray(x, np.float32), np.asarray(y, np.float32), **tol), a, b)


def _value_and_grads(cell, lengths, reverse, run):
  """`(ys, final), grads` of a float32 loss touching every output and the final carry;
  `run(cell, params, xs, **kw)` is `unroll`'s contract."""

  def loss(params, xs, carry):
    out = run(cell, params, xs, seq_lengths=lengths, reverse=reverse, initial_carry=carry)
    ys, final = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), out)
    w = jnp.arange(ys.size, dtype=jnp.float32).reshape(ys.shape) / ys.size
    leaves = jax.tree_util.tree_leaves(final)
    return jnp.sum(w * ys) + jnp.sum(jnp.sin(leaves[0])) + jnp.sum(leaves[-1] ** 2), out

  return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))


def _fused(remat=False, chunk_size=None):
  return lambda *a, **kw: kernels.fused_unroll(*a, remat=remat, chunk_size=chunk_size, **kw)


_scan = lambda *a, **kw: rnn_jax.unroll(*a, implementation="scan", **kw)


def _two_cells_per_case(cases):
  """Each case with two of the fused cells, rotating through them (each case compiles a
  forward and a backward twice): every cell meets lengths 0 and T, both directions and remat
  across the list, at half the compiles of the full product. test_fused_equals_scan_and_loop
  keeps the full product."""
  names = list(FUSED_CELLS)
  return [pytest.param(names[(i + j) % len(names)], *case,
                       id=f"{names[(i + j) % len(names)]}-{i}")
          for i, case in enumerate(cases) for j in (0, 1)]

# (lengths, reverse, remat): lengths 0 and T, both directions, remat with T = 6 not a
# multiple of the chunk (4).
BF16_CASES = [(None, False, False), ([6, 0, 3], True, False), ([1, 6, 6], False, False),
              ([6, 0, 3], False, True), (None, True, True)]


@pytest.mark.parametrize("name,lengths,reverse,remat", _two_cells_per_case(BF16_CASES))
def test_bfloat16_equals_float32_scan_on_the_rounded_numbers(name, lengths, reverse, remat):
  """bfloat16 params, inputs and carry: float32 accumulation, gate math and carry inside;
  outputs and gradients in bfloat16, near the float32 scan run on the same rounded values."""
  cell, params, xs, carry = _setup(cell=FUSED_CELLS[name]())
  lengths = None if lengths is None else jnp.array(lengths)
  to = lambda dtype: lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)
  args16 = to(jnp.bfloat16)((params, xs, carry))
  grads16, out16 = _value_and_grads(cell, lengths, reverse, _fused(remat, 4))(*args16)
  for leaf in jax.tree_util.tree_leaves((out16, grads16)):
    assert leaf.dtype == jnp.bfloat16
  grads32, out32 = _value_and_grads(cell, lengths, reverse, _scan)(*to(jnp.float32)(args16))
  _trees_close(out16, out32, rtol=2e-2, atol=2e-2)
  _trees_close(grads16, grads32, rtol=2e-2, atol=2e-2)


def test_mixed_dtypes_promote_like_the_scan_path():
  """float32 params with bfloat16 inputs: float32 outputs, each gradient in its primal's dtype."""
  cell, params, xs, carry = _setup()
  xs16 = xs.astype(jnp.bfloat16)
  grads, out = _value_and_grads(cell, None, False, _fused())(params, xs16, carry)
  assert out[0].dtype == jnp.float32 and grads[1].dtype == jnp.bfloat16
  assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves((grads[0], grads[2])))
  grads_ref, out_ref = _value_and_grads(cell, None, False, _scan)(params, xs16, carry)
  _trees_close(out, out_ref, rtol=1e-5, atol=1e-6)
  _trees_close((grads[0], grads[2]), (grads_ref[0], grads_ref[2]), rtol=1e-5, atol=1e-6)
  _trees_close(grads[1], grads_ref[1], rtol=1e-2, atol=1e-2)  # both rounded to bfloat16


# (lengths, reverse, chunk_size) with T = 6: the default chunk (3), a short last chunk (4 = 4 + 2),
# chunks of one step, one chunk larger than T.
REMAT_CASES = [(None, False, None), ([6, 0, 3], True, 4), ([1, 6, 6], False, 4),
               ([6, 0, 3], False, 1), (None, True, 10)]


@pytest.mark.parametrize("name,lengths,reverse,chunk_size", _two_cells_per_case(REMAT_CASES))
def test_remat_changes_nothing(name, lengths, reverse, chunk_size):
  cell, params, xs, carry = _setup(cell=FUSED_CELLS[name]())
  lengths = None if lengths is None else jnp.array(lengths)
  remat = _value_and_grads(cell, lengths, reverse, _fused(True, chunk_size))(params, xs, carry)
  plain = _value_and_grads(cell, lengths, reverse, _fused())(params, xs, carry)
  _trees_close(remat, plain, rtol=1e-5, atol=1e-6)
  loop = rnn_jax.unroll_reference(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                                  initial_carry=carry)
  _trees_close(remat[1], loop, rtol=1e-5, atol=1e-6)


def _eqn_shapes(jaxpr):
  """The shapes of every value a jaxpr computes, sub-jaxprs (scans, custom rules) included."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    yield from (tuple(v.aval.shape) for v in eqn.outvars)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else [param]:
        if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
          yield from _eqn_shapes(sub)


@pytest.mark.parametrize("name,gates", [("lstm", 4), ("gru", 3)])
def test_remat_never_materialises_the_whole_projection(name, gates):
  """The gradient with `unroll(..., remat=True)` holds no `[T, B, G*H]` array (the hoisted
  projection, the activations, dZ); without remat it does."""
  T_long = 49  # chunks of 7
  cell = FUSED_CELLS[name]()
  params = cell.init(jax.random.key(0), D)
  xs = jax.random.normal(jax.random.key(1), (B, T_long, D))

  def shapes(remat):
    loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, remat=remat)[0])
    return set(_eqn_shapes(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, xs)))

  whole = {(T_long, B, gates * H), (T_long * B, gates * H)}
  assert whole & shapes(False)
  assert not whole & shapes(True)
  assert (7, B, gates * H) in shapes(True)  # one chunk's projection


def test_remat_chunk_size_is_checked():
  cell, params, xs, _ = _setup()
  with pytest.raises(ValueError, match="chunk_size"):
    kernels.fused_unroll(cell, params, xs, remat=True, chunk_size=0)


def _kernel(batch_major, remat, chunk_size=4):
  """`unroll`'s contract over `lstm_sequence` / `gru_sequence` called directly, with `xs`
  handed over batch-major `[B, T, D]` or time-major `[T, B, D]`."""

  def run(cell, params, xs, seq_lengths=None, reverse=False, initial_carry=None):
    xs_in = xs if batch_major else jnp.swapaxes(xs, 0, 1)
    if cell.name == "gru":
      ys, final = kernels.gru_sequence(params, xs_in, initial_carry, seq_lengths, reverse,
                                       cell.hparams["reset_after"], remat, chunk_size,
                                       batch_major)
    else:
      ys, h, c = kernels.lstm_sequence(params, xs_in, initial_carry.h, initial_carry.c,
                                       seq_lengths, reverse, remat, chunk_size, batch_major)
      final = cells.LSTMState(h, c)
    return (ys if batch_major else jnp.swapaxes(ys, 0, 1)), final

  return run


# (lengths, reverse, remat): with T = 6 and chunks of 4, a short last chunk in both directions.
BATCH_MAJOR_CASES = [(None, False, True), ([6, 0, 3], True, True), ([1, 6, 6], False, False),
                     ([6, 0, 3], True, False)]


@pytest.mark.parametrize("name,lengths,reverse,remat", _two_cells_per_case(BATCH_MAJOR_CASES))
def test_batch_major_kernels_equal_time_major(name, lengths, reverse, remat):
  """`batch_major=True` (what `fused_unroll(remat=True)` uses) against the time-major kernel
  without remat: values and gradients, and the primal path (no differentiation) against the loop."""
  cell, params, xs, carry = _setup(cell=FUSED_CELLS[name]())
  lengths = None if lengths is None else jnp.array(lengths)
  batch_major = _value_and_grads(cell, lengths, reverse, _kernel(True, remat))(params, xs, carry)
  time_major = _value_and_grads(cell, lengths, reverse, _kernel(False, False))(params, xs, carry)
  _trees_close(batch_major, time_major, rtol=1e-5, atol=1e-6)
  kw = dict(seq_lengths=lengths, reverse=reverse, initial_carry=carry)
  primal = jax.jit(lambda p, x: _kernel(True, remat)(cell, p, x, **kw))(params, xs)
  _trees_close(primal, rnn_jax.unroll_reference(cell, params, xs, **kw), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_remat_never_transposes_the_whole_sequence(name):
  """With `unroll(..., remat=True)` neither pass holds a time-major `[T, B, D]` or `[T, B, H]`
  array (a transposed copy of xs, ys or dX): chunks are transposed one at a time. Without
  remat the kernel runs on time-major copies."""
  T_long, D_long = 49, 6  # chunks of 7; D != H so the two shapes differ
  cell = FUSED_CELLS[name]()
  params = cell.init(jax.random.key(0), D_long)
  xs = jax.random.normal(jax.random.key(1), (B, T_long, D_long))

  def shapes(remat, grad):
    loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, x, remat=remat)[0])
    fn = jax.grad(loss, argnums=(0, 1)) if grad else loss
    return set(_eqn_shapes(jax.make_jaxpr(fn)(params, xs)))

  time_major = {(T_long, B, D_long), (T_long, B, H)}
  assert time_major <= shapes(False, grad=True)
  for grad in (False, True):
    assert not time_major & shapes(True, grad), grad
    assert (7, B, D_long) in shapes(True, grad)  # one chunk, transposed


SHARDED_CHECK = r"""
import re
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import rnn_jax
from rnn_jax import cells

mesh = Mesh(np.asarray(jax.devices()), ("data",))
assert mesh.size == 2, jax.devices()
for name, cell in [("lstm", cells.lstm(16)), ("gru", cells.gru(16)),
                   ("gru_reset_after", cells.gru(16, reset_after=True))]:
  for remat in (False, True):
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (4, 7, 8))
    lengths = jnp.array([7, 3, 0, 5])

    def loss(p, x, lengths):
      ys, final = rnn_jax.unroll(cell, p, x, seq_lengths=lengths, remat=remat,
                                 implementation="fused")
      return jnp.sum(jnp.sin(ys)) + jnp.sum(jax.tree_util.tree_leaves(final)[0] ** 2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    want = grad(params, xs, lengths)
    split = NamedSharding(mesh, P("data"))
    args = (jax.device_put(params, NamedSharding(mesh, P())), jax.device_put(xs, split),
            jax.device_put(lengths, split))
    hlo = grad.lower(*args).compile().as_text()
    # The batch stays split: no device gathers the other's rows, the weight
    # gradients are summed over devices (one all-reduce).
    assert "all-gather" not in hlo, (name, remat, "all-gather in the partitioned program")
    assert re.search(r"all-reduce(-start)?\(", hlo), (name, remat, "no all-reduce")
    got = grad(*args)
    assert got[1].sharding.is_equivalent_to(split, 3), got[1].sharding
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)

# Inside jax.shard_map (check_vma on, jax's default): the zero initial carry is cast to
# vary with the batch, and the kernels' weight gradients are summed over the devices.
for name, cell in [("lstm", cells.lstm(16)), ("gru", cells.gru(16, reset_after=True))]:
  for implementation in ("scan", "fused"):
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (4, 7, 8))
    lengths = jnp.array([7, 3, 0, 5])

    def loss(p, x, lengths):
      ys, final = rnn_jax.unroll(cell, p, x, seq_lengths=lengths,
                                 implementation=implementation)
      return jnp.sum(jnp.sin(ys)) + jnp.sum(jax.tree_util.tree_leaves(final)[0] ** 2)

    want = jax.grad(loss, argnums=(0, 1))(params, xs, lengths)
    got = jax.jit(jax.shard_map(jax.grad(loss, argnums=(0, 1)), mesh=mesh,
                                in_specs=(P(), P("data"), P("data")),
                                out_specs=(P(), P("data"))))(params, xs, lengths)
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"{name} {implementation}")
print("SHARDED_KERNELS_OK")
"""


def test_fused_kernels_keep_a_sharded_batch_split():
  """Under `jax.jit` with the batch split over devices (what `rnn_jax.training.parallel`
  does), the fused kernels run on each device's rows only: flattening `[T, B]` for
  the all-steps GEMMs used to make XLA gather the whole batch onto every device.
  Inside `jax.shard_map`, `unroll` (scan and fused) gives the single-device gradients."""
  import os
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SHARDED_CHECK], env=env, capture_output=True,
                       text=True, timeout=300)
  assert "SHARDED_KERNELS_OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after"])
@pytest.mark.parametrize("remat", [False, True])
def test_bfloat16_outputs_are_written_in_place(name, remat):
  """A bfloat16 output written step by step (or chunk by chunk) must not be converted to
  float32 whole at every write: XLA on the CPU did that for a bfloat16
  dynamic-update-slice, which made the forward pass O(T^2) (fused_lstm._bits)."""
  T_, B_, D_, H_ = 37, 3, 5, 11
  cell = cells.lstm(H_) if name == "lstm" else cells.gru(H_, reset_after=True)
  params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16),
                                  cell.init(jax.random.key(0), D_))
  xs = jax.random.normal(jax.random.key(1), (B_, T_, D_)).astype(jnp.bfloat16)
  run = lambda p, x: rnn_jax.unroll(cell, p, x, remat=remat, implementation="fused")[0]
  loss = lambda p, x: jnp.sum(run(p, x).astype(jnp.float32) ** 2)
  for fn in (jax.jit(run), jax.jit(jax.grad(loss, argnums=(0, 1)))):
    loops = _loop_computations(fn.lower(params, xs).compile().as_text())
    assert loops
    for shape in (f"{T_},{B_},{H_}", f"{B_},{T_},{H_}", f"{T_},{B_},{D_}", f"{B_},{T_},{D_}"):
      assert not re.search(rf"f32\[{shape}\]\S* convert\(", loops), (shape, "converted whole")


@pytest.mark.parametrize("name,gates", [("lstm", 4), ("gru", 3), ("gru_reset_after", 3)])
def test_training_forward_reads_each_gate_projection_whole(name, gates):
  """The training forward pass hoists the input projection out of the loop as one
  `[T, B, H]` array per gate (fused_lstm._project_gates); the loop must not read a
  step's gates as column slices of one `[T, B, G*H]` array, which made XLA's CPU loop
  fusions up to 2x slower per step."""
  T_, B_, D_, H_ = 37, 3, 5, 11
  cell = {"lstm": cells.lstm(H_), "gru": cells.gru(H_),
          "gru_reset_after": cells.gru(H_, reset_after=True)}[name]
  params = cell.init(jax.random.key(0), D_)
  xs = jax.random.normal(jax.random.key(1), (B_, T_, D_))
  run = lambda p, x: rnn_jax.unroll(cell, p, x, implementation="fused")[0]
  forward = jax.jit(lambda p, x: jax.vjp(run, p, x)[0])  # the custom_vjp's forward rule
  loops = _loop_computations(forward.lower(params, xs).compile().as_text())
  assert re.search(rf"f32\[{T_},{B_},{H_}\]", loops), "no per-gate [T, B, H] input in the loop"
  assert not re.search(rf"f32\[{T_},{B_},{gates * H_}\]", loops), "stacked projection in the loop"


def _loop_computations(hlo: str) -> str:
  """The text of every computation a while loop's body runs, nested calls included."""
  blocks = {m.group(1): m.group(0)
            for m in re.finditer(r"^(%[\w.-]+) \(.*?^}", hlo, re.M | re.S)}
  todo = re.findall(r"body=(%[\w.-]+)", hlo)
  seen = set()
  while todo:
    name = todo.pop()
    if name in seen or name not in blocks:
      continue
    seen.add(name)
    todo += re.findall(r"(?:calls|body|to_apply)=(%[\w.-]+)", blocks[name])
  return "\n".join(blocks[name] for name in seen)
