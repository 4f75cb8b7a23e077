"""GNMT evaluation (issue #19, "What a GNMT user expects"): which params are tested, how
decoding is limited, sorted and split over devices, and the off-target rate.

1. Checkpoint choice: best/ holds the params of the best validation step and survives a
   resume; --average_last averages the last N checkpoints; results.json names the params.
2. Decoding: a limit per sentence proportional to its source (tensorflow/nmt's 2x), cut
   outputs counted; sorted batches give the outputs of unsorted decoding, in input order,
   on 1 and on 2 devices.
3. Zero-shot reporting: a character n-gram language identifier fit on the corpus, the
   off-target rate, sacrebleu's signatures.
"""

import gzip
import io
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import sacrebleu

from experiments import common
from experiments.gnmt import GNMTConfig, data, decode, langid, numbers
from experiments.gnmt import checkpoints as checkpoints_lib
from experiments.gnmt import model as model_lib
from experiments.gnmt import train as train_lib
from rnn_jax import training
from fixtures import gnmt_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, H, B, S = 23, 8, 5, 9


def _config(**kw):
  return gnmt_config(**{"hidden_size": H, "vocab_size": V, **kw})


# -- 2. decoding limits ----------------------------------------------------------------------


def test_decoding_limits_follow_tensorflow_nmt():
  """nmt/model.py's `_get_infer_maximum_iterations`: round(2.0 * source length), here per
  sentence, the source counted in pieces (without <2xx> and EOS), capped by max_target_len."""
  lengths = np.array([2 + 1, 2 + 7, 2 + 30, 2 + 45, 2 + 0])  # pieces + <2xx> + EOS
  np.testing.assert_array_equal(decode.decoding_limits(lengths, 2.0, 80), [2, 14, 60, 80, 1])
  expected = [min(80, max(1, int(round(1.5 * (n - 2))))) for n in lengths]
  np.testing.assert_array_equal(decode.decoding_limits(lengths, 1.5, 80), expected)
  np.testing.assert_array_equal(decode.decoding_limits(lengths, 0.0, 80), [80] * 5)
  with pytest.raises(common.UserError, match="--decode_length_ratio"):
    train_lib.check_config(_config(decode_length_ratio=-1.0))
  flagfile = lambda name: common.config_from_flagfile(
      GNMTConfig, f"experiments/flagfiles/gnmt/{name}.flags", root=REPO)
  assert flagfile("wmt14_gnmt_8layer").decode_length_ratio == 2.0  # tensorflow/nmt's recipe
  assert flagfile("tiny_cpu").decode_length_ratio == 0.0  # the main job decodes as before


def _sharp_model(num_layers=2, seed=0, vocab=V, eos_bias=0.3):
  """A random model with decisive choices, whose EOS bias makes some outputs end early and
  others run on (measured for each use)."""
  model = model_lib.GNMT(_config(num_layers=num_layers), vocab)
  params = model.init(jax.random.key(seed))
  params["w_out"] = params["w_out"] * 30.0
  params["b_out"] = params["b_out"].at[data.EOS].set(eos_bias)
  return model, params


def _source(seed=1):
  rng = np.random.default_rng(seed)
  lengths = np.array([S, 4, 2, 7, 3], np.int32)
  source = rng.integers(4, V, (B, S)).astype(np.int32)
  source[np.arange(S)[None, :] >= lengths[:, None]] = 0
  return jnp.asarray(source), jnp.asarray(lengths)


@pytest.mark.parametrize("beam_size", [0, 3])
def test_a_sentence_limit_is_decoding_it_alone_with_that_limit(beam_size):
  """Row b with `max_lengths[b]` gives what decoding row b alone with `max_len =
  max_lengths[b]` gives (the fixed-length decoder as it was), while the other rows run on."""
  model, params = _sharp_model()
  source, lengths = _source()
  max_len = 12
  limits = np.array([3, 12, 1, 6, 9], np.int32)

  def run(src, lens, max_len, max_lengths=None):
    kw = dict(max_len=max_len, bos=data.BOS, eos=data.EOS, max_lengths=max_lengths)
    if beam_size:
      return decode.beam_search(model, params, src, lens, beam_size=beam_size, alpha=0.6,
                                beta=0.2, **kw)
    return decode.greedy_or_sample(model, params, src, lens, **kw)

  together = run(source, lengths, max_len, jnp.asarray(limits))
  unlimited = run(source, lengths, max_len)
  cut_rows = 0
  for b in range(B):
    alone = run(source[b:b + 1], lengths[b:b + 1], int(limits[b]))
    n = int(alone.lengths[0])
    assert int(together.lengths[b]) == n, b
    np.testing.assert_array_equal(together.tokens[b, :n], alone.tokens[0, :n])
    np.testing.assert_array_equal(together.tokens[b, n:], 0)
    np.testing.assert_allclose(together.scores[b], alone.scores[0], rtol=1e-5, atol=1e-5)
    cut_rows += n >= limits[b]
  # The limits bind on some rows (cut: the length is the limit) and not on others.
  assert 0 < cut_rows < B and int(np.sum(np.asarray(unlimited.lengths) > limits)) > 0
  # Greedy under a limit is the prefix of greedy without one.
  if not beam_size:
    for b in range(B):
      n = int(together.lengths[b])
      np.testing.assert_array_equal(together.tokens[b, :n], unlimited.tokens[b, :n])


@pytest.fixture(scope="module")
def numbers_tokenizer():
  config = _config(num_train_sentences=300, num_eval_sentences=8, vocab_size=120)
  corpus = data.load(config)
  return corpus, data.train_tokenizer(corpus, config)


def _reference_translations(config, model, params, tokenizer, sources, target):
  """Decoding without the Translator: all sentences in one batch, in the input order,
  each with its own limit; texts, cut flags and limits."""
  ids = [tokenizer.encode_source(s, target, config.max_source_len)[0] for s in sources]
  limits = decode.decoding_limits([len(i) for i in ids], config.decode_length_ratio,
                                  config.max_target_len)
  out = decode.beam_search(model, params, jnp.asarray(data.pad(ids, config.max_source_len)),
                           jnp.asarray([len(i) for i in ids], jnp.int32),
                           beam_size=config.beam_size, alpha=config.length_penalty,
                           max_len=config.max_target_len, bos=data.BOS, eos=data.EOS,
                           max_lengths=jnp.asarray(limits))
  lengths = np.asarray(out.lengths)
  texts = [tokenizer.decode(np.asarray(out.tokens)[i, :lengths[i]]) for i in range(len(ids))]
  return texts, list(lengths >= limits), list(limits)


def test_sorted_batches_give_unsorted_outputs_in_input_order(numbers_tokenizer):
  corpus, tokenizer = numbers_tokenizer
  config = _config(num_layers=8, beam_size=2, eval_batch_size=3, max_source_len=40,
                   max_target_len=30, decode_length_ratio=1.0)
  model, params = _sharp_model(num_layers=8, seed=3, vocab=tokenizer.vocab_size)
  sources = list(corpus.splits["test"][("en", "de")][0])  # 8 sentences: batches of 3, 3, 2
  translator = train_lib.Translator(config, model, tokenizer, mesh=training.data_mesh(1))
  batches = []
  real_decode = translator._decode
  translator._decode = lambda p, source, lengths, **kw: (
      batches.append(np.asarray(lengths)), real_decode(p, source, lengths, **kw))[1]
  got = translator(params, sources, "de")
  texts, cut, limits = _reference_translations(config, model, params, tokenizer, sources, "de")
  assert got.texts == texts and got.cut == cut and got.limits == limits
  assert 0 < sum(cut) < len(sources)  # some outputs cut, some ended with EOS
  # The batches went longest first, the last one padded to the batch size.
  source_lengths = [len(tokenizer.encode_source(s, "de", 40)[0]) for s in sources]
  seen = np.concatenate(batches)[:len(sources)]
  assert list(seen) == sorted(source_lengths, reverse=True) and len(batches) == 3
  assert all(len(b) == 3 for b in batches)
  assert source_lengths != sorted(source_lengths, reverse=True)  # the input was not sorted


DEVICES_CHECK = textwrap.dedent("""
    import jax, numpy as np
    from experiments.gnmt import GNMTConfig, data, model as model_lib, train as train_lib
    from rnn_jax import training
    assert len(jax.devices()) == 2, jax.devices()
    config = GNMTConfig(hidden_size=8, num_layers=8, vocab_size=120, num_train_sentences=300,
                        num_eval_sentences=8, beam_size=2, eval_batch_size=3,
                        max_source_len=40, max_target_len=30, decode_length_ratio=1.0)
    corpus = data.load(config)
    tokenizer = data.train_tokenizer(corpus, config)
    model = model_lib.GNMT(config, tokenizer.vocab_size)
    params = model.init(jax.random.key(3))
    params["w_out"] = params["w_out"] * 30.0
    params["b_out"] = params["b_out"].at[data.EOS].set(0.3)
    sources = list(corpus.splits["test"][("en", "de")][0])
    outputs = {}
    for n in (1, 2):
      translator = train_lib.Translator(config, model, tokenizer, mesh=training.data_mesh(n))
      assert translator.batch_size == (3 if n == 1 else 4)  # a multiple of the devices
      shardings = []
      real = translator._decode
      def spy(p, source, lengths, real=real, shardings=shardings, **kw):
        shardings.append(len(source.sharding.device_set))
        return real(p, source, lengths, **kw)
      translator._decode = spy
      outputs[n] = translator(params, sources, "de")
      assert set(shardings) == {n}, shardings  # every batch split over n devices
    assert outputs[1].texts == outputs[2].texts, (outputs[1].texts, outputs[2].texts)
    cut = outputs[1].cut
    assert outputs[2].cut == cut and 0 < sum(cut) < len(sources), cut
    print("DEVICES_OK")
""")


def test_decoding_on_two_devices_equals_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", DEVICES_CHECK], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert "DEVICES_OK" in out.stdout, out.stderr[-3000:]


# -- 3. the language identifier and the off-target rate ---------------------------------------


def test_naive_bayes_by_hand():
  """The identifier's scores against the formula of langid's docstring, written out."""
  lines = {"aa": ["ab ab", "abba"], "bb": ["ba", "bb b"]}
  ident = langid.LanguageIdentifier.fit(lines, orders=(1, 2), alpha=1.0)
  assert ident.languages == ("aa", "bb")

  def grams(text, n):
    s = " " + " ".join(text.lower().split()) + " "
    return [s[i:i + n] for i in range(len(s) - n + 1)]

  text = "Ab  ca"
  expected = []
  for lang in ("aa", "bb"):
    total = 0.0
    for n in (1, 2):
      seen = {g for ls in lines.values() for line in ls for g in grams(line, n)}
      counts = [g for line in lines[lang] for g in grams(line, n)]
      for g in grams(text, n):
        total += math.log((counts.count(g) + 1) / (len(counts) + len(seen) + 1))
    expected.append(total)
  np.testing.assert_allclose(ident.scores([text, ""])[0], expected, rtol=1e-12)
  np.testing.assert_array_equal(ident.scores([""])[0], 0.0)
  assert ident.identify(["", text]) == ["", "aa" if expected[0] > expected[1] else "bb"]


@pytest.fixture(scope="module")
def numbers_identifier():
  train = {l: list(numbers.sentences("train", l, 20000, 300)) for l in numbers.LANGUAGES}
  return langid.LanguageIdentifier.fit(train)


def test_identifier_on_held_out_numbers(numbers_identifier):
  """Fit on 2,000 training lines per language (the default); valid and test are held out
  (no item tuple of theirs is in train). Measured: 2,399 of 2,400 right; the one miss is
  "six ; six", the same string in en and fr. Chance is 25%."""
  right = total = 0
  for split in ("valid", "test"):
    for lang in numbers.LANGUAGES:
      lines = list(numbers.sentences(split, lang, 20000, 300))
      found = numbers_identifier.identify(lines)
      right += sum(f == lang for f in found)
      total += len(lines)
      assert np.mean([f == lang for f in found]) >= 0.98, (split, lang)
  assert right / total >= 0.995, right / total


MULTI30K = os.path.join(os.environ.get(common.DATA_ENV) or os.path.join(REPO, "..", "shared",
                                                                        "data"), "multi30k")


@pytest.mark.skipif(not os.path.exists(os.path.join(MULTI30K, "train.cs.gz")),
                    reason="needs data_dir/multi30k")
def test_identifier_on_held_out_multi30k():
  """Fit on Multi30k's train (2,000 lines per language), tested on test_2016_flickr.
  Measured: 4,000 of 4,000 right."""
  read = lambda name, lang: [line.rstrip("\n") for line in gzip.open(
      os.path.join(MULTI30K, f"{name}.{lang}.gz"), "rt", encoding="utf-8")]
  languages = data.MULTI30K_LANGUAGES
  ident = langid.LanguageIdentifier.fit({l: read("train", l) for l in languages})
  for lang in languages:
    lines = [line for line in read("test_2016_flickr", lang) if line.strip()]
    assert np.mean([f == lang for f in ident.identify(lines)]) >= 0.99, lang


def test_offtarget_rate_on_hand_built_outputs(numbers_identifier):
  de = list(numbers.sentences("test", "de", 20000, 300))[:50]
  fr = list(numbers.sentences("test", "fr", 20000, 300))[:50]
  en = list(numbers.sentences("test", "en", 20000, 300))[:50]
  rate = lambda outputs, target: langid.offtarget_rate(numbers_identifier, outputs, target)
  assert rate(fr, "fr") == 0.0
  assert rate(de, "fr") == 100.0  # all in the wrong language
  assert rate(en, "fr") == 100.0  # the English source copied
  assert rate(fr[:30] + de[:20], "fr") == pytest.approx(40.0)
  assert rate(fr[:9] + [""], "fr") == pytest.approx(10.0)  # an empty output is off target
  assert rate([], "fr") == 0.0


# -- 1. checkpoint choice, end to end ---------------------------------------------------------


TINY = ["--hidden_size=8", "--num_layers=8", "--batch_size=8", "--warmup_steps=0",
        "--decay_scheme=", "--learning_rate=2e-3", "--num_train_sentences=200",
        "--num_eval_sentences=6", "--eval_max_sentences=4", "--eval_every=4",
        "--checkpoint_every=4", "--log_every=4", "--beam_size=0", "--vocab_size=200",
        "--eval_batch_size=4", "--noprogress", "--num_attention_plots=0",
        "--max_source_len=32", "--max_target_len=32", "--decode_length_ratio=2",
        "--train_directions=en-de,de-en", "--zero_shot_directions=de-fr",
        # WMT scale's options run here end to end, across resumes: token batches (8 pairs
        # of length bucket 16, 4 of bucket 32), a sampled vocabulary, threads.
        "--batch_tokens=128", "--spm_input_sentence_size=300", "--spm_threads=2"]


def _tiny(*args):
  return common.config_from_flagfile(GNMTConfig, "experiments/flagfiles/gnmt/tiny_cpu.flags",
                                     *TINY, *args, root=REPO)


_REAL_EVALUATE = train_lib.evaluate_directions


class _Scripted:
  """Wraps `evaluate_directions`: validation BLEU replaced by scripted scores (every
  supervised direction gets the score, so the mean is the score), the params tested
  recorded."""

  def __init__(self, monkeypatch, scores):
    self.scores, self.tested = list(scores), []
    real = _REAL_EVALUATE

    def wrapped(config, translator, params, pairs, **kw):
      metrics = real(config, translator, params, pairs, **kw)
      if kw.get("label") == "valid":
        score = self.scores.pop(0)
        metrics.update({f"bleu/{d}": score for d in config.train_directions})
      else:
        self.tested.append(jax.device_get(params))
      return metrics

    monkeypatch.setattr(train_lib, "evaluate_directions", wrapped)


def _checkpoint_params(workdir, step):
  """The params of checkpoint `step`, restored with orbax directly (no project code)."""
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=("state", "meta"))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return restored["state"]["params"]


def _assert_trees_equal(a, b, **tol):
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    if tol:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)
    else:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def chosen_runs(tmp_path_factory):
  """One workdir, three calls of train_and_evaluate: to step 8 (test: last); resumed to 12
  (test: best); rerun once finished (test: average). Validation scores 5, 9 at steps 4, 8,
  then 7 at step 12: step 8 is the best, and a resume that forgot it would save step 12."""
  workdir = str(tmp_path_factory.mktemp("gnmt_choice"))
  mp = pytest.MonkeyPatch()
  runs = {}
  try:
    for name, args, scores in (("last", ["--max_steps=8"], [5.0, 9.0]),
                               ("best", ["--max_steps=12", "--test_params=best",
                                         "--average_last=3"], [7.0]),
                               ("average", ["--max_steps=12", "--test_params=average",
                                            "--average_last=3"], [])):
      scripted = _Scripted(mp, scores)
      results = train_lib.train_and_evaluate(_tiny(*args), workdir)
      assert not scripted.scores  # every scripted evaluation happened
      runs[name] = (results, scripted.tested[-1])
      with open(os.path.join(workdir, "best", "best.json")) as f:
        runs[name] += (json.load(f),)
  finally:
    mp.undo()
  return workdir, runs


def test_best_holds_the_best_validation_step_across_a_resume(chosen_runs):
  workdir, runs = chosen_runs
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  evaluated = [(r["step"], r[checkpoints_lib.BEST_METRIC]) for r in rows
               if checkpoints_lib.BEST_METRIC in r]
  assert evaluated == [(4, 5.0), (8, 9.0), (12, 7.0)]
  assert runs["last"][2]["step"] == 8 and runs["best"][2]["step"] == 8  # kept across the resume
  record = runs["average"][2]
  assert (record["step"], record["score"]) == (8, 9.0)
  assert record["metric"] == checkpoints_lib.BEST_METRIC
  assert sorted(os.listdir(os.path.join(workdir, "best"))) == sorted(["best.json",
                                                                      record["params"]])
  best = checkpoints_lib.BestParams(workdir)
  ckpt8 = _checkpoint_params(workdir, 8)
  _assert_trees_equal(jax.device_get(best.restore(jax.tree_util.tree_map(jnp.asarray, ckpt8))),
                      ckpt8)
  # The resumed run tested exactly those params, and said so.
  results, tested, _ = runs["best"]
  _assert_trees_equal(tested, ckpt8)
  assert results["test_params"] == "best" and results["test_params_steps"] == [8]
  assert results["step"] == 12
  assert (results["best_valid_step"], results["best_valid_bleu"]) == (8, 9.0)


def test_translate_mode_uses_the_chosen_params(chosen_runs, capsys, monkeypatch):
  workdir, _ = chosen_runs
  seen = []
  real = train_lib.Translator.__call__
  monkeypatch.setattr(train_lib.Translator, "__call__", lambda self, params, *a, **kw: (
      seen.append(jax.device_get(params)), real(self, params, *a, **kw))[1])
  lines = ["seven ; the third", "", "in nineteen eighty-four"]
  config = _tiny("--max_steps=12", "--mode=translate", "--target_lang=de", "--test_params=best")
  outputs = train_lib.translate(config, workdir, lines=lines, out=io.StringIO())
  assert len(outputs) == 3 and outputs[1] == ""
  assert "translating with --test_params=best: step(s) 8" in capsys.readouterr().err
  _assert_trees_equal(seen[0], _checkpoint_params(workdir, 8))


def test_last_and_average_params_and_what_results_json_says(chosen_runs):
  workdir, runs = chosen_runs
  results, tested, _ = runs["last"]
  assert (results["test_params"], results["test_params_steps"], results["step"]) == ("last", [8], 8)
  _assert_trees_equal(tested, _checkpoint_params(workdir, 8))
  results, tested, _ = runs["average"]
  assert (results["test_params"], results["test_params_steps"]) == ("average", [4, 8, 12])
  parts = [_checkpoint_params(workdir, s) for s in (4, 8, 12)]
  mean = jax.tree_util.tree_map(lambda a, b, c: (np.asarray(a, np.float64) + b + c) / 3, *parts)
  _assert_trees_equal(tested, mean, rtol=1e-6, atol=1e-7)
  assert not np.allclose(parts[0]["w_out"], parts[2]["w_out"])  # an average of different params
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["test_params_steps"] == [4, 8, 12]
  with pytest.raises(common.UserError, match="holds 3 checkpoint"):
    checkpoints_lib.average_last(workdir, None, 4)


def test_results_report_offtarget_cut_and_signatures(chosen_runs):
  _, runs = chosen_runs
  results = runs["average"][0]
  directions = ["en-de", "de-en", "de-fr"]
  for d in directions:
    assert 0.0 <= results[f"offtarget/{d}"] <= 100.0
    assert 0 <= results[f"cut/{d}"] <= 6
  assert results["offtarget/mean_supervised"] == pytest.approx(
      np.mean([results["offtarget/en-de"], results["offtarget/de-en"]]))
  assert results["offtarget/mean_zero_shot"] == results["offtarget/de-fr"]
  bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
  bleu.corpus_score(["a b"], [["a b"]])
  chrf.corpus_score(["a b"], [["a b"]])
  assert results["signature/bleu"] == str(bleu.get_signature())
  assert results["signature/chrf"] == str(chrf.get_signature())
  assert results["signature/bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")


def test_choice_flags_are_checked_before_training():
  with pytest.raises(common.UserError, match="--test_params"):
    train_lib.check_config(_config(test_params="first"))
  with pytest.raises(common.UserError, match="needs --average_last"):
    train_lib.check_config(_config(test_params="average"))
  with pytest.raises(common.UserError, match="write only 3 checkpoint"):
    train_lib.check_config(_tiny("--max_steps=12", "--average_last=4"))
  train_lib.check_config(_tiny("--max_steps=12", "--average_last=3"))
  assert checkpoints_lib.checkpoint_steps(3000, 500) == [500, 1000, 1500, 2000, 2500, 3000]
  assert checkpoints_lib.checkpoint_steps(10, 4) == [4, 8, 10]
  assert checkpoints_lib.checkpoint_steps(10, 0) == [10]


def test_best_params_record_is_atomic_and_resumable(tmp_path, capsys):
  """BestParams alone: only improvements are saved; a new object (a resumed run) recovers
  the score; leftovers of an interrupted save go; a record naming missing params is ignored."""
  params = lambda x: {"w": jnp.full((3,), x), "b": {"c": jnp.arange(2.0) + x}}
  best = checkpoints_lib.BestParams(str(tmp_path))
  assert best.score == -math.inf and best.record is None
  assert best.update(10, 1.0, params(1.0)) and not best.update(20, 0.5, params(2.0))
  assert not best.update(25, float("nan"), params(2.5))
  os.makedirs(tmp_path / "best" / "30-9.orbax-checkpoint-tmp-1")  # a save cut short
  resumed = checkpoints_lib.BestParams(str(tmp_path))
  assert (resumed.step, resumed.score) == (10, 1.0)
  assert not resumed.update(30, 1.0, params(3.0))  # a tie keeps the first
  assert resumed.update(40, 2.0, params(4.0))
  assert sorted(os.listdir(tmp_path / "best")) == ["40-2", "best.json"]
  _assert_trees_equal(jax.device_get(resumed.restore(params(0.0))), jax.device_get(params(4.0)))
  (tmp_path / "best" / "best.json").write_text(json.dumps(dict(resumed.record, params="gone")))
  assert checkpoints_lib.BestParams(str(tmp_path)).record is None
  assert "unusable" in capsys.readouterr().out
  with pytest.raises(common.UserError, match="--test_params=last"):
    checkpoints_lib.BestParams(str(tmp_path)).restore(params(0.0))
