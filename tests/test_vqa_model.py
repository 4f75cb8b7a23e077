"""The VQA models against their equations written out in numpy (experiments/vqa/model.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.vqa import model as model_lib
from experiments.vqa.config import VQAConfig
from rnn_jax import seq2seq

jax.config.update("jax_enable_x64", False)

B, T, R, D, Vq, K, Va = 3, 5, 4, 6, 11, 7, 9


def _config(**kw):
  base = dict(model="lstm_q_norm_i", embed_size=4, hidden_size=5, common_size=6, mlp_size=5,
              attention_size=3, question_layers=2, dropout=0.0)
  return VQAConfig(**{**base, **kw})


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _lstm_step(p, h, c, x):
  """PyTorch's LSTM equations, gate order i, f, g, o."""
  z = x @ np.asarray(p["w_ih"]) + h @ np.asarray(p["w_hh"]) + np.asarray(p["b"])
  i, f, g, o = np.split(z, 4, axis=-1)
  c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
  return _sigmoid(o) * np.tanh(c), c


def _lstm_stack(p, xs, lengths, H):
  """Every layer's (h, c) at each row's last valid step, by a Python loop."""
  finals = []
  for l in range(len(p)):
    lp = p[f"layer_{l}"]
    ys = np.zeros(xs.shape[:2] + (H,))
    hs, cs = [], []
    for b in range(xs.shape[0]):
      h, c = np.zeros(H), np.zeros(H)
      for t in range(lengths[b]):
        h, c = _lstm_step(lp, h, c, xs[b, t])
        ys[b, t] = h
      hs.append(h)
      cs.append(c)
    finals.append((np.stack(hs), np.stack(cs)))
    xs = ys
  return finals


def _dense(p, x):
  return x @ np.asarray(p["w"]) + (np.asarray(p["b"]) if "b" in p else 0.0)


def _norm(x):
  """Norm I: unit length, scaled by the square root of the width."""
  return x / np.sqrt(np.sum(x * x, -1, keepdims=True) + 1e-8) * np.sqrt(x.shape[-1])


def _standardize(x, eps=1e-5):
  """A layer norm without parameters: zero mean, unit variance over the last axis."""
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(B, R, D)).astype(np.float32)
  questions = rng.integers(1, Vq, size=(B, T)).astype(np.int32)
  lengths = np.array([5, 2, 3], np.int32)
  return features, questions, lengths


def _model(kind, **kw):
  config = _config(model=kind, **kw)
  model = model_lib.VQAModel(config, Vq, K, Va, feature_size=D)
  return config, model, model.init(jax.random.key(1))


def _question_words(p, questions):
  return np.tanh(np.asarray(p["embed"])[questions])


def test_lstm_q_norm_i_is_antol_et_al():
  config, model, params = _model("lstm_q_norm_i")
  features, questions, lengths = _inputs()
  logits, attention = model.logits(params, features, questions, lengths)
  p = params["model"]
  finals = _lstm_stack(p["lstm"], _question_words(p, questions), lengths, 5)
  q = np.tanh(_dense(p["question"], _standardize(
      np.concatenate([x for h, c in finals for x in (c, h)], -1))))
  i = np.tanh(_dense(p["image"], _norm(features.mean(1))))
  expected = _dense(p["output"], np.tanh(_dense(p["mlp"], q * i)))
  assert attention is None
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_baselines_read_only_their_input():
  features, questions, lengths = _inputs()
  other_features = features[::-1].copy()
  other_questions = questions[::-1].copy()
  _, blind, params = _model("question_only")
  a, _ = blind.logits(params, features, questions, lengths)
  b, _ = blind.logits(params, other_features, questions, lengths)
  np.testing.assert_array_equal(a, b)
  p = params["model"]
  finals = _lstm_stack(p["lstm"], _question_words(p, questions), lengths, 5)
  q = np.tanh(_dense(p["question"], _standardize(
      np.concatenate([x for h, c in finals for x in (c, h)], -1))))
  np.testing.assert_allclose(a, _dense(p["output"], np.tanh(_dense(p["mlp"], q))), rtol=1e-5,
                             atol=1e-5)
  _, image_only, params = _model("image_only")
  a, _ = image_only.logits(params, features, questions, lengths)
  b, _ = image_only.logits(params, features, other_questions, lengths[::-1])
  np.testing.assert_array_equal(a, b)
  p = params["model"]
  i = np.tanh(_dense(p["image"], _norm(features.mean(1))))
  np.testing.assert_allclose(a, _dense(p["output"], np.tanh(_dense(p["mlp"], i))), rtol=1e-5,
                             atol=1e-5)


def test_max_pooled_image_vector():
  features, questions, lengths = _inputs()
  _, model, params = _model("image_only", image_pool="max")
  p = params["model"]
  np.testing.assert_array_equal(model.image_vector(p, features), features.max(1))
  a, _ = model.logits(params, features, questions, lengths)
  i = np.tanh(_dense(p["image"], _norm(features.max(1))))
  np.testing.assert_allclose(a, _dense(p["output"], np.tanh(_dense(p["mlp"], i))), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ValueError, match="image_pool"):
    _model("image_only", image_pool="sum")


@pytest.mark.parametrize("kind", ["image_only", "vis_lstm"])
def test_max_and_mean_pooled_image_vector(kind):
  features, questions, lengths = _inputs()
  _, model, params = _model(kind, image_pool="max_mean")
  p = params["model"]
  both = np.concatenate([features.max(1), features.mean(1)], -1)  # [B, 2D]
  np.testing.assert_allclose(model.image_vector(p, features), both, rtol=1e-6)
  assert p["image"]["w"].shape[0] == 2 * D
  if kind == "image_only":
    a, _ = model.logits(params, features, questions, lengths)
    i = np.tanh(_dense(p["image"], _norm(both)))
    np.testing.assert_allclose(a, _dense(p["output"], np.tanh(_dense(p["mlp"], i))),
                               rtol=1e-5, atol=1e-5)


def test_vis_lstm_reads_the_image_as_its_first_word():
  _, model, params = _model("vis_lstm")
  features, questions, lengths = _inputs()
  logits, _ = model.logits(params, features, questions, lengths)
  p = params["model"]
  x0 = _dense(p["image"], _norm(features.mean(1)))[:, None, :]
  xs = np.concatenate([x0, _question_words(p, questions)], 1)
  finals = _lstm_stack(p["lstm"], xs, lengths + 1, 5)
  np.testing.assert_allclose(logits, _dense(p["output"], finals[-1][0]), rtol=1e-5, atol=1e-5)


def test_stacked_attention_is_yang_et_al():
  _, model, params = _model("san", attention_layers=2)
  features, questions, lengths = _inputs()
  logits, attention = model.logits(params, features, questions, lengths)
  p = params["model"]
  finals = _lstm_stack(p["lstm"], _question_words(p, questions), lengths, 5)
  u = _dense(p["question"], finals[-1][0])  # [B, C]
  v = np.tanh(_dense(p["regions"], features))  # [B, R, C]
  maps = []
  for lp in p["attention"]:
    h_a = np.tanh((v @ np.asarray(lp["w_image"]["w"]))
                  + (_dense(lp["w_question"], u))[:, None, :])
    p_i = _softmax(_dense(lp["w_p"], h_a)[..., 0])  # [B, R]
    u = np.einsum("br,brc->bc", p_i, v) + u
    maps.append(p_i)
  np.testing.assert_allclose(attention, np.stack(maps, 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, _dense(p["output"], u), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(attention).sum(-1), 1.0, rtol=1e-5)


def test_answer_generation_reads_the_image_at_every_step():
  _, model, params = _model("answer_generation")
  features, questions, lengths = _inputs()
  targets = np.array([[1, 2, 0], [3, 0, 0], [4, 5, 0]], np.int32)  # 0 stands for </s>
  memory = model.memory(params, features, questions, lengths)
  logits, _ = seq2seq.teacher_forcing(model.decoder(), params, memory,
                                      np.full((B,), 8, np.int32), targets)
  p = params["model"]
  image = _dense(p["image"], _norm(features.mean(1)))  # [B, E]
  words = _question_words(p, questions)
  xs = np.concatenate([words, np.broadcast_to(image[:, None], words.shape)], -1)
  finals = _lstm_stack(p["lstm"], xs, lengths, 5)
  hs = [h for h, _ in finals]
  cs = [c for _, c in finals]
  prev = np.full((B,), 8)
  for t in range(targets.shape[1]):
    x = np.concatenate([np.asarray(p["answer_embed"])[prev], image], -1)
    for l in range(2):
      hs[l], cs[l] = _lstm_step(p["lstm"][f"layer_{l}"], hs[l], cs[l], x)
      x = hs[l]
    np.testing.assert_allclose(logits[:, t], _dense(p["output"], x), rtol=1e-4, atol=1e-5)
    prev = targets[:, t]


@pytest.mark.parametrize("kind", ["lstm_q_norm_i", "san", "image_only", "answer_generation"])
def test_distinct_images_with_slots_equal_images_per_question(kind):
  """`image_slot`: the CNN on M distinct images, gathered per question, is the CNN on each
  question's own image, in values and gradients."""
  config = _config(model=kind, image_size=16, cnn_features=["4", "8"], image_pool="max")
  model = model_lib.VQAModel(config, Vq, K, Va)
  params = model.init(jax.random.key(0))
  distinct = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
  slot = np.array([1, 0, 1], np.int32)
  _, questions, lengths = _inputs()

  def out(params, images, image_slot):
    if kind == "answer_generation":
      memory = model.memory(params, images, questions, lengths, image_slot=image_slot)
      return jnp.sum(memory.image ** 2) + sum(jnp.sum(f.h) for f in memory.question)
    return jnp.sum(jnp.tanh(model.logits(params, images, questions, lengths,
                                         image_slot=image_slot)[0]))

  a, ga = jax.value_and_grad(out)(params, distinct, slot)
  b, gb = jax.value_and_grad(out)(params, distinct[slot], None)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  assert any(np.any(g != 0) for g in jax.tree.leaves(ga["encoder"]))


def test_the_cnn_path_and_dropout():
  config = _config(model="lstm_q_norm_i", image_size=32, cnn_features=["4", "8"], dropout=0.5,
                   image_fc=16)
  model = model_lib.VQAModel(config, Vq, K)
  params = model.init(jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 255, (B, 32, 32, 3), dtype=np.uint8)
  _, questions, lengths = _inputs()
  a, _ = model.logits(params, images, questions, lengths)
  b, _ = model.logits(params, images, questions, lengths, training=True, key=jax.random.key(2))
  c, _ = model.logits(params, images, questions, lengths, training=True, key=jax.random.key(3))
  assert a.shape == (B, K) and np.all(np.isfinite(a))
  p = params["model"]  # the image vector: a fully connected ReLU layer over the whole grid
  grid = model.encoder.apply({"params": params["encoder"]}, images)  # [B, h, w, D]
  fc = np.maximum(_dense(p["image_fc"], np.asarray(grid).reshape(B, -1)), 0)
  np.testing.assert_allclose(model.image_vector(p, model.regions(params, images)), fc,
                             rtol=1e-5, atol=1e-5)
  assert p["image_fc"]["w"].shape == (8 * 8 * 8, config.image_fc)
  assert not np.allclose(b, c)  # dropout draws from the key
  frozen = model_lib.VQAModel(dataclasses.replace(config, freeze_encoder=True), Vq, K)
  grad = jax.grad(lambda p: jnp.sum(frozen.logits(p, images, questions, lengths)[0]))(params)
  assert all(np.all(g == 0) for g in jax.tree.leaves(grad["encoder"]))
  with pytest.raises(ValueError, match="prior"):
    model_lib.VQAModel(_config(model="prior"), Vq, K)
