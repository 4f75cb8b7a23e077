"""What every experiment shares: run flags, config <-> flags, the workdir, clean errors.

An experiment declares its config as a frozen dataclass deriving from
`RunConfig`; `define_flags(Config)` turns every field into an absl flag (help
text from the field's metadata) and `config_from_flags(Config)` reads them
back, so a field is written once. `main` functions stay a few lines:

    def main(argv):
      common.check_no_positional(argv)
      config = common.config_from_flags(Config)
      workdir = common.prepare_workdir("lm", config)
      train_and_evaluate(config, workdir)

    if __name__ == "__main__":
      common.run(main)

Shared flags: `--workdir` (required), `--data_dir` (default `$RNN_JAX_DATA`),
`--seed`, `--max_steps`, `--checkpoint_every`, `--eval_every`, `--log_every`,
`--num_devices`, `--host_devices`, `--progress`, and the multi-host ones `--coordinator_address`,
`--num_processes`, `--process_id` (multi-host starts only when the first is set).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from typing import Any

from absl import app, flags

DATA_ENV = "RNN_JAX_DATA"

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run: flags.txt, "
                               "metrics.jsonl, results.json, checkpoints/. Rerunning "
                               "the same command resumes from it.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-host: address "
                                   "host:port of process 0; starts jax.distributed.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_HOST_DEVICES = flags.DEFINE_integer(
    "host_devices", 0, "CPU only: split this machine's CPU into N devices for data "
    "parallelism (XLA's --xla_force_host_platform_device_count; 0 leaves XLA's default of "
    "one). Small models use both cores of a 2-core machine this way (WORKSPACE.md).")


def field(default, help: str, **kwargs):  # noqa: A002 - mirrors absl's name
  """A config field with its flag help text."""
  if isinstance(default, list):
    return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
  return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Fields every experiment has."""
  data_dir: str = field(os.environ.get(DATA_ENV, ""), f"Data root holding ptb/, multi30k/, "
                        f"tinyshakespeare/; default ${DATA_ENV}.")
  seed: int = field(0, "Random seed of the run (init, dropout, data order).")
  max_steps: int = field(0, "If > 0, stop after this many steps (overrides the schedule's length).")
  checkpoint_every: int = field(1000, "Checkpoint every this many steps (and at the end).")
  eval_every: int = field(0, "Evaluate every this many steps (0: the experiment's default).")
  log_every: int = field(100, "Write train metrics every this many steps.")
  num_devices: int = field(0, "Devices to use for data parallelism (0: all).")
  progress: bool = field(True, "Show a progress bar.")


class UserError(ValueError):
  """A problem with the user's input, reported as one line without a traceback."""


def _flag_definer(tp):
  if tp is bool:
    return flags.DEFINE_bool
  if tp is int:
    return flags.DEFINE_integer
  if tp is float:
    return flags.DEFINE_float
  if tp is str:
    return flags.DEFINE_string
  if tp is list or typing.get_origin(tp) is list:
    return flags.DEFINE_list
  raise TypeError(f"config fields must be bool/int/float/str/list[str], got {tp}")


def define_flags(config_cls, flag_values=None) -> None:
  """Defines one absl flag per field of `config_cls` (a frozen dataclass).

  `flag_values` defaults to the global `flags.FLAGS`; tests pass a fresh
  `flags.FlagValues()` so that two experiments' flags never mix.
  """
  flag_values = flags.FLAGS if flag_values is None else flag_values
  hints = typing.get_type_hints(config_cls)
  for f in dataclasses.fields(config_cls):
    if f.name in flag_values:
      continue
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    _flag_definer(hints[f.name])(f.name, default, f.metadata.get("help", ""),
                                 flag_values=flag_values)


def config_from_flags(config_cls, flag_values=None, **overrides):
  """Builds `config_cls` from the parsed flags."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  values = {f.name: getattr(flag_values, f.name) for f in dataclasses.fields(config_cls)}
  values.update(overrides)
  return config_cls(**values)


def config_from_flagfile(config_cls, path: str, *args: str, root: str | None = None):
  """Parses a flagfile (plus `--name=value` args) into `config_cls`, away from the global flags.

  Nested `--flagfile=` paths resolve against `root` (the repo root) when given.
  """
  fv = flags.FlagValues()
  define_flags(config_cls, fv)
  flags.DEFINE_string("workdir", None, "", flag_values=fv)
  cwd = os.getcwd()
  if root:
    os.chdir(root)
  try:
    argv = fv.read_flags_from_files([f"--flagfile={path}", *args])
  finally:
    os.chdir(cwd)
  fv(["config_from_flagfile", *argv])
  return config_from_flags(config_cls, fv)


def config_to_flagfile(config, experiment: str, workdir: str | None = None) -> str:
  """The config as a flagfile that reruns it (`--flagfile=workdir/flags.txt`)."""
  lines = [f"# experiment: {experiment}",
           f"# rerun: python -m experiments.{experiment} --flagfile=<this file>"]
  if workdir:
    lines.append(f"--workdir={workdir}")
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if isinstance(value, bool):
      lines.append(f"--{f.name}" if value else f"--no{f.name}")
    elif isinstance(value, (list, tuple)):
      lines.append(f"--{f.name}={','.join(str(v) for v in value)}")
    else:
      lines.append(f"--{f.name}={value}")
  return "\n".join(lines) + "\n"


def flagfile_experiment(path: str) -> str | None:
  """The experiment named in a flags.txt header, or None."""
  try:
    with open(path) as f:
      for line in f:
        if line.startswith("# experiment:"):
          return line.split(":", 1)[1].strip()
  except OSError:
    return None
  return None


def check_no_positional(argv) -> None:
  """Positional arguments are mistakes, most often a flagfile line without `--`."""
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}: every flag (also in a flagfile) must "
                    "read --name=value")


def prepare_workdir(experiment: str, config, workdir: str | None = None) -> str:
  """Checks the workdir belongs to this experiment, then writes flags.txt.

  Nothing in the workdir is written before the checks pass.
  """
  from rnn_jax.training import Checkpointer  # keeps `--help` fast

  workdir = workdir or _WORKDIR.value
  if not workdir:
    raise UserError("--workdir is required: the directory of the run")
  workdir = os.path.abspath(workdir)
  owner = flagfile_experiment(os.path.join(workdir, "flags.txt"))
  if owner is not None and owner != experiment:
    raise UserError(f"--workdir={workdir} holds a run of experiment {owner!r}, not "
                    f"{experiment!r}; choose another --workdir")
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    Checkpointer(workdir, experiment).check_owner()
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "flags.txt"), "w") as f:
    f.write(config_to_flagfile(config, experiment, workdir))
  return workdir


def existing_workdir() -> str:
  """The `--workdir` of a finished or running run, for modes that only read it."""
  workdir = _WORKDIR.value
  if not workdir:
    raise UserError("--workdir is required: the directory of a trained run")
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir={workdir} does not exist")
  return os.path.abspath(workdir)


def data_path(config, *parts: str) -> str:
  """`data_dir/parts...`, or a UserError saying what is missing and how to set it."""
  if not config.data_dir:
    raise UserError(f"--data_dir is not set and ${DATA_ENV} is empty: point either at the "
                    "data root (holding ptb/, multi30k/, tinyshakespeare/)")
  path = os.path.join(config.data_dir, *parts)
  if not os.path.exists(path):
    raise UserError(f"--data_dir={config.data_dir}: {os.path.join(*parts)} not found there")
  return path


def set_host_devices(n: int) -> None:
  """`--host_devices`: `rnn_jax.training.parallel.use_host_devices(n)`, its error as a
  UserError."""
  from rnn_jax.training.parallel import use_host_devices
  try:
    use_host_devices(n)
  except RuntimeError as e:
    raise UserError(f"--host_devices: {e}") from None


def maybe_initialize_distributed() -> None:
  if _HOST_DEVICES.value < 0:
    raise UserError(f"--host_devices: expected 0 or more, got {_HOST_DEVICES.value}")
  if _HOST_DEVICES.value:
    set_host_devices(_HOST_DEVICES.value)
  if _COORDINATOR.value:
    from rnn_jax.training import initialize_distributed
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def run(main) -> None:
  """`app.run(main)`, printing user errors as one line (exit status 1)."""
  from rnn_jax.training import NonFiniteLossError, WorkdirConflictError

  def wrapped(argv):
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
      maybe_initialize_distributed()
      return main(argv)
    except (UserError, WorkdirConflictError, NonFiniteLossError) as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(1)

  app.run(wrapped)


def report_results(workdir: str, results: dict[str, Any]) -> None:
  """Writes `workdir/results.json` (process 0 only) and prints the results on one line."""
  import jax
  from rnn_jax import training
  if jax.process_index() == 0:
    training.metrics.write_results(workdir, results)
  print("results: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in results.items()), flush=True)


def as_dict(config) -> dict[str, Any]:
  return dataclasses.asdict(config)
