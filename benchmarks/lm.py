r"""Training tokens/s of Zaremba's small PTB model: rnn_jax against PyTorch, in one process.

    python -m benchmarks.lm                       # zaremba_small sizes, 60 steps per turn, 3 turns
    python -m benchmarks.lm --hidden_size=650 --bptt=35 --dropout=0.5 --json=/tmp/lm.json
    python -m benchmarks.lm --implementations=auto,onednn   # the LSTMs on oneDNN too

Both models: embedding [V, H] -> 2-layer LSTM -> linear [H, V], batch B, BPTT
T, SGD with lr 1 and global-norm clipping at 5, loss = sum over the T steps
of the batch-mean NLL, the carry passed between batches. The JAX side is the
experiment's own jitted `train_step` (experiments/lm); the PyTorch side is
the usual way (nn.Embedding, nn.LSTM, nn.Linear, clip_grad_norm_, SGD).
Turns alternate between the two so both see the same machine state (and the same
malloc settings: `--retain_freed_memory`, on as in the experiments); random
token batches (speed does not depend on the text). Prints tokens/s per turn
and the median, and the ratio.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import timing
from experiments import common  # --retain_freed_memory

_HIDDEN = flags.DEFINE_integer("hidden_size", 200, "H.")
_LAYERS = flags.DEFINE_integer("num_layers", 2, "L.")
_BATCH = flags.DEFINE_integer("batch_size", 20, "B.")
_BPTT = flags.DEFINE_integer("bptt", 20, "T.")
_VOCAB = flags.DEFINE_integer("vocab_size", 10000, "V.")
_DROPOUT = flags.DEFINE_float("dropout", 0.0, "Non-recurrent dropout.")
_STEPS = flags.DEFINE_integer("steps", 60, "Timed steps per turn.")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns per implementation.")
_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: default).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "Time only rnn_jax.")
_IMPLS = flags.DEFINE_list("implementations", ["auto"], "rnn_jax rows: the LM's "
                           "--rnn_implementation for each (auto: the fused kernels; onednn).")


def jax_runner(implementation: str = "auto"):
  from experiments.lm import LMConfig
  from experiments.lm import model as model_lib
  from experiments.lm import train as train_lib
  from rnn_jax import training

  config = LMConfig(hidden_size=_HIDDEN.value, num_layers=_LAYERS.value,
                    batch_size=_BATCH.value, bptt=_BPTT.value, dropout=_DROPOUT.value,
                    rnn_implementation=implementation)
  model = model_lib.build(config, _VOCAB.value)
  optimizer = train_lib.make_optimizer(config, steps_per_epoch=1000)
  state = training.state.create_state(model.init(jax.random.key(0)), optimizer,
                                      extra=model.initial_carry(config.batch_size))
  step_fn = jax.jit(training.make_train_step(train_lib.make_loss_fn(config, model), optimizer),
                    donate_argnums=0)
  rng = np.random.default_rng(0)
  batches = [{"inputs": rng.integers(0, _VOCAB.value, (_BATCH.value, _BPTT.value), dtype=np.int32),
              "targets": rng.integers(0, _VOCAB.value, (_BATCH.value, _BPTT.value), dtype=np.int32),
              "reset": np.asarray(False)} for _ in range(8)]
  key = jax.random.key(1)
  holder = {"state": state}

  def run(steps):
    s = holder["state"]
    for i in range(steps):
      s, metrics = step_fn(s, batches[i % len(batches)], jax.random.fold_in(key, i))
      float(metrics["loss"])  # the trainer reads the loss every step, so do we
    holder["state"] = s

  return run


def torch_runner():
  import torch
  from torch import nn

  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  torch.manual_seed(0)
  H, V, L, B, T = _HIDDEN.value, _VOCAB.value, _LAYERS.value, _BATCH.value, _BPTT.value

  class Model(nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(V, H)
      self.drop = nn.Dropout(_DROPOUT.value)
      self.lstm = nn.LSTM(H, H, num_layers=L, dropout=_DROPOUT.value, batch_first=True)
      self.out = nn.Linear(H, V)
      for p in self.parameters():
        nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, x, hidden):
      y, hidden = self.lstm(self.drop(self.embed(x)), hidden)
      return self.out(self.drop(y)), hidden

  model = Model().train()
  optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
  loss_fn = nn.CrossEntropyLoss()
  rng = np.random.default_rng(0)
  batches = [(torch.from_numpy(rng.integers(0, V, (B, T))), torch.from_numpy(rng.integers(0, V, (B, T))))
             for _ in range(8)]
  holder = {"hidden": (torch.zeros(L, B, H), torch.zeros(L, B, H))}

  def run(steps):
    hidden = holder["hidden"]
    for i in range(steps):
      x, y = batches[i % len(batches)]
      hidden = tuple(h.detach() for h in hidden)
      logits, hidden = model(x, hidden)
      loss = loss_fn(logits.reshape(-1, V), y.reshape(-1)) * T  # sum over T of batch means
      optimizer.zero_grad()
      loss.backward()
      nn.utils.clip_grad_norm_(model.parameters(), 5.0)
      optimizer.step()
      loss.item()
    holder["hidden"] = hidden

  return run


def main(argv):
  del argv
  retained = common.apply_retain_freed_memory()  # as the experiment; PyTorch shares the process
  tokens = _BATCH.value * _BPTT.value * _STEPS.value
  runners = {("rnn_jax" if impl == "auto" else f"rnn_jax/{impl}"): jax_runner(impl)
             for impl in _IMPLS.value}
  if not _SKIP_TORCH.value:
    runners["pytorch"] = torch_runner()
  for run in runners.values():
    run(3)  # compile / warm up

  def rate(run):
    start = time.perf_counter()
    run(_STEPS.value)
    return tokens / (time.perf_counter() - start)

  rates = timing.in_turns({name: (lambda run=run: rate(run)) for name, run in runners.items()},
                          _TURNS.value)
  results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
             "jax": jax.__version__, "sizes": dict(H=_HIDDEN.value, L=_LAYERS.value, B=_BATCH.value,
                                                  T=_BPTT.value, V=_VOCAB.value),
             "retained_freed_memory": retained}
  for name, values in rates.items():
    results[f"{name}_tokens_per_s"] = statistics.median(values)
    print(f"{name:>8}: " + "  ".join(f"{v:8.0f}" for v in values)
          + f"   median {statistics.median(values):8.0f} tokens/s")
  if "pytorch" in rates:
    for name in rates:
      if name != "pytorch":
        ratio = results[f"{name}_tokens_per_s"] / results["pytorch_tokens_per_s"]
        results[f"{name}_over_pytorch"] = ratio
        print(f"{name} / pytorch: {ratio:.2f}x")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
