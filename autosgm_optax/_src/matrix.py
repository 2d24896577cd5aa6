r"""The matrix oracle: the polar factor of the filtered gradient.

For a matrix leaf the element-wise normalisation ``H[g] / d`` is replaced by
the polar factor of the filter's output ``V = H[g]``,

.. math::
  V = U \Sigma W^\top \;\mapsto\; (V V^\top)^{-1/2} V = U W^\top,

computed by an iteration (:mod:`autosgm_optax._src.polar`): Muon's
Newton-Schulz quintic, the classical cubic, the original AutoSGM code's Lakic
iteration, or an SVD as the reference. Leaves that are not matrices (vectors,
scalars, leaves a mask or a rule leaves out) take the element-wise path: the
moment denominator. docs/matrix.md explains the design and how it relates to
``optax.contrib.muon``.
"""

from __future__ import annotations

from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional
from typing import Union

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers

from autosgm_optax._src import base as _base
from autosgm_optax._src import polar as _polar
from autosgm_optax._src.denominator import moment_denominator

#: How the polar factor is rescaled per leaf: ``"width"`` is Muon's
#: ``sqrt(max(1, fan_out / fan_in))``; a number ``c`` its consistent RMS,
#: ``c sqrt(max(fan_in, fan_out))``; None: no rescaling.
ShapeScale = Union[None, str, Any]

Rules = Union[None, MuonDimensionNumbers, Any, Callable[[Any], Any]]


class MatrixOracleState(NamedTuple):
  """State of :func:`matrix_oracle`: the element-wise path's state, over
  the leaves that are not matrices (None at the matrix leaves)."""

  elementwise: Any


def _is_rule(x: Any) -> bool:
  return x is None or isinstance(x, MuonDimensionNumbers)


def _rules(dimension_numbers: Rules, tree: Any) -> list:
  """Per leaf of ``tree``: the leaf's rule (a :class:`MuonDimensionNumbers`,
  or None for the rank-2 default), or False for the element-wise path."""
  spec = dimension_numbers
  if callable(spec) and not isinstance(spec, MuonDimensionNumbers):
    spec = spec(tree)
  if spec is None or isinstance(spec, MuonDimensionNumbers):
    leaves = jax.tree.leaves(tree)
    return [spec if _polar.is_matrix(x, spec) else False for x in leaves]
  # A tree of rules (a prefix of ``tree``): None marks element-wise leaves.
  per_leaf = jax.tree.map(
    lambda rule, sub: jax.tree.map(lambda x: _Ruled(rule, x), sub),
    spec,
    tree,
    is_leaf=_is_rule,
  )
  ruled = jax.tree.leaves(per_leaf, is_leaf=lambda p: isinstance(p, _Ruled))
  return [
    p.rule if p.rule is not None and _polar.is_matrix(p.x, p.rule) else False
    for p in ruled
  ]


class _Ruled:  # a leaf with its rule (not a pytree: a leaf of the map)
  __slots__ = ("rule", "x")

  def __init__(self, rule, x):
    self.rule, self.x = rule, x


def _routes(dimension_numbers: Rules, mask: Any, tree: Any) -> list:
  """:func:`_rules`, less the leaves a mask (a tree of bools, or a callable
  of ``tree``) sends to the element-wise path."""
  rules = _rules(dimension_numbers, tree)
  if mask is None:
    return rules
  keep = mask(tree) if callable(mask) else mask
  flags = jax.tree.leaves(
    jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), keep, tree)
  )
  return [r if bool(f) else False for r, f in zip(rules, flags)]


def elementwise_mask(dimension_numbers: Rules, mask: Any = None) -> Callable:
  """A mask (a callable of the parameters) that is True on the leaves that
  take the element-wise path and ``mask`` (a tree of bools, a callable or
  None) keeps."""

  def of(params):
    routes = _rules(dimension_numbers, params)
    leaves, treedef = jax.tree.flatten(params)
    keep = [True] * len(leaves)
    if mask is not None:
      tree = mask(params) if callable(mask) else mask
      keep = jax.tree.leaves(
        jax.tree.map(
          lambda m, sub: jax.tree.map(lambda _: m, sub), tree, params
        )
      )
    return jax.tree.unflatten(
      treedef, [bool(k) and r is False for k, r in zip(keep, routes)]
    )

  return of


def _split(tree: Any, routes: list) -> Any:
  """``tree`` with its matrix leaves replaced by :class:`NoState`: the
  element-wise block keeps no state and does no work there."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(
    treedef,
    [_base.NoState() if r is not False else x for x, r in zip(leaves, routes)],
  )


def _fans(x: jax.Array, rule: Optional[MuonDimensionNumbers]) -> tuple:
  reduction, output = _polar._normalised_axes(
    tuple(x.shape), _polar._check_rule(rule)
  )
  fan_in = 1
  for ax in reduction:
    fan_in *= x.shape[ax]
  fan_out = 1
  for ax in output:
    fan_out *= x.shape[ax]
  return fan_in, fan_out


def _scaled(
  q: jax.Array, rule: Optional[MuonDimensionNumbers], shape_scale: ShapeScale
) -> jax.Array:
  """``q`` times Muon's shape factor (its arithmetic, so that the Muon point
  is ``optax.contrib.muon`` bit for bit)."""
  if shape_scale is None:
    return q
  fan_in, fan_out = _fans(q, rule)
  if shape_scale == "width":
    scale = jnp.sqrt(jnp.maximum(1, fan_out / fan_in))
  else:
    rms: Any = shape_scale  # a number, or an injected array
    scale = jnp.sqrt(jnp.maximum(fan_in, fan_out)) * rms
  return scale * q


def matrix_oracle(
  method: str = "newton_schulz",
  *,
  coeffs: Any = None,
  steps: Optional[int] = None,
  eps: Any = 1e-8,
  dimension_numbers: Rules = None,
  mask: Any = None,
  shape_scale: ShapeScale = None,
  elementwise: Optional[_base.AutoSGMBlock] = None,
) -> _base.AutoSGMBlock:
  r"""The polar factor of each matrix leaf's filtered gradient.

  .. math::
    u = \operatorname{polar}(H[g]) \approx (V V^\top)^{-1/2} V, \qquad
    V = H[g],

  a block for the ``denominator`` slot of
  :func:`autosgm_optax.scale_by_autosgm`: on matrix leaves it replaces the
  element-wise division by ``d``. Which leaves are matrices: rank-2 leaves,
  or those ``dimension_numbers`` names, less those ``mask`` sends to the
  element-wise path; every other leaf (vectors, scalars, empty leaves) takes
  the ``elementwise`` block (by default :func:`moment_denominator`). Tall
  matrices are transposed, never reshaped; leaves of rank >= 3 are reshaped
  by their rule, the other axes batched (as ``optax.contrib.muon``).
  bfloat16 and float16 leaves are computed in float32. A zero gradient gives
  a zero direction (the normalisation is guarded by ``eps``).

  The mathematics: docs/matrix.md.

  Args:
    method: ``"newton_schulz"`` (Muon's quintic: fast, singular values end
      in about ``[0.68, 1.2]``), ``"cubic"`` (Newton-Schulz cubic,
      converging to 1), ``"lakic"`` (the original AutoSGM code's iteration)
      or ``"svd"`` (the exact polar factor; slow, a reference). Structural:
      not injectable.
    coeffs: the quintic's coefficients, ``(3,)`` or one row per step
      ``(n, 3)`` (default Muon's); ``"newton_schulz"`` only.
    steps: iterations (default 5).
    eps: the guard of the iterations' normalisation.
    dimension_numbers: None (rank-2 leaves are matrices), an
      :class:`optax.contrib.MuonDimensionNumbers` for every leaf of rank
      >= 2, a tree of them (a prefix of the parameters; None: element-wise),
      or a callable of the parameters returning one (as
      ``optax.contrib.muon``'s ``muon_weight_dimension_numbers``).
    mask: None, or a tree of bools (or a callable of the parameters) where
      False sends a leaf to the element-wise path.
    shape_scale: None, ``"width"`` (Muon's ``sqrt(max(1, fan_out /
      fan_in))``) or a number ``c`` (consistent RMS: ``c sqrt(max(fan_in,
      fan_out))``).
    elementwise: the block for the other leaves: a
      :func:`moment_denominator` (default ``moment_denominator()``).

  Returns:
    An :class:`AutoSGMBlock` of kind ``"denominator"``.

  Example:
    >>> import jax.numpy as jnp
    >>> import autosgm_optax as asgm
    >>> core = asgm.scale_by_autosgm(
    ...     filter=asgm.lowpass_filter(0.95),
    ...     denominator=asgm.matrix_oracle("svd"))
    >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    >>> g = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]]),
    ...      "b": jnp.array([0.3, -4.0])}
    >>> u, _ = core.update(g, core.init(params), params)
    >>> u["w"]  # the polar factor: singular values 1
    Array([[1., 0.],
           [0., 1.],
           [0., 0.]], dtype=float32)
    >>> u["b"]  # element-wise: g / (|g| + eps) at the first step
    Array([ 1., -1.], dtype=float32)
  """
  _base.check_choice("method", method, _polar.METHODS)
  if isinstance(shape_scale, str):
    _base.check_choice("shape_scale", shape_scale, ("width",))
  elif shape_scale is not None:
    _base.check_range("shape_scale", shape_scale, 0.0, None, low_open=True)
  if elementwise is None:
    elementwise = moment_denominator()
  _base.check_slots(denominator=elementwise)
  # The iteration's static arguments, checked now (not inside a trace).
  if method == "newton_schulz":
    _polar._resolve_ns_steps(
      _polar.MUON_COEFFS if coeffs is None else coeffs, steps
    )
  elif coeffs is not None:
    raise ValueError(
      f"coeffs={coeffs!r} applies to method='newton_schulz' only, not "
      f"method={method!r}."
    )
  elif steps is not None:
    _polar._check_steps(steps)
  _polar._check_eps(eps)

  def polar(v, rule):
    q = _polar.polar_factor(
      v, method, coeffs=coeffs, steps=steps, eps=eps, rule=rule
    )
    return _scaled(q, rule, shape_scale)

  def init_fn(params):
    routes = _routes(dimension_numbers, mask, params)
    return MatrixOracleState(elementwise.init(_split(params, routes)))

  def apply_fn(signal, state, params):
    leaves, treedef = jax.tree.flatten(signal.grad)
    routes = _routes(dimension_numbers, mask, signal.grad)
    inner = _base.Signal(
      grad=_split(signal.grad, routes),
      direction=_split(signal.direction, routes),
      realisation=signal.realisation,
    )
    inner, inner_state = elementwise.apply(
      inner,
      state.elementwise,
      None if params is None else _split(params, routes),
    )
    directions = treedef.flatten_up_to(signal.direction)
    element_dirs = treedef.flatten_up_to(inner.direction)
    out = [
      e if r is False else polar(v, r)
      for v, e, r in zip(directions, element_dirs, routes)
    ]
    # No d at the matrix leaves (None: a numerator after the oracle takes
    # d = 1 there), the element-wise d elsewhere.
    ds = treedef.flatten_up_to(inner.denominator)
    denominator = treedef.unflatten(
      [d if r is False else None for d, r in zip(ds, routes)]
    )
    return (
      signal._replace(
        direction=treedef.unflatten(out), denominator=denominator
      ),
      MatrixOracleState(inner_state),
    )

  return _base.AutoSGMBlock(
    init_fn,
    apply_fn,
    kind="denominator",
    facts=_base.BlockFacts(
      explicit_dtype=elementwise.facts.explicit_dtype, matrix=True
    ),
    last=None,
  )


class MatrixNumeratorState(NamedTuple):
  """State of :func:`matrix_numerator`: the element-wise numerator's state
  over the leaves that are not matrices (``optax.EmptyState()`` without
  one)."""

  elementwise: Any


def _scalar_numerator(w, v, rule, eps):
  """``max(min(||w v^H||_F, ||w w^H||_F, 1), eps)`` per matrix of ``w``, in
  the orientation of the smaller Gram matrix; broadcast to ``w``'s shape
  for a stack, a scalar for one matrix."""
  reshape, inverse = _polar.matrix_reshape(w, rule)
  compute = jnp.promote_types(w.dtype, jnp.float32)
  ws, vs = reshape(w.astype(compute)), reshape(v.astype(compute))
  if ws.shape[1] > ws.shape[2]:
    ws, vs = ws.swapaxes(1, 2), vs.swapaxes(1, 2)
  gram = lambda a, b: a @ b.swapaxes(1, 2).conj()
  norm = lambda m: jnp.sqrt(jnp.sum(jnp.abs(m) ** 2, axis=(1, 2)))
  a = jnp.minimum(jnp.minimum(norm(gram(ws, vs)), norm(gram(ws, ws))), 1)
  a = jnp.maximum(a, eps)
  if a.shape[0] == 1:
    return a[0]
  return inverse(jnp.broadcast_to(a[:, None, None], reshape(w).shape))


def matrix_numerator(
  eps: Any = 1e-8,
  *,
  dimension_numbers: Rules = None,
  mask: Any = None,
  elementwise: Optional[_base.AutoSGMBlock] = None,
  scalar: bool = True,
) -> _base.AutoSGMBlock:
  r"""The original AutoSGM code's scalar numerator of a matrix leaf.

  (The ``elementwise`` numerator sees every leaf: give it a ``mask`` that
  leaves the matrix leaves out, as :func:`autosgm_optax.autosgm` does
  (``elementwise_mask``), or it estimates those leaves for nothing.)

  .. math::
    a = \max\left(\min\left(\lVert W V^\top \rVert_F,
        \lVert W W^\top \rVert_F, 1\right), \epsilon\right)

  per matrix, from the parameters ``W`` and the direction ``V`` the blocks
  before it made (after :func:`matrix_oracle`, the polar factor), computed
  in the orientation of the smaller Gram matrix (a tall ``W`` is taken
  transposed; the original used the matrix as stored). It is free of the
  learning rate (docs/algorithm.md, section 4) and scales the whole update
  of the leaf, decoupled decay included, as every numerator. A zero matrix
  gets ``eps``. Leaves that are not matrices (the same rules as
  :func:`matrix_oracle`: pass it the same ``dimension_numbers`` and
  ``mask``) take the ``elementwise`` numerator, or ``a = 1`` without one.

  The mathematics: docs/matrix.md.

  Args:
    eps: the floor of ``a``, ``> 0``.
    dimension_numbers: which leaves are matrices, as for
      :func:`matrix_oracle`.
    mask: a tree of bools (or a callable) where False sends a leaf to the
      element-wise numerator.
    elementwise: None (``a = 1`` there) or a
      :func:`correlation_numerator` for the other leaves.
    scalar: False leaves the matrix leaves at ``a = 1`` (the element-wise
      numerator still runs on the others).

  Returns:
    An :class:`AutoSGMBlock` of kind ``"numerator"``.

  Example:
    >>> import jax.numpy as jnp
    >>> import autosgm_optax as asgm
    >>> core = asgm.scale_by_autosgm(
    ...     denominator=asgm.matrix_oracle("svd"),
    ...     numerator=asgm.matrix_numerator())
    >>> params = {"w": 0.1 * jnp.eye(2)}
    >>> u, _ = core.update({"w": jnp.eye(2)}, core.init(params), params)
    >>> u["w"]  # a = min(||0.1 I||_F, ||0.01 I||_F, 1) = 0.01 sqrt(2)
    Array([[0.01414214, 0.        ],
           [0.        , 0.01414214]], dtype=float32)
  """
  _base.check_range("eps", eps, 0.0, None, low_open=True)
  if not isinstance(scalar, bool):
    raise TypeError(f"scalar={scalar!r} must be a bool.")
  if elementwise is not None:
    _base.check_slots(numerator=elementwise)

  def init_fn(params):
    if elementwise is None:
      return MatrixNumeratorState(optax.EmptyState())
    return MatrixNumeratorState(elementwise.init(params))

  def apply_fn(signal, state, params):
    _base.require_params(params, "matrix_numerator")
    leaves, treedef = jax.tree.flatten(signal.grad)
    routes = _routes(dimension_numbers, mask, signal.grad)
    others = [None] * len(leaves)
    inner_state = state.elementwise
    if elementwise is not None:
      inner, inner_state = elementwise.apply(signal, state.elementwise, params)
      if inner.numerator is not None:
        others = treedef.flatten_up_to(inner.numerator)
    ws = treedef.flatten_up_to(params)
    vs = treedef.flatten_up_to(signal.direction)
    a = [
      o if r is False or not scalar else _scalar_numerator(w, v, r, eps)
      for w, v, o, r in zip(ws, vs, others, routes)
    ]
    return (
      signal._replace(numerator=treedef.unflatten(a)),
      MatrixNumeratorState(inner_state),
    )

  return _base.AutoSGMBlock(
    init_fn,
    apply_fn,
    kind="numerator",
    last=None,
  )
