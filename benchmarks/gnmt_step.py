r"""GNMT training step time on 1 device against the batch split over all devices, the
layers pipelined over them (`--pipeline_devices`, `rnn_jax.pipeline`), and both.

    python -m benchmarks.gnmt_step --host_devices=2     # a 2-core CPU as two host devices
    python -m benchmarks.gnmt_step --host_devices=4 --layouts=1,data,layers,both
    python -m benchmarks.gnmt_step --hidden_size=256 --json=/tmp/gnmt_step.json
    python -m benchmarks.gnmt_step --guard=both --turns=7   # the NaN/inf guard's cost

The step is the experiment's own jitted `train_step` (experiments/gnmt: 8 + 8
layers, bi-directional bottom, GNMT attention, input feeding, Adam) on random
token batches of fixed lengths. For each layout of `--layouts` (1: one device; data:
the batch split over all devices, `rnn_jax.training.data_mesh`, params replicated, as
`training.fit` runs it; layers: the encoder's and decoder's layers spread over all
devices and pipelined over time, `--pipeline_devices=N`; both: layers over 2 devices
times data over the rest), it compiles the step, counts the collectives in the
partitioned program (an all-gather means some device computes rows that are
not its own), and times it in turns. On the CPU, `--host_devices=N` makes N
host devices of one machine (XLA's `--xla_force_host_platform_device_count`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import statistics
import time

import jax
import numpy as np
from absl import app, flags

_HIDDEN = flags.DEFINE_integer("hidden_size", 64, "H (the tiny_cpu flagfile's 64).")
_LAYERS = flags.DEFINE_integer("num_layers", 8, "Layers of the encoder and of the decoder.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Sentence pairs per step.")
_SOURCE_LEN = flags.DEFINE_integer("source_len", 20, "Source tokens per sentence.")
_TARGET_LEN = flags.DEFINE_integer("target_len", 22, "Target tokens per sentence.")
_VOCAB = flags.DEFINE_integer("vocab_size", 600, "Vocabulary.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per turn.")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns per setting.")
# --host_devices is the experiments' shared flag (experiments.common); importing the
# experiment does not start the jax backend, so main can still set it.
from experiments import common  # noqa: E402  (defines --host_devices)
if "host_devices" not in flags.FLAGS:  # an older checkout, for a before/after comparison
  flags.DEFINE_integer("host_devices", 0, "Use XLA_FLAGS at this commit.")
from experiments.gnmt import model as model_lib  # noqa: E402
from experiments.gnmt import train as train_lib  # noqa: E402
from experiments.gnmt.config import GNMTConfig  # noqa: E402
from rnn_jax import training  # noqa: E402
from benchmarks import timing  # noqa: E402
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_LAYOUTS = flags.DEFINE_list("layouts", ["1", "data"], "1, data, layers and/or both "
                             "(see the module docstring); layouts that need more devices "
                             "than there are are skipped.")
_GUARD = flags.DEFINE_enum("guard", "on", ["on", "off", "both"], "The train step's check for "
                           "NaN/inf (make_train_step(guard=...)); both: time the step with and "
                           "without it, in alternating turns.")


def collectives(hlo: str) -> dict[str, int]:
  """How many all-gathers and all-reduces an optimised HLO text holds."""
  return {op: len(re.findall(rf"\b{op}(-start)?\(", hlo)) for op in ("all-gather", "all-reduce")}


def main(argv):
  del argv
  if flags.FLAGS.host_devices > 1:  # read when the CPU backend starts: before any jax work
    common.set_host_devices(flags.FLAGS.host_devices)
  # As the experiments run (an older checkout for a before/after comparison has no such flag).
  retained = (common.apply_retain_freed_memory()
              if hasattr(common, "apply_retain_freed_memory") else False)
  # (Before commit eceebe3 there is no --host_devices: pass XLA_FLAGS=--xla_force_host_
  # platform_device_count=2 in the environment instead; RESULTS.md's older figure did.)
  config = GNMTConfig(hidden_size=_HIDDEN.value, num_layers=_LAYERS.value,
                      vocab_size=_VOCAB.value, batch_size=_BATCH.value, dropout=0.0)
  model = model_lib.GNMT(config, _VOCAB.value)
  optimizer = train_lib.make_optimizer(config, 1000)
  state = training.state.create_state(model.init(jax.random.key(0)), optimizer)
  N = len(jax.devices())
  layouts = {}  # name -> (mesh, model)
  for name in _LAYOUTS.value:
    if name == "1":
      layouts["1 device"] = (training.data_mesh(1), model)
    elif name == "data" and N > 1:
      layouts[f"data {N}"] = (training.data_mesh(N), model)
    elif name in ("layers", "both") and N > 1 and (name == "layers" or N >= 4):
      per_copy = N if name == "layers" else 2
      piped = dataclasses.replace(config, pipeline_devices=per_copy)
      mesh = training.parallel.data_layers_mesh(N, per_copy)
      label = (f"layers {per_copy}" if name == "layers"
               else f"data {N // per_copy} x layers {per_copy}")
      layouts[label] = (mesh, model_lib.GNMT(piped, _VOCAB.value, mesh=mesh))
    elif name not in ("1", "data", "layers", "both"):
      raise app.UsageError(f"--layouts: 1, data, layers or both, not {name!r}")
  rng = np.random.default_rng(0)
  B, S, U, V = _BATCH.value, _SOURCE_LEN.value, _TARGET_LEN.value, _VOCAB.value
  batch = {"source": rng.integers(4, V, (B, S), dtype=np.int32),
           "source_lengths": np.full(B, S, np.int32),
           "target_in": rng.integers(4, V, (B, U), dtype=np.int32),
           "target_out": rng.integers(4, V, (B, U), dtype=np.int32),
           "target_lengths": np.full(B, U, np.int32)}
  guards = {"on": [True], "off": [False], "both": [True, False]}[_GUARD.value]

  settings = {}
  for name, (mesh, layout_model) in layouts.items():
    loss_fn = train_lib.make_loss_fn(layout_model.config, layout_model)
    # guard=True is the default; not passing it keeps this file runnable in older checkouts.
    steps = {g: jax.jit(training.make_train_step(loss_fn, optimizer, **({} if g else {
        "guard": False}))) for g in guards}
    training.parallel.check_divisible(B, mesh)
    args = (training.place_state(state, mesh), training.place_batch(batch, mesh))
    for g, step in steps.items():
      hlo = step.lower(*args, jax.random.key(1)).compile().as_text()
      jax.block_until_ready(step(*args, jax.random.key(1)))
      settings[name, g] = {"args": args, "step": step, "devices": mesh.size,
                           "collectives": collectives(hlo), "ms": [], "cores": []}
  for _ in range(_TURNS.value):
    for s in settings.values():
      start, cpu = time.perf_counter(), timing.cpu_seconds()
      for i in range(_STEPS.value):
        _, metrics = s["step"](*s["args"], jax.random.key(i))
      jax.block_until_ready(metrics)
      elapsed = time.perf_counter() - start
      s["ms"].append(1e3 * elapsed / _STEPS.value)
      s["cores"].append((timing.cpu_seconds() - cpu) / elapsed)  # process CPU time / wall

  rows = []
  print(f"GNMT train step, H={_HIDDEN.value}, {_LAYERS.value}+{_LAYERS.value} layers, "
        f"B={B}, source {S}, target {U} tokens ({jax.default_backend()})")
  base = statistics.median(next(iter(settings.values()))["ms"])
  for (name, g), s in settings.items():
    ms = statistics.median(s["ms"])
    cores = statistics.median(s["cores"])
    rows.append({"layout": name, "devices": s["devices"], "guard": g, "ms_per_step": ms, "turns_ms": s["ms"],
                 "speedup": base / ms, "cores": cores, **s["collectives"]})
    print(f"{name}{'' if g else ', no guard'}: {ms:7.1f} ms/step, {base / ms:.2f}x the "
          f"first (turns: " + ", ".join(f"{t:.1f}" for t in s["ms"]) + f"); all-gathers "
          f"{s['collectives']['all-gather']}, all-reduces {s['collectives']['all-reduce']}; "
          f"{cores:.2f} cores busy (process CPU time over wall time)")
  for name in layouts:
    if "layers" in name:  # the pipeline's fill and drain: S stages over T steps
      stages = int(name.split("layers ")[1])
      print(f"{name}: bubble (T + S - 1) / T = {(S + stages - 1) / S:.2f} (encoder, T = {S}), "
            f"{(U + stages - 1) / U:.2f} (decoder, T = {U})")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "jax": jax.__version__, "retained_freed_memory": retained, "rows": rows},
                f, indent=2)


if __name__ == "__main__":
  app.run(main)
