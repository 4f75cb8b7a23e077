"""Ranking losses that teach a per-step classifier activity progression (Ma et al. 2016).

Shugao Ma, Leonid Sigal, Stan Sclaroff, "Learning Activity Progression in LSTMs
for Activity Detection and Early Detection", CVPR 2016, pp. 1942-1950, Section 3.
The idea (the abstract): as a model observes more of an activity, the detection
score of the correct class, or the margin between it and the best other class,
should not decrease; a hinge penalises every step that breaks this.

Any per-step sequence classifier can use them: scores or probabilities
`p [B, T, K]` (the paper takes the softmax output), labels `y [B, T]` in
`0..K-1` (the background is a class like any other), and `lengths [B]`. With
`y_{t-1}` the previous step's label:

    δ_t      = 1 if y_{t-1} = y_t, -1 otherwise                 (-1: the activity changes at t)
    t_s      = the first step of the run of equal labels that holds t-1
    p*_t^y   = max_{t' ∈ [t_s, t-1]} p_{t'}^y                   (the best score so far in it)
    L_s^t    = max(0, -δ_t (p_t^{y_{t-1}} - p*_t^{y_{t-1}}))   (ranking loss on the score)

    m_t^y    = p_t^y - max_{y' ≠ y} p_t^{y'}                    (the discriminative margin)
    m*_t^y   = max_{t' ∈ [t_s, t-1]} m_{t'}^y
    L_m^t    = max(0, -δ_t (m_t^{y_{t-1}} - m*_t^{y_{t-1}}))   (ranking loss on the margin)

    L        = Σ_t (L_c^t + λ_r L_r^t),   L_c^t = -log p_t^{y_t},  L_r ∈ {L_s, L_m}

Inside an activity (δ = 1) the score (margin) of its class must not fall below
its maximum since the activity began; at the step where it ends (δ = -1) the
score (margin) of the class that just ended must not rise above that maximum.
At t = 0 there is no previous step and L_r^0 = 0. The running maxima p*, m*
are constants (`jax.lax.stop_gradient`): the gradient of L^t reaches p_t only,
e.g. ∂L_s^t/∂p_t^{y_{t-1}} = -δ_t when the hinge is active, else 0; through
m_t it is -δ_t on p_t^{y_{t-1}} and +δ_t on the best other class.

Padding: steps t >= lengths[b] score 0, and what they hold (scores, labels) is
read as zeros, so it changes no value and no gradient. A step's loss depends on
steps <= t only. `progression_loss` averages over the valid steps of the batch
(the paper writes a sum over t; the normalisation is this module's choice).

Sources. The title, venue and abstract are checked against public pages (the
two monotonicities; ranking losses added to the classification loss of the
LSTM). The equations above are transcribed from the paper's Section 3 as
recalled, not read here: no stored copy of that section could be found, nor a
public reimplementation. Unchecked as well: whether the paper treats the
background class, or the step where an activity changes, in any way beyond
δ_t = -1, and its value of λ_r. Here the background is an ordinary class and λ_r the caller's choice.

    probs = jax.nn.softmax(logits)                               # [B, T, K]
    per_step = detection_score_ranking_loss(probs, labels, lengths)  # [B, T]
    loss, parts = progression_loss(logits, labels, lengths, kind="margin", lambda_r=1.0)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _check(scores, labels, lengths, scores_name: str) -> None:
  """`scores [B, T, K]` floats, `labels [B, T]` and `lengths [B]` integers."""
  if not hasattr(scores, "shape") or len(scores.shape) != 3:
    raise ValueError(f"{scores_name}: expected [B, T, K], got shape "
                     f"{getattr(scores, 'shape', type(scores).__name__)}")
  if not jnp.issubdtype(scores.dtype, jnp.floating):
    raise ValueError(f"{scores_name}: expected floats, got dtype {scores.dtype}")
  B, T, _ = scores.shape
  if tuple(labels.shape) != (B, T):
    raise ValueError(f"labels: expected shape [B, T]=({B}, {T}) to match {scores_name} "
                     f"{tuple(scores.shape)}, got {tuple(labels.shape)}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels: expected integer classes, got dtype {labels.dtype}")
  if tuple(lengths.shape) != (B,):
    raise ValueError(f"lengths: expected shape [B]=({B},) to match {scores_name} "
                     f"{tuple(scores.shape)}, got {tuple(lengths.shape)}")
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise ValueError(f"lengths: expected integers, got dtype {lengths.dtype}")


def valid_steps(lengths, num_steps: int) -> Array:
  """`[B, T]` bool: step t of sequence b is real (t < lengths[b]), not padding."""
  return jnp.arange(num_steps)[None, :] < jnp.asarray(lengths)[:, None]


def _segment_running_max(values, starts):
  """The maximum of `values [B, T]` from the start of each segment up to and including
  each step; a segment begins wherever `starts [B, T]` is True (and at t = 0).

  A segmented scan with the associative operator
  (a, s_a) ∘ (b, s_b) = (b if s_b else max(a, b), s_a or s_b).
  """

  def combine(left, right):
    left_max, left_start = left
    right_max, right_start = right
    merged = jnp.where(right_start, right_max, jnp.maximum(left_max, right_max))
    return merged, left_start | right_start

  running_max, _ = jax.lax.associative_scan(combine, (values, starts), axis=1)
  return running_max


def _progression_hinge(value_of: Callable[[Array], Array], labels, lengths) -> Array:
  """The form L_s and L_m share (module docstring), for any per-step value v:

      L^t = max(0, -δ_t (v_t^{y_{t-1}} - max_{t' ∈ [t_s, t-1]} v_{t'}^{y_{t-1}})).

  Args:
    value_of: `value_of(classes [B, T]) -> [B, T]`, v_t^{classes[b, t]} at every step.
    labels: `[B, T]` integer classes, zero past each length.
    lengths: `[B]`.

  Returns:
    `[B, T]`, 0 at t = 0 and past each length.
  """
  B, T = labels.shape
  previous = jnp.concatenate([labels[:, :1], labels[:, :-1]], axis=1)  # y_{t-1}; t=0: y_0
  changes = labels != previous                                         # δ_t = -1
  delta = jnp.where(changes, -1.0, 1.0)
  # Within a run of equal labels y_{t'} = y_{t-1}, so the running max of each step's own
  # class value, restarted where the label changes, is v* for the next step.
  own = value_of(labels)                                               # v_t^{y_t}     [B, T]
  best = _segment_running_max(own, changes.at[:, 0].set(True))         # over [t_s, t] [B, T]
  best_before = jnp.concatenate([best[:, :1], best[:, :-1]], axis=1)   # over [t_s, t-1]
  best_before = jax.lax.stop_gradient(best_before)
  current = value_of(previous)                                         # v_t^{y_{t-1}} [B, T]
  loss = jax.nn.relu(-delta.astype(current.dtype) * (current - best_before))
  has_previous = (jnp.arange(T) >= 1)[None, :] & valid_steps(lengths, T)
  return jnp.where(has_previous, loss, 0.0)


def _zero_padding(scores, labels, lengths):
  """Scores and labels past each length read as zeros: no value or gradient leaks."""
  valid = valid_steps(lengths, labels.shape[1])
  return jnp.where(valid[..., None], scores, 0.0), jnp.where(valid, labels, 0)


def _class_score(probs, classes):
  """p_t^{classes[b, t]}: `[B, T, K]`, `[B, T]` -> `[B, T]`."""
  return jnp.take_along_axis(probs, classes[..., None], axis=-1)[..., 0]


def detection_score_ranking_loss(probs, labels, lengths) -> Array:
  """L_s^t, the ranking loss on the detection score (module docstring).

      L_s^t = max(0, -δ_t (p_t^{y_{t-1}} - max_{t' ∈ [t_s, t-1]} p_{t'}^{y_{t-1}}))

  Args:
    probs: `[B, T, K]` per-step class scores (the paper: softmax probabilities).
    labels: `[B, T]` integer classes in `0..K-1`.
    lengths: `[B]` valid steps per sequence; later steps are padding.

  Returns:
    `[B, T]` per-step losses: 0 at t = 0 and past each length. The running max is a
    constant to the gradient.
  """
  probs, labels, lengths = jnp.asarray(probs), jnp.asarray(labels), jnp.asarray(lengths)
  _check(probs, labels, lengths, "probs")
  probs, labels = _zero_padding(probs, labels, lengths)
  return _progression_hinge(lambda classes: _class_score(probs, classes), labels, lengths)


def class_margin(probs, classes) -> Array:
  """m_t^c = p_t^c - max_{y' ≠ c} p_t^{y'} for one class c per step.

  Args:
    probs: `[B, T, K]`, K >= 2.
    classes: `[B, T]` integer classes.

  Returns:
    `[B, T]`.
  """
  is_class = classes[..., None] == jnp.arange(probs.shape[-1])        # [B, T, K]
  best_other = jnp.max(jnp.where(is_class, -jnp.inf, probs), axis=-1)  # [B, T]
  return _class_score(probs, classes) - best_other


def margin_ranking_loss(probs, labels, lengths) -> Array:
  """L_m^t, the ranking loss on the discriminative margin (module docstring).

      m_t^y = p_t^y - max_{y' ≠ y} p_t^{y'}
      L_m^t = max(0, -δ_t (m_t^{y_{t-1}} - max_{t' ∈ [t_s, t-1]} m_{t'}^{y_{t-1}}))

  Args:
    probs: `[B, T, K]` per-step class scores (the paper: softmax probabilities), K >= 2.
    labels: `[B, T]` integer classes in `0..K-1`.
    lengths: `[B]` valid steps per sequence; later steps are padding.

  Returns:
    `[B, T]` per-step losses: 0 at t = 0 and past each length. The running max is a
    constant to the gradient.
  """
  probs, labels, lengths = jnp.asarray(probs), jnp.asarray(labels), jnp.asarray(lengths)
  _check(probs, labels, lengths, "probs")
  if probs.shape[-1] < 2:
    raise ValueError(f"probs: the margin needs K >= 2 classes, got K={probs.shape[-1]}")
  probs, labels = _zero_padding(probs, labels, lengths)
  return _progression_hinge(lambda classes: class_margin(probs, classes), labels, lengths)


RANKING_LOSSES: dict[str, Callable[..., Array]] = {
    "score": detection_score_ranking_loss,
    "margin": margin_ranking_loss,
}


def ranking_loss(kind: str, probs, labels, lengths) -> Array:
  """The per-step ranking loss `[B, T]` by name: "score" (L_s) or "margin" (L_m)."""
  if kind not in RANKING_LOSSES:
    raise ValueError(f"kind: expected one of {sorted(RANKING_LOSSES)}, got {kind!r}")
  return RANKING_LOSSES[kind](probs, labels, lengths)


def progression_loss(logits, labels, lengths, *, kind: str | None,
                     lambda_r) -> tuple[Array, dict[str, Array]]:
  """L = Σ_t (L_c^t + λ_r L_r^t) from logits, averaged over the valid steps of the batch.

  L_c is softmax cross-entropy; L_r is `ranking_loss(kind, softmax(logits), ...)`.

  Args:
    logits: `[B, T, K]` per-step class logits.
    labels: `[B, T]` integer classes in `0..K-1`.
    lengths: `[B]` valid steps per sequence.
    kind: "score", "margin", or None for cross-entropy alone.
    lambda_r: the ranking loss's weight λ_r (may be traced, e.g. a schedule).

  Returns:
    `(loss, {"classification": mean L_c, "ranking": mean L_r})`, scalars, each a mean
    over the valid steps (`loss = classification + lambda_r * ranking`); the form
    `jax.value_and_grad(..., has_aux=True)` takes.
  """
  if kind is not None and kind not in RANKING_LOSSES:
    raise ValueError(f"kind: expected one of {sorted(RANKING_LOSSES)} or None, got {kind!r}")
  logits, labels, lengths = jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(lengths)
  _check(logits, labels, lengths, "logits")
  valid = valid_steps(lengths, labels.shape[1])
  safe_logits, safe_labels = _zero_padding(logits, labels, lengths)
  log_probs = jax.nn.log_softmax(safe_logits, axis=-1)                  # [B, T, K]
  xent = jnp.where(valid, -_class_score(log_probs, safe_labels), 0.0)   # L_c^t [B, T]
  if kind is None:
    ranking = jnp.zeros_like(xent)
  else:
    ranking = ranking_loss(kind, jnp.exp(log_probs), labels, lengths)   # L_r^t [B, T]
  count = jnp.maximum(jnp.sum(valid), 1).astype(xent.dtype)
  classification = jnp.sum(xent) / count
  ranking = jnp.sum(ranking) / count
  return classification + lambda_r * ranking, {"classification": classification,
                                               "ranking": ranking}
