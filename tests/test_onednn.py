"""The oneDNN LSTM (`rnn_jax.kernels.onednn`) against the scan path and the loop.

Values and gradients (params, xs, h0, c0) in float32, under `jax.jit`; the extension's tests
skip with the reason `available()` gives when it cannot be built or loaded. The tests of a
missing extension run everywhere: they hide oneDNN or break the build and check the reason.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells
from rnn_jax.cells.lstm import LSTMState
from rnn_jax.kernels import onednn
from rnn_jax.kernels.onednn import build

AVAILABLE, REASON = onednn.available()
needs_onednn = pytest.mark.skipif(not AVAILABLE, reason=f"oneDNN extension: {REASON}")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
  """One OpenMP thread for oneDNN in this module: CI runs the tests in parallel processes on
  two cores, where oneDNN's barriers wait for descheduled threads (module docstring of
  rnn_jax.kernels.onednn, "Threads"). test_threads_change_nothing_but_time uses two."""
  if AVAILABLE:
    onednn.set_threads(1)
  yield
  if AVAILABLE:
    onednn.set_threads(None)

# (B, T, D, H): pairwise-distinct sizes, one example, one step, both at once.
SIZES = [(3, 6, 5, 4), (1, 7, 2, 3), (4, 1, 3, 5), (1, 1, 6, 2), (5, 9, 8, 16)]
# Each size once per test, with and without biases in turn (every case compiles its own
# call); the gradient test takes the other choice, so each size meets both.
SIZES_BIAS = [(*size, i % 2 == 0) for i, size in enumerate(SIZES)]
SIZES_OTHER_BIAS = [(*size, not bias) for *size, bias in SIZES_BIAS]


def _half_fraction(cases):
  """(lengths, reverse) for each case: (no, no) and (yes, yes) for even cases, (yes, no) and
  (no, yes) for odd ones, so that every pair of settings occurs at half the compiles."""
  return [(*case, lengths, reverse) for i, case in enumerate(cases)
          for lengths, reverse in (((False, False), (True, True)) if i % 2 == 0
                                   else ((True, False), (False, True)))]


def _setup(B, T, D, H, seed=0, use_bias=True):
  cell = cells.lstm(H, use_bias=use_bias)
  keys = jax.random.split(jax.random.key(seed), 5)
  params = cell.init(keys[0], D)
  params = jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.normal(keys[1], a.shape), params)
  xs = jax.random.normal(keys[2], (B, T, D))
  h0 = jax.random.normal(keys[3], (B, H))
  c0 = jax.random.normal(keys[4], (B, H))
  return cell, params, xs, h0, c0


def _close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol),
                         a, b)


def _loss(run):
  """A loss that weighs every output and both final carries differently."""
  def loss(params, xs, h0, c0):
    ys, final = run(params, xs, h0, c0)
    w = jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape) / ys.size
    return jnp.sum(w * ys) + jnp.sum(jnp.sin(final.h)) + jnp.sum(final.c ** 2)
  return loss


def _unroll(cell, implementation):
  return lambda params, xs, h0, c0: rnn_jax.unroll(
      cell, params, xs, initial_carry=LSTMState(h0, c0), implementation=implementation)


@needs_onednn
@pytest.mark.parametrize("B,T,D,H,use_bias", SIZES_BIAS)
def test_forward_equals_scan(B, T, D, H, use_bias):
  cell, params, xs, h0, c0 = _setup(B, T, D, H, use_bias=use_bias)
  ys, final = jax.jit(onednn.lstm_sequence)(params, xs, h0, c0)
  assert ys.shape == (B, T, H) and ys.dtype == jnp.float32
  assert isinstance(final, LSTMState) and final.h.shape == final.c.shape == (B, H)
  _close((ys, final), _unroll(cell, "scan")(params, xs, h0, c0))

@needs_onednn
@pytest.mark.parametrize("B,T,D,H,use_bias", SIZES_OTHER_BIAS)
def test_gradients_equal_scan(B, T, D, H, use_bias):
  cell, params, xs, h0, c0 = _setup(B, T, D, H, seed=1, use_bias=use_bias)
  grad = lambda run: jax.jit(jax.grad(_loss(run), argnums=(0, 1, 2, 3)))(params, xs, h0, c0)
  g_onednn = grad(onednn.lstm_sequence)
  assert jax.tree_util.tree_structure(g_onednn[0]) == jax.tree_util.tree_structure(params)
  _close(g_onednn, grad(_unroll(cell, "scan")), rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("B,T,D,H", [(2, 4, 3, 5), (1, 1, 6, 2)])
def test_values_and_gradients_equal_loop(B, T, D, H):
  """The loop oracle (no scan in between), values and its autodiff gradients."""
  cell, params, xs, h0, c0 = _setup(B, T, D, H, seed=2)
  loop = lambda params, xs, h0, c0: rnn_jax.unroll_reference(cell, params, xs,
                                                             initial_carry=LSTMState(h0, c0))
  _close(onednn.lstm_sequence(params, xs, h0, c0), loop(params, xs, h0, c0))
  grad = lambda run: jax.grad(_loss(run), argnums=(0, 1, 2, 3))(params, xs, h0, c0)
  _close(grad(onednn.lstm_sequence), grad(loop), rtol=1e-5, atol=1e-5)


# (B, T, D, H, lengths): lengths with 0, 1 and T, all T, and all 0.
LENGTH_CASES = [(5, 7, 3, 4, [7, 0, 3, 1, 6]), (3, 6, 5, 16, [6, 6, 6]), (2, 4, 2, 3, [0, 0]),
                (4, 1, 3, 5, [1, 0, 1, 1])]


@needs_onednn
@pytest.mark.parametrize("B,T,D,H,seq_lengths,lengths,reverse", _half_fraction(LENGTH_CASES))
def test_lengths_and_reverse_equal_scan(B, T, D, H, seq_lengths, lengths, reverse):
  """`unroll`'s padding contract: zero outputs past each length, the carry of the last valid
  step, each row's valid part run backwards; values and gradients against the scan."""
  cell, params, xs, h0, c0 = _setup(B, T, D, H, seed=3)
  lengths = jnp.array(seq_lengths) if lengths else None
  ours = lambda p, x, h, c: onednn.lstm_sequence(p, x, h, c, lengths, reverse)
  scan = lambda p, x, h, c: rnn_jax.unroll(cell, p, x, seq_lengths=lengths, reverse=reverse,
                                           initial_carry=LSTMState(h, c),
                                           implementation="scan")
  _close(jax.jit(ours)(params, xs, h0, c0), scan(params, xs, h0, c0))
  grad = lambda run: jax.jit(jax.grad(_loss(run), argnums=(0, 1, 2, 3)))(params, xs, h0, c0)
  _close(grad(ours), grad(scan), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_lengths_equal_the_loop_with_large_activations():
  """The hold column keeps a padded step a no-op even where the step's own pre-activations are
  large (inputs and weights scaled up, gates saturated); the loop oracle is the reference."""
  cell, params, xs, h0, c0 = _setup(4, 6, 3, 5, seed=4)
  params = jax.tree_util.tree_map(lambda a: 20.0 * a, params)
  xs, h0, c0 = 30.0 * xs, 5.0 * h0, 50.0 * c0
  lengths = jnp.array([6, 2, 0, 4])
  for reverse in (False, True):
    ours = onednn.lstm_sequence(params, xs, h0, c0, lengths, reverse)
    loop = rnn_jax.unroll_reference(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                                    initial_carry=LSTMState(h0, c0))
    _close(ours, loop, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(ours[1].c)[2] == np.asarray(c0)[2])  # length 0: c0, bit for bit


@needs_onednn
def test_threads_change_nothing_but_time():
  """`set_threads` reaches oneDNN's parallel regions: one and two threads give the same values
  and gradients (to summation order); bad counts are refused."""
  cell, params, xs, h0, c0 = _setup(6, 5, 4, 8, seed=9)
  lengths = jnp.array([5, 0, 2, 5, 1, 4])
  run = lambda p, x, h, c: onednn.lstm_sequence(p, x, h, c, lengths, True)
  grad = jax.jit(jax.grad(_loss(run), argnums=(0, 1, 2, 3)))
  results = []
  for n in (2, 1):
    onednn.set_threads(n)
    results.append((run(params, xs, h0, c0), grad(params, xs, h0, c0)))
  _close(*results, rtol=1e-6, atol=1e-6)
  for bad in (-1, 1.5):
    with pytest.raises(ValueError, match="n: expected None or an int"):
      onednn.set_threads(bad)


@needs_onednn
def test_value_and_grad_share_one_forward():
  """Outputs from the differentiated call (forward_training) equal the plain call's, and the
  workspace it saves has the size the primitive descriptor gives."""
  _, params, xs, h0, c0 = _setup(3, 6, 5, 4)
  (ys, final), vjp = jax.vjp(onednn.lstm_sequence, params, xs, h0, c0)
  _close((ys, final), onednn.lstm_sequence(params, xs, h0, c0), rtol=0, atol=0)
  d_params, d_xs, dh0, dc0 = vjp((jnp.ones_like(ys), LSTMState(final.h * 0, final.c * 0)))
  assert d_xs.shape == xs.shape and dh0.shape == dc0.shape == h0.shape
  assert onednn.workspace_bytes(3, 6, 5, 4) > 0


@needs_onednn
def test_vmap_runs_one_batch_at_a_time():
  _, params, xs, h0, c0 = _setup(2, 5, 3, 4)
  xs2 = jnp.stack([xs, 2 * xs])  # [2, B, T, D]
  batched = jax.vmap(onednn.lstm_sequence, in_axes=(None, 0, None, None))(params, xs2, h0, c0)
  for i in range(2):
    _close(jax.tree_util.tree_map(lambda a: a[i], batched),
           onednn.lstm_sequence(params, xs2[i], h0, c0))


@needs_onednn
def test_empty_sequence_passes_the_carry():
  _, params, xs, h0, c0 = _setup(2, 3, 3, 4)
  ys, final = onednn.lstm_sequence(params, xs[:, :0], h0, c0)
  assert ys.shape == (2, 0, 4)
  _close(final, LSTMState(h0, c0), rtol=0, atol=0)
  to16 = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), t)
  params16, xs16, h16, c16 = to16((params, xs, h0, c0))
  ys, final = onednn.lstm_sequence(params16, xs16[:, :0], h16, c16)  # in the inputs' dtype
  assert ys.dtype == final.h.dtype == final.c.dtype == jnp.bfloat16


@needs_onednn
def test_rejects_what_it_does_not_compute():
  _, params, xs, h0, c0 = _setup(2, 3, 3, 4)
  with pytest.raises(TypeError, match="float32"):
    onednn.lstm_sequence(params, xs.astype(jnp.bfloat16), h0, c0)
  with pytest.raises(ValueError, match="h0"):
    onednn.lstm_sequence(params, xs, h0[:1], c0)
  with pytest.raises(ValueError, match=r"lengths: expected \[B\]"):
    onednn.lstm_sequence(params, xs, h0, c0, jnp.array([3]))
  with pytest.raises(ValueError, match=r"lengths: expected \[B\]"):
    onednn.lstm_sequence(params, xs, h0, c0, jnp.array([3.0, 1.0]))
  peephole = cells.lstm(4, peephole=True).init(jax.random.key(0), 3)
  with pytest.raises(ValueError, match="plain LSTM"):
    onednn.lstm_sequence(peephole, xs, h0, c0)


# ------------------------------------------------------------ GRU, both forms

# (B, T, D, H, lengths)
GRU_CASES = [(5, 7, 3, 4, [7, 0, 3, 1, 6]), (2, 1, 4, 6, [1, 0])]


def _gru_setup(B, T, D, H, reset_after, use_bias=True, seed=7):
  cell = cells.gru(H, reset_after=reset_after, use_bias=use_bias)
  keys = jax.random.split(jax.random.key(seed), 4)
  params = jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(keys[1], a.shape),
                                  cell.init(keys[0], D))
  return cell, params, jax.random.normal(keys[2], (B, T, D)), jax.random.normal(keys[3], (B, H))


@needs_onednn
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("B,T,D,H,seq_lengths,lengths,reverse", _half_fraction(GRU_CASES))
def test_gru_equals_scan(B, T, D, H, seq_lengths, reset_after, lengths, reverse):
  """Cho et al.'s GRU (vanilla_gru) and cuDNN's (lbr_gru): values and gradients against the
  scan, with and without lengths, both directions."""
  cell, params, xs, h0 = _gru_setup(B, T, D, H, reset_after)
  lengths = jnp.array(seq_lengths) if lengths else None
  ours = lambda p, x, h: onednn.gru_sequence(p, x, h, lengths, reverse, reset_after)
  scan = lambda p, x, h: rnn_jax.unroll(cell, p, x, seq_lengths=lengths, reverse=reverse,
                                        initial_carry=h, implementation="scan")
  _close(jax.jit(ours)(params, xs, h0), scan(params, xs, h0))

  def loss(run):
    def value(p, x, h):
      ys, h_n = run(p, x, h)
      w = jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape) / ys.size
      return jnp.sum(w * ys) + jnp.sum(jnp.sin(h_n))
    return jax.jit(jax.grad(value, argnums=(0, 1, 2)))

  grads = loss(ours)(params, xs, h0)
  assert jax.tree_util.tree_structure(grads[0]) == jax.tree_util.tree_structure(params)
  _close(grads, loss(scan)(params, xs, h0), rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_without_bias_equals_the_loop(reset_after):
  cell, params, xs, h0 = _gru_setup(3, 5, 2, 4, reset_after, use_bias=False, seed=8)
  lengths = jnp.array([5, 2, 0])
  for reverse in (False, True):
    _close(onednn.gru_sequence(params, xs, h0, lengths, reverse, reset_after),
           rnn_jax.unroll_reference(cell, params, xs, seq_lengths=lengths, reverse=reverse,
                                    initial_carry=h0))


@needs_onednn
def test_gru_rejects_what_it_does_not_compute():
  cell, params, xs, h0 = _gru_setup(2, 3, 3, 4, reset_after=True)
  with pytest.raises(ValueError, match="b_hn"):
    onednn.gru_sequence(params, xs, h0, reset_after=False)  # a reset_after GRU's params
  per_sequence = dict(params, b=jnp.zeros((2, 12)))
  with pytest.raises(ValueError, match="per-sequence bias"):
    onednn.gru_sequence(per_sequence, xs, h0, reset_after=True)
  with pytest.raises(TypeError, match="float32"):
    onednn.gru_sequence(params, xs.astype(jnp.bfloat16), h0, reset_after=True)


# ------------------------------------------------------------ through unroll and the layers


@needs_onednn
def test_unroll_and_a_bidirectional_layer_run_on_onednn():
  """`implementation="onednn"` reaches the FFI call (in the jaxpr) and equals the scan, for
  `unroll` (LSTM and GRU) and for a bidirectional layer (the backward direction reversed per
  length)."""
  from rnn_jax import layers
  cell, params, xs, h0, c0 = _setup(4, 6, 3, 5, seed=5)
  lengths = jnp.array([6, 3, 0, 5])
  run = lambda impl: rnn_jax.unroll(cell, params, xs, seq_lengths=lengths,
                                    initial_carry=LSTMState(h0, c0), implementation=impl)
  jaxpr = str(jax.make_jaxpr(lambda: run("onednn"))())
  assert onednn.FORWARD_TARGET in jaxpr
  _close(run("onednn"), run("scan"))
  gru, gru_params, _, _ = _gru_setup(4, 6, 3, 5, reset_after=True)
  run_gru = lambda impl: rnn_jax.unroll(gru, gru_params, xs, seq_lengths=lengths, reverse=True,
                                        implementation=impl)
  assert onednn.GRU_FORWARD_TARGET in str(jax.make_jaxpr(lambda: run_gru("onednn"))())
  _close(run_gru("onednn"), run_gru("scan"))
  layer = lambda impl: layers.bidirectional(cell, implementation=impl)
  bi_params = layer("scan").init(jax.random.key(1), 3)
  loss = lambda impl: jax.grad(lambda p: jnp.sum(
      layer(impl).apply(p, xs, seq_lengths=lengths)[0] ** 2))(bi_params)
  _close(layer("onednn").apply(bi_params, xs, seq_lengths=lengths),
         layer("scan").apply(bi_params, xs, seq_lengths=lengths))
  _close(loss("onednn"), loss("scan"), rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_from_torch_modules_run_on_onednn_and_match_pytorch(kind):
  """A 2-layer bi-directional `nn.LSTM` / `nn.GRU` converted with `from_torch(module,
  implementation="onednn")`: every layer reaches the FFI call, and the outputs, final
  states and gradients (inputs, initial states, the bottom layer's weights) equal PyTorch's
  own on packed ragged sequences."""
  torch = pytest.importorskip("torch")
  from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
  from rnn_jax.interop import from_torch
  B, T, D, H, lengths = 3, 6, 5, 4, [6, 2, 4]
  torch.manual_seed(0)
  module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
      D, H, num_layers=2, bidirectional=True, batch_first=True).float()
  apply, params = from_torch(module, implementation="onednn")
  rng = np.random.default_rng(1)
  hx = [rng.standard_normal((4, B, H)).astype(np.float32)
        for _ in range(2 if kind == "lstm" else 1)]
  xs = rng.standard_normal((B, T, D)).astype(np.float32)

  def loss(params, xs, hx):
    ys, h = apply(params, xs, seq_lengths=jnp.asarray(lengths),
                  hx=tuple(hx) if kind == "lstm" else hx[0])
    states = h if kind == "lstm" else (h,)
    return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(s ** 2) for s in states), (ys, states)

  target = onednn.FORWARD_TARGET if kind == "lstm" else onednn.GRU_FORWARD_TARGET
  assert str(jax.make_jaxpr(loss)(params, xs, hx)).count(target) == 4  # 2 layers x 2 ways
  (_, (ys, states)), (g_params, g_xs, g_hx) = jax.jit(jax.value_and_grad(
      loss, argnums=(0, 1, 2), has_aux=True))(params, xs, hx)

  x = torch.from_numpy(xs).requires_grad_(True)
  t_hx = [torch.from_numpy(a).requires_grad_(True) for a in hx]
  packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                enforce_sorted=False)
  out, h = module(packed, tuple(t_hx) if kind == "lstm" else t_hx[0])
  out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
  t_states = h if kind == "lstm" else (h,)
  (torch.sum(out * torch.cos(out)) + sum(torch.sum(s ** 2) for s in t_states)).backward()

  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), b.detach().numpy(),
                                                  rtol=1e-4, atol=1e-5)
  close(ys, out)
  for mine, theirs in zip(states, t_states):
    close(mine, theirs)
  close(g_xs, x.grad)
  for mine, theirs in zip(g_hx, t_hx):
    close(mine, theirs.grad)
  close(g_params["layer_0"]["fw"]["w_ih"], module.weight_ih_l0.grad.T)
  close(g_params["layer_0"]["bw"]["w_hh"], module.weight_hh_l0_reverse.grad.T)


@needs_onednn
def test_gnmt_on_onednn_has_the_fused_kernels_loss_and_gradients():
  """`--rnn_implementation=onednn`: GNMT's encoder (a bi-directional bottom, ragged source
  lengths) and upper decoder layers call oneDNN, and its training loss and gradients on a fixed
  batch equal the default (fused kernels) with the same params, batch and dropout key."""
  import dataclasses
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from fixtures import gnmt_config, gnmt_fixed_batch
  from experiments.gnmt import model as model_lib, train as train_lib
  V = 23
  base = gnmt_config(hidden_size=8, vocab_size=V, dropout=0.2, num_layers=2)
  batch = gnmt_fixed_batch(V)
  results = []
  for impl in ("auto", "onednn"):
    config = dataclasses.replace(base, rnn_implementation=impl)
    model = model_lib.GNMT(config, V)
    params = model.init(jax.random.key(0))
    loss = lambda p: train_lib.make_loss_fn(config, model)(p, {}, batch, jax.random.key(3))[0]
    calls = str(jax.make_jaxpr(loss)(params)).count(onednn.FORWARD_TARGET)
    results.append((calls, jax.jit(jax.value_and_grad(loss))(params)))
  (fused_calls, (l1, g1)), (onednn_calls, (l2, g2)) = results
  # The encoder: 2 + 1; the decoder's upper layer: 1 (input feeding steps its bottom layer
  # in a scan with the attention).
  assert fused_calls == 0 and onednn_calls == 3 + 1
  np.testing.assert_allclose(float(l2), float(l1), rtol=1e-5)
  _close(g2, g1, rtol=1e-4, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_lm_on_onednn_has_the_fused_kernels_loss_and_gradients(cell_name):
  """The PTB language model's `--rnn_implementation=onednn` (benchmarks.lm's oneDNN row):
  its two layers call oneDNN, with the loss, gradients and next carry of the default (fused
  kernels) on a random batch, dropout and a carried state included; a cell oneDNN does not
  compute (zoneout) is refused."""
  from experiments.common import UserError
  from experiments.lm import LMConfig
  from experiments.lm import model as model_lib, train as train_lib
  rng = np.random.default_rng(0)
  V = 17
  batch = {"inputs": rng.integers(0, V, (3, 6)).astype(np.int32),
           "targets": rng.integers(0, V, (3, 6)).astype(np.int32), "reset": np.asarray(False)}
  results = []
  for impl in ("auto", "onednn"):
    config = LMConfig(hidden_size=8, num_layers=2, batch_size=3, bptt=6, dropout=0.3,
                      cell=cell_name, rnn_implementation=impl)
    train_lib.check_config(config)
    model = model_lib.build(config, V)
    params = model.init(jax.random.key(0))
    carry = jax.tree_util.tree_map(lambda a: a + 0.5, model.initial_carry(3))
    loss = lambda p: train_lib.make_loss_fn(config, model)(p, carry, batch, jax.random.key(4))
    target = onednn.FORWARD_TARGET if cell_name == "lstm" else onednn.GRU_FORWARD_TARGET
    calls = str(jax.make_jaxpr(loss)(params)).count(target)
    results.append((calls, jax.jit(jax.value_and_grad(loss, has_aux=True))(params)))
  (fused_calls, ((l1, (c1, _)), g1)), (onednn_calls, ((l2, (c2, _)), g2)) = results
  assert fused_calls == 0 and onednn_calls == 2
  np.testing.assert_allclose(float(l2), float(l1), rtol=1e-5)
  _close((g2, c2), (g1, c1), rtol=1e-4, atol=1e-6)
  with pytest.raises(UserError, match="rnn_implementation=onednn"):
    train_lib.check_config(LMConfig(zoneout_h=0.1, rnn_implementation="onednn"))


def test_unroll_refuses_cells_onednn_does_not_compute():
  xs = jnp.ones((2, 3, 4))
  for cell in (cells.simple_rnn(4), cells.lstm(4, peephole=True), cells.lstm(4, coupled=True),
               cells.lstm(4, layer_norm=True)):
    with pytest.raises(ValueError, match="no oneDNN kernel"):
      rnn_jax.unroll(cell, cell.init(jax.random.key(0), 4), xs, implementation="onednn")


def test_unroll_falls_back_to_the_fused_kernel_with_one_warning(monkeypatch):
  """With the extension unavailable, "onednn" warns once (with the reason) and gives the fused
  kernel's result; a second call is silent."""
  from rnn_jax import kernels
  monkeypatch.setattr(onednn, "_loaded", (None, "BuildError: hidden by the test"))
  monkeypatch.setattr(kernels, "_onednn_fallback_warned", False)
  cell, params, xs, h0, c0 = _setup(3, 5, 2, 4, seed=6)
  lengths = jnp.array([5, 1, 3])
  run = lambda impl: rnn_jax.unroll(cell, params, xs, seq_lengths=lengths, reverse=True,
                                    initial_carry=LSTMState(h0, c0), implementation=impl)
  with pytest.warns(RuntimeWarning, match="unavailable.*hidden by the test.*fused"):
    ours = run("onednn")
  _close(ours, run("fused"), rtol=0, atol=0)
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    run("onednn")


SHARDED_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import rnn_jax
from rnn_jax import cells
mesh = Mesh(np.asarray(jax.devices()), ("data",))
assert mesh.size == 2, jax.devices()
for cell in (cells.lstm(6), cells.gru(6), cells.gru(6, reset_after=True)):
  params = cell.init(jax.random.key(0), 4)
  xs = jax.random.normal(jax.random.key(1), (4, 5, 4))
  lengths = jnp.array([5, 2, 0, 4])

  def loss(p, x, lengths, implementation):
    ys, final = rnn_jax.unroll(cell, p, x, seq_lengths=lengths, implementation=implementation)
    return jnp.sum(jnp.sin(ys)) + jnp.sum(jax.tree_util.tree_leaves(final)[0] ** 2)

  want = jax.grad(loss, argnums=(0, 1))(params, xs, lengths, "scan")
  sharded = jax.shard_map(lambda p, x, l: jax.grad(loss, argnums=(0, 1))(p, x, l, "onednn"),
                          mesh=mesh, in_specs=(P(), P("data"), P("data")),
                          out_specs=(P(), P("data")))
  got = jax.jit(sharded)(params, xs, lengths)
  for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=cell.name)
print("SHARDED_ONEDNN_OK")
"""


@needs_onednn
def test_inside_shard_map_gradients_equal_one_device():
  """Under `jax.shard_map` over 2 host devices (the batch split, params replicated), each
  device's oneDNN calls see its own rows and the weight gradients are summed over the
  devices: the single-device scan's gradients, for the LSTM and both GRUs."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SHARDED_CHECK], env=env, capture_output=True,
                       text=True, timeout=300)
  assert "SHARDED_ONEDNN_OK" in out.stdout, out.stderr[-3000:]


# ------------------------------------------------------------ a missing extension


@pytest.fixture
def fresh_load(monkeypatch, tmp_path):
  """Forgets the process's load result for one test (restored after it), with an empty cache,
  so the next `available()` searches, builds and loads again."""
  monkeypatch.setattr(onednn, "_loaded", None)
  monkeypatch.setenv("RNN_JAX_ONEDNN_CACHE", str(tmp_path / "cache"))
  return tmp_path


def test_unavailable_when_onednn_is_hidden(fresh_load, monkeypatch):
  monkeypatch.setenv("RNN_JAX_ONEDNN_ROOT", str(fresh_load / "no_onednn"))
  ok, reason = onednn.available()
  assert not ok and "RNN_JAX_ONEDNN_ROOT" in reason and "dnnl.hpp" in reason
  _, params, xs, h0, c0 = _setup(2, 3, 3, 4)
  with pytest.raises(RuntimeError, match="unavailable.*dnnl.hpp"):
    onednn.lstm_sequence(params, xs, h0, c0)


def test_unavailable_when_no_wheel_is_installed(fresh_load, monkeypatch):
  monkeypatch.delenv("RNN_JAX_ONEDNN_ROOT", raising=False)
  monkeypatch.setattr(build, "WHEELS", (("no-such-onednn-devel", "no-such-onednn"),))
  ok, reason = onednn.available()
  assert not ok and "oneDNN not found" in reason and "rnn-jax[onednn]" in reason


@needs_onednn
def test_unavailable_when_the_build_fails(fresh_load, monkeypatch):
  monkeypatch.setenv("CXX", "false")  # a "compiler" that fails at once
  ok, reason = onednn.available()
  assert not ok and "compiling rnn.cc failed" in reason
  assert not list((fresh_load / "cache").rglob(build.LIBRARY_NAME))  # nothing half-built kept


def test_import_never_raises_and_builds_nothing(tmp_path):
  """A fresh interpreter with oneDNN hidden imports the package and gets the reason."""
  code = ("import rnn_jax.kernels.onednn as o, os; "
          "assert not os.path.exists(os.environ['RNN_JAX_ONEDNN_CACHE']); "
          "ok, reason = o.available(); print(ok, reason)")
  env = {"RNN_JAX_ONEDNN_ROOT": str(tmp_path / "nowhere"),
         "RNN_JAX_ONEDNN_CACHE": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=120, check=True)
  assert out.stdout.startswith("False BuildError: $RNN_JAX_ONEDNN_ROOT="), out.stdout


@needs_onednn
def test_handler_checks_shapes():
  """Called directly with a `w_ih` that does not fit x and h0, the handler refuses (rather
  than reading past the buffer)."""
  B, T, D, H = 2, 3, 5, 4
  f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  call = jax.ffi.ffi_call(onednn.FORWARD_TARGET,
                          (f32(B, T, H), f32(B, H), f32(B, H),
                           jax.ShapeDtypeStruct((onednn.workspace_bytes(B, T, D, H),), jnp.uint8)))
  args = [jnp.ones((B, T, D)), jnp.zeros((B, H)), jnp.zeros((B, H)), jnp.ones((D - 1, 4 * H)),
          jnp.ones((H, 4 * H)), jnp.zeros((4 * H,))]
  with pytest.raises(Exception, match=r"w_ih has shape \[4, 16\], expected \[5, 16\]"):
    jax.block_until_ready(call(*args, reverse=False))


# ------------------------------------------------------------------- remat: chunked calls


# (B, T, chunk_size, lengths or None, reverse): chunks that divide T and chunks that do not
# (the last one padded), the default ceil(sqrt(T)), lengths ending inside, at and before a
# chunk's border (0, T), both directions.
REMAT_CASES = [(3, 7, 3, [7, 3, 0], False), (3, 7, None, [5, 6, 1], True),
               (2, 9, 3, None, True), (2, 8, 5, None, False)]


@needs_onednn
@pytest.mark.parametrize("B,T,chunk_size,seq_lengths,reverse", REMAT_CASES)
def test_remat_chunks_equal_scan(B, T, chunk_size, seq_lengths, reverse):
  """`remat=True`: one oneDNN call per chunk of steps under jax.checkpoint; values and
  gradients against the scan, LSTM and GRU (linear before reset)."""
  cell, params, xs, h0, c0 = _setup(B, T, 3, 4, seed=11)
  lengths = None if seq_lengths is None else jnp.array(seq_lengths)
  ours = lambda p, x, h, c: onednn.lstm_sequence(p, x, h, c, lengths, reverse, remat=True,
                                                 chunk_size=chunk_size)
  scan = lambda p, x, h, c: rnn_jax.unroll(cell, p, x, seq_lengths=lengths, reverse=reverse,
                                           initial_carry=LSTMState(h, c),
                                           implementation="scan")
  _close(jax.jit(ours)(params, xs, h0, c0), scan(params, xs, h0, c0))
  grad = lambda run: jax.jit(jax.grad(_loss(run), argnums=(0, 1, 2, 3)))(params, xs, h0, c0)
  _close(grad(ours), grad(scan), rtol=1e-5, atol=1e-5)
  gru, gru_params, _, _ = _gru_setup(B, T, 3, 4, True)
  ours = lambda p, x, h: onednn.gru_sequence(p, x, h, lengths, reverse, True, remat=True,
                                             chunk_size=chunk_size)
  scan = lambda p, x, h: rnn_jax.unroll(gru, p, x, seq_lengths=lengths, reverse=reverse,
                                        initial_carry=h, implementation="scan")
  value = lambda run: lambda p, x, h: jnp.sum(jnp.sin(run(p, x, h)[0])) + jnp.sum(run(p, x, h)[1])
  _close(jax.jit(ours)(gru_params, xs, h0), scan(gru_params, xs, h0))
  g = lambda run: jax.jit(jax.grad(value(run), argnums=(0, 1, 2)))(gru_params, xs, h0)
  _close(g(ours), g(scan), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_remat_holds_one_chunks_workspace():
  """The compiled forward+backward of a long sequence: without remat its temporaries hold the
  whole sequence's workspace; with remat (chunks of ceil(sqrt(T)) steps) a small part of it,
  and the program calls the forward once per chunk in each pass (the recomputation)."""
  B, T, D, H = 4, 400, 8, 32
  cell, params, xs, h0, c0 = _setup(B, T, D, H, seed=12)
  whole = onednn.workspace_bytes(B, T, D, H)

  def compiled(remat):
    run = lambda p, x, h, c: rnn_jax.unroll(cell, p, x, initial_carry=LSTMState(h, c),
                                            implementation="onednn", remat=remat)
    return jax.jit(jax.grad(_loss(run), argnums=(0, 1, 2, 3))).lower(
        params, xs, h0, c0).compile()

  plain, chunked = compiled(False), compiled(True)
  assert plain.memory_analysis().temp_size_in_bytes >= whole
  assert chunked.memory_analysis().temp_size_in_bytes < whole / 4
  text = chunked.as_text()
  assert text.count(onednn.FORWARD_TARGET) >= 2 and "while" in text  # recomputed in a loop
  _close(jax.grad(_loss(lambda p, x, h, c: rnn_jax.unroll(
      cell, p, x, initial_carry=LSTMState(h, c), implementation="onednn", remat=True)),
      argnums=(0, 1, 2, 3))(params, xs, h0, c0),
      jax.grad(_loss(_unroll(cell, "fused")), argnums=(0, 1, 2, 3))(params, xs, h0, c0),
      rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ bfloat16


@needs_onednn
@pytest.mark.parametrize("seq_lengths,reverse,remat", [(None, False, False),
                                                        ([6, 0, 3], True, False),
                                                        ([1, 6, 6], False, True)])
def test_bfloat16_equals_float32_scan_on_the_rounded_numbers(seq_lengths, reverse, remat):
  """bfloat16 params, inputs and carry (oneDNN's bf16 handlers: c, the bias and the gradients
  in float32 inside): outputs, final carry and gradients in bfloat16, near the float32 scan on
  the same bfloat16-rounded numbers (the fused kernels' bf16 contract and tolerance)."""
  cell, params, xs, h0, c0 = _setup(3, 6, 5, 16, seed=13)
  lengths = None if seq_lengths is None else jnp.array(seq_lengths)
  to = lambda dtype: lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)
  args16 = to(jnp.bfloat16)((params, xs, h0, c0))
  ours = lambda p, x, h, c: onednn.lstm_sequence(p, x, h, c, lengths, reverse, remat=remat,
                                                 chunk_size=4)
  scan = lambda p, x, h, c: rnn_jax.unroll(cell, p, x, seq_lengths=lengths, reverse=reverse,
                                           initial_carry=LSTMState(h, c),
                                           implementation="scan")
  out16 = jax.jit(ours)(*args16)
  grads16 = jax.jit(jax.grad(_loss(ours), argnums=(0, 1, 2, 3)))(*args16)
  for leaf in jax.tree_util.tree_leaves((out16, grads16)):
    assert leaf.dtype == jnp.bfloat16
  assert onednn.FORWARD_BF16_TARGET in str(jax.make_jaxpr(ours)(*args16))
  args32 = to(jnp.float32)(args16)
  f32 = to(jnp.float32)
  _close(f32(out16), scan(*args32), rtol=2e-2, atol=2e-2)
  _close(f32(grads16), jax.grad(_loss(scan), argnums=(0, 1, 2, 3))(*args32), rtol=2e-2,
         atol=2e-2)


@needs_onednn
def test_mixed_dtypes_are_refused():
  _, params, xs, h0, c0 = _setup(2, 3, 3, 4)
  with pytest.raises(TypeError, match="bfloat16 for all"):
    onednn.lstm_sequence(params, xs.astype(jnp.bfloat16), h0, c0)


@needs_onednn
@pytest.mark.parametrize("reset_after,seq_lengths,reverse", [(True, [6, 0, 3], True),
                                                             (False, None, False)])
def test_gru_bfloat16_equals_float32_scan_on_the_rounded_numbers(reset_after, seq_lengths,
                                                                 reverse):
  """The GRU's bf16 handlers (both forms): outputs and gradients in bfloat16, near the float32
  scan on the same rounded numbers."""
  cell, params, xs, h0 = _gru_setup(3, 6, 5, 16, reset_after, seed=14)
  lengths = None if seq_lengths is None else jnp.array(seq_lengths)
  to = lambda dtype: lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)
  args16 = to(jnp.bfloat16)((params, xs, h0))
  ours = lambda p, x, h: onednn.gru_sequence(p, x, h, lengths, reverse, reset_after)
  scan = lambda p, x, h: rnn_jax.unroll(cell, p, x, seq_lengths=lengths, reverse=reverse,
                                        initial_carry=h, implementation="scan")

  def loss(run):
    def value(p, x, h):
      ys, h_n = run(p, x, h)
      w = jnp.arange(ys.size, dtype=jnp.float32).reshape(ys.shape) / ys.size
      return jnp.sum(w * ys.astype(jnp.float32)) + jnp.sum(jnp.sin(h_n.astype(jnp.float32)))
    return jax.grad(value, argnums=(0, 1, 2))

  out16, grads16 = jax.jit(ours)(*args16), jax.jit(loss(ours))(*args16)
  for leaf in jax.tree_util.tree_leaves((out16, grads16)):
    assert leaf.dtype == jnp.bfloat16
  assert onednn.GRU_FORWARD_BF16_TARGET in str(jax.make_jaxpr(ours)(*args16))
  args32 = to(jnp.float32)(args16)
  _close(to(jnp.float32)(out16), scan(*args32), rtol=2e-2, atol=2e-2)
  _close(to(jnp.float32)(grads16), loss(scan)(*args32), rtol=2e-2, atol=2e-2)
