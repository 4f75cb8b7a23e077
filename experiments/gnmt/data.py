"""Parallel corpora, the shared sentencepiece vocabulary, and batches.

Every corpus becomes, per split, a dict `{lang: [sentence, ...]}` of parallel
lines (multi-parallel corpora: numbers, Multi30k) or a dict of direction ->
(source lines, target lines) (WMT through TFDS). One sentencepiece model is
trained on every training line of every language (all lines, no sampling:
that makes it reproducible) and saved as `workdir/spm.model`; a resumed run
or the translate mode loads it.

Ids: 0 pad, 1 unk, 2 bos, 3 eos, then one `<2xx>` token per language, a
sentencepiece control symbol: `encode` never produces it (a "<2fr>" typed in
the input is plain text), only the code inserts it, by id. A source is
`[<2tgt>] + pieces + [eos]` (Johnson et al. 2017: the token names the target
language), a target `[bos] + pieces` in and `pieces + [eos]` out.
Longer sentences are truncated to `max_source_len` / `max_target_len`; the
number truncated is printed.
"""

from __future__ import annotations

import gzip
import io
import os
from typing import NamedTuple

import numpy as np
import sentencepiece as spm

from experiments.common import UserError, data_path
from experiments.gnmt import numbers

PAD, UNK, BOS, EOS = 0, 1, 2, 3
MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}


def parse_direction(direction: str) -> tuple[str, str]:
  parts = direction.split("-")
  if len(parts) != 2 or not all(parts):
    raise UserError(f"direction {direction!r}: expected src-tgt, e.g. en-de")
  return parts[0], parts[1]


class Corpus(NamedTuple):
  languages: tuple[str, ...]
  splits: dict  # split -> {(src, tgt): (source lines, target lines)}


def _multiparallel(by_lang: dict[str, list[str]], directions) -> dict:
  return {d: (by_lang[d[0]], by_lang[d[1]]) for d in directions}


def load(config) -> Corpus:
  """The corpus of `config.corpus`, with every train and evaluated direction."""
  train_dirs = [parse_direction(d) for d in config.train_directions]
  eval_dirs = train_dirs + [parse_direction(d) for d in config.zero_shot_directions]
  if config.corpus == "numbers":
    languages = numbers.LANGUAGES
    _check_languages(eval_dirs, languages, "numbers")
    lines = lambda split, lang: list(numbers.sentences(
        split, lang, config.num_train_sentences, config.num_eval_sentences))
    splits = {split: _multiparallel({l: lines(split, l) for l in languages},
                                    train_dirs if split == "train" else eval_dirs)
              for split in ("train", "valid", "test")}
  elif config.corpus == "multi30k":
    languages = MULTI30K_LANGUAGES
    _check_languages(eval_dirs, languages, "multi30k")
    root = data_path(config, "multi30k")
    splits = {}
    for split, name in MULTI30K_SPLITS.items():
      by_lang = {l: _read_lines(os.path.join(root, f"{name}.{l}.gz")) for l in languages}
      splits[split] = _multiparallel(by_lang, train_dirs if split == "train" else eval_dirs)
  elif config.corpus in ("wmt14_translate", "wmt_t2t"):
    from experiments.gnmt import wmt
    languages, splits = wmt.load(config, train_dirs, eval_dirs)
  else:
    raise UserError(f"--corpus: expected numbers, multi30k, wmt14_translate or wmt_t2t, "
                    f"got {config.corpus!r}")
  return Corpus(tuple(languages), splits)


def _check_languages(directions, languages, corpus):
  for src, tgt in directions:
    for lang in (src, tgt):
      if lang not in languages:
        raise UserError(f"unknown language code {lang!r} in {src}-{tgt}: the {corpus} corpus "
                        f"has {', '.join(languages)}")


def _read_lines(path: str) -> list[str]:
  if not os.path.exists(path):
    raise UserError(f"{path} not found")
  with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz")
        else open(path, encoding="utf-8")) as f:
    lines = [line.rstrip("\n") for line in f]
  if not any(line.strip() for line in lines):
    raise UserError(f"{path} is empty")
  return lines


def _language_tokens_as_control(model_proto: bytes, languages) -> bytes:
  """The model with its `<2xx>` pieces made control symbols, ids unchanged.

  Models trained before they were control symbols hold them as user-defined
  symbols, which sentencepiece matches inside raw text: a typed "<2fr>" became
  the language token. A control symbol is never produced by `encode`; only the
  code inserts it, by id. Ordinary text encodes as before.
  """
  from sentencepiece import sentencepiece_model_pb2
  model = sentencepiece_model_pb2.ModelProto()
  model.ParseFromString(model_proto)
  names = {f"<2{l}>" for l in languages}
  changed = False
  for piece in model.pieces:
    if piece.piece in names and piece.type != piece.CONTROL:
      piece.type, changed = piece.CONTROL, True
  return model.SerializeToString() if changed else model_proto


class Tokenizer:
  """The shared sentencepiece model plus one `<2xx>` control symbol per language."""

  def __init__(self, model_proto: bytes, languages):
    model_proto = _language_tokens_as_control(model_proto, languages)
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.model_proto = model_proto
    self.languages = tuple(languages)
    self.lang_ids = {l: self.sp.piece_to_id(f"<2{l}>") for l in self.languages}
    if any(i == UNK for i in self.lang_ids.values()):
      raise ValueError("the sentencepiece model lacks the <2xx> tokens")

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def lang_token(self, lang: str) -> int:
    if lang not in self.lang_ids:
      raise UserError(f"unknown language code {lang!r}: this model knows "
                      f"{', '.join(self.languages)}")
    return self.lang_ids[lang]

  def encode_source(self, text: str, target_lang: str, max_len: int) -> tuple[list[int], bool]:
    """`[<2tgt>] + pieces + [eos]`, cut to `max_len`; also whether it was cut."""
    ids = [self.lang_token(target_lang)] + self.sp.encode(text)
    return ids[:max_len - 1] + [EOS], len(ids) + 1 > max_len

  def encode_target(self, text: str, max_len: int) -> tuple[list[int], bool]:
    """`pieces + [eos]`, cut to `max_len` (the eos kept); also whether it was cut."""
    ids = self.sp.encode(text)
    return ids[:max_len - 1] + [EOS], len(ids) + 1 > max_len

  def decode(self, ids) -> str:
    special = {PAD, BOS, EOS, *self.lang_ids.values()}
    return self.sp.decode([int(i) for i in ids if int(i) not in special])


def train_tokenizer(corpus: Corpus, config) -> Tokenizer:
  """Trains sentencepiece on every training line of every language, deterministically."""
  seen, lines = set(), []
  for (src, tgt), (src_lines, tgt_lines) in corpus.splits["train"].items():
    for lang, lang_lines in ((src, src_lines), (tgt, tgt_lines)):
      if lang not in seen:  # each language's lines once
        seen.add(lang)
        lines.extend(line for line in lang_lines if line.strip())
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=config.vocab_size,
        model_type=config.spm_model_type, character_coverage=1.0, pad_id=PAD, unk_id=UNK,
        bos_id=BOS, eos_id=EOS, control_symbols=[f"<2{l}>" for l in corpus.languages],
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
  except RuntimeError as e:
    raise UserError(f"--vocab_size={config.vocab_size}: sentencepiece failed ({e}); the "
                    "corpus may have fewer distinct pieces, choose a smaller vocabulary") from e
  return Tokenizer(model.getvalue(), corpus.languages)


def tokenizer_for(workdir: str, corpus: Corpus | None, config) -> Tokenizer:
  """Loads `workdir/spm.model`, or trains it from the corpus and saves it there."""
  path = os.path.join(workdir, "spm.model")
  if os.path.exists(path):
    with open(path, "rb") as f:
      languages = corpus.languages if corpus is not None else _languages_file(workdir)
      return Tokenizer(f.read(), languages)
  if corpus is None:
    raise UserError(f"--workdir={workdir} has no spm.model: train a model there first")
  tokenizer = train_tokenizer(corpus, config)
  with open(path + ".tmp", "wb") as f:
    f.write(tokenizer.model_proto)
  os.replace(path + ".tmp", path)
  with open(os.path.join(workdir, "languages.txt"), "w") as f:
    f.write("\n".join(corpus.languages) + "\n")
  return tokenizer


def _languages_file(workdir: str) -> tuple[str, ...]:
  with open(os.path.join(workdir, "languages.txt")) as f:
    return tuple(line.strip() for line in f if line.strip())


class Examples(NamedTuple):
  source: list[list[int]]
  target: list[list[int]]
  direction: tuple = ()  # each pair's direction index (the order of `pairs`); () if unknown


def encode_pairs(tokenizer: Tokenizer, pairs: dict, config) -> tuple[Examples, int]:
  """All directions' pairs as id lists; returns them and how many were truncated."""
  source, target, direction, truncated = [], [], [], 0
  for d, ((src, tgt), (src_lines, tgt_lines)) in enumerate(pairs.items()):
    for s, t in zip(src_lines, tgt_lines):
      if not s.strip() or not t.strip():
        continue
      s_ids, s_cut = tokenizer.encode_source(s, tgt, config.max_source_len)
      t_ids, t_cut = tokenizer.encode_target(t, config.max_target_len)
      truncated += s_cut or t_cut
      source.append(s_ids)
      target.append(t_ids)
      direction.append(d)
  return Examples(source, target, tuple(direction)), truncated


def pad(rows: list[list[int]], length: int) -> np.ndarray:
  out = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row[:length]
  return out


def bucket(n: int, cap: int, multiple: int = 16) -> int:
  """Pads lengths up to a multiple of 16 (at most `cap`), so few shapes compile."""
  return min(cap, -(-n // multiple) * multiple)


class Batches:
  """Training batches as a pure function of the step, grouped by length.

  Each epoch shuffles the pairs (seeded by the run's seed and the epoch), cuts
  the order into windows of 32 batches, sorts each window by length and cuts
  it into batches, then shuffles the batches: every batch holds pairs of
  similar lengths, so little of it is padding, and the data order stays random.

  With `balance=True` (`--balance_directions`) every batch holds every
  direction in proportion to its share of the data (for equal shares and B = 64
  over 6 directions: 10 or 11 pairs of each). Each direction's pairs are
  shuffled and length-sorted in windows on their own, and the directions are
  interleaved by their position in that order, so the pairs side by side in
  the merged order have similar lengths and every B consecutive ones hold each
  direction's share, to within one pair.
  """

  WINDOW = 32  # batches per sorting window

  def __init__(self, examples: Examples, batch_size: int, seed: int, config,
               balance: bool = False):
    if len(examples.source) < batch_size:
      raise UserError(f"{len(examples.source)} training pairs are fewer than --batch_size "
                      f"{batch_size}")
    if balance and len(examples.direction) != len(examples.source):
      raise ValueError("balance=True needs each example's direction (Examples.direction)")
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.config = config
    self.balance = balance
    self.steps_per_epoch = len(examples.source) // batch_size
    self._lengths = np.array([max(len(s), len(t)) for s, t in zip(examples.source, examples.target)])
    self._epoch, self._batches = -1, None

  def _sorted_windows(self, order: np.ndarray, window: int) -> np.ndarray:
    """`order` with each run of `window` entries sorted by length (stable)."""
    order = order.copy()
    for lo in range(0, len(order), window):
      chunk = order[lo:lo + window]
      order[lo:lo + window] = chunk[np.argsort(self._lengths[chunk], kind="stable")]
    return order

  def _epoch_batches(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      rng = np.random.default_rng([self.seed, epoch])
      B, n = self.batch_size, len(self._lengths)
      if self.balance:
        direction = np.asarray(self.examples.direction)
        parts, positions = [], []
        for d in np.unique(direction):
          members = np.flatnonzero(direction == d)
          share = max(1, round(self.WINDOW * B * len(members) / n))  # its part of a window
          parts.append(self._sorted_windows(rng.permutation(members), share))
          positions.append((np.arange(len(members)) + 0.5) / len(members))
        merged = np.concatenate(parts)[np.argsort(np.concatenate(positions), kind="stable")]
        order = merged[:self.steps_per_epoch * B]
      else:
        order = rng.permutation(n)[:self.steps_per_epoch * B]
        order = self._sorted_windows(order, self.WINDOW * B)
      batches = order.reshape(self.steps_per_epoch, B)
      self._batches = batches[rng.permutation(self.steps_per_epoch)]
      self._epoch = epoch
    return self._batches

  def __call__(self, step: int, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """The batch of `step`, or its `rows` (one process's share in a multi-host run).

    The padded lengths come from the whole batch, so every process's share has
    the same shapes (`make_array_from_process_local_data` needs that) and is
    exactly those rows of the whole batch.
    """
    epoch, i = divmod(step, self.steps_per_epoch)
    batch = self._epoch_batches(epoch)[i]
    index = batch[rows]
    return make_batch([self.examples.source[j] for j in index],
                      [self.examples.target[j] for j in index], self.config,
                      longest=int(self._lengths[batch].max()))


DECODER_STARTS = ("bos", "language")


def start_token(config) -> int | None:
  """The decoder's first input: BOS, or None for the target-language token (the source's
  first token; `--decoder_start=language`)."""
  return BOS if config.decoder_start == "bos" else None


def make_batch(sources, targets, config, longest: int | None = None) -> dict[str, np.ndarray]:
  """Pads a batch; `longest` (default: the longest of these rows) picks the bucket."""
  # One bucket for both sides: a handful of (S, U) shapes in a run, each compiled once.
  n = longest or max(max(map(len, sources)), max(map(len, targets)))
  S, U = bucket(n, config.max_source_len), bucket(n, config.max_target_len)
  # Shifted right: bos y1 .. y_{n-1}, or <2xx> y1 .. y_{n-1} with --decoder_start=language.
  first = [BOS] * len(sources) if start_token(config) == BOS else [s[0] for s in sources]
  target_in = [[f] + t[:-1] for f, t in zip(first, targets)]
  batch = {"source": pad(sources, S),
           "source_lengths": np.array([len(s) for s in sources], np.int32),
           "target_in": pad(target_in, U),
           "target_out": pad(targets, U),
           "target_lengths": np.array([len(t) for t in targets], np.int32)}
  if config.align_loss_weight > 0:  # the target as the encoder reads it: <2xx> y1 .. eos
    align = [[s[0]] + t for s, t in zip(sources, targets)]
    batch["align_source"] = pad(align, bucket(n + 1, config.max_target_len + 1))
    batch["align_lengths"] = np.array([len(a) for a in align], np.int32)
  return batch
