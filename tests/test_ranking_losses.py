"""rnn_jax.ranking_losses (Ma, Sigal & Sclaroff 2016) against independent references: a
Python loop over the equations that finds t_s by walking back, the analytic gradient with
p* / m* held constant, hand-computed cases, and numpy cross-entropy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import ranking_losses as rl

B, T, K = 3, 7, 5   # pairwise distinct
BG = 0              # the background class: an ordinary class to the losses

# Several segments and the background (row 0); changes at consecutive steps and a one-step
# activity (row 1: 4 lasts one step, labels change at t=1 and t=2); padding (row 2,
# length 5: the labels past it are junk the losses must ignore).
LABELS = np.array([[BG, BG, 3, 3, 3, BG, BG],
                   [2, 4, 1, 1, BG, BG, 3],
                   [1, 1, BG, 2, 2, 4, 3]], np.int32)
LENGTHS = np.array([7, 7, 5], np.int32)


def value_reference(p, y, kind):
  """p_t^y, or the margin m_t^y = p_t^y - max_{y' != y} p_t^{y'}, for one step's p [K]."""
  if kind == "score":
    return float(p[y])
  return float(p[y]) - max(float(p[k]) for k in range(len(p)) if k != y)


def ranking_reference(probs, labels, lengths, kind):
  """The paper's equations as a loop: per b, per valid t >= 1, t_s found by walking back."""
  out = np.zeros(labels.shape)
  for b in range(labels.shape[0]):
    for t in range(1, int(lengths[b])):
      y_prev = labels[b, t - 1]
      delta = 1.0 if labels[b, t] == y_prev else -1.0
      t_s = t - 1
      while t_s > 0 and labels[b, t_s - 1] == y_prev:
        t_s -= 1
      best = max(value_reference(probs[b, s], y_prev, kind) for s in range(t_s, t))
      out[b, t] = max(0.0, -delta * (value_reference(probs[b, t], y_prev, kind) - best))
  return out


def ranking_gradient_reference(probs, labels, lengths, kind, weights):
  """d/dprobs of Σ_bt weights_bt L_bt with p* (m*) constant: ∂L_s^t/∂p_t^{y_{t-1}} = -δ_t
  when the hinge is active; through m_t, -δ_t on p_t^{y_{t-1}} and +δ_t on the best other
  class."""
  losses = ranking_reference(probs, labels, lengths, kind)
  grad = np.zeros(probs.shape)
  for b in range(labels.shape[0]):
    for t in range(1, int(lengths[b])):
      if losses[b, t] <= 0:
        continue
      y_prev = labels[b, t - 1]
      delta = 1.0 if labels[b, t] == y_prev else -1.0
      grad[b, t, y_prev] += -delta * weights[b, t]
      if kind == "margin":
        others = [k for k in range(probs.shape[-1]) if k != y_prev]
        best_other = others[int(np.argmax(probs[b, t, others]))]
        grad[b, t, best_other] += delta * weights[b, t]
  return grad


def random_probs(seed, shape=(B, T, K)):
  logits = np.random.default_rng(seed).normal(size=shape) * 2.0
  return np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))


def random_labels(seed):
  """Runs of labels from a small set, so segments of every length occur."""
  rng = np.random.default_rng(seed)
  labels = np.zeros((B, T), np.int32)
  for b in range(B):
    labels[b, 0] = rng.integers(K)
    for t in range(1, T):
      labels[b, t] = labels[b, t - 1] if rng.random() < 0.5 else rng.integers(K)
  return labels, rng.integers(1, T + 1, size=B).astype(np.int32)


KINDS = {"score": rl.detection_score_ranking_loss, "margin": rl.margin_ranking_loss}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_losses_are_the_loop_over_the_equations(kind):
  fn = jax.jit(KINDS[kind])
  cases = [(LABELS, LENGTHS)] + [random_labels(seed) for seed in range(4)]
  for seed, (labels, lengths) in enumerate(cases):
    probs = random_probs(seed)
    got = fn(probs, labels, lengths)
    assert got.shape == (B, T) and got.dtype == jnp.float32
    want = ranking_reference(probs, labels, lengths, kind)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The fixed case has active hinges both inside activities and at changes.
  want = ranking_reference(random_probs(0), LABELS, LENGTHS, kind)
  same = np.concatenate([np.zeros((B, 1), bool), LABELS[:, 1:] == LABELS[:, :-1]], 1)
  assert (want[same] > 0).any() and (want[~same & (np.arange(T) > 0)] > 0).any()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_padding_scores_zero_and_changes_nothing(kind):
  fn = KINDS[kind]
  probs = random_probs(5)
  lengths = np.array([7, 3, 0], np.int32)
  got = fn(probs, LABELS, lengths)
  np.testing.assert_array_equal(np.asarray(got)[1, 3:], 0)
  np.testing.assert_array_equal(np.asarray(got)[2], 0)
  # Junk past each length: other scores (huge, NaN) and labels (out of range).
  pad = np.arange(T)[None, :] >= lengths[:, None]
  junk_probs = np.where(pad[..., None], np.nan, probs).astype(np.float32)
  junk_probs[1, 4] = 1e9
  junk_labels = np.where(pad, K + 3, LABELS).astype(np.int32)
  np.testing.assert_array_equal(fn(junk_probs, junk_labels, lengths), got)
  weights = np.random.default_rng(1).random((B, T)).astype(np.float32)
  grad = lambda p, y: jax.grad(lambda p: jnp.sum(weights * fn(p, y, lengths)))(p)
  clean, junk = grad(probs, LABELS), grad(junk_probs, junk_labels)
  np.testing.assert_array_equal(junk, clean)
  np.testing.assert_array_equal(np.asarray(junk)[pad], 0)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gradient_holds_the_running_max_constant(kind):
  fn = KINDS[kind]
  for seed, (labels, lengths) in enumerate([(LABELS, LENGTHS), random_labels(7)]):
    probs = random_probs(10 + seed)
    weights = np.random.default_rng(seed).random((B, T)).astype(np.float32)
    got = jax.grad(lambda p: jnp.sum(weights * fn(p, labels, lengths)))(probs)
    want = ranking_gradient_reference(probs, labels, lengths, kind, weights)
    assert seed > 0 or np.abs(want).sum() > 0   # the fixed case has active hinges
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_hand_computed_cases():
  # One activity (class 1), its scores 0.2, 0.5, 0.4: L_s = [0, 0, 0.5 - 0.4 = 0.1].
  # Margins m^1 = 0.2 - 0.8, 0.5 - 0.5, 0.4 - 0.6 = -0.6, 0.0, -0.2: L_m = [0, 0, 0.2].
  probs = np.array([[[0.8, 0.2], [0.5, 0.5], [0.6, 0.4]]], np.float32)
  labels, lengths = np.array([[1, 1, 1]], np.int32), np.array([3], np.int32)
  np.testing.assert_allclose(rl.detection_score_ranking_loss(probs, labels, lengths),
                             [[0, 0, 0.1]], atol=1e-6)
  np.testing.assert_allclose(rl.margin_ranking_loss(probs, labels, lengths),
                             [[0, 0, 0.2]], atol=1e-6)

  # Class 1 for two steps, then class 2. At the change (t=2, δ=-1) the old class's score
  # rises to 0.6, above its best 0.5 so far: L_s^2 = 0.6 - 0.5 = 0.1. Its margins m^1 are
  # 0.3 - 0.6, 0.5 - 0.5, 0.6 - 0.3 = -0.3, 0.0, 0.3: L_m^2 = 0.3 - 0.0 = 0.3. At t=3 the
  # new activity (class 2) is measured from its own start (t_s = 2): p^2 = 0.35 >= 0.3 and
  # m^2 = 0.35 - 0.45 = -0.1 >= 0.3 - 0.6 = -0.3 cost nothing, though both lie below what
  # class 2 had at t=1, inside the old activity (p^2_1 = 0.5, m^2_1 = 0.0).
  probs = np.array([[[0.1, 0.3, 0.6], [0.0, 0.5, 0.5], [0.1, 0.6, 0.3], [0.2, 0.45, 0.35]]],
                   np.float32)
  labels, lengths = np.array([[1, 1, 2, 2]], np.int32), np.array([4], np.int32)
  np.testing.assert_allclose(rl.detection_score_ranking_loss(probs, labels, lengths),
                             [[0, 0, 0.1, 0]], atol=1e-6)
  np.testing.assert_allclose(rl.margin_ranking_loss(probs, labels, lengths),
                             [[0, 0, 0.3, 0]], atol=1e-6)
  # When the old class's score falls at the change (0.5 -> 0.4) it costs nothing; the new
  # activity starts at p^2_2 = 0.5 now, so its 0.35 at t=3 costs 0.5 - 0.35 = 0.15.
  falls = probs.copy()
  falls[0, 2] = [0.1, 0.4, 0.5]
  np.testing.assert_allclose(rl.detection_score_ranking_loss(falls, labels, lengths),
                             [[0, 0, 0, 0.15]], atol=1e-6)


def test_selector():
  probs = random_probs(3)
  for kind, fn in KINDS.items():
    np.testing.assert_array_equal(rl.ranking_loss(kind, probs, LABELS, LENGTHS),
                                  fn(probs, LABELS, LENGTHS))
  with pytest.raises(ValueError, match=r"kind: expected one of \['margin', 'score'\], got 'rank'"):
    rl.ranking_loss("rank", probs, LABELS, LENGTHS)


def masked_cross_entropy_reference(logits, labels, lengths):
  total, count = 0.0, 0
  for b in range(labels.shape[0]):
    for t in range(int(lengths[b])):
      z = logits[b, t].astype(np.float64)
      total += np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[labels[b, t]]
      count += 1
  return total / count


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_progression_loss_and_its_gradient(kind):
  logits = np.random.default_rng(4).normal(size=(B, T, K)).astype(np.float32) * 2
  probs = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
  count = int(LENGTHS.sum())
  loss, parts = rl.progression_loss(logits, LABELS, LENGTHS, kind=kind, lambda_r=0.7)
  xent = masked_cross_entropy_reference(logits, LABELS, LENGTHS)
  ranking = ranking_reference(probs, LABELS, LENGTHS, kind).sum() / count
  assert float(parts["classification"]) == pytest.approx(xent, rel=1e-5)
  assert float(parts["ranking"]) == pytest.approx(ranking, rel=1e-5)
  assert float(loss) == pytest.approx(xent + 0.7 * ranking, rel=1e-5)
  # d/dlogits: (softmax - onehot) / N on valid steps, plus λ_r J_softmax^T dL_r/dp, where
  # J^T g = p * (g - <p, g>).
  valid = (np.arange(T)[None, :] < LENGTHS[:, None])[..., None]
  g = ranking_gradient_reference(probs, LABELS, LENGTHS, kind, np.full((B, T), 0.7 / count))
  want = valid * (probs - np.eye(K)[LABELS]) / count
  want = want + probs * (g - np.sum(probs * g, -1, keepdims=True))
  got = jax.grad(lambda z: rl.progression_loss(z, LABELS, LENGTHS, kind=kind,
                                               lambda_r=0.7)[0])(logits)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_progression_loss_without_ranking_is_cross_entropy_and_jits():
  logits = np.random.default_rng(6).normal(size=(B, T, K)).astype(np.float32)
  xent = masked_cross_entropy_reference(logits, LABELS, LENGTHS)
  for kind in ("score", "margin", None):
    loss, parts = rl.progression_loss(logits, LABELS, LENGTHS, kind=kind, lambda_r=0.0)
    assert float(loss) == pytest.approx(xent, rel=1e-5)
    assert float(parts["classification"]) == pytest.approx(xent, rel=1e-5)
  assert float(parts["ranking"]) == 0.0
  step = jax.jit(functools.partial(rl.progression_loss, kind="margin"))
  eager = rl.progression_loss(logits, LABELS, LENGTHS, kind="margin", lambda_r=2.0)
  jitted = step(logits, LABELS, LENGTHS, lambda_r=jnp.float32(2.0))   # λ_r may be traced
  np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6)
  assert jitted[0].dtype == jnp.float32


def test_bad_arguments_raise():
  logits = np.zeros((B, T, K), np.float32)
  with pytest.raises(ValueError, match=r"kind: expected one of \['margin', 'score'\] or None, "
                                       r"got 'ranking'"):
    rl.progression_loss(logits, LABELS, LENGTHS, kind="ranking", lambda_r=1.0)
  with pytest.raises(ValueError, match=r"labels: expected shape \[B, T\]=\(3, 7\)"):
    rl.detection_score_ranking_loss(logits, LABELS[:, :-1], LENGTHS)
  with pytest.raises(ValueError, match=r"lengths: expected shape \[B\]=\(3,\)"):
    rl.margin_ranking_loss(logits, LABELS, LENGTHS[:2])
  with pytest.raises(ValueError, match=r"probs: expected \[B, T, K\]"):
    rl.detection_score_ranking_loss(logits[..., 0], LABELS, LENGTHS)
  with pytest.raises(ValueError, match=r"labels: expected integer classes"):
    rl.detection_score_ranking_loss(logits, LABELS.astype(np.float32), LENGTHS)
  with pytest.raises(ValueError, match=r"probs: the margin needs K >= 2"):
    rl.margin_ranking_loss(logits[..., :1], LABELS * 0, LENGTHS)
