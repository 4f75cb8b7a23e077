"""Phased LSTM task 1 (Neil et al. 2016): Phased LSTM, LSTM, and LSTM + Δt under three sampling regimes.

    python -m launch.sweep --sweep=phased_lstm --workdir_root=runs/phased_lstm_sweep
    python -m launch.table runs/phased_lstm_sweep --metrics=test_accuracy

high_res samples every 0.1 ms (sequences of up to 1,250 steps), low_res every
1 ms, async at 15 to 125 random times. The model flags come from the async
flagfiles; the regime is swept.
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.long_range"
FLAGFILE = "experiments/flagfiles/long_range/frequency_lstm_async.flags"
_MODELS = {
    "plstm": {"flagfile": "experiments/flagfiles/long_range/frequency_plstm_async.flags"},
    "lstm": {"flagfile": "experiments/flagfiles/long_range/frequency_lstm_async.flags"},
    "lstm_dt": {"flagfile": "experiments/flagfiles/long_range/frequency_lstm_dt_async.flags"},
}


def trials():
  return [{**flags, "regime": regime, "_name": f"{model}_{regime}"}
          for model, flags in _MODELS.items() for regime in ("high_res", "low_res", "async")]
