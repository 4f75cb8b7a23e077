"""Long-range dependencies: the adding task at growing lengths, LSTM against GRU and tanh RNN.

Needs `experiments.long_range` (not written yet) and its flagfile
experiments/flagfiles/long_range/adding_lstm_t100.flags; `--dry_run` works before.

    python -m launch.sweep --sweep=long_range --workdir_root=runs/long_range
    python -m launch.table runs/long_range --plot=test/mse --x=seq_len --logx
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.long_range"
FLAGFILE = "experiments/flagfiles/long_range/adding_lstm_t100.flags"


def trials():
  return product(task="adding", cell=["lstm", "gru", "rnn"], seq_len=[50, 100, 200, 400])
