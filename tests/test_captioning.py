"""The captioning models against their equations written out here, and their data path.

Show, Attend and Tell's step (Bahdanau's f_att, the β gate, the LSTM, the deep output)
and the doubly stochastic regulariser are spelled out in float64 numpy from Xu et al.
(2015); Show and Tell's image-first input from Vinyals et al. (2015). Sizes are pairwise
distinct (B=2, R=6, D=5, A=7, E=3, H=4, V=11) so a swapped axis fails loudly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.captioning import data as data_lib
from experiments.captioning import model as model_lib
from experiments.captioning import train as train_lib
from experiments.captioning.config import CaptioningConfig
from rnn_jax.seq2seq import attention as attention_lib
from rnn_jax.seq2seq import forcing

B, R, D, A, E, H, V = 2, 6, 5, 7, 3, 4, 11


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def config(**kw):
  base = dict(embed_size=E, hidden_size=H, attention_size=A, cnn_features=["4", str(D)],
              image_size=16, max_caption_len=6, batch_size=4)
  return CaptioningConfig(**{**base, **kw})


def randomized(params, key):
  """Every leaf replaced by random values, so no term hides behind a zero init."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype) * 0.5
                                   for k, x in zip(keys, leaves)])


def lstm_reference(p, h, c, x):
  z = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
  i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
  c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
  return sigmoid(o) * np.tanh(c), c


def np64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


@pytest.mark.parametrize("selector", [True, False])
def test_show_attend_tell_step_matches_equations(selector):
  model = model_lib.Captioner(config(selector=selector), V, feature_size=D)
  params = randomized(model.init(jax.random.key(0)), jax.random.key(1))
  assert ("beta" in params["decoder"]) == selector
  a = np.asarray(jax.random.normal(jax.random.key(2), (B, R, D)))
  prev = np.array([3, 7])
  memory = model.memory(params, jnp.asarray(a))
  state = model.init_state(params, memory)
  state, logits, alpha = model.step(params, memory, state, jnp.asarray(prev))

  p = np64(params["decoder"])
  a = a.astype(np.float64)
  mean = a.mean(1)
  h0 = np.tanh(mean @ p["init_h"]["w"] + p["init_h"]["b"])
  c0 = np.tanh(mean @ p["init_c"]["w"] + p["init_c"]["b"])
  att = p["attention"]
  e = np.tanh(a @ att["w_key"] + (h0 @ att["w_query"])[:, None, :]) @ att["v"]  # [B, R]
  alpha_ref = np.exp(e - e.max(1, keepdims=True))
  alpha_ref /= alpha_ref.sum(1, keepdims=True)
  z = np.einsum("br,brd->bd", alpha_ref, a)
  if selector:
    z = sigmoid(h0 @ p["beta"]["w"] + p["beta"]["b"]) * z  # β_t [B, 1]
  emb = p["embed"][prev]
  h1, c1 = lstm_reference(p["lstm"], h0, c0, np.concatenate([emb, z], -1))
  deep = np.tanh(emb + h1 @ p["deep"]["w"] + p["deep"]["b"] + z @ p["deep_z"]["w"])
  logits_ref = deep @ p["output"]["w"] + p["output"]["b"]

  np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.h, h1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.c, c1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, logits_ref, rtol=1e-5, atol=1e-5)


def _sat_step_reference(p, a, h0, c0, prev, z):
  """Show, Attend and Tell's step after the context: LSTM on [E y; z], the deep output."""
  emb = p["embed"][prev]
  h1, c1 = lstm_reference(p["lstm"], h0, c0, np.concatenate([emb, z], -1))
  deep = np.tanh(emb + h1 @ p["deep"]["w"] + p["deep"]["b"] + z @ p["deep_z"]["w"])
  return h1, c1, deep @ p["output"]["w"] + p["output"]["b"]


def test_hard_attention_reads_the_annotation_at_the_sampled_location():
  model = model_lib.Captioner(config(selector=False, attention_type="hard"), V, feature_size=D)
  params = randomized(model.init(jax.random.key(0)), jax.random.key(1))
  a = np.asarray(jax.random.normal(jax.random.key(2), (B, R, D)))
  prev = np.array([3, 7])
  memory = model.memory(params, jnp.asarray(a))
  state = model.init_state(params, memory)
  sample = jnp.array([True, False])
  new, logits, alpha, weights = model.hard_step(params, memory, state, jnp.asarray(prev),
                                                location_key=jax.random.key(5), sample=sample)
  weights, alpha = np.asarray(weights), np.asarray(alpha)
  location = int(np.argmax(weights[0]))
  np.testing.assert_array_equal(weights[0], np.eye(R)[location])  # one-hot where sampled
  np.testing.assert_array_equal(weights[1], alpha[1])             # the expectation elsewhere
  p = np64(params["decoder"])
  a = a.astype(np.float64)
  z = np.stack([a[0, location], alpha[1].astype(np.float64) @ a[1]])
  h1, c1, logits_ref = _sat_step_reference(p, a, np.asarray(state.h, np.float64),
                                           np.asarray(state.c, np.float64), prev, z)
  np.testing.assert_allclose(new.h, h1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, logits_ref, rtol=1e-5, atol=1e-5)
  # Locations are drawn from α: over many keys, each region's frequency follows α.
  draws = jax.vmap(lambda k: model.hard_step(params, memory, state, jnp.asarray(prev),
                                             location_key=k, sample=sample)[3][0])(
      jax.random.split(jax.random.key(6), 4000))
  np.testing.assert_allclose(np.asarray(draws).mean(0), alpha[0], atol=0.03)


def _hard_batch(rng):
  targets = rng.integers(4, V, (B, 7)).astype(np.int32)
  lengths = np.array([7, 4], np.int32)
  return {"inputs": rng.normal(size=(B, R, D)).astype(np.float32), "targets": targets,
          "target_lengths": lengths, "image_index": np.arange(B, dtype=np.int32)}


def test_hard_attention_with_expected_contexts_is_soft_attention():
  """With every caption on the expected context (hard_expected_prob=1) and no entropy
  bonus, hard attention's loss is soft attention's and its baseline does not move."""
  soft = config(doubly_stochastic=0.7)
  hard = dataclasses.replace(soft, attention_type="hard", hard_expected_prob=1.0,
                             hard_entropy_weight=0.0)
  model = model_lib.Captioner(soft, V, feature_size=D)
  params = model.init(jax.random.key(0))
  batch = _hard_batch(np.random.default_rng(0))
  want, (_, m_soft) = train_lib.make_loss_fn(soft, model)(params, (), batch, jax.random.key(1))
  hard_model = model_lib.Captioner(hard, V, feature_size=D)
  extra = {train_lib.HARD_BASELINE: jnp.float32(-2.0)}
  got, (extra2, m_hard) = train_lib.make_loss_fn(hard, hard_model)(params, extra, batch,
                                                                   jax.random.key(1))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(m_hard["attention_penalty"], m_soft["attention_penalty"], rtol=1e-5)
  assert float(extra2[train_lib.HARD_BASELINE]) == -2.0


def test_hard_attention_baseline_is_a_moving_average_of_the_log_likelihood():
  # No entropy bonus, no doubly stochastic penalty: only REINFORCE reaches the attention.
  cfg = config(attention_type="hard", hard_expected_prob=0.0, hard_entropy_weight=0.0,
               doubly_stochastic=0.0)
  model = model_lib.Captioner(cfg, V, feature_size=D)
  params = model.init(jax.random.key(0))
  batch = _hard_batch(np.random.default_rng(1))
  loss_fn = jax.jit(train_lib.make_loss_fn(cfg, model))
  b = jnp.float32(-3.0)
  (loss, (extra, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, {train_lib.HARD_BASELINE: b}, batch, jax.random.key(2))
  log_p_y = float(metrics["hard_advantage"]) + float(b)  # the sampled captions' mean
  np.testing.assert_allclose(extra[train_lib.HARD_BASELINE], 0.9 * -3.0 + 0.1 * log_p_y,
                             rtol=1e-5)
  assert np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  # Sampled contexts carry no gradient to α: REINFORCE alone trains where to look.
  assert float(jnp.abs(grads["decoder"]["attention"]["v"]).max()) > 0


def test_show_and_tell_reads_the_image_as_its_first_input():
  model = model_lib.Captioner(config(model="show_and_tell"), V, feature_size=D)
  params = randomized(model.init(jax.random.key(0)), jax.random.key(1))
  a = np.asarray(jax.random.normal(jax.random.key(2), (B, R, D)))
  memory = model.memory(params, jnp.asarray(a))
  state = model.init_state(params, memory)
  state, logits, alpha = model.step(params, memory, state, jnp.array([2, 5]))
  assert alpha is None

  p = np64(params["decoder"])
  x_img = a.astype(np.float64).mean(1) @ p["image"]["w"] + p["image"]["b"]
  h, c = lstm_reference(p["lstm"], np.zeros((B, H)), np.zeros((B, H)), x_img)
  h, c = lstm_reference(p["lstm"], h, c, p["embed"][[2, 5]])
  np.testing.assert_allclose(state.h, h, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, h @ p["output"]["w"] + p["output"]["b"], rtol=1e-5,
                             atol=1e-5)


def test_doubly_stochastic_penalty_matches_its_equation():
  U = 5
  weights = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.key(0), (B, U, R)), -1))
  lengths = np.array([5, 3])
  mask = np.arange(U)[None, :] < lengths[:, None]
  expected = np.zeros(B)
  for b in range(B):
    for i in range(R):
      expected[b] += (1.0 - sum(weights[b, t, i] for t in range(lengths[b]))) ** 2
  got = attention_lib.doubly_stochastic_penalty(jnp.asarray(weights), jnp.asarray(mask))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Attention that covers every region exactly once over the caption costs nothing.
  once = np.tile(np.eye(R)[None], (B, 1, 1))  # U = R steps, one region each
  assert np.allclose(attention_lib.doubly_stochastic_penalty(
      jnp.asarray(once), jnp.ones((B, R), bool)), 0.0)


def test_the_loss_is_word_nll_plus_the_scaled_penalty():
  cfg = config(doubly_stochastic=0.7)
  model = model_lib.Captioner(cfg, V, feature_size=D)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  targets = rng.integers(4, V, (B, 7)).astype(np.int32)
  lengths = np.array([7, 4], np.int32)
  targets[1, 3] = data_lib.EOS
  targets[1, 4:] = data_lib.PAD
  batch = {"inputs": rng.normal(size=(B, R, D)).astype(np.float32), "targets": targets,
           "target_lengths": lengths, "image_index": np.arange(B, dtype=np.int32)}
  loss, (_, metrics) = train_lib.make_loss_fn(cfg, model)(params, (), batch, jax.random.key(1))

  memory = model.memory(params, jnp.asarray(batch["inputs"]))
  logits, weights = forcing.teacher_forcing(model.decoder(), params, memory,
                                            np.full(B, data_lib.BOS), targets)
  log_p = np.asarray(jax.nn.log_softmax(logits), np.float64)
  nll = [-log_p[b, t, targets[b, t]] for b in range(B) for t in range(lengths[b])]
  mask = np.arange(7)[None, :] < lengths[:, None]
  coverage = (np.asarray(weights) * mask[..., None]).sum(1)  # [B, R]
  penalty = 0.7 * ((1 - coverage) ** 2).sum(1).mean() / lengths.mean()
  np.testing.assert_allclose(metrics["nll"], np.mean(nll), rtol=1e-5)
  np.testing.assert_allclose(metrics["attention_penalty"], penalty, rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean(nll) + penalty, rtol=1e-5)


def test_the_cnn_gives_a_grid_of_annotations():
  cfg = config(cnn_features=["4", "6", str(D)], image_size=32)
  model = model_lib.Captioner(cfg, V)
  params = model.init(jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 256, (B, 32, 32, 3), dtype=np.uint8)
  a = model.encode(params, images)
  assert a.shape == (B, 4 * 4, D)  # 32 / 2 (stride) / 2 / 2 (pools) = 4
  frozen = model_lib.Captioner(dataclasses.replace(cfg, freeze_encoder=True), V)
  grad = jax.grad(lambda p: jnp.sum(frozen.encode(p, images)))(params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grad["encoder"]))
  grad = jax.grad(lambda p: jnp.sum(model.encode(p, images)))(params)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grad["encoder"]))


def test_vocabulary_and_tokenize():
  assert data_lib.tokenize("A dog, running.  Fast!") == ["a", "dog", "running", "fast"]
  vocab = data_lib.Vocabulary.build([["a red circle", "a red square"], ["a blue circle"]],
                                    min_count=2)
  assert vocab.words[:4] == list(data_lib.SPECIALS)
  assert set(vocab.words[4:]) == {"a", "red", "circle"}
  ids = vocab.encode("A red square", max_len=10)
  assert ids[-1] == data_lib.EOS and ids[2] == data_lib.UNK
  assert vocab.decode(ids + [5, 6]) == "a red <unk>"
  assert vocab.encode("a a a a", max_len=2) == [vocab.index["a"]] * 2 + [data_lib.EOS]


def test_batches_are_a_pure_function_of_the_step_and_cover_each_epoch():
  captions = [[f"caption {i} {k}" for k in range(3)] for i in range(5)]  # P = 15 pairs
  split = data_lib.Split(list(range(5)), captions, np.zeros((5, 2, 2, 3), np.uint8), None,
                         None)
  vocab = data_lib.Vocabulary.build(captions)
  batches = data_lib.Batches(split, vocab, batch_size=4, max_len=5, seed=3)
  seen = np.concatenate([batches.rows(s) for s in range(15)])  # 60 rows = 4 epochs
  for epoch in range(4):
    assert sorted(seen[epoch * 15:(epoch + 1) * 15]) == list(range(15))
  assert not np.array_equal(seen[:15], seen[15:30])  # a new order each epoch
  one, again = batches(7), batches(7)
  for k in one:
    np.testing.assert_array_equal(one[k], again[k])
  for row, image in zip(one["targets"], one["image_index"]):
    assert vocab.decode(row) in [" ".join(data_lib.tokenize(c)) for c in captions[image]]
  halves = [batches(7, process=(p, 2)) for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([h["targets"] for h in halves]), one["targets"])


def test_the_cider_reward_scores_against_every_reference_of_the_image():
  from rnn_jax.seq2seq import rewards
  captions = [["a red circle", "one red circle", "a circle that is red"],
              ["two blue squares", "a pair of blue squares", "blue squares"]]
  split = data_lib.Split([0, 1], captions, None, np.zeros((2, 1, 3), np.float32), None)
  vocab = data_lib.Vocabulary.build(captions)
  reward = train_lib.cider_reward(vocab, split)
  tokens = np.array([vocab.encode("a red circle", 5), vocab.encode("blue squares", 5)[:3] + [0]])
  lengths = np.array([3, 2])
  got = reward(jnp.asarray(tokens), jnp.asarray(lengths), jnp.array([[0], [1]]),
               jnp.zeros(2, jnp.int32))
  scorer = rewards.CiderD([[c for c in refs] for refs in captions])
  np.testing.assert_allclose(got, scorer.score(["a red circle", "blue squares"], captions),
                             rtol=1e-6)
  swapped = reward(jnp.asarray(tokens), jnp.asarray(lengths), jnp.array([[1], [0]]),
                   jnp.zeros(2, jnp.int32))
  assert np.all(np.asarray(swapped) < np.asarray(got))


def test_the_cpu_run_learns_to_caption_scenes(tmp_path):
  """Show, Attend and Tell with its CNN, trained briefly on scenes of one or two objects:
  CIDEr-D well above the captioner that always writes the most frequent training caption,
  captions that change with the image, attention localisation measured."""
  import json
  cfg = CaptioningConfig(
      scenes_max_objects=2, train_images=1000, valid_images=50, test_images=200,
      cnn_features=["16", "32", "64"], embed_size=32, hidden_size=96, attention_size=48,
      batch_size=32, learning_rate=3e-3, train_steps=400, warmup_steps=20, eval_every=400,
      checkpoint_every=400, log_every=100, beam_size=2, max_caption_len=12,
      num_attention_plots=1, progress=False, eval_metrics=["cider"])
  results = train_lib.train_and_evaluate(cfg, str(tmp_path))
  assert results["most_frequent/CIDEr"] > 0.1  # a fair baseline: scenes share wording
  assert results["test/CIDEr"] > 1.5 * results["most_frequent/CIDEr"], results
  captions = json.loads((tmp_path / "test_captions.json").read_text())
  assert len(captions) == 200 and len({c["caption"] for c in captions}) >= 3
  assert results["localisation/nouns"] > 0
  assert 0.0 < results["localisation/uniform"] < 1.0
  assert (tmp_path / "attention").is_dir()


@pytest.mark.parametrize("name", ["scenes_cpu", "digits_cpu", "coco_karpathy"])
def test_flagfiles_parse_and_validate(name):
  from experiments import common
  cfg = common.config_from_flagfile(
      CaptioningConfig, f"experiments/flagfiles/captioning/{name}.flags",
      root=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
  train_lib.check_config(cfg)
  assert cfg.model == "show_attend_tell"


def _tiny(**kw):
  base = dict(train_images=200, valid_images=20, test_images=24, cnn_features=["8", "16"],
              embed_size=16, hidden_size=24, attention_size=12, batch_size=16, train_steps=15,
              warmup_steps=5, eval_every=15, checkpoint_every=15, log_every=5, beam_size=2,
              max_caption_len=8, num_attention_plots=0, progress=False,
              eval_metrics=["cider"], eval_batch_size=16)
  return CaptioningConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A tiny Show, Attend and Tell run on scenes, trained once for the mode tests."""
  from experiments import common
  run = tmp_path_factory.mktemp("captioning") / "run"
  common.prepare_workdir("captioning", _tiny(), str(run), force_config_change=False)
  return run, train_lib.train_and_evaluate(_tiny(), str(run))


def test_an_ensemble_of_a_model_with_itself_captions_as_the_model(tiny_run, tmp_path):
  """--mode=ensemble averages the members' log-probs: two copies of one model decode as
  that model does; a member that has not finished is refused."""
  from experiments.common import UserError
  run, single = tiny_run
  members = [str(run), str(run)]
  out = train_lib.evaluate_ensemble(_tiny(mode="ensemble", ensemble=members),
                                    str(tmp_path / "ens"))
  assert out["ensemble/size"] == 2
  for k in ("test/CIDEr", "test/Bleu_4", "test/METEOR"):
    np.testing.assert_allclose(out[k], single[k], rtol=1e-9)
  (tmp_path / "unfinished").mkdir()
  with pytest.raises(UserError, match="has not finished"):
    train_lib.evaluate_ensemble(_tiny(mode="ensemble", ensemble=[str(run), "unfinished"]),
                                str(tmp_path / "ens2"))


def test_caption_mode_captions_a_folder_of_images_as_the_test_run_did(tiny_run, tmp_path):
  import json

  from PIL import Image

  from experiments.vision import scenes
  run, _ = tiny_run
  with open(run / "test_captions.json") as f:
    expected = {str(r["image_id"]): r["caption"] for r in json.load(f)}
  folder = tmp_path / "images"
  folder.mkdir()
  test = scenes.make_split("test", 5, seed=data_lib.SCENES_SEED)
  for image_id, image in zip(test.ids, test.images):
    Image.fromarray(image).save(folder / f"{image_id}.png")  # lossless: the same pixels
  cfg = _tiny(mode="caption", caption_dir=str(folder), output_file=str(tmp_path / "c.json"))
  out = train_lib.caption(cfg, str(run))
  assert {r["image_id"]: r["caption"] for r in out} == {
      str(i): expected[str(i)] for i in test.ids}
  assert json.loads((tmp_path / "c.json").read_text()) == out
  assert len(list((run / "captions" / "attention").glob("*.png"))) == 5
