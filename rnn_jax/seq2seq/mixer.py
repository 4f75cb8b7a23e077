"""MIXER (Ranzato et al. 2016): cross-entropy on the first tokens, REINFORCE on the rest.

For a target of length L_b, the first max(L_b - Δ, 0) steps are teacher-forced and
trained with cross-entropy; from there on the model feeds its own samples until
EOS (or `max_len`) and the sampled suffix is trained with REINFORCE, its reward
scoring the whole output (gold prefix + sampled suffix). Δ starts at 0 (pure
cross-entropy) and grows by Δ_step every N training steps (`delta_schedule`)
until the whole sequence is trained with REINFORCE.

The baseline is a linear regressor on the decoder's hidden state,
b_t = w · h_t + c, with h_t from the decoder's `readout(state)` (the state after
step t); it is trained by squared error against the reward, and no gradient
flows from it into the policy (h_t is stopped for the regressor, b_t for the
policy).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax.seq2seq.decoder import Decoder


def delta_schedule(step, delta_step: int, every: int, max_delta: int):
  """Δ at training step `step`: `delta_step` more every `every` steps, at most `max_delta`."""
  return jnp.minimum(max_delta, (jnp.asarray(step) // every) * delta_step)


class Rollout(NamedTuple):
  logits: jax.Array     # [B, U, V] every step's logits
  tokens: jax.Array     # [B, U] the output: gold on the prefix, samples after (pad after EOS)
  xent_mask: jax.Array  # [B, U] the teacher-forced steps (trained with cross-entropy)
  rl_mask: jax.Array    # [B, U] the sampled steps up to and including EOS (REINFORCE)
  log_probs: jax.Array  # [B, U] log p of `tokens` at each step (0 outside the masks)
  features: jax.Array   # [B, U, D] the decoder's readout after each step (for the baseline)


def rollout(decoder: Decoder, params, memory, start, targets, target_lengths, delta, key, *,
            eos: int, pad: int = 0, temperature: float = 1.0) -> Rollout:
  """Runs MIXER's mixed decoding for `U = targets.shape[1]` steps (`lax.scan`).

  Args:
    decoder: a decoder with a `readout`.
    start: `[B]` first input tokens.
    targets: `[B, U]` gold outputs, EOS included at `target_lengths - 1`.
    target_lengths: `[B]` with EOS.
    delta: Δ, the tokens at each row's end left to REINFORCE (a scalar or `[B]`).
    key: draws the samples; step t uses `jax.random.fold_in(key, t)`.
  """
  if decoder.readout is None:
    raise ValueError("decoder.readout: MIXER's baseline reads the decoder's hidden state")
  start = jnp.asarray(start, jnp.int32)
  B, U = targets.shape
  split = jnp.maximum(target_lengths - delta, 0)  # [B] steps teacher-forced

  def body(carry, t):
    state, token, done = carry
    state, logits, _ = decoder.step(params, memory, state, token)
    log_probs = jax.nn.log_softmax(logits)
    forced = t < split
    own = jax.random.categorical(jax.random.fold_in(key, t),
                                 jax.lax.stop_gradient(logits) / temperature)
    out = jnp.where(forced, targets[:, t], own).astype(jnp.int32)
    live = ~done
    lp = jnp.where(live, jnp.take_along_axis(log_probs, out[:, None], 1)[:, 0], 0.0)
    done = done | (out == eos)
    return (state, out, done), (logits, jnp.where(live, out, pad), forced & live,
                                ~forced & live, lp, decoder.readout(state))

  init = (decoder.init_state(params, memory), start, jnp.zeros((B,), bool))
  _, outs = jax.lax.scan(body, init, jnp.arange(U))
  logits, tokens, xent_mask, rl_mask, log_probs, features = (jnp.swapaxes(a, 0, 1) for a in outs)
  return Rollout(logits, tokens, xent_mask, rl_mask, log_probs, features)


def init_baseline(feature_size: int):
  """The linear regressor's parameters, zeros: b_t = w · h_t + c."""
  return {"w": jnp.zeros((feature_size,)), "c": jnp.zeros(())}


def loss(out: Rollout, targets, rewards, baseline_params):
  """MIXER's loss and the baseline's, summed (their gradients touch disjoint parameters).

  Cross-entropy of the gold tokens on `xent_mask` plus REINFORCE on `rl_mask` with the
  per-token baseline b_t (stopped), both divided by B; plus the regressor's squared
  error (r_b - b_t)^2 on `rl_mask` with the features stopped.

  Returns:
    (loss, metrics) with metrics `xent`, `reinforce`, `baseline_mse`.
  """
  B = targets.shape[0]
  log_probs = jax.nn.log_softmax(out.logits)
  gold = jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # [B, U]
  xent = -jnp.sum(gold * out.xent_mask) / B
  features = jax.lax.stop_gradient(out.features)
  b = features @ baseline_params["w"] + baseline_params["c"]  # [B, U]
  advantage = jax.lax.stop_gradient(rewards[:, None] - b)
  reinforce = -jnp.sum(advantage * out.log_probs * out.rl_mask) / B
  steps = jnp.maximum(out.rl_mask.sum(), 1)
  mse = jnp.sum(jnp.where(out.rl_mask, (rewards[:, None] - b) ** 2, 0.0)) / steps
  return xent + reinforce + mse, {"xent": xent, "reinforce": reinforce, "baseline_mse": mse}
