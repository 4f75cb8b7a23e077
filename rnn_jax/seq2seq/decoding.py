"""Greedy, sampling and beam-search decoding on the `Decoder` contract, under `jit`.

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

Every routine takes `start [B]`, the first input token of each row (BOS, or a
token that says what to write, such as a target language), `max_len`, the
length of its output buffer (`[B, max_len]`), and optionally `max_lengths [B]`,
a limit per row (`proportional_limits` gives tensorflow/nmt's "twice the source
length"): row b stops after `max_lengths[b]` steps, as if decoded alone with
`max_len = max_lengths[b]`, so no output depends on the other rows of its
batch. An output that reaches its limit without EOS is cut: its length equals
the limit. Log-probabilities are `log_softmax` of the decoder's logits.

`greedy` and `beam_search` stop as soon as every row is done (`while_loop`);
`sample` always runs `max_len` steps (`scan`), so its log-probs can be
differentiated (REINFORCE).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.seq2seq.decoder import Decoder

Array = jax.Array


def proportional_limits(lengths, ratio: float, cap: int) -> np.ndarray:
  """Decoding steps allowed per row: `round(ratio * lengths)`, at least 1, at most `cap`.

  tensorflow/nmt (nmt/model.py, `_get_infer_maximum_iterations`) decodes for at
  most `round(2.0 * source length)` steps; a ratio of 0 gives `cap` to every row.
  Rounds halves to even, as `tf.round` does.

  Args:
    lengths: `[B]` source lengths, in the units the ratio counts (e.g. subword pieces).
    ratio: decoding steps per unit of length; 0 for the fixed cap.
    cap: the most steps any row gets (the output buffer's length).

  Returns:
    `[B]` int32 limits.
  """
  lengths = np.asarray(lengths)
  if ratio <= 0:
    return np.full(lengths.shape, cap, np.int32)
  return np.clip(np.rint(ratio * lengths), 1, cap).astype(np.int32)


def length_penalty(length: Array, alpha: float) -> Array:
  """GNMT's lp(Y) = ((5 + |Y|) / 6)^α."""
  return ((5.0 + length) / 6.0) ** alpha


def coverage_penalty(coverage: Array, source_mask: Array, beta: float) -> Array:
  """GNMT's cp = β Σ_i log(min(coverage_i, 1)) over real source positions; `[..., S]` -> `[...]`."""
  logs = jnp.log(jnp.clip(coverage, 1e-20, 1.0))
  return beta * jnp.sum(jnp.where(source_mask, logs, 0.0), axis=-1)


class Decoded(NamedTuple):
  tokens: Array          # [B, U] ids, EOS and what follows it replaced by padding
  lengths: Array         # [B] tokens before EOS (the row's limit when it was cut)
  weights: Array | None  # [B, U, S] row u: the attention that fed output token u
  scores: Array          # [B] the hypothesis' score (its log-prob for greedy and sampling)


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


def _attention_shape(decoder: Decoder, params, memory, state, tokens):
  """The shape and dtype of `step`'s attention (None when the decoder has none)."""
  out = jax.eval_shape(lambda s, t: decoder.step(params, memory, s, t), state, tokens)
  return out[2]


def greedy(decoder: Decoder, params, memory, start, *, max_len: int, eos: int, pad: int = 0,
           temperature: float = 0.0, key=None, max_lengths=None) -> Decoded:
  """Greedy decoding (`temperature == 0`) or ancestral sampling from softmax(logits / T).

  Row b stops at EOS or after `max_lengths[b]` steps (default `max_len`).
  """
  if temperature > 0 and key is None:
    raise ValueError("key: sampling needs a PRNG key")
  start = jnp.asarray(start, jnp.int32)
  B = start.shape[0]
  limit = _limits(max_lengths, B, max_len)
  state = decoder.init_state(params, memory)
  attention = _attention_shape(decoder, params, memory, state, start)

  def body(carry):
    t, state, tokens, done, score, out, attn = carry
    state, logits, weights = decoder.step(params, memory, state, tokens)
    log_probs = jax.nn.log_softmax(logits)
    if temperature > 0:
      nxt = jax.random.categorical(jax.random.fold_in(key, t), log_probs / temperature)
    else:
      nxt = jnp.argmax(log_probs, axis=-1)
    nxt = jnp.where(done, eos, nxt)
    score = score + jnp.where(done, 0.0, jnp.take_along_axis(log_probs, nxt[:, None], 1)[:, 0])
    out = out.at[:, t].set(nxt)
    if attn is not None:
      attn = attn.at[:, t].set(weights)
    # A row at its limit is done: what follows stays EOS, so its length is the limit.
    return t + 1, state, nxt, done | (nxt == eos) | (t + 1 >= limit), score, out, attn

  attn = (None if attention is None else
          jnp.zeros((B, max_len, attention.shape[-1]), attention.dtype))
  init = (jnp.int32(0), state, start, jnp.zeros((B,), bool), jnp.zeros((B,)),
          jnp.full((B, max_len), eos, jnp.int32), attn)
  # Stops as soon as every row has produced EOS.
  _, _, _, _, score, tokens, weights = jax.lax.while_loop(
      lambda c: (c[0] < max_len) & ~jnp.all(c[3]), body, init)
  weights = None if weights is None else decoder.token_attention(weights)
  return _finish(tokens, weights, score, eos, pad)


class Sampled(NamedTuple):
  tokens: Array     # [B, T] ids; after EOS (or past the row's limit): padding
  log_probs: Array  # [B, T] log p(token_t | ...), 0 where mask is False; differentiable
  mask: Array       # [B, T] True up to and including EOS (or the limit)
  lengths: Array    # [B] tokens before EOS (the limit when the row was cut)


def _top_k_logits(logits: Array, k: int) -> Array:
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits < kth, -jnp.inf, logits)


def sample(decoder: Decoder, params, memory, start, key, *, max_len: int, eos: int,
           pad: int = 0, temperature: float = 1.0, top_k: int = 0, greedy_: bool = False,
           max_lengths=None) -> Sampled:
  """Samples `max_len` steps with `lax.scan` (fixed length, reverse-differentiable).

  Token t of row b is drawn from softmax(top_k(logits) / temperature) (the argmax with
  `greedy_=True`); its log-prob is that of the model's own distribution, log_softmax
  of the logits (what REINFORCE weighs), and carries gradients to `params`. A row
  stops at its first EOS or after `max_lengths[b]` steps: later steps are masked out.
  """
  start = jnp.asarray(start, jnp.int32)
  B = start.shape[0]
  limit = _limits(max_lengths, B, max_len)
  state = decoder.init_state(params, memory)

  def body(carry, t):
    state, tokens, done = carry
    state, logits, _ = decoder.step(params, memory, state, tokens)
    log_probs = jax.nn.log_softmax(logits)
    if greedy_:
      nxt = jnp.argmax(logits, axis=-1)
    else:
      scaled = _top_k_logits(jax.lax.stop_gradient(logits), top_k) / temperature
      nxt = jax.random.categorical(jax.random.fold_in(key, t), scaled)
    live = ~done
    lp = jnp.where(live, jnp.take_along_axis(log_probs, nxt[:, None], 1)[:, 0], 0.0)
    out = jnp.where(live, nxt, pad)
    done = done | (nxt == eos) | (t + 1 >= limit)
    return (state, jnp.where(live, nxt, eos), done), (out, lp, live)

  _, (tokens, log_probs, mask) = jax.lax.scan(
      body, (state, start, jnp.zeros((B,), bool)), jnp.arange(max_len))
  tokens, log_probs, mask = (jnp.swapaxes(a, 0, 1) for a in (tokens, log_probs, mask))
  ended = (tokens == eos) & mask
  lengths = jnp.where(ended.any(1), jnp.argmax(ended, axis=1), mask.sum(1))
  return Sampled(jnp.where(ended, pad, tokens), log_probs, mask, lengths)


def _tile(tree, K: int):
  """Repeats every `[B, ...]` leaf K times along the batch: `[B * K, ...]`, beams adjacent."""
  return jax.tree_util.tree_map(lambda a: jnp.repeat(a, K, axis=0), tree)


def beam_search(decoder: Decoder, params, memory, start, *, beam_size: int, max_len: int,
                eos: int, pad: int = 0, alpha: float = 0.0, beta: float = 0.0,
                source_mask=None, max_lengths=None, n_best: int = 1) -> Decoded:
  """Batched beam search with GNMT's length and coverage penalties (module docstring).

  `source_mask [B, S]` marks the positions the coverage penalty counts (needed when
  `beta != 0`). After `max_lengths[b]` steps (default `max_len`) every hypothesis of
  row b is finished as it stands, as when the loop ends at `max_len`: the final choice
  ranks them with both penalties. `n_best > 1` (at most `beam_size`) returns the best
  n hypotheses of each row, best first: every field gains an axis, `tokens [B, n, U]`,
  `scores [B, n]`.
  """
  if not 1 <= n_best <= beam_size:
    raise ValueError(f"n_best: expected 1 to beam_size={beam_size}, got {n_best}")
  start = jnp.asarray(start, jnp.int32)
  B, K = start.shape[0], beam_size
  limit = _limits(max_lengths, B, max_len)
  state = decoder.init_state(params, memory)
  attention = _attention_shape(decoder, params, memory, state, start)
  if attention is None and beta != 0:
    raise ValueError("beta: the coverage penalty needs a decoder with attention")
  S = 1 if attention is None else attention.shape[-1]
  if source_mask is None:
    if beta != 0:
      raise ValueError("beta: the coverage penalty needs source_mask [B, S]")
    source_mask = jnp.ones((B, S), bool)
  source_mask = source_mask[:, None, :]  # [B, 1, S]
  memory = _tile(memory, K)  # [B*K, ...]
  V = decoder.vocab_size
  vocab = jnp.arange(V)
  eos_only = jnp.where(vocab == eos, 0.0, -jnp.inf)  # a finished beam's only continuation

  def gather(a, parent):  # a: [B, K, ...], parent: [B, K]
    return jnp.take_along_axis(a, parent.reshape(B, K, *([1] * (a.ndim - 2))), axis=1)

  def body(carry):
    t, state, tokens, logp, length, finished, coverage, seqs, attn = carry
    state, logits, weights = decoder.step(params, memory, state, tokens.reshape(-1))
    log_probs = jax.nn.log_softmax(logits)
    if weights is None:
      weights = jnp.zeros((B * K, S))
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
          _tile(state, K),
          jnp.broadcast_to(start[:, None], (B, K)),
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
  if n_best == 1:
    best = jnp.argmax(final, axis=1)  # [B]
    pick = lambda a: jnp.take_along_axis(a, best.reshape(B, *([1] * (a.ndim - 1))), axis=1)[:, 0]
    weights = None if attention is None else decoder.token_attention(pick(attn))
    return _finish(pick(seqs), weights, pick(final), eos, pad)
  order = jax.lax.top_k(final, n_best)[1]  # [B, n], best first
  pick = lambda a: jnp.take_along_axis(a, order.reshape(B, n_best, *([1] * (a.ndim - 2))), axis=1)
  flat = lambda a: a.reshape(B * n_best, *a.shape[2:])
  weights = None if attention is None else flat(decoder.token_attention(pick(attn)))
  out = _finish(flat(pick(seqs)), weights, flat(pick(final)), eos, pad)
  return Decoded(*(None if a is None else a.reshape(B, n_best, *a.shape[1:]) for a in out))
