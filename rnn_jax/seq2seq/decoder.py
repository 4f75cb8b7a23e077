"""The decoder contract shared by every sequence model that writes tokens.

A decoder is a bundle of pure functions over a `memory`, whatever its encoder
produced (source states `[B, S, D]` with their mask for translation, image
regions `[B, R, D]` for captioning, or nothing for a language model):

    decoder = Decoder(init_state, step, vocab_size)
    state = decoder.init_state(params, memory)
    state, logits, attention = decoder.step(params, memory, state, prev_tokens)
    #   prev_tokens [N] ids -> logits [N, V], attention [N, S] or None

Every leaf of `memory` and of the state is batch-major (`[N, ...]`), so beam
search can repeat them per beam and gather them by parent. The decoding
routines in `rnn_jax.seq2seq.decoding` (greedy, sampling, beam search) read
only this contract.

`step` may take `training` and `key` keywords (dropout) when it lists them in
`step_kwargs`; decoding calls it without them (inference). `token_attention`
maps the attention computed at each step, `[..., U, S]`, to the attention that
fed each output token; the identity for most decoders, a shift by one for
GNMT's arrangement, whose upper layers read the previous step's context.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


def _identity(weights):
  return weights


class Decoder(NamedTuple):
  """A decoder as pure functions (module docstring).

  Attributes:
    init_state: `init_state(params, memory) -> state`.
    step: `step(params, memory, state, prev_tokens [N], **kw) -> (state, logits [N, V],
      attention [N, S] | None)`.
    vocab_size: V.
    token_attention: `[..., U, S]` attention per step -> per output token.
    step_kwargs: the keywords `step` takes beyond its four arguments ("training", "key").
    readout: `readout(state) -> [N, D]`, the decoder's hidden state as features (what
      MIXER's baseline regresses on); None if the decoder offers none.
  """
  init_state: Callable[[Any, Any], Any]
  step: Callable[..., tuple[Any, jax.Array, jax.Array | None]]
  vocab_size: int
  token_attention: Callable[[jax.Array], jax.Array] = _identity
  step_kwargs: frozenset = frozenset()
  readout: Callable[[Any], jax.Array] | None = None


def ensemble(decoders: list[Decoder] | tuple[Decoder, ...]) -> Decoder:
  """N decoders decoded together: one `Decoder` whose params, memory and state are tuples
  (one entry per model), whose logits are the models' log-probs averaged per step, and
  whose attention is their mean (None if any model has none).

  Decoding renormalizes the averaged log-probs (`log_softmax`), so the ensemble's
  distribution is the normalized geometric mean of the models'. Give it
  `params = (params_1, ..., params_N)` and `memory = (memory_1, ..., memory_N)`.
  """
  decoders = tuple(decoders)
  if not decoders:
    raise ValueError("ensemble: needs at least one decoder")
  V = decoders[0].vocab_size
  if any(d.vocab_size != V for d in decoders):
    raise ValueError(f"ensemble: every decoder needs the same vocabulary, got "
                     f"{[d.vocab_size for d in decoders]}")

  def init_state(params, memory):
    return tuple(d.init_state(p, m) for d, p, m in zip(decoders, params, memory))

  def step(params, memory, state, tokens):
    outs = [d.step(p, m, s, tokens) for d, p, m, s in zip(decoders, params, memory, state)]
    log_probs = sum(jax.nn.log_softmax(o[1]) for o in outs) / len(outs)
    weights = [o[2] for o in outs]
    attention = None if any(w is None for w in weights) else sum(weights) / len(weights)
    return tuple(o[0] for o in outs), log_probs, attention

  readout = None
  if all(d.readout is not None for d in decoders):
    readout = lambda state: jnp.concatenate([d.readout(s) for d, s in zip(decoders, state)], -1)
  return Decoder(init_state, step, V, decoders[0].token_attention, readout=readout)
