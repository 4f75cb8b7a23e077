"""Sequence-to-sequence pieces on one decoder contract: attention, decoding.

    from rnn_jax import seq2seq
    decoder = seq2seq.Decoder(init_state, step, vocab_size)        # the contract
    out = seq2seq.beam_search(decoder, params, memory, start, beam_size=4, max_len=50,
                              eos=EOS, alpha=0.6)                  # tokens [B, U], scores [B]

`attention` holds Bahdanau (plain, normalized) and Luong (dot, general) attention
over a memory with its mask; `decoding` holds greedy decoding, sampling (a fixed-
length scan whose log-probs can be differentiated) and GNMT's beam search; `forcing`
holds teacher forcing and scheduled sampling (Bengio et al. 2015) with its schedules;
`sequence_losses` holds REINFORCE with a baseline and self-critical training, `mixer`
MIXER's mixed rollout, loss and Δ schedule (Ranzato et al. 2016), `rewards` the
host-side rewards (sacrebleu's sentence BLEU, CIDEr-D as pycocoevalcap computes it).
"""

from rnn_jax.seq2seq import attention, decoding, forcing, mixer, rewards, sequence_losses
from rnn_jax.seq2seq.decoder import Decoder, ensemble
from rnn_jax.seq2seq.decoding import (Decoded, Sampled, beam_search, coverage_penalty, greedy,
                                      length_penalty, proportional_limits, sample)
from rnn_jax.seq2seq.forcing import scheduled_sampling, teacher_forcing
from rnn_jax.seq2seq.sequence_losses import reinforce_loss, self_critical_loss

__all__ = ["ensemble", "mixer", "rewards", "attention", "decoding", "forcing", "sequence_losses", "reinforce_loss",
           "self_critical_loss", "scheduled_sampling", "teacher_forcing", "Decoder", "Decoded", "Sampled", "beam_search",
           "coverage_penalty", "greedy", "length_penalty", "proportional_limits", "sample"]
