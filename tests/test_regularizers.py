"""The recurrent regularizers: masks where the papers put them, scan equal to loop.

Oracles: the LSTM and GRU equations written out in numpy with given masks;
"probe" cells whose output is the mask they were handed (or, for zoneout, a
counter whose increments show which units updated); hand-computed norm
penalties; and `unroll_reference`, the per-example loop, for every wrapper
while training.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from fixtures import randomize
from rnn_jax import cells, layers
from rnn_jax import regularizers as reg
from rnn_jax.cells.base import Cell
from rnn_jax.cells.lstm import LSTMState

B, T, D, H = 2, 5, 3, 4  # pairwise distinct, so a swapped axis fails loudly


def _setup(cell, seed=0, batch=B):
  k_init, k_rand, k_x, k_c, k_t = jax.random.split(jax.random.key(seed), 5)
  params = randomize(cell.init(k_init, D), k_rand)
  if "r_on" in params:
    params["r_on"] = jnp.abs(params["r_on"]) + 0.1
  xs = jax.random.normal(k_x, (batch, T, D))
  carry = jax.tree_util.tree_map(lambda z: jax.random.normal(k_c, z.shape),
                                 cell.initial_carry((batch,)))
  ts = None
  if cell.uses_time:
    ts = jnp.cumsum(jax.random.uniform(k_t, (batch, T), minval=0.1, maxval=3.0), 1)
  return params, xs, carry, ts


def _close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree_util.tree_map(
      lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                              rtol=rtol, atol=atol), a, b)


def _probe(which, hidden_size=H):
  """A cell whose output is the mask its step received (ones when none).

  `which`: "state" or "update" (y is that mask, `[*B, H]`), or "input" (y is
  x_t, so with all-ones inputs the input mask; hidden_size must be D).
  """

  def step(params, carry, x_t, *, state_mask=None, update_mask=None):
    del params
    if which == "input":
      return carry, x_t
    mask = state_mask if which == "state" else update_mask
    return carry, jnp.ones(carry.shape, carry.dtype) if mask is None else mask

  return Cell(name=f"probe_{which}", hidden_size=hidden_size,
              init=lambda key, input_size: {"d": jnp.zeros((input_size,))},
              initial_carry=cells.base.zeros_carry(hidden_size, 1, None), step=step,
              input_size=lambda params: params["d"].shape[0],
              step_kwargs=frozenset({"state_mask", "update_mask"}))


def _counter(lstm_like=False):
  """A cell whose proposal is the old carry + 1, so zoneout's choices show in the carry."""

  def step(params, carry, x_t):
    del params, x_t
    new = jax.tree_util.tree_map(lambda a: a + 1.0, carry)
    return new, new.h if lstm_like else new

  return Cell(name="counter", hidden_size=H, init=lambda key, input_size: {"d": jnp.zeros((input_size,))},
              initial_carry=cells.base.zeros_carry(H, 2, LSTMState) if lstm_like
              else cells.base.zeros_carry(H, 1, None),
              step=step, input_size=lambda params: params["d"].shape[0])


def _masks(cell, batch=B, steps=T, key=0, ones_in=False):
  """Steps a probe-wrapping cell in training over `steps` steps; returns its masks.

  Stepped in Python (cheap, each op compiles once per shape for the whole
  file) rather than with a scan; scan against loop is tested further down.
  Returns `[batch, steps, hidden_size]`.
  """
  params = cell.init(jax.random.key(0), D)
  x = jnp.ones((batch, D)) if ones_in else jnp.zeros((batch, D))
  carry = cell.initial_carry((batch,))
  ys = [cell.step(params, carry, x, training=True, key=jax.random.key(key),
                  t=jnp.asarray(t, jnp.int32))[1] for t in range(steps)]
  return np.stack([np.asarray(y) for y in ys], axis=1)


N = 2000  # the batch of the statistical tests


# ----------------------------------------------------------------------------
# The masks inside lstm and gru.

_sig = lambda v: 1.0 / (1.0 + np.exp(-v))


def _np_lstm(p, h, c, x, m_s, m_u):
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  z = x @ p["w_ih"] + (h * m_s) @ p["w_hh"] + p["b"]
  z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
  c_new = _sig(z_f) * c + _sig(z_i) * (np.tanh(z_g) * m_u)
  h_new = _sig(z_o) * np.tanh(c_new)
  return h_new, c_new


def _np_gru(p, h, x, m_s, m_u, reset_after):
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  x_r, x_z, x_n = np.split(x @ p["w_ih"] + p["b"], 3, axis=-1)
  w_r, w_z, w_n = np.split(p["w_hh"], 3, axis=-1)
  hm = h * m_s  # the h every recurrent matmul sees
  r = _sig(x_r + hm @ w_r)
  z = _sig(x_z + hm @ w_z)
  if reset_after:
    n = np.tanh(x_n + r * (hm @ w_n + p["b_hn"]))
  else:
    n = np.tanh(x_n + (r * hm) @ w_n)
  return (1 - z) * (n * m_u) + z * h  # the carried h is never state-masked


def _random_masks(seed, rate=0.5):
  k_s, k_u = jax.random.split(jax.random.key(seed))
  m_s = np.asarray(jax.random.bernoulli(k_s, 1 - rate, (B, H))) / (1 - rate)
  m_u = np.asarray(jax.random.bernoulli(k_u, 1 - rate, (B, H))) / (1 - rate)
  return m_s, m_u


def test_lstm_masks_match_hand_equations():
  cell = cells.lstm(H)
  params, xs, carry, _ = _setup(cell)
  m_s, m_u = _random_masks(1)
  (h, c), y = cell.step(params, carry, xs[:, 0], state_mask=jnp.asarray(m_s, jnp.float32),
                        update_mask=jnp.asarray(m_u, jnp.float32))
  h_ref, c_ref = _np_lstm(params, np.asarray(carry.h, np.float64),
                          np.asarray(carry.c, np.float64), np.asarray(xs[:, 0], np.float64),
                          m_s, m_u)
  _close((h, c, y), (h_ref, c_ref, h_ref))
  # A dropped update keeps exactly the forgotten memory f * c_{t-1}.
  params_np = {k: np.asarray(v, np.float64) for k, v in params.items()}
  z = np.asarray(xs[:, 0]) @ params_np["w_ih"] + (np.asarray(carry.h) * m_s) @ params_np["w_hh"] \
      + params_np["b"]
  f = _sig(np.split(z, 4, axis=-1)[1])
  dropped = m_u == 0
  assert dropped.any()
  _close(np.asarray(c)[dropped], (f * np.asarray(carry.c))[dropped])


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_masks_match_hand_equations(reset_after):
  cell = cells.gru(H, reset_after=reset_after)
  params, xs, carry, _ = _setup(cell)
  m_s, m_u = _random_masks(2)
  h, y = cell.step(params, carry, xs[:, 0], state_mask=jnp.asarray(m_s, jnp.float32),
                   update_mask=jnp.asarray(m_u, jnp.float32))
  h_ref = _np_gru(params, np.asarray(carry, np.float64), np.asarray(xs[:, 0], np.float64),
                  m_s, m_u, reset_after)
  _close((h, y), (h_ref, h_ref))
  # Unmasked, the same numpy equations are the plain step.
  ones = np.ones((B, H))
  _close(cell.step(params, carry, xs[:, 0])[0],
         _np_gru(params, np.asarray(carry), np.asarray(xs[:, 0]), ones, ones, reset_after))


@pytest.mark.parametrize("make", [
    lambda: cells.lstm(H), lambda: cells.lstm(H, peephole=True, layer_norm=True),
    lambda: cells.lstm(H, coupled=True), lambda: cells.gru(H),
    lambda: cells.gru(H, reset_after=True)])
def test_all_ones_masks_are_the_plain_step(make):
  cell = make()
  assert {"state_mask", "update_mask"} <= cell.step_kwargs
  params, xs, carry, _ = _setup(cell)
  ones = jnp.ones((B, H))
  plain = cell.step(params, carry, xs[:, 0])
  _close(cell.step(params, carry, xs[:, 0], state_mask=ones, update_mask=ones), plain,
         rtol=0, atol=0)
  # And the state mask really reaches the recurrence.
  zeros = jnp.zeros((B, H))
  assert not np.allclose(cell.step(params, carry, xs[:, 0], state_mask=zeros)[1], plain[1])


# ----------------------------------------------------------------------------
# Where and when each wrapper draws its masks.


@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_recurrent_dropout_masks_are_per_step_inverted_dropout(rate):
  ms = _masks(reg.recurrent_dropout(_probe("update"), rate), batch=N, steps=3)
  np.testing.assert_allclose(ms[ms != 0], 1 / (1 - rate), rtol=1e-6)
  assert abs((ms == 0).mean() - rate) < 0.02
  # Fresh at every step: consecutive steps agree only by chance.
  same = (ms[:, 1:] == ms[:, :-1]).mean()
  assert abs(same - (rate ** 2 + (1 - rate) ** 2)) < 0.02


def test_recurrent_dropout_per_sequence_masks_are_constant_over_time():
  ms = _masks(reg.recurrent_dropout(_probe("update"), 0.5, per_sequence=True))
  np.testing.assert_array_equal(ms, np.broadcast_to(ms[:, :1], ms.shape))
  assert (ms == 0).any() and (ms != 0).any()
  per_step = _masks(reg.recurrent_dropout(_probe("update"), 0.5))
  assert not np.all(per_step == per_step[:, :1])


def test_variational_masks_are_per_sequence():
  cell = reg.variational_dropout(_probe("state"), state_rate=0.5)
  ms = _masks(cell)
  np.testing.assert_array_equal(ms, np.broadcast_to(ms[:, :1], ms.shape))
  assert set(np.unique(ms)) == {0.0, 2.0}
  assert not np.array_equal(ms[0], ms[1])  # one mask per example
  mx = _masks(reg.variational_dropout(_probe("input", D), input_rate=0.5), ones_in=True)
  np.testing.assert_array_equal(mx, np.broadcast_to(mx[:, :1], mx.shape))
  assert set(np.unique(mx)) <= {0.0, 2.0} and (mx == 0).any()
  big = _masks(reg.variational_dropout(_probe("state"), state_rate=0.3), batch=N,
               steps=1)
  assert abs((big == 0).mean() - 0.3) < 0.02


@pytest.mark.parametrize("make", [lambda: cells.lstm(H), lambda: cells.gru(H),
                                  lambda: cells.gru(H, reset_after=True)])
def test_variational_dropout_is_the_cell_with_a_constant_mask(make):
  """The wrapped cell over a sequence = the inner cell stepped with fixed masks."""
  inner = make()
  cell = reg.variational_dropout(inner, state_rate=0.5, input_rate=0.4)
  params, xs, carry, _ = _setup(inner)
  key = jax.random.key(7)
  ys, final = rnn_jax.unroll(cell, params, xs, initial_carry=carry, training=True, key=key)
  # The masks depend on the key and the example only, so probes with the same
  # sizes read them off (at t = 0; they are per sequence).
  probe_kwargs = dict(state_rate=0.5, input_rate=0.4)
  m_s = _masks(reg.variational_dropout(_probe("state"), **probe_kwargs), key=7, steps=1)[:, 0]
  m_x = _masks(reg.variational_dropout(_probe("input", D), **probe_kwargs), key=7, steps=1,
               ones_in=True)[:, 0]
  c = c_plain = carry
  for t in range(T):
    c, y = inner.step(params, c, xs[:, t] * m_x, state_mask=jnp.asarray(m_s))
    _close(ys[:, t], y)
    c_plain, y_plain = inner.step(params, c_plain, xs[:, t])
    assert not np.allclose(ys[:, t], y_plain)  # the masks did something
  _close(final, c)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_dropout_matches_hand_equations(kind):
  """Per-step update masks from the probe, the cells' equations in numpy."""
  inner = cells.lstm(H) if kind == "lstm" else cells.gru(H)
  cell = reg.recurrent_dropout(inner, 0.5)
  params, xs, carry, _ = _setup(inner)
  key = jax.random.key(3)
  ys, final = rnn_jax.unroll(cell, params, xs, initial_carry=carry, training=True, key=key)
  ms = _masks(reg.recurrent_dropout(_probe("update"), 0.5), key=3)  # [B, T, H]
  ones = np.ones((B, H))
  x = np.asarray(xs, np.float64)
  if kind == "lstm":
    h, c = (np.asarray(a, np.float64) for a in carry)
    for t in range(T):
      h, c = _np_lstm(params, h, c, x[:, t], ones, ms[:, t])
      _close(ys[:, t], h)
    _close(final, LSTMState(h, c))
  else:
    h = np.asarray(carry, np.float64)
    for t in range(T):
      h = _np_gru(params, h, x[:, t], ones, ms[:, t], reset_after=False)
      _close(ys[:, t], h)
    _close(final, h)


def test_nested_wrappers_draw_independent_masks():
  """No wrapper reuses another's mask, not even one of its own kind."""
  twice = _masks(reg.recurrent_dropout(reg.recurrent_dropout(_probe("update"), 0.5), 0.5),
                 batch=N, steps=1)
  # Two independent masks of keep-rate 1/2: the product is nonzero 1/4 of the
  # time (1/2 if the same mask were reused), with value 2 * 2.
  assert abs((twice != 0).mean() - 0.25) < 0.02
  np.testing.assert_allclose(twice[twice != 0], 4.0)
  vd_twice = _masks(reg.variational_dropout(
      reg.variational_dropout(_probe("state"), state_rate=0.5), state_rate=0.5),
      batch=N, steps=1)
  assert abs((vd_twice != 0).mean() - 0.25) < 0.02


# ----------------------------------------------------------------------------
# Zoneout.


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zoneout_evaluation_is_the_expectation(kind):
  inner = cells.lstm(H) if kind == "lstm" else cells.gru(H)
  c_rate, h_rate = (0.3, 0.6) if kind == "lstm" else (0.0, 0.6)
  cell = reg.zoneout(inner, c_rate=c_rate, h_rate=h_rate)
  params, xs, carry, _ = _setup(inner)
  new, _ = inner.step(params, carry, xs[:, 0])
  got, y = cell.step(params, carry, xs[:, 0])  # training=False, no key
  old_h, new_h = (carry.h, new.h) if kind == "lstm" else (carry, new)
  want_h = h_rate * np.asarray(old_h) + (1 - h_rate) * np.asarray(new_h)
  _close(y, want_h)
  if kind == "lstm":
    _close(got.h, want_h)
    _close(got.c, c_rate * np.asarray(carry.c) + (1 - c_rate) * np.asarray(new.c))
  else:
    _close(got, want_h)
  # Over a sequence: the same recursion by hand.
  ys, _ = rnn_jax.unroll_reference(cell, params, xs, initial_carry=carry)
  c = carry
  for t in range(T):
    proposal, _ = inner.step(params, c, xs[:, t])
    c = jax.tree_util.tree_map(
        lambda o, n_, r: r * o + (1 - r) * n_, c, proposal,
        LSTMState(h_rate, c_rate) if kind == "lstm" else h_rate)
    _close(ys[:, t], c.h if kind == "lstm" else c)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zoneout_training_keeps_old_or_takes_new(kind):
  n = N
  inner = cells.lstm(H) if kind == "lstm" else cells.gru(H)
  c_rate, h_rate = (0.5, 0.15) if kind == "lstm" else (0.0, 0.3)
  cell = reg.zoneout(inner, c_rate=c_rate, h_rate=h_rate)
  params, xs, carry, _ = _setup(inner, batch=n)
  new, _ = inner.step(params, carry, xs[:, 0])
  got, y = cell.step(params, carry, xs[:, 0], training=True, key=jax.random.key(5),
                     t=jnp.asarray(2))
  pairs = [(got, carry, new, h_rate)] if kind == "gru" else [
      (got.h, carry.h, new.h, h_rate), (got.c, carry.c, new.c, c_rate)]
  for out, old, proposal, rate in pairs:
    out, old, proposal = np.asarray(out), np.asarray(old), np.asarray(proposal)
    kept, updated = out == old, out == proposal
    assert np.all(kept | updated)
    assert abs(kept.mean() - rate) < 0.02
  np.testing.assert_array_equal(y, got.h if kind == "lstm" else got)  # y: the zoned-out h


@pytest.mark.parametrize("lstm_like", [False, True])
def test_zoneout_masks_are_per_step(lstm_like):
  """With a counter cell, h_t - h_{t-1} = 1 - d_t shows each step's mask."""
  cell = reg.zoneout(_counter(lstm_like), h_rate=0.4, **({"c_rate": 0.7} if lstm_like else {}))
  params = cell.init(jax.random.key(0), D)
  carry, x, ys = cell.initial_carry((N,)), jnp.zeros((N, D)), []
  for t in range(T):
    carry, y = cell.step(params, carry, x, training=True, key=jax.random.key(1),
                         t=jnp.asarray(t, jnp.int32))
    ys.append(np.asarray(y))
  ys, final = np.stack(ys, axis=1), carry
  steps = np.diff(np.concatenate([np.zeros_like(ys[:, :1]), ys], 1), axis=1)  # 1 - d_t
  assert set(np.unique(steps)) == {0.0, 1.0}
  assert abs((steps == 0).mean() - 0.4) < 0.02
  same = (steps[:, 1:] == steps[:, :-1]).mean()
  assert abs(same - (0.4 ** 2 + 0.6 ** 2)) < 0.02  # fresh at every step
  if lstm_like:  # c has its own rate and its own mask
    assert abs((np.asarray(final.c) / T).mean() - 0.3) < 0.03
    assert not np.array_equal(np.asarray(final.c), np.asarray(final.h))


@pytest.mark.parametrize("c_rate, h_rate", [(0.5, 0.3), (0.4, 0.4)])
def test_zoneout_c_and_h_masks_are_independent(c_rate, h_rate):
  """Both zoned out as often as the product of the rates says, at every step and unit.

  A counter cell shows each mask: from a zero carry one step gives h = 1 - d_h, c = 1 - d_c.
  One mask shared by c and h (or two drawn from one key, nested by their rates) keeps
  both min(c_rate, h_rate) of the time: 0.3 and 0.4 here, against 0.15 and 0.16.
  """
  cell = reg.zoneout(_counter(lstm_like=True), c_rate=c_rate, h_rate=h_rate)
  params = cell.init(jax.random.key(0), D)
  zero, x = cell.initial_carry((N,)), jnp.zeros((N, D))
  d_c, d_h = [], []
  for t in range(T):  # [N, H] per step: 40,000 pairs of mask bits in all
    carry, _ = cell.step(params, zero, x, training=True, key=jax.random.key(4),
                         t=jnp.asarray(t, jnp.int32))
    d_c.append(np.asarray(carry.c) == 0.0), d_h.append(np.asarray(carry.h) == 0.0)
  d_c, d_h = np.stack(d_c), np.stack(d_h)
  assert abs(d_c.mean() - c_rate) < 0.01 and abs(d_h.mean() - h_rate) < 0.01
  # Each joint frequency within 0.01 of the product of its marginals (a standard error of
  # at most 0.0025 at 40,000 pairs; measured within 0.003 on keys 0-4).
  for a in (d_c, ~d_c):
    for b in (d_h, ~d_h):
      assert abs((a & b).mean() - a.mean() * b.mean()) < 0.01
  assert abs(np.corrcoef(d_c.ravel(), d_h.ravel())[0, 1]) < 0.05  # measured at most 0.013


# ----------------------------------------------------------------------------
# Against the loop oracle, in evaluation, and with layers.

WRAPPED = {
    "recurrent_dropout_lstm": lambda: reg.recurrent_dropout(cells.lstm(H), 0.4),
    "recurrent_dropout_gru_seq": lambda: reg.recurrent_dropout(
        cells.gru(H, reset_after=True), 0.4, per_sequence=True),
    "variational_lstm": lambda: reg.variational_dropout(
        cells.lstm(H, peephole=True), state_rate=0.3, input_rate=0.2),
    "variational_gru": lambda: reg.variational_dropout(cells.gru(H), state_rate=0.5),
    "zoneout_lstm": lambda: reg.zoneout(cells.lstm(H), c_rate=0.5, h_rate=0.2),
    "zoneout_rnn": lambda: reg.zoneout(cells.simple_rnn(H), h_rate=0.3),
    "zoneout_phased": lambda: reg.zoneout(
        cells.phased_lstm(H, period_init_range=(2.0, 8.0), r_on=0.3), c_rate=0.3,
        h_rate=0.3),
    "variational_zoneout_recurrent_dropout": lambda: reg.variational_dropout(
        reg.zoneout(reg.recurrent_dropout(cells.gru(H), 0.3), h_rate=0.2),
        state_rate=0.3, input_rate=0.3),
}

# Each wrapper once (every case compiles a scan): half of them in reverse, two
# with a length-0 sequence, all with ragged lengths.
SCAN_CASES = [(name, i % 2 == 1, [0, 4] if i in (2, 7) else [3, 5])
              for i, name in enumerate(WRAPPED)]


@pytest.mark.parametrize("name, reverse, lengths", SCAN_CASES)
def test_scan_equals_loop_in_training(name, reverse, lengths):
  cell = WRAPPED[name]()
  params, xs, carry, ts = _setup(cell)
  kwargs = dict(seq_lengths=jnp.array(lengths), reverse=reverse, initial_carry=carry,
                timestamps=ts, training=True, key=jax.random.key(11))
  ys, final = rnn_jax.unroll(cell, params, xs, **kwargs)
  ys_ref, final_ref = rnn_jax.unroll_reference(cell, params, xs, **kwargs)
  _close((ys, final), (ys_ref, final_ref))
  np.testing.assert_array_equal(ys[0, lengths[0]:], 0.0)
  kwargs["training"] = False
  ys_eval, _ = rnn_jax.unroll_reference(cell, params, xs, **kwargs)
  assert not np.allclose(ys, ys_eval)  # the masks did something


@pytest.mark.parametrize("make", [
    lambda c: reg.recurrent_dropout(c, 0.5),
    lambda c: reg.recurrent_dropout(c, 0.5, per_sequence=True),
    lambda c: reg.variational_dropout(c, state_rate=0.5, input_rate=0.5),
    lambda c: reg.variational_dropout(reg.recurrent_dropout(c, 0.5), state_rate=0.5)])
@pytest.mark.parametrize("inner", [lambda: cells.lstm(H), lambda: cells.gru(H)])
def test_evaluation_is_the_plain_cell(make, inner):
  """Bit for bit: with training=False the wrappers run the inner step unchanged."""
  inner = inner()
  cell = make(inner)
  assert cell.hidden_size == inner.hidden_size and cell.init is inner.init
  params, xs, carry, _ = _setup(inner)
  kwargs = dict(seq_lengths=jnp.array([4, 5]), initial_carry=carry, reverse=True)
  plain = rnn_jax.unroll_reference(inner, params, xs, **kwargs)
  _close(rnn_jax.unroll_reference(cell, params, xs, **kwargs), plain, rtol=0, atol=0)
  _close(rnn_jax.unroll_reference(cell, params, xs, key=jax.random.key(0), **kwargs), plain,
         rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zoneout_evaluation_with_lengths_and_reverse(kind):
  """Zoneout is the one wrapper whose evaluation is not the plain cell: it is the expectation
  h_t = rate h_{t-1} + (1 - rate) h~_t (and the same for c), whatever the key, under scan and
  the loop, over the valid steps of each example only, in reverse here."""
  inner = cells.lstm(H) if kind == "lstm" else cells.gru(H)
  c_rate, h_rate = (0.5, 0.3) if kind == "lstm" else (0.0, 0.3)
  cell = reg.zoneout(inner, c_rate=c_rate, h_rate=h_rate)
  params, xs, carry, _ = _setup(inner)
  lengths = [3, 5]
  # By hand: example b steps t = L_b - 1, ..., 0; outputs past L_b are zero.
  want_ys, want_final = np.zeros((B, T, H)), []
  for b in range(B):
    c = jax.tree_util.tree_map(lambda a: np.asarray(a[b], np.float64), carry)
    for t in reversed(range(lengths[b])):
      proposal, _ = inner.step(params, c, xs[b, t])
      if kind == "lstm":
        c = LSTMState(h_rate * c.h + (1 - h_rate) * np.asarray(proposal.h),
                      c_rate * c.c + (1 - c_rate) * np.asarray(proposal.c))
      else:
        c = h_rate * c + (1 - h_rate) * np.asarray(proposal)
      want_ys[b, t] = c.h if kind == "lstm" else c
    want_final.append(c)
  want_final = jax.tree_util.tree_map(lambda *a: np.stack(a), *want_final)
  kwargs = dict(seq_lengths=jnp.array(lengths), initial_carry=carry, reverse=True)
  for run in (rnn_jax.unroll_reference, functools.partial(rnn_jax.unroll, implementation="scan")):
    for key in (None, jax.random.key(3)):  # evaluation draws no mask: the key changes nothing
      _close(run(cell, params, xs, key=key, **kwargs), (want_ys, want_final))
  plain_ys, _ = rnn_jax.unroll_reference(inner, params, xs, **kwargs)
  # Not the plain cell: measured max |difference| 0.71 (lstm and gru).
  assert np.abs(np.asarray(plain_ys) - want_ys).max() > 0.1


def test_evaluation_is_the_plain_cell_under_scan():
  inner = cells.lstm(H)
  cell = reg.variational_dropout(reg.recurrent_dropout(inner, 0.5), state_rate=0.5,
                                 input_rate=0.2)
  params, xs, carry, _ = _setup(inner)
  kwargs = dict(seq_lengths=jnp.array([4, 5]), initial_carry=carry)
  # The plain cell through the same lax.scan path (the default would pick the fused kernel,
  # whose hoisted projection rounds differently).
  _close(rnn_jax.unroll(cell, params, xs, **kwargs),
         rnn_jax.unroll(inner, params, xs, implementation="scan", **kwargs), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["recurrent_dropout_lstm", "variational_gru", "zoneout_lstm"])
def test_training_without_key_raises(name):
  cell = WRAPPED[name]()
  params, xs, carry, _ = _setup(cell)
  with pytest.raises(ValueError, match="key"):
    rnn_jax.unroll(cell, params, xs, training=True)
  with pytest.raises(ValueError, match="^key: "):
    cell.step(params, carry, xs[:, 0], training=True, t=jnp.asarray(0))
  with pytest.raises(ValueError, match="^key: "):
    cell.step(params, carry, xs[:, 0], training=True, key=jax.random.split(jax.random.key(0)),
              t=jnp.asarray(0))


def test_per_step_wrappers_need_t():
  cell = WRAPPED["zoneout_lstm"]()
  params, xs, carry, _ = _setup(cell)
  with pytest.raises(ValueError, match="^t: "):
    cell.step(params, carry, xs[:, 0], training=True, key=jax.random.key(0))


def test_names_and_step_kwargs():
  cell = reg.zoneout(reg.recurrent_dropout(cells.lstm(H), 0.3), h_rate=0.1)
  assert cell.name == "zoneout(recurrent_dropout(lstm))"
  assert {"training", "key", "t", "example"} <= cell.step_kwargs
  assert reg.zoneout(cells.phased_lstm(H), h_rate=0.1).uses_time
  assert not reg.zoneout(cells.lstm(H), h_rate=0.1).uses_time
  assert reg.variational_dropout(cells.gru(H), state_rate=0.1).name == "variational_dropout(gru)"


def test_composition_under_jit_and_grad():
  cell = reg.zoneout(reg.recurrent_dropout(cells.lstm(H), 0.3), c_rate=0.4, h_rate=0.1)
  params, xs, carry, _ = _setup(cell)
  lengths = jnp.array([2, 5])

  def loss(params, key):
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, initial_carry=carry,
                               training=True, key=key)
    return jnp.sum(jnp.tanh(ys)) + jnp.sum(final.c)

  key = jax.random.key(4)
  value_and_grad = jax.jit(jax.value_and_grad(loss))
  value, grads = value_and_grad(params, key)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  assert not np.allclose(value_and_grad(params, jax.random.key(5))[0], value)

  # The value is the loop oracle's (gradients against the loop: test_unroll).
  ys_ref, final_ref = rnn_jax.unroll_reference(cell, params, xs, seq_lengths=lengths,
                                               initial_carry=carry, training=True, key=key)
  _close(value, jnp.sum(jnp.tanh(ys_ref)) + jnp.sum(final_ref.c), rtol=1e-5)


def test_stack_of_wrapped_cells():
  stack = layers.stack([
      layers.rnn(reg.variational_dropout(cells.gru(H), state_rate=0.3, input_rate=0.2)),
      layers.rnn(reg.zoneout(cells.lstm(H), c_rate=0.3, h_rate=0.1)),
  ], dropout_rate=0.1)
  params = stack.init(jax.random.key(0), D)
  xs = jax.random.normal(jax.random.key(1), (B, T, D))
  lengths = jnp.array([3, 5])
  apply = jax.jit(stack.apply, static_argnames="training")
  ys, _ = apply(params, xs, seq_lengths=lengths, training=True, key=jax.random.key(2))
  ys_again, _ = apply(params, xs, seq_lengths=lengths, training=True, key=jax.random.key(2))
  ys_other, _ = apply(params, xs, seq_lengths=lengths, training=True, key=jax.random.key(3))
  assert ys.shape == (B, T, H)
  np.testing.assert_array_equal(ys, ys_again)
  assert not np.allclose(ys, ys_other)
  np.testing.assert_array_equal(ys[0, 3:], 0.0)
  with pytest.raises(ValueError, match="key"):
    stack.apply(params, xs, training=True)


# ----------------------------------------------------------------------------
# Norm stabilizer.

# Hidden states with known norms: [3, 4, 0, 0] has norm 5, and so on.
_HS = np.array([
    [[3, 4, 0, 0], [0, 0, 0, 2], [0, 2, 0, 0], [6, 0, 8, 0], [0, 0, 1, 0]],    # 5 2 2 10 1
    [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, -4], [0, 0, 0, 0], [0, 3, 0, 0]],   # 1 1 4 0 3
], np.float32)
_INITIAL = np.array([[0, 0, 5, 0], [0, 0, 0, 0]], np.float32)  # norms 5, 0


@pytest.mark.parametrize("lengths, initial, want", [
    # pairs (t-1, t): b0 (5,2)(2,2)(2,10)(10,1) = 9+0+64+81, b1 (1,1)(1,4)(4,0)(0,3) = 0+9+16+9
    (None, None, (9 + 0 + 64 + 81 + 0 + 9 + 16 + 9) / 8),
    # with h_{-1}: b0 adds (5,5) = 0, b1 adds (0,1) = 1
    (None, _INITIAL, (9 + 0 + 64 + 81 + 0 + 0 + 9 + 16 + 9 + 0 + 1) / 10),
    # lengths 3 and 5: b0 keeps (5,2)(2,2) only
    ([3, 5], None, (9 + 0 + 0 + 9 + 16 + 9) / 6),
    ([3, 5], _INITIAL, (0 + 9 + 0 + 1 + 0 + 9 + 16 + 9) / 8),
    # length 1 has no pair without h_{-1}, one with it; length 0 none at all
    ([1, 0], None, 0.0),
    ([1, 0], _INITIAL, (5 - 5) ** 2 / 1),
    ([0, 2], _INITIAL, ((1 - 0) ** 2 + (1 - 1) ** 2) / 2),
])
def test_norm_stabilizer_hand_values(lengths, initial, want):
  beta = 50.0
  hs = jnp.asarray(_HS)
  if lengths is not None:  # padding must not count
    hs = hs.at[0, lengths[0]:].set(7.0).at[1, lengths[1]:].set(-7.0)
  got = reg.norm_stabilizer(hs, beta, seq_lengths=None if lengths is None else jnp.array(lengths),
                            initial_h=None if initial is None else jnp.asarray(initial))
  assert got.shape == ()
  np.testing.assert_allclose(got, beta * want, rtol=1e-6)


def test_norm_stabilizer_gradient_is_finite_at_zero():
  hs = jnp.asarray(_HS)  # has an all-zero h
  grad = jax.jit(jax.grad(lambda hs: reg.norm_stabilizer(
      hs, 1.0, seq_lengths=jnp.array([4, 2]), initial_h=jnp.zeros((B, H)))))(hs)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[0, 4:], 0.0)  # padding gets no gradient
  np.testing.assert_array_equal(grad[1, 2:], 0.0)
  # A bfloat16 batch gives a float32 penalty.
  assert reg.norm_stabilizer(hs.astype(jnp.bfloat16), 1.0).dtype == jnp.float32


# ----------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize("build, arg", [
    (lambda: reg.recurrent_dropout(cells.lstm(H), 1.0), "rate"),
    (lambda: reg.recurrent_dropout(cells.lstm(H), -0.1), "rate"),
    (lambda: reg.variational_dropout(cells.lstm(H), state_rate=1.5), "state_rate"),
    (lambda: reg.variational_dropout(cells.lstm(H), input_rate=1.0), "input_rate"),
    (lambda: reg.zoneout(cells.lstm(H), c_rate=1.0), "c_rate"),
    (lambda: reg.zoneout(cells.lstm(H), h_rate=-0.5), "h_rate"),
    (lambda: reg.zoneout(cells.lstm(H), h_rate="0.5"), "h_rate"),
    (lambda: reg.zoneout(cells.gru(H), c_rate=0.2), "c_rate"),
    (lambda: reg.recurrent_dropout(cells.simple_rnn(H), 0.2), "cell"),
    (lambda: reg.recurrent_dropout(cells.phased_lstm(H), 0.2), "cell"),
    (lambda: reg.variational_dropout(cells.simple_rnn(H), state_rate=0.2), "cell"),
    (lambda: reg.zoneout("lstm", h_rate=0.2), "cell"),
    (lambda: reg.norm_stabilizer(jnp.ones((B, H)), 1.0), "hs"),
    (lambda: reg.norm_stabilizer(jnp.ones((B, T, H)), -1.0), "beta"),
    (lambda: reg.norm_stabilizer(jnp.ones((B, T, H)), 1.0, initial_h=jnp.ones((B, D))),
     "initial_h"),
    (lambda: reg.norm_stabilizer(jnp.ones((B, T, H)), 1.0, seq_lengths=jnp.array([1])),
     "seq_lengths"),
    (lambda: reg.norm_stabilizer(jnp.ones((B, T, H)), 1.0, seq_lengths=jnp.array([1, 6])),
     "seq_lengths"),
])
def test_bad_arguments_name_themselves(build, arg):
  with pytest.raises(ValueError, match=f"^{arg}: "):
    build()


def test_example_index_needs_a_single_example():
  cell = reg.zoneout(_counter(lstm_like=True), c_rate=0.5, h_rate=0.5)
  params = cell.init(jax.random.key(0), D)
  carry = jax.tree_util.tree_map(lambda z: z + jnp.arange(B)[:, None], cell.initial_carry((B,)))
  x = jnp.zeros((B, D))
  step = functools.partial(cell.step, params, training=True, key=jax.random.key(0),
                           t=jnp.asarray(1, jnp.int32))
  with pytest.raises(ValueError, match="^example: "):
    step(carry, x, example=1)
  # One example at a time (what unroll_reference does) draws row b of the batch's masks.
  batched, _ = step(carry, x)
  for b in range(B):
    one, _ = step(jax.tree_util.tree_map(lambda a: a[b], carry), x[b], example=b)
    _close(one, jax.tree_util.tree_map(lambda a: a[b], batched), rtol=0, atol=0)
