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
`--num_devices`, `--host_devices`, `--progress`, `--skip_nonfinite_updates`,
`--force_config_change`, and the multi-host ones `--coordinator_address`,
`--num_processes`, `--process_id` (multi-host starts only when the first is set).

A workdir belongs to one configuration. `prepare_workdir` records the config
in `workdir/config.json` with a fingerprint of the fields that change results;
a rerun whose values of those differ is refused with one line naming them
(`--force_config_change` goes on anyway and records that it did). Fields
declared with `may_change=True` only extend or observe a run and may differ
between reruns: `max_steps`, `checkpoint_every`, `eval_every`, `log_every`,
`progress`, `data_dir`, `num_devices`, `skip_nonfinite_updates`, and each
experiment's own (`may_change_flags(Config)` lists them).

Exit statuses of `run(main)`: 0 done, 1 an error (one `error:` line), 75 stopped
by SIGTERM or SIGINT after saving a checkpoint (rerun the command to resume).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
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
_FORCE_CONFIG_CHANGE = flags.DEFINE_bool(
    "force_config_change", False, "Resume a --workdir even though flags that change results "
    "differ from the ones it was trained with (config.json records the change). Without it "
    "such a rerun is refused.")
_HOST_DEVICES = flags.DEFINE_integer(
    "host_devices", 0, "CPU only: split this machine's CPU into N devices for data "
    "parallelism (XLA's --xla_force_host_platform_device_count; 0 leaves XLA's default of "
    "one). Small models use both cores of a 2-core machine this way (WORKSPACE.md).")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None, "JAX's persistent compilation cache: compiled programs are "
    "kept here and reused by later runs that compile the same ones (a rerun, a resume, another "
    "seed). Default: $JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/rnn_jax/xla "
    "(~/.cache/rnn_jax/xla), at most 2 GiB, least recently used entries dropped first; "
    "'' turns it off.")
_RETAIN_FREED_MEMORY = flags.DEFINE_bool(
    "retain_freed_memory", True, "Linux with glibc: keep freed host memory in the process "
    "(rnn_jax.training.host_memory), so XLA's large CPU buffers are not faulted in afresh at "
    "every step; the process keeps its peak heap. Off: glibc's defaults.")


def field(default, help: str, **kwargs):  # noqa: A002 - mirrors absl's name
  """A config field with its flag help text; `may_change=True` marks a field that only
  extends or observes a run, so a rerun in the same workdir may change it."""
  if isinstance(default, list):
    return dataclasses.field(default_factory=lambda: list(default),
                             metadata={"help": help, **kwargs})
  return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Fields every experiment has."""
  data_dir: str = field(os.environ.get(DATA_ENV, ""), f"Data root holding ptb/, multi30k/, "
                        f"tinyshakespeare/; default ${DATA_ENV}.", may_change=True)
  seed: int = field(0, "Random seed of the run (init, dropout, data order).")
  max_steps: int = field(0, "If > 0, stop after this many steps (overrides the schedule's "
                         "length).", may_change=True)
  checkpoint_every: int = field(1000, "Checkpoint every this many steps (and at the end).",
                                may_change=True)
  eval_every: int = field(0, "Evaluate every this many steps (0: the experiment's default).",
                          may_change=True)
  log_every: int = field(100, "Write train metrics every this many steps.", may_change=True)
  num_devices: int = field(0, "Devices to use for data parallelism (0: all).", may_change=True)
  progress: bool = field(True, "Show a progress bar.", may_change=True)
  skip_nonfinite_updates: int = field(0, "Skip up to this many batches whose loss, gradient "
                                      "or update is NaN or inf (each logged) before stopping; "
                                      "0 stops at the first.", may_change=True)


@dataclasses.dataclass(frozen=True)
class Seq2SeqTrainingConfig(RunConfig):
  """How a sequence-to-sequence experiment trains its decoder: the flags every one of them
  shares (`rnn_jax.seq2seq.objectives`)."""
  training: str = field("xent", "xent (teacher forcing), scheduled_sampling (Bengio et al. "
                        "2015), mixer (Ranzato et al. 2016) or scst (self-critical, Rennie et "
                        "al. 2017); the last two train on a sentence-level reward.")
  training_start_step: int = field(0, "Plain cross-entropy before this step, --training "
                                   "from it on (sequence-level methods start from a "
                                   "trained model).")
  ss_schedule: str = field("inverse_sigmoid", "Scheduled sampling's ε (the chance of "
                           "feeding the gold token): linear max(ss_min, k - c i), "
                           "exponential k^i or inverse_sigmoid k / (k + exp(i / k)).")
  ss_k: float = field(1000.0, "The schedule's k.")
  ss_c: float = field(1e-4, "linear: the slope c.")
  ss_min: float = field(0.0, "linear: the floor of ε.")
  ss_feed: str = field("sample", "What replaces the gold token: sample (from the softmax), "
                       "argmax, or uniform (a uniformly drawn token: the paper's uniform "
                       "scheduled sampling).")
  mixer_delta_step: int = field(2, "MIXER: Δ, the tokens at the end trained with "
                                "REINFORCE, grows by this many ...")
  mixer_delta_every: int = field(1000, "... every this many steps.")
  sample_temperature: float = field(1.0, "Temperature of the samples that scheduled "
                                    "sampling, MIXER and SCST draw.")

  def training_method(self):
    from rnn_jax.seq2seq import objectives  # noqa: PLC0415
    try:
      return objectives.Method(
          self.training, start_step=self.training_start_step, schedule=self.ss_schedule,
          k=self.ss_k, c=self.ss_c, minimum=self.ss_min, feed=self.ss_feed,
          delta_step=self.mixer_delta_step, delta_every=self.mixer_delta_every,
          temperature=self.sample_temperature)
    except ValueError as e:
      raise UserError(f"--training and its flags: {e}") from None


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


def may_change_flags(config_cls) -> list[str]:
  """The fields of `config_cls` that may differ between reruns in one workdir."""
  return [f.name for f in dataclasses.fields(config_cls) if f.metadata.get("may_change")]


CONFIG_RECORD = "config.json"


def _fingerprinted(config) -> dict[str, Any]:
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
          if not f.metadata.get("may_change")}


def _fingerprint(values: dict[str, Any]) -> str:
  canonical = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
                         sort_keys=True)
  return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _show(value) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


def check_config_record(workdir: str, experiment: str, config, *, force: bool = False) -> None:
  """Compares `config` with the one `workdir/config.json` records; records it.

  A field the record lacks (added to the config since) counts as having had its
  default; a field the config lacks (removed since) is ignored.

  Raises:
    UserError: a field that changes results differs (the message names each
      one, old and new value), unless `force`; then the change is recorded in
      config.json's `changes` and a warning printed.
  """
  path = os.path.join(workdir, CONFIG_RECORD)
  values = _fingerprinted(config)
  record = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        record = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f"{path} is unreadable ({e}); move it away to adopt this workdir with "
                      "the current flags") from None
  now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  if record is None:
    record = {"experiment": experiment, "created": now, "changes": []}
  else:
    old = dict(record.get("fingerprinted", {}))
    for f in dataclasses.fields(config):  # a field added since ran as its default did
      if f.name in values and f.name not in old:
        old[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    differ = [k for k in sorted(values)  # a field removed since cannot be set any more
              if _show(old.get(k)) != _show(values[k])]
    if differ:
      listing = ", ".join(f"--{k}={_show(old.get(k))} (now {_show(values[k])})"
                          for k in differ)
      if not force:
        raise UserError(
            f"--workdir={workdir} was trained with other flags: {listing}; rerun with the "
            "same flags, choose another --workdir, or pass --force_config_change to go on "
            "with the new ones")
      print(f"warning: --force_config_change: going on in {workdir} with changed flags: "
            f"{listing}", flush=True)
      record.setdefault("changes", []).append(
          {"time": now, "flags": {k: {"was": old.get(k), "now": values.get(k)} for k in differ}})
  record.update(experiment=experiment, fingerprint=_fingerprint(values),
                fingerprinted=values, may_change={
                    f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                    if f.metadata.get("may_change")},
                updated=now)
  from rnn_jax.training.workdir import atomic_write
  atomic_write(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def prepare_workdir(experiment: str, config, workdir: str | None = None, *,
                    force_config_change: bool | None = None) -> str:
  """Makes `workdir` this process's: checks, lock, config record, flags.txt.

  In order: the workdir must belong to this experiment (flags.txt's header, the
  checkpoints' meta); this process takes its lock for the rest of its life
  (`rnn_jax.training.workdir.lock`: a second process is refused); the config
  must match the one config.json records (`check_config_record`). Nothing in
  the workdir is written before the ownership checks pass.
  """
  from rnn_jax.training import Checkpointer, WorkdirBusyError
  from rnn_jax.training import workdir as workdir_lib

  workdir = workdir or _WORKDIR.value
  if not workdir:
    raise UserError("--workdir is required: the directory of the run")
  workdir = os.path.abspath(workdir)
  if force_config_change is None:
    force_config_change = _FORCE_CONFIG_CHANGE.value
  owner = flagfile_experiment(os.path.join(workdir, "flags.txt"))
  if owner is not None and owner != experiment:
    raise UserError(f"--workdir={workdir} holds a run of experiment {owner!r}, not "
                    f"{experiment!r}; choose another --workdir")
  import jax
  if jax.process_index() == 0:
    try:  # a training process's saves and deletions would race the checkpoint read below
      workdir_lib.check_free(workdir)
    except WorkdirBusyError as e:
      raise UserError(str(e)) from None
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    Checkpointer(workdir, experiment).check_owner()
  if jax.process_index() == 0:
    try:
      workdir_lib.lock(workdir)
    except WorkdirBusyError as e:
      raise UserError(str(e)) from None
    check_config_record(workdir, experiment, config, force=force_config_change)
    workdir_lib.atomic_write(os.path.join(workdir, "flags.txt"),
                             config_to_flagfile(config, experiment, workdir))
  return workdir


def existing_workdir() -> str:
  """The `--workdir` of a finished or running run, for modes that only read it."""
  workdir = _WORKDIR.value
  if not workdir:
    raise UserError("--workdir is required: the directory of a trained run")
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir={workdir} does not exist")
  return os.path.abspath(workdir)


def read_json(path, what: str = ""):
  """The JSON document at `path`, or a one-line UserError ("<what> <path>: No such file
  or directory", "... is not JSON: ...")."""
  name = f"{what} {path}" if what else f"{path}"
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except OSError as e:
    raise UserError(f"{name}: {e.strerror or e}") from None
  except ValueError as e:
    raise UserError(f"{name} is not JSON: {e}") from None


def check_rnn_implementation(value: str) -> None:
  """`--rnn_implementation` (an experiment's choice of `rnn_jax.unroll`'s implementation):
  a UserError unless it is one of `rnn_jax.unroll.IMPLEMENTATIONS`."""
  from rnn_jax.unroll import check_implementation  # noqa: PLC0415  (no jax at import here)
  try:
    check_implementation(value, "--rnn_implementation")
  except ValueError as e:
    raise UserError(str(e)) from None


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


COMPILATION_CACHE_MAX_BYTES = 2 << 30


def default_compilation_cache_dir() -> str:
  xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(xdg, "rnn_jax", "xla")


def set_compilation_cache(path: str | None) -> str | None:
  """`--compilation_cache_dir`: points JAX's persistent compilation cache at `path` (None:
  the default, unless JAX already has a directory from $JAX_COMPILATION_CACHE_DIR; '': off).
  Returns the directory in use, or None."""
  import jax  # noqa: PLC0415  (configuring it does not start a backend)
  if path is None:
    if jax.config.jax_compilation_cache_dir:  # the environment chose one
      return jax.config.jax_compilation_cache_dir
    path = default_compilation_cache_dir()
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
  if not path:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  return path


def apply_retain_freed_memory() -> bool:
  """`--retain_freed_memory`: `rnn_jax.training.host_memory.retain_freed_memory()` when the
  flag is on (the default). True where it took effect."""
  if not _RETAIN_FREED_MEMORY.value:
    return False
  from rnn_jax.training import host_memory  # noqa: PLC0415
  return host_memory.retain_freed_memory()


def run(main) -> None:
  """`app.run(main)`, printing user errors as one line (exit status 1); a run stopped by
  SIGTERM or SIGINT after saving its checkpoint exits with status 75 (`PREEMPTED_EXIT_CODE`)."""
  from rnn_jax.training import (PREEMPTED_EXIT_CODE, NonFiniteError, Preempted,
                                WorkdirBusyError, WorkdirConflictError)

  def wrapped(argv):
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
      set_compilation_cache(_COMPILATION_CACHE.value)
      apply_retain_freed_memory()
      maybe_initialize_distributed()
      return main(argv)
    except (UserError, WorkdirConflictError, NonFiniteError, WorkdirBusyError) as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(1)
    except Preempted as e:
      print(f"stopped: {e}", file=sys.stderr, flush=True)
      sys.exit(PREEMPTED_EXIT_CODE)

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
