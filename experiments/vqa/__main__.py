"""Command line of the VQA experiment; see `experiments/vqa/__init__.py`."""

from experiments import common
from experiments.vqa import VQAConfig, answer, train_and_evaluate

common.define_flags(VQAConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(VQAConfig)
  if config.mode == "answer":
    answer(config, common.existing_workdir())
    return
  train_and_evaluate(config, common.prepare_workdir("vqa", config))


if __name__ == "__main__":
  common.run(main)
