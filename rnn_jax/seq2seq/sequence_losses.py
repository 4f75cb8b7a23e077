"""Sequence-level training losses: REINFORCE with a baseline, self-critical training.

A sequence model samples `y ~ p(. | x)` (`decoding.sample`: tokens and their
log-probs `[B, T]` with the mask of the tokens written), a reward r(y) scores
each sample (sentence BLEU, CIDEr-D, ...), and the gradient of

    L = - 1/B Σ_b (r_b - baseline_b) Σ_t mask_bt log p(y_bt | y_b<t, x_b)

is the REINFORCE estimate of the gradient of -E[r] (Williams 1992; Ranzato et al.
2016). The reward and the baseline are constants (no gradient flows through
them); the baseline only lowers the variance. Self-critical sequence training
(Rennie et al. 2017) takes the reward of the model's own greedy decode as the
baseline. A per-token baseline `[B, T]` (MIXER's regressor on the decoder state)
is allowed too: then each token's log-prob is weighed by `r_b - baseline_bt`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def reinforce_loss(log_probs, mask, rewards, baseline=0.0):
  """REINFORCE with a baseline (module docstring).

  Args:
    log_probs: `[B, T]` log-probs of the sampled tokens (differentiable).
    mask: `[B, T]` True for the tokens the sample wrote (EOS included).
    rewards: `[B]` rewards of the samples.
    baseline: a scalar, `[B]`, or `[B, T]` per token.

  Returns:
    The scalar loss, averaged over the B samples.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  baseline = jnp.asarray(baseline, jnp.float32)
  if baseline.ndim < 2:
    advantage = jnp.broadcast_to(rewards - baseline, rewards.shape)[:, None]  # [B, 1]
  else:
    advantage = rewards[:, None] - baseline  # [B, T]
  advantage = jax.lax.stop_gradient(advantage)
  return -jnp.mean(jnp.sum(advantage * log_probs * mask, axis=1))


def self_critical_loss(log_probs, mask, rewards, greedy_rewards):
  """Self-critical sequence training: REINFORCE with the greedy decode's reward as the
  baseline; zero gradient when every sample earns what greedy decoding earns."""
  return reinforce_loss(log_probs, mask, rewards, greedy_rewards)
