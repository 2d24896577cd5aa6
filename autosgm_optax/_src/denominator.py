"""The denominator d: a debiased root-mean-square of the raw gradient."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from autosgm_optax._src import base as _base


class MomentDenominatorState(NamedTuple):
  """State of :func:`moment_denominator`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so far.
  nu: optax.Updates  # EMA of |g|^2 (not debiased); like params.


def moment_denominator(
  beta: Any = 0.999,
  eps: Any = 1e-8,
  eps_root: Any = 0.0,
  *,
  nu: Any = 1.0,
  dtype: _base.DTypePolicy = None,
) -> _base.AutoSGMBlock:
  r"""Divide by the debiased root-mean-square of the raw gradient.

  .. math::
    \nu_t = \beta \nu_{t-1} + (1 - \beta) |g_t|^2, \qquad
    d_t = \sqrt{\nu_t / (1 - \beta^t) + \epsilon_{root}} + \epsilon,

  and the output is ``x / d``. With ``nu < 1`` the mean square mixes the
  instantaneous ``|g_t|^2`` with its debiased EMA (QHAdam's denominator, an
  estimator with a zero of its own, as the filter's quasi-hyperbolic form),

  .. math::
    d_t = \sqrt{(1 - \nu) |g_t|^2 + \nu\, \nu_t / (1 - \beta^t)
          + \epsilon_{root}} + \epsilon.

  The statistics always come from the raw
  gradient ``g``: inside :func:`autosgm_optax.scale_by_autosgm` the block
  divides the filter's output by the RMS of the gradient (Adam's "filter,
  then divide"); used alone, its input *is* the raw gradient and it divides
  that. It is always debiased, whatever the filter's ``debias`` says.

  The mathematics: docs/algorithm.md, section 3.

  Args:
    beta: pole of the second-moment EMA, ``0 <= beta < 1``.
    eps: added outside the square root, ``>= 0``.
    eps_root: added inside the square root, ``>= 0``; ``eps`` and
      ``eps_root`` may not both be 0.
    nu: the weight of the EMA against ``|g_t|^2``, ``0 <= nu <= 1``; 1 (a
      plain number) is Adam's denominator. Below 1, ``d(t-1)`` cannot be
      rebuilt from the state, so ``diagnostics_every > 1`` refuses it.
    dtype: dtype of the state buffer: None (the parameters' dtype but at
      least float32), ``"like_params"`` (as Optax) or a dtype.

  Returns:
    An :class:`AutoSGMBlock` for the ``denominator`` slot of
    :func:`autosgm_optax.scale_by_autosgm`, usable alone as an
    :class:`optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import moment_denominator
    >>> tx = moment_denominator()
    >>> g = jnp.array([3.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(g))  # first step: g / (|g| + eps)
    >>> u
    Array([ 1., -1.], dtype=float32)
  """
  _base.check_range("beta", beta, 0.0, 1.0)
  _base.check_range("eps", eps, 0.0, None)
  _base.check_range("eps_root", eps_root, 0.0, None)
  _base.check_range("nu", nu, 0.0, 1.0, high_open=False)
  plain = _base.is_number(nu) and nu == 1
  if (
    _base.checks_on()
    and _base.is_number(eps)
    and _base.is_number(eps_root)
    and eps == 0
    and eps_root == 0
  ):
    raise ValueError(
      "eps=0 and eps_root=0: the denominator would divide by zero for a "
      "zero gradient; set eps > 0 (default 1e-8) or eps_root > 0."
    )
  _base.check_dtype_policy("dtype", dtype)

  def init_fn(params):
    return MomentDenominatorState(
      count=jnp.zeros([], jnp.int32), nu=_base.zeros_like_tree(params, dtype)
    )

  def denominator(ema, count, grad=None):  # d(t), as Optax's Adam at nu=1
    ms = optax.tree.bias_correction(ema, beta, count)
    if not plain:  # (QHAdam's order of terms)
      ms = jax.tree.map(
        lambda n, g: (1 - nu) * jnp.real(g * jnp.conj(g)) + nu * n, ms, grad
      )
    return jax.tree.map(lambda n: jnp.sqrt(n + eps_root) + eps, ms)

  def apply_fn(signal, state, params):
    del params
    count_inc = optax.safe_increment(state.count)
    grad = signal.grad
    if dtype is None:  # the library's float32 state: a bfloat16 gradient is
      # squared in float32 (a chosen dtype computes as Optax does)
      grad = jax.tree.map(_base.promoted, grad, state.nu)
    # Optax's own moment update and bias correction, so that the Adam point
    # rounds exactly as optax.scale_by_adam.
    nu = optax.tree.update_moment_per_elem_norm(grad, state.nu, beta, 2)
    d = denominator(nu, count_inc, grad)
    direction = jax.tree.map(lambda x, dd: x / dd, signal.direction, d)
    new_state = MomentDenominatorState(
      count=count_inc, nu=_base.cast_tree(nu, state.nu)
    )
    return signal._replace(direction=direction, denominator=d), new_state

  def last_fn(state):  # d(t) of the last update
    return denominator(state.nu, state.count)

  return _base.AutoSGMBlock(
    init_fn,
    apply_fn,
    kind="denominator",
    last=last_fn if plain else None,
    facts=_base.BlockFacts(
      explicit_dtype=_base.explicit_dtype(dtype),
      like_params=_base.is_like_params(dtype),
    ),
  )
