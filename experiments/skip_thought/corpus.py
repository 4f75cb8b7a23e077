"""The book corpus: novels -> paragraphs -> sentences -> words -> ids -> triples -> batches.

    corpus = build(os.path.join(data_dir, "novels"), cache_dir, vocab_size=20000)
    batches = Batches(corpus, batch_size=128, seed=0)
    batch = batches.at(step)      # a pure function of the step

**Paragraphs** (`read_novel`). The files are UTF-8 with a byte-order mark and CRLF
line ends. 44 of the 100 novels hold one paragraph per line; the other 56 are
hard-wrapped at about 70 characters (Project Gutenberg's layout), some with blank
lines between paragraphs, some without (taking each line for a paragraph would cut
most of their sentences in two). A novel is taken as wrapped when fewer than
`WRAPPED_LONG_LINES` of its lines are over 100 characters; its lines are joined
into paragraphs, a paragraph ending at a blank line, at a heading, or after a line
shorter than `SHORT_LINE` of the novel's width (the 95th percentile of its line
lengths). In every novel a line that starts with a lowercase letter continues the
line before it. A line that ends with a hyphen after a letter joins the next without
a space ("port-" + "wine" -> "port-wine").

**Headings** (`is_heading`) are dropped: paragraphs of at most `HEADING_WORDS` words
that have no lowercase letter ("CHAPTER IV.", "BLEAK HOUSE", "1880"), that start with
a heading word and a number ("Chapter 1", "Book the First"), or that end without
punctuation, hold no double quote and have at least half their words capitalised
("Arthur Conan Doyle", "Mr. Sherlock Holmes", "A House full of Visitors"); and
paragraphs with no letter or digit ("* * *").

**Sentences** come from `sentences.Splitter` with Punkt parameters learnt from
every `punkt_every`-th paragraph of each novel, and `sentences.tokenize`; sentences
with no letter or digit are left out. Sentence order within a novel is kept; novels
come in sorted file-name order.

**Ids.** 0 pad, 1 unknown, 2 end of sentence, 3 beginning of sentence, then every
word seen, by decreasing count, ties in alphabetical order (`Corpus.words`). The
corpus stores each sentence with these ids (no word is unknown there); the encoder's
vocabulary is the `vocab_size` most frequent words, so its id of a word is the same
number when it is below `NUM_RESERVED + vocab_size` and `UNK` otherwise
(`Corpus.encode_ids`), and the larger vocabulary of word vectors and vocabulary
expansion (every word seen at least `min_count` times) is another prefix of the
same order.

**Held-out split.** The last `held_out_fraction` (rounded up) of each novel's
sentences. A training triple (previous, current, next) is a sentence with both
neighbours in the same novel and all three in the training part; a held-out triple
has all three in the held-out part, so no triple straddles the two.

**Cache.** `cache_dir/novels-<key>/` (arrays.npz, words.json, meta.json, punkt.pkl),
`key` a hash of `CACHE_VERSION`, nltk's version, `punkt_every` and the input file
names and sizes; `vocab_size` and `held_out_fraction` are views of the cached corpus
and do not enter the key.
"""

from __future__ import annotations

import collections
from concurrent import futures
import dataclasses
import functools
import glob
import gzip
import hashlib
from importlib import metadata
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from typing import Iterator, NamedTuple

import numpy as np
from tqdm import tqdm

from experiments.skip_thought import sentences as sentences_lib

PAD, UNK, EOS, BOS = 0, 1, 2, 3
RESERVED = ("<pad>", "<unk>", "</s>", "<s>")
NUM_RESERVED = len(RESERVED)

CACHE_VERSION = 1          # bump when the processing below changes what a build produces
# Punkt learns from every 10th paragraph of each novel: 1.4 M words, 14 s of CPU and 0.6 GB,
# against 110 s and 4.1 GB for all 14 M; the two split 0.2% of paragraphs differently.
PUNKT_EVERY = 10
WRAPPED_LONG_LINES = 0.1   # a novel with fewer lines over 100 characters than this is wrapped
SHORT_LINE = 0.6           # in a wrapped novel, a line shorter than this x width ends a paragraph
HEADING_WORDS = 12

_HEADING_WORD = re.compile(  # a heading word, then a number (Roman numerals in capitals)
    r"(?i:chapter|book|part|volume|vol\.|canto|section|stave|letter)\s+"
    r"([IVXLCDM]+\b|\d+|(?i:the\s+\w+|(one|two|three|four|five|six|seven|eight|nine|ten|"
    r"eleven|twelve|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\b))")
_TERMINAL = re.compile(r"""[.?!;:,'")\]-]$""")
_ALNUM = re.compile(r"\w")


# ---------------------------------------------------------------------------------------------
# Novels -> paragraphs

def read_lines(path: str) -> list[str]:
  """The lines of a `.txt` or `.txt.gz` file: byte-order mark and CR gone, right-stripped."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    text = f.read().decode("utf-8-sig")
  return [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def _is_title_line(line: str) -> bool:
  """A line that is a heading on its own: no lowercase letter, or "Chapter 1"-like."""
  if len(line.split()) > HEADING_WORDS:
    return False
  return not any(c.islower() for c in line) or bool(_HEADING_WORD.match(line))


def is_heading(paragraph: str) -> bool:
  """Whether `paragraph` is a heading, a title or a separator rather than prose (module
  docstring)."""
  if not _ALNUM.search(paragraph):
    return True
  if len(paragraph.split()) > HEADING_WORDS:
    return False
  if _is_title_line(paragraph):
    return True
  words = paragraph.split()
  capitalised = sum(w[:1].isupper() or w[:1].isdigit() for w in words)
  return not _TERMINAL.search(paragraph) and '"' not in paragraph and 2 * capitalised >= len(words)


def _join(lines: list[str]) -> str:
  text = lines[0]
  for line in lines[1:]:
    glued = len(text) > 1 and text[-1] == "-" and text[-2].isalpha() and line[:1].isalpha()
    text += line if glued else " " + line
  return text


def paragraphs(lines: list[str]) -> list[str]:
  """`lines` (of one novel) as paragraphs, blank lines gone, wrapped lines joined (module
  docstring)."""
  lines = [line.strip() for line in lines]
  lengths = np.array([len(line) for line in lines if line], np.int64)
  if not len(lengths):
    return []
  wrapped = np.mean(lengths > 100) < WRAPPED_LONG_LINES
  short = SHORT_LINE * np.percentile(lengths, 95)
  out, current = [], []
  for line in lines:
    if not line:
      if current:
        out.append(_join(current))
      current = []
      continue
    prev = current[-1] if current else ""
    joins = current and (line[:1].islower() or (
        wrapped and len(prev) >= short and not _is_title_line(prev)
        and not _is_title_line(line)))
    if joins:
      current.append(line)
    else:
      if current:
        out.append(_join(current))
      current = [line]
  if current:
    out.append(_join(current))
  return out


def read_novel(path: str) -> list[str]:
  """The paragraphs of one novel (`paragraphs(read_lines(path))`), headings included."""
  return paragraphs(read_lines(path))


def novel_paths(data_dir: str, max_novels: int = 0) -> list[str]:
  """The novels (`*.txt.gz`, `*.txt`) in `data_dir`, sorted by name; the first `max_novels`
  when it is positive."""
  paths = sorted(glob.glob(os.path.join(data_dir, "*.txt.gz")) +
                 glob.glob(os.path.join(data_dir, "*.txt")))
  if not paths:
    raise FileNotFoundError(f"no novels (*.txt.gz, *.txt) in {data_dir}")
  return paths[:max_novels] if max_novels > 0 else paths


# ---------------------------------------------------------------------------------------------
# The work on one novel (run in worker processes)

def _punkt_sample(task: tuple[str, int]) -> list[str]:
  """Every `every`-th prose paragraph of one novel (headings left out)."""
  path, every = task
  return [p for p in read_novel(path) if not is_heading(p)][::every]


@functools.lru_cache(maxsize=1)
def _splitter(punkt_path: str) -> sentences_lib.Splitter:
  return sentences_lib.Splitter(sentences_lib.load_params(punkt_path))


class NovelWords(NamedTuple):
  words: list[str]        # the novel's distinct words, in order of first use
  ids: np.ndarray         # [T] int32 indices into `words`
  lengths: np.ndarray     # [N] int64 words per sentence
  paragraphs: int
  headings: int


def novel_words(splitter: sentences_lib.Splitter, paragraphs_: list[str]) -> NovelWords:
  """One novel's paragraphs as sentences of word indices (headings and sentences without a
  letter or digit left out)."""
  index, ids, lengths, headings = {}, [], [], 0
  for paragraph in paragraphs_:
    if is_heading(paragraph):
      headings += 1
      continue
    for words in sentences_lib.split_and_tokenize(splitter, paragraph):
      if not any(_ALNUM.search(w) for w in words):
        continue
      lengths.append(len(words))
      ids.extend(index.setdefault(w, len(index)) for w in words)
  return NovelWords(list(index), np.array(ids, np.int32), np.array(lengths, np.int64),
                    len(paragraphs_), headings)


def _novel_words(task: tuple[str, str]) -> NovelWords:
  path, punkt_path = task
  return novel_words(_splitter(punkt_path), read_novel(path))


# ---------------------------------------------------------------------------------------------
# The corpus

class Ragged(NamedTuple):
  """Rows of different lengths in one flat array: row i is `values[offsets[i]:offsets[i + 1]]`
  (as experiments/gnmt/data.py's `Ragged`)."""
  values: np.ndarray   # [total] int32
  offsets: np.ndarray  # [N + 1] int64

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def row(self, i: int) -> np.ndarray:
    return self.values[self.offsets[i]:self.offsets[i + 1]]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Corpus:
  """Every sentence of the novels as ids over `words` (module docstring), in novel order.

  Attributes:
    sentences: `Ragged` ids `NUM_RESERVED + rank` of each word: `[T]` int32, offsets `[N + 1]`.
    novel: `[N]` int32, the novel (index into `novels`) each sentence comes from.
    held_out: `[N]` bool, the held-out split (the tail of each novel).
    words: every word seen, by decreasing count, ties alphabetically; `counts [W]` int64.
    novels: the file names, in order.
    vocab_size: words in the encoder's vocabulary (`vocab` has `NUM_RESERVED` more entries).
    punkt: the Punkt parameters the sentences were split with (`sentences.Splitter(punkt)`).
    stats: counts and timings of the build.
  """
  sentences: Ragged
  novel: np.ndarray
  held_out: np.ndarray
  words: tuple
  counts: np.ndarray
  novels: tuple
  vocab_size: int
  punkt: object
  stats: dict

  def __repr__(self) -> str:
    return (f"Corpus({len(self.novels)} novels, {len(self.sentences)} sentences, "
            f"{len(self.sentences.values)} tokens, {len(self.words)} words, "
            f"vocab_size={self.vocab_size})")

  @functools.cached_property
  def vocab(self) -> list[str]:
    """The encoder's vocabulary, id -> token: `RESERVED` then the `vocab_size` top words."""
    return list(RESERVED) + list(self.words[:self.vocab_size])

  @functools.cached_property
  def index(self) -> dict[str, int]:
    """Word -> encoder id (`vocab`'s inverse); look words up with `.get(w, UNK)`."""
    return {w: i for i, w in enumerate(self.vocab)}

  def encode_ids(self, ids: np.ndarray) -> np.ndarray:
    """Corpus ids -> encoder ids: the same below `NUM_RESERVED + vocab_size`, else `UNK`."""
    return np.where(ids < NUM_RESERVED + self.vocab_size, ids, UNK).astype(np.int32)

  def encode(self, words: list[str]) -> np.ndarray:
    """Words (from `sentences.tokenize`) -> `[len(words)]` encoder ids."""
    return np.array([self.index.get(w, UNK) for w in words], np.int32)

  def splitter(self) -> sentences_lib.Splitter:
    return sentences_lib.Splitter(self.punkt)

  def large_vocab(self, min_count: int = 5) -> list[str]:
    """`RESERVED` then every word seen at least `min_count` times: the vocabulary of the word
    vectors (a word's id there is its corpus id)."""
    return list(RESERVED) + list(self.words[:int(np.sum(self.counts >= min_count))])

  def large_counts(self, min_count: int = 5) -> np.ndarray:
    """`[len(large_vocab(min_count))]` int64 counts, 0 for the reserved ids."""
    n = int(np.sum(self.counts >= min_count))
    return np.concatenate([np.zeros((NUM_RESERVED,), np.int64), self.counts[:n]])

  def word_stream(self, min_count: int = 5, split: str = "train") -> np.ndarray:
    """The sentences of `split` ("train", "held_out" or "all") as one flat int32 array of ids
    in `large_vocab(min_count)`, each sentence followed by -1 (a break); rarer words are left
    out, as word2vec leaves out words below its min-count."""
    keep = _split_mask(self, split)
    lengths = self.sentences.lengths()
    breaks = np.cumsum(lengths) + np.arange(len(lengths))  # where each sentence's -1 goes
    stream = np.full((len(self.sentences.values) + len(lengths),), -1, np.int32)
    mask = np.ones_like(stream, bool)
    mask[breaks] = False
    stream[mask] = self.sentences.values
    row = np.repeat(np.arange(len(lengths)), lengths + 1)
    limit = NUM_RESERVED + int(np.sum(self.counts >= min_count))
    return stream[keep[row] & (stream < limit)]

  def triples(self, split: str = "train") -> np.ndarray:
    """`[M]` int64 indices of the current sentences of `split`'s triples (sorted); the
    previous and next sentences are the indices minus and plus one."""
    n = len(self.sentences)
    if n < 3:
      return np.zeros((0,), np.int64)
    inside = _split_mask(self, split)
    mid = np.arange(1, n - 1)
    same = ((self.novel[mid - 1] == self.novel[mid]) & (self.novel[mid + 1] == self.novel[mid])
            & inside[mid - 1] & inside[mid] & inside[mid + 1])
    return mid[same].astype(np.int64)


def _split_mask(corpus: Corpus, split: str) -> np.ndarray:
  if split == "train":
    return ~corpus.held_out
  if split == "held_out":
    return corpus.held_out
  if split == "all":
    return np.ones_like(corpus.held_out)
  raise ValueError(f"split: expected train, held_out or all, got {split!r}")


def held_out_mask(novel: np.ndarray, fraction: float) -> np.ndarray:
  """`[N]` bool: the last `ceil(fraction * n)` sentences of each novel of n sentences
  (`novel [N]` sorted, as the corpus stores it)."""
  starts = np.searchsorted(novel, novel, side="left")
  ends = np.searchsorted(novel, novel, side="right")
  n = ends - starts
  held = np.ceil(fraction * n).astype(np.int64)
  return np.arange(len(novel)) - starts >= n - held


# ---------------------------------------------------------------------------------------------
# Build and cache

def cache_key(paths: list[str], punkt_every: int) -> str:
  """16 hex digits naming the build of `paths` (module docstring)."""
  spec = {"version": CACHE_VERSION, "nltk": metadata.version("nltk"), "punkt_every": punkt_every,
          "files": [[os.path.basename(p), os.path.getsize(p)] for p in paths]}
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class _Workers:
  """`map(fn, tasks)`: `[fn(t) for t in tasks]` in order, over `processes` spawned workers
  (1: in this process), with a tqdm bar; one pool for every map of a build.

  Spawned, not forked: the caller may have started JAX's threads, which a fork would copy
  half-way. A spawned worker imports the caller's main module, so a script that calls
  `build` must do it under `if __name__ == "__main__":`; otherwise the workers fail
  to start and `map` raises (a `multiprocessing.Pool` would respawn them forever).
  """

  def __init__(self, processes: int, progress: bool):
    self.processes, self.progress, self._pool = processes, progress, None

  def __enter__(self):
    if self.processes > 1:
      self._pool = futures.ProcessPoolExecutor(
          self.processes, mp_context=multiprocessing.get_context("spawn"))
    return self

  def __exit__(self, *exc):
    if self._pool is not None:
      self._pool.shutdown(cancel_futures=True)

  def map(self, fn, tasks, desc: str) -> list:
    bar = functools.partial(tqdm, total=len(tasks), desc=desc, unit="novel",
                            disable=not self.progress)
    if self._pool is None:
      return [fn(t) for t in bar(tasks)]
    try:
      return list(bar(self._pool.map(fn, tasks)))
    except futures.process.BrokenProcessPool as e:
      raise RuntimeError(
          f"{desc}: a worker process died ({e}); a script that calls corpus.build must call "
          "it under `if __name__ == \"__main__\":` (the workers are spawned), or pass "
          "processes=1") from e


def _merge(per_novel: list[NovelWords]):
  """Global word order (decreasing count, ties alphabetical), counts and the `Ragged` ids."""
  totals = collections.Counter()
  for nw in per_novel:
    totals.update(dict(zip(nw.words, np.bincount(nw.ids, minlength=len(nw.words)).tolist())))
  words = sorted(totals, key=lambda w: (-totals[w], w))
  rank = {w: NUM_RESERVED + i for i, w in enumerate(words)}
  counts = np.array([totals[w] for w in words], np.int64)
  values = [np.array([rank[w] for w in nw.words], np.int32)[nw.ids] if len(nw.ids)
            else np.zeros((0,), np.int32) for nw in per_novel]
  lengths = np.concatenate([nw.lengths for nw in per_novel])
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  per_novel_sentences = [len(nw.lengths) for nw in per_novel]
  novel = np.repeat(np.arange(len(per_novel), dtype=np.int32), per_novel_sentences)
  return tuple(words), counts, Ragged(np.concatenate(values).astype(np.int32), offsets), novel


def build(data_dir: str, cache_dir: str | None, *, vocab_size: int = 20000, max_novels: int = 0,
          held_out_fraction: float = 0.01, punkt_every: int = PUNKT_EVERY, processes: int = 2,
          progress: bool = True) -> Corpus:
  """The corpus of the novels in `data_dir` (module docstring), from the cache when it holds it.

  Args:
    data_dir: the folder of novels (`$RNN_JAX_DATA/novels`).
    cache_dir: where builds are cached (None or "": no cache).
    vocab_size: words in the encoder's vocabulary.
    max_novels: use the first `max_novels` novels by name (0: all).
    held_out_fraction: the tail of each novel held out.
    punkt_every: Punkt learns from every `punkt_every`-th paragraph of each novel.
    processes: worker processes (spawned); 1 works in this process.
    progress: tqdm bars.

  Returns:
    A `Corpus`; `stats` holds the counts and the seconds each stage took.
  """
  if not 0.0 <= held_out_fraction < 1.0:
    raise ValueError(f"held_out_fraction: expected a fraction in [0, 1), got {held_out_fraction}")
  start = time.time()
  paths = novel_paths(data_dir, max_novels)
  key = cache_key(paths, punkt_every)
  final = os.path.join(cache_dir, f"novels-{key}") if cache_dir else None
  if final and os.path.exists(os.path.join(final, "meta.json")):
    corpus = load(final, vocab_size, held_out_fraction)
    corpus.stats["load_seconds"] = time.time() - start
    return corpus
  if cache_dir:
    os.makedirs(cache_dir, exist_ok=True)
  work = tempfile.mkdtemp(prefix=f"novels-{key}.tmp", dir=cache_dir or None)
  try:
    words, counts, ragged, novel, params, stats = _process(paths, work, punkt_every, processes,
                                                           progress)
    stats["seconds"]["total"] = time.time() - start
    if final:
      np.savez(os.path.join(work, "arrays.npz"), values=ragged.values, offsets=ragged.offsets,
               novel=novel, counts=counts)
      with open(os.path.join(work, "words.json"), "w", encoding="utf-8") as f:
        json.dump(list(words), f, ensure_ascii=False)
      with open(os.path.join(work, "meta.json"), "w") as f:
        json.dump({"key": key, "novels": [os.path.basename(p) for p in paths],
                   "punkt_every": punkt_every, "stats": stats}, f, indent=1)
      try:
        os.replace(work, final)
      except OSError:  # another build got there first: its copy is the same
        pass
  finally:
    shutil.rmtree(work, ignore_errors=True)  # gone already when it became the cache
  return Corpus(ragged, novel, held_out_mask(novel, held_out_fraction), words, counts,
                tuple(os.path.basename(p) for p in paths), vocab_size, params, stats)


def _process(paths: list[str], work: str, punkt_every: int, processes: int, progress: bool):
  """Punkt trained on a sample, every novel split and tokenized, the words merged; the Punkt
  parameters written to `work/punkt.pkl` (where the workers read them)."""
  start = time.time()
  with _Workers(min(processes, len(paths)), progress) as workers:
    samples = workers.map(_punkt_sample, [(p, punkt_every) for p in paths], "punkt sample")
    t_read = time.time()
    sample = [p for s in samples for p in s]
    params = sentences_lib.train_punkt(sample)
    t_punkt = time.time()
    punkt_path = os.path.join(work, "punkt.pkl")
    sentences_lib.save_params(params, punkt_path)
    per_novel = workers.map(_novel_words, [(p, punkt_path) for p in paths], "sentences")
  t_split = time.time()
  words, counts, ragged, novel = _merge(per_novel)
  stats = {
      "novels": len(paths), "paragraphs": int(sum(nw.paragraphs for nw in per_novel)),
      "headings": int(sum(nw.headings for nw in per_novel)), "sentences": len(ragged),
      "tokens": int(len(ragged.values)), "types": len(words),
      "punkt_sample_paragraphs": len(sample),
      "punkt_sample_words": int(sum(len(p.split()) for p in sample)),
      "punkt_abbreviations": sorted(params.abbrev_types),
      "seconds": {"read_sample": t_read - start, "punkt": t_punkt - t_read,
                  "split_tokenize": t_split - t_punkt, "merge": time.time() - t_split},
      "processes": processes,
  }
  return words, counts, ragged, novel, params, stats


def load(path: str, vocab_size: int = 20000, held_out_fraction: float = 0.01) -> Corpus:
  """A cached build (`cache_dir/novels-<key>`)."""
  with open(os.path.join(path, "meta.json")) as f:
    meta = json.load(f)
  with open(os.path.join(path, "words.json"), encoding="utf-8") as f:
    words = tuple(json.load(f))
  with np.load(os.path.join(path, "arrays.npz")) as arrays:
    ragged = Ragged(arrays["values"], arrays["offsets"])
    novel, counts = arrays["novel"], arrays["counts"]
  params = sentences_lib.load_params(os.path.join(path, "punkt.pkl"))
  stats = dict(meta["stats"], cached=path)
  return Corpus(ragged, novel, held_out_mask(novel, held_out_fraction), words, counts,
                tuple(meta["novels"]), vocab_size, params, stats)


# ---------------------------------------------------------------------------------------------
# Batches

def round_up(n: int, multiple: int, cap: int) -> int:
  """`n` rounded up to a multiple of `multiple`, at most `cap`."""
  return min(cap, -(-n // multiple) * multiple)


def _gather(sentences: Ragged, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """`rows`' ids cut to `max_len`: `[B, L]` int32 padded with 0 (L the longest) and `[B]`."""
  starts = sentences.offsets[rows]
  lengths = np.minimum(sentences.offsets[rows + 1] - starts, max_len)
  width = max(int(lengths.max(initial=0)), 1)
  pos = np.arange(width)[None, :]
  valid = pos < lengths[:, None]
  ids = sentences.values[np.where(valid, starts[:, None] + pos, 0)]
  return np.where(valid, ids, PAD).astype(np.int32), lengths.astype(np.int32)


def make_batch(corpus: Corpus, current: np.ndarray, *, max_len: int = 30, pad_multiple: int = 8,
               same_width: bool = False) -> dict[str, np.ndarray]:
  """The batch of the triples whose current sentences are `current [B]`, encoder ids, pad 0.

  Returns:
    `source [B, S]` int32, the current sentence cut to `max_len` words (no EOS), with
    `source_lengths [B]`; for `name` in ("prev", "next"): `{name}_in [B, U]` = BOS + words,
    `{name}_out [B, U]` = words + EOS, both cut to `max_len` (a cut row's out ends on a word,
    not EOS), `{name}_lengths [B]` (the same for in and out); `weights [B]` float32 ones.
    S and U are the longest row rounded up to a multiple of `pad_multiple`, at most
    `max_len` (so at most max_len / pad_multiple + 1 shapes compile); U is shared by prev
    and next. With `same_width`, S = U = the larger of the two (fewer shapes to compile).
  """
  current = np.asarray(current, np.int64)
  source, source_lengths = _gather(corpus.sentences, current, max_len)
  batch = {"source_lengths": source_lengths}
  S = round_up(int(source_lengths.max(initial=1)), pad_multiple, max_len)
  batch["source"] = _pad_to(corpus.encode_ids(source), S)
  rows = np.arange(len(current))
  decoded = {}
  for name, shift in (("prev", -1), ("next", 1)):
    words, n = _gather(corpus.sentences, current + shift, max_len)  # n <= max_len
    words = corpus.encode_ids(words)
    inputs = np.zeros((len(current), words.shape[1] + 1), np.int32)
    inputs[:, 0], inputs[:, 1:] = BOS, words
    outputs = np.zeros_like(inputs)
    outputs[:, :-1] = words
    outputs[rows, n] = EOS
    lengths = np.minimum(n + 1, max_len).astype(np.int32)
    valid = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    decoded[name] = (np.where(valid, inputs, PAD), np.where(valid, outputs, PAD), lengths)
  U = round_up(int(max(d[2].max(initial=1) for d in decoded.values())), pad_multiple, max_len)
  if same_width and S != U:
    S = U = max(S, U)
    batch["source"] = _pad_to(batch["source"], S)
  for name, (inputs, outputs, lengths) in decoded.items():
    batch[f"{name}_in"], batch[f"{name}_out"] = _pad_to(inputs, U), _pad_to(outputs, U)
    batch[f"{name}_lengths"] = lengths
  batch["weights"] = np.ones((len(current),), np.float32)
  return batch


def _pad_to(ids: np.ndarray, width: int) -> np.ndarray:
  """`ids [B, L]` (zeros past each row's length) as `[B, width]`, cut or padded with 0."""
  out = np.zeros((ids.shape[0], width), np.int32)
  w = min(width, ids.shape[1])
  out[:, :w] = ids[:, :w]
  return out


class Batches:
  """Training batches as a pure function of the step (`make_batch` of B triples).

  Epoch e = step // steps_per_epoch visits the training triples in the order of a
  permutation drawn from `np.random.default_rng([seed, e])`; step s takes the B triples at
  positions `[i * B, (i + 1) * B)` of it, i = s mod steps_per_epoch (the remainder of an
  epoch, fewer than B, is skipped that epoch).

  With `sort_window` W > 0, batches hold triples of similar lengths: the permutation is cut
  into windows of W * B triples, each window is sorted by its triples' longest sentence
  (`max_len` at most; the decoders' +1 counted), cut into W batches, and the epoch's
  batches are then shuffled (`default_rng([seed, e, 1])`). Each batch is padded only to its
  own longest row, so a step computes far fewer padded steps (the novels' median sentence
  is 17 tokens, the cap 30); `same_width` pads source and targets alike, so that at most
  max_len / pad_multiple + 1 shapes compile.
  """

  def __init__(self, corpus: Corpus, batch_size: int, *, seed: int = 0, max_len: int = 30,
               pad_multiple: int = 8, sort_window: int = 0, same_width: bool = False):
    self.corpus, self.batch_size, self.seed = corpus, batch_size, seed
    self.max_len, self.pad_multiple = max_len, pad_multiple
    self.sort_window, self.same_width = sort_window, same_width
    self.triples = corpus.triples("train")
    self.steps_per_epoch = len(self.triples) // batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(f"{len(self.triples)} training triples are fewer than batch size "
                       f"{batch_size}")
    self._epoch, self._order = -1, None

  def indices(self, step: int) -> np.ndarray:
    """`[B]` current-sentence indices of step `step`."""
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._order = self.triples[np.random.default_rng([self.seed, epoch]).permutation(
          len(self.triples))]
      if self.sort_window > 0:
        self._order = self._sorted_batches(self._order, epoch)
      self._epoch = epoch
    return self._order[i * self.batch_size:(i + 1) * self.batch_size]

  def _sorted_batches(self, order: np.ndarray, epoch: int) -> np.ndarray:
    """`order`'s first steps_per_epoch * B triples regrouped by length (class docstring)."""
    B, n = self.batch_size, self.steps_per_epoch
    order = order[:n * B]
    lengths = np.minimum(self.corpus.sentences.lengths(), self.max_len)
    key = np.maximum.reduce([lengths[order - 1] + 1, lengths[order], lengths[order + 1] + 1])
    window = self.sort_window * B
    for lo in range(0, len(order), window):
      part = slice(lo, lo + window)
      order[part] = order[part][np.argsort(key[part], kind="stable")]
    batches = order.reshape(n, B)
    return batches[np.random.default_rng([self.seed, epoch, 1]).permutation(n)].reshape(-1)

  def at(self, step: int) -> dict[str, np.ndarray]:
    """The batch of step `step` (`make_batch`'s dict)."""
    return make_batch(self.corpus, self.indices(step), max_len=self.max_len,
                      pad_multiple=self.pad_multiple, same_width=self.same_width)

  __call__ = at


def eval_batches(corpus: Corpus, batch_size: int, *, max_len: int = 30, pad_multiple: int = 8,
                 split: str = "held_out") -> Iterator[dict[str, np.ndarray]]:
  """Every triple of `split` once, in corpus order, `batch_size` at a time; the last batch is
  filled up with copies of its first triple whose `weights` are 0 (every batch has B rows)."""
  triples = corpus.triples(split)
  for lo in range(0, len(triples), batch_size):
    rows = triples[lo:lo + batch_size]
    real = len(rows)
    rows = np.concatenate([rows, np.full((batch_size - real,), rows[0], np.int64)])
    batch = make_batch(corpus, rows, max_len=max_len, pad_multiple=pad_multiple)
    batch["weights"][real:] = 0.0
    yield batch
