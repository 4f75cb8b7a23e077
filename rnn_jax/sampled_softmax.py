r"""Sampled softmax (Jean et al. 2015; TensorFlow's `sampled_softmax_loss`): the NLL of a
large-vocabulary softmax, trained on the true word and S words drawn from a proposal Q.

For a hidden state h `[D]`, output weights W `[D, V]`, b `[V]`, target y and samples
s_1..s_S drawn with replacement from Q:

    o_w    = h W_w + b_w − log(S · Q(w))        # logits corrected by the expected count
    nll    = −o_y + log(exp(o_y) + Σ_j [s_j ≠ y] exp(o_{s_j}))

The subtraction of log(S Q(w)) makes the softmax over {y} ∪ samples an estimate of the
full one (Jean et al.'s importance sampling); samples equal to the target ("accidental
hits") are left out. The S samples are shared by the whole batch, so the cost per token
is S + 1 dot products instead of V, one `[N, D] x [D, S]` matmul. With S = V samples
that are every word once and Q uniform, the correction is 0 and the loss is the full
softmax's NLL exactly (tests/test_sampled_softmax.py checks it). Evaluate with the full
softmax: the sampled loss is a training objective, not a perplexity.

    log_q = log_uniform_proposal(V)                        # words sorted by frequency
    samples, log_counts = draw(key, log_q, 512)
    nll = sampled_nll(h, w_out, b_out, targets, samples, log_counts)   # [N]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def log_uniform_proposal(vocab_size: int) -> Array:
  """log Q(r) of the log-uniform (Zipfian) distribution over ids r = 0..V-1, for a
  vocabulary sorted by decreasing frequency: Q(r) = log((r + 2) / (r + 1)) / log(V + 1)
  (TensorFlow's `log_uniform_candidate_sampler`). `[V]`."""
  if vocab_size < 1:
    raise ValueError(f"vocab_size must be positive, got {vocab_size}")
  r = jnp.arange(vocab_size, dtype=jnp.float32)
  return jnp.log(jnp.log1p(1.0 / (r + 1.0))) - jnp.log(jnp.log(vocab_size + 1.0))


def unigram_proposal(counts, power: float = 1.0) -> Array:
  """log Q(w) ∝ counts[w]^power (`[V]`); words never seen get the smallest positive count."""
  counts = jnp.asarray(counts, jnp.float32)
  counts = jnp.maximum(counts, jnp.min(jnp.where(counts > 0, counts, jnp.inf)))
  logits = power * jnp.log(counts)
  return logits - jax.scipy.special.logsumexp(logits)


def draw(key: Array, log_q: Array, num_samples: int) -> tuple[Array, Array]:
  """S ids drawn with replacement from Q, and log(S · Q(w)) for every w (`[S]`, `[V]`)."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be positive, got {num_samples}")
  samples = jax.random.categorical(key, log_q, shape=(num_samples,))
  return samples, jnp.log(float(num_samples)) + log_q


def sampled_nll(h: Array, w: Array, b: Array, targets: Array, samples: Array,
                log_expected_counts: Array) -> Array:
  """The sampled-softmax NLL of each row (module docstring).

  Args:
    h: hidden states `[*N, D]`.
    w: output weights `[D, V]`; b: biases `[V]`.
    targets: target ids `[*N]`.
    samples: sampled ids `[S]`, shared by every row.
    log_expected_counts: log(S Q(w)) `[V]` (from `draw`), or 0 for no correction.

  Returns:
    `[*N]` NLL per row. Gradients reach only W's and b's target and sampled columns.
  """
  log_counts = jnp.broadcast_to(jnp.asarray(log_expected_counts, h.dtype), b.shape)
  w_true = jnp.moveaxis(jnp.take(w, targets, axis=1), 0, -1)  # [*N, D]
  true_logit = jnp.sum(h * w_true, axis=-1) + b[targets] - log_counts[targets]  # [*N]
  sampled_logits = h @ w[:, samples] + (b[samples] - log_counts[samples])  # [*N, S]
  hit = samples == targets[..., None]                         # [*N, S]
  sampled_logits = jnp.where(hit, -jnp.inf, sampled_logits)
  logits = jnp.concatenate([true_logit[..., None], sampled_logits], axis=-1)  # [*N, 1 + S]
  return jax.nn.logsumexp(logits, axis=-1) - true_logit
