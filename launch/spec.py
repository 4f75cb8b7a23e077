"""A sweep file loaded and checked: its trials, their names and commands, the paper's numbers.

The sweep file format is documented in `launch/sweeps/__init__.py`. Every
problem is a `SweepError` with a one-line message naming it; nothing here
starts a trial or writes a file.

A trial's identity is a hash of its resolved flags (`resolve_flags`): its
command's flags with every `--flagfile` expanded in place as absl does, the
last value of a repeated flag winning, and `--workdir` left out. Two commands
with the same identity run the same configuration, whatever their flagfiles
are called; editing a flagfile changes the identity of every trial using it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from typing import Any

from launch.sweep_lib import format_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS_DIR = os.path.join(ROOT, "launch", "sweeps")
SPECIAL_KEYS = ("flagfile", "_name")   # trial keys that are not passed as flags
_SCALARS = (str, int, float, bool)
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]")
_MAX_NAME = 200


class SweepError(ValueError):
  """A problem with the sweep or the launcher's flags, reported as one line."""


@dataclasses.dataclass(frozen=True)
class Trial:
  """One run of the sweep.

  Attributes:
    name: Unique, filesystem-safe; the trial's workdir is `<workdir_root>/<name>`.
    flags: Flag name -> value, as the sweep's trial dict gives them (no special keys).
    flagfile: The trial's flagfile, as written in the sweep (relative to the repo root).
  """
  name: str
  flags: dict[str, Any]
  flagfile: str

  def flag_args(self) -> list[str]:
    return [f"--{k}={format_value(v)}" for k, v in self.flags.items()]

  def command(self, python: str, experiment: str, workdir: str,
              extra: list[str] = ()) -> list[str]:
    """`python -m <experiment> --flagfile=... --k=v ... <extra> --workdir=...`, run from ROOT."""
    return [python, "-m", experiment, f"--flagfile={self.flagfile}", *self.flag_args(),
            *extra, f"--workdir={workdir}"]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A loaded sweep file.

  Attributes:
    path: Absolute path of the sweep file.
    experiment: Module run as `python -m <experiment>`.
    flagfile: The default flagfile (`FLAGFILE`), relative to the repo root or absolute.
    trials: The trials, in the order `trials()` returned them.
    varied: Flags whose value differs between trials (absent counts as a value), in order.
    paper: `PAPER` as given: key -> {metric: number}.
  """
  path: str
  experiment: str
  flagfile: str
  trials: list[Trial]
  varied: list[str]
  paper: dict[str, dict[str, float]]

  @property
  def name(self) -> str:
    return os.path.splitext(os.path.basename(self.path))[0]


def resolve_sweep_path(sweep: str) -> str:
  """A path to a sweep file, or the bare name of one under launch/sweeps/."""
  candidates = [sweep]
  if not os.path.isabs(sweep):
    candidates.append(os.path.join(ROOT, sweep))
  if os.sep not in sweep and not sweep.endswith(".py"):
    candidates.append(os.path.join(SWEEPS_DIR, sweep + ".py"))
  for path in candidates:
    if os.path.isfile(path):
      return os.path.abspath(path)
  raise SweepError(f"--sweep={sweep}: no such file (nor launch/sweeps/{sweep}.py)")


def _import_file(path: str):
  module_name = "_launch_sweep_" + hashlib.sha1(path.encode()).hexdigest()[:12]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise SweepError(f"sweep {path}: syntax error at line {e.lineno}: {e.msg}") from None
  except Exception as e:  # noqa: BLE001 - any error in user code is reported as one line
    raise SweepError(f"sweep {path}: importing it raised {type(e).__name__}: {e}") from None
  return module


def flagfile_stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _safe(text: str) -> str:
  return _SAFE.sub("_", text.replace(",", "+")).lstrip(".") or "_"


def name_part(key: str, value) -> str:
  """How a flag shows in a trial's name: `key=value`, or the flagfile's stem."""
  if key == "flagfile":
    return _safe(flagfile_stem(str(value)))
  return f"{_safe(key)}={_safe(format_value(value))}"


def _varied(dicts: list[dict[str, Any]]) -> list[str]:
  keys = []
  for d in dicts:
    keys += [k for k in d if k != "_name" and k not in keys]
  missing = object()
  return [k for k in keys
          if len({format_value(d[k]) if k in d else missing for d in dicts}) > 1]


def _derived_name(trial: dict[str, Any], varied: list[str]) -> str:
  keys = [k for k in trial if k in varied] or [k for k in trial if k != "_name"]
  if not keys:
    return "baseline"
  name = ",".join(name_part(k, trial[k]) for k in keys)
  if len(name) > _MAX_NAME:
    name = name[:_MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
  return name


def _check_value(where: str, key: str, value) -> None:
  ok = isinstance(value, _SCALARS) or (
      isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value))
  if not ok:
    raise SweepError(f"{where}: flag {key} has a {type(value).__name__} value {value!r}; use "
                     "str, int, float, bool or a list of them")


def _check_trial_dicts(path: str, dicts) -> None:
  if not isinstance(dicts, (list, tuple)):
    raise SweepError(f"sweep {path}: trials() returned a {type(dicts).__name__}, not a list "
                     "of flag dicts")
  if not dicts:
    raise SweepError(f"sweep {path}: trials() returned no trials")
  for i, d in enumerate(dicts):
    where = f"sweep {path}: trial {i}"
    if not isinstance(d, dict):
      raise SweepError(f"{where} is a {type(d).__name__}, not a dict of flags")
    for key, value in d.items():
      if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", key):
        raise SweepError(f"{where}: {key!r} is not a flag name")
      if key == "workdir":
        raise SweepError(f"{where} sets workdir; the launcher sets --workdir=<workdir_root>/"
                         "<trial name>")
      if key == "_name" and not (isinstance(value, str) and re.fullmatch(
          r"[A-Za-z0-9_][A-Za-z0-9._=+,-]*", value) and len(value) <= _MAX_NAME):
        raise SweepError(f"{where}: _name {value!r} is not a safe directory name "
                         "(letters, digits, . _ = + , -)")
      if key == "flagfile" and not isinstance(value, str):
        raise SweepError(f"{where}: flagfile must be a path (str), got {value!r}")
      _check_value(where, key, value)


def _check_paper(path: str, paper) -> dict[str, dict[str, float]]:
  if paper is None:
    return {}
  if not isinstance(paper, dict):
    raise SweepError(f"sweep {path}: PAPER must be a dict {{trial name or 'flag=value': "
                     f"{{metric: number}}}}, got a {type(paper).__name__}")
  for key, metrics in paper.items():
    if not isinstance(key, str) or not isinstance(metrics, dict):
      raise SweepError(f"sweep {path}: PAPER[{key!r}] must map a metric name to a number")
    for metric, value in metrics.items():
      if not isinstance(metric, str) or isinstance(value, bool) or not isinstance(
          value, (int, float)):
        raise SweepError(f"sweep {path}: PAPER[{key!r}][{metric!r}] = {value!r} is not a number")
  return {k: dict(v) for k, v in paper.items()}


def trial_tokens(trial: Trial) -> set[str]:
  """What a PAPER key's comma-separated parts may name: the trial's name, name parts, flags."""
  tokens = {trial.name, *trial.name.split(",")}
  for key, value in {**trial.flags, "flagfile": trial.flagfile}.items():
    tokens |= {f"{key}={format_value(value)}", name_part(key, value)}
  tokens |= {flagfile_stem(trial.flagfile)}
  return tokens


def paper_matches(key: str, trial: Trial) -> bool:
  tokens = trial_tokens(trial)
  return key in tokens or all(part.strip() in tokens for part in key.split(","))


def paper_for(paper: dict[str, dict[str, float]], trial: Trial) -> dict[str, float]:
  """The paper's numbers for a trial: every matching key's, the more specific keys winning."""
  matching = [k for k in paper if paper_matches(k, trial)]
  out = {}
  for key in sorted(matching, key=lambda k: len(k.split(","))):
    out.update(paper[key])
  return out


def load_sweep(sweep: str) -> Sweep:
  """Loads and checks a sweep file (the experiment need not exist)."""
  path = resolve_sweep_path(sweep)
  module = _import_file(path)
  for attr in ("EXPERIMENT", "FLAGFILE"):
    if not isinstance(getattr(module, attr, None), str) or not getattr(module, attr):
      raise SweepError(f"sweep {path}: module-level {attr} (a str) is missing")
  trials_fn = getattr(module, "trials", None)
  if not callable(trials_fn):
    raise SweepError(f"sweep {path}: it defines no trials() function returning a list of "
                     "flag dicts")
  try:
    dicts = trials_fn()
  except Exception as e:  # noqa: BLE001
    raise SweepError(f"sweep {path}: trials() raised {type(e).__name__}: {e}") from None
  _check_trial_dicts(path, dicts)
  dicts = [dict(d) for d in dicts]
  varied = _varied(dicts)
  trials, seen = [], {}
  for i, d in enumerate(dicts):
    name = d.get("_name") or _derived_name(d, varied)
    if name in seen:
      raise SweepError(f"sweep {path}: trials {seen[name]} and {i} have the same name {name!r}; "
                       "vary a flag or give each an explicit _name")
    seen[name] = i
    flags = {k: v for k, v in d.items() if k not in SPECIAL_KEYS}
    trials.append(Trial(name=name, flags=flags, flagfile=d.get("flagfile", module.FLAGFILE)))
  paper = _check_paper(path, getattr(module, "PAPER", None))
  sweep_obj = Sweep(path=path, experiment=module.EXPERIMENT, flagfile=module.FLAGFILE,
                    trials=trials, varied=varied, paper=paper)
  names = ", ".join(t.name for t in trials[:8]) + (", ..." if len(trials) > 8 else "")
  for key in paper:
    if not any(paper_matches(key, t) for t in trials):
      raise SweepError(f"sweep {path}: PAPER key {key!r} matches no trial (trials: {names})")
  return sweep_obj


def experiment_exists(experiment: str) -> bool:
  """Whether `python -m <experiment>` would find the module (from the repo root)."""
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  try:
    return importlib.util.find_spec(experiment) is not None
  except (ImportError, ValueError):
    return False


@functools.lru_cache(maxsize=None)
def experiment_flags(experiment: str, python: str) -> frozenset[str]:
  """The flag names `python -m <experiment> --helpfull` lists (once per experiment and python).

  Boolean flags are listed twice, as `name` and `noname`.
  """
  command = [python, "-m", experiment, "--helpfull"]
  try:
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise SweepError(f"could not list the flags of {experiment}: {e}") from None
  text = proc.stdout.rpartition("\nflags:\n")[2]
  names = set()
  for match in re.finditer(r"^  (?:-\S+,)?--(\[no\])?([\w.-]+):", text, re.MULTILINE):
    names.add(match.group(2))
    if match.group(1):
      names.add("no" + match.group(2))
  if "flagfile" not in names:
    lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
    why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
    raise SweepError(f"could not list the flags of {experiment} (`{' '.join(command[1:])}` from "
                     f"{ROOT}): {why}")
  return frozenset(names)


def check_flags(sweep: Sweep, python: str, extra: dict[str, str] | None = None) -> None:
  """Every trial flag (and every `extra` flag) is one the experiment defines."""
  known = experiment_flags(sweep.experiment, python)

  def check(where: str, key: str) -> None:
    if key not in known:
      close = difflib.get_close_matches(key, sorted(known), n=1)
      hint = f" (did you mean --{close[0]}?)" if close else ""
      raise SweepError(f"{where}: unknown flag --{key} for {sweep.experiment}{hint}")

  for key in extra or {}:
    check("--set", key)
  for trial in sweep.trials:
    for key in trial.flags:
      check(f"trial {trial.name!r}", key)


def check_flagfiles(sweep: Sweep) -> None:
  """Every trial's flagfile exists (relative to the repo root, or absolute)."""
  for trial in sweep.trials:
    if not os.path.isfile(os.path.join(ROOT, trial.flagfile)):
      raise SweepError(f"trial {trial.name!r}: flagfile {trial.flagfile} not found (paths are "
                       f"relative to the repo root {ROOT})")


_NOT_IDENTITY = ("workdir",)   # flags that name where a trial runs, not what it runs
_MAX_FLAGFILE_DEPTH = 20


def _flag_pairs(args: list[str], root: str, depth: int = 0) -> list[tuple[str, str]]:
  """(name, value) for each flag of `args`, flagfiles expanded in place as absl does."""
  pairs = []
  for arg in args:
    if not arg.startswith("-"):
      continue
    name, sep, value = arg.lstrip("-").partition("=")
    if name != "flagfile":
      pairs.append((name, value if sep else "true"))
    elif depth >= _MAX_FLAGFILE_DEPTH:
      pairs.append((f"flagfile {value}", "nested too deep"))
    else:
      try:
        with open(os.path.join(root, os.path.expanduser(value))) as f:
          lines = [l.strip() for l in f.read().splitlines()]
      except OSError:
        pairs.append((f"flagfile {value}", "unreadable"))
        continue
      lines = [l for l in lines if l and not l.startswith(("#", "//"))]
      pairs += _flag_pairs(lines, root, depth + 1)
  return pairs


def resolve_flags(args: list[str], root: str = ROOT) -> dict[str, str]:
  """The flags a command's arguments set, flagfiles expanded (relative to `root`, where trials
  run), in order of first appearance, the last value winning; `--workdir` left out.

  `--name` alone reads as `name=true`. A flagfile that cannot be read shows as a flag of its
  own (`flagfile <path>`), so it still changes the identity.
  """
  flags = {}
  for name, value in _flag_pairs(list(args), root):
    if name not in _NOT_IDENTITY:
      flags[name] = value
  return flags


def command_flags(command: list[str], root: str = ROOT) -> dict[str, str]:
  """`resolve_flags` of a trial's command `[python, -m, experiment, args...]`."""
  return resolve_flags(command[3:], root)


def identity(flags: dict[str, str]) -> str:
  """A short hash of resolved flags: equal for equal flags, whatever their order."""
  text = json.dumps(sorted(flags.items()), separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def flag_changes(old: dict[str, str], new: dict[str, str], limit: int = 4) -> str:
  """`label: a -> b, max_steps: (unset) -> 10`: the flags whose values differ, at most `limit`."""
  names = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
  shown = [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in names[:limit]]
  if len(names) > limit:
    shown.append(f"{len(names) - limit} more")
  return ", ".join(shown) or "no flag differs"
