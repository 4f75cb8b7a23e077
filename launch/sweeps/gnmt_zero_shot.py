"""Zero-shot remedies for the tiny_cpu GNMT (issue #19), each over three seeds: the
target-language token as the decoder's first input, Arivazhagan et al. (2019)'s alignment
loss on the encoder (max or mean pooling, weight 1 or 10), both, and synthetic pairs
made online by the model (back-translated or pivot-translated sources). `--only` picks
trials (the baseline's seeds are gnmt_seeds' too). Read zero-shot BLEU and off-target rate against the
supervised directions, seed spread included:

    python -m launch.sweep --sweep=gnmt_zero_shot --workdir_root=runs/gnmt_zero_shot \
        --devices=cpu --max_parallel=2
    python -m launch.table runs/gnmt_zero_shot --metrics='bleu/mean_*,offtarget/mean_*' \
        --over=seed
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.gnmt"
FLAGFILE = "experiments/flagfiles/gnmt/tiny_cpu.flags"

REMEDIES = [
    {"decoder_start": "bos", "align_loss_weight": 0.0},       # the baseline
    {"decoder_start": "language", "align_loss_weight": 0.0},
    {"decoder_start": "bos", "align_loss_weight": 1.0},
    {"decoder_start": "language", "align_loss_weight": 1.0},
    # Max pooling's cosine distance is near 0 from the first steps (a weak pull): mean
    # pooling, and a ten times larger weight.
    {"decoder_start": "language", "align_loss_weight": 1.0, "align_pooling": "mean"},
    {"decoder_start": "language", "align_loss_weight": 10.0},
    # Synthetic pairs made online by the model from step 2,000 (experiments/gnmt/synthetic.py):
    # random online back-translation (Zhang et al. 2020) and pivot-translated sources.
    {"synthetic_pairs": "robt"},
    {"synthetic_pairs": "pivot"},
]


def trials():
  return [{**remedy, **trial} for remedy in REMEDIES for trial in product(seed=[0, 1, 2])]
