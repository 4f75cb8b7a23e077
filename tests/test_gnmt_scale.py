"""GNMT at WMT scale (issue #19): token-based batches, sentencepiece on a sample with threads,
and a training set streamed and stored as flat arrays instead of Python lists. (They run end
to end, across resumes, in test_gnmt_eval's checkpoint-choice runs.)"""

import numpy as np
import pytest

from experiments.common import UserError
from experiments.gnmt import data, langid, wmt
from fixtures import gnmt_config

V, H = 23, 8


def _config(**kw):
  return gnmt_config(**{"hidden_size": H, "vocab_size": V, **kw})


def test_ragged_rows_are_the_lists_they_were_built_from():
  rng = np.random.default_rng(0)
  parts = [[list(rng.integers(0, 500, rng.integers(0, 9))) for _ in range(n)] for n in (5, 0, 7)]
  ragged = data.Ragged.concatenate([data.Ragged.from_rows(p, np.uint16) for p in parts])
  rows = [r for p in parts for r in p]
  assert len(ragged) == len(rows) and list(ragged) == rows
  assert ragged[3] == rows[3] and isinstance(ragged[3], list)
  np.testing.assert_array_equal(ragged.lengths(), [len(r) for r in rows])
  assert ragged.values.dtype == np.uint16 and ragged.values.nbytes == 2 * sum(map(len, rows))


class _Source:
  """A stand-in for a TFDS data source: records `{lang: bytes}` by index, reads counted."""

  def __init__(self, records):
    self.records, self.reads = records, 0

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    self.reads += 1
    return self.records[i]


def _numbers_pairs(n=40):
  from experiments.gnmt import numbers
  en = list(numbers.sentences("train", "en", n, 5))
  de = list(numbers.sentences("train", "de", n, 5))
  en[3], de[7] = "", "   "  # pairs with an empty side are left out
  return en, de


@pytest.fixture(scope="module")
def tokenizer():
  en, de = _numbers_pairs(300)
  corpus = data.Corpus(("de", "en"), {"train": {("en", "de"): (en, de)}})
  return data.train_tokenizer(corpus, _config(vocab_size=120))


@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_encoding_equals_encoding_line_by_line(tokenizer, monkeypatch, threads):
  """Chunks of 3 lines (every chunk boundary crossed), read through `wmt.Lines` from a
  data source, against the per-line reference written out here."""
  monkeypatch.setattr(data, "ENCODE_CHUNK", 3)
  en, de = _numbers_pairs()
  config = _config(max_source_len=9, max_target_len=8, spm_threads=threads)
  source = _Source([{"en": e.encode(), "de": d} for e, d in zip(en, de)])
  pairs = {("en", "de"): (wmt.Lines(source, "en", len(en)), wmt.Lines(source, "de", len(de))),
           ("de", "en"): (de, en)}
  examples, truncated = data.encode_pairs(tokenizer, pairs, config)
  want_src, want_tgt, want_dir, want_cut = [], [], [], 0
  for d, (src_lang, tgt_lang, src, tgt) in enumerate([("en", "de", en, de), ("de", "en", de, en)]):
    for s, t in zip(src, tgt):
      if not s.strip() or not t.strip():
        continue
      s_ids = [tokenizer.lang_token(tgt_lang)] + tokenizer.sp.encode(s)
      t_ids = tokenizer.sp.encode(t)
      want_cut += len(s_ids) + 1 > 9 or len(t_ids) + 1 > 8
      want_src.append(s_ids[:8] + [data.EOS])
      want_tgt.append(t_ids[:7] + [data.EOS])
      want_dir.append(d)
  assert isinstance(examples.source, data.Ragged)
  assert list(examples.source) == want_src and list(examples.target) == want_tgt
  np.testing.assert_array_equal(examples.direction, want_dir)
  assert truncated == want_cut > 0
  assert source.reads == 2 * len(en)  # each record read once per side, nothing held


def test_tokenizer_trains_on_a_fixed_uniform_sample():
  en, de = _numbers_pairs(400)
  corpus = data.Corpus(("de", "en"), {"train": {("en", "de"): (en, de), ("de", "en"): (de, en)}})
  every = data.tokenizer_lines(corpus)
  assert every == [l for l in en + de if l.strip()]  # each language once
  sample = data.tokenizer_lines(corpus, 150)
  assert sample == data.tokenizer_lines(corpus, 150)  # the same sample every run
  assert 148 <= len(sample) <= 150 and set(sample) <= set(every)
  position = {line: i for i, line in enumerate(en + de)}
  assert [position[l] for l in sample] == sorted(position[l] for l in sample)  # corpus order
  assert {l in set(en) for l in sample} == {True, False}  # drawn from both languages
  assert data.tokenizer_lines(corpus, 10 ** 6) == every
  # The tokenizer learns from exactly that sample.
  config = _config(vocab_size=100, spm_input_sentence_size=150)
  sampled = data.train_tokenizer(corpus, config)
  only_sample = data.Corpus(("de", "en"), {"train": {("en", "de"): (sample, [""])}})
  assert sampled.model_proto == data.train_tokenizer(only_sample, _config(vocab_size=100)).model_proto
  assert sampled.model_proto != data.train_tokenizer(corpus, _config(vocab_size=100)).model_proto


def _examples(n=300, seed=0, max_len=70):
  rng = np.random.default_rng(seed)
  rows = lambda: [list(rng.integers(4, V, rng.integers(1, max_len))) for _ in range(n)]
  return data.Examples(data.Ragged.from_rows(rows()), data.Ragged.from_rows(rows()))


@pytest.mark.parametrize("multiple", [1, 4])
def test_token_batches_fill_their_budget_from_one_bucket(multiple):
  ex = _examples()
  config = _config(max_source_len=80, max_target_len=80)
  budget = 640
  batches = data.Batches(ex, 64, 1, config, batch_tokens=budget, multiple=multiple)
  lengths = np.maximum(ex.source.lengths(), ex.target.lengths())
  buckets = np.array([data.bucket(int(n), 80) for n in lengths])
  for epoch in range(2):
    epoch_rows = batches._epoch_batches(epoch)
    assert len(epoch_rows) == batches.steps_per_epoch
    used = np.concatenate(epoch_rows)
    assert len(np.unique(used)) == len(used)  # no pair twice in an epoch
    for rows in epoch_rows:
      k = buckets[rows]
      assert len(set(k)) == 1  # one bucket per batch
      assert len(rows) % multiple == 0
      assert len(rows) == max(multiple, budget // k[0] // multiple * multiple)
    for k in np.unique(buckets):  # each bucket leaves fewer pairs out than one batch
      left = np.sum(buckets == k) - np.sum(buckets[used] == k)
      assert 0 <= left < max(multiple, budget // k // multiple * multiple)
  # The batch a step gets, its shapes and each process's share.
  step = 5
  whole = batches(step)
  rows = batches._epoch_batches(0)[step]
  S = data.bucket(int(lengths[rows].max()), 80)
  assert whole["source"].shape == (len(rows), S) and whole["target_in"].shape == (len(rows), S)
  assert S * len(rows) <= budget or len(rows) == multiple
  again = data.Batches(ex, 64, 1, config, batch_tokens=budget, multiple=multiple)
  for key, value in again(step).items():
    np.testing.assert_array_equal(value, whole[key])
  if multiple == 4:
    parts = [batches(step, process=(p, 2)) for p in range(2)]
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_token_batches_refuse_what_cannot_work():
  ex = _examples(n=3)
  config = _config(max_source_len=80, max_target_len=80)
  with pytest.raises(UserError, match="fill no batch"):
    data.Batches(ex, 64, 0, config, batch_tokens=640, multiple=4)  # 3 pairs, 4 devices
  with pytest.raises(UserError, match="do not combine"):
    data.Batches(data.Examples(ex.source, ex.target, np.zeros(3)), 64, 0, config, balance=True,
                 batch_tokens=640)
  from experiments.gnmt import train
  for bad in (dict(batch_tokens=-1), dict(spm_input_sentence_size=-5), dict(spm_threads=0)):
    with pytest.raises(UserError, match=next(iter(bad))):
      train.check_config(_config(**bad))


def test_language_identifier_samples_a_streamed_corpus(monkeypatch):
  monkeypatch.setattr(langid, "STREAMED", 50)
  en, de = _numbers_pairs(400)
  source = _Source([{"en": e, "de": d} for e, d in zip(en, de)])
  lines = {"en": wmt.Lines(source, "en", len(en)), "de": wmt.Lines(source, "de", len(de))}
  identifier = langid.LanguageIdentifier.fit(lines, max_lines=20)
  assert source.reads == 2 * 80  # 4 x max_lines evenly spaced per language, not all 400
  assert identifier.identify(["dreihundertzwölf", "three hundred and twelve"]) == ["de", "en"]
