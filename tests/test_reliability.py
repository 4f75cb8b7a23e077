"""Faults injected for real into training runs: kills, signals, damaged files, bad updates.

Each test names the fault it injects; RELIABILITY.md lists them with what the
user sees and what is lost. The process-level tests run the long_range
experiment (the adding task at a tiny size) as a user would, from the command
line, and compare every line of metrics.jsonl and results.json (times aside)
with an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import common
from experiments.long_range import LongRangeConfig
from rnn_jax import training
from rnn_jax.training import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- in process


def _toy(spike_at=None, fail_at=None):
  """Linear regression whose batches are a pure function of the step.

  `spike_at`: at that step the loss is scaled by 1e38, so the gradient
  overflows to inf (a gradient spike). `fail_at`: batch_at raises there (the
  data pipeline dies mid-run).
  """
  optimizer = optax.sgd(0.1)

  def loss_fn(params, extra, batch, key):
    noise = 1e-3 * jax.random.normal(key, batch["y"].shape)
    loss = jnp.mean((batch["x"] @ params["w"] - batch["y"] + noise) ** 2)
    loss = loss * batch["scale"][0]
    return loss, (extra, {"mse": loss})

  def batch_at(step):
    if step == fail_at:
      raise RuntimeError(f"data pipeline died at step {step}")
    rng = np.random.default_rng(step)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    scale = 1e38 if step + 1 == spike_at else 1.0
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32),
            "scale": np.full((8,), scale, np.float32)}

  state = training.state.create_state({"w": jnp.zeros(3)}, optimizer)
  return state, training.make_train_step(loss_fn, optimizer), batch_at


def _fit(workdir, num_steps, *, spike_at=None, fail_at=None, checkpoint_every=5,
         log_every=5, **kwargs):
  state, step, batch_at = _toy(spike_at, fail_at)
  return training.fit(workdir=str(workdir), experiment="toy", state=state, train_step=step,
                      batch_at=batch_at, num_steps=num_steps, key=jax.random.key(0),
                      checkpoint_every=checkpoint_every, log_every=log_every, progress=False,
                      **kwargs)


def _rows(workdir, name="metrics.jsonl"):
  """metrics.jsonl without throughput (the only thing that differs between runs)."""
  with open(os.path.join(workdir, name)) as f:
    return [{k: v for k, v in json.loads(line).items() if "per_s" not in k}
            for line in f if line.strip()]


def _damage_garbage(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")


def _damage_truncate(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _damage_empty(step_dir):
  import shutil
  shutil.rmtree(step_dir)
  os.makedirs(step_dir)


@pytest.mark.parametrize("damage", [_damage_garbage, _damage_truncate, _damage_empty],
                         ids=["garbage", "truncated", "empty_dir"])
def test_damaged_latest_checkpoint_is_moved_aside_and_the_run_finishes(tmp_path, capsys, damage):
  """Item 1: the newest step directory damaged between runs. Before the fix the fallback
  resumed, then orbax raised StepAlreadyExistsError on reaching that step again."""
  full = tmp_path / "full"
  _fit(full, 20)
  run = tmp_path / "run"
  with pytest.raises(RuntimeError, match="data pipeline died at step 17"):
    _fit(run, 20, fail_at=17)
  assert training.Checkpointer(str(run), "toy").steps() == [5, 10, 15]
  damage(str(run / "checkpoints" / "15"))
  final = _fit(run, 20)
  out = capsys.readouterr().out
  assert "checkpoint at step 15 is unreadable" in out and "moved to" in out
  assert os.path.isdir(run / "checkpoints" / "corrupt" / "15")
  assert training.Checkpointer(str(run), "toy").steps() == [10, 15, 20]
  np.testing.assert_array_equal(final.params["w"], training.Checkpointer(
      str(full), "toy").restore_latest(_toy()[0])[0].params["w"])
  assert _rows(run) == _rows(full)


def test_gradient_spike_is_not_applied_saved_or_called_good(tmp_path, capsys):
  """Item 2: a gradient that overflows at step 8. The update is not applied, nothing past the
  last finite checkpoint is saved, the error names the step; a rerun allowing one skip
  finishes and logs the skipped batch."""
  with pytest.raises(training.NonFiniteError, match=(
      r"not finite at step 8 \(loss [^,]+, grad_norm inf\).*last checkpoint \(step 5\).*"
      r"--skip_nonfinite_updates=1")):
    _fit(tmp_path, 20, spike_at=8)
  checkpointer = training.Checkpointer(str(tmp_path), "toy")
  assert checkpointer.steps() == [5]
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(
      checkpointer.restore_latest(_toy()[0])[0]))
  # The same spike at a checkpoint step: still nothing non-finite on disk.
  with pytest.raises(training.NonFiniteError, match="not finite at step 10"):
    _fit(tmp_path / "at_ckpt", 20, spike_at=10)
  assert training.Checkpointer(str(tmp_path / "at_ckpt"), "toy").steps() == [5]
  # Rerun with one skip allowed: it finishes, the skipped step is logged, and it
  # stays skipped (counted) across a further resume.
  final = _fit(tmp_path, 20, spike_at=8, skip_nonfinite_updates=1)
  assert int(final.step) == 20 and np.all(np.isfinite(final.params["w"]))
  assert "step 8: not finite" in capsys.readouterr().out
  rows = _rows(tmp_path)
  assert {"step": 8, "train/skipped_nonfinite_update": 1} in rows
  # The window that held the skipped step averages the other four steps only.
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
  meta = training.Checkpointer(str(tmp_path), "toy").restore_latest(_toy()[0])[1]
  assert meta["skipped_nonfinite_updates"] == 1


def test_a_nonfinite_state_is_never_saved(tmp_path):
  """Item 2, the save side: whatever calls `save`, NaN or inf params are refused."""
  state = training.state.create_state({"w": jnp.array([1.0, jnp.nan])}, optax.sgd(0.1))
  checkpointer = training.Checkpointer(str(tmp_path), "toy")
  with pytest.raises(training.NonFiniteError, match="state at step 0 holds NaN or inf"):
    checkpointer.save(state)
  checkpointer.wait()
  assert checkpointer.steps() == []
  checkpointer.close()


def test_guarded_step_keeps_the_old_state_on_a_bad_batch():
  """The guard inside the jitted step: an overflowing gradient leaves params and optimizer
  state as they were (with Adam, whose moments would otherwise be poisoned too)."""
  optimizer = optax.adam(0.1)

  def loss_fn(params, extra, batch, key):
    del key
    return jnp.sum(params["w"] ** 2) * batch, (extra, {})

  step = jax.jit(training.make_train_step(loss_fn, optimizer))
  state = training.state.create_state({"w": jnp.ones(3)}, optimizer)
  good, metrics = step(state, jnp.float32(1.0), jax.random.key(0))
  assert metrics["finite"] == 1.0 and not np.allclose(good.params["w"], 1.0)
  bad, metrics = step(good, jnp.float32(1e38), jax.random.key(1))
  assert metrics["finite"] == 0.0 and int(bad.step) == 2
  for a, b in zip(jax.tree_util.tree_leaves((good.params, good.opt_state)),
                  jax.tree_util.tree_leaves((bad.params, bad.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_resume_inside_a_log_window_logs_what_an_uninterrupted_run_logs(tmp_path):
  """Item 7: checkpoint_every=3, log_every=5; the run dies at step 8 and resumes from the
  checkpoint at 6, inside the window 6..10. Before the fix the row at 10 averaged steps
  7..10 only."""
  _fit(tmp_path / "full", 20, checkpoint_every=3)
  with pytest.raises(RuntimeError, match="died at step 7"):
    _fit(tmp_path / "run", 20, checkpoint_every=3, fail_at=7)
  assert training.Checkpointer(str(tmp_path / "run"), "toy").steps()[-1] == 6
  _fit(tmp_path / "run", 20, checkpoint_every=3)
  assert _rows(tmp_path / "run") == _rows(tmp_path / "full")


def test_a_partial_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
  """Item 4: the half-written last line a kill or a full disk leaves; before the fix every
  rerun crashed in json.loads. The dropped rows of a resume are kept in a side file."""
  writer = training.MetricsWriter(str(tmp_path), tensorboard=False)
  for step in (5, 10, 15):
    writer.write(step, {"loss": float(step)})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 20, "train/lo')
  training.MetricsWriter(str(tmp_path), resume_step=11, tensorboard=False)
  out = capsys.readouterr().out
  assert "metrics.jsonl: dropped its last line, which did not parse" in out
  assert [r["step"] for r in _rows(tmp_path)] == [5, 10]
  assert [r["step"] for r in _rows(tmp_path, "metrics.dropped.jsonl")] == [15]


def test_results_json_is_replaced_whole_or_not_at_all(tmp_path):
  """Item 4: a write that fails half-way (here a value JSON cannot hold) leaves the previous
  results.json as it was, and no temporary file behind."""
  training.metrics.write_results(str(tmp_path), {"bleu": 1.5})
  with pytest.raises(TypeError):
    training.metrics.write_results(str(tmp_path), {"bleu": 2.0, "bad": {"x": object()}})
  assert json.loads((tmp_path / "results.json").read_text()) == {"bleu": 1.5}
  assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_changed_flags_are_refused_naming_them_and_forcing_is_recorded(tmp_path):
  """Item 3: before the fix a changed learning rate resumed a mixed run silently."""
  config = LongRangeConfig(hidden_size=8, learning_rate=1e-3, max_steps=10)
  common.prepare_workdir("long_range", config, str(tmp_path), force_config_change=False)
  # Flags that extend or observe a run may change.
  extended = LongRangeConfig(hidden_size=8, learning_rate=1e-3, max_steps=20, log_every=7,
                             eval_every=3, checkpoint_every=5, progress=False,
                             skip_nonfinite_updates=2, data_dir="/elsewhere")
  common.prepare_workdir("long_range", extended, str(tmp_path), force_config_change=False)
  changed = LongRangeConfig(hidden_size=16, learning_rate=0.5, max_steps=20)
  with pytest.raises(common.UserError, match=(
      r"was trained with other flags: --hidden_size=8 \(now 16\), --learning_rate=0.001 "
      r"\(now 0.5\); .*--force_config_change")):
    common.prepare_workdir("long_range", changed, str(tmp_path), force_config_change=False)
  assert "--hidden_size=8" in (tmp_path / "flags.txt").read_text()  # not overwritten
  common.prepare_workdir("long_range", changed, str(tmp_path), force_config_change=True)
  record = json.loads((tmp_path / "config.json").read_text())
  assert record["changes"][-1]["flags"] == {"hidden_size": {"was": 8, "now": 16},
                                            "learning_rate": {"was": 1e-3, "now": 0.5}}
  assert record["fingerprinted"]["hidden_size"] == 16
  assert "max_steps" not in record["fingerprinted"]
  assert set(common.may_change_flags(LongRangeConfig)) >= {
      "max_steps", "eval_every", "log_every", "checkpoint_every", "progress"}
  # A field added to the config since the workdir was written ran as its default: a
  # record without it (an older run) accepts the default and refuses anything else.
  del record["fingerprinted"]["forget_bias"]
  (tmp_path / "config.json").write_text(json.dumps(record))
  common.prepare_workdir("long_range", changed, str(tmp_path), force_config_change=False)
  (tmp_path / "config.json").write_text(json.dumps(record))
  with pytest.raises(common.UserError, match=r"--forget_bias=1.0 \(now 2.0\)"):
    common.prepare_workdir("long_range", dataclasses.replace(changed, forget_bias=2.0),
                           str(tmp_path), force_config_change=False)


def _lock_holder(workdir):
  """Another process that has taken `workdir`'s lock (and sleeps a minute holding it)."""
  code = ("import sys, time; from rnn_jax.training import workdir; workdir.lock(sys.argv[1]); "
          "print('LOCKED', flush=True); time.sleep(60)")
  holder = subprocess.Popen([sys.executable, "-c", code, str(workdir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  line = holder.stdout.readline().strip()
  if line != "LOCKED":
    holder.kill()
    holder.wait()
    raise AssertionError(f"the lock holder did not start: {line!r}")
  return holder


def test_the_workdir_lock_is_taken_over_from_a_dead_holder(tmp_path):
  """Item 6, the lock itself: held by a live process, refused naming it; held by one that
  was SIGKILLed, taken over."""
  holder = _lock_holder(tmp_path)
  try:
    with pytest.raises(workdir_lib.WorkdirBusyError, match=rf"in use by pid {holder.pid} on host"):
      workdir_lib.lock(str(tmp_path))
    held = (tmp_path / "train.lock").read_text()
    with pytest.raises(workdir_lib.WorkdirBusyError, match=rf"in use by pid {holder.pid} on host"):
      workdir_lib.check_free(str(tmp_path))
    assert (tmp_path / "train.lock").read_text() == held  # the check writes nothing
  finally:
    holder.kill()
    holder.wait()
  workdir_lib.check_free(str(tmp_path))  # a dead holder leaves it free
  workdir_lib.lock(str(tmp_path))  # the dead holder's lock is free
  try:
    assert json.loads((tmp_path / "train.lock").read_text())["pid"] == os.getpid()
  finally:
    workdir_lib.unlock(str(tmp_path))


def test_a_busy_workdir_is_refused_before_its_checkpoints_are_read(tmp_path, monkeypatch):
  """Item 6, the race CI met: the second process listed the first's checkpoints while the
  first deleted an old one (max_to_keep), and orbax's FileNotFoundError came out instead of
  the one-line refusal. The busy check now comes before any checkpoint is read."""
  (tmp_path / "checkpoints").mkdir()
  holder = _lock_holder(tmp_path)

  def read_checkpoints(*args, **kwargs):
    raise FileNotFoundError("a checkpoint the holder just deleted")

  monkeypatch.setattr(training, "Checkpointer", read_checkpoints)
  try:
    with pytest.raises(common.UserError, match=rf"in use by pid {holder.pid} on host"):
      common.prepare_workdir("long_range", LongRangeConfig(), str(tmp_path),
                             force_config_change=False)
  finally:
    holder.kill()
    holder.wait()


# ----------------------------------------------------------------------------- whole runs

# The adding task, tiny: 300 steps; checkpoint_every=6 is not a multiple of log_every=4.
STEPS = 300
RUN = ["--task=adding", "--seq_len=8", "--hidden_size=8", "--batch_size=16",
       f"--max_steps={STEPS}", "--log_every=4", "--checkpoint_every=6", "--eval_every=50",
       "--num_valid=50", "--num_test=50", "--noprogress"]
TIMES = ("wall_time_s",)
# Every run of this module compiles the same programs: share them through JAX's persistent
# compilation cache (half of a tiny run's time is compiling).
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rnn_jax_test_cache_{os.getuid()}")


def _command(workdir, *extra):
  return [sys.executable, "-m", "experiments.long_range", *RUN, *extra, f"--workdir={workdir}"]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
              JAX_COMPILATION_CACHE_DIR=_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _run(workdir, *extra):
  return subprocess.run(_command(workdir, *extra), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=300)


def _start(workdir, *extra):
  return subprocess.Popen(_command(workdir, *extra), cwd=REPO, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _logged_step(workdir) -> int:
  """The newest step in metrics.jsonl (a kill can leave its last line half-written)."""
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      lines = f.read().splitlines()
  except OSError:
    return -1
  for line in reversed(lines):
    try:
      return json.loads(line)["step"]
    except ValueError:
      continue
  return -1


def _wait_for_step(proc, workdir, step, timeout=240):
  """Waits until the run has logged `step` (or ended); returns whether it is still running."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      return False
    if _logged_step(workdir) >= step:
      return True
    time.sleep(0.005)
  raise TimeoutError(f"the run did not reach step {step}")


def _results(workdir):
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  return {k: v for k, v in results.items() if k not in TIMES}


def _assert_same(got, want):
  """The same rows (steps, names, order) and values to 1e-6 relative. Exact equality holds on
  an idle machine; once in about six runs on a loaded one, a value differed in float32's
  last bit (6e-8 relative) after a resume. Anything lost or counted twice (a step, a window
  entry, an eval) moves a value by 1e-3 or more."""
  assert [sorted(r) for r in got] == [sorted(r) for r in want]
  assert [r.get("step") for r in got] == [r.get("step") for r in want]
  for g, w in zip(got, want):
    for k in w:
      if isinstance(w[k], float):
        assert g[k] == pytest.approx(w[k], rel=1e-6, abs=1e-12), (w.get("step"), k)
      else:
        assert g[k] == w[k], (w.get("step"), k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def test_sigkill_at_random_steps_loses_nothing(tmp_path, uninterrupted):
  """The main fault: SIGKILL at four random steps (seeded), each followed by a rerun of the
  same command; every line of metrics.jsonl and results.json (times aside) equals the
  uninterrupted run's. Kills land mid-step, mid-save and mid-write."""
  rng = np.random.default_rng(20)
  targets = sorted(rng.choice(np.arange(8, STEPS - 8), size=4, replace=False).tolist())
  workdir = tmp_path / "killed"
  killed_at = []
  for target in targets:
    proc = _start(workdir)
    running = _wait_for_step(proc, workdir, target)
    if running:
      time.sleep(float(rng.uniform(0, 0.05)))  # land anywhere inside a step or a save
      proc.send_signal(signal.SIGKILL)
      killed_at.append(_logged_step(workdir))
    proc.wait()
    proc.stdout.close()
  assert len(killed_at) >= 3, killed_at  # the kills landed inside the run
  assert not os.path.exists(workdir / "results.json")
  out = _run(workdir)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  assert "Resuming from the checkpoint at step" in out.stdout
  _assert_same(_rows(workdir), _rows(uninterrupted))
  _assert_same([_results(workdir)], [_results(uninterrupted)])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_preemption_saves_the_current_step_and_exits_75(tmp_path, uninterrupted, signum):
  """Item 5: SLURM's requeue (SIGTERM) or Ctrl-C (SIGINT) mid-run. Before the fix the work
  since the last checkpoint was lost. Now: a checkpoint at the step the signal arrived,
  exit status 75, and a rerun that logs exactly what the uninterrupted run logs."""
  workdir = tmp_path / "preempted"
  proc = _start(workdir)
  assert _wait_for_step(proc, workdir, 101)
  proc.send_signal(signum)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == training.PREEMPTED_EXIT_CODE == 75, output[-3000:]
  name = signal.Signals(signum).name
  assert f"got {name}: saving a checkpoint after this step" in output
  steps = training.Checkpointer(str(workdir), "long_range").steps()
  assert f"saved a checkpoint at step {steps[-1]}" in output
  assert steps[-1] >= 101  # the step the signal arrived at, whatever checkpoint_every says
  assert not os.path.exists(workdir / "results.json")
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"Resuming from the checkpoint at step {steps[-1]}" in out.stdout
  _assert_same(_rows(workdir), _rows(uninterrupted))
  _assert_same([_results(workdir)], [_results(uninterrupted)])


def test_a_second_process_on_the_workdir_is_refused(tmp_path):
  """Item 6: two processes training into one workdir. Before the fix both ran, interleaving
  checkpoints and metrics. The second now exits 1 with one line naming the first."""
  workdir = tmp_path / "shared"
  first = _start(workdir, "--max_steps=100000")
  try:
    assert _wait_for_step(first, workdir, 8)
    second = _run(workdir, "--max_steps=100000")
    assert second.returncode == 1
    errors = [l for l in second.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and f"is in use by pid {first.pid} on host" in errors[0], \
        second.stderr[-2000:]
    assert first.poll() is None  # the first goes on untouched
  finally:
    first.kill()
    first.wait()
    first.stdout.close()


def test_changed_flags_on_the_command_line_are_refused(tmp_path, uninterrupted):
  """Item 3 from the command line: a changed hidden size used to restart at step 0 (the
  checkpoints no longer fit), wipe metrics.jsonl and crash at the old run's first
  checkpoint step; a changed learning rate resumed a mixed run."""
  import shutil
  workdir = tmp_path / "changed"
  shutil.copytree(uninterrupted, workdir)
  before = (workdir / "metrics.jsonl").read_text()
  out = _run(workdir, "--hidden_size=9", "--learning_rate=0.01")
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      f"error: --workdir={workdir} was trained with other flags: --hidden_size=8 (now 9), "
      "--learning_rate=0.001 (now 0.01); rerun with the same flags, choose another --workdir, "
      "or pass --force_config_change to go on with the new ones")
  assert (workdir / "metrics.jsonl").read_text() == before
  # An extension is not a change: 12 more steps resume from the last checkpoint.
  out = _run(workdir, f"--max_steps={STEPS + 12}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"Resuming from the checkpoint at step {STEPS}" in out.stdout
  assert json.loads((workdir / "results.json").read_text())["step"] == STEPS + 12
