"""launch/ under injected faults: hung and killed trials, changed flags, statuses from dead hosts.

Each test injects its fault for real, as `test_launch` runs the launcher: as a
subprocess, over `python -m fake_experiment` trials of a second or so on the
CPU. Processes really hang (and ignore SIGTERM) or get signals; reruns really
change `--set` values, sweep files and flagfiles; statuses are written as
another host's launcher writes them.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from test_launch import ENV, _alive, launch, read_csv, runs, table_cli, write_sweep

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; trials die "
                                "with the launcher on Linux only")


def _pids(root, name):
  try:
    with open(os.path.join(root, name, "runs.txt")) as f:
      return [int(p) for p in f.read().split()]
  except FileNotFoundError:
    return []


def _kill(pids):
  for pid in pids:
    if _alive(pid):
      os.kill(pid, signal.SIGKILL)


def _wait_for(condition, what, timeout=30):
  deadline = time.time() + timeout
  while not condition():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.05)


def _step(root, name):
  try:
    with open(os.path.join(root, name, "heartbeat.json")) as f:
      return json.load(f)["step"]
  except (FileNotFoundError, ValueError):
    return -1


def _statuses(root, *args):
  from launch import table
  return {r["trial"]: r["status"] for r in table.collect(root, *args)[2]}


def _status_file(root, name):
  with open(os.path.join(root, name, "launch_status.json")) as f:
    return json.load(f)


def _write(root, name, status, log_age_s):
  """A trial's launch.log and launch_status.json as the launcher that ran it left them."""
  workdir = os.path.join(root, name)
  os.makedirs(workdir, exist_ok=True)
  log = os.path.join(workdir, "launch.log")
  with open(log, "w") as f:
    f.write(f"=== started on {status['host']}\ndevices: None\n")
  with open(os.path.join(workdir, "launch_status.json"), "w") as f:
    json.dump(status, f)
  then = time.time() - log_age_s
  os.utime(log, (then, then))


def _sweep_args(path, root, *more):
  return [f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu", *more]


# ----------------------------------------------------------------------------- 8: hung trials


def test_hung_trial_is_stopped_after_the_stall_timeout_and_frees_its_slot(tmp_path):
  """A trial that stops making progress and ignores SIGTERM is killed after --stall_timeout
  and --stop_grace; the next trial gets its slot."""
  path = write_sweep(tmp_path, "[{'_name': 'hangs', 'hang': True, 'ignore_sigterm': True}, "
                               "{'_name': 'after', 'value': 2}]")
  root = str(tmp_path / "runs")
  try:
    proc = launch(*_sweep_args(path, root, "--max_parallel=1", "--stall_timeout=1.5",
                               "--stop_grace=1"), cwd=tmp_path)
  finally:
    _kill(_pids(root, "hangs"))
  why = ("no sign of progress for 1.5 s (--stall_timeout), killed: still running 1 s after "
         "SIGTERM; rerun resumes")
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert f"[failed] hangs: {why} (log: {root}/hangs/launch.log)" in proc.stdout
  assert "[done] after" in proc.stdout
  assert "1 trial(s) finished, 1 failed: hangs" in proc.stdout
  rows = {r["trial"]: r for r in read_csv(root)}
  assert rows["hangs"]["status"] == f"failed: {why}"
  assert (rows["after"]["status"], rows["after"]["score"]) == ("done", "4.0")
  assert not any(_alive(p) for p in _pids(root, "hangs"))
  log = (tmp_path / "runs" / "hangs" / "launch.log").read_text()
  assert "stopping it: no sign of progress for 1.5 s (--stall_timeout): SIGTERM" in log
  assert "no exit 1 s after SIGTERM: SIGKILL" in log


def test_hung_trial_shows_as_hung_and_a_stopped_launcher_kills_it(tmp_path):
  """With no stall timeout the table says `hung`, never `running`, once the trial is quiet for
  --stale_after; the launcher heartbeats meanwhile; SIGTERM to the launcher stops the trial
  (SIGKILL after --stop_grace, as it ignores SIGTERM) and records it incomplete."""
  path = write_sweep(tmp_path, "[{'_name': 'hangs', 'hang': True, 'ignore_sigterm': True}]")
  root = str(tmp_path / "runs")
  launcher = subprocess.Popen(
      [sys.executable, "-m", "launch.sweep", *_sweep_args(
          path, root, "--stall_timeout=0", "--stop_grace=1", "--heartbeat_every=0.2")],
      cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for(lambda: _pids(root, "hangs"), "the trial to start")
    first = _status_file(root, "hangs")["heartbeat"]
    _wait_for(lambda: _status_file(root, "hangs")["heartbeat"] > first + 0.3,
              "the launcher's heartbeat")
    pid, host = _pids(root, "hangs")[0], socket.gethostname()
    assert _statuses(root) == {"hangs": "running"}
    time.sleep(1.2)
    status = _statuses(root, None, 1.0)["hangs"]
    assert status.startswith("hung: no sign of progress for ") and status.endswith(
        f" s (pid {pid} on {host})"), status
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=30)
  finally:
    launcher.kill()
    _kill(_pids(root, "hangs"))
  assert launcher.returncode == 130, out
  assert "[stopping] waiting up to 1 s for 1 trial(s) to save a checkpoint" in out
  assert "[stopped] hangs" in out
  assert not _alive(pid)
  assert _statuses(root)["hangs"] == ("incomplete: the launcher got SIGTERM, killed: still "
                                      "running 1 s after SIGTERM; rerun resumes")


def test_trial_timeout_stops_a_trial_that_resumes_where_it_stopped(tmp_path):
  """--trial_timeout sends SIGTERM to a trial still making progress; it saves a checkpoint,
  the table says failed with the reason, and a rerun resumes from the checkpoint."""
  path = write_sweep(tmp_path, "[{'_name': 'slow', 'sleep': 3, 'heartbeat': True}]")
  root = str(tmp_path / "runs")
  proc = launch(*_sweep_args(path, root, "--trial_timeout=1.5"), cwd=tmp_path)
  why = "timed out after 1.5 s (--trial_timeout); rerun resumes"
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert f"[failed] slow: {why}" in proc.stdout
  assert _statuses(root) == {"slow": f"failed: {why}"}
  assert _status_file(root, "slow")["returncode"] == 75
  with open(os.path.join(root, "slow", "checkpoint.json")) as f:
    saved = json.load(f)["slept"]
  assert 0 < saved < 3
  assert "preempted by SIGTERM: checkpoint at" in (tmp_path / "runs" / "slow" /
                                                    "launch.log").read_text()

  again = launch(*_sweep_args(path, root), cwd=tmp_path)
  assert again.returncode == 0, again.stdout + again.stderr
  with open(os.path.join(root, "slow", "devices.jsonl")) as f:
    assert [json.loads(l)["resumed_from"] for l in f] == [saved]   # nothing lost
  assert runs(root, "slow") == 2 and _statuses(root) == {"slow": "done"}


def test_preempted_trial_is_incomplete_not_failed(tmp_path):
  """A trial that gets SIGTERM from elsewhere saves a checkpoint and exits 75: reported as
  incomplete (the launcher exits 75), and a rerun resumes it."""
  path = write_sweep(tmp_path, "[{'_name': 'slow', 'sleep': 2, 'heartbeat': True}]")
  root = str(tmp_path / "runs")
  launcher = subprocess.Popen([sys.executable, "-m", "launch.sweep", *_sweep_args(path, root)],
                              cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for(lambda: _step(root, "slow") >= 2, "the trial's progress")
    os.kill(_pids(root, "slow")[0], signal.SIGTERM)
    out, _ = launcher.communicate(timeout=30)
  finally:
    launcher.kill()
  why = "preempted (exit status 75); rerun resumes"
  assert launcher.returncode == 75, out
  assert f"[incomplete] slow: {why}" in out
  assert "0 trial(s) finished, 0 failed; 1 incomplete (rerun resumes): slow" in out
  assert _statuses(root) == {"slow": f"incomplete: {why}"}
  again = launch(*_sweep_args(path, root), cwd=tmp_path)
  assert again.returncode == 0, again.stdout + again.stderr
  with open(os.path.join(root, "slow", "devices.jsonl")) as f:
    assert json.loads(f.readline())["resumed_from"] > 0


# ----------------------------------------------------------------------------- 9: changed flags


def test_rerun_with_changed_flags_refuses_or_reruns_never_mixes(tmp_path):
  path = write_sweep(tmp_path, "[{'value': 1}, {'value': 2}]")
  root = str(tmp_path / "runs")
  args = _sweep_args(path, root, "--max_parallel=2")
  assert launch(*args, "--set=label=a", cwd=tmp_path).returncode == 0
  manifest = (tmp_path / "runs" / "sweep.json").read_text()
  assert json.loads(manifest)["trials"][0]["resolved_flags"] == {
      "label": "a", "value": "1"}   # the flagfile's label, overridden by --set

  # A changed --set refuses, in one line naming the trials and the change; nothing runs.
  # (value=2 as a launcher from before trial_flags.json left it: its trial_flags.txt counts.)
  os.remove(os.path.join(root, "value=2", "trial_flags.json"))
  refused = launch(*args, "--set=label=b", cwd=tmp_path)
  assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
  assert refused.stderr.startswith(
      "error: 2 trial(s) ran with other flags than this command gives them: "
      "value=1 (label: a -> b); value=2 (label: a -> b). Rerun with --on_changed=resume")
  assert [runs(root, n) for n in ("value=1", "value=2")] == [1, 1]
  assert (tmp_path / "runs" / "sweep.json").read_text() == manifest
  # So does an edited flagfile, though the command reads the same (value=2's old-style record
  # reads the flagfile as it is now, so it cannot tell).
  with open(tmp_path / "fake.flags", "a") as f:
    f.write("--sleep=0.1\n")
  refused = launch(*args, "--set=label=a", cwd=tmp_path)
  assert refused.returncode == 2
  assert "them: value=1 (sleep: (unset) -> 0.1). Rerun" in refused.stderr

  # resume: rerun in place, the old results set aside.
  resumed = launch(*args, "--set=label=b", "--on_changed=resume", cwd=tmp_path)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert ("[resume] value=1: flags changed (label: a -> b, sleep: (unset) -> 0.1); "
          "results.json moved to results.json.stale") in resumed.stdout
  assert [runs(root, n) for n in ("value=1", "value=2")] == [2, 2]
  with open(os.path.join(root, "value=1", "results.json.stale")) as f:
    assert json.load(f)["score"] == 2.0
  assert "--label=b" in (tmp_path / "runs" / "value=1" / "flags.txt").read_text()
  assert launch(*args, "--set=label=b", cwd=tmp_path).stdout.count("[skip]") == 2

  # restart, of one trial: its workdir moves aside; the other shows stale, its score blank.
  restarted = launch(*args, "--set=label=c", "--on_changed=restart", "--only=value=1",
                     cwd=tmp_path)
  assert restarted.returncode == 0, restarted.stdout + restarted.stderr
  moved = glob.glob(os.path.join(root, ".stale", "value=1-*"))
  assert len(moved) == 1
  assert (f"[restart] value=1: flags changed (label: b -> c); old workdir moved to {moved[0]}"
          in restarted.stdout)
  assert runs(moved[0], "") == 2 and runs(root, "value=1") == 1
  rows = {r["trial"]: r for r in read_csv(root)}
  assert (rows["value=1"]["status"], rows["value=1"]["score"]) == ("done", "2.0")
  assert rows["value=2"]["status"] == ("stale: done with other flags (label: b -> c); rerun "
                                       "with --on_changed=resume or restart")
  assert rows["value=2"]["score"] == ""


def test_a_resume_the_experiment_refuses_stays_changed_until_restarted(tmp_path):
  """The experiment refuses to resume with a changed --value: the trial fails, its workdir
  keeps its old identity (so the change is still reported), and restart runs it afresh."""
  path = write_sweep(tmp_path, "[{'_name': 't', 'value': 1}]")
  root = str(tmp_path / "runs")
  assert launch(*_sweep_args(path, root), cwd=tmp_path).returncode == 0
  write_sweep(tmp_path, "[{'_name': 't', 'value': 3}]")

  resumed = launch(*_sweep_args(path, root, "--on_changed=resume"), cwd=tmp_path)
  assert resumed.returncode == 1
  assert ("[failed] t: error: --value changed (1 -> 3) since this workdir's checkpoint"
          in resumed.stdout)
  assert _statuses(root) == {"t": "stale: failed with other flags (value: 1 -> 3); rerun "
                                  "with --on_changed=resume or restart"}
  again = launch(*_sweep_args(path, root), cwd=tmp_path)
  assert again.returncode == 2 and "t (value: 1 -> 3)" in again.stderr

  restarted = launch(*_sweep_args(path, root, "--on_changed=restart"), cwd=tmp_path)
  assert restarted.returncode == 0, restarted.stdout + restarted.stderr
  assert [r["score"] for r in read_csv(root)] == ["6.0"]
  [old] = glob.glob(os.path.join(root, ".stale", "t-*"))
  with open(os.path.join(old, "results.json.stale")) as f:
    assert json.load(f)["score"] == 2.0   # nothing deleted


# ----------------------------------------------------------------------------- 10: lost trials


def test_running_status_is_trusted_only_while_its_host_shows_signs_of_life(tmp_path):
  """Statuses left as launchers on other hosts (or a dead one here) write them: a fresh
  heartbeat is running, an old one is lost; a dead pid here is lost; a live but quiet one is
  hung. A rerun reruns the lost trials and leaves the live ones alone."""
  path = write_sweep(tmp_path, "[{'value': v} for v in range(1, 6)]")
  root = str(tmp_path / "runs")
  assert launch(*_sweep_args(path, root, "--only=value=1"), cwd=tmp_path).returncode == 0
  now, here = time.time(), socket.gethostname()
  gone = subprocess.Popen(["true"])
  gone.wait()
  quiet = subprocess.Popen(["sleep", "60"])
  try:
    running = {"state": "running", "stall_timeout": 1800, "started_at": now - 7200}
    _write(root, "value=2", {**running, "host": "gpu-node-7", "pid": 4242,
                             "heartbeat": now - 1500}, log_age_s=1500)
    _write(root, "value=3", {**running, "host": "gpu-node-8", "pid": 4343,
                             "heartbeat": now - 5}, log_age_s=60)
    _write(root, "value=4", {**running, "host": here, "pid": gone.pid, "heartbeat": now},
           log_age_s=10)
    _write(root, "value=5", {**running, "host": here, "pid": quiet.pid, "heartbeat": now},
           log_age_s=3600)
    shown = table_cli(root, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for row in ("| value=2 | 2 |  | lost: no heartbeat from gpu-node-7 for 25 min; rerun "
                "resumes |", "| value=3 | 3 |  | running |",
                "| value=4 | 4 |  | lost: process gone; rerun resumes |",
                f"| value=5 | 5 |  | hung: no sign of progress for 60 min (pid {quiet.pid} on "
                f"{here}) |"):
      assert row in shown.stdout
    strict = table_cli(root, "--stale_after=2", cwd=tmp_path).stdout
    assert re.search(r"\| value=3 \| 3 \|  \| lost: no heartbeat from gpu-node-8 for [5-9]\.?\d* "
                     r"s; rerun resumes \|", strict), strict

    again = launch(*_sweep_args(path, root, "--max_parallel=2"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[skip] value=3: running (pid 4343 on gpu-node-8); not started twice" in again.stdout
    assert "[skip] value=5: hung: no sign of progress for 60 min" in again.stdout
    assert "2 trial(s) to run, 1 done" in again.stdout
    status = _statuses(root)
    assert [status[f"value={v}"] for v in (2, 4)] == ["done", "done"]
    assert runs(root, "value=3") == 0 and runs(root, "value=5") == 0
  finally:
    quiet.kill()
  # Once gpu-node-8 falls silent for longer than 10 min, a rerun takes its trial over.
  _write(root, "value=3", {**running, "host": "gpu-node-8", "pid": 4343,
                           "heartbeat": time.time() - 700}, log_age_s=700)
  last = launch(*_sweep_args(path, root, "--only=value=3"), cwd=tmp_path)
  assert last.returncode == 0, last.stdout + last.stderr
  assert _statuses(root)["value=3"] == "done"
