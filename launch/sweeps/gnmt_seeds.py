"""The tiny_cpu GNMT (the README's main job) over ten seeds: how far its BLEU moves with
the seed alone (initialisation, dropout and data order), the spread any other change to
the model or the kernels has to be read against.

    python -m launch.sweep --sweep=gnmt_seeds --workdir_root=runs/gnmt_seeds --devices=cpu \
        --max_parallel=2
    python -m launch.table runs/gnmt_seeds --metrics='bleu/*' --over=seed

`--over=seed` folds the trials into one row of mean ± standard deviation (and min, max).
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.gnmt"
FLAGFILE = "experiments/flagfiles/gnmt/tiny_cpu.flags"


def trials():
  return product(seed=list(range(10)))
