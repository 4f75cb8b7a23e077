"""Every benchmark runs end to end at a tiny size and reports what it promises.

The figures come from the full commands in benchmarks/RESULTS.md; these runs only
check that each command still works (kernel internals that a benchmark calls,
flags, JSON) and that its checks hold, e.g. that `ab_kernel`'s two kernels agree.
"""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str, env: dict | None = None) -> str:
  out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, text=True,
                       capture_output=True, timeout=600,
                       env=dict(os.environ, JAX_PLATFORMS="cpu", **(env or {})))
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def test_rnn_benchmark_times_every_implementation(tmp_path):
  pytest.importorskip("torch")
  path = tmp_path / "rnn.json"
  out = _run("benchmarks.rnn", "--sizes=4x8x5", "--turns=1", "--compile_sizes=5,10",
             "--host_devices=2", "--pallas_interpret", f"--json={path}")
  results = json.loads(path.read_text())
  implementations = {"rnn_jax/scan", "rnn_jax/fused", "rnn_jax/fused_bf16", "rnn_jax/fused_dp",
                     "flax", "torch", "gemm_limit"}
  from rnn_jax.kernels import onednn
  if onednn.available()[0]:  # the oneDNN rows (LSTM and GRU) wherever its extension loads
    implementations |= {"rnn_jax/onednn", "rnn_jax/onednn_bf16"}
  else:
    for impl in ("rnn_jax/onednn", "rnn_jax/onednn_bf16"):
      assert f"({impl} skipped for lstm 4x8x5: the oneDNN extension is unavailable" in out
  # On the CPU: the Pallas row interpreted (LSTM only), cuDNN's left out, saying why.
  assert "(jax_cudnn skipped for lstm 4x8x5: needs a GPU" in out, out
  assert "(rnn_jax/pallas skipped for gru 4x8x5: an LSTM kernel only)" in out, out
  for cell, extra in (("lstm", {"rnn_jax/pallas"}), ("gru", set())):
    rows = [r for r in results["rows"] if r["cell"] == cell]
    assert {r["implementation"] for r in rows} == implementations | extra, cell
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in rows)
    torch_row, = (r for r in rows if r["implementation"] == "torch")
    assert all(0 < torch_row[k] < math.inf for k in ("fwd_ms", "fwd_bwd_ms")), torch_row
    for r in rows:  # "vs torch" is each row's time over torch's, forward and forward+backward
      assert (r["B"], r["H"], r["T"]) == (4, 8, 5), r
      for kind in ("fwd", "fwd_bwd"):
        assert r[f"{kind}_vs_torch"] == pytest.approx(r[f"{kind}_ms"] / torch_row[f"{kind}_ms"],
                                                      rel=1e-9), (r, torch_row)
        # Matmul FLOPs: 2 B T (D + H) G H forward (D = H, G gates), three times that with the
        # backward pass.
        flops = 2 * 4 * 5 * (8 + 8) * {"lstm": 4, "gru": 3}[cell] * 8
        flops *= 3 if kind == "fwd_bwd" else 1
        assert r[f"{kind}_gflops"] == pytest.approx(flops / (r[f"{kind}_ms"] / 1e3) / 1e9,
                                                    rel=1e-9), r
    # Against torch, not against itself: the rows' times differ, and so do their ratios.
    assert len({r["fwd_bwd_vs_torch"] for r in rows}) > 1, rows
  assert set(results["compile_s"]["lstm rnn_jax/fused"]) == {"5", "10"}


def test_rnn_benchmark_parts_and_memory():
  parts = _run("benchmarks.rnn", "--parts", "--sizes=4x8x5", "--turns=1")
  for name in ("projection GEMMs", "forward recurrence", "backward GEMMs",
               "whole fused forward+backward", "of which the reverse recurrence"):
    assert name in parts, parts
  memory = _run("benchmarks.rnn", "--memory", "--sizes=4x8x50")
  assert "rnn_jax/fused remat" in memory and "compile-time memory" in memory, memory


def test_cpu_loop_probes():
  pytest.importorskip("torch")
  slices = _run("benchmarks.cpu_loops", "--probe=slices", "--sizes=4x8x5", "--turns=1")
  for name in ("column slices of one [T, B, 4H]", "row slices of one [T, 4H, B]",
               "a dynamic_slice per gate of [T, B, 4H]", "four [T, B, H] arrays"):
    assert name in slices, slices
  faults = _run("benchmarks.cpu_loops", "--probe=faults", "--sizes=4x8x5", "--turns=1")
  assert faults.count("minor faults per call") == 2, faults
  step = _run("benchmarks.cpu_loops", "--probe=step", "--sizes=4x8x5", "--turns=1")
  assert "fused" in step and "torch" in step, step
  both = _run("benchmarks.cpu_loops", "--probe=concurrency", "--sizes=4x8x5", "--turns=1")
  for name in ("one loop", "two loops, independent", "one loop stepping two chains",
               "one loop beside a GEMM", "the GEMM alone"):
    assert f"{name} |" in both, both


def test_kernel_variants_give_the_kernels_gradients():
  """The two dropped variants of benchmarks/RESULTS.md still run, and check their gradients
  against the fused kernel's before timing (the command fails otherwise)."""
  chunks = _run("benchmarks.kernel_variants", "--variant=chunks", "--chunks=2,3",
                "--sizes=4x8x5", "--turns=1")
  assert "K=2 |" in chunks and "K=3 |" in chunks and "same gradients" in chunks, chunks
  unhoisted = _run("benchmarks.kernel_variants", "--variant=unhoisted", "--sizes=4x8x5",
                   "--turns=1")
  assert "unhoisted |" in unhoisted, unhoisted


def test_ab_kernel_finds_the_same_gradients():
  if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
    pytest.skip("not a git checkout")
  for cell in ("lstm", "gru"):
    out = _run("benchmarks.ab_kernel", "--rev=HEAD", f"--cell={cell}", "--sizes=4x8x5",
               "--turns=1", "--min_time=0.01")
    assert f"{cell} 4x8x5" in out and "same gradients" in out, out


def test_whole_step_benchmarks(tmp_path):
  pytest.importorskip("torch")
  gnmt = tmp_path / "gnmt.json"
  _run("benchmarks.gnmt_step", "--host_devices=2", "--hidden_size=8", "--num_layers=2",
       "--batch_size=4", "--source_len=5", "--target_len=6", "--vocab_size=30", "--steps=1",
       "--turns=1", "--layouts=1,data,layers", f"--json={gnmt}")
  rows = json.loads(gnmt.read_text())["rows"]
  assert [(r["layout"], r["devices"]) for r in rows] == [
      ("1 device", 1), ("data 2", 2), ("layers 2", 2)], rows
  # The batch split over two devices: no device gathers the other's rows, the
  # gradients are summed over both.
  assert rows[1]["all-gather"] == 0 and rows[1]["all-reduce"] > 0, rows
  lm = tmp_path / "lm.json"
  _run("benchmarks.lm", "--hidden_size=8", "--num_layers=2", "--batch_size=4", "--bptt=5",
       "--vocab_size=30", "--steps=1", "--turns=1", "--implementations=auto,onednn",
       f"--json={lm}")
  result = json.loads(lm.read_text())
  assert result["rnn_jax_tokens_per_s"] > 0 and result["pytorch_tokens_per_s"] > 0, result
  assert result["rnn_jax/onednn_tokens_per_s"] > 0 and "rnn_jax/onednn_over_pytorch" in result
  # Both time what the experiments run: with freed memory retained (where glibc is).
  from rnn_jax.training import host_memory
  glibc = host_memory._glibc() is not None
  assert result["retained_freed_memory"] is glibc
  assert json.loads(gnmt.read_text())["retained_freed_memory"] is glibc


def test_onednn_calls_benchmark(tmp_path):
  from rnn_jax.kernels import onednn
  ok, reason = onednn.available()
  if not ok:
    pytest.skip(f"oneDNN extension unavailable: {reason}")
  path = tmp_path / "calls.json"
  out = _run("benchmarks.onednn_calls", "--sizes=3x8x4,2x4x1", "--reps=1", f"--json={path}",
             env={"OMP_NUM_THREADS": "1"})
  rows = json.loads(path.read_text())["rows"]
  assert [(r["B"], r["H"], r["T"]) for r in rows] == [(3, 8, 4), (2, 4, 1)]
  for r in rows:
    for key in ("stack_one_call_ms", "stack_two_calls_ms", "bidirectional_one_call_ms",
                "bidirectional_two_calls_ms"):
      assert r[key] > 0, r
  assert "3 x   8 x   4" in out


def test_gpu_script_runs_its_steps(tmp_path):
  """benchmarks/gpu.sh, the GPU machine's check, run here on the CPU at a tiny size: both
  steps run and write their logs and the benchmark's JSON."""
  pytest.importorskip("torch")
  out = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=ROOT, text=True, capture_output=True,
                       timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu", OUT=str(tmp_path),
                                             PYTHON=sys.executable, SIZES="4x8x5",
                                             BENCH_ARGS="--cells=lstm --implementations="
                                                        "rnn_jax/fused,flax,torch",
                                             TESTS="tests/test_interop_cudnn.py::test_bad_input"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "1 passed" in out.stdout, out.stdout
  assert "tests tests/test_interop_cudnn.py::test_bad_input: exit 0" in out.stdout, out.stdout
  assert "benchmark: exit 0" in out.stdout, out.stdout
  results = json.loads((tmp_path / "rnn_gpu.json").read_text())
  assert {r["implementation"] for r in results["rows"]} >= {"rnn_jax/fused", "flax", "torch"}
  assert (tmp_path / "tests.log").exists() and (tmp_path / "env.log").exists()


def test_seq2seq_training_benchmark_times_every_method(tmp_path):
  path = tmp_path / "seq2seq.json"
  out = _run("benchmarks.seq2seq_training", "--hidden_size=8", "--num_layers=2",
             "--batch_size=4", "--source_len=5", "--target_len=6", "--vocab_size=20",
             "--steps=1", "--turns=1", f"--json={path}")
  rows = {r["method"]: r for r in json.loads(path.read_text())["rows"]}
  assert set(rows) == {"xent", "teacher_forcing", "scheduled_sampling", "mixer", "scst"}, out
  assert rows["teacher_forcing"]["vs_teacher_forcing"] == 1.0
  for name in ("mixer", "scst"):  # the host reward ran inside the step, and was timed
    assert rows[name]["host_reward_ms"] > 0, out
  assert rows["xent"]["host_reward_ms"] == 0


def test_activity_evaluate_benchmark_agrees_with_the_official_loops():
  data = os.path.join(os.environ.get("RNN_JAX_DATA") or "", "activitynet")
  if not os.path.exists(os.path.join(data, "anet_anno_action.json")):
    pytest.skip("needs $RNN_JAX_DATA/activitynet")
  out = _run("benchmarks.activity_evaluate", "--predictions_per_video=4", "--turns=1",
             "--reference_videos=20", f"--data_dir={data}")
  summary = json.loads(out.splitlines()[-3])
  assert summary["videos"] == 4728 and summary["predictions"] == 4 * 4728, summary
  assert summary["subset"]["identical"] and summary["subset"]["videos"] == 20, summary
  assert len(summary["mAP"]) == 10 and 0 <= summary["average_mAP"] <= 1, summary


def test_skip_thought_encoding_benchmark(tmp_path):
  path = tmp_path / "encode.json"
  _run("benchmarks.skip_thought_encode", "--hidden_size=8", "--embed_size=4",
       "--vocab_size=50", "--sentences=40", "--batch_sizes=16", "--single=5", "--turns=1",
       f"--json={path}")
  rows = json.loads(path.read_text())["rows"]
  assert [r["setting"] for r in rows] == ["buckets, B=16", "unsorted, B=16", "one at a time"]
  assert all(r["sentences_per_s"] > 0 for r in rows), rows



def test_skip_thought_step_benchmark(tmp_path):
  path = tmp_path / "step.json"
  _run("benchmarks.skip_thought_step", "--embed_size=8", "--hidden_size=16", "--vocab_size=60",
       "--batch_size=4", "--length=5", "--samples=0,10", "--turns=1", "--min_time=0.01",
       f"--json={path}")
  rows = json.loads(path.read_text())["rows"]
  assert [r["setting"] for r in rows] == [
      "step, samples=0", "step, samples=10", "decoder, per-sentence bias",
      "decoder, concatenated h_i"], rows
  assert all(r["ms"] > 0 for r in rows), rows
