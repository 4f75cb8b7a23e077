"""Host memory: keep freed memory in the process, so XLA's CPU buffers stop faulting in.

XLA's CPU runtime allocates a jitted function's buffers afresh at every call:
one block for its temporaries (54 MiB for the PTB language model's step, most of
it the `[B * T, V]` logits and their gradient) and one per output. glibc's
malloc serves every block above its mmap threshold (at most 32 MiB) with a
fresh `mmap` and returns it to the kernel at `free`, so each page of it is
faulted in and zeroed again on every step: 11,800 page faults per step of the
language model's output layer alone, about a fifth of the step
(benchmarks/RESULTS.md, "Host memory"). PyTorch's CPU tensors are smaller
blocks, which glibc reuses from its heap.

`retain_freed_memory()` sets two of glibc's malloc parameters for the whole
process (`mallopt`): no `mmap` for large blocks (`M_MMAP_MAX = 0`), and no
returning of the heap's free top to the kernel below `trim_threshold`
(`M_TRIM_THRESHOLD`). After the first steps, every step's buffers come from
memory the process already touched. The price: the process keeps its peak
heap, rather than shrinking between steps, and fragmentation may add to it.

Where it does not apply (not Linux with glibc, or `mallopt` refuses), it
changes nothing and returns False. Blocks that a non-main thread asks for
above glibc's per-thread heap size (64 MiB) still come from `mmap`.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def _glibc():
  """The process's own C library if it is glibc with `mallopt`, else None."""
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  libc = ctypes.CDLL(None)  # the symbols already loaded into this process
  return libc if hasattr(libc, "mallopt") else None


def retain_freed_memory(trim_threshold: int = 1 << 30) -> bool:
  """Makes malloc keep freed memory in the process (glibc only; see the module doc).

  Call it once, early (before the first large jitted computation, so its
  buffers never take the `mmap` path); it holds for the rest of the process.

  Args:
    trim_threshold: bytes of free memory at the heap's top that malloc keeps
      before it returns any to the kernel (`M_TRIM_THRESHOLD`), in [0, 2**31).

  Returns:
    True if both settings took, False where nothing was changed.
  """
  if not 0 <= trim_threshold < 2**31:
    raise ValueError(f"trim_threshold: expected 0 <= bytes < 2**31, got {trim_threshold}")
  libc = _glibc()
  if libc is None:
    return False
  mallopt = libc.mallopt
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  if mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1:
    return False
  return mallopt(M_MMAP_MAX, 0) == 1
