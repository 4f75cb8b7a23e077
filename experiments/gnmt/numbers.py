"""The embedded default corpus: parallel sentences of numbers, rendered by num2words.

A sentence is 2 to 4 items joined by " ; " (English num2words writes commas
inside large numbers, so items are not separated by commas). An item is a
cardinal (0 to 9999), an ordinal (1 to 100, with an article) or a year (1000
to 2099, marked, because French and Spanish years read exactly like
cardinals). The same items rendered in en, de, fr and es give four parallel
sentences, e.g.

    en: in nineteen eighty-four ; the twenty-first ; seventy-one
    de: im Jahr neunzehnhundertvierundachtzig ; der einundzwanzigste ; einundsiebzig
    fr: en l'an mille neuf cent quatre-vingt-quatre ; le vingt et unième ; soixante et onze
    es: en el año mil novecientos ochenta y cuatro ; el vigésimo primero ; setenta y uno

German numbers are single compound words, so translating them is
subword-level work, and BLEU with sacrebleu's standard tokenizer is still
meaningful because the sentences hold several words each. Splits are
deterministic (a fixed generator seed, independent of the run's seed) and
disjoint: no item tuple of valid or test occurs in train.
"""

from __future__ import annotations

import functools

import numpy as np
from num2words import num2words

LANGUAGES = ("en", "de", "fr", "es")
_YEAR = {"en": "in {}", "de": "im Jahr {}", "fr": "en l'an {}", "es": "en el año {}"}
_ORDINAL = {"en": "the {}", "de": "der {}", "fr": "le {}", "es": "el {}"}
_SEED = 20161008  # GNMT's arXiv date; fixed so the corpus never changes


@functools.lru_cache(maxsize=None)
def render_item(kind: str, n: int, lang: str) -> str:
  if kind == "cardinal":
    return num2words(n, lang=lang)
  if kind == "ordinal":
    return _ORDINAL[lang].format(num2words(n, lang=lang, to="ordinal"))
  if kind == "year":
    return _YEAR[lang].format(num2words(n, lang=lang, to="year"))
  raise ValueError(f"kind: unknown item kind {kind!r}")


def render(items, lang: str) -> str:
  """One sentence: `items` is a tuple of (kind, n)."""
  return " ; ".join(render_item(kind, n, lang) for kind, n in items)


def _random_items(rng: np.random.Generator):
  items = []
  for _ in range(rng.integers(2, 5)):
    kind = ("cardinal", "ordinal", "year")[rng.integers(0, 3)]
    if kind == "cardinal":
      # Small numbers more often than large ones, as in text.
      n = int(rng.integers(0, 10 ** rng.integers(1, 5)))
    elif kind == "ordinal":
      n = int(rng.integers(1, 101))
    else:
      n = int(rng.integers(1000, 2100))
    items.append((kind, n))
  return tuple(items)


@functools.lru_cache(maxsize=4)
def splits(num_train: int = 20000, num_eval: int = 300) -> dict[str, list[tuple]]:
  """Item tuples for train, valid and test: deterministic and disjoint."""
  rng = np.random.default_rng(_SEED)
  seen: set[tuple] = set()
  out = {}
  for name, size in (("test", num_eval), ("valid", num_eval), ("train", num_train)):
    tuples = []
    while len(tuples) < size:
      items = _random_items(rng)
      if items not in seen:
        seen.add(items)
        tuples.append(items)
    out[name] = tuples
  return out


@functools.lru_cache(maxsize=64)
def sentences(split: str, lang: str, num_train: int = 20000, num_eval: int = 300) -> tuple[str, ...]:
  """The sentences of `split` in `lang`, line i parallel across languages."""
  if lang not in LANGUAGES:
    raise ValueError(f"lang: expected one of {LANGUAGES}, got {lang!r}")
  return tuple(render(items, lang) for items in splits(num_train, num_eval)[split])
