"""The skip-thought experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import RunConfig, field


@dataclasses.dataclass(frozen=True)
class SkipThoughtConfig(RunConfig):
  """Skip-thought vectors (Kiros et al. 2015) on data_dir/novels."""
  encoders: list = field(["uni", "bi"], "Models trained side by side on the same batches: "
                         "uni (uni-skip: one GRU) and/or bi (bi-skip: a forward and a "
                         "backward GRU of half the width). combine-skip is both vectors.")
  # Data.
  cache_dir: str = field("", "Where the processed corpus is cached (default workdir/corpus; "
                         "share one between runs, e.g. runs/cache).", may_change=True)
  max_novels: int = field(0, "If > 0, only the first this many novels (sorted by file name).")
  vocab_size: int = field(20000, "The encoder's vocabulary: the most frequent words (Kiros "
                          "et al.'s 20,000), the rest <unk> (vocabulary expansion maps them "
                          "in at evaluation).")
  max_len: int = field(30, "Sentences are cut to this many words.")
  sort_window: int = field(100, "Batches of similar lengths: each window of this many "
                           "batches of the shuffled triples is sorted by length, then the "
                           "batches are shuffled (0: no sorting; every batch padded to "
                           "max_len).")
  # Model.
  embed_size: int = field(620, "Word embedding size E (the paper's 620).")
  hidden_size: int = field(2400, "Encoder output D (the paper's 2,400; bi-skip: 1,200 per "
                           "direction); each decoder GRU has D units.")
  softmax_samples: int = field(0, "0: the full softmax; S > 0: train with the sampled "
                               "softmax over S words per batch drawn from the unigram "
                               "distribution (rnn_jax.sampled_softmax); evaluation stays full.")
  # Training.
  batch_size: int = field(128, "Sentence triples per step (the paper's 128).")
  train_steps: int = field(100000, "Training steps.")
  learning_rate: float = field(8e-4, "Adam's learning rate.")
  max_grad_norm: float = field(10.0, "Clip the gradient's global norm to this (the paper's 10).")
  eval_sentences: int = field(2048, "Held-out triples for the validation NLL (full softmax).")
  senteval: bool = field(True, "After training, evaluate our encoders and the baselines on "
                         "the seven tasks (python -m experiments.skip_thought.evaluate) and "
                         "add the figures to results.json.", may_change=True)
  # Word vectors for vocabulary expansion (word2vec's skip-gram on the same corpus).
  w2v_dim: int = field(300, "Word vector size (word2vec's 300).")
  w2v_min_count: int = field(5, "Words seen at least this often get a word vector.")
  w2v_steps: int = field(20000, "Skip-gram training steps (0: no word vectors, no expansion).")
  w2v_batch_size: int = field(4096, "Skip-gram (centre, context) pairs per step.")
  w2v_window: int = field(5, "Skip-gram's maximum window (each pair's window is uniform in "
                          "1..this, as word2vec does).")
  w2v_negatives: int = field(5, "Negative samples per pair.")
  w2v_learning_rate: float = field(0.025, "Skip-gram's initial learning rate (decays linearly).")
