"""Attention over a memory: Bahdanau (plain and normalized) and Luong (dot, general).

For a query q `[N, H]` (a decoder state: GNMT's bottom decoder layer's output)
and the memory m `[N, S, M]` (what the encoder produced: a source sentence's
top-layer outputs, or an image's R = S regions) with `source_mask [N, S]`:

    bahdanau:         e_s = v^T tanh(W_q q + W_k m_s)                    (Bahdanau et al. 2015)
    normed_bahdanau:  e_s = g v^T/||v|| tanh(W_q q + W_k m_s + b)        (weight-normed v, as GNMT)
    luong_dot:        e_s = q^T m_s                                      (Luong et al. 2015; M = H)
    luong_general:    e_s = q^T W m_s
    α_s = softmax over valid s of e_s  (padding gets exactly 0)
    a   = Σ_s α_s m_s                                                    # [N, M]

`prepare` computes what depends only on the memory (the keys W_k m_s) once
per source batch, so each decoder step costs one small matmul.
`doubly_stochastic_penalty` is Show, Attend and Tell's regulariser on the attention
of a whole output, Σ_s (1 - Σ_t α_ts)² (Xu et al. 2015).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

TYPES = ("bahdanau", "normed_bahdanau", "luong_dot", "luong_general")


class Memory(NamedTuple):
  values: jax.Array  # [N, S, M] encoder outputs
  keys: jax.Array    # [N, S, A] projected keys (the values for Luong)
  mask: jax.Array    # [N, S] bool, True at real source tokens


def init(key, kind: str, query_size: int, memory_size: int, attention_size: int,
         scale_init: float = 0.0):
  """Parameters of `kind`; normed_bahdanau's scale g starts at `scale_init`, or at
  tensorflow/nmt's 1/sqrt(attention_size) when it is 0."""
  if kind not in TYPES:
    raise ValueError(f"attention: expected one of {TYPES}, got {kind!r}")
  k_q, k_k, k_v = jax.random.split(key, 3)
  glorot = jax.nn.initializers.glorot_uniform()
  if kind in ("bahdanau", "normed_bahdanau"):
    params = {"w_query": glorot(k_q, (query_size, attention_size)),
              "w_key": glorot(k_k, (memory_size, attention_size)),
              "v": jax.random.uniform(k_v, (attention_size,), minval=-0.1, maxval=0.1)}
    if kind == "normed_bahdanau":
      params["g"] = jnp.asarray(scale_init or 1.0 / jnp.sqrt(attention_size), jnp.float32)
      params["b"] = jnp.zeros((attention_size,))
    return params
  if kind == "luong_dot":
    if query_size != memory_size:
      raise ValueError(f"attention: luong_dot needs query size == memory size, got "
                       f"{query_size} and {memory_size}")
    return {}
  return {"w": glorot(k_q, (query_size, memory_size))}


def prepare(params, kind: str, values, mask) -> Memory:
  """Precomputes the keys of `values [N, S, M]` once per source batch."""
  if kind in ("bahdanau", "normed_bahdanau"):
    keys = values @ params["w_key"]  # [N, S, A]
  else:
    keys = values
  return Memory(values, keys, mask)


def attend(params, kind: str, memory: Memory, query):
  """One query per row: `query [N, H]` -> (context `[N, M]`, weights `[N, S]`)."""
  if kind in ("bahdanau", "normed_bahdanau"):
    hidden = memory.keys + (query @ params["w_query"])[:, None, :]  # [N, S, A]
    v = params["v"]
    if kind == "normed_bahdanau":
      hidden = hidden + params["b"]
      v = params["g"] * v / jnp.linalg.norm(v)
    scores = jnp.tanh(hidden) @ v  # [N, S]
  elif kind == "luong_dot":
    scores = jnp.einsum("nsm,nm->ns", memory.keys, query)
  else:
    scores = jnp.einsum("nsm,nm->ns", memory.keys, query @ params["w"])
  scores = jnp.where(memory.mask, scores, -1e9)  # finite: a length-0 source gives no NaN
  weights = jax.nn.softmax(scores, axis=-1)
  weights = jnp.where(memory.mask, weights, 0.0)  # padding gets exactly 0
  context = jnp.einsum("ns,nsm->nm", weights, memory.values)
  return context, weights


def attend_all(params, kind: str, memory: Memory, queries):
  """All decoder steps at once: `queries [N, U, H]` -> (`[N, U, M]`, `[N, U, S]`)."""
  context, weights = jax.vmap(lambda q: attend(params, kind, memory, q), in_axes=1,
                              out_axes=1)(queries)
  return context, weights


def doubly_stochastic_penalty(weights, step_mask):
  """Xu et al. (2015)'s doubly stochastic regulariser, per example: `Σ_s (1 - Σ_t α_ts)²`.

  The softmax makes Σ_s α_ts = 1 at each step; this pushes Σ_t α_ts towards 1 too, so
  that over a caption the model looks at every region about once.

  Args:
    weights: `[B, U, S]` attention at each decoder step.
    step_mask: `[B, U]`, True (or 1) at the steps that count (the valid output tokens).

  Returns:
    `[B]`; scale by λ and average over the batch for the loss.
  """
  coverage = jnp.einsum("bus,bu->bs", weights, step_mask.astype(weights.dtype))  # [B, S]
  return jnp.sum(jnp.square(1.0 - coverage), axis=-1)
