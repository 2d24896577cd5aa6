"""Shared machinery of the AutoSGM blocks: the per-step signal, the block type,
state dtypes and construction-time validation.

Every AutoSGM block is an :class:`optax.GradientTransformationExtraArgs` that
also carries an ``apply`` function acting on a :class:`Signal`. The signal is
the per-step context that :func:`autosgm_optax.scale_by_autosgm` threads from
block to block: the raw gradient (after coupled decay), the direction built so
far, the denominator, the decoupled-decay term, the numerator and the window.
A block used alone runs on a fresh signal made from its input, so it treats
its input as the raw gradient; the combinator runs the blocks of its slots on
one shared signal. Both end with :meth:`Signal.finish`, so composing blocks by
hand and the keyword form compute the same numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import numbers
import sys
from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

#: The state-dtype policy that keeps the parameters' dtype, as Optax does.
LIKE_PARAMS = "like_params"

DTypePolicy = Union[None, str, jnp.dtype, type]


def _is_none(x: Any) -> bool:
  return x is None


@jax.tree_util.register_pytree_with_keys_class
class PerLeaf:
  """One row per leaf of a tree, stacked in one array.

  A record with a few numbers per parameter leaf (the diagnostics'
  summaries and counts) kept as one buffer instead of one per leaf: a
  jitted step handles every buffer of its state on each call
  (``benchmarks/state_buffers.py``: 40 small buffers cost a 1M-parameter
  step about 11%, the same numbers in 2 buffers about 3%). The tree's
  structure and the rank of a row are static (the pytree's auxiliary
  data), so :meth:`tree` gives the rows back keyed like the parameters,
  also from records stacked over steps (``jax.lax.scan``, ``jnp.stack``),
  whose leaf axis is then not the first.

  Attributes:
    rows: an array whose axis ``-row_ndim - 1`` runs over the leaves of
      ``treedef`` (the leading axis of a single record).
    treedef: the structure of the tree the rows belong to.
    row_ndim: the rank of one leaf's row.
  """

  __slots__ = ("rows", "treedef", "row_ndim")

  def __init__(self, rows: Any, treedef: Any, row_ndim: Optional[int] = None):
    self.rows = rows
    self.treedef = treedef
    if row_ndim is None:  # a single record: the leaf axis leads
      row_ndim = max(np.ndim(rows) - 1, 0)
    self.row_ndim = row_ndim

  @classmethod
  def stack(
    cls, rows: list, treedef: Any, dtype: Any, row_shape: tuple = ()
  ) -> "PerLeaf":
    """The rows (one array per leaf of ``treedef``, each of ``row_shape``)
    stacked in ``dtype``."""
    if not rows:
      return cls(jnp.zeros((0, *row_shape), dtype), treedef, len(row_shape))
    stacked = jnp.stack([jnp.asarray(r).astype(dtype) for r in rows])
    return cls(stacked, treedef, stacked.ndim - 1)

  def tree(self) -> Any:
    """The rows as a tree like the parameters (leaf i: row i, with any
    leading axes of stacked records in front)."""
    if _Structure(self.treedef).placeholder():
      raise ValueError(
        "this record belongs to optax.tree.map_params' parameter "
        "placeholder (a state mapped by map_params keeps its structure, not "
        "the parameters'); read the optimizer's own state."
      )
    axis = np.ndim(self.rows) - self.row_ndim - 1
    return self.treedef.unflatten(
      [
        jnp.take(self.rows, i, axis=axis)
        for i in range(self.treedef.num_leaves)
      ]
    )

  def tree_flatten_with_keys(self):
    key = jax.tree_util.GetAttrKey("rows")
    return ((key, self.rows),), (_Structure(self.treedef), self.row_ndim)

  def tree_flatten(self):
    return (self.rows,), (_Structure(self.treedef), self.row_ndim)

  @classmethod
  def tree_unflatten(cls, aux, children):
    structure, row_ndim = aux
    return cls(children[0], structure.treedef, row_ndim)

  def __eq__(self, other: object) -> bool:
    # As a NamedTuple state compares: field by field (e.g. the trees of
    # dtypes that Optax's tests compare).
    if not isinstance(other, PerLeaf):
      return NotImplemented
    return (self.rows, self.treedef, self.row_ndim) == (
      other.rows,
      other.treedef,
      other.row_ndim,
    )

  __hash__ = None  # type: ignore[assignment]  # (mutable, like its rows)

  def __repr__(self) -> str:
    return f"PerLeaf(rows={self.rows!r}, treedef={self.treedef})"


class _Structure:
  """A :class:`PerLeaf`'s tree structure as pytree auxiliary data.

  Equal to another when the structures are equal, or when either is the
  structure of ``optax.tree.map_params``'s parameter placeholder: that
  function builds the state of a placeholder (a node without leaves) and
  maps it together with the real state, so that the mapped state's records
  carry the placeholder's structure (:meth:`PerLeaf.tree` then refuses to
  read them). The hash is the same for all (a placeholder equals every
  structure)."""

  __slots__ = ("treedef",)

  def __init__(self, treedef: Any):
    self.treedef = treedef

  def placeholder(self) -> bool:
    """Whether this is the structure of map_params' placeholder."""
    if self.treedef.num_leaves or self.treedef.num_nodes != 1:
      return False
    node = self.treedef.node_data()
    kind = node[0] if node else None
    return getattr(kind, "__name__", "") == "_ParamsPlaceholder" and (
      getattr(kind, "__module__", "").startswith("optax.")
    )

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, _Structure):
      return NotImplemented
    return (
      self.treedef == other.treedef or self.placeholder() or other.placeholder()
    )

  def __hash__(self) -> int:
    return hash(_Structure)

  def __repr__(self) -> str:
    return repr(self.treedef)


def register_with_flax() -> None:
  """Teaches ``flax.serialization`` (``to_state_dict``, ``to_bytes``) the
  :class:`PerLeaf` records, if flax is imported (the library does not
  import it): as ``{"rows": ...}``, restored into a target's structure.
  Called where diagnostics are built; idempotent."""
  serialization = sys.modules.get("flax.serialization")
  if serialization is None:
    return

  def to_state(x: PerLeaf) -> dict:
    return {"rows": serialization.to_state_dict(x.rows)}

  def from_state(target: PerLeaf, state: dict) -> PerLeaf:
    rows = serialization.from_state_dict(target.rows, state["rows"])
    return PerLeaf(rows, target.treedef, target.row_ndim)

  serialization.register_serialization_state(
    PerLeaf, to_state, from_state, override=True
  )


class FilterFacts(NamedTuple):
  """What the filter that ran tells the diagnostics: its pole ``beta``, zero
  ``gamma`` and gain ``eta`` (numbers or arrays), and ``s``, the debias
  divisor of this update (None without debias)."""

  beta: Any
  gamma: Any
  eta: Any
  s: Any = None


class FilterSpec(NamedTuple):
  """A filter's configuration as it was given: pole ``beta``, zero
  ``gamma``, gain ``eta`` (numbers, or arrays under
  ``optax.inject_hyperparams``), whether it divides by the exact debias
  ``s(t)``, and whether it is realised in Optax's Nesterov form
  (``v = g + beta m``, ``m = beta m + g``); ``nu``, the weight of the
  quasi-hyperbolic form (None: another form). ``debias`` is a bool (True:
  the exact debias) or the name of a per-term debias of that form
  (``"ema"``, ``"nadam"``). :mod:`autosgm_optax.design` studies it."""

  beta: Any
  gamma: Any
  eta: Any
  debias: Union[bool, str] = False
  nesterov: bool = False
  nu: Any = None


class Realisation(NamedTuple):
  """How a device realises the blocks' formulas (``backend.py`` makes the
  CPU one; every field's default is the plain formula).

  Attributes:
    filter_output: None, or ``f(m_new, g, beta, gamma, eta)`` giving the
      filter's output ``m(t) - gamma m(t-1)`` from its new state and input
      (or None where that form does not apply).
    after: ``after(tree, token)``: ``tree``, computed after every array of
      ``token`` (the plain one ignores ``token``).
    token: ``token(count)``: an exact 1 made from the int32 scalar
      ``count``, which a conditional returns so that the step can be
      ordered after it (the diagnostics' record); None for no order (the
      plain one).
  """

  filter_output: Optional[Callable[..., Any]] = None
  after: Callable[[Any, Any], Any] = lambda tree, token: tree
  token: Callable[[Any], Any] = lambda count: None


#: The plain realisation: the formulas as written.
PLAIN = Realisation()


class Signal(NamedTuple):
  """The per-step context shared by the blocks of one AutoSGM update.

  Attributes:
    grad: the raw gradient (after coupled decay), a tree like the parameters.
    direction: the direction built so far: the raw gradient, then the
      filter's output, then that divided by the denominator.
    denominator: the tree of ``d(t)``, or None while no denominator ran.
    decay: the decoupled-decay term (a tree whose leaves may be None for
      leaves the mask exempts), or None.
    numerator: the tree of ``a(t)`` (per-leaf averages with kept dimensions,
      or per-element values), or None for the unity numerator.
    window: the scalar window value ``F(t)``, or None.
    filter: the :class:`FilterFacts` of the filter that ran, or None: read
      by the diagnostics.
    realisation: the :class:`Realisation` of this device.
  """

  grad: Any
  direction: Any
  denominator: Any = None
  decay: Any = None
  numerator: Any = None
  window: Any = None
  filter: Any = None
  realisation: Realisation = PLAIN

  @classmethod
  def from_gradient(
    cls, updates: Any, realisation: Realisation = PLAIN
  ) -> "Signal":
    return cls(grad=updates, direction=updates, realisation=realisation)

  def finish(self) -> Any:
    """Returns ``F * a * (direction + decay)``, skipping the empty parts."""
    out = self.direction
    if self.decay is not None:
      out = jax.tree.map(
        lambda dc, u: u if dc is None else u + dc,
        self.decay,
        out,
        is_leaf=_is_none,
      )
    if self.numerator is None and self.window is None:
      return out

    def scale(u, a=None):  # a is None where the numerator is 1
      coef = a
      if self.window is not None:
        window = jnp.asarray(self.window, real_dtype(u.dtype))
        coef = window if coef is None else coef * window
      if coef is None:
        return u
      return coef.astype(real_dtype(u.dtype)) * u

    if self.numerator is None:
      return jax.tree.map(scale, out)
    return jax.tree.map(lambda u, a: scale(u, a), out, self.numerator)


ApplyFn = Callable[[Signal, Any, Any], tuple[Signal, Any]]


@dataclasses.dataclass(frozen=True)
class BlockFacts:
  """Static facts a block states about its configuration; the defaults are
  what the combinator assumes of a block that says nothing.

  Attributes:
    zero_is_zero: the filter's zero is a plain 0, so ``e(t)`` of the
      diagnostics needs no gradient history (assume not: keep it).
    explicit_dtype: None, or the state dtype the user chose for the block:
      then the update has the dtype that arithmetic with it gives (the
      gradients' dtype promoted with it, as ``optax.adam(mu_dtype=...)``);
      else the gradients' dtype (or as ``like_params`` says).
    identity: the block passes the signal through unchanged (a decay with a
      plain rate of 0), so the diagnostics keep no history for it.
    like_params: the block keeps its per-element state in the parameters'
      dtype (the ``"like_params"`` policy, Optax's convention), and the
      update's dtype is promoted with that state's, as Optax's twins'
      updates are (bfloat16 gradients of float32 parameters give float32
      updates).
    filter: a filter's :class:`FilterSpec` (None for other blocks).
    matrix: the block maps matrix leaves as matrices (the matrix oracle), so
      the per-element learning dynamics do not describe them.
  """

  zero_is_zero: bool = False
  explicit_dtype: Optional[jnp.dtype] = None
  identity: bool = False
  like_params: bool = False
  # (not compared or hashed: an injected pole is an array, and a block is
  # hashed as a static argument of jax.jit)
  filter: Optional[FilterSpec] = dataclasses.field(default=None, compare=False)
  matrix: bool = False

  def __post_init__(self):
    for name in ("zero_is_zero", "identity", "like_params", "matrix"):
      value = getattr(self, name)
      if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a bool.")
    if self.filter is not None and not isinstance(self.filter, FilterSpec):
      raise TypeError(f"filter={self.filter!r} must be a FilterSpec.")
    if self.explicit_dtype is not None:
      object.__setattr__(self, "explicit_dtype", jnp.dtype(self.explicit_dtype))


def _facts(facts: Any, info: Optional[dict]) -> BlockFacts:
  if info is not None:  # the mapping form of earlier versions
    known = {f.name for f in dataclasses.fields(BlockFacts)}
    unknown = set(info) - known
    if unknown:
      raise ValueError(
        f"info has unknown keys {sorted(unknown)}; the known "
        f"ones are {sorted(known)} (see BlockFacts)."
      )
    facts = dataclasses.replace(facts or BlockFacts(), **info)
  if facts is None:
    return BlockFacts()
  if isinstance(facts, dict):  # the 4th positional argument was info
    return _facts(None, facts)
  if not isinstance(facts, BlockFacts):
    raise TypeError(
      f"facts={facts!r} must be a BlockFacts (or a dict of its fields, "
      "as info= takes)."
    )
  return facts


@dataclasses.dataclass(frozen=True)
class BlockUpdate:
  """What defines an AutoSGM block, and its ``update`` used alone: ``apply``
  run on a signal made from the input (taken as the raw gradient), the
  result in the input's dtype (promoted with ``facts.explicit_dtype``, and
  with the state's dtype where ``facts.like_params``).

  Attributes:
    apply: ``apply(signal, state, params) -> (signal, state)``, the step the
      combinator runs on its shared :class:`Signal`.
    kind: the kind of block, which names the slot of
      :func:`autosgm_optax.scale_by_autosgm` it fills (``"filter"``,
      ``"denominator"``, ``"numerator"``, ``"window"``, ``"coupled_decay"``,
      ``"decoupled_decay"``).
    facts: the block's static :class:`BlockFacts`.
    last: None, or a map from the block's state to its factor of the last
      update's effective learning rate.
  """

  apply: ApplyFn
  kind: str
  facts: BlockFacts
  last: Optional[Callable[[Any], Any]]

  def __call__(self, updates, state, params=None, **extra_args):
    del extra_args
    # Scheduled as in the combinator, so that a block alone and the same
    # block in its slot give the same bits. (Imported here: the backend
    # builds on this module.)
    from autosgm_optax._src import backend  # pylint: disable=import-outside-toplevel

    def step(grads, state, params, realisation):
      signal = Signal.from_gradient(grads, realisation)
      signal, state = self.apply(signal, state, params)
      return signal.finish(), state

    out, state, _ = backend.run(
      step, updates, state, params, leaf_by_leaf=self.kind == "numerator"
    )
    return output_dtype(out, updates, [(self, state)]), state


class AutoSGMBlock(optax.GradientTransformationExtraArgs):
  """An Optax gradient transformation that is also an AutoSGM building block.

  It is an :class:`optax.GradientTransformationExtraArgs` (``init``,
  ``update``; extra update arguments are accepted and ignored) whose
  ``update`` is a :class:`BlockUpdate`, a frozen record of what defines the
  block: ``kind`` names the slot of :func:`autosgm_optax.scale_by_autosgm`
  it fills; ``apply(signal, state, params) -> (signal, state)`` is the step
  the combinator runs on its shared :class:`Signal`; ``facts`` is a
  :class:`BlockFacts`; ``last`` (or None) maps the block's state to its
  factor of the last update's effective learning rate (the filter's ``s``,
  the denominator's ``d``, the numerator's ``a``, the window's ``F``;
  undefined before the first update), which the summary-level diagnostics
  read instead of keeping ``alpha(t-1)``. The block reads them as
  attributes (``block.kind``, ...); ``_make`` takes ``(init, update)`` with
  ``update`` a :class:`BlockUpdate` (``jax.tree.map`` over a block gives a
  block back).

  Used alone the block runs ``apply`` on a signal made from its input.
  Blocks survive ``copy.copy``, ``copy.deepcopy``, pickling (where their
  functions pickle) and ``_replace`` (which takes ``init``, ``apply``,
  ``kind``, ``facts`` and ``last``; ``update`` follows ``apply``).
  ``info=`` (a mapping of the facts' fields) is accepted for ``facts=``.
  """

  def __new__(
    cls,
    init,
    apply: ApplyFn,
    kind: str,
    facts: Optional[BlockFacts] = None,
    last: Optional[Callable[[Any], Any]] = None,
    *,
    info: Optional[dict] = None,
  ):
    if not isinstance(kind, str):
      raise TypeError(f"kind={kind!r} must be a str naming the block's slot.")
    if not callable(init) or not callable(apply):
      raise TypeError(
        f"init={init!r} and apply={apply!r} must be callables: "
        "init(params) -> state, apply(signal, state, params) -> "
        "(signal, state)."
      )
    if last is not None and not callable(last):
      raise TypeError(f"last={last!r} must be None or a callable.")
    spec = BlockUpdate(apply, kind, _facts(facts, info), last)
    return super().__new__(cls, init, spec)

  @property
  def apply(self) -> ApplyFn:
    return self.update.apply

  @property
  def kind(self) -> str:
    return self.update.kind

  @property
  def facts(self) -> BlockFacts:
    return self.update.facts

  @property
  def info(self) -> dict:
    """The facts as a mapping (earlier versions' form)."""
    return dataclasses.asdict(self.facts)

  @property
  def last(self) -> Optional[Callable[[Any], Any]]:
    return self.update.last

  def __getnewargs__(self):  # copy, deepcopy and pickle rebuild from these
    return (self.init, self.apply, self.kind, self.facts, self.last)

  def _replace(self, **changes) -> "AutoSGMBlock":
    if "update" in changes:
      raise TypeError(
        "an AutoSGMBlock's update is made from its apply: replace apply "
        "(block._replace(apply=...)), or wrap the block in an "
        "optax.GradientTransformation of your own."
      )
    fields = dict(
      init=self.init,
      apply=self.apply,
      kind=self.kind,
      facts=self.facts,
      last=self.last,
    )
    unknown = set(changes) - set(fields) - {"info"}
    if unknown:
      raise ValueError(
        f"_replace got unknown fields {sorted(unknown)}; an AutoSGMBlock "
        f"has {sorted(fields)}."
      )
    fields.update(changes)
    return type(self)(**fields)

  def __repr__(self) -> str:
    return f"AutoSGMBlock(kind={self.kind!r}, facts={self.facts!r})"

  @classmethod
  def _make(cls, iterable) -> "AutoSGMBlock":
    """From ``(init, update)`` with ``update`` a :class:`BlockUpdate` (how
    ``jax.tree`` rebuilds a block); anything else is refused."""
    init, update = iterable
    if not isinstance(update, BlockUpdate) or not callable(init):
      raise TypeError(
        f"an AutoSGMBlock is made of init and a BlockUpdate, got {init!r} "
        f"and {update!r}; build one with AutoSGMBlock(init, apply, kind)."
      )
    return tuple.__new__(cls, (init, update))


def _unflatten_block(_, children) -> Any:
  # A map that keeps the BlockUpdate keeps a block; one that replaces the
  # update (as it may an Optax transformation's) gets an Optax one.
  init, update = children
  if isinstance(update, BlockUpdate):
    return AutoSGMBlock._make((init, update))
  return optax.GradientTransformationExtraArgs(init, update)


# As for an Optax transformation, init and update are the pytree's leaves;
# jax.tree.map and unflattening give a block back.
jax.tree_util.register_pytree_node(
  AutoSGMBlock, lambda b: ((b.init, b.update), None), _unflatten_block
)


# ---------------------------------------------------------------------------
# dtypes


#: The kinds of block each slot of ``scale_by_autosgm`` takes.
SLOT_KINDS = {
  "decay": ("coupled_decay", "decoupled_decay"),
  "filter": ("filter",),
  "denominator": ("denominator",),
  "numerator": ("numerator",),
  "window": ("window",),
}


def check_slots(**slots: Any) -> dict:
  """Refuses a slot given something else than a block of its kinds;
  returns the slots."""
  for slot, block in slots.items():
    if block is None:
      continue
    if not isinstance(block, AutoSGMBlock):
      raise TypeError(
        f"{slot}={block!r} is not an AutoSGM block: build it with the "
        f"library's {slot} block factory."
      )
    if block.kind not in SLOT_KINDS[slot]:
      raise TypeError(
        f"{slot}= got a {block.kind!r} block; the {slot} slot takes "
        f"{' or '.join(SLOT_KINDS[slot])} blocks."
      )
  return slots


def real_dtype(dtype) -> jnp.dtype:
  """The real dtype of ``dtype`` (float32 for complex64)."""
  return jnp.finfo(dtype).dtype


def state_dtype(param_dtype, policy: DTypePolicy) -> jnp.dtype:
  """The dtype of a state buffer for a parameter of ``param_dtype``.

  ``None`` keeps the parameter's dtype but at least 32 bits (an EMA with pole
  0.999 stored in bfloat16 never moves); ``"like_params"`` keeps the
  parameter's dtype as Optax does; anything else is a dtype.
  """
  param_dtype = jnp.dtype(param_dtype)
  if policy is None:
    if jnp.issubdtype(param_dtype, jnp.inexact) and param_dtype.itemsize < 4:
      return jnp.dtype(jnp.float32)
    return param_dtype
  if isinstance(policy, str) and policy == LIKE_PARAMS:
    return param_dtype
  dtype = jnp.dtype(policy)
  if jnp.issubdtype(param_dtype, jnp.complexfloating) and not jnp.issubdtype(
    dtype, jnp.complexfloating
  ):
    raise TypeError(
      f"the state dtype {dtype} is real, but a parameter is {param_dtype}: "
      "a real state would drop the imaginary part; give a complex dtype, "
      f"None or {LIKE_PARAMS!r}."
    )
  return dtype


def zeros_like_tree(params: Any, policy: DTypePolicy) -> Any:
  # zeros_like keeps each parameter's sharding (zeros(shape) would not).
  return jax.tree.map(
    lambda p: jnp.zeros_like(p, dtype=state_dtype(p.dtype, policy)), params
  )


def scalar_dtype(params: Any) -> jnp.dtype:
  """The dtype of per-optimizer scalar state: the widest real parameter
  dtype, at least float32 (float64 only where parameters are float64)."""
  dtypes = [
    real_dtype(p.dtype)
    for p in jax.tree.leaves(params)
    if jnp.issubdtype(p.dtype, jnp.inexact)
  ]
  widest = jnp.dtype(jnp.float32)
  for d in dtypes:
    if d.itemsize > widest.itemsize:
      widest = d
  return widest


def cast_tree(tree: Any, like: Any) -> Any:
  """``tree`` with each leaf in the dtype of the matching leaf of ``like``
  (no operation where they agree)."""
  return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)


def is_like_params(policy: DTypePolicy) -> bool:
  """Whether ``policy`` keeps the state in the parameters' dtype."""
  return isinstance(policy, str) and policy == LIKE_PARAMS


def explicit_dtype(policy: DTypePolicy) -> Optional[jnp.dtype]:
  """The dtype the user chose in ``policy``, or None (for None and
  ``"like_params"``)."""
  if policy is None or (isinstance(policy, str) and policy == LIKE_PARAMS):
    return None
  return jnp.dtype(policy)


def output_dtype(out: Any, grads: Any, blocks_states: list) -> Any:
  """``out`` in the gradients' dtype, promoted with the state dtypes the
  user chose (the blocks' ``facts.explicit_dtype``) and, leaf by leaf, with
  the state that blocks with ``facts.like_params`` keep in the parameters'
  dtype (:func:`like_params_dtypes`): the library's own float32 state for
  low-precision parameters stays inside, and a chosen one, or one in the
  parameters' dtype, enters the update as in Optax (``optax.adam(...,
  mu_dtype=jnp.float32)`` returns float32 updates for bfloat16 gradients,
  and so does ``optax.adam`` of float32 parameters).

  ``blocks_states`` holds ``(block, its new state)`` pairs, None for an
  empty slot."""
  chosen = [
    b.facts.explicit_dtype
    for b, _ in blocks_states
    if b is not None and b.facts.explicit_dtype is not None
  ]
  treedef: Any
  leaves, treedef = jax.tree.flatten(grads)
  like = like_params_dtypes(blocks_states, grads) or [None] * len(leaves)

  def cast(u, g, extra):
    dtype = g.dtype
    for d in chosen if extra is None else [*chosen, extra]:
      dtype = jnp.promote_types(dtype, d)
    return u.astype(dtype)

  outs = treedef.flatten_up_to(out)
  return treedef.unflatten(
    [cast(u, g, d) for u, g, d in zip(outs, leaves, like)]
  )


def like_params_dtypes(blocks_states: list, grads: Any) -> Optional[list]:
  """Per leaf of ``grads``, the dtype of the state that blocks with
  ``facts.like_params`` keep for it (promoted over their buffers' floating
  dtypes); None where none does, and None for no such block. Only the
  blocks' own fields are read (a block wrapped inside another, as the
  matrix oracle wraps its element-wise block, is not seen)."""
  treedef: Any
  # (a leaf that optax.masked / optax.partition masks is a MaskedNode in
  # the gradients and in the state: take it as a leaf, then drop it)
  leaves, treedef = jax.tree.flatten(grads, is_leaf=is_masked)
  dtypes: list = [None] * len(leaves)
  found = False
  placeholder = lambda x: is_masked(x) or is_no_state(x)
  for block, state in blocks_states:
    if block is None or not block.facts.like_params:
      continue
    fields = state if isinstance(state, tuple) else (state,)
    for field in fields:
      if field is None or (
        jax.tree.structure(field, is_leaf=placeholder) != treedef
      ):
        continue
      for i, x in enumerate(treedef.flatten_up_to(field)):
        if placeholder(x) or not jnp.issubdtype(x.dtype, jnp.inexact):
          continue
        found = True
        d = jnp.dtype(x.dtype)
        dtypes[i] = d if dtypes[i] is None else jnp.promote_types(dtypes[i], d)
  if not found:
    return None
  return [d for d, g in zip(dtypes, leaves) if not is_masked(g)]


def promoted(x: Any, like: Any) -> Any:
  """``x`` in the dtype of ``x`` promoted with ``like``'s (no operation where
  they agree): low-precision inputs meet a wider state in its precision."""
  return x.astype(jnp.promote_types(x.dtype, like.dtype))


def require_params(params: Any, block: str) -> None:
  if params is None:
    raise ValueError(
      f"{block} needs the parameters: call "
      "`update(updates, state, params)` with params (as for "
      "optax.add_decayed_weights)."
    )


class NoState(NamedTuple):
  """The place of a leaf for which a block keeps no state: a
  ``numerator_mask``'s unity leaves, the matrix leaves of the element-wise
  path. An empty pytree node, like ``optax.MaskedNode`` (which
  ``optax.masked`` puts where it masks a whole leaf, and which this is told
  apart from), so the state holds no array there: Orbax saves it as
  nothing."""


def is_no_state(x: Any) -> bool:
  """Whether ``x`` is a :class:`NoState` placeholder."""
  return isinstance(x, NoState)


def is_masked(x: Any) -> bool:
  """Whether ``x`` is ``optax.MaskedNode()`` (``optax.masked`` /
  ``optax.partition``: the leaf is not this transformation's)."""
  return isinstance(x, optax.MaskedNode)


def divide(a: Any, b: Any) -> Any:
  """``a / b``, where plain numbers divided by zero give inf or NaN as float
  arrays would instead of raising: the presets accept what their Optax twins
  accept (``b1=1``), and those compute NaN at run time."""
  if is_number(a) and is_number(b) and b == 0:
    return math.copysign(math.inf, a) if a != 0 else math.nan
  return a / b


def evaluate(value: Any, count: jax.Array) -> Any:
  """A hyperparameter that may be a schedule, evaluated at ``count``."""
  return value(count) if callable(value) else value


# ---------------------------------------------------------------------------
# construction-time validation (plain Python numbers only)

_CHECKS_ON = contextvars.ContextVar("autosgm_optax_checks_on", default=True)


def checks_on() -> bool:
  return _CHECKS_ON.get()


@contextlib.contextmanager
def unchecked():
  """Builds blocks without range checks: the presets accept what their Optax
  twins accept (type checks of structural options stay)."""
  token = _CHECKS_ON.set(False)
  try:
    yield
  finally:
    _CHECKS_ON.reset(token)


def is_number(x: Any) -> bool:
  """True for plain Python (and NumPy scalar) numbers, False for arrays and
  tracers, which pass through unchecked (``optax.inject_hyperparams``)."""
  return (
    isinstance(x, numbers.Real)
    and not isinstance(x, bool)
    and not isinstance(x, (jax.Array, np.ndarray))
  )


def check_type(name: str, value: Any, allow_schedule: bool = False) -> None:
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a number, got the bool {value!r}.")
  if is_number(value) or isinstance(value, (jax.Array, np.ndarray)):
    return
  if allow_schedule and callable(value):
    return
  kinds = (
    "a number, an array or a schedule"
    if allow_schedule
    else ("a number or an array")
  )
  raise TypeError(
    f"{name} must be {kinds}, got {value!r} of type {type(value).__name__}."
  )


def check_range(
  name: str,
  value: Any,
  low: Optional[float] = None,
  high: Optional[float] = None,
  *,
  low_open: bool = False,
  high_open: bool = True,
  allow_schedule: bool = False,
) -> None:
  """Refuses a plain number outside ``[low, high)`` (by default)."""
  if not _CHECKS_ON.get():
    return
  check_type(name, value, allow_schedule=allow_schedule)
  if not is_number(value):
    return
  interval = outside(
    float(value), low, high, low_open=low_open, high_open=high_open
  )
  if interval:
    raise ValueError(f"{name}={value!r} is outside the valid range {interval}.")


def outside(
  v: float,
  low: Optional[float],
  high: Optional[float],
  *,
  low_open: bool = False,
  high_open: bool = True,
) -> Optional[str]:
  """The valid interval, written out, if ``v`` is outside it (or not
  finite); None if ``v`` is inside."""
  bad = not np.isfinite(v)
  if low is not None:
    bad |= v <= low if low_open else v < low
  if high is not None:
    bad |= v >= high if high_open else v > high
  if not bad:
    return None
  left = "(" if low_open else "["
  right = ")" if high_open else "]"
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  return f"{left}{lo}, {hi}{right}"


def check_filter_design(beta: Any, gamma: Any, eta: Any = None) -> None:
  """The valid filter designs: 0 <= beta < 1 and gamma < beta, or a pure
  gain beta = gamma = 0; eta > 0."""
  check_range("beta", beta, 0.0, 1.0)
  check_range("gamma", gamma, None, None)
  if eta is not None:
    check_range("eta", eta, 0.0, None, low_open=True)
  if is_number(beta) and is_number(gamma):
    if beta == 0 and gamma == 0:
      return
    if gamma == beta:
      raise ValueError(
        f"gamma={gamma!r} equals beta={beta!r}: the zero cancels the pole. "
        "Valid designs have gamma < beta (or beta = gamma = 0, a pure gain: "
        "use beta=0.0, gamma=0.0)."
      )
    if gamma > beta:
      raise ValueError(
        f"gamma={gamma!r} is above beta={beta!r}: the valid range is "
        "gamma < beta (or beta = gamma = 0, a pure gain)."
      )


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  if not isinstance(value, str) or value not in choices:
    raise ValueError(
      f"{name}={value!r} is not one of {', '.join(map(repr, choices))}."
    )


def check_dtype_policy(name: str, policy: Any) -> None:
  if policy is None or (isinstance(policy, str) and policy == LIKE_PARAMS):
    return
  try:
    jnp.dtype(policy)
  except TypeError as e:
    raise TypeError(
      f"{name}={policy!r} is neither None, {LIKE_PARAMS!r} nor a dtype."
    ) from e
