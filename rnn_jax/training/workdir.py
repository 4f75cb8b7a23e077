"""What keeps a workdir whole: atomic writes, one process at a time, a heartbeat.

    workdir/train.lock       held (flock) by the one process training here: {"pid", "host", "since"}
    workdir/heartbeat.json   {"pid", "host", "step", "phase", "time"}: the run's last sign of progress

`lock(workdir)` takes the lock for the rest of the process's life (the kernel
drops it when the process dies, however it dies, so a dead process's lock is
simply taken over); a second process gets `WorkdirBusyError` naming the
holder. `atomic_write` is how every small file of the run is written: a
temporary file, fsync, rename, so a crash or a full disk leaves the old file or
the new one, never half of one.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time

LOCK = "train.lock"
HEARTBEAT = "heartbeat.json"

_held: dict[str, object] = {}   # realpath of a lock file -> its open handle, for this process


class WorkdirBusyError(RuntimeError):
  """Another process is training in this workdir."""


def atomic_write(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file, fsync and rename."""
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:  # the rename itself survives a power cut only once the directory is synced
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
  except OSError:
    pass


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _describe_holder(path: str) -> str:
  try:
    with open(path) as f:
      holder = json.load(f)
    return (f"pid {holder.get('pid')} on host {holder.get('host')} "
            f"(since {holder.get('since')})")
  except (OSError, ValueError):
    return "another process"


def _busy(path: str) -> WorkdirBusyError:
  return WorkdirBusyError(
      f"--workdir={os.path.dirname(path)} is in use by {_describe_holder(path)}; two runs "
      "cannot train in one workdir: wait for it, stop it, or choose another --workdir")


def lock(workdir: str) -> None:
  """Makes this process the only one training in `workdir`, until it exits.

  Re-entrant within a process. The lock is an flock on `workdir/train.lock`,
  which the kernel releases when the process ends, SIGKILL included; the file
  then still names the dead holder, and the next process takes it over.

  Raises:
    WorkdirBusyError: another live process holds it (the message names its pid and host).
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.realpath(os.path.join(workdir, LOCK))
  if path in _held:
    return
  handle = open(path, "a+")  # noqa: SIM115 - held for the process's life
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    raise _busy(path) from None
  handle.seek(0)
  handle.truncate()
  handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}))
  handle.flush()
  _held[path] = handle


def check_free(workdir: str) -> None:
  """Raises WorkdirBusyError if another live process holds `workdir`'s lock; writes nothing.

  For checks that read the workdir before `lock` (another process's checkpoint
  saves and deletions would race them); `lock` itself stays the guarantee.
  """
  path = os.path.realpath(os.path.join(workdir, LOCK))
  if path in _held or not os.path.exists(path):
    return
  try:
    handle = open(path)  # noqa: SIM115 - closed below
  except OSError:
    return
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    raise _busy(path) from None
  else:
    fcntl.flock(handle, fcntl.LOCK_UN)
  finally:
    handle.close()


def unlock(workdir: str) -> None:
  """Releases this process's lock on `workdir` (if it holds one)."""
  path = os.path.realpath(os.path.join(workdir, LOCK))
  handle = _held.pop(path, None)
  if handle is not None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


class Heartbeat:
  """Writes `workdir/heartbeat.json` at most every `every_s` seconds (and on each phase change).

  Launchers read its mtime as the run's last sign of progress: a trial whose
  heartbeat is old is hung or lost, whatever its status file says.
  """

  def __init__(self, workdir: str, every_s: float = 10.0, enabled: bool = True):
    self.path = os.path.join(workdir, HEARTBEAT)
    self.every_s = every_s
    self.enabled = enabled
    self._last = -float("inf")
    self._phase = None

  def __call__(self, step: int | None, phase: str = "train", *, force: bool = False) -> None:
    if not self.enabled:
      return
    now = time.time()
    if not force and phase == self._phase and now - self._last < self.every_s:
      return
    self._last, self._phase = now, phase
    record = {"pid": os.getpid(), "host": socket.gethostname(), "step": step, "phase": phase,
              "time": now}
    try:
      atomic_write(self.path, json.dumps(record) + "\n")
    except OSError:  # a heartbeat is advisory: a full disk must not stop training here
      pass
