"""Bengio et al. (2015)'s captioning table on the generated scenes: Show and Tell (NIC)
trained with cross-entropy (with and without dropout), always sampling, scheduled sampling
(inverse sigmoid; uniform), each over three seeds; the ensembles of the baseline's and of
scheduled sampling's seeds; and a sequence-level row, SCST on CIDEr-D from the
cross-entropy model (Rennie et al. 2017).

    python -m launch.sweep --sweep=scheduled_sampling --workdir_root=runs/scheduled_sampling \
        --devices=cpu --max_parallel=2
    python -m launch.sweep ...   # the same command again: see below
    python -m launch.table runs/scheduled_sampling \
        --metrics='test/Bleu_4,test/METEOR,test/CIDEr' --over=seed

The two ensemble trials (`--mode=ensemble`) read their members' checkpoints: a member
that has not finished fails them with one line, and running the sweep command again
after the seeds are done retries them. Metrics are pycocoevalcap's, as fractions (the
paper's table is in percent: BLEU-4 28.8 is 0.288 here, CIDEr 89.5 is 0.895).

Scenes runs are 3,000 steps, so the inverse sigmoid's k is 400 (the paper's schedules
are for longer runs): ε, the chance of feeding the gold word, is 0.99 at step 1,000,
0.73 at 2,000 and 0.18 at 3,000; always sampling is ε = 0 (linear with k = c = 0).
"""

EXPERIMENT = "experiments.captioning"
FLAGFILE = "experiments/flagfiles/captioning/scenes_cpu.flags"
SEEDS = [0, 1, 2]

_XENT = {"training": "xent", "ss_schedule": "inverse_sigmoid", "ss_feed": "sample"}
_SS = {"training": "scheduled_sampling", "ss_k": 400.0}
ROWS = {
    "baseline": {**_XENT, "dropout": 0.0},
    "baseline_dropout": {**_XENT, "dropout": 0.3},
    "always_sampling": {**_SS, "ss_schedule": "linear", "ss_k": 0.0, "ss_c": 0.0,
                        "ss_min": 0.0, "ss_feed": "sample", "dropout": 0.0},
    "scheduled_sampling": {**_SS, "ss_schedule": "inverse_sigmoid", "ss_feed": "sample",
                           "dropout": 0.0},
    "uniform_scheduled_sampling": {**_SS, "ss_schedule": "inverse_sigmoid",
                                   "ss_feed": "uniform", "dropout": 0.0},
    "scst": {**_XENT, "training": "scst", "training_start_step": 2000, "dropout": 0.0},
}
ENSEMBLES = {"baseline_ensemble": "baseline", "scheduled_sampling_ensemble": "scheduled_sampling"}

# Bengio et al. 2015's captioning table (MSCOCO development set), as fractions like
# pycocoevalcap's; keys select trials by their flags (launch/sweeps/__init__.py).
PAPER = {
    "mode=train,training=xent,dropout=0.0": {"test/Bleu_4": 0.288, "test/METEOR": 0.242,
                                             "test/CIDEr": 0.895},
    "mode=train,training=xent,dropout=0.3": {"test/Bleu_4": 0.281, "test/METEOR": 0.239,
                                             "test/CIDEr": 0.870},
    "ss_schedule=linear": {"test/Bleu_4": 0.112, "test/METEOR": 0.157, "test/CIDEr": 0.497},
    "mode=train,training=scheduled_sampling,ss_schedule=inverse_sigmoid,ss_feed=sample": {
        "test/Bleu_4": 0.306, "test/METEOR": 0.243, "test/CIDEr": 0.921},
    "ss_feed=uniform": {"test/Bleu_4": 0.292, "test/METEOR": 0.242, "test/CIDEr": 0.909},
    "mode=ensemble,training=xent": {"test/Bleu_4": 0.307, "test/METEOR": 0.251,
                                    "test/CIDEr": 0.957},
    "mode=ensemble,training=scheduled_sampling": {"test/Bleu_4": 0.323, "test/METEOR": 0.254,
                                                  "test/CIDEr": 0.987},
}


def trials():
  out = []
  for row, flags in ROWS.items():
    for seed in SEEDS:
      out.append({"_name": f"{row}_seed{seed}", "mode": "train", "model": "show_and_tell",
                  **flags, "seed": seed})
  for name, row in ENSEMBLES.items():
    out.append({"_name": name, "mode": "ensemble", "model": "show_and_tell", **ROWS[row],
                "ensemble": [f"{row}_seed{seed}" for seed in SEEDS], "seed": 0})
  return out
