"""Command line of the skip-thought experiment; see `experiments/skip_thought/__init__.py`."""

from experiments import common
from experiments.skip_thought.config import SkipThoughtConfig
from experiments.skip_thought.train import train_and_evaluate

common.define_flags(SkipThoughtConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(SkipThoughtConfig)
  workdir = common.prepare_workdir("skip_thought", config)
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  common.run(main)
