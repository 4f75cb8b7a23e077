"""Data parallelism over all devices: a 1-D mesh, batches split, params replicated.

    mesh = data_mesh()                      # all devices of all processes, axis "data"
    state = place_state(state, mesh)        # params/opt_state replicated, extra split by batch
    batch = place_batch(local_batch, mesh)  # this process's rows -> one global array
    out = fetch(outputs)                    # global arrays -> numpy, whole, on every process

`jax.jit` then runs the step SPMD: each device takes its share of the batch
and the gradient all-reduce is inserted by the compiler. On several hosts,
call `initialize_distributed` first; each process feeds its own rows. On one
CPU, `use_host_devices(n)` (before any jax work) makes n devices of its cores.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
LAYERS_AXIS = "layers"  # model parallelism over a stack's layers (rnn_jax.pipeline)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """`jax.distributed.initialize`, for multi-host runs (SLURM fills in the arguments)."""
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def use_host_devices(n: int) -> None:
  """Makes the CPU backend start with `n` devices (XLA's
  `--xla_force_host_platform_device_count`), so data parallelism over `data_mesh()` uses
  every core of one machine. XLA reads the flag when the backend starts: call this before
  the first jax computation; it raises a RuntimeError after."""
  try:  # private, so only where it exists
    from jax._src.xla_bridge import backends_are_initialized
  except ImportError:
    backends_are_initialized = lambda: False
  if backends_are_initialized():
    raise RuntimeError("the jax backend has already started")
  flag = f"--xla_force_host_platform_device_count={n}"
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def _first_devices(num_devices: int | None) -> list:
  """The first `num_devices` devices (default: all), checked."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"num_devices: expected 1..{len(devices)}, got {num_devices}")
    devices = devices[:num_devices]
  return devices


def data_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named "data" over the first `num_devices` devices (default: all)."""
  return Mesh(np.asarray(_first_devices(num_devices)), (DATA_AXIS,))


def data_layers_mesh(num_devices: int | None = None, layers: int = 1) -> Mesh:
  """A 2-D mesh ("data", "layers") over the first `num_devices` devices (default all):
  each group of `layers` consecutive devices holds one copy of a pipelined model
  (`rnn_jax.pipeline`), and the copies split the batch."""
  devices = _first_devices(num_devices)
  if layers < 1 or len(devices) % layers:
    raise ValueError(f"layers: {layers} devices per model copy do not divide the "
                     f"{len(devices)} devices")
  return Mesh(np.asarray(devices).reshape(-1, layers), (DATA_AXIS, LAYERS_AXIS))


def data_size(mesh: Mesh) -> int:
  """How many ways the batch splits: the size of the mesh's "data" axis."""
  return dict(mesh.shape).get(DATA_AXIS, 1)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
  if batch_size % data_size(mesh):
    raise ValueError(f"batch_size: {batch_size} does not split evenly over "
                     f"{data_size(mesh)} devices; choose a multiple")


def place_batch(local_batch, mesh: Mesh):
  """This process's rows of a batch (pytree of `[B_local, ...]`) as global sharded arrays."""
  sharding = batch_sharded(mesh)

  def place(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return jax.device_put(x, replicated(mesh))
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree_util.tree_map(place, local_batch)


def place_state(state, mesh: Mesh):
  """Replicates params and optimizer state; splits `state.extra` (`[B, ...]`) by batch."""
  rep, split = replicated(mesh), batch_sharded(mesh)
  put = lambda tree, sharding: jax.tree_util.tree_map(
      lambda x: jax.device_put(x, sharding), tree)
  return state._replace(step=put(state.step, rep), params=put(state.params, rep),
                        opt_state=put(state.opt_state, rep), extra=put(state.extra, split))


def fetch(tree):
  """A pytree of global arrays as numpy, whole, on every process (an all-gather across
  processes when there are several; `jax.device_get` otherwise)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)
