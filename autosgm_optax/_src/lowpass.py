"""The lowpass filter H: momentum with a pole, a zero and a gain."""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple
from typing import Optional
from typing import Union

import chex
import jax
import jax.numpy as jnp
import optax

from autosgm_optax._src import base as _base


class LowpassFilterState(NamedTuple):
  """State of :func:`lowpass_filter`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so
  # far, for a debias (None without: nothing to count)
  m: optax.Updates  # m(t) = beta m(t-1) + eta g(t); like params.


def default_gain(beta: Any, gamma: Any) -> Any:
  """The unit-DC gain ``eta = (1 - beta) / (1 - gamma)``."""
  return _base.divide(1 - beta, 1 - gamma)


def debias_divisor(count: chex.Array, beta: Any, gamma: Any, eta: Any) -> Any:
  r"""The filter's response ``s(t)`` to a unit constant input.

  .. math::
    s(t) = \left[(1 - \beta^t) - \gamma (1 - \beta^{t-1})\right]
           \frac{\eta}{1 - \beta}

  Written so that at ``gamma = 0, eta = 1 - beta`` it is bit for bit Optax's
  ``1 - beta**t`` (the factor ``eta / (1 - beta)`` is exactly 1.0, computed
  from the same ``beta``), with Python or traced hyperparameters.
  """
  return _response(count, beta, gamma, _base.divide(eta, 1 - beta))


def _response(count, beta, gamma, ratio):
  return ((1 - beta**count) - gamma * (1 - beta ** (count - 1))) * ratio


@functools.partial(jax.jit, inline=True)
def _debias(
  tree: Any, count: chex.Array, beta: Any, gamma: Any, ratio: Any
) -> Any:
  # An inlined jit around the whole division, as optax.tree.bias_correction,
  # so that the Adam point rounds as Optax's also when run without jit.
  s = _response(count, beta, gamma, ratio)
  return jax.tree.map(lambda t: t / s.astype(t.dtype), tree)


#: The debiases of the quasi-hyperbolic form (``nu``), each term apart:
#: ``"ema"`` divides the state's term by ``1 - beta^t`` (QHAdam),
#: ``"nadam"`` the state's by ``1 - beta^(t+1)`` and the input's by
#: ``1 - beta^t`` (NAdam, ``optax.nadam``).
TERM_DEBIASES = ("ema", "nadam")


def _is_one(x: Any) -> bool:
  return _base.is_number(x) and x == 1


def _is_zero(x: Any) -> bool:
  return _base.is_number(x) and x == 0


def _check_forms(beta, gamma, eta, debias, nesterov, nu) -> None:
  if not isinstance(nesterov, bool):
    raise TypeError(f"nesterov={nesterov!r} must be a bool.")
  if not isinstance(debias, bool) and debias not in TERM_DEBIASES:
    raise TypeError(
      f"debias={debias!r} must be a bool, or with nu one of "
      f"{', '.join(map(repr, TERM_DEBIASES))}."
    )
  if nesterov and nu is not None:
    raise ValueError(
      f"nesterov=True and nu={nu!r}: the filter has one form; NAdam's first "
      "moment is nu=beta with debias='nadam'."
    )
  if isinstance(debias, str) and nu is None:
    raise ValueError(
      f"debias={debias!r} debiases the terms of the quasi-hyperbolic form; "
      "give nu (e.g. nu=beta for NAdam), or use debias=True (exact)."
    )
  if nesterov or nu is not None:
    implied = (
      "nesterov=True implies gamma = beta / (1 + beta) and eta = 1 + beta"
      if nesterov
      else f"nu={nu!r} implies gamma = (1 - nu) beta / (1 - nu beta) and "
      "eta = 1 - nu beta"
    )
    if not _is_zero(gamma) or eta is not None:
      raise ValueError(
        f"{implied}; leave gamma and eta at their defaults (got "
        f"gamma={gamma!r}, eta={eta!r})."
      )
    _base.check_range("beta", beta, 0.0, 1.0)
    if nu is not None:
      _base.check_range("nu", nu, 0.0, 1.0, high_open=False)
  else:
    _base.check_filter_design(beta, gamma, eta)


def lowpass_filter(
  beta: Any = 0.9,
  gamma: Any = 0.0,
  eta: Optional[Any] = None,
  debias: Union[bool, str] = True,
  *,
  nesterov: bool = False,
  nu: Optional[Any] = None,
  dtype: _base.DTypePolicy = None,
) -> _base.AutoSGMBlock:
  r"""The AutoSGM lowpass filter: momentum with a pole, a zero and a gain.

  .. math::
    H(z) = \eta \frac{1 - \gamma z^{-1}}{1 - \beta z^{-1}}, \qquad
    m_t = \beta m_{t-1} + \eta g_t, \qquad v_t = m_t - \gamma m_{t-1},

  one state buffer for every design. With ``debias`` the output is divided by
  the exact response to a unit constant input,
  ``s(t) = [(1 - beta^t) - gamma (1 - beta^(t-1))] eta / (1 - beta)``, so a
  constant gradient comes out unchanged from the first step on.

  Points of the design space: ``gamma = 0, eta = 1`` is Polyak's heavy ball
  (``optax.trace``); ``gamma = 0, eta = 1 - beta`` with debias is Adam's
  first moment; ``gamma = beta / (1 + beta), eta = 1 + beta`` is Nesterov's
  momentum; ``gamma = -beta`` reduces variance most; ``beta = gamma = 0`` is a
  pure gain.

  The quasi-hyperbolic form (``nu``, Ma & Yarats 2019) mixes the input with
  an EMA of it,

  .. math::
    m_t = \beta m_{t-1} + (1 - \beta) g_t, \qquad
    v_t = (1 - \nu) g_t + \nu m_t,

  the same filter with ``gamma = (1 - nu) beta / (1 - nu beta)`` and
  ``eta = 1 - nu beta`` (QHM; NAdam's first moment is ``nu = beta``). Its
  two terms can be debiased apart (``debias="ema"``: QHAdam's
  ``(1 - nu) g_t + nu m_t / (1 - beta^t)``; ``debias="nadam"``:
  ``optax.nadam``'s ``nu m_t / (1 - beta^(t+1)) + (1 - nu) g_t /
  (1 - beta^t)``). Neither is the exact debias: NAdam's response to a
  constant starts at ``1 + beta / (1 + beta)`` (1.47 at ``beta = 0.9``);
  QHAdam's passes a constant unchanged but, from step 2 on, weighs past
  inputs otherwise than the exact debias (docs/algorithm.md, section 2).

  Used alone, the block filters its input. Note that
  ``optax.chain(lowpass_filter(...), moment_denominator(...))`` then
  normalises the *filtered* signal, which is a different algorithm from Adam;
  use :func:`autosgm_optax.scale_by_autosgm` to put blocks together.

  Args:
    beta: the pole, ``0 <= beta < 1``.
    gamma: the zero, ``gamma < beta`` (``beta = gamma = 0`` is a pure gain).
    eta: the gain, ``> 0``; default ``(1 - beta) / (1 - gamma)`` (unit DC
      gain).
    debias: True: divide the output by the exact ``s(t)``; False: none;
      with ``nu``, also ``"ema"`` or ``"nadam"``, the per-term debiases above.
    nesterov: realise the Nesterov point in Optax's form
      ``v_t = g_t + beta m_t`` with ``m_t = beta m_{t-1} + g_t`` (bit for bit
      ``optax.sgd(nesterov=True)``); ``gamma`` and ``eta`` are then implied
      (``beta / (1 + beta)`` and ``1 + beta``) and must be left at their
      defaults.
    nu: None, or the quasi-hyperbolic form's weight of the EMA,
      ``0 <= nu <= 1``; ``gamma`` and ``eta`` are then implied and must be
      left at their defaults.
    dtype: dtype of the state buffer: None (the parameters' dtype but at
      least float32), ``"like_params"`` (as Optax) or a dtype.

  Returns:
    An :class:`AutoSGMBlock` for the ``filter`` slot of
    :func:`autosgm_optax.scale_by_autosgm`, usable alone as an
    :class:`optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import lowpass_filter
    >>> tx = lowpass_filter(beta=0.9, gamma=0.5)
    >>> g = jnp.array([1.0, -2.0])
    >>> state = tx.init(g)
    >>> v, state = tx.update(g, state)  # a constant input comes out unchanged
    >>> v
    Array([ 1., -2.], dtype=float32)
  """
  _check_forms(beta, gamma, eta, debias, nesterov, nu)
  _base.check_dtype_policy("dtype", dtype)

  if nesterov:
    gain, zero = 1 + beta, beta / (1 + beta)
  elif nu is not None:
    gain = 1 - nu * beta
    zero = _base.divide((1 - nu) * beta, gain)
  else:
    gain = default_gain(beta, gamma) if eta is None else eta
    zero = gamma
  exact = debias is True
  counted = debias is not False  # a debias evaluates the count

  def init_fn(params):
    return LowpassFilterState(
      count=jnp.zeros([], jnp.int32) if counted else None,
      m=_base.zeros_like_tree(params, dtype),
    )

  def moment(g, m):
    # Optax's operand order (optax.tree.update_moment, optax.trace), so that
    # the CPU's fused multiply-add rounds as it does in Optax.
    if nu is not None:
      return (1 - beta) * g + beta * m
    if _is_one(gain) or nesterov:
      return g + beta * m
    return gain * g + beta * m

  def output(m_new, m_old, g, realise):
    if nesterov:
      return g + beta * m_new
    if nu is not None:  # (Optax's nadam's operand order)
      return nu * m_new + (1 - nu) * g
    if _is_zero(zero):
      return m_new
    if realise is not None:  # the same value from m(t) and g(t) alone
      v = realise(m_new, g, beta, zero, gain)
      if v is not None:
        return v
    return m_new - zero * m_old

  def apply_fn(signal, state, params):
    del params
    count_inc = optax.safe_increment(state.count) if counted else None
    g, m_old = signal.grad, state.m
    if dtype is None:  # the library's float32 state for low-precision
      # inputs: computed in float32 (a chosen dtype computes as Optax does,
      # e.g. optax.adam(mu_dtype=...) scales a bfloat16 gradient in bfloat16)
      g = jax.tree.map(_base.promoted, g, m_old)
      m_old = jax.tree.map(_base.promoted, m_old, g)
    m_new = jax.tree.map(moment, g, m_old)
    if debias == "ema":  # the EMA's own debias
      m_hat = optax.tree.bias_correction(m_new, beta, count_inc)
      v = jax.tree.map(lambda m, x: output(m, None, x, None), m_hat, g)
    elif debias == "nadam":  # each term by its own
      m_hat = optax.tree.bias_correction(
        m_new, beta, optax.safe_increment(count_inc)
      )
      g_hat = optax.tree.bias_correction(g, beta, count_inc)
      v = jax.tree.map(lambda m, x: output(m, None, x, None), m_hat, g_hat)
    else:
      realise = signal.realisation.filter_output
      v = jax.tree.map(
        lambda m, mo, x: output(m, mo, x, realise), m_new, m_old, g
      )
    s = None
    if exact:
      v = _debias(v, count_inc, beta, zero, _base.divide(gain, 1 - beta))
      s = debias_divisor(count_inc, beta, zero, gain)
    new_state = LowpassFilterState(
      count=count_inc, m=_base.cast_tree(m_new, state.m)
    )
    return (
      signal._replace(
        direction=v, filter=_base.FilterFacts(beta, zero, gain, s)
      ),
      new_state,
    )

  def last_fn(state):  # s(t) of the last update
    return debias_divisor(state.count, beta, zero, gain) if exact else None

  return _base.AutoSGMBlock(
    init_fn,
    apply_fn,
    kind="filter",
    facts=_base.BlockFacts(
      zero_is_zero=_is_zero(zero),
      explicit_dtype=_base.explicit_dtype(dtype),
      like_params=_base.is_like_params(dtype),
      filter=_base.FilterSpec(beta, zero, gain, debias, nesterov, nu),
    ),
    last=last_fn,
  )
