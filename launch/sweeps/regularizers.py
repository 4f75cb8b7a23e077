"""The medium PTB model with each regularizer: Zaremba's dropout, variational dropout (Gal &
Ghahramani 2016), recurrent dropout (Semeniuta et al. 2016), zoneout (Krueger et al. 2016), the
norm stabilizer (Krueger & Memisevic 2016).

    python -m launch.sweep --sweep=regularizers --workdir_root=runs/regularizers
    python -m launch.table runs/regularizers --metrics=valid/ppl,test/ppl
"""

EXPERIMENT = "experiments.lm"
FLAGFILE = "experiments/flagfiles/lm/zaremba_medium.flags"
PAPER = {"zaremba_medium": {"valid/ppl": 82.2, "test/ppl": 79.7}}  # Zaremba et al. 2014, Table 1

_FLAGFILES = ("zaremba_medium", "medium_variational", "medium_recurrent_dropout",
              "medium_zoneout", "medium_norm_stabilizer")


def trials():
  return [{"flagfile": f"experiments/flagfiles/lm/{name}.flags"} for name in _FLAGFILES]
