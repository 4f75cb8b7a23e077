"""Command line of the GNMT experiment; see `experiments/gnmt/__init__.py`."""

from experiments import common
from experiments.gnmt import GNMTConfig, train_and_evaluate, translate

common.define_flags(GNMTConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(GNMTConfig)
  if config.mode == "translate":
    translate(config, common.existing_workdir())
    return
  workdir = common.prepare_workdir("gnmt", config)
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  common.run(main)
