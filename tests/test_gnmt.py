"""GNMT: structure, attention, decoding, penalties, data, and the experiment end to end."""

import dataclasses
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.gnmt import GNMTConfig, attention, data, decode, numbers
from experiments.gnmt import model as model_lib
from experiments.gnmt import train as train_lib
import rnn_jax
from fixtures import gnmt_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, H, B, S, U = 23, 8, 3, 7, 5


def _config(**kw):
  return gnmt_config(**{"hidden_size": H, "vocab_size": V, **kw})


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  source = rng.integers(4, V, (B, S)).astype(np.int32)
  lengths = np.array([S, 4, 1], np.int32)
  source[np.arange(S)[None, :] >= lengths[:, None]] = 0
  target_in = rng.integers(4, V, (B, U)).astype(np.int32)
  target_in[:, 0] = data.BOS
  return jnp.asarray(source), jnp.asarray(lengths), jnp.asarray(target_in)


def test_encoder_and_decoder_structure():
  model = model_lib.GNMT(_config(), V)
  params = model.init(jax.random.key(0))
  enc = params["encoder"]
  assert sorted(enc) == [f"layer_{l}" for l in range(8)]
  assert set(enc["layer_0"]) == {"fw", "bw"}  # bi-directional bottom
  assert enc["layer_0"]["fw"]["w_ih"].shape == (H, 4 * H)
  assert enc["layer_1"]["w_ih"].shape == (2 * H, 4 * H)  # reads both directions
  assert all(enc[f"layer_{l}"]["w_ih"].shape == (H, 4 * H) for l in range(2, 8))
  dec = params["decoder"]
  assert sorted(dec) == [f"layer_{l}" for l in range(8)]
  assert dec["layer_0"]["w_ih"].shape == (2 * H, 4 * H)  # embedding + fed context
  assert all(dec[f"layer_{l}"]["w_ih"].shape == (2 * H, 4 * H) for l in range(1, 8))
  assert [model._residual(l) for l in range(8)] == [False, False] + [True] * 6


def test_encoder_residuals_from_the_third_layer():
  """Against the stack written out by hand with the reference unroll."""
  config = _config(num_layers=4)
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(1))
  source, lengths, _ = _batch()
  encoded = model.encode(params, source, lengths)
  x = jnp.take(params["embed_source"], source, axis=0)
  cell = rnn_jax.cells.lstm(H)
  enc = params["encoder"]
  fw, _ = rnn_jax.unroll_reference(cell, enc["layer_0"]["fw"], x, seq_lengths=lengths)
  bw, _ = rnn_jax.unroll_reference(cell, enc["layer_0"]["bw"], x, seq_lengths=lengths, reverse=True)
  h = jnp.concatenate([fw, bw], -1)
  h, _ = rnn_jax.unroll_reference(cell, enc["layer_1"], h, seq_lengths=lengths)
  valid = (jnp.arange(S)[None, :] < lengths[:, None])[..., None]
  for l in (2, 3):
    y, _ = rnn_jax.unroll_reference(cell, enc[f"layer_{l}"], h, seq_lengths=lengths)
    h = jnp.where(valid, y + h, 0.0)
  np.testing.assert_allclose(encoded.memory.values, h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", attention.TYPES)
def test_attention_sums_to_one_and_ignores_padding(kind):
  M = H
  params = attention.init(jax.random.key(0), kind, H, M, 6)
  values = jax.random.normal(jax.random.key(1), (B, S, M))
  mask = jnp.arange(S)[None, :] < jnp.array([S, 3, 0])[:, None]
  memory = attention.prepare(params, kind, values, mask)
  query = jax.random.normal(jax.random.key(2), (B, H))
  context, weights = attention.attend(params, kind, memory, query)
  np.testing.assert_allclose(weights[:2].sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(weights[1, 3:], 0.0)
  np.testing.assert_array_equal(weights[2], 0.0)  # an empty source: no NaN, no weight
  np.testing.assert_allclose(context, jnp.einsum("bs,bsm->bm", weights, values), rtol=1e-5)
  # Changing the padded memory changes nothing.
  values2 = values.at[1, 3:].set(100.0)
  _, weights2 = attention.attend(params, kind, attention.prepare(params, kind, values2, mask), query)
  np.testing.assert_allclose(weights2[1], weights[1], rtol=1e-6)


def test_bahdanau_score_by_hand():
  params = attention.init(jax.random.key(0), "bahdanau", H, H, 6)
  values = jax.random.normal(jax.random.key(1), (1, S, H))
  query = jax.random.normal(jax.random.key(2), (1, H))
  mask = jnp.ones((1, S), bool)
  _, weights = attention.attend(params, "bahdanau", attention.prepare(params, "bahdanau", values, mask), query)
  v, wq, wk = (np.asarray(params[k], np.float64) for k in ("v", "w_query", "w_key"))
  scores = np.array([v @ np.tanh(np.asarray(query[0]) @ wq + np.asarray(values[0, s]) @ wk)
                     for s in range(S)])
  expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
  np.testing.assert_allclose(weights[0], expected, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["gnmt", "gnmt_v2"])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_layerwise_training_pass_equals_step_by_step_decoding(architecture, input_feeding):
  config = _config(num_layers=4, attention_architecture=architecture,
                   input_feeding=input_feeding, attention="luong_general")
  model = model_lib.GNMT(config, V)
  params = model.init(jax.random.key(3))
  source, lengths, target_in = _batch()
  encoded = model.encode(params, source, lengths)
  logits, weights = model.decode_train(params, encoded, target_in)
  state = model.initial_decoder_state(encoded)
  for t in range(U):
    state, log_probs, w = model.decode_step(params, encoded.memory, state, target_in[:, t])
    np.testing.assert_allclose(log_probs, jax.nn.log_softmax(logits[:, t]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w, weights[:, t], rtol=1e-5, atol=1e-6)


def test_length_and_coverage_penalties_by_hand():
  assert float(decode.length_penalty(jnp.array(7.0), 0.6)) == pytest.approx(((5 + 7) / 6) ** 0.6)
  assert float(decode.length_penalty(jnp.array(3.0), 0.0)) == 1.0
  coverage = jnp.array([[0.5, 1.7, 0.25, 9.0]])
  mask = jnp.array([[True, True, True, False]])
  expected = 0.2 * (math.log(0.5) + math.log(1.0) + math.log(0.25))
  assert float(decode.coverage_penalty(coverage, mask, 0.2)[0]) == pytest.approx(expected)


def _trained_enough_model(seed=0):
  model = model_lib.GNMT(_config(num_layers=2), V)
  params = model.init(jax.random.key(seed))
  # Sharper output distribution than at init, so decoding makes real choices.
  params["w_out"] = params["w_out"] * 30.0
  return model, params


def test_beam_search_with_one_beam_is_greedy():
  model, params = _trained_enough_model()
  source, lengths, _ = _batch(1)
  kw = dict(max_len=9, bos=data.BOS, eos=data.EOS)
  greedy = decode.greedy_or_sample(model, params, source, lengths, **kw)
  for alpha, beta in [(0.0, 0.0), (0.6, 0.2)]:
    beam = decode.beam_search(model, params, source, lengths, beam_size=1, alpha=alpha,
                              beta=beta, **kw)
    np.testing.assert_array_equal(beam.tokens, greedy.tokens)
    np.testing.assert_array_equal(beam.lengths, greedy.lengths)


def test_beam_search_finds_at_least_the_greedy_log_prob():
  model, params = _trained_enough_model(2)
  source, lengths, _ = _batch(2)
  kw = dict(max_len=9, bos=data.BOS, eos=data.EOS)
  greedy = decode.greedy_or_sample(model, params, source, lengths, **kw)
  beam = jax.jit(lambda p: decode.beam_search(model, p, source, lengths, beam_size=4, **kw))(params)
  # With alpha = beta = 0 the beam's score is its log-prob; it never loses to greedy.
  assert np.all(np.asarray(beam.scores) >= np.asarray(greedy.scores) - 1e-4)


def test_sampling_is_reproducible_and_needs_a_key():
  model, params = _trained_enough_model()
  source, lengths, _ = _batch()
  kw = dict(max_len=6, bos=data.BOS, eos=data.EOS, temperature=1.0)
  a = decode.greedy_or_sample(model, params, source, lengths, key=jax.random.key(0), **kw)
  b = decode.greedy_or_sample(model, params, source, lengths, key=jax.random.key(0), **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  with pytest.raises(ValueError, match="key"):
    decode.greedy_or_sample(model, params, source, lengths, **kw)


def test_reverse_valid():
  ids = jnp.array([[1, 2, 3, 0], [4, 5, 0, 0]])
  np.testing.assert_array_equal(model_lib.reverse_valid(ids, jnp.array([3, 2])),
                                [[3, 2, 1, 0], [5, 4, 0, 0]])


def test_numbers_corpus_is_parallel_deterministic_and_disjoint():
  from num2words import num2words
  splits = numbers.splits(200, 20)
  assert not set(splits["train"]) & set(splits["test"])
  assert not set(splits["valid"]) & set(splits["test"])
  assert numbers.splits.__wrapped__(200, 20) == splits  # regenerated: identical
  items = splits["test"][0]
  for lang in numbers.LANGUAGES:
    sentence = numbers.sentences("test", lang, 200, 20)[0]
    parts = sentence.split(" ; ")
    assert len(parts) == len(items)
    for (kind, n), part in zip(items, parts):
      if kind == "cardinal":
        assert part == num2words(n, lang=lang)
      elif kind == "year":
        assert part.endswith(num2words(n, lang=lang, to="year"))
  assert numbers.render((("year", 1984),), "fr") == "en l'an mille neuf cent quatre-vingt-quatre"


def test_batches_are_a_pure_function_of_the_step():
  config = _config(max_source_len=20, max_target_len=20)
  rng = np.random.default_rng(0)
  ex = data.Examples([list(rng.integers(4, V, rng.integers(2, 19))) for _ in range(100)],
                     [list(rng.integers(4, V, rng.integers(2, 19))) for _ in range(100)])
  a, b = data.Batches(ex, 8, 0, config), data.Batches(ex, 8, 0, config)
  steps = [0, 5, 13, 12, 30]
  first = {s: a(s) for s in steps}
  for s in reversed(steps):  # another object, another call order: the same batches
    for key, value in b(s).items():
      np.testing.assert_array_equal(value, first[s][key])
  batch = a(3)
  t = batch["target_lengths"][0]
  np.testing.assert_array_equal(batch["target_in"][0, 1:t], batch["target_out"][0, :t - 1])
  assert batch["target_in"][0, 0] == data.BOS
  seen = np.concatenate([a(s)["source_lengths"] for s in range(a.steps_per_epoch)])
  assert len(seen) == 96


# All 8 + 8 layers, 200 steps at a high learning rate: enough to write the target language
# in well-formed sentences (test_experiment_end_to_end), not yet to translate. (150 steps
# were too few on another CPU: the run is then on the steep part of its learning curve,
# where the machine's rounding moves chrF by 7 points.)
NUM_TRAIN, NUM_EVAL, STEPS = 400, 12, 200
SMOKE = ["--hidden_size=32", "--num_layers=8", "--batch_size=32", f"--max_steps={STEPS}",
         "--learning_rate=1e-2", "--warmup_steps=0", "--decay_scheme=",
         f"--num_train_sentences={NUM_TRAIN}",
         f"--num_eval_sentences={NUM_EVAL}", "--eval_max_sentences=6", "--eval_every=100",
         "--checkpoint_every=100", "--log_every=25", "--beam_size=2", "--vocab_size=300",
         "--eval_batch_size=8", "--noprogress", "--num_attention_plots=1"]


def _run(args, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", "experiments.gnmt", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gnmt"))
  out = _run(["--flagfile=experiments/flagfiles/gnmt/tiny_cpu.flags", *SMOKE, f"--workdir={workdir}"])
  assert out.returncode == 0, out.stderr[-4000:]
  return workdir


def _trivial_outputs(direction):
  """sacrebleu's (BLEU, chrF) on `direction`'s test set of two outputs that need no model:
  the source copied, and the most frequent training target sentence (what a model that
  learned the target language but ignores its source writes)."""
  import collections
  import sacrebleu
  src, tgt = direction.split("-")
  sources, references = (numbers.sentences("test", l, NUM_TRAIN, NUM_EVAL) for l in (src, tgt))
  frequent = collections.Counter(numbers.sentences("train", tgt, NUM_TRAIN, NUM_EVAL))
  outputs = {"copy": list(sources), "frequent": [frequent.most_common(1)[0][0]] * len(references)}
  return {name: (sacrebleu.corpus_bleu(out, [list(references)]).score,
                 sacrebleu.corpus_chrf(out, [list(references)]).score)
          for name, out in outputs.items()}


def test_experiment_end_to_end(smoke_run):
  import json
  with open(os.path.join(smoke_run, "results.json")) as f:
    results = json.load(f)
  supervised = ["en-de", "de-en", "en-fr", "fr-en", "en-es", "es-en"]
  zero_shot = ["de-fr", "fr-de"]
  directions = supervised + zero_shot
  assert results["zero_shot_directions"] == zero_shot
  assert results["step"] == STEPS
  for kind in ("bleu", "chrf"):
    for label, dirs in (("supervised", supervised), ("zero_shot", zero_shot)):
      assert results[f"{kind}/mean_{label}"] == pytest.approx(
          np.mean([results[f"{kind}/{d}"] for d in dirs]))
  # The trained model against outputs that need none, on the same test sets. Measured at
  # 150 steps on an AMD EPYC (seeds 0-2): mean supervised chrF 31.7, 31.0, 30.9 against
  # 19.4 for the most frequent training sentence and 14.1 for the copied source; BLEU 7.9,
  # 6.5, 6.8 against 0.8 for the copy; zero-shot chrF 30.1, 31.4, 24.0 against 12.0 for
  # the copy. On an Intel Xeon, seed 0 gave chrF 25.0 at 150 steps and, at 200 steps,
  # 35.7 (BLEU 8.9, zero-shot chrF 27.7). After 12 steps the model scored chrF 1.1.
  # Not caught here: a decoder that ignores its source (a long constant sentence scores
  # chrF 36 to 43); test_target_token_routes_the_output_language needs the source.
  trivial = {d: _trivial_outputs(d) for d in directions}
  mean = lambda dirs, name, i: np.mean([trivial[d][name][i] for d in dirs])
  best_trivial_chrf = max(mean(supervised, "copy", 1), mean(supervised, "frequent", 1))
  assert results["chrf/mean_supervised"] > best_trivial_chrf + 6, (results, trivial)
  assert results["bleu/mean_supervised"] > mean(supervised, "copy", 0) + 3, (results, trivial)
  assert results["chrf/mean_zero_shot"] > mean(zero_shot, "copy", 1) + 6, (results, trivial)
  plots = os.listdir(os.path.join(smoke_run, "attention"))
  assert len(plots) == len(directions) and all(p.endswith(".png") for p in plots)


def test_translate_mode_and_its_bad_input(smoke_run, tmp_path):
  import json
  import sacrebleu
  flags = [f"--flagfile={smoke_run}/flags.txt", "--mode=translate"]
  sources, references = (list(numbers.sentences("test", l, NUM_TRAIN, NUM_EVAL))
                         for l in ("en", "de"))
  text = ("in nineteen eighty-four ; the third\n\n" + "seven ; " * 60 + "seven\n"
          + "\n".join(sources) + "\n")
  out = _run(flags + ["--target_lang=de"], input=text)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.split("\n")
  assert len(lines) >= 3 + len(sources) and lines[1] == ""  # the empty line stays empty
  assert "line 2 is empty" in out.stderr and "line 3 is longer" in out.stderr
  # The run's reported en-de figures are sacrebleu's on what the model writes.
  with open(os.path.join(smoke_run, "results.json")) as f:
    results = json.load(f)
  hypotheses = lines[3:3 + len(sources)]
  assert sacrebleu.corpus_bleu(hypotheses, [references]).score == pytest.approx(
      results["bleu/en-de"], abs=1e-6)
  assert sacrebleu.corpus_chrf(hypotheses, [references]).score == pytest.approx(
      results["chrf/en-de"], abs=1e-6)
  out = _run(flags + ["--target_lang=xx"], input="one\n")
  assert out.returncode == 1 and "unknown language code 'xx'" in out.stderr
  assert "Traceback" not in out.stderr
  out = _run(flags, input="one\n")
  assert out.returncode == 1 and "--target_lang is required" in out.stderr


def test_unknown_language_in_directions(tmp_path):
  out = _run(["--flagfile=experiments/flagfiles/gnmt/tiny_cpu.flags", "--zero_shot_directions=de-xx",
              f"--workdir={tmp_path}"])
  assert out.returncode == 1 and "unknown language code 'xx'" in out.stderr
  assert "Traceback" not in out.stderr


def test_target_token_routes_the_output_language():
  """Trained on en -> {de, fr, es} numbers, the <2xx> token alone picks the output language."""
  import optax
  from num2words import num2words
  langs = ("de", "fr", "es")
  numbers_ = list(range(1, 40))
  words = {l: [num2words(n, lang=l).split() for n in numbers_] for l in ("en", *langs)}
  vocab = sorted({w for l in words for s_ in words[l] for w in s_})
  first = 4 + len(langs)  # pad, unk, bos, eos, then one <2xx> token per language
  wid = {w: first + i for i, w in enumerate(vocab)}
  lang_token = {l: 4 + i for i, l in enumerate(langs)}
  config = _config(hidden_size=32, num_layers=2, learning_rate=1e-2)
  model = model_lib.GNMT(config, first + len(vocab))
  src, src_len, tin, tout, tlen = [], [], [], [], []
  for l in langs:
    for i in range(len(numbers_)):
      s_ids = [lang_token[l]] + [wid[w] for w in words["en"][i]] + [data.EOS]
      t_ids = [wid[w] for w in words[l][i]] + [data.EOS]
      src.append(s_ids), tout.append(t_ids), tin.append([data.BOS] + t_ids[:-1])
  batch = {"source": data.pad(src, 16), "source_lengths": np.array([len(x) for x in src], np.int32),
           "target_in": data.pad(tin, 16), "target_out": data.pad(tout, 16),
           "target_lengths": np.array([len(x) for x in tout], np.int32)}
  optimizer = optax.adam(1e-2)
  state = rnn_jax.training.state.create_state(model.init(jax.random.key(0)), optimizer)
  step = jax.jit(rnn_jax.training.make_train_step(train_lib.make_loss_fn(config, model), optimizer))
  for i in range(300):
    state, metrics = step(state, batch, jax.random.key(i))
  out = decode.greedy_or_sample(model, state.params, jnp.asarray(batch["source"]),
                                jnp.asarray(batch["source_lengths"]), max_len=12,
                                bos=data.BOS, eos=data.EOS)
  own = {l: {wid[w] for s_ in words[l] for w in s_} for l in langs}
  n = len(numbers_)
  for k, l in enumerate(langs):
    tokens = [t for row in np.asarray(out.tokens[k * n:(k + 1) * n]) for t in row if t > 0]
    mine = sum(t in own[l] for t in tokens)
    theirs = sum(t in own[o] and t not in own[l] for o in langs if o != l for t in tokens)
    assert mine >= 0.95 * len(tokens) and theirs == 0, (l, mine, theirs, len(tokens))
    exact = sum(list(r[:m]) == tout[k * n + j][:-1]
                for j, (r, m) in enumerate(zip(np.asarray(out.tokens[k * n:(k + 1) * n]),
                                               np.asarray(out.lengths[k * n:(k + 1) * n]))))
    assert exact >= 0.8 * n, (l, exact)


def test_wmt_through_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  from experiments.gnmt import wmt
  config = _config(corpus="wmt14_translate", data_dir=str(tmp_path), num_train_sentences=7,
                   train_directions=["en-de", "de-en"], zero_shot_directions=[])
  with tfds.testing.mock_data(num_examples=9, policy=tfds.testing.MockPolicy.USE_CODE):
    corpus = data.load(config)
  assert corpus.languages == ("de", "en")
  src, tgt = corpus.splits["train"][("en", "de")]
  assert len(src) == len(tgt) == 7 and all(isinstance(s, str) for s in src)
  assert isinstance(src, wmt.Lines)  # streamed: read on demand (tests/test_gnmt_scale.py)
  back = corpus.splits["train"][("de", "en")]
  assert (list(back[0]), list(back[1])) == (list(tgt), list(src))
  assert len(corpus.splits["test"][("de", "en")][0]) == 9
  with pytest.raises(ValueError, match="zero-shot direction"):
    wmt.load(config, [("de", "fr")], [])


def test_gnmt_flagfiles_parse():
  from experiments import common
  expected = {"tiny_cpu": (64, 8, "numbers"), "multi30k": (256, 8, "multi30k"),
              "multi30k_cpu": (256, 3, "multi30k"),
              "wmt14_gnmt_8layer": (1024, 8, "wmt14_translate")}
  for name, (hidden, layers, corpus) in expected.items():
    config = common.config_from_flagfile(GNMTConfig, f"experiments/flagfiles/gnmt/{name}.flags",
                                         root=REPO)
    train_lib.check_config(config)
    assert (config.hidden_size, config.num_layers, config.corpus) == (hidden, layers, corpus)
    assert config.bidirectional_bottom and config.residual_from == 2
