"""experiments.captioning.evaluate against the official coco-caption code (pycocotools'
COCO / loadRes and pycocoevalcap's COCOEvalCap run directly) on real Flickr8k captions when
$RNN_JAX_DATA has them, and on hand-made edge cases; the Java-missing path; the CLI."""

import collections
import contextlib
import copy
import io
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from experiments.captioning import evaluate
from experiments.common import UserError

pycocoevalcap_eval = pytest.importorskip("pycocoevalcap.eval")
from pycocotools.coco import COCO  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("RNN_JAX_DATA", "")
FLICKR = os.path.join(DATA, "flickr8k", "Flickr8k.token.txt")
needs_java = pytest.mark.skipif(evaluate.java_executable() is None, reason="java not on PATH")
needs_flickr = pytest.mark.skipif(not os.path.exists(FLICKR),
                                  reason="$RNN_JAX_DATA/flickr8k is absent")
FAST = "bleu,rouge,cider"  # no METEOR JVM: a second each


def _stub(name):
  class Stub:
    """Stands in for a scorer the oracle skips (SPICE downloads, METEOR is slow)."""

    def compute_score(self, gts, res):
      return 0.0, [0.0] * len(gts)

    def method(self):
      return name

  return Stub


def official(references, candidates, monkeypatch, meteor=False):
  """COCOEvalCap as coco-caption's example runs it: (eval, imgToEval), without SPICE (and
  without METEOR unless `meteor`)."""
  monkeypatch.setattr(pycocoevalcap_eval, "Spice", _stub("SPICE"))
  if not meteor:
    monkeypatch.setattr(pycocoevalcap_eval, "Meteor", _stub("METEOR"))
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = copy.deepcopy(references)
    coco.createIndex()
    coco_res = coco.loadRes(copy.deepcopy(candidates))
    ev = pycocoevalcap_eval.COCOEvalCap(coco, coco_res)
    ev.params["image_id"] = coco_res.getImgIds()
    ev.evaluate()
  scores = {k: v for k, v in ev.eval.items() if k != "SPICE" and (meteor or k != "METEOR")}
  return scores, ev.imgToEval


def check_equal(got: evaluate.Evaluation, expected, keys=None):
  scores, per_image = expected
  keys = list(scores) if keys is None else keys
  assert sorted(k for k in got.scores if k != "SPICE") == sorted(keys)
  for k in keys:
    assert got.scores[k] == pytest.approx(scores[k], rel=1e-12, abs=1e-12), k
  assert [p["image_id"] for p in got.per_image] == list(per_image)
  for p in got.per_image:
    for k in keys:
      assert p[k] == pytest.approx(per_image[p["image_id"]][k], rel=1e-12, abs=1e-12), (p, k)


def _flickr_captions():
  caps = collections.OrderedDict()
  with open(FLICKR, encoding="utf-8") as f:
    for line in f:
      key, caption = line.rstrip("\n").split("\t", 1)
      caps.setdefault(key.rsplit("#", 1)[0], []).append(caption)
  return caps


def _perturb(caption, rng, vocabulary):
  words = caption.split()
  out = []
  for w in words:
    r = rng.random()
    if r < 0.15:
      continue  # dropped
    out.append(rng.choice(vocabulary) if r < 0.3 else w)  # replaced
  for _ in range(len(out) // 6):  # swapped
    i = rng.randrange(max(1, len(out) - 1))
    out[i:i + 2] = out[i:i + 2][::-1]
  return " ".join(out)


@pytest.fixture(scope="module")
def flickr_case():
  """50 Flickr8k images: 4 references each, the fifth caption perturbed as the candidate."""
  caps = _flickr_captions()
  names = list(caps)[100:150]
  rng = random.Random(1234)
  vocabulary = sorted({w for n in names for c in caps[n] for w in c.split()})
  ids = [int(n.split("_")[0]) for n in names]  # Flickr ids, not sorted
  references = evaluate.coco_references(ids, [caps[n][:4] for n in names])
  order = list(range(len(names)))
  rng.shuffle(order)
  candidates = evaluate.coco_results(
      [ids[k] for k in order[:45]], [_perturb(caps[names[k]][4], rng, vocabulary)
                                     for k in order[:45]])  # 5 images without results
  candidates[3]["caption"] = ""  # an empty caption
  candidates[7]["caption"] = "Un café naïve — “quoted” (dog) isn't"  # unicode, brackets
  return references, candidates


@needs_java
@needs_flickr
def test_score_equals_cocoevalcap_on_flickr8k(flickr_case, monkeypatch, capsys):
  references, candidates = flickr_case
  got = evaluate.evaluate(references, candidates, spice=False)
  expected = official(references, candidates, monkeypatch, meteor=True)
  check_equal(got, expected, ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L",
                              "CIDEr"])
  assert len(got.per_image) == 45 and got.tokenizer == "java"
  assert 0.1 < got.scores["CIDEr"] < 3 and 0.1 < got.scores["METEOR"] < 0.6
  assert capsys.readouterr().out == ""  # the scorers' prints stay out of stdout


@needs_flickr
def test_python_tokenizer_path_without_java(flickr_case, monkeypatch, capsys, tmp_path):
  """No java on PATH: one line on stderr, BLEU/ROUGE_L/CIDEr from the Python tokenizer, which
  agrees with the Java one on Flickr8k, so the scores equal coco-caption's."""
  references, candidates = flickr_case
  candidates = [c for c in candidates if c["caption"] != candidates[7]["caption"]]
  java = evaluate.java_executable()
  expected = official(references, candidates, monkeypatch) if java else None
  monkeypatch.setenv("PATH", str(tmp_path))
  assert evaluate.java_executable() is None
  capsys.readouterr()
  got = evaluate.evaluate(references, candidates)
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "java is not on PATH" in err[0] and "METEOR and SPICE" in err[0]
  assert got.tokenizer == "python"
  assert set(got.skipped) == {"meteor", "spice"}
  assert set(got.scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}
  if expected is not None:
    check_equal(got, expected, list(got.scores))


def test_without_java_hand_made(monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(evaluate, "java_executable", lambda: None)
  refs = evaluate.coco_references([1, 2], [["A dog runs on the grass.", "A brown dog runs."],
                                           ["Two men play football (soccer).", "Men play."]])
  got = evaluate.evaluate(refs, evaluate.coco_results([1, 2], ["a brown dog runs", "men play"]),
                          metrics="bleu,meteor,cider")
  assert "java is not on PATH: METEOR skipped" in capsys.readouterr().err
  assert set(got.scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"}
  assert got.scores["Bleu_1"] == pytest.approx(1.0)


@needs_java
@needs_flickr
def test_tokenizers_agree_with_pycocoevalcap_on_flickr8k():
  from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
  captions = [c for caps in _flickr_captions().values() for c in caps]
  extra = ["", "Café crème, naïve “quoted” — dash", "Don't (stop) [now] {x} ; ok...",
           "Mr. Smith's dogs' 1,000 $5 50% U.S. t-shirt and/or"]
  data = {i: [{"caption": c}] for i, c in enumerate(captions + extra)}
  with contextlib.redirect_stderr(io.StringIO()):
    expected = PTBTokenizer().tokenize(copy.deepcopy(data))
  got = evaluate.ptb_tokenize_java(data)
  assert got == expected
  python = {i: [evaluate.ptb_tokenize_python(v[0]["caption"])] for i, v in data.items()}
  assert python == expected


def test_python_tokenizer_hand_checked():
  tok = evaluate.ptb_tokenize_python
  assert tok("A dog runs.") == "a dog runs"
  assert tok("Don't stop (now) , OK?!") == "do n't stop -lrb- now -rrb- ok ?!"
  assert tok('the dog\'s "ball" ; cannot') == "the dog 's ball can not"
  assert tok("Washington D.C. at 10:30 , 1,000 people") == "washington d.c. at 10:30 1,000 people"
  assert tok("") == "" and tok(" ... ") == ""
  assert tok("Café — naïve") == "café naïve"
  assert tok("line\rbreak\nhere") == "line break here"


@needs_java
def test_line_breaks_inside_captions(monkeypatch):
  """\\r and U+2028 end a line for Java: coco-caption's wrapper then shifts every later
  caption onto the wrong image; here they are spaces, as coco-caption makes \\n."""
  refs = evaluate.coco_references([1, 2, 3], [["a dog on\rthe grass", "a dog"],
                                              ["a cat\u2028sleeps", "a cat"], ["a man", "men"]])
  cands = evaluate.coco_results([1, 2, 3], ["a dog on the grass", "a cat sleeps", "a man"])
  got = evaluate.evaluate(refs, cands, metrics=FAST)
  clean = copy.deepcopy(refs)
  for ann in clean["annotations"]:
    ann["caption"] = ann["caption"].replace("\r", " ").replace("\u2028", " ")
  check_equal(got, official(clean, cands, monkeypatch), ["Bleu_1", "Bleu_2", "Bleu_3",
                                                         "Bleu_4", "ROUGE_L", "CIDEr"])


def _small():
  refs = {"info": {}, "images": [{"id": 7}, {"id": 3}, {"id": "x"}, {"id": 5}],
          "annotations": [
              {"image_id": 3, "id": 1, "caption": "A cat sits on a red mat."},
              {"image_id": 7, "id": 2, "caption": "Two dogs play in the snow."},
              {"image_id": 3, "id": 3, "caption": "a small cat on a mat"},
              {"image_id": 7, "id": 4, "caption": "dogs playing in snow"},
              {"image_id": "x", "id": 5, "caption": "a man rides a bike down the road"},
              {"image_id": 5, "id": 6, "caption": "a bowl of fruit on a table"},
              {"image_id": "x", "id": 7, "caption": "a cyclist on a road"}]}
  cands = [{"image_id": "x", "caption": "a man on a bike"},
           {"image_id": 3, "caption": "A cat on a mat."},
           {"image_id": 7, "caption": ""}]
  return refs, cands


@needs_java
def test_edge_cases_equal_cocoevalcap(monkeypatch):
  """Results for a subset of the images (order: the references' images), string and int
  ids, an empty candidate caption."""
  refs, cands = _small()
  got = evaluate.evaluate(refs, cands, metrics=FAST)
  expected = official(refs, cands, monkeypatch)
  check_equal(got, expected, ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"])
  assert [p["image_id"] for p in got.per_image] == [7, 3, "x"]
  assert got.per_image[0]["CIDEr"] == 0.0
  assert evaluate.score(refs, cands, metrics=["cider"]) == {"CIDEr": got.scores["CIDEr"]}


def test_errors_are_one_line_user_errors(tmp_path):
  refs, cands = _small()
  cases = [
      (refs, cands + [{"image_id": 99, "caption": "x"}, {"image_id": 98, "caption": "y"}],
       "2 result.*not in the references' images, the first 99"),
      (refs, cands + [{"image_id": 3, "caption": "again"}], "more than one result.*3"),
      (refs, [], "no results"),
      (refs, {"image_id": 3}, "results format"),
      (refs, [{"image_id": 3}], "result 0 needs"),
      (refs, [{"image_id": 3, "caption": None}], "string 'caption'"),
      ([], cands, "caption annotation format"),
      ({"images": []}, cands, "'annotations' must be a list"),
      ({**refs, "annotations": [{"image_id": 3}]}, cands, r"annotations\[0\] needs"),
      (refs, [{"image_id": 5, "caption": "fruit"}], None),  # fine: 5 has references
      ({**refs, "images": refs["images"] + [{"id": 11}]}, [{"image_id": 11, "caption": "a"}],
       "no reference captions, the first 11"),
      (str(tmp_path / "missing.json"), cands, "missing.json"),
  ]
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  cases.append((str(bad), cands, "bad.json is not JSON"))
  for references, candidates, message in cases:
    if message is None:
      evaluate.score(references, candidates, metrics="bleu", quiet=True)
      continue
    with pytest.raises(UserError, match=message) as e:
      evaluate.score(references, candidates, metrics="bleu", quiet=True)
    assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="unknown metric 'blue'"):
    evaluate.score(refs, cands, metrics="blue")
  with pytest.raises(UserError, match="spice="):
    evaluate.score(refs, cands, spice="maybe")


def test_spice_never_downloads(monkeypatch, capsys):
  """spice="auto" without CoreNLP's jars: one line says why; "on": a UserError."""
  import urllib.request
  monkeypatch.setattr(urllib.request, "urlretrieve", lambda *a, **k: pytest.fail("download"))
  monkeypatch.setattr(evaluate, "SPICE_CORENLP_JARS", ("not-there.jar",))
  monkeypatch.setattr(evaluate, "java_executable", lambda: "java")
  why = evaluate.spice_unavailable()
  assert "not-there.jar is missing" in why
  refs, cands = _small()
  monkeypatch.setattr(evaluate, "_tokenize",
                      lambda caps, java: {k: [c["caption"].lower() for c in v]
                                          for k, v in caps.items()})
  got = evaluate.evaluate(refs, cands, metrics="cider,spice")
  assert capsys.readouterr().err.strip() == f"SPICE skipped: {why}"
  assert set(got.scores) == {"CIDEr"} and got.skipped == {"spice": why}
  with pytest.raises(UserError, match="SPICE cannot run: .*not-there.jar"):
    evaluate.evaluate(refs, cands, metrics="spice", spice="on")
  evaluate.evaluate(refs, cands, metrics="cider,spice", spice="off")
  assert capsys.readouterr().err == ""


def test_lists_api():
  refs = evaluate.coco_references(["a", "b"], [["x y", "y z"], ["p q"]])
  assert [a["id"] for a in refs["annotations"]] == [1, 2, 3]
  assert [a["image_id"] for a in refs["annotations"]] == ["a", "a", "b"]
  assert refs["images"] == [{"id": "a"}, {"id": "b"}]
  assert evaluate.coco_results([1], ["c"]) == [{"image_id": 1, "caption": "c"}]
  np_ids = evaluate.coco_results(np.array([5, 6]), ["c", "d"])  # ids from an array
  assert [type(r["image_id"]) for r in np_ids] == [int, int]
  json.dumps(evaluate.coco_references(np.arange(2), [["x"], ["y"]]))
  with pytest.raises(UserError, match="image id 'a' is repeated"):
    evaluate.coco_references(["a", "a"], [["x"], ["y"]])
  with pytest.raises(UserError, match="2 image ids but 1"):
    evaluate.coco_results([1, 2], ["c"])
  with pytest.raises(UserError, match="one string"):
    evaluate.coco_references([1], ["a caption"])


@needs_java
def test_score_lists_is_score(monkeypatch):
  ids = [4, 2, 9]
  references = [["a dog runs in a field", "a dog is running"], ["two birds fly", "birds"],
                ["a red car on a street", "a car"]]
  candidates = ["a dog runs", "a bird flies", "a car on the street"]
  got = evaluate.score_lists(ids, references, candidates, metrics=FAST)
  assert got == evaluate.score(evaluate.coco_references(ids, references),
                               evaluate.coco_results(ids, candidates), metrics=FAST)
  expected, _ = official(evaluate.coco_references(ids, references),
                         evaluate.coco_results(ids, candidates), monkeypatch)
  for k, v in got.items():
    assert v == pytest.approx(expected[k], rel=1e-12, abs=1e-12)


def test_cli_end_to_end(tmp_path):
  refs, cands = _small()
  (tmp_path / "refs.json").write_text(json.dumps(refs))
  (tmp_path / "cands.json").write_text(json.dumps(cands))
  cmd = [sys.executable, "-m", "experiments.captioning.evaluate",
         f"--references={tmp_path / 'refs.json'}", "--metrics=bleu,cider"]
  ok = subprocess.run(cmd + [f"--candidates={tmp_path / 'cands.json'}",
                             f"--per_image={tmp_path / 'per_image.json'}"],
                      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr
  scores = json.loads(ok.stdout)
  assert sorted(scores) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"]
  assert scores == evaluate.score(refs, cands, metrics="bleu,cider", quiet=True)
  per_image = json.loads((tmp_path / "per_image.json").read_text())
  assert [p["image_id"] for p in per_image] == [7, 3, "x"] and "CIDEr" in per_image[0]
  (tmp_path / "stray.json").write_text(json.dumps(cands + [{"image_id": 42, "caption": "a"}]))
  bad = subprocess.run(cmd + [f"--candidates={tmp_path / 'stray.json'}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and bad.stdout == ""
  assert bad.stderr.strip().startswith("error: ") and "42" in bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1


def test_spice_when_it_can_run(monkeypatch, capsys):
  """With CoreNLP installed SPICE runs (a stand-in here) and each image gets its own score:
  Spice returns them in sorted-id order, not in the evaluation order."""
  import subprocess as sp

  from pycocoevalcap.spice import spice as spice_module

  class FakeSpice:
    def compute_score(self, gts, res):
      ids = sorted(gts, key=str)
      return 0.5, [{"All": {"f": float(len(res[i][0]))}} for i in ids]

  monkeypatch.setattr(spice_module, "Spice", FakeSpice)
  monkeypatch.setattr(evaluate, "spice_unavailable", lambda java=None: None)
  monkeypatch.setattr(evaluate, "java_executable", lambda: "java")
  monkeypatch.setattr(evaluate, "_tokenize",
                      lambda caps, java: {k: [c["caption"].lower() for c in v]
                                          for k, v in caps.items()})
  refs = evaluate.coco_references([9, 4, 6], [["a b"], ["c d"], ["e f"]])
  cands = evaluate.coco_results([4, 9, 6], ["x", "xx yy", "xxx"])
  got = evaluate.evaluate(refs, cands, metrics="spice")
  assert got.scores == {"SPICE": 0.5}
  assert {p["image_id"]: p["SPICE"]["All"]["f"] for p in got.per_image} == {
      9: 5.0, 4: 1.0, 6: 3.0}
  assert capsys.readouterr().err == ""

  class BrokenSpice:
    def compute_score(self, gts, res):
      raise sp.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

  monkeypatch.setattr(spice_module, "Spice", BrokenSpice)
  got = evaluate.evaluate(refs, cands, metrics="cider,spice")
  assert set(got.scores) == {"CIDEr"} and "spice-1.0.jar failed" in got.skipped["spice"]
  assert capsys.readouterr().err.startswith("SPICE skipped: spice-1.0.jar failed")
  with pytest.raises(UserError, match="SPICE failed: spice-1.0.jar: Command"):
    evaluate.evaluate(refs, cands, metrics="spice", spice="on")


def test_without_java_spice_on_is_an_error(monkeypatch, capsys):
  monkeypatch.setattr(evaluate, "java_executable", lambda: None)
  refs, cands = _small()
  with pytest.raises(UserError, match="SPICE cannot run: java is not on PATH"):
    evaluate.evaluate(refs, cands, spice="on")
  evaluate.evaluate(refs, cands, metrics="cider,spice", spice="off")
  assert capsys.readouterr().err.strip() == (
      "java is not on PATH: captions tokenized by the Python port of the PTBTokenizer "
      "(ptb_tokenize_python)")
