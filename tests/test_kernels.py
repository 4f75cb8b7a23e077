"""Fused sequence kernels against their reference: values and gradients."""

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
  assert "custom_vjp" not in jaxpr(cell, params, remat=True)
  assert "custom_vjp" not in jaxpr(cell, params, implementation="scan")
  peephole = cells.lstm(H, peephole=True)
  assert not kernels.fused_supports(peephole)
  assert "custom_vjp" not in jaxpr(peephole, peephole.init(jax.random.key(0), D))
  with pytest.raises(ValueError, match="cell: no fused kernel"):
    rnn_jax.unroll(peephole, peephole.init(jax.random.key(0), D), xs, implementation="fused")
  with pytest.raises(ValueError, match="implementation"):
    rnn_jax.unroll(cell, params, xs, implementation="cudnn")
