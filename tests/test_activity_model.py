"""The activity models against their equations written out with numpy."""

import jax
import numpy as np
import pytest

from experiments.activity import model as model_lib
from experiments.activity.config import ActivityConfig

B, T, D, H, K1 = 3, 7, 5, 4, 6


def _model(kind, **kw):
  config = ActivityConfig(model=kind, hidden_size=H, mlp_size=9, dropout=0.0, **kw)
  model = model_lib.ActivityModel(config, D, K1)
  return model, model.init(jax.random.key(0))


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, T, D)).astype(np.float32), np.array([7, 3, 5], np.int32)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _lstm(p, xs, length, reverse=False):
  """PyTorch's LSTM equations, gate order i, f, g, o, over the valid steps."""
  h, c = np.zeros(H), np.zeros(H)
  out = np.zeros((xs.shape[0], H))
  steps = range(length - 1, -1, -1) if reverse else range(length)
  for t in steps:
    z = xs[t] @ np.asarray(p["w_ih"]) + h @ np.asarray(p["w_hh"]) + np.asarray(p["b"])
    i, f, g, o = np.split(z, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    out[t] = h
  return out


def _dense(p, x):
  return x @ np.asarray(p["w"]) + np.asarray(p["b"])


def test_lstm_detector_is_an_lstm_and_a_softmax_layer_per_step():
  model, params = _model("lstm")
  x, lengths = _inputs()
  logits = np.asarray(model.logits(params, x, lengths))
  assert logits.shape == (B, T, K1)
  for b in range(B):
    h = _lstm(params["lstm"]["layer_0"], x[b], lengths[b])
    n = lengths[b]
    np.testing.assert_allclose(logits[b, :n], _dense(params["output"], h[:n]), rtol=1e-5,
                               atol=1e-5)


def test_detectors_are_causal_and_the_cnn_reads_one_frame():
  x, lengths = _inputs()
  for kind in ("lstm", "cnn"):
    model, params = _model(kind)
    a = np.asarray(model.logits(params, x, lengths))
    changed = x.copy()
    changed[:, 4:] += 1.0  # the future of step 3
    b = np.asarray(model.logits(params, changed, lengths))
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[0, 4:], b[0, 4:])
  model, params = _model("cnn")
  logits = np.asarray(model.logits(params, x, lengths))
  expected = _dense(params["output"], np.maximum(_dense(params["hidden"], x), 0))
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_attention_pools_a_bidirectional_lstm_over_the_valid_steps():
  model, params = _model("attention")
  x, lengths = _inputs()
  logits, alpha = model.logits(params, x, lengths)
  logits, alpha = np.asarray(logits), np.asarray(alpha)
  assert logits.shape == (B, K1) and alpha.shape == (B, T)
  a = params["attention"]
  for b in range(B):
    n = lengths[b]
    p = params["lstm"]["layer_0"]
    h = np.concatenate([_lstm(p["fw"], x[b], n), _lstm(p["bw"], x[b], n, reverse=True)], -1)
    e = np.tanh(h[:n] @ np.asarray(a["w"]) + np.asarray(a["b"])) @ np.asarray(a["v"])
    w = np.exp(e - e.max())
    w /= w.sum()
    np.testing.assert_allclose(alpha[b, :n], w, rtol=1e-5, atol=1e-6)
    assert np.all(alpha[b, n:] == 0)
    np.testing.assert_allclose(logits[b], _dense(params["output"], w @ h[:n]), rtol=1e-5,
                               atol=1e-5)


def test_dropout_draws_from_its_key_and_bad_models_are_refused():
  config = ActivityConfig(model="lstm", hidden_size=H, dropout=0.5)
  model = model_lib.ActivityModel(config, D, K1)
  params = model.init(jax.random.key(0))
  x, lengths = _inputs()
  a = model.logits(params, x, lengths, training=True, key=jax.random.key(1))
  b = model.logits(params, x, lengths, training=True, key=jax.random.key(2))
  c = model.logits(params, x, lengths)
  assert not np.allclose(a, b) and np.all(np.isfinite(c))
  with pytest.raises(ValueError, match="model"):
    model_lib.ActivityModel(ActivityConfig(model="gru"), D, K1)
