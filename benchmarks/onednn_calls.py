r"""oneDNN's LSTM: a 2-layer stack or both directions in one primitive call, against two calls.

    python -m benchmarks.onednn_calls                      # the LM's, GNMT's and a wide size
    python -m benchmarks.onednn_calls --sizes=20x200x20 --json=/tmp/calls.json

Issue #21 asks for multi-layer and bi-directional stacks in one oneDNN call "where its
layouts allow, since that is where it wins most". Before building that into the FFI
handlers, this measures whether it wins: `benchmarks/onednn_calls.cc` (plain C++ on
oneDNN's API, no JAX) times `lstm_forward` (forward_training) then `lstm_backward` for

  * a 2-layer unidirectional stack as one primitive (L = 2) against two L = 1 primitives;
  * both directions as one `bidirectional_concat` primitive against a left-to-right and a
    right-to-left one,

float32, D = H, weights in the primitives' own layouts (reordered once, outside the timing),
median of 5 rounds. It is compiled with g++ against the oneDNN that
`rnn_jax.kernels.onednn` finds (`build.find_onednn`), into a temporary directory.
OpenMP's threads: set `OMP_NUM_THREADS`. Sizes are BxHxT, as in `benchmarks.rnn`.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import tempfile

from absl import app, flags

_SIZES = flags.DEFINE_list("sizes", ["20x200x20", "64x64x20", "32x512x100"], "BxHxT sizes "
                           "(the PTB model's layers, GNMT's main job, a wide one).")
_REPS = flags.DEFINE_integer("reps", 0, "Passes per timed round (0: about 0.2 s worth).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")

SOURCE = pathlib.Path(__file__).with_name("onednn_calls.cc")


def compile_binary(directory: str) -> str:
  from rnn_jax.kernels.onednn import build  # finds oneDNN; raises BuildError with the reason
  onednn = build.find_onednn()
  binary = os.path.join(directory, "onednn_calls")
  command = [build._compiler(), "-O2", "-std=c++17", str(SOURCE), "-I", str(onednn.include_dir),
             "-L", str(onednn.lib_dir), "-ldnnl",
             f"-Wl,--disable-new-dtags,-rpath,{onednn.lib_dir}", "-o", binary]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    raise app.UsageError(f"compiling {SOURCE.name} failed:\n{result.stderr[-3000:]}")
  return binary


def parse_size(text: str) -> tuple[int, int, int]:
  try:
    B, H, T = (int(v) for v in text.split("x"))
  except ValueError:
    raise app.UsageError(f"--sizes: expected BxHxT, got {text!r}") from None
  return B, H, T


def main(argv):
  del argv
  sizes = [parse_size(s) for s in _SIZES.value]
  args = []
  for B, H, T in sizes:
    # About 0.2 s a round: an LSTM pass is ~ 24 B T H^2 flops forward+backward at ~50 GFLOP/s.
    reps = _REPS.value or max(1, int(0.2 / (24 * B * T * H * H / 50e9)))
    args += [str(T), str(B), str(H), str(reps)]
  with tempfile.TemporaryDirectory() as tmp:
    out = subprocess.run([compile_binary(tmp), *args], capture_output=True, text=True,
                         check=True)
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
  print(f"{'B x H x T':>14} | {'2 layers: one call':>18} {'two calls':>10} | "
        f"{'both directions: one call':>25} {'two calls':>10}  (ms, forward+backward)")
  for r in rows:
    print(f"{r['B']:>4} x {r['H']:>3} x {r['T']:>3} | {r['stack_one_call_ms']:18.2f} "
          f"{r['stack_two_calls_ms']:10.2f} | {r['bidirectional_one_call_ms']:25.2f} "
          f"{r['bidirectional_two_calls_ms']:10.2f}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": f"{platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} cores",
                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows}, f,
                indent=2)


if __name__ == "__main__":
  app.run(main)
