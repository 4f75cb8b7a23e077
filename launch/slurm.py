"""Trials through submitit: SLURM job arrays, and submitit's LocalExecutor for testing that path.

Each trial is a `TrialJob`: a submitit Checkpointable callable that runs the
trial's command on the node (stdout and stderr into the trial's launch.log).
On preemption or at the time limit SLURM signals the job; submitit calls
`TrialJob.checkpoint`, which stops the command and resubmits the same
`TrialJob`, and the requeued job resumes the experiment from its workdir.
While the command runs, the job rewrites the heartbeat in the trial's
launch_status.json (so `launch.table` on the login node tells a live job from
one whose node died) and stops it past `--trial_timeout` or `--stall_timeout`,
as the local pool does.

submitit is imported only here (`pip install submitit`, or the `slurm` extra).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
import time

from launch import trial as trial_lib
from launch.local import Item
from launch.spec import SweepError

try:
  import submitit
except ImportError:  # the error is raised when a submitit launcher is asked for
  submitit = None


def require_submitit() -> None:
  if submitit is None:
    raise SweepError("--launcher=slurm and submitit_local need submitit: pip install "
                     "'submitit>=1.5' (or the package's [slurm] extra)")


def check_slurm() -> None:
  """SLURM's commands are here (a login node), before anything is written."""
  require_submitit()
  missing = [c for c in ("sbatch", "srun") if not shutil.which(c)]
  if missing:
    raise SweepError(f"--launcher=slurm: {' and '.join(missing)} not found: run on a SLURM "
                     "login node (or use --launcher=submitit_local to try the path here)")


def parse_time_limit(text: str) -> int:
  """Minutes from "90" (minutes), "H:MM:SS" or "D-HH:MM:SS"."""
  match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+):(\d+))?", text.strip())
  if not match or (match.group(1) and not match.group(3)):
    raise SweepError(f"--time_limit={text}: use minutes (90), H:MM:SS or D-HH:MM:SS")
  days, first, minutes, seconds = (int(g) if g else 0 for g in match.groups())
  if match.group(3) is None:
    total = first
  else:
    total = days * 24 * 60 + first * 60 + minutes + (1 if seconds else 0)
  if total <= 0:
    raise SweepError(f"--time_limit={text} must be positive")
  return total


class _Base:
  """Picklable state shared by TrialJob's methods (submitit's base class is optional)."""


class TrialJob(submitit.helpers.Checkpointable if submitit else _Base):
  """Runs one trial's command in its workdir; requeues itself on preemption or timeout."""

  def __init__(self, item: Item, *, root: str, sweep: str, env: dict[str, str] | None = None,
               limits: trial_lib.Limits = trial_lib.Limits()):
    self.item, self.root, self.sweep, self.env = item, root, sweep, dict(env or {})
    self.limits = limits
    self._proc = None

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_proc"] = None  # a running child is not picklable, nor meaningful elsewhere
    return state

  def __call__(self) -> int:
    item = self.item
    trial_lib.prepare(item.workdir, item.command, sweep=self.sweep, trial=item.name,
                      root=self.root)
    attempt = trial_lib.Attempt.start(item.workdir, item.command, cwd=self.root, env=self.env,
                                      limits=self.limits)
    self._proc = attempt.proc
    rc = attempt.wait()
    if rc != 0 or not trial_lib.is_done(item.workdir):
      raise RuntimeError(f"trial {item.name} failed (exit status {rc}): "
                         f"{trial_lib.last_error_line(item.workdir)}")
    return rc

  def checkpoint(self, *args, **kwargs):
    """Stops the command (the experiment resumes from its last checkpoint) and resubmits."""
    if self._proc is not None:
      _stop(self._proc)
    trial_lib.interrupted(self.item.workdir, "preempted or at the time limit; submitit "
                          "requeues the job, which resumes from the workdir")
    fresh = TrialJob(self.item, root=self.root, sweep=self.sweep, env=self.env,
                     limits=self.limits)
    return submitit.helpers.DelayedSubmission(fresh, *args, **kwargs)


def _stop(proc: subprocess.Popen, timeout_s: float = 60) -> None:
  """SIGTERM, then SIGKILL after `timeout_s` (inside the 90 s between SLURM's USR2 warning
  and its own kill at the time limit).

  Runs inside submitit's signal handler, which may have interrupted a `proc.poll()` holding
  the Popen's wait lock, so this reaps the child with os.waitpid.
  """
  if proc.returncode is not None:
    return
  proc.terminate()
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    try:
      if os.waitpid(proc.pid, os.WNOHANG)[0]:
        return
    except ChildProcessError:
      return
    time.sleep(0.1)
  proc.kill()


def _importable_env(root: str) -> None:
  """Lets submitit's worker (started from this environment) unpickle `launch.slurm.TrialJob`."""
  paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
  if root not in paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p])


class SubmititLocalBackend:
  """The local pool's backend through submitit's LocalExecutor: one submitit job per trial."""

  def __init__(self, *, folder: str, root: str, sweep: str, timeout_min: int,
               limits: trial_lib.Limits = trial_lib.Limits()):
    require_submitit()
    _importable_env(root)
    self.root, self.sweep, self.limits = root, sweep, limits
    self.executor = submitit.LocalExecutor(folder=folder, python=sys.executable)
    self.executor.update_parameters(timeout_min=timeout_min)

  def start(self, item: Item, env: dict[str, str]):
    os.makedirs(item.workdir, exist_ok=True)
    trial_lib.write_trial_flags(item.workdir, item.command, sweep=self.sweep, trial=item.name,
                                root=self.root)
    return self.executor.submit(TrialJob(item, root=self.root, sweep=self.sweep, env=env,
                                         limits=self.limits))

  def poll(self, item: Item, job) -> int | None:
    if not job.done():
      return None
    try:
      return job.result()
    except Exception as e:  # noqa: BLE001 - the trial failed, or submitit could not run it
      state = trial_lib.read_status(item.workdir) or {}
      if state.get("state") == "exited" and state.get("returncode") is not None:
        return state["returncode"]   # the job recorded how its command ended
      with open(os.path.join(item.workdir, trial_lib.LOG), "a") as f:
        lines = [l for l in str(e).splitlines() if l.strip()]
        f.write(f"error: submitit job {job.job_id} failed: "
                f"{lines[-1] if lines else type(e).__name__}\n")
      trial_lib.finish(item.workdir, 1)
      return 1

  def stop_all(self, running: list[tuple[Item, object]], why: str, report) -> None:
    del report
    for item, job in running:
      job.cancel(check=False)
      trial_lib.interrupted(item.workdir, why)


def active_jobs(job_ids: list[str]) -> set[str] | None:
  """Which of these SLURM job ids are queued or running (None: squeue did not answer)."""
  if not job_ids:
    return set()
  try:
    proc = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T",
                           f"--user={getpass.getuser()}"],
                          capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return None
  if proc.returncode != 0:
    return None
  ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
           "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
  listed = {f[0] for f in (line.split() for line in proc.stdout.splitlines())
            if len(f) == 2 and f[1] not in ended}
  return listed & set(job_ids)


def submit_slurm(items: list[Item], *, folder: str, root: str, sweep: str, job_name: str,
                 gpus_per_trial: int, cpus_per_trial: int, mem_gb: int, time_limit: str,
                 partition: str, max_parallel: int, additional: dict[str, str],
                 limits: trial_lib.Limits = trial_lib.Limits()) -> dict[str, str]:
  """Submits the trials as one SLURM job array; returns trial name -> job id."""
  require_submitit()
  _importable_env(root)
  params = dict(job_name=job_name, time=parse_time_limit(time_limit), nodes=1,
                ntasks_per_node=1, gpus_per_node=gpus_per_trial or None,
                additional_parameters=additional or None)
  if partition:
    params["partition"] = partition
  if cpus_per_trial:
    params["cpus_per_task"] = cpus_per_trial
  if mem_gb:
    params["mem"] = f"{mem_gb}GB"
  if max_parallel:
    params["array_parallelism"] = max_parallel
  executor = submitit.SlurmExecutor(folder=folder, python=sys.executable)
  executor.update_parameters(**params)
  for item in items:
    os.makedirs(item.workdir, exist_ok=True)
    trial_lib.write_trial_flags(item.workdir, item.command, sweep=sweep, trial=item.name,
                                root=root)
  jobs = executor.submit_array([TrialJob(item, root=root, sweep=sweep, limits=limits)
                                for item in items])
  return {item.name: job.job_id for item, job in zip(items, jobs)}
