"""Skip-thought's encoders and conditional GRU decoders against their equations, written
out here in numpy (Kiros et al. 2015, §2)."""

import types

import jax
import numpy as np
import pytest

from experiments.skip_thought import model as model_lib

E, D, V = 5, 6, 13


def _config(**kw):
  return types.SimpleNamespace(**{"encoders": ["uni", "bi"], "embed_size": E,
                                  "hidden_size": D, "softmax_samples": 0, **kw})


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def gru_step(p, h, x):
  """Cho et al.'s GRU, the reset gate before the recurrent matmul; gate order r, z, n."""
  H = h.shape[-1]
  w_ih, w_hh, b = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "b"))
  gx = x @ w_ih + b
  r = sigmoid(gx[:H] + h @ w_hh[:, :H])
  z = sigmoid(gx[H:2 * H] + h @ w_hh[:, H:2 * H])
  n = np.tanh(gx[2 * H:] + (r * h) @ w_hh[:, 2 * H:])
  return (1 - z) * n + z * h


def conditional_gru_step(p, h, x, context):
  """The paper's decoder step: r = σ(W_r x + U_r h + C_r h_i), z likewise, h̄ = tanh(W x +
  U (r ⊙ h) + C h_i), with W = w_ih and C = w_ctx (gates r, z, n side by side)."""
  H = h.shape[-1]
  W, w_hh, b, C = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "b", "w_ctx"))
  r = sigmoid(x @ W[:, :H] + h @ w_hh[:, :H] + context @ C[:, :H] + b[:H])
  z = sigmoid(x @ W[:, H:2 * H] + h @ w_hh[:, H:2 * H] + context @ C[:, H:2 * H]
              + b[H:2 * H])
  n = np.tanh(x @ W[:, 2 * H:] + (r * h) @ w_hh[:, 2 * H:] + context @ C[:, 2 * H:] + b[2 * H:])
  return (1 - z) * n + z * h


def encode_loop(p, name, ids, length):
  emb = np.asarray(p["embed"], np.float64)
  xs = [emb[w] for w in ids[:length]]
  if name == "uni":
    h = np.zeros(D)
    for x in xs:
      h = gru_step(p["encoder"], h, x)
    return h
  fw, bw = np.zeros(D // 2), np.zeros(D // 2)
  for x in xs:
    fw = gru_step(p["encoder"]["fw"], fw, x)
  for x in reversed(xs):
    bw = gru_step(p["encoder"]["bw"], bw, x)
  return np.concatenate([fw, bw])


def decoder_nll_loop(p, which, context, inputs, outputs, length):
  emb, w_out, b_out = (np.asarray(p[k], np.float64) for k in ("embed", "w_out", "b_out"))
  h, total = np.zeros(D), 0.0
  for t in range(length):
    h = conditional_gru_step(p[which], h, emb[inputs[t]], context)
    logits = h @ w_out + b_out
    total += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[outputs[t]]
  return total


def _batch(rng, B=3, S=7, M=6):
  batch = {"source": rng.integers(4, V, (B, S)), "source_lengths": np.asarray([7, 3, 1])}
  for w in ("prev", "next"):
    batch[f"{w}_in"] = rng.integers(3, V, (B, M))
    batch[f"{w}_out"] = rng.integers(2, V, (B, M))
    batch[f"{w}_lengths"] = rng.integers(1, M + 1, B)
  return {k: np.asarray(v, np.int32) for k, v in batch.items()}


def test_encoders_and_decoders_follow_the_equations():
  model = model_lib.build(_config(), V)
  params = model.init(jax.random.key(0))
  batch = _batch(np.random.default_rng(0))
  codes = model.encode(params, batch["source"], batch["source_lengths"])
  _, metrics = model.loss(params, batch)
  for name in ("uni", "bi"):
    p = jax.tree.map(np.asarray, params[name])
    for b in range(3):
      h = encode_loop(p, name, batch["source"][b], batch["source_lengths"][b])
      np.testing.assert_allclose(codes[name][b], h, rtol=1e-4, atol=1e-5)
    for which in ("prev", "next"):
      total = sum(decoder_nll_loop(p, which, encode_loop(p, name, batch["source"][b],
                                                         batch["source_lengths"][b]),
                                   batch[f"{which}_in"][b], batch[f"{which}_out"][b],
                                   batch[f"{which}_lengths"][b]) for b in range(3))
      np.testing.assert_allclose(metrics[f"{name}_{which}_nll"],
                                 total / batch[f"{which}_lengths"].sum(), rtol=1e-4)


def test_padding_after_each_length_changes_nothing():
  model = model_lib.build(_config(encoders=["bi"]), V)
  params = model.init(jax.random.key(1))
  batch = _batch(np.random.default_rng(1))
  loss, _ = model.loss(params, batch)
  noisy = dict(batch)
  rng = np.random.default_rng(2)
  for k, lengths in (("source", "source_lengths"), ("prev_in", "prev_lengths"),
                     ("prev_out", "prev_lengths"), ("next_in", "next_lengths"),
                     ("next_out", "next_lengths")):
    pad = np.arange(batch[k].shape[1])[None, :] >= batch[lengths][:, None]
    noisy[k] = np.where(pad, rng.integers(0, V, batch[k].shape), batch[k]).astype(np.int32)
  np.testing.assert_allclose(model.loss(params, noisy)[0], loss, rtol=1e-6)


def test_sampled_training_loss_and_bad_configs():
  model = model_lib.build(_config(encoders=["uni"], softmax_samples=4), V)
  params = model.init(jax.random.key(0))
  batch = _batch(np.random.default_rng(0))
  full, _ = model.loss(params, batch)
  sampled, _ = model.loss(params, batch, jax.random.key(3))
  assert np.isfinite(sampled) and sampled != full
  assert model.loss(params, batch, jax.random.key(3))[0] == sampled  # a function of the key
  assert model.loss(params, batch, jax.random.key(4))[0] != sampled
  grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(3))[0])(params)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match="encoders"):
    model_lib.build(_config(encoders=["uni", "uni"]), V)
  with pytest.raises(ValueError, match="even"):
    model_lib.build(_config(encoders=["bi"], hidden_size=7), V)
