"""Interoperability with other frameworks' recurrent layers.

    rnn_jax.interop.torch    PyTorch `nn.LSTM` / `nn.GRU`: `from_torch`, `params_from_torch`
                             (importing it needs torch)
    rnn_jax.interop.cudnn    `jax.experimental.rnn`'s cuDNN LSTM: its flat weights as params
                             and back, and `lstm`, the same call on any backend

`from_torch` and `params_from_torch` are also importable from here; torch is imported only
when they are first used, so the package itself stays torch-free.
"""

from __future__ import annotations

import importlib

_TORCH = ("from_torch", "params_from_torch")

__all__ = list(_TORCH)


def __getattr__(name):
  if name in _TORCH:
    return getattr(importlib.import_module("rnn_jax.interop.torch"), name)
  raise AttributeError(f"module 'rnn_jax.interop' has no attribute {name!r}")
