r"""SentEval-style evaluation of sentence encoders: the skip-thought paper's seven tasks.

Kiros et al. 2015 (Tables 3-5) score a frozen encoder by training only a linear model on its
vectors. This module reads the tasks' original files and runs those protocols, following the
paper's code (skip-thoughts' eval_classification.py, eval_trec.py, eval_sick.py,
eval_msrp.py) and SentEval (senteval/tools/validation.py, relatedness.py):

    encode(sentences: list[str]) -> [N, D]      any callable; raw text, stripped; it tokenizes
    MR CR SUBJ MPQA   binary; 10-fold stratified cross-validation; per outer fold, C is chosen
                      on that fold's training part only (inner validation), then a logistic
                      regression is fitted on the whole training part; mean test accuracy (%)
    TREC              6 coarse classes; C by stratified k-fold CV on train; test accuracy (%)
    SICK              relatedness 1-5; [|u - v|, u * v] -> softmax over 5 scores, trained on
                      the Tree-LSTM target distribution with Adam (JAX), early stopping on the
                      trial split's Pearson r; test Pearson r, Spearman rho, MSE
    MSRP              paraphrase; [|u - v|, u * v]; C by k-fold CV (F1) on train; test
                      accuracy and F1 (%)

Usage:

    results = evaluate({"combine-skip": encode}, data_dir)   # data_dir/senteval/<files>
    print(format_table(results))                              # beside the paper's row

Every classifier is sklearn's `LogisticRegression` (lbfgs, L2 penalty, inverse strength C) on
standardized features: zero mean and unit variance with statistics of the training part only
(the outer fold's training part, TREC's or MSRP's train split, SICK's train split), applied to
everything else. Standardizing is our choice, not the paper's (liblinear on raw vectors, C in
2^0..2^8): lbfgs then converges in tens of iterations whatever the encoder's scale, and one C
grid (`C_GRID`, 2^-16..2^2; small C tends to the class-centroid classifier) suits any encoder.

Cost. The paper's nested grid (10 outer x 10 inner folds x 9 values of C: 900 fits per task)
is too slow for D = 2,400 on two cores. The defaults (`Protocol`) keep its rule, C chosen per
outer fold from that fold's training part alone, with a 3-fold inner cross-validation; C runs
along a warm-started path (increasing, each fit starting from the last) and the final fit
starts from the inner fit at the chosen C; lbfgs tol 1e-3; BLAS on one thread. Measured on two
shared cores (load ~8-9), a hashed bag of words with D = 2,400 on all seven tasks, encoding
excluded: 91 s of CPU, 138 s wall with the defaults (`inner_folds=3, inner_splits=3`,
`cv_folds=10`; 78 s CPU / 115 s wall for random D = 2,400 vectors); 58 s CPU with
`inner_folds=5, inner_splits=1` (a single held-out fifth). With `cv_folds=5`, the full inner
5-fold CV took 117 s CPU, the default 81 s, the single fifth 44 s; the test accuracies moved
by at most 0.5 points between the three.

Data (`data_dir/senteval/`, see the data README): the loaders read the full files, split on
"\n" only (latin-1 MR and SUBJ hold byte 0x85, NEL, which `str.splitlines` would break on),
and strip each line. CR's and MPQA's files hold 4 and 3 blank lines within their line counts
(2,407 + 1,368 and 3,312 + 7,294): `load_binary` returns them as "", and the evaluation leaves
them out (3,771 and 10,603 sentences) as the paper's dataset_handler.py does, so an encoder
never receives an empty sentence (`Protocol(drop_empty=False)`: SentEval's 3,775 and 10,606).
SICK and MSRP have no header row here (the paper's loaders drop the first line of the
originals, which had one); a header, if present, is skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import warnings
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from experiments.common import UserError

Encoder = Callable[[list[str]], np.ndarray]

TASKS = ("MR", "CR", "SUBJ", "MPQA", "TREC", "SICK", "MSRP")
BINARY_TASKS = ("MR", "CR", "SUBJ", "MPQA")
# task -> (file of label 1, file of label 0)
BINARY_FILES = {
    "MR": ("rt-polarity.pos", "rt-polarity.neg"),
    "CR": ("custrev.pos", "custrev.neg"),
    "SUBJ": ("subj.objective", "subj.subjective"),      # as the paper's code and SentEval
    "MPQA": ("mpqa.pos", "mpqa.neg"),
}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")   # label = index (SentEval's order)
SICK_FILES = {"train": "SICK_train.txt", "trial": "SICK_trial.txt",
              "test": "SICK_test_annotated.txt"}
MSRP_FILES = {"train": "msr_paraphrase_train.txt", "test": "msr_paraphrase_test.txt"}
SICK_SCORES = np.arange(1, 6, dtype=np.float32)                 # the 5 relatedness classes

# The paper's combine-skip rows (Kiros et al. 2015, Tables 3-5); accuracies and F1 in %.
PAPER = {
    "MR": {"acc": 76.5}, "CR": {"acc": 80.1}, "SUBJ": {"acc": 93.6}, "MPQA": {"acc": 87.1},
    "TREC": {"acc": 92.2},
    "SICK": {"pearson": 0.8584, "spearman": 0.7916, "mse": 0.2687},
    "MSRP": {"acc": 73.0, "f1": 82.0},
}
# (task, metric, column title, format) of `format_table`.
COLUMNS = (
    ("MR", "acc", "MR", "{:.1f}"), ("CR", "acc", "CR", "{:.1f}"),
    ("SUBJ", "acc", "SUBJ", "{:.1f}"), ("MPQA", "acc", "MPQA", "{:.1f}"),
    ("TREC", "acc", "TREC", "{:.1f}"),
    ("SICK", "pearson", "SICK r", "{:.4f}"), ("SICK", "spearman", "SICK ρ", "{:.4f}"),
    ("SICK", "mse", "SICK MSE", "{:.4f}"),
    ("MSRP", "acc", "MSRP acc", "{:.1f}"), ("MSRP", "f1", "MSRP F1", "{:.1f}"),
)

C_GRID = tuple(4.0**k for k in range(-8, 2))   # 2^-16 .. 2^2, on standardized features


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How the linear models are chosen and trained (defaults: see the module docstring).

  Attributes:
    folds: outer stratified cross-validation folds of MR, CR, SUBJ, MPQA (the paper: 10).
    inner_folds: the outer training part is split into this many stratified inner folds...
    inner_splits: ...and the first `inner_splits` of them each hold one out to score the C
      grid (`inner_folds`: full inner cross-validation; 1: a single held-out fold).
    cv_folds: stratified folds on train choosing C for TREC and MSRP, all used (the paper: 10).
    c_grid: inverse L2 strengths tried, fitted in increasing order with warm starts.
    standardize: scale features to zero mean, unit variance on the rows being fitted.
    max_iter, tol: lbfgs limits of every `LogisticRegression` fit.
    sick_lr, sick_batch_size, sick_max_epochs, sick_patience: SICK's Adam learning rate,
      minibatch, epoch cap, and epochs without a better trial Pearson r before stopping.
    drop_empty: leave out the binary tasks' blank lines (CR has 4, MPQA 3), as the paper's
      dataset_handler.py does; False scores them as "" sentences, as SentEval does.
    blas_threads: BLAS threads while a task is scored (None: the library's default). lbfgs
      makes many small matrix-vector products; on two cores shared with other jobs OpenBLAS'
      spinning threads made each fit 12x slower than one thread (1.25 s against 0.10 s).
  """
  folds: int = 10
  inner_folds: int = 3
  inner_splits: int = 3
  cv_folds: int = 10
  c_grid: tuple[float, ...] = C_GRID
  standardize: bool = True
  max_iter: int = 200
  tol: float = 1e-3
  sick_lr: float = 1e-3
  sick_batch_size: int = 64
  sick_max_epochs: int = 300
  sick_patience: int = 10
  drop_empty: bool = True
  blas_threads: int | None = 1


# ---------------------------------------------------------------------------------------------
# Loaders


def task_path(data_dir: str, name: str) -> str:
  """`data_dir/senteval/name`, or a UserError naming what is missing."""
  path = os.path.join(data_dir, "senteval", name)
  if not os.path.exists(path):
    raise UserError(f"data_dir={data_dir}: senteval/{name} not found there")
  return path


def read_lines(path: str, encoding: str) -> list[str]:
  r"""Every line of a file, decoded, without its line end; a final newline adds no line.

  Splits on "\n" only: latin-1 text may hold U+0085 (NEL), which `str.splitlines` breaks on.
  A UTF-8 byte-order mark is dropped.
  """
  with open(path, "rb") as f:
    text = f.read().decode(encoding)
  text = text.removeprefix("\ufeff")
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line.removesuffix("\r") for line in lines]


def load_binary(data_dir: str, task: str, *,
                drop_empty: bool = False) -> tuple[list[str], np.ndarray]:
  """MR, CR, SUBJ or MPQA: (sentences, labels [N] int: 1 for pos / objective, then 0).

  Sentences come in file order, label-1 file first. Every line is read: blank lines (CR has 4,
  MPQA 3) are "" unless `drop_empty`.
  """
  if task not in BINARY_FILES:
    raise ValueError(f"unknown binary task {task!r}; expected one of {BINARY_TASKS}")
  sentences, labels = [], []
  for label, name in zip((1, 0), BINARY_FILES[task]):
    lines = [line.strip() for line in read_lines(task_path(data_dir, name), "latin-1")]
    if drop_empty:
      lines = [line for line in lines if line]
    sentences += lines
    labels += [label] * len(lines)
  return sentences, np.asarray(labels, dtype=np.int64)


def load_trec(data_dir: str) -> dict[str, tuple[list[str], np.ndarray]]:
  """TREC: {"train", "test"} -> (questions, coarse labels [N] int indexing `TREC_CLASSES`)."""
  out = {}
  for split in ("train", "test"):
    path = task_path(data_dir, f"TREC.{split}")
    sentences, labels = [], []
    for number, line in enumerate(read_lines(path, "latin-1"), 1):
      tag, _, question = line.strip().partition(" ")
      coarse = tag.split(":")[0]
      if coarse not in TREC_CLASSES or not question.strip():
        raise ValueError(f"{path}:{number}: expected 'COARSE:fine question', got {line!r}")
      sentences.append(question.strip())
      labels.append(TREC_CLASSES.index(coarse))
    out[split] = (sentences, np.asarray(labels, dtype=np.int64))
  return out


def _tab_rows(path: str, width: int, header_test: Callable[[list[str]], bool]) -> list[list[str]]:
  """A tab-separated file's rows of `width` stripped fields; a first row that `header_test`
  calls a header is dropped. No quoting: quotes inside sentences are text."""
  rows = [[field.strip() for field in line.split("\t")]
          for line in read_lines(path, "utf-8-sig")]
  if rows and header_test(rows[0]):
    rows = rows[1:]
  for number, row in enumerate(rows, 1):
    if len(row) != width:
      raise ValueError(f"{path}: row {number} has {len(row)} fields, expected {width}")
  return rows


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _sick_header(row: list[str]) -> bool:
  return len(row) > 3 and not _is_number(row[3])       # "pair_ID ... relatedness_score ..."


def load_sick(data_dir: str) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
  """SICK relatedness: {"train", "trial", "test"} -> (sentences A, sentences B, score [N])."""
  out = {}
  for split, name in SICK_FILES.items():
    rows = _tab_rows(task_path(data_dir, name), 5, _sick_header)
    out[split] = ([row[1] for row in rows], [row[2] for row in rows],
                  np.asarray([float(row[3]) for row in rows], dtype=np.float32))
  return out


def _msrp_header(row: list[str]) -> bool:
  return row[0] not in ("0", "1")                      # "Quality #1 ID #2 ID ..."


def load_msrp(data_dir: str) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
  """MSRP: {"train", "test"} -> (sentences 1, sentences 2, labels [N] int, 1 = paraphrase)."""
  out = {}
  for split, name in MSRP_FILES.items():
    rows = _tab_rows(task_path(data_dir, name), 5, _msrp_header)
    out[split] = ([row[3] for row in rows], [row[4] for row in rows],
                  np.asarray([int(row[0]) for row in rows], dtype=np.int64))
  return out


# ---------------------------------------------------------------------------------------------
# Features


def encode_unique(encode: Encoder, groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
  """Encodes every distinct sentence of `groups` in one call; returns one `[N_g, D]` float32
  array per group, rows in the group's order."""
  unique = list(dict.fromkeys(s for group in groups for s in group))
  vectors = np.asarray(encode(unique), dtype=np.float32)
  if vectors.ndim != 2 or vectors.shape[0] != len(unique):
    raise ValueError(f"encode: expected [{len(unique)}, D] for {len(unique)} sentences, "
                     f"got shape {vectors.shape}")
  index = {s: i for i, s in enumerate(unique)}
  return [vectors[np.asarray([index[s] for s in group], dtype=np.int64)] for group in groups]


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """[|u - v|, u * v]: `[N, D]` x 2 -> `[N, 2D]` (Tai et al.'s pair features)."""
  return np.concatenate([np.abs(u - v), u * v], axis=1)


# ---------------------------------------------------------------------------------------------
# Logistic regression: folds, scaling, choosing C


def stratified_folds(labels: np.ndarray, k: int = 10,
                     seed: int = 1234) -> list[tuple[np.ndarray, np.ndarray]]:
  """k (train_idx, test_idx) pairs, shuffled with `seed`, stratified by label; the test
  folds partition range(N)."""
  splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
  labels = np.asarray(labels)
  return list(splitter.split(np.zeros((len(labels), 1)), labels))


class Scaling(NamedTuple):
  """x -> (x - mean) / scale, per feature."""
  mean: np.ndarray       # [D]
  scale: np.ndarray      # [D]

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return ((x - self.mean) / self.scale).astype(np.float32)


def fit_scaling(x: np.ndarray, standardize: bool = True) -> Scaling:
  """The standardization of `x [N, D]`'s rows (zero mean, unit variance; constant features
  only centred), or the identity when not `standardize`."""
  if not standardize:
    return Scaling(np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32))
  x = np.asarray(x, np.float32)
  mean = x.mean(axis=0)
  squares = np.zeros(x.shape[1], np.float64)
  for start in range(0, len(x), 1024):       # in row blocks: no [N, D] temporaries
    centred = x[start:start + 1024] - mean
    squares += np.einsum("nd,nd->d", centred, centred)
  scale = np.sqrt(squares / len(x)).astype(np.float32)
  return Scaling(mean, np.where(scale > 0, scale, 1.0).astype(np.float32))


class Init(NamedTuple):
  """A warm start: a fitted model's coefficients."""
  coef: np.ndarray          # [1, D] (binary) or [classes, D]
  intercept: np.ndarray     # [1] or [classes]


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float, *, seed: int, protocol: Protocol,
               init: Init | None = None) -> LogisticRegression:
  """sklearn's lbfgs `LogisticRegression(C=c)` fitted on `x [N, D]`, `y [N]`, started from
  `init` (else from zero); hitting `protocol.max_iter` is not reported."""
  model = LogisticRegression(C=c, max_iter=protocol.max_iter, tol=protocol.tol,
                             warm_start=init is not None, random_state=seed)
  if init is not None:
    model.coef_, model.intercept_ = init.coef.copy(), init.intercept.copy()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    return model.fit(x, y)


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
  return float(np.mean(y == predicted))


def binary_f1(y: np.ndarray, predicted: np.ndarray) -> float:
  return float(f1_score(y, predicted))


class CChoice(NamedTuple):
  c: float
  score: float        # mean held-out metric at c
  init: Init          # the first held-out split's model at c: the final fit's warm start


def select_c(x: np.ndarray, y: np.ndarray, *, folds: int, splits: int, seed: int,
             protocol: Protocol, metric=accuracy) -> CChoice:
  """Chooses C from `protocol.c_grid` using only (x, y).

  The rows are cut into `folds` stratified folds (shuffled with `seed`); each of the first
  `splits` is held out in turn while the grid is fitted on the rest, C ascending, each fit
  warm-started from the previous C's. Ties go to the smaller C.
  """
  grid = sorted(protocol.c_grid)
  scores = np.zeros((splits, len(grid)))
  inits = []
  for s, (train, held_out) in enumerate(stratified_folds(y, folds, seed)[:splits]):
    x_train, y_train, init = x[train], y[train], None
    for j, c in enumerate(grid):
      model = fit_logreg(x_train, y_train, c, seed=seed, protocol=protocol, init=init)
      init = Init(model.coef_, model.intercept_)
      scores[s, j] = metric(y[held_out], model.predict(x[held_out]))
      if s == 0:
        inits.append(init)
  best = int(np.argmax(scores.mean(axis=0)))
  return CChoice(grid[best], float(scores.mean(axis=0)[best]), inits[best])


def choose_and_fit(x_train: np.ndarray, y_train: np.ndarray, *, folds: int, splits: int,
                   seed: int, protocol: Protocol,
                   metric=accuracy) -> tuple[Scaling, LogisticRegression, CChoice]:
  """Standardizes on `x_train [N, D]`, chooses C there (`select_c`), fits all of it.

  Only (x_train, y_train) are seen: the scaling statistics, the C search (whose held-out
  splits are scaled with the whole training part's statistics) and the final fit.

  Returns:
    (the scaling, the fitted model, the C choice); predict with `model.predict(scaling(x))`.
  """
  scaling = fit_scaling(x_train, protocol.standardize)
  x_train = scaling(x_train)
  choice = select_c(x_train, y_train, folds=folds, splits=splits, seed=seed,
                    protocol=protocol, metric=metric)
  model = fit_logreg(x_train, y_train, choice.c, seed=seed, protocol=protocol,
                     init=choice.init)
  return scaling, model, choice


def nested_cv_accuracy(x: np.ndarray, y: np.ndarray, *, seed: int,
                       protocol: Protocol) -> dict[str, float]:
  """The binary tasks' protocol on features `x [N, D]`, labels `y [N]`.

  For each of `protocol.folds` stratified outer folds (seeded with `seed`): `choose_and_fit`
  on the fold's training part (inner folds seeded with seed + 1), accuracy on its test part,
  which is never fitted, scaled from nor used to choose C.

  Returns:
    {"acc": mean test accuracy (%), "acc_std": its std over folds (%), "dev_acc": mean inner
    held-out accuracy at the chosen C (%), "log2_c": mean log2 of the chosen C}.
  """
  accs, devs, cs = [], [], []
  for train, test in stratified_folds(y, protocol.folds, seed):
    scaling, model, choice = choose_and_fit(
        x[train], y[train], folds=protocol.inner_folds, splits=protocol.inner_splits,
        seed=seed + 1, protocol=protocol)
    accs.append(accuracy(y[test], model.predict(scaling(x[test]))))
    devs.append(choice.score)
    cs.append(math.log2(choice.c))
  return {"acc": 100 * float(np.mean(accs)), "acc_std": 100 * float(np.std(accs)),
          "dev_acc": 100 * float(np.mean(devs)), "log2_c": float(np.mean(cs))}


# ---------------------------------------------------------------------------------------------
# SICK relatedness: Tai et al.'s softmax over scores


def score_distribution(scores: np.ndarray) -> np.ndarray:
  """Tai et al.'s target: scores `[N]` in [1, 5] -> `[N, 5]`, p_i = max(0, 1 - |y - i|).

  That is p_{floor(y)+1} = y - floor(y), p_{floor(y)} = floor(y) - y + 1, 0 elsewhere; its mean
  sum_i i p_i is y.
  """
  scores = np.asarray(scores, dtype=np.float32)
  return np.maximum(0.0, 1.0 - np.abs(scores[:, None] - SICK_SCORES[None, :]))


def expected_score(probs):
  """sum_i i * p_i: `[N, 5]` -> `[N]` (numpy or jax arrays)."""
  return probs @ SICK_SCORES


class RelatednessModel(NamedTuple):
  """A fitted SICK model: softmax(scaling(x) @ w + b) over the 5 scores."""
  w: np.ndarray          # [F, 5]
  b: np.ndarray          # [5]
  scaling: Scaling       # of the training pairs' features
  epochs: int            # epochs trained when the best trial Pearson r was reached
  dev_pearson: float


def _logits(params, x):
  return x @ params["w"] + params["b"]                     # [N, F] -> [N, 5]


def _kl_loss(params, x, target, weight):
  """Weighted mean KL(target || softmax(logits)) over rows: `[B, F]`, `[B, 5]`, `[B]`."""
  log_p = jax.nn.log_softmax(_logits(params, x))
  kl = jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_p, axis=-1)
  return jnp.sum(weight * kl) / jnp.sum(weight)


@functools.partial(jax.jit, static_argnames=("optimizer", "batch_size"))
def _train_epoch(params, opt_state, key, x, target, *, optimizer, batch_size):
  """One epoch of Adam over a fresh permutation (the last batch padded with weight 0)."""
  n = x.shape[0]
  num_batches = -(-n // batch_size)
  order = jax.random.permutation(key, n)
  order = jnp.resize(order, num_batches * batch_size).reshape(num_batches, batch_size)
  weight = (jnp.arange(num_batches * batch_size) < n).astype(x.dtype)
  weight = weight.reshape(num_batches, batch_size)

  def step(carry, batch):
    params, opt_state = carry
    rows, w = batch
    grads = jax.grad(_kl_loss)(params, x[rows], target[rows], w)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), (order, weight))
  return params, opt_state


@jax.jit
def _predict_scores(params, x):
  return expected_score(jax.nn.softmax(_logits(params, x)))


def pearson(a, b) -> float:
  return float(stats.pearsonr(np.asarray(a, np.float64), np.asarray(b, np.float64))[0])


def fit_relatedness(x_train: np.ndarray, scores_train: np.ndarray, x_dev: np.ndarray,
                    scores_dev: np.ndarray, *, seed: int, protocol: Protocol) -> RelatednessModel:
  """Trains the softmax layer on `x_train [N, F]`, stopping early on Pearson r of `x_dev`.

  The target is `score_distribution`, the loss KL(p || p_hat), the optimizer Adam; after each
  epoch the dev Pearson r of sum_i i p_hat_i is measured, and training stops after
  `sick_patience` epochs without a better one (or `sick_max_epochs`).

  Returns:
    the parameters of the best dev epoch.
  """
  scaling = fit_scaling(x_train, protocol.standardize)
  x, dev = jnp.asarray(scaling(x_train)), jnp.asarray(scaling(x_dev))
  target = jnp.asarray(score_distribution(scores_train))
  params = {"w": jnp.zeros((x.shape[1], 5), jnp.float32), "b": jnp.zeros(5, jnp.float32)}
  optimizer = optax.adam(protocol.sick_lr)
  opt_state = optimizer.init(params)
  key = jax.random.key(seed)
  best, best_params, best_epoch = -np.inf, params, 0
  for epoch in range(1, protocol.sick_max_epochs + 1):
    params, opt_state = _train_epoch(params, opt_state, jax.random.fold_in(key, epoch), x,
                                     target, optimizer=optimizer,
                                     batch_size=protocol.sick_batch_size)
    r = pearson(_predict_scores(params, dev), scores_dev)
    if r > best:
      best, best_params, best_epoch = r, params, epoch
    elif epoch - best_epoch >= protocol.sick_patience:
      break
  return RelatednessModel(np.asarray(best_params["w"]), np.asarray(best_params["b"]), scaling,
                          best_epoch, best)


def predict_relatedness(model: RelatednessModel, x: np.ndarray) -> np.ndarray:
  """Predicted scores `[N]` in [1, 5] for pair features `x [N, F]`."""
  params = {"w": jnp.asarray(model.w), "b": jnp.asarray(model.b)}
  return np.asarray(_predict_scores(params, jnp.asarray(model.scaling(x))))


# ---------------------------------------------------------------------------------------------
# Tasks


def _evaluate_binary(task, encode, data_dir, seed, protocol):
  sentences, labels = load_binary(data_dir, task, drop_empty=protocol.drop_empty)
  (x,) = encode_unique(encode, [sentences])
  return nested_cv_accuracy(x, labels, seed=seed, protocol=protocol)


def _evaluate_trec(encode, data_dir, seed, protocol):
  data = load_trec(data_dir)
  x_train, x_test = encode_unique(encode, [data["train"][0], data["test"][0]])
  y_train, y_test = data["train"][1], data["test"][1]
  scaling, model, choice = choose_and_fit(x_train, y_train, folds=protocol.cv_folds,
                                          splits=protocol.cv_folds, seed=seed,
                                          protocol=protocol)
  return {"acc": 100 * accuracy(y_test, model.predict(scaling(x_test))),
          "dev_acc": 100 * choice.score, "log2_c": math.log2(choice.c)}


def _evaluate_msrp(encode, data_dir, seed, protocol):
  data = load_msrp(data_dir)
  a_train, b_train, a_test, b_test = encode_unique(
      encode, [data["train"][0], data["train"][1], data["test"][0], data["test"][1]])
  x_train, x_test = pair_features(a_train, b_train), pair_features(a_test, b_test)
  y_train, y_test = data["train"][2], data["test"][2]
  # The paper's eval_msrp.py chooses C by cross-validated F1.
  scaling, model, choice = choose_and_fit(x_train, y_train, folds=protocol.cv_folds,
                                          splits=protocol.cv_folds, seed=seed,
                                          protocol=protocol, metric=binary_f1)
  predicted = model.predict(scaling(x_test))
  return {"acc": 100 * accuracy(y_test, predicted), "f1": 100 * binary_f1(y_test, predicted),
          "dev_f1": 100 * choice.score, "log2_c": math.log2(choice.c)}


def _evaluate_sick(encode, data_dir, seed, protocol):
  data = load_sick(data_dir)
  splits = ("train", "trial", "test")
  vectors = encode_unique(encode, [side for split in splits for side in data[split][:2]])
  x = {split: pair_features(vectors[2 * i], vectors[2 * i + 1])
       for i, split in enumerate(splits)}
  model = fit_relatedness(x["train"], data["train"][2], x["trial"], data["trial"][2],
                          seed=seed, protocol=protocol)
  predicted, gold = predict_relatedness(model, x["test"]), data["test"][2]
  return {"pearson": pearson(predicted, gold),
          "spearman": float(stats.spearmanr(predicted, gold)[0]),
          "mse": float(np.mean((predicted.astype(np.float64) - gold) ** 2)),
          "dev_pearson": model.dev_pearson, "epochs": float(model.epochs)}


def evaluate_task(task: str, encode: Encoder, data_dir: str, *, seed: int = 1234,
                  protocol: Protocol = Protocol()) -> dict[str, float]:
  """Scores one encoder on one task (`TASKS`), reading `data_dir/senteval/`.

  Returns:
    metric -> value: "acc" (%) for MR, CR, SUBJ, MPQA, TREC; "pearson", "spearman", "mse"
    for SICK; "acc", "f1" (%) for MSRP; plus diagnostics (held-out scores, chosen C, epochs).
  """
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  with threadpool_limits(limits=protocol.blas_threads, user_api="blas"):
    if task in BINARY_TASKS:
      return _evaluate_binary(task, encode, data_dir, seed, protocol)
    if task == "TREC":
      return _evaluate_trec(encode, data_dir, seed, protocol)
    if task == "SICK":
      return _evaluate_sick(encode, data_dir, seed, protocol)
    return _evaluate_msrp(encode, data_dir, seed, protocol)


def evaluate(encoders: dict[str, Encoder], data_dir: str, tasks: Sequence[str] = TASKS, *,
             seed: int = 1234, protocol: Protocol = Protocol(),
             progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
  """Every encoder on every task, with a progress bar over (encoder, task).

  Returns:
    {encoder name: {task: {metric: value}}}, ready for `format_table`.
  """
  results = {name: {} for name in encoders}
  pairs = list(itertools.product(encoders, tasks))
  with tqdm(pairs, desc="senteval", disable=not progress) as bar:
    for name, task in bar:
      bar.set_postfix_str(f"{name} {task}")
      results[name][task] = evaluate_task(task, encoders[name], data_dir, seed=seed,
                                          protocol=protocol)
  return results


def format_table(results: dict[str, dict[str, dict[str, float]]],
                 paper: dict[str, dict[str, float]] | None = PAPER) -> str:
  """One markdown table: a row per encoder, then the paper's combine-skip row; a column per
  `COLUMNS` entry (accuracies and F1 in %); a missing value is left blank."""

  def row(name, tasks):
    cells = [fmt.format(tasks[task][metric]) if metric in tasks.get(task, {}) else ""
             for task, metric, _, fmt in COLUMNS]
    return "| " + " | ".join([name] + cells) + " |"

  lines = ["| encoder | " + " | ".join(title for _, _, title, _ in COLUMNS) + " |",
           "|---|" + "---:|" * len(COLUMNS)]
  lines += [row(name, tasks) for name, tasks in results.items()]
  if paper is not None:
    lines.append(row("combine-skip (paper)", paper))
  return "\n".join(lines)
