r"""Stability of the learning dynamics: conditions and a check of a history.

Every AutoSGM update is the first-order linear time-varying filter
(docs/algorithm.md, section 7, :mod:`autosgm_optax._src.diagnostics`)

.. math::
  \Delta w(t+1) = \beta\, r(t)\, \Delta w(t) + \eta\, \alpha(t)\, e(t),
  \qquad r(t) = \alpha(t) / \alpha(t-1),

with :math:`\alpha(t) = \mu(t) F(t) a(t) / (d(t) s(t))`. It is BIBO stable
(a bounded input ``e`` gives a bounded trajectory ``dw``) iff
:math:`0 \le \beta < 1` and :math:`\sup_t \alpha(t) < \infty`;
:math:`\beta |r(t)|` is the per-step contraction margin. A step with a
margin above 1 expands the filter's memory at that step; that alone is not
instability: over the steps ``s+1 .. t`` the memory is scaled by the
*memory gain*

.. math::
  G(s, t) = \prod_{u=s+1}^{t} \beta |r(u)|
          = \beta^{t-s}\, \alpha(t) / \alpha(s),

which stays bounded whenever ``alpha`` is bounded. Annealing (``F -> 0`` or
``mu -> 0``) drives ``alpha -> 0`` and makes the filter exponentially
stable; ``r -> 0`` only where the window reaches 0 (a cosine window keeps
``r`` near 1 until its last steps). Growth of ``alpha`` during a warm-up
(``mu F`` rising) is not instability: it is reported apart.

:func:`stability_conditions` states these conditions for a configuration;
:func:`check_stability` checks a recorded history of
:func:`autosgm_optax.learning_dynamics`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from autosgm_optax._src import base as _base

#: Relative level (of its peak) below which ``mu F`` counts as annealed to 0.
ANNEAL_TOL = 1e-6

_LEVELS = ("summary", "element")


def _fmt(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{x:.4g}"


def _verdict(ok: Optional[bool]) -> str:
  return {True: "yes", False: "NO", None: "unknown"}[ok]


def _all(*oks: Optional[bool]) -> Optional[bool]:
  if any(ok is False for ok in oks):
    return False
  if any(ok is None for ok in oks):
    return None
  return True


# ---------------------------------------------------------------------------
# the conditions of a configuration


class StabilityConditions(NamedTuple):
  """Stability conditions of one configuration (docs/algorithm.md, section 9).

  Each condition is ``True``, ``False`` or ``None`` (cannot be told: a
  schedule was given without a ``horizon``). ``str(conditions)`` and
  :meth:`explain` say the same in words.
  """

  beta: float
  horizon: Optional[int]  # counts 0 .. horizon were evaluated
  beta_ok: bool  # 0 <= beta < 1
  learning_rate_ok: Optional[bool]  # mu finite and >= 0 (over the horizon)
  window_ok: Optional[bool]  # F finite and in [0, 1] (over the horizon)
  bibo: Optional[bool]  # beta_ok and sup mu F < inf (a/d assumed bounded)
  anneals: Optional[bool]  # mu F reaches 0 by count ``horizon``
  exponential: Optional[bool]  # bibo and anneals
  rate_sup: Optional[float]  # sup of mu F over the horizon
  rate_final: Optional[float]  # mu F at count ``horizon``
  window_range: Optional[tuple[float, float]]  # (min F, max F)
  warmup_steps: Optional[int]  # counts where mu F rose (a warm-up)
  schedule_margin: Optional[float]  # beta * max mu F(t) / mu F(t-1)
  notes: tuple[str, ...]

  @property
  def stable(self) -> Optional[bool]:
    """The BIBO conditions hold (``bibo``)."""
    return self.bibo

  def explain(self) -> str:
    """The conditions, one per line, with what they mean."""
    over = ("" if self.horizon is None else
            f" over counts 0..{self.horizon}")
    lines = [
        "AutoSGM learning dynamics: dw(t+1) = beta r(t) dw(t) "
        "+ eta alpha(t) e(t)",
        f"- pole 0 <= beta < 1: {_verdict(self.beta_ok)} "
        f"(beta = {self.beta:.4g})",
        f"- learning rate mu finite and >= 0{over}: "
        f"{_verdict(self.learning_rate_ok)}",
        f"- window F in [0, 1]{over}: {_verdict(self.window_ok)}"
        + ("" if self.window_range is None else
           f" (range [{self.window_range[0]:.4g}, "
           f"{self.window_range[1]:.4g}])"),
        f"- BIBO stable (beta < 1 and sup alpha < inf): "
        f"{_verdict(self.bibo)} (sup mu F = {_fmt(self.rate_sup)})",
        (f"- alpha -> 0 (mu F anneals to 0 by count {self.horizon}): "
         if self.horizon is not None else
         "- alpha -> 0 (mu F anneals to 0): ")
        + f"{_verdict(self.anneals)} (mu F at the end = "
        f"{_fmt(self.rate_final)})",
        f"- exponentially stable (BIBO and annealed): "
        f"{_verdict(self.exponential)}",
    ]
    if self.warmup_steps:
      lines.append(
          f"- warm-up: mu F rises at {self.warmup_steps} counts (largest "
          f"schedule margin beta * mu F(t) / mu F(t-1) = "
          f"{_fmt(self.schedule_margin)}); growth of alpha there is the "
          "schedule's, not instability")
    lines.extend(f"  note: {note}" for note in self.notes)
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.explain()


def _evaluate(value: Any, counts: np.ndarray, name: str) -> np.ndarray:
  """Values of a number, a schedule or a window block at ``counts``."""
  n = len(counts)
  if isinstance(value, _base.AutoSGMBlock):
    if value.kind != "window":
      raise TypeError(f"{name}={value!r} is a {value.kind!r} block, "
                      "not a window.")
    one = jnp.ones([], jnp.float32)
    state = value.init(one)

    def body(state, _):
      out, state = value.update(one, state, one)
      return state, out

    _, out = jax.lax.scan(body, state, None, length=n)
    return np.asarray(out, np.float64)
  if callable(value):
    try:
      out = jax.vmap(value)(jnp.asarray(counts))
    except Exception:  # pylint: disable=broad-except
      out = [value(int(c)) for c in counts]  # schedules with Python control
    out = np.asarray(out, np.float64)
    if out.shape != (n,):
      raise ValueError(f"{name} gives values of shape {out.shape[1:]} per "
                       "step; it must be a scalar function of the count.")
    return out
  out = np.asarray(value, np.float64)
  if out.shape != ():
    raise ValueError(f"{name}={value!r} must be a number, a schedule"
                     + (" or a window block" if name == "window" else "")
                     + ".")
  return np.full(n, float(out))


def stability_conditions(
    beta: float,
    *,
    window: Any = None,
    learning_rate: Any = None,
    horizon: Optional[int] = None,
) -> StabilityConditions:
  r"""The BIBO and exponential-stability conditions of a configuration.

  The learning dynamics ``dw(t+1) = beta r(t) dw(t) + eta alpha(t) e(t)``
  are BIBO stable iff ``0 <= beta < 1`` and ``sup alpha < inf``, with
  ``alpha = mu F a / (d s)``. This checks the parts a configuration fixes:
  the pole, a finite learning rate ``mu >= 0`` and a window ``F`` in
  ``[0, 1]``; ``a / d`` is bounded by the estimators (``d >= eps > 0``, the
  correlation numerators are clipped) and is not checked here. For
  exponential stability, ``alpha -> 0``: ``mu F`` anneals to 0. A schedule
  (of ``mu`` or ``F``) is evaluated at the counts ``0 .. horizon``: the
  updates of a run of ``horizon`` steps and the count after it, where a
  window that anneals by the end of the run has reached 0.

  Args:
    beta: the filter's pole.
    window: None (no window, ``F = 1``), a number, an ``optax.Schedule`` or a
      window block (e.g. :func:`autosgm_optax.raised_cosine_window`).
    learning_rate: ``mu``: None (not given: taken as a constant 1), a number
      or an ``optax.Schedule``.
    horizon: the number of steps of the run, ``>= 1``; needed to check
      schedules (without it, conditions on them are ``None``).

  Returns:
    A :class:`StabilityConditions`; ``print`` it for the conditions in words.

  Example:
    >>> import autosgm_optax as asgm
    >>> from autosgm_optax.analysis._stability import stability_conditions
    >>> c = stability_conditions(
    ...     0.9, learning_rate=1e-3,
    ...     window=asgm.raised_cosine_window(100), horizon=100)
    >>> c.bibo, c.anneals, c.exponential
    (True, True, True)
    >>> stability_conditions(0.9, learning_rate=1e-3).exponential  # no anneal
    False
  """
  beta = float(beta)
  beta_ok = bool(0.0 <= beta < 1.0)
  notes = []
  if horizon is not None:
    if isinstance(horizon, bool) or not isinstance(horizon,
                                                   (int, np.integer)):
      raise TypeError(f"horizon={horizon!r} must be a whole number of steps.")
    if horizon < 1:
      raise ValueError(f"horizon={horizon!r} must be >= 1.")
    horizon = int(horizon)
  if not beta_ok:
    notes.append("beta >= 1: the filter's pole is on or outside the unit "
                 "circle, and dw need not stay bounded." if beta >= 1 else
                 "beta < 0 is not a valid design (docs/algorithm.md, "
                 "section 2).")
  if learning_rate is None:
    notes.append("learning_rate not given: taken as a constant.")
  scheduled = (callable(window) or callable(learning_rate)
               or isinstance(window, _base.AutoSGMBlock))
  if scheduled and horizon is None:
    notes.append("a schedule was given without horizon: pass horizon "
                 "(the number of steps) to check it.")
    return StabilityConditions(
        beta=beta, horizon=None, beta_ok=beta_ok, learning_rate_ok=None,
        window_ok=None, bibo=False if not beta_ok else None, anneals=None,
        exponential=False if not beta_ok else None, rate_sup=None,
        rate_final=None, window_range=None, warmup_steps=None,
        schedule_margin=None, notes=tuple(notes))

  n = 2 if horizon is None else horizon + 1
  counts = np.arange(n)
  mu = (np.ones(n) if learning_rate is None else
        _evaluate(learning_rate, counts, "learning_rate"))
  f = np.ones(n) if window is None else _evaluate(window, counts, "window")
  learning_rate_ok = bool(np.all(np.isfinite(mu)) and np.all(mu >= 0))
  window_ok = bool(np.all(np.isfinite(f)) and np.all((f >= 0) & (f <= 1)))
  if not learning_rate_ok:
    bad = np.flatnonzero(~(np.isfinite(mu) & (mu >= 0)))
    notes.append(f"mu is not finite and >= 0 at count {int(bad[0])} "
                 f"(mu = {mu[bad[0]]:.4g}).")
  if not window_ok:
    bad = np.flatnonzero(~(np.isfinite(f) & (f >= 0) & (f <= 1)))
    notes.append(f"F is outside [0, 1] at count {int(bad[0])} "
                 f"(F = {f[bad[0]]:.4g})"
                 + ("; a negative window is gradient ascent."
                    if f[bad[0]] < 0 else "."))
  rate = mu * f
  finite = bool(np.all(np.isfinite(rate)))
  rate_sup = float(np.max(np.abs(rate))) if finite else math.inf
  bibo = beta_ok and learning_rate_ok and window_ok and finite
  if horizon is None:  # constants only
    rate_final = float(rate[-1])
    anneals = bool(rate_final == 0)
  else:
    rate_final = float(rate[-1])
    anneals = bool(finite and abs(rate_final) <= ANNEAL_TOL * max(rate_sup,
                                                                  1e-300))
  if not anneals:
    notes.append("alpha does not go to 0 (mu F does not anneal to 0): BIBO "
                 "stability only; anneal the window or the learning rate "
                 "for exponential stability.")
  else:
    notes.append("r -> 0 only where the window reaches 0: a cosine window "
                 "keeps r near 1 until its last steps.")
  prev, cur = rate[:-1], rate[1:]
  with np.errstate(divide="ignore", invalid="ignore"):
    ratios = np.where(prev > 0, cur / np.where(prev > 0, prev, 1), np.nan)
  rising = np.isfinite(ratios) & (ratios > 1)
  warmup_steps = int(np.sum(rising)) if horizon is not None else 0
  schedule_margin = (float(beta * np.max(ratios[rising])) if warmup_steps
                     else None)
  if horizon is not None and rate[0] == 0 and np.any(rate > 0):
    notes.append("mu F = 0 at count 0 (e.g. a full window with floor 0): "
                 "the first update is 0 and r(2) is undefined (reported as 0, "
                 "flagged).")
  return StabilityConditions(
      beta=beta, horizon=horizon, beta_ok=beta_ok,
      learning_rate_ok=learning_rate_ok, window_ok=window_ok, bibo=bool(bibo),
      anneals=anneals, exponential=bool(bibo and anneals),
      rate_sup=rate_sup, rate_final=rate_final,
      window_range=(float(np.min(f)), float(np.max(f))),
      warmup_steps=warmup_steps, schedule_margin=schedule_margin,
      notes=tuple(notes))


# ---------------------------------------------------------------------------
# the check of a recorded history


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

    def listing(findings, what):
      if not findings:
        return [f"- {what}: none"]
      steps = sorted({f.step for f in findings})
      leaves = sorted({f.leaf for f in findings})
      out = [f"- {what}: {len(findings)} (steps {steps[0]}..{steps[-1]}; "
             f"{len(leaves)} {'leaf' if len(leaves) == 1 else 'leaves'}: "
             f"{', '.join(leaves[:limit])}"
             + (", ..." if len(leaves) > limit else "") + ")"]
      out.extend(f"    step {f.step} {f.leaf}: {f.value:.4g}"
                 for f in findings[:limit])
      if len(findings) > limit:
        out.append(f"    ... {len(findings) - limit} more")
      return out

    b = self.bounds
    verdict = ("stable" if self.stable else "UNSTABLE") + (
        ", contractive at every step" if self.contractive else "")
    lines = [f"learning dynamics of steps {self.steps[0]}..{self.steps[1]} "
             f"({self.level} level, {len(self.leaves)} "
             f"{'leaf' if len(self.leaves) == 1 else 'leaves'}, "
             f"beta = {self.beta:.4g}): {verdict}"]
    if not 0 <= self.beta < 1:
      lines.append("- beta outside [0, 1): the filter itself is unstable")
    lines += listing(self.alpha,
                     f"alpha not finite or above {b['alpha_bound']:g}")
    lines += listing(self.growth,
                     f"memory gain prod beta|r| above {b['growth_bound']:g}")
    lines += listing(self.divergence,
                     f"input e grown above {b['divergence_bound']:g}x its "
                     "start, or e/dw not finite")
    lines += listing(self.margin,
                     f"margin beta|r| above {b['margin_bound']:g} "
                     "(transient expansions)")
    lines += listing(self.warmup,
                     "warm-up: r > 1 while mu F rose (not instability)")
    if not self.rates_given:
      lines.append("  note: no rates given: a warm-up cannot be told apart "
                   "from growth; pass rates (mu F of each step).")
    worst = [f"{leaf} {f.value:.3g} (step {f.step})"
             for leaf, f in list(self.max_margin.items())[:2 * limit]]
    lines.append("largest margin per leaf: " + "; ".join(worst))
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.explain()


def leaf_paths(tree: Any) -> list[str]:
  """The paths of the leaves of ``tree``, as ``jax.tree_util.keystr``."""
  return [jax.tree_util.keystr(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def history_level(history: Sequence[Any]) -> str:
  """The one level (``"summary"`` or ``"element"``) of a list of Dynamics."""
  levels = {getattr(d, "level", None) for d in history}
  if len(levels) != 1 or not levels <= set(_LEVELS):
    raise ValueError(
        "history must be a non-empty list of Dynamics of one level "
        "(\"summary\" or \"element\"), as learning_dynamics(state)[path] "
        f"returns; got levels {sorted(map(str, levels))}.")
  return levels.pop()


def recorded_steps(history: Sequence[Any], first_step: Optional[int] = None
                   ) -> tuple[list[Any], np.ndarray]:
  """The recorded entries of a Dynamics history and their updates ``t``.

  Entries with ``recorded`` False (between the records of
  ``diagnostics_every``: NaN values) are dropped. The updates are the
  entries' ``step`` when every kept entry has one and ``first_step`` is
  None (then repeated entries of one update keep the last); otherwise
  ``first_step`` (default 1) plus the position.
  """
  kept = [d for d in history
          if getattr(d, "recorded", None) is None
          or bool(np.asarray(d.recorded))]
  if not kept:
    raise ValueError(
        "history holds no recorded update (with diagnostics_every=k, only "
        "every k-th update is recorded).")
  if first_step is None and all(getattr(d, "step", None) is not None
                                for d in kept):
    steps = [int(np.asarray(d.step)) for d in kept]
    # An entry per call of a wrapper that did not update (optax.MultiSteps
    # between its updates, apply_if_finite on a skipped step) repeats the
    # last update: keep one entry per update, the last.
    last = [k for k in range(len(kept))
            if k + 1 == len(kept) or steps[k + 1] != steps[k]]
    return [kept[k] for k in last], np.asarray([steps[k] for k in last])
  return kept, (1 if first_step is None else first_step) + np.arange(
      len(kept))


def _sup(x: Any) -> float:
  x = np.asarray(x)
  return float(np.max(np.abs(x))) if x.size else 0.0


def history_table(history: Sequence[Any], field: str,
                  statistic: str = "sup") -> tuple[list[str], np.ndarray]:
  """Per step and leaf, one statistic of a field of a Dynamics history.

  Args:
    history: a sequence of ``Dynamics`` of one level.
    field: ``"alpha"``, ``"r"``, ``"margin"``, ``"e"`` or ``"dw"``.
    statistic: ``"sup"`` (max of the absolute value over the leaf),
      ``"mean"``, or ``"rms"`` (root mean square: ``sqrt(mean^2 + std^2)`` at
      the summary level).

  Returns:
    The leaves' paths and an array of shape ``(len(history), leaves)``.
  """
  level = history_level(history)
  if statistic not in ("sup", "mean", "rms"):
    raise ValueError(f"statistic={statistic!r} must be 'sup', 'mean' or "
                     "'rms'.")
  if level == "summary":
    summaries = [getattr(d, field) for d in history]
    if statistic == "rms":
      trees = [jax.tree.map(lambda m, s: (m, s), x.mean, x.std)
               for x in summaries]
      leaves = leaf_paths(summaries[0].mean)
      table = np.asarray([[math.hypot(float(m), float(s)) for m, s in
                           jax.tree.leaves(tree, is_leaf=lambda v:
                                           isinstance(v, tuple))]
                          for tree in trees], np.float64)
    else:
      trees = [getattr(x, statistic) for x in summaries]
      leaves = leaf_paths(trees[0])
      stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                             *trees)
      table = np.stack([np.asarray(x, np.float64).reshape(len(history))
                        for x in jax.tree.leaves(stacked)], axis=1)
  else:
    reduce = {"sup": _sup,
              "mean": lambda x: float(np.mean(np.asarray(x))),
              "rms": lambda x: float(np.sqrt(np.mean(
                  np.square(np.asarray(x, np.float64)))))}[statistic]
    trees = [getattr(d, field) for d in history]
    leaves = leaf_paths(trees[0])
    table = np.asarray([[reduce(x) for x in jax.tree.leaves(tree)]
                        for tree in trees], np.float64)
  return leaves, table.reshape(len(history), len(leaves))


def _rates(rates: Any, steps: np.ndarray
           ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
  """``mu F`` of each recorded update ``t`` and of the update before it."""
  if rates is None:
    return None, None
  n = len(steps)
  if callable(rates):
    # update t uses the schedule at count t - 1; its predecessor at t - 2
    values = _evaluate(rates, np.maximum(steps - 1, 0), "rates")
    prev = _evaluate(rates, np.maximum(steps - 2, 0), "rates")
    prev = np.where(steps - 2 < 0, 0.0, prev)  # no update before the first
    return values, prev
  values = np.asarray([float(np.asarray(x)) for x in rates], np.float64)
  if values.shape != (n,) and values.ndim == 1 and values.size >= steps[-1]:
    # mu F of every update from the first: take each record's and the one
    # before it
    return values[steps - 1], np.where(steps >= 2, values[np.maximum(
        steps - 2, 0)], 0.0)
  if values.shape != (n,):
    raise ValueError(
        f"rates has {values.size} values for {n} recorded steps (the last "
        f"is update {int(steps[-1])}); give mu F of each recorded step, of "
        "every update from the first, or a schedule of the count.")
  # the previous update's rate is known only where it was recorded too
  consecutive = np.concatenate([[False], np.diff(steps) == 1])
  prev = np.where(consecutive, np.concatenate([[np.nan], values[:-1]]),
                  np.nan)
  return values, prev


def _memory_gain(history: Sequence[Any], level: str, margin: np.ndarray,
                 excuse: np.ndarray, steps: np.ndarray) -> np.ndarray:
  """Per step and leaf, ``max_s prod_{u=s+1..t} beta |r(u)| / excuse(u)``.

  A running maximum of the log-gain (``max(0, previous + log m)``): the
  largest amplification of the filter's memory of any earlier step. Per
  element at the element level (then the sup over the leaf); from the
  per-step sups at the summary level (an upper bound). The product runs
  over consecutive recorded updates only: it starts again after a gap
  (``diagnostics_every > 1``).
  """
  n, n_leaves = margin.shape
  log_excuse = np.log(excuse)
  gain = np.ones((n, n_leaves))
  restart = np.concatenate([[True], np.diff(steps) != 1])
  with np.errstate(divide="ignore", invalid="ignore"):
    if level == "summary":
      log_gain = np.zeros(n_leaves)
      for k in range(n):
        if restart[k]:
          log_gain = np.zeros(n_leaves)
        log_gain = np.fmax(0.0, log_gain + np.log(margin[k]) - log_excuse[k])
        gain[k] = np.exp(log_gain)
      return gain
    log_gain = None
    for k, dyn in enumerate(history):
      leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(dyn.margin)]
      if log_gain is None or restart[k]:
        log_gain = [np.zeros(x.shape) for x in leaves]
      for j, x in enumerate(leaves):
        log_gain[j] = np.fmax(0.0, log_gain[j] + np.log(np.abs(x))
                              - log_excuse[k])
        if log_gain[j].size:
          gain[k, j] = math.exp(min(float(np.max(log_gain[j])), 700.0))
  return gain


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
      ``t`` used the schedule at count ``t - 1``); None if unknown (then a warm-up cannot be
      told apart from growth).
    first_step: the update ``t`` of ``history[0]``, the others following
      one by one; None (default) reads each entry's ``step`` (1, 2, ...
      when recorded from the first update).
    reference_steps: the number of first steps that set the size of ``e``.

  Returns:
    A :class:`StabilityReport`; ``print`` it for the findings in words.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import autosgm_optax as asgm
    >>> from autosgm_optax.analysis._stability import check_stability
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
    raise ValueError("history is empty: record learning_dynamics(state)[path] "
                     "after each update.")
  history, steps = recorded_steps(history, first_step)
  level = history_level(history)
  for name, value in (("margin_bound", margin_bound),
                      ("growth_bound", growth_bound),
                      ("alpha_bound", alpha_bound),
                      ("divergence_bound", divergence_bound)):
    if not value > 0:
      raise ValueError(f"{name}={value!r} must be > 0.")
  if reference_steps < 1:
    raise ValueError(f"reference_steps={reference_steps!r} must be >= 1.")
  n = len(history)
  rate, rate_prev = _rates(rates, steps)
  if rate is None:
    excuse = np.ones(n)
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
  n_leaves = len(leaves)

  growth = _memory_gain(history, level, margin, excuse, steps)
  # e against its size over the first steps
  reference = np.full(n_leaves, np.nan)
  for j in range(n_leaves):
    good = e[:, j][np.isfinite(e[:, j]) & (e[:, j] > 0)]
    if good.size:
      reference[j] = np.max(good[:reference_steps])

  found = {kind: [] for kind in ("margin", "growth", "alpha", "divergence",
                                 "warmup")}
  for k in range(n):
    t = int(steps[k])
    for j, leaf in enumerate(leaves):
      m = margin[k, j]
      if not m / excuse[k] <= margin_bound:  # NaN counts as a finding
        found["margin"].append(Finding(t, leaf, float(m)))
      elif r[k, j] > 1 and excuse[k] > 1:
        found["warmup"].append(Finding(t, leaf, float(r[k, j])))
      if growth[k, j] > growth_bound:
        found["growth"].append(Finding(t, leaf, float(growth[k, j])))
      a = alpha[k, j]
      if not (math.isfinite(a) and a <= alpha_bound):
        found["alpha"].append(Finding(t, leaf, float(a)))
      if not (math.isfinite(e[k, j]) and math.isfinite(dw[k, j])):
        bad = e[k, j] if not math.isfinite(e[k, j]) else dw[k, j]
        found["divergence"].append(Finding(t, leaf, float(bad)))
      elif np.isfinite(reference[j]) and (
          e[k, j] > divergence_bound * reference[j]):
        found["divergence"].append(
            Finding(t, leaf, float(e[k, j] / reference[j])))

  beta_ok = bool(np.all((betas >= 0) & (betas < 1)))
  stable = bool(beta_ok and not found["growth"] and not found["alpha"]
                and not found["divergence"])

  def worst(table):
    out = {}
    for j, leaf in enumerate(leaves):
      col = np.nan_to_num(table[:, j], nan=-np.inf)
      k = int(np.argmax(col))
      out[leaf] = Finding(int(steps[k]), leaf, float(table[k, j]))
    return out

  return StabilityReport(
      stable=stable, contractive=bool(stable and not found["margin"]),
      margin=found["margin"], growth=found["growth"], alpha=found["alpha"],
      divergence=found["divergence"], warmup=found["warmup"],
      steps=(int(steps[0]), int(steps[-1])), leaves=tuple(leaves),
      level=level, beta=float(betas[-1]), max_margin=worst(margin),
      max_growth=worst(np.nan_to_num(growth, nan=1.0)),
      rates_given=rate is not None,
      bounds=dict(margin_bound=margin_bound, growth_bound=growth_bound,
                  alpha_bound=alpha_bound, divergence_bound=divergence_bound,
                  reference_steps=reference_steps))
