"""Everything that exists only for XLA on one CPU device, in one place.

The blocks write their formulas once, plainly; :func:`run` is the one call
that :func:`autosgm_optax.scale_by_autosgm` makes into this module. It
decides from where the arrays live (their devices) whether the tricks below
apply, and hands the step a :class:`~autosgm_optax._src.base.Realisation`:
the plain one elsewhere (GPUs and TPUs fuse the step into few kernels; with
several devices a slice of a sharded leaf would cost a collective), the
CPU one here.

Why tricks at all: without multi-output fusion, XLA on CPU writes every
state buffer of a leaf in its own kernel and reads the leaf's gradient,
parameters and new state again in the following kernels. Which kernels run
when, and which donated buffers it must copy, follow from data dependencies
only (it removes ``lax.optimization_barrier`` before scheduling). The
ordering tricks add no arithmetic (selects through an exact 1 pass every
bit), but a leaf's kernels compiled apart from the others' may be fused,
and so rounded, otherwise than the whole tree's: leaf by leaf or not, the
updates differ by float32 rounding (a few ulps; matrix leaves alike,
``tests/test_backend.py::test_each_trick_changes_rounding_only``). With and
without diagnostics the step is ordered the same way, so those two agree
bit for bit. The in-place filter output is an algebraically equal form,
equal up to float32 rounding.

Each trick is kept because it earns at least 5% on the configuration it
targets, measured side by side by ``python benchmarks/step_time.py
--ablation`` (docs/performance.md has the table and the machine); a trick
below that was deleted (the numerator's estimators read a second,
separately rounded copy of ``H[g] / d`` so that XLA fused each into its
consumer: 1.7-3.2% on a 2-core AMD EPYC, 2026-12-05).

- ``in_place_filter``: the filter's output from its new state,
  ``v = (1 - gamma/beta) m(t) + (gamma eta / beta) g(t)`` instead of
  ``m(t) - gamma m(t-1)``. Then only the update of ``m`` reads ``m(t-1)``
  and XLA overwrites the donated buffer in place instead of copying it
  (1.7-2.2x at 10M parameters, 1.11-1.21x at 1M, with a zero). Used for a
  plain pole ``beta >= 0.5`` only: dividing by ``beta`` loses accuracy
  towards 0, and a traced pole's size is unknown.
- ``leaf_by_leaf``: with a numerator, the update runs leaf after leaf, each
  leaf's inputs taken through an exact 1 computed from the
  previous leaf's new state, so that XLA runs a leaf's kernels back to
  back and their re-reads hit the cache instead of interleaving the leaves
  (1.7-1.9x at 10M parameters; 1.02-1.06x at 1M).
- ``ordered_record``: the diagnostics' kernels read the old history and
  the parameters; the kernels that overwrite those donated buffers take
  their inputs through an exact 1 computed from the readers, so that they
  wait for them and XLA copies no buffer (1.15x at 1M, 1.25x at 10M,
  recorded on every update). XLA copies a donated buffer whose readers it
  cannot order before the kernel that overwrites it: here the old history,
  and the parameters, which the caller's ``apply_updates`` overwrites.
  With ``diagnostics_every`` the record runs in conditionals, which return
  ``Realisation.token(count)`` (a scalar buffer that the kernels read, not
  arithmetic they repeat for every element); the part's step is ordered
  after them, and a conditional that passes a buffer through does so
  without a copy. Off (or on another device), there are no tokens and the
  compiler orders the kernels.

An exact 1 orders a value by a select (:func:`times`), never a product:
the order must not change the step's arithmetic, or turning the
diagnostics on would change the update's rounding. Leaves of one element
are not ordered: their kernels are straight-line code, where LLVM folds
the select into the arithmetic after it and contracts other multiply-adds
into FMAs than without it (measured: a scalar leaf's update differed in
the last bit with ``diagnostics_every`` on a tanh network,
``tests/test_observation.py``), and copying one element costs nothing.

Tests and benchmarks turn tricks off with :func:`without`.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any
from typing import Callable
from typing import Iterator
from typing import Optional

import jax
import jax.numpy as jnp

from autosgm_optax._src import base as _base

TRICKS = ("in_place_filter", "leaf_by_leaf", "ordered_record")

_OFF: contextvars.ContextVar[frozenset] = contextvars.ContextVar(
  "autosgm_optax_backend_off", default=frozenset()
)


@contextlib.contextmanager
def without(*tricks: str) -> Iterator[None]:
  """Turns tricks off for the optimizers traced inside (benchmarks, tests)."""
  unknown = set(tricks) - set(TRICKS)
  if unknown:
    raise ValueError(f"unknown tricks {sorted(unknown)}; known: {TRICKS}.")
  token = _OFF.set(_OFF.get() | frozenset(tricks))
  try:
    yield
  finally:
    _OFF.reset(token)


def _on(trick: str) -> bool:
  return trick not in _OFF.get()


def on_one_cpu(leaves: list[Any]) -> bool:
  """Whether the arrays live on one CPU device.

  Concrete arrays say where they live. Traced ones (inside ``jax.jit``) say
  only their mesh: a mesh of several devices means sharded; otherwise jit
  runs the step on the default device, and with several devices present it
  may be sharded over them, which a trace cannot see (so: no).
  """
  devices: set = set()
  traced = False
  for x in leaves:
    if isinstance(x, jax.core.Tracer):
      traced = True
      # (the abstract value's sharding: absent in older jax versions)
      sharding = getattr(getattr(x, "aval", None), "sharding", None)
      mesh = getattr(sharding, "mesh", None)
      if mesh is not None and getattr(mesh, "size", 1) > 1:
        return False
    elif isinstance(x, jax.Array):
      devices |= set(x.devices())
  if traced or not devices:
    devices |= set(jax.devices())
  return len(devices) == 1 and next(iter(devices)).platform == "cpu"


# ---------------------------------------------------------------------------
# the CPU realisation


def _in_place_filter(
  m_new: Any, g: Any, beta: Any, gamma: Any, eta: Any
) -> Optional[Any]:
  if not (_base.is_number(beta) and _base.is_number(gamma) and beta >= 0.5):
    return None
  return (1 - gamma / beta) * m_new + (gamma * eta / beta) * g


def exact_one(tree: Any) -> Any:
  """An exact 1 that XLA can only compute after every array of ``tree``;
  None if ``tree`` holds no element."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
  if not leaves:
    return None
  # One reduction, not elements: XLA fuses an element's (or a scalar's)
  # arithmetic into every kernel that uses the 1, recomputing it for every
  # element of those kernels (measured: a token summed from 50 scalars made
  # a step 1.6x slower), but keeps a reduction's scalar apart. At least two
  # elements, since XLA turns a reduction of one element into that element.
  parts = [jnp.real(jnp.ravel(x)[:2]).astype(jnp.float32) for x in leaves]
  if sum(p.size for p in parts) < 2:
    parts = parts * 2
  token = jnp.sum(jnp.concatenate(parts))
  return 1 + 0 * jnp.nan_to_num(token)


def times(tree: Any, one: Any) -> Any:
  """``tree``, computed after ``one`` (an exact 1 from :func:`exact_one`, or
  None for no order): each element selected where ``one == 1``, which holds
  always, so every bit passes (inf, NaN and signed zeros included).

  A select, not a product: multiplied by the 1, a state read inside the
  step's arithmetic made XLA fuse and round the step differently (the
  diagnostics changed the updates' last bit); a select leaves the fused
  arithmetic as it is (measured: every configuration of
  ``tests/test_observation.py`` bit for bit with and without diagnostics).
  Leaves of one element pass unordered (the module's docstring says why).
  """
  if one is None:
    return tree
  keep = one == 1
  return jax.tree.map(
    lambda x: jnp.where(keep, x, jnp.zeros_like(x)) if jnp.size(x) > 1 else x,
    tree,
  )


def _after(tree: Any, token: Any) -> Any:
  return times(tree, exact_one(token))


def _token(count: Any) -> Any:
  # As an output of a conditional, a scalar buffer that the kernels read,
  # not arithmetic they repeat for every element.
  return 1 + 0 * count.astype(jnp.float32)


def realisation(leaves: list[Any]) -> _base.Realisation:
  """The realisation for arrays like ``leaves``: the CPU one on one CPU
  device (less what :func:`without` turned off), else the plain one."""
  if not on_one_cpu(leaves):
    return _base.PLAIN
  ordered = _on("ordered_record")
  return _base.Realisation(
    filter_output=_in_place_filter if _on("in_place_filter") else None,
    after=_after if ordered else _base.PLAIN.after,
    token=_token if ordered else _base.PLAIN.token,
  )


# ---------------------------------------------------------------------------
# leaf by leaf


def _only(tree: Any, treedef: Any, i: int) -> Any:
  """``tree`` (structured like ``treedef``) with every leaf but the i-th
  replaced by None."""
  leaves = treedef.flatten_up_to(tree)
  return treedef.unflatten(
    [x if j == i else None for j, x in enumerate(leaves)]
  )


def _structure(x: Any) -> Any:
  # A NoState stands in a leaf's place (a leaf with no state); an
  # optax.MaskedNode stays a node, as in the updates' structure.
  return jax.tree.structure(x, is_leaf=_base.is_no_state)


def _like(treedef: Any) -> Callable[[Any], bool]:
  def is_like(x: Any) -> bool:
    return x is not None and _structure(x) == treedef

  return is_like


def _is_rows(x: Any) -> bool:
  return isinstance(x, _base.PerLeaf)


def split(tree: Any, treedef: Any, i: int) -> Any:
  """``tree`` with each subtree structured like the parameters reduced to
  its i-th leaf (others None), each :class:`PerLeaf` to its i-th row;
  everything else (counters, scalars) kept."""
  if tree is None:
    return None
  is_like = _like(treedef)
  part_def = jax.tree.structure(
    _only(treedef.unflatten([0] * treedef.num_leaves), treedef, i)
  )

  def reduce(x: Any) -> Any:
    if _is_rows(x):
      return _base.PerLeaf(x.rows[i : i + 1], part_def, x.row_ndim)
    return _only(x, treedef, i) if is_like(x) else x

  return jax.tree.map(reduce, tree, is_leaf=lambda x: is_like(x) or _is_rows(x))


def merge(parts: list[Any], template: Any, treedef: Any) -> Any:
  """Inverse of :func:`split`: ``parts[i]`` holds leaf i of every subtree
  structured like the parameters and row i of every :class:`PerLeaf`; the
  other entries are taken from ``parts[0]`` (they are the same in every
  part)."""
  is_like = _like(treedef)
  outer: Any
  slots, outer = jax.tree.flatten(
    template, is_leaf=lambda x: is_like(x) or _is_rows(x)
  )
  flat_parts: list[tuple[list, Any]] = []
  for i, part in enumerate(parts):
    part_def = jax.tree.structure(
      _only(treedef.unflatten([0] * treedef.num_leaves), treedef, i)
    )

    def is_part(x: Any, part_def: Any = part_def) -> bool:
      if _is_rows(x):
        return True
      return x is not None and _structure(x) == part_def

    flat, _ = jax.tree.flatten(part, is_leaf=is_part)
    if len(flat) != len(slots):
      raise ValueError("a leaf's state does not match the template's layout")
    flat_parts.append((flat, part_def))
  merged = []
  for k, slot in enumerate(slots):
    if is_like(slot):  # (leaf i of part i: an array or a NoState)
      merged.append(
        treedef.unflatten([d.flatten_up_to(p[k])[0] for p, d in flat_parts])
      )
    elif _is_rows(slot):
      rows = jnp.concatenate([p[k].rows for p, _ in flat_parts])
      merged.append(_base.PerLeaf(rows, slot.treedef, slot.row_ndim))
    else:
      merged.append(flat_parts[0][0][k])
  return outer.unflatten(merged)


def _written_last(new: Any, old: Any) -> list:
  """The buffers that the next leaf waits for: those of the last part of the
  state (the state's fields are in the order the blocks run) that the step
  wrote, with two or more elements. Not a buffer passed through (waiting on
  an old buffer keeps it alive past its overwrite, and XLA copies it), not
  scalars or a per-leaf average (the next leaf would wait on its
  single-threaded reduction), and only the last block's (measured: waiting
  on every written buffer, 3.5% slower at 1M parameters)."""
  fields = list(zip(new, old)) if isinstance(new, tuple) else [(new, old)]
  for new_part, old_part in reversed(fields):
    written = [
      x
      for x, y in zip(jax.tree.leaves(new_part), jax.tree.leaves(old_part))
      if x is not y and jnp.size(x) > 1
    ]
    if written:
      return written
  return []


def _both(a: Any, b: Any) -> Any:
  return a if b is None else b if a is None else a * b


#: ``step(updates, state, params, realisation) -> (out, new_state)``.
Step = Callable[[Any, Any, Any, _base.Realisation], tuple[Any, Any]]
#: ``record(parts, realisation) -> (record, ones)``: a record taken before
#: the step from its parts (one ``(updates, state, params)`` per leaf, or
#: the whole tree), and an exact 1 per part that the step must wait for.
Record = Callable[[list, _base.Realisation], tuple[Any, list]]


def run(
  step: Step,
  updates: Any,
  state: Any,
  params: Any,
  *,
  leaf_by_leaf: bool,
  record: Optional[Record] = None,
) -> tuple[Any, Any, Any]:
  """``step`` on the whole tree, or leaf by leaf where that pays (on one CPU
  device, with ``leaf_by_leaf``, for two or more non-empty leaves).

  Returns the update, the new state and ``record``'s result (or None).
  """
  leaves, treedef = jax.tree.flatten(updates)
  realise = realisation(leaves)
  sequenced = (
    leaf_by_leaf
    and realise is not _base.PLAIN
    and _on("leaf_by_leaf")
    and sum(1 for x in leaves if jnp.size(x)) >= 2
  )
  if sequenced:
    parts = [
      (
        split(updates, treedef, i),
        split(state, treedef, i),
        split(params, treedef, i),
      )
      for i in range(len(leaves))
    ]
  else:
    parts = [(updates, state, params)]
  recorded, ones = None, [None] * len(parts)
  if record is not None:  # (its 1s are None where the record is not
    recorded, ones = record(parts, realise)  # ordered)
  outs, states, previous = [], [], None
  for (g, s, p), recorded_one in zip(parts, ones):
    # One exact 1 orders the part's inputs: after the record (which reads
    # the donated buffers: the state's per-element buffers and the
    # parameters) and after the previous leaf's kernels. The same inputs
    # are ordered with and without a record, so that XLA fuses the step
    # the same way (and rounds it the same) either way.
    one = _both(previous, recorded_one)
    if sequenced and one is None:  # the first leaf, without a record: a 1
      # of its own, so that its program is the one it is with a record
      one = exact_one(g)
    if one is not None:
      g, p, s = times(g, one), times(p, one), times(s, one)
    out, new = step(g, s, p, realise)
    if sequenced:
      token = exact_one(_written_last(new, s))
      previous = previous if token is None else token
    outs.append(out)
    states.append(new)
  if not sequenced:
    return outs[0], states[0], recorded
  return (
    merge(outs, updates, treedef),
    merge(states, state, treedef),
    recorded,
  )
