r"""A language identifier that needs no download: character n-gram naive Bayes.

Fit on the run's own training text (each language's lines), it names the
language of a sentence x:

    lang(x)      = argmax_l  Σ_{n in orders} Σ_{g in grams_n(x)} log P_n(g | l)
    P_n(g | l)   = (count_n(g, l) + α) / (total_n(l) + α (|G_n| + 1))

`grams_n(x)` are the character n-grams of " " + x + " " (lowercased, runs of
whitespace made one space), `count_n(g, l)` how often g occurs in language l's
lines, `total_n(l)` the number of order-n grams there, `G_n` the order-n grams
seen in any language plus one slot for every unseen gram, α = 1 (Laplace), and
the prior uniform (a multinomial naive Bayes). At most `max_lines` lines per
language are read, evenly spaced through its lines, so fitting costs about a
second whatever the corpus.

The off-target rate of a direction (`offtarget_rate`) is the percentage of its
outputs that the identifier does not give to the target language; an empty
output is in no language and counts as off target.
"""

from __future__ import annotations

import collections
from typing import Iterable, Mapping, Sequence

import numpy as np

ORDERS = (1, 2, 3)
MAX_LINES = 2000
STREAMED = 200_000  # languages with more lines than this are sampled before filtering


def normalize(text: str) -> str:
  """Lowercased, whitespace runs made one space, one space at each end."""
  return " " + " ".join(text.lower().split()) + " "


def grams(text: str, orders: Sequence[int] = ORDERS) -> list[str]:
  """The character n-grams of `normalize(text)` for every order (an empty text has none)."""
  if not text.strip():
    return []
  s = normalize(text)
  return [s[i:i + n] for n in orders for i in range(len(s) - n + 1)]


def evenly_spaced(lines: Sequence[str], n: int) -> list[str]:
  """At most `n` of `lines`, evenly spaced, first and last included (deterministic)."""
  if len(lines) <= n:
    return list(lines)
  return [lines[int(i)] for i in np.linspace(0, len(lines) - 1, n).round()]


class LanguageIdentifier:
  """Multinomial naive Bayes over character n-grams (module docstring); `fit` builds one.

  Attributes:
    languages: the languages it knows, in the order of its score columns.
    orders: the n-gram orders used.
  """

  def __init__(self, languages: Sequence[str], vocabulary: Mapping[str, int],
               log_probs: np.ndarray, orders: Sequence[int]):
    self.languages = tuple(languages)
    self.orders = tuple(orders)
    self._vocabulary = dict(vocabulary)
    self._log_probs = log_probs  # [|G| + len(orders), L]; the last rows: one unseen gram per order
    first_unseen = log_probs.shape[0] - len(self.orders)
    self._unseen = {n: first_unseen + i for i, n in enumerate(self.orders)}

  @classmethod
  def fit(cls, lines_by_language: Mapping[str, Sequence[str]], *,
          orders: Sequence[int] = ORDERS, max_lines: int = MAX_LINES,
          alpha: float = 1.0) -> "LanguageIdentifier":
    """Counts the n-grams of at most `max_lines` lines per language (evenly spaced).

    Args:
      lines_by_language: {language: lines of text in it}.
      orders: n-gram orders.
      max_lines: lines read per language.
      alpha: additive smoothing.
    """
    languages = sorted(lines_by_language)
    counts = {}
    for lang in languages:
      lines = lines_by_language[lang]
      if len(lines) > STREAMED:  # a streamed corpus: read a spaced sample, not every line
        lines = evenly_spaced(lines, 4 * max_lines)
      lines = [line for line in lines if line.strip()]
      if not lines:
        raise ValueError(f"language {lang!r} has no text to learn from")
      counter = collections.Counter()
      for line in evenly_spaced(lines, max_lines):
        counter.update(grams(line, orders))
      counts[lang] = counter
    vocabulary = {g: i for i, g in enumerate(sorted(set().union(*counts.values())))}
    order_of = np.array([len(g) for g in vocabulary] + list(orders))
    table = np.zeros((len(vocabulary) + len(orders), len(languages)))  # [|G| + orders, L]
    for j, lang in enumerate(languages):
      for g, c in counts[lang].items():
        table[vocabulary[g], j] = c
    log_probs = np.zeros_like(table)
    for n in orders:
      rows = order_of == n
      total = table[rows].sum(0)  # [L]
      size = rows.sum()  # the seen grams of this order and its unseen slot
      log_probs[rows] = np.log(table[rows] + alpha) - np.log(total + alpha * size)
    return cls(languages, vocabulary, log_probs, orders)

  def scores(self, texts: Iterable[str]) -> np.ndarray:
    """`[N, L]` log-likelihoods of each text under each language (0 for an empty text)."""
    index, starts = [], []
    for text in texts:
      starts.append(len(index))
      index.extend(self._vocabulary.get(g, self._unseen[len(g)]) for g in grams(text, self.orders))
    out = np.zeros((len(starts), len(self.languages)))
    if index:
      rows = self._log_probs[np.asarray(index)]
      nonempty = [i for i in range(len(starts))
                  if (starts[i + 1] if i + 1 < len(starts) else len(index)) > starts[i]]
      sums = np.add.reduceat(rows, np.asarray([starts[i] for i in nonempty]), axis=0)
      out[nonempty] = sums
    return out

  def identify(self, texts: Sequence[str]) -> list[str]:
    """The most likely language of each text; "" for an empty one."""
    best = np.argmax(self.scores(texts), axis=1)
    return [self.languages[b] if text.strip() else "" for b, text in zip(best, texts)]


def training_lines(train_pairs: Mapping) -> dict[str, list[str]]:
  """{language: lines} from a corpus split's {(src, tgt): (source lines, target lines)}.

  Source sides count too: a zero-shot model's classic failure is to copy its
  source or answer in a source language, so every language of the corpus must be known.
  """
  out: dict[str, list[str]] = {}
  for (src, tgt), (src_lines, tgt_lines) in train_pairs.items():
    for lang, lines in ((src, src_lines), (tgt, tgt_lines)):
      out.setdefault(lang, lines)  # multi-parallel corpora repeat a language's lines
  return out


def offtarget_rate(identifier: LanguageIdentifier, outputs: Sequence[str], target: str) -> float:
  """Percentage of `outputs` not identified as `target` (empty ones included); 0 for none."""
  if not outputs:
    return 0.0
  found = identifier.identify(outputs)
  return 100.0 * sum(lang != target for lang in found) / len(outputs)
