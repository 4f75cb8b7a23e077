"""The GNMT experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import Seq2SeqTrainingConfig, field


@dataclasses.dataclass(frozen=True)
class GNMTConfig(Seq2SeqTrainingConfig):
  """Multilingual GNMT (Wu et al. 2016; Johnson et al. 2017)."""
  mode: str = field("train", "train, or translate (reads --input_file or stdin, writes "
                    "--output_file or stdout, with the workdir's checkpoint).", may_change=True)
  corpus: str = field("numbers", "numbers (embedded, generated with num2words), multi30k "
                      "(data_dir/multi30k), or a TFDS WMT builder: wmt14_translate, wmt_t2t.")
  train_directions: list = field(["en-de", "de-en", "en-fr", "fr-en", "en-es", "es-en"],
                                 "Directions trained on, src-tgt.")
  zero_shot_directions: list = field(["de-fr", "fr-de"], "Directions never trained on, "
                                     "evaluated to measure zero-shot translation.")
  num_train_sentences: int = field(20000, "numbers: sentences per language in train.")
  num_eval_sentences: int = field(300, "numbers: sentences per language in valid and test.")
  eval_max_sentences: int = field(200, "Evaluate during training on at most this many "
                                  "sentences per direction (the final test uses all).")
  vocab_size: int = field(600, "Shared sentencepiece vocabulary (the numbers corpus has "
                          "under 900 distinct subwords).")
  spm_model_type: str = field("unigram", "sentencepiece model type: unigram or bpe.")
  spm_input_sentence_size: int = field(0, "Train sentencepiece on this many training lines, "
                                       "drawn uniformly with a fixed generator (0: all; "
                                       "WMT scale: a few million).")
  spm_threads: int = field(1, "Threads for sentencepiece's training and the encoding of the "
                           "training data (1 keeps the vocabulary reproducible to the bit).")
  max_source_len: int = field(80, "Source tokens kept (with the <2xx> token and EOS); longer "
                              "inputs are truncated, documented and counted.")
  max_target_len: int = field(80, "Target tokens kept (with EOS); also the decoding limit.")
  hidden_size: int = field(64, "H: embeddings, LSTM layers, attention.")
  num_layers: int = field(8, "Layers of the encoder and of the decoder.")
  residual_from: int = field(2, "First layer (0-based) with a residual connection; -1: none.")
  bidirectional_bottom: bool = field(True, "Bi-directional bottom encoder layer.")
  pipeline_devices: int = field(1, "Spread the encoder's and the decoder's layers over this "
                                "many devices, run as a wavefront over time (Wu et al.'s "
                                "model parallelism, rnn_jax.pipeline); the devices split "
                                "into groups of this many, and the groups split the batch.",
                                may_change=True)
  rnn_implementation: str = field("auto", "The LSTM layers' kernels (rnn_jax.unroll's "
                                  "implementation): auto (the fused XLA kernels), scan, "
                                  "onednn (oneDNN's LSTM on the CPU), pallas. The same "
                                  "function; speed only.", may_change=True)
  reverse_source: bool = field(False, "Reverse the source (Sutskever et al. 2014).")
  attention: str = field("normed_bahdanau", "bahdanau, normed_bahdanau, luong_dot or luong_general.")
  attention_architecture: str = field("gnmt", "gnmt: upper decoder layers read the context of "
                                      "the previous step (the paper); gnmt_v2: of this step.")
  attention_scale_init: float = field(0.0, "normed_bahdanau: the initial scale g of the scores "
                                      "(0: tensorflow/nmt's 1/sqrt(attention size)).")
  attention_size: int = field(0, "Bahdanau attention's hidden size (0: hidden_size).")
  input_feeding: bool = field(True, "Feed the previous context to the bottom decoder layer.")
  pass_hidden_state: bool = field(True, "Start each decoder layer from the final state of the "
                                  "encoder layer below it (tensorflow/nmt's default).")
  decoder_start: str = field("bos", "The decoder's first input: bos, or language (the "
                             "target-language token <2xx>: the decoder knows the language "
                             "from its first step, not only through the encoder).")
  align_loss_weight: float = field(0.0, "Weight of Arivazhagan et al. (2019)'s alignment "
                                  "loss: the cosine distance between the pooled encodings of "
                                  "a source and its target sentence (0: off). For zero-shot.")
  align_pooling: str = field("max", "Pooling over time for --align_loss_weight: max or mean.")
  synthetic_pairs: str = field("", "Synthetic pairs made online by the model, trained on beside "
                               "the real ones (experiments/gnmt/synthetic.py): '' (off), robt "
                               "(Zhang et al. 2020: back-translate the target into a random "
                               "other language) or pivot (translate the source into a third "
                               "language). For zero-shot (zero-resource) directions.")
  synthetic_start_step: int = field(2000, "--synthetic_pairs: the first step that makes them "
                                    "(after attention has locked on; before, the model's "
                                    "translations are noise).")
  synthetic_rows: int = field(16, "--synthetic_pairs: rows of each batch (its first ones) "
                              "that get a synthetic copy.")
  dropout: float = field(0.0, "Dropout on embeddings, between layers, before the softmax.")
  label_smoothing: float = field(0.1, "Label smoothing of the training loss.")
  init_scale: float = field(0.1, "Output layer uniform in [-s, s].")
  embedding_init_scale: float = field(1.0, "Embeddings uniform in [-s, s]. tensorflow/nmt's 0.1 "
                                      "leaves the encoder's signal tiny in a deep stack, and "
                                      "attention locks on late.")
  optimizer: str = field("adam", "adam, or sgd (GNMT's plain SGD; use a large learning rate).")
  learning_rate: float = field(2e-3, "Peak learning rate.")
  warmup_steps: int = field(0, "Linear warmup steps.")
  decay_scheme: str = field("", "'' (constant after warmup), or tensorflow/nmt's luong234 (the "
                            "rate halves every quarter of the last third of training), "
                            "luong10 (every tenth of the last half) or luong5 (every fifth "
                            "of the last half); constant before the first halving.")
  max_grad_norm: float = field(5.0, "Clip the gradient's global norm (0: no clipping).")
  loss_normalization: str = field("tokens", "Divide the batch's summed token cross-entropy "
                                  "by its target tokens (tokens), or by its sentences "
                                  "(sentences: tensorflow/nmt, whose SGD rate of 1.0 assumes it).")
  batch_size: int = field(64, "Sentence pairs per step.")
  batch_tokens: int = field(0, "Batches by tokens instead of --batch_size: each holds one "
                            "length bucket, as many pairs as fit in this many padded tokens "
                            "per side (0: --batch_size pairs).")
  balance_directions: bool = field(False, "Every training batch holds every direction in "
                                   "proportion to its share of the data (otherwise batches "
                                   "are random, grouped by length).")
  train_steps: int = field(3000, "Training steps (--max_steps overrides).")
  beam_size: int = field(4, "Beam size for evaluation; 0 decodes greedily.")
  length_penalty: float = field(0.6, "GNMT's alpha: lp = ((5 + |Y|) / 6)^alpha.")
  coverage_penalty: float = field(0.0, "GNMT's beta for the coverage penalty.")
  decode_length_ratio: float = field(0.0, "Decode a sentence for at most round(ratio * its "
                                     "source pieces) steps, capped by --max_target_len "
                                     "(tensorflow/nmt: 2.0, from the batch's longest source); "
                                     "0: --max_target_len for every sentence. An output that "
                                     "reaches its limit without EOS is cut: a warning, and "
                                     "results.json's cut/<src>-<tgt> counts them.")
  test_params: str = field("last", "Params tested at the end (and used by translate mode): "
                           "last (the final step), best (workdir/best/: the evaluated step "
                           "with the best valid/bleu/mean_supervised) or average (the mean "
                           "of the last --average_last checkpoints). results.json's "
                           "test_params and test_params_steps say which.", may_change=True)
  average_last: int = field(0, "Keep the last N checkpoints (at least 3), so that "
                            "--test_params=average can average their params.",
                            may_change=True)
  temperature: float = field(0.0, "translate: > 0 samples with this temperature instead of "
                             "beam search.", may_change=True)
  eval_batch_size: int = field(100, "Sentences per decoding batch.", may_change=True)
  num_attention_plots: int = field(2, "Attention heatmaps written per evaluated direction.",
                                   may_change=True)
  target_lang: str = field("", "translate: the language to translate into.", may_change=True)
  input_file: str = field("", "translate: file to translate (default stdin).", may_change=True)
  output_file: str = field("", "translate: where to write (default stdout).", may_change=True)
