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
    failed: timed out after 2 h (--trial_timeout); rerun resumes
    failed: no sign of progress for 30 min (--stall_timeout); rerun resumes
                                  the launcher stopped it (SIGTERM: it saved a checkpoint;
                                  `, killed: ...` when SIGKILL was needed)
    incomplete: preempted (exit status 75); rerun resumes
    incomplete: the launcher got SIGINT; rerun resumes
    incomplete                    it started and stopped; rerun the sweep to resume it
    running                       its process is alive on this host, or its status comes
                                  from another host whose heartbeat is fresh
    hung: no sign of progress for 40 min (pid 123 on HOST)
                                  alive, but heartbeat.json (or, before the first,
                                  launch.log) has not changed for longer than the
                                  launcher's --stall_timeout (or --stale_after when it
                                  has none); the launcher stops it
    lost: process gone; rerun resumes
                                  a running status from this host whose process is gone
    lost: no heartbeat from HOST for 25 min; rerun resumes
                                  a running status from another host with no heartbeat
                                  (launch_status.json, heartbeat.json, launch.log) for
                                  longer than `--stale_after` seconds (default 600): its
                                  launcher, job or node died; a rerun of the sweep reruns it
    pending                       not started (or queued on SLURM)
    stale: done with other flags (label: a -> b); rerun with --on_changed=resume or restart
                                  the trial's workdir was made with other resolved flags
                                  than sweep.json now gives it (a rerun with changed flags
                                  and --only selecting other trials, or a resume the
                                  experiment refused); its metrics are left blank

The markdown table goes to stdout and <dir>/table.md; the CSV (full
precision) to <dir>/table.csv. `--plot=METRIC --x=FLAG` also draws METRIC
against a varied flag, one line per combination of the other varied flags
(the paper's numbers dotted, where given), into <dir>/<metric>_vs_<flag>.png
("/" in names becomes "_"). Problems (not a sweep directory, an unknown
metric or flag) are one `error:` line and exit status 2.

`--over=FLAG` (typically `seed`) folds the trials that differ only in FLAG into
one row: the other varied flags, `n` (finished trials / trials), and each
metric as `mean ± std` over the finished ones (sample standard deviation; the
mean alone when one finished); `status` then counts the group's trials. The
CSV has `<metric>`, `<metric> std`, `<metric> min` and `<metric> max` for it.
With `--plot`, each point is the mean, with the standard deviation as an error
bar:

    python -m launch.table runs/gnmt_seeds --metrics='bleu/*' --over=seed
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import statistics
import sys

from absl import app, flags

from launch import spec, trial as trial_lib
from launch.spec import SweepError, flagfile_stem
from launch.sweep_lib import format_value

_METRICS = flags.DEFINE_list("metrics", [], "Metric columns (names or globs); default: all "
                             "numeric keys of results.json.")
_PLOT = flags.DEFINE_string("plot", None, "Draw this metric against --x into "
                            "<dir>/<metric>_vs_<x>.png.")
_X = flags.DEFINE_string("x", None, "The varied flag on the plot's x axis (default: the only one).")
_LOGX = flags.DEFINE_bool("logx", False, "Logarithmic x axis (numeric flags).")
_STALE_AFTER = flags.DEFINE_float("stale_after", trial_lib.STALE_AFTER_S, "Seconds without a "
                                  "heartbeat after which a trial running on another host "
                                  "shows as lost.")
_OVER = flags.DEFINE_string("over", None, "Fold the trials that differ only in this varied flag "
                            "(e.g. seed) into one row of mean ± std.")

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


def collect(root: str, metrics: list[str] | None = None,
            stale_after: float = trial_lib.STALE_AFTER_S) -> tuple[dict, list[str], list[dict]]:
  """The manifest, the table's columns, and one dict per trial (column -> value); a stale
  trial's metrics (from other flags) are left out."""
  root = os.path.abspath(root)
  manifest = load_manifest(root)
  trials = manifest["trials"]
  repo = manifest.get("repo_root") or spec.ROOT
  status = {t["name"]: trial_lib.status(os.path.join(root, t["name"]),
                                        expected=t.get("resolved_flags"),
                                        stale_after=stale_after, root=repo) for t in trials}
  results = {t["name"]: {} if status[t["name"]].startswith("stale")
             else _read_results(os.path.join(root, t["name"])) for t in trials}
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


def _status_counts(statuses: list[str]) -> str:
  """`3 done, 1 failed`: how many of `statuses` are in each state, in order of appearance."""
  counts = {}
  for status in statuses:
    key = status.split(":")[0]
    counts[key] = counts.get(key, 0) + 1
  return ", ".join(f"{n} {s}" for s, n in counts.items())


def fold(manifest: dict, columns: list[str], rows: list[dict], over: str
         ) -> tuple[list[str], list[dict]]:
  """`collect`'s rows folded over the varied flag `over`: one row per combination of the
  other varied flags, in order of first appearance, with `n` and, per metric, the mean
  (column `<metric>`), sample standard deviation, min and max over the finished trials.
  Paper numbers are kept when every trial of a group has the same."""
  varied = manifest["varied"]
  if over not in varied:
    raise SweepError(f"--over={over} is not a varied flag of this sweep (varied: "
                     f"{', '.join(varied) or 'none'})")
  keys = [k for k in varied if k != over]
  metrics = [c for c in columns if c not in ("trial", "status", *varied)
             and not c.startswith("paper ")]
  papers = [c for c in columns if c.startswith("paper ")]
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in keys), []).append(row)
  folded = []
  for group in groups.values():
    done = [r for r in group if r["status"] == "done"]
    out = {k: group[0][k] for k in keys}
    out[over] = ",".join(r[over] for r in group)
    out["n"] = f"{len(done)}/{len(group)}"
    for m in metrics:
      values = [r[m] for r in done if r.get(m) is not None]
      out[m] = statistics.fmean(values) if values else None
      out[f"{m} std"] = statistics.stdev(values) if len(values) > 1 else None
      out[f"{m} min"] = min(values) if values else None
      out[f"{m} max"] = max(values) if values else None
    for p in papers:
      numbers = {r[p] for r in group}
      out[p] = numbers.pop() if len(numbers) == 1 else None
    out["statuses"] = [r["status"] for r in group]  # not a column: for to_markdown's summary
    out["status"] = _status_counts(out["statuses"])
    folded.append(out)
  stats = [c for m in metrics for c in (m, f"{m} std", f"{m} min", f"{m} max")]
  return keys + [over, "n"] + stats + papers + ["status"], folded


def _fmt(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
  return str(value)


def to_markdown(manifest: dict, columns: list[str], rows: list[dict],
                over: str | None = None) -> str:
  """The table in markdown; `over`: `rows` are `fold`'s, whose metrics show as mean ± std
  (min, max and the std's own columns stay in the CSV)."""
  if over is None:
    trials = len(rows)
    summary = _status_counts([row["status"] for row in rows])
  else:
    statuses = [s for row in rows for s in row["statuses"]]
    trials = len(statuses)
    summary = f"{len(rows)} row(s) over {over}: " + _status_counts(statuses)
    shown = [c for c in columns if not c.endswith((" std", " min", " max"))]
    rows = [{**row, **{c: _mean_std(row[c], row.get(f"{c} std")) for c in shown
                       if f"{c} std" in row}} for row in rows]
    columns = shown
  lines = [f"Sweep `{manifest['sweep_name']}` of `{manifest['experiment']}`: {trials} "
           f"trial(s), {summary}.", "",
           "| " + " | ".join(columns) + " |",
           "|" + "|".join("---" if c in ("trial", "status") or c in manifest["varied"]
                          else "---:" for c in columns) + "|"]
  for row in rows:
    cells = [_fmt(row[c]).replace("|", "\\|").replace("\n", " ") for c in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _mean_std(mean, std) -> str | None:
  if mean is None:
    return None
  return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


def to_csv(columns: list[str], rows: list[dict]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow(["" if row[c] is None else row[c] for c in columns])
  return out.getvalue()


def write_table(root: str, metrics: list[str] | None = None, over: str | None = None,
                stale_after: float = trial_lib.STALE_AFTER_S) -> str:
  """Writes <root>/table.md and <root>/table.csv, folded over the flag `over` when given
  (`fold`); returns the markdown."""
  manifest, columns, rows = collect(root, metrics, stale_after)
  if over is not None:
    columns, rows = fold(manifest, columns, rows, over)
  markdown = to_markdown(manifest, columns, rows, over)
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


def plot(root: str, metric: str, x: str | None = None, logx: bool = False,
         over: str | None = None) -> str:
  """Draws `metric` against the varied flag `x`; returns the PNG's path. With `over`, each
  point is the mean over that flag's trials (`fold`), the standard deviation its error bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  root = os.path.abspath(root)
  manifest, columns, rows = collect(root, [metric])
  varied = manifest["varied"]
  if over is not None:
    columns, rows = fold(manifest, columns, rows, over)
    varied = [k for k in varied if k != over]
  if x is None:
    if len(varied) != 1:
      raise SweepError(f"--x is required: the sweep varies {', '.join(varied) or 'nothing'}")
    x = varied[0]
  if x not in varied:
    besides = " besides --over" if over else ""
    raise SweepError(f"--x={x} is not a varied flag of this sweep{besides} (varied: "
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
      errors = [r.get(f"{metric} std") or 0.0 for r in group if r.get(metric) is not None]
      line = ax.errorbar(*zip(*ours), yerr=errors if any(errors) else None, marker="o",
                         capsize=3, label=label).lines[0]
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
    print(write_table(root, _METRICS.value, _OVER.value, _STALE_AFTER.value), end="")
    if _PLOT.value:
      print(f"plot: {plot(root, _PLOT.value, _X.value, _LOGX.value, _OVER.value)}")
    elif _X.value:
      raise SweepError("--x needs --plot=METRIC")
  except SweepError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
