"""The skip-thought experiment end to end on generated novels and a generated MR task:
training, resume, the evaluation table with both baselines, vocabulary expansion, the CLI."""

import dataclasses
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import common
from experiments.skip_thought import evaluate as evaluate_lib
from experiments.skip_thought import senteval
from experiments.skip_thought.config import SkipThoughtConfig
from experiments.skip_thought.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("anna", "ben", "clara", "david", "emma", "frank")
PLACES = ("the garden", "the station", "the river", "the church", "the market")
GOOD = ("wonderful", "delightful", "charming", "splendid")
BAD = ("dreadful", "tedious", "miserable", "awful")


def _story(rng, n):
  """n sentences in which each follows from the one before (who went where, then what)."""
  lines = []
  for _ in range(n // 3):
    who, where = rng.choice(NAMES), rng.choice(PLACES)
    mood = rng.choice(GOOD + BAD)
    lines.append(f"{who.title()} walked to {where} in the morning. "
                 f"At {where} {who} met Mr. Smith, who was {mood}. "
                 f"\"It is a {mood} day,\" said {who}.")
  return lines


def _write_data(root):
  rng = np.random.default_rng(0)
  novels = os.path.join(root, "novels")
  os.makedirs(novels)
  for i in range(3):
    text = "\ufeff" + "\r\n".join(["CHAPTER I", ""] + _story(rng, 300)) + "\r\n"
    with gzip.open(os.path.join(novels, f"Author{i}_Title_190{i}.txt.gz"), "wb") as f:
      f.write(text.encode("utf-8"))
  tasks = os.path.join(root, "senteval")
  os.makedirs(tasks)
  for name, words in (("rt-polarity.pos", GOOD), ("rt-polarity.neg", BAD)):
    lines = [f"{rng.choice(NAMES)} found {rng.choice(PLACES)} {rng.choice(words)} ."
             for _ in range(60)]
    with open(os.path.join(tasks, name), "w", encoding="latin-1") as f:
      f.write("\n".join(lines) + "\n")


def _config(data_dir, **kw):
  return SkipThoughtConfig(**{**dict(
      data_dir=data_dir, vocab_size=20, embed_size=16, hidden_size=24, softmax_samples=10,
      batch_size=16, train_steps=30, learning_rate=1e-2, eval_sentences=32, eval_every=15,
      checkpoint_every=15, log_every=10,
      w2v_dim=8, w2v_min_count=1, w2v_steps=64, w2v_batch_size=256, senteval=False,
      progress=False), **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("skip_thought")
  data = str(root / "data")
  _write_data(data)
  workdir = str(root / "run")
  config = _config(data)
  common.prepare_workdir("skip_thought", config, workdir, force_config_change=False)
  results = train_and_evaluate(config, workdir)
  return config, workdir, results


def test_training_writes_what_evaluation_reads_and_resumes(trained):
  config, workdir, results = trained
  assert results["step"] == 30
  for name in ("uni", "bi"):
    for which in ("prev", "next"):
      nll = results[f"held_out/{name}_{which}_nll"]
      # Better than the uniform distribution over the 24 ids after 30 steps.
      assert np.isfinite(nll) and nll < np.log(24) - 0.25, results
  for f in ("vocab.json", "punkt.pkl", "word_vectors.npz", "results.json", "metrics.jsonl"):
    assert os.path.exists(os.path.join(workdir, f)), f
  vocab = json.load(open(os.path.join(workdir, "vocab.json")))
  assert vocab[:4] == ["<pad>", "<unk>", "</s>", "<s>"] and len(vocab) == 24
  with np.load(os.path.join(workdir, "word_vectors.npz")) as w:
    assert w["vectors"].shape == (len(w["words"]), 8)
  # A rerun finds the last checkpoint and trains no further.
  again = train_and_evaluate(config, workdir)
  assert again["step"] == 30
  np.testing.assert_allclose(again["held_out/uni_next_nll"], results["held_out/uni_next_nll"],
                             rtol=1e-6)


def test_evaluation_table_baselines_and_expansion(trained):
  config, workdir, _ = trained
  flat = evaluate_lib.evaluate_workdir(workdir, tasks=("MR",), progress=False)
  encoders = ("uni-skip", "bi-skip", "combine-skip", "mean word vectors", "untrained GRU")
  for name in encoders:
    assert 0 <= flat[f"senteval/{name}/MR_acc"] <= 100, flat
  # The mood words decide the label: the features and labels line up (chance is 50).
  assert max(flat[f"senteval/{name}/MR_acc"] for name in encoders) > 80, flat
  table = open(os.path.join(workdir, "senteval.md")).read()
  assert all(f"| {name} |" in table for name in encoders) and "(paper)" in table
  assert "76.5" in table  # the paper's MR
  assert "nearest neighbours" in open(os.path.join(workdir, "neighbours.txt")).read()

  # Expansion: a word outside the 20-word vocabulary but with a word vector gets its own
  # embedding row (W v + b), not <unk>'s.
  _, vocab, model, params = evaluate_lib.restore(workdir)
  words, vectors = evaluate_lib.load_word_vectors(workdir)
  outside = [w for w in words[4:] if w not in set(vocab)]
  assert outside, "every word fits in the vocabulary: the test needs a smaller one"
  encoders_fn = evaluate_lib.skip_thought_encoders(config, model, params, vocab,
                                                   (words, vectors))
  plain = evaluate_lib.skip_thought_encoders(config, model, params, vocab, None)
  sentence = [f"{outside[0]} ."]
  assert not np.allclose(encoders_fn["uni-skip"](sentence), plain["uni-skip"](sentence))
  unknown = ["zzzunseen ."]  # no vector either: <unk> both ways
  np.testing.assert_allclose(encoders_fn["uni-skip"](unknown), plain["uni-skip"](unknown),
                             rtol=1e-5, atol=1e-6)


def test_bucketed_encoding_equals_one_sentence_at_a_time(trained):
  _, workdir, _ = trained
  config, vocab, model, params = evaluate_lib.restore(workdir)
  encode = evaluate_lib.skip_thought_encoders(config, model, params, vocab, None,
                                              batch_size=4)["combine-skip"]
  sentences = ["anna walked to the river .", "it is a day .", "ben met mr. smith at the "
               "station , who was charming .", "\"it is a dreadful day , \" said clara .",
               "frank .", "emma walked to the garden in the morning ."]
  together = encode(sentences)
  alone = np.concatenate([encode([s]) for s in sentences])
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(together, axis=1), np.sqrt(2), rtol=1e-5)


def test_cli_errors_are_one_line(trained, tmp_path):
  _, workdir, _ = trained
  out = subprocess.run([sys.executable, "-m", "experiments.skip_thought.evaluate",
                        f"--workdir={workdir}", "--tasks=MR,FOO"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
      "error: --tasks: unknown ['FOO']; expected some of ['MR', 'CR', 'SUBJ', 'MPQA', "
      "'TREC', 'SICK', 'MSRP']"), out.stderr
  from experiments.common import UserError
  with pytest.raises(UserError, match="not a skip_thought run"):
    evaluate_lib.restore(str(tmp_path))


def test_bad_configs_are_user_errors(tmp_path):
  from experiments.common import UserError
  from experiments.skip_thought import train as train_lib
  config = _config(str(tmp_path))
  for change, message in ((dict(encoders=["uni", "tri"]), "encoders"),
                          (dict(hidden_size=25), "even"),
                          (dict(softmax_samples=20), "softmax_samples"),
                          (dict(batch_size=0), "batch_size")):
    with pytest.raises(UserError, match=message):
      train_lib.check_config(dataclasses.replace(config, **change))
  with pytest.raises(UserError, match="novels"):
    train_lib.load_corpus(config, str(tmp_path))


@pytest.mark.parametrize("name", ["tiny_cpu", "novels_cpu", "novels_gpu"])
def test_flagfiles_parse_and_pass_the_checks(name):
  from experiments.skip_thought import train as train_lib
  path = os.path.join("experiments", "flagfiles", "skip_thought", f"{name}.flags")
  config = common.config_from_flagfile(SkipThoughtConfig, path, root=ROOT)
  train_lib.check_config(config)
  assert config.encoders == ["uni", "bi"]
