"""Visual question answering, CNN + LSTM: `python -m experiments.vqa`.

    python -m experiments.vqa --flagfile=experiments/flagfiles/vqa/scenes_cpu.flags \
        --workdir=/tmp/vqa
    python -m experiments.vqa --flagfile=/tmp/vqa/flags.txt --mode=answer \
        --image=scene.png --question="how many red circles are there"
    python -m experiments.vqa.evaluate --questions=Q.json --annotations=A.json \
        --results=R.json

Models (`model.py`): deeper LSTM Q + norm I (Antol et al. 2015), VIS+LSTM (Ren et al.
2015), stacked attention (Yang et al. 2016), answer generation (Malinowski et al. 2015),
and the baselines question_only, image_only and prior. Data (`data.py`, `corpora.py`):
generated scenes (`experiments/vision/scene_questions.py`), DAQUAR, VQA v2 JSON, CLEVR
through TFDS. Metrics (`evaluate.py`, `wups.py`): accuracy per question type, the official
VQA accuracy, DAQUAR's accuracy and WUPS. Usage: experiments/vqa/README.md; figures and
commands: experiments/vqa/RESULTS.md.
"""

from experiments.vqa.config import VQAConfig
from experiments.vqa.train import answer, train_and_evaluate

__all__ = ["VQAConfig", "answer", "train_and_evaluate"]
