"""The activity models: per-step detectors and an attention classifier for highlighting.

Inputs are feature streams `x [B, T, D]` with lengths `[B]`; K activity classes plus the
background (class 0) make K + 1 outputs.

Per-step detectors (`lstm`, `cnn`): logits `[B, T, K + 1]`, a softmax at every step.

    lstm (Ma, Sigal & Sclaroff 2016):  h_t = LSTM^L(drop(x_t), h_{t-1}),
                                       s_t = W_o drop(h_t) + b_o
    cnn (their per-frame baseline):    s_t = W_o drop(relu(W_1 drop(x_t) + b_1)) + b_o

The paper's CNN baseline classifies each frame from its own CNN features; here the
features are given, so it is a one-hidden-layer classifier of x_t alone. Both are causal:
the scores of a prefix are the first rows of the whole video's, so early detection reads
them from one pass over the video (`detect.early_detect_instances`). The losses
(`rnn_jax.ranking_losses.progression_loss`): cross-entropy at every valid step plus λ_r
times the ranking loss on the detection score (LSTM-s) or on the margin (LSTM-m).

Attention over frames (`attention`, action highlighting after Torabi & Sigal 2017): a clip
`[B, T, D]` with one label for the whole clip,

    h_t = [→h_t; ←h_t] = BiLSTM(drop(x))_t                     [B, T, 2H]
    e_t = w_a · tanh(W_a h_t + b_a),   α = softmax_{t < len}(e)   [B, T]
    p   = softmax(W_o drop(Σ_t α_t h_t) + b_o)                  [B, K + 1]

trained with the clip's label alone; α_t scores each frame's importance.

Params: plain dicts (`{"lstm": ..., "output": {"w", "b"}}`, ...).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax import cells, layers, regularizers


def _dense(key, n_in: int, n_out: int):
  return {"w": jax.nn.initializers.glorot_uniform()(key, (n_in, n_out)),
          "b": jnp.zeros((n_out,))}


def _apply(params, x):
  return x @ params["w"] + params["b"]


class ActivityModel:
  """`init(key) -> params`; `logits(params, x, lengths, training, key)`:
  `[B, T, K + 1]` for the detectors, `([B, K + 1], α [B, T])` for `attention`."""

  def __init__(self, config, feature_size: int, num_outputs: int):
    self.config, self.kind = config, config.model
    self.D, self.K1 = int(feature_size), int(num_outputs)
    H = config.hidden_size
    if self.kind == "lstm":
      self.rnn = layers.stack([layers.rnn(cells.lstm(H)) for _ in range(config.num_layers)],
                              dropout_rate=config.dropout)
      self.top = H
    elif self.kind == "attention":
      self.rnn = layers.stack([layers.bidirectional(cells.lstm(H))
                               for _ in range(config.num_layers)],
                              dropout_rate=config.dropout)
      self.top = 2 * H
    elif self.kind == "cnn":
      self.rnn, self.top = None, config.mlp_size
    else:
      raise ValueError(f"model: expected lstm, cnn or attention, got {self.kind!r}")

  @property
  def per_step(self) -> bool:
    """Whether the model scores every step (a detector) or the whole clip."""
    return self.kind != "attention"

  def init(self, key) -> dict:
    k_rnn, k_hidden, k_att, k_out = jax.random.split(key, 4)
    params = {"output": _dense(k_out, self.top, self.K1)}
    if self.kind == "cnn":
      params["hidden"] = _dense(k_hidden, self.D, self.config.mlp_size)
    else:
      params["lstm"] = self.rnn.init(k_rnn, self.D)
    if self.kind == "attention":
      k_w, k_v = jax.random.split(k_att)
      params["attention"] = {"w": jax.nn.initializers.glorot_uniform()(
          k_w, (self.top, self.config.hidden_size)), "b": jnp.zeros((self.config.hidden_size,)),
          "v": jax.nn.initializers.normal(1.0 / jnp.sqrt(self.config.hidden_size))(
              k_v, (self.config.hidden_size,))}
    return params

  def _dropout(self, key, x, training):
    rate = self.config.dropout if training else 0.0
    return regularizers.dropout(key, x, rate) if rate > 0 else x

  def logits(self, params, x, lengths, *, training: bool = False, key=None):
    """Detectors: logits `[B, T, K + 1]` (zero rows past each length are not used).
    Attention: `(logits [B, K + 1], α [B, T])`."""
    keys = jax.random.split(key, 3) if key is not None else (None,) * 3
    x = self._dropout(keys[0], x, training)                         # [B, T, D]
    if self.kind == "cnn":
      h = jax.nn.relu(_apply(params["hidden"], x))                  # [B, T, M]
    else:
      h, _ = self.rnn.apply(params["lstm"], x, seq_lengths=lengths, training=training,
                            key=keys[1])                           # [B, T, H or 2H]
    if self.kind != "attention":
      return _apply(params["output"], self._dropout(keys[2], h, training))
    alpha = self.attention(params, h, lengths)                      # [B, T]
    pooled = jnp.einsum("bt,bth->bh", alpha, h)                     # [B, 2H]
    return _apply(params["output"], self._dropout(keys[2], pooled, training)), alpha

  def attention(self, params, h, lengths):
    """α `[B, T]`: a softmax over each clip's valid steps of w_a · tanh(W_a h_t + b_a)."""
    a = params["attention"]
    e = jnp.tanh(h @ a["w"] + a["b"]) @ a["v"]                       # [B, T]
    valid = jnp.arange(h.shape[1])[None, :] < lengths[:, None]
    e = jnp.where(valid, e, -jnp.inf)
    return jax.nn.softmax(e, axis=-1)
