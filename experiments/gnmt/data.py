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
from tqdm import tqdm

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


def _frame(pieces: list[list[int]], prefix: list[int], max_len: int):
  """`prefix + pieces + [eos]` per row, cut to `max_len` (the eos kept); and which were cut."""
  rows = [prefix + p for p in pieces]
  return [r[:max_len - 1] + [EOS] for r in rows], [len(r) + 1 > max_len for r in rows]


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
    (ids,), (cut,) = self.encode_sources([text], target_lang, max_len)
    return ids, cut

  def encode_target(self, text: str, max_len: int) -> tuple[list[int], bool]:
    """`pieces + [eos]`, cut to `max_len` (the eos kept); also whether it was cut."""
    (ids,), (cut,) = self.encode_targets([text], max_len)
    return ids, cut

  def encode_sources(self, texts, target_lang: str, max_len: int, num_threads: int = 1):
    """`encode_source` of many texts at once (sentencepiece's threads): (ids, cut) lists."""
    return _frame(self.sp.encode(list(texts), num_threads=num_threads),
                  [self.lang_token(target_lang)], max_len)

  def encode_targets(self, texts, max_len: int, num_threads: int = 1):
    """`encode_target` of many texts at once: (ids, cut) lists."""
    return _frame(self.sp.encode(list(texts), num_threads=num_threads), [], max_len)

  def decode(self, ids) -> str:
    special = {PAD, BOS, EOS, *self.lang_ids.values()}
    return self.sp.decode([int(i) for i in ids if int(i) not in special])


def tokenizer_lines(corpus: Corpus, sample: int = 0) -> list[str]:
  """The lines sentencepiece learns from: every language's training lines once, empty ones
  left out; with `sample > 0`, at most that many of them drawn uniformly without
  replacement (a fixed generator: the same sample every run), in corpus order, read by
  index, so a streamed corpus is never read whole."""
  seen, parts = set(), []
  for (src, tgt), (src_lines, tgt_lines) in corpus.splits["train"].items():
    for lang, lang_lines in ((src, src_lines), (tgt, tgt_lines)):
      if lang not in seen:  # each language's lines once
        seen.add(lang)
        parts.append(lang_lines)
  total = sum(len(p) for p in parts)
  if sample <= 0 or sample >= total:
    return [line for part in parts for line in part if line.strip()]
  picked = np.sort(np.random.default_rng(0).choice(total, sample, replace=False))
  starts = np.cumsum([0] + [len(p) for p in parts])
  part_of = np.searchsorted(starts, picked, side="right") - 1
  lines = (parts[k][int(i - starts[k])] for k, i in zip(part_of, picked))
  return [line for line in lines if line.strip()]


def train_tokenizer(corpus: Corpus, config) -> Tokenizer:
  """Trains sentencepiece on the training lines of every language (`tokenizer_lines`):
  all of them by default, deterministically; `--spm_input_sentence_size` samples them and
  `--spm_threads` trains with threads (WMT scale)."""
  lines = tokenizer_lines(corpus, config.spm_input_sentence_size)
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=config.vocab_size,
        model_type=config.spm_model_type, character_coverage=1.0, pad_id=PAD, unk_id=UNK,
        bos_id=BOS, eos_id=EOS, control_symbols=[f"<2{l}>" for l in corpus.languages],
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=config.spm_threads,
        minloglevel=2)
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


class Ragged:
  """Rows of ids of different lengths in one flat array (`values [total]`, `offsets [n + 1]`):
  a few bytes per id instead of a Python list per row. Row i is `values[offsets[i]:offsets[i + 1]]`,
  given back as a list (what `make_batch` builds batches from)."""

  def __init__(self, values: np.ndarray, offsets: np.ndarray):
    self.values, self.offsets = values, offsets

  @classmethod
  def from_rows(cls, rows, dtype=np.int32) -> "Ragged":
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.fromiter((i for r in rows for i in r), dtype, int(offsets[-1]))
    return cls(values, offsets)

  @classmethod
  def concatenate(cls, parts: list["Ragged"]) -> "Ragged":
    if not parts:
      return cls(np.zeros((0,), np.int32), np.zeros((1,), np.int64))
    shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
    offsets = np.concatenate([[0]] + [p.offsets[1:] + k for p, k in zip(parts, shifts)])
    return cls(np.concatenate([p.values for p in parts]), offsets)

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def __getitem__(self, i) -> list[int]:
    return self.values[self.offsets[i]:self.offsets[i + 1]].tolist()

  def __iter__(self):
    return (self[i] for i in range(len(self)))


class Examples(NamedTuple):
  source: "Ragged | list[list[int]]"
  target: "Ragged | list[list[int]]"
  direction: "np.ndarray | tuple" = ()  # each pair's direction index (the order of `pairs`)


ENCODE_CHUNK = 8192  # lines encoded at once (sentencepiece's threads work on one chunk)


def _chunks(lines, size: int):
  """`lines` (a list, or a streamed sequence) `size` at a time, in order."""
  for lo in range(0, len(lines), size):
    yield [lines[i] for i in range(lo, min(lo + size, len(lines)))]


def encode_pairs(tokenizer: Tokenizer, pairs: dict, config, progress: bool = False
                 ) -> tuple[Examples, int]:
  """All directions' pairs as ids (`Ragged`); returns them and how many were truncated.

  The lines are read and encoded a chunk at a time (`ENCODE_CHUNK`, with
  `--spm_threads`), so a streamed corpus is never held as Python strings; pairs
  with an empty side are left out.
  """
  dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
  sources, targets, directions, truncated = [], [], [], 0
  total = sum(len(src_lines) for src_lines, _ in pairs.values())
  bar = tqdm(total=total, desc="encoding", unit="pair", disable=not progress, leave=False)
  for d, ((src, tgt), (src_lines, tgt_lines)) in enumerate(pairs.items()):
    if len(src_lines) != len(tgt_lines):
      raise UserError(f"{src}-{tgt}: {len(src_lines)} source lines but {len(tgt_lines)} "
                      "target lines")
    for s_chunk, t_chunk in zip(_chunks(src_lines, ENCODE_CHUNK), _chunks(tgt_lines, ENCODE_CHUNK)):
      keep = [i for i, (a, b) in enumerate(zip(s_chunk, t_chunk)) if a.strip() and b.strip()]
      s_ids, s_cut = tokenizer.encode_sources([s_chunk[i] for i in keep], tgt,
                                              config.max_source_len, config.spm_threads)
      t_ids, t_cut = tokenizer.encode_targets([t_chunk[i] for i in keep],
                                              config.max_target_len, config.spm_threads)
      truncated += sum(a or b for a, b in zip(s_cut, t_cut))
      sources.append(Ragged.from_rows(s_ids, dtype))
      targets.append(Ragged.from_rows(t_ids, dtype))
      directions.append(np.full((len(keep),), d, np.int32))
      bar.update(len(s_chunk))
  bar.close()
  direction = np.concatenate(directions) if directions else np.zeros((0,), np.int32)
  return Examples(Ragged.concatenate(sources), Ragged.concatenate(targets), direction), truncated


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

  With `batch_tokens > 0` (`--batch_tokens`, for WMT scale) a batch holds
  pairs of one length bucket only, as many as fit in `batch_tokens` tokens
  padded (`rows_for`, a multiple of `multiple`: the devices): short sentences
  come in big batches, long ones in small, so a step costs about the same
  whatever its lengths. Each epoch shuffles the pairs, cuts each bucket into
  its batches (the remainder of a bucket waits for another epoch's order) and
  shuffles the batches.
  """

  WINDOW = 32  # batches per sorting window

  def __init__(self, examples: Examples, batch_size: int, seed: int, config,
               balance: bool = False, batch_tokens: int = 0, multiple: int = 1):
    if balance and len(examples.direction) != len(examples.source):
      raise ValueError("balance=True needs each example's direction (Examples.direction)")
    if balance and batch_tokens:
      raise UserError("--balance_directions and --batch_tokens do not combine: choose one")
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.config = config
    self.balance = balance
    self.batch_tokens = batch_tokens
    self.multiple = multiple
    self._lengths = np.maximum(_row_lengths(examples.source), _row_lengths(examples.target))
    if batch_tokens:
      cap = max(config.max_source_len, config.max_target_len)
      lengths, index = np.unique(self._lengths, return_inverse=True)
      self._bucket = np.array([bucket(int(n), cap) for n in lengths])[index]  # [N]
      keys, counts = np.unique(self._bucket, return_counts=True)
      self._rows = {int(k): self.rows_for(int(k)) for k in keys}
      self.steps_per_epoch = int(sum(c // self._rows[int(k)] for k, c in zip(keys, counts)))
      if self.steps_per_epoch == 0:
        raise UserError(f"--batch_tokens={batch_tokens}: {len(self._lengths)} training pairs "
                        "fill no batch; lower it")
    else:
      if len(self._lengths) < batch_size:
        raise UserError(f"{len(self._lengths)} training pairs are fewer than --batch_size "
                        f"{batch_size}")
      self.steps_per_epoch = len(self._lengths) // batch_size
    self._epoch, self._batches = -1, None

  def rows_for(self, padded_length: int) -> int:
    """--batch_tokens: the rows of a batch padded to `padded_length` (source and target each
    hold at most batch_tokens tokens, padding included), a multiple of `multiple`."""
    m = self.multiple
    return max(m, self.batch_tokens // padded_length // m * m)

  def _sorted_windows(self, order: np.ndarray, window: int) -> np.ndarray:
    """`order` with each run of `window` entries sorted by length (stable)."""
    order = order.copy()
    for lo in range(0, len(order), window):
      chunk = order[lo:lo + window]
      order[lo:lo + window] = chunk[np.argsort(self._lengths[chunk], kind="stable")]
    return order

  def _epoch_batches(self, epoch: int):
    """Epoch `epoch`'s batches: `[steps_per_epoch, B]` indices, or with --batch_tokens a
    list of index arrays whose size depends on their bucket."""
    if epoch != self._epoch:
      rng = np.random.default_rng([self.seed, epoch])
      B, n = self.batch_size, len(self._lengths)
      if self.batch_tokens:  # each bucket's pairs in random order, cut into its batch size
        order = rng.permutation(n)
        batches = []
        for k, rows in self._rows.items():
          members = order[self._bucket[order] == k]
          batches += [members[i:i + rows] for i in range(0, len(members) - rows + 1, rows)]
        self._batches = [batches[i] for i in rng.permutation(len(batches))]
        self._epoch = epoch
        return self._batches
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

  def __call__(self, step: int, rows: slice = slice(None), process: tuple[int, int] | None = None
               ) -> dict[str, np.ndarray]:
    """The batch of `step`, or its `rows`, or process p's share of it (`process=(p, count)`:
    the p-th of `count` equal parts, one per process in a multi-host run).

    The padded lengths come from the whole batch, so every process's share has
    the same shapes (`make_array_from_process_local_data` needs that) and is
    exactly those rows of the whole batch.
    """
    epoch, i = divmod(step, self.steps_per_epoch)
    batch = self._epoch_batches(epoch)[i]
    if process is not None:
      p, count = process
      rows = slice(p * len(batch) // count, (p + 1) * len(batch) // count)
    index = batch[rows]
    out = make_batch([self.examples.source[j] for j in index],
                     [self.examples.target[j] for j in index], self.config,
                     longest=int(self._lengths[batch].max()))
    if self.config.synthetic_pairs:  # each row's training direction
      out["direction"] = np.asarray(self.examples.direction, np.int32)[index]
    return out


def _row_lengths(rows) -> np.ndarray:
  return rows.lengths() if isinstance(rows, Ragged) else np.array([len(r) for r in rows], np.int64)


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
