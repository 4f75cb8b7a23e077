"""GNMT: regression tests for the defects of issue #19, each failing before its fix.

1. luong234 halved one step too early (the rate at the start of the decay).
2. Processes of a multi-host run picked padded lengths from their own rows.
3. "gnmt" attention heatmaps were one row off.
4. A `<2xx>` typed in the input was the language token (user-defined symbols).
5. The WMT flagfile was not tensorflow/nmt's wmt16_gnmt_8_layer recipe.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import common
from experiments.gnmt import GNMTConfig, data, decode
from experiments.gnmt import model as model_lib
from experiments.gnmt import train as train_lib
from fixtures import gnmt_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, H, B, S, U = 23, 8, 3, 7, 5


def _config(**kw):
  return gnmt_config(**{"hidden_size": H, "vocab_size": V, **kw})


# -- 1. the luong schedules ----------------------------------------------------------------


def _tensorflow_nmt_rate(learning_rate, global_step, num_train_steps, scheme):
  """tensorflow/nmt's nmt/model.py, `_get_decay_info` and `_get_learning_rate_decay`."""
  if scheme == "luong5":
    start_decay_step, decay_times = int(num_train_steps / 2), 5
  elif scheme == "luong10":
    start_decay_step, decay_times = int(num_train_steps / 2), 10
  elif scheme == "luong234":
    start_decay_step, decay_times = int(num_train_steps * 2 / 3), 4
  remain_steps = num_train_steps - start_decay_step
  decay_steps = int(remain_steps / decay_times)
  if global_step < start_decay_step:
    return learning_rate
  # tf.train.exponential_decay(lr, step - start, decay_steps, 0.5, staircase=True)
  return learning_rate * 0.5 ** np.floor((global_step - start_decay_step) / decay_steps)


@pytest.mark.parametrize("scheme", ["luong234", "luong10", "luong5"])
@pytest.mark.parametrize("num_steps", [3000, 1001, 97, 340000])
def test_luong_schedules_match_tensorflow_nmt(scheme, num_steps):
  config = _config(optimizer="sgd", learning_rate=1.0, decay_scheme=scheme)
  schedule = train_lib.learning_rate_schedule(config, num_steps)
  if num_steps <= 3000:
    steps = np.arange(num_steps)
  else:  # every boundary of the staircase and its neighbours
    steps = np.unique(np.clip(np.concatenate(
        [np.arange(0, num_steps, 997)] + [np.arange(b - 2, b + 3) for b in range(
            0, num_steps + 1, 1700)]), 0, num_steps - 1))
  got = np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))
  expected = np.array([_tensorflow_nmt_rate(1.0, int(s), num_steps, scheme) for s in steps])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  if scheme == "luong234" and num_steps == 3000:  # the example
    assert float(schedule(2000)) == 1.0 and float(schedule(1999)) == 1.0
    assert float(schedule(2250)) == 0.5 and float(schedule(2999)) == 0.125


def test_unknown_decay_scheme_is_refused():
  """It was read as no decay at all."""
  with pytest.raises(common.UserError, match="--decay_scheme"):
    train_lib.check_config(_config(decay_scheme="luong7"))


# -- 2. one (S, U) for every process ------------------------------------------------------


@pytest.mark.parametrize("processes", [2, 4])
def test_every_process_pads_to_the_global_batch(processes):
  """Each process's rows have the global batch's shapes, and equal its rows exactly."""
  config = _config(max_source_len=48, max_target_len=48)
  rng = np.random.default_rng(0)
  n, batch_size = 160, 8
  ex = data.Examples([list(rng.integers(4, V, rng.integers(2, 47))) for _ in range(n)],
                     [list(rng.integers(4, V, rng.integers(2, 47))) for _ in range(n)])
  batches = data.Batches(ex, batch_size, 0, config)
  per = batch_size // processes
  own_buckets_differ = 0
  for step in range(2 * batches.steps_per_epoch):
    whole = batches(step)
    rows = [slice(p * per, (p + 1) * per) for p in range(processes)]
    parts = [batches(step, r) for r in rows]
    for key in whole:
      assert len({part[key].shape for part in parts}) == 1, (step, key)
      for r, part in zip(rows, parts):
        np.testing.assert_array_equal(part[key], whole[key][r])
    # The data has steps where the rows alone would pick different buckets.
    own = {data.bucket(int(max(part["source_lengths"].max(), part["target_lengths"].max())), 48)
           for part in parts}
    own_buckets_differ += len(own) > 1
  assert own_buckets_differ > 0


# -- 3. the attention that produced each token ---------------------------------------------


def _source():
  rng = np.random.default_rng(1)
  source = rng.integers(4, V, (B, S)).astype(np.int32)
  lengths = np.array([S, 4, 2], np.int32)
  source[np.arange(S)[None, :] >= lengths[:, None]] = 0
  return jnp.asarray(source), jnp.asarray(lengths)


def _step_by_step(model, params, source, lengths, tokens):
  """Drives `decode_step` over `[BOS] + tokens`: each step's α and the context its upper
  layers read (`[B, T, S]`, `[B, T, M]`)."""
  encoded = model.encode(params, source, lengths)
  state = model.initial_decoder_state(encoded)
  inputs = np.concatenate([np.full((B, 1), data.BOS, np.int32), tokens[:, :-1]], 1)
  alphas, upper = [], []
  for t in range(inputs.shape[1]):
    before = state.context
    state, _, alpha = model.decode_step(params, encoded.memory, state, jnp.asarray(inputs[:, t]))
    alphas.append(alpha)
    upper.append(before if model.config.attention_architecture == "gnmt" else state.context)
  return np.stack(alphas, 1), np.stack(upper, 1), encoded.memory.values


@pytest.mark.parametrize("architecture", ["gnmt", "gnmt_v2"])
@pytest.mark.parametrize("beam_size", [0, 3])
def test_decoded_attention_is_the_one_that_fed_each_token(architecture, beam_size):
  config = _config(num_layers=4, attention_architecture=architecture)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(5))
  params["w_out"] = params["w_out"] * 30.0  # decisive choices
  source, lengths = _source()
  kw = dict(max_len=6, bos=data.BOS, eos=data.EOS)
  if beam_size:
    out = decode.beam_search(model, params, source, lengths, beam_size=beam_size, alpha=0.6, **kw)
  else:
    out = decode.greedy_or_sample(model, params, source, lengths, **kw)
  # The chosen output with its EOS back in place: [B, max_len].
  tokens = np.asarray(out.tokens).copy()
  out_len = np.asarray(out.lengths)
  for b in range(B):
    if out_len[b] < tokens.shape[1]:
      tokens[b, out_len[b]] = data.EOS
  alphas, upper, values = _step_by_step(model, params, source, lengths, tokens)
  weights = np.asarray(out.weights)
  for b in range(B):
    for u in range(min(out_len[b] + 1, tokens.shape[1])):  # every token, the EOS included
      if architecture == "gnmt":  # token u read a_{u-1}; token 0 the zero initial context
        expected = alphas[b, u - 1] if u > 0 else np.zeros(S)
      else:  # gnmt_v2: token u read a_u
        expected = alphas[b, u]
      np.testing.assert_allclose(weights[b, u], expected, rtol=1e-5, atol=1e-6)
      # The row, applied to the memory, is the context token u's upper layers read.
      np.testing.assert_allclose(weights[b, u] @ values[b], upper[b, u], rtol=1e-4, atol=1e-5)


# -- 4. language tokens only the code inserts ----------------------------------------------


@pytest.fixture(scope="module")
def numbers_corpus():
  config = _config(num_train_sentences=300, num_eval_sentences=5, vocab_size=200)
  return config, data.load(config)


def _old_tokenizer_proto(corpus, config) -> bytes:
  """The tokenizer as trained before the fix: `<2xx>` as user-defined symbols."""
  import io
  import sentencepiece as spm
  seen, lines = set(), []
  for (src, tgt), (src_lines, tgt_lines) in corpus.splits["train"].items():
    for lang, lang_lines in ((src, src_lines), (tgt, tgt_lines)):
      if lang not in seen:
        seen.add(lang)
        lines.extend(line for line in lang_lines if line.strip())
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=model, vocab_size=config.vocab_size,
      model_type=config.spm_model_type, character_coverage=1.0, pad_id=data.PAD,
      unk_id=data.UNK, bos_id=data.BOS, eos_id=data.EOS,
      user_defined_symbols=[f"<2{l}>" for l in corpus.languages], input_sentence_size=0,
      shuffle_input_sentence=False, num_threads=1, minloglevel=2)
  return model.getvalue()


RAW = ["the <2fr> seventy", "<2de>", "one<2es>two", "<2en> <2fr><2de>", "seven ; <2xx> ; <2>"]


def test_typed_language_tokens_are_plain_text(numbers_corpus, tmp_path):
  config, corpus = numbers_corpus
  tokenizer = data.train_tokenizer(corpus, config)
  # Ids kept: the language tokens follow pad, unk, bos, eos, in the corpus' order.
  assert [tokenizer.lang_ids[l] for l in corpus.languages] == list(range(4, 8))
  lang_ids = set(tokenizer.lang_ids.values())
  for text in RAW:
    assert not lang_ids & set(tokenizer.sp.encode(text)), text
    ids, _ = tokenizer.encode_source(text, "de", config.max_source_len)
    assert ids[0] == tokenizer.lang_ids["de"] and not lang_ids & set(ids[1:]), text
  # The code's own sources still start with the target's token, and only there.
  for (src, tgt), pairs in corpus.splits["train"].items():
    examples, _ = data.encode_pairs(tokenizer, {(src, tgt): pairs}, config)
    assert all(s[0] == tokenizer.lang_ids[tgt] for s in examples.source)
    assert not any(lang_ids & set(s[1:]) for s in examples.source)
    assert not any(lang_ids & set(t) for t in examples.target)
  # A workdir's tokenizer from before the fix loads with the same ids and the same
  # pieces for ordinary text, and no longer matches typed tokens.
  old = _old_tokenizer_proto(corpus, config)
  with open(tmp_path / "spm.model", "wb") as f:
    f.write(old)
  loaded = data.tokenizer_for(str(tmp_path), corpus, config)
  assert loaded.lang_ids == tokenizer.lang_ids
  for text in RAW:
    assert not lang_ids & set(loaded.sp.encode(text)), text
  plain = data.Tokenizer(old, corpus.languages)
  assert [plain.sp.id_to_piece(i) for i in range(plain.vocab_size)] == [
      tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
  lines = corpus.splits["train"][("en", "de")][0][:100] + corpus.splits["train"][("de", "en")][0][:100]
  assert [tokenizer.sp.encode(s) for s in lines] == [loaded.sp.encode(s) for s in lines]


# -- 5. tensorflow/nmt's wmt16_gnmt_8_layer ------------------------------------------------


def test_wmt_flagfile_is_tensorflow_nmt_wmt16_gnmt_8_layer():
  config = common.config_from_flagfile(
      GNMTConfig, "experiments/flagfiles/gnmt/wmt14_gnmt_8layer.flags", root=REPO)
  train_lib.check_config(config)
  # nmt/standard_hparams/wmt16_gnmt_8_layer.json, and nmt.py's defaults for what it leaves out.
  expected = dict(hidden_size=1024, num_layers=8, bidirectional_bottom=True, residual_from=2,
                  attention="normed_bahdanau", attention_architecture="gnmt_v2",
                  pass_hidden_state=True, dropout=0.2, optimizer="sgd", learning_rate=1.0,
                  max_grad_norm=5.0, warmup_steps=0, decay_scheme="luong10",
                  train_steps=340000, batch_size=128, beam_size=10, length_penalty=1.0,
                  coverage_penalty=0.0, label_smoothing=0.0, loss_normalization="sentences")
  assert {k: getattr(config, k) for k in expected} == expected
  main_job = common.config_from_flagfile(
      GNMTConfig, "experiments/flagfiles/gnmt/tiny_cpu.flags", root=REPO)
  # The main job keeps its own recipe (issue #19's remedy for the late jump): Adam, per-token
  # loss, warmup and luong234; the WMT flagfile overrides every one of them.
  assert (main_job.optimizer, main_job.loss_normalization, main_job.warmup_steps,
          main_job.decay_scheme) == ("adam", "tokens", 500, "luong234")


@pytest.mark.parametrize("normalization", ["tokens", "sentences"])
def test_loss_normalization(normalization):
  """The training loss: summed token cross-entropy over tokens or over sentences (B)."""
  config = _config(num_layers=2, label_smoothing=0.0, loss_normalization=normalization)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(2))
  rng = np.random.default_rng(3)
  source, lengths = _source()
  target_lengths = np.array([U, 3, 1], np.int32)
  target_out = rng.integers(4, V, (B, U)).astype(np.int32)
  target_out[np.arange(U)[None, :] >= target_lengths[:, None]] = 0
  target_in = np.concatenate([np.full((B, 1), data.BOS, np.int32), target_out[:, :-1]], 1)
  batch = {"source": source, "source_lengths": lengths, "target_in": jnp.asarray(target_in),
           "target_out": jnp.asarray(target_out), "target_lengths": jnp.asarray(target_lengths)}
  loss, (_, metrics) = train_lib.make_loss_fn(config, model)(params, {}, batch, jax.random.key(0))
  logits, _ = model.decode_train(params, model.encode(params, source, lengths), batch["target_in"])
  log_probs = np.asarray(jax.nn.log_softmax(logits))
  summed = -sum(log_probs[b, u, target_out[b, u]] for b in range(B)
                for u in range(target_lengths[b]))
  expected = summed / (B if normalization == "sentences" else target_lengths.sum())
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  # The logged per-token figures do not depend on the normalisation.
  np.testing.assert_allclose(float(metrics["nll"]), summed / target_lengths.sum(), rtol=1e-5)


def test_unknown_loss_normalization_is_refused():
  with pytest.raises(common.UserError, match="--loss_normalization"):
    train_lib.check_config(_config(loss_normalization="words"))
