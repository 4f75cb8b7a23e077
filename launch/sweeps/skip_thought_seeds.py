"""Skip-thought on the novels (novels_cpu), three seeds: training, then the seven tasks for
uni-skip, bi-skip, combine-skip and both baselines, beside the paper's combine-skip.

    python -m launch.sweep --sweep=skip_thought_seeds --workdir_root=runs/skip_thought_seeds \
        --devices=cpu
    python -m launch.table runs/skip_thought_seeds --over=seed \
        --metrics='senteval/*_acc,senteval/*_f1,senteval/*_pearson'

Each trial builds the corpus once into the shared runs/cache (the later trials read it).
"""

EXPERIMENT = "experiments.skip_thought"
FLAGFILE = "experiments/flagfiles/skip_thought/novels_cpu.flags"

# Kiros et al. (2015), combine-skip (Tables 3-5); accuracies and F1 in %.
_PAPER = {"MR_acc": 76.5, "CR_acc": 80.1, "SUBJ_acc": 93.6, "MPQA_acc": 87.1,
          "TREC_acc": 92.2, "SICK_pearson": 0.8584, "SICK_spearman": 0.7916,
          "SICK_mse": 0.2687, "MSRP_acc": 73.0, "MSRP_f1": 82.0}
PAPER = {"novels_cpu": {f"senteval/combine-skip/{k}": v for k, v in _PAPER.items()}}


def trials():
  return [{"seed": s, "cache_dir": "runs/cache"} for s in (0, 1, 2)]
