"""Runs a sweep: every trial of a sweep file, on local accelerators, the CPU, or SLURM.

    python -m launch.sweep --sweep=launch/sweeps/zaremba_ptb.py --workdir_root=runs/zaremba
    python -m launch.sweep --sweep=zaremba_ptb --workdir_root=runs/zaremba --dry_run
    python -m launch.table runs/zaremba

Each trial runs, from the repo root, as

    python -m <EXPERIMENT> --flagfile=<FLAGFILE or the trial's flagfile> --<k>=<v> ... \\
        [--<set flags>] --workdir=<workdir_root>/<trial name>

Sweep files (`EXPERIMENT`, `FLAGFILE`, `trials()`, optional `PAPER`) are
described in `launch/sweeps/__init__.py`; `--sweep` takes a path or the name
of a file in launch/sweeps/.

Where trials run (`--launcher`):
  local           (default) a pool on this machine. Accelerators: each trial owns
                  `--devices_per_trial` GPUs (default 1), named in CUDA_VISIBLE_DEVICES
                  (`--device_env` for another variable); the GPUs come from
                  `nvidia-smi -L`, or `--devices=0,1,2`; as many trials run at once as
                  there are groups (fewer with `--max_parallel`). Without GPUs (or with
                  `--devices=cpu`) `--max_parallel` trials run at once (default 1) on the
                  CPU; the launcher sets nothing then, or JAX_PLATFORMS=cpu for
                  `--devices=cpu`. Each JAX process uses every core, so keep
                  `--max_parallel` at about cores / 2 or less.
  slurm           one SLURM job array through submitit (`pip install submitit`): each
                  task gets `--gpus_per_trial` GPUs, `--cpus_per_trial`, `--mem_gb`,
                  `--time_limit` (minutes, H:MM:SS or D-HH:MM:SS), `--partition`,
                  `--slurm_additional=account=x,qos=y`; `--max_parallel` caps the running
                  tasks. On preemption or at the time limit the job requeues itself and
                  the trial resumes from its workdir. The launcher returns once the array
                  is submitted (job ids in <workdir_root>/slurm_jobs.json); submitit's
                  own logs are under <workdir_root>/.submitit/. A rerun skips the trials
                  whose job `squeue` still lists.
  submitit_local  the same submitit jobs through submitit's LocalExecutor, scheduled
                  like `local` (devices and `--max_parallel` alike): tests the SLURM
                  path on one machine.

Rerunning the same command skips finished trials (results.json present) and
reruns the others with the same command, so an interrupted trial resumes from
its checkpoints and a failed one is retried. A failing trial does not stop
the others. `--only=PATTERN` (repeatable) runs the trials whose names match it (fnmatch);
`--set=max_steps=10 --set=data_dir=/data` adds flags to every trial (not to
their names). `--dry_run` checks everything, prints the commands and starts
and writes nothing.

A trial's identity is a hash of its resolved flags: its command's flags with
the flagfiles expanded (so editing a flagfile counts), `--workdir` aside; each
trial's is in sweep.json (`identity`, `resolved_flags`) and, for the flags its
workdir's state was made with, in <trial>/trial_flags.json. A rerun whose
`--set`, sweep file or flagfiles change a selected trial's identity, once that
trial has run, does what `--on_changed` says:
  refuse          (default) one `error:` line naming each such trial and the flags
                  that changed; exit status 2, nothing started or written.
  resume          rerun them in place: results.json moves to results.json.stale and
                  the experiment resumes from its checkpoints (it refuses by itself,
                  exit 1, when a flag that changes results differs; flags that only
                  extend or observe a run, such as max_steps, may change).
  restart         move their workdirs to <workdir_root>/.stale/<trial>-<time>/
                  (nothing is deleted) and run them afresh.
The identity of a workdir follows an attempt's flags once the experiment ran
with them (exit 0 or 75), so a refused resume still shows as changed and
`--on_changed=restart` still applies. Trials not selected by `--only` keep
their old results; `launch.table` shows them as `stale: ...`.

Hung and lost trials (local pool, and the SLURM/submitit job wrappers):
`--trial_timeout=SECONDS` (default 0: none) stops an attempt that runs longer;
`--stall_timeout=SECONDS` (default 1800) stops one with no sign of progress
that long: <trial>/heartbeat.json did not change (the trainer rewrites it at
least every 30 s while training, and around evaluations), or, before the
attempt's first heartbeat and for experiments that write none, launch.log
(their output) did not. 30 minutes leave room for compilation and a long
evaluation; raise it for an experiment that stays quiet longer, or 0 to
disable. A stopped trial gets SIGTERM, so it saves a
checkpoint (exit status 75), then SIGKILL after `--stop_grace` seconds
(default 120); launch.log and launch_status.json say why, the table shows
`failed: timed out after 2 h (--trial_timeout); rerun resumes`, its slot goes
to the next trial, and a rerun resumes it. While a trial runs, the launcher
rewrites the heartbeat in its launch_status.json every `--heartbeat_every`
seconds (default 30), so `launch.table` on any host tells a live trial from
one whose launcher or node died. A rerun skips a trial that is live elsewhere
(a running status whose heartbeat is younger than 10 minutes, or whose process
runs on this host) and reruns one that is lost.

An experiment that exits with status 75 was preempted (SIGTERM or SIGINT; it
saved a checkpoint): the trial is `incomplete`, not failed, and a rerun resumes it.

Files: <workdir_root>/sweep.json (the manifest: sweep file, experiment, trials,
their flags, commands and paper numbers); per trial, in <workdir_root>/<trial>/:
trial_flags.txt (the command as a flagfile, written before the trial starts:
`python -m <EXPERIMENT> --flagfile=<it>` reruns it), trial_flags.json (its
identity and resolved flags), launch.log (stdout and stderr of every attempt),
launch_status.json, and the experiment's own flags.txt, metrics.jsonl,
heartbeat.json, results.json. A local run ends by writing the table
(<workdir_root>/table.md, table.csv; see `launch.table`).

Trial names come from the flags that vary between trials, `hidden_size=650,dropout=0.5`
(a trial's `flagfile` shows as its file name without .flags; a trial may set its
own `_name`). Before anything starts, each of these is one `error:` line and exit
status 2: a sweep file that does not load or lacks EXPERIMENT, FLAGFILE or
trials(), two trials with one name, a flag the experiment does not define (the
flag names come from `python -m <EXPERIMENT> --helpfull`, run once), a missing
flagfile or experiment (only when trials would start: `--dry_run` merely notes
them), a workdir_root holding another sweep, or one another launcher is
running (<workdir_root>/launch.lock). Exit status 1: a trial failed; 75: none
failed but one was preempted (incomplete); 130: the launcher was stopped
(SIGINT/SIGTERM stop its trials, SIGKILL after `--stop_grace`, or at once on a
second Ctrl-C; they resume on the next run).
"""

from __future__ import annotations

import datetime
import fcntl
import fnmatch
import json
import os
import shlex
import sys
import time

from absl import app, flags

from launch import local, spec, trial as trial_lib
from launch.spec import SweepError

_SWEEP = flags.DEFINE_string("sweep", None, "The sweep file: a path, or a name in launch/sweeps/.")
_ROOT = flags.DEFINE_string("workdir_root", None, "Directory of the sweep: one workdir per trial.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "slurm", "submitit_local"],
                              "Where trials run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands; start and write nothing.")
_ONLY = flags.DEFINE_multi_string("only", [], "Run only the trials whose names match this "
                                  "fnmatch pattern (repeatable; names hold commas).")
_SET = flags.DEFINE_multi_string("set", [], "name=value: a flag added to every trial's "
                                 "command (e.g. max_steps=10, data_dir=/data).")
_PYTHON = flags.DEFINE_string("python", sys.executable, "The interpreter that runs the trials.")
_DEVICES = flags.DEFINE_string("devices", "", "local: accelerator ids (0,1,2), or cpu; empty: "
                               "the GPUs nvidia-smi -L lists, else the CPU.")
_DEVICES_PER_TRIAL = flags.DEFINE_integer("devices_per_trial", 1, "local: accelerators per trial.")
_DEVICE_ENV = flags.DEFINE_string("device_env", "CUDA_VISIBLE_DEVICES", "local: the variable "
                                  "naming a trial's accelerators.")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 0, "Trials at once. 0: one per device "
                                     "group, 1 on CPU, no cap on SLURM.")
_GPUS_PER_TRIAL = flags.DEFINE_integer("gpus_per_trial", 1, "slurm: GPUs per trial (0: none).")
_CPUS_PER_TRIAL = flags.DEFINE_integer("cpus_per_trial", 0, "slurm: CPUs per trial (0: "
                                       "SLURM's default).")
_MEM_GB = flags.DEFINE_integer("mem_gb", 0, "slurm: memory per trial in GB (0: SLURM's default).")
_TIME_LIMIT = flags.DEFINE_string("time_limit", "24:00:00", "slurm, submitit_local: time limit "
                                  "of one attempt (minutes, H:MM:SS or D-HH:MM:SS); the trial "
                                  "then requeues and resumes.")
_PARTITION = flags.DEFINE_string("partition", "", "slurm: partition.")
_ON_CHANGED = flags.DEFINE_enum("on_changed", "refuse", ["refuse", "resume", "restart"],
                                "A trial that ran with other resolved flags than this command "
                                "gives it: refuse (one error line), resume (rerun in place; "
                                "results.json moved aside), restart (workdir moved to "
                                "<workdir_root>/.stale/).")
_TRIAL_TIMEOUT = flags.DEFINE_float("trial_timeout", 0, "Seconds one attempt of a trial may "
                                    "run before it is stopped (it resumes when rerun); 0: none.")
_STALL_TIMEOUT = flags.DEFINE_float("stall_timeout", 1800, "Seconds a trial may go without a "
                                    "sign of progress (heartbeat.json changing, or launch.log "
                                    "before the first heartbeat) before it is stopped as hung; "
                                    "0: never.")
_STOP_GRACE = flags.DEFINE_float("stop_grace", 120, "Seconds between SIGTERM (the experiment "
                                 "saves a checkpoint) and SIGKILL when a trial is stopped.")
_HEARTBEAT_EVERY = flags.DEFINE_float("heartbeat_every", 30, "Seconds between the launcher's "
                                      "heartbeats in a running trial's launch_status.json.")
_SLURM_ADDITIONAL = flags.DEFINE_list("slurm_additional", [], "slurm: more sbatch options as "
                                      "key=value (account=x,qos=y).")

MANIFEST = "sweep.json"
LOCK = "launch.lock"
STALE_DIR = ".stale"
SLURM_JOBS = "slurm_jobs.json"


def _key_values(flag: str, entries: list[str]) -> dict[str, str]:
  out = {}
  for entry in entries:
    key, sep, value = entry.partition("=")
    if not sep or not key:
      raise SweepError(f"--{flag}={entry}: expected name=value")
    out[key.lstrip("-")] = value
  return out


def _select(sweep: spec.Sweep, patterns: list[str]) -> list[spec.Trial]:
  if not patterns:
    return sweep.trials
  for p in patterns:
    if not any(fnmatch.fnmatchcase(t.name, p) for t in sweep.trials):
      raise SweepError(f"--only={p} matches no trial (trials: "
                       f"{', '.join(t.name for t in sweep.trials)})")
  return [t for t in sweep.trials if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]


def _check_manifest(root: str, sweep: spec.Sweep) -> None:
  if os.path.exists(root) and not os.path.isdir(root):
    raise SweepError(f"--workdir_root={root} is a file")
  path = os.path.join(root, MANIFEST)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise SweepError(f"{path} is unreadable ({e}); move it away or choose another "
                     "--workdir_root") from None
  if (old.get("sweep_name"), old.get("experiment")) != (sweep.name, sweep.experiment):
    raise SweepError(f"--workdir_root={root} holds sweep {old.get('sweep_name')!r} of "
                     f"{old.get('experiment')!r}, not {sweep.name!r} of {sweep.experiment!r}; "
                     "choose another --workdir_root")


def _manifest(sweep: spec.Sweep, items: dict[str, local.Item], extra: dict[str, str],
              resolved: dict[str, dict[str, str]]) -> dict:
  return {
      "sweep": sweep.path, "sweep_name": sweep.name, "experiment": sweep.experiment,
      "flagfile": sweep.flagfile, "repo_root": spec.ROOT, "launcher": _LAUNCHER.value,
      "set": extra, "varied": sweep.varied, "paper": sweep.paper,
      "updated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "trials": [{"name": t.name, "flags": t.flags, "flagfile": t.flagfile,
                  "command": items[t.name].command, "paper": spec.paper_for(sweep.paper, t),
                  "identity": spec.identity(resolved[t.name]),
                  "resolved_flags": resolved[t.name]}
                 for t in sweep.trials],
  }


def _lock(root: str):
  """An exclusive lock on <root>/launch.lock for this process's life, or None if held."""
  handle = open(os.path.join(root, LOCK), "a")  # noqa: SIM115 - held until exit
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    return None
  return handle


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def plan(argv) -> tuple[spec.Sweep, str, dict[str, local.Item], list[str], dict[str, str]]:
  """Loads and checks everything; returns (sweep, root, items by name, names to run, --set)."""
  if len(argv) > 1:
    raise SweepError(f"unexpected arguments {argv[1:]}: every flag must read --name=value")
  if not _SWEEP.value:
    raise SweepError("--sweep is required: a sweep file, e.g. launch/sweeps/zaremba_ptb.py")
  if not _ROOT.value:
    raise SweepError("--workdir_root is required: the directory holding one workdir per trial")
  sweep = spec.load_sweep(_SWEEP.value)
  root = os.path.abspath(_ROOT.value)
  extra = _key_values("set", _SET.value)
  for key in extra:
    if key in ("workdir", "flagfile"):
      raise SweepError(f"--set={key}=...: the launcher sets --{key} itself")
    for t in sweep.trials:
      if key in t.flags:
        raise SweepError(f"--set={key}=... conflicts with trial {t.name!r}, which sets {key}")
  selected = _select(sweep, _ONLY.value)
  dry = _DRY_RUN.value
  if spec.experiment_exists(sweep.experiment) or not dry:
    spec.check_flags(sweep, _PYTHON.value, extra)
  else:
    print(f"# note: module {sweep.experiment} not found: flag names not checked", file=sys.stderr)
  try:
    spec.check_flagfiles(sweep)
  except SweepError as e:
    if not dry:
      raise
    print(f"# note: {e}", file=sys.stderr)
  _check_manifest(root, sweep)
  extra_args = [f"--{k}={v}" for k, v in extra.items()]
  items = {t.name: local.Item(t.name, os.path.join(root, t.name),
                              t.command(_PYTHON.value, sweep.experiment,
                                        os.path.join(root, t.name), extra_args))
           for t in sweep.trials}
  return sweep, root, items, [t.name for t in selected], extra


def _limits() -> trial_lib.Limits:
  for flag in (_TRIAL_TIMEOUT, _STALL_TIMEOUT, _STOP_GRACE):
    if flag.value < 0:
      raise SweepError(f"--{flag.name}={flag.value:g} must be >= 0 (0: none)")
  if _HEARTBEAT_EVERY.value <= 0:
    raise SweepError(f"--heartbeat_every={_HEARTBEAT_EVERY.value:g} must be > 0")
  return trial_lib.Limits(trial_timeout=_TRIAL_TIMEOUT.value,
                          stall_timeout=_STALL_TIMEOUT.value, stop_grace=_STOP_GRACE.value,
                          heartbeat_every=_HEARTBEAT_EVERY.value)


def _changes(items: dict[str, local.Item], names: list[str],
             resolved: dict[str, dict[str, str]]) -> dict[str, str]:
  """The trials whose workdir's state was made with other resolved flags: name -> what changed."""
  changes = {}
  for name in names:
    how = trial_lib.changed_flags(items[name].workdir, resolved[name])
    if how is not None:
      changes[name] = how
  return changes


def _refusal(changes: dict[str, str], root: str, shown: int = 20) -> str:
  listed = "; ".join(f"{n} ({how})" for n, how in list(changes.items())[:shown])
  if len(changes) > shown:
    listed += f"; and {len(changes) - shown} more"
  return (f"{len(changes)} trial(s) ran with other flags than this command gives them: "
          f"{listed}. Rerun with --on_changed=resume (in place: results.json moved aside, the "
          "experiment resumes its checkpoints or refuses by itself) or --on_changed=restart "
          f"(old workdirs moved to {os.path.join(root, STALE_DIR)}/), or undo the change")


def _live(items: dict[str, local.Item], names: list[str]) -> dict[str, str]:
  """The trials a process still runs (this host, or another one with a fresh heartbeat):
  name -> their status, with where."""
  live = {}
  for name in names:
    status = trial_lib.status(items[name].workdir)
    if status.split(":")[0] in ("running", "hung"):
      state = trial_lib.read_status(items[name].workdir) or {}
      where = f" (pid {state.get('pid')} on {state.get('host')})" if status == "running" else ""
      live[name] = status + where
  return live


def _queued_on_slurm(root: str, names: list[str]) -> dict[str, str]:
  """The trials whose SLURM job (slurm_jobs.json) squeue still lists: name -> job id."""
  from launch import slurm
  jobs_path = os.path.join(root, SLURM_JOBS)
  if not os.path.exists(jobs_path):
    return {}
  with open(jobs_path) as f:
    previous = json.load(f)
  active = slurm.active_jobs([previous[n] for n in names if n in previous])
  if active is None:
    print("note: squeue did not answer: trials submitted before may be submitted twice",
          file=sys.stderr)
    return {}
  return {n: previous[n] for n in names if previous.get(n) in active}


def _unique(path: str) -> str:
  target, n = path, 1
  while os.path.lexists(target):
    n += 1
    target = f"{path}.{n}"
  return target


def _apply_changes(items: dict[str, local.Item], changes: dict[str, str], root: str,
                   mode: str) -> None:
  """--on_changed=resume: results.json set aside; restart: the workdir moved to .stale/."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  for name, how in changes.items():
    workdir = items[name].workdir
    if mode == "resume":
      moved = ""
      if trial_lib.is_done(workdir):
        moved = os.path.basename(trial_lib.set_aside(os.path.join(workdir, trial_lib.RESULTS)))
        moved = f"; {trial_lib.RESULTS} moved to {moved}"
      trial_lib.note(workdir, f"flags changed ({how}); --on_changed=resume{moved}")
      print(f"[resume] {name}: flags changed ({how}){moved}")
    else:
      target = _unique(os.path.join(root, STALE_DIR, f"{name}-{stamp}"))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.rename(workdir, target)
      trial_lib.note(target, f"moved here from {workdir}: flags changed ({how}); "
                             "--on_changed=restart")
      print(f"[restart] {name}: flags changed ({how}); old workdir moved to {target}")


def main(argv):
  try:
    sweep, root, items, names, extra = plan(argv)
    limits = _limits()
    resolved = {n: spec.command_flags(item.command) for n, item in items.items()}
    changes = _changes(items, names, resolved)
    if changes and _ON_CHANGED.value == "refuse":
      raise SweepError(_refusal(changes, root))
    live = _live(items, [n for n in names if not trial_lib.is_done(items[n].workdir)])
    for name in changes:
      if name in live:
        raise SweepError(f"trial {name} ran with other flags ({changes[name]}) and is "
                         f"{live[name]}: stop it before --on_changed={_ON_CHANGED.value}")
    done = [n for n in names if n not in changes and trial_lib.is_done(items[n].workdir)]
    slots = None
    if _LAUNCHER.value in ("local", "submitit_local"):
      slots = local.device_slots(_DEVICES.value, _DEVICES_PER_TRIAL.value, _MAX_PARALLEL.value,
                                 _DEVICE_ENV.value)
    if _LAUNCHER.value != "local":
      from launch import slurm
      slurm.require_submitit()
      timeout_min = slurm.parse_time_limit(_TIME_LIMIT.value)
      additional = _key_values("slurm_additional", _SLURM_ADDITIONAL.value)
      if _LAUNCHER.value == "slurm" and not _DRY_RUN.value:
        slurm.check_slurm()
    if _DRY_RUN.value:
      where = ("; ".join(local.describe_slot(s) for s in slots) if slots
               else f"SLURM, {_GPUS_PER_TRIAL.value} GPU(s) per trial")
      print(f"# sweep {sweep.name}: {len(names)} trial(s) of {sweep.experiment}, run from "
            f"{spec.ROOT}; {len(done)} done; slots: {where}")
      for name, how in changes.items():
        print(f"# flags changed, --on_changed={_ON_CHANGED.value}: {name} ({how})")
      for n in names:
        prefix = ("# done, skipped: " if n in done else
                  f"# {live[n]}, skipped: " if n in live else "")
        print(prefix + shlex.join(items[n].command))
      return 0
    queued = {}
    if _LAUNCHER.value == "slurm":
      queued = _queued_on_slurm(root, [n for n in names if n not in done])
      for name in changes:
        if name in queued:
          raise SweepError(f"trial {name} ran with other flags ({changes[name]}) and its SLURM "
                           f"job {queued[name]} is queued or running: scancel "
                           f"{queued[name]} before --on_changed={_ON_CHANGED.value}")
    if _LAUNCHER.value == "submitit_local":
      backend = slurm.SubmititLocalBackend(folder=os.path.join(root, ".submitit"),
                                           root=spec.ROOT, sweep=sweep.path,
                                           timeout_min=timeout_min, limits=limits)
    elif _LAUNCHER.value == "local":
      backend = local.LocalBackend(root=spec.ROOT, sweep=sweep.path, limits=limits)
  except SweepError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2

  os.makedirs(root, exist_ok=True)
  lock = _lock(root)
  if lock is None:
    print(f"error: another launcher is running this sweep (lock {root}/{LOCK} held)",
          file=sys.stderr, flush=True)
    return 2
  _apply_changes(items, changes, root, _ON_CHANGED.value)
  _write_json(os.path.join(root, MANIFEST), _manifest(sweep, items, extra, resolved))
  for n in done:
    print(f"[skip] {n}: done")
  for n in names:
    if n in live:
      print(f"[skip] {n}: {live[n]}; not started twice")
    elif n in queued:
      print(f"[skip] {n}: SLURM job {queued[n]} is queued or running")
  todo = [items[n] for n in names if n not in done and n not in live and n not in queued]
  print(f"sweep {sweep.name}: {len(todo)} trial(s) to run, {len(done)} done, in {root}",
        flush=True)
  if not todo:
    return _finish(root, {})
  if _LAUNCHER.value == "slurm":
    return _submit(sweep, root, todo, additional, limits)
  try:
    codes = local.run_pool(todo, slots, backend, report=lambda s: print(s, flush=True))
  except (local.Stop, KeyboardInterrupt):
    print("stopped; rerun the same command to resume", file=sys.stderr, flush=True)
    return 130
  return _finish(root, codes)


def _submit(sweep: spec.Sweep, root: str, todo: list[local.Item], additional: dict[str, str],
            limits: trial_lib.Limits) -> int:
  from launch import slurm
  try:
    jobs = slurm.submit_slurm(
        todo, folder=os.path.join(root, ".submitit", "%j"), root=spec.ROOT, sweep=sweep.path,
        job_name=sweep.name, gpus_per_trial=_GPUS_PER_TRIAL.value,
        cpus_per_trial=_CPUS_PER_TRIAL.value, mem_gb=_MEM_GB.value,
        time_limit=_TIME_LIMIT.value, partition=_PARTITION.value,
        max_parallel=_MAX_PARALLEL.value, additional=additional, limits=limits)
  except Exception as e:  # noqa: BLE001 - sbatch's own message, as one line
    lines = [l for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
    print(f"error: submitting to SLURM failed: {lines[-1].strip()}", file=sys.stderr)
    return 1
  jobs_path = os.path.join(root, SLURM_JOBS)
  previous = {}
  if os.path.exists(jobs_path):
    with open(jobs_path) as f:
      previous = json.load(f)
  _write_json(jobs_path, {**previous, **jobs})
  for name, job_id in jobs.items():
    print(f"[submitted] {name}: job {job_id}")
  print(f"follow with: python -m launch.table {root}")
  return 0


def _finish(root: str, codes: dict[str, int]) -> int:
  from launch import table
  try:
    markdown = table.write_table(root)
    print("\n" + markdown, end="", flush=True)
  except SweepError as e:
    print(f"note: no table: {e}", file=sys.stderr)
  statuses = {n: trial_lib.status(os.path.join(root, n)) for n in codes}
  incomplete = [n for n, s in statuses.items() if s.startswith("incomplete")]
  failed = [n for n, s in statuses.items() if s != "done" and n not in incomplete]
  print(f"{len(codes) - len(failed) - len(incomplete)} trial(s) finished, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
        + (f"; {len(incomplete)} incomplete (rerun resumes): {', '.join(incomplete)}"
           if incomplete else ""), flush=True)
  return 1 if failed else trial_lib.PREEMPTED if incomplete else 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
