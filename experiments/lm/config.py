"""The LM experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import RunConfig, field


@dataclasses.dataclass(frozen=True)
class LMConfig(RunConfig):
  """Word-level PTB (Zaremba et al. 2014) or char-level tinyshakespeare."""
  level: str = field("word", "word: Penn Treebank from data_dir/ptb; char: "
                     "data_dir/tinyshakespeare (reports bits per character).")
  cell: str = field("lstm", "Recurrent cell: lstm or gru.")
  hidden_size: int = field(200, "Hidden size H, also the embedding size.")
  num_layers: int = field(2, "Number of stacked recurrent layers L.")
  rnn_implementation: str = field("auto", "The recurrent layers' kernels (rnn_jax.unroll's "
                                  "implementation): auto (fused XLA kernels where the cell "
                                  "has one), scan, onednn (oneDNN's LSTM/GRU on the CPU, "
                                  "plain cells only), pallas. The same function; speed only.",
                                  may_change=True)
  batch_size: int = field(20, "Training batch B (parallel streams of the corpus).")
  bptt: int = field(20, "Truncated BPTT length T; the carry passes between batches.")
  epochs: int = field(13, "Training epochs (passes over the training stream).")
  optimizer: str = field("sgd", "sgd or adam.")
  learning_rate: float = field(1.0, "Initial learning rate.")
  lr_decay: float = field(2.0, "Divide the learning rate by this after each epoch past "
                          "lr_decay_after_epochs.")
  lr_decay_after_epochs: int = field(4, "Epochs at the initial rate: epoch e (1-based) uses "
                                     "lr / lr_decay^max(0, e - this).")
  max_grad_norm: float = field(5.0, "Clip the gradient's global norm to this (0: no clipping).")
  init_scale: float = field(0.1, "Every parameter starts uniform in [-init_scale, init_scale].")
  loss_over_time: str = field("sum", "sum: the loss is the sum over the T steps of the "
                              "batch-mean NLL (Zaremba's code, with lr 1); mean: mean per token.")
  dropout: float = field(0.0, "Dropout on the non-recurrent connections: embeddings, between "
                         "layers, before the softmax (Zaremba et al. 2014).")
  dropout_per_sequence: bool = field(False, "Reuse each non-recurrent dropout mask at every "
                                     "step of a sequence (variational, Gal & Ghahramani 2016).")
  state_dropout: float = field(0.0, "Variational dropout on the recurrent state h_{t-1}, "
                               "one mask per sequence (Gal & Ghahramani 2016).")
  recurrent_dropout: float = field(0.0, "Dropout on the cell update only (Semeniuta et al. 2016).")
  zoneout_c: float = field(0.0, "Zoneout on the LSTM cell c: probability of keeping the "
                           "previous value (Krueger et al. 2016).")
  zoneout_h: float = field(0.0, "Zoneout on the hidden state h: probability of keeping the "
                           "previous value.")
  norm_stabilizer: float = field(0.0, "beta of the norm stabilizer on the top layer's "
                                 "hidden states (Krueger & Memisevic 2016).")
  eval_batch_size: int = field(20, "Batch of the validation runs.")
  test_batch_size: int = field(1, "Batch of the final test run (1: one stream, as the "
                               "reference code evaluates).")
  eval_bptt: int = field(100, "Chunk length when evaluating (the carry passes between "
                          "chunks, so it changes only speed).")
  train_tokens: int = field(0, "If > 0, train on only the first this many tokens "
                            "(for tiny runs).")
  eval_tokens: int = field(0, "If > 0, evaluate on only the first this many tokens.")
