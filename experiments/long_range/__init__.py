r"""Long-range memory and Phased LSTM: the lecture's claims on gradient flow, as experiments.

    python -m experiments.long_range --flagfile=experiments/flagfiles/long_range/adding_lstm_t100.flags --workdir=runs/adding_lstm
    python -m experiments.long_range --task=gradient_flow --seq_len=200 --workdir=runs/gradient_flow
    python -m experiments.long_range --flagfile=experiments/flagfiles/long_range/frequency_plstm_async.flags --workdir=runs/freq_plstm

Tasks (`tasks.py`): the adding problem, the copy-memory task, and Phased
LSTM's frequency discrimination under three sampling regimes; every batch is
generated fresh from (seed, step). `--task=gradient_flow` trains nothing: it
plots ||dLoss/dh_t|| against t (`rnn_jax.diagnostics`) for a tanh RNN, an
IRNN, an LSTM and a GRU. Every training run also writes that probe for its
own cell, at initialisation and after training. Results measured here are in
`experiments/long_range/RESULTS.md`.
"""

from experiments.long_range.config import LongRangeConfig
from experiments.long_range.train import train_and_evaluate

__all__ = ["LongRangeConfig", "train_and_evaluate"]
