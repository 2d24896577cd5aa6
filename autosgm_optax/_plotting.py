"""Plots of windows ``F(step)``; matplotlib is an optional dependency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

if TYPE_CHECKING:  # pragma: no cover
  import matplotlib.axes
  import matplotlib.figure

Windows = Union[Mapping[str, optax.Schedule],
                Sequence[tuple[str, optax.Schedule]]]

_INSTALL_HINT = (
    "plot_windows needs matplotlib, an optional dependency: install it with "
    '`pip install "autosgm-optax[plot]"` (or `pip install matplotlib`).')


def _import_matplotlib():
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(_INSTALL_HINT) from error
  return matplotlib


def _pairs(windows: Windows) -> list[tuple[str, optax.Schedule]]:
  """(label, schedule) pairs from a mapping or a sequence of pairs."""
  items = list(windows.items() if isinstance(windows, Mapping) else windows)
  if not items:
    raise ValueError("windows is empty: give at least one (label, schedule).")
  pairs = []
  for item in items:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
      raise TypeError(
          f"windows must be a mapping label -> schedule or a sequence of "
          f"(label, schedule) pairs; got the item {item!r}.")
    label, schedule = item
    if not callable(schedule):
      raise TypeError(f"the window {label!r} is {schedule!r}, not a schedule "
                      "(a callable of the step count).")
    pairs.append((str(label), schedule))
  return pairs


def plot_windows(
    windows: Windows,
    horizon: int,
    *,
    ax: Optional["matplotlib.axes.Axes"] = None,
    title: Optional[str] = None,
) -> "matplotlib.figure.Figure":
  """Draws windows ``F(step)`` for ``step = 0 .. horizon - 1`` on one Axes.

  Each schedule is evaluated at every step at once (``jax.vmap`` over
  ``jnp.arange(horizon)``) and drawn as one line labelled with its name, in
  the order given, with the axes labelled ``step`` and ``F(step)``, the
  y-range ``[-0.02, 1.05]`` and a legend.

  matplotlib is an optional dependency: ``pip install "autosgm-optax[plot]"``.

  Args:
    windows: a mapping ``label -> schedule`` or a sequence of
      ``(label, schedule)`` pairs; each schedule is an ``optax.Schedule`` (a
      function of the step count), e.g. from :func:`window_schedule`.
    horizon: the number of steps drawn, ``>= 1``.
    ax: the matplotlib ``Axes`` to draw on; None makes a new figure.
    title: the title of the Axes; None leaves it unset.

  Returns:
    The matplotlib ``Figure`` that holds the Axes.

  Raises:
    ImportError: matplotlib is not installed.

  Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no display needed
    >>> import matplotlib.pyplot as plt
    >>> from autosgm_optax import window_schedule
    >>> from autosgm_optax._plotting import plot_windows
    >>> fig = plot_windows(
    ...     {"cosine": window_schedule(100, floor=0.1),
    ...      "linear": window_schedule(100, "polynomial", floor=0.1)},
    ...     horizon=120, title="half windows")
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['cosine', 'linear']
    >>> plt.close(fig)
  """
  _import_matplotlib()
  if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
    raise TypeError(f"horizon={horizon!r} must be a whole number of steps.")
  if horizon < 1:
    raise ValueError(f"horizon={horizon!r} must be >= 1.")
  pairs = _pairs(windows)

  if ax is None:
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
  else:
    fig = ax.figure

  counts = jnp.arange(int(horizon))
  steps = np.arange(int(horizon))
  for label, schedule in pairs:
    values = np.asarray(jax.vmap(schedule)(counts), np.float64)
    if values.shape != steps.shape:
      raise ValueError(
          f"the window {label!r} gives values of shape {values.shape[1:]} "
          "per step; a window is a scalar function of the step count.")
    ax.plot(steps, values, label=label)

  ax.set_xlabel("step")
  ax.set_ylabel("F(step)")
  ax.set_xlim(0, max(int(horizon) - 1, 1))
  ax.set_ylim(-0.02, 1.05)
  ax.grid(True, alpha=0.3)
  if title is not None:
    ax.set_title(title)
  ax.legend(fontsize="small")
  return fig
