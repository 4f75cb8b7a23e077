"""Command line of the LM experiment; see `experiments/lm/__init__.py`."""

from experiments import common
from experiments.lm import LMConfig, train_and_evaluate

common.define_flags(LMConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(LMConfig)
  workdir = common.prepare_workdir("lm", config)
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  common.run(main)
