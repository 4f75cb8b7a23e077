"""`fit`: the one training loop every experiment shares.

At each step boundary s (the state has taken s steps) the loop does, in order:
log the train metrics of the window ending at s, evaluate if s is an eval
step, then checkpoint if s is a checkpoint step. On resume from a checkpoint
at s, rows of metrics.jsonl after s are dropped and the loop goes on at s, so
a resumed run writes what an uninterrupted one writes. The data position and
the keys are functions of the step (`batch_at(step)`, `fold_in(key, step)`),
so nothing else needs saving.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from tqdm import tqdm

from rnn_jax.training import parallel
from rnn_jax.training.checkpoints import Checkpointer
from rnn_jax.training.metrics import MetricsWriter
from rnn_jax.training.state import TrainState


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


def _is_due(step: int, every: int) -> bool:
  return every > 0 and step % every == 0


def fit(*, workdir: str, experiment: str, state: TrainState,
        train_step: Callable[..., tuple[TrainState, Mapping[str, Any]]],
        batch_at: Callable[[int], Any], num_steps: int, key: jax.Array,
        evaluate: Callable[[TrainState], Mapping[str, float]] | None = None,
        eval_every: int = 0, checkpoint_every: int = 0, log_every: int = 50,
        mesh=None, items_per_step: int | None = None, items_name: str = "tokens",
        max_to_keep: int = 3, progress: bool = True, jit: bool = True,
        donate: bool = True) -> TrainState:
  """Trains `state` to `num_steps`, resuming from `workdir/checkpoints` if it can.

  Args:
    workdir: the run's directory (metrics.jsonl, tensorboard/, checkpoints/).
    experiment: the experiment's name; a workdir of another experiment is refused.
    state: the initial train state (used as is when there is no checkpoint,
      and as the structure to restore into otherwise).
    train_step: `train_step(state, batch, key) -> (state, metrics)`, pure.
    batch_at: `batch_at(step) -> batch` for the step about to run: a pytree of
      this process's `[B_local, ...]` numpy arrays; a pure function of step.
    num_steps: total steps of the run.
    key: the run's PRNG key; step s gets `fold_in(key, s)`.
    evaluate: `evaluate(state) -> {name: value}`, run at eval steps and at the end.
    eval_every: evaluate every this many steps (0: only at the end).
    checkpoint_every: checkpoint every this many steps (0: only at the end).
    log_every: write train metrics every this many steps.
    mesh: a device mesh from `parallel.data_mesh`; default all devices.
    items_per_step: items (tokens, examples) per step, for throughput.
    items_name: what the items are called in the logs.
    max_to_keep: checkpoints to keep.
    progress: show a tqdm progress bar.
    jit: jit the step (off only for debugging).
    donate: donate the old state's buffers to the new one.

  Returns:
    The final state (also saved as the last checkpoint).

  Raises:
    NonFiniteLossError: a NaN or inf loss; the message names the step.
    WorkdirConflictError: the workdir belongs to another experiment.
  """
  mesh = mesh or parallel.data_mesh()
  is_chief = jax.process_index() == 0
  checkpointer = Checkpointer(workdir, experiment, max_to_keep=max_to_keep)
  try:
    checkpointer.check_owner()
    state = parallel.place_state(state, mesh)
    restored, _ = checkpointer.restore_latest(state)
    if restored is not None:
      state = restored
    start = int(jax.device_get(state.step))
    if restored is not None and is_chief:
      print(f"Resuming from the checkpoint at step {start} in {checkpointer.directory}",
            flush=True)
    writer = MetricsWriter(workdir, resume_step=start + 1, enabled=is_chief)
    step_fn = jax.jit(train_step, donate_argnums=(0,) if donate else ()) if jit else train_step

    window: list[Mapping[str, Any]] = []
    window_start = time.perf_counter()
    bar = tqdm(total=num_steps, initial=start, disable=not (progress and is_chief),
               unit="step", dynamic_ncols=True, desc=experiment)
    for step in range(start, num_steps):
      batch = parallel.place_batch(batch_at(step), mesh)
      state, metrics = step_fn(state, batch, jax.random.fold_in(key, step))
      loss = float(metrics["loss"])
      done = step + 1
      if not math.isfinite(loss):
        last = checkpointer.steps()
        where = (f"the last good checkpoint (step {last[-1]}) stays in {checkpointer.directory}"
                 if last else "no checkpoint had been written")
        raise NonFiniteLossError(f"loss is {loss} at step {done}; training stopped, {where}")
      window.append(metrics)
      bar.update(1)
      if _is_due(done, log_every) or done == num_steps:
        elapsed = time.perf_counter() - window_start
        means = {k: float(np.mean([float(m[k]) for m in window])) for k in window[0]}
        row = {f"train/{k}": v for k, v in means.items()}
        row["train/steps_per_s"] = len(window) / elapsed
        if items_per_step:
          row[f"train/{items_name}_per_s"] = len(window) * items_per_step / elapsed
        writer.write(done, row)
        postfix = {"loss": f"{means['loss']:.4g}"}
        if items_per_step:
          postfix[f"{items_name}/s"] = f"{row[f'train/{items_name}_per_s']:.0f}"
        bar.set_postfix(postfix)
        window = []
        window_start = time.perf_counter()
      if evaluate is not None and (_is_due(done, eval_every) or done == num_steps):
        eval_start = time.perf_counter()
        results = dict(evaluate(state))
        writer.write(done, results)
        bar.write(f"step {done}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items()))
        window_start += time.perf_counter() - eval_start  # eval time is not train time
      if _is_due(done, checkpoint_every) or done == num_steps:
        checkpointer.save(state)
    bar.close()
    checkpointer.wait()  # the last save may still be in flight; list steps after it lands
    if not checkpointer.steps() or checkpointer.steps()[-1] < int(jax.device_get(state.step)):
      checkpointer.save(state)
    writer.close()
    return state
  finally:
    checkpointer.close()
