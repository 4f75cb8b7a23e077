r"""Multilingual GNMT (Wu et al. 2016; Johnson et al. 2017): `python -m experiments.gnmt`.

    python -m experiments.gnmt --flagfile=experiments/flagfiles/gnmt/tiny_cpu.flags --workdir=/tmp/gnmt
    echo "in nineteen eighty-four ; the third" | \
      python -m experiments.gnmt --flagfile=/tmp/gnmt/flags.txt --mode=translate --target_lang=de

8 + 8 LSTM layers, a bi-directional bottom encoder layer, residual connections
from the third layer on, GNMT attention from the bottom decoder layer fed to
every layer, one shared sentencepiece vocabulary and a `<2xx>` token naming
the target language. The default corpus is embedded (numbers rendered by
num2words in en, de, fr, es); directions never trained on are evaluated
zero-shot. results.json holds, for every evaluated direction, `bleu/<src>-<tgt>`
and `chrf/<src>-<tgt>` (sacrebleu, detokenized; `signature/bleu` and
`signature/chrf` are sacrebleu's signatures), `offtarget/<src>-<tgt>` (percent
of outputs not in the target language, by `langid`, a character n-gram naive
Bayes fit on the training text) and `cut/<src>-<tgt>` (outputs that reached
their decoding limit without EOS), with the means over supervised and zero-shot
directions; `test_params` and `test_params_steps` name the params tested:

    --test_params=last       the final step (default)
    --test_params=best       workdir/best/, the evaluated step with the best
                             valid/bleu/mean_supervised (kept across resumes)
    --test_params=average    the mean of the last --average_last=N checkpoints

`--decode_length_ratio=2` limits each output to twice its source's pieces
(tensorflow/nmt; 0, the default, leaves --max_target_len alone). Decoding runs
in batches sorted by source length, split over the devices like training.

`--training` picks how the decoder learns (`rnn_jax.seq2seq.objectives`):
xent (default: teacher forcing, the whole-sequence decoder), scheduled_sampling
(`--ss_schedule`, `--ss_k`, `--ss_c`, `--ss_min`, `--ss_feed`), mixer
(`--mixer_delta_step` tokens more every `--mixer_delta_every` steps) or scst, the
last two rewarded by sacrebleu's sentence BLEU of the detokenized output (computed
on the host inside the step); `--training_start_step=N` trains with cross-entropy
before step N. The stepwise methods run the decoder on the library's contract
(`GNMT.decoder()`), dropout included.
Measured figures and their commands are in experiments/gnmt/RESULTS.md.
"""

from experiments.gnmt.config import GNMTConfig
from experiments.gnmt.train import train_and_evaluate, translate

__all__ = ["GNMTConfig", "train_and_evaluate", "translate"]
