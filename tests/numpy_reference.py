"""An independent float64 NumPy re-derivation of AutoSGM (docs/algorithm.md,
sections 1-6).

Written from the formulas of docs/algorithm.md, not from the library's code:
it imports neither ``autosgm_optax`` nor ``jax``. Every quantity is a float64
NumPy array or a Python float, and the loop is a plain Python loop over the
updates. Every formula is element-wise except the numerator's per-leaf
average, so the leaves are concatenated into one vector (one NumPy operation
per formula, for speed) and the averages are taken over per-leaf groups.

Conventions (docs/algorithm.md; the sections below are its sections):

- ``t = 1, 2, ...`` counts updates; schedules (learning rate, window,
  weight-decay rate) are evaluated at ``k = t - 1``, the number of updates
  made before this one (Optax's convention: 0 for the first update).
- Coupled decay: ``g <- g + rho w`` before everything.
- Filter (section 2): ``m(t) = beta m(t-1) + eta g(t)``,
  ``v(t) = m(t) - gamma m(t-1)``; ``eta = (1 - beta) / (1 - gamma)`` by
  default; debias divides by
  ``s(t) = [(1 - beta^t) - gamma (1 - beta^(t-1))] eta / (1 - beta)``.
- Denominator (section 3): ``nu(t) = beta_a nu(t-1) + (1 - beta_a) g^2`` of the
  raw gradient, ``d = sqrt(nu / (1 - beta_a^t) + eps_root) + eps``; ``d = 1``
  when off. ``vbar = v / d``.
- Numerator (section 4): unity, moment, correlation, robust correlation, all
  states starting at 0, the zero-parameter escape
  ``w_e = where(|w| < eps_w, w + eps_w, w)``, then optional per-leaf averaging
  (over every axis but the leading ``keep_axes``) and smoothing of that
  average.
- Update (sections 1 and 6): ``dw = -mu F a (vbar + c_rho rho w)`` with
  decoupled decay (whose term the numerator never sees), ``w <- w + dw``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np

Number = Union[float, int]
ScalarOrSchedule = Union[Number, Callable[[int], Number]]

#: The zero-parameter escape constant when ``eps`` is 0 (docs/algorithm.md,
#: section 4).
ESCAPE_FALLBACK = 1e-10

NUMERATORS = ("unity", "moment", "correlation", "robust_correlation")


def _value(x: Optional[ScalarOrSchedule], k: int, default: float) -> float:
  """A hyperparameter that may be a schedule, at the update count ``k``."""
  if x is None:
    return default
  return float(x(k)) if callable(x) else float(x)


# ---------------------------------------------------------------------------
# the window (docs/algorithm.md, section 5)


def raised_cosine_np(
    length: Number,
    *,
    order: Number = 2,
    floor: float = 0.0,
    full: bool = False,
    flat_top: float = 0.0,
    restarts: bool = False,
) -> Callable[[int], float]:
  """The raised-cosine window ``F(count)`` of docs/algorithm.md, section 5.

  ``f = count / tau`` (``count`` = updates made before this one, i.e.
  ``t - 1``), taken modulo the frame with restarts and held at 1 (the floor)
  after the frame without; then the full-window fold ``f <- |2f - 1|``, then
  the flat top (``F = 1`` while ``f < e``, else ``f <- (f - e)/(1 - e)``),
  then ``F = x + (1 - x) cos(pi f / 2)^n``.
  """
  tau = float(length)

  def window(count: int) -> float:
    if restarts:
      f = (count % length) / tau
    else:
      f = min(count / tau, 1.0)
    if full:
      f = abs(2.0 * f - 1.0)
    if f < flat_top:
      return 1.0
    f = (f - flat_top) / (1.0 - flat_top)
    phi = math.cos(math.pi * f / 2.0) ** order
    return floor + (1.0 - floor) * phi

  return window


# ---------------------------------------------------------------------------
# the optimizer


def _debias_divisor(t: int, beta: float, gamma: float, eta: float) -> float:
  """The filter's response to a unit constant input, ``s(t)``."""
  return ((1.0 - beta**t) - gamma * (1.0 - beta**(t - 1))) * (eta / (1.0 - beta))


class _Layout:
  """All leaves concatenated into one float64 vector (so that one NumPy
  operation per formula serves every leaf), with the per-leaf averaging
  groups: the elements of a leaf that share their indices on the kept
  leading axes form one group."""

  def __init__(self, params: dict[str, np.ndarray], keep_axes: tuple[int, ...]):
    if tuple(keep_axes) != tuple(range(len(keep_axes))):
      raise ValueError(f"keep_axes={keep_axes!r} must be leading axes")
    self.names = list(params)
    self.shapes = [np.shape(params[n]) for n in self.names]
    sizes = [int(np.prod(sh)) for sh in self.shapes]
    self.splits = np.cumsum(sizes)[:-1]
    groups, offset = [], 0
    for shape in self.shapes:
      k = min(len(keep_axes), len(shape))
      kept = shape[:k]
      ids = np.arange(int(np.prod(kept))).reshape(kept + (1,) * (len(shape) - k))
      if len(shape) == k:  # nothing to average over: one group per element
        ids = np.arange(int(np.prod(shape))).reshape(shape)
      ids = np.broadcast_to(ids, shape).ravel() + offset
      groups.append(ids)
      offset = int(ids.max()) + 1 if ids.size else offset
    self.group = np.concatenate(groups) if groups else np.zeros(0, int)
    self.num_groups = offset
    self.group_size = np.bincount(self.group, minlength=offset).astype(float)

  def flatten(self, tree: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [np.asarray(tree[n], np.float64).ravel() for n in self.names])

  def unflatten(self, x: np.ndarray) -> dict[str, np.ndarray]:
    return {n: part.reshape(sh) for n, sh, part in
            zip(self.names, self.shapes, np.split(x, self.splits))}

  def group_mean(self, x: np.ndarray) -> np.ndarray:
    """The mean of ``x`` over each group, one value per group."""
    return np.bincount(self.group, weights=x,
                       minlength=self.num_groups) / self.group_size


def reference_run(
    params0: dict[str, np.ndarray],
    grad_fn: Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]],
    steps: int,
    *,
    learning_rate: ScalarOrSchedule,
    beta: float = 0.9,
    gamma: float = 0.0,
    eta: Optional[float] = None,
    debias: bool = True,
    denominator: bool = True,
    moment_beta: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    numerator: str = "unity",
    numerator_beta: float = 0.9999,
    numerator_average: bool = True,
    numerator_smoothing: Optional[float] = 0.1,
    numerator_keep_axes: tuple[int, ...] = (),
    numerator_mask: Optional[dict[str, bool]] = None,
    huber_k: float = 4.0,
    window: Optional[ScalarOrSchedule] = None,
    weight_decay: ScalarOrSchedule = 0.0,
    decay: str = "decoupled",
    decay_factor: float = 1.0,
    numerator_sees_decay: bool = False,
    history: bool = False,
):
  """Runs ``steps`` AutoSGM updates in float64 NumPy; returns the parameters.

  Args:
    params0: initial parameters, a flat dict of arrays (copied to float64).
    grad_fn: ``grad_fn(params, k) -> grads`` with ``k = 0, 1, ...`` the number
      of updates made so far (so noise can be indexed by step).
    steps: number of updates.
    learning_rate: ``mu``, a number or a function of ``k``.
    beta, gamma, eta: the filter's pole, zero and gain (default gain
      ``(1 - beta) / (1 - gamma)``).
    debias: divide the filter's output by the exact ``s(t)``.
    denominator: divide by the debiased RMS of the raw gradient (else d = 1).
    moment_beta: pole ``beta_a`` of the second moment (and of the robust
      estimator's ``E|p|``).
    eps, eps_root: the denominator's constants; ``eps`` (or 1e-10 when it is
      0) is also the zero-parameter escape.
    numerator: one of :data:`NUMERATORS`.
    numerator_beta: ``beta_n``.
    numerator_average: average ``ahat`` over the leaf (except keep_axes).
    numerator_smoothing: pole of the smoothing of the average, or None.
    numerator_keep_axes: leading axes the average keeps.
    numerator_mask: None, or a bool per leaf name: leaves with False take
      the unity numerator ``a = 1``.
    huber_k: the robust clip multiple ``k``.
    window: ``F``, None (1), a number or a function of ``k``.
    weight_decay: ``rho``, a number or a function of ``k``.
    decay: ``"decoupled"`` or ``"coupled"``.
    decay_factor: ``c_rho`` of decoupled decay.
    numerator_sees_decay: a deliberately WRONG variant (the original code's,
      docs/algorithm.md, section 4) that feeds the decayed direction to the
      numerator; only
      for tests showing the comparison can tell the two apart.
    history: also return the list of parameters after every update.

  Returns:
    The final parameters (a dict of float64 arrays), and with ``history`` a
    list of the parameters after each update as well.
  """
  if numerator not in NUMERATORS:
    raise ValueError(f"unknown numerator {numerator!r}")
  if decay not in ("decoupled", "coupled"):
    raise ValueError(f"unknown decay {decay!r}")
  if numerator_smoothing is not None and not numerator_average:
    raise ValueError("smoothing acts on the per-leaf average")

  beta, gamma = float(beta), float(gamma)
  eta = (1.0 - beta) / (1.0 - gamma) if eta is None else float(eta)
  ba, bn = float(moment_beta), float(numerator_beta)
  eps_w = float(eps) if eps > 0 else ESCAPE_FALLBACK
  smooth = numerator_smoothing is not None

  layout = _Layout(params0, tuple(numerator_keep_axes))
  w = layout.flatten(params0)
  m = np.zeros_like(w)       # filter state, m(0) = 0
  nu = np.zeros_like(w)      # second moment of the raw gradient
  c = np.zeros_like(w)       # numerator's estimate c(t)
  q = np.zeros_like(w)       # EMA of w_e^2 (S = 1 + q)
  e_abs = np.zeros_like(w)   # robust estimator's E|p|
  a_prev = np.zeros(layout.num_groups)  # smoothed per-leaf average aL
  trajectory = []

  for k in range(steps):
    t = k + 1
    g = layout.flatten(grad_fn(layout.unflatten(w.copy()), k))
    mu = _value(learning_rate, k, 1.0)
    F = _value(window, k, 1.0)
    rho = _value(weight_decay, k, 0.0)
    # 6. coupled decay, before everything
    if decay == "coupled":
      g = g + rho * w
    # 2. the filter: m(t) = beta m(t-1) + eta g(t), v(t) = m(t) - gamma m(t-1)
    m_new = beta * m + eta * g
    v = m_new - gamma * m
    m = m_new
    if debias:
      v = v / _debias_divisor(t, beta, gamma, eta)
    # 3. the denominator, from the raw gradient, always debiased
    if denominator:
      nu = ba * nu + (1.0 - ba) * g * g
      d = np.sqrt(nu / (1.0 - ba**t) + eps_root) + eps
    else:
      d = np.ones_like(g)
    vbar = v / d
    # 6. the decoupled-decay term, added after the normalisation
    dec = decay_factor * rho * w if decay == "decoupled" else np.zeros_like(w)
    seen = vbar + dec if numerator_sees_decay else vbar
    # 4. the numerator
    if numerator == "unity":
      a = np.ones_like(w)
    else:
      if numerator == "moment":
        ubar = g / d
        c = bn * c + (1.0 - bn) * ubar * ubar
        ahat = np.minimum(c, 1.0)
      else:
        w_e = np.where(np.abs(w) < eps_w, w + eps_w, w)  # zero escape
        q = bn * q + (1.0 - bn) * w_e * w_e
        S = 1.0 + q
        p = w_e * seen
        if numerator == "correlation":
          x = p
        else:  # Markov-inequality Huber clip; E|p| includes the current |p|
          e_abs = ba * e_abs + (1.0 - ba) * np.abs(p)
          x = np.sign(p) * np.minimum(np.abs(p), huber_k * e_abs) / S
        c = bn * c + x
        ahat = np.minimum(np.abs(c), S)
      if numerator_average:
        mean = layout.group_mean(ahat)
        if smooth:
          mean = numerator_smoothing * a_prev + (1.0 - numerator_smoothing) * mean
          a_prev = mean
        a = mean[layout.group]
      else:
        a = ahat
      if numerator_mask is not None:
        estimated = layout.flatten(
            {n: np.full(np.shape(params0[n]), float(numerator_mask[n]))
             for n in layout.names}) > 0
        a = np.where(estimated, a, 1.0)
    # 1. the update, the window after the smoothing
    w = w - mu * F * a * (vbar + dec)
    if history:
      trajectory.append(layout.unflatten(w.copy()))

  final = layout.unflatten(w)
  if history:
    return final, trajectory
  return final


def relative_error(a: dict, b: dict) -> float:
  """docs/algorithm.md, section 8: per leaf ``max|a - b| / max(max|b|,
  1e-30)``, worst leaf
  (``b`` is the reference)."""
  worst = 0.0
  for name, ref in b.items():
    ref = np.asarray(ref, np.float64)
    got = np.asarray(a[name], np.float64)
    if got.shape != ref.shape:
      return math.inf
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    if not math.isfinite(err):
      return math.inf
    worst = max(worst, err / scale)
  return worst
