"""Zaremba et al. 2014 on PTB: the small, medium and large LSTMs (Table 1 of the paper).

    python -m launch.sweep --sweep=zaremba_ptb --workdir_root=runs/zaremba_ptb
    python -m launch.table runs/zaremba_ptb --metrics=valid/ppl,test/ppl
"""

EXPERIMENT = "experiments.lm"
FLAGFILE = "experiments/flagfiles/lm/zaremba_small.flags"
PAPER = {
    "zaremba_small": {"valid/ppl": 120.7, "test/ppl": 114.5},
    "zaremba_medium": {"valid/ppl": 82.2, "test/ppl": 79.7},
    "zaremba_large": {"valid/ppl": 78.4, "test/ppl": 75.2},
}


def trials():
  return [{"flagfile": f"experiments/flagfiles/lm/zaremba_{size}.flags"}
          for size in ("small", "medium", "large")]
