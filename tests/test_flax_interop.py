"""rnn_jax.interop.flax against Flax itself.

Every cell Flax ships that rnn_jax can compute (Linen LSTMCell, OptimizedLSTMCell,
GRUCell, SimpleCell; NNX LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell) runs the same
inputs through the Flax module and through the converted params: equal outputs and final
carries, one step from a random carry and whole ragged sequences. Every weight is
perturbed by a distinct random amount first (Flax initialises biases to zero), so a
swapped gate, kernel or bias shows; `test_a_swapped_gate_is_caught` proves the checks see
one. The round trip returns the original variables exactly. `from_flax` is checked on
RNN, Bidirectional and Sequential, Linen and NNX, values and gradients.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnn_jax import cells
from rnn_jax.interop import from_flax
from rnn_jax.interop import flax as flax_interop

# Pairwise-distinct sizes, so a swapped axis cannot go unnoticed.
B, T, D, H = 3, 5, 6, 4
LENGTHS = jnp.array([5, 2, 4])  # ragged, unsorted, one full length
VALID = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]  # [B, T, 1]
TOL = dict(rtol=1e-5, atol=1e-6)


def _close(a, b):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), **TOL), a, b)


def _perturb(tree, seed=9):
  """Every leaf plus its own noise, so no two gates (or biases) are alike."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


def _perturb_nnx(module, seed=9):
  state = nnx.state(module, nnx.Param)
  nnx.replace_by_pure_dict(state, _perturb(nnx.to_pure_dict(state), seed))
  nnx.update(module, state)
  return module


LINEN_CELLS = {
    "linen_lstm": lambda: nn.LSTMCell(H),
    "linen_optimized_lstm": lambda: nn.OptimizedLSTMCell(H),
    "linen_gru": lambda: nn.GRUCell(H),
    "linen_simple": lambda: nn.SimpleCell(H),
    "linen_simple_relu": lambda: nn.SimpleCell(H, activation_fn=nn.relu),
}
NNX_CELLS = {
    "nnx_lstm": lambda: nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)),
    "nnx_optimized_lstm": lambda: nnx.OptimizedLSTMCell(D, H, rngs=nnx.Rngs(0)),
    "nnx_gru": lambda: nnx.GRUCell(D, H, rngs=nnx.Rngs(0)),
    "nnx_simple": lambda: nnx.SimpleCell(D, H, rngs=nnx.Rngs(0)),
}
CELLS = sorted({**LINEN_CELLS, **NNX_CELLS})


def _xs(seed=1):
  return jax.random.normal(jax.random.key(seed), (B, T, D))


def _random_carry(flax_cell, seed=3):
  """A random carry in Flax's layout ((c, h) for an LSTM)."""
  if isinstance(flax_cell, nnx.Module):
    zeros = flax_cell.initialize_carry((B, D), rngs=nnx.Rngs(0))
  else:
    zeros = flax_cell.initialize_carry(jax.random.key(0), (B, D))
  leaves, treedef = jax.tree_util.tree_flatten(zeros)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


@functools.lru_cache(maxsize=None)
def _cell(name):
  """(flax_cell, variables): Linen variables perturbed; an NNX cell perturbed in place
  (its variables None: the converters read the module)."""
  if name in NNX_CELLS:
    return _perturb_nnx(NNX_CELLS[name]()), None
  cell = LINEN_CELLS[name]()
  x = jnp.zeros((B, D))
  return cell, _perturb(cell.init(jax.random.key(0), _random_carry(cell), x))


def _flax_step(cell, variables, carry, x):
  if variables is None:
    return cell(carry, x)
  return cell.apply(variables, carry, x)


def _step_case(name):
  """One step of Flax cell `name` from a random carry, and its conversion: `(cell, carry,
  x, (ref_carry, ref_y), rnn_jax cell, params)`."""
  cell, variables = _cell(name)
  carry, x = _random_carry(cell), jax.random.normal(jax.random.key(4), (B, D))
  ref = _flax_step(cell, variables, carry, x)
  return (cell, carry, x, ref, flax_interop.cell_from_flax(cell),
          flax_interop.params_from_flax(cell, variables))


@pytest.mark.parametrize("name", CELLS)
def test_one_step_matches_flax(name):
  cell, carry, x, (ref_carry, ref_y), rj_cell, params = _step_case(name)
  new_carry, y = rj_cell.step(params, flax_interop.carry_from_flax(cell, carry), x)
  _close(y, ref_y)
  _close(flax_interop.carry_to_flax(cell, new_carry), ref_carry)
  if "lstm" in name:  # Flax's (c, h) against rnn_jax's LSTMState(h, c)
    assert isinstance(new_carry, cells.LSTMState)
    _close(new_carry.h, ref_carry[1])


@pytest.mark.parametrize("name", CELLS)
def test_ragged_sequence_matches_flax_rnn(name):
  cell, variables = _cell(name)
  xs, carry0 = _xs(), _random_carry(cell)
  if variables is None:
    model = nnx.RNN(cell, return_carry=True)
    ref_carry, ref_ys = model(xs, seq_lengths=LENGTHS, initial_carry=carry0)
  else:
    model = nn.RNN(cell, return_carry=True)
    variables = {"params": {"cell": variables["params"]}}
    ref_carry, ref_ys = model.apply(variables, xs, seq_lengths=LENGTHS, initial_carry=carry0)
  apply, params = from_flax(model, variables)
  carry, ys = jax.jit(apply)(params, xs, seq_lengths=LENGTHS, initial_carry=carry0)
  _close(jnp.where(VALID, ys, 0), jnp.where(VALID, ref_ys, 0))
  assert not np.any(np.asarray(jnp.where(VALID, 0, ys))), "zero past each length"
  _close(carry, ref_carry)


@pytest.mark.parametrize("name", CELLS)
def test_round_trip_returns_the_original_variables(name):
  cell, variables = _cell(name)
  original = (variables if variables is not None
              else nnx.to_pure_dict(nnx.state(cell, nnx.Param)))
  params = flax_interop.params_from_flax(cell, variables)
  back = flax_interop.params_to_flax(cell, params)
  assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(original)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, original)
  # And the other way: rnn_jax params (every bias nonzero) survive Flax and back.
  rj_params = _perturb(flax_interop.cell_from_flax(cell).init(jax.random.key(5), D))
  if name == "nnx_gru":  # nnx's GRUCell has no b_hn
    rj_params["b_hn"] = jnp.zeros_like(rj_params["b_hn"])
  again = flax_interop.params_from_flax(cell, flax_interop.params_to_flax(cell, rj_params))
  jax.tree_util.tree_map(np.testing.assert_array_equal, again, rj_params)


def test_loaded_into_nnx_the_params_compute_the_same():
  cell = nnx.GRUCell(D, H, rngs=nnx.Rngs(1))
  rj_cell = cells.gru(H, reset_after=True)
  params = _perturb(rj_cell.init(jax.random.key(2), D))
  params["b_hn"] = jnp.zeros_like(params["b_hn"])
  state = nnx.state(cell, nnx.Param)
  nnx.replace_by_pure_dict(state, flax_interop.params_to_flax(cell, params))
  nnx.update(cell, state)
  h, x = jax.random.normal(jax.random.key(3), (B, H)), jax.random.normal(jax.random.key(4),
                                                                        (B, D))
  _close(cell(h, x), rj_cell.step(params, h, x))


def test_missing_biases_go_to_flax_as_zeros():
  cell = nn.OptimizedLSTMCell(H)
  params = cells.lstm(H, use_bias=False).init(jax.random.key(0), D)
  variables = flax_interop.params_to_flax(cell, params)
  h, c = jax.random.normal(jax.random.key(1), (2, B, H))
  x = jax.random.normal(jax.random.key(2), (B, D))
  (c_ref, h_ref), _ = cell.apply(variables, (c, h), x)
  state, _ = cells.lstm(H, use_bias=False).step(params, cells.LSTMState(h, c), x)
  _close((state.c, state.h), (c_ref, h_ref))


@pytest.mark.parametrize("name", ["linen_optimized_lstm", "nnx_gru"])
def test_a_swapped_gate_is_caught(name):
  """The checks above are sensitive: swap two gates' blocks and the outputs differ."""
  cell, carry, x, (_, ref_y), rj_cell, params = _step_case(name)
  for key in ("w_ih", "w_hh", "b"):
    blocks = jnp.split(params[key], 4 if "lstm" in name else 3, axis=-1)
    blocks[0], blocks[1] = blocks[1], blocks[0]
    swapped = {**params, key: jnp.concatenate(blocks, -1)}
    _, y = rj_cell.step(swapped, flax_interop.carry_from_flax(cell, carry), x)
    assert np.abs(np.asarray(y - ref_y)).max() > 1e-3, key


def test_what_cannot_be_mapped_raises_naming_it():
  lstm, gru = nn.LSTMCell(H), nn.GRUCell(H)
  cases = [
      (lambda: flax_interop.cell_from_flax(nn.MGUCell(H)), "MGUCell cannot be mapped"),
      (lambda: flax_interop.cell_from_flax(nn.SimpleCell(H, residual=True)), "residual"),
      (lambda: flax_interop.cell_from_flax(nn.LSTMCell(H, gate_fn=nn.hard_sigmoid)),
       "gate_fn"),
      (lambda: flax_interop.cell_from_flax(nn.GRUCell(H, activation_fn=nn.relu)),
       "activation_fn"),
      (lambda: flax_interop.cell_from_flax(nn.Dense(H)), "Dense cannot be mapped"),
      (lambda: flax_interop.params_to_flax(
          lstm, cells.lstm(H, peephole=True).init(jax.random.key(0), D)), "peephole"),
      (lambda: flax_interop.params_to_flax(
          lstm, cells.lstm(H, layer_norm=True).init(jax.random.key(0), D)), "layer norm"),
      (lambda: flax_interop.params_to_flax(
          lstm, cells.lstm(H, coupled=True).init(jax.random.key(0), D)), "coupled"),
      (lambda: flax_interop.params_to_flax(
          gru, cells.gru(H).init(jax.random.key(0), D)), "reset_after=False"),
      (lambda: flax_interop.params_to_flax(
          nnx.GRUCell(D, H, rngs=nnx.Rngs(0)),
          _perturb(cells.gru(H, reset_after=True).init(jax.random.key(0), D))),
       "b_hn is nonzero"),
      (lambda: flax_interop.params_to_flax(
          lstm, cells.lstm(H + 1).init(jax.random.key(0), D)), "H=4 needs"),
      # GRU variables given for an LSTM: names listed.
      (lambda: flax_interop.params_from_flax(lstm, _cell("linen_gru")[1]),
       r"missing \['hf/bias'"),
      (lambda: flax_interop.params_from_flax(lstm, None), "holds no weights"),
      (lambda: from_flax(nn.Dense(H), {"params": {}}), "expected a Flax RNN"),
      (lambda: from_flax(nn.Sequential([nn.RNN(lstm, return_carry=True), nn.RNN(gru)]),
                         {"params": {}}), "returns its carry"),
  ]
  for make, match in cases:
    with pytest.raises(ValueError, match=match):
      make()


# -- Layers: from_flax -----------------------------------------------------------------------


def _valid_part(ys):
  return jnp.where(VALID, ys, 0)


def test_from_flax_linen_layers_match_flax():
  xs = _xs()
  xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]
  cases = [
      # (module, its input, kwargs, output time-major?)
      (nn.RNN(nn.GRUCell(H), reverse=True, time_major=True), xs_tm,
       dict(seq_lengths=LENGTHS), True),
      (nn.Bidirectional(nn.RNN(nn.LSTMCell(H)), nn.RNN(nn.GRUCell(H)), return_carry=True,
                        merge_fn=lambda a, b: a * b), xs, dict(seq_lengths=LENGTHS), False),
      # A Sequential: keyword arguments reach only its first layer in Flax, so no lengths.
      (nn.Sequential([nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(H)),
                                       nn.RNN(nn.OptimizedLSTMCell(H))),
                      nn.RNN(nn.SimpleCell(H), reverse=True)]), xs, {}, False),
  ]
  for module, x, kwargs, time_major in cases:
    variables = _perturb(module.init(jax.random.key(0), x))
    ref = module.apply(variables, x, **kwargs)
    apply, params = from_flax(module, variables)
    out = jax.jit(apply)(params, x, **kwargs)
    if isinstance(ref, tuple):  # (carry, ys)
      _close(out[0], ref[0])
      ref, out = ref[1], out[1]
    if "seq_lengths" in kwargs:
      if time_major:
        ref, out = jnp.swapaxes(ref, 0, 1), jnp.swapaxes(out, 0, 1)
      ref, out = _valid_part(ref), _valid_part(out)
    _close(out, ref)


def test_from_flax_sequential_with_lengths_is_each_layer_with_lengths():
  """In a Sequential the lengths reach every layer: Flax's layers called one by one."""
  module = nn.Sequential([nn.RNN(nn.GRUCell(H)), nn.RNN(nn.LSTMCell(H), reverse=True,
                                                        keep_order=True)])
  xs = _xs()
  variables = _perturb(module.init(jax.random.key(0), xs))
  apply, params = from_flax(module, variables)
  assert sorted(params) == ["layer_0", "layer_1"]
  x = xs
  for l, layer in enumerate(module.layers):
    x = layer.apply({"params": variables["params"][f"layers_{l}"]}, x, seq_lengths=LENGTHS)
  _close(_valid_part(jax.jit(apply)(params, xs, seq_lengths=LENGTHS)), _valid_part(x))


def test_from_flax_nnx_layers_match_flax():
  xs = _xs()
  bi = nnx.Bidirectional(nnx.RNN(_perturb_nnx(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))),
                         nnx.RNN(_perturb_nnx(nnx.GRUCell(D, H, rngs=nnx.Rngs(1)))),
                         return_carry=True)
  apply, params = from_flax(bi)
  (c_fw, c_bw), ys = jax.jit(apply)(params, xs, seq_lengths=LENGTHS)
  (r_fw, r_bw), ref = bi(xs, seq_lengths=LENGTHS)
  _close((c_fw, c_bw, _valid_part(ys)), (r_fw, r_bw, _valid_part(ref)))
  seq = nnx.Sequential(
      nnx.RNN(_perturb_nnx(nnx.OptimizedLSTMCell(D, H, rngs=nnx.Rngs(2)))),
      nnx.RNN(_perturb_nnx(nnx.SimpleCell(H, H + 1, rngs=nnx.Rngs(3))), reverse=True))
  apply, params = from_flax(seq)
  _close(jax.jit(apply)(params, xs), seq(xs))


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_from_flax_gradients_match_flax(api):
  """Gradients for the Flax variables: through Flax's scan, and through the converted
  params on rnn_jax's fused kernel."""
  xs = _xs()

  def loss(carry, ys):
    return jnp.sum(jnp.sin(_valid_part(ys))) + sum(jnp.sum(c ** 2) for c in carry)

  if api == "linen":
    cell = nn.OptimizedLSTMCell(H)
    model = nn.RNN(cell, return_carry=True)
    variables = _perturb(model.init(jax.random.key(0), xs))
    ref = jax.grad(lambda v: loss(*model.apply(v, xs, seq_lengths=LENGTHS)))(variables)
  else:
    cell = _perturb_nnx(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))
    model = nnx.RNN(cell, return_carry=True)
    variables = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    ref = nnx.to_pure_dict(nnx.grad(lambda m: loss(*m(xs, seq_lengths=LENGTHS)))(model))
  apply, _ = from_flax(model, variables)

  def converted_loss(v):
    cell_vars = v["params"]["cell"] if api == "linen" else v["cell"]
    params = flax_interop.params_from_flax(cell, cell_vars)
    return loss(*apply(params, xs, seq_lengths=LENGTHS))

  # The converted params run on the fused kernel (a custom_vjp) ...
  assert "custom_vjp_call" in str(jax.make_jaxpr(converted_loss)(variables))
  # ... and give Flax's gradients.
  _close(jax.jit(jax.grad(converted_loss))(variables), ref)
