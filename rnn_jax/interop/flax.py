r"""Flax's recurrent cells and layers, weights and all, as rnn_jax cells and pure functions.

    model = nn.RNN(nn.OptimizedLSTMCell(64), return_carry=True)
    variables = model.init(key, xs)                           # a trained Flax model's
    apply, params = rnn_jax.interop.from_flax(model, variables)
    (c, h), ys = jax.jit(apply)(params, xs, seq_lengths=lengths)   # what the model returns

Cells. Flax's gate orders are rnn_jax's (LSTM `i, f, g, o`, GRU `r, z, n`) and both store
kernels `[in, out]`, so the mapping only concatenates, per gate `k`:

    Flax cell (its params)                        rnn_jax cell and params
    linen LSTMCell, OptimizedLSTMCell             cells.lstm(H)
      i{k}.kernel [D, H], h{k}.kernel [H, H],       w_ih = [ii|if|ig|io].kernel  [D, 4H]
      h{k}.bias [H]   (k in i, f, g, o)             w_hh = [hi|hf|hg|ho].kernel  [H, 4H]
                                                    b    = [hi|hf|hg|ho].bias    [4H]
    nnx LSTMCell                                  the same, its `if` named `if_`
    nnx OptimizedLSTMCell                         w_ih = dense_i.kernel, w_hh = dense_h.kernel,
      dense_i.kernel [D, 4H], dense_h.{kernel, bias} b = dense_h.bias
    linen GRUCell                                 cells.gru(H, reset_after=True)
      i{k}.{kernel, bias}, h{r,z}.kernel,           w_ih = [ir|iz|in].kernel, b = [ir|iz|in].bias
      hn.{kernel, bias}                             w_hh = [hr|hz|hn].kernel, b_hn = hn.bias
    nnx GRUCell                                   w_ih = dense_i.kernel, b = dense_i.bias,
      dense_i.{kernel, bias} [.., 3H],              w_hh = dense_h.kernel,
      dense_h.kernel [H, 3H] (no bias)              b_hn = 0
    linen / nnx SimpleCell                        cells.simple_rnn(H, nonlinearity=tanh|relu)
      i.{kernel, bias}, h.kernel (nnx: dense_i,     w_ih = i.kernel, b = i.bias, w_hh = h.kernel
      dense_h)

Flax's GRU is the reset-after form, `n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))`:
rnn_jax's `gru(reset_after=True)`. An LSTM's carry is `(c, h)` in Flax and `LSTMState(h,
c)` here (`carry_from_flax`, `carry_to_flax`); GRU and simple carries are `h` in both.

What cannot be mapped raises a ValueError that names it: a `gate_fn` other than sigmoid or
an `activation_fn` other than tanh (relu too for SimpleCell), `SimpleCell(residual=True)`,
any other cell (MGUCell, ConvLSTMCell, subclasses); back to Flax, rnn_jax params with
peepholes, layer norm or coupled gates, the original GRU form (`reset_after=False`), and,
for nnx's GRUCell (which has no b_hn), a nonzero `b_hn`. rnn_jax params without biases go
to Flax with zero biases. A Flax cell's compute `dtype` is not carried over: rnn_jax
computes in the inputs' dtype (its `param_dtype` is).

Layers. `from_flax(module, variables)` takes a Linen or NNX `RNN`, `Bidirectional`, or a
`Sequential` of them, and returns `(apply, params)`: `apply(params, xs, *, seq_lengths=None,
initial_carry=None)` returns what the module returns (its `time_major`, `return_carry`,
`reverse`, `keep_order`, `merge_fn`; carries in Flax's layout), computed by
`rnn_jax.layers` on the fused kernels. Two differences, both on padding: outputs past a
sequence's length are zero (Flax's are whatever its scan computed there), and in a
`Sequential` the lengths reach every layer (Flax's `Sequential` passes keyword arguments to
its first layer only, so a reverse layer above it would read the padding). `initial_carry`
goes to the first layer, as in Flax.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict, unfreeze
from flax.linen.recurrent import flip_sequences

from rnn_jax import cells, layers
from rnn_jax.cells.base import Cell
from rnn_jax.cells.lstm import LSTMState

Array = jax.Array

_NUM_GATES = {"lstm": 4, "gru": 3, "simple": 1}  # G, the blocks of a fused w_ih [D, G*H]


class _Spec(NamedTuple):
  """What a Flax cell is, read off its class and attributes."""
  name: str          # e.g. "nnx.OptimizedLSTMCell"
  api: str           # "linen" or "nnx"
  kind: str          # "lstm", "gru" or "simple"
  fused: bool        # nnx's OptimizedLSTMCell, GRUCell, SimpleCell: one dense per input
  hidden_size: int
  nonlinearity: str  # SimpleCell's: "tanh" or "relu"
  param_dtype: Any


# Exact classes only: a subclass may compute something else.
_LINEN = {nn.LSTMCell: "lstm", nn.OptimizedLSTMCell: "lstm", nn.GRUCell: "gru",
          nn.SimpleCell: "simple"}
_NNX = {nnx.LSTMCell: ("lstm", False), nnx.OptimizedLSTMCell: ("lstm", True),
        nnx.GRUCell: ("gru", True), nnx.SimpleCell: ("simple", True)}
_SUPPORTED = ("flax.linen LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell; "
              "flax.nnx LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell")


def _spec(flax_cell) -> _Spec:
  cls = type(flax_cell)
  if cls in _LINEN:
    api, kind, fused, H = "linen", _LINEN[cls], False, flax_cell.features
  elif cls in _NNX:
    (kind, fused), api, H = _NNX[cls], "nnx", flax_cell.hidden_features
  else:
    raise ValueError(f"flax_cell: {cls.__module__}.{cls.__name__} cannot be mapped to an "
                     f"rnn_jax cell; supported: {_SUPPORTED}")
  name = f"{'nn' if api == 'linen' else 'nnx'}.{cls.__name__}"
  nonlinearity = "tanh"
  if kind == "simple":
    if flax_cell.residual:
      raise ValueError(f"flax_cell: {name}(residual=True) adds h_(t-1) before the "
                       "activation; rnn_jax's simple_rnn has no such term")
    nonlinearity = {jnp.tanh: "tanh", jax.nn.relu: "relu"}.get(flax_cell.activation_fn)
    if nonlinearity is None:
      raise ValueError(f"flax_cell: {name}'s activation_fn {flax_cell.activation_fn} has no "
                       "rnn_jax equivalent (tanh or relu)")
  else:
    if flax_cell.gate_fn is not jax.nn.sigmoid:
      raise ValueError(f"flax_cell: {name}'s gate_fn {flax_cell.gate_fn} is not the sigmoid "
                       "that rnn_jax's gates use")
    if flax_cell.activation_fn is not jnp.tanh:
      raise ValueError(f"flax_cell: {name}'s activation_fn {flax_cell.activation_fn} is not "
                       "the tanh that rnn_jax's cells use")
  return _Spec(name, api, kind, fused, H, nonlinearity, flax_cell.param_dtype)


def cell_from_flax(flax_cell) -> Cell:
  """The rnn_jax `Cell` that computes what `flax_cell` computes (see the module docstring).

  Args:
    flax_cell: a Flax cell, Linen (e.g. `nn.OptimizedLSTMCell(64)`) or NNX.
  """
  spec = _spec(flax_cell)
  if spec.kind == "lstm":
    return cells.lstm(spec.hidden_size, param_dtype=spec.param_dtype)
  if spec.kind == "gru":
    return cells.gru(spec.hidden_size, reset_after=True, param_dtype=spec.param_dtype)
  return cells.simple_rnn(spec.hidden_size, nonlinearity=spec.nonlinearity,
                          param_dtype=spec.param_dtype)


def _layout(spec: _Spec) -> dict[str, tuple[str, ...]]:
  """Flax's param names for `spec`: `{dense name: its leaves}`."""
  if spec.fused:  # nnx OptimizedLSTMCell, GRUCell, SimpleCell
    h_leaves = ("kernel", "bias") if spec.kind == "lstm" else ("kernel",)
    i_leaves = ("kernel",) if spec.kind == "lstm" else ("kernel", "bias")
    return {"dense_i": i_leaves, "dense_h": h_leaves}
  if spec.kind == "simple":
    return {"i": ("kernel", "bias"), "h": ("kernel",)}
  if spec.kind == "lstm":
    input_name = lambda k: "if_" if (k == "f" and spec.api == "nnx") else f"i{k}"
    return {**{input_name(k): ("kernel",) for k in "ifgo"},
            **{f"h{k}": ("kernel", "bias") for k in "ifgo"}}
  return {**{f"i{k}": ("kernel", "bias") for k in "rzn"},
          "hr": ("kernel",), "hz": ("kernel",), "hn": ("kernel", "bias")}


def _paths(tree, prefix=()) -> set[str]:
  if isinstance(tree, dict):
    return set().union(*(_paths(v, prefix + (str(k),)) for k, v in tree.items())) or set()
  return {"/".join(prefix)}


def _plain(variables) -> dict:
  """A Linen `{"params": ...}`, FrozenDict, `nnx.State` or pure dict, as a plain dict of
  the cell's own params."""
  if isinstance(variables, nnx.State):
    variables = nnx.to_pure_dict(variables)
  if isinstance(variables, FrozenDict):
    variables = unfreeze(variables)
  if not isinstance(variables, dict):
    raise ValueError(f"variables: expected a dict of the cell's params, got "
                     f"{type(variables).__name__}")
  if isinstance(variables.get("params"), (dict, FrozenDict)):
    variables = unfreeze(variables["params"])
  return dict(variables)


def _check_layout(spec: _Spec, p: dict) -> None:
  """Raises a ValueError naming the first param whose name or shape is not `spec`'s."""
  expected = {f"{d}/{leaf}" for d, leaves in _layout(spec).items() for leaf in leaves}
  got = _paths(p)
  if got != expected:
    raise ValueError(f"variables: {spec.name} has params {sorted(expected)}; got "
                     f"missing {sorted(expected - got)}, unexpected {sorted(got - expected)}")
  H = spec.hidden_size
  width = _NUM_GATES[spec.kind] * H if spec.fused else H  # each dense's outputs
  for path in sorted(expected):
    dense, leaf = path.split("/")
    shape = tuple(p[dense][leaf].shape)
    recurrent = dense.startswith("h") or dense == "dense_h"
    ok = (shape == (width,) if leaf == "bias" else
          len(shape) == 2 and shape[1] == width and (shape[0] == H or not recurrent))
    if not ok:
      want = f"[{width}]" if leaf == "bias" else f"[{'H' if recurrent else 'D'}, {width}]"
      raise ValueError(f"variables: {spec.name} with H={H} expects {path} of shape {want}, "
                       f"got {shape}")


def params_from_flax(flax_cell, variables=None) -> dict:
  """A Flax cell's variables as the params of `cell_from_flax(flax_cell)`.

  Args:
    flax_cell: the Flax cell (Linen or NNX).
    variables: Linen: what `flax_cell.init` returned (`{"params": ...}`) or the params
      dict itself (e.g. `variables["params"]["cell"]` of an `nn.RNN`). NNX: None to read
      the module's own `nnx.Param`s, or an `nnx.State` / pure dict of them.

  Returns:
    A plain dict laid out as in `rnn_jax.cells` (see the module docstring).
  """
  spec = _spec(flax_cell)
  if variables is None:
    if spec.api == "linen":
      raise ValueError(f"variables: a Linen {spec.name} holds no weights; pass the "
                       "variables its init returned")
    variables = nnx.state(flax_cell, nnx.Param)
  p = _plain(variables)
  _check_layout(spec, p)
  k = lambda name: p[name]["kernel"]
  bias = lambda name: p[name]["bias"]
  if spec.fused:
    params = {"w_ih": k("dense_i"), "w_hh": k("dense_h")}
    if spec.kind == "lstm":
      params["b"] = bias("dense_h")
    else:
      params["b"] = bias("dense_i")
      if spec.kind == "gru":
        params["b_hn"] = jnp.zeros((spec.hidden_size,), params["b"].dtype)
    return params
  if spec.kind == "simple":
    return {"w_ih": k("i"), "w_hh": k("h"), "b": bias("i")}
  names_i = [n for n in _layout(spec) if not n.startswith("h")]  # gate order
  if spec.kind == "lstm":
    names_h = [f"h{g}" for g in "ifgo"]
    return {"w_ih": jnp.concatenate([k(n) for n in names_i], -1),   # [D, 4H]
            "w_hh": jnp.concatenate([k(n) for n in names_h], -1),   # [H, 4H]
            "b": jnp.concatenate([bias(n) for n in names_h], -1)}   # [4H]
  names_h = ["hr", "hz", "hn"]
  return {"w_ih": jnp.concatenate([k(n) for n in names_i], -1),     # [D, 3H]
          "w_hh": jnp.concatenate([k(n) for n in names_h], -1),     # [H, 3H]
          "b": jnp.concatenate([bias(n) for n in names_i], -1),     # [3H]
          "b_hn": bias("hn")}                                        # [H]


_EXTRAS = {"w_ci": "peephole connections", "w_cf": "peephole connections",
           "w_co": "peephole connections", "ln_gates_scale": "layer normalisation",
           "ln_cell_scale": "layer normalisation", "ln_cell_bias": "layer normalisation"}


def _concrete_zero(x: Array, what: str) -> bool:
  try:
    return not np.any(np.asarray(x))
  except jax.errors.TracerArrayConversionError:
    raise ValueError(f"params: {what} is traced; convert params to Flax outside jit") from None


def params_to_flax(flax_cell, params: dict) -> dict:
  """rnn_jax params as `flax_cell`'s variables: the inverse of `params_from_flax`.

  Args:
    flax_cell: the Flax cell (Linen or NNX) to load them into.
    params: params of the rnn_jax cell that `cell_from_flax(flax_cell)` returns (a
      `cells.lstm`, `cells.gru(reset_after=True)` or `cells.simple_rnn` without extras).

  Returns:
    Linen: `{"params": ...}`, what `flax_cell.apply` takes. NNX: the pure dict of the
    cell's params (`nnx.to_pure_dict(nnx.state(cell, nnx.Param))`'s layout); load it with
    `state = nnx.state(cell, nnx.Param); nnx.replace_by_pure_dict(state, d);
    nnx.update(cell, state)`.
  """
  spec = _spec(flax_cell)
  params = dict(params)
  H = spec.hidden_size
  allowed = {"w_ih", "w_hh", "b"} | ({"b_hn"} if spec.kind == "gru" else set())
  for name in set(params) - allowed:
    what = _EXTRAS.get(name, "a param Flax's cell has no place for")
    raise ValueError(f"params: {name} ({what}) cannot be mapped to {spec.name}")
  if spec.kind == "gru" and "b" in params and "b_hn" not in params:
    raise ValueError(f"params: a GRU with b but no b_hn is the original form "
                     f"(reset_after=False); {spec.name} applies the reset gate after the "
                     "recurrent matmul (reset_after=True)")
  G = _NUM_GATES[spec.kind]
  w_ih, w_hh = params["w_ih"], params["w_hh"]
  if tuple(w_hh.shape) != (H, G * H) or w_ih.shape[-1] != G * H:
    coupled = spec.kind == "lstm" and w_hh.shape == (H, 3 * H)
    raise ValueError(f"params: {spec.name} with H={H} needs w_ih [D, {G * H}] and w_hh "
                     f"[{H}, {G * H}], got {tuple(w_ih.shape)} and {tuple(w_hh.shape)}"
                     + (" (a coupled-gate LSTM cannot be mapped)" if coupled else ""))
  b = params.get("b", jnp.zeros((G * H,), w_hh.dtype))
  b_hn = params.get("b_hn", jnp.zeros((H,), w_hh.dtype))
  split = lambda a: jnp.split(a, G, axis=-1)
  if spec.fused:
    if spec.kind == "lstm":
      out = {"dense_i": {"kernel": w_ih}, "dense_h": {"kernel": w_hh, "bias": b}}
    else:
      if spec.kind == "gru" and not _concrete_zero(b_hn, "b_hn"):
        raise ValueError(f"params: b_hn is nonzero, and {spec.name} has no bias inside "
                         "r ⊙ (h W_hn + b_hn); flax.linen.GRUCell has one")
      out = {"dense_i": {"kernel": w_ih, "bias": b}, "dense_h": {"kernel": w_hh}}
  elif spec.kind == "simple":
    out = {"i": {"kernel": w_ih, "bias": b}, "h": {"kernel": w_hh}}
  elif spec.kind == "lstm":
    names_i = [n for n in _layout(spec) if not n.startswith("h")]
    out = {n: {"kernel": w} for n, w in zip(names_i, split(w_ih))}
    out.update({f"h{g}": {"kernel": w, "bias": bb}
                for g, w, bb in zip("ifgo", split(w_hh), split(b))})
  else:
    w_i, w_h, b_i = split(w_ih), split(w_hh), split(b)
    out = {f"i{g}": {"kernel": w, "bias": bb} for g, w, bb in zip("rzn", w_i, b_i)}
    out.update({"hr": {"kernel": w_h[0]}, "hz": {"kernel": w_h[1]},
                "hn": {"kernel": w_h[2], "bias": b_hn}})
  return {"params": out} if spec.api == "linen" else out


def carry_from_flax(flax_cell, carry):
  """A Flax carry as rnn_jax's: an LSTM's `(c, h)` becomes `LSTMState(h, c)`."""
  if _spec(flax_cell).kind != "lstm" or carry is None:
    return carry
  c, h = carry
  return LSTMState(h, c)


def carry_to_flax(flax_cell, carry):
  """An rnn_jax carry as Flax's: an LSTM's `LSTMState(h, c)` becomes `(c, h)`."""
  if _spec(flax_cell).kind != "lstm" or carry is None:
    return carry
  return (carry.c, carry.h)


# ----------------------------------------------------------------------------
# Layers: nn.RNN, nn.Bidirectional, nn.Sequential (and their NNX twins) as pure functions.


def _is(module, name: str) -> bool:
  linen_cls, nnx_cls = getattr(nn, name), getattr(nnx, name)
  return type(module) in (linen_cls, nnx_cls)


def _sub(variables, *path):
  for key in path:
    if variables is None:
      return None
    if key not in variables:
      raise ValueError(f"variables: no {'/'.join(map(str, path))} in the module's params "
                       f"(have {sorted(map(str, variables))})")
    variables = variables[key]
  return variables


def _rnn_fn(module, variables) -> tuple[Callable, dict]:
  """An `RNN` (Linen or NNX) as `run(params, xs, lengths, carry, time_major, reverse,
  keep_order, return_carry)`; Flax's call semantics, Flax's carry layout."""
  cell = module.cell
  rj_cell = cell_from_flax(cell)
  params = params_from_flax(cell, _sub(variables, "cell") if variables is not None else None)
  fwd = layers.rnn(rj_cell, unroll=module.unroll)
  bwd = layers.rnn(rj_cell, reverse=True, unroll=module.unroll)

  def run(p, xs, lengths, carry, *, time_major, reverse, keep_order, return_carry):
    if time_major:
      xs = jnp.swapaxes(xs, 0, 1)  # [T, B, D] -> [B, T, D]
    layer = bwd if reverse else fwd
    ys, final = layer.apply(p, xs, seq_lengths=lengths,
                            initial_carry=carry_from_flax(cell, carry))
    if reverse and not keep_order:  # Flax returns the reversed run in reversed order
      ys = flip_sequences(ys, lengths, num_batch_dims=1, time_major=False)
    if time_major:
      ys = jnp.swapaxes(ys, 0, 1)  # [B, T, H] -> [T, B, H]
    return (carry_to_flax(cell, final), ys) if return_carry else ys

  return run, params


def _check_rnn(module, where: str) -> None:
  if not _is(module, "RNN"):
    raise ValueError(f"module: {where} is a {type(module).__name__}; expected a Flax RNN")
  if module.cell.num_feature_axes != 1:
    raise ValueError(f"module: {where}'s cell has {module.cell.num_feature_axes} feature axes")


def _layer_fn(module, variables) -> tuple[Callable, dict]:
  """`(call(params, xs, lengths, carry), params)` of one Flax RNN or Bidirectional."""
  if _is(module, "RNN"):
    _check_rnn(module, "the RNN")
    run, params = _rnn_fn(module, variables)

    def call(p, xs, lengths, carry):
      return run(p, xs, lengths, carry, time_major=module.time_major, reverse=module.reverse,
                 keep_order=module.keep_order, return_carry=module.return_carry)

    return call, params
  if _is(module, "Bidirectional"):
    _check_rnn(module.forward_rnn, "forward_rnn")
    _check_rnn(module.backward_rnn, "backward_rnn")
    run_fw, p_fw = _rnn_fn(module.forward_rnn, _sub(variables, "forward_rnn"))
    run_bw, p_bw = _rnn_fn(module.backward_rnn, _sub(variables, "backward_rnn"))

    def call(p, xs, lengths, carry):
      carry_fw, carry_bw = (None, None) if carry is None else carry
      common = dict(time_major=module.time_major, return_carry=True)
      c_fw, ys_fw = run_fw(p["fw"], xs, lengths, carry_fw, reverse=False, keep_order=False,
                           **common)
      c_bw, ys_bw = run_bw(p["bw"], xs, lengths, carry_bw, reverse=True, keep_order=True,
                           **common)
      ys = module.merge_fn(ys_fw, ys_bw)
      return ((c_fw, c_bw), ys) if module.return_carry else ys

    return call, {"fw": p_fw, "bw": p_bw}
  raise ValueError(f"module: expected a Flax RNN, Bidirectional or a Sequential of them, "
                   f"got {type(module).__name__}")


def from_flax(module, variables=None) -> tuple[Callable, dict]:
  """Converts a Flax recurrent layer (Linen or NNX) into `(apply, params)`.

  Args:
    module: `nn.RNN(cell)`, `nn.Bidirectional(nn.RNN(...), nn.RNN(...))`, or an
      `nn.Sequential` of them (or the same from `flax.nnx`), its cells among those
      `cell_from_flax` maps.
    variables: Linen: what `module.init` returned (or a trained copy). NNX: None, to read
      the module's `nnx.Param`s (or an `nnx.State` / pure dict of them).

  Returns:
    `(apply, params)`: `apply(params, xs, *, seq_lengths=None, initial_carry=None)` returns
    what `module(xs, seq_lengths=..., initial_carry=...)` returns (see the module docstring
    for the padding), jit- and grad-able; `params` are `layers.rnn`'s for an RNN,
    `{"fw", "bw"}` for a Bidirectional, `{"layer_l": ...}` for a Sequential.
  """
  if isinstance(module, nnx.Module):
    if variables is None:
      variables = nnx.state(module, nnx.Param)
    variables = nnx.to_pure_dict(variables) if isinstance(variables, nnx.State) else variables
  else:
    if variables is None:
      raise ValueError("variables: a Linen module holds no weights; pass the variables its "
                       "init returned")
    variables = _plain(variables)
  if _is(module, "Sequential"):
    entries = list(module.layers)
    if not entries:
      raise ValueError("module: an empty Sequential")
    sub = "layers_{}" if isinstance(module, nn.Module) else None
    calls, params = [], {}
    for l, entry in enumerate(entries):
      if l < len(entries) - 1 and getattr(entry, "return_carry", False):
        raise ValueError(f"module: layer {l} of the Sequential returns its carry, so the "
                         "next layer would get a tuple")
      v = variables[sub.format(l)] if sub else _sub(variables, "layers", l)
      call, params[f"layer_{l}"] = _layer_fn(entry, v)
      calls.append(call)

    def apply(params, xs, *, seq_lengths=None, initial_carry=None):
      x = jnp.asarray(xs)
      for l, call in enumerate(calls):
        x = call(params[f"layer_{l}"], x, seq_lengths, initial_carry if l == 0 else None)
      return x

    return apply, params

  call, params = _layer_fn(module, variables)

  def apply(params, xs, *, seq_lengths=None, initial_carry=None):
    return call(params, jnp.asarray(xs), seq_lengths, initial_carry)

  return apply, params


__all__ = ["carry_from_flax", "carry_to_flax", "cell_from_flax", "from_flax",
           "params_from_flax", "params_to_flax"]
