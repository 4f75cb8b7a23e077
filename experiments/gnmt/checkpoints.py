"""Which params are tested: the last step's, the best on validation, or the last N averaged.

`--test_params` chooses (results.json's `test_params` and `test_params_steps`
say which were tested):

    last      the final train state (the default)
    best      workdir/best/: the params of the evaluated step with the highest
              `valid/bleu/mean_supervised` (the first such step on a tie)
    average   the element-wise mean of the params of the last `--average_last`
              checkpoints in workdir/checkpoints (the run keeps that many)

    workdir/best/best.json   {"step", "metric", "score", "params", "saves"}, written atomically
    workdir/best/<params>/   that step's params (orbax), named "<step>-<save number>"

A new best is saved under a fresh name and only then named by best.json, so a
kill at any moment leaves the previous best whole; directories best.json does
not name are removed after each save. best.json survives a resume: the best
score so far comes from it, and a replayed evaluation (a resume from before
the best step) replaces the record only if it scores higher.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments.common import UserError
from rnn_jax.training.workdir import atomic_write

BEST_METRIC = "valid/bleu/mean_supervised"
CHOICES = ("last", "best", "average")
RECORD = "best.json"


def abstract(tree):
  """Shapes, dtypes and shardings of `tree`: the target orbax restores into."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class BestParams:
  """workdir/best/: the params of the best validation step so far (module docstring)."""

  def __init__(self, workdir: str, metric: str = BEST_METRIC):
    self.directory = os.path.join(os.path.abspath(workdir), "best")
    self.metric = metric
    self.record = self._read()

  def _read(self) -> dict | None:
    path = os.path.join(self.directory, RECORD)
    if not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        record = json.load(f)
      if not os.path.isdir(os.path.join(self.directory, record["params"])):
        raise ValueError(f"its params {record['params']!r} are missing")
    except (OSError, ValueError, KeyError, TypeError) as e:
      print(f"warning: {path} is unusable ({e}); the best params start again at the next "
            "evaluation", flush=True)
      return None
    return record

  @property
  def score(self) -> float:
    """The best score so far (-inf before any)."""
    return float(self.record["score"]) if self.record else -float("inf")

  @property
  def step(self) -> int | None:
    return int(self.record["step"]) if self.record else None

  def update(self, step: int, score: float, params) -> bool:
    """Saves `params` as the best if `score` beats the best so far; returns whether it did.

    Every process calls it (orbax saves sharded arrays collectively); process 0
    writes the record and removes the replaced params.
    """
    if not score > self.score:  # also refuses NaN
      return False
    saves = int(self.record.get("saves", 0)) + 1 if self.record else 1
    name = f"{step}-{saves}"
    os.makedirs(self.directory, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(self.directory, name), params, force=True)
      checkpointer.wait_until_finished()
    record = {"step": int(step), "metric": self.metric, "score": float(score), "params": name,
              "saves": saves}
    if jax.process_index() == 0:
      atomic_write(os.path.join(self.directory, RECORD), json.dumps(record, indent=2) + "\n")
      for entry in os.listdir(self.directory):
        if entry not in (RECORD, name):
          path = os.path.join(self.directory, entry)
          shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    self.record = record
    return True

  def restore(self, like):
    """The best params, restored into the structure, dtypes and shardings of `like`."""
    if self.record is None:
      raise UserError(f"--test_params=best: {self.directory} holds no params (no evaluation "
                      f"reported {self.metric}: no supervised direction, or a run from before "
                      "best/ was kept); use --test_params=last")
    with ocp.StandardCheckpointer() as checkpointer:
      return checkpointer.restore(os.path.join(self.directory, self.record["params"]),
                                  abstract(like))


def checkpoint_steps(num_steps: int, checkpoint_every: int) -> list[int]:
  """The steps a run of `num_steps` checkpoints at (the training loop's schedule)."""
  steps = list(range(checkpoint_every, num_steps + 1, checkpoint_every) if checkpoint_every > 0
               else [])
  return steps if steps and steps[-1] == num_steps else steps + [num_steps]


def _manager(workdir: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_names=("state", "meta"))


def restore_step(workdir: str, step: int, like):
  """The train state of checkpoint `step` in `workdir/checkpoints`, shaped like `like`."""
  manager = _manager(workdir)
  try:
    return manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract(like))))["state"]
  finally:
    manager.close()


def average_last(workdir: str, like, n: int):
  """The mean of the params of the last `n` checkpoints in `workdir/checkpoints`.

  Args:
    workdir: the run's directory.
    like: a train state with the checkpoints' structure, shapes and shardings.
    n: how many of the latest checkpoints to average.

  Returns:
    `(params, steps)`: the averaged params (float32 sums divided by n) and the
    steps averaged, oldest first.

  Raises:
    UserError: fewer than `n` checkpoints are there, or one cannot be read.
  """
  manager = _manager(workdir)
  try:
    steps = sorted(manager.all_steps())
    if len(steps) < n:
      raise UserError(f"--average_last={n}: {manager.directory} holds {len(steps)} "
                      f"checkpoint(s) (steps {steps}); a run keeps --average_last of them, so "
                      "this one was trained with fewer kept or lost some: lower --average_last")
    chosen = steps[-n:]
    total = None
    for step in chosen:
      try:
        state = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract(like))))["state"]
      except Exception as e:  # orbax raises many kinds on damaged files
        raise UserError(f"--average_last={n}: the checkpoint at step {step} is unreadable "
                        f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                        ) from None
      total = state.params if total is None else jax.tree_util.tree_map(
          lambda a, b: a + b, total, state.params)
  finally:
    manager.close()
  return jax.tree_util.tree_map(lambda a: a / np.asarray(n, a.dtype), total), chosen
