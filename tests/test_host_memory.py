"""rnn_jax.training.host_memory: glibc's malloc keeps freed memory, so XLA's large buffers
stop coming from fresh mmaps; a no-op where there is no glibc."""

import json
import os
import subprocess
import sys

import pytest

from rnn_jax.training import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc_only = pytest.mark.skipif(host_memory._glibc() is None, reason="needs Linux with glibc")

# A fresh process (mallopt is process-wide): a jitted function's 40 MiB output, above
# glibc's largest mmap threshold (32 MiB) and below its per-thread heap (64 MiB), held
# while `mallinfo2` reads how many bytes malloc holds in mmapped blocks (`hblkhd`).
CHILD = r"""
import ctypes, json, sys
from rnn_jax.training import host_memory
applied = host_memory.retain_freed_memory() if sys.argv[1] == "retain" else None
import jax, jax.numpy as jnp

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
              "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
f = jax.jit(lambda x: jnp.sin(x) * x)
x = jnp.ones((2560, 4096), jnp.float32)
mmapped = []
for _ in range(4):
  y = f(x).block_until_ready()
  mmapped.append(mallinfo2().hblkhd)
  del y
print(json.dumps({"applied": applied, "mmapped": mmapped}))
"""


def run_child(mode):
  out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_large_buffers_leave_mmap():
  block = 2560 * 4096 * 4
  plain = run_child("plain")
  # glibc's default: every live 40 MiB output is an mmapped block of its own.
  assert all(m >= block for m in plain["mmapped"]), plain
  retained = run_child("retain")
  assert retained["applied"] is True
  # Retained: no output is mmapped; it comes from (and goes back to) the heap.
  assert all(m < block for m in retained["mmapped"]), retained


# An experiment's entry point (`experiments.common.run`) with or without the flag: while a
# 48 MiB block from malloc is live, how many bytes does malloc hold in mmapped blocks?
ENTRY = r"""
import ctypes, json, sys
from experiments import common

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
              "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

def main(argv):
  libc = ctypes.CDLL(None)
  libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
  libc.free.argtypes = (ctypes.c_void_p,)
  libc.mallinfo2.restype = MallInfo2
  block = libc.malloc(48 << 20)
  print(json.dumps(libc.mallinfo2().hblkhd))
  libc.free(block)

common.run(main)
"""


@glibc_only
@pytest.mark.parametrize("flag, mmapped", [([], False), (["--noretain_freed_memory"], True)])
def test_experiments_retain_by_default(flag, mmapped):
  out = subprocess.run([sys.executable, "-c", ENTRY, *flag], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert (json.loads(out.stdout.strip().splitlines()[-1]) >= 48 << 20) is mmapped


def test_noop_without_glibc(monkeypatch):
  monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("", ""))
  calls = []
  monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *a: calls.append(a))
  assert host_memory.retain_freed_memory() is False
  assert calls == []  # nothing loaded, nothing set


def test_bad_trim_threshold():
  with pytest.raises(ValueError, match="trim_threshold"):
    host_memory.retain_freed_memory(trim_threshold=-1)
  with pytest.raises(ValueError, match="trim_threshold"):
    host_memory.retain_freed_memory(trim_threshold=2**31)
