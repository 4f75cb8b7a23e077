"""The VQA orderings of issue #16, three seeds each:

* scenes (scenes_cpu): question + image models (deeper LSTM Q + norm I, VIS+LSTM, stacked
  attention) against question only, image only and the answer prior;
* DAQUAR-all (daquar_cpu): deeper LSTM Q + norm I and answer generation (Ask Your
  Neurons) against question only, image only and the answer prior, beside Malinowski et
  al. (2015)'s figures.

    python -m launch.sweep --sweep=vqa_models --workdir_root=runs/vqa_models \
        --devices=cpu --max_parallel=2
    python -m launch.table runs/vqa_models --over=seed \
        --metrics='test/accuracy,test/accuracy_*,test/wups@0.9,test/wups@0.0,prior/accuracy'

The prior trials only count answers (seconds); the others train.
"""

EXPERIMENT = "experiments.vqa"
FLAGFILE = "experiments/flagfiles/vqa/scenes_cpu.flags"
DAQUAR = "experiments/flagfiles/vqa/daquar_cpu.flags"
SEEDS = [0, 1, 2]
SCENES_MODELS = ["lstm_q_norm_i", "vis_lstm", "san", "question_only", "image_only", "prior"]
DAQUAR_MODELS = ["lstm_q_norm_i", "answer_generation", "question_only", "image_only", "prior"]

# Malinowski, Rohrbach & Fritz (ICCV 2015), "Ask Your Neurons", DAQUAR-all, answers scored
# as multiple words (the setting here): Neural-Image-QA and its language-only model.
# Accuracy as a fraction; keys select trials by their flags (launch/sweeps/__init__.py).
PAPER = {
    "daquar_cpu,model=answer_generation": {"test/accuracy": 0.1943},
    "daquar_cpu,model=question_only": {"test/accuracy": 0.1715},
}


def trials():
  out = [{"model": m, "seed": s} for m in SCENES_MODELS for s in SEEDS]
  out += [{"flagfile": DAQUAR, "model": m, "seed": s} for m in DAQUAR_MODELS for s in SEEDS]
  return out
