"""The shared trainer: train state, jitted steps, checkpoints, metrics, data parallelism.

No flags live here; experiments build a `TrainConfig`-like set of arguments
from their flags and call `loop.fit`.
"""

from rnn_jax.training.checkpoints import Checkpointer, NonFiniteError, WorkdirConflictError
from rnn_jax.training.loop import PREEMPTED_EXIT_CODE, NonFiniteLossError, Preempted, fit
from rnn_jax.training.metrics import MetricsWriter
from rnn_jax.training.optim import optimizer
from rnn_jax.training.parallel import (data_mesh, initialize_distributed, place_batch,
                                       place_state)
from rnn_jax.training.state import TrainState, make_train_step
from rnn_jax.training.workdir import WorkdirBusyError

__all__ = [
    "Checkpointer", "MetricsWriter", "NonFiniteError", "NonFiniteLossError",
    "PREEMPTED_EXIT_CODE", "Preempted", "TrainState", "WorkdirBusyError",
    "WorkdirConflictError", "data_mesh", "fit", "initialize_distributed", "make_train_step",
    "optimizer", "place_batch", "place_state",
]
