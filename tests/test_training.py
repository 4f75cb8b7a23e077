"""The shared trainer: resume, checkpoint fallback, NaN stops, ownership, sharding."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from rnn_jax import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _toy_problem(nan_at_step=None):
  """Linear regression: params w [3], batches a pure function of the step."""
  optimizer = optax.sgd(0.1)

  def loss_fn(params, extra, batch, key):
    noise = 1e-3 * jax.random.normal(key, batch["y"].shape)  # uses the per-step key
    loss = jnp.mean((batch["x"] @ params["w"] - batch["y"] + noise) ** 2)
    if nan_at_step is not None:
      loss = jnp.where(batch["step"][0] >= nan_at_step, jnp.nan, loss)
    return loss, (extra, {})

  def batch_at(step):
    rng = np.random.default_rng(step)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32),
            "step": np.full((8,), step, np.int32)}

  state = training.state.create_state({"w": jnp.zeros(3)}, optimizer)
  return state, training.make_train_step(loss_fn, optimizer), batch_at


def _fit(workdir, num_steps, nan_at_step=None, **kwargs):
  state, step, batch_at = _toy_problem(nan_at_step)
  return training.fit(workdir=workdir, experiment="toy", state=state, train_step=step,
                      batch_at=batch_at, num_steps=num_steps, key=jax.random.key(0),
                      checkpoint_every=kwargs.pop("checkpoint_every", 5), log_every=5,
                      progress=False, **kwargs)


def test_fit_resumes_exactly(tmp_path):
  full = _fit(str(tmp_path / "full"), 20)
  half = _fit(str(tmp_path / "split"), 10)
  assert int(half.step) == 10
  resumed = _fit(str(tmp_path / "split"), 20)
  np.testing.assert_array_equal(full.params["w"], resumed.params["w"])
  rows = lambda d: (tmp_path / d / "metrics.jsonl").read_text().splitlines()
  strip = lambda r: {k: v for k, v in json.loads(r).items() if "per_s" not in k}
  assert [strip(r) for r in rows("full")] == [strip(r) for r in rows("split")]
  assert training.Checkpointer(str(tmp_path / "full"), "toy").steps()[-1] == 20


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
  with pytest.raises(training.NonFiniteError, match=r"not finite at step 8 \(loss nan.*step 5"):
    _fit(str(tmp_path), 20, nan_at_step=7)
  checkpointer = training.Checkpointer(str(tmp_path), "toy")
  assert checkpointer.steps() == [5]
  state, _, _ = _toy_problem()
  restored, meta = checkpointer.restore_latest(state)
  assert meta["step"] == 5 and np.all(np.isfinite(restored.params["w"]))


def test_corrupted_latest_checkpoint_falls_back(tmp_path, capsys):
  _fit(str(tmp_path), 15)
  checkpointer = training.Checkpointer(str(tmp_path), "toy")
  assert checkpointer.steps() == [5, 10, 15]
  # Damage every data file of the newest checkpoint.
  for root, _, files in os.walk(tmp_path / "checkpoints" / "15" / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  state, _, _ = _toy_problem()
  restored, meta = checkpointer.restore_latest(state)
  assert meta["step"] == 10 and int(restored.step) == 10
  assert "checkpoint at step 15 is unreadable" in capsys.readouterr().out


def test_workdir_of_another_experiment_is_refused(tmp_path):
  _fit(str(tmp_path), 5)
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  state, step, batch_at = _toy_problem()
  with pytest.raises(training.WorkdirConflictError, match="experiment 'toy', not 'other'"):
    training.fit(workdir=str(tmp_path), experiment="other", state=state, train_step=step,
                 batch_at=batch_at, num_steps=10, key=jax.random.key(0), progress=False)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_metrics_writer_drops_rows_after_resume_step(tmp_path):
  writer = training.MetricsWriter(str(tmp_path), tensorboard=False)
  for step in (5, 10, 15):
    writer.write(step, {"loss": float(step), "bad": float("nan")})
  writer.write_results({"final": np.float32(1.5), "dirs": ["a-b"]})
  resumed = training.MetricsWriter(str(tmp_path), resume_step=11, tensorboard=False)
  rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [5, 10] and rows[0]["bad"] == "nan"
  assert json.loads((tmp_path / "results.json").read_text()) == {"final": 1.5, "dirs": ["a-b"]}
  del resumed


SHARDING_CHECK = textwrap.dedent("""
    import jax, numpy as np
    from experiments.lm import LMConfig, model as model_lib, train as train_lib
    from rnn_jax import training
    assert len(jax.devices()) == 8, jax.devices()
    config = LMConfig(hidden_size=16, num_layers=2, batch_size=8, bptt=5, dropout=0.3)
    model = model_lib.build(config, 50)
    optimizer = train_lib.make_optimizer(config, 10)
    step = jax.jit(training.make_train_step(train_lib.make_loss_fn(config, model), optimizer))
    rng = np.random.default_rng(0)
    batches = [{"inputs": rng.integers(0, 50, (8, 5), dtype=np.int32),
                "targets": rng.integers(0, 50, (8, 5), dtype=np.int32),
                "reset": np.asarray(i == 0)} for i in range(3)]
    results = {}
    for n in (1, 2, 4, 8):
      mesh = training.data_mesh(n)
      state = training.place_state(training.state.create_state(
          model.init(jax.random.key(0)), optimizer, extra=model.initial_carry(8)), mesh)
      for i, batch in enumerate(batches):
        state, metrics = step(state, training.place_batch(batch, mesh), jax.random.key(i))
      assert len(state.params["embed"].sharding.device_set) == n
      assert state.extra[0].h.sharding.is_equivalent_to(
          training.parallel.batch_sharded(mesh), 2), state.extra[0].h.sharding
      results[n] = jax.device_get(state)
    for n in (2, 4, 8):
      for a, b in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[n])):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    print("SHARDED_OK")
""")


def test_sharded_step_equals_single_device_step():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SHARDING_CHECK], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert "SHARDED_OK" in out.stdout, out.stderr[-3000:]


def test_host_devices_split_the_cpu_before_the_backend_starts():
  """`--host_devices` (experiments.common.set_host_devices) makes N CPU devices, and says
  so clearly when the jax backend has already started (too late to change)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  early = ("from experiments import common; common.set_host_devices(2); import jax; "
           "print('DEVICES', len(jax.devices()))")
  out = subprocess.run([sys.executable, "-c", early], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert "DEVICES 2" in out.stdout, out.stderr[-2000:]
  late = ("import jax; jax.numpy.zeros(1).block_until_ready(); from experiments import common; "
          "common.set_host_devices(2)")
  out = subprocess.run([sys.executable, "-c", late], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode != 0 and "--host_devices: the jax backend has already started" in out.stderr


def test_batch_must_split_over_devices():
  mesh = training.data_mesh(1)
  training.parallel.check_divisible(3, mesh)
  with pytest.raises(ValueError, match="num_devices"):
    training.data_mesh(len(jax.devices()) + 1)


def test_warmup_decay_schedule_by_hand():
  import math  # noqa: PLC0415
  from rnn_jax.training.optim import warmup_decay_schedule  # noqa: PLC0415
  lr, warmup, n = 0.2, 4, 14
  cosine = warmup_decay_schedule(lr, n, warmup_steps=warmup, decay="cosine")
  constant = warmup_decay_schedule(lr, n, warmup_steps=warmup)
  for step in range(n + 1):
    if step < warmup:  # lr / w at step 0, rising linearly to lr at step w
      expected = lr / warmup + (lr - lr / warmup) * step / warmup
      assert float(constant(step)) == pytest.approx(expected, rel=1e-6)
    else:
      expected = 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / (n - warmup)))
      assert float(constant(step)) == pytest.approx(lr, rel=1e-6)
    assert float(cosine(step)) == pytest.approx(expected, rel=1e-6, abs=1e-9), step
  assert float(warmup_decay_schedule(lr, n, decay="cosine")(0)) == pytest.approx(lr)
  with pytest.raises(ValueError, match="decay"):
    warmup_decay_schedule(lr, n, decay="linear")
