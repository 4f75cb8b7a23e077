"""Interoperability with other frameworks. Importing `rnn_jax.interop.torch` needs torch."""

from rnn_jax.interop.torch import from_torch, params_from_torch

__all__ = ["from_torch", "params_from_torch"]
