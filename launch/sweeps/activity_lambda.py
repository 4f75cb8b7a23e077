"""How the ranking losses' weight λ_r changes LSTM-s and LSTM-m on the generated streams
(three seeds each; λ_r = 0 is `activity_ranking`'s lstm_cpu, λ_r = 1 its lstm_s_cpu and
lstm_m_cpu).

    python -m launch.sweep --sweep=activity_lambda --workdir_root=runs/activity_lambda \
        --devices=cpu --max_parallel=2
    python -m launch.table runs/activity_lambda --over=seed \
        --metrics='test/mAP@0.10,test/mAP@0.50,test/mAP,test/early_mAP,progression/*'
"""

from launch import sweep_lib

EXPERIMENT = "experiments.activity"
FLAGFILE = "experiments/flagfiles/activity/lstm_s_cpu.flags"


def trials():
  return sweep_lib.product(ranking=["score", "margin"], lambda_r=[0.3, 3.0, 10.0],
                           seed=[0, 1, 2])
