"""The long-range experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import RunConfig, field


@dataclasses.dataclass(frozen=True)
class LongRangeConfig(RunConfig):
  """Adding, copy-memory and frequency discrimination; the gradient-flow probe."""
  task: str = field("adding", "adding (regression, test_mse), copy (copy-memory, "
                    "test_accuracy on the recalled symbols), frequency (Phased LSTM task 1, "
                    "test_accuracy), or gradient_flow (no training: ||dLoss/dh_t|| against t "
                    "for --probe_cells on the adding task, plotted).")
  cell: str = field("lstm", "rnn (tanh), irnn (relu, identity init; Le et al. 2015), lstm, "
                    "gru, or plstm (Phased LSTM; reads the timestamps).")
  seq_len: int = field(100, "adding: sequence length T; copy: the delay T between the "
                       "symbols and their recall. Ignored by frequency (see --regime).")
  regime: str = field("async", "frequency: high_res (every 0.1 ms), low_res (every 1 ms) or "
                      "async (15-125 random times).")
  time_delta_input: bool = field(False, "Give the cell Δt (ms since the previous sample) as "
                                 "an extra input, the LSTM baseline of Neil et al. 2016.")
  hidden_size: int = field(128, "Hidden size H.")
  batch_size: int = field(64, "Examples per step (fresh ones every step).")
  train_steps: int = field(3000, "Training steps (--max_steps overrides).")
  optimizer: str = field("adam", "adam, sgd or rmsprop.")
  learning_rate: float = field(1e-3, "Learning rate (constant).")
  max_grad_norm: float = field(1.0, "Clip the gradient's global norm (0: no clipping).")
  forget_bias: float = field(1.0, "Initial forget-gate bias of lstm and plstm.")
  num_symbols: int = field(8, "copy: alphabet size.")
  copy_len: int = field(10, "copy: symbols to remember.")
  period_min: float = field(2.718281828, "plstm: smallest initial period (ms); periods are "
                            "log-uniform in [period_min, period_max]. Default e^1..e^3, the "
                            "reference code's ExponentialUniformInit((1, 3)).")
  period_max: float = field(20.08553692, "plstm: largest initial period (ms).")
  r_on: float = field(0.05, "plstm: initial open ratio.")
  leak: float = field(1e-3, "plstm: leak α of the closed gate while training.")
  num_valid: int = field(500, "Validation examples (evaluated every --eval_every).")
  num_test: int = field(1000, "Test examples.")
  probe_cells: list = field(["rnn", "irnn", "lstm", "gru"], "gradient_flow: cells to compare.")
  probe_seeds: int = field(4, "gradient_flow: initialisations averaged per cell.")
