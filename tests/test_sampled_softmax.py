"""rnn_jax.sampled_softmax against the full softmax and its formula written out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import sampled_softmax


def _setup(N=6, D=5, V=11, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(N, D)), jnp.float32),
          jnp.asarray(rng.normal(size=(D, V)), jnp.float32),
          jnp.asarray(rng.normal(size=(V,)), jnp.float32),
          jnp.asarray(rng.integers(0, V, N), jnp.int32))


def test_every_word_once_with_a_uniform_proposal_is_the_full_softmax():
  h, w, b, y = _setup()
  V = b.shape[0]
  # S = V samples, each word once, Q uniform: log(S Q) = 0, and the target among the
  # samples is an accidental hit, left out, so the softmax runs over every word once.
  nll = sampled_softmax.sampled_nll(h, w, b, y, jnp.arange(V), jnp.zeros(V))
  full = -jax.nn.log_softmax(h @ w + b)[jnp.arange(len(y)), y]
  np.testing.assert_allclose(nll, full, rtol=1e-5, atol=1e-6)
  # Gradients too.
  g = jax.grad(lambda w: sampled_softmax.sampled_nll(h, w, b, y, jnp.arange(V),
                                                    jnp.zeros(V)).sum())(w)
  g_full = jax.grad(lambda w: -jax.nn.log_softmax(h @ w + b)[jnp.arange(len(y)), y].sum())(w)
  np.testing.assert_allclose(g, g_full, rtol=1e-4, atol=1e-5)


def test_the_formula_with_repeats_hits_and_corrections():
  h, w, b, y = _setup(N=4, V=9, seed=1)
  samples = jnp.asarray([2, 2, 5, int(y[0]), 7], jnp.int32)  # a repeat and a hit of row 0
  log_q = jnp.log(jnp.asarray(np.random.default_rng(2).dirichlet(np.ones(9)), jnp.float32))
  log_counts = jnp.log(5.0) + log_q
  nll = sampled_softmax.sampled_nll(h, w, b, y, samples, log_counts)
  hn, wn, bn, lc = (np.asarray(a, np.float64) for a in (h, w, b, log_counts))
  for i, t in enumerate(np.asarray(y)):
    o = lambda v: hn[i] @ wn[:, v] + bn[v] - lc[v]
    terms = [np.exp(o(t))] + [np.exp(o(s)) for s in np.asarray(samples) if s != t]
    np.testing.assert_allclose(nll[i], -o(t) + np.log(sum(terms)), rtol=1e-5)


def test_batched_rows_and_only_the_used_columns_get_gradients():
  h, w, b, y = _setup(N=6, V=12)
  h3, y3 = h.reshape(2, 3, -1), y.reshape(2, 3)
  samples = jnp.asarray([1, 4], jnp.int32)
  flat = sampled_softmax.sampled_nll(h, w, b, y, samples, 0.0)
  np.testing.assert_allclose(sampled_softmax.sampled_nll(h3, w, b, y3, samples, 0.0),
                             flat.reshape(2, 3), rtol=1e-6)
  g = jax.grad(lambda b: sampled_softmax.sampled_nll(h, w, b, y, samples, 0.0).sum())(b)
  used = set(np.asarray(y).tolist()) | {1, 4}
  assert all((g[v] != 0) == (v in used) for v in range(12)), (g, used)


def test_draw_and_the_proposals():
  log_q = sampled_softmax.log_uniform_proposal(1000)
  np.testing.assert_allclose(jnp.exp(log_q).sum(), 1.0, rtol=1e-5)
  r = 9
  np.testing.assert_allclose(jnp.exp(log_q[r]), np.log((r + 2) / (r + 1)) / np.log(1001),
                             rtol=1e-5)
  samples, log_counts = sampled_softmax.draw(jax.random.key(0), log_q, 20000)
  freq = np.bincount(np.asarray(samples), minlength=1000) / 20000
  np.testing.assert_allclose(freq[:3], np.exp(log_q[:3]), atol=0.01)
  np.testing.assert_allclose(log_counts, np.log(20000) + log_q, rtol=1e-6)
  uni = sampled_softmax.unigram_proposal(jnp.asarray([3.0, 1.0, 0.0, 4.0]))
  np.testing.assert_allclose(jnp.exp(uni), [3 / 9, 1 / 9, 1 / 9, 4 / 9], rtol=1e-5)
  with pytest.raises(ValueError, match="num_samples"):
    sampled_softmax.draw(jax.random.key(0), log_q, 0)


def test_training_with_samples_learns_what_the_full_softmax_learns():
  """A linear classifier over 200 classes trained with 20 samples per step picks the
  right class of nearly every training point, as the full softmax does."""
  rng = np.random.default_rng(0)
  V, D = 200, 16
  centres = rng.normal(size=(V, D)).astype(np.float32)
  labels = rng.integers(0, V, 4000)
  x = jnp.asarray(centres[labels] + 0.3 * rng.normal(size=(4000, D)), jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  log_q = sampled_softmax.log_uniform_proposal(V)

  @jax.jit
  def step(params, key):
    samples, log_counts = sampled_softmax.draw(key, log_q, 20)
    loss = lambda p: sampled_softmax.sampled_nll(x, p[0], p[1], y, samples, log_counts).mean()
    g = jax.grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 1.0 * g, params, g)

  params = (jnp.zeros((D, V)), jnp.zeros(V))
  for i in range(300):
    params = step(params, jax.random.key(i))
  accuracy = float(jnp.mean(jnp.argmax(x @ params[0] + params[1], -1) == y))
  assert accuracy > 0.95, accuracy
