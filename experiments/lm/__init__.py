r"""Language modelling on Penn Treebank (Zaremba, Sutskever & Vinyals 2014).

    python -m experiments.lm --flagfile=experiments/flagfiles/lm/zaremba_small.flags --workdir=runs/lm_small
    python -m experiments.lm --flagfile=experiments/flagfiles/lm/tiny_cpu.flags --workdir=/tmp/lm_tiny

Word-level PTB (`$RNN_JAX_DATA/ptb`, 10k types, tokens `line.split() + ["<eos>"]`)
with truncated BPTT, the carry passed across batches; perplexity on valid and
test. `--level=char` trains on tinyshakespeare and reports bits per character.
The paper's small model (2 x 200 LSTM, no dropout) reaches test perplexity
114.5; results measured here are in `experiments/lm/RESULTS.md`.
"""

from experiments.lm.config import LMConfig
from experiments.lm.train import train_and_evaluate

__all__ = ["LMConfig", "train_and_evaluate"]
