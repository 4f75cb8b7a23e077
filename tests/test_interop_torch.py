"""rnn_jax.interop.from_torch / params_from_torch against PyTorch nn.LSTM / nn.GRU.

The reference for ragged batches is what packed sequences give:
`pack_padded_sequence(x, lengths, enforce_sorted=False)` -> module ->
`pad_packed_sequence(..., total_length=T)`; with `seq_lengths=None` it is the
module on the plain padded tensor.

Eager `apply` recompiles its scans on every call, so most checks go through
one cached `jax.jit(apply)` per module configuration to keep the file fast;
`test_eager_matches_jit` holds the eager path to the jitted one.
"""

import functools

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from rnn_jax import cells, layers  # noqa: E402
from rnn_jax.interop import from_torch, params_from_torch  # noqa: E402

torch.set_num_threads(1)

# Pairwise-distinct sizes, so a swapped axis cannot go unnoticed.
B, T, D, H = 3, 5, 6, 4  # (and 2H = 8 for layer 1 of a bi-directional stack)
LENGTHS = [5, 2, 4]  # ragged, unsorted, with one full-length sequence
TOL = dict(atol=1e-5, rtol=1e-5)

KINDS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def make_module(kind, num_layers=1, bidirectional=False, batch_first=False, bias=True,
                seed=0):
  torch.manual_seed(seed)
  module = KINDS[kind](D, H, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, bias=bias)
  return module.float().eval()


def converted(kind, num_layers=1, bidirectional=False, batch_first=False, bias=True):
  """(module, apply, jax.jit(apply), params), one per configuration.

  Tests must not mutate the module's weights (gradients are fine).
  """
  return _converted(kind, num_layers, bidirectional, batch_first, bias)


@functools.lru_cache(maxsize=None)
def _converted(kind, num_layers, bidirectional, batch_first, bias):
  module = make_module(kind, num_layers, bidirectional, batch_first, bias)
  apply, params = from_torch(module)
  return module, apply, jax.jit(apply), params


def make_inputs(module, seed=1, dtype=np.float32):
  """xs in the module's layout, as numpy."""
  rng = np.random.default_rng(seed)
  shape = (B, T, D) if module.batch_first else (T, B, D)
  return rng.standard_normal(shape).astype(dtype)


def make_hx(module, kind, seed=2, dtype=np.float32):
  """Random h0 (and c0), `[L * dirs, B, H]`, as numpy."""
  rng = np.random.default_rng(seed)
  shape = (module.num_layers * (2 if module.bidirectional else 1), B, H)
  h0 = rng.standard_normal(shape).astype(dtype)
  if kind == "lstm":
    return h0, rng.standard_normal(shape).astype(dtype)
  return h0


def to_jax_hx(hx):
  if isinstance(hx, tuple):
    return tuple(jnp.asarray(a) for a in hx)
  return jnp.asarray(hx)


def to_torch_hx(hx):
  if hx is None:
    return None
  if isinstance(hx, tuple):
    return tuple(torch.from_numpy(a) for a in hx)
  return torch.from_numpy(hx)


def run_torch(module, x, lengths=None, hx=None):
  """The module on `x` (a torch tensor), packed when `lengths` is given."""
  bf = module.batch_first
  if lengths is None:
    out, h = module(x, hx)
  else:
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=bf,
                                  enforce_sorted=False)
    out, h = module(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
  return out, h


def torch_outputs(module, xs, lengths=None, hx=None):
  with torch.no_grad():
    out, h = run_torch(module, torch.from_numpy(xs), lengths, to_torch_hx(hx))
  if isinstance(h, tuple):
    return out.numpy(), tuple(a.numpy() for a in h)
  return out.numpy(), h.numpy()


def assert_same(kind, jax_out, torch_out, tol=TOL):
  ys, h = jax_out
  ys_ref, h_ref = torch_out
  np.testing.assert_allclose(np.asarray(ys), ys_ref, **tol, err_msg="ys")
  if kind == "lstm":
    h_n, c_n = h
    np.testing.assert_allclose(np.asarray(h_n), h_ref[0], **tol, err_msg="h_n")
    np.testing.assert_allclose(np.asarray(c_n), h_ref[1], **tol, err_msg="c_n")
  else:
    np.testing.assert_allclose(np.asarray(h), h_ref, **tol, err_msg="h_n")


def assert_trees_close(a, b, tol=TOL):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


# --------------------------------------------------------------------------
# 1. Forward equivalence.
#
# Every jit compile of a converted module costs ~0.3-0.6 s on CPU, so rather
# than the full 2 x 3 x 2 x 2 x 2 product the grid takes every kind x
# num_layers x bidirectional, each once with and once without biases, with
# batch_first flipped between the two (and the flip alternating with
# num_layers + bidirectional): every configuration sees both batch_first
# values and both bias values, and every (batch_first, bias) pair occurs.


def _grid():
  for kind in ("lstm", "gru"):
    for num_layers in (1, 2, 3):
      for bidirectional in (False, True):
        parity = (num_layers + bidirectional) % 2 == 0
        for bias in (True, False):
          batch_first = parity if bias else not parity
          yield pytest.param(
              kind, num_layers, bidirectional, batch_first, bias,
              id=f"{kind}-L{num_layers}-{'bi' if bidirectional else 'uni'}-"
                 f"{'bf' if batch_first else 'tf'}-{'bias' if bias else 'nobias'}")


GRID = list(_grid())


def test_grid_covers_every_option_pair():
  configs = [p.values for p in GRID]
  assert len(set(configs)) == len(configs) == 24
  assert {(c[3], c[4]) for c in configs} == {(a, b) for a in (True, False)
                                             for b in (True, False)}
  for kind in ("lstm", "gru"):
    for num_layers in (1, 2, 3):
      for bidirectional in (False, True):
        seen = [c for c in configs if c[:3] == (kind, num_layers, bidirectional)]
        assert {c[3] for c in seen} == {True, False}
        assert {c[4] for c in seen} == {True, False}


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,bias", GRID)
def test_matches_packed_torch(kind, num_layers, bidirectional, batch_first, bias):
  module, _, apply, params = converted(kind, num_layers, bidirectional, batch_first, bias)
  xs = make_inputs(module)
  out = apply(params, xs, seq_lengths=np.asarray(LENGTHS))

  dirs = 2 if bidirectional else 1
  ys, h = out
  h_n = h[0] if kind == "lstm" else h
  assert ys.shape == ((B, T, dirs * H) if batch_first else (T, B, dirs * H))
  assert ys.dtype == jnp.float32
  assert h_n.shape == (num_layers * dirs, B, H)
  if kind == "lstm":
    assert h[1].shape == h_n.shape
  assert_same(kind, out, torch_outputs(module, xs, LENGTHS))
  # Outputs past each length are exactly zero, in the module's layout.
  ys_bt = np.asarray(ys) if batch_first else np.swapaxes(np.asarray(ys), 0, 1)
  for b, n in enumerate(LENGTHS):
    assert np.all(ys_bt[b, n:] == 0)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias", [
    (1, False, False, True), (2, True, False, False), (3, True, True, False),
], ids=["L1-uni-tf-bias", "L2-bi-tf-nobias", "L3-bi-bf-nobias"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_no_lengths_matches_padded_torch(kind, num_layers, bidirectional, batch_first,
                                         bias):
  """seq_lengths=None is the module on the plain (unpacked) tensor."""
  module, _, apply, params = converted(kind, num_layers, bidirectional, batch_first, bias)
  xs = make_inputs(module)
  assert_same(kind, apply(params, xs), torch_outputs(module, xs))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_forms(kind):
  """jax / numpy / all-T lengths; all-T lengths equal the unpacked module."""
  module, _, apply, params = converted(kind, 2, True, False)  # in GRID: compiled
  xs = make_inputs(module)
  ref = torch_outputs(module, xs, LENGTHS)
  assert_same(kind, apply(params, jnp.asarray(xs), seq_lengths=jnp.asarray(LENGTHS)), ref)
  assert_same(kind, apply(params, xs, seq_lengths=np.asarray(LENGTHS, np.int32)), ref)
  full = apply(params, xs, seq_lengths=np.full((B,), T, np.int32))
  assert_same(kind, full, torch_outputs(module, xs))
  assert_same(kind, full, torch_outputs(module, xs, [T] * B))


# --------------------------------------------------------------------------
# 2. Initial state hx.


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths", [
    (1, False, True, LENGTHS),
    (3, True, False, LENGTHS),
    (2, True, True, None),
], ids=["L1-uni-bf", "L3-bi-tf", "L2-bi-bf-full"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state(kind, num_layers, bidirectional, batch_first, lengths):
  module, _, apply, params = converted(kind, num_layers, bidirectional, batch_first)
  xs = make_inputs(module)
  hx = make_hx(module, kind)
  sl = None if lengths is None else np.asarray(lengths)
  out = apply(params, xs, seq_lengths=sl, hx=to_jax_hx(hx))
  assert_same(kind, out, torch_outputs(module, xs, lengths, hx))
  # The state matters: torch without hx gives something else.
  ys_zero_state = torch_outputs(module, xs, lengths)[0]
  assert not np.allclose(np.asarray(out[0]), ys_zero_state, atol=1e-3)


# --------------------------------------------------------------------------
# 3. Eager vs jit, and gradients.


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_eager_matches_jit(kind):
  module, eager, jitted, params = converted(kind, 1, True, False)
  xs = make_inputs(module)
  hx = make_hx(module, kind)
  lengths = np.asarray(LENGTHS)
  out_eager = eager(params, xs, seq_lengths=lengths, hx=to_jax_hx(hx))
  out_jit = jitted(params, xs, seq_lengths=lengths, hx=to_jax_hx(hx))
  assert_trees_close(out_eager, out_jit)
  assert_same(kind, out_eager, torch_outputs(module, xs, LENGTHS, hx))


def _close(actual, desired, name):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), **TOL,
                             err_msg=name)


@pytest.mark.parametrize("kind,batch_first", [("lstm", True), ("gru", False)])
def test_grad_matches_torch_autograd(kind, batch_first):
  """d(sum(ys) + sum(h_n) [+ sum(c_n)]) / d(xs, weights, hx): bi, 2 layers, ragged."""
  module, apply, _, params = converted(kind, 2, True, batch_first)
  xs = make_inputs(module)
  hx = make_hx(module, kind)
  lengths = jnp.asarray(LENGTHS)

  def loss(params, xs, hx):
    ys, h = apply(params, xs, seq_lengths=lengths, hx=hx)
    if kind == "lstm":
      return ys.sum() + h[0].sum() + h[1].sum()
    return ys.sum() + h.sum()

  value, (g_params, g_xs, g_hx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
      params, jnp.asarray(xs), to_jax_hx(hx))

  module.zero_grad()
  x = torch.from_numpy(xs).requires_grad_(True)
  t_hx = to_torch_hx(hx)
  for t in (t_hx if kind == "lstm" else (t_hx,)):
    t.requires_grad_(True)
  out, h = run_torch(module, x, LENGTHS, t_hx)
  t_loss = out.sum() + (h[0].sum() + h[1].sum() if kind == "lstm" else h.sum())
  t_loss.backward()

  np.testing.assert_allclose(float(value), t_loss.item(), **TOL)
  _close(g_xs, x.grad.numpy(), "d/dxs")
  if kind == "lstm":
    _close(g_hx[0], t_hx[0].grad.numpy(), "d/dh0")
    _close(g_hx[1], t_hx[1].grad.numpy(), "d/dc0")
  else:
    _close(g_hx, t_hx.grad.numpy(), "d/dh0")
  # Padded inputs influence nothing.
  g_xs_bt = np.asarray(g_xs) if batch_first else np.swapaxes(np.asarray(g_xs), 0, 1)
  for b, n in enumerate(LENGTHS):
    assert np.all(g_xs_bt[b, n:] == 0)

  for l in range(2):
    for direction, suffix in (("fw", ""), ("bw", "_reverse")):
      g = g_params[f"layer_{l}"][direction]
      name = f"l{l}{suffix}"

      def tgrad(what):
        return getattr(module, f"{what}_{name}").grad.numpy()

      _close(g["w_ih"], tgrad("weight_ih").T, f"d/dw_ih {name}")
      _close(g["w_hh"], tgrad("weight_hh").T, f"d/dw_hh {name}")
      # b = b_ih + b_hh (LSTM), b = [b_ir + b_hr, b_iz + b_hz, b_in] (GRU):
      # either way dL/db == dL/db_ih.
      _close(g["b"], tgrad("bias_ih"), f"d/db {name}")
      if kind == "gru":
        _close(g["b_hn"], tgrad("bias_hh")[2 * H:], f"d/db_hn {name}")
      else:
        _close(g["b"], tgrad("bias_hh"), f"d/db (bias_hh) {name}")
  module.zero_grad()


# --------------------------------------------------------------------------
# 4. dtype.


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float64_module_gives_float64(kind):
  module = make_module(kind, 1, True, True).double()
  xs = make_inputs(module, dtype=np.float64)
  hx = make_hx(module, kind, dtype=np.float64)
  ref = torch_outputs(module, xs, LENGTHS, hx)
  with jax.enable_x64(True):
    apply, params = from_torch(module)
    for leaf in jax.tree_util.tree_leaves(params):
      assert leaf.dtype == jnp.float64
    out = jax.jit(apply)(params, xs, seq_lengths=np.asarray(LENGTHS), hx=to_jax_hx(hx))
    for leaf in jax.tree_util.tree_leaves(out):
      assert leaf.dtype == jnp.float64
    assert_same(kind, out, ref, tol=dict(atol=1e-12, rtol=1e-12))


# --------------------------------------------------------------------------
# 5. Bad input (all raised before anything is compiled).


@pytest.mark.parametrize("make", [lambda: torch.nn.RNN(D, H), lambda: torch.nn.Linear(D, H)],
                         ids=["RNN", "Linear"])
def test_rejects_other_modules(make):
  with pytest.raises(ValueError, match="module"):
    from_torch(make())
  with pytest.raises(ValueError, match="module"):
    params_from_torch(make())


def test_rejects_lstm_with_projection():
  module = torch.nn.LSTM(D, H, proj_size=2)
  with pytest.raises(ValueError, match="module.*proj_size"):
    from_torch(module)
  with pytest.raises(ValueError, match="proj_size"):
    params_from_torch(module)


@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tf"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rejects_bad_xs(kind, batch_first):
  module, apply, _, params = converted(kind, 2, True, batch_first)
  shape = (B, T, D + 1) if batch_first else (T, B, D + 1)
  with pytest.raises(ValueError, match="xs"):
    apply(params, np.zeros(shape, np.float32))
  with pytest.raises(ValueError, match="xs"):
    apply(params, np.zeros((T, D), np.float32))  # not 3-D


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rejects_bad_seq_lengths(kind):
  module, apply, _, params = converted(kind, 2, True, True)
  xs = make_inputs(module)
  for bad in ([T + 1, 2, 4], [-1, 2, 4], [5, 2]):  # too long, negative, wrong batch
    with pytest.raises(ValueError, match="seq_lengths"):
      apply(params, xs, seq_lengths=np.asarray(bad))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rejects_hx_with_wrong_number_of_layers(kind, bidirectional):
  module, apply, _, params = converted(kind, 2, bidirectional, False)
  xs = make_inputs(module)
  dirs = 2 if bidirectional else 1
  for n in (2 * dirs + 1, dirs):  # one too many; one layer's worth only
    wrong = np.zeros((n, B, H), np.float32)
    hx = (wrong, wrong) if kind == "lstm" else wrong
    with pytest.raises(ValueError, match="hx"):
      apply(params, xs, hx=hx)


# --------------------------------------------------------------------------
# 6. params_from_torch layout.


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_params_layout(kind, bidirectional, bias):
  L = 3
  module = make_module(kind, L, bidirectional, False, bias)
  params = params_from_torch(module)
  G = 4 if kind == "lstm" else 3
  assert set(params) == {f"layer_{l}" for l in range(L)}
  for l in range(L):
    layer = params[f"layer_{l}"]
    if bidirectional:
      assert set(layer) == {"fw", "bw"}
      per_dir = {"fw": layer["fw"], "bw": layer["bw"]}
    else:
      per_dir = {"fw": layer}
    d_in = D if l == 0 else (2 * H if bidirectional else H)
    for direction, p in per_dir.items():
      expected_keys = {"w_ih", "w_hh"}
      if bias:
        expected_keys |= {"b", "b_hn"} if kind == "gru" else {"b"}
      assert set(p) == expected_keys
      assert p["w_ih"].shape == (d_in, G * H)
      assert p["w_hh"].shape == (H, G * H)
      if bias:
        assert p["b"].shape == (G * H,)
        if kind == "gru":
          assert p["b_hn"].shape == (H,)
      for leaf in p.values():
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32

      # The values are the module's weights, mapped as documented.
      name = f"l{l}" + ("_reverse" if direction == "bw" else "")
      w_ih = getattr(module, f"weight_ih_{name}").detach().numpy()
      w_hh = getattr(module, f"weight_hh_{name}").detach().numpy()
      np.testing.assert_array_equal(np.asarray(p["w_ih"]), w_ih.T)
      np.testing.assert_array_equal(np.asarray(p["w_hh"]), w_hh.T)
      if bias:
        b_ih = getattr(module, f"bias_ih_{name}").detach().numpy()
        b_hh = getattr(module, f"bias_hh_{name}").detach().numpy()
        if kind == "lstm":
          np.testing.assert_allclose(np.asarray(p["b"]), b_ih + b_hh, rtol=1e-7)
        else:
          np.testing.assert_allclose(
              np.asarray(p["b"]),
              np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]]), rtol=1e-7)
          np.testing.assert_array_equal(np.asarray(p["b_hn"]), b_hh[2 * H:])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_params_match_native_stack(kind):
  """Same tree and shapes as the equivalent rnn_jax stack's own init."""
  cell = cells.lstm(H) if kind == "lstm" else cells.gru(H, reset_after=True)
  stack = layers.stack([layers.bidirectional(cell)] * 2)
  native = jax.eval_shape(lambda key: stack.init(key, D), jax.random.key(0))
  converted_params = params_from_torch(make_module(kind, 2, True, True))
  assert (jax.tree_util.tree_structure(native)
          == jax.tree_util.tree_structure(converted_params))
  for a, b in zip(jax.tree_util.tree_leaves(native),
                  jax.tree_util.tree_leaves(converted_params)):
    assert a.shape == b.shape and a.dtype == b.dtype
