"""A tiny stand-in experiment for the launcher's tests: absl flags, the results contract, resume.

    PYTHONPATH=tests python -m fake_experiment --workdir=DIR --value=2 [--sleep=S] [--fail]

Writes DIR/flags.txt, DIR/results.json ({"score": 2 * value}), appends one line
per run to DIR/runs.txt (a resumed run is a second line) and one JSON line per
run to DIR/devices.jsonl: the devices it sees (CUDA_VISIBLE_DEVICES, or null
when unset) with its start and end times. `--fail` prints an error line and
exits 1; an unparsable `--value` fails in absl's flag parsing.
"""

import json
import os
import sys
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run.")
_VALUE = flags.DEFINE_float("value", 1.0, "The score is twice this.")
_FAIL = flags.DEFINE_bool("fail", False, "Fail with an error line after sleeping.")
_SLEEP = flags.DEFINE_float("sleep", 0.0, "Seconds to sleep before finishing.")
_LABEL = flags.DEFINE_string("label", "", "Free text, unused (a string flag for flagfiles).")


def main(argv):
  del argv
  start = time.time()
  workdir = _WORKDIR.value
  if not workdir:
    print("error: --workdir is required", file=sys.stderr)
    sys.exit(1)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "flags.txt"), "w") as f:
    f.write("# experiment: fake\n" + flags.FLAGS.flags_into_string())
  with open(os.path.join(workdir, "runs.txt"), "a") as f:
    f.write(f"{os.getpid()}\n")
  devices = os.environ.get("CUDA_VISIBLE_DEVICES")
  print(f"devices: {devices}", flush=True)
  time.sleep(_SLEEP.value)
  with open(os.path.join(workdir, "devices.jsonl"), "a") as f:
    f.write(json.dumps({"devices": devices, "start": start, "end": time.time()}) + "\n")
  if _FAIL.value:
    print("error: --fail was set", file=sys.stderr, flush=True)
    sys.exit(1)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"score": _VALUE.value * 2, "name": "fake"}, f)


if __name__ == "__main__":
  app.run(main)
