"""Greedy, sampling and beam-search decoding, all under `jit` with fixed shapes.

Beam search follows GNMT (Wu et al. 2016, eq. 14) as tensorflow/nmt does:

    s(Y, X) = log P(Y | X) / lp(Y) + cp(X; Y)
    lp(Y)   = (5 + |Y|)^α / (5 + 1)^α
    cp(X;Y) = β Σ_{i in source} log(min(Σ_j p_{i,j}, 1.0))

where p_{i,j} is the attention weight of target step j on source position i.
Hypotheses are ranked by s at every step; a hypothesis that produced EOS stays
in the beam unchanged (it only extends with EOS at no cost), and the coverage
penalty counts for hypotheses finished at an earlier step; the final choice
applies both penalties to every hypothesis. With one beam this is exactly
greedy decoding: at each step the candidates of the live beam share the
length and the coverage, so they are ranked by the token's log-probability.

Every decoder takes `max_len`, the length of its output buffer (`[B, max_len]`),
and optionally `max_lengths [B]`, a limit per sentence (`decoding_limits`):
row b stops after `max_lengths[b]` steps, as if decoded alone with `max_len =
max_lengths[b]`, so no output depends on the other rows of its batch. An
output that reaches its limit without EOS is cut: its length equals the limit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def decoding_limits(source_lengths, ratio: float, cap: int) -> np.ndarray:
  """Decoding steps allowed per sentence: `[B]` source lengths -> `[B]` limits.

  tensorflow/nmt (nmt/model.py, `_get_infer_maximum_iterations`) decodes for at
  most `round(2.0 * max source length)` steps when `tgt_max_len_infer` is unset;
  here `ratio` (`--decode_length_ratio`) replaces its 2.0 and the limit is each
  sentence's own, not its batch's longest: `round(ratio * pieces)` with `pieces`
  the source's sentencepiece tokens (its `<2xx>` token and EOS not counted), at
  least 1 and at most `cap` (`--max_target_len`, the output buffer). A ratio of 0
  gives `cap` to every sentence.

  Args:
    source_lengths: `[B]` lengths of the encoded sources, `<2xx>` and EOS included.
    ratio: decoding steps per source piece; 0 for the fixed cap.
    cap: the most steps any sentence gets.

  Returns:
    `[B]` int32 limits.
  """
  source_lengths = np.asarray(source_lengths)
  if ratio <= 0:
    return np.full(source_lengths.shape, cap, np.int32)
  pieces = np.maximum(source_lengths - 2, 0)
  return np.clip(np.rint(ratio * pieces), 1, cap).astype(np.int32)  # rint: tf.round's halves


def length_penalty(length: Array, alpha: float) -> Array:
  """GNMT's lp(Y) = ((5 + |Y|) / 6)^α."""
  return ((5.0 + length) / 6.0) ** alpha


def coverage_penalty(coverage: Array, source_mask: Array, beta: float) -> Array:
  """GNMT's cp = β Σ_i log(min(coverage_i, 1)) over real source positions; `[..., S]` -> `[...]`."""
  logs = jnp.log(jnp.clip(coverage, 1e-20, 1.0))
  return beta * jnp.sum(jnp.where(source_mask, logs, 0.0), axis=-1)


class Decoded(NamedTuple):
  tokens: Array    # [B, U] ids, EOS and what follows it replaced by padding (0)
  lengths: Array   # [B] tokens before EOS (the row's limit when it was cut)
  weights: Array   # [B, U, S] row u: the attention that fed output token u (model.token_attention)
  scores: Array    # [B] the hypothesis' score (log-prob for greedy / sampling)


def _finish(tokens, weights, scores, eos: int, pad: int) -> Decoded:
  is_eos = tokens == eos
  seen = jnp.cumsum(is_eos, axis=1) > 0  # at or after the first EOS
  lengths = jnp.argmax(is_eos, axis=1)
  lengths = jnp.where(is_eos.any(1), lengths, tokens.shape[1])
  return Decoded(jnp.where(seen, pad, tokens), lengths, weights, scores)


def _limits(max_lengths, B: int, max_len: int) -> Array:
  """`[B]` steps per row: `max_lengths` within [1, max_len], or `max_len` for every row."""
  if max_lengths is None:
    return jnp.full((B,), max_len, jnp.int32)
  return jnp.clip(jnp.asarray(max_lengths, jnp.int32), 1, max_len)


def start_tokens(source, bos: int | None, shape):
  """The decoder's first input: `bos`, or each row's target-language token `source[:, 0]`
  when `bos` is None (`--decoder_start=language`), broadcast to `shape` (`[B]` or `[B, K]`)."""
  if bos is None:
    return jnp.broadcast_to(source[:, 0].reshape(-1, *([1] * (len(shape) - 1))), shape).astype(jnp.int32)
  return jnp.full(shape, bos, jnp.int32)


def greedy_or_sample(model, params, source, source_lengths, *, max_len: int, bos: int | None,
                     eos: int, pad: int = 0, temperature: float = 0.0, key=None,
                     max_lengths=None) -> Decoded:
  """Greedy decoding (`temperature == 0`) or ancestral sampling from softmax(logits / T).

  Row b stops at EOS or after `max_lengths[b]` steps (default `max_len`).
  """
  if temperature > 0 and key is None:
    raise ValueError("key: sampling needs a PRNG key")
  B = source.shape[0]
  limit = _limits(max_lengths, B, max_len)
  encoded = model.encode(params, source, source_lengths)
  state = model.initial_decoder_state(encoded)

  def body(carry):
    t, state, tokens, done, score, out, attn = carry
    state, log_probs, weights = model.decode_step(params, encoded.memory, state, tokens)
    if temperature > 0:
      nxt = jax.random.categorical(jax.random.fold_in(key, t), log_probs / temperature)
    else:
      nxt = jnp.argmax(log_probs, axis=-1)
    nxt = jnp.where(done, eos, nxt)
    score = score + jnp.where(done, 0.0, jnp.take_along_axis(log_probs, nxt[:, None], 1)[:, 0])
    out = out.at[:, t].set(nxt)
    attn = attn.at[:, t].set(weights)
    # A row at its limit is done: what follows stays EOS, so its length is the limit.
    return t + 1, state, nxt, done | (nxt == eos) | (t + 1 >= limit), score, out, attn

  S = source.shape[1]
  init = (jnp.int32(0), state, start_tokens(source, bos, (B,)), jnp.zeros((B,), bool),
          jnp.zeros((B,)), jnp.full((B, max_len), eos, jnp.int32), jnp.zeros((B, max_len, S)))
  # Stops as soon as every row has produced EOS.
  _, _, _, _, score, tokens, weights = jax.lax.while_loop(
      lambda c: (c[0] < max_len) & ~jnp.all(c[3]), body, init)
  return _finish(tokens, model.token_attention(weights), score, eos, pad)


def _tile(tree, K: int):
  """Repeats every `[B, ...]` leaf K times along the batch: `[B * K, ...]`, beams adjacent."""
  return jax.tree_util.tree_map(lambda a: jnp.repeat(a, K, axis=0), tree)


def beam_search(model, params, source, source_lengths, *, beam_size: int, max_len: int,
                bos: int | None, eos: int, pad: int = 0, alpha: float = 0.0,
                beta: float = 0.0, max_lengths=None) -> Decoded:
  """Batched beam search with GNMT's length and coverage penalties (module docstring).

  After `max_lengths[b]` steps (default `max_len`) every hypothesis of row b is
  finished as it stands, as when the loop ends at `max_len`: the final choice
  ranks them with both penalties.
  """
  B, S = source.shape
  K = beam_size
  limit = _limits(max_lengths, B, max_len)
  encoded = model.encode(params, source, source_lengths)
  memory = _tile(encoded.memory, K)  # [B*K, S, ...]
  source_mask = encoded.memory.mask[:, None, :]  # [B, 1, S]
  V = model.V
  vocab = jnp.arange(V)
  eos_only = jnp.where(vocab == eos, 0.0, -jnp.inf)  # a finished beam's only continuation

  def gather(a, parent):  # a: [B, K, ...], parent: [B, K]
    return jnp.take_along_axis(a, parent.reshape(B, K, *([1] * (a.ndim - 2))), axis=1)

  def body(carry):
    t, state, tokens, logp, length, finished, coverage, seqs, attn = carry
    state, log_probs, weights = model.decode_step(params, memory, state, tokens.reshape(-1))
    log_probs, weights = log_probs.reshape(B, K, V), weights.reshape(B, K, S)
    cand_logp = logp[..., None] + jnp.where(finished[..., None], eos_only, log_probs)  # [B,K,V]
    cand_length = length + jnp.where(finished, 0, 1)  # [B, K]
    cand_coverage = coverage + jnp.where(finished[..., None], 0.0, weights)  # [B, K, S]
    # The coverage penalty counts for hypotheses finished at an earlier step (as in
    # tensorflow/nmt), so all candidates of a live beam share it.
    cp = coverage_penalty(cand_coverage, source_mask, beta)[..., None]
    scores = (cand_logp / length_penalty(cand_length, alpha)[..., None]
              + jnp.where(finished[..., None], cp, 0.0))
    _, index = jax.lax.top_k(scores.reshape(B, K * V), K)  # [B, K]
    parent, token = index // V, index % V
    logp = jnp.take_along_axis(cand_logp.reshape(B, K * V), index, axis=1)
    finished = gather(finished, parent) | (token == eos) | (t + 1 >= limit)[:, None]
    length, coverage = gather(cand_length, parent), gather(cand_coverage, parent)
    seqs = gather(seqs, parent).at[:, :, t].set(token)
    attn = gather(attn, parent).at[:, :, t].set(gather(weights, parent))
    state = jax.tree_util.tree_map(
        lambda a: gather(a.reshape(B, K, *a.shape[1:]), parent).reshape(B * K, *a.shape[1:]),
        state)
    return t + 1, state, token, logp, length, finished, coverage, seqs, attn

  init = (jnp.int32(0),
          _tile(model.initial_decoder_state(encoded), K),
          start_tokens(source, bos, (B, K)),
          jnp.tile(jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf), (B, 1)),  # one live beam
          jnp.zeros((B, K), jnp.int32),
          jnp.zeros((B, K), bool),
          jnp.zeros((B, K, S)),
          jnp.full((B, K, max_len), eos, jnp.int32),
          jnp.zeros((B, K, max_len, S)))
  # Stops as soon as every hypothesis of every row has finished.
  _, _, _, logp, length, _, coverage, seqs, attn = jax.lax.while_loop(
      lambda c: (c[0] < max_len) & ~jnp.all(c[5]), body, init)
  final = logp / length_penalty(length, alpha) + coverage_penalty(coverage, source_mask, beta)
  best = jnp.argmax(final, axis=1)  # [B]
  pick = lambda a: jnp.take_along_axis(a, best.reshape(B, *([1] * (a.ndim - 1))), axis=1)[:, 0]
  return _finish(pick(seqs), model.token_attention(pick(attn)), pick(final), eos, pad)
