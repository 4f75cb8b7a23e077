"""Command line of the long-range experiment; see `experiments/long_range/__init__.py`."""

from experiments import common
from experiments.long_range import LongRangeConfig, train_and_evaluate

common.define_flags(LongRangeConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(LongRangeConfig)
  from experiments.long_range import train as train_lib
  train_lib.check_config(config)  # before the workdir is touched
  workdir = common.prepare_workdir("long_range", config)
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  common.run(main)
