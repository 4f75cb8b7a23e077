"""Image captioning: Show and Tell; Show, Attend and Tell: `python -m experiments.captioning`.

    python -m experiments.captioning --flagfile=experiments/flagfiles/captioning/scenes_cpu.flags \
        --workdir=/tmp/captioning
    python -m experiments.captioning.evaluate --references=/tmp/captioning/test_references.json \
        --candidates=/tmp/captioning/test_captions.json

(work in progress: see experiments/captioning/README.md)
"""

from experiments.captioning.config import CaptioningConfig
from experiments.captioning.train import caption, evaluate_ensemble, train_and_evaluate

__all__ = ["CaptioningConfig", "caption", "evaluate_ensemble", "train_and_evaluate"]
