"""The VQA experiment end to end: training beats the answer prior, the prior is what it
says, answer mode answers as the test run did, answer generation and SAN run, DAQUAR reads
real data (experiments/vqa)."""

import collections
import json
import os
import pathlib

import numpy as np
import pytest

from experiments import common
from experiments.common import UserError
from experiments.vqa import VQAConfig
from experiments.vqa import data as data_lib
from experiments.vqa import train as train_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = os.environ.get(common.DATA_ENV, "")
HAS_DAQUAR = bool(DATA) and os.path.exists(os.path.join(DATA, "daquar", "all_qa_pairs.txt"))


def _tiny(**kw):
  base = dict(train_images=200, valid_images=20, test_images=30, questions_per_image=3,
              cnn_features=["8", "16"], embed_size=16, hidden_size=24, common_size=24,
              mlp_size=24, attention_size=12, batch_size=16, train_steps=12, warmup_steps=4,
              eval_every=12, checkpoint_every=12, log_every=4, num_attention_plots=2,
              progress=False, eval_batch_size=32, dropout=0.1)
  return VQAConfig(**{**base, **kw})


def _train(config, workdir):
  common.prepare_workdir("vqa", config, str(workdir), force_config_change=False)
  return train_lib.train_and_evaluate(config, str(workdir))


def test_the_cpu_run_beats_the_answer_prior(tmp_path):
  """Deeper LSTM Q + norm I with its CNN, trained briefly on scenes of one or two
  objects, answers well above the answer prior (the most frequent training answer of each
  question type), and most of all where the image decides: existence and colour."""
  config = VQAConfig(scenes_max_objects=2, train_images=1500, valid_images=50,
                     test_images=300, cnn_features=["16", "32", "64"], embed_size=32,
                     hidden_size=64, common_size=128, mlp_size=128, batch_size=64,
                     train_steps=500, warmup_steps=20, eval_every=500,
                     checkpoint_every=500, log_every=100, dropout=0.0, progress=False,
                     batch_by_image=True)
  results = _train(config, tmp_path)
  assert results["test/accuracy"] > results["prior/accuracy"] + 0.15, results
  assert results["test/accuracy_exist"] > results["prior/accuracy_exist"] + 0.15, results
  assert results["test/accuracy_colour"] > results["prior/accuracy_colour"] + 0.15, results
  answers = json.loads((tmp_path / "test_answers.json").read_text())
  assert len(answers) == 300 * config.questions_per_image
  assert set(results["count_confusion"]) <= {"zero", "one", "two"}


def test_the_prior_answers_each_type_with_its_most_frequent_training_answer(tmp_path):
  config = _tiny(model="prior")
  results = _train(config, tmp_path)
  corpus = data_lib.load(config)
  by_type = collections.defaultdict(collections.Counter)
  for t, a in zip(corpus.train.qtypes, corpus.train.answers):
    by_type[t][a] += 1
  expected = [by_type[t].most_common(1)[0][0] for t in corpus.test.qtypes]
  hits = [e == a for e, a in zip(expected, corpus.test.answers)]
  assert results["test/accuracy"] == pytest.approx(np.mean(hits))
  for t in set(corpus.test.qtypes):
    rows = [h for h, q in zip(hits, corpus.test.qtypes) if q == t]
    assert results[f"test/accuracy_{t}"] == pytest.approx(np.mean(rows))
  with pytest.raises(UserError, match="prior"):
    train_lib.restore(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  run = tmp_path_factory.mktemp("vqa") / "run"
  return run, _train(_tiny(), run)


def test_answer_mode_answers_as_the_test_run_did(tiny_run, tmp_path, capsys):
  from PIL import Image

  from experiments.vision import scene_questions
  run, _ = tiny_run
  answers = json.loads((run / "test_answers.json").read_text())
  test = scene_questions.make_qa_split("test", 2, 3, seed=data_lib.SCENES_SEED)
  for i in range(2):
    path = tmp_path / f"scene{i}.png"
    Image.fromarray(test.images[i]).save(path)  # lossless: the same pixels
    question = test.questions[i][0]
    row = next(r for r in answers if r["question"] == question)
    config = _tiny(mode="answer", image=str(path), question=question + "?")
    top = train_lib.answer(config, str(run))
    assert top[0][0] == row["answer"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == row["answer"] and len(printed) == 1 + 5
    probs = [p for _, p in top]
    assert len(top) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
  with pytest.raises(UserError, match="--image"):
    train_lib.answer(_tiny(mode="answer", question="what"), str(run))


@pytest.mark.parametrize("model", ["san", "answer_generation", "vis_lstm", "question_only",
                                   "image_only"])
def test_every_model_trains_and_evaluates(model, tmp_path):
  results = _train(_tiny(model=model), tmp_path)
  assert 0.0 <= results["test/accuracy"] <= 1.0
  assert results["step"] == 12
  if model == "san":
    assert len(list((tmp_path / "attention").glob("*.png"))) == 2


@pytest.mark.skipif(not HAS_DAQUAR, reason="needs $RNN_JAX_DATA/daquar")
def test_daquar_answer_generation_reports_accuracy_and_wups(tmp_path):
  config = _tiny(corpus="daquar", model="answer_generation", train_images=60, valid_images=5,
                 test_images=10, image_size=32, data_dir=DATA)
  results = _train(config, tmp_path)
  assert 0.0 <= results["test/accuracy"] <= 1.0
  from experiments.vqa import wups
  if wups.wordnet_unavailable() is None:
    assert results["test/wups@0.0"] >= results["test/wups@0.9"] >= results["test/accuracy"]


@pytest.mark.parametrize("name", ["scenes_cpu", "daquar_cpu"])
def test_flagfiles_parse_and_validate(name):
  config = common.config_from_flagfile(VQAConfig, f"experiments/flagfiles/vqa/{name}.flags",
                                       root=str(ROOT))
  train_lib.check_config(config)


def test_bad_flags_are_one_line_errors():
  for kw, match in ((dict(model="vgg"), "--model"), (dict(corpus="coco"), "--corpus"),
                    (dict(dropout=1.0), "--dropout"),
                    (dict(image_pool="sum"), "--image_pool"),
                    (dict(hidden_size=0), "--hidden_size")):
    with pytest.raises(UserError, match=match):
      train_lib.check_config(_tiny(**kw))


def test_existence_is_learnt_from_an_image_vector_that_names_the_objects():
  """With an image vector that says which (size, colour, shape) objects a scene holds, the
  deeper LSTM Q + norm I learns "is there a ...?" within a few hundred steps: the question
  vector must not saturate into the answer prior (model.py: the standardised question
  state; before it, this stayed at 50%)."""
  import dataclasses
  import itertools

  import jax
  import optax

  from experiments.vision import scenes
  from experiments.vqa import model as model_lib
  config = VQAConfig(train_images=1500, valid_images=10, test_images=200, embed_size=16,
                     hidden_size=32, common_size=32, mlp_size=32, dropout=0.0)
  corpus = data_lib.load(config)
  combos = list(itertools.product(scenes.SIZES, scenes.COLOURS, scenes.SHAPES))

  def presence(split):
    features = np.zeros((len(split.objects), len(combos)), np.float32)  # [M, 36]
    for m, objects in enumerate(split.objects):
      for o in objects:
        features[m, combos.index((o.size, o.colour, o.name))] = 1.0
    return dataclasses.replace(split, images=None, features=features)

  train, test = presence(corpus.train), presence(corpus.test)
  vocab = data_lib.Vocabularies.build(train, 1, 100)
  train, test = (data_lib.encode(s, vocab, 30, 6) for s in (train, test))
  model = model_lib.VQAModel(config, len(vocab.words), len(vocab.answers),
                             feature_size=len(combos))
  params = model.init(jax.random.key(0))
  optimizer = optax.adam(2e-3)
  opt_state = optimizer.init(params)
  loss_fn = train_lib.classifier_loss(model)

  @jax.jit
  def step(params, opt_state, batch, key):
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, (), batch, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  exist = np.array([i for i, t in enumerate(train.qtypes) if t == "exist"])
  batches = data_lib.Batches(train, 64, 0, rows=exist)
  keys = ("images", "questions", "question_lengths", "answer_class")
  for s in range(300):
    batch = {k: v for k, v in batches(s).items() if k in keys}
    params, opt_state = step(params, opt_state, batch, jax.random.key(s))
  answers, _, _ = train_lib.Answerer(config, model, vocab).run(params, test)
  rows = [i for i, t in enumerate(test.qtypes) if t == "exist"]
  accuracy = np.mean([answers[i] == test.answers[i] for i in rows])
  assert accuracy > 0.85, accuracy
