"""Skip-thought's data: sentences, the book corpus and its batches, word vectors, expansion."""

import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.skip_thought import corpus as corpus_lib
from experiments.skip_thought import expansion
from experiments.skip_thought import sentences
from experiments.skip_thought import word_vectors

# ---------------------------------------------------------------------------------------------
# sentences.py

TRAINING_TEXT = [
    "Mr. Holmes was late. Mrs. Hudson brought the tea at eight. Dr. Watson read the paper.",
    '"Come here," said he. "Now!" She came at once.',
    "They walked to St. Paul's before noon. It rained all day.",
    "I waited... he never came. Was it true?! Nobody knew.",
] * 5


@pytest.fixture(scope="module")
def splitter():
  return sentences.Splitter(sentences.train_punkt(TRAINING_TEXT))


@pytest.mark.parametrize("paragraph, expected", [
    ("Mr. Smith met Mrs. Jones and Dr. Watson at St. Paul's. They talked.",
     ["Mr. Smith met Mrs. Jones and Dr. Watson at St. Paul's.", "They talked."]),
    ('"Come here," said he. "Now!"', ['"Come here," said he.', '"Now!"']),
    ('"Come here!" said he. "Now!"', ['"Come here!" said he.', '"Now!"']),
    ('"Why?" asked Elizabeth. "Because I said so," replied Mr. Darcy.',
     ['"Why?" asked Elizabeth.', '"Because I said so," replied Mr. Darcy.']),
    ("'Yes,' she said. 'It is mine.' He nodded.",
     ["'Yes,' she said.", "'It is mine.'", "He nodded."]),
    ("I waited... he never came. Was it true?! Nobody knew.",
     ["I waited... he never came.", "Was it true?!", "Nobody knew."]),
    ("What? Are you sure? I am!", ["What?", "Are you sure?", "I am!"]),
    ("A gale blew. The Rev. Gale spoke to Mr. and Mrs. Gale. It was late.",  # TITLES
     ["A gale blew.", "The Rev. Gale spoke to Mr. and Mrs. Gale.", "It was late."]),
    ("He paused\u2026", ["He paused..."]),
    ("\u201cCome here,\u201d said he.  \u201cNow!\u201d", ['"Come here," said he.', '"Now!"']),
    ("", []),
])
def test_split(splitter, paragraph, expected):
  assert splitter.split(paragraph) == expected


def test_abbreviations_are_always_known():
  params = sentences.train_punkt(["A plain sentence. Another one."])
  assert {"mr", "mrs", "dr", "st"} <= params.abbrev_types


def test_long_learnt_abbreviations_are_dropped():
  # "quivered" ends sentences only, so Punkt may take it for an abbreviation; never kept.
  params = sentences.train_punkt(["The leaves quivered. Then all was still. " * 3])
  assert all("." in a or len(a) <= sentences.MAX_LEARNT_ABBREVIATION
             for a in params.abbrev_types - set(sentences.ABBREVIATIONS))


def test_params_save_and_load(splitter, tmp_path):
  path = str(tmp_path / "punkt.pkl")
  sentences.save_params(splitter.params, path)
  loaded = sentences.Splitter(sentences.load_params(path))
  for paragraph in TRAINING_TEXT[:4]:
    assert loaded.split(paragraph) == splitter.split(paragraph)
  with open(path, "wb") as f:
    f.write(b"\x80\x04K\x01.")  # pickle of the int 1
  with pytest.raises(ValueError, match="not Punkt"):
    sentences.load_params(path)


@pytest.mark.parametrize("sentence, words", [
    ('"Don\'t," said he.', ['"', "do", "n't", ",", '"', "said", "he", "."]),
    ("\u201cIt\u2019s mine\u201d \u2014 she said\u2026",
     ['"', "it", "'s", "mine", '"', "--", "she", "said", "..."]),
    ("Mr. Smith's dog can't go - or can it?!",
     ["mr.", "smith", "'s", "dog", "ca", "n't", "go", "--", "or", "can", "it", "?", "!"]),
    ("A well-taught child -- in _italics_.", ["a", "well-taught", "child", "--", "in", "italics",
                                               "."]),
    # A movie review line as the evaluation sets write it: tokenized, lowercase.
    ('the rock is destined to be the 21st century\'s new " conan " .',
     ["the", "rock", "is", "destined", "to", "be", "the", "21st", "century", "'s", "new", '"',
      "conan", '"', "."]),
    ("What is the capital of France ?", ["what", "is", "the", "capital", "of", "france", "?"]),
    ("'Yes,' she said.", ["'", "yes", ",", "'", "she", "said", "."]),
])
def test_tokenize(sentence, words):
  assert sentences.tokenize(sentence) == words


def test_normalize_is_idempotent():
  text = "\ufeff\u2018A\u2019 \u00a0 b\u2013c  --  d - e\u2026 \u201cf\u201d"
  once = sentences.normalize(text)
  assert once == "'A' b -- c -- d -- e... \"f\""
  assert sentences.normalize(once) == once


# ---------------------------------------------------------------------------------------------
# corpus.py: a tiny corpus of novels as the real files are: gzip, BOM, CRLF

NOVEL_A = [  # one paragraph per line, a heading, blank lines
    "THE FIRST NOVEL",
    "",
    "CHAPTER I.",
    "Mr. Brown came home from the office in the old town, tired and cold and hungry and late. "
    "The cat sat on the mat.",  # over 100 characters: a novel of one paragraph per line
    '"Come here," said he. "Now!"',
    "",
    "The dog ran. The cat ran.",
    "The end came at last.",
    "* * *",
    "Nobody ran.",
]
NOVEL_B = [  # hard-wrapped (Gutenberg), a word hyphenated at a line end
    "Chapter 1",
    "",
    "The dog sat by the fire and the cat sat by the door of the old house on",
    "the hill. The dog barked at the cat-",
    "like shadow. It ran.",
    "",
    "The cat slept.",
    "A dog slept too, by the fire in the warm and quiet room of the old house.",
    "Then it woke.",
]


def write_novel(path, lines):
  text = "\ufeff" + "\r\n".join(lines) + "\r\n"
  with gzip.open(path, "wb") as f:
    f.write(text.encode("utf-8"))


@pytest.fixture
def novels_dir(tmp_path):
  root = tmp_path / "novels"
  root.mkdir()
  write_novel(str(root / "A_First_1900.txt.gz"), NOVEL_A)
  write_novel(str(root / "B_Second_1901.txt.gz"), NOVEL_B)
  return str(root)


def test_read_novel_paragraphs(novels_dir):
  a = corpus_lib.read_novel(os.path.join(novels_dir, "A_First_1900.txt.gz"))
  assert a == [line for line in NOVEL_A if line]  # BOM, CR and blank lines gone
  b = corpus_lib.read_novel(os.path.join(novels_dir, "B_Second_1901.txt.gz"))
  assert b == [
      "Chapter 1",
      "The dog sat by the fire and the cat sat by the door of the old house on the hill. "
      "The dog barked at the cat-like shadow. It ran.",
      "The cat slept.",  # a short line ends a paragraph
      "A dog slept too, by the fire in the warm and quiet room of the old house. Then it woke.",
  ]


def test_paragraphs_of_unwrapped_text_join_lowercase_continuations():
  long = "x" * 150
  lines = [long + " and the", "cat ran.", "", "Then " + long + ".", "Next."]
  assert corpus_lib.paragraphs(lines) == [long + " and the cat ran.", "Then " + long + ".",
                                          "Next."]


@pytest.mark.parametrize("paragraph, heading", [
    ("CHAPTER IV.", True), ("Chapter 1", True), ("Book the First", True), ("BLEAK HOUSE", True),
    ("1880", True), ("* * *", True), ("Arthur Conan Doyle", True),
    ("Mr. Sherlock Holmes", True), ("A House full of Visitors", True),
    ("The cat sat.", False), ('"Yes."', False), ("I", True),
    ('"Do you like dancing with me?" he asked', False), ("was in the habit of walking", False),
    ("Part of the money was gone.", False),
])
def test_is_heading(paragraph, heading):
  assert corpus_lib.is_heading(paragraph) == heading


def _words(corpus, i):
  return [corpus.words[j - corpus_lib.NUM_RESERVED] for j in corpus.sentences.row(i)]


EXPECTED_SENTENCES = [  # novel A then novel B, headings dropped
    ["mr.", "brown", "came", "home", "from", "the", "office", "in", "the", "old", "town", ",",
     "tired", "and", "cold", "and", "hungry", "and", "late", "."],
    ["the", "cat", "sat", "on", "the", "mat", "."],
    ['"', "come", "here", ",", '"', "said", "he", "."],
    ['"', "now", "!", '"'],
    ["the", "dog", "ran", "."],
    ["the", "cat", "ran", "."],
    ["the", "end", "came", "at", "last", "."],
    ["nobody", "ran", "."],
    ["the", "dog", "sat", "by", "the", "fire", "and", "the", "cat", "sat", "by", "the", "door",
     "of", "the", "old", "house", "on", "the", "hill", "."],
    ["the", "dog", "barked", "at", "the", "cat-like", "shadow", "."],
    ["it", "ran", "."],
    ["the", "cat", "slept", "."],
    ["a", "dog", "slept", "too", ",", "by", "the", "fire", "in", "the", "warm", "and", "quiet",
     "room", "of", "the", "old", "house", "."],
    ["then", "it", "woke", "."],
]


@pytest.fixture
def tiny(novels_dir, tmp_path):
  return corpus_lib.build(novels_dir, str(tmp_path / "cache"), vocab_size=6, processes=1,
                          held_out_fraction=0.25, punkt_every=1, progress=False)


def test_build_sentences_and_novels(tiny):
  assert [_words(tiny, i) for i in range(len(tiny.sentences))] == EXPECTED_SENTENCES
  assert tiny.novel.tolist() == [0] * 8 + [1] * 6
  assert tiny.novels == ("A_First_1900.txt.gz", "B_Second_1901.txt.gz")
  assert tiny.stats["headings"] == 4  # THE FIRST NOVEL, CHAPTER I., * * *, Chapter 1
  assert tiny.sentences.values.dtype == np.int32 and tiny.sentences.offsets.dtype == np.int64


def test_vocabulary(tiny):
  counts = {}
  for s in EXPECTED_SENTENCES:
    for w in s:
      counts[w] = counts.get(w, 0) + 1
  order = sorted(counts, key=lambda w: (-counts[w], w))
  assert list(tiny.words) == order
  assert tiny.counts.tolist() == [counts[w] for w in order]
  # the 19, . 13, and 5, then four words seen 4 times, in alphabetical order
  assert order[:7] == ["the", ".", "and", '"', "cat", "dog", "ran"]
  assert tiny.counts[:7].tolist() == [19, 13, 5, 4, 4, 4, 4]
  assert (corpus_lib.PAD, corpus_lib.UNK, corpus_lib.EOS, corpus_lib.BOS) == (0, 1, 2, 3)
  assert tiny.vocab == ["<pad>", "<unk>", "</s>", "<s>"] + order[:6]
  assert tiny.index["the"] == 4 and tiny.index["cat"] == 8
  assert tiny.encode(["the", "cat", "zebra", "ran"]).tolist() == [4, 8, 1, 1]
  ids = tiny.sentences.row(0)  # mr. brown came home .
  assert tiny.encode_ids(ids).tolist() == tiny.encode(EXPECTED_SENTENCES[0]).tolist()
  assert tiny.large_vocab(min_count=3) == list(corpus_lib.RESERVED) + [
      w for w in order if counts[w] >= 3]
  assert tiny.large_counts(min_count=3).tolist() == [0] * 4 + [
      counts[w] for w in order if counts[w] >= 3]


def test_word_stream(tiny):
  stream = tiny.word_stream(min_count=1, split="all")
  assert len(stream) == sum(len(s) + 1 for s in EXPECTED_SENTENCES)
  decoded, current = [], []
  for i in stream.tolist():
    if i < 0:
      decoded.append(current)
      current = []
    else:
      current.append(tiny.words[i - corpus_lib.NUM_RESERVED])
  assert decoded == EXPECTED_SENTENCES
  rare = tiny.word_stream(min_count=5, split="all")
  limit = len(tiny.large_vocab(5))
  assert set(rare[rare >= 0].tolist()) <= set(range(4, limit)) and np.sum(rare < 0) == 14
  train = tiny.word_stream(min_count=1)
  assert np.sum(train < 0) == int(np.sum(~tiny.held_out))


def test_held_out_and_triples(tiny):
  # last ceil(0.25 n) sentences of each novel: 2 of 8, 2 of 6
  assert tiny.held_out.tolist() == [False] * 6 + [True] * 2 + [False] * 4 + [True] * 2
  assert tiny.triples("train").tolist() == [1, 2, 3, 4, 9, 10]
  assert tiny.triples("held_out").tolist() == []
  assert tiny.triples("all").tolist() == [1, 2, 3, 4, 5, 6, 9, 10, 11, 12]
  novel, held = tiny.novel, tiny.held_out
  for split in ("train", "all"):
    t = tiny.triples(split)
    assert np.all(novel[t - 1] == novel[t]) and np.all(novel[t + 1] == novel[t])
  t = tiny.triples("train")
  assert not np.any(held[t - 1] | held[t] | held[t + 1])


def test_held_out_mask():
  novel = np.array([0] * 100 + [1] * 10 + [2] * 1, np.int32)
  held = corpus_lib.held_out_mask(novel, 0.01)
  assert held.tolist() == [False] * 99 + [True] + [False] * 9 + [True] + [True]


def test_batch_is_exact(tiny):
  # current = sentence 3 ('" now ! "'), prev = 2, next = 4; vocab_size 6.
  batch = corpus_lib.make_batch(tiny, np.array([3, 9]), max_len=6, pad_multiple=1)
  enc = lambda words: tiny.encode(words).tolist()
  assert batch["source"].tolist() == [enc(['"', "now", "!", '"']) + [0, 0],
                                      enc(EXPECTED_SENTENCES[9][:6])]
  assert batch["source_lengths"].tolist() == [4, 6]
  prev = EXPECTED_SENTENCES[2]  # 8 words, cut to 6
  assert batch["prev_in"].tolist()[0] == [3] + enc(prev[:5])
  assert batch["prev_out"].tolist()[0] == enc(prev[:6])  # cut: no EOS
  nxt = EXPECTED_SENTENCES[4]  # 4 words
  assert batch["next_in"].tolist()[0] == [3] + enc(nxt) + [0]
  assert batch["next_out"].tolist()[0] == enc(nxt) + [2, 0]
  assert batch["prev_lengths"].tolist() == [6, 6] and batch["next_lengths"].tolist() == [5, 4]
  assert batch["next_in"].tolist()[1] == [3] + enc(["it", "ran", "."]) + [0, 0]
  assert batch["next_out"].tolist()[1] == enc(["it", "ran", "."]) + [2, 0, 0]
  assert batch["weights"].tolist() == [1.0, 1.0]
  for key in ("source", "prev_in", "prev_out", "next_in", "next_out"):
    assert batch[key].dtype == np.int32


def test_batch_padding_rounds_up(tiny):
  batch = corpus_lib.make_batch(tiny, np.array([3]), max_len=30, pad_multiple=8)
  assert batch["source"].shape == (1, 8)      # longest 4 -> 8
  assert batch["prev_in"].shape == (1, 16)    # longest 9 (8 words + BOS) -> 16, shared
  assert batch["next_in"].shape == (1, 16)
  assert batch["next_out"][0, 5:].tolist() == [0] * 11
  batch = corpus_lib.make_batch(tiny, np.array([9]), max_len=20, pad_multiple=8)
  assert batch["prev_in"].shape == (1, 20)    # 21 words + BOS, cut to 20 (24 capped at 20)


def test_batches_are_a_pure_function_of_the_step(tiny):
  a = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8)
  b = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8)
  assert a.steps_per_epoch == 3
  order = [7, 2, 0, 5, 1]
  first = {s: a.at(s) for s in order}
  for s in reversed(order):
    for key, value in b.at(s).items():
      np.testing.assert_array_equal(value, first[s][key])
  epoch = np.concatenate([a.indices(s) for s in range(3)])
  assert sorted(epoch.tolist()) == tiny.triples("train").tolist()
  other = corpus_lib.Batches(tiny, batch_size=2, seed=4, max_len=8)
  assert any(not np.array_equal(a.indices(s), other.indices(s)) for s in range(6))


def test_length_sorted_batches_keep_the_epoch_and_shrink_the_padding(tiny):
  """sort_window: the same triples each epoch, a pure function of the step, batches of
  similar lengths (each row's key within its batch's range), one width for all fields."""
  plain = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8)
  steps = plain.steps_per_epoch
  for window in (1, 2, 3):
    a = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8, sort_window=window,
                           same_width=True, pad_multiple=1)
    b = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8, sort_window=window,
                           same_width=True, pad_multiple=1)
    for epoch in (0, 1):
      got = np.concatenate([a.indices(epoch * steps + i) for i in range(steps)])
      want = np.concatenate([plain.indices(epoch * steps + i) for i in range(steps)])
      assert sorted(got.tolist()) == sorted(want.tolist())
    for s in (4, 0, 2):
      batch = a.at(s)
      np.testing.assert_array_equal(batch["source"], b.at(s)["source"])
      assert batch["source"].shape == batch["prev_in"].shape == batch["next_out"].shape
  # With one window holding the whole epoch, the batches come out sorted by length key.
  lengths = np.minimum(tiny.sentences.lengths(), 8)
  whole = corpus_lib.Batches(tiny, batch_size=2, seed=3, max_len=8, sort_window=steps)
  keys = [np.maximum.reduce([lengths[r - 1] + 1, lengths[r], lengths[r + 1] + 1])
          for r in (whole.indices(i) for i in range(steps))]
  spans = sorted((k.min(), k.max()) for k in keys)
  assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:])), spans


def test_eval_batches_cover_the_split_once(tiny):
  batches = list(corpus_lib.eval_batches(tiny, 4, max_len=8, split="all"))
  assert len(batches) == 3
  weights = np.concatenate([b["weights"] for b in batches])
  assert weights.tolist() == [1.0] * 10 + [0.0] * 2
  assert all(b["source"].shape[0] == 4 for b in batches)
  expected = corpus_lib.make_batch(tiny, tiny.triples("all")[:4], max_len=8)
  np.testing.assert_array_equal(batches[0]["next_out"], expected["next_out"])


def test_build_is_cached(novels_dir, tmp_path, tiny, monkeypatch):
  def no_work(*args, **kwargs):
    raise AssertionError("the cache was not used")
  monkeypatch.setattr(corpus_lib, "_process", no_work)
  again = corpus_lib.build(novels_dir, str(tmp_path / "cache"), vocab_size=3, processes=1,
                           held_out_fraction=0.25, punkt_every=1, progress=False)
  assert "cached" in again.stats and again.vocab == tiny.vocab[:7]
  np.testing.assert_array_equal(again.sentences.values, tiny.sentences.values)
  np.testing.assert_array_equal(again.sentences.offsets, tiny.sentences.offsets)
  assert again.words == tiny.words and again.punkt.abbrev_types == tiny.punkt.abbrev_types
  with pytest.raises(AssertionError, match="cache was not used"):  # another setting: rebuilt
    corpus_lib.build(novels_dir, str(tmp_path / "cache"), punkt_every=2, progress=False)


def test_build_in_worker_processes_matches(novels_dir, tiny):
  spawned = corpus_lib.build(novels_dir, None, vocab_size=6, processes=2,
                             held_out_fraction=0.25, punkt_every=1, progress=False)
  np.testing.assert_array_equal(spawned.sentences.values, tiny.sentences.values)
  assert spawned.words == tiny.words


def test_real_novel_reads_clean():
  root = os.path.join(os.environ.get("RNN_JAX_DATA", ""), "novels")
  if not os.environ.get("RNN_JAX_DATA") or not os.path.isdir(root):
    pytest.skip("$RNN_JAX_DATA/novels is absent")
  path = corpus_lib.novel_paths(root, max_novels=1)[0]
  paragraphs = corpus_lib.read_novel(path)
  assert len(paragraphs) > 100
  assert not any("\ufeff" in p or "\r" in p or not p.strip() for p in paragraphs)


# ---------------------------------------------------------------------------------------------
# word_vectors.py

def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_sgns_loss_and_gradient_match_the_formula():
  rng = np.random.default_rng(0)
  B, K, D = 2, 3, 5
  u, v, vn = rng.normal(size=(B, D)), rng.normal(size=(B, D)), rng.normal(size=(B, K, D))
  pos, neg = np.sum(u * v, -1), np.einsum("bd,bkd->bk", u, vn)
  expected = -(np.log(_sigmoid(pos)) + np.sum(np.log(_sigmoid(-neg)), -1))
  loss = word_vectors.sgns_loss(jnp.asarray(u), jnp.asarray(v), jnp.asarray(vn))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  grads = jax.grad(lambda *a: jnp.sum(word_vectors.sgns_loss(*a)), argnums=(0, 1, 2))(
      jnp.asarray(u), jnp.asarray(v), jnp.asarray(vn))
  g_u = -(1 - _sigmoid(pos))[:, None] * v + np.einsum("bk,bkd->bd", _sigmoid(neg), vn)
  g_v = -(1 - _sigmoid(pos))[:, None] * u
  g_vn = _sigmoid(neg)[:, :, None] * u[:, None, :]
  for got, want in zip(grads, (g_u, g_v, g_vn)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  mask = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
  masked = word_vectors.sgns_loss(jnp.asarray(u), jnp.asarray(v), jnp.asarray(vn),
                                  jnp.asarray(mask))
  np.testing.assert_allclose(masked[0], expected[0] + np.log(_sigmoid(-neg[0, 1])), rtol=1e-5)


def test_written_out_gradients_match_autodiff():
  rng = np.random.default_rng(4)
  B, K, D = 3, 2, 5
  u, v, vn = (jnp.asarray(rng.normal(size=shape), jnp.float32)
              for shape in ((B, D), (B, D), (B, K, D)))
  mask = jnp.asarray([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
  loss, *grads = word_vectors.sgns_rows(u, v, vn, mask)
  want_loss, want = jax.value_and_grad(
      lambda *a: jnp.sum(word_vectors.sgns_loss(*a, mask)), argnums=(0, 1, 2))(u, v, vn)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  for got, expected in zip(grads, want):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_sgd_step_updates_only_the_gathered_rows():
  V, D, rate = 7, 4, 0.1
  rng = np.random.default_rng(1)
  w_in, w_out = rng.normal(size=(V, D)).astype(np.float32), rng.normal(size=(V, D)).astype(
      np.float32)
  centres, contexts, noise = np.array([1, 1]), np.array([2, 3]), 5
  accept, alias = np.zeros((V,), np.float32), np.full((V,), noise, np.int32)  # always word 5
  table, loss = word_vectors.sgd_step(
      jnp.concatenate([w_in, w_out]), jnp.asarray(centres, jnp.int32),
      jnp.asarray(contexts, jnp.int32), np.float32(rate), jax.random.key(0),
      jnp.asarray(accept), jnp.asarray(alias), negatives=2)
  new_in, new_out = np.asarray(table[:V]), np.asarray(table[V:])
  want_in, want_out, total = w_in.astype(np.float64), w_out.astype(np.float64), 0.0
  g_in, g_out = np.zeros_like(want_in), np.zeros_like(want_out)
  for c, o in zip(centres, contexts):  # both pairs against the same old vectors
    u, v, n = w_in[c], w_out[o], w_out[noise]
    sp, sn = _sigmoid(u @ v), _sigmoid(u @ n)
    total += -np.log(sp) - 2 * np.log(1 - sn)
    g_in[c] += -(1 - sp) * v + 2 * sn * n
    g_out[o] += -(1 - sp) * u
    g_out[noise] += 2 * sn * u
  np.testing.assert_allclose(new_in, want_in - rate * g_in, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_out, want_out - rate * g_out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, total / 2, rtol=1e-5)
  untouched = [0, 4, 6]
  np.testing.assert_array_equal(new_out[untouched], w_out[untouched])
  np.testing.assert_array_equal(new_in[[0, 2, 3, 4, 5, 6]], w_in[[0, 2, 3, 4, 5, 6]])


def test_make_pairs_stay_inside_sentences():
  stream = np.array([4, 5, 6, -1, 7, 8, -1, 9, -1], np.int32)
  keep = np.ones((10,), np.float64)
  c, o = word_vectors.make_pairs(stream, keep, 1, np.random.default_rng(0))  # window 1
  assert sorted(zip(c.tolist(), o.tolist())) == [(4, 5), (5, 4), (5, 6), (6, 5), (7, 8), (8, 7)]
  sentence_of = {4: 0, 5: 0, 6: 0, 7: 1, 8: 1, 9: 2}
  for seed in range(5):
    c, o = word_vectors.make_pairs(stream, keep, 5, np.random.default_rng(seed))
    assert all(sentence_of[a] == sentence_of[b] for a, b in zip(c.tolist(), o.tolist()))
    assert {(4, 5), (5, 4), (5, 6), (6, 5), (7, 8), (8, 7)} <= set(zip(c.tolist(), o.tolist()))
  never = keep.copy()
  never[5] = 0.0
  c, o = word_vectors.make_pairs(stream, never, 1, np.random.default_rng(0))
  assert sorted(zip(c.tolist(), o.tolist())) == [(4, 6), (6, 4), (7, 8), (8, 7)]  # 5 dropped


def test_keep_probabilities_and_noise_table():
  counts = np.array([0, 1, 10, 1000, 100000])
  keep = word_vectors.keep_probabilities(counts, 1e-3)
  f = counts[1:] / counts.sum()
  np.testing.assert_allclose(keep[1:], np.minimum(1, (np.sqrt(f / 1e-3) + 1) * 1e-3 / f))
  assert keep[0] == 0 and keep[1] == 1 and keep[4] < 0.2
  probs = word_vectors.noise_distribution(counts)
  np.testing.assert_allclose(probs, counts ** 0.75 / np.sum(counts ** 0.75))
  accept, alias = word_vectors.alias_table(probs)
  V = len(probs)
  implied = accept.astype(np.float64) / V
  np.add.at(implied, alias, (1 - accept.astype(np.float64)) / V)
  np.testing.assert_allclose(implied, probs, atol=1e-7)
  assert implied[0] == 0


def _planted_corpus(seed=0, sentences_=2000):
  """Two groups of 8 words (ids 4-11, 12-19); a sentence uses one group only."""
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(sentences_):
    group = rng.integers(2)
    rows.append(np.append(4 + 8 * group + rng.integers(0, 8, size=rng.integers(3, 8)), -1))
  stream = np.concatenate(rows).astype(np.int32)
  return stream, np.bincount(stream[stream >= 0], minlength=20)


def test_word_vectors_find_the_planted_groups():
  stream, counts = _planted_corpus()
  kwargs = dict(steps=256, batch_size=64, dim=12, window=3, subsample=0.0, learning_rate=0.05,
                progress=False, key=jax.random.key(0))
  log = []
  vectors = word_vectors.train(stream, counts, log=log, **kwargs)
  assert vectors.shape == (20, 12) and vectors.dtype == np.float32
  assert log[-1][1] < log[0][1]
  for word in range(4, 20):
    near = word_vectors.nearest(vectors[4:], word - 4, k=4) + 4
    assert np.all((near - 4) // 8 == (word - 4) // 8), (word, near)
  np.testing.assert_array_equal(word_vectors.train(stream, counts, **kwargs), vectors)


# ---------------------------------------------------------------------------------------------
# expansion.py

@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_fit_recovers_a_linear_map(noise):
  rng = np.random.default_rng(2)
  d_w2v, d_emb, N = 6, 4, 200
  W, b = rng.normal(size=(d_w2v, d_emb)), rng.normal(size=(d_emb,))
  x = rng.normal(size=(N, d_w2v))
  y = x @ W + b + noise * rng.normal(size=(N, d_emb))
  fitted = expansion.fit(x, y)
  tol = 1e-5 if noise == 0 else 1e-2
  np.testing.assert_allclose(fitted.weights, W, atol=tol)
  np.testing.assert_allclose(fitted.bias, b, atol=tol)


def test_expand_keeps_the_encoders_rows():
  rng = np.random.default_rng(3)
  d_w2v, d_emb = 3, 2
  W, b = rng.normal(size=(d_w2v, d_emb)), rng.normal(size=(d_emb,))
  encoder_vocab = list(corpus_lib.RESERVED) + [f"w{i}" for i in range(8)]
  w2v_vocab = list(corpus_lib.RESERVED) + [f"w{i}" for i in range(8)][::-1] + ["new1", "new2"]
  w2v = rng.normal(size=(len(w2v_vocab), d_w2v))
  emb = rng.normal(size=(len(encoder_vocab), d_emb))  # reserved rows: anything
  for i, w in enumerate(encoder_vocab[4:], start=4):
    emb[i] = w2v[w2v_vocab.index(w)] @ W + b + 0.01 * rng.normal(size=d_emb)
  out = expansion.expand(encoder_vocab, emb, w2v_vocab, w2v)
  assert out.fit_words == 8
  assert out.words == encoder_vocab + ["new1", "new2"]
  np.testing.assert_array_equal(out.embeddings[:len(encoder_vocab)], emb.astype(np.float32))
  for w in ("new1", "new2"):
    np.testing.assert_allclose(out.embeddings[out.index[w]], w2v[w2v_vocab.index(w)] @ W + b,
                               atol=0.05)
  assert out.lookup(["w3", "new2", "unseen"]).tolist() == [7, 13, 1]
  with pytest.raises(ValueError, match="do not determine"):
    expansion.expand(encoder_vocab[:6], emb[:6], w2v_vocab, w2v)
