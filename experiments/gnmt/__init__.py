r"""Multilingual GNMT (Wu et al. 2016; Johnson et al. 2017): `python -m experiments.gnmt`.

    python -m experiments.gnmt --flagfile=experiments/flagfiles/gnmt/tiny_cpu.flags --workdir=/tmp/gnmt
    echo "in nineteen eighty-four ; the third" | \
      python -m experiments.gnmt --flagfile=/tmp/gnmt/flags.txt --mode=translate --target_lang=de

8 + 8 LSTM layers, a bi-directional bottom encoder layer, residual connections
from the third layer on, GNMT attention from the bottom decoder layer fed to
every layer, one shared sentencepiece vocabulary and a `<2xx>` token naming
the target language. The default corpus is embedded (numbers rendered by
num2words in en, de, fr, es); directions never trained on are evaluated
zero-shot. results.json holds `bleu/<src>-<tgt>` and `chrf/<src>-<tgt>`
(sacrebleu, detokenized) for every evaluated direction; measured figures and
their commands are in experiments/gnmt/RESULTS.md.
"""

from experiments.gnmt.config import GNMTConfig
from experiments.gnmt.train import train_and_evaluate, translate

__all__ = ["GNMTConfig", "train_and_evaluate", "translate"]
