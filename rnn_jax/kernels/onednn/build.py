"""Finds oneDNN, compiles `rnn.cc` against it and jaxlib's FFI headers, caches and loads it.

The library is built on first use, by one direct compiler call (no CMake: one source file,
one shared library), into a cache directory keyed by a hash of everything the binary depends
on: the source, jaxlib's version, the oneDNN distribution and version, its include and library
directories, the compiler and the flags. A later process with the same key loads the cached
library without compiling. See the package docstring for why the build is lazy.

Where oneDNN comes from, first found wins:

  1. `$RNN_JAX_ONEDNN_ROOT`: a prefix with `include/oneapi/dnnl/dnnl.hpp` and `lib/libdnnl.so`
     (a source build, a conda environment); when it is set, nothing else is searched.
  2. The PyPI wheels, located through their installed file lists (they put the headers in
     `<prefix>/include` and `libdnnl.so*` in `<prefix>/lib`, outside site-packages), in this
     order: `onednn-devel-cpu-gomp` + `onednn-cpu-gomp`, the `-cpu-tbb` and `-cpu-iomp` pairs,
     then `onednn-devel` + `onednn`. The last (2026.x) is a SYCL build: its CPU engine is a
     SYCL CPU device, which needs Unified Runtime's OpenCL adapter and an OpenCL CPU driver that
     its wheels do not ship, so on a plain machine it builds and loads but cannot create an
     engine (the package's probe then reports oneDNN's message).

Environment: `RNN_JAX_ONEDNN_CACHE` (the cache directory; default
`$XDG_CACHE_HOME/rnn_jax/onednn`, i.e. `~/.cache/rnn_jax/onednn`), `CXX` (default `g++`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import tempfile

SOURCE = pathlib.Path(__file__).with_name("rnn.cc")
LIBRARY_NAME = "librnn_jax_onednn.so"
# (headers, runtime) distribution pairs, in the order they are tried.
WHEELS = (("onednn-devel-cpu-gomp", "onednn-cpu-gomp"),
          ("onednn-devel-cpu-tbb", "onednn-cpu-tbb"),
          ("onednn-devel-cpu-iomp", "onednn-cpu-iomp"),
          ("onednn-devel", "onednn"))
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp")  # -fopenmp: set_threads
BUILD_TIMEOUT_S = 600


class BuildError(RuntimeError):
  """oneDNN was not found, or the extension did not compile or load; the message says which."""


@dataclasses.dataclass(frozen=True)
class OneDNN:
  """Where one oneDNN installation keeps its headers and library."""
  include_dir: pathlib.Path  # holds oneapi/dnnl/dnnl.hpp
  lib_dir: pathlib.Path  # holds libdnnl.so
  origin: str  # e.g. "onednn-cpu-gomp 2023.2.0" or "$RNN_JAX_ONEDNN_ROOT=/opt/dnnl"


def _check(include_dir: pathlib.Path, lib_dir: pathlib.Path, origin: str) -> OneDNN:
  if not (include_dir / "oneapi" / "dnnl" / "dnnl.hpp").is_file():
    raise BuildError(f"{origin}: no oneapi/dnnl/dnnl.hpp under {include_dir}")
  if not any(lib_dir.glob("libdnnl.so*")):
    raise BuildError(f"{origin}: no libdnnl.so under {lib_dir}")
  return OneDNN(include_dir.resolve(), lib_dir.resolve(), origin)


def _wheel_dir(distribution: str, marker: str) -> pathlib.Path | None:
  """The directory of the first installed file of `distribution` whose path ends in `marker`."""
  files = importlib.metadata.files(distribution) or ()
  for f in files:
    if str(f).endswith(marker):
      path = pathlib.Path(f.locate())
      return path.parents[marker.count("/")]
  return None


def find_onednn() -> OneDNN:
  """The oneDNN to build against (see the module docstring), or a BuildError saying why none."""
  root = os.environ.get("RNN_JAX_ONEDNN_ROOT")
  if root:
    root_path = pathlib.Path(root)
    return _check(root_path / "include", root_path / "lib", f"$RNN_JAX_ONEDNN_ROOT={root}")
  problems = []
  for devel, runtime in WHEELS:
    try:
      version = importlib.metadata.version(runtime)
      importlib.metadata.version(devel)
    except importlib.metadata.PackageNotFoundError:
      continue
    include_dir = _wheel_dir(devel, "oneapi/dnnl/dnnl.hpp")
    lib_dir = _wheel_dir(runtime, "libdnnl.so")
    if include_dir is None or lib_dir is None:
      problems.append(f"{devel}/{runtime}: installed, but their file lists name no "
                      "oneapi/dnnl/dnnl.hpp or libdnnl.so")
      continue
    try:
      return _check(include_dir, lib_dir, f"{runtime} {version}")
    except BuildError as e:
      problems.append(str(e))
  tried = ", ".join(f"{d} + {r}" for d, r in WHEELS)
  raise BuildError("oneDNN not found: set $RNN_JAX_ONEDNN_ROOT or pip install "
                   f"'rnn-jax[onednn]' (tried {tried})" +
                   (f"; {'; '.join(problems)}" if problems else ""))


def cache_dir() -> pathlib.Path:
  root = os.environ.get("RNN_JAX_ONEDNN_CACHE")
  if root:
    return pathlib.Path(root)
  xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(xdg) / "rnn_jax" / "onednn"


def _compiler() -> str:
  cxx = os.environ.get("CXX", "g++")
  path = shutil.which(cxx)
  if path is None:
    raise BuildError(f"no C++ compiler: {cxx!r} is not on PATH (set $CXX)")
  return path


def compile_command(onednn: OneDNN, output: pathlib.Path) -> list[str]:
  import jax  # pylint: disable=g-import-not-at-top  (only when building)
  return [_compiler(), *FLAGS, str(SOURCE), "-I", jax.ffi.include_dir(),
          "-I", str(onednn.include_dir), "-L", str(onednn.lib_dir), "-ldnnl",
          # DT_RPATH rather than RUNPATH: it also serves libdnnl's own dependencies that lie
          # beside it (libtbb in the -cpu-tbb wheel), which a RUNPATH would not.
          f"-Wl,--disable-new-dtags,-rpath,{onednn.lib_dir}", "-o", str(output)]


def library_path(onednn: OneDNN) -> pathlib.Path:
  """Where the library built against `onednn` lives in the cache (built or not)."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  key = hashlib.sha256()
  for part in (SOURCE.read_bytes(), jaxlib.__version__.encode(), onednn.origin.encode(),
               str(onednn.include_dir).encode(), str(onednn.lib_dir).encode(),
               _compiler().encode(), " ".join(FLAGS).encode()):
    key.update(part)
    key.update(b"\0")
  return cache_dir() / key.hexdigest()[:20] / LIBRARY_NAME


def build(onednn: OneDNN) -> pathlib.Path:
  """The path of the compiled library, compiling it first unless the cache has it.

  Concurrent builders (pytest workers) each compile to a temporary file and rename it into
  place, so a reader never sees a half-written library.
  """
  path = library_path(onednn)
  if path.is_file():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=LIBRARY_NAME + ".", suffix=".tmp", dir=path.parent)
  os.close(fd)
  command = compile_command(onednn, pathlib.Path(tmp))
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                            check=False)
    if result.returncode != 0:
      tail = "\n".join(result.stderr.strip().splitlines()[-15:])
      raise BuildError(f"compiling {SOURCE.name} failed ({' '.join(command)}):\n{tail}")
    os.replace(tmp, path)
  except subprocess.TimeoutExpired as e:
    raise BuildError(f"compiling {SOURCE.name} took over {BUILD_TIMEOUT_S} s") from e
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path


def load() -> tuple[ctypes.CDLL, OneDNN, pathlib.Path]:
  """Finds oneDNN, builds the extension if needed and loads it: `(library, onednn, path)`.

  Raises BuildError (never anything else for an expected failure) with the reason.
  """
  onednn = find_onednn()
  path = build(onednn)
  try:
    library = ctypes.CDLL(str(path))
  except OSError as e:
    raise BuildError(f"loading {path} failed: {e}") from e
  return library, onednn, path
