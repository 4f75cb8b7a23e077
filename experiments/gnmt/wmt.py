"""WMT through TFDS (`wmt14_translate`, `wmt_t2t`) for paper-scale runs, without TensorFlow.

TFDS prepares WMT as array_record files once (`tfds build wmt14_translate
--config=de-en`, which downloads; or copy a prepared `tensorflow_datasets/`
folder); this module then reads them with `tfds.data_source`, random access
and no TensorFlow, never downloading (`download=False`). The data root is
`data_dir/tfds` when it exists, else TFDS's default (`~/tensorflow_datasets`).

WMT builders hold one language pair each (configs `cs-en`, `de-en`, `fr-en`,
`hi-en`, `ru-en` for wmt14_translate; `de-en` for wmt_t2t), so every trained
or evaluated direction must be one of those pairs in either order; zero-shot
directions between two non-English languages have no WMT test set here.
"""

from __future__ import annotations

import os

from experiments.common import UserError

SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _pair(src: str, tgt: str) -> str:
  """The builder config holding a direction: WMT names pairs xx-en."""
  if "en" not in (src, tgt) or src == tgt:
    raise UserError(f"direction {src}-{tgt}: WMT builders pair English with one other "
                    "language; a zero-shot direction between two others has no test set")
  other = tgt if src == "en" else src
  return f"{other}-en"


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class Lines:
  """One language's side of a TFDS split as a sequence of str, read on demand: `len`, and
  `lines[i]` or a slice decodes those records only. A WMT training split (millions of
  pairs) is streamed through it rather than held as Python strings."""

  def __init__(self, source, field: str, limit: int):
    self._source, self._field, self._limit = source, field, limit

  def __len__(self) -> int:
    return self._limit

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(self._limit))]
    if not -self._limit <= i < self._limit:
      raise IndexError(i)
    return _text(self._source[i % self._limit][self._field])

  def __iter__(self):
    return (self[i] for i in range(self._limit))


def load(config, train_dirs, eval_dirs):
  """`(languages, {split: {(src, tgt): (source lines, target lines)}})` from TFDS."""
  import tensorflow_datasets as tfds
  import tensorflow_datasets.translate.wmt14  # noqa: F401  (registers the builders)
  import tensorflow_datasets.translate.wmt_t2t  # noqa: F401

  root = os.path.join(config.data_dir, "tfds") if config.data_dir else None
  data_dir = root if root and os.path.isdir(root) else None
  cache = {}

  def read(pair: str, split: str):
    if (pair, split) not in cache:
      try:
        source = tfds.data_source(f"{config.corpus}/{pair}", split=SPLITS[split],
                                  data_dir=data_dir, download=False)
      except Exception as e:  # TFDS raises several kinds for a missing dataset
        raise UserError(f"{config.corpus}/{pair} ({SPLITS[split]}) is not prepared under "
                        f"{data_dir or 'the TFDS default data dir'}: {str(e).splitlines()[0]}")
      limit = len(source)
      if split == "train" and config.num_train_sentences > 0:
        limit = min(limit, config.num_train_sentences)
      cache[(pair, split)] = (source, limit)
    return cache[(pair, split)]

  splits = {}
  languages = set()
  for split in SPLITS:
    directions = train_dirs if split == "train" else eval_dirs
    splits[split] = {}
    for src, tgt in directions:
      source, limit = read(_pair(src, tgt), split)
      if split == "train":  # streamed: encode_pairs reads it a chunk at a time
        splits[split][(src, tgt)] = (Lines(source, src, limit), Lines(source, tgt, limit))
      else:  # valid and test: a few thousand lines, sliced and sorted while decoding
        rows = [source[i] for i in range(limit)]
        splits[split][(src, tgt)] = ([_text(r[src]) for r in rows], [_text(r[tgt]) for r in rows])
      languages.update((src, tgt))
  return sorted(languages), splits
