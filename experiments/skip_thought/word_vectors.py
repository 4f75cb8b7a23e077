"""Word vectors: skip-gram with negative sampling (Mikolov et al. 2013, word2vec) in JAX.

The vectors that vocabulary expansion maps into the encoder's embedding space
(Kiros et al. 2015, §3.2), trained here on the novels themselves.

    stream = corpus.word_stream(min_count=5)     # [T] ids, -1 ending each sentence
    vectors = train(stream, corpus.large_counts(5), steps=..., key=jax.random.key(0))

As word2vec does it:

* Frequent words are subsampled: an occurrence of a word of relative frequency f
  is kept with probability `min(1, (sqrt(f / t) + 1) * t / f)` (word2vec.c's form
  of Mikolov et al.'s `1 - sqrt(t / f)` discard rate), t = `subsample`, afresh
  each epoch; windows are taken over what is kept.
* Each kept position draws a window b uniform in {1..window} and pairs with the
  kept words at most b away on either side in the same sentence (never across a
  -1).
* Each pair (centre c, context o) draws `negatives` noise words from the unigram
  distribution raised to 0.75 (sampled inside the jitted step through Walker's
  alias table); a noise word equal to o is masked out, as word2vec skips it. The
  loss of a pair is
      -log σ(u_c · v_o) - Σ_k log σ(-u_c · v_k),
  u = the input vectors (returned), v = the output vectors.
* Plain SGD on the rows a step touches only (`sgd_step`): the gradients of the
  batch's summed loss with respect to its gathered rows (`sgns_rows`), scatter-added
  (duplicates accumulate) into one `[2V, dim]` table of input and output vectors,
  which the jitted step donates (updated in place); the rate decays linearly from
  `learning_rate` to `learning_rate * 1e-4` over `steps`. Initial input vectors
  uniform in ±0.5 / dim, output vectors zero.

Pairs are made on the host with numpy, vectorised over the stream (`make_pairs`,
about 20 M pairs/s), a chunk of the stream at a time (chunks cut at sentence ends,
their order and the pairs inside each shuffled every epoch), while the device runs
the previous step: one jitted call per step, dispatched asynchronously (on this
2-core CPU a `lax.scan` over 64 steps ran 2.5x slower per step than the Python
loop). At dim 300 a step is memory-bound: each pair gathers and scatter-adds
2 + K rows of 1.2 kB (measured on 2 shared CPU cores, batch 1024: about 0.2 M
pairs/s at dim 300, 0.5 M at dim 100; an epoch of the novels is about 41 M pairs).
Deterministic given the key on the CPU (on a GPU, scatter-add's float sums may be
ordered differently).
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

CHUNK_TOKENS = 1 << 20  # stream positions per chunk of pairs
MIN_RATE = 1e-4         # the learning rate's floor, as a fraction of the initial rate


def keep_probabilities(counts: np.ndarray, subsample: float) -> np.ndarray:
  """`[V]` float64: the probability of keeping one occurrence of each word (0 where the count
  is 0; 1 everywhere when `subsample <= 0`)."""
  counts = np.asarray(counts, np.float64)
  if subsample <= 0:
    return (counts > 0).astype(np.float64)
  f = counts / counts.sum()
  with np.errstate(divide="ignore", invalid="ignore"):
    keep = (np.sqrt(f / subsample) + 1) * subsample / f
  return np.where(counts > 0, np.minimum(keep, 1.0), 0.0)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
  """`[V]` float64: the noise distribution, counts ** power normalised."""
  weights = np.asarray(counts, np.float64) ** power
  return weights / weights.sum()


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Walker's alias table of `probs [V]` (Vose's construction): `(accept [V] float32,
  alias [V] int32)`; draw i uniform, u uniform in [0, 1): i if u < accept[i] else alias[i]."""
  V = len(probs)
  scaled = np.asarray(probs, np.float64) * V
  accept, alias = np.ones((V,), np.float64), np.arange(V, dtype=np.int32)
  small = [i for i in range(V) if scaled[i] < 1.0]
  large = [i for i in range(V) if scaled[i] >= 1.0]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1.0 - scaled[s]
    (small if scaled[l] < 1.0 else large).append(l)
  # Left over through rounding: they keep accept 1, except words of probability 0.
  zero = np.asarray(probs) <= 0
  accept[zero], alias[zero] = 0.0, int(np.argmax(probs))
  return accept.astype(np.float32), alias


def make_pairs(stream: np.ndarray, keep: np.ndarray, window: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Skip-gram pairs of one stretch of the stream, in stream order.

  Args:
    stream: `[T]` ids, -1 at sentence ends.
    keep: `[V]` probability of keeping an occurrence (`keep_probabilities`).
    window: the largest window; each kept position draws its own in {1..window}.
    rng: draws the subsampling and the windows.

  Returns:
    `(centres [P], contexts [P])` int32: each kept position with each kept word of its
    sentence at most its window away; grouped by distance, not in stream order.
  """
  stream = np.asarray(stream)
  word = stream >= 0
  kept = ~word | (rng.random(len(stream)) < keep[np.where(word, stream, 0)])
  s = stream[kept]                           # the subsampled stream, breaks kept
  sentence = np.cumsum(s < 0)                # a break starts the next sentence's count
  b = rng.integers(1, window + 1, len(s))    # each position's window
  centres, contexts = [], []
  n = len(s)
  for d in range(1, window + 1):
    i = np.arange(n - d)
    ok = (s[i] >= 0) & (s[i + d] >= 0) & (sentence[i] == sentence[i + d])
    right = i[ok & (d <= b[i])]              # centre i, context i + d
    left = i[ok & (d <= b[i + d])] + d       # centre i + d, context i
    centres += [right, left]
    contexts += [right + d, left - d]
  centres, contexts = np.concatenate(centres), np.concatenate(contexts)
  return s[centres].astype(np.int32), s[contexts].astype(np.int32)


def expected_pairs(stream: np.ndarray, counts: np.ndarray, window: int, subsample: float) -> float:
  """About how many pairs one epoch of `stream` makes (ignoring sentence ends, which cut
  windows: an upper bound): kept words x (window + 1)."""
  stream = np.asarray(stream)
  words = stream[stream >= 0]
  return float(keep_probabilities(counts, subsample)[words].sum() * (window + 1))


def _chunks(stream: np.ndarray, size: int) -> list[tuple[int, int]]:
  """`[lo, hi)` stretches of about `size` positions, each ending just after a -1 (or at the
  end)."""
  breaks = np.flatnonzero(stream < 0) + 1
  bounds, lo = [], 0
  while lo < len(stream):
    j = np.searchsorted(breaks, lo + size)
    hi = int(breaks[j]) if j < len(breaks) else len(stream)
    bounds.append((lo, hi))
    lo = hi
  return bounds


def pair_batches(stream: np.ndarray, keep: np.ndarray, window: int, batch_size: int,
                 rng: np.random.Generator, chunk_tokens: int = CHUNK_TOKENS
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless `(centres [B], contexts [B])` batches, epoch after epoch: each epoch the chunks
  in a new order, each chunk's pairs shuffled; pairs left over from a chunk start the next."""
  chunks = _chunks(np.asarray(stream), chunk_tokens)
  rest_c, rest_o = np.zeros((0,), np.int32), np.zeros((0,), np.int32)
  produced = False
  while True:
    for k in rng.permutation(len(chunks)):
      lo, hi = chunks[k]
      c, o = make_pairs(stream[lo:hi], keep, window, rng)
      perm = rng.permutation(len(c))
      c, o = np.concatenate([rest_c, c[perm]]), np.concatenate([rest_o, o[perm]])
      full = len(c) // batch_size * batch_size
      for j in range(0, full, batch_size):
        produced = True
        yield c[j:j + batch_size], o[j:j + batch_size]
      rest_c, rest_o = c[full:], o[full:]
    if not produced and len(rest_c) == 0:
      raise ValueError("the stream makes no skip-gram pairs")


def sgns_loss(u: jax.Array, v: jax.Array, v_neg: jax.Array, neg_mask: jax.Array | None = None
              ) -> jax.Array:
  """`[B]` negative-sampling losses: -log σ(u·v) - Σ_k mask_k log σ(-u·v_k).

  Args:
    u: `[B, D]` input vectors of the centres.
    v: `[B, D]` output vectors of the contexts.
    v_neg: `[B, K, D]` output vectors of the noise words.
    neg_mask: `[B, K]` 1 for the noise words that count (default: all).
  """
  positive = jax.nn.log_sigmoid(jnp.sum(u * v, axis=-1))
  negative = jax.nn.log_sigmoid(-jnp.einsum("bd,bkd->bk", u, v_neg))
  if neg_mask is not None:
    negative = negative * neg_mask
  return -(positive + jnp.sum(negative, axis=-1))


def _sample_noise(key, accept, alias, shape):
  k_index, k_coin = jax.random.split(key)
  i = jax.random.randint(k_index, shape, 0, accept.shape[0])
  return jnp.where(jax.random.uniform(k_coin, shape) < accept[i], i, alias[i])


def sgns_rows(u, v, v_neg, neg_mask):
  """The summed loss of a batch and its gradients with respect to its rows, written out:
  with a = σ(u·v) - 1 and b_k = mask_k σ(u·v_k),
  dL/du = a v + Σ_k b_k v_k, dL/dv = a u, dL/dv_k = b_k u (`sgns_loss`'s gradient, fewer
  passes over the `[B, K, D]` rows than autodiff makes on the CPU).

  Returns:
    `(loss, g_u [B, D], g_v [B, D], g_neg [B, K, D])`.
  """
  positive = jnp.sum(u * v, axis=-1)                       # [B]
  negative = jnp.einsum("bd,bkd->bk", u, v_neg)            # [B, K]
  loss = -(jnp.sum(jax.nn.log_sigmoid(positive))
           + jnp.sum(neg_mask * jax.nn.log_sigmoid(-negative)))
  a = jax.nn.sigmoid(positive) - 1.0                        # [B]
  b = jax.nn.sigmoid(negative) * neg_mask                   # [B, K]
  g_u = a[:, None] * v + jnp.einsum("bk,bkd->bd", b, v_neg)
  return loss, g_u, a[:, None] * u, b[:, :, None] * u[:, None, :]


@functools.partial(jax.jit, static_argnames=("negatives",), donate_argnums=(0,))
def sgd_step(table, centres, contexts, rate, key, accept, alias, *, negatives: int):
  """One SGD step on a batch of pairs.

  Args:
    table: `[2V, D]` the input vectors (rows `[0, V)`) above the output vectors (rows
      `[V, 2V)`), one array so a step makes one gather and one scatter-add (donated).
    centres, contexts: `[B]` int32 ids in `[0, V)`.
    rate: the learning rate.
    key: the step's key (its noise words).
    accept, alias: `[V]` the noise distribution's alias table (`alias_table`).
    negatives: K, noise words per pair.

  Returns:
    `(table, loss)`: the updated table and the mean loss per pair before the update.
  """
  V = accept.shape[0]
  B, D = centres.shape[0], table.shape[1]
  noise = _sample_noise(key, accept, alias, (B, negatives))                # [B, K]
  mask = (noise != contexts[:, None]).astype(table.dtype)
  rows = jnp.concatenate([centres, V + contexts, V + noise.reshape(-1)])  # [B (2 + K)]
  gathered = table[rows]
  u, v = gathered[:B], gathered[B:2 * B]
  v_neg = gathered[2 * B:].reshape(B, negatives, D)
  loss, g_u, g_v, g_neg = sgns_rows(u, v, v_neg, mask)
  update = jnp.concatenate([g_u, g_v, g_neg.reshape(B * negatives, D)])
  return table.at[rows].add(-rate * update), loss / B


def _numpy_rng(key) -> np.random.Generator:
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def train(token_ids: np.ndarray, counts: np.ndarray, *, steps: int, key, dim: int = 300,
          window: int = 5, negatives: int = 5, subsample: float = 1e-4, batch_size: int = 1024,
          learning_rate: float = 0.025, progress: bool = True, log: list | None = None,
          log_every: int = 100) -> np.ndarray:
  """Skip-gram word vectors with negative sampling (module docstring).

  Args:
    token_ids: `[T]` ids in `[0, V)`, -1 ending each sentence (`Corpus.word_stream`).
    counts: `[V]` counts of each id; a word of count 0 (the reserved ids) is never used.
    steps: SGD steps of `batch_size` pairs (`expected_pairs` / batch_size is about an epoch).
    key: the PRNG key; the result is a function of it.
    dim, window, negatives, subsample, learning_rate: word2vec's -size, -window, -negative,
      -sample, -alpha.
    progress: a tqdm bar (pairs per second).
    log: if a list, `(step, mean loss per pair over the last log_every steps)` tuples are
      appended to it at the end.

  Returns:
    `[V, dim]` float32 input vectors (what word2vec writes out); rows of unused words keep
    their small random initial values.
  """
  counts = np.asarray(counts)
  V = len(counts)
  k_init, k_noise, k_host = jax.random.split(key, 3)
  rng = _numpy_rng(k_host)
  table = jnp.concatenate([
      jax.random.uniform(k_init, (V, dim), jnp.float32, -0.5 / dim, 0.5 / dim),
      jnp.zeros((V, dim), jnp.float32)])                                   # [2V, dim]
  accept, alias = map(jnp.asarray, alias_table(noise_distribution(counts)))
  batches = pair_batches(np.asarray(token_ids), keep_probabilities(counts, subsample), window,
                         batch_size, rng)
  rates = learning_rate * np.maximum(MIN_RATE, 1.0 - np.arange(steps) / steps)
  losses = []
  bar = tqdm(total=steps * batch_size, desc="word vectors", unit="pair", unit_scale=True,
             disable=not progress, mininterval=1.0)
  for step in range(steps):  # steps dispatch asynchronously: pairs are made while one runs
    centres, contexts = next(batches)
    table, loss = sgd_step(table, centres, contexts, np.float32(rates[step]),
                           jax.random.fold_in(k_noise, step), accept, alias,
                           negatives=negatives)
    if log is not None:
      losses.append(loss)
    if step % 64 == 63 or step == steps - 1:
      bar.update((step + 1) * batch_size - bar.n)
  bar.close()
  if log is not None:
    values = np.array(jax.device_get(losses), np.float64)  # one transfer, no compile
    log.extend((min(lo + log_every, steps), float(values[lo:lo + log_every].mean()))
               for lo in range(0, steps, log_every))
  return np.asarray(table[:V])


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
  """`vectors [N, D]` with unit rows (zero rows stay zero)."""
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / np.maximum(norms, 1e-12)


def nearest(vectors: np.ndarray, query: int, k: int = 10) -> np.ndarray:
  """`[k]` the rows nearest `vectors[query]` by cosine, nearest first, the query left out."""
  unit = normalize_rows(vectors)
  scores = unit @ unit[query]
  scores[query] = -np.inf
  top = np.argpartition(-scores, k)[:k]
  return top[np.argsort(-scores[top], kind="stable")]
