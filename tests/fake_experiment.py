"""A tiny stand-in experiment for the launcher's tests: absl flags, the results contract, resume.

    PYTHONPATH=tests python -m fake_experiment --workdir=DIR --value=2 [--sleep=S] [--fail]
        [--heartbeat] [--hang] [--ignore_sigterm]

Writes DIR/flags.txt, DIR/results.json ({"score": 2 * value}), appends one line
per run to DIR/runs.txt (a resumed run is a second line) and one JSON line per
run to DIR/devices.jsonl: the devices it sees (CUDA_VISIBLE_DEVICES, or null
when unset), its start and end times, and the seconds of sleep it resumed from.
`--fail` prints an error line and exits 1; an unparsable `--value` fails in
absl's flag parsing.

It keeps the trainer's contracts: `--sleep` is its training, checkpointed in
DIR/checkpoint.json, which a rerun resumes from; SIGTERM or SIGINT saves the
checkpoint and exits 75; a rerun whose `--value` differs from the
checkpoint's refuses with an `error:` line and exit status 1. `--heartbeat`
rewrites DIR/heartbeat.json (atomically) as it progresses. `--hang` stops
making progress after starting (no output, no heartbeat) and never ends;
`--ignore_sigterm` ignores SIGTERM and SIGINT, as a process stuck in native
code does, so only SIGKILL ends it.
"""

import json
import os
import signal
import socket
import sys
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run.")
_VALUE = flags.DEFINE_float("value", 1.0, "The score is twice this.")
_FAIL = flags.DEFINE_bool("fail", False, "Fail with an error line after sleeping.")
_SLEEP = flags.DEFINE_float("sleep", 0.0, "Seconds to sleep before finishing (checkpointed).")
_LABEL = flags.DEFINE_string("label", "", "Free text, unused (a string flag for flagfiles).")
_HEARTBEAT = flags.DEFINE_bool("heartbeat", False, "Write heartbeat.json while sleeping.")
_HANG = flags.DEFINE_bool("hang", False, "Stop making progress after starting; never end.")
_IGNORE_SIGTERM = flags.DEFINE_bool("ignore_sigterm", False, "Ignore SIGTERM and SIGINT.")

_TICK = 0.05
CHECKPOINT = "checkpoint.json"


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f)
  os.replace(tmp, path)


def _heartbeat(workdir, slept):
  if _HEARTBEAT.value:
    _write_json(os.path.join(workdir, "heartbeat.json"), {
        "pid": os.getpid(), "host": socket.gethostname(), "step": int(slept / _TICK),
        "phase": "train", "time": time.time()})


def _resume_point(workdir) -> float:
  """Seconds slept by earlier runs; exits 1 if they ran with another --value."""
  try:
    with open(os.path.join(workdir, CHECKPOINT)) as f:
      checkpoint = json.load(f)
  except FileNotFoundError:
    return 0.0
  if checkpoint["value"] != _VALUE.value:
    print(f"error: --value changed ({checkpoint['value']:g} -> {_VALUE.value:g}) since this "
          "workdir's checkpoint; use a new --workdir", file=sys.stderr, flush=True)
    sys.exit(1)
  return checkpoint["slept"]


def main(argv):
  del argv
  start = time.time()
  workdir = _WORKDIR.value
  if not workdir:
    print("error: --workdir is required", file=sys.stderr)
    sys.exit(1)
  os.makedirs(workdir, exist_ok=True)
  slept = _resume_point(workdir)
  with open(os.path.join(workdir, "flags.txt"), "w") as f:
    f.write("# experiment: fake\n" + flags.FLAGS.flags_into_string())
  with open(os.path.join(workdir, "runs.txt"), "a") as f:
    f.write(f"{os.getpid()}\n")
  resumed_from = slept

  def save():
    _write_json(os.path.join(workdir, CHECKPOINT), {"slept": slept, "value": _VALUE.value})

  def preempted(signum, frame):
    del frame
    save()
    print(f"preempted by {signal.Signals(signum).name}: checkpoint at {slept:.2f} s",
          flush=True)
    sys.exit(75)

  handler = signal.SIG_IGN if _IGNORE_SIGTERM.value else preempted
  signal.signal(signal.SIGTERM, handler)
  signal.signal(signal.SIGINT, handler)
  devices = os.environ.get("CUDA_VISIBLE_DEVICES")
  print(f"devices: {devices}", flush=True)
  _heartbeat(workdir, slept)
  if _HANG.value:
    while True:
      time.sleep(3600)
  while slept < _SLEEP.value:
    time.sleep(min(_TICK, _SLEEP.value - slept))
    slept = min(slept + _TICK, _SLEEP.value)
    _heartbeat(workdir, slept)
  save()
  with open(os.path.join(workdir, "devices.jsonl"), "a") as f:
    f.write(json.dumps({"devices": devices, "start": start, "end": time.time(),
                        "resumed_from": resumed_from}) + "\n")
  if _FAIL.value:
    print("error: --fail was set", file=sys.stderr, flush=True)
    sys.exit(1)
  _write_json(os.path.join(workdir, "results.json"), {"score": _VALUE.value * 2, "name": "fake"})


if __name__ == "__main__":
  app.run(main)
