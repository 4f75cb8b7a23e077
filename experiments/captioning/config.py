"""The captioning experiment's config: one frozen dataclass, every field a flag."""

from __future__ import annotations

import dataclasses

from experiments.common import Seq2SeqTrainingConfig, field

MODELS = ("show_attend_tell", "show_and_tell")
CORPORA = ("scenes", "flickr8k", "karpathy", "coco")


@dataclasses.dataclass(frozen=True)
class CaptioningConfig(Seq2SeqTrainingConfig):
  """Show and Tell (Vinyals et al. 2015) and Show, Attend and Tell (Xu et al. 2015)."""
  mode: str = field("train", "train: train in --workdir, then evaluate on the test split; "
                    "caption: caption every image (or .npy feature file) in --caption_dir "
                    "with the workdir's model, writing COCO results JSON and attention plots; "
                    "ensemble: evaluate the --ensemble runs decoding together, results in "
                    "--workdir.")
  model: str = field("show_attend_tell", "show_attend_tell (soft attention over the CNN's "
                     "regions) or show_and_tell (NIC: the image embedding is the LSTM's first "
                     "input).")
  # Data.
  corpus: str = field("scenes", "scenes (generated, no files), flickr8k (data_dir/flickr8k "
                      "captions with --image_dir or --features_dir), karpathy (a Karpathy "
                      "dataset JSON, --karpathy_json) or coco (TFDS coco_captions, Karpathy "
                      "splits; downloads on first use).")
  scenes: str = field("shapes", "With --corpus=scenes: shapes (circles, squares, triangles) "
                      "or digits (handwritten MNIST digits from data_dir/mnist/mnist.npz).")
  scenes_max_objects: int = field(4, "With --corpus=scenes: scenes hold 1 to this many "
                                  "objects (1 to 4).")
  train_images: int = field(8000, "Scenes: images in the training split (5 captions each); "
                            "real corpora: if > 0, only the first this many.")
  valid_images: int = field(500, "Images of the validation split used (0: all).")
  test_images: int = field(1000, "Images of the test split used (0: all).")
  image_dir: str = field("", "flickr8k/karpathy: the folder of the images.")
  features_dir: str = field("", "flickr8k/karpathy: a folder of precomputed features, one "
                            "<image stem>.npy per image, [R, D] or [D]; replaces the CNN.")
  karpathy_json: str = field("", "--corpus=karpathy: the dataset_*.json file.")
  image_size: int = field(64, "Images are resized to this square size.")
  min_word_count: int = field(1, "Words seen fewer times in the training captions are <unk> "
                              "(Karpathy's splits use 5).")
  max_caption_len: int = field(20, "Training captions are cut to this many words; decoding "
                               "writes at most this many.")
  # Model.
  cnn_features: list = field(["32", "64", "128"], "Widths of the CNN's stages; the last is "
                             "the annotation width D.")
  cnn_first_stride: int = field(2, "Stride of the CNN's first convolution.")
  freeze_encoder: bool = field(False, "Do not train the CNN (e.g. with --encoder_from).")
  encoder_from: str = field("", "Start the CNN from this finished captioning run (its "
                            "latest checkpoint); a relative path that does not exist is a "
                            "sibling of --workdir, as a sweep's trials are. Show and Tell "
                            "needs a trained CNN to read images (RESULTS.md).")
  embed_size: int = field(64, "Word embedding size E.")
  hidden_size: int = field(256, "LSTM size H.")
  attention_size: int = field(128, "Attention MLP size A (Show, Attend and Tell).")
  attention_type: str = field("soft", "Show, Attend and Tell: soft (deterministic) or hard "
                              "(stochastic locations trained by REINFORCE, Xu et al. 2015 "
                              "section 4.1; decoding uses the expected context).")
  hard_reinforce_weight: float = field(1.0, "Hard attention: λ_r of the REINFORCE term "
                                       "(log p(y|s,a) - b) ∇ log p(s|a).")
  hard_entropy_weight: float = field(0.01, "Hard attention: λ_e of the entropy bonus H[s].")
  hard_expected_prob: float = field(0.5, "Hard attention: the chance that a caption is "
                                    "trained with the expected context instead of sampled "
                                    "locations (the paper's 0.5).")
  selector: bool = field(True, "The gating scalar β_t = σ(f_β(h_{t-1})) on the context "
                         "(Xu et al. 2015, section 4.2.1).")
  doubly_stochastic: float = field(1.0, "λ of the doubly stochastic attention regulariser "
                                   "λ Σ_i (1 - Σ_t α_ti)² (0: off).")
  dropout: float = field(0.0, "Dropout on the word embeddings and before the output layer.")
  # Training.
  batch_size: int = field(64, "Captions per training batch (each with its image).")
  train_steps: int = field(3000, "Training steps.")
  optimizer: str = field("adam", "sgd, adam or rmsprop.")
  learning_rate: float = field(2e-3, "Peak learning rate.")
  warmup_steps: int = field(100, "Linear warmup steps.")
  decay: str = field("cosine", "After warmup: constant or cosine (to 0 at the last step).")
  max_grad_norm: float = field(5.0, "Clip the gradient's global norm (0: off).")
  # Evaluation.
  beam_size: int = field(3, "Beam width of the evaluation decoding (0: greedy).")
  eval_batch_size: int = field(250, "Images per decoding batch.")
  eval_metrics: list = field(["bleu", "cider"], "COCO metrics during training (validation); "
                             "the test split gets all of them.")
  num_attention_plots: int = field(8, "Test images whose per-word attention is plotted.")
  ensemble: list = field([], "--mode=ensemble: the trained runs' workdirs (a relative path "
                         "is a sibling of --workdir, as a sweep's trials are); their models "
                         "decode together, log-probs averaged per step.")
  caption_dir: str = field("", "--mode=caption: folder of images or .npy features.",
                           may_change=True)
  output_file: str = field("", "--mode=caption: where the COCO results JSON goes (default "
                           "workdir/captions.json).", may_change=True)
