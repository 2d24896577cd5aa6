"""The lowpass filter as an object to study: its responses, its named zeros,
other methods' momentum as points of it, and its closed loop on a quadratic.

Pure float64 NumPy (docs/design.md; the filter is docs/algorithm.md,
section 2). Nothing here runs in a training step.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
import numbers
from typing import TYPE_CHECKING
from typing import Any
from typing import Optional
from typing import Union

import numpy as np

from autosgm_optax._src import base as _base

if TYPE_CHECKING:  # pragma: no cover
  import matplotlib.figure

#: The named zeros of :func:`named_zero`.
NAMED_ZEROS = (
  "heavy_ball",
  "nesterov",
  "max_variance_reduction",
  "variance_per_unit_gain",
)

#: Frequencies of :func:`frequency_response` (and of the default grid of
#: :func:`group_delay`) on [0, pi].
DEFAULT_N = 512

#: Steps of :func:`impulse_response` and :func:`step_response`.
DEFAULT_STEPS = 50

Debias = Union[bool, str]


# ---------------------------------------------------------------------------
# argument checks


def _scalar(name: str, value: Any) -> float:
  """``value`` as a Python float: a number or a 0-d (NumPy or JAX) array."""
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a number, got the bool {value!r}.")
  if isinstance(value, numbers.Real):
    return float(value)
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    array = np.asarray(value)
    if array.shape != () or not np.issubdtype(array.dtype, np.number):
      raise ValueError(
        f"{name}={value!r} must be a real scalar (shape ()), got shape "
        f"{array.shape} and dtype {array.dtype}."
      )
    if np.iscomplexobj(array):
      raise TypeError(f"{name}={value!r} must be real.")
    return float(array)
  raise TypeError(
    f"{name} must be a number, got {value!r} of type {type(value).__name__}."
  )


def _design(beta: Any, gamma: Any, eta: Any) -> tuple[float, float, float]:
  """``(beta, gamma, eta)`` as checked floats; ``eta=None`` is the unit-DC
  gain ``(1 - beta) / (1 - gamma)``."""
  b = _scalar("beta", beta)
  g = _scalar("gamma", gamma)
  e = None if eta is None else _scalar("eta", eta)
  _base.check_filter_design(b, g, e)
  return b, g, (1.0 - b) / (1.0 - g) if e is None else e


def _count(name: str, value: Any, low: int) -> int:
  """A whole number ``>= low`` (a bool is refused)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(
      f"{name}={value!r} must be a whole number in the valid range "
      f"[{low}, inf)."
    )
  if value < low:
    raise ValueError(
      f"{name}={value!r} is outside the valid range [{low}, inf)."
    )
  return int(value)


#: The per-term debiases of the quasi-hyperbolic form (QHAdam's, NAdam's).
TERM_DEBIASES = ("ema", "nadam")


def _debias_flag(debias: Any) -> Union[bool, str]:
  if not isinstance(debias, bool) and debias not in TERM_DEBIASES:
    raise ValueError(
      f"debias={debias!r}: the responses are computed without (False), with "
      "the exact debias s(t) (True), or with a per-term debias of the "
      f"quasi-hyperbolic form ({', '.join(map(repr, TERM_DEBIASES))})."
    )
  return debias


def _qh_weight(beta: float, gamma: float, eta: float, debias: str) -> float:
  """``nu`` of a design in the quasi-hyperbolic form (``eta = 1 - nu beta``,
  ``gamma = (1 - nu) beta / eta``)."""
  nu = (1.0 - eta) / beta if beta > 0 else np.nan
  implied = (1.0 - nu) * beta / eta if 0 <= nu <= 1 else np.nan
  if not np.isclose(gamma, implied, rtol=1e-9, atol=1e-12):
    raise ValueError(
      f"debias={debias!r} debiases the terms of the quasi-hyperbolic form "
      "(eta = 1 - nu beta, gamma = (1 - nu) beta / eta, 0 <= nu <= 1, beta > "
      f"0); beta={beta!r}, gamma={gamma!r}, eta={eta!r} is not such a point."
    )
  return nu


def _term_debiased(beta: float, nu: float, debias: str, t: np.ndarray):
  """The quasi-hyperbolic form's response to a unit constant with its terms
  debiased apart: ``m(t) = 1 - beta^t`` and the input 1."""
  m = 1.0 - beta**t
  if debias == "ema":  # QHAdam
    return (1.0 - nu) + nu * m / (1.0 - beta**t)
  return nu * m / (1.0 - beta ** (t + 1)) + (1.0 - nu) / (1.0 - beta**t)


# ---------------------------------------------------------------------------
# points of the design space


def named_zero(name: str, beta: float) -> float:
  r"""The named zero ``gamma`` for the pole ``beta``.

  - ``"heavy_ball"``: 0 (Polyak's heavy ball, Adam's first moment).
  - ``"nesterov"``: :math:`\beta / (1 + \beta)`, Nesterov's zero, that of the
    deadbeat closed loop (:func:`deadbeat`).
  - ``"max_variance_reduction"``: :math:`-\beta`, the least
    :func:`noise_gain` at unit DC gain among the zeros
    :math:`-\beta \le \gamma < \beta`.
  - ``"variance_per_unit_gain"``:
    :math:`\max(-\beta, 1 - \sqrt{2 (1 - \beta)})`, the zero that minimises
    the ratio :func:`noise_gain` / :func:`dc_gain` at a fixed gain
    ``eta`` (0.5528 at ``beta = 0.9``, the original examples' value).

  See docs/design.md for what each buys, and docs/algorithm.md, section 2.

  Args:
    name: one of ``"heavy_ball"``, ``"nesterov"``,
      ``"max_variance_reduction"``, ``"variance_per_unit_gain"``.
    beta: the pole, ``0 <= beta < 1``.

  Returns:
    The zero ``gamma``, a float (``gamma < beta``, or 0 at ``beta = 0``).

  Example:
    >>> from autosgm_optax import design
    >>> design.named_zero("nesterov", 0.9)
    0.47368421
    >>> round(design.named_zero("variance_per_unit_gain", 0.9), 4)
    0.5528
  """
  _base.check_choice("name", name, NAMED_ZEROS)
  b = _scalar("beta", beta)
  _base.check_range("beta", b, 0.0, 1.0)
  if name == "heavy_ball":
    return 0.0
  if name == "nesterov":
    return b / (1.0 + b)
  if name == "max_variance_reduction":
    return 0.0 - b  # 0.0, not -0.0, at beta = 0
  return max(0.0 - b, 1.0 - math.sqrt(2.0 * (1.0 - b)))


def from_qhm(nu: float, beta: float) -> tuple[float, float, float]:
  r"""Quasi-hyperbolic momentum (QHM) as a filter ``(beta, gamma, eta)``.

  QHM (Ma & Yarats, 2019) steps along
  :math:`(1 - \nu) g(t) + \nu b(t)` with
  :math:`b(t) = \beta b(t-1) + (1 - \beta) g(t)`. Its transfer function is

  .. math::
    (1 - \nu) + \frac{\nu (1 - \beta)}{1 - \beta z^{-1}}
    = (1 - \nu\beta) \frac{1 - \gamma z^{-1}}{1 - \beta z^{-1}}, \qquad
    \gamma = \frac{(1 - \nu)\beta}{1 - \nu\beta},

  the pole-zero filter with unit DC gain and no debias (docs/design.md).
  At ``nu = 0`` (plain SGD) or ``beta = 0`` the zero cancels the pole: the
  design is then the pure gain ``(0.0, 0.0, 1.0)``.

  Args:
    nu: the immediate discount, ``0 <= nu <= 1``.
    beta: the pole, ``0 <= beta < 1``.

  Returns:
    ``(beta, gamma, eta)`` with ``eta = 1 - nu beta``.

  References:
    Ma & Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
    <https://arxiv.org/abs/1810.06801>`_, 2019.

  Example:
    >>> from autosgm_optax import design
    >>> design.from_qhm(0.7, 0.999)
    (0.999, 0.99667443, 0.3007)
  """
  n = _scalar("nu", nu)
  b = _scalar("beta", beta)
  _base.check_range("nu", n, 0.0, 1.0, high_open=False)
  _base.check_range("beta", b, 0.0, 1.0)
  if n == 0.0 or b == 0.0:
    return 0.0, 0.0, 1.0
  eta = 1.0 - n * b
  return b, (1.0 - n) * b / eta, eta


def from_nadam(b1: float) -> tuple[float, float, float]:
  r"""NAdam's first moment (``optax.nadam``) as a filter, without its
  debias.

  With :math:`m(t) = b_1 m(t-1) + (1 - b_1) g(t)` NAdam's numerator, its
  per-term debias left out, is :math:`b_1 m(t) + (1 - b_1) g(t)`:

  .. math::
    \frac{b_1 (1 - b_1)}{1 - b_1 z^{-1}} + (1 - b_1)
    = (1 - b_1^2) \frac{1 - \frac{b_1}{1 + b_1} z^{-1}}{1 - b_1 z^{-1}},

  Nesterov's zero with the unit-DC gain ``eta = (1 - b1)(1 + b1)``: NAG's
  filter (gain ``1 + b1``) times ``1 - b1``, as Adam's first moment is the
  heavy ball's times ``1 - b1`` (docs/design.md). NAdam's own debias,
  ``b1 m(t) / (1 - b1^(t+1)) + (1 - b1) g(t) / (1 - b1^t)``, is not the
  exact ``s(t)``.

  Args:
    b1: the pole, ``0 <= b1 < 1``.

  Returns:
    ``(b1, b1 / (1 + b1), 1 - b1**2)``.

  Example:
    >>> from autosgm_optax import design
    >>> design.from_nadam(0.9)
    (0.9, 0.47368421, 0.19)
  """
  b = _scalar("b1", b1)
  _base.check_range("b1", b, 0.0, 1.0)
  return b, b / (1.0 + b), (1.0 - b) * (1.0 + b)


def deadbeat(beta: float) -> tuple[float, float]:
  r"""The deadbeat design for the pole ``beta``: ``(gamma, mu_eta_h)``.

  On :math:`f(w) = h w^2 / 2` the closed loop of
  :math:`w \leftarrow w - \mu H[g]` has the characteristic polynomial
  :math:`z^2 - (1 + \beta - \mu\eta h) z + (\beta - \mu\eta h \gamma)`
  (:func:`closed_loop_poles`). Both roots are 0 iff

  .. math::
    \mu \eta h = 1 + \beta, \qquad \gamma = \frac{\beta}{1 + \beta}:

  Nesterov's zero; with Nesterov's gain ``eta = 1 + beta`` that is
  ``mu = 1 / h``, and the error vanishes after two steps from any state
  (docs/design.md).

  Args:
    beta: the pole, ``0 <= beta < 1``.

  Returns:
    ``(gamma, mu_eta_h) = (beta / (1 + beta), 1 + beta)``.

  Example:
    >>> from autosgm_optax import design
    >>> gamma, mu_eta_h = design.deadbeat(0.5)
    >>> gamma, mu_eta_h
    (0.3333333333333333, 1.5)
    >>> design.closed_loop_poles(0.5, gamma, 1.5, mu_h=1.0)
    array([0.+0.j, 0.+0.j])
  """
  b = _scalar("beta", beta)
  _base.check_range("beta", b, 0.0, 1.0)
  return b / (1.0 + b), 1.0 + b


# ---------------------------------------------------------------------------
# responses


def _transfer(beta: float, gamma: float, eta: float, omega: np.ndarray):
  z_inv = np.exp(-1j * omega)
  return eta * (1.0 - gamma * z_inv) / (1.0 - beta * z_inv)


def frequency_response(
  beta: float,
  gamma: float,
  eta: Optional[float] = None,
  n: int = DEFAULT_N,
) -> tuple[np.ndarray, np.ndarray]:
  r"""The filter's frequency response on ``n`` points of ``[0, pi]``.

  .. math::
    H(e^{j\omega}) = \eta\,\frac{1 - \gamma e^{-j\omega}}
                               {1 - \beta e^{-j\omega}}

  (docs/algorithm.md, section 2). ``omega`` is in radians per step, both
  ends included (``np.linspace(0, pi, n)``): ``omega = 0`` is DC
  (:func:`dc_gain`), ``omega = pi`` the fastest alternation.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain
      ``(1 - beta) / (1 - gamma)``.
    n: the number of frequencies, ``>= 2``.

  Returns:
    ``(omega, H)``: float64 frequencies of shape ``(n,)`` and the complex128
    response at each.

  Example:
    >>> import numpy as np
    >>> from autosgm_optax import design
    >>> omega, h = design.frequency_response(0.9, 0.0, n=3)
    >>> omega
    array([0.        , 1.57079633, 3.14159265])
    >>> np.abs(h)  # the EMA: 1 at DC, (1 - beta) / (1 + beta) at pi
    array([1.        , 0.07432941, 0.05263158])
  """
  b, g, e = _design(beta, gamma, eta)
  omega = np.linspace(0.0, np.pi, _count("n", n, 2))
  return omega, _transfer(b, g, e, omega)


def _realise(beta: float, gamma: float, eta: float, x: np.ndarray):
  """The filter's output for the input ``x``, as the library realises it
  (docs/algorithm.md, section 2): ``m(t) = beta m(t-1) + eta x(t)``,
  ``v(t) = m(t) - gamma m(t-1)``, ``m(0) = 0``."""
  out = np.empty(x.shape, np.float64)
  m = 0.0
  for t, xt in enumerate(x):
    m_new = beta * m + eta * float(xt)
    out[t] = m_new - gamma * m
    m = m_new
  return out


def impulse_response(
  beta: float,
  gamma: float,
  eta: Optional[float] = None,
  steps: int = DEFAULT_STEPS,
) -> np.ndarray:
  r"""The filter's output for a unit impulse at the first step.

  .. math::
    h(1) = \eta, \qquad h(t) = \eta (\beta - \gamma) \beta^{t-2}
    \quad (t \ge 2)

  Entry ``i`` is the output at step ``t = i + 1`` (docs/algorithm.md counts
  steps from 1), computed by the filter's recurrence from an empty memory.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.
    steps: the number of steps, ``>= 1``.

  Returns:
    A float64 array of shape ``(steps,)``.

  Example:
    >>> from autosgm_optax import design
    >>> design.impulse_response(0.5, 0.25, eta=1.0, steps=4)
    array([1.    , 0.25  , 0.125 , 0.0625])
  """
  b, g, e = _design(beta, gamma, eta)
  x = np.zeros(_count("steps", steps, 1))
  x[0] = 1.0
  return _realise(b, g, e, x)


def _divisor(beta: float, gamma: float, eta: float, t: np.ndarray):
  """The exact debias s(t), written as docs/algorithm.md, section 2."""
  return ((1.0 - beta**t) - gamma * (1.0 - beta ** (t - 1))) * (
    eta / (1.0 - beta)
  )


def step_response(
  beta: float,
  gamma: float,
  eta: Optional[float] = None,
  steps: int = DEFAULT_STEPS,
  debias: Union[bool, str] = False,
) -> np.ndarray:
  r"""The filter's output for a unit constant input from the first step.

  Without debias it is the exact debias divisor itself,

  .. math::
    s(t) = \Big[(1 - \beta^t) - \gamma (1 - \beta^{t-1})\Big]
           \frac{\eta}{1 - \beta},

  which starts at ``eta`` and tends to :func:`dc_gain`; with
  ``debias=True`` the output is divided by ``s(t)`` (docs/algorithm.md,
  section 2) and is 1.0 from the first step on, to float64 round-off.
  Entry ``i`` is step ``t = i + 1``, computed by the filter's recurrence.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.
    steps: the number of steps, ``>= 1``.
    debias: False; True, divide by the exact ``s(t)``; or, for a design in
      the quasi-hyperbolic form (``eta = 1 - nu beta``), ``"ema"``
      (QHAdam: the EMA's term divided by ``1 - beta^t``) or ``"nadam"``
      (NAdam: the EMA's term by ``1 - beta^(t+1)``, the input's by
      ``1 - beta^t``), which are not the exact debias (NAdam's starts at
      ``1 + beta / (1 + beta)``; QHAdam's is exact for a constant input
      but weighs past inputs differently from step 2 on).

  Returns:
    A float64 array of shape ``(steps,)``.

  Example:
    >>> from autosgm_optax import design
    >>> design.step_response(0.9, 0.0, steps=3)  # Adam's 1 - 0.9^t
    array([0.1  , 0.19 , 0.271])
    >>> design.step_response(0.9, 0.0, steps=3, debias=True)
    array([1., 1., 1.])
  """
  b, g, e = _design(beta, gamma, eta)
  debias = _debias_flag(debias)
  n = _count("steps", steps, 1)
  t = np.arange(1, n + 1, dtype=float)
  if isinstance(debias, str):
    return _term_debiased(b, _qh_weight(b, g, e, debias), debias, t)
  out = _realise(b, g, e, np.ones(n))
  if debias:
    out = out / _divisor(b, g, e, t)
  return out


def group_delay(
  beta: float,
  gamma: float,
  eta: Optional[float] = None,
  omega: Optional[Any] = None,
) -> np.ndarray:
  r"""The filter's group delay in steps (samples), ``-d arg H / d omega``.

  .. math::
    \tau(\omega) = \frac{\beta\cos\omega - \beta^2}
                        {1 - 2\beta\cos\omega + \beta^2}
                 - \frac{\gamma\cos\omega - \gamma^2}
                        {1 - 2\gamma\cos\omega + \gamma^2}

  At DC it is :math:`\beta/(1-\beta) - \gamma/(1-\gamma)`, the mean age
  of the gradients the output is made of (9 steps for the EMA with
  ``beta = 0.9``); a zero ``gamma > 0`` shortens it. It does not depend on
  ``eta``. Where a zero sits on the unit circle (``gamma = -1`` at
  ``omega = pi``) it is undefined (nan).

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0`` (checked, but it does not change the delay).
    omega: frequencies in radians per step (any shape); None for the grid
      of :func:`frequency_response` (512 points of ``[0, pi]``).

  Returns:
    A float64 array of the shape of ``omega``.

  Example:
    >>> from autosgm_optax import design
    >>> design.group_delay(0.9, 0.0, omega=[0.0, 3.141592653589793])
    array([ 9.        , -0.47368421])
  """
  b, g, _ = _design(beta, gamma, eta)
  if omega is None:
    w = np.linspace(0.0, np.pi, DEFAULT_N)
  else:
    w = np.asarray(omega, np.float64)
    if not np.all(np.isfinite(w)):
      raise ValueError(f"omega={omega!r} must hold finite frequencies.")

  # cos(omega) = 1 - 2 s: the forms below keep their accuracy near DC for a
  # pole near 1, where 1 - 2 a cos(omega) + a^2 would cancel.
  s = np.sin(w / 2.0) ** 2

  def lag(a):  # (a cos(omega) - a^2) / (1 - 2 a cos(omega) + a^2)
    with np.errstate(divide="ignore", invalid="ignore"):
      return a * ((1.0 - a) - 2.0 * s) / ((1.0 - a) ** 2 + 4.0 * a * s)

  return lag(b) - lag(g)


def noise_gain(beta: float, gamma: float, eta: Optional[float] = None) -> float:
  r"""The output variance over the input variance for white noise.

  .. math::
    \sum_{t \ge 1} h(t)^2 = \eta^2\,\frac{1 + \gamma^2 - 2\gamma\beta}
                                         {1 - \beta^2}

  (the sum of the squared :func:`impulse_response`). With unit DC gain it
  is the fraction of a gradient's noise variance that the filter lets
  through; ``(1 - beta) / (1 + beta)`` for the EMA.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.

  Returns:
    A float.

  Example:
    >>> from autosgm_optax import design
    >>> design.noise_gain(0.9, 0.0)  # (1 - 0.9) / (1 + 0.9)
    0.0526315789473684
  """
  b, g, e = _design(beta, gamma, eta)
  return e * e * (1.0 + g * g - 2.0 * g * b) / (1.0 - b * b)


def dc_gain(beta: float, gamma: float, eta: Optional[float] = None) -> float:
  r"""The gain at DC, the response to a constant in the long run.

  .. math::
    H(1) = \eta\,\frac{1 - \gamma}{1 - \beta}

  1 for the default gain; ``1 / (1 - beta)`` for the heavy ball
  (``eta = 1``) and Nesterov (``eta = 1 + beta``), which is why their
  learning rates are ``1 - beta`` times Adam's.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.

  Returns:
    A float.

  Example:
    >>> from autosgm_optax import design
    >>> round(design.dc_gain(0.9, 0.0, eta=1.0), 12)
    10.0
  """
  b, g, e = _design(beta, gamma, eta)
  return e * (1.0 - g) / (1.0 - b)


# ---------------------------------------------------------------------------
# the quadratic view


def closed_loop_poles(
  beta: float, gamma: float, eta: Optional[float], mu_h: float
) -> np.ndarray:
  r"""The poles of the step ``w <- w - mu H[g]`` on ``f(w) = h w^2 / 2``.

  With ``g(t) = h w(t)`` and ``w(t+1) = w(t) - mu v(t)`` the error obeys a
  second-order recurrence with the characteristic polynomial

  .. math::
    z^2 - (1 + \beta - \mu\eta h)\, z + (\beta - \mu\eta h\gamma) = 0

  (docs/algorithm.md, section 2): the iteration converges iff both roots lie
  inside the unit circle, at the rate :func:`convergence_rate`. The
  Nesterov realisation has the same transfer function, hence the same poles.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.
    mu_h: the learning rate times the curvature, ``mu * h`` (finite; a
      negative value is a maximum).

  Returns:
    A complex128 array of the two roots, the larger modulus first.

  Example:
    >>> from autosgm_optax import design
    >>> design.closed_loop_poles(0.9, 0.0, 1.0, mu_h=0.1)  # heavy ball
    array([0.9+0.3j, 0.9-0.3j])
  """
  b, g, e = _design(beta, gamma, eta)
  mu_h = _scalar("mu_h", mu_h)
  _base.check_range("mu_h", mu_h, None, None)  # finite
  k = mu_h * e
  p = -(1.0 + b - k)  # z^2 + p z + q
  q = b - k * g
  disc = p * p - 4.0 * q
  if disc >= 0.0:  # real roots, the larger without cancellation
    big = -(p + math.copysign(math.sqrt(disc), p)) / 2.0
    small = q / big if big != 0.0 else 0.0
    roots = np.array([big, small], np.complex128)
  else:
    root = complex(-p / 2.0, math.sqrt(-disc) / 2.0)
    roots = np.array([root, root.conjugate()], np.complex128)
  return roots[np.argsort(-np.abs(roots), kind="stable")]


def convergence_rate(
  beta: float, gamma: float, eta: Optional[float], mu_h: float
) -> float:
  r"""The largest modulus of the :func:`closed_loop_poles`.

  The error on the quadratic shrinks as :math:`\rho^t` (times a polynomial
  in ``t`` for a double root): ``rho < 1`` converges, 0 is deadbeat
  (:func:`deadbeat`).

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (or ``beta = gamma = 0``).
    eta: the gain, ``> 0``; None for the unit-DC gain.
    mu_h: the learning rate times the curvature, ``mu * h``.

  Returns:
    A float ``rho >= 0``.

  Example:
    >>> from autosgm_optax import design
    >>> round(design.convergence_rate(0.81, 0.0, 1.0, mu_h=1.0), 12)
    0.9
  """
  return float(np.max(np.abs(closed_loop_poles(beta, gamma, eta, mu_h))))


# ---------------------------------------------------------------------------
# a design as a value


@dataclasses.dataclass(frozen=True)
class FilterDesign:
  r"""A filter design: pole, zero, gain, debias and realisation.

  The record :func:`of` makes from a filter block or a preset; its methods
  are this module's functions for it. It is checked on construction
  (``0 <= beta < 1``, ``gamma < beta`` or ``beta = gamma = 0``,
  ``eta > 0``) and holds float64 numbers.

  Attributes:
    beta: the pole.
    gamma: the zero.
    eta: the gain; None on construction is the unit-DC gain
      ``(1 - beta) / (1 - gamma)``, stored as its value.
    debias: True for the exact debias ``s(t)``, False for none, or a string
      naming another method's debias (carried, not computed).
    nesterov: realised in Optax's Nesterov form ``v = g + beta m``,
      ``m = beta m + g``: the transfer function of ``gamma =
      beta / (1 + beta)``, ``eta = 1 + beta``, which ``gamma`` and ``eta``
      then hold (left at their defaults they are filled in).

  Example:
    >>> from autosgm_optax import design
    >>> d = design.FilterDesign(0.9, 0.5)
    >>> d
    FilterDesign(beta=0.9, gamma=0.5, eta=0.2, debias=False, nesterov=False)
    >>> round(d.dc_gain(), 12), round(d.noise_gain(), 4)
    (1.0, 0.0737)
  """

  beta: float
  gamma: float = 0.0
  eta: Optional[float] = None
  debias: Debias = False
  nesterov: bool = False

  def __post_init__(self):
    if not isinstance(self.nesterov, bool):
      raise TypeError(f"nesterov={self.nesterov!r} must be a bool.")
    if not isinstance(self.debias, (bool, str)):
      raise TypeError(
        f"debias={self.debias!r} must be a bool or a string naming a "
        "method's debias."
      )
    beta = _scalar("beta", self.beta)
    gamma = _scalar("gamma", self.gamma)
    eta = None if self.eta is None else _scalar("eta", self.eta)
    if self.nesterov:
      _base.check_range("beta", beta, 0.0, 1.0)
      implied = (beta / (1.0 + beta), 1.0 + beta)
      given = (gamma, implied[1] if eta is None else eta)
      # A FilterSpec may hold them in float32 (injected hyperparameters).
      if not (gamma == 0.0 and eta is None) and not np.allclose(
        given, implied, rtol=1e-6, atol=0.0
      ):
        raise ValueError(
          f"nesterov=True is the transfer function of gamma = beta / "
          f"(1 + beta) = {implied[0]!r} and eta = 1 + beta = {implied[1]!r};"
          f" got gamma={self.gamma!r}, eta={self.eta!r}."
        )
      gamma, eta = implied
    beta, gamma, eta = _design(beta, gamma, eta)
    object.__setattr__(self, "beta", beta)
    object.__setattr__(self, "gamma", gamma)
    object.__setattr__(self, "eta", eta)

  def frequency_response(
    self, n: int = DEFAULT_N
  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`frequency_response` of this design."""
    return frequency_response(self.beta, self.gamma, self.eta, n)

  def impulse_response(self, steps: int = DEFAULT_STEPS) -> np.ndarray:
    """:func:`impulse_response` of this design (without debias)."""
    return impulse_response(self.beta, self.gamma, self.eta, steps)

  def step_response(
    self, steps: int = DEFAULT_STEPS, debias: Optional[bool] = None
  ) -> np.ndarray:
    """:func:`step_response` of this design, with its own debias unless
    ``debias`` says otherwise."""
    chosen: Any = self.debias if debias is None else debias
    return step_response(self.beta, self.gamma, self.eta, steps, chosen)

  def group_delay(self, omega: Optional[Any] = None) -> np.ndarray:
    """:func:`group_delay` of this design."""
    return group_delay(self.beta, self.gamma, self.eta, omega)

  def noise_gain(self) -> float:
    """:func:`noise_gain` of this design."""
    return noise_gain(self.beta, self.gamma, self.eta)

  def dc_gain(self) -> float:
    """:func:`dc_gain` of this design."""
    return dc_gain(self.beta, self.gamma, self.eta)

  def closed_loop_poles(self, mu_h: float) -> np.ndarray:
    """:func:`closed_loop_poles` of this design."""
    return closed_loop_poles(self.beta, self.gamma, self.eta, mu_h)

  def convergence_rate(self, mu_h: float) -> float:
    """:func:`convergence_rate` of this design."""
    return convergence_rate(self.beta, self.gamma, self.eta, mu_h)


#: The design of an empty filter slot: ``H[g] = g``.
IDENTITY = FilterDesign(0.0, 0.0, 1.0)


def _from_spec(spec: _base.FilterSpec) -> FilterDesign:
  return FilterDesign(
    _scalar("beta", spec.beta),
    _scalar("gamma", spec.gamma),
    None if spec.eta is None else _scalar("eta", spec.eta),
    spec.debias,
    bool(spec.nesterov),
  )


def of(x: Any, *args: Any, **kwargs: Any) -> FilterDesign:
  """The :class:`FilterDesign` of a filter block or of a preset.

  Args:
    x: a filter block (``lowpass_filter(...)``, an
      :class:`autosgm_optax.AutoSGMBlock` with ``facts.filter``), its
      :class:`autosgm_optax.FilterSpec`, or a function of
      :mod:`autosgm_optax.presets` followed by its arguments.
    *args: the preset's positional arguments.
    **kwargs: the preset's keyword arguments.

  Returns:
    The design; for a preset without a filter (``presets.sgd`` without
    momentum) the identity ``beta = gamma = 0``, ``eta = 1``.

  Raises:
    ValueError: a block of another slot, or a function that is not a preset.
    TypeError: anything else, or arguments given with a block.

  Example:
    >>> from autosgm_optax import design, lowpass_filter, presets
    >>> design.of(presets.nag, 0.1, momentum=0.5)
    FilterDesign(beta=0.5, gamma=0.33333333, eta=1.5, debias=False,
                 nesterov=True)
    >>> design.of(lowpass_filter(0.9)).step_response(3)
    array([1., 1., 1.])
  """
  # Imported here: the presets build on most of the package.
  from autosgm_optax._src import presets as _presets  # pylint: disable=import-outside-toplevel

  if isinstance(x, (FilterDesign, _base.FilterSpec, _base.AutoSGMBlock)):
    if args or kwargs:
      raise TypeError(
        f"of({type(x).__name__}) takes no further arguments; got "
        f"{args!r} and {kwargs!r}."
      )
    if isinstance(x, FilterDesign):
      return x
    if isinstance(x, _base.FilterSpec):
      return _from_spec(x)
    if x.facts.filter is None:
      raise ValueError(
        f"x is a block of the {x.kind!r} slot without a FilterSpec "
        "(facts.filter): give a filter block such as lowpass_filter(...)."
      )
    return _from_spec(x.facts.filter)
  if callable(x):
    block = _presets.filter_block(x, *args, **kwargs)
    return IDENTITY if block is None else of(block)
  raise TypeError(
    f"x={x!r} is neither a filter block, a FilterSpec, a FilterDesign nor "
    "a function of autosgm_optax.presets."
  )


# ---------------------------------------------------------------------------
# plots

Designs = Union[
  Mapping[str, Any],
  Sequence[tuple[str, Any]],
]


def _as_design(label: str, value: Any) -> FilterDesign:
  if isinstance(value, (FilterDesign, _base.FilterSpec, _base.AutoSGMBlock)):
    return of(value)
  if isinstance(value, (tuple, list)) and len(value) in (2, 3):
    return FilterDesign(*value)
  raise TypeError(
    f"the design {label!r} is {value!r}: give a FilterDesign, a filter "
    "block or a (beta, gamma[, eta]) tuple."
  )


def plot_filter(
  designs: Designs,
  *,
  n: int = DEFAULT_N,
  steps: int = DEFAULT_STEPS,
  title: Optional[str] = None,
) -> "matplotlib.figure.Figure":
  """Draws filter designs side by side: Bode plot, poles and zeros, steps.

  Four panels, one colour per design in the order given: the magnitude in
  dB and the (unwrapped) phase in degrees against ``omega / pi`` on a log
  axis (``n`` frequencies up to ``pi``, from below the lowest corner
  frequency), the pole (x) and zero (o) of each design with the unit
  circle, and the :func:`step_response` over ``steps`` steps with each
  design's debias (one given as a string, another method's debias, is
  drawn without, and its label says so).

  matplotlib is an optional dependency: ``pip install matplotlib`` (or the
  ``plot`` extra, ``pip install ".[plot]"`` from a checkout).

  Args:
    designs: a mapping ``label -> design`` or a sequence of
      ``(label, design)`` pairs; a design is a :class:`FilterDesign`, a
      filter block, a :class:`autosgm_optax.FilterSpec` or a tuple
      ``(beta, gamma[, eta])``.
    n: the number of frequencies, ``>= 2``.
    steps: the number of steps of the step responses, ``>= 1``.
    title: the figure's title; None leaves it unset.

  Returns:
    The matplotlib ``Figure``; its ``axes`` are the magnitude, phase,
    pole-zero and step-response panels, in that order.

  Raises:
    ImportError: matplotlib is not installed.

  Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no display needed
    >>> import matplotlib.pyplot as plt
    >>> from autosgm_optax import design
    >>> fig = design.plot_filter({"EMA": (0.9, 0.0),
    ...                           "Nesterov zero": (0.9, 0.9 / 1.9)})
    >>> [ax.get_title() for ax in fig.axes]
    ['magnitude', 'phase', 'poles (x) and zeros (o)', 'step response']
    >>> plt.close(fig)
  """
  # One install hint for every plot of the package.
  from autosgm_optax.analysis._plotting import _import_matplotlib  # pylint: disable=import-outside-toplevel

  _import_matplotlib("plot_filter")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  n = _count("n", n, 2)
  steps = _count("steps", steps, 1)
  items = list(designs.items() if isinstance(designs, Mapping) else designs)
  if not items:
    raise ValueError("designs is empty: give at least one (label, design).")
  pairs = []
  for item in items:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
      raise TypeError(
        "designs must be a mapping label -> design or a sequence of "
        f"(label, design) pairs; got the item {item!r}."
      )
    pairs.append((str(item[0]), _as_design(str(item[0]), item[1])))

  # From a decade below the lowest corner frequency (about 1 - beta) to pi.
  lowest = min([0.01] + [0.1 * (1.0 - d.beta) / np.pi for _, d in pairs])
  frequencies = np.pi * np.logspace(np.log10(max(lowest, 1e-8)), 0.0, n)
  fig, axes = plt.subplots(2, 2, figsize=(10.0, 7.5))
  magnitude, phase, zplane, step = axes.ravel()
  t = np.arange(1, steps + 1)
  for i, (label, d) in enumerate(pairs):
    color = f"C{i % 10}"
    h = _transfer(*_design(d.beta, d.gamma, d.eta), frequencies)
    with np.errstate(divide="ignore"):
      magnitude.plot(
        frequencies / np.pi, 20 * np.log10(np.abs(h)), color=color, label=label
      )
    phase.plot(
      frequencies / np.pi,
      np.degrees(np.unwrap(np.angle(h))),
      color=color,
      label=label,
    )
    zplane.plot([d.beta], [0.0], "x", color=color, markersize=9, label=label)
    zplane.plot([d.gamma], [0.0], "o", color=color, fillstyle="none")
    note = "" if isinstance(d.debias, bool) else f" (debias {d.debias!r})"
    step.plot(
      t,
      d.step_response(steps),
      color=color,
      label=label + note,
    )

  for ax in (magnitude, phase):
    ax.set_xscale("log")
    ax.set_xlabel(r"$\omega / \pi$")
    ax.grid(True, which="both", alpha=0.3)
  magnitude.set_title("magnitude")
  magnitude.set_ylabel("|H| (dB)")
  magnitude.legend(fontsize="small")
  phase.set_title("phase")
  phase.set_ylabel("arg H (degrees)")

  circle = np.linspace(0.0, 2.0 * np.pi, 256)
  zplane.plot(np.cos(circle), np.sin(circle), "k--", lw=0.8, label="|z| = 1")
  zplane.axhline(0.0, color="k", lw=0.5)
  zplane.axvline(0.0, color="k", lw=0.5)
  zplane.set_aspect("equal")
  zplane.set_title("poles (x) and zeros (o)")
  zplane.set_xlabel("Re z")
  zplane.set_ylabel("Im z")

  step.set_title("step response")
  step.set_xlabel("step t")
  step.set_ylabel("output for a unit constant input")
  step.grid(True, alpha=0.3)
  step.legend(fontsize="small")
  if title is not None:
    fig.suptitle(title)
  fig.tight_layout()
  return fig
