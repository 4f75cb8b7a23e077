"""`fit`: the one training loop every experiment shares.

At each step boundary s (the state has taken s steps) the loop does, in order:
log the train metrics of the window ending at s, evaluate if s is an eval
step, then checkpoint if s is a checkpoint step. On resume from a checkpoint
at s, rows of metrics.jsonl after s are dropped and the loop goes on at s, so
a resumed run writes what an uninterrupted one writes: the data position and
the keys are functions of the step (`batch_at(step)`, `fold_in(key, step)`),
and a checkpoint's meta carries the rest (the train metrics of the log window
it falls inside, and how many updates were skipped).

What the loop survives (RELIABILITY.md has the table and the tests):
  * a kill at any moment: rerun, and it goes on from the newest checkpoint;
  * a damaged checkpoint: moved to `checkpoints/corrupt/`, the previous one used;
  * SIGTERM or SIGINT (preemption, SLURM's requeue, Ctrl-C): a checkpoint at the
    current step, then `Preempted` (experiments exit with status 75); a second
    SIGINT quits at once;
  * a NaN or inf loss, gradient or update: the update is not applied; the run
    stops with `NonFiniteError` naming the step (nothing is saved past the last
    finite checkpoint), or, with `skip_nonfinite_updates=N`, skips up to N such
    batches, logging each;
  * a second process on the same workdir: refused (`workdir.WorkdirBusyError`).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from tqdm import tqdm

from rnn_jax.training import parallel
from rnn_jax.training import workdir as workdir_lib
from rnn_jax.training.checkpoints import Checkpointer, NonFiniteError
from rnn_jax.training.metrics import MetricsWriter
from rnn_jax.training.state import FINITE, TrainState

NonFiniteLossError = NonFiniteError  # the name before the gradient and params were checked too

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped by a signal after saving; rerun to resume


class Preempted(Exception):
  """SIGTERM or SIGINT stopped training after a checkpoint at `step`; a rerun resumes there."""

  def __init__(self, signal_name: str, step: int, directory: str):
    super().__init__(f"got {signal_name}: saved a checkpoint at step {step} in {directory}; "
                     "rerun the same command to resume")
    self.signal_name, self.step = signal_name, step


class _StopSignals:
  """Turns SIGTERM and SIGINT into a request to stop at the next step boundary.

  A second SIGINT raises KeyboardInterrupt at once (quit without saving).
  Handlers are installed only in the main thread and restored on exit.
  """

  def __init__(self, announce: Callable[[str], None]):
    self.received: str | None = None
    self._announce = announce
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = name
    self._announce(f"got {name}: saving a checkpoint after this step, then exiting "
                   f"(status {PREEMPTED_EXIT_CODE}; Ctrl-C again quits without saving)")

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def should_stop(self) -> bool:
    """Whether any process got a signal (all processes must stop at the same step)."""
    stop = self.received is not None
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      stop = bool(np.max(multihost_utils.process_allgather(np.int32(stop))))
    return stop


class _Window:
  """The per-step train metrics since the last logged step; saved in checkpoints' meta."""

  def __init__(self, rows: Mapping[str, list[float]] | None = None):
    self.rows: dict[str, list[float]] = {k: list(v) for k, v in (rows or {}).items()}
    self.timed_steps = 0
    self.start = time.perf_counter()

  def __len__(self) -> int:
    return len(next(iter(self.rows.values()), []))

  def add(self, metrics: Mapping[str, float]) -> None:
    for k, v in metrics.items():
      self.rows.setdefault(k, []).append(v)
    self.timed_steps += 1

  def means(self) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in self.rows.items()}


def _is_due(step: int, every: int) -> bool:
  return every > 0 and step % every == 0


def fit(*, workdir: str, experiment: str, state: TrainState,
        train_step: Callable[..., tuple[TrainState, Mapping[str, Any]]],
        batch_at: Callable[[int], Any], num_steps: int, key: jax.Array,
        evaluate: Callable[[TrainState], Mapping[str, float]] | None = None,
        eval_every: int = 0, checkpoint_every: int = 0, log_every: int = 50,
        mesh=None, items_per_step: int | None = None, items_name: str = "tokens",
        max_to_keep: int = 3, progress: bool = True, jit: bool = True,
        donate: bool = True, skip_nonfinite_updates: int = 0,
        heartbeat_every_s: float = 10.0) -> TrainState:
  """Trains `state` to `num_steps`, resuming from `workdir/checkpoints` if it can.

  Args:
    workdir: the run's directory (metrics.jsonl, tensorboard/, checkpoints/,
      heartbeat.json, train.lock).
    experiment: the experiment's name; a workdir of another experiment is refused.
    state: the initial train state (used as is when there is no checkpoint,
      and as the structure to restore into otherwise).
    train_step: `train_step(state, batch, key) -> (state, metrics)`, pure; from
      `make_train_step`, whose `finite` metric says whether the update was applied.
      (Without that metric, the loss alone is checked.)
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
    skip_nonfinite_updates: how many batches whose loss, gradient or update is
      not finite may be skipped over the whole run (each one logged, counted
      across resumes); one more stops the run.
    heartbeat_every_s: write `workdir/heartbeat.json` at most this often.

  Returns:
    The final state (also saved as the last checkpoint).

  Raises:
    NonFiniteError: a NaN or inf loss, gradient or update (beyond the skips
      allowed); the message names the step, and no checkpoint past the last
      finite one is written.
    Preempted: SIGTERM or SIGINT arrived; a checkpoint at the current step was saved.
    WorkdirConflictError: the workdir belongs to another experiment.
    workdir.WorkdirBusyError: another process is training in the workdir.
  """
  mesh = mesh or parallel.data_mesh()
  is_chief = jax.process_index() == 0
  if is_chief:
    workdir_lib.lock(workdir)
  heartbeat = workdir_lib.Heartbeat(workdir, heartbeat_every_s, enabled=is_chief)
  heartbeat(None, "restore")
  checkpointer = Checkpointer(workdir, experiment, max_to_keep=max_to_keep)
  try:
    checkpointer.check_owner()
    state = parallel.place_state(state, mesh)
    restored, meta = checkpointer.restore_latest(state)
    if restored is not None:
      state = restored
    meta = meta or {}
    start = int(jax.device_get(state.step))
    if restored is not None and is_chief:
      print(f"Resuming from the checkpoint at step {start} in {checkpointer.directory}",
            flush=True)
    writer = MetricsWriter(workdir, resume_step=start + 1, enabled=is_chief)
    step_fn = jax.jit(train_step, donate_argnums=(0,) if donate else ()) if jit else train_step
    skipped = int(meta.get("skipped_nonfinite_updates", 0))
    window = _Window(meta.get("log_window"))

    def save(state):  # the meta is serialised in the background: give it a copy
      checkpointer.save(state, {"log_window": {k: list(v) for k, v in window.rows.items()},
                                "skipped_nonfinite_updates": skipped})

    bar = tqdm(total=num_steps, initial=start, disable=not (progress and is_chief),
               unit="step", dynamic_ncols=True, desc=experiment)
    with _StopSignals(bar.write) as signals:
      for step in range(start, num_steps):
        heartbeat(step, "train")
        batch = parallel.place_batch(batch_at(step), mesh)
        state, metrics = step_fn(state, batch, jax.random.fold_in(key, step))
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        done = step + 1
        finite = metrics.pop(FINITE, 1.0) == 1.0 and math.isfinite(metrics["loss"])
        if not finite:
          what = ", ".join(f"{k} {metrics[k]}" for k in ("loss", "grad_norm") if k in metrics)
          if skipped < skip_nonfinite_updates:
            skipped += 1
            writer.write(done, {"train/skipped_nonfinite_update": 1})
            bar.write(f"warning: step {done}: not finite ({what}); update skipped "
                      f"({skipped} of {skip_nonfinite_updates} allowed)")
          else:
            last = checkpointer.steps()
            where = (f"the last checkpoint (step {last[-1]}) in {checkpointer.directory} is "
                     "finite" if last else "no checkpoint had been written")
            hint = (f"; --skip_nonfinite_updates={skip_nonfinite_updates + 1} or more skips "
                    "such batches")
            raise NonFiniteError(f"not finite at step {done} ({what}); the update was not "
                                 f"applied and training stopped; {where}{hint}")
        else:
          window.add(metrics)
        bar.update(1)
        if (_is_due(done, log_every) or done == num_steps) and len(window):
          elapsed = time.perf_counter() - window.start
          means = window.means()
          row = {f"train/{k}": v for k, v in means.items()}
          row["train/steps_per_s"] = window.timed_steps / elapsed
          if items_per_step:
            row[f"train/{items_name}_per_s"] = window.timed_steps * items_per_step / elapsed
          writer.write(done, row)
          postfix = {"loss": f"{means['loss']:.4g}"}
          if items_per_step:
            postfix[f"{items_name}/s"] = f"{row[f'train/{items_name}_per_s']:.0f}"
          bar.set_postfix(postfix)
          window = _Window()
        if evaluate is not None and (_is_due(done, eval_every) or done == num_steps):
          heartbeat(done, "evaluate")
          eval_start = time.perf_counter()
          results = dict(evaluate(state))
          writer.write(done, results)
          bar.write(f"step {done}: " + ", ".join(
              f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
              for k, v in results.items()))
          window.start += time.perf_counter() - eval_start  # eval time is not train time
        stop = done < num_steps and signals.should_stop()
        if _is_due(done, checkpoint_every) or done == num_steps or stop:
          heartbeat(done, "checkpoint")
          save(state)
        if stop:
          checkpointer.wait()
          writer.close()
          bar.close()
          raise Preempted(signals.received or "a signal on another process", done,
                          checkpointer.directory)
    bar.close()
    checkpointer.wait()  # the last save may still be in flight; list steps after it lands
    if not checkpointer.steps() or checkpointer.steps()[-1] < int(jax.device_get(state.step)):
      save(state)
    writer.close()
    heartbeat(int(jax.device_get(state.step)), "trained", force=True)
    return state
  finally:
    checkpointer.close()
