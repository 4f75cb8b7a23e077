"""Command line of the activity experiment; see `experiments/activity/__init__.py`."""

from experiments import common
from experiments.activity.config import ActivityConfig
from experiments.activity.train import train_and_evaluate

common.define_flags(ActivityConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(ActivityConfig)
  train_and_evaluate(config, common.prepare_workdir("activity", config))


if __name__ == "__main__":
  common.run(main)
