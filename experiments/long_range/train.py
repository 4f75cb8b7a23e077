"""`train_and_evaluate(config, workdir)`: the long-range experiment, callable from tests."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from experiments import common
from experiments.common import UserError
from experiments.long_range import model as model_lib
from experiments.long_range import plots, tasks
from rnn_jax import diagnostics, training

TRAINING_TASKS = ("adding", "copy", "frequency")
PROBE_EXAMPLES = 100


def check_config(config) -> None:
  if config.task not in (*TRAINING_TASKS, "gradient_flow"):
    raise UserError(f"--task: expected adding, copy, frequency or gradient_flow, got {config.task!r}")
  cells = config.probe_cells if config.task == "gradient_flow" else [config.cell]
  for cell in cells:
    if cell not in model_lib.CELLS:
      flag = "--probe_cells" if config.task == "gradient_flow" else "--cell"
      raise UserError(f"{flag}: expected one of {', '.join(model_lib.CELLS)}, got {cell!r}")
  if config.task != "frequency" and config.seq_len < 2:
    raise UserError(f"--seq_len: expected at least 2, got {config.seq_len}")
  if config.task == "frequency" and config.regime not in tasks.REGIMES:
    raise UserError(f"--regime: expected one of {', '.join(tasks.REGIMES)}, got {config.regime!r}")
  if config.time_delta_input and config.task != "frequency":
    raise UserError("--time_delta_input: only the frequency task has irregular times")
  for name in ("hidden_size", "batch_size", "train_steps", "num_valid", "num_test",
               "num_symbols", "copy_len", "probe_seeds"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected one of {', '.join(training.optim.OPTIMIZERS)}, "
                    f"got {config.optimizer!r}")
  if not 0 < config.period_min <= config.period_max:
    raise UserError(f"--period_min/--period_max: expected 0 < min <= max, got "
                    f"{config.period_min}, {config.period_max}")
  if not 0 < config.r_on <= 1:
    raise UserError(f"--r_on: expected a ratio in (0, 1], got {config.r_on}")


def _eval_set(config, split: str, n: int) -> dict[str, np.ndarray]:
  return model_lib.make_batch(config, tasks.rng_for(config.seed, split), n)


def _chunks(batch, size: int):
  n = len(next(iter(batch.values())))
  for lo in range(0, n, size):
    yield {k: v[lo:lo + size] for k, v in batch.items()}, min(size, n - lo)


def make_loss_fn(model):
  """The trainer's `loss_fn(params, extra, batch, key)`: the task loss, nothing carried over."""

  def loss_fn(params, extra, batch, key):
    del key  # the models draw no randomness
    loss, metrics = model.loss(model.apply(params, batch, training=True), batch)
    return loss, (extra, metrics)

  return loss_fn


def make_evaluator(config, model):
  """`evaluate(params, examples, prefix) -> {prefix/metric: mean}` over fixed examples."""

  @jax.jit
  def metrics_of(params, batch):
    return model.loss(model.apply(params, batch), batch)[1]

  def evaluate(params, examples, prefix):
    totals, count = {}, 0
    for chunk, n in _chunks(examples, 500):
      for k, v in metrics_of(params, chunk).items():
        totals[k] = totals.get(k, 0.0) + float(v) * n
      count += n
    return {f"{prefix}/{k}": v / count for k, v in totals.items()}

  return evaluate


def probe(config, model, params, batch) -> np.ndarray:
  """`[T]` mean ||dLoss/dh_t|| of the task's loss on `batch`."""
  feats = model_lib.features(config, batch)

  def loss_fn(ys, final):
    return model.loss(model.readout(params, ys, final), batch)[0]

  grads = diagnostics.hidden_state_gradients(model.cell, params["cell"], feats["xs"], loss_fn,
                                             **model.unroll_kwargs(feats, False))
  return np.asarray(diagnostics.gradient_norms(grads))


def _quick_train(config, model, params, num_steps: int):
  """`num_steps` of the configured optimizer on fresh adding batches (no checkpoints): for the probe."""
  from tqdm import tqdm
  optimizer = training.optimizer(config.optimizer, config.learning_rate, config.max_grad_norm)
  state = training.state.create_state(params, optimizer)
  step_fn = jax.jit(training.make_train_step(make_loss_fn(model), optimizer))
  key = jax.random.key(0)
  for step in tqdm(range(num_steps), desc=f"train {config.cell}", unit="step",
                   disable=not config.progress, leave=False):
    batch = model_lib.make_batch(config, tasks.rng_for(config.seed, "train", step),
                                 config.batch_size)
    state, _ = step_fn(state, batch, key)
  return state.params


def gradient_flow(config, workdir: str) -> dict:
  """||dLoss/dh_t|| for each of `--probe_cells` on the adding task: at initialisation
  (mean over `--probe_seeds` inits) and, with `--train_steps` > 0, after training seed 0."""
  start = time.time()
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps
  batch = tasks.adding(tasks.rng_for(config.seed, "probe"), config.batch_size, config.seq_len)
  at_init, trained, results = {}, {}, {}
  for name in config.probe_cells:
    cell_config = dataclasses.replace(config, cell=name, task="adding")
    model = model_lib.build(cell_config)
    inits = [model.init(jax.random.key(config.seed * 1000 + s)) for s in range(config.probe_seeds)]
    at_init[name] = np.mean([probe(cell_config, model, p, batch) for p in inits], axis=0)
    results[f"grad_norm_ratio/init/{name}"] = float(at_init[name][0] / at_init[name][-1])
    line = f"{name:>6}: ||dL/dh_0|| / ||dL/dh_T-1|| = {at_init[name][0] / at_init[name][-1]:.3g} at init"
    if num_steps > 0:
      params = _quick_train(cell_config, model, inits[0], num_steps)
      trained[name] = probe(cell_config, model, params, batch)
      results[f"grad_norm_ratio/trained/{name}"] = float(trained[name][0] / trained[name][-1])
      predictions = model.apply(params, batch)
      results[f"probe_mse/{name}"] = float(model.loss(predictions, batch)[0])
      line += f", {trained[name][0] / trained[name][-1]:.3g} after {num_steps} steps"
    print(line, flush=True)
  setting = f"adding task, T={config.seq_len}, H={config.hidden_size}"
  plots.gradient_norms(at_init, os.path.join(workdir, "gradient_flow.png"),
                       f"{setting}, at initialisation (mean of {config.probe_seeds} inits)")
  curves = {"init": {k: v.tolist() for k, v in at_init.items()}}
  if trained:
    plots.gradient_norms(trained, os.path.join(workdir, "gradient_flow_trained.png"),
                         f"{setting}, after {num_steps} {config.optimizer} steps (seed 0)")
    curves["trained"] = {k: v.tolist() for k, v in trained.items()}
  with open(os.path.join(workdir, "gradient_flow.json"), "w") as f:
    json.dump(curves, f)
  results["wall_time_s"] = time.time() - start
  common.report_results(workdir, results)
  return results


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the configured cell on the configured task in `workdir`; returns the results.

  Resumes from `workdir/checkpoints`. Writes metrics.jsonl, results.json
  (`test_mse` for adding, `test_accuracy` for copy and frequency),
  gradient_norms.png/json (the probe at initialisation and after training).
  """
  check_config(config)
  if config.task == "gradient_flow":
    return gradient_flow(config, workdir)
  start_time = time.time()
  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  n_proc, proc = jax.process_count(), jax.process_index()
  if config.batch_size % n_proc:
    raise UserError(f"--batch_size {config.batch_size} does not split over {n_proc} processes")
  rows = slice(proc * config.batch_size // n_proc, (proc + 1) * config.batch_size // n_proc)
  num_steps = config.max_steps if config.max_steps > 0 else config.train_steps

  model = model_lib.build(config)
  key = jax.random.key(config.seed)
  params = model.init(jax.random.fold_in(key, 0))
  optimizer = training.optimizer(config.optimizer, config.learning_rate, config.max_grad_norm)
  state = training.state.create_state(params, optimizer)
  train_step = training.make_train_step(make_loss_fn(model), optimizer)
  valid = _eval_set(config, "valid", config.num_valid)
  evaluate = make_evaluator(config, model)
  probe_batch = {k: v[:PROBE_EXAMPLES] for k, v in valid.items()}
  probe_init = probe(config, model, params, probe_batch)

  def batch_at(step):
    batch = model_lib.make_batch(config, tasks.rng_for(config.seed, "train", step),
                                 config.batch_size)
    return {k: v[rows] for k, v in batch.items()}

  what = config.task if config.task != "frequency" else f"frequency ({config.regime})"
  length = (f"T={config.seq_len}" if config.task != "frequency"
            else f"T<={tasks.frequency_max_len(config.regime)}")
  print(f"long_range: {what}, {length}, cell {config.cell}"
        f"{' + Δt input' if config.time_delta_input else ''}, H={config.hidden_size}, "
        f"{num_steps} steps of {config.batch_size}, {mesh.size} device(s)", flush=True)
  state = training.fit(
      workdir=workdir, experiment="long_range", state=state, train_step=train_step,
      batch_at=batch_at, num_steps=num_steps, key=jax.random.fold_in(key, 1),
      evaluate=lambda s: evaluate(s.params, valid, "valid"),
      eval_every=config.eval_every or max(1, num_steps // 10),
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size, items_name="examples", progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)

  params = jax.device_get(state.params)
  results = {"step": int(jax.device_get(state.step))}
  results.update(evaluate(params, valid, "valid"))
  test = evaluate(params, _eval_set(config, "test", config.num_test), "test")
  results.update(test)
  if config.task == "adding":
    results["test_mse"] = test["test/mse"]
    results["baseline_mse"] = 1.0 / 6.0
  else:
    results["test_accuracy"] = test["test/accuracy"]
  if config.task == "copy":
    results["baseline_ce"] = tasks.copy_baseline_loss(config.seq_len, config.num_symbols,
                                                      config.copy_len)
  probe_final = probe(config, model, params, probe_batch)
  if jax.process_index() == 0:
    curves = {"initialisation": probe_init, f"after {results['step']} steps": probe_final}
    plots.gradient_norms(curves, os.path.join(workdir, "gradient_norms.png"),
                         f"{config.cell} on {what}, {length}")
    with open(os.path.join(workdir, "gradient_norms.json"), "w") as f:
      json.dump({k: v.tolist() for k, v in curves.items()}, f)
  results["wall_time_s"] = time.time() - start_time
  common.report_results(workdir, results)
  return results
