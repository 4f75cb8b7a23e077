"""Ma, Sigal & Sclaroff (2016)'s tables at small scale: CNN, LSTM, LSTM-m and LSTM-s on the
generated streams, three seeds each; every run scores detection and early detection (the
first 3/10 of each activity), at tIoU α = 0.1 ... 0.8.

    python -m launch.sweep --sweep=activity_ranking --workdir_root=runs/activity_ranking \
        --devices=cpu --max_parallel=2
    python -m launch.table runs/activity_ranking --over=seed \
        --metrics='test/mAP@*,test/early_mAP@*,test/mAP,test/early_mAP'

PAPER: the paper's ActivityNet rows (mAP in percent there, fractions here), detection and
early detection.
"""

EXPERIMENT = "experiments.activity"
FLAGFILE = "experiments/flagfiles/activity/lstm_cpu.flags"
VARIANTS = ["cnn_cpu", "lstm_cpu", "lstm_m_cpu", "lstm_s_cpu"]
SEEDS = [0, 1, 2]
ALPHAS = ["0.10", "0.20", "0.30", "0.40", "0.50", "0.60", "0.70", "0.80"]
_DETECTION = {
    "cnn_cpu": [30.1, 26.9, 23.4, 21.2, 18.9, 17.5, 16.5, 15.8],
    "lstm_cpu": [48.1, 44.3, 40.6, 35.6, 31.3, 28.3, 26.0, 24.6],
    "lstm_m_cpu": [52.6, 48.9, 45.1, 40.1, 35.1, 31.8, 29.1, 27.2],
    "lstm_s_cpu": [54.0, 50.1, 46.3, 41.2, 36.4, 33.0, 30.4, 28.7],
}
_EARLY = {
    "cnn_cpu": [27.0, 23.4, 20.4, 17.2, 14.6, 12.3, 11.0, 10.3],
    "lstm_cpu": [49.5, 44.7, 38.8, 33.9, 29.6, 25.6, 23.5, 22.4],
    "lstm_m_cpu": [52.6, 47.9, 41.5, 36.2, 31.4, 27.1, 24.8, 23.5],
    "lstm_s_cpu": [55.1, 50.3, 44.0, 38.9, 34.1, 29.8, 27.4, 26.1],
}
PAPER = {
    v: {**{f"test/mAP@{a}": round(x / 100, 4) for a, x in zip(ALPHAS, _DETECTION[v])},
        **{f"test/early_mAP@{a}": round(x / 100, 4) for a, x in zip(ALPHAS, _EARLY[v])}}
    for v in VARIANTS
}


def trials():
  return [{"flagfile": f"experiments/flagfiles/activity/{v}.flags", "seed": s}
          for v in VARIANTS for s in SEEDS]
