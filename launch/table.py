"""A sweep's results as a table beside the paper's numbers, and plots of a metric against a flag.

    python -m launch.table runs/zaremba                        # table.md, table.csv
    python -m launch.table runs/zaremba --metrics=valid/ppl,test/ppl
    python -m launch.table runs/long_range --plot=test/accuracy --x=seq_len [--logx]

Reads <dir>/sweep.json (written by `launch.sweep`) and each trial's
results.json and launch status. One row per trial; columns: `trial`, the
flags that vary between trials, the metrics (every flat numeric key of the
trials' results.json, sorted, or `--metrics=a,b`, where an entry may be a
glob such as `bleu/*`), then `paper <metric>` for each shown metric the sweep's
PAPER gives, then `status`:

    done                          results.json is there
    failed: <last error line>     the command exited; the line comes from <trial>/launch.log
    running                       its process is alive (or runs on another host)
    incomplete                    it started and stopped; rerun the sweep to resume it
    pending                       not started (or queued on SLURM)

The markdown table goes to stdout and <dir>/table.md; the CSV (full
precision) to <dir>/table.csv. `--plot=METRIC --x=FLAG` also draws METRIC
against a varied flag, one line per combination of the other varied flags
(the paper's numbers dotted, where given), into <dir>/<metric>_vs_<flag>.png
("/" in names becomes "_"). Problems (not a sweep directory, an unknown
metric or flag) are one `error:` line and exit status 2.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import sys

from absl import app, flags

from launch import trial as trial_lib
from launch.spec import SweepError, flagfile_stem
from launch.sweep_lib import format_value

_METRICS = flags.DEFINE_list("metrics", [], "Metric columns (names or globs); default: all "
                             "numeric keys of results.json.")
_PLOT = flags.DEFINE_string("plot", None, "Draw this metric against --x into "
                            "<dir>/<metric>_vs_<x>.png.")
_X = flags.DEFINE_string("x", None, "The varied flag on the plot's x axis (default: the only one).")
_LOGX = flags.DEFINE_bool("logx", False, "Logarithmic x axis (numeric flags).")

MANIFEST = "sweep.json"


def load_manifest(root: str) -> dict:
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    raise SweepError(f"{root} holds no {MANIFEST}: not a sweep directory (run python -m "
                     "launch.sweep --workdir_root=... first)")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise SweepError(f"{path} is unreadable: {e}") from None


def _numbers(results: dict) -> dict[str, float]:
  return {k: v for k, v in results.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _read_results(workdir: str) -> dict[str, float]:
  try:
    with open(os.path.join(workdir, trial_lib.RESULTS)) as f:
      results = json.load(f)
  except (OSError, ValueError):
    return {}
  return _numbers(results) if isinstance(results, dict) else {}


def _flag_value(trial: dict, key: str) -> str:
  if key == "flagfile":
    return flagfile_stem(trial["flagfile"])
  return format_value(trial["flags"][key]) if key in trial["flags"] else ""


def _choose_metrics(requested: list[str], available: list[str], any_done: bool) -> list[str]:
  if not requested:
    return available
  chosen = []
  for entry in requested:
    matches = [m for m in available if fnmatch.fnmatchcase(m, entry)]
    if not matches and any_done:
      raise SweepError(f"--metrics: {entry!r} matches no metric (metrics: "
                       f"{', '.join(available) or 'none'})")
    chosen += [m for m in (matches or [entry]) if m not in chosen]
  return chosen


def collect(root: str, metrics: list[str] | None = None) -> tuple[dict, list[str], list[dict]]:
  """The manifest, the table's columns, and one dict per trial (column -> value)."""
  root = os.path.abspath(root)
  manifest = load_manifest(root)
  trials = manifest["trials"]
  results = {t["name"]: _read_results(os.path.join(root, t["name"])) for t in trials}
  status = {t["name"]: trial_lib.status(os.path.join(root, t["name"])) for t in trials}
  paper_metrics = []
  for t in trials:
    paper_metrics += [m for m in t.get("paper", {}) if m not in paper_metrics]
  available = sorted({m for r in results.values() for m in r} | set(paper_metrics))
  shown = _choose_metrics(list(metrics or []), available,
                          any(s == "done" for s in status.values()))
  paper_cols = [m for m in shown if m in paper_metrics]
  varied = manifest["varied"]
  columns = (["trial"] + varied + shown + [f"paper {m}" for m in paper_cols] + ["status"])
  rows = []
  for t in trials:
    row = {"trial": t["name"], **{k: _flag_value(t, k) for k in varied}}
    row.update({m: results[t["name"]].get(m) for m in shown})
    row.update({f"paper {m}": t.get("paper", {}).get(m) for m in paper_cols})
    row["status"] = status[t["name"]]
    rows.append(row)
  return manifest, columns, rows


def _fmt(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
  return str(value)


def to_markdown(manifest: dict, columns: list[str], rows: list[dict]) -> str:
  counts = {}
  for row in rows:
    key = row["status"].split(":")[0]
    counts[key] = counts.get(key, 0) + 1
  summary = ", ".join(f"{n} {s}" for s, n in counts.items())
  lines = [f"Sweep `{manifest['sweep_name']}` of `{manifest['experiment']}`: {len(rows)} "
           f"trial(s), {summary}.", "",
           "| " + " | ".join(columns) + " |",
           "|" + "|".join("---" if c in ("trial", "status") or c in manifest["varied"]
                          else "---:" for c in columns) + "|"]
  for row in rows:
    cells = [_fmt(row[c]).replace("|", "\\|").replace("\n", " ") for c in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def to_csv(columns: list[str], rows: list[dict]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow(["" if row[c] is None else row[c] for c in columns])
  return out.getvalue()


def write_table(root: str, metrics: list[str] | None = None) -> str:
  """Writes <root>/table.md and <root>/table.csv; returns the markdown."""
  manifest, columns, rows = collect(root, metrics)
  markdown = to_markdown(manifest, columns, rows)
  with open(os.path.join(root, "table.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(root, "table.csv"), "w") as f:
    f.write(to_csv(columns, rows))
  return markdown


def _as_float(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._=+-]", "_", name)


def plot(root: str, metric: str, x: str | None = None, logx: bool = False) -> str:
  """Draws `metric` against the varied flag `x`; returns the PNG's path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  root = os.path.abspath(root)
  manifest, _, rows = collect(root, [metric])
  varied = manifest["varied"]
  if x is None:
    if len(varied) != 1:
      raise SweepError(f"--x is required: the sweep varies {', '.join(varied) or 'nothing'}")
    x = varied[0]
  if x not in varied:
    raise SweepError(f"--x={x} is not a varied flag of this sweep (varied: "
                     f"{', '.join(varied) or 'none'})")
  points = [r for r in rows if r.get(metric) is not None or r.get(f"paper {metric}") is not None]
  if not any(r.get(metric) is not None for r in points):
    raise SweepError(f"no finished trial has metric {metric!r}")
  xs_text = list(dict.fromkeys(r[x] for r in points))
  numeric = all(_as_float(v) is not None for v in xs_text)
  position = ({v: _as_float(v) for v in xs_text} if numeric
              else {v: i for i, v in enumerate(xs_text)})
  others = [k for k in varied if k != x]
  groups: dict[str, list[dict]] = {}
  for r in points:
    label = ", ".join(f"{k}={r[k] or '-'}" for k in others) or metric
    groups.setdefault(label, []).append(r)

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for label, group in groups.items():
    group = sorted(group, key=lambda r: position[r[x]])
    ours = [(position[r[x]], r[metric]) for r in group if r.get(metric) is not None]
    line = None
    if ours:
      line, = ax.plot(*zip(*ours), marker="o", label=label)
    paper = [(position[r[x]], r[f"paper {metric}"]) for r in group
             if r.get(f"paper {metric}") is not None]
    if paper:
      ax.plot(*zip(*paper), linestyle=":", marker="x", label=f"{label} (paper)",
              color=line.get_color() if line else None)
  if not numeric:
    ax.set_xticks(range(len(xs_text)), xs_text, rotation=30 if len(xs_text) > 4 else 0)
  elif logx:
    ax.set_xscale("log")
  ax.set_xlabel(x)
  ax.set_ylabel(metric)
  ax.set_title(f"{manifest['sweep_name']}: {metric} vs {x}")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  path = os.path.join(root, f"{_safe(metric)}_vs_{_safe(x)}.png")
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def main(argv):
  try:
    if len(argv) != 2:
      raise SweepError("usage: python -m launch.table DIR [--metrics=a,b] [--plot=METRIC "
                       "--x=FLAG]: give one sweep directory")
    root = argv[1]
    print(write_table(root, _METRICS.value), end="")
    if _PLOT.value:
      print(f"plot: {plot(root, _PLOT.value, _X.value, _LOGX.value)}")
    elif _X.value:
      raise SweepError("--x needs --plot=METRIC")
  except SweepError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
