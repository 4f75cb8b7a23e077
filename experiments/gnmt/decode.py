"""GNMT's decoding: the library's (`rnn_jax.seq2seq.decoding`) on GNMT's decoder.

Every function here encodes the source and decodes with the library on
`model.decoder()`; see `rnn_jax.seq2seq.decoding` for greedy, sampling and beam
search with GNMT's length and coverage penalties. What is GNMT's own: the
decoding limits count a source's sentencepiece pieces (its `<2xx>` token and EOS
left out), and the first input is BOS or the source's `<2xx>` token.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rnn_jax.seq2seq.decoding import (Decoded, coverage_penalty, length_penalty,  # noqa: F401
                                      proportional_limits)
from rnn_jax.seq2seq import decoding


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
  pieces = np.maximum(np.asarray(source_lengths) - 2, 0)
  return proportional_limits(pieces, ratio, cap)


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
  encoded = model.encode(params, source, source_lengths)
  return decoding.greedy(model.decoder(), params, encoded,
                         start_tokens(source, bos, (source.shape[0],)), max_len=max_len,
                         eos=eos, pad=pad, temperature=temperature, key=key,
                         max_lengths=max_lengths)


def beam_search(model, params, source, source_lengths, *, beam_size: int, max_len: int,
                bos: int | None, eos: int, pad: int = 0, alpha: float = 0.0,
                beta: float = 0.0, max_lengths=None) -> Decoded:
  """Batched beam search with GNMT's length and coverage penalties (`decoding.beam_search`)."""
  encoded = model.encode(params, source, source_lengths)
  return decoding.beam_search(model.decoder(), params, encoded,
                              start_tokens(source, bos, (source.shape[0],)),
                              beam_size=beam_size, max_len=max_len, eos=eos, pad=pad,
                              alpha=alpha, beta=beta, source_mask=encoded.memory.mask,
                              max_lengths=max_lengths)
