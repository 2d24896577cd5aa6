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


def _split(tree: Any, routes: list) -> Any:
  """``tree`` with its matrix leaves replaced by None."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(
    treedef, [None if r is not False else x for x, r in zip(leaves, routes)]
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
    scale = jnp.sqrt(jnp.maximum(fan_in, fan_out)) * float(shape_scale)
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
    return (
      signal._replace(
        direction=treedef.unflatten(out), denominator=inner.denominator
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
