"""`train_and_evaluate(config, workdir)`: the LM experiment, callable from tests."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common
from experiments.common import UserError
from experiments.lm import data as data_lib
from experiments.lm import model as model_lib
from rnn_jax import kernels, regularizers, training
from rnn_jax.cells import LSTMState


def lr_schedule(config, steps_per_epoch: int):
  """lr for epoch e (1-based): lr / lr_decay^max(0, e - lr_decay_after_epochs)."""

  def schedule(step):
    epoch = step // steps_per_epoch + 1
    return config.learning_rate / config.lr_decay ** jnp.maximum(
        0, epoch - config.lr_decay_after_epochs)

  return schedule


def make_optimizer(config, steps_per_epoch: int):
  if config.optimizer not in training.optim.OPTIMIZERS:
    raise UserError(f"--optimizer: expected sgd or adam, got {config.optimizer!r}")
  return training.optimizer(config.optimizer, lr_schedule(config, steps_per_epoch), config.max_grad_norm)


def _top_h(carry):
  top = carry[-1]
  return top.h if isinstance(top, LSTMState) else top


def make_loss_fn(config, model):

  def loss_fn(params, carry, batch, key):
    carry = jax.tree_util.tree_map(lambda c: jnp.where(batch["reset"], 0.0, c), carry)
    logits, new_carry, top = model.apply(params, carry, batch["inputs"], training=True, key=key)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])  # [B, T]
    mean_nll = nll.mean()
    loss = nll.sum(1).mean() if config.loss_over_time == "sum" else mean_nll
    metrics = {"nll": mean_nll}
    if config.norm_stabilizer > 0:
      penalty = regularizers.norm_stabilizer(top, config.norm_stabilizer,
                                             initial_h=_top_h(carry))
      loss = loss + penalty
      metrics["norm_stabilizer"] = penalty
    return loss, (jax.lax.stop_gradient(new_carry), metrics)

  return loss_fn


def make_evaluator(config, model):
  """`evaluate(params, ids, batch_size) -> mean NLL per predicted token`, carry passed through."""

  @jax.jit
  def chunk(params, carry, inputs, targets):
    logits, carry, _ = model.apply(params, carry, inputs)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return nll.sum(), carry

  def evaluate(params, ids, batch_size):
    streams = data_lib.batchify(ids, batch_size)  # [B, N]
    carry = model.initial_carry(batch_size)
    total, count = 0.0, 0
    n = streams.shape[1] - 1
    for lo in range(0, n, config.eval_bptt):
      hi = min(lo + config.eval_bptt, n)
      nll, carry = chunk(params, carry, streams[:, lo:hi], streams[:, lo + 1:hi + 1])
      total += float(nll)
      count += streams[:, lo:hi].size
    return total / count

  return evaluate


def _metrics(config, prefix: str, mean_nll: float) -> dict[str, float]:
  if config.level == "char":
    return {f"{prefix}/nll": mean_nll, f"{prefix}/bpc": mean_nll / math.log(2)}
  return {f"{prefix}/nll": mean_nll, f"{prefix}/ppl": math.exp(mean_nll)}


def check_config(config) -> None:
  for name in ("hidden_size", "num_layers", "batch_size", "bptt", "epochs", "eval_batch_size",
               "test_batch_size", "eval_bptt"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}: expected a positive integer, got {getattr(config, name)}")
  for name in ("dropout", "state_dropout", "recurrent_dropout", "zoneout_c", "zoneout_h"):
    if not 0.0 <= getattr(config, name) < 1.0:
      raise UserError(f"--{name}: expected a probability in [0, 1), got {getattr(config, name)}")
  if config.cell not in ("lstm", "gru"):
    raise UserError(f"--cell: expected lstm or gru, got {config.cell!r}")
  if config.loss_over_time not in ("sum", "mean"):
    raise UserError(f"--loss_over_time: expected sum or mean, got {config.loss_over_time!r}")
  if config.cell == "gru" and config.zoneout_c > 0:
    raise UserError("--zoneout_c: a GRU has no cell state; use --zoneout_h")
  common.check_rnn_implementation(config.rnn_implementation)
  if config.rnn_implementation in ("onednn", "pallas"):
    cell = model_lib.make_cell(config)
    supported = (kernels.onednn_supports if config.rnn_implementation == "onednn"
                 else kernels.pallas_supports)
    if not supported(cell):
      raise UserError(f"--rnn_implementation={config.rnn_implementation}: no such kernel for "
                      f"this cell ({cell.name} with the regularizers asked for); use auto")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the LM described by `config` in `workdir` and returns the final results.

  Resumes from `workdir/checkpoints` if there are any. Writes metrics.jsonl,
  TensorBoard events and results.json (valid and test perplexity, or bits per
  character, wall time and training tokens/s).
  """
  check_config(config)
  start_time = time.time()
  corpus = data_lib.load(config)
  V = len(corpus.vocab)
  mesh = training.data_mesh(config.num_devices or None)
  training.parallel.check_divisible(config.batch_size, mesh)
  n_proc, proc = jax.process_count(), jax.process_index()
  if config.batch_size % n_proc:
    raise UserError(f"--batch_size {config.batch_size} does not split over {n_proc} processes")
  rows_per_process = config.batch_size // n_proc
  rows = slice(proc * rows_per_process, (proc + 1) * rows_per_process)

  batches = data_lib.Batches(corpus.train, config.batch_size, config.bptt)
  steps_per_epoch = batches.steps_per_epoch
  num_steps = config.max_steps if config.max_steps > 0 else config.epochs * steps_per_epoch
  model = model_lib.build(config, V)
  key = jax.random.key(config.seed)
  params = model.init(jax.random.fold_in(key, 0))
  optimizer = make_optimizer(config, steps_per_epoch)
  state = training.state.create_state(params, optimizer, extra=model.initial_carry(config.batch_size))
  train_step = training.make_train_step(make_loss_fn(config, model), optimizer)
  evaluate = make_evaluator(config, model)

  def evaluate_valid(state):
    return _metrics(config, "valid", evaluate(state.params, corpus.valid, config.eval_batch_size))

  print(f"{config.level}-level LM: V={V}, {len(corpus.train)} train tokens, "
        f"{steps_per_epoch} steps per epoch, {num_steps} steps, {mesh.size} device(s)",
        flush=True)
  state = training.fit(
      workdir=workdir, experiment="lm", state=state, train_step=train_step,
      batch_at=lambda step: batches(step, rows), num_steps=num_steps,
      key=jax.random.fold_in(key, 1), evaluate=evaluate_valid,
      eval_every=config.eval_every or steps_per_epoch,
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, mesh=mesh,
      items_per_step=config.batch_size * config.bptt, progress=config.progress,
      skip_nonfinite_updates=config.skip_nonfinite_updates)

  results = {"step": int(jax.device_get(state.step)),
             "epochs": int(jax.device_get(state.step)) / steps_per_epoch}
  results.update(evaluate_valid(state))
  results.update(_metrics(config, "test", evaluate(state.params, corpus.test,
                                                   config.test_batch_size)))
  results.update(_throughput(workdir))
  results["wall_time_s"] = time.time() - start_time
  common.report_results(workdir, results)
  return results


def _throughput(workdir: str) -> dict[str, float]:
  """Median training tokens/s over the logged windows (the first, with compilation, dropped)."""
  import json
  import os
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rates = [row["train/tokens_per_s"] for row in map(json.loads, f) if "train/tokens_per_s" in row]
  rates = rates[1:] or rates
  return {"train/tokens_per_s": float(np.median(rates))} if rates else {}
