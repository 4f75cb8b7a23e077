"""The COCO caption metrics, computed as the official coco-caption code computes them.

Reads COCO's two caption formats:

- references: the caption annotation format, `{"images": [{"id": ...}, ...],
  "annotations": [{"image_id": ..., "id": ..., "caption": ...}, ...], ...}`;
- candidates: the results format, `[{"image_id": ..., "caption": ...}, ...]`.

and prints (CLI) or returns (`score`) BLEU-1..4, METEOR, ROUGE-L, CIDEr (which is CIDEr-D)
and SPICE under the names coco-caption gives them (`Bleu_1` .. `Bleu_4`, `METEOR`,
`ROUGE_L`, `CIDEr`, `SPICE`):

  python -m experiments.captioning.evaluate --references=captions_val2014.json \
      --candidates=results.json [--metrics=bleu,meteor,rouge,cider,spice] \
      [--spice=auto|on|off] [--per_image=per_image.json]

The procedure is that of pycocotools' `COCO(refs)` and `COCO.loadRes(results)` followed by
pycocoevalcap's `COCOEvalCap.evaluate()` with `params['image_id'] = cocoRes.getImgIds()`
(as coco-caption's example does), and it runs pycocotools and pycocoevalcap's own scorers:

- the images evaluated are those of the results, in the order of the references' "images"
  list; every result image id must be among the references' images (loadRes's assertion;
  here a one-line `UserError` naming the first stray id and how many there are);
- each evaluated image needs exactly one result (coco-caption's scorers assert it; here
  duplicates are a `UserError`) and at least one reference caption;
- both sides go through Stanford's PTBTokenizer (`-preserveLines -lowerCase`, then the
  punctuation tokens coco-caption lists are dropped), one Java run per side as in
  `COCOEvalCap`; the jar is pycocoevalcap's. Unlike pycocoevalcap's wrapper this runs it in
  a temporary directory (not inside site-packages) and first turns the characters Java
  reads as line breaks (\\r, \\v, \\f, U+0085, U+2028, U+2029) into spaces, as coco-caption
  already does for \\n: on those captions the official wrapper shifts every later caption
  onto the wrong image;
- scorers in COCOEvalCap's order: Bleu(4) (the "closest" reference length), Meteor,
  Rouge, Cider (CIDEr-D: document frequencies over the evaluated images' references), Spice.
  An empty candidate caption scores as coco-caption scores it (0 for most metrics). Per-image
  SPICE scores go to their own images (COCOEvalCap pairs Spice's sorted-id list with the
  evaluation order, which mislabels them when the references' images are not sorted).

Without Java (`java` not on PATH) one line on stderr says so, METEOR and SPICE are skipped,
and captions are tokenized by `ptb_tokenize_python`, a Python port of the PTBTokenizer and
its punctuation removal (it agrees with the Java tokenizer on every Flickr8k caption;
unusual text such as URLs or rare abbreviations may differ), so BLEU, ROUGE-L and CIDEr are
still reported. SPICE needs Stanford CoreNLP 3.6.0's jars in pycocoevalcap's spice/lib,
which pycocoevalcap downloads on first use: with `spice="auto"` SPICE runs only when those
jars are already there (one line on stderr says why it was skipped otherwise); nothing here
ever downloads.

For evaluation inside training: `score_lists(ids, references, candidates)` builds the two
formats with `coco_references` and `coco_results` and goes through the same procedure
(SPICE off unless asked for).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple, Sequence

from experiments import common
from experiments.common import UserError

METRICS = ("bleu", "meteor", "rouge", "cider", "spice")
"""The metric names `metrics=` takes, in COCOEvalCap's order."""

METRIC_KEYS = {"bleu": ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"), "meteor": ("METEOR",),
               "rouge": ("ROUGE_L",), "cider": ("CIDEr",), "spice": ("SPICE",)}
"""The keys each metric reports, as coco-caption names them."""

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS: tokens dropped after tokenizing. They are
# compared with the lower-cased tokens, so "-LRB-" never matches and "(" survives as "-lrb-".
PUNCTUATIONS = ("''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",",
                ":", "-", "--", "...", ";")

# Characters Java's PTBTokenizer (-preserveLines) ends a line at, besides \n.
_JAVA_LINE_BREAKS = re.compile("[\r\x0b\x0c\x85\u2028\u2029]")

SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
"""What pycocoevalcap's SPICE downloads into spice/lib on first use."""


class Evaluation(NamedTuple):
  """What `evaluate` returns.

  Attributes:
    scores: metric key (`Bleu_1`, ..., `SPICE`) -> corpus score, as `COCOEvalCap.eval`.
    per_image: one dict per evaluated image, `{"image_id": id, key: score, ...}`, in the
      evaluation order (`COCOEvalCap.evalImgs`; SPICE's entry is its dict of categories).
    skipped: metric name -> why it was not computed (Java missing, SPICE's models missing).
    tokenizer: "java" (Stanford's PTBTokenizer) or "python" (`ptb_tokenize_python`).
  """
  scores: dict[str, float]
  per_image: list[dict[str, Any]]
  skipped: dict[str, str]
  tokenizer: str


# ------------------------------------------------------------------------------------------
# The two COCO formats.


def coco_references(ids: Sequence[Any], captions: Sequence[Sequence[str]]) -> dict:
  """COCO's caption annotation format from parallel lists.

  Args:
    ids: image ids (int or str), distinct.
    captions: captions[i] the reference captions of image ids[i].

  Returns:
    `{"info": {}, "licenses": [], "type": "captions", "images": [{"id"}],
    "annotations": [{"image_id", "id", "caption"}]}` with annotation ids 1, 2, ...
  """
  ids, captions = [_plain_id(i) for i in ids], list(captions)
  if len(ids) != len(captions):
    raise UserError(f"coco_references: {len(ids)} image ids but {len(captions)} caption lists")
  _check_distinct(ids, "coco_references: image id")
  annotations = []
  for image_id, caps in zip(ids, captions):
    if isinstance(caps, str):
      raise UserError(f"coco_references: the captions of image {image_id!r} are one string, "
                      "not a list of captions")
    for c in caps:
      annotations.append({"image_id": image_id, "id": len(annotations) + 1, "caption": c})
  return {"info": {}, "licenses": [], "type": "captions",
          "images": [{"id": i} for i in ids], "annotations": annotations}


def coco_results(ids: Sequence[Any], captions: Sequence[str]) -> list[dict]:
  """COCO's results format, `[{"image_id", "caption"}]`, from parallel lists."""
  ids, captions = [_plain_id(i) for i in ids], list(captions)
  if len(ids) != len(captions):
    raise UserError(f"coco_results: {len(ids)} image ids but {len(captions)} captions")
  return [{"image_id": i, "caption": c} for i, c in zip(ids, captions)]


def _plain_id(i):
  """numpy integers (ids from arrays) as Python ints: JSON and the checks take those."""
  return i.item() if hasattr(i, "item") and not isinstance(i, (str, bytes)) else i


def _check_distinct(ids, what):
  seen, repeated = set(), []
  for i in ids:
    if i in seen:
      repeated.append(i)
    seen.add(i)
  if repeated:
    raise UserError(f"{what} {repeated[0]!r} is repeated ({len(repeated)} repeats in all)")


def _load_json(value, what):
  if not isinstance(value, (str, os.PathLike)):
    return value
  return common.read_json(value, what)


def _id_ok(i):
  return isinstance(i, (int, str)) and not isinstance(i, bool)


def _check_references(refs, where):
  if not isinstance(refs, dict):
    raise UserError(f"{where}: expected COCO's caption annotation format, a JSON object with "
                    f"'images' and 'annotations', got {type(refs).__name__}")
  for key in ("images", "annotations"):
    if not isinstance(refs.get(key), list):
      raise UserError(f"{where}: '{key}' must be a list (COCO's caption annotation format)")
  for k, img in enumerate(refs["images"]):
    if not isinstance(img, dict) or not _id_ok(img.get("id")):
      raise UserError(f"{where}: images[{k}] needs an integer or string 'id', got {img!r:.80}")
  for k, ann in enumerate(refs["annotations"]):
    if (not isinstance(ann, dict) or not _id_ok(ann.get("image_id"))
        or not isinstance(ann.get("caption"), str)):
      raise UserError(f"{where}: annotations[{k}] needs an 'image_id' and a string 'caption', "
                      f"got {ann!r:.80}")


def _check_results(results, image_ids, where):
  if not isinstance(results, list):
    raise UserError(f"{where}: expected COCO's results format, a JSON list of "
                    f"{{'image_id', 'caption'}}, got {type(results).__name__}")
  if not results:
    raise UserError(f"{where}: no results to evaluate")
  for k, r in enumerate(results):
    if (not isinstance(r, dict) or not _id_ok(r.get("image_id"))
        or not isinstance(r.get("caption"), str)):
      raise UserError(f"{where}: result {k} needs an 'image_id' and a string 'caption', got "
                      f"{r!r:.80}")
  stray = [r["image_id"] for r in results if r["image_id"] not in image_ids]
  if stray:
    raise UserError(f"{where}: {len(stray)} result(s) for image ids not in the references' "
                    f"images, the first {stray[0]!r} (COCO.loadRes: results do not correspond "
                    "to the annotation set)")
  _check_distinct([r["image_id"] for r in results],
                  f"{where}: more than one result for an image (coco-caption scores exactly "
                  "one caption per image); image id")


# ------------------------------------------------------------------------------------------
# Tokenization.


def java_executable() -> str | None:
  """The `java` that METEOR, SPICE and the PTBTokenizer run with (PATH lookup), or None."""
  return shutil.which("java")


def _pycocoevalcap_dir(*parts):
  from pycocoevalcap.tokenizer import ptbtokenizer  # noqa: PLC0415
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ptbtokenizer.__file__))),
                      *parts)


def _one_line(caption: str) -> str:
  return _JAVA_LINE_BREAKS.sub(" ", caption.replace("\n", " "))


def ptb_tokenize_java(captions_for_image: dict, java: str = "java") -> dict[Any, list[str]]:
  """pycocoevalcap's `PTBTokenizer().tokenize`: `{id: [{"caption"}]} -> {id: [str]}`.

  The same Java command on the same bytes (Stanford CoreNLP 3.4.1's PTBTokenizer with
  `-preserveLines -lowerCase`, pycocoevalcap's jar) and the same punctuation removal; run in
  a temporary directory, with Java's extra line breaks made spaces (see the module docstring).
  """
  image_id = [k for k, v in captions_for_image.items() for _ in range(len(v))]
  sentences = "\n".join(_one_line(c["caption"]) for v in captions_for_image.values()
                        for c in v)
  jar = _pycocoevalcap_dir("tokenizer", "stanford-corenlp-3.4.1.jar")
  with tempfile.TemporaryDirectory(prefix="ptb_tokenizer_") as tmp:
    path = os.path.join(tmp, "captions.txt")
    with open(path, "wb") as f:
      f.write(sentences.encode())
    proc = subprocess.run([java, "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer",
                           "-preserveLines", "-lowerCase", path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
  if proc.returncode:
    last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    raise UserError(f"the PTBTokenizer ({jar}) failed with exit status {proc.returncode}: "
                    f"{last[0]}")
  lines = proc.stdout.decode().split("\n")
  if len(lines) < len(image_id):
    raise UserError(f"the PTBTokenizer returned {len(lines)} lines for {len(image_id)} "
                    "captions")
  tokenized: dict[Any, list[str]] = {}
  for k, line in zip(image_id, lines):
    tokenized.setdefault(k, []).append(
        " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS))
  return tokenized


_ABBREVIATIONS = frozenset("""
    mr mrs ms messrs dr drs prof profs st ste jr sr mt ft ave blvd rd capt col gen gov lt maj
    rev sgt cpl pvt sen rep hon pres adm det esq etc vs al seq inc co cos corp ltd plc bros
    dept univ assn intl no nos fig figs ca jan feb mar apr jun jul aug sep sept oct nov dec
    mon tue tues wed thu thurs fri""".split())

_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                "wanna": ("wan", "na"), "gimme": ("gim", "me"), "lemme": ("lem", "me"),
                "'tis": ("'t", "is"), "'twas": ("'t", "was")}
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_BRACKETS = {'"': "''", "(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-",
             "}": "-RCB-"}
_NORMALIZE = str.maketrans({"\u2019": "'", "\u2018": "`", "\u201c": '"', "\u201d": '"',
                            "\u00ab": '"', "\u00bb": '"', "\u2014": "--", "\u2013": "--",
                            "\u2026": "...", "\u00a3": "#", "\u20ac": "$"})
_SEPARATORS = re.compile(r"[\s\x00-\x1f\x7f\u200b\ufeff]+")
_TOKEN = re.compile(r"""
    (?P<url>(?i:[a-z][a-z0-9+.-]*)://\S+|[\w.+-]+@\w[\w-]*(?:\.[\w-]+)+)
  | (?P<acronym>[^\W\d_](?:\.[^\W\d_])+(?![^\W_])\.?)
  | (?P<upper_amp>[A-Z]+&[A-Z]+(?![^\W_]))
  | (?P<clitic>(?i:'(?:s|re|ve|ll|d|m|n'|tis|twas|\d0s))(?![^\W_]))
  | (?P<time>\d+(?::\d\d)+(?![^\W_]))
  | (?P<word>\w+(?:(?:[-./']|(?<=\d),(?=\d))\w+)*(?:\.(?=$))?)
  | (?P<tag></?\w+>|[@#](?=[^\W\d_])\w+)
  | (?P<decimal>\.\d+(?![^\W_]))
  | (?P<dots>\.{2,})
  | (?P<dashes>-{2,})
  | (?P<marks>[?!]+)
  | (?P<other>\S)
""", re.VERBOSE)


def _chunk_tokens(chunk: str, last: bool) -> list[str]:
  tokens = []
  for m in _TOKEN.finditer(chunk):
    kind, tok = m.lastgroup, m.group()
    if kind == "word":
      low = tok.lower()
      if tok.endswith("."):
        stem = tok[:-1]
        keep = stem.lower() in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha() and
                                                   not last)
        if not keep:
          tokens.extend(_word_tokens(stem))
          tokens.append(".")
          continue
        tokens.append(tok)
        continue
      if "'" not in tok and low in _SPLIT_WORDS:
        tokens.extend(_SPLIT_WORDS[low])
        continue
      tokens.extend(_word_tokens(tok))
    elif kind == "clitic":
      low = tok.lower()
      tokens.extend(_SPLIT_WORDS.get(low, (tok,)))
    elif kind == "dots":
      tokens.append("...")
    elif kind == "dashes":
      tokens.append("--")
    else:
      tokens.append(_BRACKETS.get(tok, tok))
  return tokens


def _word_tokens(word: str) -> list[str]:
  if "'" not in word:
    return [word]
  if word.lower() == "y'all":
    return [word[:2], word[2:]]
  rock = re.fullmatch(r"(\w+)('n')(\w+)", word, re.IGNORECASE)
  if rock:
    return list(rock.groups())
  m = _CLITIC.match(word)
  if m and not m.group(1).endswith("'"):
    return [m.group(1), m.group(2)]
  return [word]


def ptb_tokenize_python(caption: str) -> str:
  """A Python port of coco-caption's tokenization of one caption (used without Java).

  Stanford's PTBTokenizer (`-preserveLines -lowerCase`) on the common cases of caption text:
  whitespace, punctuation split off (`.`, `,`, `;`, `:`, `?!` runs, quotes, brackets as
  `-LRB-` ...), clitics (`do n't`, `dog 's`, `can not`, `gon na`), numbers (`1,000`, `5.5`,
  `10:30`), acronyms and abbreviations that keep their period (`u.s.`, `mr.`, `etc.`),
  hyphenated and slashed words kept whole, PTB's currency and unicode normalization (`£` ->
  `#`, curly quotes, dashes, `…`); then lower-casing and the removal of coco-caption's
  punctuation tokens. It agrees with the Java tokenizer on all 40460 Flickr8k captions;
  rarer constructions (URLs with odd characters, unlisted abbreviations) may differ.

  Args:
    caption: one raw caption.

  Returns:
    The tokens, lower-cased, punctuation removed, joined by single spaces.
  """
  text = _one_line(caption).translate(_NORMALIZE)
  chunks = [c for c in _SEPARATORS.split(text) if c]
  tokens = []
  for k, chunk in enumerate(chunks):
    tokens.extend(_chunk_tokens(chunk, last=k == len(chunks) - 1))
  return " ".join(t for t in (t.lower() for t in tokens) if t not in PUNCTUATIONS)


def _tokenize(captions_for_image, java):
  if java:
    return ptb_tokenize_java(captions_for_image, java)
  return {k: [ptb_tokenize_python(c["caption"]) for c in v]
          for k, v in captions_for_image.items()}


# ------------------------------------------------------------------------------------------
# Scoring.


def spice_unavailable(java: str | None = None) -> str | None:
  """Why SPICE cannot run offline now (no Java, jar or CoreNLP models), or None if it can."""
  if java is None:
    java = java_executable()
  if not java:
    return "java is not on PATH"
  try:
    directory = _pycocoevalcap_dir("spice")
  except ImportError:
    return "pycocoevalcap is not installed"
  missing = [p for p in ("spice-1.0.jar", *(os.path.join("lib", j) for j in SPICE_CORENLP_JARS))
             if not os.path.exists(os.path.join(directory, p))]
  if missing:
    return (f"{os.path.join(directory, missing[0])} is missing (pycocoevalcap downloads "
            "Stanford CoreNLP 3.6.0 on first use; run pycocoevalcap's "
            "spice/get_stanford_models.py once where there is network)")
  return None


def _parse_metrics(metrics):
  if metrics is None:
    return list(METRICS)
  if isinstance(metrics, str):
    metrics = [m for m in metrics.split(",") if m.strip()]
  names = [m.strip().lower() for m in metrics]
  unknown = [m for m in names if m not in METRICS]
  if unknown:
    raise UserError(f"unknown metric {unknown[0]!r}: choose among {', '.join(METRICS)}")
  if not names:
    raise UserError(f"no metrics chosen: choose among {', '.join(METRICS)}")
  return [m for m in METRICS if m in names]


def _parse_spice(spice):
  if spice in (True, "on", "true", "yes", "1"):
    return "on"
  if spice in (False, None, "off", "false", "no", "0"):
    return "off"
  if spice == "auto":
    return "auto"
  raise UserError(f"spice={spice!r}: expected 'auto', 'on' (True) or 'off' (False)")


def _note(message, quiet):
  if not quiet:
    print(message, file=sys.stderr, flush=True)


def evaluate(references, candidates, *, metrics=None, spice="auto",
             quiet: bool = False) -> Evaluation:
  """Scores `candidates` against `references` as coco-caption does, with per-image scores.

  Args:
    references: COCO's caption annotation format (a dict, or the path of its JSON file).
    candidates: COCO's results format (a list, or the path of its JSON file).
    metrics: names among `METRICS` (a list or a comma-separated string); None for all.
    spice: "auto" (run SPICE only when it can run offline, else say why on stderr), "on" or
      True (a `UserError` when it cannot), "off" or False.
    quiet: no notes on stderr (they are still in `Evaluation.skipped`).

  Returns:
    An `Evaluation` (scores, per-image scores, skipped metrics, the tokenizer used).

  Raises:
    UserError: a malformed file, result image ids not among the references' images, more
      than one result for an image, an evaluated image without reference captions, an
      unknown metric, or `spice="on"` when SPICE cannot run.
  """
  from pycocotools.coco import COCO  # noqa: PLC0415

  names = _parse_metrics(metrics)
  spice_mode = _parse_spice(spice)
  ref_where = references if isinstance(references, (str, os.PathLike)) else "references"
  res_where = candidates if isinstance(candidates, (str, os.PathLike)) else "candidates"
  refs = _load_json(references, "references")
  results = _load_json(candidates, "candidates")
  _check_references(refs, ref_where)
  image_ids = {img["id"] for img in refs["images"]}
  _check_results(results, image_ids, res_where)

  refs = {**refs, "annotations": [dict(a) for a in refs["annotations"]]}  # ours to change
  for k, ann in enumerate(refs["annotations"]):
    ann.setdefault("id", k + 1)  # only COCO's index uses it
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
    coco = COCO()
    coco.dataset = refs
    coco.createIndex()
    coco_res = coco.loadRes([dict(r) for r in results])  # loadRes numbers them
  evaluated = coco_res.getImgIds()  # COCOEvalCap.params['image_id'], as coco-caption sets it
  gts = {i: coco.imgToAnns[i] for i in evaluated}
  res = {i: coco_res.imgToAnns[i] for i in evaluated}
  empty = [i for i in evaluated if not gts[i]]
  if empty:
    raise UserError(f"{ref_where}: {len(empty)} evaluated image(s) have no reference "
                    f"captions, the first {empty[0]!r}")

  skipped = {}
  java = java_executable()
  if "spice" in names:
    why = spice_unavailable(java) if spice_mode != "off" else "spice is off"
    if why and spice_mode == "on":
      raise UserError(f"SPICE cannot run: {why}")
    if why:
      skipped["spice"] = why
      if spice_mode == "auto" and java:
        _note(f"SPICE skipped: {why}", quiet)
  if not java:
    if "meteor" in names:
      skipped["meteor"] = "java is not on PATH"
    lost = [m.upper() for m in ("meteor", "spice") if m in names and
            skipped.get(m) == "java is not on PATH"]
    _note("java is not on PATH: " + (f"{' and '.join(lost)} skipped; " if lost else "")
          + "captions tokenized by the Python port of the PTBTokenizer "
          "(ptb_tokenize_python)", quiet)
  names = [m for m in names if m not in skipped]

  gts = _tokenize(gts, java)
  res = _tokenize(res, java)

  scores, per_image = {}, {i: {"image_id": i} for i in gts}
  with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its statistics
    for name in names:
      try:
        values, image_values = _run_scorer(name, gts, res)
      except (subprocess.CalledProcessError, OSError) as e:
        if name != "spice":
          raise
        if spice_mode == "on":
          raise UserError(f"SPICE failed: spice-1.0.jar: {e}") from None
        skipped[name] = f"spice-1.0.jar failed ({e})"
        _note(f"SPICE skipped: {skipped[name]}", quiet)
        continue
      for key, value, by_image in zip(METRIC_KEYS[name], values, image_values):
        scores[key] = float(value)
        for i, s in (zip(gts, by_image) if name != "spice" else by_image.items()):
          per_image[i][key] = s if isinstance(s, dict) else float(s)
  return Evaluation(scores, list(per_image.values()), skipped, "java" if java else "python")


def _run_scorer(name, gts, res):
  """One coco-caption scorer: ([corpus score per key], [per-image scores per key])."""
  if name == "bleu":
    from pycocoevalcap.bleu.bleu import Bleu  # noqa: PLC0415
    score, scores = Bleu(4).compute_score(gts, res)
    return score, scores
  if name == "meteor":
    from pycocoevalcap.meteor.meteor import Meteor  # noqa: PLC0415
    meteor = Meteor()
    try:
      score, scores = meteor.compute_score(gts, res)
    finally:  # stop its JVM now; a failure mid-way leaves the lock taken
      if meteor.lock.locked():
        meteor.lock.release()
      meteor.__del__()
    return [score], [scores]
  if name == "rouge":
    from pycocoevalcap.rouge.rouge import Rouge  # noqa: PLC0415
    score, scores = Rouge().compute_score(gts, res)
    return [score], [scores]
  if name == "cider":
    from pycocoevalcap.cider.cider import Cider  # noqa: PLC0415
    score, scores = Cider().compute_score(gts, res)
    return [score], [scores]
  if name == "spice":
    from pycocoevalcap.spice.spice import Spice  # noqa: PLC0415
    score, scores = Spice().compute_score(gts, res)
    # Spice returns its per-image scores in sorted-id order; COCOEvalCap pairs them with the
    # evaluation order, which mislabels them when the references' images are not sorted.
    return [score], [dict(zip(sorted(gts), scores))]
  raise AssertionError(name)


def score(references, candidates, *, metrics=None, spice="auto", quiet: bool = False
          ) -> dict[str, float]:
  """The coco-caption scores of `candidates` against `references` (see `evaluate`).

  Returns:
    `{"Bleu_1": ..., "Bleu_2": ..., "Bleu_3": ..., "Bleu_4": ..., "METEOR": ...,
    "ROUGE_L": ..., "CIDEr": ..., "SPICE": ...}`, less the metrics not chosen or skipped.
  """
  return evaluate(references, candidates, metrics=metrics, spice=spice, quiet=quiet).scores


def score_lists(ids: Sequence[Any], references: Sequence[Sequence[str]],
                candidates: Sequence[str], *, metrics=None, spice="off",
                quiet: bool = False) -> dict[str, float]:
  """`score` from parallel lists, for evaluation inside training.

  Args:
    ids: image ids, distinct.
    references: references[i] the raw reference captions of image ids[i].
    candidates: candidates[i] the generated caption of image ids[i].
    metrics, spice, quiet: as in `evaluate`; SPICE is off by default here (it needs minutes
      and 8 GB for a few thousand images).

  Returns:
    The coco-caption scores, as `score`.
  """
  return score(coco_references(ids, references), coco_results(ids, candidates),
               metrics=metrics, spice=spice, quiet=quiet)


# ------------------------------------------------------------------------------------------
# The command line.


def _define_flags():
  from absl import flags  # noqa: PLC0415
  flags.DEFINE_string("references", None, "COCO caption annotations (JSON): "
                      "{'images': [{'id'}], 'annotations': [{'image_id', 'id', 'caption'}]}.")
  flags.DEFINE_string("candidates", None, "COCO results (JSON): [{'image_id', 'caption'}].")
  flags.DEFINE_list("metrics", list(METRICS), "Metrics among " + ",".join(METRICS) + ".")
  flags.DEFINE_enum("spice", "auto", ["auto", "on", "off"], "SPICE: auto (only when its "
                    "CoreNLP models are installed; never downloads), on (an error when it "
                    "cannot run) or off.")
  flags.DEFINE_string("per_image", None, "Also write the per-image scores here (JSON list "
                      "of {'image_id', metric: score}).")
  return flags.FLAGS


def main(argv) -> None:
  """Prints the scores as one JSON object; writes --per_image when given."""
  from absl import flags  # noqa: PLC0415
  from experiments import common  # noqa: PLC0415
  FLAGS = flags.FLAGS  # noqa: N806
  common.check_no_positional(argv)
  for name in ("references", "candidates"):
    if not FLAGS[name].value:
      raise UserError(f"--{name} is required")
  result = evaluate(FLAGS.references, FLAGS.candidates, metrics=FLAGS.metrics,
                    spice=FLAGS.spice)
  if FLAGS.per_image:
    try:
      with open(FLAGS.per_image, "w", encoding="utf-8") as f:
        json.dump(result.per_image, f, ensure_ascii=False)
        f.write("\n")
    except OSError as e:
      raise UserError(f"--per_image={FLAGS.per_image}: {e.strerror or e}") from None
  print(json.dumps(result.scores), flush=True)


if __name__ == "__main__":
  from experiments import common

  _define_flags()
  common.run(main)
