"""Sentences and words: Punkt learnt from the novels, and one word tokenizer for everything.

Text goes through three pure steps, used alike on the novels and on the
evaluation sentences (movie reviews, questions, SICK pairs):

1. `normalize(text)`: Unicode NFKC (the ellipsis "\u2026" becomes "...", the long s
   becomes s, ligatures split), curly and angle quotes made straight (' and "),
   every dash (en and em dashes, a run of two or more hyphens, a hyphen standing
   alone between spaces: the novels' " - ") made one " -- ", underscores (the
   novels' _italics_) and non-breaking spaces made spaces, runs of white space one
   space. Hyphens inside words ("well-taught") stay.
2. `Splitter.split(paragraph)`: nltk's Punkt (Kiss & Strunk 2006), its parameters
   learnt without supervision from the novels themselves (`train_punkt`), knowing
   `ABBREVIATIONS` (titles such as "Mr.", "Dr.", "St.") from the start of training;
   learnt "abbreviations" longer than `MAX_LEARNT_ABBREVIATION` characters without an
   inner period ("quivered", "probity": rare words seen only at sentence ends) are
   never added.
   Then a piece is joined to the one before it when it starts with a lowercase
   letter (after any opening quotes): `"Come here!" said he.` is one sentence, as
   a novel's dialogue means it (Punkt breaks after every "!" and "?"); or when the
   one before ends on one of `TITLES` ("Mrs. | Gale offered the loaf.": Punkt breaks
   before a name that is also a lowercase word it has seen).
3. `tokenize(sentence)`: lowercased, then nltk's `NLTKWordTokenizer` (the Penn
   Treebank rules as `nltk.word_tokenize` applies them, without its Punkt
   download): "don't" -> "do", "n't"; "he's" -> "he", "'s"; punctuation apart.
   The Treebank quotes "``" and "''" become '"', so a quote is one token however it
   was typed.

`save_params` / `load_params` keep the learnt Punkt parameters (a pickle), so the
encoder at evaluation time splits exactly as the training corpus was split.
"""

from __future__ import annotations

import os
import pickle
import re
import unicodedata
from typing import Iterable

from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer

# Abbreviations Punkt knows from the start of training and keeps (lowercase, without the final
# period, as Punkt stores them). Novels write "Mr." and "Mr" alike, so Punkt's statistics
# alone would not learn them.
ABBREVIATIONS = ("mr", "mrs", "messrs", "dr", "st", "mme", "mlle", "mm", "rev", "revd", "capt",
                 "col", "gen", "lieut", "lt", "sgt", "maj", "prof", "hon", "esq", "jr", "sr",
                 "viz", "vs", "etc", "i.e", "e.g", "cf", "ch", "vol", "vols")

# Titles before a name: a sentence never ends on one, whatever Punkt's statistics say about
# the name after it ("Mrs. Gale": "gale" is also a lowercase word; Punkt would break there).
TITLES = ("mr", "mrs", "messrs", "dr", "st", "mme", "mlle", "rev", "revd", "capt", "col", "gen",
          "lieut", "lt", "sgt", "maj", "prof", "hon")

# A learnt abbreviation with more letters than this and no inner period is a word Punkt
# happened to see only at sentence ends; it is dropped.
MAX_LEARNT_ABBREVIATION = 4

_CHARS = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-",
    "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ",
    "_": " ", "\u00a0": " ", "\ufeff": "", "\u200b": "",
})
_DASH = re.compile(r"-{2,}|(?<!\S)-(?!\S)")  # a run of hyphens, or one standing alone
_SPACES = re.compile(r"\s+")
_OPENING = re.compile(r"""^["'(\[]*""")  # what may come before a sentence's first letter
_ENDS_WITH_TITLE = re.compile(r"(?:^|[\s\"'(\[])(?:%s)\.$" % "|".join(TITLES), re.I)
_WORDS = NLTKWordTokenizer()
_QUOTES = {"``": '"', "''": '"'}


def normalize(text: str) -> str:
  """`text` with one form for quotes, dashes and spaces (the module docstring); idempotent."""
  text = unicodedata.normalize("NFKC", text).translate(_CHARS)
  text = _DASH.sub(" -- ", text)
  return _SPACES.sub(" ", text).strip()


def tokenize(sentence: str) -> list[str]:
  """The lowercase words of one sentence (normalized first), e.g.
  `'"Don't," said he.'` -> `['"', 'do', "n't", ',', '"', 'said', 'he', '.']`."""
  return [_QUOTES.get(t, t) for t in _WORDS.tokenize(normalize(sentence).lower())]


def _plausible(abbreviation: str) -> bool:
  return "." in abbreviation or len(abbreviation) <= MAX_LEARNT_ABBREVIATION


class _Trainer(PunktTrainer):
  """Punkt's trainer that knows `ABBREVIATIONS` from the start and keeps them (Punkt would
  drop "mr", as novels also write "Mr" without a period), and learns no implausible ones
  (`_plausible`). Knowing them while it counts matters: otherwise every name after "Mr."
  counts as a sentence start, and Punkt learns to break before it."""

  def __init__(self):
    super().__init__()
    self._params.abbrev_types.update(ABBREVIATIONS)

  def _reclassify_abbrev_types(self, types):
    for abbr, score, is_add in super()._reclassify_abbrev_types(types):
      if abbr not in ABBREVIATIONS and (not is_add or _plausible(abbr)):
        yield abbr, score, is_add

  def _is_rare_abbrev_type(self, cur_tok, next_tok):
    return (super()._is_rare_abbrev_type(cur_tok, next_tok)
            and _plausible(cur_tok.type_no_period))


def train_punkt(paragraphs: Iterable[str]) -> PunktParameters:
  """Punkt's parameters learnt from `paragraphs` (normalized here), with `ABBREVIATIONS`
  and without implausible learnt abbreviations (the module docstring); deterministic: the
  same text gives the same sets."""
  trainer = _Trainer()
  trainer.train("\n".join(normalize(p) for p in paragraphs), finalize=True)
  params = trainer.get_params()
  params.abbrev_types = {a for a in params.abbrev_types if _plausible(a)} | set(ABBREVIATIONS)
  return params


def save_params(params: PunktParameters, path: str) -> None:
  """Writes `params` to `path` (a pickle), atomically."""
  with open(path + ".tmp", "wb") as f:
    pickle.dump(params, f, protocol=pickle.HIGHEST_PROTOCOL)
  os.replace(path + ".tmp", path)


def load_params(path: str) -> PunktParameters:
  with open(path, "rb") as f:
    params = pickle.load(f)
  if not isinstance(params, PunktParameters):
    raise ValueError(f"{path}: not Punkt parameters ({type(params).__name__})")
  return params


class Splitter:
  """Paragraph -> sentences with fixed Punkt parameters (`train_punkt` or `load_params`)."""

  def __init__(self, params: PunktParameters):
    self.params = params
    self._punkt = PunktSentenceTokenizer(params)

  def split(self, paragraph: str) -> list[str]:
    """The sentences of `paragraph` (normalized), in order; none for an empty one."""
    pieces = self._punkt.tokenize(normalize(paragraph))
    sentences = []
    for piece in pieces:
      rest = piece[_OPENING.match(piece).end():]
      if sentences and (rest[:1].islower() or _ENDS_WITH_TITLE.search(sentences[-1])):
        sentences[-1] += " " + piece
      else:
        sentences.append(piece)
    return sentences


def split_and_tokenize(splitter: Splitter, paragraph: str) -> list[list[str]]:
  """Each sentence of `paragraph` as its words (`tokenize`); sentences without words left out."""
  return [words for words in map(tokenize, splitter.split(paragraph)) if words]
