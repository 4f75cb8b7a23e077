"""GNMT's attention is the library's: `rnn_jax.seq2seq.attention` (kept importable here)."""

from rnn_jax.seq2seq.attention import TYPES, Memory, attend, attend_all, init, prepare  # noqa: F401
