"""The GNMT model (Wu et al. 2016): 8-layer residual LSTM encoder and decoder with attention.

Encoder (`[B, S]` source ids -> memory `[B, S, H]`):

    layer 0      bi-directional LSTM (H per direction, concatenated: 2H)   # bidirectional_bottom
    layer 1      LSTM 2H -> H
    layers 2..7  LSTM H -> H, residual: x_{l+1} = LSTM_l(x_l) + x_l         # residual_from = 2

Decoder, one step (y_{t-1} the previous target token, a the attention context):

    state_0     = the encoder's final states (layer by layer; pass_hidden_state)
    h^0_t       = LSTM_0([E y_{t-1}; a_{t-1}])        # input feeding; E y_{t-1} alone without it
    a_t, α_t    = attention(query=h^0_t, memory)      # from the bottom layer's output
    h^l_t       = LSTM_l([h^{l-1}_t; a*]) (+ h^{l-1}_t for l >= residual_from)
                  a* = a_{t-1} for "gnmt" (the paper: upper layers see the context computed
                  from the bottom layer's previous output), a_t for "gnmt_v2" (tensorflow/nmt);
                  so under "gnmt" α_t only reaches y_{t+1} (`token_attention` gives each
                  output token the attention that fed it: what decoding returns and plots)
    p(y_t)      = softmax(W h^{L-1}_t + b)

Training runs the decoder layer by layer rather than step by step: a scan over
the bottom layer and the attention (they feed each other), then every upper
layer as one `rnn_jax.unroll` over the whole target, which lets the fused
kernels run. `decode_step` runs the same network one step at a time for
greedy, sampling and beam search; a test holds the two to the same logits.

Model parallelism (`--pipeline_devices=N`, Wu et al. 2016, Section 3): the encoder
becomes `rnn_jax.pipeline.stack` over the N devices of the mesh's "layers" axis (the
bottom's two directions on devices 0 and 1 at once, then layers 1-7 as a wavefront).
In the decoder, the bottom layer and the attention feed each other step by step (input
feeding), so they run first, on every device of a group, for the whole target; the
contexts a_t are then known for every t, and the upper layers run as a wavefront
(`rnn_jax.pipeline.wavefront`) with the context that each reads (a_{t-1} for "gnmt",
a_t for "gnmt_v2") as a side input to every layer, the way tensorflow/nmt's GNMT cell
hands the bottom layer's attention to each layer above it. Device 0 holds the bottom
layer and the attention; layers 1..L-1 are spread as `pipeline.placement(L, N)` with
device 0's share less the bottom. Same params and, to float rounding, the same loss
and gradients as on one device (tests/test_pipeline.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax import cells, layers, pipeline, regularizers
from rnn_jax.seq2seq import Decoder
from rnn_jax.seq2seq import attention as attention_lib
from rnn_jax.unroll import unroll

Array = jax.Array
ARCHITECTURES = ("gnmt", "gnmt_v2")


class DecoderState(NamedTuple):
  carries: tuple          # L x LSTMState, each [N, H]
  context: Array          # [N, M], the attention context of the last step


class Encoded(NamedTuple):
  memory: attention_lib.Memory
  final: Any


def reverse_valid(ids: Array, lengths: Array) -> Array:
  """Reverses each row's first `lengths[b]` entries, padding stays at the end."""
  S = ids.shape[1]
  t = jnp.arange(S)[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(ids, index, axis=1)


class GNMT:
  """Pure functions of a GNMT model built from a config (see `config.GNMTConfig`)."""

  def __init__(self, config, vocab_size: int, mesh=None):
    """`mesh`: with `--pipeline_devices` > 1, the ("data", "layers") mesh the layers are
    spread over; default `rnn_jax.training.parallel.data_layers_mesh` of the config."""
    if config.attention_architecture not in ARCHITECTURES:
      raise ValueError(f"attention_architecture: expected one of {ARCHITECTURES}, got "
                       f"{config.attention_architecture!r}")
    if config.num_layers < 1:
      raise ValueError(f"num_layers: expected >= 1, got {config.num_layers}")
    self.config = config
    self.V = vocab_size
    H = config.hidden_size
    self.H = H
    self.cell = cells.lstm(H)
    residual_from = config.residual_from if config.residual_from >= 0 else None
    if residual_from is not None and residual_from >= config.num_layers:
      residual_from = None
    self.residual_from = residual_from
    enc_layers = []
    impl = self.implementation = config.rnn_implementation
    for l in range(config.num_layers):
      if l == 0 and config.bidirectional_bottom:
        enc_layers.append(layers.bidirectional(cells.lstm(H), implementation=impl))
      else:
        enc_layers.append(layers.rnn(cells.lstm(H), implementation=impl))
    enc_residual = residual_from
    if config.bidirectional_bottom and enc_residual is not None and enc_residual < 2:
      enc_residual = 2 if config.num_layers > 2 else None  # 2H -> H cannot be residual
    self.mesh = None
    if config.pipeline_devices > 1:
      from rnn_jax.training import parallel  # noqa: PLC0415
      if config.pipeline_devices > config.num_layers:
        raise ValueError(f"pipeline_devices: {config.pipeline_devices} devices cannot each "
                         f"hold one of {config.num_layers} layers")
      self.mesh = mesh if mesh is not None else parallel.data_layers_mesh(
          config.num_devices or None, config.pipeline_devices)
      self.encoder = pipeline.stack(enc_layers, mesh=self.mesh, axis=parallel.LAYERS_AXIS,
                                    data_axis=parallel.DATA_AXIS, residual_from=enc_residual,
                                    dropout_rate=config.dropout)
    else:
      self.encoder = layers.stack(enc_layers, residual_from=enc_residual,
                                  dropout_rate=config.dropout)
    self.memory_size = self.encoder.output_size(H)

  # -- parameters ---------------------------------------------------------------------
  def init(self, key):
    c, H, M = self.config, self.H, self.memory_size
    k_src, k_tgt, k_enc, k_dec, k_att, k_out = jax.random.split(key, 6)
    uniform = lambda k, shape, s=c.init_scale: jax.random.uniform(k, shape, minval=-s, maxval=s)
    e = c.embedding_init_scale
    bottom_in = H + (M if c.input_feeding else 0)
    dec = {}
    for l, k in enumerate(jax.random.split(k_dec, c.num_layers)):
      dec[f"layer_{l}"] = self.cell.init(k, bottom_in if l == 0 else H + M)
    return {
        "embed_source": uniform(k_src, (self.V, H), e),
        "embed_target": uniform(k_tgt, (self.V, H), e),
        "encoder": self.encoder.init(k_enc, H),
        "decoder": dec,
        "attention": attention_lib.init(k_att, c.attention, H, M, c.attention_size or H,
                                        c.attention_scale_init),
        "w_out": uniform(k_out, (H, self.V)),
        "b_out": jnp.zeros((self.V,)),
    }

  # -- encoder ------------------------------------------------------------------------
  def encode(self, params, source, source_lengths, *, training=False, key=None) -> Encoded:
    """`source [B, S]` ids -> memory over `[B, S, M]` encoder outputs."""
    c = self.config
    if c.reverse_source:
      source = reverse_valid(source, source_lengths)
    x = jnp.take(params["embed_source"], source, axis=0)  # [B, S, H]
    k_in, k_enc = jax.random.split(key) if key is not None else (None, None)
    if training and c.dropout > 0:
      x = regularizers.dropout(k_in, x, c.dropout)
    values, final = self.encoder.apply(params["encoder"], x, seq_lengths=source_lengths,
                                       training=training, key=k_enc)  # [B, S, M]
    mask = jnp.arange(source.shape[1])[None, :] < source_lengths[:, None]  # [B, S]
    memory = attention_lib.prepare(params["attention"], c.attention, values, mask)
    return Encoded(memory, final)

  @staticmethod
  def sentence_vector(encoded: Encoded, pooling: str = "max"):
    """The encoder's outputs pooled over the valid source steps: `[B, M]` (max or mean)."""
    values, mask = encoded.memory.values, encoded.memory.mask[..., None]  # [B, S, M], [B, S, 1]
    if pooling == "max":
      return jnp.max(jnp.where(mask, values, -jnp.inf), axis=1)
    if pooling == "mean":
      return jnp.sum(jnp.where(mask, values, 0.0), axis=1) / jnp.maximum(mask.sum(1), 1)
    raise ValueError(f"pooling: expected max or mean, got {pooling!r}")

  # -- decoder, whole target at once (training, teacher forcing) ----------------------
  def decode_train(self, params, encoded: Encoded, target_in, *, training=False, key=None):
    """`target_in [B, U]` ids (BOS first, or <2xx> with decoder_start=language) -> logits
    `[B, U, V]`, weights `[B, U, S]`.

    `weights[:, t]` is α_t, computed at step t (`token_attention` says which token it fed).
    """
    c, H = self.config, self.H
    B, U = target_in.shape
    keys = list(jax.random.split(key, c.num_layers + 2)) if key is not None else [None] * (c.num_layers + 2)
    drop = lambda k, x: regularizers.dropout(k, x, c.dropout) if training and c.dropout > 0 else x
    x = drop(keys[-2], jnp.take(params["embed_target"], target_in, axis=0))  # [B, U, H]
    memory, att = encoded.memory, params["attention"]
    initial = self.initial_decoder_state(encoded)
    context0 = initial.context

    if c.input_feeding:  # the bottom layer and the attention feed each other: one scan
      def body(carry, x_t):
        state, context = carry
        state, h = self.cell.step(params["decoder"]["layer_0"], state,
                                  jnp.concatenate([x_t, context], -1))
        context, weights = attention_lib.attend(att, c.attention, memory, h)
        return (state, context), (h, context, weights)

      _, (h, contexts, weights) = jax.lax.scan(
          body, (initial.carries[0], context0), jnp.swapaxes(x, 0, 1))
      h, contexts, weights = (jnp.swapaxes(a, 0, 1) for a in (h, contexts, weights))
    else:  # the bottom layer runs alone (fused kernel), then all attention at once
      h, _ = unroll(self.cell, params["decoder"]["layer_0"], x,
                    initial_carry=initial.carries[0],
                    implementation=self.implementation)  # [B, U, H]
      contexts, weights = attention_lib.attend_all(att, c.attention, memory, h)
    # contexts[:, t] = a_t. "gnmt" upper layers read a_{t-1}; "gnmt_v2" read a_t.
    if c.attention_architecture == "gnmt":
      upper_context = jnp.concatenate([context0[:, None], contexts[:, :-1]], 1)
    else:
      upper_context = contexts
    if self.mesh is not None:
      h = self._upper_layers_pipelined(params, h, upper_context, initial, keys, training)
    else:
      for l in range(1, c.num_layers):
        layer_in = jnp.concatenate([drop(keys[l], h), upper_context], -1)  # [B, U, H + M]
        y, _ = unroll(self.cell, params["decoder"][f"layer_{l}"], layer_in,
                      initial_carry=initial.carries[l], implementation=self.implementation)
        h = y + h if self._residual(l) else y
    logits = drop(keys[-1], h) @ params["w_out"] + params["b_out"]  # [B, U, V]
    return logits, weights

  def _upper_layers_pipelined(self, params, h, upper_context, initial, keys, training):
    """Decoder layers 1..L-1 as a wavefront over the mesh's "layers" axis (the loop of
    `decode_train`, with the same dropout masks): `h [B, U, H]` from the bottom layer,
    `upper_context [B, U, M]` the side input of every layer."""
    from rnn_jax.training import parallel  # noqa: PLC0415
    c, upper = self.config, range(1, self.config.num_layers)
    sizes = list(pipeline.placement(c.num_layers, self.mesh.shape[parallel.LAYERS_AXIS]))
    sizes[0] -= 1  # device 0 holds the bottom layer and the attention
    dropping = training and c.dropout > 0
    keeps = [regularizers.keep_mask(keys[l], h.shape, c.dropout) if dropping else None
             for l in upper]
    h, _ = pipeline.wavefront(
        [self.cell] * len(upper), [params["decoder"][f"layer_{l}"] for l in upper], h,
        mesh=self.mesh, axis=parallel.LAYERS_AXIS, data_axis=parallel.DATA_AXIS,
        sizes=sizes, side=upper_context, keep_masks=keeps, dropout_rate=c.dropout,
        residual=[self._residual(l) for l in upper],
        initial_carries=[initial.carries[l] for l in upper])
    return h

  def token_attention(self, step_weights: Array) -> Array:
    """The attention that fed each output token, from the one computed at each step.

    Args:
      step_weights: `[..., U, S]`, row t the weights α_t computed at decoding step t.

    Returns:
      `[..., U, S]`, row u the weights of the context that output token u's upper
      layers read: α_u for "gnmt_v2"; α_{u-1} for "gnmt" (α_u there only reaches token
      u + 1), and zeros for its token 0, which read the zero initial context.
    """
    if self.config.attention_architecture == "gnmt_v2":
      return step_weights
    first = jnp.zeros_like(step_weights[..., :1, :])
    return jnp.concatenate([first, step_weights[..., :-1, :]], axis=-2)

  def _residual(self, l: int) -> bool:
    return self.residual_from is not None and l >= self.residual_from

  # -- decoder, one step (inference) --------------------------------------------------
  def initial_decoder_state(self, encoded: Encoded) -> DecoderState:
    """The encoder's final states start the decoder (tensorflow/nmt's pass_hidden_state).

    Decoder layer 0 starts from the bottom encoder layer's final state (its
    backward direction when bi-directional: it has read the whole source),
    layer l from encoder layer l's. Without this, GNMT attention gives the
    first target token no view of the source: the upper layers read the
    context of the previous step, which is zero at t = 0.
    """
    B = encoded.memory.values.shape[0]
    zeros = jnp.zeros((B, self.memory_size), encoded.memory.values.dtype)
    if not self.config.pass_hidden_state:
      return DecoderState(tuple(self.cell.initial_carry((B,)) for _ in range(self.config.num_layers)),
                          zeros)
    finals = list(encoded.final)
    if self.config.bidirectional_bottom:
      finals[0] = finals[0][1]  # the backward direction
    return DecoderState(tuple(finals), zeros)

  def decoder(self) -> Decoder:
    """GNMT's decoder on the library's contract (`rnn_jax.seq2seq.Decoder`): its memory is
    the `Encoded` source (attention memory and the encoder's final states)."""
    def step(params, encoded: Encoded, state, tokens, *, training=False, key=None):
      return self.decode_step_logits(params, encoded.memory, state, tokens,
                                     training=training, key=key)
    return Decoder(init_state=lambda params, encoded: self.initial_decoder_state(encoded),
                   step=step, vocab_size=self.V, token_attention=self.token_attention,
                   step_kwargs=frozenset({"training", "key"}),
                   readout=lambda state: state.carries[-1].h)

  def decode_step(self, params, memory: attention_lib.Memory, state: DecoderState, tokens):
    """`tokens [N]` -> (new state, log-probs `[N, V]`, attention weights `[N, S]`)."""
    state, logits, weights = self.decode_step_logits(params, memory, state, tokens)
    return state, jax.nn.log_softmax(logits), weights

  def decode_step_logits(self, params, memory: attention_lib.Memory, state: DecoderState,
                         tokens, *, training=False, key=None):
    """`tokens [N]` -> (new state, logits `[N, V]`, attention weights `[N, S]`).

    With `training` and a `key`, dropout where `decode_train` puts it (the embedding, the
    input of layers 1.., the softmax input), masks drawn from `key` for this step only.
    """
    c = self.config
    keys = (list(jax.random.split(key, c.num_layers + 2)) if training and key is not None
            else [None] * (c.num_layers + 2))
    drop = lambda k, x: regularizers.dropout(k, x, c.dropout) if training and c.dropout > 0 else x
    x = drop(keys[-2], jnp.take(params["embed_target"], tokens, axis=0))  # [N, H]
    bottom_in = jnp.concatenate([x, state.context], -1) if c.input_feeding else x
    carries = list(state.carries)
    carries[0], h = self.cell.step(params["decoder"]["layer_0"], carries[0], bottom_in)
    context, weights = attention_lib.attend(params["attention"], c.attention, memory, h)
    upper_context = state.context if c.attention_architecture == "gnmt" else context
    for l in range(1, c.num_layers):
      carries[l], y = self.cell.step(params["decoder"][f"layer_{l}"], carries[l],
                                     jnp.concatenate([drop(keys[l], h), upper_context], -1))
      h = y + h if self._residual(l) else y
    logits = drop(keys[-1], h) @ params["w_out"] + params["b_out"]
    return DecoderState(tuple(carries), context), logits, weights
