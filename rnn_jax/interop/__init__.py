"""Interoperability with other frameworks' recurrent layers.

    rnn_jax.interop.torch    PyTorch `nn.LSTM` / `nn.GRU`: `from_torch`, `params_from_torch`
                             (importing it needs torch)
    rnn_jax.interop.cudnn    `jax.experimental.rnn`'s cuDNN LSTM: its flat weights as params
                             and back, and `lstm`, the same call on any backend
    rnn_jax.interop.flax     Flax's cells (Linen and NNX): their variables as params and back,
                             and `from_flax` for nn.RNN / Bidirectional / Sequential

`from_torch`, `params_from_torch` and `from_flax` are also importable from here; torch and
flax are imported only when they are first used, so the package itself stays torch-free.
"""

from __future__ import annotations

import importlib

_TORCH = ("from_torch", "params_from_torch")
_FLAX = ("from_flax",)

__all__ = list(_TORCH + _FLAX)


def __getattr__(name):
  if name in _TORCH:
    return getattr(importlib.import_module("rnn_jax.interop.torch"), name)
  if name in _FLAX:
    return getattr(importlib.import_module("rnn_jax.interop.flax"), name)
  raise AttributeError(f"module 'rnn_jax.interop' has no attribute {name!r}")
