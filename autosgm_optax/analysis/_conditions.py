r"""The stability conditions of a configuration.

Every AutoSGM update is the first-order linear time-varying filter
(docs/algorithm.md, section 7, ``autosgm_optax._src.diagnostics``)

.. math::
  \Delta w(t+1) = \beta\, r(t)\, \Delta w(t) + \eta\, \alpha(t)\, e(t),
  \qquad r(t) = \alpha(t) / \alpha(t-1),

with :math:`\alpha(t) = \mu(t) F(t) a(t) / (d(t) s(t))`. It is BIBO stable
(a bounded input ``e`` gives a bounded trajectory ``dw``) iff
:math:`0 \le \beta < 1` and :math:`\sup_t \alpha(t) < \infty`. Annealing
(``F -> 0`` or ``mu -> 0``) drives ``alpha -> 0`` and makes the filter
exponentially stable; ``r -> 0`` only where the window reaches 0 (a cosine
window keeps ``r`` near 1 until its last steps). Growth of ``alpha`` during
a warm-up (``mu F`` rising) is not instability: it is reported apart.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from autosgm_optax._src import base as _base
from autosgm_optax.analysis import _report

#: Relative level (of its peak) below which ``mu F`` counts as annealed to 0.
ANNEAL_TOL = 1e-6

# What tracing a schedule with Python control flow on the count raises
# (``if count < n``, ``int(count)``, ``np.cos(count)``): such a schedule is
# evaluated count by count instead.
_NEEDS_CONCRETE_COUNT = (
  jax.errors.ConcretizationTypeError,
  jax.errors.TracerArrayConversionError,
  jax.errors.TracerIntegerConversionError,
)


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
    return _report.conditions_text(self)

  def __str__(self) -> str:
    return self.explain()


def evaluate(value: Any, counts: np.ndarray, name: str) -> np.ndarray:
  """Values of a number, a schedule or a window block at ``counts``."""
  n = len(counts)
  if isinstance(value, _base.AutoSGMBlock):
    if value.kind != "window":
      raise TypeError(
        f"{name}={value!r} is a {value.kind!r} block, not a window."
      )
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
    except _NEEDS_CONCRETE_COUNT:
      out = [value(int(c)) for c in counts]
    out = np.asarray(out, np.float64)
    if out.shape != (n,):
      raise ValueError(
        f"{name} gives values of shape {out.shape[1:]} per "
        "step; it must be a scalar function of the count."
      )
    return out
  out = np.asarray(value, np.float64)
  if out.shape != ():
    raise ValueError(
      f"{name}={value!r} must be a number, a schedule"
      + (" or a window block" if name == "window" else "")
      + "."
    )
  return np.full(n, float(out))


def _check_horizon(horizon: Any) -> Optional[int]:
  if horizon is None:
    return None
  if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
    raise TypeError(f"horizon={horizon!r} must be a whole number of steps.")
  if horizon < 1:
    raise ValueError(f"horizon={horizon!r} must be >= 1.")
  return int(horizon)


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
    >>> from autosgm_optax.analysis import stability_conditions
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
  horizon = _check_horizon(horizon)
  notes = []
  if not beta_ok:
    notes.append(
      _report.NOTES["beta_unstable" if beta >= 1 else "beta_negative"]
    )
  if learning_rate is None:
    notes.append(_report.NOTES["rate_not_given"])
  scheduled = (
    callable(window)
    or callable(learning_rate)
    or isinstance(window, _base.AutoSGMBlock)
  )
  if scheduled and horizon is None:
    notes.append(_report.NOTES["no_horizon"])
    return StabilityConditions(
      beta=beta,
      horizon=None,
      beta_ok=beta_ok,
      learning_rate_ok=None,
      window_ok=None,
      bibo=False if not beta_ok else None,
      anneals=None,
      exponential=False if not beta_ok else None,
      rate_sup=None,
      rate_final=None,
      window_range=None,
      warmup_steps=None,
      schedule_margin=None,
      notes=tuple(notes),
    )

  n = 2 if horizon is None else horizon + 1
  counts = np.arange(n)
  mu = (
    np.ones(n)
    if learning_rate is None
    else evaluate(learning_rate, counts, "learning_rate")
  )
  f = np.ones(n) if window is None else evaluate(window, counts, "window")
  mu_good = np.isfinite(mu) & (mu >= 0)
  f_good = np.isfinite(f) & (f >= 0) & (f <= 1)
  learning_rate_ok, window_ok = bool(np.all(mu_good)), bool(np.all(f_good))
  if not learning_rate_ok:
    bad = int(np.argmin(mu_good))
    notes.append(_report.bad_rate_note(bad, float(mu[bad])))
  if not window_ok:
    bad = int(np.argmin(f_good))
    notes.append(_report.bad_window_note(bad, float(f[bad])))
  rate = mu * f
  finite = bool(np.all(np.isfinite(rate)))
  rate_sup = float(np.max(np.abs(rate))) if finite else math.inf
  bibo = beta_ok and learning_rate_ok and window_ok and finite
  rate_final = float(rate[-1])
  if horizon is None:  # constants only
    anneals = bool(rate_final == 0)
  else:
    anneals = bool(
      finite and abs(rate_final) <= ANNEAL_TOL * max(rate_sup, 1e-300)
    )
  notes.append(_report.NOTES["anneals" if anneals else "no_anneal"])
  prev, cur = rate[:-1], rate[1:]
  with np.errstate(divide="ignore", invalid="ignore"):
    ratios = np.where(prev > 0, cur / np.where(prev > 0, prev, 1), np.nan)
  rising = np.isfinite(ratios) & (ratios > 1)
  warmup_steps = int(np.sum(rising)) if horizon is not None else 0
  schedule_margin = (
    float(beta * np.max(ratios[rising])) if warmup_steps else None
  )
  if horizon is not None and rate[0] == 0 and np.any(rate > 0):
    notes.append(_report.NOTES["zero_start"])
  return StabilityConditions(
    beta=beta,
    horizon=horizon,
    beta_ok=beta_ok,
    learning_rate_ok=learning_rate_ok,
    window_ok=window_ok,
    bibo=bool(bibo),
    anneals=anneals,
    exponential=bool(bibo and anneals),
    rate_sup=rate_sup,
    rate_final=rate_final,
    window_range=(float(np.min(f)), float(np.max(f))),
    warmup_steps=warmup_steps,
    schedule_margin=schedule_margin,
    notes=tuple(notes),
  )
