"""Plots of windows ``F(step)`` and of learning dynamics; matplotlib is an
optional dependency."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import re
from typing import TYPE_CHECKING
from typing import Any
from typing import Optional
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autosgm_optax.analysis._history import history_table
from autosgm_optax.analysis._history import recorded_steps

if TYPE_CHECKING:  # pragma: no cover
  import matplotlib.axes
  import matplotlib.figure

Windows = Union[
  Mapping[str, optax.Schedule], Sequence[tuple[str, optax.Schedule]]
]

_INSTALL_HINT = (
  "plot_windows needs matplotlib, an optional dependency: "
  "`pip install matplotlib` (or the `plot` extra, "
  '`pip install ".[plot]"` from a checkout).'
)


def _import_matplotlib(function: str = "plot_windows"):
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(
      _INSTALL_HINT.replace("plot_windows", function, 1)
    ) from error
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
        f"(label, schedule) pairs; got the item {item!r}."
      )
    label, schedule = item
    if not callable(schedule):
      raise TypeError(
        f"the window {label!r} is {schedule!r}, not a schedule "
        "(a callable of the step count)."
      )
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

  matplotlib is an optional dependency: ``pip install matplotlib`` (or the
  ``plot`` extra, ``pip install ".[plot]"`` from a checkout).

  Args:
    windows: a mapping ``label -> schedule`` or a sequence of
      ``(label, schedule)`` pairs; each schedule is an ``optax.Schedule`` (a
      function of the step count), e.g. from
      :func:`autosgm_optax.window_schedule`.
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
    >>> from autosgm_optax.analysis._plotting import plot_windows
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

  fig: Any
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
        "per step; a window is a scalar function of the step count."
      )
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


# ---------------------------------------------------------------------------
# learning dynamics

#: (field, statistic for "sup", statistic for "mean", y label, log scale)
_PANELS = (
  ("alpha", "sup", "mean", r"$\alpha(t)$", True),
  ("r", "sup", "mean", r"$r(t) = \alpha(t)/\alpha(t-1)$", False),
  ("margin", "sup", "mean", r"margin $\beta\,|r(t)|$", False),
  ("dw", "sup", "rms", r"$\Delta w(t+1)$", True),
)


def short_leaf_name(path: str) -> str:
  """A leaf's path for a legend: ``"['layer1']['w']"`` -> ``"layer1/w"``.

  A bare array (path ``""``) is ``"params"``.
  """
  parts = [
    a or b or c
    for a, b, c in re.findall(r"\['([^']*)'\]|\[(\d+)\]|\.(\w+)", path)
  ]
  return "/".join(parts) if parts else (path or "params")


def _choose_leaves(
  names: Sequence[str], leaves: Optional[Sequence[str]]
) -> list[int]:
  if leaves is None:
    return list(range(len(names)))
  if isinstance(leaves, str):
    leaves = [leaves]
  index: dict[str, int] = {}
  for i, name in enumerate(names):
    index.setdefault(name, i)
    index.setdefault(short_leaf_name(name), i)
  chosen = []
  for leaf in leaves:
    if leaf not in index:
      raise ValueError(
        f"no leaf {leaf!r} in the history; its leaves are "
        f"{[short_leaf_name(n) for n in names]} (or as keystr: "
        f"{list(names)})."
      )
    chosen.append(index[leaf])
  if not chosen:
    raise ValueError(
      "leaves is empty: give at least one leaf, or None for all."
    )
  return chosen


def plot_dynamics(
  history: Sequence[Any],
  *,
  leaves: Optional[Sequence[str]] = None,
  axes: Optional[Sequence["matplotlib.axes.Axes"]] = None,
  statistic: str = "sup",
  first_step: Optional[int] = None,
  title: Optional[str] = None,
) -> "matplotlib.figure.Figure":
  r"""Draws the learning dynamics of a training run, one line per leaf.

  ``history`` holds one :class:`autosgm_optax.Dynamics` per update (what
  ``learning_dynamics(state)[path]`` returns after each update, with
  ``diagnostics="summary"`` or ``"element"``). Four panels over the update
  ``t``: the learning rate ``alpha(t)`` (log scale), the ratio ``r(t)``,
  the contraction margin ``beta |r(t)|`` (a dotted line at 1) and the size
  of the parameter change ``dw(t+1)`` (log scale). Each leaf's elements are
  reduced as the summary level does: ``statistic="sup"`` draws the max of
  the absolute value over the leaf in every panel; ``"mean"`` the mean of
  ``alpha``, ``r`` and the margin, and the root mean square of ``dw``
  (``sqrt(mean^2 + std^2)``: the norm over the square root of the size).

  matplotlib is an optional dependency: ``pip install matplotlib`` (or the
  ``plot`` extra, ``pip install ".[plot]"`` from a checkout).

  Args:
    history: a sequence of ``Dynamics`` of one level, one per update.
    leaves: the leaves to draw, by path (``"['layer1']['w']"``, as
      ``jax.tree_util.keystr`` writes it, or ``"layer1/w"``); None for all.
    axes: four matplotlib ``Axes`` to draw on (alpha, r, margin, dw); None
      makes a new figure of 2 x 2 panels.
    statistic: ``"sup"`` or ``"mean"`` (see above).
    first_step: the update ``t`` of ``history[0]``, the others following
      one by one; None (default) reads each entry's ``step``. Entries that
      were not recorded (``diagnostics_every``) are skipped.
    title: the figure's title; None leaves it unset.

  Returns:
    The matplotlib ``Figure`` that holds the panels.

  Raises:
    ImportError: matplotlib is not installed.

  Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no display needed
    >>> import matplotlib.pyplot as plt
    >>> import jax, jax.numpy as jnp, optax
    >>> import autosgm_optax as asgm
    >>> from autosgm_optax.analysis._plotting import plot_dynamics
    >>> tx = asgm.autosgm(0.1, window=asgm.raised_cosine_window(20),
    ...                   diagnostics="summary")
    >>> params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
    >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum((p["b"] - 1) ** 2)
    >>> state, history = tx.init(params), []
    >>> for _ in range(20):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   history.append(asgm.learning_dynamics(state)[""])
    >>> fig = plot_dynamics(history, leaves=["w"])
    >>> [ax.get_lines()[0].get_label() for ax in fig.axes]
    ['w', 'w', 'w', 'w']
    >>> plt.close(fig)
  """
  _import_matplotlib("plot_dynamics")
  history = list(history)
  if not history:
    raise ValueError(
      "history is empty: record learning_dynamics(state)[path] "
      "after each update."
    )
  history, steps = recorded_steps(history, first_step)
  if statistic not in ("sup", "mean"):
    raise ValueError(f"statistic={statistic!r} must be 'sup' or 'mean'.")
  fig: Any
  if axes is None:
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, grid = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    axes = list(np.ravel(grid))
  else:
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != 4:
      raise ValueError(
        f"axes must be 4 Axes (alpha, r, margin, dw); got {len(axes)}."
      )
    fig = axes[0].figure

  chosen = None
  for ax, (field, sup_stat, mean_stat, label, log) in zip(axes, _PANELS):
    stat = sup_stat if statistic == "sup" else mean_stat
    names, table = history_table(history, field, stat)
    if chosen is None:
      chosen = _choose_leaves(names, leaves)
    for j in chosen:
      ax.plot(steps, table[:, j], label=short_leaf_name(names[j]))
    if field in ("r", "margin"):
      ax.axhline(1.0, color="0.4", lw=0.8, ls=":", label="_one")
    values = table[:, chosen]
    if log and np.any(np.isfinite(values) & (values > 0)):
      ax.set_yscale("log")
    word = {"sup": "sup", "mean": "mean", "rms": "rms"}[stat]
    ax.set_ylabel(f"{label} ({word} over the leaf)")
    ax.grid(True, alpha=0.3)
  for ax in axes[2:]:
    ax.set_xlabel("update t")
  axes[0].legend(fontsize="small")
  if title is not None:
    fig.suptitle(title)
  return fig
