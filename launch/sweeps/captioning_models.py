"""Show, Attend and Tell against Show and Tell on the generated scenes (issue #15's
scenes_cpu check: attention must win on CIDEr-D), three seeds each, with the attention
localisation of Show, Attend and Tell beside uniform attention's, and Show, Attend and
Tell without the doubly stochastic regulariser (λ = 0), which spreads attention:

    python -m launch.sweep --sweep=captioning_models --workdir_root=runs/captioning_models \
        --devices=cpu --max_parallel=2
    python -m launch.table runs/captioning_models \
        --metrics='test/CIDEr,test/Bleu_4,test/METEOR,most_frequent/CIDEr,localisation/*' \
        --over=seed
"""

from launch.sweep_lib import product

EXPERIMENT = "experiments.captioning"
FLAGFILE = "experiments/flagfiles/captioning/scenes_cpu.flags"


def trials():
  return (product(model=["show_attend_tell", "show_and_tell"], seed=[0, 1, 2])
          + product(model=["show_attend_tell"], doubly_stochastic=[0.0], seed=[0, 1, 2]))
