"""Synthetic training pairs made online by the model itself, for zero-shot directions.

A multilingual model trained on English-centric data has never read, say, a French
source with a `<2de>` token. Both remedies here make such pairs inside the
training step, from the batch and the current params (no gradient flows through
the generation), and train on them beside the real pairs (`--synthetic_pairs`):

    robt   Zhang et al. (2020), random online back-translation: for a pair (x, y)
           with y in language b, draw a language c != b, translate y into c
           greedily (c = fr, b = de: the zero-shot de -> fr direction) and train
           c -> b on (x', y). The target is always a real sentence.
    pivot  Pivot-based synthetic sources (Firat et al. 2016's pseudo-parallel
           corpus, made online): for a pair (x, y) in a -> b, draw a third
           language c (neither a nor b), translate x into c and train c -> b on
           (x', y). From an English source x the translation is a supervised
           direction, so x' is as good as the model's en -> c.

Neither uses a sentence pair of a zero-shot direction: every synthetic source is
the model's own output. The directions are zero-resource rather than strictly
zero-shot; RESULTS.md reports them beside the remedies that make no pairs.

Shapes: B rows of the batch, of which the first `rows` get a synthetic copy; S the
source bucket, U the target bucket, L the generation buffer (`buffer_length`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.gnmt import data as data_lib
from experiments.gnmt import decode as decode_lib

METHODS = ("", "robt", "pivot")


class Languages(NamedTuple):
  """The languages as indices: their `<2xx>` ids, and each training direction's two."""
  tokens: np.ndarray  # [n_lang] the <2xx> id of each language
  source: np.ndarray  # [n_dir] the source language of training direction d (an index)
  target: np.ndarray  # [n_dir] its target language

  @classmethod
  def of(cls, tokenizer, directions) -> "Languages":
    """`directions`: the training directions as (src, tgt), in `Examples.direction`'s order."""
    langs = list(tokenizer.languages)
    return cls(np.array([tokenizer.lang_token(l) for l in langs], np.int32),
               np.array([langs.index(s) for s, _ in directions], np.int32),
               np.array([langs.index(t) for _, t in directions], np.int32))


def draw_other(key, exclude_a, exclude_b, num_languages: int):
  """A language drawn uniformly from those not in {a, b} per row (a may equal b).

  `[N]` indices a, b -> `[N]` indices: draw r among the allowed count, then step over
  the excluded indices in increasing order.
  """
  lo, hi = jnp.minimum(exclude_a, exclude_b), jnp.maximum(exclude_a, exclude_b)
  allowed = num_languages - 1 - (exclude_a != exclude_b).astype(jnp.int32)  # [N]
  r = jnp.floor(jax.random.uniform(key, exclude_a.shape) * allowed).astype(jnp.int32)
  c = r + (r >= lo)
  return c + ((c >= hi) & (hi != lo))


def frame_source(tokens, lengths, lang_token):
  """Decoded outputs as sources: `[N, L]` ids (padding after each row's `lengths`), `[N]`
  lengths, `[N]` `<2xx>` ids -> `[N, L + 2]` `[<2xx>] + tokens + [eos]`, `[N]` lengths."""
  N, L = tokens.shape
  source = jnp.concatenate([lang_token[:, None], tokens, jnp.zeros((N, 1), tokens.dtype)], 1)
  source = jnp.where(jnp.arange(L + 2)[None, :] == lengths[:, None] + 1, data_lib.EOS, source)
  return source.astype(jnp.int32), (lengths + 2).astype(jnp.int32)


def buffer_length(source_len: int, target_len: int, max_source_len: int) -> int:
  """L: generated tokens kept, twice the longer bucket, with room for `<2xx>` and EOS."""
  return max(1, min(2 * max(source_len, target_len), max_source_len - 2))


def make_sources(method: str, model, params, batch, languages: Languages, key, *,
                 rows: int, bos, max_source_len: int):
  """The synthetic sources of the first `rows` pairs of `batch`, in their target language.

  Args:
    method: "robt" or "pivot" (see the module docstring).
    model: the GNMT model; `params` its params (the generation sees no gradient).
    batch: the training batch, with `direction [B]` (each row's training direction).
    languages: `Languages.of(tokenizer, training directions)`.
    key: draws each row's language c.
    rows: how many rows (the first ones) get a synthetic source.
    bos: the decoder's first input (`data.start_token`).
    max_source_len: the longest source a model reads (`--max_source_len`).

  Returns:
    `source [rows, L + 2]` (`[<2b>] + x' + [eos]`), `lengths [rows]`, `language [rows]`
    (c, the synthetic source's language) and `cut [rows]` (x' reached its limit).
  """
  if method not in METHODS[1:]:
    raise ValueError(f"method: expected robt or pivot, got {method!r}")
  params = jax.lax.stop_gradient(params)
  direction = batch["direction"][:rows]
  src_lang = jnp.asarray(languages.source)[direction]  # a [rows]
  tgt_lang = jnp.asarray(languages.target)[direction]  # b [rows]
  tokens = jnp.asarray(languages.tokens)
  n_lang = len(languages.tokens)
  if method == "robt":  # translate the target y (b) into c != b
    c = draw_other(key, tgt_lang, tgt_lang, n_lang)
    y, y_len = batch["target_out"][:rows], batch["target_lengths"][:rows]
    read = jnp.concatenate([tokens[c][:, None], y], 1)  # <2c> y eos
    read_len = y_len + 1
  else:  # translate the source x (a) into c, neither a nor b
    c = draw_other(key, src_lang, tgt_lang, n_lang)
    read = batch["source"][:rows].at[:, 0].set(tokens[c])  # <2c> x eos
    read_len = batch["source_lengths"][:rows]
  L = buffer_length(batch["source"].shape[1], batch["target_out"].shape[1], max_source_len)
  pieces = jnp.maximum(read_len - 2, 0)  # tensorflow/nmt's limit: twice the source
  limits = jnp.clip(2 * pieces, 1, L)
  out = decode_lib.greedy_or_sample(model, params, read, read_len, max_len=L, bos=bos,
                                    eos=data_lib.EOS, max_lengths=limits)
  source, lengths = frame_source(out.tokens, out.lengths, tokens[tgt_lang])
  return source, lengths, c, out.lengths >= limits
