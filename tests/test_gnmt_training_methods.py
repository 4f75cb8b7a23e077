"""GNMT's --training methods on the library's objectives (issue #14): each against the
cross-entropy of the whole-sequence decoder, or a reward written out here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.common import UserError
from experiments.gnmt import data
from experiments.gnmt import model as model_lib
from experiments.gnmt import train
from fixtures import gnmt_config
from rnn_jax.seq2seq import forcing, objectives

V, H = 23, 8


def _setup(num_layers=3, **kw):
  config = gnmt_config(H, V, num_layers=num_layers, max_source_len=20, max_target_len=20,
                       residual_from=2, **kw)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(2))
  rng = np.random.default_rng(3)
  sources = [[4] + list(rng.integers(7, V, n)) + [data.EOS] for n in (5, 2, 8, 4)]
  targets = [list(rng.integers(7, V, n)) + [data.EOS] for n in (3, 6, 1, 7)]
  batch = {k: jnp.asarray(v) for k, v in data.make_batch(sources, targets, config).items()}
  batch["step"] = jnp.zeros((4,), jnp.int32)
  return config, model, params, batch


def test_gnmt_step_decoder_equals_the_whole_sequence_decoder():
  """Teacher forcing on the contract (step by step) gives decode_train's logits."""
  config, model, params, batch = _setup()
  encoded = model.encode(params, batch["source"], batch["source_lengths"])
  whole, _ = model.decode_train(params, encoded, batch["target_in"])
  stepped, _ = forcing.teacher_forcing(model.decoder(), params, encoded,
                                       batch["target_in"][:, 0], batch["target_out"])
  # Up to each target's EOS (after it the contract feeds EOS, decode_train padding).
  valid = np.arange(whole.shape[1])[None] < np.asarray(batch["target_lengths"])[:, None]
  np.testing.assert_allclose(np.asarray(stepped)[valid], np.asarray(whole)[valid], rtol=1e-5,
                             atol=1e-5)


def _loss_and_grad(config, model, params, batch, reward=None):
  loss_fn = train.make_loss_fn(config, model, reward)
  (loss, (_, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, None, batch, jax.random.key(0))
  return loss, metrics, grads


def test_scheduled_sampling_with_epsilon_one_is_cross_entropy():
  xent = gnmt_config(H, V, num_layers=3, max_source_len=20, max_target_len=20, residual_from=2)
  config, model, params, batch = _setup(training="scheduled_sampling", ss_schedule="linear",
                                        ss_k=1.0, ss_c=0.0)
  loss, metrics, grads = _loss_and_grad(config, model, params, batch)
  ref_loss, ref_metrics, ref_grads = _loss_and_grad(xent, model, params, batch)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  assert float(metrics["gold_fed"]) == 1.0
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_scheduled_sampling_feeds_the_model_tokens_after_the_schedule_decays():
  config, model, params, batch = _setup(training="scheduled_sampling", ss_schedule="linear",
                                        ss_k=1.0, ss_c=1.0)  # ε = 0 from step 1
  batch = dict(batch, step=jnp.full((4,), 5, jnp.int32))
  _, metrics, _ = _loss_and_grad(config, model, params, batch)
  lengths = np.asarray(batch["target_lengths"])
  # Only the first input (the start token) is gold at ε = 0.
  np.testing.assert_allclose(metrics["gold_fed"], len(lengths) / lengths.sum(), rtol=1e-6)


def test_mixer_with_delta_zero_is_summed_cross_entropy():
  """Δ = 0 at the first steps: MIXER's loss is the gold tokens' cross-entropy summed per
  sentence and averaged over the batch (no label smoothing), its REINFORCE term zero."""
  config, model, params, batch = _setup(training="mixer", mixer_delta_every=1000,
                                        label_smoothing=0.0)
  params[objectives.BASELINE] = {"w": jnp.zeros((H,)), "c": jnp.zeros(())}
  calls = []

  def reward_fn(tokens, lengths, targets, target_lengths):
    calls.append(1)
    return np.ones(len(tokens))

  loss, metrics, _ = _loss_and_grad(config, model, params, batch,
                                    objectives.host_reward(reward_fn))
  encoded = model.encode(params, batch["source"], batch["source_lengths"])
  logits, _ = model.decode_train(params, encoded, batch["target_in"])
  log_probs = jax.nn.log_softmax(logits)
  gold = np.take_along_axis(np.asarray(log_probs), np.asarray(batch["target_out"])[..., None],
                            -1)[..., 0]
  mask = np.arange(gold.shape[1])[None] < np.asarray(batch["target_lengths"])[:, None]
  np.testing.assert_allclose(metrics["xent"], -(gold * mask).sum() / 4, rtol=1e-5)
  assert float(metrics["reinforce"]) == 0.0
  assert calls  # the reward ran on the host


def test_scst_gradient_is_zero_when_samples_earn_the_greedy_reward():
  config, model, params, batch = _setup(training="scst")
  reward = objectives.host_reward(lambda tokens, *_: np.full(len(tokens), 0.25))
  loss, metrics, grads = _loss_and_grad(config, model, params, batch, reward)
  assert float(loss) == 0.0
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(metrics["reward"], 0.25)


def test_scst_rewards_what_the_reward_function_says():
  """A reward of the output's length: the policy gradient weighs each sample by its
  length minus the greedy decode's, so the loss is -mean_b (r_b - g_b) log p(y_b)."""
  config, model, params, batch = _setup(training="scst")
  seen = {}

  def reward_fn(tokens, lengths, targets, target_lengths):
    seen.setdefault("lengths", []).append(lengths.copy())
    np.testing.assert_array_equal(target_lengths, np.asarray(batch["target_lengths"]) - 1)
    return lengths.astype(np.float32)

  loss, metrics, _ = _loss_and_grad(config, model, params, batch,
                                    objectives.host_reward(reward_fn))
  sampled, greedy = seen["lengths"][:2]
  assert float(metrics["reward"]) == pytest.approx(sampled.mean())
  assert float(metrics["greedy_reward"]) == pytest.approx(greedy.mean())


def test_training_start_step_runs_cross_entropy_before_it():
  xent = gnmt_config(H, V, num_layers=3, max_source_len=20, max_target_len=20, residual_from=2)
  config, model, params, batch = _setup(training="scst", training_start_step=10)
  reward = objectives.host_reward(lambda tokens, *_: np.zeros(len(tokens)))
  loss, metrics, _ = _loss_and_grad(config, model, params, batch, reward)
  ref_loss, _, _ = _loss_and_grad(xent, model, params, batch)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  batch = dict(batch, step=jnp.full((4,), 10, jnp.int32))
  loss, _, _ = _loss_and_grad(config, model, params, batch, reward)
  assert float(loss) == 0.0  # scst with a zero reward from step 10


def test_bleu_reward_scores_detokenized_outputs():
  class Tok:
    def decode(self, ids):
      return " ".join(f"w{int(i)}" for i in ids)

  reward = train.bleu_reward(Tok())
  tokens = jnp.asarray([[5, 6, 7, 8, 0], [5, 9, 9, 9, 9]], jnp.int32)
  targets = jnp.asarray([[5, 6, 7, 8, 3], [5, 6, 7, 8, 3]], jnp.int32)
  got = jax.jit(reward)(tokens, jnp.asarray([4, 5]), targets, jnp.asarray([4, 4]))
  import sacrebleu
  expected = [sacrebleu.sentence_bleu("w5 w6 w7 w8", ["w5 w6 w7 w8"]).score / 100,
              sacrebleu.sentence_bleu("w5 w9 w9 w9 w9", ["w5 w6 w7 w8"]).score / 100]
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_unknown_training_method_is_a_user_error():
  with pytest.raises(UserError, match="--training"):
    train.check_config(gnmt_config(H, V, training="reinforce_everything"))


def test_mixer_trains_end_to_end_and_resumes_with_its_baseline(tmp_path):
  """The whole experiment with --training=mixer from step 4 (Δ = 4 more tokens every 2
  steps), stopped at step 6 and resumed to 8: the baseline's params live in the
  checkpoints, the reward runs on the host, and the logged Δ follows the schedule."""
  import json
  import os

  from test_gnmt_eval import _tiny
  args = ["--training=mixer", "--training_start_step=4", "--mixer_delta_step=4",
          "--mixer_delta_every=2", "--eval_every=100", "--log_every=2", "--checkpoint_every=2"]
  workdir = str(tmp_path)
  train.train_and_evaluate(_tiny(*args, "--max_steps=6"), workdir)
  results = train.train_and_evaluate(_tiny(*args, "--max_steps=8"), workdir)
  assert results["step"] == 8
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = {r["step"]: r for r in map(json.loads, f) if "train/delta" in r}
  # Steps 0-3 cross-entropy (Δ reported 0), then Δ(i) = 4 * ((i - 4) // 2): 0, 0, 4, 4.
  assert [rows[s]["train/delta"] for s in (2, 4, 6, 8)] == [0.0, 0.0, 0.0, 4.0]
  assert rows[8]["train/reinforce"] != 0.0 and 0.0 <= rows[8]["train/reward"] <= 1.0
