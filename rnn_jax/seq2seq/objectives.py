"""Training objectives of a decoder, chosen by name: cross-entropy (teacher forcing),
scheduled sampling, MIXER and self-critical sequence training.

An experiment keeps its own cross-entropy (label smoothing, normalisation) and hands it
in as `xent(logits [B, U, V]) -> (loss, metrics)`; `loss` runs the chosen method on the
`Decoder` contract and returns `(loss, metrics)`:

    method = objectives.Method("scst", start_step=2000)
    loss, metrics = objectives.loss(method, decoder, params, memory, start, targets,
                                    target_lengths, key, step, xent=xent, eos=EOS,
                                    reward=objectives.host_reward(my_bleu))

- `xent`: teacher forcing (`forcing.teacher_forcing`), then `xent`.
- `scheduled_sampling`: `forcing.scheduled_sampling` with ε from the schedule at `step`
  (Bengio et al. 2015), then `xent` on its logits.
- `mixer`: MIXER (Ranzato et al. 2016): `mixer.rollout` with Δ = `delta_step` more
  tokens every `delta_every` steps, rewards on the host, `mixer.loss` with the linear
  baseline in `params[BASELINE]` (add it with `mixer.init_baseline`).
- `scst`: self-critical training (Rennie et al. 2017): a sampled output's reward minus
  the greedy decode's, on `decoding.sample`'s differentiable log-probs.

Before `start_step` every method is plain cross-entropy (sequence-level methods start
from a trained model; MIXER's own Δ schedule also starts at pure cross-entropy). The
choice is a `lax.cond` on the step, so one jitted step serves the whole run.

Rewards run on the host (`host_reward`: a `jax.pure_callback` from inside the jitted
step) because BLEU and CIDEr are string functions; `reward(tokens [B, T], lengths [B],
targets [B, U], target_lengths [B]) -> [B]`, lengths without EOS.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.seq2seq import decoding, forcing, mixer, sequence_losses
from rnn_jax.seq2seq.decoder import Decoder

METHODS = ("xent", "scheduled_sampling", "mixer", "scst")
BASELINE = "mixer_baseline"  # MIXER's regressor's key in the params


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method and its schedule's constants (module docstring)."""
  name: str = "xent"
  start_step: int = 0                 # plain cross-entropy before this step
  schedule: str = "inverse_sigmoid"   # scheduled sampling's ε: linear, exponential, ...
  k: float = 1000.0                   # the schedule's k
  c: float = 1e-4                     # linear: ε = max(minimum, k - c i)
  minimum: float = 0.0
  feed: str = "sample"                # sample, argmax or uniform
  delta_step: int = 2                 # MIXER: Δ grows by this many tokens ...
  delta_every: int = 1000             # ... every this many steps
  temperature: float = 1.0            # sampling temperature of the sampled methods

  def __post_init__(self):
    if self.name not in METHODS:
      raise ValueError(f"training method: expected one of {METHODS}, got {self.name!r}")
    if self.schedule not in forcing.SCHEDULES:
      raise ValueError(f"schedule: expected one of {tuple(forcing.SCHEDULES)}, got "
                       f"{self.schedule!r}")
    if self.feed not in forcing.FEEDS:
      raise ValueError(f"feed: expected one of {forcing.FEEDS}, got {self.feed!r}")
    if self.delta_step < 1 or self.delta_every < 1:
      raise ValueError(f"MIXER: delta_step and delta_every must be positive, got "
                       f"{self.delta_step} and {self.delta_every}")
    if self.temperature <= 0:
      raise ValueError(f"temperature: expected > 0, got {self.temperature}")

  @property
  def sequence_level(self) -> bool:
    return self.name in ("mixer", "scst")

  def epsilon(self, step):
    """Scheduled sampling's ε at training step `step` (counted from `start_step`)."""
    i = jnp.maximum(jnp.asarray(step) - self.start_step, 0)
    if self.schedule == "linear":
      return forcing.linear_schedule(i, self.k, self.c, self.minimum)
    if self.schedule == "exponential":
      return forcing.exponential_schedule(i, self.k)
    return forcing.inverse_sigmoid_schedule(i, self.k)

  def delta(self, step, max_delta: int):
    """MIXER's Δ at training step `step` (counted from `start_step`)."""
    i = jnp.maximum(jnp.asarray(step) - self.start_step, 0)
    return mixer.delta_schedule(i, self.delta_step, self.delta_every, max_delta)


RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def host_reward(fn: RewardFn):
  """`fn` (numpy in, `[B]` rewards out) as a function callable inside `jit`, through
  `jax.pure_callback`; its output carries no gradient."""

  def host(tokens, lengths, targets, target_lengths):
    return np.asarray(fn(np.asarray(tokens), np.asarray(lengths), np.asarray(targets),
                         np.asarray(target_lengths)), np.float32)

  def reward(tokens, lengths, targets, target_lengths):
    out = jax.ShapeDtypeStruct(lengths.shape, jnp.float32)
    args = [jax.lax.stop_gradient(a) for a in (tokens, lengths, targets, target_lengths)]
    return jax.lax.stop_gradient(
        jax.pure_callback(host, out, *args, vmap_method="sequential"))

  return reward


def loss(method: Method, decoder: Decoder, params, memory, start, targets, target_lengths,
         key, step, *, xent: Callable, eos: int, pad: int = 0, reward=None, step_kw=None,
         teacher_loss: Callable | None = None, reward_refs: tuple | None = None,
         attention_penalty: Callable | None = None):
  """The loss of `method` for one batch (module docstring).

  Args:
    targets: `[B, U]` gold outputs with EOS at `target_lengths - 1`.
    target_lengths: `[B]` with EOS.
    step: the training step (a scalar) the schedules read.
    xent: `xent(logits [B, U, V]) -> (loss, metrics)`, the experiment's cross-entropy.
    reward: `host_reward(...)`'s function; needed by mixer and scst.
    step_kw: keywords for `decoder.step` while training (dropout: `training`, `key`),
      used by teacher forcing and scheduled sampling (a `key` is folded with the step
      index t at each step).
    teacher_loss: `teacher_loss(params) -> (loss, metrics)`, the experiment's own
      teacher-forced loss (e.g. a fused whole-sequence decoder) used for `xent` and
      before `start_step`; default: `forcing.teacher_forcing` on the contract, then `xent`.
    reward_refs: the reward's third and fourth arguments, batch-major arrays that say what
      each row is scored against; default `(targets, target_lengths - 1)`, the one gold
      output. Captioning passes each row's image index, so that the host scores a caption
      against all of its image's references.
    attention_penalty: `attention_penalty(weights [B, U, S]) -> scalar`, added to the
      teacher-forced and the scheduled-sampling losses (reported as `attention_penalty`):
      e.g. Show, Attend and Tell's doubly stochastic term. Not used with `teacher_loss`.

  Returns:
    `(loss, metrics)`; metrics always hold `xent`-side metrics or the method's own, and
    every method reports the same keys (zeros where they do not apply) so that the two
    branches of the `start_step` switch agree.
  """
  step_kw = dict(step_kw or {})
  if method.sequence_level and reward is None:
    raise ValueError(f"training method {method.name}: needs a reward function")
  targets = jnp.asarray(targets, jnp.int32)
  if reward_refs is None:
    reward_refs = (targets, target_lengths - 1)

  def teacher(params):
    if teacher_loss is not None:
      return teacher_loss(params)
    logits, weights = forcing.teacher_forcing(decoder, params, memory, start, targets,
                                              step_kw=step_kw)
    return with_penalty(xent(logits), weights)

  def with_penalty(value_metrics, weights):
    if attention_penalty is None:
      return value_metrics
    value, metrics = value_metrics
    penalty = attention_penalty(weights)
    return value + penalty, dict(metrics, attention_penalty=penalty)

  def method_loss(params):
    if method.name == "xent":
      return teacher(params)
    if method.name == "scheduled_sampling":
      logits, weights, gold = forcing.scheduled_sampling(
          decoder, params, memory, start, targets, key, method.epsilon(step), feed=method.feed,
          temperature=method.temperature, step_kw=step_kw)
      value, metrics = with_penalty(xent(logits), weights)
      mask = jnp.arange(targets.shape[1])[None, :] < target_lengths[:, None]
      metrics = dict(metrics, gold_fed=jnp.sum(gold * mask) / jnp.maximum(mask.sum(), 1))
      return value, metrics
    if method.name == "mixer":
      delta = method.delta(step, targets.shape[1])
      out = mixer.rollout(decoder, params, memory, start, targets, target_lengths, delta, key,
                          eos=eos, pad=pad, temperature=method.temperature)
      lengths = jnp.sum(out.xent_mask | out.rl_mask, axis=1) - jnp.any(out.tokens == eos, 1)
      rewards = reward(out.tokens, lengths, *reward_refs)
      value, metrics = mixer.loss(out, targets, rewards, params[BASELINE])
      return value, dict(metrics, reward=jnp.mean(rewards), delta=jnp.asarray(delta, jnp.float32))
    # scst
    U = targets.shape[1]
    sampled = decoding.sample(decoder, params, memory, start, key, max_len=U, eos=eos, pad=pad,
                              temperature=method.temperature)
    greedy = decoding.sample(decoder, jax.lax.stop_gradient(params), memory, start, key,
                             max_len=U, eos=eos, pad=pad, greedy_=True)
    r = reward(sampled.tokens, sampled.lengths, *reward_refs)
    r_greedy = reward(greedy.tokens, greedy.lengths, *reward_refs)
    value = sequence_losses.self_critical_loss(sampled.log_probs, sampled.mask, r, r_greedy)
    return value, {"reward": jnp.mean(r), "greedy_reward": jnp.mean(r_greedy)}

  if method.name == "xent" or method.start_step <= 0:
    return method_loss(params)

  # Before start_step: cross-entropy; both branches report the union of the metrics.
  shapes = jax.eval_shape(lambda p: (teacher(p)[1], method_loss(p)[1]), params)
  names = sorted(set(shapes[0]) | set(shapes[1]))

  def padded(fn):
    def run(p):
      value, metrics = fn(p)
      return value, {n: jnp.asarray(metrics.get(n, 0.0), jnp.float32) for n in names}
    return run

  return jax.lax.cond(jnp.asarray(step) < method.start_step, padded(teacher),
                      padded(method_loss), params)
