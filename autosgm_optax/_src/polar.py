r"""Polar factors of matrices: the arithmetic of the matrix oracle.

The matrix variant of AutoSGM replaces a 2-D leaf's smoothed gradient
:math:`V = U \Sigma W^\top` by (an approximation of) its polar factor
:math:`U W^\top`, the direction Muon uses. This module holds the pure,
jit-able functions that compute it; the block that uses them lives elsewhere.

Every method acts on one singular value at a time: the result is
:math:`U \operatorname{diag}(f(\sigma_i)) W^\top` with the same singular
vectors and a scalar map :math:`f` that is the whole statement of its accuracy
(``tests/test_polar.py`` checks each map against the matrix iteration):

* ``"newton_schulz"`` (:func:`newton_schulz`): Muon's quintic, bit for bit
  ``optax.contrib.orthogonalize_via_newton_schulz``; fast, and deliberately
  not convergent (singular values end in about ``[0.68, 1.2]``).
* ``"cubic"`` (:func:`cubic`): the classical Newton-Schulz cubic, converging
  (quadratically) to 1.
* ``"lakic"`` (:func:`lakic`): the original AutoSGM code's iteration, Lakic's
  coupled cubically convergent inverse square root of ``V V^T``.
* ``"svd"`` (:func:`svd_polar`): the exact polar factor, the reference.

:func:`polar_factor` dispatches among them, with the reshape rules of
``optax.contrib.muon`` (:class:`optax.contrib.MuonDimensionNumbers`) for
leaves of rank 3 and above.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any
from typing import Callable
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
from optax.contrib import MuonDimensionNumbers

from autosgm_optax._src import base as _base

ReshapeFn = Callable[[chex.Array], chex.Array]

#: The methods of :func:`polar_factor`.
METHODS = ("newton_schulz", "cubic", "lakic", "svd")

#: Muon's quintic coefficients (Jordan, modded-nanogpt), Optax's default
#: ``ns_coeffs`` for ``optax.contrib.muon``.
MUON_COEFFS = (3.4445, -4.7750, 2.0315)

#: One quintic per step, from Ahn et al., "Dion" (2025): Optax's ``"dion"``
#: preset for ``optax.contrib.muon``.
DION_COEFFS = (
  (4.0848, -6.8946, 2.9270),
  (3.9505, -6.3029, 2.6377),
  (3.7418, -5.5913, 2.3037),
  (2.8769, -3.1427, 1.2046),
  (2.8366, -3.0525, 1.2012),
)

#: K = 5 iterations: Muon's default and the original AutoSGM code's.
DEFAULT_STEPS = 5

#: Optax's default ``eps`` for Muon's normalisation.
DEFAULT_EPS = 1e-8


# ---------------------------------------------------------------------------
# validation (static Python values, before tracing)


def _check_steps(steps: Any) -> Any:
  if isinstance(steps, (jax.Array, np.ndarray)) and not isinstance(steps, bool):
    # An injected count (optax.inject_hyperparams): an integer scalar,
    # checked where it is concrete; the loop's bound is then traced.
    if steps.shape or not jnp.issubdtype(steps.dtype, jnp.integer):
      raise ValueError(
        f"steps={steps!r} is not a valid number of iterations: an integer "
        "scalar >= 1."
      )
    if not isinstance(steps, jax.core.Tracer) and int(steps) < 1:
      raise ValueError(
        f"steps={steps!r} is not a valid number of iterations: the valid "
        "range is the integers >= 1."
      )
    return steps
  if (
    isinstance(steps, bool)
    or not isinstance(steps, numbers.Integral)
    or steps < 1
  ):
    raise ValueError(
      f"steps={steps!r} is not a valid number of iterations: the valid "
      "range is the integers >= 1."
    )
  return int(steps)


def _check_eps(eps: Any) -> None:
  _base.check_type("eps", eps)
  if _base.is_number(eps):
    interval = _base.outside(float(eps), 0.0, None)
    if interval:
      raise ValueError(f"eps={eps!r} is outside the valid range {interval}.")


def _coeffs_shape(coeffs: Any) -> tuple[int, ...]:
  try:
    shape = tuple(np.shape(coeffs))
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"coeffs={coeffs!r} is not an array of shape (3,) or (n, 3)."
    ) from e
  if len(shape) not in (1, 2) or shape[-1] != 3 or 0 in shape:
    raise ValueError(
      f"coeffs has shape {shape}; the valid shapes are (3,) (one quintic "
      "for every step) and (n, 3) with n >= 1 (one quintic per step)."
    )
  return shape


def _resolve_ns_steps(coeffs: Any, steps: Optional[int]) -> int:
  shape = _coeffs_shape(coeffs)
  if len(shape) == 1:
    return DEFAULT_STEPS if steps is None else _check_steps(steps)
  if steps is not None and _check_steps(steps) != shape[0]:
    raise ValueError(
      f"steps={steps!r} does not match the {shape[0]} rows of coeffs: a "
      f"table of quintics runs one step per row (use steps={shape[0]} or "
      "steps=None)."
    )
  return shape[0]


def _check_2d(name: str, x: chex.Array) -> None:
  if x.ndim != 2:
    raise ValueError(
      f"{name} takes one matrix (rank 2), got shape {x.shape}: use "
      "polar_factor with a rule for other ranks."
    )


# ---------------------------------------------------------------------------
# shape rules


def _normalised_axes(
  shape: tuple[int, ...], rule: MuonDimensionNumbers
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """The rule's reduction and output axes as non-negative ints, checked."""
  ndim = len(shape)

  def axes(name: str, value: Any) -> tuple[int, ...]:
    value = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    for ax in value:
      if isinstance(ax, bool) or not isinstance(ax, numbers.Integral):
        raise ValueError(f"rule.{name}={value!r} must hold integer axes.")
      if not -ndim <= int(ax) < ndim:
        raise ValueError(
          f"rule.{name}={value!r} has axis {ax}, outside the valid range "
          f"[{-ndim}, {ndim}) for shape {shape}."
        )
    normal = tuple(int(ax) % ndim for ax in value)
    if len(set(normal)) != len(normal):
      raise ValueError(f"rule.{name}={value!r} repeats an axis.")
    return normal

  reduction = axes("reduction_axis", rule.reduction_axis)
  output = axes("output_axis", rule.output_axis)
  if set(reduction) & set(output):
    raise ValueError(
      f"rule={rule!r} shares axes between reduction_axis and output_axis "
      f"(for shape {shape}); they must be disjoint."
    )
  return reduction, output


def _check_rule(rule: Any) -> MuonDimensionNumbers:
  if rule is None:
    return MuonDimensionNumbers(reduction_axis=0, output_axis=1)
  if not isinstance(rule, MuonDimensionNumbers):
    raise ValueError(
      f"rule={rule!r} must be None or an optax.contrib.MuonDimensionNumbers."
    )
  return rule


def is_matrix(x: Any, rule: Optional[MuonDimensionNumbers] = None) -> bool:
  """Whether :func:`polar_factor` treats ``x`` as (a batch of) matrices.

  Without a rule only non-empty rank-2 leaves are matrices; with one, any
  non-empty leaf of rank >= 2 whose axes the rule names consistently. Rank-0
  and rank-1 leaves never are: the caller falls back to its element-wise path.

  Args:
    x: an array (or anything with a ``shape``: a tracer, a
      ``jax.ShapeDtypeStruct``).
    rule: ``None`` or an :class:`optax.contrib.MuonDimensionNumbers`.

  Returns:
    A Python bool (shapes are static).

  Raises:
    ValueError: if a rule names axes that ``x`` does not have or names an axis
      twice.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax.contrib import MuonDimensionNumbers
    >>> from autosgm_optax._src.polar import is_matrix
    >>> is_matrix(jnp.ones((3, 4))), is_matrix(jnp.ones(4))
    (True, False)
    >>> is_matrix(jnp.ones((2, 3, 4)))
    False
    >>> is_matrix(jnp.ones((2, 3, 4)), MuonDimensionNumbers(1, 2))
    True
  """
  shape = tuple(x.shape)
  if len(shape) < 2 or math.prod(shape) == 0:
    return False
  if rule is None:
    return len(shape) == 2
  _normalised_axes(shape, _check_rule(rule))
  return True


def matrix_reshape(
  x: Any, rule: Optional[MuonDimensionNumbers] = None
) -> tuple[ReshapeFn, ReshapeFn]:
  """The reshape to a ``(batch, reduction, output)`` stack and its inverse.

  The same construction as ``optax.contrib.muon``'s: the batch axes (those the
  rule does not name) go first, then the reduction axes, then the output axes,
  each group flattened. A rank-2 leaf with the default rule becomes a stack of
  one matrix.

  Args:
    x: an array (only its shape is read).
    rule: ``None`` (rank 2, ``MuonDimensionNumbers(0, 1)``) or an
      :class:`optax.contrib.MuonDimensionNumbers`.

  Returns:
    ``(reshape, inverse)``: functions of an array of ``x``'s shape and of a
    ``(batch, reduction, output)`` stack.

  Raises:
    ValueError: for rank < 2, for rank > 2 without a rule, and for a rule
      inconsistent with the shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from optax.contrib import MuonDimensionNumbers
    >>> from autosgm_optax._src.polar import matrix_reshape
    >>> x = jnp.zeros((4, 2, 3))  # (output, batch, reduction)
    >>> reshape, inverse = matrix_reshape(x, MuonDimensionNumbers(2, 0))
    >>> reshape(x).shape, inverse(reshape(x)).shape
    ((2, 3, 4), (4, 2, 3))
  """
  shape = tuple(x.shape)
  if len(shape) < 2:
    raise ValueError(
      f"x of shape {shape} is not a matrix: polar factors need rank >= 2 "
      "(check is_matrix and fall back to the element-wise path)."
    )
  if rule is None and len(shape) != 2:
    raise ValueError(
      f"x of shape {shape} has rank {len(shape)}: pass a rule "
      "(optax.contrib.MuonDimensionNumbers) naming its reduction and output "
      "axes."
    )
  reduction, output = _normalised_axes(shape, _check_rule(rule))
  batch = tuple(sorted(set(range(len(shape))) - set(reduction) - set(output)))
  transpose = batch + reduction + output
  inv_transpose = tuple(sorted(range(len(shape)), key=lambda i: transpose[i]))
  sizes = lambda axes: tuple(shape[ax] for ax in axes)
  flat_shape = (
    math.prod(sizes(batch)),
    math.prod(sizes(reduction)),
    math.prod(sizes(output)),
  )
  unflat_shape = sizes(batch) + sizes(reduction) + sizes(output)
  reshape = lambda m: m.transpose(transpose).reshape(flat_shape)
  inverse = lambda m: m.reshape(unflat_shape).transpose(inv_transpose)
  return reshape, inverse


def _over_batch(
  fn: Callable[[chex.Array], chex.Array],
  x: chex.Array,
  rule: Optional[MuonDimensionNumbers],
) -> chex.Array:
  """``fn`` (of one matrix) on every matrix of ``x``, by a vmap."""
  reshape, inverse = matrix_reshape(x, rule)
  return inverse(jax.vmap(fn)(reshape(x)))


# ---------------------------------------------------------------------------
# the methods, for one matrix (rows <= cols after a transpose)


def _newton_schulz_matrix(
  x: chex.Array, coeffs: chex.Array, steps: int, eps: Any
) -> chex.Array:
  # Optax's ``_orthogonalize`` with 'frobenius' preconditioning, operation
  # for operation (optax/contrib/_muon.py): the same jaxpr, hence the same
  # bits.
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  x = x / (jnp.linalg.norm(x, ord="fro") + eps)
  coeffs = coeffs.astype(x.dtype)

  def quintic(x: chex.Array, c: chex.Array) -> chex.Array:
    # f(X) = c0 X + (c1 A + c2 A A) X with A = X X^H, written as Optax does
    # (``c2 * a @ a`` is ``(c2 * a) @ a``).
    a = x @ x.T.conj()
    b = c[1] * a + c[2] * a @ a
    return c[0] * x + b @ x

  if coeffs.ndim == 1:
    x = jax.lax.fori_loop(
      0, steps, lambda _, x: quintic(x, coeffs), x, unroll=True
    )
  else:
    x, _ = jax.lax.scan(lambda x, c: (quintic(x, c), None), x, coeffs)
  return x.T if transposed else x


def _cubic_matrix(x: chex.Array, steps: int, eps: Any) -> chex.Array:
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  x = x / (jnp.linalg.norm(x, ord="fro") + eps)

  def step(_, x: chex.Array) -> chex.Array:
    return 1.5 * x - 0.5 * (x @ x.T.conj()) @ x

  x = jax.lax.fori_loop(0, steps, step, x, unroll=True)
  return x.T if transposed else x


def _lakic_matrix(x: chex.Array, steps: int, eps: Any) -> chex.Array:
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  g = x @ x.T.conj()
  eye = jnp.eye(g.shape[0], dtype=g.dtype)
  # The original: S = (G + eps I) / max(||G||_F, eps), Z = I.
  c = 1 / jnp.maximum(jnp.linalg.norm(g, ord="fro"), eps)
  s = c * (g + eps * eye)

  def step(_, zs: tuple[chex.Array, chex.Array]):
    z, s = zs
    t = 0.125 * (3 * s @ s - 10 * s + 15 * eye)
    return z @ t, s @ t @ t

  z, _ = jax.lax.fori_loop(0, steps, step, (eye, s), unroll=True)
  x = jnp.sqrt(c) * (z @ x)
  return x.T if transposed else x


def _svd_matrix(x: chex.Array, rtol: Optional[float]) -> chex.Array:
  u, s, vh = jnp.linalg.svd(x, full_matrices=False)
  if rtol is None:
    rtol = max(x.shape) * float(jnp.finfo(s.dtype).eps)
  keep = s > rtol * jnp.max(s, initial=0.0)
  return (u * keep.astype(u.dtype)) @ vh


# ---------------------------------------------------------------------------
# public functions of one matrix


def newton_schulz(
  x: chex.Array,
  coeffs: Any = MUON_COEFFS,
  steps: Optional[int] = None,
  eps: Any = DEFAULT_EPS,
) -> chex.Array:
  r"""Muon's quintic Newton-Schulz iteration for one matrix.

  On :math:`X_0 = X / (\|X\|_F + \epsilon)`, transposed first when it has
  more rows than columns (so that :math:`A` is the smaller Gram matrix),

  .. math::
    A_k = X_k X_k^\top, \qquad
    X_{k+1} = c_0 X_k + (c_1 A_k + c_2 A_k^2) X_k .

  Each singular value follows :math:`p(s) = c_0 s + c_1 s^3 + c_2 s^5` from
  :math:`s_0 = \sigma / (\|X\|_F + \epsilon)`; the singular vectors are kept.
  Muon's coefficients make :math:`p` steep at 0 (slope 3.4445, so 5 steps
  amplify a small singular value up to :math:`3.4445^5 \approx 485`) at the
  price of convergence: with 5 steps every :math:`s_0 \in [0.002, 1]` ends
  in :math:`[0.68, 1.21]`, not at 1.

  The result is bit for bit that of
  ``optax.contrib.orthogonalize_via_newton_schulz(x, jnp.asarray(coeffs),
  steps, "frobenius", eps)``: the same operations in the same order, with
  Optax's reshape of the matrix to a stack of one and its ``jax.vmap``.

  Args:
    x: a matrix (rank 2), computed in its own dtype.
    coeffs: :math:`(c_0, c_1, c_2)` for every step, or a table of shape
      ``(n, 3)``, one row per step (e.g. :data:`DION_COEFFS`).
    steps: the number of steps; ``None``: 5 for one triple, ``n`` for a
      table (which then must have ``steps`` rows).
    eps: added to the Frobenius norm, so that a zero matrix gives zeros.

  Returns:
    An array of ``x``'s shape and dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax._src.polar import newton_schulz
    >>> q = newton_schulz(jnp.diag(jnp.array([3.0, 0.5])))
    >>> print(jnp.round(jnp.diag(q), 2))
    [0.71 1.04]

  References:
    Jordan, `modded-nanogpt: Speedrunning the NanoGPT baseline
    <https://github.com/KellerJordan/modded-nanogpt>`_, 2024.

    Ahn et al., `Dion: Distributed Orthonormalized Updates
    <https://arxiv.org/abs/2504.05295>`_, 2025.
  """
  steps = _resolve_ns_steps(coeffs, steps)
  _check_eps(eps)
  x = jnp.asarray(x)
  _check_2d("newton_schulz", x)
  fn = functools.partial(
    _newton_schulz_matrix, coeffs=jnp.asarray(coeffs), steps=steps, eps=eps
  )
  return _over_batch(fn, x, None)


def cubic(
  x: chex.Array, steps: int = DEFAULT_STEPS, eps: Any = DEFAULT_EPS
) -> chex.Array:
  r"""The cubic Newton-Schulz iteration for the polar factor of one matrix.

  On :math:`X_0 = X / (\|X\|_F + \epsilon)` (transposed first when it has
  more rows than columns),

  .. math::
    X_{k+1} = \tfrac{3}{2} X_k - \tfrac{1}{2} X_k X_k^\top X_k .

  Each singular value follows :math:`f(s) = \tfrac{1}{2} s (3 - s^2)` from
  :math:`s_0 = \sigma / (\|X\|_F + \epsilon) \in (0, 1]`. Every
  :math:`s_0 \in (0, \sqrt{3})` converges to 1, quadratically:
  :math:`1 - f(s) = \tfrac{1}{2} (1 - s)^2 (2 + s)`. Near 0 it is slow, as
  :math:`f(s) \le \tfrac{3}{2} s`: after :math:`K` steps
  :math:`s_K \le 1.5^K s_0` (:math:`\approx 7.6\, s_0` for K = 5). With
  K = 5, :math:`s_K \ge 0.99` needs :math:`s_0 \ge 0.28` and
  :math:`s_K \ge 0.9` needs :math:`s_0 \ge 0.18`; :math:`s_K \le 1` always.

  This is the quadratically convergent member of the Newton-Schulz family.
  The original AutoSGM code's "cubic (Lakic)" iteration is the cubically
  convergent member, :func:`lakic`.

  Args:
    x: a matrix (rank 2), computed in its own dtype.
    steps: the number of steps K.
    eps: added to the Frobenius norm, so that a zero matrix gives zeros.

  Returns:
    An array of ``x``'s shape and dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax._src.polar import cubic
    >>> q = cubic(jnp.diag(jnp.array([3.0, 1.5])), steps=8)
    >>> print(jnp.round(jnp.diag(q), 4))
    [1. 1.]

  References:
    Higham, `Functions of Matrices: Theory and Computation
    <https://doi.org/10.1137/1.9780898717778>`_, SIAM 2008, section 8.3.
  """
  steps = _check_steps(steps)
  _check_eps(eps)
  x = jnp.asarray(x)
  _check_2d("cubic", x)
  return _cubic_matrix(x, steps, eps)


def lakic(
  x: chex.Array, steps: int = DEFAULT_STEPS, eps: Any = DEFAULT_EPS
) -> chex.Array:
  r"""The original AutoSGM code's direction: Lakic's coupled iteration.

  Computes :math:`(X X^\top + \epsilon I)^{-1/2} X` as the original's
  ``_imsrSL3`` does (K cubically convergent steps for the inverse square root
  of the Gram matrix), but on the smaller Gram matrix: for a tall ``x`` it
  computes the equal :math:`X (X^\top X + \epsilon I)^{-1/2}`. With
  :math:`G = X X^\top` and :math:`c = 1 / \max(\|G\|_F, \epsilon)`,

  .. math::
    S_0 = c\,(G + \epsilon I), \quad Z_0 = I, \quad
    T_k = \tfrac{1}{8}(15 I - 10 S_k + 3 S_k^2), \quad
    Z_{k+1} = Z_k T_k, \quad S_{k+1} = S_k T_k^2,

  and the result is :math:`\sqrt{c}\, Z_K X`. Since :math:`S_k Z_k^{-2}` is
  invariant, :math:`y_k = \sqrt{\lambda(S_k)}` follows the quintic
  :math:`g(y) = \tfrac{1}{8} y (15 - 10 y^2 + 3 y^4)` from
  :math:`y_0 = \sqrt{(\sigma^2 + \epsilon) / \|G\|_F}`, and each singular
  value of the result is
  :math:`g^{K}(y_0) \cdot \sigma / \sqrt{\sigma^2 + \epsilon}`. (With
  :math:`\epsilon = 0` this is the uncoupled iteration
  :math:`X_{k+1} = \tfrac{1}{8} X_k (15 I - 10 X_k^\top X_k + 3 (X_k^\top
  X_k)^2)` on :math:`X_0 = X / \|X\|_{S_4}`, the Schatten-4 norm.)

  Convergence is cubic, :math:`1 - g(y) = \tfrac{1}{8}(1 - y)^3
  (8 + 9 y + 3 y^2)`, for every :math:`y_0 \in (0, \sqrt{7/3})`; near 0,
  :math:`g(y) \le \tfrac{15}{8} y`, so :math:`y_K \le 1.875^K y_0`
  (:math:`\approx 23.2\, y_0` for K = 5). With K = 5, :math:`y_K \ge 0.99`
  needs :math:`y_0 \ge 0.090` and :math:`y_K \ge 0.9` needs
  :math:`y_0 \ge 0.057`. In float32 the Gram matrix resolves singular values
  down to about :math:`\sqrt{\epsilon_{\rm mach}}\, \sigma_{\max}` only.

  Args:
    x: a matrix (rank 2), computed in its own dtype.
    steps: the number of steps K.
    eps: the regulariser :math:`\epsilon` of the Gram matrix and the floor of
      its norm (the original's ``eps_cfg[0]``, default 1e-10 there); a zero
      matrix gives zeros for ``eps > 0``.

  Returns:
    An array of ``x``'s shape and dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax._src.polar import lakic
    >>> q = lakic(jnp.diag(jnp.array([3.0, 1.5])))
    >>> print(jnp.round(jnp.diag(q), 4))
    [1. 1.]

  References:
    Lakic, `On the computation of the matrix k-th root
    <https://doi.org/10.1002/(SICI)1521-4001(199803)78:3%3C167::AID-ZAMM167%3E3.0.CO;2-R>`_,
    ZAMM 78(3), 1998.
  """
  steps = _check_steps(steps)
  _check_eps(eps)
  x = jnp.asarray(x)
  _check_2d("lakic", x)
  return _lakic_matrix(x, steps, eps)


def svd_polar(x: chex.Array, rtol: Optional[float] = None) -> chex.Array:
  r"""The exact polar factor :math:`U V^\top` of one matrix, by an SVD.

  Singular values at or below ``rtol`` times the largest count as zero and
  their directions are dropped (mapped to 0), so a rank-r matrix gives the
  polar factor :math:`\sum_{i \le r} u_i v_i^\top` of its range, and a zero
  matrix gives zeros.

  Args:
    x: a matrix (rank 2), computed in its own dtype (a dtype that
      ``jnp.linalg.svd`` accepts: float32, float64, complex).
    rtol: the relative threshold; ``None``: ``max(m, n)`` times the dtype's
      machine epsilon, the rank threshold of ``numpy.linalg.matrix_rank``.

  Returns:
    An array of ``x``'s shape and dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax._src.polar import svd_polar
    >>> print(svd_polar(jnp.array([[3.0, 0.0], [0.0, 0.0]])))
    [[1. 0.]
     [0. 0.]]
  """
  if rtol is not None:
    _base.check_range("rtol", rtol, 0.0, None)
  x = jnp.asarray(x)
  _check_2d("svd_polar", x)
  return _svd_matrix(x, rtol)


# ---------------------------------------------------------------------------
# dispatcher


def polar_factor(
  x: chex.Array,
  method: str = "newton_schulz",
  *,
  coeffs: Any = None,
  steps: Optional[int] = None,
  eps: Any = DEFAULT_EPS,
  rule: Optional[MuonDimensionNumbers] = None,
) -> chex.Array:
  r"""The (approximate) polar factor of every matrix of ``x``.

  ``x`` is reshaped by ``rule`` to a stack of matrices (batch axes first, as
  ``optax.contrib.muon`` does), ``method`` runs on each under ``jax.vmap``,
  and the stack is reshaped back. bfloat16 and float16 are computed in
  float32 and rounded once at the end; other dtypes in their own.

  Args:
    x: an array of rank 2, or of rank >= 2 with a ``rule``.
    method: ``"newton_schulz"`` (:func:`newton_schulz`), ``"cubic"``
      (:func:`cubic`), ``"lakic"`` (:func:`lakic`) or ``"svd"``
      (:func:`svd_polar`).
    coeffs: the quintic's coefficients, for ``"newton_schulz"`` only;
      ``None``: :data:`MUON_COEFFS`.
    steps: the number of iterations; ``None``: 5 (or the rows of a table of
      ``coeffs``). Not used by ``"svd"``.
    eps: the iterative methods' guard of the normalisation. ``"svd"`` drops
      singular values below its relative threshold instead (see
      :func:`svd_polar`).
    rule: ``None`` for a matrix, or an
      :class:`optax.contrib.MuonDimensionNumbers` naming the reduction and
      output axes (the others are batch axes).

  Returns:
    An array of ``x``'s shape and dtype.

  Raises:
    ValueError: for an unknown method, ``steps`` that is not an integer
      >= 1, ``coeffs`` not of shape ``(3,)`` or ``(n, 3)`` (or given to
      another method), a negative ``eps``, or a shape that is not a matrix
      under ``rule`` (see :func:`is_matrix`).

  Example:
    >>> import jax.numpy as jnp
    >>> from optax.contrib import MuonDimensionNumbers
    >>> from autosgm_optax._src.polar import polar_factor
    >>> x = jnp.stack([jnp.diag(jnp.array([2.0, -1.0])), jnp.eye(2)])
    >>> q = polar_factor(x, "svd", rule=MuonDimensionNumbers(1, 2))
    >>> print(q[0])
    [[ 1.  0.]
     [ 0. -1.]]
  """
  _base.check_choice("method", method, METHODS)
  _check_eps(eps)
  fn: Callable[[chex.Array], chex.Array]
  if method == "newton_schulz":
    coeffs = MUON_COEFFS if coeffs is None else coeffs
    steps = _resolve_ns_steps(coeffs, steps)
    fn = functools.partial(
      _newton_schulz_matrix, coeffs=jnp.asarray(coeffs), steps=steps, eps=eps
    )
  else:
    if coeffs is not None:
      raise ValueError(
        f"coeffs={coeffs!r} applies to method='newton_schulz' only, not "
        f"method={method!r}."
      )
    steps = DEFAULT_STEPS if steps is None else _check_steps(steps)
    if method == "cubic":
      fn = functools.partial(_cubic_matrix, steps=steps, eps=eps)
    elif method == "lakic":
      fn = functools.partial(_lakic_matrix, steps=steps, eps=eps)
    else:
      fn = functools.partial(_svd_matrix, rtol=None)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    raise ValueError(
      f"x has dtype {x.dtype}; polar factors need a floating or complex dtype."
    )
  compute = jnp.promote_types(x.dtype, jnp.float32)
  out = _over_batch(fn, x.astype(compute), rule)
  return out.astype(x.dtype)
