"""Regularizers for recurrent networks; every random mask comes from an explicit key.

Two kinds live here:

  * `dropout`, a plain function on arrays (between layers, on embeddings, on
    outputs; with `broadcast_dims=(1,)` on `[B, T, D]` one mask per sequence);
  * cell wrappers, each taking a `Cell` and returning a new `Cell` with the
    same `init`, `initial_carry`, `input_size` and `hidden_size`, whose step
    draws its own masks: `recurrent_dropout` (Semeniuta et al. 2016),
    `variational_dropout` (Gal & Ghahramani 2016) and `zoneout` (Krueger et
    al. 2016); plus `norm_stabilizer` (Krueger & Memisevic 2016), a loss term.

Wrapped cells run under `rnn_jax.unroll` and the layers like any other cell:
pass `training=True` and a PRNG `key`. With `training=False` they draw nothing
and need no key.

    cell = zoneout(recurrent_dropout(cells.lstm(512), 0.25), c_rate=0.5, h_rate=0.05)
    params = cell.init(key, input_size)                      # the lstm's params
    ys, final = rnn_jax.unroll(cell, params, xs, seq_lengths=lengths,
                               training=True, key=step_key)  # xs: [B, T, D]
    loss = task_loss + norm_stabilizer(ys, 50.0, seq_lengths=lengths)

How the masks are drawn. `unroll` hands every step the same sequence `key`
and the step index `t` (int32); a wrapper with salt s (a constant of its own)
derives, for example b of the batch:

    k_b   = fold_in(fold_in(key, s), b)       # one key per example
    k_b,t = fold_in(k_b, t)                   # per-step masks (zoneout, recurrent_dropout)
    k_b                                       # per-sequence masks (variational_dropout,
                                              #   recurrent_dropout(per_sequence=True))

A wrapper that needs two masks from one of these keys splits it. Masks are
drawn per example (a `vmap` over b = 0..B-1, row-major over a
multi-dimensional batch) so that `unroll_reference`, which steps one example
at a time with `example=b` and batch shape `()`, draws exactly row b of the
batched masks, and the loop oracle agrees with the scan. A wrapper hands its
inner cell `fold_in(key, _INNER_SALT)`, so nested wrappers, even two of the
same kind, never reuse a mask. Since `t` is the position in the sequence,
`reverse=True` draws the same masks at the same positions. The masks depend
on (key, b, t) only: under `jax.vmap` over several batches, map the key too,
or every batch gets the same masks.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.cells.base import Cell
from rnn_jax.cells.lstm import LSTMState
from rnn_jax.unroll import check_seq_lengths

Array = jax.Array

# Salts folded into the sequence key, one per wrapper; see the module docstring.
_RECURRENT_DROPOUT_SALT = 0x5E3E
_VARIATIONAL_DROPOUT_SALT = 0x6A1
_ZONEOUT_SALT = 0x2047
_INNER_SALT = 0x1CE11  # the key a wrapper hands to its inner cell

# Keywords a wrapper's step always takes (and `unroll` / `unroll_reference` pass).
_WRAPPER_KWARGS = frozenset({"training", "key", "t", "example"})
# Keywords of the inner cell that a wrapper exposes and forwards.
_FORWARDED_KWARGS = frozenset({"time", "state_mask", "update_mask"})


def dropout(key: Array, x: Array, rate: float, *, broadcast_dims: tuple[int, ...] = ()) -> Array:
  """Inverted dropout: zeroes each entry with probability `rate`, scales the rest by 1/(1-rate).

  Args:
    key: PRNG key.
    x: the array to drop from.
    rate: drop probability in [0, 1).
    broadcast_dims: axes along which one mask value is shared, e.g. `(1,)` on
      `[B, T, D]` reuses one mask at every time step (a per-sequence mask).

  Returns:
    An array like `x`. With `rate == 0` it returns `x` itself.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"rate: expected a drop probability in [0, 1), got {rate}")
  if rate == 0.0:
    return x
  return apply_keep(keep_mask(key, x.shape, rate, broadcast_dims=broadcast_dims), x, rate)


def keep_mask(key: Array, shape: tuple[int, ...], rate: float, *,
              broadcast_dims: tuple[int, ...] = ()) -> Array:
  """The booleans `dropout(key, x, rate, broadcast_dims=...)` keeps for an `x` of `shape`
  (size 1 along `broadcast_dims`): for code that reads a mask a step at a time."""
  mask_shape = tuple(1 if d in broadcast_dims else n for d, n in enumerate(shape))
  return jax.random.bernoulli(key, 1.0 - rate, mask_shape)


def apply_keep(keep: Array, x: Array, rate: float) -> Array:
  """`x` where `keep`, scaled by 1 / (1 - rate); zero elsewhere (inverted dropout)."""
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


# ----------------------------------------------------------------------------
# Shared machinery of the cell wrappers.


def _check_rate(name: str, rate) -> float:
  """`rate` as a float in [0, 1); otherwise a ValueError naming the argument."""
  if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name}: expected a probability in [0, 1) (a Python number), "
                     f"got {rate!r}")
  rate = float(rate)
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"{name}: expected a probability in [0, 1), got {rate}")
  return rate


def _check_cell(cell) -> None:
  if not isinstance(cell, Cell):
    raise ValueError(f"cell: expected a rnn_jax.cells.Cell, got {type(cell).__name__}")


def _check_training_key(key, training: bool, name: str):
  """Returns `key` as a typed key when training; raises a ValueError naming `key`."""
  if not training:
    return None
  if key is None:
    raise ValueError(f"key: the {name} cell draws random masks when training=True; "
                     "pass a PRNG key (jax.random.key)")
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)  # a raw uint32 key, jax.random.PRNGKey style
  if key.shape != ():
    raise ValueError(f"key: expected a single PRNG key for the whole batch (the "
                     f"wrapper folds in each example's index), got a key array of "
                     f"shape {tuple(key.shape)}")
  return key


def _check_t(t, name: str) -> None:
  if t is None:
    raise ValueError(f"t: the {name} cell draws a new mask at every step when "
                     "training=True and needs the step index t (unroll passes it)")


def _draw_per_example(draw: Callable[[Array], Any], key: Array, salt: int,
                      batch_shape: tuple[int, ...], *, example=None, t=None):
  """Runs `draw(k)` on each example's key; returns its pytree with `[*B]` in front.

  The key of example b is `fold_in(fold_in(key, salt), b)`, folded with `t`
  too when `t` is given. With `example` (batch shape `()`), only that example's.
  """
  key = jax.random.fold_in(key, salt)

  def one(b):
    k = jax.random.fold_in(key, b)
    return k if t is None else jax.random.fold_in(k, t)

  if example is not None:
    if batch_shape != ():
      raise ValueError(f"example: an example index goes with a single example "
                       f"(batch shape ()), got a batch of shape {batch_shape}")
    return draw(one(example))
  n = math.prod(batch_shape)
  out = jax.vmap(lambda b: draw(one(b)))(jnp.arange(n, dtype=jnp.uint32))
  return jax.tree_util.tree_map(lambda a: a.reshape(batch_shape + a.shape[1:]), out)


def _keep_scale(k: Array, rate: float, size: int, dtype) -> Array:
  """An inverted-dropout mask `[size]`: 1/(1 - rate) with probability 1 - rate, else 0."""
  keep = jax.random.bernoulli(k, 1.0 - rate, (size,))
  return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def _carry_dtype(carry):
  return jax.tree_util.tree_leaves(carry)[0].dtype


def _wrapper_step_kwargs(cell: Cell) -> frozenset[str]:
  return _WRAPPER_KWARGS | (cell.step_kwargs & _FORWARDED_KWARGS)


def _inner_kwargs(cell: Cell, *, training: bool, key, t, example, time,
                  state_mask=None, update_mask=None) -> dict[str, Any]:
  """The keywords for the inner cell's step: only those it takes."""
  names = cell.step_kwargs
  kwargs = {}
  if "time" in names:
    kwargs["time"] = time
  elif time is not None:
    raise ValueError(f"time: the {cell.name} cell does not use timestamps")
  if "training" in names:
    kwargs["training"] = training
  if "key" in names:
    kwargs["key"] = None if key is None else jax.random.fold_in(key, _INNER_SALT)
  if "t" in names:
    kwargs["t"] = t
  if "example" in names:
    kwargs["example"] = example
  for mask_name, mask in (("state_mask", state_mask), ("update_mask", update_mask)):
    if mask is None:
      continue
    if mask_name not in names:
      raise ValueError(f"{mask_name}: the {cell.name} cell's step takes no {mask_name}")
    kwargs[mask_name] = mask
  return kwargs


def _multiply(a: Array | None, b: Array | None) -> Array | None:
  if a is None:
    return b
  return a if b is None else a * b


# ----------------------------------------------------------------------------
# Recurrent dropout without memory loss (Semeniuta et al. 2016).


def recurrent_dropout(cell: Cell, rate: float, *, per_sequence: bool = False) -> Cell:
  r"""Recurrent dropout without memory loss (Semeniuta, Severyn & Barth 2016).

  Drops the candidate update only, never the memory. With d ~ Bernoulli(1 -
  rate) per unit, `[*B, H]`, and the inverted-dropout mask m = d / (1 - rate):

      LSTM:  c_t = f_t ⊙ c_{t-1} + i_t ⊙ (g_t ⊙ m)
      GRU:   h_t = (1 - z_t) ⊙ (n_t ⊙ m) + z_t ⊙ h_{t-1}

  (the rest of each cell as in `rnn_jax.cells.lstm` / `gru`). A dropped unit
  keeps f_t ⊙ c_{t-1} (or z_t ⊙ h_{t-1}): the memory is scaled by the gate,
  as without dropout, instead of being zeroed, so long-range information
  survives. The mask is fresh at every step (k_b,t in the module docstring)
  or, with `per_sequence=True`, one per sequence reused at every step (k_b);
  the paper reports both work. At evaluation (`training=False`) m = 1: the
  wrapped cell is exactly the plain cell (inverted dropout needs no rescaling).

  The step is `step(params, carry, x_t, *, training=False, key=None, t=None,
  example=None, state_mask=None, update_mask=None)`; `training`, `key`, `t`
  and `example` come from `unroll`, a given `update_mask` is multiplied into
  the drawn one and a `state_mask` is passed through (so wrappers compose).

  Args:
    cell: the cell to wrap; its step must take `update_mask` (`lstm`, `gru`,
      or a wrapper of one).
    rate: drop probability in [0, 1) of each unit of the update.
    per_sequence: one mask per sequence instead of one per step.

  Returns:
    A `Cell` named "recurrent_dropout(<cell>)" with the inner cell's params and
    carry.
  """
  _check_cell(cell)
  rate = _check_rate("rate", rate)
  if "update_mask" not in cell.step_kwargs:
    raise ValueError(f"cell: recurrent_dropout needs a cell whose step takes "
                     f"update_mask (lstm or gru), got {cell.name}")
  name = f"recurrent_dropout({cell.name})"
  H = cell.hidden_size

  def step(params, carry, x_t, *, training: bool = False, key=None, t=None,
           example=None, time=None, state_mask=None, update_mask=None):
    key = _check_training_key(key, training, name)
    if training and rate > 0.0:
      if not per_sequence:
        _check_t(t, name)
      dtype = _carry_dtype(carry)
      mask = _draw_per_example(
          lambda k: _keep_scale(k, rate, H, dtype), key, _RECURRENT_DROPOUT_SALT,
          x_t.shape[:-1], example=example, t=None if per_sequence else t)  # [*B, H]
      update_mask = _multiply(update_mask, mask)
    kwargs = _inner_kwargs(cell, training=training, key=key, t=t, example=example,
                           time=time, state_mask=state_mask, update_mask=update_mask)
    return cell.step(params, carry, x_t, **kwargs)

  return cell._replace(
      name=name, step=step, step_kwargs=_wrapper_step_kwargs(cell),
      hparams=dict(cell=cell.name, rate=rate, per_sequence=per_sequence))


# ----------------------------------------------------------------------------
# Variational dropout (Gal & Ghahramani 2016).


def variational_dropout(cell: Cell, *, state_rate: float = 0.0,
                        input_rate: float = 0.0) -> Cell:
  r"""Variational (per-sequence) dropout on the recurrence (Gal & Ghahramani 2016).

  One mask per sequence, drawn once and reused at every step: m_s `[*B, H]`
  on the recurrent state and m_x `[*B, D]` on the input, each an
  inverted-dropout mask (entries 0 or 1/(1 - rate)). For an LSTM:

      z   = (x_t ⊙ m_x) W_ih + (h_{t-1} ⊙ m_s) W_hh
      c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,    h_t = o_t ⊙ tanh(c_t)

  and for a GRU every recurrent matmul sees h_{t-1} ⊙ m_s while the carried
  h_{t-1} of h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1} is left alone (see the
  `state_mask` of `rnn_jax.cells.lstm` and `gru`). This is the tied form: one
  state mask for all gates. The masks come from each example's key k_b (see
  the module docstring), so they are the same at every step and in both
  directions. At evaluation (`training=False`) the wrapped cell is exactly the
  plain cell.

  Gal & Ghahramani also drop the outputs (and the embeddings) with a mask per
  sequence; that needs nothing inside the cell: on `[B, T, D]` activations use
  `dropout(key, xs, rate, broadcast_dims=(1,))`, one mask per sequence shared
  over time. The same call on the inputs is equivalent to `input_rate` here
  (with different random bits).

  The step is `step(params, carry, x_t, *, training=False, key=None, t=None,
  example=None, state_mask=None, update_mask=None)`; a given `state_mask` is
  multiplied into the drawn one and an `update_mask` is passed through.

  Args:
    cell: the cell to wrap; with `state_rate > 0` its step must take
      `state_mask` (`lstm`, `gru`, or a wrapper of one). Any cell takes
      `input_rate`.
    state_rate: drop probability in [0, 1) of each unit of h_{t-1} in the
      recurrent matmuls.
    input_rate: drop probability in [0, 1) of each feature of x_t.

  Returns:
    A `Cell` named "variational_dropout(<cell>)" with the inner cell's params
    and carry.
  """
  _check_cell(cell)
  state_rate = _check_rate("state_rate", state_rate)
  input_rate = _check_rate("input_rate", input_rate)
  if state_rate > 0.0 and "state_mask" not in cell.step_kwargs:
    raise ValueError(f"cell: variational_dropout with state_rate > 0 needs a cell "
                     f"whose step takes state_mask (lstm or gru), got {cell.name}")
  name = f"variational_dropout({cell.name})"
  H = cell.hidden_size

  def step(params, carry, x_t, *, training: bool = False, key=None, t=None,
           example=None, time=None, state_mask=None, update_mask=None):
    key = _check_training_key(key, training, name)
    if training and (state_rate > 0.0 or input_rate > 0.0):
      D = x_t.shape[-1]
      state_dtype = _carry_dtype(carry)

      def draw(k):
        k_state, k_input = jax.random.split(k)
        m_s = _keep_scale(k_state, state_rate, H, state_dtype) if state_rate > 0.0 else None
        m_x = _keep_scale(k_input, input_rate, D, x_t.dtype) if input_rate > 0.0 else None
        return m_s, m_x

      m_s, m_x = _draw_per_example(draw, key, _VARIATIONAL_DROPOUT_SALT,
                                   x_t.shape[:-1], example=example)  # no t: per sequence
      state_mask = _multiply(state_mask, m_s)  # [*B, H]
      if m_x is not None:
        x_t = x_t * m_x  # [*B, D]
    kwargs = _inner_kwargs(cell, training=training, key=key, t=t, example=example,
                           time=time, state_mask=state_mask, update_mask=update_mask)
    return cell.step(params, carry, x_t, **kwargs)

  return cell._replace(
      name=name, step=step, step_kwargs=_wrapper_step_kwargs(cell),
      hparams=dict(cell=cell.name, state_rate=state_rate, input_rate=input_rate))


# ----------------------------------------------------------------------------
# Zoneout (Krueger et al. 2016).


def _carry_kind(cell: Cell) -> str:
  """"lstm" for an `LSTMState(h, c)` carry, "single" for one `[*B, H]` array."""
  carry = jax.eval_shape(lambda: cell.initial_carry(()))
  if isinstance(carry, LSTMState):
    return "lstm"
  if isinstance(carry, jax.ShapeDtypeStruct):
    return "single"
  raise ValueError(f"cell: zoneout handles an LSTMState(h, c) carry or a single "
                   f"[*B, H] array, the {cell.name} cell's carry is {type(carry).__name__}")


def zoneout(cell: Cell, *, c_rate: float = 0.0, h_rate: float = 0.0) -> Cell:
  r"""Zoneout (Krueger et al. 2016): units randomly keep their previous value.

  With (h̃_t, c̃_t) the inner cell's new carry, at every step and for every
  unit independently, d ~ Bernoulli(rate) `[*B, H]`, and

      training:    h_t = d ⊙ h_{t-1} + (1 - d) ⊙ h̃_t            (d = 1: zoned out)
      evaluation:  h_t = rate · h_{t-1} + (1 - rate) · h̃_t       (the expectation)

  and the same for c with its own d and `c_rate`. **`rate` is the probability
  that a unit KEEPS ITS PREVIOUS VALUE** (zones out), as in the paper; rate 0
  is the plain cell. Mind the reference code (github.com/teganmaharaj/zoneout):
  its README warns that in its char-PTB, word-PTB and text8 scripts the
  zoneout flags are currently "(1-zoneout_probability)", i.e. the probability
  of updating, the other way round; read values from those scripts as
  1 - rate here. The paper's settings for character-level PTB are c_rate=0.5,
  h_rate=0.05.

  The output y_t is the new, zoned-out h_t (what the next step and the next
  layer see). An LSTM-like carry `LSTMState(h, c)` (lstm, phased_lstm) uses
  `c_rate` on c and `h_rate` on h; a single-array carry (gru, simple_rnn)
  uses `h_rate` only. Masks are fresh at every step (k_b,t in the module
  docstring), so the step needs `t` when training; `unroll` passes it. Unlike
  dropout, zoneout also changes the evaluation step (to the expectation
  above), so `training=False` is not the plain cell unless both rates are 0.

  The step is `step(params, carry, x_t, *, training=False, key=None, t=None,
  example=None)` plus whatever of `time`, `state_mask`, `update_mask` the
  inner cell takes, passed through.

  Args:
    cell: the cell to wrap (any cell whose carry is `LSTMState` or one array).
    c_rate: probability in [0, 1) that a unit of the LSTM cell state c keeps
      its previous value.
    h_rate: probability in [0, 1) that a unit of h keeps its previous value.

  Returns:
    A `Cell` named "zoneout(<cell>)" with the inner cell's params and carry.
  """
  _check_cell(cell)
  c_rate = _check_rate("c_rate", c_rate)
  h_rate = _check_rate("h_rate", h_rate)
  kind = _carry_kind(cell)
  if kind == "single" and c_rate != 0.0:
    raise ValueError(f"c_rate: the {cell.name} cell carries a single state h; use "
                     f"h_rate (c_rate applies to LSTM cell states only), got c_rate={c_rate}")
  name = f"zoneout({cell.name})"
  H = cell.hidden_size

  def zone(old, new, rate, d):
    if rate == 0.0:
      return new
    if d is None:  # evaluation: the expectation
      return rate * old + (1.0 - rate) * new
    return jnp.where(d, old, new)

  def step(params, carry, x_t, *, training: bool = False, key=None, t=None,
           example=None, time=None, state_mask=None, update_mask=None):
    key = _check_training_key(key, training, name)
    kwargs = _inner_kwargs(cell, training=training, key=key, t=t, example=example,
                           time=time, state_mask=state_mask, update_mask=update_mask)
    new_carry, _ = cell.step(params, carry, x_t, **kwargs)
    d_c = d_h = None
    if training and (c_rate > 0.0 or h_rate > 0.0):
      _check_t(t, name)

      def draw(k):
        k_c, k_h = jax.random.split(k)
        return (jax.random.bernoulli(k_c, c_rate, (H,)),
                jax.random.bernoulli(k_h, h_rate, (H,)))

      d_c, d_h = _draw_per_example(draw, key, _ZONEOUT_SALT, x_t.shape[:-1],
                                   example=example, t=t)  # [*B, H] each, True: keep old
    if kind == "lstm":
      h = zone(carry.h, new_carry.h, h_rate, d_h)
      c = zone(carry.c, new_carry.c, c_rate, d_c)
      return LSTMState(h, c), h
    h = zone(carry, new_carry, h_rate, d_h)
    return h, h

  return cell._replace(
      name=name, step=step, step_kwargs=_wrapper_step_kwargs(cell),
      hparams=dict(cell=cell.name, c_rate=c_rate, h_rate=h_rate))


# ----------------------------------------------------------------------------
# Norm stabilizer (Krueger & Memisevic 2016).


def _safe_norm(x: Array) -> Array:
  """||x|| over the last axis, with gradient 0 (not NaN) at x = 0."""
  sq = jnp.sum(jnp.square(x), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def norm_stabilizer(hs: Array, beta, *, seq_lengths: Array | None = None,
                    initial_h: Array | None = None) -> Array:
  r"""The norm-stabilizer penalty (Krueger & Memisevic 2016), a scalar to add to the loss.

  For hidden states hs `[B, T, H]` it penalises changes of the norm of h
  between consecutive steps:

      β · mean over valid pairs (b, t) of (||h_{b,t}||_2 - ||h_{b,t-1}||_2)^2

  with norms over H. The pairs are t = 1..len_b - 1, or t = 0..len_b - 1 when
  `initial_h` `[B, H]` (h_{b,-1}, e.g. the initial carry's h) is given; len_b
  is `seq_lengths[b]` (T when None), so padding never enters. The mean is over
  all valid pairs of the batch together, sum / count (not a mean of
  per-sequence means), so long sequences weigh more; with no valid pair the
  penalty is 0. For a single sequence with `initial_h` this is the paper's
  β (1/T) Σ_{t=1}^{T} (||h_t|| - ||h_{t-1}||)^2. The norm has gradient 0 at
  h = 0 (zero initial states and padding give no NaNs). The squared difference
  is symmetric, so the outputs of a reverse direction work as they are, except
  that `initial_h` always pairs with t = 0.

  Args:
    hs: hidden states `[B, T, H]`, e.g. the ys of `rnn_jax.unroll`.
    beta: β >= 0, the weight of the penalty (the paper uses 50 on char PTB).
    seq_lengths: `[B]` integer lengths in `[0, T]`; None means all are T.
    initial_h: `[B, H]`, the state before t = 0, or None.

  Returns:
    A scalar (float32 at least).
  """
  if not hasattr(hs, "shape") or len(hs.shape) != 3:
    raise ValueError(f"hs: expected hidden states [B, T, H], got "
                     f"{getattr(hs, 'shape', type(hs).__name__)}")
  B, T, H = hs.shape
  if isinstance(beta, (int, float, np.integer, np.floating)) and not beta >= 0:
    raise ValueError(f"beta: expected a non-negative weight, got {beta}")
  dtype = jnp.promote_types(hs.dtype, jnp.float32)
  norms = _safe_norm(jnp.asarray(hs, dtype))  # [B, T]
  if initial_h is not None:
    if tuple(jnp.shape(initial_h)) != (B, H):
      raise ValueError(f"initial_h: expected shape [B, H]=({B}, {H}) to match hs "
                       f"{tuple(hs.shape)}, got {tuple(jnp.shape(initial_h))}")
    norm_0 = _safe_norm(jnp.asarray(initial_h, dtype))  # [B]
    prev = jnp.concatenate([norm_0[:, None], norms[:, :-1]], axis=1)  # [B, T]
    diffs = norms - prev  # pair (t - 1, t) at t = 0..T-1
    t_index = jnp.arange(T)
  else:
    diffs = norms[:, 1:] - norms[:, :-1]  # [B, T - 1], pair (t - 1, t) at t = 1..T-1
    t_index = jnp.arange(1, max(T, 1))
  if seq_lengths is None:
    valid = jnp.ones(diffs.shape, bool)
  else:
    check_seq_lengths(seq_lengths, (B, T), "hs")
    valid = t_index[None, :] < jnp.asarray(seq_lengths)[:, None]  # [B, pairs]
  total = jnp.sum(jnp.where(valid, jnp.square(diffs), 0.0))
  count = jnp.sum(valid)
  return beta * total / jnp.maximum(count, 1).astype(dtype)
