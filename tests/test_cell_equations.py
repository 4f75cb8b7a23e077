"""Each cell's `step` against its equations, written out by hand in float64 numpy.

The expected values below never call library code: every gate, layer norm and
time gate is spelled out here from the equations in the cells' docstrings.
Sizes are pairwise distinct (B=2, D=3, H=4) so that a swapped axis or a
mis-sliced gate block changes the shapes or the numbers. Every param array
(including the zero-inited biases and peepholes) is replaced by random values
so that no term can hide behind a zero.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rnn_jax import cells
from rnn_jax.cells import LSTMState

B, D, H = 2, 3, 4
T = 3  # steps per sequence
RTOL, ATOL = 1e-5, 1e-6  # float32 library vs float64 reference
LN_EPS = 1e-5

# ----------------------------------------------------------------------------
# Hand-written references (float64 numpy).
# ----------------------------------------------------------------------------


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def block(a, k):
  """The k-th H-wide block of the last axis."""
  return a[..., k * H:(k + 1) * H]


def layer_norm(v, eps=LN_EPS):
  """Zero mean, unit (biased) variance over the last axis."""
  mean = v.mean(-1, keepdims=True)
  var = ((v - mean) ** 2).mean(-1, keepdims=True)
  return (v - mean) / np.sqrt(var + eps)


def ref_lstm_step(p, h, c, x, *, peephole=False, coupled=False,
                  layer_norm_=False, use_bias=True):
  """One LSTM step, gate by gate; returns (h_t, c_t)."""
  names = ("f", "g", "o") if coupled else ("i", "f", "g", "o")
  pre = {}
  for k, name in enumerate(names):
    a = x @ block(p["w_ih"], k) + h @ block(p["w_hh"], k)  # [B, H]
    if layer_norm_:
      a = layer_norm(a) * block(p["ln_gates_scale"], k)
    if use_bias:
      a = a + block(p["b"], k)
    pre[name] = a
  if peephole:
    pre["f"] = pre["f"] + p["w_cf"] * c
    if not coupled:
      pre["i"] = pre["i"] + p["w_ci"] * c
  f = sigmoid(pre["f"])
  i = 1.0 - f if coupled else sigmoid(pre["i"])
  g = np.tanh(pre["g"])
  c_new = f * c + i * g
  z_o = pre["o"] + (p["w_co"] * c_new if peephole else 0.0)
  o = sigmoid(z_o)
  if layer_norm_:
    h_new = o * np.tanh(layer_norm(c_new) * p["ln_cell_scale"] + p["ln_cell_bias"])
  else:
    h_new = o * np.tanh(c_new)
  return h_new, c_new


def ref_gru_step(p, h, x, *, reset_after=False, use_bias=True):
  w_ir, w_iz, w_in = (block(p["w_ih"], k) for k in range(3))
  w_hr, w_hz, w_hn = (block(p["w_hh"], k) for k in range(3))
  if use_bias:
    b_r, b_z, b_n = (block(p["b"], k) for k in range(3))
  else:
    b_r = b_z = b_n = 0.0
  r = sigmoid(x @ w_ir + h @ w_hr + b_r)
  z = sigmoid(x @ w_iz + h @ w_hz + b_z)
  if reset_after:
    b_hn = p["b_hn"] if use_bias else 0.0
    n = np.tanh(x @ w_in + b_n + r * (h @ w_hn + b_hn))
  else:
    n = np.tanh(x @ w_in + (r * h) @ w_hn + b_n)
  return (1.0 - z) * n + z * h


def ref_rnn_step(p, h, x, *, nonlinearity, use_bias=True):
  a = x @ p["w_ih"] + h @ p["w_hh"] + (p["b"] if use_bias else 0.0)
  return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)


def ref_phase(t, log_tau, shift):
  """phi [B, H] for timestamps t [B]."""
  tau = np.exp(log_tau)
  return np.mod(t[:, None] - shift, tau) / tau


def ref_time_gate(t, log_tau, shift, r_on, alpha):
  phi = ref_phase(t, log_tau, shift)
  k = np.empty_like(phi)
  for idx in np.ndindex(phi.shape):
    ph, r = phi[idx], r_on[idx[-1]]
    if ph < 0.5 * r:
      k[idx] = 2.0 * ph / r
    elif ph < r:
      k[idx] = 2.0 - 2.0 * ph / r
    else:
      k[idx] = alpha * ph
  return k


def regimes(t, log_tau, shift, r_on):
  """0 opening, 1 closing, 2 closed, per [B, H] entry."""
  phi = ref_phase(t, log_tau, shift)
  return np.where(phi < 0.5 * r_on, 0, np.where(phi < r_on, 1, 2))


def breakpoint_margin(t, log_tau, shift, r_on):
  """Distance of phi from the gate's kinks (0, r_on/2, r_on, 1)."""
  phi = ref_phase(t, log_tau, shift)
  return np.min(np.abs(np.stack([phi, phi - 0.5 * r_on, phi - r_on, phi - 1.0])))


def ref_phased_step(p, h, c, x, t, *, alpha, peephole=False):
  h_prop, c_prop = ref_lstm_step(p, h, c, x, peephole=peephole)
  k = ref_time_gate(t, p["log_tau"], p["shift"], p["r_on"], alpha)
  return k * h_prop + (1.0 - k) * h, k * c_prop + (1.0 - k) * c


# ----------------------------------------------------------------------------
# Fixtures: random params, carries, inputs; a designed Phased-LSTM time gate.
# ----------------------------------------------------------------------------

# Periods, shifts, open ratios and timestamps picked so that all three gate
# regimes occur among the B*H entries at every step and phi stays >= 0.038 away
# from every kink (0, r_on/2, r_on, 1). Timestamps are irregular and differ
# across the batch.
PLSTM_TAU = np.array([2.1, 3.3, 4.7, 1.6])
PLSTM_SHIFT = np.array([0.38, 0.81, 3.03, 0.37])
PLSTM_R_ON = np.array([0.3, 0.45, 0.25, 0.5])
PLSTM_TIMES = np.array([[0.3, 1.1, 2.6], [7.1, 8.0, 9.7]])  # [B, T]
PLSTM_LEAK = 0.05


def randomize(params, seed, scale=0.5):
  """Every array of `params` replaced by N(0, scale^2) values (float64 numpy)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name in sorted(params):
    out[name] = scale * rng.standard_normal(np.shape(params[name]))
  return out


def set_time_gate(p):
  p = dict(p)
  p["log_tau"] = np.log(PLSTM_TAU)
  p["shift"] = PLSTM_SHIFT.copy()
  p["r_on"] = PLSTM_R_ON.copy()
  return p


def to_jax(tree, dtype=jnp.float32):
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def to_np64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def assert_close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=""):
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                             rtol=rtol, atol=atol, err_msg=err_msg)


def rand_inputs(seed, is_lstm, batch=(B,), steps=T):
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((steps, *batch, D))
  h = 0.8 * rng.standard_normal((*batch, H))
  c = 1.5 * rng.standard_normal((*batch, H)) if is_lstm else None
  return xs, h, c


# Every cell configuration: name -> factory(**cell kwargs).
CELL_CONFIGS = {
    "lstm": lambda **kw: cells.lstm(H, **kw),
    "lstm_peephole": lambda **kw: cells.lstm(H, peephole=True, **kw),
    "lstm_coupled": lambda **kw: cells.lstm(H, coupled=True, **kw),
    "lstm_coupled_peephole": lambda **kw: cells.lstm(H, coupled=True, peephole=True, **kw),
    "lstm_layer_norm": lambda **kw: cells.lstm(H, layer_norm=True, **kw),
    "lstm_all": lambda **kw: cells.lstm(H, peephole=True, coupled=True,
                                        layer_norm=True, **kw),
    "gru": lambda **kw: cells.gru(H, **kw),
    "gru_reset_after": lambda **kw: cells.gru(H, reset_after=True, **kw),
    "gru_nobias": lambda **kw: cells.gru(H, use_bias=False, **kw),
    "gru_reset_after_nobias": lambda **kw: cells.gru(H, reset_after=True,
                                                     use_bias=False, **kw),
    "rnn_tanh": lambda **kw: cells.simple_rnn(H, **kw),
    "rnn_relu": lambda **kw: cells.simple_rnn(H, nonlinearity="relu", **kw),
    "irnn": lambda **kw: cells.simple_rnn(H, nonlinearity="relu",
                                          identity_init=True, **kw),
    "phased_lstm": lambda **kw: cells.phased_lstm(H, leak=PLSTM_LEAK, **kw),
    "phased_lstm_peephole": lambda **kw: cells.phased_lstm(
        H, leak=PLSTM_LEAK, peephole=True, **kw),
}


def is_lstm_like(name):
  return name.startswith("lstm") or name.startswith("phased")


def random_setup(name, seed, batch=(B,), dtype=jnp.float32, **cell_kw):
  """(cell, random params, random carry, xs [T, *batch, D], times [T, *batch] or None).

  Params, carry and inputs are float64 numpy; `dtype` is the cell's param_dtype.
  """
  cell = CELL_CONFIGS[name](param_dtype=dtype, **cell_kw)
  p = randomize(cell.init(jax.random.PRNGKey(seed), D), seed)
  if name.startswith("phased"):
    p = set_time_gate(p)
  xs, h, c = rand_inputs(seed + 1000, is_lstm_like(name), batch)
  carry = LSTMState(h, c) if is_lstm_like(name) else h
  times = None
  if name.startswith("phased"):
    times = np.broadcast_to(PLSTM_TIMES.T.reshape(T, *([1] * (len(batch) - 1)), B),
                            (T, *batch)).copy()
  return cell, p, carry, xs, times


def lib_step(cell, params, carry, x, t=None, training=False):
  if cell.uses_time:
    return cell.step(params, carry, x, time=t, training=training)
  return cell.step(params, carry, x)


# ----------------------------------------------------------------------------
# 1. LSTM.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("layer_norm_", [False, True], ids=["noln", "ln"])
@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
@pytest.mark.parametrize("peephole", [False, True], ids=["nopeep", "peep"])
def test_lstm_step_matches_equations(peephole, coupled, layer_norm_):
  cell = cells.lstm(H, peephole=peephole, coupled=coupled, layer_norm=layer_norm_)
  p = randomize(cell.init(jax.random.PRNGKey(0), D), seed=1)
  xs, h, c = rand_inputs(2, True)
  pj, carry = to_jax(p), LSTMState(*to_jax((h, c)))
  # Reference runs on the exact float32 values the library sees.
  p, h, c, xs = to_np64((pj, h.astype(np.float32), c.astype(np.float32),
                         xs.astype(np.float32)))
  for t in range(T):
    carry, y = cell.step(pj, carry, jnp.asarray(xs[t], jnp.float32))
    h, c = ref_lstm_step(p, h, c, xs[t], peephole=peephole, coupled=coupled,
                         layer_norm_=layer_norm_)
    assert isinstance(carry, LSTMState)
    assert y.shape == (B, H) and carry.c.shape == (B, H)
    assert_close(y, h, err_msg=f"y at step {t}")
    assert_close(carry.h, h, err_msg=f"h at step {t}")
    assert_close(carry.c, c, err_msg=f"c at step {t} (carry c is unnormalised)")


@pytest.mark.parametrize("layer_norm_", [False, True], ids=["noln", "ln"])
@pytest.mark.parametrize("coupled", [False, True], ids=["uncoupled", "coupled"])
@pytest.mark.parametrize("peephole", [False, True], ids=["nopeep", "peep"])
def test_lstm_param_layout_and_init(peephole, coupled, layer_norm_):
  forget_bias = 2.5
  cell = cells.lstm(H, forget_bias=forget_bias, peephole=peephole,
                    coupled=coupled, layer_norm=layer_norm_)
  p = cell.init(jax.random.PRNGKey(3), D)
  G = 3 if coupled else 4
  expected = {"w_ih": (D, G * H), "w_hh": (H, G * H), "b": (G * H,)}
  if peephole:
    expected.update(w_cf=(H,), w_co=(H,))
    if not coupled:
      expected["w_ci"] = (H,)
  if layer_norm_:
    expected.update(ln_gates_scale=(G * H,), ln_cell_scale=(H,), ln_cell_bias=(H,))
  assert {k: tuple(v.shape) for k, v in p.items()} == expected
  assert all(v.dtype == jnp.float32 for v in p.values())
  b = np.asarray(p["b"]).reshape(G, H)
  f_block = 0 if coupled else 1
  np.testing.assert_array_equal(b[f_block], np.full(H, forget_bias, np.float32))
  np.testing.assert_array_equal(np.delete(b, f_block, axis=0), 0.0)
  for name in ("w_ci", "w_cf", "w_co"):
    if name in p:
      np.testing.assert_array_equal(p[name], 0.0)
  if layer_norm_:
    np.testing.assert_array_equal(p["ln_gates_scale"], 1.0)
    np.testing.assert_array_equal(p["ln_cell_scale"], 1.0)
    np.testing.assert_array_equal(p["ln_cell_bias"], 0.0)
  assert np.any(np.asarray(p["w_ih"]) != 0) and np.any(np.asarray(p["w_hh"]) != 0)
  assert cell.input_size(p) == D
  carry = cell.initial_carry((B,))
  assert isinstance(carry, LSTMState)
  for leaf in carry:
    assert leaf.shape == (B, H) and leaf.dtype == jnp.float32
    np.testing.assert_array_equal(leaf, 0.0)


def test_lstm_forget_bias_is_not_added_at_run_time():
  """Two cells differing only in forget_bias compute the same step on the same params."""
  p = to_jax(randomize(cells.lstm(H).init(jax.random.PRNGKey(0), D), seed=4))
  xs, h, c = rand_inputs(5, True)
  carry = LSTMState(*to_jax((h, c)))
  _, y0 = cells.lstm(H, forget_bias=0.0).step(p, carry, to_jax(xs[0]))
  _, y1 = cells.lstm(H, forget_bias=3.0).step(p, carry, to_jax(xs[0]))
  np.testing.assert_array_equal(y0, y1)


# ----------------------------------------------------------------------------
# 2. GRU.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["cho", "reset_after"])
def test_gru_step_matches_equations(reset_after, use_bias):
  cell = cells.gru(H, reset_after=reset_after, use_bias=use_bias)
  p0 = cell.init(jax.random.PRNGKey(0), D)
  expected_keys = {"w_ih", "w_hh"}
  if use_bias:
    expected_keys |= {"b", "b_hn"} if reset_after else {"b"}
  assert set(p0) == expected_keys
  assert p0["w_ih"].shape == (D, 3 * H) and p0["w_hh"].shape == (H, 3 * H)
  if use_bias:
    assert p0["b"].shape == (3 * H,)
    np.testing.assert_array_equal(p0["b"], 0.0)
  if "b_hn" in p0:
    assert p0["b_hn"].shape == (H,)
  pj = to_jax(randomize(p0, seed=6))
  xs, h, _ = rand_inputs(7, False)
  carry = jnp.asarray(h, jnp.float32)
  p, h, xs = to_np64((pj, carry, xs.astype(np.float32)))
  for t in range(T):
    carry, y = cell.step(pj, carry, jnp.asarray(xs[t], jnp.float32))
    h = ref_gru_step(p, h, xs[t], reset_after=reset_after, use_bias=use_bias)
    assert y.shape == (B, H)
    assert_close(y, h, err_msg=f"y at step {t}")
    assert_close(carry, h, err_msg=f"carry at step {t}")


def test_gru_forms_differ():
  """With a non-zero b_n/h, the two forms are different functions (guards a test that
  would pass with one reference for both)."""
  p = randomize(cells.gru(H, reset_after=True).init(jax.random.PRNGKey(0), D), 8)
  xs, h, _ = rand_inputs(9, False)
  a = ref_gru_step(p, h, xs[0], reset_after=True)
  b = ref_gru_step(p, h, xs[0], reset_after=False)
  assert np.max(np.abs(a - b)) > 1e-2


# ----------------------------------------------------------------------------
# 3. Simple RNN and IRNN.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_simple_rnn_step_matches_equations(nonlinearity, use_bias):
  cell = cells.simple_rnn(H, nonlinearity=nonlinearity, use_bias=use_bias)
  p0 = cell.init(jax.random.PRNGKey(0), D)
  assert set(p0) == ({"w_ih", "w_hh", "b"} if use_bias else {"w_ih", "w_hh"})
  assert p0["w_ih"].shape == (D, H) and p0["w_hh"].shape == (H, H)
  pj = to_jax(randomize(p0, seed=10, scale=0.8))
  xs, h, _ = rand_inputs(11, False)
  carry = jnp.asarray(h, jnp.float32)
  p, h, xs = to_np64((pj, carry, xs.astype(np.float32)))
  saw_neg = saw_pos = False
  for t in range(T):
    carry, y = cell.step(pj, carry, jnp.asarray(xs[t], jnp.float32))
    pre = xs[t] @ p["w_ih"] + h @ p["w_hh"] + (p["b"] if use_bias else 0.0)
    saw_neg |= bool(np.any(pre < 0))
    saw_pos |= bool(np.any(pre > 0))
    h = ref_rnn_step(p, h, xs[t], nonlinearity=nonlinearity, use_bias=use_bias)
    assert_close(y, h, err_msg=f"y at step {t}")
    assert_close(carry, h, err_msg=f"carry at step {t}")
  assert saw_neg and saw_pos  # relu's both sides are exercised


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_irnn_init(scale):
  Hb, Db = 32, 64
  cell = cells.simple_rnn(Hb, nonlinearity="relu", identity_init=True,
                          identity_scale=scale)
  p = cell.init(jax.random.PRNGKey(12), Db)
  np.testing.assert_array_equal(p["w_hh"], scale * np.eye(Hb, dtype=np.float32))
  np.testing.assert_array_equal(p["b"], 0.0)
  w = np.asarray(p["w_ih"], np.float64)
  assert w.shape == (Db, Hb)
  assert 0.8e-3 < w.std() < 1.2e-3, w.std()
  assert abs(w.mean()) < 2e-4
  assert np.max(np.abs(w)) < 6e-3


def test_irnn_identity_step():
  """IRNN with zero input weights and relu copies a non-negative state exactly."""
  cell = cells.simple_rnn(H, nonlinearity="relu", identity_init=True)
  p = cell.init(jax.random.PRNGKey(0), D)
  p = dict(p, w_ih=jnp.zeros_like(p["w_ih"]))
  h = jnp.asarray(np.abs(np.random.default_rng(13).standard_normal((B, H))), jnp.float32)
  h2, y = cell.step(p, h, jnp.ones((B, D)))
  np.testing.assert_array_equal(h2, h)


# ----------------------------------------------------------------------------
# 4. Phased LSTM.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.2])
def test_time_gate_matches_formula(alpha):
  rng = np.random.default_rng(14)
  Hb = 16
  log_tau = rng.uniform(np.log(0.5), np.log(20.0), Hb)
  shift = rng.uniform(0, 1, Hb) * np.exp(log_tau)
  r_on = rng.uniform(0.05, 0.9, Hb)
  # Negative, irregular and large timestamps; phase must still land in [0, 1).
  t = np.array([-3.7, 0.0, 0.3, 7.1, 123.456])
  k = cells.time_gate(jnp.asarray(t, jnp.float32), jnp.asarray(log_tau, jnp.float32),
                      jnp.asarray(shift, jnp.float32), jnp.asarray(r_on, jnp.float32),
                      alpha)
  assert k.shape == (len(t), Hb)
  # Reference on the float32-rounded values (exp/mod are then done in float64).
  t32, lt32, s32, r32 = (np.float64(np.float32(a)) for a in (t, log_tau, shift, r_on))
  expected = ref_time_gate(t32, lt32, s32, r32, alpha)
  reg = regimes(t32, lt32, s32, r32)
  assert set(np.unique(reg)) == {0, 1, 2}
  assert np.all((expected >= 0) & (expected <= 1))
  # phi near the kinks is sensitive to float32 rounding of t - shift and mod;
  # compare only entries that are clear of them.
  phi = ref_phase(t32, lt32, s32)
  clear = np.min(np.abs(np.stack([phi, phi - 0.5 * r32, phi - r32, phi - 1.0])), 0) > 1e-4
  assert clear.mean() > 0.9
  np.testing.assert_allclose(np.asarray(k, np.float64)[clear], expected[clear],
                             rtol=1e-4, atol=1e-5)


def test_time_gate_hand_values():
  """A few phases computed on paper: tau=10, s=0, r_on=0.2."""
  t = jnp.asarray([0.5, 1.0, 1.5, 5.0, 12.5, -9.5], jnp.float32)
  ones = jnp.ones((1,), jnp.float32)
  k = cells.time_gate(t, jnp.log(10.0) * ones, 0.0 * ones, 0.2 * ones, 0.1)[:, 0]
  # phi:        0.05  0.1  0.15  0.5   0.25   0.05
  expected = [0.5, 1.0, 0.5, 0.05, 0.025, 0.5]
  np.testing.assert_allclose(k, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("peephole", [False, True], ids=["nopeep", "peep"])
def test_phased_lstm_step_matches_equations(peephole, training):
  name = "phased_lstm_peephole" if peephole else "phased_lstm"
  cell, p, (h, c), xs, times = random_setup(name, seed=15)
  assert cell.uses_time
  pj, carry = to_jax(p), LSTMState(*to_jax((h, c)))
  p, h, c, xs = to_np64((pj, carry.h, carry.c, xs.astype(np.float32)))
  alpha = PLSTM_LEAK if training else 0.0
  seen = set()
  for t in range(T):
    tt = np.float64(np.float32(times[t]))
    reg = regimes(tt, p["log_tau"], p["shift"], p["r_on"])
    seen |= set(np.unique(reg).tolist())
    assert breakpoint_margin(tt, p["log_tau"], p["shift"], p["r_on"]) > 0.03
    carry, y = cell.step(pj, carry, jnp.asarray(xs[t], jnp.float32),
                         time=jnp.asarray(times[t], jnp.float32), training=training)
    h, c = ref_phased_step(p, h, c, xs[t], tt, alpha=alpha, peephole=peephole)
    assert_close(y, h, err_msg=f"y at step {t}")
    assert_close(carry.h, h, err_msg=f"h at step {t}")
    assert_close(carry.c, c, err_msg=f"c at step {t}")
  # Opening, closing and closed all occurred (at every step, in fact).
  assert seen == {0, 1, 2}
  for t in range(T):
    assert len(np.unique(regimes(times[t], np.log(PLSTM_TAU), PLSTM_SHIFT,
                                 PLSTM_R_ON))) == 3


def test_phased_lstm_leak_matters():
  """training=True (alpha=leak) and training=False (alpha=0) differ where closed."""
  cell, p, (h, c), xs, times = random_setup("phased_lstm", seed=16)
  pj, carry = to_jax(p), LSTMState(*to_jax((h, c)))
  t = jnp.asarray(times[0], jnp.float32)
  (_, c_eval), _ = cell.step(pj, carry, to_jax(xs[0]), time=t, training=False)
  (_, c_train), _ = cell.step(pj, carry, to_jax(xs[0]), time=t, training=True)
  closed = regimes(times[0], p["log_tau"], p["shift"], p["r_on"]) == 2
  diff = np.abs(np.asarray(c_eval) - np.asarray(c_train))
  assert np.all(diff[closed] > 1e-4)
  np.testing.assert_array_equal(diff[~closed], 0.0)


def test_phased_lstm_closed_gate_at_eval_keeps_carry_exactly():
  cell = cells.phased_lstm(H, r_on=0.05)
  p = randomize(cell.init(jax.random.PRNGKey(17), D), seed=17)
  p["log_tau"] = np.log(PLSTM_TAU)
  p["shift"] = np.zeros(H)
  p["r_on"] = np.full(H, 0.05)
  t = np.array([0.3, 7.1])
  assert np.all(regimes(t, p["log_tau"], p["shift"], p["r_on"]) == 2)
  xs, h, c = rand_inputs(18, True)
  carry = LSTMState(*to_jax((h, c)))
  new, y = cell.step(to_jax(p), carry, to_jax(xs[0]), time=jnp.asarray(t, jnp.float32),
                     training=False)
  np.testing.assert_array_equal(new.h, carry.h)
  np.testing.assert_array_equal(new.c, carry.c)
  np.testing.assert_array_equal(y, carry.h)
  # ...and the same timestamps while training leak a little.
  new_tr, _ = cell.step(to_jax(p), carry, to_jax(xs[0]),
                        time=jnp.asarray(t, jnp.float32), training=True)
  assert not np.array_equal(new_tr.c, carry.c)


def test_phased_lstm_init():
  lo, hi, r_on, Hb = 2.0, 50.0, 0.07, 256
  # A cheap recurrent init: the default orthogonal one runs a QR per gate block.
  cell = cells.phased_lstm(Hb, r_on=r_on, period_init_range=(lo, hi),
                           recurrent_init=jax.nn.initializers.normal(0.1))
  p = cell.init(jax.random.PRNGKey(19), D)
  assert {"w_ih", "w_hh", "b", "log_tau", "shift", "r_on"} == set(p)
  assert p["w_ih"].shape == (D, 4 * Hb) and p["w_hh"].shape == (Hb, 4 * Hb)
  for name in ("log_tau", "shift", "r_on"):
    assert p[name].shape == (Hb,) and p[name].dtype == jnp.float32
  log_tau = np.asarray(p["log_tau"], np.float64)
  tol = 1e-6
  assert np.all(log_tau >= math.log(lo) - tol) and np.all(log_tau <= math.log(hi) + tol)
  # log-uniform: spread over the whole range, roughly uniform in log space.
  span = math.log(hi) - math.log(lo)
  assert log_tau.min() < math.log(lo) + 0.05 * span
  assert log_tau.max() > math.log(hi) - 0.05 * span
  assert abs(log_tau.mean() - 0.5 * (math.log(lo) + math.log(hi))) < 0.1 * span
  tau = np.exp(log_tau)
  shift = np.asarray(p["shift"], np.float64)
  assert np.all(shift >= 0) and np.all(shift <= tau * (1 + 1e-6))
  frac = shift / tau
  assert frac.min() < 0.05 and frac.max() > 0.95  # uniform in [0, tau]
  np.testing.assert_array_equal(p["r_on"], np.full(Hb, r_on, np.float32))
  b = np.asarray(p["b"]).reshape(4, Hb)
  np.testing.assert_array_equal(b[1], 1.0)  # default forget_bias


def test_phased_lstm_requires_time():
  cell = cells.phased_lstm(H)
  p = cell.init(jax.random.PRNGKey(0), D)
  with pytest.raises(ValueError, match="time"):
    cell.step(p, cell.initial_carry((B,)), jnp.zeros((B, D)))
  with pytest.raises(ValueError, match="time"):
    cell.step(p, cell.initial_carry((B,)), jnp.zeros((B, D)), time=jnp.zeros((D,)))


# ----------------------------------------------------------------------------
# 5. Gradients (float64, finite differences).
# ----------------------------------------------------------------------------

GRAD_STEPS = 2  # eager check_grads pays an XLA compile per new primitive; keep it lean
GRAD_CELLS = [
    ("lstm", 2), ("lstm_peephole", 1), ("lstm_coupled", 1), ("lstm_layer_norm", 1),
    ("lstm_all", 1), ("gru", 1), ("gru_reset_after", 1), ("rnn_tanh", 1),
    ("rnn_relu", 1), ("phased_lstm", 1), ("phased_lstm_peephole", 1),
]


@pytest.mark.parametrize("name,order", GRAD_CELLS, ids=[n for n, _ in GRAD_CELLS])
def test_gradients(name, order):
  with jax.enable_x64(True):
    cell, p, carry, xs, times = random_setup(name, seed=20, dtype=jnp.float64)
    if name == "rnn_relu":
      # Keep every pre-activation clear of relu's kink for the finite differences.
      h = carry
      for t in range(T):
        pre = xs[t] @ p["w_ih"] + h @ p["w_hh"] + p["b"]
        assert np.min(np.abs(pre)) > 1e-2
        assert np.any(pre < 0) and np.any(pre > 0)
        h = np.maximum(pre, 0)
    if times is not None:
      for t in range(T):
        assert breakpoint_margin(times[t], p["log_tau"], p["shift"], p["r_on"]) > 0.03
      times = jnp.asarray(times, jnp.float64)
    p, carry, xs = to_jax((p, carry, xs), jnp.float64)
    assert all(v.dtype == jnp.float64 for v in p.values())

    def run(params, carry, xs):
      ys = []
      for t in range(GRAD_STEPS):
        tt = None if times is None else times[t]
        carry, y = lib_step(cell, params, carry, xs[t], tt, training=True)
        ys.append(y)
      return jnp.stack(ys), carry

    out, _ = run(p, carry, xs)
    assert out.dtype == jnp.float64
    check_grads(run, (p, carry, xs), order=order, modes=("fwd", "rev"))


# ----------------------------------------------------------------------------
# 6. jit / vmap / dtype / finiteness.
# ----------------------------------------------------------------------------


# Every distinct step code path; the omitted configs (gru_nobias, irnn,
# phased_lstm_peephole) only recombine paths listed here.
JIT_CELLS = [n for n in CELL_CONFIGS
             if n not in ("gru_nobias", "irnn", "phased_lstm_peephole")]


@pytest.mark.parametrize("name", JIT_CELLS)
def test_jit_and_vmap_agree_with_eager(name):
  V = 5  # the extra leading axis, distinct from B, D, H
  cell, p, carry, xs, times = random_setup(name, seed=21, batch=(V, B))
  pj, carry, xs = to_jax((p, carry, xs))
  x = xs[0]
  t = None if times is None else jnp.asarray(times[0], jnp.float32)
  training = cell.uses_time  # exercise the leak path for phased

  def f(params, carry, x, t):
    return lib_step(cell, params, carry, x, t, training=training)

  # Eager reference: one [B]-batch call per slice of the extra leading axis
  # (the same shapes as the equation tests above, so eager dispatch is cached).
  per_slice = [f(pj, jax.tree.map(lambda a: a[v], carry), x[v],
                 None if t is None else t[v]) for v in range(V)]
  eager = jax.tree.map(lambda *a: jnp.stack(a), *per_slice)
  # jit on the whole [V, B] batch (cells take any batch shape), and vmap over
  # the leading V axis (under jit, to compile once rather than op by op).
  jitted = jax.jit(f)(pj, carry, x, t)
  vmapped = jax.jit(jax.vmap(f, in_axes=(None, 0, 0, 0 if t is not None else None)))(
      pj, carry, x, t)
  for got in (jitted, vmapped):
    assert jax.tree.structure(got) == jax.tree.structure(eager)
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(eager)):
      assert a.shape == e.shape == (V, B, H)
      assert a.dtype == jnp.float32
      np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
  for leaf in jax.tree.leaves(per_slice):
    assert leaf.dtype == jnp.float32
    assert np.all(np.isfinite(leaf))
  # The carry keeps its type across a step.
  assert type(per_slice[0][0]) is type(carry) and type(jitted[0]) is type(carry)


@pytest.mark.parametrize("name", list(CELL_CONFIGS))
def test_default_init_from_zero_carry_float32_finite(name):
  """Default init, initial_carry and a few eager steps stay float32 and finite."""
  cell = CELL_CONFIGS[name]()
  p = cell.init(jax.random.PRNGKey(22), D)
  assert all(v.dtype == jnp.float32 for v in p.values())
  carry = cell.initial_carry((B,))
  for leaf in jax.tree.leaves(carry):
    assert leaf.shape == (B, H) and leaf.dtype == jnp.float32
    np.testing.assert_array_equal(leaf, 0.0)
  xs = 3.0 * jax.random.normal(jax.random.PRNGKey(23), (T, B, D))
  for t in range(T):
    carry, y = lib_step(cell, p, carry, xs[t],
                        jnp.asarray(PLSTM_TIMES[:, t], jnp.float32))
    assert y.shape == (B, H) and y.dtype == jnp.float32
    for leaf in jax.tree.leaves((carry, y)):
      assert leaf.dtype == jnp.float32
      assert np.all(np.isfinite(leaf))
