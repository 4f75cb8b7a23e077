"""One recurrent layer and a linear readout, for every long-range task.

    inputs  [B, T, D]       adding: (value, marker); copy: one-hot symbols;
                            frequency: the sample (and Δt with --time_delta_input)
    ys, h_T = unroll(cell, inputs, seq_lengths, timestamps)      # ys [B, T, H]
    adding:    prediction [B]        = h_T w + b                 (MSE)
    copy:      logits [B, T, K + 2]  = ys W + b                  (cross-entropy at every step)
    frequency: logits [B, 2]         = h_T W + b                 (cross-entropy)

h_T is the hidden state at each sequence's last valid step. Phased LSTM reads
the timestamps (the step index for adding and copy, the sample times in ms
for frequency).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.long_range import tasks
from rnn_jax import cells, unroll
from rnn_jax.cells import LSTMState

CELLS = ("rnn", "irnn", "lstm", "gru", "plstm")


def make_cell(config) -> cells.Cell:
  H = config.hidden_size
  if config.cell == "rnn":
    return cells.simple_rnn(H)
  if config.cell == "irnn":
    return cells.simple_rnn(H, nonlinearity="relu", identity_init=True)
  if config.cell == "lstm":
    return cells.lstm(H, forget_bias=config.forget_bias)
  if config.cell == "gru":
    return cells.gru(H)
  if config.cell == "plstm":
    return cells.phased_lstm(H, r_on=config.r_on, leak=config.leak,
                             period_init_range=(config.period_min, config.period_max),
                             forget_bias=config.forget_bias)
  raise ValueError(f"cell: expected one of {CELLS}, got {config.cell!r}")


def input_size(config) -> int:
  if config.task == "adding":
    return 2
  if config.task == "copy":
    return config.num_symbols + 2
  return 1 + int(config.time_delta_input)


def output_size(config) -> int:
  return {"adding": 1, "copy": config.num_symbols + 2, "frequency": 2}[config.task]


def features(config, batch) -> dict[str, Any]:
  """The network's inputs from a `make_batch` batch: xs `[B, T, D]`, lengths `[B]` or None, times `[B, T]`."""
  if config.task == "adding":
    xs = jnp.asarray(batch["inputs"])
    lengths, times = None, None
  elif config.task == "copy":
    xs = jax.nn.one_hot(batch["inputs"], config.num_symbols + 2)
    lengths, times = None, None
  else:
    xs = jnp.asarray(batch["values"])
    if config.time_delta_input:
      xs = jnp.concatenate([xs, jnp.asarray(batch["deltas"])[..., None]], axis=-1)
    lengths = jnp.asarray(batch["lengths"])
    times = jnp.asarray(batch["times"])
  if times is None:
    times = jnp.broadcast_to(jnp.arange(xs.shape[1], dtype=jnp.float32), xs.shape[:2])
  return {"xs": xs, "lengths": lengths, "times": times}


class Model(NamedTuple):
  cell: cells.Cell
  init: Any     # init(key) -> params
  readout: Any  # readout(params, ys, final_carry) -> predictions
  apply: Any    # apply(params, batch, *, training=False) -> predictions
  loss: Any     # loss(predictions, batch) -> (loss, metrics)
  unroll_kwargs: Any  # unroll_kwargs(features, training) -> kwargs of `unroll` beyond xs


def _final_h(carry):
  return carry.h if isinstance(carry, LSTMState) else carry


def build(config) -> Model:
  cell = make_cell(config)
  H, D, K = config.hidden_size, input_size(config), output_size(config)

  def init(key):
    k_cell, k_out = jax.random.split(key)
    return {"cell": cell.init(k_cell, D),
            "w_out": jax.random.normal(k_out, (H, K)) / jnp.sqrt(H),
            "b_out": jnp.zeros((K,))}

  def readout(params, ys, final_carry):
    if config.task == "copy":
      return ys @ params["w_out"] + params["b_out"]  # [B, T, K]
    out = _final_h(final_carry) @ params["w_out"] + params["b_out"]
    return out[:, 0] if config.task == "adding" else out  # [B] or [B, 2]

  def unroll_kwargs(feats, training):
    kwargs = {"seq_lengths": feats["lengths"]}
    if cell.uses_time:
      kwargs.update(timestamps=feats["times"], training=training)
    return kwargs

  def apply(params, batch, *, training=False):
    feats = features(config, batch)
    ys, final = unroll(cell, params["cell"], feats["xs"], **unroll_kwargs(feats, training))
    return readout(params, ys, final)

  def loss(predictions, batch):
    if config.task == "adding":
      mse = jnp.mean((predictions - batch["targets"]) ** 2)
      return mse, {"mse": mse}
    if config.task == "copy":
      targets = batch["targets"]
      ce = optax.softmax_cross_entropy_with_integer_labels(predictions, targets).mean()
      recall = slice(-config.copy_len, None)
      correct = jnp.argmax(predictions[:, recall], -1) == targets[:, recall]
      return ce, {"ce": ce, "accuracy": jnp.mean(correct)}
    labels = batch["labels"]
    ce = optax.softmax_cross_entropy_with_integer_labels(predictions, labels).mean()
    return ce, {"ce": ce, "accuracy": jnp.mean(jnp.argmax(predictions, -1) == labels)}

  return Model(cell, init, readout, apply, loss, unroll_kwargs)


def make_batch(config, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
  """A batch of the configured task."""
  if config.task == "adding":
    return tasks.adding(rng, batch_size, config.seq_len)
  if config.task == "copy":
    return tasks.copy(rng, batch_size, config.seq_len, num_symbols=config.num_symbols,
                      copy_len=config.copy_len)
  batch = tasks.frequency(rng, batch_size, config.regime)
  batch["deltas"] = tasks.time_deltas(batch["times"], batch["lengths"])
  del batch["periods"], batch["shifts"]
  return batch
