#!/usr/bin/env bash
# The kernels' checks for a GPU machine, as one script (at most 270 s per test file and 300 s
# of benchmark: TEST_TIMEOUT, BENCH_TIMEOUT). First run on an H200 on 2026-12-04: the
# figures and what it found are in benchmarks/RESULTS.md ("On an H200").
#
#   OUT=runs/gpu bash benchmarks/gpu.sh
#
# 1. the kernel tests on the GPU: the Pallas LSTM kernels compiled for it (not
#    interpreted), the fused kernels, and rnn_jax.interop.cudnn against cuDNN itself
#    (jax.experimental.rnn.lstm), values and gradients;
# 2. python -m benchmarks.rnn at the kernels issue's five sizes and one wide batch at the
#    Pallas kernel's width (256x64x100; it keeps W_hh on chip only up to H = 64 in
#    float32, see pallas_lstm.fits_on_chip): every rnn_jax kernel,
#    Flax, torch nn.LSTM / nn.GRU on CUDA (cuDNN), jax.experimental.rnn.lstm (cuDNN) and
#    the GEMM limit, forward and forward+backward, exact float32 (no TF32 in any row).
#
# Logs and the benchmark's JSON go to $OUT. Each step has its own time limit, so a hang
# in one leaves the other's output. TESTS, SIZES and BENCH_ARGS override what runs (the
# test files; the benchmark's BxHxT sizes; more benchmark flags), as
# tests/test_benchmarks.py does to try it on the CPU. Needs jax with CUDA, flax, optax, orbax-checkpoint,
# tqdm, pytest and torch; nothing is downloaded.
set -u -o pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
# JAX and torch share the GPU in one process: JAX must not preallocate most of its memory.
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
  XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}

"$PY" -c "import jax, platform; print('python', platform.python_version(), 'jax', jax.__version__, jax.devices())" \
  2>&1 | tee "$OUT/env.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$OUT/env.log"

# Exact float32 matmuls (no TF32): the tests hold the kernels to float32 references. One
# pytest per file, each with its own limit, and -v so each result is in the log as it
# comes: a file cut off by its limit still leaves the names of what passed and failed.
for f in ${TESTS:-tests/test_pallas_kernels.py tests/test_interop_cudnn.py tests/test_kernels.py}; do
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout "${TEST_TIMEOUT:-270}" "$PY" -m pytest -v \
    --tb=short -p no:cacheprovider -o addopts="" "$f" 2>&1 \
    | tee -a "$OUT/tests.log" | grep -E "PASSED|FAILED|ERROR|^E |passed|failed" | tail -40
  echo "tests $f: exit $?"
done

timeout "${BENCH_TIMEOUT:-300}" "$PY" -m benchmarks.rnn --turns=3 --min_time=0.2 \
  --sizes="${SIZES:-32x512x100,64x256x200,8x1024x50,64x64x30,32x512x2000,256x64x100}" \
  --compile_sizes= --json="$OUT/rnn_gpu.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/rnn_gpu.log" \
  | grep -v "^[IW][0-9]"
echo "benchmark: exit $?"
