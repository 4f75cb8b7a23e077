"""Orbax checkpoints under `workdir/checkpoints`, with fallback and ownership checks.

Each checkpoint holds two items: `state` (the `TrainState` pytree, saved by
orbax's standard handler, sharded arrays included) and `meta` (JSON: the
experiment's name and anything else the run wants to find again).

A step that cannot be restored (damaged files, an empty step directory, a
structure that no longer fits) is moved aside to `checkpoints/corrupt/<step>`
with a one-line warning, and the previous step is tried: nothing is deleted,
and the step can be saved again when training reaches it. A state with a
NaN or infinite param is never saved (`NonFiniteError`), so every checkpoint
on disk is one a run can go on from.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from rnn_jax.training.state import tree_finite

log = logging.getLogger(__name__)


class WorkdirConflictError(ValueError):
  """The workdir holds checkpoints of another experiment."""


class NonFiniteError(FloatingPointError):
  """A loss, gradient or param became NaN or infinite; the last finite checkpoint stays."""


CORRUPT = "corrupt"


def all_finite(tree) -> bool:
  """Whether every floating-point leaf of `tree` is free of NaN and inf (one device sync)."""
  return bool(jax.device_get(tree_finite(tree)))


def _abstract(tree):
  """Shapes, dtypes and shardings of `tree`, the target orbax restores into."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class Checkpointer:
  """Saves and restores train states of one experiment in `workdir/checkpoints`.

  Args:
    workdir: the run's directory.
    experiment: the experiment's name, stored in every checkpoint; a workdir
      whose checkpoints name another experiment is refused.
    max_to_keep: how many of the latest checkpoints to keep.
  """

  def __init__(self, workdir: str, experiment: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.experiment = experiment
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def check_owner(self) -> None:
    """Raises WorkdirConflictError if the checkpoints here belong to another experiment."""
    for step in reversed(self.steps()):
      try:
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      except Exception:  # a corrupted checkpoint is dealt with by `restore_latest`
        continue
      owner = meta["meta"].get("experiment")
      if owner != self.experiment:
        raise WorkdirConflictError(
            f"workdir: {os.path.dirname(self.directory)} holds checkpoints of experiment "
            f"{owner!r}, not {self.experiment!r}; choose another --workdir")
      return

  def save(self, state, meta: dict[str, Any] | None = None, *, force: bool = True) -> None:
    """Saves `state` under its own step (asynchronously; `wait` to block).

    Raises:
      NonFiniteError: a param or optimizer state holds NaN or inf; nothing is written.
    """
    step = int(jax.device_get(state.step))
    if not all_finite((state.params, state.opt_state)):
      raise NonFiniteError(f"the state at step {step} holds NaN or inf; it was not saved")
    meta = dict(meta or {}, experiment=self.experiment, step=step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

  def restore_latest(self, like):
    """Restores the newest readable checkpoint into the structure of `like`.

    A checkpoint that fails to restore (truncated or corrupted files, an
    empty step directory, another structure) is moved to
    `checkpoints/corrupt/<step>` with a one-line warning, and the previous
    one is tried.

    Args:
      like: a state with the right structure, shapes, dtypes and shardings.

    Returns:
      `(state, meta)`, or `(None, None)` when there is no readable checkpoint.
    """
    target = _abstract(like)
    for step in reversed(self.steps()):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many kinds on damaged files
        message = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        moved = self._move_aside(step)
        log.warning("checkpoint at step %d in %s is unreadable (%s); moved to %s",
                    step, self.directory, message, moved)
        print(f"warning: checkpoint at step {step} is unreadable ({message}); moved to "
              f"{moved}, falling back to the previous one", flush=True)
        continue
      return restored["state"], restored["meta"]
    return None, None

  def _move_aside(self, step: int) -> str:
    """Moves step `step`'s directory to `corrupt/<step>` (`<step>.1`, ... if taken)."""
    if jax.process_index() != 0:  # one process moves; the others only forget the step
      self._manager.reload()
      return os.path.join(self.directory, CORRUPT, str(step))
    source = os.path.join(self.directory, str(step))
    target_dir = os.path.join(self.directory, CORRUPT)
    os.makedirs(target_dir, exist_ok=True)
    target, n = os.path.join(target_dir, str(step)), 0
    while os.path.exists(target):
      n += 1
      target = os.path.join(target_dir, f"{step}.{n}")
    if os.path.exists(source):
      shutil.move(source, target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
