"""One trial's files in its workdir, running its command there, and what state it is in.

    <workdir_root>/<trial>/trial_flags.txt     the resolved command as a flagfile (reruns it)
    <workdir_root>/<trial>/trial_flags.json    the identity and resolved flags the workdir's
                                               state was made with, and those of the last attempt
    <workdir_root>/<trial>/launch.log          the command's stdout and stderr, every attempt,
                                               and why the launcher stopped one
    <workdir_root>/<trial>/launch_status.json  {"state": "running", host, pid, heartbeat} while
                                               it runs (the launcher rewrites the heartbeat),
                                               {"state": "exited", returncode, why} after
    <workdir_root>/<trial>/heartbeat.json      written by the trainer while it makes progress
    <workdir_root>/<trial>/results.json        written by the experiment: the trial is done

Every launcher (local pool, SLURM, submitit's local executor) goes through
`prepare`, `Attempt.start` and `Attempt.poll`, so the table reads the same
files whatever ran the trial.

The state an attempt leaves (trial_flags.json's top-level identity) moves to
the attempt's flags only once the experiment has accepted them, that is once
it exits 0 or 75; an experiment that refused to resume with changed flags
leaves the workdir's identity as it was, so the change is still seen.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from launch import spec

LOG = "launch.log"
STATUS = "launch_status.json"
FLAGS = "trial_flags.txt"
RECORD = "trial_flags.json"
RESULTS = "results.json"
HEARTBEAT = "heartbeat.json"
PREEMPTED = 75          # EX_TEMPFAIL: the experiment saved a checkpoint and stopped
STALE_AFTER_S = 600.0   # a running trial with no sign of life for this long is lost

_NOISE = ("Pass --helpshort or --helpfull to see help on flags.",)
_ERROR_WORDS = ("error", "exception", "fatal", "traceback", "killed", "failed")


def is_done(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, RESULTS))


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def span(seconds: float) -> str:
  """`45 s`, `12 min`, `3.5 h`."""
  if seconds < 120:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.2g} s"
  if seconds < 2 * 3600:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


def _write_json(path: str, obj) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, ValueError):
    return None
  return obj if isinstance(obj, dict) else None


def note(workdir: str, line: str) -> None:
  """Appends `=== <time>: <line>` to launch.log."""
  with open(os.path.join(workdir, LOG), "a") as f:
    f.write(f"=== {_now()}: {line}\n")


# ----------------------------------------------------------------------------- flags, identity


def write_trial_flags(workdir: str, command: list[str], *, sweep: str, trial: str,
                      root: str) -> None:
  """Writes trial_flags.txt (the command's flags as a flagfile, with how to rerun it) and
  trial_flags.json (this attempt's identity; the workdir's too when it has none yet)."""
  record = read_record(workdir, root)   # before trial_flags.txt, which an old workdir's needs
  python, _, experiment, *args = command
  lines = [f"# sweep: {sweep}", f"# trial: {trial}", f"# experiment module: {experiment}",
           f"# rerun from {root}:",
           f"#   {shlex.quote(python)} -m {experiment} --flagfile="
           f"{shlex.quote(os.path.join(workdir, FLAGS))}",
           *args]
  with open(os.path.join(workdir, FLAGS), "w") as f:
    f.write("\n".join(lines) + "\n")
  flags = spec.command_flags(command, root)
  attempt = {"identity": spec.identity(flags), "flags": flags, "written": _now()}
  record = record or {"identity": attempt["identity"], "flags": flags}
  _write_json(os.path.join(workdir, RECORD), {**record, "attempt": attempt})


def read_record(workdir: str, root: str = spec.ROOT) -> dict | None:
  """trial_flags.json: {"identity", "flags"} of the workdir's state, and {"attempt": ...} of
  the last attempt; None for a workdir no launcher ran. A workdir from before the record
  existed gets one from its trial_flags.txt (flagfiles as they read now)."""
  record = _read_json(os.path.join(workdir, RECORD))
  if record and "identity" in record:
    return record
  try:
    with open(os.path.join(workdir, FLAGS)) as f:
      args = [l.strip() for l in f.read().splitlines() if l.strip() and not l.startswith("#")]
  except OSError:
    return None
  flags = spec.resolve_flags(args, root)
  entry = {"identity": spec.identity(flags), "flags": flags}
  return {**entry, "attempt": entry}


def _accept_attempt(workdir: str) -> None:
  """The experiment ran with the attempt's flags: they are now the workdir's."""
  record = _read_json(os.path.join(workdir, RECORD))
  if record and record.get("attempt"):
    attempt = record["attempt"]
    _write_json(os.path.join(workdir, RECORD), {
        **record, "identity": attempt["identity"], "flags": attempt["flags"]})


def set_aside(path: str) -> str:
  """Renames `path` to `<path>.stale` (or `.stale.2`, ...; nothing is overwritten)."""
  target, n = f"{path}.stale", 1
  while os.path.lexists(target):
    n += 1
    target = f"{path}.stale.{n}"
  os.rename(path, target)
  return target


# ----------------------------------------------------------------------------- running


def prepare(workdir: str, command: list[str], *, sweep: str, trial: str, root: str) -> None:
  """Creates the workdir, writes trial_flags.txt/.json and a header in launch.log; clears old
  status."""
  os.makedirs(workdir, exist_ok=True)
  write_trial_flags(workdir, command, sweep=sweep, trial=trial, root=root)
  status = os.path.join(workdir, STATUS)
  if os.path.exists(status):
    os.remove(status)
  with open(os.path.join(workdir, LOG), "a") as f:
    f.write(f"=== {_now()} on {socket.gethostname()}: {shlex.join(command)}\n")


def _die_with_parent() -> None:
  """In the child: get SIGTERM when the launcher dies, even by SIGKILL (Linux only)."""
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


@dataclasses.dataclass(frozen=True)
class Limits:
  """How an attempt is watched and stopped; seconds, 0 for no limit.

  Attributes:
    trial_timeout: Wall time an attempt may run.
    stall_timeout: Time an attempt may go without a sign of progress (`last_progress`).
    stop_grace: Time between SIGTERM (the experiment saves a checkpoint) and SIGKILL.
    heartbeat_every: How often the launcher rewrites the heartbeat in launch_status.json.
  """
  trial_timeout: float = 0.0
  stall_timeout: float = 1800.0
  stop_grace: float = 120.0
  heartbeat_every: float = 30.0


def _mtime(path: str) -> float | None:
  try:
    return os.path.getmtime(path)
  except OSError:
    return None


def last_progress(workdir: str, since: float) -> float:
  """The time of the attempt's last sign of progress: heartbeat.json's mtime once the trainer
  wrote it in this attempt (started at `since`); before that, or for an experiment that writes
  none, launch.log's mtime (its output), or `since`."""
  beat = _mtime(os.path.join(workdir, HEARTBEAT))
  if beat is not None and beat >= since:
    return beat
  return max(since, _mtime(os.path.join(workdir, LOG)) or since)


class Attempt:
  """One run of a trial's command: its process, heartbeats, time limits, and exit recorded."""

  def __init__(self, workdir: str, proc: subprocess.Popen, limits: Limits, state: dict):
    self.workdir, self.proc, self.limits, self.state = workdir, proc, limits, state
    self.started = state["started_at"]
    self.last_beat = self.started
    self.why: str | None = None   # why the launcher stopped it
    self.failed = True            # whether that stop makes the trial failed (else incomplete)
    self.kill_at: float | None = None
    self.killed = False

  @classmethod
  def start(cls, workdir: str, command: list[str], *, cwd: str, limits: Limits = Limits(),
            env: dict[str, str] | None = None, die_with_parent: bool = True) -> "Attempt":
    """Starts the command with stdout and stderr appended to launch.log; records it running.

    `env` entries are set on top of this process's environment (and PYTHONUNBUFFERED=1, so
    launch.log follows the output as it comes).
    """
    log = open(os.path.join(workdir, LOG), "ab")  # noqa: SIM115 - the child holds it open
    try:
      proc = subprocess.Popen(
          command, cwd=cwd, env={"PYTHONUNBUFFERED": "1", **os.environ, **(env or {})},
          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
          preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None)
    finally:
      log.close()
    now = time.time()
    state = {"state": "running", "host": socket.gethostname(), "pid": proc.pid,
             "started": _now(), "started_at": now, "heartbeat": now,
             "stall_timeout": limits.stall_timeout, "env": env or {}}
    _write_json(os.path.join(workdir, STATUS), state)
    return cls(workdir, proc, limits, state)

  def poll(self) -> int | None:
    """The exit status once the process ended (recorded in launch_status.json), else None;
    meanwhile refreshes the heartbeat and stops the process past a time limit."""
    rc = self.proc.poll()
    if rc is not None:
      self._finish(rc)
      return rc
    now = time.time()
    if self.kill_at is not None:
      if now >= self.kill_at and not self.killed:
        note(self.workdir, f"no exit {span(self.limits.stop_grace)} after SIGTERM: SIGKILL")
        self.proc.kill()
        self.killed = True
    else:
      why = self._overdue(now)
      if why:
        self.stop(why)
    if now - self.last_beat >= self.limits.heartbeat_every:
      self.last_beat = now
      _write_json(os.path.join(self.workdir, STATUS), {**self.state, "heartbeat": now})
    return None

  def wait(self, poll_s: float = 1.0) -> int:
    while (rc := self.poll()) is None:
      time.sleep(poll_s)
    return rc

  def _overdue(self, now: float) -> str | None:
    timeout, stall = self.limits.trial_timeout, self.limits.stall_timeout
    if timeout and now - self.started > timeout:
      return f"timed out after {span(timeout)} (--trial_timeout)"
    if stall and now - last_progress(self.workdir, self.started) > stall:
      return f"no sign of progress for {span(stall)} (--stall_timeout)"
    return None

  def stop(self, why: str, failed: bool = True) -> None:
    """Sends SIGTERM (the experiment saves a checkpoint and exits); SIGKILL follows after
    the grace period, from `poll`. `failed`: the trial shows as failed, else incomplete."""
    if self.kill_at is not None or self.proc.poll() is not None:
      return
    self.why, self.failed = why, failed
    note(self.workdir, f"stopping it: {why}: SIGTERM, SIGKILL after "
                       f"{span(self.limits.stop_grace)}")
    self.proc.terminate()
    self.kill_at = time.time() + self.limits.stop_grace

  def kill(self) -> None:
    if self.proc.poll() is None:
      note(self.workdir, "SIGKILL (asked to stop at once)")
      self.proc.kill()
      self.killed = True

  def _finish(self, rc: int) -> None:
    why = self.why
    if why is not None:
      if self.killed:
        why += f", killed: still running {span(self.limits.stop_grace)} after SIGTERM"
      why += "; rerun resumes"
    finish(self.workdir, rc, why=why, failed=self.failed)


def finish(workdir: str, returncode: int, *, why: str | None = None,
           failed: bool = True) -> None:
  """Records the exit status (and `why` the launcher stopped it); a zero exit without
  results.json is logged as a failure. Exit 0 or 75 accepts the attempt's flags."""
  with open(os.path.join(workdir, LOG), "a") as f:
    if returncode == 0 and not is_done(workdir):
      f.write(f"error: the experiment exited 0 without writing {RESULTS}\n")
    if returncode < 0 and why is None:
      try:
        name = signal.Signals(-returncode).name
      except ValueError:
        name = f"signal {-returncode}"
      f.write(f"error: the experiment was killed by {name}\n")
    f.write(f"=== {_now()}: exit status {returncode}"
            + (" (preempted: it saved a checkpoint; rerun resumes)"
               if returncode == PREEMPTED else "") + "\n")
  if returncode in (0, PREEMPTED):
    _accept_attempt(workdir)
  state = {"state": "exited", "returncode": returncode, "ended": _now(),
           "host": socket.gethostname()}
  if why is not None:
    state.update(why=why, failed=failed)
  _write_json(os.path.join(workdir, STATUS), state)


def interrupted(workdir: str, why: str) -> None:
  """Notes in launch.log and the status why the trial was stopped before its end (it resumes
  when rerun or requeued)."""
  note(workdir, f"stopped: {why}")
  _write_json(os.path.join(workdir, STATUS), {
      "state": "exited", "returncode": None, "ended": _now(), "host": socket.gethostname(),
      "why": why, "failed": False})


# ----------------------------------------------------------------------------- statuses


def last_error_line(workdir: str) -> str:
  """The last line of launch.log that reads like an error (else the last line of output)."""
  try:
    with open(os.path.join(workdir, LOG), errors="replace") as f:
      lines = [l.strip() for l in f.read().splitlines()]
  except OSError:
    return "no launch.log"
  lines = [l for l in lines if l and not l.startswith("===") and l not in _NOISE]
  for line in reversed(lines):
    if any(w in line.lower() for w in _ERROR_WORDS):
      return line
  return lines[-1] if lines else "no output"


def _alive(pid: int) -> bool:
  """Whether the process runs (a zombie, whose parent died unreaped, does not)."""
  if os.path.exists("/proc/self/stat"):
    try:
      with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
      return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def read_status(workdir: str) -> dict | None:
  return _read_json(os.path.join(workdir, STATUS))


def _number(value, default: float) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return default
  return float(value)


def _running(workdir: str, state: dict, stale_after: float, now: float) -> str:
  """running, hung: ... or lost: ... for a status that says running."""
  host = state.get("host") or "an unknown host"
  started = _number(state.get("started_at"), 0.0)
  progress = last_progress(workdir, started)
  if host == socket.gethostname():
    if not _alive(int(_number(state.get("pid"), 0))):
      return "lost: process gone; rerun resumes"
  else:
    seen = max(progress, _number(state.get("heartbeat"), 0.0),
               _mtime(os.path.join(workdir, LOG)) or 0.0)
    if now - seen > stale_after:
      return f"lost: no heartbeat from {host} for {span(now - seen)}; rerun resumes"
  hung_after = _number(state.get("stall_timeout"), 0.0) or stale_after
  if now - progress > hung_after:
    return (f"hung: no sign of progress for {span(now - progress)} (pid "
            f"{state.get('pid')} on {host})")
  return "running"


def _exited(workdir: str, state: dict) -> str:
  if state.get("why"):
    return f"{'failed' if state.get('failed', True) else 'incomplete'}: {state['why']}"
  if state.get("returncode") == PREEMPTED:
    return f"incomplete: preempted (exit status {PREEMPTED}); rerun resumes"
  return f"failed: {last_error_line(workdir)}"


def status(workdir: str, *, expected: dict[str, str] | None = None,
           stale_after: float = STALE_AFTER_S, root: str = spec.ROOT) -> str:
  """The trial's state, its first word one of:

    done, failed: <why>, incomplete: <why>, running, hung: <for how long>,
    lost: <why>, pending; or stale: <state> with other flags (<changes>) ...,
    when `expected` (the resolved flags the sweep now gives the trial) differ
    from those the workdir's state was made with.

  A running status is trusted only while its process is alive (this host) or its heartbeat
  is younger than `stale_after` seconds (another host).
  """
  state = read_status(workdir)
  if is_done(workdir):
    current = "done"
  elif state and state.get("state") == "exited":
    current = _exited(workdir, state)
  elif state and state.get("state") == "running":
    current = _running(workdir, state, stale_after, time.time())
  elif os.path.exists(os.path.join(workdir, LOG)):
    current = "incomplete"
  else:
    current = "pending"
  return current if expected is None else _stale(workdir, current, expected, root)


def changed_flags(workdir: str, expected: dict[str, str], root: str = spec.ROOT) -> str | None:
  """How `expected` differs from the flags the workdir's state was made with (None: it does
  not, or no launcher ran the trial)."""
  record = read_record(workdir, root)
  if not record or record["identity"] == spec.identity(expected):
    return None
  return spec.flag_changes(record["flags"], expected)


def _stale(workdir: str, current: str, expected: dict[str, str], root: str) -> str:
  changes = changed_flags(workdir, expected, root)
  if changes is None:
    return current
  key = current.split(":")[0]
  attempt = (read_record(workdir, root) or {}).get("attempt") or {}
  if key in ("running", "hung") and attempt.get("identity") == spec.identity(expected):
    return current   # being resumed with the flags asked for
  return (f"stale: {key} with other flags ({changes}); rerun with --on_changed=resume "
          "or restart")
