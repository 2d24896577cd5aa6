"""The numerator a: estimators of the optimal learning rate's correlation."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from autosgm_optax._src import base as _base

ESTIMATORS = ("unity", "moment", "correlation", "robust_correlation")

#: The escape constant for zero parameters when ``eps`` is 0 (the original
#: AutoSGM code's default eps).
ZERO_ESCAPE_FALLBACK = 1e-10


class CorrelationNumeratorState(NamedTuple):
  """State of :func:`correlation_numerator`; unused fields are None."""

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so far.
  c: Optional[optax.Updates]  # per-element estimate c(t); like params.
  w2: Optional[optax.Updates]  # EMA of w^2 (S = 1 + w2); like params.
  p_abs: Optional[optax.Updates]  # EMA of |w vbar| (robust only).
  a: Optional[optax.Updates]  # (smoothed) per-leaf average; shape of the mean.


def _average_axes(ndim: int, keep_axes: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(range(len(keep_axes), ndim))


def correlation_numerator(
  estimator: str = "correlation",
  *,
  beta: Any = 0.9999,
  moment_beta: Any = 0.999,
  huber_k: Any = 4.0,
  average: bool = True,
  smoothing: Optional[Any] = 0.1,
  keep_axes: tuple[int, ...] = (),
  eps: Any = 1e-8,
  dtype: _base.DTypePolicy = None,
  mask: Optional[Any] = None,
) -> _base.AutoSGMBlock:
  r"""Scale by an estimate ``a(t)`` of the optimal learning rate's numerator.

  The optimal per-element learning rate is ``E[w g] / E[g^2]``; with the
  denominator ``d`` in place it is ``E[w vbar] / d`` with ``vbar = H[g]/d``.
  The estimators (free of the learning rate ``mu``, which comes last):

  - ``"unity"``: ``a = 1`` (Adam, heavy ball, Nesterov).
  - ``"moment"``: :math:`c_t = \beta c_{t-1} + (1-\beta) \bar u_t^2` with
    ``ubar = g / d``; ``ahat = min(c, 1)``: a slow built-in warm-up.
  - ``"correlation"``: :math:`S_t = 1 + \mathrm{EMA}_\beta(w^2)`,
    :math:`c_t = \beta c_{t-1} + w_t \bar v_t`; ``ahat = min(|c|, S)``.
  - ``"robust_correlation"``: as ``"correlation"`` with the input clipped,
    :math:`x = \mathrm{sign}(p) \min(|p|, k E|p|) / S`, ``p = w vbar``,
    ``E|p|`` an EMA with pole ``moment_beta`` that includes the current
    ``|p|``.

  Then ``ahat`` is averaged over each leaf (one value per parameter tensor,
  or per index of the ``keep_axes`` leading axes for stacked layers) and
  the average is smoothed, ``a_t = s a_{t-1} + (1 - s) mean(ahat)``.

  The correlation estimators carry the units of ``w``: they are not
  scale-invariant. Parameters with ``|w| < eps`` enter them as ``w + eps``
  (computed on the fly; the parameters are never altered), so that a
  zero-initialised leaf still trains.

  Used alone (no denominator before it) ``d = 1``: the input is taken as both
  the raw gradient and ``vbar``. Inside :func:`autosgm_optax.scale_by_autosgm`
  it reads ``g / d`` and the filter's normalised output ``vbar`` (without
  the decoupled-decay term). Needs ``params`` in ``update`` (all but
  ``"unity"``), and refuses complex parameters (all but ``"unity"``).

  The mathematics: docs/algorithm.md, section 4.

  Args:
    estimator: one of ``"unity"``, ``"moment"``, ``"correlation"``,
      ``"robust_correlation"``.
    beta: pole of the estimators' EMAs, ``0 <= beta < 1``.
    moment_beta: pole of the robust estimator's ``E|p|``, ``0 <= . < 1``.
    huber_k: the robust clip's multiple ``k > 0``.
    average: average ``ahat`` over each leaf.
    smoothing: pole of the smoothing of the average, ``0 <= . < 1``, or None
      for none. Needs ``average=True``.
    keep_axes: leading axes the average keeps, e.g. ``(0,)`` for layers
      stacked by ``nnx.scan`` (one value per layer). Must be ``(0, ..., k-1)``.
    eps: the zero-parameter escape constant (1e-10 where eps is 0).
    dtype: dtype of the state buffers: None (the parameters' dtype but at
      least float32), ``"like_params"`` or a dtype.
    mask: None (estimate every leaf), a tree of bools like (or a prefix of)
      the parameters, or a callable returning one from the parameters (e.g.
      :func:`autosgm_optax.default_weight_decay_mask`, which leaves out
      biases and normalisation scales). Leaves where it is False take the
      unity numerator ``a = 1`` and keep no estimator state (an empty
      :class:`autosgm_optax.NoState` in each buffer's tree, no array).
      Read at ``init``: the state then says which leaves are estimated.
      Under ``optax.inject_hyperparams`` pass a callable through
      ``static_args``.

  Returns:
    An :class:`AutoSGMBlock` for the ``numerator`` slot of
    :func:`autosgm_optax.scale_by_autosgm`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import correlation_numerator
    >>> tx = correlation_numerator("moment", average=False, smoothing=None)
    >>> g = jnp.array([0.5, 2.0])
    >>> a_g, _ = tx.update(g, tx.init(g), g)  # a = min(1e-4 g^2, 1)
    >>> a_g
    Array([1.25e-05, 8.00e-04], dtype=float32)
  """
  _base.check_choice("estimator", estimator, ESTIMATORS)
  _base.check_range("beta", beta, 0.0, 1.0)
  _base.check_range("moment_beta", moment_beta, 0.0, 1.0)
  _base.check_range("huber_k", huber_k, 0.0, None, low_open=True)
  _base.check_range("eps", eps, 0.0, None)
  _base.check_dtype_policy("dtype", dtype)
  if not isinstance(average, bool):
    raise TypeError(f"average={average!r} must be a bool.")
  if smoothing is not None:
    _base.check_range("smoothing", smoothing, 0.0, 1.0)
    if not average:
      raise ValueError(
        f"smoothing={smoothing!r} needs average=True (it smooths the "
        "per-leaf average); pass smoothing=None with average=False."
      )
  if mask is not None and estimator == "unity":
    raise ValueError(
      f"mask={mask!r} is given but estimator='unity' estimates nothing: "
      "every leaf already has a = 1; drop the mask."
    )
  if mask is not None and not callable(mask) and not jax.tree.leaves(mask):
    raise ValueError(
      f"mask={mask!r} holds no bools: give a tree of bools "
      "like the parameters, a callable or None."
    )
  if mask is not None and not callable(mask):
    _check_mask_leaves(mask)
  check_keep_axes("keep_axes", keep_axes)

  unity = estimator == "unity"
  correlation = estimator in ("correlation", "robust_correlation")
  robust = estimator == "robust_correlation"
  smooth = average and smoothing is not None
  if _base.is_number(eps):
    escape = eps if eps > 0 else ZERO_ESCAPE_FALLBACK
  else:
    escape = jnp.where(eps > 0, eps, ZERO_ESCAPE_FALLBACK)

  def init_fn(params):
    count = jnp.zeros([], jnp.int32)
    if unity:
      return CorrelationNumeratorState(count, None, None, None, None)
    for p in jax.tree.leaves(params):
      if jnp.iscomplexobj(p):
        raise TypeError(
          f"numerator={estimator!r} does not support complex parameters "
          f"(got a leaf of dtype {p.dtype}); use numerator='unity'."
        )
    estimated = _leaf_mask(mask, params)

    def zeros():
      return jax.tree.map(
        lambda p, m: (
          jnp.zeros_like(p, dtype=_base.state_dtype(p.dtype, dtype))
          if m
          else _base.NoState()  # (the unity numerator: no state)
        ),
        params,
        estimated,
      )

    def mean_zeros(p, m):
      # A mean of zeros like p: the kept axes keep p's sharding.
      if not m:
        return _base.NoState()
      zeros = jnp.zeros_like(p, dtype=_base.state_dtype(p.dtype, dtype))
      axes = _average_axes(zeros.ndim, keep_axes)
      return jnp.mean(zeros, axis=axes, keepdims=True) if axes else zeros

    return CorrelationNumeratorState(
      count=count,
      c=zeros(),
      w2=zeros() if correlation else None,
      p_abs=zeros() if robust else None,
      a=jax.tree.map(mean_zeros, params, estimated) if average else None,
    )

  def leaf_step(g, vbar, d, w, c, w2, p_abs, a_prev):
    if _base.is_no_state(c):  # masked out: the unity numerator
      return None, c, w2, p_abs, a_prev
    dt = c.dtype
    if estimator == "moment":
      ubar = g if d is None else g / d
      c = (1 - beta) * (ubar.astype(dt) ** 2) + beta * c
    else:
      w = w.astype(dt)
      w = jnp.where(jnp.abs(w) < escape, w + escape, w)
      w2 = (1 - beta) * (w * w) + beta * w2
      bound = 1 + w2
      p = w * vbar.astype(dt)
      if robust:
        p_abs = (1 - moment_beta) * jnp.abs(p) + moment_beta * p_abs
        x = jnp.sign(p) * jnp.minimum(jnp.abs(p), huber_k * p_abs) / bound
      else:
        x = p
      c = beta * c + x
    ahat = _ahat(c, w2 if correlation else None)
    a = ahat
    if average:
      axes = _average_axes(ahat.ndim, keep_axes)
      if axes:
        a = jnp.mean(ahat, axis=axes, keepdims=True)
    if smooth:
      # a_prev + (1 - s)(mean - a_prev), not (1 - s) mean + s a_prev: XLA
      # folds the constant (1 - s) into the mean's 1/n where the mean has
      # no other reader, and not where it has one, which made a(t) (and the
      # update) differ in the last bit with what else the program computed
      # (donated buffers, the diagnostics).
      a = a_prev + (1 - smoothing) * (a - a_prev)
    return a, c, w2, p_abs, (a if average else None)

  def apply_fn(signal, state, params):
    count_inc = optax.safe_increment(state.count)
    if unity:
      return signal, state._replace(count=count_inc)
    _base.require_params(params, f"correlation_numerator({estimator!r})")
    leaves, treedef = jax.tree.flatten(signal.grad)
    n = len(leaves)

    def flat(tree):
      return [None] * n if tree is None else treedef.flatten_up_to(tree)

    # Used alone: the input and no d.
    columns = zip(
      leaves,
      flat(signal.direction),
      flat(signal.denominator),
      flat(params),
      flat(state.c),
      flat(state.w2),
      flat(state.p_abs),
      flat(state.a),
    )
    results = [leaf_step(*col) for col in columns]
    a, c, w2, p_abs, a_state = (
      (list(r) for r in zip(*results)) if n else ([],) * 5
    )

    def unflat_like(xs, like):  # the state keeps its dtypes (an injected
      # float32 pole must not widen a bfloat16 state)
      return (
        None if like is None else _base.cast_tree(treedef.unflatten(xs), like)
      )

    new_state = CorrelationNumeratorState(
      count=count_inc,
      c=unflat_like(c, state.c),
      w2=unflat_like(w2, state.w2),
      p_abs=unflat_like(p_abs, state.p_abs),
      a=unflat_like(a_state, state.a),
    )
    return signal._replace(numerator=treedef.unflatten(a)), new_state

  return _base.AutoSGMBlock(
    init_fn,
    apply_fn,
    kind="numerator",
    last=last_values,
    facts=_base.BlockFacts(
      explicit_dtype=_base.explicit_dtype(dtype),
      like_params=_base.is_like_params(dtype),
    ),
  )


def check_keep_axes(name: str, keep_axes: Any) -> None:
  """Refuses ``keep_axes`` (named ``name`` in the error) unless it is a
  tuple of the leading axes."""
  if not isinstance(keep_axes, tuple) or keep_axes != tuple(
    range(len(keep_axes))
  ):
    raise ValueError(
      f"{name}={keep_axes!r} must be a tuple of the leading axes "
      "(0, 1, ..., k-1), e.g. (0,) for stacked layers."
    )


def _check_mask_leaves(mask: Any) -> None:
  for leaf in jax.tree.leaves(mask):
    if not isinstance(leaf, (bool, np.bool_)):
      raise TypeError(
        f"mask leaves must be bools (True: estimate the leaf, False: the "
        f"unity numerator), got {leaf!r} of type {type(leaf).__name__}."
      )


def _leaf_mask(mask: Any, params: Any) -> Any:
  """A bool per parameter leaf (True: estimated), from ``mask`` (None, a
  tree of bools like or a prefix of the parameters, or a callable)."""
  if mask is None:
    return jax.tree.map(lambda p: True, params)
  tree = mask(params) if callable(mask) else mask
  _check_mask_leaves(tree)
  try:
    return jax.tree.map(
      lambda m, sub: jax.tree.map(lambda p: bool(m), sub), tree, params
    )
  except ValueError as e:
    raise ValueError(
      "the numerator's mask does not match the parameters: it must be a "
      f"tree of bools like (or a prefix of) them; got {tree!r} for "
      f"parameters of structure {jax.tree.structure(params)}."
    ) from e


def _ahat(c: Any, w2: Optional[Any]) -> Any:
  """The per-element estimate from the state: ``min(c, 1)`` (moment) or
  ``min(|c|, 1 + EMA(w^2))`` (the correlation estimators)."""
  if w2 is None:
    return jnp.minimum(c, 1)
  return jnp.minimum(jnp.abs(c), 1 + w2)


def last_values(state: CorrelationNumeratorState) -> Any:
  """``a(t)`` of the last update, as ``leaf_step`` made it, from the state:
  the (smoothed) per-leaf averages, else the per-element estimates; None for
  the unity numerator."""
  if state.c is None:
    return None
  # A leaf on the unity numerator (numerator_mask) gives None (a = 1), and
  # so does an empty leaf; optax.masked's MaskedNodes stay as they are.
  unmasked = lambda f: (
    lambda c, *rest: (
      None if _base.is_no_state(c) or 0 in c.shape else f(c, *rest)
    )
  )
  mapped = lambda f, *trees: jax.tree.map(
    unmasked(f), *trees, is_leaf=_base.is_no_state
  )
  if state.a is not None:
    return mapped(lambda c, a: a, state.c, state.a)
  if state.w2 is None:  # the moment estimator
    return mapped(lambda c: _ahat(c, None), state.c)
  return mapped(_ahat, state.c, state.w2)
