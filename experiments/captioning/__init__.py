"""Image captioning: Show and Tell; Show, Attend and Tell: `python -m experiments.captioning`.

    python -m experiments.captioning --flagfile=experiments/flagfiles/captioning/scenes_cpu.flags \
        --workdir=/tmp/captioning
    python -m experiments.captioning.evaluate --references=/tmp/captioning/test_references.json \
        --candidates=/tmp/captioning/test_captions.json
    python -m experiments.captioning --flagfile=/tmp/captioning/flags.txt --mode=caption \
        --caption_dir=my_images/

scenes_cpu trains Show, Attend and Tell (soft attention, CNN from scratch) on the generated
scenes in about 11 minutes on 2 CPU cores and should reach test CIDEr-D about 1.27 (three
seeds: 1.275 ± 0.019), against about 0.56 for Show and Tell (`--model=show_and_tell`) and
0.265 for the most frequent caption. results.json holds pycocoevalcap's BLEU-1..4, METEOR,
ROUGE_L and CIDEr (CIDEr-D) under `test/`, the most-frequent-caption baseline under
`most_frequent/`, and on scenes `localisation/attention` against `localisation/uniform`;
attention/ holds per-word attention plots. Usage: experiments/captioning/README.md;
figures and commands: experiments/captioning/RESULTS.md.
"""

from experiments.captioning.config import CaptioningConfig
from experiments.captioning.train import caption, evaluate_ensemble, train_and_evaluate

__all__ = ["CaptioningConfig", "caption", "evaluate_ensemble", "train_and_evaluate"]
