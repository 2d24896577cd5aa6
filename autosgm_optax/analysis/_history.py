"""A history of learning dynamics as arrays over the steps.

A history is a list of :class:`autosgm_optax.Dynamics`, one per update, as
``learning_dynamics(state)[path]`` returns after each; every field holds a
tree of arrays, one entry per leaf of the parameters. The functions here
stack it into NumPy arrays once: per leaf ``(steps, ...)`` of its elements,
or ``(steps, leaves)`` of a statistic per leaf. Everything downstream
computes on these arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import Optional

import jax
import numpy as np

LEVELS = ("summary", "element")
STATISTICS = ("sup", "mean", "rms")


def leaf_paths(tree: Any) -> list[str]:
  """The paths of the leaves of ``tree``, as ``jax.tree_util.keystr``."""
  return [
    jax.tree_util.keystr(path)
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]


def history_level(history: Sequence[Any]) -> str:
  """The one level (``"summary"`` or ``"element"``) of a list of Dynamics."""
  levels = {getattr(d, "level", None) for d in history}
  if len(levels) != 1 or not levels <= set(LEVELS):
    raise ValueError(
      "history must be a non-empty list of Dynamics of one level "
      '("summary" or "element"), as learning_dynamics(state)[path] '
      f"returns; got levels {sorted(map(str, levels))}."
    )
  return str(levels.pop())


def recorded_steps(
  history: Sequence[Any], first_step: Optional[int] = None
) -> tuple[list[Any], np.ndarray]:
  """The recorded entries of a Dynamics history and their updates ``t``.

  Entries with ``recorded`` False (between the records of
  ``diagnostics_every``: NaN values) are dropped. The updates are the
  entries' ``step`` when every kept entry has one and ``first_step`` is
  None (then repeated entries of one update keep the last); otherwise
  ``first_step`` (default 1) plus the position.
  """
  kept = [
    d
    for d in history
    if getattr(d, "recorded", None) is None or bool(np.asarray(d.recorded))
  ]
  if not kept:
    raise ValueError(
      "history holds no recorded update (with diagnostics_every=k, only "
      "every k-th update is recorded)."
    )
  if first_step is None and all(
    getattr(d, "step", None) is not None for d in kept
  ):
    steps = np.asarray([int(np.asarray(d.step)) for d in kept])
    # An entry per call of a wrapper that did not update (optax.MultiSteps
    # between its updates, apply_if_finite on a skipped step) repeats the
    # last update: keep one entry per update, the last.
    last = np.flatnonzero(np.append(steps[1:] != steps[:-1], True))
    return [kept[k] for k in last], steps[last]
  return kept, (1 if first_step is None else first_step) + np.arange(len(kept))


def stack_leaves(trees: Sequence[Any], what: str) -> list[np.ndarray]:
  """Per leaf, its arrays in ``trees`` (one tree per step) stacked.

  Args:
    trees: one tree of arrays per step, all of one structure.
    what: the trees' name in error messages (e.g. ``"alpha"``).

  Returns:
    A list with one array of shape ``(steps, *leaf_shape)`` per leaf, in
    the order of ``jax.tree.leaves``, of the leaves' own dtype.

  Raises:
    ValueError: the trees' structures differ, or a leaf changes shape.
  """
  flat: list[tuple[list[Any], Any]] = [
    jax.tree_util.tree_flatten(tree) for tree in trees
  ]
  structure = flat[0][1]
  for k, (_, other) in enumerate(flat):
    if other != structure:
      raise ValueError(
        f"{what} of history entry {k} has the leaves "
        f"{leaf_paths(trees[k])}, entry 0 has {leaf_paths(trees[0])}: a "
        "history must hold the Dynamics of one optimizer, in the order of "
        "its updates."
      )
  columns = []
  for path, column in zip(
    leaf_paths(trees[0]),
    zip(*(leaves for leaves, _ in flat), strict=True),
    strict=True,
  ):
    try:
      columns.append(np.stack(column))
    except ValueError as error:  # NumPy: not all of one shape
      raise ValueError(
        f"leaf {path or '(the root)'} of {what} changes shape over the history."
      ) from error
  return columns


def _columns_table(columns: Sequence[np.ndarray], n: int) -> np.ndarray:
  """Per-step columns, one per leaf, as an array ``(steps, leaves)``."""
  if not columns:
    return np.zeros((n, 0))
  return np.stack([np.asarray(c, np.float64) for c in columns], axis=1)


def _summary_part(summaries: Sequence[Any], part: str, what: str) -> np.ndarray:
  """``sup``, ``mean`` or ``std`` of per-leaf Summaries: ``(steps, leaves)``."""
  n = len(summaries)
  columns = stack_leaves(
    [getattr(x, part) for x in summaries], f"{what}.{part}"
  )
  for path, column in zip(
    leaf_paths(getattr(summaries[0], part)), columns, strict=True
  ):
    if column.size != n:
      raise ValueError(
        f"leaf {path or '(the root)'} of {what}.{part} holds "
        f"{column.size // n} values per step; a summary holds one."
      )
  return _columns_table([c.reshape(n) for c in columns], n)


def _element_statistic(column: np.ndarray, statistic: str) -> np.ndarray:
  """One statistic per step of a leaf's elements ``(steps, ...)``."""
  flat = column.reshape(len(column), -1)
  if statistic == "sup":
    return (
      np.max(np.abs(flat), axis=1) if flat.shape[1] else np.zeros(len(flat))
    )
  if statistic == "mean":
    return np.mean(flat, axis=1)
  return np.sqrt(np.mean(np.square(flat.astype(np.float64)), axis=1))


def history_table(
  history: Sequence[Any], field: str, statistic: str = "sup"
) -> tuple[list[str], np.ndarray]:
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
  if statistic not in STATISTICS:
    raise ValueError(f"statistic={statistic!r} must be 'sup', 'mean' or 'rms'.")
  values = [getattr(d, field) for d in history]
  if level == "summary":
    leaves = leaf_paths(
      values[0].mean if statistic == "rms" else getattr(values[0], statistic)
    )
    if statistic == "rms":
      table = np.hypot(
        _summary_part(values, "mean", field),
        _summary_part(values, "std", field),
      )
    else:
      table = _summary_part(values, statistic, field)
  else:
    leaves = leaf_paths(values[0])
    table = _columns_table(
      [_element_statistic(c, statistic) for c in stack_leaves(values, field)],
      len(history),
    )
  return leaves, table
