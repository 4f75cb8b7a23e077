"""The VQA models: a CNN image embedding and an LSTM question embedding, combined.

Every model reads images `[B, H, W, 3]` (the shared Flax CNN, `experiments.vision.cnn`)
or precomputed features (`[B, R, D]` / `[B, D]`), and questions `[B, T]` with their
lengths `[B]`. The image vector ā plays VGG's fc7 in the papers: on the CNN's regions
`a [B, R, D]`, their mean ā = mean_i a_i (default), with `image_pool=max` their
per-feature maximum ā = max_i a_i, with `image_pool=max_mean` both, ā = [max_i a_i;
mean_i a_i] `[B, 2D]` (the maximum keeps a small object's colour, the mean how much of the
image each feature covers: an object's size), or with `image_fc` > 0 a fully connected ReLU layer
over the whole grid, ā = relu(W_fc vec(a) + b_fc); on precomputed features, the features
themselves (their mean, or maximum, over R for `[R, D]`). E q is the question
word embedding, `lstm` the stack of `question_layers` LSTMs.

Deeper LSTM Q + norm I (Antol et al. 2015, `lstm_q_norm_i`):

    q   = tanh(W_q LN([c_1; h_1; ...; c_L; h_L]) + b_q)   # every layer's final state  [B, C]
    i   = tanh(W_i √F ā / ‖ā‖ + b_i)                       # the L2-normalised image    [B, C]
    p   = softmax(W_o tanh(W_m (q ⊙ i) + b_m) + b_o)   # K answers, dropout before W_m, W_o

VIS+LSTM (Ren et al. 2015, `vis_lstm`): the image is the first word,

    x_0 = W_e ā / ‖ā‖ + b_e,   x_t = tanh(E q_t),   p = softmax(W_o h_T + b_o)

Stacked attention (Yang et al. 2016, `san`), with regions v = tanh(W_v a + b_v) `[B, R, C]`
and u⁰ = W_u h_T + b_u (the top layer's last output), for k = 1..attention_layers:

    h_A  = tanh(W_IA v ⊕ (W_QA u^{k-1} + b_A))      # ⊕ adds the vector to every region
    p_I  = softmax(w_P h_A + b_P)                    # [B, R]
    u^k  = Σ_i p_I,i v_i + u^{k-1}
    p    = softmax(W_o u^K + b_o)

Two changes to Antol et al.'s arrangement keep it trainable from scratch: LN standardises
the question state (zero mean, unit variance over its 2LH values, no parameters: the LSTM
cell's `group_layer_norm` with scale 1), and the
normalised image is scaled by √F (F its width). Without them the cells c grow within a
few hundred Adam steps, the question vector's tanh saturates to one constant vector for
every question, and the model can answer only from the answer prior (existence questions
on scenes stayed at 50% even with an image vector that names every object present;
experiments/vqa/RESULTS.md).

Baselines: `question_only` is the blind LSTM Q (p = softmax(W_o tanh(W_m q + b_m) + b_o)),
`image_only` the norm I MLP (p = softmax(W_o tanh(W_m i + b_m) + b_o)).

Answer generation (Malinowski et al. 2015, "Ask Your Neurons", `answer_generation`): the
image enters every step, x_t = [tanh(E q_t); i_e] with i_e = W_e ā / ‖ā‖ + b_e; after the
question the LSTM continues on the `rnn_jax.seq2seq.Decoder` contract, fed [E' y_{t-1};
i_e] from <s>, writing the answer's words (DAQUAR's "chair, table" is "chair table </s>")
with p(y_t) = softmax(W_o h_t + b_o), so greedy decoding and beam search come from the
library.

Params: `{"encoder": the CNN's params (absent with features), "model": {...}}`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from experiments.vision import cnn
from rnn_jax import cells, layers, regularizers
from rnn_jax.cells.lstm import group_layer_norm
from rnn_jax.seq2seq import Decoder

Array = jax.Array
POOLS = ("mean", "max", "max_mean")  # `image_pool`: how the regions become ā


def _dense(key, n_in: int, n_out: int, bias: bool = True):
  params = {"w": jax.nn.initializers.glorot_uniform()(key, (n_in, n_out))}
  if bias:
    params["b"] = jnp.zeros((n_out,))
  return params


def _apply(params, x):
  y = x @ params["w"]
  return y + params["b"] if "b" in params else y


def l2_normalize(x, eps: float = 1e-8):
  """`x / ‖x‖` along the last axis (Antol et al.'s "norm I")."""
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def norm_i(x):
  """The normalised image: `sqrt(F) x / ‖x‖` for `x [B, F]`, unit length scaled to unit
  root mean square, so W_i (norm I) starts O(1) like the question side instead of
  O(1 / sqrt(F)); otherwise the question vector grows to carry the answer prior alone and
  its tanh saturates (experiments/vqa/RESULTS.md)."""
  return l2_normalize(x) * jnp.sqrt(jnp.asarray(x.shape[-1], x.dtype))


class Memory(NamedTuple):
  """What answer generation's decoder reads: the image as a word `[B, E]` and the LSTM's
  per-layer state after the question (its initial state)."""
  image: Array
  question: tuple


class VQAModel:
  """`config.model` over `question_vocab` words and `num_answers` answer classes (or,
  for answer generation, `answer_vocab` answer words)."""

  def __init__(self, config, question_vocab: int, num_answers: int = 0,
               answer_vocab: int = 0, feature_size: int | None = None):
    """`feature_size`: D of precomputed features; None runs the CNN on images."""
    if config.model == "prior":
      raise ValueError("model: the prior is counted, not trained (train.answer_prior)")
    self.config, self.kind = config, config.model
    self.Vq, self.K, self.Va = question_vocab, num_answers, answer_vocab
    self.use_cnn = feature_size is None
    self.encoder = cnn.ConvEncoder(tuple(int(f) for f in config.cnn_features),
                                   config.cnn_first_stride, config.cnn_last_dilation)
    self.D = int(config.cnn_features[-1]) if self.use_cnn else feature_size
    self.fc = config.image_fc if self.use_cnn else 0
    if config.image_pool not in POOLS:
      raise ValueError(f"image_pool: one of {', '.join(POOLS)}, not {config.image_pool!r}")
    if self.fc:
      h, w = cnn.grid_shape(self.encoder, config.image_size)
      self.R = h * w
    H = config.hidden_size
    self.cell = cells.lstm(H)
    self.lstm = layers.stack([layers.rnn(self.cell) for _ in range(config.question_layers)])
    self.generates = self.kind == "answer_generation"
    self.attends = self.kind == "san"

  # Parameters.

  def init(self, key) -> dict:
    c, D, E, H = self.config, self.D, self.config.embed_size, self.config.hidden_size
    C, M, L = c.common_size, c.mlp_size, c.question_layers
    k = iter(jax.random.split(key, 16))
    p = {"embed": jax.random.uniform(next(k), (self.Vq, E), minval=-0.1, maxval=0.1)}
    if self.fc and self.kind not in ("question_only", "san"):
      p["image_fc"] = _dense(next(k), self.R * D, self.fc)
      D = self.fc  # the image vector's width
    elif c.image_pool == "max_mean" and self.kind != "san":
      D = 2 * D
    lstm_in = 2 * E if self.generates else E
    if self.kind != "image_only":
      p["lstm"] = self.lstm.init(next(k), lstm_in)
    if self.kind in ("lstm_q_norm_i", "question_only"):
      p["question"] = _dense(next(k), 2 * L * H, C)
    if self.kind in ("lstm_q_norm_i", "image_only"):
      p["image"] = _dense(next(k), D, C)
    if self.kind in ("vis_lstm", "answer_generation"):
      p["image"] = _dense(next(k), D, E)
    if self.kind in ("lstm_q_norm_i", "question_only", "image_only"):
      p["mlp"] = _dense(next(k), C, M)
      p["output"] = _dense(next(k), M, self.K)
    if self.kind == "vis_lstm":
      p["output"] = _dense(next(k), H, self.K)
    if self.kind == "san":
      A = c.attention_size
      p["regions"] = _dense(next(k), D, C)
      p["question"] = _dense(next(k), H, C)
      p["attention"] = [{"w_image": _dense(next(k), C, A, bias=False),
                         "w_question": _dense(next(k), C, A),
                         "w_p": _dense(next(k), A, 1)} for _ in range(c.attention_layers)]
      p["output"] = _dense(next(k), C, self.K)
    if self.generates:
      p["answer_embed"] = jax.random.uniform(next(k), (self.Va, E), minval=-0.1, maxval=0.1)
      p["output"] = _dense(next(k), H, self.Va)
    params = {"model": p}
    if self.use_cnn and self.kind != "question_only":
      size = c.image_size
      params["encoder"] = self.encoder.init(
          next(k), jnp.zeros((1, size, size, 3), jnp.uint8))["params"]
    return params

  # The pieces.

  def regions(self, params, images, image_slot=None) -> Array:
    """Images `[B, H, W, 3]` (or features `[B, R, D]` / `[B, D]`) -> regions `[B, R, D]`.

    With `image_slot [B]`, images `[M, ...]` are distinct images, each read once, and
    question b's regions are those of images[image_slot[b]]."""
    if not self.use_cnn:
      a = jnp.asarray(images, jnp.float32)
      a = a[:, None, :] if a.ndim == 2 else a
    else:
      a = cnn.regions(self.encoder.apply({"params": params["encoder"]}, images))
      a = jax.lax.stop_gradient(a) if self.config.freeze_encoder else a
    return a if image_slot is None else a[image_slot]

  def _dropout(self, key, x, training: bool):
    rate = self.config.dropout if training else 0.0
    return regularizers.dropout(key, x, rate) if rate > 0 else x

  def _words(self, p, questions, key, training):
    return self._dropout(key, jnp.tanh(p["embed"][questions]), training)  # [B, T, E]

  def _read(self, p, xs, lengths, key, training):
    """The question LSTM over `xs [B, T, ·]`: (outputs `[B, T, H]`, per-layer carries)."""
    return self.lstm.apply(p["lstm"], xs, seq_lengths=lengths, training=training, key=key)

  def image_vector(self, p, regions):
    """ā `[B, D']` from regions `[B, R, D]` (module docstring)."""
    if "image_fc" in p:
      B = regions.shape[0]
      return jax.nn.relu(_apply(p["image_fc"], regions.reshape(B, -1)))
    if self.config.image_pool == "max":
      return regions.max(axis=1)
    if self.config.image_pool == "max_mean":
      return jnp.concatenate([regions.max(axis=1), regions.mean(axis=1)], -1)  # [B, 2D]
    return regions.mean(axis=1)

  def _image_word(self, p, regions):
    return _apply(p["image"], norm_i(self.image_vector(p, regions)))  # [B, E]

  # The classifiers.

  def logits(self, params, images, questions, lengths, *, image_slot=None,
             training: bool = False, key=None):
    """`(logits [B, K], attention [B, attention_layers, R] or None)`; `image_slot` as in
    `regions`."""
    p = params["model"]
    keys = iter(jax.random.split(key, 4) if key is not None else [None] * 4)
    attention = None
    if self.kind == "image_only":
      q = None
    else:
      words = self._words(p, questions, next(keys), training)
    a = None if self.kind == "question_only" else self.regions(params, images, image_slot)
    if self.kind in ("lstm_q_norm_i", "question_only"):
      _, finals = self._read(p, words, lengths, next(keys), training)
      state = jnp.concatenate([x for f in finals for x in (f.c, f.h)], -1)  # [B, 2LH]
      q = jnp.tanh(_apply(p["question"], group_layer_norm(state, 1.0)))  # [B, C], LN
    if self.kind in ("lstm_q_norm_i", "image_only"):
      i = jnp.tanh(_apply(p["image"], norm_i(self.image_vector(p, a))))  # [B, C]
    if self.kind in ("lstm_q_norm_i", "question_only", "image_only"):
      fused = q * i if self.kind == "lstm_q_norm_i" else (q if q is not None else i)
      hidden = jnp.tanh(_apply(p["mlp"], self._dropout(next(keys), fused, training)))
      return _apply(p["output"], self._dropout(next(keys), hidden, training)), None
    if self.kind == "vis_lstm":
      x0 = self._image_word(p, a)[:, None, :]  # [B, 1, E]
      _, finals = self._read(p, jnp.concatenate([x0, words], 1), lengths + 1, next(keys),
                             training)
      h = self._dropout(next(keys), finals[-1].h, training)
      return _apply(p["output"], h), None
    if self.kind == "san":
      _, finals = self._read(p, words, lengths, next(keys), training)
      u = _apply(p["question"], finals[-1].h)  # [B, C]
      v = jnp.tanh(_apply(p["regions"], a))  # [B, R, C]
      u, attention = stacked_attention(p["attention"], v, u)
      return _apply(p["output"], self._dropout(next(keys), u, training)), attention
    raise ValueError(f"model: {self.kind} does not classify")

  # Answer generation on the decoder contract.

  def memory(self, params, images, questions, lengths, *, image_slot=None,
             training: bool = False, key=None) -> Memory:
    """Reads the image and the question: the LSTM runs over `[tanh(E q_t); i_e]`."""
    p = params["model"]
    k_words, k_lstm = jax.random.split(key) if key is not None else (None, None)
    image = self._image_word(p, self.regions(params, images, image_slot))  # [B, E]
    words = self._words(p, questions, k_words, training)  # [B, T, E]
    xs = jnp.concatenate([words, jnp.broadcast_to(image[:, None, :], words.shape)], -1)
    _, finals = self._read(p, xs, lengths, k_lstm, training)
    return Memory(image, finals)

  def step(self, params, memory: Memory, state, prev, *, training: bool = False, key=None):
    """One answer word: `prev [N]` -> (state, logits `[N, Va]`, None)."""
    p = params["model"]
    x = jnp.concatenate([p["answer_embed"][prev], memory.image], -1)  # [N, 2E]
    new_state = []
    for l, carry in enumerate(state):
      carry, x = self.cell.step(p["lstm"][f"layer_{l}"], carry, x)
      new_state.append(carry)
    x = self._dropout(key, x, training)
    return tuple(new_state), _apply(p["output"], x), None

  def decoder(self) -> Decoder:
    return Decoder(lambda params, memory: memory.question, self.step, self.Va,
                   step_kwargs=frozenset({"training", "key"}),
                   readout=lambda state: state[-1].h)


def stacked_attention(layers_params, v, u):
  """Yang et al. (2016)'s attention layers over regions `v [B, R, C]` from the question
  vector `u [B, C]`: (u^K `[B, C]`, the attention of each layer `[B, K, R]`)."""
  maps = []
  for lp in layers_params:
    h_a = jnp.tanh(_apply(lp["w_image"], v) + _apply(lp["w_question"], u)[:, None, :])
    p_i = jax.nn.softmax(_apply(lp["w_p"], h_a)[..., 0], axis=-1)  # [B, R]
    u = jnp.einsum("br,brc->bc", p_i, v) + u
    maps.append(p_i)
  return u, jnp.stack(maps, axis=1)
