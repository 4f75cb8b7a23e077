"""The VQA experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import RunConfig, field

CLASSIFIERS = ("lstm_q_norm_i", "vis_lstm", "san", "question_only", "image_only")
MODELS = CLASSIFIERS + ("answer_generation", "prior")
CORPORA = ("scenes", "daquar", "vqa", "clevr")


@dataclasses.dataclass(frozen=True)
class VQAConfig(RunConfig):
  """CNN + LSTM visual question answering (Antol et al. 2015; Ren et al. 2015; Malinowski
  et al. 2015; Yang et al. 2016) and its baselines."""
  mode: str = field("train", "train: train in --workdir, then evaluate on the test split; "
                    "answer: answer --question about --image with the workdir's model, "
                    "printing the answer and its top 5.")
  model: str = field("lstm_q_norm_i", "lstm_q_norm_i (Antol et al.'s deeper LSTM Q + norm "
                     "I), vis_lstm (Ren et al.: the image is the first word), san (stacked "
                     "attention, Yang et al.), answer_generation (Malinowski et al.: an LSTM "
                     "writes the answer's words), question_only (a blind LSTM), image_only, "
                     "or prior (the most frequent training answer of the question's type).")
  # Data.
  corpus: str = field("scenes", "scenes (generated, no files), daquar (data_dir/daquar), "
                      "vqa (VQA v2 JSON: --vqa_questions, --vqa_annotations with "
                      "--image_dir or --features_dir) or clevr (TFDS clevr; downloads on "
                      "first use).")
  scenes: str = field("shapes", "With --corpus=scenes: shapes or digits (MNIST digits from "
                      "data_dir/mnist/mnist.npz).")
  scenes_max_objects: int = field(4, "With --corpus=scenes: 1 to this many objects.")
  questions_per_image: int = field(5, "With --corpus=scenes: questions asked of each image.")
  train_images: int = field(8000, "Scenes: images in the training split; real corpora: if "
                            "> 0, only the first this many training images.")
  valid_images: int = field(500, "Scenes: images in the validation split. DAQUAR has no "
                            "validation split: this many training images are held out "
                            "for it (0: none, validation is skipped).")
  test_images: int = field(1000, "Scenes: images in the test split; real corpora: if > 0, "
                           "only the first this many.")
  image_dir: str = field("", "vqa: the folder of the COCO images.")
  features_dir: str = field("", "vqa/daquar: a folder of precomputed features, one <image "
                            "stem>.npy per image, [R, D] or [D]; replaces the CNN.")
  vqa_questions: list = field([], "--corpus=vqa: the train and test questions JSON files.")
  vqa_annotations: list = field([], "--corpus=vqa: the train and test annotations JSON.")
  image_size: int = field(64, "Images are resized to this square size.")
  min_word_count: int = field(1, "Question words seen fewer times in training are <unk>.")
  max_question_len: int = field(30, "Questions are cut to this many words.")
  num_answers: int = field(1000, "K: the classifiers choose among the K most frequent "
                           "training answers (Antol et al.'s 1000); training questions "
                           "whose answer is outside them are skipped.")
  max_answer_len: int = field(6, "answer_generation: answers are at most this many words.")
  # Model.
  cnn_features: list = field(["32", "64", "128"], "Widths of the CNN's stages; the last is "
                             "the region width D.")
  cnn_first_stride: int = field(2, "Stride of the CNN's first convolution.")
  cnn_last_dilation: int = field(1, "Dilation of the CNN's last convolution (2: its 3x3 "
                                 "kernel spans 5x5 cells, a wider receptive field for the "
                                 "same multiply-adds).")
  freeze_encoder: bool = field(False, "Do not train the CNN.")
  image_fc: int = field(0, "0: the image vector is the mean of the CNN's regions; N > 0: "
                        "a fully connected ReLU layer of width N over the whole grid (VGG's "
                        "fc7 in the papers; slower to train on scenes: RESULTS.md). "
                        "Precomputed features are used as they are.")
  image_pool: str = field("mean", "With --image_fc=0, how the CNN's regions become the "
                          "image vector: mean (Show and Tell's), max (per feature, over "
                          "the regions) or max_mean (both, concatenated: the maximum keeps "
                          "a small object's colour, the mean its size).")
  embed_size: int = field(64, "Question word embedding size E.")
  hidden_size: int = field(256, "Question LSTM size H.")
  question_layers: int = field(2, "Layers of the question LSTM (Antol et al.'s 2).")
  common_size: int = field(256, "Width C of the common question / image space (SAN: of "
                           "the attention's u and regions).")
  mlp_size: int = field(256, "Hidden width of the answer MLP.")
  attention_size: int = field(128, "SAN: the attention MLP's width.")
  attention_layers: int = field(2, "SAN: stacked attention layers (Yang et al.'s 2).")
  dropout: float = field(0.3, "Dropout before the answer layers (and on embeddings).")
  # Training.
  batch_size: int = field(64, "Questions per training batch.")
  batch_by_image: bool = field(False, "Batches take each image's questions together and "
                               "read each image once (the CNN runs on about B / "
                               "questions-per-image images instead of B); off: questions "
                               "are drawn independently, each with its image.")
  train_steps: int = field(3000, "Training steps.")
  optimizer: str = field("adam", "sgd, adam or rmsprop.")
  learning_rate: float = field(2e-3, "Peak learning rate.")
  warmup_steps: int = field(100, "Linear warmup steps.")
  decay: str = field("cosine", "After warmup: constant or cosine (to 0 at the last step).")
  max_grad_norm: float = field(5.0, "Clip the gradient's global norm (0: off).")
  weight_decay: float = field(0.0, "AdamW-style decoupled weight decay (0: off).")
  # Evaluation.
  eval_batch_size: int = field(500, "Questions per evaluation batch.")
  num_attention_plots: int = field(8, "SAN: test questions whose attention is plotted.")
  image: str = field("", "--mode=answer: the image file (or .npy features).",
                     may_change=True)
  question: str = field("", "--mode=answer: the question.", may_change=True)
  top_k: int = field(5, "--mode=answer: how many answers to print.", may_change=True)
