"""The window F(t): a learning-rate multiplier in [floor, 1] over frames.

Every window is a pure function of the step count (an ``optax.Schedule``),
usable inside ``jax.jit`` with a traced count; :func:`scale_by_window` turns
one (or a number) into the block of the ``window`` slot.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import Optional
from typing import Union

import chex
import jax.numpy as jnp
import numpy as np
import optax

from autosgm_optax._src import base as _base

Window = Union[optax.Schedule, float, chex.Array, _base.AutoSGMBlock]

#: The shapes phi(f), phi(0) = 1, phi(1) = 0, and their shape parameter with
#: its default: (name of the keyword, default).
SHAPES = {
  "flat": (None, None),
  "raised_cosine": ("order", 2),
  "polynomial": ("order", 1),
  "beta_exponential": ("base", 0.01),
  "simple_polynomial": ("order", 2),
  "sigmoid": ("rate", 4),
  "late_sigmoid": ("rate", 4),
}

#: Inflection points of the base-2 logistic shapes (docs/algorithm.md,
#: section 5).
_SIGMOID_CENTRE = {"sigmoid": 0.5, "late_sigmoid": 0.875}

#: The golden-ratio step of the Kronecker low-discrepancy sequence.
KRONECKER_STEP = 0.6180339887


class WindowState(NamedTuple):
  """State of a window block.

  ``value`` is ``F`` of the last update, which the readers and the
  diagnostics read (before the first update: the ``F`` the first update
  uses, as the learning-rate block keeps ``mu``). A number given when the
  block is built is written once, by ``init``, and passed through by the
  updates. A schedule's value is written with each update: the state holds
  no schedule to derive it from (as ``optax.inject_hyperparams`` keeps the
  values of the schedules it evaluates), and an injected window has the
  same state.
  """

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so far.
  value: chex.Array  # shape=(); F of the last update (see above).


def scale_by_window(window: Union[optax.Schedule, Any]) -> _base.AutoSGMBlock:
  r"""Scale by a window ``F(t)``: a schedule of the step count or a number.

  A number is the current window value, which is what
  ``optax.inject_hyperparams`` passes when it evaluates a schedule given for
  ``window``. A schedule is evaluated at the count of updates made so far
  (Optax's convention: ``F(0)`` scales the first update).

  The mathematics: docs/algorithm.md, section 5.

  Args:
    window: an ``optax.Schedule`` (step count to multiplier) or a number
      ``>= 0`` (above 1 it enlarges the step, which
      :func:`autosgm_optax.analysis.check_stability` flags).

  Returns:
    An :class:`AutoSGMBlock` for the ``window`` slot.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import scale_by_window
    >>> tx = scale_by_window(lambda count: 0.5 ** count)
    >>> g = jnp.ones(2)
    >>> state = tx.init(g)
    >>> _, state = tx.update(g, state)
    >>> u, state = tx.update(g, state)
    >>> u
    Array([0.5, 0.5], dtype=float32)
  """
  _base.check_type("window", window, allow_schedule=True)
  if not callable(window):  # (a negative window would ascend)
    _base.check_range("window", window, 0.0, None)

  fixed = _base.is_number(window)

  def init_fn(params):
    count = jnp.zeros([], jnp.int32)
    first = _base.evaluate(window, count)  # F of the first update
    return WindowState(
      count=count,
      value=jnp.array(first, _base.scalar_dtype(params), copy=True).reshape(()),
    )

  def apply_fn(signal, state, params):
    del params
    value = _base.evaluate(window, state.count)
    new_state = WindowState(
      count=optax.safe_increment(state.count),
      value=state.value if fixed else jnp.asarray(value, state.value.dtype),
    )
    return signal._replace(window=value), new_state

  return _base.AutoSGMBlock(
    init_fn, apply_fn, kind="window", last=lambda state: state.value
  )


def _shape_fn(shape: str, param: Any):
  """phi(f) for f in [0, 1], written for NumPy and jax.numpy alike."""
  if shape == "flat":
    return lambda f, xp: xp.ones_like(f)
  if shape == "raised_cosine":
    return lambda f, xp: xp.cos(np.pi * f / 2) ** param
  if shape == "polynomial":
    return lambda f, xp: (1 - f) ** param
  if shape == "beta_exponential":
    return lambda f, xp: (param**f - param) / (1 - param)
  if shape == "simple_polynomial":
    return lambda f, xp: (1 - f**param) ** 2
  centre = _SIGMOID_CENTRE[shape]

  def sigmoid(f, xp):
    s = lambda x: 1 / (1 + 2.0 ** (2 * param * (x - centre)))
    return (s(f) - s(1.0)) / (s(0.0) - s(1.0))

  return sigmoid


def _check_options(
  shape,
  length,
  param_name,
  param,
  floor,
  flat_top,
  stairs,
  steps_per_epoch,
  full,
  restarts,
  kronecker,
):
  _base.check_choice("shape", shape, tuple(SHAPES))
  _base.check_range("length", length, 1.0, None)
  _base.check_range("floor", floor, 0.0, 1.0, high_open=False)
  _base.check_range("flat_top", flat_top, 0.0, 1.0)
  for name, flag in (
    ("full", full),
    ("restarts", restarts),
    ("kronecker", kronecker),
  ):
    if not isinstance(flag, bool):
      raise TypeError(f"{name}={flag!r} must be a bool.")
  _base.check_range("stairs", stairs, 1.0, None)
  if _base.is_number(stairs) and stairs != int(stairs):
    raise ValueError(f"stairs={stairs!r} must be a whole number >= 1.")
  if steps_per_epoch is not None:
    _base.check_range("steps_per_epoch", steps_per_epoch, 1.0, None)
  if param_name == "order":
    _base.check_range("order", param, 0.0, None, low_open=True)
  elif param_name == "rate":
    _base.check_range("rate", param, 0.0, None, low_open=True)
  elif param_name == "base":
    _base.check_range("base", param, 0.0, None, low_open=True)
    if _base.is_number(param) and param == 1:
      raise ValueError(
        "base=1 makes the beta-exponential shape 0/0; the "
        "valid range is (0, 1) or (1, inf)."
      )
  if kronecker:
    if full or not (_base.is_number(flat_top) and flat_top == 0):
      raise ValueError(
        f"kronecker=True needs a half window without a flat top (got "
        f"full={full!r}, flat_top={flat_top!r}): the sorted sequence is "
        "ill-defined otherwise."
      )
    if not (_base.is_number(length) and length == int(length)):
      raise ValueError(
        f"kronecker=True needs a whole-number length, got length={length!r}."
      )


def window_schedule(
  length: Any,
  shape: str = "raised_cosine",
  *,
  order: Optional[Any] = None,
  base: Optional[Any] = None,
  rate: Optional[Any] = None,
  floor: Any = 0.0,
  full: bool = False,
  flat_top: Any = 0.0,
  stairs: Any = 1,
  restarts: bool = False,
  steps_per_epoch: Optional[Any] = None,
  kronecker: bool = False,
) -> optax.Schedule:
  r"""A window ``F(count)`` in ``[floor, 1]`` as an ``optax.Schedule``.

  With ``k`` the count (or the epoch ``count // steps_per_epoch``, so that F
  is constant within an epoch) and ``f = (k mod length) / length`` (warm
  restarts) or ``f = min(k / length, 1)``, in this order:

  1. full window (warm up, then anneal): :math:`f \leftarrow |2f - 1|`;
  2. flat top with coverage ``e``: ``F = 1`` while ``f < e``, else
     :math:`f \leftarrow (f - e)/(1 - e)`;
  3. staircase of ``m = stairs`` sub-decays: with
     :math:`i = \max(1, \lceil m f \rceil)`,
     :math:`P = (m - i + \phi(m f - i + 1)) / m` (``P = phi(f)`` for m = 1);
  4. floor: :math:`F = x + (1 - x) P`.

  The shapes :math:`\phi`, each with :math:`\phi(0) = 1, \phi(1) = 0`:
  ``"flat"`` (1: window off), ``"raised_cosine"``
  :math:`\cos(\pi f / 2)^n` (``order`` n, default 2: cosine annealing,
  equal to ``optax.cosine_decay_schedule``), ``"polynomial"``
  :math:`(1 - f)^n` (``order``, default 1: ``optax.linear_schedule``),
  ``"beta_exponential"`` :math:`(b^f - b)/(1 - b)` (``base`` b, default
  0.01), ``"simple_polynomial"`` :math:`(1 - f^k)^2` (``order`` k, default
  2), ``"sigmoid"`` and ``"late_sigmoid"``: the base-2 logistic
  :math:`s(f) = 1/(1 + 2^{2 r (f - c)})` with inflection ``c = 0.5`` or
  ``c = 0.875``, normalised as :math:`(s(f) - s(1))/(s(0) - s(1))` (``rate``
  r, default 4).

  With ``kronecker=True`` (half windows only, no flat top) the frame visits
  the window's values at the low-discrepancy points
  ``frac(j * 0.6180339887)``, ``j = 0..length-1``, sorted from largest to
  smallest: ``F(k) = K[k mod length]``. The table ``K`` is computed here,
  once, and indexed with the traced count; it starts at 1 and never reaches
  the floor (its points never reach f = 1).

  A half window starts at 1 and, without restarts, is at the floor from
  count ``length`` on (with restarts it is 1 again there); a full window
  starts at the floor and peaks at ``length / 2``.

  The mathematics: docs/algorithm.md, section 5.

  Args:
    length: frame length ``>= 1``, in steps (or epochs with
      ``steps_per_epoch``).
    shape: one of ``"flat"``, ``"raised_cosine"``, ``"polynomial"``,
      ``"beta_exponential"``, ``"simple_polynomial"``, ``"sigmoid"``,
      ``"late_sigmoid"``.
    order: the order ``n`` (or ``k``) of ``"raised_cosine"``,
      ``"polynomial"`` and ``"simple_polynomial"``, ``> 0``.
    base: the base ``b`` of ``"beta_exponential"``, ``> 0`` and not 1.
    rate: the rate ``r`` of the sigmoids, ``> 0``.
    floor: the floor ``x`` in ``[0, 1]``.
    full: a full window (warm up, then anneal) instead of a half window.
    flat_top: coverage ``e`` in ``[0, 1)`` held at 1.
    stairs: ``m >= 1`` stacked sub-decays in a frame.
    restarts: start a new frame when one ends; otherwise hold the end.
    steps_per_epoch: count the frame in epochs of this many steps (F is
      constant within an epoch); None counts steps.
    kronecker: low-discrepancy ordering of the frame's values.

  Returns:
    A schedule ``count -> F(count)``.

  Example:
    >>> from autosgm_optax import window_schedule
    >>> F = window_schedule(4, "polynomial", floor=0.2)
    >>> [round(float(F(k)), 4) for k in range(6)]
    [1.0, 0.8, 0.6, 0.4, 0.2, 0.2]
  """
  param_name, default = SHAPES.get(shape, (None, None))
  given = {"order": order, "base": base, "rate": rate}
  for name, value in given.items():
    if value is not None and name != param_name:
      raise ValueError(
        f"{name}={value!r} has no meaning for shape={shape!r}"
        + (f" (its parameter is {param_name!r})." if param_name else ".")
      )
  param = given.get(param_name) if param_name else None
  param = default if param is None else param
  _check_options(
    shape,
    length,
    param_name,
    param,
    floor,
    flat_top,
    stairs,
    steps_per_epoch,
    full,
    restarts,
    kronecker,
  )
  shape_fn = _shape_fn(shape, param)

  def phi(f, xp):
    # phi(0) = 1 and phi(1) = 0 exactly (cos(pi / 2) is not 0 in floating
    # point): a window at its floor 0 must give alpha = 0, not 1e-15. The
    # flat shape (window off) stays 1.
    if shape == "flat":
      return shape_fn(f, xp)
    return xp.where(f >= 1, 0.0, xp.where(f <= 0, 1.0, shape_fn(f, xp)))

  def fold(f, xp):
    """Steps 1-4 for a frame position f in [0, 1] (NumPy or jax.numpy)."""
    if full:
      f = xp.abs(2 * f - 1)
    top = f < flat_top
    f = xp.where(top, 0.0, (f - flat_top) / (1 - flat_top))
    if _base.is_number(stairs) and stairs == 1:
      p = phi(f, xp)
    else:
      i = xp.maximum(1, xp.ceil(stairs * f))
      p = (stairs - i + phi(stairs * f - i + 1, xp)) / stairs
    return xp.where(top, 1.0, floor + (1 - floor) * p)

  if kronecker:
    n = int(length)
    points = np.mod(np.arange(n) * KRONECKER_STEP, 1.0)
    table = np.sort(np.asarray(fold(points, np), np.float64))[::-1]

  def schedule(count):
    k = jnp.asarray(count)
    if steps_per_epoch is not None:
      k = k // steps_per_epoch
    if kronecker:
      index = jnp.mod(k, n) if restarts else jnp.minimum(k, n - 1)
      return jnp.asarray(table, jnp.result_type(float))[index]
    # An int count divided by an int length is float32 even under x64: take
    # the default float dtype first (float64 runs stay float64).
    real = jnp.result_type(float)
    if restarts:
      f = jnp.mod(k, length).astype(real) / length
    else:
      f = jnp.minimum(k.astype(real) / length, 1)
    return fold(f, jnp)

  return schedule


def raised_cosine_schedule(
  length: Any,
  *,
  order: Any = 2,
  floor: Any = 0.0,
  full: bool = False,
  flat_top: Any = 0.0,
  restarts: bool = False,
) -> optax.Schedule:
  r"""The raised-cosine window :math:`x + (1 - x)\cos(\pi f / 2)^n`.

  :func:`autosgm_optax.window_schedule` with ``shape="raised_cosine"``; see
  there. Order 2 is cosine annealing: the half window equals
  ``optax.cosine_decay_schedule(1.0, length, alpha=floor)``.

  The mathematics: docs/algorithm.md, section 5.

  Args:
    length: frame length in steps, ``>= 1``.
    order: the exponent ``n > 0`` of the cosine.
    floor: the floor ``x`` in ``[0, 1]``.
    full: warm up, then anneal (full window) instead of annealing only.
    flat_top: coverage ``e`` in ``[0, 1)`` of the part held at 1.
    restarts: start a new frame when one ends (warm restarts); otherwise hold
      the floor.

  Returns:
    A schedule ``count -> F(count)``.

  Example:
    >>> from autosgm_optax import raised_cosine_schedule
    >>> F = raised_cosine_schedule(4, floor=0.1)
    >>> [round(float(F(k)), 4) for k in range(5)]
    [1.0, 0.8682, 0.55, 0.2318, 0.1]
  """
  return window_schedule(
    length,
    "raised_cosine",
    order=order,
    floor=floor,
    full=full,
    flat_top=flat_top,
    restarts=restarts,
  )


def raised_cosine_window(
  length: Any,
  *,
  order: Any = 2,
  floor: Any = 0.0,
  full: bool = False,
  flat_top: Any = 0.0,
  restarts: bool = False,
) -> _base.AutoSGMBlock:
  """The raised-cosine window as a block for the ``window`` slot.

  Scales its input by :func:`raised_cosine_schedule` evaluated at the count of
  updates made so far; see there for the arguments. Any other window is
  ``scale_by_window(window_schedule(...))``.

  Returns:
    An :class:`AutoSGMBlock` for the ``window`` slot.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import raised_cosine_window
    >>> tx = raised_cosine_window(4, floor=0.1)
    >>> g = jnp.ones(1)
    >>> state = tx.init(g)
    >>> for _ in range(3):
    ...   u, state = tx.update(g, state)
    >>> u  # F(2) = 0.1 + 0.9 cos(pi / 4)^2
    Array([0.55], dtype=float32)
  """
  return scale_by_window(
    raised_cosine_schedule(
      length,
      order=order,
      floor=floor,
      full=full,
      flat_top=flat_top,
      restarts=restarts,
    )
  )


def as_window_block(window: Window) -> _base.AutoSGMBlock:
  """A window block from a block, a schedule or a number."""
  if isinstance(window, _base.AutoSGMBlock):
    if window.kind != "window":
      raise TypeError(
        f"window={window!r} is a {window.kind!r} block, not a window."
      )
    return window
  return scale_by_window(window)
