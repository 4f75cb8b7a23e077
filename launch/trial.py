"""One trial's files in its workdir, and running its command there.

    <workdir_root>/<trial>/trial_flags.txt     the resolved command as a flagfile (reruns it)
    <workdir_root>/<trial>/launch.log          the command's stdout and stderr, every attempt
    <workdir_root>/<trial>/launch_status.json  {"state": "running", host, pid} while it runs,
                                               {"state": "exited", "returncode"} after
    <workdir_root>/<trial>/results.json        written by the experiment: the trial is done

Every launcher (local pool, SLURM, submitit's local executor) goes through
`prepare`, `start` and `finish`, so the table reads the same files whatever ran
the trial.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import shlex
import signal
import socket
import subprocess
import sys

LOG = "launch.log"
STATUS = "launch_status.json"
FLAGS = "trial_flags.txt"
RESULTS = "results.json"

_NOISE = ("Pass --helpshort or --helpfull to see help on flags.",)
_ERROR_WORDS = ("error", "exception", "fatal", "traceback", "killed", "failed")


def is_done(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, RESULTS))


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def write_trial_flags(workdir: str, command: list[str], *, sweep: str, trial: str,
                      root: str) -> None:
  """Writes trial_flags.txt: the command's flags as a flagfile, with how to rerun it."""
  python, _, experiment, *args = command
  lines = [f"# sweep: {sweep}", f"# trial: {trial}", f"# experiment module: {experiment}",
           f"# rerun from {root}:",
           f"#   {shlex.quote(python)} -m {experiment} --flagfile="
           f"{shlex.quote(os.path.join(workdir, FLAGS))}",
           *args]
  with open(os.path.join(workdir, FLAGS), "w") as f:
    f.write("\n".join(lines) + "\n")


def prepare(workdir: str, command: list[str], *, sweep: str, trial: str, root: str) -> None:
  """Creates the workdir, writes trial_flags.txt and a header in launch.log; clears old status."""
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


def start(workdir: str, command: list[str], *, cwd: str, env: dict[str, str] | None = None,
          die_with_parent: bool = True) -> subprocess.Popen:
  """Starts the command with stdout and stderr appended to launch.log; records it running.

  `env` entries are set on top of this process's environment.
  """
  log = open(os.path.join(workdir, LOG), "ab")  # noqa: SIM115 - the child holds it open
  try:
    proc = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None)
  finally:
    log.close()
  _write_json(os.path.join(workdir, STATUS), {
      "state": "running", "host": socket.gethostname(), "pid": proc.pid, "started": _now(),
      "env": env or {}})
  return proc


def finish(workdir: str, returncode: int) -> None:
  """Records the exit status; a zero exit without results.json is logged as a failure."""
  with open(os.path.join(workdir, LOG), "a") as f:
    if returncode == 0 and not is_done(workdir):
      f.write(f"error: the experiment exited 0 without writing {RESULTS}\n")
    if returncode < 0:
      try:
        name = signal.Signals(-returncode).name
      except ValueError:
        name = f"signal {-returncode}"
      f.write(f"error: the experiment was killed by {name}\n")
    f.write(f"=== {_now()}: exit status {returncode}\n")
  _write_json(os.path.join(workdir, STATUS), {
      "state": "exited", "returncode": returncode, "ended": _now()})


def interrupted(workdir: str, why: str) -> None:
  """Notes in launch.log why the trial was stopped before its end; it resumes when rerun."""
  with open(os.path.join(workdir, LOG), "a") as f:
    f.write(f"=== {_now()}: stopped: {why}\n")
  status = os.path.join(workdir, STATUS)
  if os.path.exists(status):
    os.remove(status)


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


def status(workdir: str) -> str:
  """done, failed: <last error line>, running, incomplete (stopped; rerun resumes), pending."""
  if is_done(workdir):
    return "done"
  try:
    with open(os.path.join(workdir, STATUS)) as f:
      state = json.load(f)
  except (OSError, ValueError):
    state = None
  if state and state.get("state") == "exited":
    return f"failed: {last_error_line(workdir)}"
  if state and state.get("state") == "running":
    if state.get("host") != socket.gethostname() or _alive(int(state.get("pid", 0))):
      return "running"
    return "incomplete"
  if os.path.exists(os.path.join(workdir, LOG)):
    return "incomplete"
  return "pending"
