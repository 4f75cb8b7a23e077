r"""Skip-thought vectors (Kiros et al. 2015): a GRU encoder and two conditional GRU decoders.

One model, for a sentence s_i `[S]` ids and its neighbours s_{i-1}, s_{i+1}:

    x_t   = E[w_t]                                          # [B, S, E], shared embedding
    h_i   = GRU_enc(x_1..x_N)_N                             # [B, D], the final state
            uni-skip: one GRU of width D;
            bi-skip: a forward and a backward GRU of width D / 2, final states concatenated
    for each decoder d in (prev, next), over the neighbour's words v_1..v_M:
      r_t = σ(W_r x_{t-1} + U_r h_{t-1} + C_r h_i)          # the conditional GRU: h_i
      z_t = σ(W_z x_{t-1} + U_z h_{t-1} + C_z h_i)          # enters every gate at every
      h̄_t = tanh(W x_{t-1} + U (r_t ⊙ h_{t-1}) + C h_i)     # step; h_0 = 0
      h_t = (1 - z_t) ⊙ h̄_t + z_t ⊙ h_{t-1}
      p(v_t | v_<t, h_i) = softmax(h_t V + b)               # V [D, vocab], each model's own
    loss  = the decoders' mean NLL per target token

The full softmax over 20,000 words is most of a step's cost (h_t V: D x 20,000 per
token, against about 6 D^2 for the GRUs), so training can use the sampled softmax
(`config.softmax_samples` > 0, `rnn_jax.sampled_softmax`: S words per batch drawn
from the corpus's unigram distribution); evaluation always uses the full one.

The conditional GRU is `cells.gru` (Cho et al.'s form, the reset gate before the
recurrent matmul) with a bias per sentence, b + h_i [C_r, C_z, C] (`[B, 3D]`, computed
once): the equations above, run by the fused GRU kernel. (Concatenating h_i to every
input instead, `[B, M, E + D]`, computes the same thing with a [B M, D] x [D, 3D] matmul
each way where [B, D] x [D, 3D] does: 1.21x the decoder's time at D = 512, 1.06x at
D = 256, `benchmarks.skip_thought_step`.) The decoders' first input x_0 is <bos>'s
embedding. In the paper's skip-thoughts code
(training/model.py) the encoder and both decoders share one word embedding, and each
decoder has its own GRU; we follow it.

A run trains one or more such models side by side on the same batches (`--encoders=
uni,bi`: the paper's uni-skip and bi-skip are two models; combine-skip concatenates
their vectors). Params `{name: {"embed", "encoder", "prev", "next", "w_out", "b_out"}}`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax import cells, layers, sampled_softmax, unroll

Array = jax.Array
ENCODERS = ("uni", "bi")


class SkipThought(NamedTuple):
  names: tuple            # the encoders, e.g. ("uni", "bi")
  init: Any               # init(key) -> params
  encode: Any             # encode(params, ids [B, S], lengths [B]) -> {name: [B, D]}
  loss: Any               # loss(params, batch, key=None) -> (scalar, metrics)
  embed_size: int


def check_encoders(names) -> tuple:
  names = tuple(names)
  if not names or len(set(names)) != len(names) or any(n not in ENCODERS for n in names):
    raise ValueError(f"encoders: a list of distinct names from {ENCODERS}, got {list(names)}")
  return names


def encoder_layer(name: str, hidden_size: int) -> layers.Layer:
  """uni: one GRU of width D; bi: a forward and a backward GRU of D / 2 each."""
  if name == "uni":
    return layers.rnn(cells.gru(hidden_size))
  if hidden_size % 2:
    raise ValueError(f"hidden_size: bi-skip splits D between two directions, so D must be "
                     f"even, got {hidden_size}")
  return layers.bidirectional(cells.gru(hidden_size // 2))


def build(config, vocab_size: int, log_q=None) -> SkipThought:
  """The models of `config.encoders`, each with `config.hidden_size` D and
  `config.embed_size` E, over `vocab_size` words. With `config.softmax_samples` S > 0,
  `loss(..., key=k)` trains with the sampled softmax, drawing from `log_q [V]` (default:
  log-uniform over ids, for a vocabulary sorted by frequency); `key=None` is the full
  softmax."""
  names = check_encoders(config.encoders)
  num_samples = getattr(config, "softmax_samples", 0)
  if log_q is None:
    log_q = sampled_softmax.log_uniform_proposal(vocab_size)
  E, D, V = config.embed_size, config.hidden_size, vocab_size
  decoder_cell = cells.gru(D)  # input x_{t-1} [E], bias b + h_i C [B, 3D]
  encoders = {n: encoder_layer(n, D) for n in names}

  def init_decoder(key):
    """The GRU's params over x [E] and C `w_ctx [D, 3D]` (initialised as w_ih is)."""
    k_gru, k_ctx = jax.random.split(key)
    return dict(decoder_cell.init(k_gru, E),
                w_ctx=jax.nn.initializers.lecun_normal()(k_ctx, (D, 3 * D)))

  def init_one(key, name):
    k_emb, k_enc, k_prev, k_next, k_out = jax.random.split(key, 5)
    # Kiros et al.: uniform [-0.1, 0.1] for the non-recurrent weights, orthogonal for
    # the recurrent ones (the GRU's default recurrent_init).
    uniform = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -0.1, 0.1)
    return {"embed": uniform(k_emb, (V, E)),
            "encoder": encoders[name].init(k_enc, E),
            "prev": init_decoder(k_prev),
            "next": init_decoder(k_next),
            "w_out": uniform(k_out, (D, V)),
            "b_out": jnp.zeros((V,))}

  def init(key):
    return {n: init_one(k, n) for n, k in zip(names, jax.random.split(key, len(names)))}

  def encode_one(p, name, ids, lengths):
    x = jnp.take(p["embed"], ids, axis=0)  # [B, S, E]
    _, final = encoders[name].apply(p["encoder"], x, seq_lengths=lengths)
    return final if name == "uni" else jnp.concatenate(final, axis=-1)  # [B, D]

  def encode(params, ids, lengths):
    return {n: encode_one(params[n], n, ids, lengths) for n in names}

  def decode_nll(p, which, h, inputs, outputs, lengths, weights, sample):
    """NLL of `outputs [B, M]` given `inputs [B, M]` and the encoding `h [B, D]`, summed
    over tokens with each row's weight; `sample`: None (the full softmax) or (samples [S],
    log expected counts [V])."""
    x = jnp.take(p["embed"], inputs, axis=0)  # [B, M, E]
    gru = {k: v for k, v in p[which].items() if k != "w_ctx"}
    gru["b"] = gru["b"] + h @ p[which]["w_ctx"]  # [B, 3D]: h_i enters every gate
    ys, _ = unroll(decoder_cell, gru, x, seq_lengths=lengths)  # [B, M, D]
    if sample is None:
      logp = jax.nn.log_softmax(ys @ p["w_out"] + p["b_out"])  # [B, M, V]
      nll = -jnp.take_along_axis(logp, outputs[..., None], axis=-1)[..., 0]  # [B, M]
    else:
      nll = sampled_softmax.sampled_nll(ys, p["w_out"], p["b_out"], outputs, *sample)
    mask = jnp.arange(outputs.shape[1])[None, :] < lengths[:, None]
    return jnp.sum(nll * mask * weights[:, None])

  def loss(params, batch, key=None):
    """The mean NLL per target token over both decoders and every model, and each one's
    (`{name}_{prev|next}_nll`, with the summed `{name}_{prev|next}_nll_sum` and
    `{prev|next}_tokens`); rows weighted by `batch["weights"]` when it is there (0 for
    padding rows); sampled with `key` when `config.softmax_samples` > 0."""
    total, metrics = 0.0, {}
    weights = batch.get("weights", jnp.ones(batch["source"].shape[:1]))
    for w in ("prev", "next"):
      metrics[f"{w}_tokens"] = jnp.sum(batch[f"{w}_lengths"] * weights)
    tokens = {w: jnp.maximum(metrics[f"{w}_tokens"], 1) for w in ("prev", "next")}
    keys = (jax.random.split(key, len(names)) if key is not None and num_samples
            else [None] * len(names))
    for n, k in zip(names, keys):
      h = encode_one(params[n], n, batch["source"], batch["source_lengths"])
      sample = None if k is None else sampled_softmax.draw(k, log_q, num_samples)
      for which in ("prev", "next"):
        nll = decode_nll(params[n], which, h, batch[f"{which}_in"], batch[f"{which}_out"],
                         batch[f"{which}_lengths"], weights, sample)
        metrics[f"{n}_{which}_nll_sum"] = nll
        metrics[f"{n}_{which}_nll"] = nll / tokens[which]
        total = total + metrics[f"{n}_{which}_nll"]
    return total / (2 * len(names)), metrics

  return SkipThought(names=names, init=init, encode=encode, loss=loss, embed_size=E)
