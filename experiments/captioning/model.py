"""Show and Tell (Vinyals et al. 2015) and Show, Attend and Tell (Xu et al. 2015, soft).

Both read annotation vectors a `[B, R, D]` (the CNN's `[h, w]` grid, R = h * w, or
precomputed features) and write words on the `rnn_jax.seq2seq.Decoder` contract, so
greedy decoding, beam search, scheduled sampling, SCST and ensembles come from the
library. E y is the word embedding `[V, E]`.

Show and Tell ("NIC"):

    x_{-1}  = W_I mean_i(a_i) + b_I          # the image, the LSTM's first input
    h_0     = LSTM(x_{-1}; zeros)            # init_state
    h_t     = LSTM(E y_{t-1}; h_{t-1})
    p(y_t)  = softmax(W_o h_t + b_o)

Show, Attend and Tell (soft attention; the arctic-captions code's arrangement):

    h_0, c_0 = tanh(W_h ā + b_h), tanh(W_c ā + b_c)    # ā = mean_i a_i (section 4.2.1)
    e_ti     = v^T tanh(W_q h_{t-1} + W_k a_i)          # Bahdanau's MLP f_att
    α_t      = softmax_i(e_ti)                           # [B, R]
    β_t      = σ(w_β h_{t-1} + b_β)                      # the gating scalar (selector)
    z_t      = β_t Σ_i α_ti a_i
    h_t      = LSTM([E y_{t-1}; z_t]; h_{t-1})
    p(y_t)   = softmax(L_o tanh(E y_{t-1} + L_h h_t + L_z z_t) + b_o)   # the deep output

and the loss adds λ Σ_i (1 - Σ_t α_ti)² (`attention.doubly_stochastic_penalty`). α_t
feeds the word y_t, so `token_attention` is the identity. Hard attention
(`--attention_type=hard`, section 4.1) trains with z_t = a_{s_t}, s_t ~ Multinoulli(α_t)
(`hard_step`; `train.hard_attention_loss` holds its REINFORCE rule) and decodes with the
expected context, as soft attention does. Dropout (`dropout` > 0, with
`training=True` and a `key`) drops the word embeddings and the output layer's input.

Params: `{"encoder": the CNN's Flax params (absent with precomputed features),
"decoder": {...}}`; `encode` maps images to annotations, `memory` prepares the
attention keys once per batch, `decoder()` is the contract.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from experiments.vision import cnn
from rnn_jax import cells, regularizers
from rnn_jax.seq2seq import Decoder
from rnn_jax.seq2seq import attention as attention_lib

Array = jax.Array


class Memory(NamedTuple):
  """What the decoder reads: the annotations with their attention keys, and their mean."""
  regions: attention_lib.Memory   # values [B, R, D], keys [B, R, A] (or the values), mask
  mean: Array                     # [B, D]


def _dense(key, n_in: int, n_out: int, bias: bool = True):
  params = {"w": jax.nn.initializers.glorot_uniform()(key, (n_in, n_out))}
  if bias:
    params["b"] = jnp.zeros((n_out,))
  return params


def _apply(params, x):
  y = x @ params["w"]
  return y + params["b"] if "b" in params else y


class Captioner:
  """A captioning model of `config.model` over a vocabulary of `vocab_size` words."""

  def __init__(self, config, vocab_size: int, feature_size: int | None = None):
    """`feature_size`: D of precomputed features; None runs the CNN on images."""
    self.config = config
    self.V = vocab_size
    self.attend = config.model == "show_attend_tell"
    self.use_cnn = feature_size is None
    self.encoder = cnn.ConvEncoder(tuple(int(f) for f in config.cnn_features),
                                   config.cnn_first_stride)
    self.D = int(config.cnn_features[-1]) if self.use_cnn else feature_size
    E, H = config.embed_size, config.hidden_size
    self.cell = cells.lstm(H)
    self.cell_input = E + self.D if self.attend else E

  def init(self, key) -> dict:
    c, D, E, H, V = self.config, self.D, self.config.embed_size, self.config.hidden_size, self.V
    k = iter(jax.random.split(key, 12))
    dec = {"embed": jax.random.uniform(next(k), (V, E), minval=-0.1, maxval=0.1),
           "lstm": self.cell.init(next(k), self.cell_input)}
    if self.attend:
      dec.update(init_h=_dense(next(k), D, H), init_c=_dense(next(k), D, H),
                 attention=attention_lib.init(next(k), "bahdanau", H, D, c.attention_size),
                 deep=_dense(next(k), H, E), deep_z=_dense(next(k), D, E, bias=False),
                 output=_dense(next(k), E, V))
      if c.selector:
        dec["beta"] = _dense(next(k), H, 1)
    else:
      dec.update(image=_dense(next(k), D, E), output=_dense(next(k), H, V))
    params = {"decoder": dec}
    if self.use_cnn:
      size = c.image_size
      params["encoder"] = self.encoder.init(
          next(k), jnp.zeros((1, size, size, 3), jnp.uint8))["params"]
    return params

  def encode(self, params, images) -> Array:
    """Images `[B, H, W, 3]` (or features `[B, R, D]` / `[B, D]`) -> annotations `[B, R, D]`."""
    if not self.use_cnn:
      a = jnp.asarray(images, jnp.float32)
      return a[:, None, :] if a.ndim == 2 else a
    a = cnn.regions(self.encoder.apply({"params": params["encoder"]}, images))  # [B, R, D]
    return jax.lax.stop_gradient(a) if self.config.freeze_encoder else a

  def memory(self, params, annotations) -> Memory:
    """The decoder's memory: attention keys computed once per batch."""
    B, R, _ = annotations.shape
    mask = jnp.ones((B, R), bool)
    dec = params["decoder"]
    if self.attend:
      regions = attention_lib.prepare(dec["attention"], "bahdanau", annotations, mask)
    else:
      regions = attention_lib.Memory(annotations, annotations, mask)
    return Memory(regions, annotations.mean(axis=1))

  def init_state(self, params, memory: Memory):
    dec = params["decoder"]
    if self.attend:
      return cells.LSTMState(jnp.tanh(_apply(dec["init_h"], memory.mean)),
                             jnp.tanh(_apply(dec["init_c"], memory.mean)))
    x = _apply(dec["image"], memory.mean)  # [B, E], the LSTM's first input
    carry = self.cell.initial_carry(x.shape[:1], x.dtype)
    carry, _ = self.cell.step(dec["lstm"], carry, x)
    return carry

  def step(self, params, memory: Memory, state, prev, *, training: bool = False, key=None):
    """One word: `prev [N]` -> (state, logits `[N, V]`, α `[N, R]` or None)."""
    state, logits, alpha, _ = self.hard_step(params, memory, state, prev, training=training,
                                             key=key)
    return state, logits, alpha

  def hard_step(self, params, memory: Memory, state, prev, *, training: bool = False,
                key=None, location_key=None, sample=None):
    """`step`, and for hard attention (Xu et al. 2015, section 4.1) with `location_key`: in
    the rows where `sample [N]` is True the context is the annotation at a location
    s_t ~ Multinoulli(α_t), elsewhere its expectation Σ_i α_ti a_i.

    Returns:
      (state, logits `[N, V]`, α `[N, R]` or None, the weights that made the context
      `[N, R]`: one-hot at s_t in the sampled rows, α in the others; None without attention).
    """
    dec, rate = params["decoder"], self.config.dropout if training else 0.0
    k_emb, k_out = jax.random.split(key) if rate > 0 else (None, None)
    emb = dec["embed"][prev]  # [N, E]
    emb_in = regularizers.dropout(k_emb, emb, rate) if rate > 0 else emb
    if not self.attend:
      state, h = self.cell.step(dec["lstm"], state, emb_in)
      h = regularizers.dropout(k_out, h, rate) if rate > 0 else h
      return state, _apply(dec["output"], h), None, None
    context, alpha = attention_lib.attend(dec["attention"], "bahdanau", memory.regions,
                                          state.h)  # [N, D], [N, R]
    weights = alpha
    if location_key is not None:
      location = jax.random.categorical(location_key, jnp.log(jnp.maximum(alpha, 1e-30)))
      one_hot = jax.nn.one_hot(location, alpha.shape[-1], dtype=alpha.dtype)  # [N, R]
      weights = jnp.where(sample[:, None], one_hot, alpha)
      context = jnp.einsum("nr,nrd->nd", weights, memory.regions.values)
    if "beta" in dec:
      context = jax.nn.sigmoid(_apply(dec["beta"], state.h)) * context  # β_t [N, 1]
    state, h = self.cell.step(dec["lstm"], state, jnp.concatenate([emb_in, context], -1))
    out = jnp.tanh(emb + _apply(dec["deep"], h) + _apply(dec["deep_z"], context))  # [N, E]
    out = regularizers.dropout(k_out, out, rate) if rate > 0 else out
    return state, _apply(dec["output"], out), alpha, weights

  def decoder(self) -> Decoder:
    return Decoder(self.init_state, self.step, self.V, step_kwargs=frozenset({"training", "key"}),
                   readout=lambda state: state.h)
