"""rnn_jax.modules.linen / .nnx against rnn_jax.layers on the same params.

Each module must be its layer: the same values and gradients (params and inputs) with
ragged lengths, in both directions, with an initial carry and timestamps, and the same
random masks for the same key. Then Flax's lifted transforms (nn.jit, nn.remat, nn.vmap,
nn.scan over a stack of wrapped layers; nnx.jit, nnx.grad, nnx.Optimizer) run them, and
the fused kernels run inside a Flax model (their custom_vjp is in the jaxpr). Last,
`benchmarks.flax_swap` runs at a tiny size (it asserts the swapped model agrees).
"""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rnn_jax import cells, layers, regularizers
from rnn_jax.modules import linen as rnn_nn
from rnn_jax.modules import nnx as rnn_nnx

# Pairwise-distinct sizes, so a swapped axis cannot go unnoticed.
B, T, D, H = 3, 5, 6, 4
LENGTHS = jnp.array([5, 2, 4])
TOL = dict(rtol=1e-5, atol=1e-6)


def _close(a, b):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), **TOL), a, b)


def _xs(seed=0, d=D):
  return jax.random.normal(jax.random.key(seed), (B, T, d))


def _loss(ys, finals):
  """A loss that reads every output and every final carry, weighted per position."""
  w = jnp.arange(1, ys.size + 1, dtype=ys.dtype).reshape(ys.shape) / ys.size
  return jnp.sum(jnp.sin(ys) * w) + sum(jnp.sum(leaf ** 2)
                                        for leaf in jax.tree_util.tree_leaves(finals))


def _zoneout_lstm():
  return regularizers.zoneout(cells.lstm(H), c_rate=0.4, h_rate=0.3)


# -- Linen ---------------------------------------------------------------------------------

LINEN_CASES = {
    # name: (module, the layer it must equal, training)
    "rnn_lstm": (rnn_nn.RNN(cells.lstm(H)), layers.rnn(cells.lstm(H)), False),
    "rnn_gru_reverse": (rnn_nn.RNN(cells.gru(H, reset_after=True), reverse=True),
                        layers.rnn(cells.gru(H, reset_after=True), reverse=True), False),
    "bidirectional": (rnn_nn.Bidirectional(cells.lstm(H), cells.gru(H + 1)),
                      layers.bidirectional(cells.lstm(H), cells.gru(H + 1)), False),
    # Masks inside the recurrence (zoneout) and between layers (dropout), a residual.
    "stack_zoneout_dropout": (
        rnn_nn.Stack([_zoneout_lstm(), cells.gru(H)], residual_from=1, dropout_rate=0.3),
        layers.stack([layers.rnn(_zoneout_lstm()), layers.rnn(cells.gru(H))],
                     residual_from=1, dropout_rate=0.3), True),
}


@pytest.mark.parametrize("name", sorted(LINEN_CASES))
def test_linen_module_equals_its_layer(name):
  module, layer, training = LINEN_CASES[name]
  xs = _xs()
  variables = module.init(jax.random.key(1), xs)
  params = variables["params"]
  # The params collection is the layer's own plain dict.
  assert (jax.tree_util.tree_structure(params)
          == jax.tree_util.tree_structure(layer.init(jax.random.key(2), D)))
  key = jax.random.key(3) if training else None

  def via_module(params, xs):
    ys, finals = module.apply({"params": params}, xs, seq_lengths=LENGTHS,
                              training=training, key=key)
    return _loss(ys, finals), (ys, finals)

  def via_layer(params, xs):
    ys, finals = layer.apply(params, xs, seq_lengths=LENGTHS, training=training, key=key)
    return _loss(ys, finals), (ys, finals)

  grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
  (_, out), grads = grad(via_module)(params, xs)
  (_, ref), ref_grads = grad(via_layer)(params, xs)
  _close(out, ref)
  _close(grads, ref_grads)
  assert not np.any(np.asarray(out[0])[1, 2:]), "outputs past a length are zero"
  if training:  # the masks matter: without them the result differs
    eval_ys = jax.jit(lambda v: module.apply(v, xs, seq_lengths=LENGTHS)[0])(variables)
    assert not np.allclose(np.asarray(eval_ys), np.asarray(out[0]))


def test_linen_initial_carry_and_timestamps():
  cell = cells.phased_lstm(H)
  module = rnn_nn.RNN(cell, reverse=True)
  xs = _xs()
  timestamps = jnp.cumsum(jnp.full((B, T), 0.7), axis=1)
  carry = cells.LSTMState(*jax.random.normal(jax.random.key(4), (2, B, H)))
  variables = module.init(jax.random.key(1), xs, timestamps=timestamps)
  out = module.apply(variables, xs, seq_lengths=LENGTHS, initial_carry=carry,
                     timestamps=timestamps)
  ref = layers.rnn(cell, reverse=True).apply(variables["params"], xs, seq_lengths=LENGTHS,
                                             initial_carry=carry, timestamps=timestamps)
  _close(out, ref)
  # A zero initial carry gives a different result: the carry reached the cell.
  zero = module.apply(variables, xs, seq_lengths=LENGTHS, timestamps=timestamps)
  assert not np.allclose(np.asarray(zero[0]), np.asarray(out[0]))


def test_linen_masks_come_from_the_dropout_stream():
  module = rnn_nn.Stack([_zoneout_lstm(), cells.gru(H)], dropout_rate=0.5)
  xs = _xs()
  variables = module.init(jax.random.key(1), xs)

  @jax.jit
  def run(key):
    return module.apply(variables, xs, seq_lengths=LENGTHS, training=True,
                        rngs={"dropout": key})[0]

  k5, k6 = jax.random.key(5), jax.random.key(6)
  _close(run(k5), run(k5))
  assert not np.allclose(np.asarray(run(k5)), np.asarray(run(k6)))
  # Not training: the rng is ignored, and the module is the layer without masks.
  evaluated = jax.jit(lambda key: module.apply(variables, xs, seq_lengths=LENGTHS,
                                               rngs={"dropout": key})[0])
  _close(evaluated(k5), evaluated(k6))
  _close(evaluated(k5),
         jax.jit(module.layer.apply)(variables["params"], xs, seq_lengths=LENGTHS)[0])
  with pytest.raises(ValueError, match=r"rngs: .*rngs=\{'dropout': key\}"):
    jax.eval_shape(lambda: module.apply(variables, xs, training=True))
  # A plain LSTM draws nothing: training needs no rng.
  plain = rnn_nn.RNN(cells.lstm(H))
  jax.eval_shape(lambda: plain.apply(plain.init(jax.random.key(1), xs), xs, training=True))


def _has_custom_vjp(fn, *args) -> bool:
  """Whether a fused kernel (a `jax.custom_vjp`) runs in `fn`'s forward pass."""
  return "custom_vjp_call" in str(jax.make_jaxpr(fn)(*args))


def test_linen_runs_the_fused_kernels_inside_a_model():
  class Classifier(nn.Module):
    cell: cells.Cell

    @nn.compact
    def __call__(self, tokens, lengths):
      x = nn.Embed(11, D)(tokens)  # [B, T, D]
      _, final = rnn_nn.RNN(self.cell)(x, seq_lengths=lengths)
      return nn.Dense(2)(final.h)  # [B, 2]

  tokens = jax.random.randint(jax.random.key(0), (B, T), 0, 11)
  for cell, fused in ((cells.lstm(H), True), (cells.lstm(H, peephole=True), False)):
    model = Classifier(cell)
    variables = model.init(jax.random.key(1), tokens, LENGTHS)
    assert _has_custom_vjp(lambda v: model.apply(v, tokens, LENGTHS), variables) == fused


def test_linen_jit_and_remat_equal_the_plain_module():
  xs = _xs()
  module = rnn_nn.RNN(cells.gru(H), reverse=True)
  variables = module.init(jax.random.key(1), xs)

  def value_and_grad(m):
    f = lambda v: _loss(*m.apply(v, xs, seq_lengths=LENGTHS))
    return jax.jit(jax.value_and_grad(f))(variables)

  ref = value_and_grad(module)
  for lifted in (nn.jit(rnn_nn.RNN), nn.remat(rnn_nn.RNN)):
    _close(value_and_grad(lifted(cells.gru(H), reverse=True)), ref)


def test_linen_vmap_is_an_ensemble():
  E = 2
  Ensemble = nn.vmap(rnn_nn.RNN, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(0,), out_axes=0)
  module = Ensemble(cells.gru(H))
  xs = jax.random.normal(jax.random.key(0), (E, B, T, D))  # [E, B, T, D]
  variables = jax.jit(module.init)(jax.random.key(1), xs)
  assert variables["params"]["w_ih"].shape == (E, D, 3 * H)
  ys, finals = jax.jit(module.apply)(variables, xs)
  layer = layers.rnn(cells.gru(H))
  ref = jax.jit(jax.vmap(layer.apply))(variables["params"], xs)
  _close((ys, finals), ref)
  assert not np.allclose(np.asarray(ys[0]), np.asarray(ys[1]))  # members differ


def test_linen_scan_over_a_stack_of_wrapped_layers():
  L = 2

  class Block(nn.Module):
    """One residual LSTM layer, scanned over L layers with stacked params."""

    @nn.compact
    def __call__(self, x, lengths):
      y, final = rnn_nn.RNN(cells.lstm(D))(x, seq_lengths=lengths)
      return x + y, final.h

  Scanned = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=nn.broadcast, length=L)
  model = Scanned()
  xs = _xs()
  variables = model.init(jax.random.key(1), xs, LENGTHS)
  p = variables["params"]["RNN_0"]
  assert p["w_ih"].shape == (L, D, 4 * D)

  def via_scan(v):
    out, hs = model.apply(v, xs, LENGTHS)
    return jnp.sum(jnp.sin(out)) + jnp.sum(hs ** 2), (out, hs)

  def via_stack(v):
    p = v["params"]["RNN_0"]
    stack = layers.stack([layers.rnn(cells.lstm(D))] * L, residual_from=0)
    per_layer = {f"layer_{l}": jax.tree_util.tree_map(lambda a: a[l], p) for l in range(L)}
    out, finals = stack.apply(per_layer, xs, seq_lengths=LENGTHS)
    # Past each length the scan's residual passes xs through; the stack zeroes it.
    valid = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]
    out = jnp.where(valid, out, xs)
    hs = jnp.stack([f.h for f in finals])
    return jnp.sum(jnp.sin(out)) + jnp.sum(hs ** 2), (out, hs)

  (_, out), grads = jax.jit(jax.value_and_grad(via_scan, has_aux=True))(variables)
  (_, ref), ref_grads = jax.jit(jax.value_and_grad(via_stack, has_aux=True))(variables)
  _close(out, ref)
  _close(grads, ref_grads)


# -- NNX -----------------------------------------------------------------------------------


def test_nnx_module_equals_its_layer_values_and_gradients():
  xs = _xs()
  for module, layer in (
      (rnn_nnx.RNN(cells.lstm(H), D, reverse=True, rngs=nnx.Rngs(0)),
       layers.rnn(cells.lstm(H), reverse=True)),
      (rnn_nnx.Bidirectional(cells.gru(H, reset_after=True), D, rngs=nnx.Rngs(1)),
       layers.bidirectional(cells.gru(H, reset_after=True)))):
    params = module.param_dict()
    assert (jax.tree_util.tree_structure(params)
            == jax.tree_util.tree_structure(layer.init(jax.random.key(0), D)))
    assert nnx.to_pure_dict(nnx.state(module, nnx.Param))["params"].keys() == params.keys()
    loss, grads = nnx.jit(nnx.value_and_grad(
        lambda m: _loss(*m(xs, seq_lengths=LENGTHS))))(module)
    ref_loss, ref = jax.jit(jax.value_and_grad(
        lambda p: _loss(*layer.apply(p, xs, seq_lengths=LENGTHS))))(params)
    _close(loss, ref_loss)
    _close(nnx.to_pure_dict(grads)["params"], ref)


def test_nnx_training_mode_keys_and_jit():
  xs = _xs()
  layer = layers.rnn(_zoneout_lstm())
  module = rnn_nnx.RNN(_zoneout_lstm(), D, rngs=nnx.Rngs(params=0, dropout=1))
  params = module.param_dict()
  layer_apply = jax.jit(lambda key, training: layer.apply(
      params, xs, seq_lengths=LENGTHS, training=training, key=key)[0], static_argnums=1)
  call = nnx.jit(lambda m, key, training: m(xs, seq_lengths=LENGTHS, training=training,
                                             key=key)[0], static_argnums=2)
  # An explicit key: the layer's masks for that key.
  key = jax.random.key(7)
  _close(call(module, key, True), layer_apply(key, True))
  # Eval mode by default (training=None reads `deterministic`): no masks.
  _close(call(module, None, None), layer_apply(None, False))
  # train(): keys from the module's dropout stream, fresh at each call, under nnx.jit.
  module.train()
  first, second = call(module, None, None), call(module, None, None)
  assert not np.allclose(np.asarray(first), np.asarray(second))
  module.eval()
  _close(call(module, None, None), layer_apply(None, False))
  no_stream = rnn_nnx.RNN(_zoneout_lstm(), D, rngs=nnx.Rngs(params=0))
  with pytest.raises(ValueError, match="rngs: .*nnx.Rngs"):
    jax.eval_shape(lambda: no_stream(xs, training=True))


def test_nnx_optimizer_trains_the_params():
  xs = _xs()
  module = rnn_nnx.RNN(cells.lstm(H), D, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(module, optax.sgd(0.1), wrt=nnx.Param)

  @nnx.jit
  def train_step(module, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: _loss(*m(xs, seq_lengths=LENGTHS)))(module)
    optimizer.update(module, grads)
    return loss

  losses = [float(train_step(module, optimizer)) for _ in range(3)]
  assert losses[2] < losses[0]
  # The params stay the layer's plain dict, one nnx.Param per array.
  params = nnx.to_pure_dict(nnx.state(module, nnx.Param))["params"]
  assert sorted(params) == ["b", "w_hh", "w_ih"]
  _close(module.param_dict(), params)


def test_swap_benchmark_runs_and_checks_the_models_agree():
  """`python -m benchmarks.flax_swap` at a tiny size: it checks that the Flax classifier and
  the swapped one give the same logits and gradients, then prints its table."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-m", "benchmarks.flax_swap", "--sizes=4x6x8",
                        "--turns=1", "--min_time=0.01"], cwd=root, text=True,
                       capture_output=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-3000:]
  row = [line for line in out.stdout.splitlines() if line.startswith("| 4, 6, 8 |")]
  assert len(row) == 1, out.stdout
