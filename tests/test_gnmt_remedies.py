"""GNMT's training remedies (issue #19): balanced batches, the decoder's language start,
the attention scale's initial value. Each against a reference written out here."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.common import UserError
from experiments.gnmt import attention, data, decode
from experiments.gnmt import model as model_lib
from experiments.gnmt import synthetic, train
from fixtures import gnmt_config

V, H = 23, 8


def _config(**kw):
  return gnmt_config(**{"hidden_size": H, "vocab_size": V, **kw})


def _examples(sizes, seed=0):
  """Pairs of random lengths, `sizes[d]` of direction d (direction d's lengths shifted by 3d,
  so directions differ in length as real languages do)."""
  rng = np.random.default_rng(seed)
  source, target, direction = [], [], []
  for d, n in enumerate(sizes):
    for _ in range(n):
      source.append(list(rng.integers(4, V, rng.integers(2, 12) + 3 * d)))
      target.append(list(rng.integers(4, V, rng.integers(2, 12) + 3 * d)))
      direction.append(d)
  return data.Examples(source, target, tuple(direction))


@pytest.mark.parametrize("sizes,batch_size", [((60, 60, 60), 12), ((90, 60, 30), 12),
                                              ((50, 50, 50, 50, 50, 50), 16)])
def test_balanced_batches_hold_every_direction_in_proportion(sizes, batch_size):
  ex = _examples(sizes)
  config = _config(max_source_len=40, max_target_len=40)
  batches = data.Batches(ex, batch_size, 3, config, balance=True)
  direction = np.asarray(ex.direction)
  share = np.asarray(sizes) / sum(sizes) * batch_size
  seen = []
  for epoch in range(2):
    rows = batches._epoch_batches(epoch)
    assert rows.shape == (sum(sizes) // batch_size, batch_size)
    for row in rows:
      counts = np.bincount(direction[row], minlength=len(sizes))
      assert np.all(np.abs(counts - share) < 1 + 1e-9), (counts, share)
    assert len(np.unique(rows)) == rows.size  # no pair twice in an epoch
    seen.append(rows)
  assert not np.array_equal(seen[0], seen[1])  # a new order every epoch
  # A pure function of (seed, step): another object, another call order, the same batches.
  other = data.Batches(ex, batch_size, 3, config, balance=True)
  for step in (7, 0, 3 * batches.steps_per_epoch // 2):
    for key, value in other(step).items():
      np.testing.assert_array_equal(value, batches(step)[key])


def test_balanced_batches_still_group_by_length():
  """Less padding than balanced batches drawn without the length sort."""
  sizes, B = (400, 400, 400), 12
  ex = _examples(sizes, seed=1)
  config = _config(max_source_len=60, max_target_len=60)
  rows = data.Batches(ex, B, 0, config, balance=True)._epoch_batches(0)
  lengths = np.array([max(len(s), len(t)) for s, t in zip(ex.source, ex.target)])
  waste = lambda rows: np.mean([lengths[r].max() * len(r) - lengths[r].sum() for r in rows])
  # The reference: every batch takes B/3 pairs of each direction at random.
  rng = np.random.default_rng(0)
  direction = np.asarray(ex.direction)
  per_dir = [rng.permutation(np.flatnonzero(direction == d)).reshape(-1, B // 3) for d in range(3)]
  random_rows = np.concatenate(per_dir, axis=1)
  assert waste(rows) < 0.75 * waste(random_rows)  # (directions differ in length: not 0)


def test_unbalanced_batches_are_unchanged_by_directions():
  """The default path ignores the directions: the same batches with or without them."""
  ex = _examples((40, 40, 40))
  config = _config(max_source_len=40, max_target_len=40)
  a = data.Batches(ex, 8, 0, config)
  b = data.Batches(data.Examples(ex.source, ex.target), 8, 0, config)
  np.testing.assert_array_equal(a._epoch_batches(1), b._epoch_batches(1))
  with pytest.raises(ValueError, match="direction"):
    data.Batches(data.Examples(ex.source, ex.target), 8, 0, config, balance=True)


def test_language_start_feeds_the_target_token_first():
  config = _config(decoder_start="language", max_source_len=20, max_target_len=20)
  sources = [[5, 9, 10, data.EOS], [6, 11, data.EOS]]  # <2xx> first, as encode_source writes
  targets = [[12, 13, data.EOS], [14, data.EOS]]
  batch = data.make_batch(sources, targets, config)
  np.testing.assert_array_equal(batch["target_in"][:, :3], [[5, 12, 13], [6, 14, 0]])
  batch = data.make_batch(sources, targets, _config(max_source_len=20, max_target_len=20))
  np.testing.assert_array_equal(batch["target_in"][:, 0], [data.BOS, data.BOS])


def _python_greedy(model, params, source, lengths, first, max_len):
  """Greedy decoding as a Python loop over `decode_step`, starting from `first [B]`."""
  encoded = model.encode(params, source, lengths)
  state = model.initial_decoder_state(encoded)
  tokens, out, done = jnp.asarray(first), [], np.zeros(source.shape[0], bool)
  for _ in range(max_len):
    state, log_probs, _ = model.decode_step(params, encoded.memory, state, tokens)
    tokens = jnp.argmax(log_probs, -1)
    out.append(np.where(done, data.EOS, np.asarray(tokens)))
    done |= np.asarray(tokens) == data.EOS
  return np.stack(out, 1)


def test_language_start_decodes_from_each_rows_language_token():
  model = model_lib.GNMT(_config(num_layers=2, decoder_start="language"), V)
  params = model.init(jax.random.key(4))
  params["w_out"] = params["w_out"] * 30.0  # sharp enough that the start token matters
  rng = np.random.default_rng(0)
  source = rng.integers(4, V, (4, 6)).astype(np.int32)
  source[:, 0] = [4, 5, 6, 4]  # each row's <2xx>
  lengths = np.full((4,), 6, np.int32)
  source, lengths = jnp.asarray(source), jnp.asarray(lengths)
  kw = dict(max_len=7, eos=data.EOS)
  got = decode.greedy_or_sample(model, params, source, lengths, bos=None, **kw)
  want = _python_greedy(model, params, source, lengths, source[:, 0], 7)
  ends = np.asarray(got.lengths)
  for b in range(4):
    np.testing.assert_array_equal(np.asarray(got.tokens)[b, :ends[b]], want[b, :ends[b]])
  from_bos = _python_greedy(model, params, source, lengths, jnp.full((4,), data.BOS), 7)
  assert not np.array_equal(want, from_bos)  # the start token is really what changed
  beam = decode.beam_search(model, params, source, lengths, beam_size=1, bos=None, **kw)
  np.testing.assert_array_equal(beam.tokens, got.tokens)


def test_attention_scale_init():
  key = jax.random.key(0)
  assert float(attention.init(key, "normed_bahdanau", 8, 8, 16)["g"]) == pytest.approx(0.25)
  assert float(attention.init(key, "normed_bahdanau", 8, 8, 16, scale_init=2.0)["g"]) == 2.0
  params = model_lib.GNMT(_config(attention_scale_init=1.5), V).init(key)
  assert float(params["attention"]["g"]) == 1.5
  for bad in (dict(attention_scale_init=-1.0), dict(decoder_start="eos")):
    with pytest.raises(UserError, match=next(iter(bad))):
      train.check_config(_config(**bad))


def test_alignment_batch_reads_the_target_behind_the_same_language_token():
  config = _config(align_loss_weight=1.0, max_source_len=20, max_target_len=20)
  sources = [[5, 9, 10, data.EOS], [6, 11, data.EOS]]
  targets = [[12, 13, data.EOS], [14, data.EOS]]
  batch = data.make_batch(sources, targets, config)
  np.testing.assert_array_equal(batch["align_source"][:, :4], [[5, 12, 13, data.EOS],
                                                              [6, 14, data.EOS, 0]])
  np.testing.assert_array_equal(batch["align_lengths"], [4, 3])
  assert "align_source" not in data.make_batch(sources, targets, _config(max_source_len=20,
                                                                         max_target_len=20))


def test_alignment_loss_is_the_cosine_distance_of_pooled_encodings():
  """loss(weight w) = loss(weight 0) + w * mean_b (1 - cos(pool Enc(x_b), pool Enc(y_b))),
  with the pooling (max and mean) and the cosine written out in numpy over valid steps only."""
  w = 0.7
  config = _config(num_layers=2, align_loss_weight=w, max_source_len=20, max_target_len=20)
  plain = _config(num_layers=2, max_source_len=20, max_target_len=20)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(2))
  rng = np.random.default_rng(3)
  sources = [[4] + list(rng.integers(7, V, n)) + [data.EOS] for n in (5, 2, 8)]
  targets = [list(rng.integers(7, V, n)) + [data.EOS] for n in (3, 6, 1)]
  batch = {k: jnp.asarray(v) for k, v in data.make_batch(sources, targets, config).items()}

  def pooled(ids, lengths, pooling):
    encoded = model.encode(params, ids, lengths)
    values = np.asarray(encoded.memory.values)
    rows = [values[b, :lengths[b]] for b in range(len(lengths))]
    want = np.stack([r.max(0) if pooling == "max" else r.mean(0) for r in rows])
    np.testing.assert_allclose(model.sentence_vector(encoded, pooling), want, rtol=1e-6)
    return want

  lengths = np.asarray(batch["source_lengths"]), np.asarray(batch["align_lengths"])
  for pooling in ("mean", "max"):
    x = pooled(batch["source"], lengths[0], pooling)
    y = pooled(batch["align_source"], lengths[1], pooling)
  cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)  # max pooling
  key = jax.random.key(0)
  loss_fn = jax.jit(train.make_loss_fn(config, model))
  base_fn = jax.jit(train.make_loss_fn(plain, model))
  loss, (_, metrics) = loss_fn(params, {}, batch, key)
  base, _ = base_fn(params, {}, batch, key)
  assert float(metrics["align"]) == pytest.approx(np.mean(1 - cos), rel=1e-5)
  assert float(loss) == pytest.approx(float(base) + w * np.mean(1 - cos), rel=1e-6)
  # And it trains the encoder: the alignment term's gradient reaches the target's embeddings.
  grad = jax.jit(jax.grad(lambda p: loss_fn(p, {}, batch, key)[0] - base_fn(p, {}, batch, key)[0]))(params)
  assert float(jnp.abs(grad["embed_source"][np.asarray(targets[1][:-1])]).sum()) > 0


# -- synthetic pairs made online (--synthetic_pairs) ------------------------------------


@pytest.mark.parametrize("num_languages", [3, 4, 5])
def test_draw_other_is_uniform_over_the_languages_left(num_languages):
  n = 40000
  rng = np.random.default_rng(num_languages)
  a = rng.integers(0, num_languages, n).astype(np.int32)
  b = np.where(np.arange(n) % 3 == 0, a, rng.integers(0, num_languages, n)).astype(np.int32)
  c = np.asarray(synthetic.draw_other(jax.random.key(1), jnp.asarray(a), jnp.asarray(b),
                                      num_languages))
  assert not np.any((c == a) | (c == b)) and c.min() >= 0 and c.max() < num_languages
  for pair in ((0, 0), (0, 1), (2, 1), (1, 2)):  # each allowed language equally often
    rows = (a == pair[0]) & (b == pair[1])
    allowed = [l for l in range(num_languages) if l not in pair]
    counts = np.array([np.sum(c[rows] == l) for l in allowed])
    expected = rows.sum() / len(allowed)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), (pair, counts, expected)


def test_frame_source_writes_language_token_tokens_eos():
  tokens = jnp.array([[9, 8, 0, 0], [7, 6, 5, 4], [0, 0, 0, 0]])
  source, lengths = synthetic.frame_source(tokens, jnp.array([2, 4, 0]), jnp.array([5, 6, 4]))
  np.testing.assert_array_equal(source, [[5, 9, 8, data.EOS, 0, 0],
                                         [6, 7, 6, 5, 4, data.EOS],
                                         [4, data.EOS, 0, 0, 0, 0]])
  np.testing.assert_array_equal(lengths, [4, 6, 2])


def _synthetic_setup(decoder_start="bos"):
  """Three languages (<2xx> ids 4, 5, 6) and the directions 0->1, 1->0, 0->2; a model sharp
  enough that its greedy outputs depend on the source; a batch of four pairs."""
  config = _config(num_layers=2, max_source_len=30, max_target_len=30, label_smoothing=0.0,
                   decoder_start=decoder_start)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(5))
  params["w_out"] = params["w_out"] * 20.0
  languages = synthetic.Languages(np.array([4, 5, 6], np.int32), np.array([0, 1, 0], np.int32),
                                  np.array([1, 0, 2], np.int32))
  rng = np.random.default_rng(6)
  direction = np.array([0, 1, 2, 0], np.int32)
  sources = [[int(languages.tokens[languages.target[d]])] + list(rng.integers(7, V, n))
             + [data.EOS] for d, n in zip(direction, (5, 2, 7, 3))]
  targets = [list(rng.integers(7, V, n)) + [data.EOS] for n in (4, 6, 1, 3)]
  batch = data.make_batch(sources, targets, config)
  batch["direction"] = direction
  return config, model, params, languages, {k: jnp.asarray(v) for k, v in batch.items()}, sources, targets


def _reference_synthetic(model, params, read, language_token, bos):
  """One row, unpadded: greedy in a Python loop for at most twice the pieces read, then
  `[<2b>] + output + [eos]`."""
  limit = max(1, 2 * (len(read) - 2))
  ids = jnp.asarray([read], jnp.int32)
  first = jnp.asarray([read[0] if bos is None else bos])
  out = _python_greedy(model, params, ids, jnp.asarray([len(read)]), first, limit)[0]
  out = list(out[:list(out).index(data.EOS)] if data.EOS in out else out)
  return [language_token] + [int(t) for t in out] + [data.EOS]


@pytest.mark.parametrize("method,decoder_start", [("robt", "language"), ("pivot", "bos")])
def test_synthetic_sources_are_the_models_greedy_translations(method, decoder_start):
  """Each synthetic source is what greedy decoding in a Python loop makes from the row's
  target (robt) or source (pivot) behind the drawn language's token, framed as a source in
  the row's target language; the drawn language is never the ones excluded."""
  config, model, params, languages, batch, sources, targets = _synthetic_setup(decoder_start)
  source, lengths, language, _ = synthetic.make_sources(
      method, model, params, batch, languages, jax.random.key(3), rows=3,
      bos=data.start_token(config), max_source_len=config.max_source_len)
  assert source.shape[0] == 3
  outputs = set()
  for r in range(3):
    d = int(batch["direction"][r])
    a, b, c = int(languages.source[d]), int(languages.target[d]), int(language[r])
    assert c != b and (method == "robt" or c != a)
    read = ([int(languages.tokens[c])] + (targets[r] if method == "robt" else sources[r][1:]))
    want = _reference_synthetic(model, params, read, int(languages.tokens[b]),
                                data.start_token(config))
    assert int(lengths[r]) == len(want)
    np.testing.assert_array_equal(np.asarray(source[r, :len(want)]), want)
    assert not np.any(np.asarray(source[r, len(want):]))
    outputs.add(tuple(want))
  assert len(outputs) > 1  # the outputs depend on what was read


def test_synthetic_loss_is_the_row_weighted_mean_and_starts_at_its_step():
  """Pivot with three languages draws c deterministically (the third), so the loss can be
  rebuilt from the reference sources: (B * real + rows * synthetic) / (B + rows), each the
  token cross-entropy written out in numpy; before --synthetic_start_step, the real loss."""
  base_config, model, params, languages, batch, sources, targets = _synthetic_setup()
  rows, B, start = 2, 4, 10
  config = dataclasses.replace(base_config, synthetic_pairs="pivot", synthetic_rows=rows,
                               synthetic_start_step=start)
  key = jax.random.key(0)
  loss_fn = jax.jit(train.make_loss_fn(config, model, languages=languages))
  plain, _ = jax.jit(train.make_loss_fn(base_config, model))(params, {}, batch, key)

  def at(step):
    return dict(batch, step=jnp.full((B,), step, jnp.int32))

  before, (_, m) = loss_fn(params, {}, at(start - 1), key)
  assert float(before) == float(plain) and float(m["synthetic_nll"]) == 0.0

  nll = []
  for r in range(rows):
    d = int(batch["direction"][r])
    c = 3 - int(languages.source[d]) - int(languages.target[d])  # the third language
    src = _reference_synthetic(model, params, [int(languages.tokens[c])] + sources[r][1:],
                               int(languages.tokens[languages.target[d]]), data.BOS)
    encoded = model.encode(params, jnp.asarray([src]), jnp.asarray([len(src)]))
    n = len(targets[r])
    logits, _ = model.decode_train(params, encoded, batch["target_in"][r:r + 1, :n])
    log_p = jax.nn.log_softmax(np.asarray(logits[0], np.float64))
    nll += [-float(log_p[t, targets[r][t]]) for t in range(n)]
  synthetic_xent = np.mean(nll)
  after, (_, m) = loss_fn(params, {}, at(start), key)
  assert float(m["synthetic_nll"]) == pytest.approx(synthetic_xent, rel=1e-5)
  assert float(after) == pytest.approx((B * float(plain) + rows * synthetic_xent) / (B + rows),
                                       rel=1e-5)
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, {}, at(start), key)[0]))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_synthetic_pairs_config_and_batches():
  for bad, match in ((dict(synthetic_pairs="bt"), "synthetic_pairs"),
                     (dict(synthetic_pairs="robt", synthetic_rows=0), "synthetic_rows"),
                     (dict(synthetic_pairs="robt", training="scst"), "xent")):
    with pytest.raises(UserError, match=match):
      train.check_config(_config(**bad))
  ex = _examples((20, 20, 20))
  config = _config(max_source_len=40, max_target_len=40, synthetic_pairs="pivot")
  batches = data.Batches(ex, 8, 0, config)
  batch = batches(3)
  index = batches._epoch_batches(0)[3]
  np.testing.assert_array_equal(batch["direction"], np.asarray(ex.direction)[index])
  assert "direction" not in data.Batches(ex, 8, 0, _config(max_source_len=40,
                                                           max_target_len=40))(3)
