"""Long-range dependencies: the adding task at growing lengths, LSTM against GRU and tanh RNN.

    python -m launch.sweep --sweep=long_range --workdir_root=runs/long_range_sweep
    python -m launch.table runs/long_range_sweep --metrics=test_mse --plot=test_mse --x=seq_len --logx

Predicting the mean gives a test MSE of 1/6 ≈ 0.167 at every length.
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.long_range"
FLAGFILE = "experiments/flagfiles/long_range/adding_lstm_t100.flags"


def trials():
  return product(task="adding", cell=["lstm", "gru", "rnn"], seq_len=[50, 100, 200, 400])
