"""Bengio et al. (2015)'s captioning table on the generated scenes: Show and Tell (NIC)
trained with cross-entropy (with and without dropout), always sampling, scheduled sampling
(inverse sigmoid; uniform), each over three seeds; the ensembles of the baseline's and of
scheduled sampling's seeds; and a sequence-level row, SCST on CIDEr-D from the
cross-entropy model (Rennie et al. 2017).

    for pass in 1 2 3; do  # the encoder, then the trials that read it, then the ensembles
      python -m launch.sweep --sweep=scheduled_sampling --workdir_root=runs/scheduled_sampling \
          --devices=cpu --max_parallel=2
    done
    python -m launch.table runs/scheduled_sampling \
        --metrics='test/Bleu_4,test/METEOR,test/CIDEr' --over=seed

Show and Tell reads the image only as its first input, and with a CNN trained from scratch
it writes one caption for every image on most seeds (12 of 18 runs; RESULTS.md). The
paper's NIC starts from an ImageNet CNN; here the first trial, `encoder`, trains Show,
Attend and Tell (the scenes_cpu flagfile, seed 0) and every Show and Tell trial starts
from its CNN, frozen (`--encoder_from=encoder --freeze_encoder`). A trial whose encoder or
ensemble members have not finished fails with one line; running the sweep command again
once they have retries it (hence the loop above). Metrics are pycocoevalcap's, as
fractions (the paper's table is in percent: BLEU-4 28.8 is 0.288 here, CIDEr 89.5 is
0.895).

Show and Tell on scenes plateaus by step 1,000 (its valid CIDEr-D at 1,000, 2,000 and
3,000 steps in the `captioning_models` sweep moves by under 0.1), so these trials train
1,500 steps: 18 of them fit an afternoon on 2 CPU cores. The inverse sigmoid's k is 200
(the paper's schedules are for longer runs): ε, the chance of feeding the gold word, is
0.94 at step 500, 0.57 at 1,000 and 0.10 at 1,500; always sampling is ε = 0 (linear with
k = c = 0). SCST takes over from the cross-entropy model at step 1,000.
"""

EXPERIMENT = "experiments.captioning"
FLAGFILE = "experiments/flagfiles/captioning/scenes_cpu.flags"
SEEDS = [0, 1, 2]

_STEPS = {"train_steps": 1500, "eval_every": 500}
_XENT = {"training": "xent", "ss_schedule": "inverse_sigmoid", "ss_feed": "sample"}
_SS = {"training": "scheduled_sampling", "ss_k": 200.0}
ROWS = {
    "baseline": {**_XENT, "dropout": 0.0},
    "baseline_dropout": {**_XENT, "dropout": 0.3},
    "always_sampling": {**_SS, "ss_schedule": "linear", "ss_k": 0.0, "ss_c": 0.0,
                        "ss_min": 0.0, "ss_feed": "sample", "dropout": 0.0},
    "scheduled_sampling": {**_SS, "ss_schedule": "inverse_sigmoid", "ss_feed": "sample",
                           "dropout": 0.0},
    "uniform_scheduled_sampling": {**_SS, "ss_schedule": "inverse_sigmoid",
                                   "ss_feed": "uniform", "dropout": 0.0},
    "scst": {**_XENT, "training": "scst", "training_start_step": 1000, "dropout": 0.0},
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


_ENCODER = {"encoder_from": "encoder", "freeze_encoder": True}


def trials():
  out = [{"_name": "encoder", "model": "show_attend_tell", "seed": 0}]
  for row, flags in ROWS.items():
    for seed in SEEDS:
      out.append({"_name": f"{row}_seed{seed}", "mode": "train", "model": "show_and_tell",
                  **_ENCODER, **_STEPS, **flags, "seed": seed})
  for name, row in ENSEMBLES.items():
    out.append({"_name": name, "mode": "ensemble", "model": "show_and_tell", **_ENCODER,
                **_STEPS, **ROWS[row],
                "ensemble": [f"{row}_seed{seed}" for seed in SEEDS], "seed": 0})
  return out
