"""The window F(t): a learning-rate multiplier in [floor, 1] over frames."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import chex
import jax.numpy as jnp
import optax

from autosgm_optax import _base

Window = Union[optax.Schedule, float, chex.Array, _base.AutoSGMBlock]


class WindowState(NamedTuple):
  """State of a window block."""

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so far.


def scale_by_window(window: Union[optax.Schedule, Any]) -> _base.AutoSGMBlock:
  r"""Scale by a window ``F(t)``: a schedule of the step count or a number.

  A number is the current window value, which is what
  ``optax.inject_hyperparams`` passes when it evaluates a schedule given for
  ``window``. A schedule is evaluated at the count of updates made so far
  (Optax's convention: ``F(0)`` scales the first update).

  Args:
    window: an ``optax.Schedule`` (step count to multiplier) or a number.

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

  def init_fn(params):
    del params
    return WindowState(count=jnp.zeros([], jnp.int32))

  def apply_fn(signal, state, params):
    del params
    value = _base.evaluate(window, state.count)
    return (signal._replace(window=value),
            WindowState(count=optax.safe_increment(state.count)))

  return _base.AutoSGMBlock(init_fn, apply_fn, kind="window")


def _check_window_options(length, floor, flat_top):
  _base.check_range("length", length, 1.0, None, high_open=True)
  _base.check_range("floor", floor, 0.0, 1.0, high_open=False)
  _base.check_range("flat_top", flat_top, 0.0, 1.0)


def raised_cosine_schedule(
    length: Any,
    *,
    order: Any = 2,
    floor: Any = 0.0,
    full: bool = False,
    flat_top: Any = 0.0,
    restarts: bool = False,
) -> optax.Schedule:
  r"""The raised-cosine window as an ``optax.Schedule`` of the step count.

  With ``f = (count mod length) / length`` (restarts) or
  ``f = min(count / length, 1)`` (no restarts):

  .. math::
    f \leftarrow |2f - 1| \ \text{(full window)}, \quad
    f \leftarrow \frac{f - e}{1 - e} \ \text{past the flat top } e, \quad
    F = x + (1 - x) \cos\left(\frac{\pi f}{2}\right)^n,

  and ``F = 1`` while ``f < e``. Order 2 is cosine annealing: the half window
  equals ``optax.cosine_decay_schedule(1.0, length, alpha=floor)``. A half
  window starts at 1 and reaches the floor at count ``length``; a full window
  warms up from the floor to 1 at ``length / 2`` and anneals back.

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
  _check_window_options(length, floor, flat_top)
  _base.check_range("order", order, 0.0, None, low_open=True)
  for name, flag in (("full", full), ("restarts", restarts)):
    if not isinstance(flag, bool):
      raise TypeError(f"{name}={flag!r} must be a bool.")

  def schedule(count):
    count = jnp.asarray(count)
    if restarts:
      f = jnp.mod(count, length) / length
    else:
      f = jnp.minimum(count / length, 1)
    if full:
      f = jnp.abs(2 * f - 1)
    top = f < flat_top
    f = jnp.where(top, 0.0, (f - flat_top) / (1 - flat_top))
    phi = jnp.cos(jnp.pi * f / 2) ** order
    return jnp.where(top, 1.0, floor + (1 - floor) * phi)

  return schedule


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
  updates made so far; see there for the arguments.

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
  return scale_by_window(raised_cosine_schedule(
      length, order=order, floor=floor, full=full, flat_top=flat_top,
      restarts=restarts))


def as_window_block(window: Window) -> _base.AutoSGMBlock:
  """A window block from a block, a schedule or a number."""
  if isinstance(window, _base.AutoSGMBlock):
    if window.kind != "window":
      raise TypeError(
          f"window={window!r} is a {window.kind!r} block, not a window.")
    return window
  return scale_by_window(window)


WindowLike = Union[Window, Callable[[chex.Numeric], chex.Numeric]]
