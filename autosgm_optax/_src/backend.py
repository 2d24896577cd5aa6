"""Run an update leaf by leaf, so that XLA on CPU keeps each leaf in cache.

Without multi-output fusion, XLA on CPU writes every state buffer of a leaf
in its own kernel and reads the leaf's gradient, parameters and new state
again in the following kernels (the numerator, the per-leaf average, the
update). Its scheduler interleaves the leaves, so at 10M parameters each of
those reads comes from main memory. Made to depend on the previous leaf's
result, each leaf's kernels run back to back and their re-reads hit the
cache (measured: the full configuration went from about 1.4x to 1.2x its
floor kernel at 10M parameters, `benchmarks/step_time.py`).

The dependency is arithmetic, because XLA on CPU removes optimisation
barriers before it schedules: the next leaf's gradient and parameters are
multiplied by an exact 1 computed from the previous leaf's output, which
leaves every bit unchanged (also for inf and NaN) and costs one
multiplication per element inside kernels that run anyway.
"""

from __future__ import annotations

from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp


def enabled(leaves: list[Any]) -> bool:
  """Sequence on a single CPU device, for trees of two or more non-empty
  leaves.

  Elsewhere the update runs on the whole tree: GPUs and TPUs have
  multi-output fusion, and with several devices the scalar taken from a
  sharded leaf would cost a collective per leaf (and explicit sharding
  refuses the slice). The combinator sequences only configurations with a
  numerator (see :func:`autosgm_optax.scale_by_autosgm`).
  """
  return (jax.default_backend() == "cpu" and jax.device_count() == 1
          and sum(1 for x in leaves if jnp.size(x)) >= 2)


def _only(tree: Any, treedef: Any, i: int) -> Any:
  """``tree`` (structured like ``treedef``) with every leaf but the i-th
  replaced by None."""
  leaves = treedef.flatten_up_to(tree)
  return treedef.unflatten([x if j == i else None
                            for j, x in enumerate(leaves)])


def _like(treedef: Any) -> Callable[[Any], bool]:
  def is_like(x: Any) -> bool:
    return x is not None and jax.tree.structure(x) == treedef
  return is_like


def split(tree: Any, treedef: Any, i: int) -> Any:
  """``tree`` with each subtree structured like the parameters reduced to
  its i-th leaf (others None); everything else (counters, scalars) kept."""
  is_like = _like(treedef)
  return jax.tree.map(
      lambda x: _only(x, treedef, i) if is_like(x) else x, tree,
      is_leaf=is_like)


def merge(parts: list[Any], template: Any, treedef: Any) -> Any:
  """Inverse of :func:`split`: ``parts[i]`` holds leaf i of every subtree
  structured like the parameters; the other entries are taken from
  ``parts[0]`` (they are the same in every part)."""
  is_like = _like(treedef)
  outer: Any
  slots, outer = jax.tree.flatten(template, is_leaf=is_like)
  flat_parts = []
  for i, part in enumerate(parts):
    part_def = jax.tree.structure(_only(treedef.unflatten(
        [0] * treedef.num_leaves), treedef, i))
    def is_part(x: Any, part_def: Any = part_def) -> bool:
      return x is not None and jax.tree.structure(x) == part_def

    flat, _ = jax.tree.flatten(part, is_leaf=is_part)
    if len(flat) != len(slots):
      raise ValueError("a leaf's state does not match the template's layout")
    flat_parts.append(flat)
  merged = []
  for k, slot in enumerate(slots):
    if is_like(slot):
      merged.append(treedef.unflatten(
          [jax.tree.leaves(p[k])[0] for p in flat_parts]))
    else:
      merged.append(flat_parts[0][k])
  return outer.unflatten(merged)


def exact_one(tree: Any, previous: Any = None) -> Any:
  """An exact 1 that XLA can only compute after every array of ``tree``
  (arrays written to memory anyway, e.g. a new state, or scalars);
  ``previous`` if ``tree`` holds no element, or with several devices."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
  if not leaves or jax.device_count() > 1:
    # (With several devices the order is left to XLA: a slice of a sharded
    # leaf costs a collective, and explicit sharding refuses it.)
    return previous
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
  """``tree * one`` leaf by leaf, in each leaf's dtype (bit for bit
  ``tree``); ``one`` an array from :func:`exact_one` or the number 1 that
  :func:`exact_one` hands back when it found no element."""
  return jax.tree.map(lambda x: x * jnp.asarray(one, x.dtype), tree)
