"""What a decoder reads while it trains: teacher forcing and scheduled sampling.

Teacher forcing feeds the gold previous token at every step. Scheduled sampling
(Bengio et al. 2015) feeds, at step t of row b, the gold token y_{t-1} with
probability ε and the model's own token otherwise; ε follows a schedule over the
training step i:

    linear:          ε_i = max(ε_min, k - c i)
    exponential:     ε_i = k^i                  (k < 1)
    inverse sigmoid: ε_i = k / (k + exp(i / k))  (k >= 1)

The model's token is sampled from its softmax (default; `feed="argmax"` takes the
most likely one, `feed="uniform"` a token drawn uniformly from the vocabulary:
the "uniform scheduled sampling" row of Bengio et al.'s table); ε = 0 throughout
is their "always sampling". No gradient flows through the choice. `step_kw`, the
keywords of the decoder's step (`{"training": True, "key": k}` for dropout), reach
every step, the key folded with the step index. Both run the
decoder step by step under `lax.scan` on the `Decoder` contract and return the
logits `[B, U, V]` to train with the usual cross-entropy against the targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax.seq2seq.decoder import Decoder

FEEDS = ("sample", "argmax", "uniform")


def linear_schedule(step, k: float = 1.0, c: float = 1e-4, minimum: float = 0.0):
  """ε_i = max(ε_min, k - c i)."""
  return jnp.maximum(minimum, k - c * jnp.asarray(step, jnp.float32))


def exponential_schedule(step, k: float = 0.9999):
  """ε_i = k^i, k < 1."""
  if not 0 < k < 1:
    raise ValueError(f"k: the exponential schedule needs 0 < k < 1, got {k}")
  return jnp.asarray(k, jnp.float32) ** jnp.asarray(step, jnp.float32)


def inverse_sigmoid_schedule(step, k: float = 1000.0):
  """ε_i = k / (k + exp(i / k)), k >= 1."""
  if k < 1:
    raise ValueError(f"k: the inverse sigmoid schedule needs k >= 1, got {k}")
  return k / (k + jnp.exp(jnp.asarray(step, jnp.float32) / k))


SCHEDULES = {"linear": linear_schedule, "exponential": exponential_schedule,
             "inverse_sigmoid": inverse_sigmoid_schedule}


def _at(step_kw: dict | None, t) -> dict:
  """The step's keywords at step t: a dropout `key` is folded with t (fresh masks per step)."""
  step_kw = step_kw or {}
  if step_kw.get("key") is None:
    return step_kw
  return {**step_kw, "key": jax.random.fold_in(step_kw["key"], t)}


def teacher_forcing(decoder: Decoder, params, memory, start, targets, *, step_kw=None):
  """Logits `[B, U, V]` (and attention `[B, U, S]` or None) with the gold tokens fed:
  `start [B]` first, then `targets[:, :-1]` (`targets [B, U]`)."""
  start = jnp.asarray(start, jnp.int32)
  inputs = jnp.concatenate([start[:, None], targets[:, :-1]], axis=1)  # [B, U]

  def body(state, xs):
    token, t = xs
    state, logits, weights = decoder.step(params, memory, state, token, **_at(step_kw, t))
    return state, (logits, weights)

  _, (logits, weights) = jax.lax.scan(body, decoder.init_state(params, memory),
                                      (inputs.T, jnp.arange(inputs.shape[1])))
  weights = None if weights is None else jnp.swapaxes(weights, 0, 1)
  return jnp.swapaxes(logits, 0, 1), weights


def scheduled_sampling(decoder: Decoder, params, memory, start, targets, key, epsilon, *,
                       feed: str = "sample", temperature: float = 1.0, step_kw=None):
  """Logits `[B, U, V]`, attention (or None) and `gold [B, U]` (True where the gold token
  was fed) with each next input the gold token with probability `epsilon`, otherwise
  the model's own (module docstring). The first input is always `start`.

  Step t draws from `jax.random.fold_in(key, t)` as `decoding.sample` does, so with
  `epsilon = 0` and `feed="sample"` the tokens fed are those `sample` writes with the
  same key (up to the first EOS); with `epsilon = 1` this is `teacher_forcing`.
  """
  if feed not in FEEDS:
    raise ValueError(f"feed: expected one of {FEEDS}, got {feed!r}")
  start = jnp.asarray(start, jnp.int32)
  B, U = targets.shape
  V = decoder.vocab_size

  def body(carry, t):
    state, token = carry
    state, logits, weights = decoder.step(params, memory, state, token, **_at(step_kw, t))
    k_token = jax.random.fold_in(key, t)
    k_coin = jax.random.fold_in(k_token, 1)
    chosen = jax.lax.stop_gradient(logits)
    if feed == "sample":
      own = jax.random.categorical(k_token, chosen / temperature)
    elif feed == "argmax":
      own = jnp.argmax(chosen, axis=-1)
    else:
      own = jax.random.randint(k_token, (B,), 0, V)
    gold = jax.random.uniform(k_coin, (B,)) < epsilon
    nxt = jnp.where(gold, targets[:, t], own).astype(jnp.int32)
    return (state, nxt), (logits, weights, gold)

  init = (decoder.init_state(params, memory), start)
  _, (logits, weights, gold) = jax.lax.scan(body, init, jnp.arange(U))
  weights = None if weights is None else jnp.swapaxes(weights, 0, 1)
  # gold[:, t] says what was fed at step t + 1; the first input is always the gold start.
  fed_gold = jnp.concatenate([jnp.ones((B, 1), bool), jnp.swapaxes(gold, 0, 1)[:, :-1]], 1)
  return jnp.swapaxes(logits, 0, 1), weights, fed_gold
