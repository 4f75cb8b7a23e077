"""Helpers for writing a sweep's `trials()`: grids, zipped axes, one-at-a-time ablations.

Each returns a list of flag dicts, one per trial, that `trials()` may return
as is or concatenate:

    product(cell=["lstm", "gru"], seq_len=[50, 100])
      -> [{cell: lstm, seq_len: 50}, {cell: lstm, seq_len: 100},
          {cell: gru, seq_len: 50}, {cell: gru, seq_len: 100}]
    zip_(hidden_size=[200, 650], dropout=[0.0, 0.5])
      -> [{hidden_size: 200, dropout: 0.0}, {hidden_size: 650, dropout: 0.5}]
    ablations({"attention": "normed_bahdanau", "reverse_source": False},
              attention=["bahdanau", "luong_dot"], reverse_source=[True])
      -> [baseline, attention=bahdanau, attention=luong_dot, reverse_source=true]

An axis given a single value (not a list or tuple) is that one value.
"""

from __future__ import annotations

import itertools
from typing import Any


def _values(name: str, values) -> list:
  if isinstance(values, (list, tuple)):
    if not values:
      raise ValueError(f"axis {name} has no values")
    return list(values)
  return [values]


def product(**axes) -> list[dict[str, Any]]:
  """Every combination of the axes' values; the last axis varies fastest."""
  names = list(axes)
  grids = [_values(n, axes[n]) for n in names]
  return [dict(zip(names, combo)) for combo in itertools.product(*grids)]


def zip_(**axes) -> list[dict[str, Any]]:
  """The axes' i-th values together; every axis must have the same number of values."""
  names = list(axes)
  columns = [_values(n, axes[n]) for n in names]
  lengths = {len(c) for c in columns if len(c) > 1}
  if len(lengths) > 1:
    sizes = ", ".join(f"{n}={len(c)}" for n, c in zip(names, columns))
    raise ValueError(f"zip_: axes have different lengths: {sizes}")
  n = lengths.pop() if lengths else 1
  columns = [c * n if len(c) == 1 else c for c in columns]
  return [dict(zip(names, row)) for row in zip(*columns)]


def ablations(baseline: dict[str, Any], **axes) -> list[dict[str, Any]]:
  """The baseline, then one trial per value that differs from it, changing one flag at a time.

  Trials carry `_name`: "baseline" for the baseline, "flag=value" for the
  others, so their names say what changed rather than repeating every flag.
  A value equal to the baseline's is skipped (it is the baseline run).
  """
  trials = [{**baseline, "_name": "baseline"}]
  for name, values in axes.items():
    for value in _values(name, values):
      if name in baseline and baseline[name] == value:
        continue
      trials.append({**baseline, name: value, "_name": f"{name}={format_value(value)}"})
  return trials


def format_value(value) -> str:
  """A flag value as the command line writes it: true/false, 0.5, a,b for lists."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return ",".join(format_value(v) for v in value)
  return str(value)
