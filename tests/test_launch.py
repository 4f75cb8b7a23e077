"""launch/: sweeps of a tiny fake experiment (tests/fake_experiment.py), tables, plots, bad input.

The launcher runs as a subprocess, like a user runs it; trials are a second
or less of `python -m fake_experiment` each, on the CPU.
"""

import csv
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from launch import spec, sweep_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
ENV = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
ENV["PYTHONPATH"] = os.pathsep.join([TESTS, REPO])


def write_sweep(tmp_path, trials_body: str, header: str = "", name: str = "fake_sweep") -> str:
  """A sweep file of the fake experiment whose trials() returns `trials_body`."""
  flagfile = tmp_path / "fake.flags"
  flagfile.write_text("# the fake experiment's defaults for the tests\n--label=from_flagfile\n")
  path = tmp_path / f"{name}.py"
  path.write_text(
      "from launch.sweep_lib import product\n"
      "EXPERIMENT = 'fake_experiment'\n"
      f"FLAGFILE = {str(flagfile)!r}\n"
      f"{header}\n"
      f"def trials():\n  return {trials_body}\n")
  return str(path)


def launch(*args, cwd, timeout=60, env=None):
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args], cwd=cwd, env=env or ENV,
                        capture_output=True, text=True, timeout=timeout)


def fake_commands(tmp_path, **scripts) -> dict:
  """ENV with tmp_path/bin first on PATH, holding shell scripts named like commands."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  for name, body in scripts.items():
    (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
    (bin_dir / name).chmod(0o755)
  return {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV.get('PATH', '')}"}


def table_cli(*args, cwd):
  return subprocess.run([sys.executable, "-m", "launch.table", *args], cwd=cwd, env=ENV,
                        capture_output=True, text=True, timeout=60)


def read_csv(root):
  with open(os.path.join(root, "table.csv")) as f:
    return list(csv.DictReader(f))


def runs(root, name):
  try:
    with open(os.path.join(root, name, "runs.txt")) as f:
      return len(f.read().split())
  except FileNotFoundError:
    return 0


def intervals(root, name):
  with open(os.path.join(root, name, "devices.jsonl")) as f:
    return [json.loads(line) for line in f]


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
  except (FileNotFoundError, IndexError):
    return False


# ----------------------------------------------------------------------------- sweep files


def test_product_zip_ablations():
  assert sweep_lib.product(a=[1, 2], b=["x", "y"]) == [
      {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
  assert sweep_lib.product(a=[1, 2], c=True) == [{"a": 1, "c": True}, {"a": 2, "c": True}]
  assert sweep_lib.zip_(a=[1, 2], b=[0.5, 0.0], c="k") == [
      {"a": 1, "b": 0.5, "c": "k"}, {"a": 2, "b": 0.0, "c": "k"}]
  with pytest.raises(ValueError, match="different lengths: a=2, b=3"):
    sweep_lib.zip_(a=[1, 2], b=[1, 2, 3])
  trials = sweep_lib.ablations({"attention": "dot", "rev": False}, attention=["dot", "general"],
                               rev=[True])
  assert [t["_name"] for t in trials] == ["baseline", "attention=general", "rev=true"]
  assert trials[2] == {"attention": "dot", "rev": True, "_name": "rev=true"}


def test_trial_names_and_paper(tmp_path):
  path = write_sweep(
      tmp_path, "product(value=[1, 2.5], label=['a/b', 'c'], sleep=0) + [{'value': 9, "
      "'sleep': 0, 'flagfile': 'x/other.flags', '_name': 'other'}]",
      header="PAPER = {'value=1': {'score': 2}, 'value=1,label=c': {'score': 3}, "
             "'other': {'score': 18}}")
  sweep = spec.load_sweep(path)
  assert [t.name for t in sweep.trials] == [
      "value=1,label=a_b", "value=1,label=c", "value=2.5,label=a_b", "value=2.5,label=c", "other"]
  assert sweep.varied == ["value", "label", "flagfile"]   # not sleep: the same everywhere
  assert [spec.paper_for(sweep.paper, t).get("score") for t in sweep.trials] == [
      2, 3, None, None, 18]
  other = sweep.trials[-1]
  assert other.flagfile == "x/other.flags" and other.flags == {"value": 9, "sleep": 0}
  assert other.command("py", "fake_experiment", "/w") == [
      "py", "-m", "fake_experiment", "--flagfile=x/other.flags", "--value=9", "--sleep=0",
      "--workdir=/w"]


@pytest.mark.parametrize("sweep_file", sorted(
    p for p in glob.glob(os.path.join(REPO, "launch", "sweeps", "*.py"))
    if not p.endswith("__init__.py")))
def test_shipped_sweeps_load(sweep_file):
  sweep = spec.load_sweep(sweep_file)
  names = [t.name for t in sweep.trials]
  assert names and len(set(names)) == len(names)
  expected = {"zaremba_ptb": 3, "regularizers": 5, "gnmt_ablations": 7, "long_range": 12,
              "phased_lstm": 9, "gnmt_seeds": 10, "gnmt_zero_shot": 24,
              "scheduled_sampling": 21, "captioning_models": 9, "vqa_models": 33,
              "activity_ranking": 12, "activity_lambda": 18, "skip_thought_seeds": 3}
  assert len(names) == expected[sweep.name]
  if sweep.name == "zaremba_ptb":
    assert names == ["zaremba_small", "zaremba_medium", "zaremba_large"]
    assert spec.paper_for(sweep.paper, sweep.trials[1]) == {"valid/ppl": 82.2, "test/ppl": 79.7}
  if sweep.name == "activity_ranking":  # each row gets the paper's row, detection and early
    by_name = {t.name: t for t in sweep.trials}
    lstm_s = spec.paper_for(sweep.paper, by_name["lstm_s_cpu,seed=1"])
    assert lstm_s["test/mAP@0.10"] == 0.54 and lstm_s["test/early_mAP@0.80"] == 0.261
    assert spec.paper_for(sweep.paper, by_name["cnn_cpu,seed=0"])["test/mAP@0.50"] == 0.189
  if sweep.name == "phased_lstm":
    assert {t.flags["regime"] for t in sweep.trials} == {"high_res", "low_res", "async"}
  if sweep.name == "gnmt_seeds":
    assert names == [f"seed={s}" for s in range(10)]
  if sweep.name == "gnmt_zero_shot":
    grid = {(d, w, "max", s) for d in ("bos", "language") for w in (0.0, 1.0) for s in range(3)}
    grid |= {("language", 1.0, "mean", s) for s in range(3)}
    grid |= {("language", 10.0, "max", s) for s in range(3)}
    grid |= {("bos", 0.0, "max", s, m) for m in ("robt", "pivot") for s in range(3)}
    grid = {g if len(g) == 5 else g + ("",) for g in grid}
    assert {(t.flags.get("decoder_start", "bos"), t.flags.get("align_loss_weight", 0.0),
             t.flags.get("align_pooling", "max"), t.flags["seed"],
             t.flags.get("synthetic_pairs", "")) for t in sweep.trials} == grid
  if sweep.name == "scheduled_sampling":  # each row gets its own line of Bengio et al.'s table
    by_name = {t.name: t for t in sweep.trials}
    cider = {name: spec.paper_for(sweep.paper, by_name[name]).get("test/CIDEr")
             for name in ("baseline_seed0", "baseline_dropout_seed1", "always_sampling_seed2",
                          "scheduled_sampling_seed0", "uniform_scheduled_sampling_seed0",
                          "baseline_ensemble", "scheduled_sampling_ensemble", "scst_seed0")}
    assert cider == {"baseline_seed0": 0.895, "baseline_dropout_seed1": 0.870,
                     "always_sampling_seed2": 0.497, "scheduled_sampling_seed0": 0.921,
                     "uniform_scheduled_sampling_seed0": 0.909, "baseline_ensemble": 0.957,
                     "scheduled_sampling_ensemble": 0.987, "scst_seed0": None}
    assert by_name["baseline_ensemble"].flags["ensemble"] == [
        f"baseline_seed{s}" for s in range(3)]
    assert names[0] == "encoder" and spec.paper_for(sweep.paper, by_name["encoder"]) == {}
    assert all(t.flags["encoder_from"] == "encoder" and t.flags["freeze_encoder"]
               for t in sweep.trials[1:])
  if sweep.name == "vqa_models":
    by_name = {t.name: t for t in sweep.trials}
    daquar = [t for t in sweep.trials if t.flagfile.endswith("daquar_cpu.flags")]
    assert {t.flags["model"] for t in daquar} == {
        "lstm_q_norm_i", "answer_generation", "question_only", "image_only", "prior"}
    accuracy = {t.flags["model"]: spec.paper_for(sweep.paper, t).get("test/accuracy")
                for t in daquar if t.flags["seed"] == 0}
    assert accuracy["answer_generation"] == 0.1943 and accuracy["lstm_q_norm_i"] is None
    assert len(by_name) == 33
  if sweep.name == "gnmt_ablations":
    assert "bidirectional_bottom=false" in names and "attention=luong_general" in names
    assert "--bidirectional_bottom=false" in sweep.trials[1].flag_args()


# ----------------------------------------------------------------------------- running sweeps


def test_sweep_runs_two_at_a_time_and_a_failure_loses_nothing(tmp_path):
  path = write_sweep(tmp_path, "[{'value': v, 'sleep': 0.3} for v in (1, 2, 'abc', 3)]",
                     header="PAPER = {'value=3': {'score': 6.5}}")
  root = str(tmp_path / "runs")
  proc = launch(f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu",
                "--max_parallel=2", cwd=tmp_path)
  assert proc.returncode == 1, proc.stderr
  assert "3 trial(s) finished, 1 failed: value=abc" in proc.stdout

  rows = {r["trial"]: r for r in read_csv(root)}
  assert list(read_csv(root)[0]) == ["trial", "value", "score", "paper score", "status"]
  assert {n: rows[n]["score"] for n in rows} == {
      "value=1": "2.0", "value=2": "4.0", "value=abc": "", "value=3": "6.0"}
  assert rows["value=3"]["paper score"] == "6.5"
  assert [rows[n]["status"] for n in ("value=1", "value=2", "value=3")] == ["done"] * 3
  assert rows["value=abc"]["status"] == ("failed: FATAL Flags parsing error: flag --value=abc: "
                                         "could not convert string to float: 'abc'")
  markdown = (tmp_path / "runs" / "table.md").read_text()
  assert "| trial | value | score | paper score | status |" in markdown
  assert "| value=3 | 3 | 6 | 6.5 | done |" in markdown
  assert "4 trial(s), 3 done, 1 failed" in markdown

  # Two at a time: never three trials alive together; each ran once, on the CPU.
  spans = [intervals(root, f"value={v}")[0] for v in (1, 2, 3)]
  assert all(s["devices"] is None for s in spans)
  assert max(s["start"] for s in spans) >= min(s["end"] for s in spans)
  # The trial's files: a rerunnable flagfile, the log, the manifest.
  flags_txt = (tmp_path / "runs" / "value=2" / "trial_flags.txt").read_text()
  assert f"--flagfile={tmp_path / 'fake.flags'}\n--value=2\n--sleep=0.3\n" in flags_txt
  assert f"--workdir={root}/value=2" in flags_txt
  assert "devices: None" in (tmp_path / "runs" / "value=1" / "launch.log").read_text()
  manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
  assert manifest["experiment"] == "fake_experiment" and manifest["sweep"] == path
  assert [t["name"] for t in manifest["trials"]] == ["value=1", "value=2", "value=abc", "value=3"]

  # trial_flags.txt reruns the trial by itself.
  rerun = subprocess.run([sys.executable, "-m", "fake_experiment",
                          f"--flagfile={root}/value=2/trial_flags.txt"], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=30)
  assert rerun.returncode == 0, rerun.stderr
  assert runs(root, "value=2") == 2

  # Rerunning the sweep skips the finished trials and retries the failed one only.
  again = launch(f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu", cwd=tmp_path)
  assert again.returncode == 1
  assert "[skip] value=1: done" in again.stdout and "1 trial(s) to run, 3 done" in again.stdout
  assert [runs(root, f"value={v}") for v in (1, 2, 3)] == [1, 2, 1]

  # The table from the command line, and a plot.
  shown = table_cli(root, "--metrics=score", "--plot=score", "--x=value", cwd=tmp_path)
  assert shown.returncode == 0, shown.stderr
  assert "| value=2 | 2 | 4 |  | done |" in shown.stdout
  assert os.path.getsize(os.path.join(root, "score_vs_value.png")) > 1000
  bad = table_cli(root, "--plot=score", "--x=sleep", cwd=tmp_path)
  assert bad.returncode == 2
  assert bad.stderr.strip() == ("error: --x=sleep is not a varied flag of this sweep "
                                "(varied: value)")


def test_table_over_a_flag_gives_mean_and_std(tmp_path):
  """`--over=value` folds each label's trials into one row: the mean and sample standard
  deviation of their scores (2 * value), written out here; a failed trial counts in n only."""
  path = write_sweep(tmp_path, "[{'label': 'x', 'value': v} for v in (1, 2, 4)]"
                               " + [{'label': 'y', 'value': v} for v in (3, 'abc')]")
  root = str(tmp_path / "runs")
  assert launch(f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu",
                "--max_parallel=2", cwd=tmp_path).returncode == 1  # value=abc fails

  shown = table_cli(root, "--metrics=score", "--over=value", "--plot=score", "--x=label",
                    cwd=tmp_path)
  assert shown.returncode == 0, shown.stderr
  scores = [2.0, 4.0, 8.0]
  mean = sum(scores) / 3
  std = (sum((s - mean) ** 2 for s in scores) / (3 - 1)) ** 0.5  # 3.055
  rows = read_csv(root)
  assert list(rows[0]) == ["label", "value", "n", "score", "score std", "score min",
                           "score max", "status"]
  x, y = rows
  assert (x["label"], x["value"], x["n"], x["status"]) == ("x", "1,2,4", "3/3", "3 done")
  assert float(x["score"]) == pytest.approx(mean) and float(x["score std"]) == pytest.approx(std)
  assert (float(x["score min"]), float(x["score max"])) == (2.0, 8.0)
  assert (y["n"], y["score"], y["score std"], y["status"]) == ("1/2", "6.0", "",
                                                              "1 done, 1 failed")
  assert "5 trial(s), 2 row(s) over value: 4 done, 1 failed." in shown.stdout
  assert "| label | value | n | score | status |" in shown.stdout
  assert "| x | 1,2,4 | 3/3 | 4.667 ± 3.055 | 3 done |" in shown.stdout
  assert "| y | 3,abc | 1/2 | 6 | 1 done, 1 failed |" in shown.stdout
  assert os.path.getsize(os.path.join(root, "score_vs_label.png")) > 1000

  bad = table_cli(root, "--over=seed", cwd=tmp_path)
  assert bad.returncode == 2
  assert bad.stderr.strip() == ("error: --over=seed is not a varied flag of this sweep "
                                "(varied: label, value)")
  bad = table_cli(root, "--over=value", "--plot=score", "--x=value", cwd=tmp_path)
  assert bad.returncode == 2
  assert "--x=value is not a varied flag of this sweep besides --over" in bad.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="trials die with the launcher on Linux only")
def test_killed_launcher_resumes_without_redoing_finished_trials(tmp_path):
  path = write_sweep(tmp_path, "[{'value': v, 'sleep': 1.0} for v in range(4)]")
  root = str(tmp_path / "runs")
  args = [f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu", "--max_parallel=2"]
  proc = subprocess.Popen([sys.executable, "-m", "launch.sweep", *args], cwd=tmp_path, env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  names = [f"value={v}" for v in range(4)]
  deadline = time.time() + 40
  # Kill once the first trials finished and the next ones are running.
  while not (any(os.path.exists(os.path.join(root, n, "results.json")) for n in names)
             and sum(runs(root, n) for n in names) >= 3):
    assert time.time() < deadline and proc.poll() is None, "the sweep did not progress"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = [n for n in names if os.path.exists(os.path.join(root, n, "results.json"))]
  started = [n for n in names if runs(root, n) and n not in finished]
  assert finished and started
  # The trials die with their launcher (they get SIGTERM), so the restart never doubles one.
  pids = [int(p) for n in started for p in open(os.path.join(root, n, "runs.txt")).read().split()]
  deadline = time.time() + 10
  while any(_alive(p) for p in pids):
    assert time.time() < deadline, "trials outlived their launcher"
    time.sleep(0.05)
  from launch import table
  status = {r["trial"]: r["status"] for r in table.collect(root)[2]}
  assert {status[n] for n in finished} == {"done"}
  assert {status[n] for n in started} == {"lost: process gone; rerun resumes"}

  again = launch(*args, cwd=tmp_path)
  assert again.returncode == 0, again.stdout + again.stderr
  assert all(os.path.exists(os.path.join(root, n, "results.json")) for n in names)
  assert [runs(root, n) for n in finished] == [1] * len(finished)
  assert [runs(root, n) for n in started] == [2] * len(started)   # resumed in the same workdir
  assert all(r["status"] == "done" for r in read_csv(root))


def test_device_pinning_gives_each_trial_its_own_devices(tmp_path):
  path = write_sweep(tmp_path, "[{'value': v, 'sleep': 0.4} for v in range(4)]")
  root = str(tmp_path / "runs")
  proc = launch(f"--sweep={path}", f"--workdir_root={root}", "--devices=0,1,2,3",
                "--devices_per_trial=2", cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  spans = [s for v in range(4) for s in intervals(root, f"value={v}")]
  assert {s["devices"] for s in spans} == {"0,1", "2,3"}
  for i, a in enumerate(spans):
    for b in spans[i + 1:]:
      if a["start"] < b["end"] and b["start"] < a["end"]:   # at the same time
        assert set(a["devices"].split(",")).isdisjoint(b["devices"].split(","))


@pytest.mark.skipif(sys.platform != "linux", reason="finds the job's process in /proc")
def test_submitit_local_executor_and_requeue(tmp_path):
  pytest.importorskip("submitit")
  path = write_sweep(tmp_path, "[{'value': 1, 'sleep': 1.0}, {'value': 2, 'fail': True}]")
  root = str(tmp_path / "runs")
  proc = subprocess.Popen(
      [sys.executable, "-m", "launch.sweep", f"--sweep={path}", f"--workdir_root={root}",
       "--launcher=submitit_local", "--devices=cpu", "--max_parallel=2", "--time_limit=5"],
      cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  # Preempt the first trial's submitit job as SLURM would: SIGUSR2 to the job's process.
  name = "value=1,sleep=1.0"
  deadline = time.time() + 30
  while not runs(root, name):
    assert time.time() < deadline and proc.poll() is None, "the trial did not start"
    time.sleep(0.05)
  trial_pid = int(open(os.path.join(root, name, "runs.txt")).read().split()[0])
  with open(f"/proc/{trial_pid}/stat") as f:
    job_pid = int(f.read().rsplit(")", 1)[1].split()[1])
  os.kill(job_pid, signal.SIGUSR2)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 1, out
  rows = {r["trial"]: r for r in read_csv(root)}
  assert rows[name]["score"] == "2.0" and rows[name]["status"] == "done"
  assert runs(root, name) == 2   # requeued, and resumed in its workdir
  assert "submitit requeues the job" in open(os.path.join(root, name, "launch.log")).read()
  assert rows["value=2,fail=true"]["status"] == "failed: error: --fail was set"
  assert os.path.isdir(os.path.join(root, ".submitit"))


def test_dry_run_prints_commands_and_creates_nothing(tmp_path):
  path = write_sweep(tmp_path, "product(value=[1, 2], label=['x', 'y'])")
  root = tmp_path / "runs"
  proc = launch(f"--sweep={path}", f"--workdir_root={root}", "--dry_run", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  commands = [l for l in proc.stdout.splitlines() if not l.startswith("#")]
  assert len(commands) == 4
  assert commands[1] == (f"{sys.executable} -m fake_experiment --flagfile={tmp_path}/fake.flags "
                         f"--value=1 --label=y --workdir={root}/value=1,label=y")
  assert not root.exists()
  # --only selects trials; GPUs come from `nvidia-smi -L`, one per trial by default.
  env = fake_commands(tmp_path, **{"nvidia-smi": "echo 'GPU 0: H100 (UUID: a)'; "
                                                 "echo 'GPU 1: H100 (UUID: b)'"})
  only = launch(f"--sweep={path}", f"--workdir_root={root}", "--dry_run", "--only=value=2,*",
                cwd=tmp_path, env=env)
  assert "slots: CUDA_VISIBLE_DEVICES=0; CUDA_VISIBLE_DEVICES=1" in only.stdout
  assert [l.rsplit("/", 1)[1] for l in only.stdout.splitlines() if not l.startswith("#")] == [
      "value=2,label=x", "value=2,label=y"]
  assert not root.exists()


def test_slurm_submits_one_job_array(tmp_path):
  pytest.importorskip("submitit")
  env = fake_commands(tmp_path, srun="exit 1",
                      sbatch=f"cp \"$1\" {tmp_path}/sbatch.sh; echo 'Submitted batch job 4242'")
  path = write_sweep(tmp_path, "[{'value': v} for v in (1, 2, 3)]")
  root = str(tmp_path / "runs")
  proc = launch(f"--sweep={path}", f"--workdir_root={root}", "--launcher=slurm",
                "--partition=gpu", "--gpus_per_trial=2", "--time_limit=1:30:00",
                "--max_parallel=2", "--slurm_additional=account=lab", cwd=tmp_path, env=env)
  assert proc.returncode == 0, proc.stderr
  script = (tmp_path / "sbatch.sh").read_text()
  for line in ("--array=0-2%2", "--gpus-per-node=2", "--partition=gpu", "--time=90",
               "--account=lab", "--signal=USR2@90"):
    assert f"#SBATCH {line}\n" in script
  with open(os.path.join(root, "slurm_jobs.json")) as f:
    assert json.load(f) == {"value=1": "4242_0", "value=2": "4242_1", "value=3": "4242_2"}
  assert os.path.exists(os.path.join(root, "value=3", "trial_flags.txt"))
  shown = table_cli(root, cwd=tmp_path)
  assert shown.stdout.count("| pending |") == 3
  # A rerun submits only the trials whose job squeue no longer lists.
  env = fake_commands(tmp_path, squeue="echo '4242_1 RUNNING'; echo '4242_2 COMPLETED'",
                      sbatch=f"cp \"$1\" {tmp_path}/sbatch.sh; echo 'Submitted batch job 4300'")
  again = launch(f"--sweep={path}", f"--workdir_root={root}", "--launcher=slurm", cwd=tmp_path,
                 env=env)
  assert again.returncode == 0, again.stderr
  assert "[skip] value=2: SLURM job 4242_1 is queued or running" in again.stdout
  with open(os.path.join(root, "slurm_jobs.json")) as f:
    assert json.load(f) == {"value=1": "4300_0", "value=2": "4242_1", "value=3": "4300_1"}
  if shutil.which("sbatch"):
    return
  # Without SLURM's commands: one line, nothing written.
  proc = launch(f"--sweep={path}", f"--workdir_root={tmp_path / 'other'}", "--launcher=slurm",
                cwd=tmp_path)
  assert proc.returncode == 2 and "sbatch and srun not found" in proc.stderr
  assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("body, header, message", [
    (None, "", "defines no trials() function"),
    ("[{'value': 1}, {'valu': 2}]", "", "trial 'valu=2': unknown flag --valu for fake_experiment "
     "(did you mean --value?)"),
    ("[{'value': 1}, {'value': 1}]", "", "trials 0 and 1 have the same name 'value=1'"),
    ("[{'value': 1, 'workdir': '/x'}]", "", "trial 0 sets workdir"),
    ("[{'value': 1}]", "PAPER = {'value=2': {'score': 4}}", "PAPER key 'value=2' matches no trial"),
    ("[{'value': 1, 'flagfile': 'nope.flags'}]", "", "flagfile nope.flags not found"),
])
def test_bad_sweeps_fail_before_anything_starts(tmp_path, body, header, message):
  path = write_sweep(tmp_path, body or "[]", header=header)
  if body is None:
    with open(path) as f:
      text = f.read().split("def trials")[0]
    with open(path, "w") as f:
      f.write(text)
  root = tmp_path / "runs"
  proc = launch(f"--sweep={path}", f"--workdir_root={root}", "--devices=cpu", cwd=tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
  assert message in proc.stderr
  assert not root.exists()


def test_bad_launcher_flags(tmp_path):
  path = write_sweep(tmp_path, "[{'value': 1}]")
  root = tmp_path / "runs"
  for args, message in [
      (["--devices=0,1", "--devices_per_trial=3"], "--devices_per_trial=3 but only 2 device(s)"),
      (["--set=value=3"], "--set=value=... conflicts with trial 'value=1'"),
      (["--set=sleeep=1"], "--set: unknown flag --sleeep for fake_experiment"),
      (["--only=nothing*"], "--only=nothing* matches no trial"),
  ]:
    proc = launch(f"--sweep={path}", f"--workdir_root={root}", *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert not root.exists()
  missing = table_cli(str(root), cwd=tmp_path)
  assert missing.returncode == 2 and "holds no sweep.json" in missing.stderr
