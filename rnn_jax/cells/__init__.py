"""Recurrent cells as pure functions; see `base.Cell` for the contract."""

from rnn_jax.cells.base import Cell, identity_init, stacked_init, uniform_init
from rnn_jax.cells.gru import gru
from rnn_jax.cells.lstm import LSTMState, group_layer_norm, lstm
from rnn_jax.cells.phased_lstm import phased_lstm, time_gate
from rnn_jax.cells.simple_rnn import simple_rnn

__all__ = [
    "Cell", "LSTMState", "gru", "group_layer_norm", "identity_init", "lstm",
    "phased_lstm", "simple_rnn", "stacked_init", "time_gate", "uniform_init",
]
