"""The long-range tasks as pure numpy generators: `task(rng, batch_size, ...) -> batch`.

Every generator draws from the `np.random.Generator` it is given and nothing
else, so a batch is a function of its seed (`rng_for(seed, split, step)`).

* `adding` (Hochreiter & Schmidhuber 1997; Le et al. 2015): inputs `[B, T, 2]`,
  a value uniform in [0, 1) and a marker; exactly two steps are marked, one in
  each half of the sequence; the target `[B]` is the sum of the two marked
  values. Predicting the mean (1) gives an MSE of 1/6 ≈ 0.167.
* `copy` (the copy-memory task of Arjovsky et al. 2016): `copy_len` symbols
  from {1, ..., num_symbols}, then `T` blanks (0) whose last one is replaced by
  the delimiter (num_symbols + 1), then `copy_len` blanks during which the
  symbols must be repeated. Inputs and targets are `[B, T + 2 copy_len]`
  integers; the target is blank everywhere except the last `copy_len` steps.
  A network without memory is stuck at a loss of copy_len log(num_symbols) /
  (T + 2 copy_len) and an accuracy of 1/num_symbols on the copied symbols.
* `frequency` (Neil et al. 2016, task 1): a sine wave sin(2π t / P - s) seen
  over a window of 15 to 125 ms; class 1 when the period P lies in [5, 6] ms.
  Half of each batch is class 1 (P uniform in [5, 6]), half class 0 (P
  log-uniform in [1, 100] outside [5, 6]), in a random order. Three sampling
  regimes: `high_res` (every 0.1 ms, as the reference code's high-resolution
  condition), `low_res` (every 1 ms), `async` (15 to 125 sorted random times in
  the window). Sequences are right-padded to the regime's longest length.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

TASKS = ("adding", "copy", "frequency")
REGIMES = {"high_res": 0.1, "low_res": 1.0, "async": None}  # sampling step in ms (None: random)

# Frequency task constants (the reference code's defaults).
MIN_PERIOD, MAX_PERIOD = 1.0, 100.0
CLASS_PERIOD = (5.0, 6.0)
MIN_DURATION, MAX_DURATION = 15.0, 125.0
MIN_POINTS, MAX_POINTS = 15, 125


def rng_for(seed: int, split: str, step: int = 0) -> np.random.Generator:
  """The generator of batch `step` of `split` ("train", "valid", "test") for run `seed`."""
  return np.random.default_rng([seed, zlib.crc32(split.encode()), step])


def adding(rng: np.random.Generator, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
  """`{"inputs": [B, T, 2] float32, "targets": [B] float32}`."""
  if seq_len < 2:
    raise ValueError(f"seq_len: the adding task needs at least 2 steps, got {seq_len}")
  values = rng.uniform(0.0, 1.0, (batch_size, seq_len)).astype(np.float32)
  half = seq_len // 2
  first = rng.integers(0, half, batch_size)
  second = rng.integers(half, seq_len, batch_size)
  markers = np.zeros((batch_size, seq_len), np.float32)
  rows = np.arange(batch_size)
  markers[rows, first] = 1.0
  markers[rows, second] = 1.0
  targets = values[rows, first] + values[rows, second]
  return {"inputs": np.stack([values, markers], axis=-1), "targets": targets.astype(np.float32)}


def copy(rng: np.random.Generator, batch_size: int, seq_len: int, *, num_symbols: int = 8,
         copy_len: int = 10) -> dict[str, np.ndarray]:
  """`{"inputs": [B, T + 2 copy_len] int32, "targets": [B, T + 2 copy_len] int32}`.

  Token 0 is blank, 1..num_symbols the symbols, num_symbols + 1 the delimiter.
  """
  if seq_len < 2:
    raise ValueError(f"seq_len: the copy task needs a delay of at least 2 steps, got {seq_len}")
  total = seq_len + 2 * copy_len
  symbols = rng.integers(1, num_symbols + 1, (batch_size, copy_len))
  inputs = np.zeros((batch_size, total), np.int32)
  inputs[:, :copy_len] = symbols
  inputs[:, copy_len + seq_len - 1] = num_symbols + 1
  targets = np.zeros((batch_size, total), np.int32)
  targets[:, -copy_len:] = symbols
  return {"inputs": inputs, "targets": targets}


def copy_baseline_loss(seq_len: int, num_symbols: int = 8, copy_len: int = 10) -> float:
  """Mean cross-entropy per step of the best memoryless predictor."""
  return copy_len * math.log(num_symbols) / (seq_len + 2 * copy_len)


def frequency_max_len(regime: str) -> int:
  """Padded length T of the regime's batches."""
  step = REGIMES[regime]
  return MAX_POINTS if step is None else math.ceil(MAX_DURATION / step)


def _class0_periods(rng: np.random.Generator, n: int) -> np.ndarray:
  """Log-uniform in [MIN_PERIOD, MAX_PERIOD] with [5, 6] cut out (by inverse CDF)."""
  lo, hi = math.log(MIN_PERIOD), math.log(MAX_PERIOD)
  a, b = math.log(CLASS_PERIOD[0]), math.log(CLASS_PERIOD[1])
  u = rng.uniform(0.0, (hi - lo) - (b - a), n)  # position in the union, gap removed
  log_p = lo + u
  return np.exp(np.where(log_p < a, log_p, log_p + (b - a)))


def frequency(rng: np.random.Generator, batch_size: int, regime: str) -> dict[str, np.ndarray]:
  """`{"values": [B, T, 1], "times": [B, T], "lengths": [B], "labels": [B]}` plus the
  generating `periods` and `shifts` `[B]` (values = sin(2π times / period - shift)).

  `times` are in ms; padded steps repeat the last time and carry value 0.
  """
  if regime not in REGIMES:
    raise ValueError(f"regime: expected one of {sorted(REGIMES)}, got {regime!r}")
  T = frequency_max_len(regime)
  n1 = batch_size // 2
  labels = np.zeros(batch_size, np.int32)
  labels[:n1] = 1
  periods = np.concatenate([rng.uniform(*CLASS_PERIOD, n1),
                            _class0_periods(rng, batch_size - n1)])
  order = rng.permutation(batch_size)
  labels, periods = labels[order], periods[order]
  duration = rng.uniform(MIN_DURATION, MAX_DURATION, batch_size)
  start = rng.uniform(0.0, MAX_DURATION - duration)
  shift = rng.uniform(0.0, duration)
  num_points = rng.integers(MIN_POINTS, MAX_POINTS + 1, batch_size)
  values = np.zeros((batch_size, T, 1), np.float32)
  times = np.zeros((batch_size, T), np.float32)
  lengths = np.zeros(batch_size, np.int32)
  step = REGIMES[regime]
  for b in range(batch_size):
    if step is None:
      t = np.sort(rng.uniform(0.0, duration[b], num_points[b])) + start[b]
    else:
      t = start[b] + step * np.arange(max(1, math.ceil(duration[b] / step)))
    n = min(len(t), T)
    t = t[:n]
    values[b, :n, 0] = np.sin(2 * np.pi / periods[b] * t - shift[b])
    times[b, :n] = t
    times[b, n:] = t[-1]
    lengths[b] = n
  return {"values": values, "times": times, "lengths": lengths, "labels": labels,
          "periods": periods.astype(np.float32), "shifts": shift.astype(np.float32)}


def time_deltas(times: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """`[B, T]` Δt_t = t_t - t_{t-1} (0 at the first step and past each length)."""
  deltas = np.diff(times, axis=1, prepend=times[:, :1])
  valid = np.arange(times.shape[1])[None, :] < lengths[:, None]
  return np.where(valid, deltas, 0.0).astype(np.float32)
