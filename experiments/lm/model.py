"""The language model: embedding -> L recurrent layers -> softmax, with the lecture's regularizers.

    x_t   = E[w_t]                                    # [B, T, H]
    x_t   = dropout(x_t)                              # non-recurrent (Zaremba et al. 2014)
    h^l   = layer_l(dropout(h^{l-1}))                 # L layers, dropout only between them
    p_t   = softmax(dropout(h^L_t) W + b)             # [B, T, V]

Recurrent regularizers wrap the cells (`rnn_jax.regularizers`); the carry of
every layer passes from one batch to the next (truncated BPTT).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax import cells, layers, regularizers


class LanguageModel(NamedTuple):
  init: Any           # init(key) -> params
  apply: Any          # apply(params, carry, inputs, *, training, key) -> (logits, carry, top)
  initial_carry: Any  # initial_carry(batch_size) -> tuple of per-layer carries


def make_cell(config):
  if config.cell == "lstm":
    cell = cells.lstm(config.hidden_size)
  elif config.cell == "gru":
    cell = cells.gru(config.hidden_size)
  else:
    raise ValueError(f"cell: expected lstm or gru, got {config.cell!r}")
  if config.recurrent_dropout > 0:
    cell = regularizers.recurrent_dropout(cell, config.recurrent_dropout)
  if config.state_dropout > 0:
    cell = regularizers.variational_dropout(cell, state_rate=config.state_dropout)
  if config.zoneout_c > 0 or config.zoneout_h > 0:
    rates = {"h_rate": config.zoneout_h}
    if config.cell == "lstm":
      rates["c_rate"] = config.zoneout_c
    cell = regularizers.zoneout(cell, **rates)
  return cell


def build(config, vocab_size: int) -> LanguageModel:
  H, V = config.hidden_size, vocab_size
  cell = make_cell(config)
  network = layers.stack([layers.rnn(cell, implementation=config.rnn_implementation)
                          for _ in range(config.num_layers)],
                         dropout_rate=config.dropout,
                         dropout_per_sequence=config.dropout_per_sequence)
  broadcast = (1,) if config.dropout_per_sequence else ()

  def init(key):
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    params = {
        "embed": jnp.zeros((V, H)),
        "rnn": network.init(k_rnn, H),
        "w_out": jnp.zeros((H, V)),
        "b_out": jnp.zeros((V,)),
    }
    # Zaremba et al.: every parameter, biases included, uniform in [-s, s].
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k_embed, len(leaves))
    s = config.init_scale
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.uniform(k, leaf.shape, leaf.dtype, -s, s)
                  for k, leaf in zip(keys, leaves)])

  def initial_carry(batch_size: int):
    return tuple(cell.initial_carry((batch_size,)) for _ in range(config.num_layers))

  def apply(params, carry, inputs, *, training: bool = False, key=None):
    """`inputs: [B, T]` ids -> logits `[B, T, V]`, the new carry, top outputs `[B, T, H]`."""
    dropping = training and config.dropout > 0
    k_in, k_rnn, k_out = jax.random.split(key, 3) if key is not None else (None,) * 3
    x = jnp.take(params["embed"], inputs, axis=0)  # [B, T, H]
    if dropping:
      x = regularizers.dropout(k_in, x, config.dropout, broadcast_dims=broadcast)
    top, carry = network.apply(params["rnn"], x, initial_carry=carry, training=training,
                               key=k_rnn)  # top: [B, T, H]
    h = regularizers.dropout(k_out, top, config.dropout, broadcast_dims=broadcast) if dropping else top
    logits = h @ params["w_out"] + params["b_out"]  # [B, T, V]
    return logits, carry, top

  return LanguageModel(init, apply, initial_carry)
