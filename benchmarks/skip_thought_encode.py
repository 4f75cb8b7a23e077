r"""Skip-thought encoding speed: sentences/s of `evaluate.Encoder` (length buckets, one jitted
function per bucket width) against the same batches unsorted (each padded to its longest
row) and one sentence at a time (the original code's complaint: encoding was slow).

    python -m benchmarks.skip_thought_encode
    python -m benchmarks.skip_thought_encode --hidden_size=2400 --embed_size=620 --sentences=5000

The sentences are MR's (`$RNN_JAX_DATA/senteval/rt-polarity.*`) when present, else
generated ones with MR's length distribution (mean 21 words); the model is uni-skip + bi-skip
at the given sizes with random weights (speed does not depend on training). Each setting
is compiled first (a warm-up pass over the same sentences), then timed in turns.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import types

import jax
import numpy as np
from absl import app, flags

from experiments.skip_thought import evaluate as evaluate_lib
from experiments.skip_thought import model as model_lib
from experiments.skip_thought import senteval

_EMBED = flags.DEFINE_integer("embed_size", 256, "E.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 512, "D (bi-skip: D / 2 per direction).")
_VOCAB = flags.DEFINE_integer("vocab_size", 20000, "Vocabulary.")
_SENTENCES = flags.DEFINE_integer("sentences", 4000, "Sentences encoded per timing.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["64", "256"], "Batch sizes to time.")
_SINGLE = flags.DEFINE_integer("single", 100, "Sentences timed one at a time (0: skip).")
_TURNS = flags.DEFINE_integer("turns", 3, "Turns.")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")


def sentences(n: int) -> list[str]:
  data = os.environ.get("RNN_JAX_DATA", "")
  if os.path.exists(os.path.join(data, "senteval", "rt-polarity.pos")):
    text, _ = senteval.load_binary(data, "MR", drop_empty=True)
  else:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    text = [" ".join(rng.choice(words, max(1, int(rng.gamma(4.0, 5.25))))) for _ in range(n)]
  return list(text[:n])


class Unsorted(evaluate_lib.Encoder):
  """The same batches in the input order: each padded to its longest row."""

  def __call__(self, sentences):
    ids = [self.lookup(s)[:self.max_len] for s in sentences]
    out = []
    for lo in range(0, len(ids), self.batch_size):
      rows = ids[lo:lo + self.batch_size]
      width = -(-max(len(r) for r in rows) // 8) * 8
      batch = np.zeros((self.batch_size, width), np.int32)
      lengths = np.ones((self.batch_size,), np.int32)
      for i, r in enumerate(rows):
        batch[i, :len(r)], lengths[i] = r, max(len(r), 1)
      out.append(jax.device_get(self._encode(self.params, batch, lengths)))
    return out


def main(argv):
  del argv
  config = types.SimpleNamespace(encoders=["uni", "bi"], embed_size=_EMBED.value,
                                 hidden_size=_HIDDEN.value, softmax_samples=0)
  model = model_lib.build(config, _VOCAB.value)
  params = model.init(jax.random.key(0))
  vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [f"w{i}" for i in range(_VOCAB.value - 4)]
  text = sentences(_SENTENCES.value)
  lookup = evaluate_lib.Lookup(vocab)
  runners = {}
  for b in map(int, _BATCHES.value):
    for name, cls in (("buckets", evaluate_lib.Encoder), ("unsorted", Unsorted)):
      enc = cls(model.encode, params, lookup, batch_size=b)
      enc(text)  # compile every width
      runners[f"{name}, B={b}"] = (enc, text)
  if _SINGLE.value:
    enc = evaluate_lib.Encoder(model.encode, params, lookup, batch_size=1)
    few = text[:_SINGLE.value]
    for s in few:
      enc([s])
    runners["one at a time"] = (lambda s, enc=enc: [enc([x]) for x in s], few)
  times = {name: [] for name in runners}
  for _ in range(_TURNS.value):
    for name, (enc, t) in runners.items():
      start = time.perf_counter()
      enc(t)
      times[name].append(len(t) / (time.perf_counter() - start))
  print(f"skip-thought encoding, uni + bi, E={_EMBED.value}, D={_HIDDEN.value}, "
        f"{len(text)} sentences ({jax.default_backend()}, {os.cpu_count()} cores)")
  rows = []
  for name, rates in times.items():
    rows.append({"setting": name, "sentences_per_s": statistics.median(rates), "turns": rates})
    print(f"{name:>16}: {statistics.median(rates):8.0f} sentences/s (turns: "
          + ", ".join(f"{r:.0f}" for r in rates) + ")")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "jax": jax.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
