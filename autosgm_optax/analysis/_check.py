r"""The check of a recorded history of learning dynamics.

:math:`\beta |r(t)|` is the per-step contraction margin of the filter
``dw(t+1) = beta r(t) dw(t) + eta alpha(t) e(t)`` (docs/algorithm.md,
section 9). A step with a margin above 1 expands the filter's memory at
that step; that alone is not instability: over the steps ``s+1 .. t`` the
memory is scaled by the *memory gain*

.. math::
  G(s, t) = \prod_{u=s+1}^{t} \beta |r(u)|
          = \beta^{t-s}\, \alpha(t) / \alpha(s),

which stays bounded whenever ``alpha`` is bounded. :func:`check_stability`
stacks a history once into arrays ``(steps, leaves)`` (``_history``) and
computes every check with array operations over the steps and leaves (the
memory gain, a recurrence in ``t``, with one array operation per step over
all leaves and elements); ``_report`` says what it found in words.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math
from typing import Any
from typing import NamedTuple
from typing import Optional
from typing import Union

import numpy as np

from autosgm_optax.analysis import _report
from autosgm_optax.analysis._conditions import evaluate
from autosgm_optax.analysis._history import history_level
from autosgm_optax.analysis._history import history_table
from autosgm_optax.analysis._history import recorded_steps
from autosgm_optax.analysis._history import stack_leaves

_KINDS = ("margin", "growth", "alpha", "divergence", "warmup")


class Finding(NamedTuple):
  """One step of one leaf where a quantity crossed its bound."""

  step: int  # the update t = 1, 2, ... (history[0] is ``first_step``)
  leaf: str  # the leaf's path, as ``jax.tree_util.keystr`` writes it
  value: float  # the value that crossed the bound (see the report's list)


class StabilityReport(NamedTuple):
  """What :func:`check_stability` found in a history of learning dynamics.

  Each list holds :class:`Finding` s ``(step, leaf, value)`` in step order,
  then leaf order. Per leaf, the quantities are the sups over its elements.

  - ``margin``: the per-step contraction margin ``beta |r(t)|`` above
    ``margin_bound``, beyond what a rising ``mu F`` explains (value: the
    margin). A transient expansion of the filter's memory at that step; not
    by itself instability (over a stretch of steps the memory is scaled by
    ``beta^n alpha(t) / alpha(s)``, bounded while ``alpha`` is).
  - ``growth``: the memory gain
    ``G(s, t) = prod_{u=s+1..t} beta |r(u)| = beta^(t-s) alpha(t)/alpha(s)``
    above ``growth_bound`` for some earlier step ``s`` (value: ``G``, the
    share of a rising ``mu F`` divided out when ``rates`` are given):
    ``alpha`` grew faster than the pole forgets for long enough to amplify
    the filter's memory; sustained margins above 1, the sign of ``alpha``
    heading for ``sup alpha = inf``. (Growth of ``alpha`` slower than
    ``1 / beta`` per step, e.g. a numerator rising from a zero-initialised
    leaf, is absorbed by the pole.)
  - ``alpha``: ``alpha`` not finite or above ``alpha_bound`` (value:
    ``alpha``): ``sup alpha < inf`` fails.
  - ``divergence``: the input ``e`` grown more than ``divergence_bound``
    times above its size over the first ``reference_steps`` steps (value:
    the growth factor), or ``e`` or ``dw`` not finite (value: the non-finite
    sup): the loop through the loss diverges (e.g. too large a learning
    rate), even where the filter itself is stable.
  - ``warmup``: steps where ``r > 1`` while ``mu F`` rose (value: ``r``):
    growth of ``alpha`` that the schedule explains; not instability.

  ``stable`` is True when ``beta`` is in [0, 1) and ``growth``, ``alpha``
  and ``divergence`` are empty (no sign against BIBO stability);
  ``contractive`` when, in addition, ``margin`` is empty.
  """

  stable: bool
  contractive: bool
  margin: list
  growth: list
  alpha: list
  divergence: list
  warmup: list
  steps: tuple  # (first, last) update t of the history
  leaves: tuple  # the leaves' paths
  level: str  # "summary" or "element"
  beta: float
  max_margin: dict  # leaf -> Finding of its largest margin beta |r|
  max_growth: dict  # leaf -> Finding of its largest memory gain G
  rates_given: bool
  bounds: dict  # the bounds used

  def explain(self, limit: int = 4) -> str:
    """The findings in words, at most ``limit`` listed per kind."""
    return _report.report_text(self, limit)

  def __str__(self) -> str:
    return self.explain()


def _rates(
  rates: Any, steps: np.ndarray
) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
  """``mu F`` of each recorded update ``t`` and of the update before it."""
  if rates is None:
    return None, None
  n = len(steps)
  if callable(rates):
    # update t uses the schedule at count t - 1; its predecessor at t - 2
    values = evaluate(rates, np.maximum(steps - 1, 0), "rates")
    prev = evaluate(rates, np.maximum(steps - 2, 0), "rates")
    prev = np.where(steps - 2 < 0, 0.0, prev)  # no update before the first
    return values, prev
  values = np.asarray([float(np.asarray(x)) for x in rates], np.float64)
  if values.shape != (n,) and values.ndim == 1 and values.size >= steps[-1]:
    # mu F of every update from the first: take each record's and the one
    # before it
    return values[steps - 1], np.where(
      steps >= 2, values[np.maximum(steps - 2, 0)], 0.0
    )
  if values.shape != (n,):
    raise ValueError(
      f"rates has {values.size} values for {n} recorded steps (the last "
      f"is update {int(steps[-1])}); give mu F of each recorded step, of "
      "every update from the first, or a schedule of the count."
    )
  # the previous update's rate is known only where it was recorded too
  consecutive = np.concatenate([[False], np.diff(steps) == 1])
  prev = np.where(consecutive, np.concatenate([[np.nan], values[:-1]]), np.nan)
  return values, prev


def _peak_log_gain(
  margins: np.ndarray,
  log_excuse: np.ndarray,
  restart: np.ndarray,
  starts: np.ndarray,
) -> np.ndarray:
  """Per step and leaf, the max over the leaf's elements of the log-gain.

  The log-gain of an element is the running maximum
  ``L(t) = max(0, L(t-1) + log m(t) - log excuse(t))``, 0 before the first
  step and again at the steps where ``restart``: the log of the largest
  memory gain ``max_s G(s, t)`` of any earlier step ``s``. A recurrence in
  ``t``, so one array operation per step, over every element of every
  leaf at once.

  Args:
    margins: ``(steps, elements)``, the margins ``beta |r|`` of all leaves'
      elements side by side (taken in float64 step by step).
    log_excuse: ``(steps,)``, the log of the schedule's share of ``r``.
    restart: ``(steps,)``, where the running maximum starts again.
    starts: the first column of each leaf in ``margins`` (non-empty leaves).
  """
  peak = np.zeros((len(margins), len(starts)))
  if not margins.shape[1]:
    return peak
  log_gain = np.zeros(margins.shape[1])
  for k, margin in enumerate(margins):
    if restart[k]:
      log_gain = np.zeros_like(log_gain)
    log_gain = np.fmax(
      0.0, log_gain + np.log(np.asarray(margin, np.float64)) - log_excuse[k]
    )
    peak[k] = np.maximum.reduceat(log_gain, starts)
  return peak


def _memory_gain(
  level: str,
  margin: np.ndarray,
  history: Sequence[Any],
  excuse: np.ndarray,
  steps: np.ndarray,
) -> np.ndarray:
  """Per step and leaf, ``max_s prod_{u=s+1..t} beta |r(u)| / excuse(u)``.

  The largest amplification of the filter's memory of any earlier step.
  Per element at the element level (then the sup over the leaf); from the
  per-step sups ``margin`` at the summary level (an upper bound). The
  product runs over consecutive recorded updates only: it starts again
  after a gap (``diagnostics_every > 1``).
  """
  restart = np.concatenate([[True], np.diff(steps) != 1])
  log_excuse = np.log(excuse)
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    if level == "summary":
      return np.exp(
        _peak_log_gain(margin, log_excuse, restart, np.arange(margin.shape[1]))
      )
    n = len(steps)
    columns = [
      c.reshape(n, -1)
      for c in stack_leaves([d.margin for d in history], "margin")
    ]
    sizes = np.asarray([c.shape[1] for c in columns], int)
    starts = (np.cumsum(sizes) - sizes)[sizes > 0]
    flat = np.concatenate(columns, axis=1) if columns else np.zeros((n, 0))
    peak = _peak_log_gain(np.abs(flat, out=flat), log_excuse, restart, starts)
    gain = np.ones(margin.shape)
    gain[:, sizes > 0] = np.exp(np.minimum(peak, 700.0))
  return gain


def _findings(
  mask: np.ndarray, values: np.ndarray, steps: np.ndarray, leaves: Sequence[str]
) -> list[Finding]:
  """A :class:`Finding` per True of ``mask``, in step order, then leaf."""
  k, j = np.nonzero(mask)
  return [
    Finding(t, leaves[leaf], value)
    for t, leaf, value in zip(
      steps[k].tolist(), j.tolist(), values[k, j].tolist(), strict=True
    )
  ]


def _reference(e: np.ndarray, reference_steps: int) -> np.ndarray:
  """Per leaf, the max of its first ``reference_steps`` finite ``e > 0``."""
  good = np.isfinite(e) & (e > 0)
  first = good & (np.cumsum(good, axis=0) <= reference_steps)
  return np.where(
    np.any(first, axis=0),
    np.max(np.where(first, e, -np.inf), axis=0, initial=-np.inf),
    np.nan,
  )


def _worst(
  table: np.ndarray, steps: np.ndarray, leaves: Sequence[str]
) -> dict[str, Finding]:
  """Per leaf, the Finding of its largest value (NaN counts as lowest)."""
  k = np.argmax(np.nan_to_num(table, nan=-np.inf), axis=0)
  j = np.arange(len(leaves))
  return {
    leaf: Finding(t, leaf, value)
    for leaf, t, value in zip(
      leaves, steps[k].tolist(), table[k, j].tolist(), strict=True
    )
  }


def check_stability(
  history: Sequence[Any],
  *,
  margin_bound: float = 1.0,
  growth_bound: float = 10.0,
  alpha_bound: float = math.inf,
  divergence_bound: float = 1e3,
  rates: Union[None, Sequence[float], Callable[[Any], Any]] = None,
  first_step: Optional[int] = None,
  reference_steps: int = 10,
) -> StabilityReport:
  r"""Checks a recorded history of learning dynamics for instability.

  ``history`` holds one :class:`autosgm_optax.Dynamics` per update, in
  order, as ``learning_dynamics(state)[path]`` returns after each update
  (``diagnostics="summary"`` or ``"element"``). With
  ``diagnostics_every=k`` the entries between records (``recorded``
  False) are skipped, the margin, ``alpha`` and ``e`` are checked at the
  recorded updates, and the memory gain over consecutive recorded updates
  only (so a sustained growth between records goes unseen: record every
  update to check it). Per step and leaf it takes
  the sup over the leaf's elements of ``alpha``, ``r``, the margin
  ``beta |r|``, ``e`` and ``dw`` and reports (see :class:`StabilityReport`):

  - where the margin exceeds ``margin_bound`` (transient expansions);
  - where the memory gain :math:`G(s, t) = \prod_{u=s+1}^t \beta|r(u)| =
    \beta^{t-s}\alpha(t)/\alpha(s)` over a stretch of steps exceeds
    ``growth_bound`` (sustained margins above 1: ``alpha`` growing faster
    than the pole forgets; per element at the element level, from the
    per-step sups at the summary level, an upper bound), or ``alpha`` is not
    finite or exceeds ``alpha_bound``: the condition ``sup alpha < inf``
    failing;
  - where the input ``e`` grew more than ``divergence_bound`` times above
    its size over the first ``reference_steps`` steps, or ``e`` or ``dw`` is
    not finite: the loop through the loss diverging;
  - warm-up apart: with ``rates`` (``mu(t) F(t)`` of each step), a rise of
    ``mu F`` explains ``r(t) > 1`` up to ``mu F(t) / mu F(t-1)``; those steps
    are listed in ``warmup``, and the schedule's share is divided out of the
    margin and of the memory gain. A schedule given as ``rates`` is
    trusted: check it with :func:`stability_conditions`.

  Args:
    history: a sequence of ``Dynamics`` of one level, one per update.
    margin_bound: the bound of the per-step margin ``beta |r|``.
    growth_bound: the bound of the memory gain ``prod beta |r|``.
    alpha_bound: the bound of ``alpha`` (the default flags only non-finite
      values).
    divergence_bound: the bound of the growth of ``e``.
    rates: ``mu F`` of each recorded step: a sequence (e.g.
      ``effective_learning_rate(state)`` read after each recorded update;
      for a history with gaps better after every update, so that the rate
      before each record is known), or a schedule of the count (the update
      ``t`` used the schedule at count ``t - 1``); None if unknown (then a
      warm-up cannot be told apart from growth).
    first_step: the update ``t`` of ``history[0]``, the others following
      one by one; None (default) reads each entry's ``step`` (1, 2, ...
      when recorded from the first update).
    reference_steps: the number of first steps that set the size of ``e``.

  Returns:
    A :class:`StabilityReport`; ``print`` it for the findings in words.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import autosgm_optax as asgm
    >>> from autosgm_optax.analysis import check_stability
    >>> schedule = optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 40)
    >>> tx = asgm.autosgm(schedule, diagnostics="summary")
    >>> loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
    >>> params = {"w": jnp.zeros(4)}
    >>> state, history = tx.init(params), []
    >>> for _ in range(40):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   history.append(asgm.learning_dynamics(state)[""])
    >>> report = check_stability(history, rates=schedule)
    >>> report.stable, report.contractive, len(report.warmup) > 0
    (True, True, True)
    >>> check_stability(history).contractive  # without rates: beta r(3) = 1.26
    False
  """
  history = list(history)
  if not history:
    raise ValueError(
      "history is empty: record learning_dynamics(state)[path] "
      "after each update."
    )
  history, steps = recorded_steps(history, first_step)
  level = history_level(history)
  for name, value in (
    ("margin_bound", margin_bound),
    ("growth_bound", growth_bound),
    ("alpha_bound", alpha_bound),
    ("divergence_bound", divergence_bound),
  ):
    if not value > 0:
      raise ValueError(f"{name}={value!r} must be > 0.")
  if reference_steps < 1:
    raise ValueError(f"reference_steps={reference_steps!r} must be >= 1.")
  rate, rate_prev = _rates(rates, steps)
  if rate is None:
    excuse = np.ones(len(steps))
  else:
    with np.errstate(divide="ignore", invalid="ignore"):
      ratio = rate / rate_prev
    excuse = np.where(np.isfinite(ratio) & (ratio > 1), ratio, 1.0)

  leaves, alpha = history_table(history, "alpha")
  _, r = history_table(history, "r")
  _, e = history_table(history, "e")
  _, dw = history_table(history, "dw")
  betas = np.asarray([float(np.asarray(d.beta)) for d in history])
  if level == "summary":
    _, margin = history_table(history, "margin")
  else:
    margin = betas[:, None] * r
  growth = _memory_gain(level, margin, history, excuse, steps)
  reference = _reference(e, reference_steps)

  # every check at every step and leaf at once: (steps, leaves) masks
  excused = excuse[:, None]
  over_margin = ~(margin / excused <= margin_bound)  # NaN counts as found
  nonfinite = ~(np.isfinite(e) & np.isfinite(dw))
  with np.errstate(divide="ignore", invalid="ignore"):
    grown = e / reference
  diverged = nonfinite | (
    np.isfinite(reference) & (e > divergence_bound * reference)
  )
  masks = dict(
    margin=(over_margin, margin),
    growth=(growth > growth_bound, growth),
    alpha=(~(np.isfinite(alpha) & (alpha <= alpha_bound)), alpha),
    divergence=(
      diverged,
      np.where(nonfinite, np.where(np.isfinite(e), dw, e), grown),
    ),
    warmup=(~over_margin & (r > 1) & (excused > 1), r),
  )
  found = {kind: _findings(*masks[kind], steps, leaves) for kind in _KINDS}

  beta_ok = bool(np.all((betas >= 0) & (betas < 1)))
  stable = bool(
    beta_ok
    and not found["growth"]
    and not found["alpha"]
    and not found["divergence"]
  )
  return StabilityReport(
    stable=stable,
    contractive=bool(stable and not found["margin"]),
    margin=found["margin"],
    growth=found["growth"],
    alpha=found["alpha"],
    divergence=found["divergence"],
    warmup=found["warmup"],
    steps=(int(steps[0]), int(steps[-1])),
    leaves=tuple(leaves),
    level=level,
    beta=float(betas[-1]),
    max_margin=_worst(margin, steps, leaves),
    max_growth=_worst(np.nan_to_num(growth, nan=1.0), steps, leaves),
    rates_given=rate is not None,
    bounds=dict(
      margin_bound=margin_bound,
      growth_bound=growth_bound,
      alpha_bound=alpha_bound,
      divergence_bound=divergence_bound,
      reference_steps=reference_steps,
    ),
  )
