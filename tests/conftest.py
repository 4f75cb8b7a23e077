"""Suite-wide set-up: one persistent XLA compilation cache for every test process.

Many tests start experiment subprocesses that compile the same tiny models; sharing
compiled programs through JAX's persistent cache (keyed by the program, the flags and the
jax version) saves those compiles without changing a result. Set before jax is imported,
so this process and every subprocess (they inherit the environment) use it.
`RNN_JAX_TEST_CACHE=` (empty) turns it off.
"""

import os

_CACHE = os.environ.get(
    "RNN_JAX_TEST_CACHE",
    os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rnn_jax_test_cache_{os.getuid()}"))
if _CACHE:
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


# The longest files first (their share of a suite run on 2 cores, longest first): xdist's
# `--dist loadfile` hands out files in collection order, so the short ones fill the gaps
# at the end rather than one long file running alone on one worker.
LONGEST_FIRST = (
    "test_pipeline.py", "test_kernels.py", "test_benchmarks.py", "test_gnmt.py",
    "test_gnmt_training_methods.py", "test_captioning.py", "test_gnmt_eval.py",
    "test_reliability.py", "test_onednn.py", "test_vqa.py", "test_long_range.py",
    "test_unroll.py", "test_seq2seq.py", "test_lm_experiment.py")


def pytest_collection_modifyitems(session, config, items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  order = lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank))
  items.sort(key=order)  # stable: each file's tests keep their order
