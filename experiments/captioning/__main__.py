"""Command line of the captioning experiment; see `experiments/captioning/__init__.py`."""

from experiments import common
from experiments.captioning import CaptioningConfig, caption, evaluate_ensemble, train_and_evaluate

common.define_flags(CaptioningConfig)


def main(argv):
  common.check_no_positional(argv)
  config = common.config_from_flags(CaptioningConfig)
  if config.mode == "caption":
    caption(config, common.existing_workdir())
    return
  workdir = common.prepare_workdir("captioning", config)
  if config.mode == "ensemble":
    evaluate_ensemble(config, workdir)
    return
  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  common.run(main)
