"""Running trials on this machine: device slots, and a pool that fills them.

A slot is the environment a trial runs with. With accelerators, each slot owns
`devices_per_trial` of them, named in `CUDA_VISIBLE_DEVICES` (or `--device_env`),
so trials at the same time never share one. On the CPU there are
`max_parallel` slots and nothing is set, or `JAX_PLATFORMS=cpu` when the user
asked for `--devices=cpu` explicitly.

The pool is one thread: it starts a trial whenever a slot is free, polls, and
on SIGINT/SIGTERM stops the trials it started (SIGTERM to all at once, SIGKILL
to those still running after the grace period; they resume on the next run).
While a trial runs, its `trial.Attempt` rewrites the heartbeat in its
launch_status.json and stops it past `--trial_timeout` or `--stall_timeout`,
which frees its slot. Trials started with `trial.Attempt.start` also get
SIGTERM if the launcher dies by SIGKILL (Linux), so a restarted sweep never
runs a trial twice at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable

from launch import trial as trial_lib
from launch.spec import SweepError


def detect_gpus() -> list[str]:
  """GPU indices from `nvidia-smi -L`, or [] without nvidia-smi or GPUs."""
  if not shutil.which("nvidia-smi"):
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
  except (OSError, subprocess.TimeoutExpired):
    return []
  return re.findall(r"^GPU (\d+):", out, re.MULTILINE)


def device_slots(devices: str, devices_per_trial: int, max_parallel: int,
                 device_env: str = "CUDA_VISIBLE_DEVICES") -> list[dict[str, str]]:
  """The slots' environments for `--devices`, `--devices_per_trial` and `--max_parallel`.

  Args:
    devices: "" (detect GPUs with nvidia-smi; none: CPU), "cpu", or ids "0,1,2".
    devices_per_trial: Devices each trial owns.
    max_parallel: At most this many trials at once (0: one per device group, or 1 on CPU).
    device_env: The variable naming a trial's devices.

  Returns:
    One environment dict per slot.
  """
  if devices_per_trial < 1:
    raise SweepError(f"--devices_per_trial={devices_per_trial} must be >= 1")
  if max_parallel < 0:
    raise SweepError(f"--max_parallel={max_parallel} must be >= 0")
  if devices.strip().lower() == "cpu":
    return [{"JAX_PLATFORMS": "cpu"}] * (max_parallel or 1)
  ids = [d.strip() for d in devices.split(",") if d.strip()] if devices else detect_gpus()
  if not ids:
    return [{}] * (max_parallel or 1)
  if len(set(ids)) != len(ids):
    raise SweepError(f"--devices={devices} names a device twice")
  if devices_per_trial > len(ids):
    raise SweepError(f"--devices_per_trial={devices_per_trial} but only {len(ids)} device(s): "
                     f"{','.join(ids)}")
  groups = [ids[i:i + devices_per_trial]
            for i in range(0, len(ids) - devices_per_trial + 1, devices_per_trial)]
  if len(ids) % devices_per_trial:
    print(f"note: {len(ids) % devices_per_trial} device(s) unused: {len(ids)} devices do not "
          f"split into groups of {devices_per_trial}", file=sys.stderr)
  if max_parallel:
    groups = groups[:max_parallel]
  return [{device_env: ",".join(g)} for g in groups]


def describe_slot(env: dict[str, str]) -> str:
  return " ".join(f"{k}={v}" for k, v in env.items()) or "no device env"


@dataclasses.dataclass
class Item:
  """A trial to run: its name, workdir and command."""
  name: str
  workdir: str
  command: list[str]


class Stop(Exception):
  """Raised in the pool's loop by SIGTERM."""


def _raise_stop(signum, frame):
  del frame
  raise Stop(signal.Signals(signum).name)


class LocalBackend:
  """Runs each trial as a child process of the launcher, watched by a `trial.Attempt`."""

  def __init__(self, *, root: str, sweep: str, limits: trial_lib.Limits = trial_lib.Limits()):
    self.root, self.sweep, self.limits = root, sweep, limits

  def start(self, item: Item, env: dict[str, str]) -> trial_lib.Attempt:
    trial_lib.prepare(item.workdir, item.command, sweep=self.sweep, trial=item.name,
                      root=self.root)
    return trial_lib.Attempt.start(item.workdir, item.command, cwd=self.root, env=env,
                                   limits=self.limits)

  def poll(self, item: Item, attempt: trial_lib.Attempt) -> int | None:
    del item
    return attempt.poll()

  def stop_all(self, running: list[tuple[Item, trial_lib.Attempt]], why: str,
               report: Callable[[str], None], poll_s: float = 0.1) -> None:
    """SIGTERM to every trial at once, then waits for them (SIGKILL after the grace period,
    or at once on a second Ctrl-C); each shows as `incomplete: <why>; rerun resumes`."""
    for _, attempt in running:
      attempt.stop(why, failed=False)
    left = [a for _, a in running if a.poll() is None]
    if left:
      report(f"[stopping] waiting up to {trial_lib.span(self.limits.stop_grace)} for "
             f"{len(left)} trial(s) to save a checkpoint (Ctrl-C again: kill them now)")
    try:
      while left:
        time.sleep(poll_s)
        left = [a for a in left if a.poll() is None]
    except KeyboardInterrupt:
      for attempt in left:
        attempt.kill()
      for attempt in left:
        attempt.proc.wait()
        attempt.poll()


def outcome(workdir: str) -> tuple[str, str]:
  """(done|failed|incomplete|..., the rest of the status) for the pool's report."""
  key, _, rest = trial_lib.status(workdir).partition(": ")
  return key, rest


def run_pool(items: list[Item], slots: list[dict[str, str]], backend,
             report: Callable[[str], None] = print, poll_s: float = 0.2) -> dict[str, int]:
  """Runs every item, at most one per slot at a time; returns name -> exit status.

  On SIGINT or SIGTERM the running trials are stopped and `Stop` (or
  KeyboardInterrupt) propagates once they are.
  """
  pending, running, done = list(items), {}, {}
  free = list(range(len(slots)))
  previous = signal.signal(signal.SIGTERM, _raise_stop)
  try:
    while pending or running:
      while pending and free:
        slot, item = free.pop(0), pending.pop(0)
        running[slot] = (item, backend.start(item, slots[slot]))
        report(f"[start] {item.name} ({describe_slot(slots[slot])})")
      time.sleep(poll_s)
      for slot, (item, handle) in list(running.items()):
        rc = backend.poll(item, handle)
        if rc is None:
          continue
        del running[slot]
        free = sorted(free + [slot])
        done[item.name] = rc
        key, rest = outcome(item.workdir)
        if key == "done":
          report(f"[done] {item.name}")
        else:
          report(f"[{key}] {item.name}: {rest} (log: "
                 f"{os.path.join(item.workdir, trial_lib.LOG)})")
  except (Stop, KeyboardInterrupt) as e:
    why = f"the launcher got {e or 'SIGINT'}"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    backend.stop_all(list(running.values()), why, report)
    for item, _ in running.values():
      report(f"[stopped] {item.name}")
    raise
  finally:
    signal.signal(signal.SIGTERM, previous)
  return done
