"""oneDNN's LSTM primitive on the CPU, called through XLA's typed FFI (`jax.ffi`).

What `jax.experimental.rnn` does with cuDNN on GPUs, done with oneDNN's RNN primitives on the
CPU: a third implementation of the plain LSTM sequence, beside the scan (`rnn_jax.unroll`,
`implementation="scan"`) and the fused XLA kernel (`kernels.fused_lstm`). It computes what
`unroll(cells.lstm(H), params, xs, initial_carry=LSTMState(h0, c0))` does (no peephole, no
coupled gates, no layer norm), values and gradients:

    z_t = x_t W_ih + h_{t-1} W_hh + b                      # [B, 4H], gates i, f, g, o
    c_t = σ(z_f) ⊙ c_{t-1} + σ(z_i) ⊙ tanh(z_g)
    h_t = σ(z_o) ⊙ tanh(c_t),   y_t = h_t

Scope (issue #21): one layer, either direction, per-row lengths, float32 and bfloat16
(below). A stack of layers or both directions in one primitive call is not built: on the
project's CPU oneDNN 3.2 runs a 2-layer stack as one call and as two calls, and both
directions as one `bidirectional_concat` call and as two, within 4% of each other
(`python -m benchmarks.onednn_calls`, benchmarks/RESULTS.md); and one call cannot hold the
residuals or the dropout between layers, nor (the LSTM) per-row lengths of the reverse
direction from a non-zero initial carry, where the padded steps come first.
`lstm_sequence` is a `jax.custom_vjp` around two FFI calls:

  * forward: one FFI call (`rnn_jax_onednn_lstm_fwd`) runs `dnnl::lstm_forward` with
    `prop_kind::forward_training` and returns `ys`, `h_n`, `c_n` and oneDNN's workspace (opaque
    bytes: the gates and states of every step; its size comes from the primitive descriptor at
    trace time, e.g. 122 MiB at B=32, T=100, H=512);
  * backward: one FFI call (`rnn_jax_onednn_lstm_bwd`) runs `dnnl::lstm_backward` on the saved
    workspace and returns `dxs, dh0, dc0, dW_ih, dW_hh, db`.

Layouts. The handlers take the arrays exactly as JAX holds them, so the only conversions are
free reshapes inside the C++ memory descriptors:

  * `xs [B, T, D]`, `ys [B, T, H]`: oneDNN's `ntc` (batch-major; its logical dims stay
    (t, n, c)), so there is no time-major transpose in XLA;
  * `w_ih [D, 4H]` = `ldigo` `[1, 1, D, 4, H]` and `w_hh [H, 4H]` = `[1, 1, H, 4, H]`: oneDNN's
    LSTM gate order is i, f, c̃ (our g), o, the same as `cells.lstm`'s, so no gate permutation;
    the backward primitive asks for its weights in its own layout (`any`, oneDNN transposes
    them), reordered in C++ per call;
  * `b [4H]` = `ldgo` `[1, 1, 4, H]` (oneDNN has one bias per gate, as `cells.lstm`; PyTorch's
    two biases sum into it); without `b` (`use_bias=False`) zeros are passed;
  * `h0, c0, h_n, c_n [B, H]` = `ldnc` `[1, 1, B, H]`.

Direction. `reverse=True` without lengths is oneDNN's own right-to-left direction (an
attribute of both handlers): no copy.

Lengths: one call, and a hold column. oneDNN has no per-row lengths, and a padded step is not
a no-op for an LSTM (a zero input still moves h and c), so `unroll`'s rule (outputs past
`len_b` are zero, the carry is the one at step `len_b - 1`) needs more than masking the
outputs of one call: `c` at `len_b - 1` is not an output (only the `h_t` are, in `ys`; the
workspace that holds the c's is opaque). What `lstm_sequence` does instead: it appends one
input column that is 1 on padded steps and 0 on valid ones, `[B, T, D + 1]`, and one row to
W_ih, `[D + 1, 4H]`, that adds -1e30 to z_i and +1e30 to z_f. On a padded step oneDNN's
sigmoids then give i = 0 and f = 1 exactly in float32 (its exp saturates), so
`c_t = f c_{t-1} + i g = c_{t-1}`: the cell state passes through unchanged to `c_n`, and in the
backward pass `dc` passes back through unchanged while every gate's derivative on a padded step
is 0 (the saturated sigmoids' σ(1 - σ), and g and o reach nothing: i = 0, and the padded
outputs are masked). `h_n` is `ys` at each row's last valid step (a gather; `h0` for length
0), and `ys` is zeroed past each length. One oneDNN call of all T steps for every row:
padded steps cost what valid ones do. The extra column costs one copy of `xs` and one more
input channel. Reverse with lengths: each row's valid part is reversed in place first (a
gather: position t reads `len_b - 1 - t`) and the same gather puts the outputs back.
Per-length groups (one call per span between distinct lengths, on only the rows still
running, as oneDNN's `rnn_training_f32` example does for two lengths) would skip the padded
steps, but under `jit` the lengths are values, not shapes: the spans and sub-batches are
unknown when XLA compiles, so the groups would have to be cut inside the C++ handler at run
time (a primitive per span, a workspace sized for the worst case); not done.

How it is built, and why. `pip install -e '.[test]'` must never fail because of this
extension, so nothing is compiled at install time: the optional extra `onednn` installs oneDNN
from PyPI (headers and `libdnnl.so`), and the first call of `available()` or `lstm_sequence`
compiles `rnn.cc` with one `g++` call (about 4 s here, on a loaded machine) into a cache
directory keyed by a hash of the source, jaxlib's version, the oneDNN found and the compiler
(`build.py`), loads it with ctypes, and registers its two handlers with
`jax.ffi.register_ffi_target` (a plain shared library exporting `XLA_FFI_DEFINE_HANDLER_SYMBOL`s
needs no nanobind module; the handlers reach JAX as `jax.ffi.pycapsule`s). Later processes load
the cached library. A build step in the package's own build (scikit-build-core) would tie every
install to a compiler and to oneDNN's headers, and a failure there fails the install; a lazy
build fails softly: `available()` returns `(False, reason)` and the import never raises.

The oneDNN wheels: `onednn-cpu-gomp` + `onednn-devel-cpu-gomp` (oneDNN 3.2, native CPU runtime,
GNU OpenMP threads, no other dependency) is what the extra installs. The newer `onednn` +
`onednn-devel` (2026.x, oneDNN 3.13) are SYCL builds: their CPU engine is a SYCL CPU device,
reached through Unified Runtime's OpenCL adapter, which their dependency wheels
(`intel-sycl-rt`, `intel-cmplr-lib-ur`, `intel-opencl-rt`) do not ship, so creating the CPU
engine fails (its verbose log: "SYCL cpu devices queried but not found"); and they pull in
eleven packages of SYCL, OpenCL and compiler runtimes (libsycl-jit.so alone is 239 MB).
`build.find_onednn` still finds them (after the `-cpu-*` wheels) and `available()` then
reports oneDNN's error.

bfloat16: when xs, h0, c0 and the params are all bfloat16, the LSTM runs on oneDNN's bf16
handlers (`rnn_jax_onednn_lstm_fwd_bf16` / `_bwd_bf16`): x, h, y and the weights in bfloat16,
the cell state, the bias and every gradient in float32 (oneDNN's bf16 backward primitive
takes no bf16 diff; the gradients are rounded to their primals' dtypes after the call), and
c stays float32 between remat's chunks. The forward's weights go to oneDNN in its own
layout (`any`, reordered per call): with the user's `ldigo` oneDNN 3.2 picks its reference
RNN for bf16, with its own layout its avx512_core_bf16 brgemm kernels. h is rounded to
bfloat16 at every step (it is the next step's bf16 input), where the fused kernels keep it
in float32; the tests hold both to the float32 scan on the rounded numbers at 2e-2. Mixed
dtypes are refused (TypeError). The GRU's bf16 handlers likewise (x, h, y and the weights
bf16; the bias and the gradients f32); oneDNN 3.2 runs them on its reference RNN.

Memory: `forward_training` saves a workspace of every step's gates and states for the
backward primitive, about 1.2 KiB per step and row at H = 512 (B = 32: 122 MiB at T = 100,
11.8 GiB at T = 10,000), all of it alive between the forward and the backward pass. With
`remat=True` (`unroll(..., remat=True)`) the sequence runs as one call per chunk of
ceil(sqrt(T)) steps inside a `jax.checkpoint`ed scan (`remat_chunks`): the forward keeps
only the carries between chunks, and the backward recomputes one chunk's forward call (and
its workspace) at a time, as the fused kernels' `remat` does.

Threads: oneDNN runs on its own threads (GNU OpenMP in the `-cpu-gomp` wheel: set
`OMP_NUM_THREADS`, or `set_threads(n)` at run time), not on XLA's intra-op pool, and an RNN step is several parallel regions,
each ending in a barrier. On a machine shared with other processes a barrier waits for a
descheduled thread: here (2 cores, load about 5), with 2 threads a forward+backward at B=32,
T=100, H=512 took 4 to 7 s instead of 0.37 s with one thread, with or without PyTorch in the
process (PyTorch's LSTM, also OpenMP, 3.5 to 3.8 s instead of 0.32 s). oneDNN's threadpool
runtime on XLA's pool (as XLA's own oneDNN calls do) would avoid that, but no PyPI wheel ships
that build.

Through the library: `rnn_jax.unroll(..., implementation="onednn")` and the layers'
`implementation="onednn"` (`layers.rnn`, `layers.bidirectional`) call `lstm_sequence` for a
plain LSTM cell; where `available()` is False they warn once and run the fused kernel.

Transformations: `jit` and `grad` (the custom_vjp); `vmap` runs the FFI calls one batch element
at a time (`vmap_method="sequential"`, correct but not fast); inside `jax.shard_map` each device
calls oneDNN on its own rows (`_ffi` types the call for shard_map's varying axes; the replicated
weights' gradients are summed over the devices, `cotangent_like`). The handlers are registered
for the CPU platform only.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax.cells.lstm import LSTMState
from rnn_jax.kernels.onednn import build
from rnn_jax.varying import cotangent_like, varying_axes, varying_over

Array = jax.Array

FORWARD_TARGET = "rnn_jax_onednn_lstm_fwd"
BACKWARD_TARGET = "rnn_jax_onednn_lstm_bwd"
FORWARD_BF16_TARGET = "rnn_jax_onednn_lstm_fwd_bf16"
BACKWARD_BF16_TARGET = "rnn_jax_onednn_lstm_bwd_bf16"
GRU_FORWARD_TARGET = "rnn_jax_onednn_gru_fwd"
GRU_BACKWARD_TARGET = "rnn_jax_onednn_gru_bwd"
GRU_FORWARD_BF16_TARGET = "rnn_jax_onednn_gru_fwd_bf16"
GRU_BACKWARD_BF16_TARGET = "rnn_jax_onednn_gru_bwd_bf16"

# (library, description) once loaded, (None, reason) once it failed; None before the first try.
_loaded: tuple[ctypes.CDLL | None, str] | None = None
# Targets are registered once per process (XLA keeps its registry for the process's life).
_registered = False


def _register(library: ctypes.CDLL) -> None:
  global _registered
  if _registered:
    return
  jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(library.RnnJaxOnednnLstmForward),
                              platform="cpu")
  jax.ffi.register_ffi_target(BACKWARD_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnLstmBackward), platform="cpu")
  jax.ffi.register_ffi_target(FORWARD_BF16_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnLstmForwardBf16), platform="cpu")
  jax.ffi.register_ffi_target(BACKWARD_BF16_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnLstmBackwardBf16),
                              platform="cpu")
  jax.ffi.register_ffi_target(GRU_FORWARD_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnGruForward), platform="cpu")
  jax.ffi.register_ffi_target(GRU_BACKWARD_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnGruBackward), platform="cpu")
  jax.ffi.register_ffi_target(GRU_FORWARD_BF16_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnGruForwardBf16), platform="cpu")
  jax.ffi.register_ffi_target(GRU_BACKWARD_BF16_TARGET,
                              jax.ffi.pycapsule(library.RnnJaxOnednnGruBackwardBf16),
                              platform="cpu")
  _registered = True


def _configure(library: ctypes.CDLL) -> None:
  library.RnnJaxOnednnLstmWorkspaceBytes.restype = ctypes.c_int64
  library.RnnJaxOnednnLstmWorkspaceBytes.argtypes = [ctypes.c_int64] * 5 + [
      ctypes.c_char_p, ctypes.c_int64]
  library.RnnJaxOnednnLstmWorkspaceBytesBf16.restype = ctypes.c_int64
  library.RnnJaxOnednnLstmWorkspaceBytesBf16.argtypes = [ctypes.c_int64] * 5 + [
      ctypes.c_char_p, ctypes.c_int64]
  library.RnnJaxOnednnGruWorkspaceBytes.restype = ctypes.c_int64
  library.RnnJaxOnednnGruWorkspaceBytes.argtypes = [ctypes.c_int64] * 7 + [
      ctypes.c_char_p, ctypes.c_int64]
  library.RnnJaxOnednnVersion.restype = ctypes.c_int64
  library.RnnJaxOnednnVersion.argtypes = []
  library.RnnJaxOnednnSetThreads.restype = None
  library.RnnJaxOnednnSetThreads.argtypes = [ctypes.c_int64]


def _sized(what: str, query, *args) -> int:
  """`query(*args, error, len(error))`, a C function returning bytes or -1 with oneDNN's
  message in `error`; raises RuntimeError("<what>: <message>") on -1."""
  error = ctypes.create_string_buffer(1024)
  size = query(*args, error, len(error))
  if size < 0:
    raise RuntimeError(f"{what}: {error.value.decode(errors='replace')}")
  return size


def _workspace_bytes(library: ctypes.CDLL, T: int, B: int, D: int, H: int,
                     reverse: bool = False, bf16: bool = False) -> int:
  """The bytes of workspace oneDNN's forward_training writes (in float32, or with `bf16` the
  bfloat16 handlers'); raises with oneDNN's message."""
  query = (library.RnnJaxOnednnLstmWorkspaceBytesBf16 if bf16
           else library.RnnJaxOnednnLstmWorkspaceBytes)
  return _sized(f"oneDNN LSTM (T={T}, B={B}, D={D}, H={H}{', bfloat16' if bf16 else ''})",
                query, T, B, D, H, int(reverse))


def _gru_workspace_bytes(library: ctypes.CDLL, T: int, B: int, D: int, H: int, reverse: bool,
                         linear_before_reset: bool, bf16: bool = False) -> int:
  """The GRU's workspace bytes (as `_workspace_bytes`)."""
  return _sized(f"oneDNN GRU (T={T}, B={B}, D={D}, H={H}{', bfloat16' if bf16 else ''})",
                library.RnnJaxOnednnGruWorkspaceBytes, T, B, D, H, int(reverse),
                int(linear_before_reset), int(bf16))


def _load() -> tuple[ctypes.CDLL | None, str]:
  global _loaded
  if _loaded is None:
    try:
      library, onednn, path = build.load()
      _configure(library)
      _workspace_bytes(library, 1, 1, 1, 1)  # a probe: the engine and the primitive exist
      _register(library)
      v = library.RnnJaxOnednnVersion()
      _loaded = (library, f"oneDNN {v // 10000}.{v // 100 % 100}.{v % 100} from "
                          f"{onednn.origin}, extension {path}")
    except Exception as e:  # pylint: disable=broad-except  (any failure: unavailable, and why)
      _loaded = (None, f"{type(e).__name__}: {e}")
  return _loaded


def available() -> tuple[bool, str]:
  """`(True, what was loaded)` or `(False, why not)`. Builds the extension on the first call.

  Never raises: a missing oneDNN, a failed compile, a failed load or an engine oneDNN cannot
  create all come back as `(False, reason)`. The answer is kept for the process.
  """
  library, message = _load()
  return library is not None, message


def _library() -> ctypes.CDLL:
  library, message = _load()
  if library is None:
    raise RuntimeError(f"rnn_jax.kernels.onednn is unavailable: {message}")
  return library


def set_threads(n: int | None) -> None:
  """The OpenMP threads oneDNN's primitives use from now on, in every call of this process;
  None (or 0) gives OpenMP's default back (`OMP_NUM_THREADS`, else one per core).

  One thread is the safe choice on cores shared with other busy processes: each RNN step
  ends its parallel regions in barriers, and a barrier waits for a descheduled thread (see
  "Threads" above). Raises RuntimeError when the extension is unavailable.
  """
  if n is not None and (not isinstance(n, int) or n < 0):
    raise ValueError(f"n: expected None or an int >= 0, got {n!r}")
  _library().RnnJaxOnednnSetThreads(n or 0)


def _check(params, xs, h0, c0) -> None:
  B, T, D = xs.shape
  H = h0.shape[-1]
  expected = {"w_ih": (D, 4 * H), "w_hh": (H, 4 * H), "b": (4 * H,)}
  for name, shape in expected.items():
    if name in params and params[name].shape != shape:
      raise ValueError(f"params[{name!r}]: expected {shape}, got {params[name].shape}")
  if set(params) - set(expected) or not {"w_ih", "w_hh"} <= set(params):
    raise ValueError(f"params: expected a plain LSTM's w_ih, w_hh (and b), got {sorted(params)}")
  for name, a in (("h0", h0), ("c0", c0)):
    if a.shape != (B, H):
      raise ValueError(f"{name}: expected [B, H] = {(B, H)}, got {a.shape}")
  _check_dtypes("LSTM", {"xs": xs, "h0": h0, "c0": c0}, params)


def _check_dtypes(kind: str, inputs: dict, params: dict) -> None:
  """A TypeError unless `inputs` (name -> array) and `params` are all float32 or all
  bfloat16."""
  dtypes = {name: a.dtype for name, a in (*inputs.items(), *params.items())}
  if set(dtypes.values()) not in ({jnp.dtype(jnp.float32)}, {jnp.dtype(jnp.bfloat16)}):
    raise TypeError(f"the oneDNN {kind} takes float32, or bfloat16 for all of "
                    f"{', '.join(inputs)} and the params; got "
                    f"{', '.join(f'{k} {v}' for k, v in dtypes.items())}")


def _checked_lengths(lengths, B: int) -> Array | None:
  if lengths is None:
    return None
  lengths = jnp.asarray(lengths)
  if lengths.shape != (B,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise ValueError(f"lengths: expected [B] = {(B,)} integers, got {lengths.shape} "
                     f"{lengths.dtype}")
  return lengths


def lstm_sequence(params, xs: Array, h0: Array, c0: Array, lengths: Array | None = None,
                  reverse: bool = False, remat: bool = False,
                  chunk_size: int | None = None) -> tuple[Array, LSTMState]:
  """Runs a plain LSTM over `xs [B, T, D]` with oneDNN: `(ys [B, T, H], LSTMState(h_n, c_n))`.

  Args:
    params: `cells.lstm(H)` params: `w_ih [D, 4H]`, `w_hh [H, 4H]`, optional `b [4H]`,
      gate order i, f, g, o; float32, or bfloat16 with everything else.
    xs: inputs `[B, T, D]` (batch-major, as `rnn_jax.unroll` takes them), float32 or
      bfloat16 ("bfloat16" in the module docstring).
    h0, c0: the initial carry `[B, H]`, in xs's dtype.
    lengths: `[B]` int lengths in `[0, T]`, or None (all T): `unroll`'s padding contract,
      outputs past a row's length are zero and its carry is the one at its last valid step
      (see "Lengths" in the module docstring for how one oneDNN call keeps it).
    reverse: run each row's valid part from its end to t = 0 (outputs at their positions).
    remat: one oneDNN call per chunk of `chunk_size` steps (default ceil(sqrt(T))), each
      under `jax.checkpoint`, so the backward pass holds one chunk's workspace at a time
      instead of all T steps' (`remat_chunks`; "Memory" in the module docstring).
    chunk_size: steps per chunk with `remat`.

  Returns:
    `ys [B, T, H]` (every `h_t`) and the final carry `LSTMState(h_n, c_n)`, each `[B, H]`:
    what `rnn_jax.unroll(cells.lstm(H), params, xs, seq_lengths=lengths, reverse=reverse,
    initial_carry=LSTMState(h0, c0))` returns. Differentiable (`jax.custom_vjp`, oneDNN's
    backward primitive) in params, xs, h0 and c0.

  Raises:
    RuntimeError: the extension is unavailable (the reason is `available()[1]`).
  """
  _check(params, xs, h0, c0)
  B, T, _ = xs.shape
  H = h0.shape[-1]
  lengths = _checked_lengths(lengths, B)
  if B == 0 or T == 0:  # oneDNN takes no empty dimension; nothing runs, the carry passes
    return jnp.zeros((B, T, H), xs.dtype), LSTMState(h0, c0)
  c_dtype = c0.dtype
  if xs.dtype == jnp.bfloat16:  # oneDNN's bf16 LSTM keeps c and the bias in float32
    params = dict(params, b=_bias(params, H).astype(jnp.float32))
    c0 = c0.astype(jnp.float32)  # also between remat's chunks
  if remat:
    run = lambda x, carry, n: _lstm_sequence(params, x, carry.h, carry.c, n, False)
    ys, final = remat_chunks(run, xs, LSTMState(h0, c0), lengths, bool(reverse), chunk_size)
  else:
    ys, final = _lstm_sequence(params, xs, h0, c0, lengths, reverse)
  return ys, LSTMState(final.h, final.c.astype(c_dtype))


def _lstm_sequence(params, xs, h0, c0, lengths, reverse):
  if lengths is None:
    ys, h_n, c_n = _lstm(params, xs, h0, c0, bool(reverse))
    return ys, LSTMState(h_n, c_n)
  return _lstm_with_lengths(params, xs, h0, c0, lengths.astype(jnp.int32), bool(reverse))


# The hold column's weight: on a padded step z_i = -HOLD and z_f = +HOLD (plus the step's own
# few units), far past where float32's sigmoid reaches 0 and 1.
HOLD = 1e30


def _ffi(call, *operands, **attributes):
  """`call(*operands, **attributes)` typed for `jax.shard_map`: an `ffi_call` wants all its
  operands to vary over the same mesh axes and types its results as varying over none, so
  the operands are cast to the union of their axes (replicated weights beside batch-split
  inputs) and so are the results (each device's own rows). Outside shard_map: the call."""
  axes = frozenset().union(*(varying_axes(a) for a in operands))
  return varying_over(call(*varying_over(operands, axes), **attributes), axes)


def remat_chunks(run, xs: Array, carry, lengths: Array | None, reverse: bool,
                 chunk_size: int | None = None):
  """A sequence as oneDNN calls over chunks of K steps, each rematerialised in the backward.

  `run(x [B, K, D], carry, lengths [B] or None) -> (ys [B, K, H], carry)` is one left-to-right
  call with `unroll`'s padding contract. The chunks go through a `lax.scan` whose body is a
  `jax.checkpoint`: the forward pass keeps only each chunk's input carry, and the backward
  pass runs a chunk's forward call again (its workspace, then the backward call) before the
  one before it. Saved memory: n carries `[B, H]` and one chunk's workspace, against all T
  steps' workspace for one call (about 1.2 KiB per step and row at H = 512: 11.8 GiB at
  B = 32, T = 10,000); the price is a second forward pass. One compiled chunk whatever T.

  Lengths and reverse reduce to left-to-right chunks: each row's valid part is reversed in
  place first (and its outputs put back after), and chunk k runs with the lengths
  `clip(len_b - k K, 0, K)`; a row whose length ended in an earlier chunk holds its carry
  (length 0). T is padded up to n K with steps no row reaches.
  """
  B, T, D = xs.shape
  K = min(int(chunk_size) if chunk_size else math.isqrt(T - 1) + 1, T)  # ceil(sqrt(T))
  n = -(-T // K)
  full = jnp.full((B,), T, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
  order = None
  if reverse:
    order = _reversal(full, T)
    xs = jnp.take_along_axis(xs, order[..., None], axis=1)
  if n * K > T:
    xs = jnp.pad(xs, ((0, 0), (0, n * K - T), (0, 0)))
  uniform = lengths is None and T % K == 0  # every chunk whole: no hold column

  # Each chunk is sliced from the batch-major xs inside the body (a transposed copy of xs as
  # the scan's input would cost one more xs in memory).
  @jax.checkpoint
  def body(carry, start):
    x = jax.lax.dynamic_slice_in_dim(xs, start, K, axis=1)  # [B, K, D]
    ys, carry = run(x, carry, None if uniform else jnp.clip(full - start, 0, K))
    return carry, ys

  carry, ys = jax.lax.scan(body, carry, jnp.arange(n, dtype=jnp.int32) * K)
  ys = jnp.swapaxes(ys, 0, 1).reshape(B, n * K, -1)[:, :T]
  if order is not None:
    ys = jnp.take_along_axis(ys, order[..., None], axis=1)
  return ys, carry


class _Held(NamedTuple):
  """A batch with lengths, as one left-to-right oneDNN call over all T steps takes it."""
  xs: Array      # [B, T, D + 1]: each row's valid part (reversed in place for reverse), then
                 # the hold column, 1 on padded steps
  valid: Array   # [B, T] bool
  order: Array | None  # [B, T]: the in-place reversal (its own inverse); None when forward


def _reversal(lengths, T: int) -> Array:
  """`[B, T]` gather indices that reverse each row's first `lengths[b]` steps in place
  (padded steps stay where they are); the permutation is its own inverse."""
  steps = jnp.arange(T)[None, :]
  return jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)


def _hold(xs, lengths, reverse: bool) -> _Held:
  """`xs [B, T, D]` with its hold column, and what `_release` needs (module docstring)."""
  T = xs.shape[1]
  valid = jnp.arange(T)[None, :] < lengths[:, None]  # [B, T]
  order = None
  if reverse:  # each row's valid part reversed in place; padded steps stay where they are
    order = _reversal(lengths, T)  # [B, T]
    xs = jnp.take_along_axis(xs, order[..., None], axis=1)
  padded = (~valid)[..., None].astype(xs.dtype)  # [B, T, 1]
  return _Held(jnp.concatenate([xs, padded], axis=-1), valid, order)


def _release(ys, held: _Held) -> Array:
  """The call's `ys [B, T, H]` -> `unroll`'s: zero past each length, back in place."""
  ys = jnp.where(held.valid[..., None], ys, 0.0)
  if held.order is not None:
    ys = jnp.take_along_axis(ys, held.order[..., None], axis=1)  # the same permutation
  return ys


def _with_hold_row(w_ih, *gates_hold) -> Array:
  """`w_ih [D, G H]` with the hold column's row appended, `[D + 1, G H]`: per gate, the value
  added to its pre-activation on a padded step."""
  H = w_ih.shape[1] // len(gates_hold)
  row = jnp.concatenate([jnp.full((1, H), v, w_ih.dtype) for v in gates_hold], axis=1)
  return jnp.concatenate([w_ih, row], axis=0)


def _lstm_with_lengths(params, xs, h0, c0, lengths, reverse: bool):
  """`unroll`'s padding contract around one left-to-right oneDNN call (module docstring)."""
  held = _hold(xs, lengths, reverse)
  w_ih = _with_hold_row(params["w_ih"], -HOLD, HOLD, 0.0, 0.0)  # i = 0, f = 1
  ys, _, c_n = _lstm(dict(params, w_ih=w_ih), held.xs, h0, c0, False)
  last = jnp.take_along_axis(ys, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
  h_n = jnp.where((lengths > 0)[:, None], last, h0)  # h at each row's last valid step
  return _release(ys, held), LSTMState(h_n, c_n)


def _bias(params, H: int) -> Array:
  return params["b"] if "b" in params else jnp.zeros((4 * H,), jnp.float32)


def _forward(params, xs, h0, c0, reverse: bool):
  """The FFI forward: `(ys [B, T, H], h_n [B, H], c_n [B, H], workspace [N] uint8)`."""
  B, T, D = xs.shape
  H = h0.shape[-1]
  bf16 = xs.dtype == jnp.bfloat16  # then c0, c_n and b are float32 (lstm_sequence)
  workspace = _workspace_bytes(_library(), T, B, D, H, reverse, bf16)
  of = lambda shape, dtype=xs.dtype: jax.ShapeDtypeStruct(shape, dtype)
  call = jax.ffi.ffi_call(FORWARD_BF16_TARGET if bf16 else FORWARD_TARGET,
                          (of((B, T, H)), of((B, H)), of((B, H), jnp.float32),
                           jax.ShapeDtypeStruct((workspace,), jnp.uint8)),
                          vmap_method="sequential")
  return _ffi(call, xs, h0, c0, params["w_ih"], params["w_hh"], _bias(params, H),
              reverse=reverse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _lstm(params, xs, h0, c0, reverse):
  ys, h_n, c_n, _ = _forward(params, xs, h0, c0, reverse)
  return ys, h_n, c_n


def _lstm_fwd(params, xs, h0, c0, reverse):
  ys, h_n, c_n, workspace = _forward(params, xs, h0, c0, reverse)
  return (ys, h_n, c_n), (params, xs, h0, c0, ys, h_n, c_n, workspace)


def _lstm_bwd(reverse, saved, cotangents):
  params, xs, h0, c0, ys, h_n, c_n, workspace = saved
  d_ys, dh_n, dc_n = cotangents
  H = h0.shape[-1]
  bf16 = xs.dtype == jnp.bfloat16  # the gradients come back in float32 either way
  d_ys, dh_n = d_ys.astype(jnp.float32), dh_n.astype(jnp.float32)
  call = jax.ffi.ffi_call(BACKWARD_BF16_TARGET if bf16 else BACKWARD_TARGET,
                          (jax.ShapeDtypeStruct(xs.shape, jnp.float32),
                           jax.ShapeDtypeStruct(h0.shape, jnp.float32),
                           jax.ShapeDtypeStruct(c0.shape, jnp.float32),
                           jax.ShapeDtypeStruct(params["w_ih"].shape, jnp.float32),
                           jax.ShapeDtypeStruct(params["w_hh"].shape, jnp.float32),
                           jax.ShapeDtypeStruct((4 * H,), jnp.float32)),
                          vmap_method="sequential")
  d_xs, dh0, dc0, dw_ih, dw_hh, db = _ffi(
      call, xs, h0, c0, params["w_ih"], params["w_hh"], _bias(params, H), ys, h_n, c_n,
      d_ys, dh_n, dc_n, workspace, reverse=reverse)
  d_params = {"w_ih": dw_ih, "w_hh": dw_hh}
  if "b" in params:
    d_params["b"] = db
  # Inside shard_map: the replicated inputs' gradients summed over the batch's axes; each in
  # its primal's dtype.
  d_params = {k: cotangent_like(g.astype(params[k].dtype), params[k]) for k, g in d_params.items()}
  return (d_params, d_xs.astype(xs.dtype), cotangent_like(dh0.astype(h0.dtype), h0),
          cotangent_like(dc0, c0))


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


# ------------------------------------------------------------------------------------ GRU


def _check_gru(params, xs, h0, reset_after: bool) -> None:
  B, T, D = xs.shape
  H = h0.shape[-1]
  expected = {"w_ih": (D, 3 * H), "w_hh": (H, 3 * H), "b": (3 * H,)}
  if reset_after:
    expected["b_hn"] = (H,)
  for name, shape in expected.items():
    if name in params and params[name].shape != shape:
      hint = (" (a per-sequence bias [B, 3H] runs on the scan or fused kernels only)"
              if name == "b" and params[name].ndim == 2 else "")
      raise ValueError(f"params[{name!r}]: expected {shape}, got {params[name].shape}{hint}")
  if set(params) - set(expected) or not {"w_ih", "w_hh"} <= set(params):
    raise ValueError(f"params: expected a GRU's w_ih, w_hh (and b"
                     f"{', b_hn' if reset_after else ''}) for reset_after={reset_after}, "
                     f"got {sorted(params)}")
  if h0.shape != (B, H):
    raise ValueError(f"h0: expected [B, H] = {(B, H)}, got {h0.shape}")
  _check_dtypes("GRU", {"xs": xs, "h0": h0}, params)


def _to_onednn_gates(w: Array) -> Array:
  """`cells.gru`'s gate order r, z, n along the last axis -> oneDNN's u (= z), r, o (= n)."""
  r, z, n = jnp.split(w, 3, axis=-1)
  return jnp.concatenate([z, r, n], axis=-1)


def gru_sequence(params, xs: Array, h0: Array, lengths: Array | None = None,
                 reverse: bool = False, reset_after: bool = False, remat: bool = False,
                 chunk_size: int | None = None) -> tuple[Array, Array]:
  """Runs a GRU over `xs [B, T, D]` with oneDNN: `(ys [B, T, H], h_n [B, H])`.

  `reset_after=False` is Cho et al.'s form (oneDNN's `vanilla_gru`), `reset_after=True`
  cuDNN's and PyTorch's (oneDNN's `lbr_gru`, with `b_hn` as its fourth bias gate): what
  `rnn_jax.unroll(cells.gru(H, reset_after=...), params, xs, seq_lengths=lengths,
  reverse=reverse, initial_carry=h0)` returns, values and gradients. The gates are
  permuted from `cells.gru`'s r, z, n into oneDNN's u, r, o around the call (the gradients
  come back through the same permutation). Lengths: the hold column as for the LSTM, here
  only z = +HOLD (u = 1 keeps h exactly, so `h_n` is oneDNN's own). float32; a per-sequence
  bias `[B, 3H]` is not taken. `remat` and `chunk_size` as `lstm_sequence`'s.
  """
  _check_gru(params, xs, h0, reset_after)
  B, T, _ = xs.shape
  H = h0.shape[-1]
  lengths = _checked_lengths(lengths, B)
  if B == 0 or T == 0:
    return jnp.zeros((B, T, H), xs.dtype), h0
  if remat:
    run = lambda x, carry, n: gru_sequence(params, x, carry, n, reset_after=reset_after)
    return remat_chunks(run, xs, h0, lengths, bool(reverse), chunk_size)
  # The bias is float32 whatever the dtype (oneDNN's bf16 GRU keeps it so).
  b = params["b"].astype(jnp.float32) if "b" in params else jnp.zeros((3 * H,), jnp.float32)
  weights = {"w_ih": _to_onednn_gates(params["w_ih"]),
             "w_hh": _to_onednn_gates(params["w_hh"]), "b": _to_onednn_gates(b)}
  if reset_after:
    b_hn = (params["b_hn"].astype(jnp.float32) if "b_hn" in params
            else jnp.zeros((H,), jnp.float32))
    weights["b"] = jnp.concatenate([weights["b"], b_hn])  # [4H]: u, r, o, u'
  if lengths is None:
    return _gru(weights, xs, h0, bool(reverse), reset_after)
  held = _hold(xs, lengths.astype(jnp.int32), bool(reverse))
  weights["w_ih"] = _with_hold_row(weights["w_ih"], HOLD, 0.0, 0.0)  # u = 1: h passes
  ys, h_n = _gru(weights, held.xs, h0, False, reset_after)
  return _release(ys, held), h_n


def _gru_forward(weights, xs, h0, reverse: bool, lbr: bool):
  """The FFI forward: `(ys [B, T, H], h_n [B, H], workspace [N] uint8)`."""
  B, T, D = xs.shape
  H = h0.shape[-1]
  bf16 = xs.dtype == jnp.bfloat16
  workspace = _gru_workspace_bytes(_library(), T, B, D, H, reverse, lbr, bf16)
  call = jax.ffi.ffi_call(GRU_FORWARD_BF16_TARGET if bf16 else GRU_FORWARD_TARGET,
                          (jax.ShapeDtypeStruct((B, T, H), xs.dtype),
                           jax.ShapeDtypeStruct((B, H), xs.dtype),
                           jax.ShapeDtypeStruct((workspace,), jnp.uint8)),
                          vmap_method="sequential")
  return _ffi(call, xs, h0, weights["w_ih"], weights["w_hh"], weights["b"], reverse=reverse,
              linear_before_reset=lbr)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _gru(weights, xs, h0, reverse, lbr):
  ys, h_n, _ = _gru_forward(weights, xs, h0, reverse, lbr)
  return ys, h_n


def _gru_fwd(weights, xs, h0, reverse, lbr):
  ys, h_n, workspace = _gru_forward(weights, xs, h0, reverse, lbr)
  return (ys, h_n), (weights, xs, h0, ys, h_n, workspace)


def _gru_bwd(reverse, lbr, saved, cotangents):
  weights, xs, h0, ys, h_n, workspace = saved
  d_ys, dh_n = cotangents
  d_ys, dh_n = d_ys.astype(jnp.float32), dh_n.astype(jnp.float32)  # float32 gradients either way
  bf16 = xs.dtype == jnp.bfloat16
  like = lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
  call = jax.ffi.ffi_call(GRU_BACKWARD_BF16_TARGET if bf16 else GRU_BACKWARD_TARGET,
                          (like(xs), like(h0), like(weights["w_ih"]), like(weights["w_hh"]),
                           like(weights["b"])),
                          vmap_method="sequential")
  d_xs, dh0, dw_ih, dw_hh, db = _ffi(call, xs, h0, weights["w_ih"], weights["w_hh"],
                                     weights["b"], ys, h_n, d_ys, dh_n, workspace,
                                     reverse=reverse, linear_before_reset=lbr)
  d_weights = {"w_ih": dw_ih, "w_hh": dw_hh, "b": db}
  d_weights = {k: cotangent_like(g.astype(weights[k].dtype), weights[k])
               for k, g in d_weights.items()}
  return d_weights, d_xs.astype(xs.dtype), cotangent_like(dh0.astype(h0.dtype), h0)


_gru.defvjp(_gru_fwd, _gru_bwd)


def workspace_bytes(B: int, T: int, D: int, H: int, reverse: bool = False) -> int:
  """The bytes of oneDNN workspace one differentiated call saves for its backward pass (with
  lengths, the call's D is one more: the hold column)."""
  return _workspace_bytes(_library(), T, B, D, H, reverse)


__all__ = ["BACKWARD_BF16_TARGET", "BACKWARD_TARGET", "FORWARD_BF16_TARGET", "FORWARD_TARGET",
           "GRU_BACKWARD_BF16_TARGET", "GRU_BACKWARD_TARGET", "GRU_FORWARD_BF16_TARGET",
           "GRU_FORWARD_TARGET", "LSTMState", "available", "gru_sequence", "lstm_sequence",
           "remat_chunks", "set_threads", "workspace_bytes"]
