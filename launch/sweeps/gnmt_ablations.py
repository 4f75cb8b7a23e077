"""GNMT's architecture choices, one at a time from the tiny_cpu baseline (Wu et al. 2016):
the bi-directional bottom encoder layer, residual connections, source reversal, attention.

    python -m launch.sweep --sweep=gnmt_ablations --workdir_root=runs/gnmt_ablations
    python -m launch.table runs/gnmt_ablations --metrics='bleu/*'
"""

from launch.sweep_lib import ablations

EXPERIMENT = "experiments.gnmt"
FLAGFILE = "experiments/flagfiles/gnmt/tiny_cpu.flags"

# The baseline as tiny_cpu.flags sets it, written out so every trial's row shows all four.
BASELINE = {"bidirectional_bottom": True, "residual_from": 2, "reverse_source": False,
            "attention": "normed_bahdanau"}


def trials():
  return ablations(BASELINE, bidirectional_bottom=[False], residual_from=[-1],
                   reverse_source=[True],
                   attention=["bahdanau", "normed_bahdanau", "luong_dot", "luong_general"])
