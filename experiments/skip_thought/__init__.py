"""Skip-thought vectors (Kiros et al. 2015) on 100 novels: `python -m experiments.skip_thought`.

    python -m experiments.skip_thought --flagfile=experiments/flagfiles/skip_thought/novels_cpu.flags \
        --workdir=runs/skip_thought
    python -m experiments.skip_thought.evaluate --workdir=runs/skip_thought

A GRU encoder reads a sentence; two conditional GRU decoders write the sentence before
and the one after it (`model.py`). uni-skip and bi-skip train side by side on the same
batches; combine-skip is both vectors. The corpus (`corpus.py`, `sentences.py`) is
$RNN_JAX_DATA/novels split into sentences by a Punkt model learnt from the novels
themselves; the encoder knows 20,000 words and vocabulary expansion (`expansion.py`)
maps any word of the corpus's skip-gram vectors (`word_vectors.py`) into it. The
evaluation (`senteval.py`, `evaluate.py`) scores the frozen encoders and two baselines
(mean word vectors, an untrained GRU over them) on MR, CR, SUBJ, MPQA, TREC, SICK and
MSRP, beside the paper's combine-skip row. Usage: experiments/skip_thought/README.md;
figures and commands: experiments/skip_thought/RESULTS.md.

Nothing is imported here: the corpus build's worker processes import this package, and
should not load JAX for it (`config.SkipThoughtConfig`, `train.train_and_evaluate`).
"""
