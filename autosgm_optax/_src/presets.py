"""The presets of :mod:`autosgm_optax.presets`: each a configuration of the
blocks, bit for bit its Optax twin."""

from __future__ import annotations

import inspect
from typing import Any
from typing import Callable
from typing import Optional
from typing import Union

import jax
import optax

from autosgm_optax._src import base as _base
from autosgm_optax._src.combinator import scale_by_autosgm
from autosgm_optax._src.decay import decoupled_decay
from autosgm_optax._src.denominator import moment_denominator
from autosgm_optax._src.learning_rate import scale_by_learning_rate
from autosgm_optax._src.lowpass import lowpass_filter

__all__ = ("sgd", "phb", "nag", "adam", "adamw")


def _like_params(dtype: Optional[Any]) -> _base.DTypePolicy:
  return _base.LIKE_PARAMS if dtype is None else dtype


def _refuse_nadam(nesterov: bool, name: str) -> None:
  if nesterov:
    raise ValueError(
      f"{name}(nesterov=True) (NAdam) is not offered: its bias correction "
      "is not the filter's exact debias, so it is not a point of AutoSGM. "
      "Use optax.nadam, or autosgm(gamma=...) for a filter zero."
    )


def sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: Optional[jax.typing.ArrayLike] = None,
  nesterov: bool = False,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Stochastic gradient descent, bit for bit ``optax.sgd``.

  .. math::
    m_t = g_t + \beta m_{t-1}, \qquad
    u_t = -\mu_t m_t \ \text{or}\ -\mu_t (g_t + \beta m_t)\ \text{(Nesterov)}

  Without momentum there is no filter; with momentum it is the filter with
  pole ``momentum``, zero 0 and gain 1 (heavy ball), or Nesterov's form.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    momentum: the pole ``beta``, or None for plain SGD.
    nesterov: Nesterov's momentum.
    accumulator_dtype: dtype of the momentum buffer; None for the
      parameters' dtype.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import presets
    >>> tx = presets.sgd(0.1, momentum=0.9)
    >>> params = jnp.array([1.0])
    >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
    >>> updates
    Array([-0.2], dtype=float32)
  """
  return optax.chain(
    scale_by_autosgm(filter=_sgd_filter(momentum, nesterov, accumulator_dtype)),
    scale_by_learning_rate(learning_rate),
  )


def _sgd_filter(momentum, nesterov, accumulator_dtype):
  if momentum is None:
    return None
  dtype = _like_params(accumulator_dtype)
  with _base.unchecked():
    if nesterov:
      return lowpass_filter(momentum, debias=False, nesterov=True, dtype=dtype)
    return lowpass_filter(momentum, 0.0, 1.0, debias=False, dtype=dtype)


def phb(
  learning_rate: optax.ScalarOrSchedule,
  momentum: jax.typing.ArrayLike = 0.9,
  *,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  """Polyak's heavy ball: ``sgd(learning_rate, momentum)``.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    momentum: the pole ``beta``.
    accumulator_dtype: dtype of the momentum buffer.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`, bit for bit
    ``optax.sgd(learning_rate, momentum)``.

  Example:
    >>> from autosgm_optax import presets
    >>> tx = presets.phb(0.1, momentum=0.9)
  """
  return sgd(learning_rate, momentum, False, accumulator_dtype)


def nag(
  learning_rate: optax.ScalarOrSchedule,
  momentum: jax.typing.ArrayLike = 0.9,
  *,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  """Nesterov's momentum: ``sgd(learning_rate, momentum, nesterov=True)``.

  The filter with pole ``beta``, zero ``beta / (1 + beta)`` and gain
  ``1 + beta``, realised in Optax's form.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    momentum: the pole ``beta``.
    accumulator_dtype: dtype of the momentum buffer.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`, bit for bit
    ``optax.sgd(learning_rate, momentum, nesterov=True)``.

  Example:
    >>> from autosgm_optax import presets
    >>> tx = presets.nag(0.1, momentum=0.9)
  """
  return sgd(learning_rate, momentum, True, accumulator_dtype)


def _adam_filter(b1, mu_dtype):
  with _base.unchecked():
    return lowpass_filter(
      b1, 0.0, None, debias=True, dtype=_like_params(mu_dtype)
    )


def _adam_core(b1, b2, eps, eps_root, mu_dtype, decay=None):
  with _base.unchecked():
    return scale_by_autosgm(
      filter=_adam_filter(b1, mu_dtype),
      denominator=moment_denominator(
        b2, eps, eps_root, dtype=_base.LIKE_PARAMS
      ),
      decay=decay,
    )


def adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  eps_root: jax.typing.ArrayLike = 0.0,
  mu_dtype: Optional[Any] = None,
  *,
  nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam, bit for bit ``optax.adam``.

  The filter with pole ``b1``, zero 0, gain ``1 - b1`` and exact debias
  (``1 - b1^t``), divided by the debiased RMS of the gradient:

  .. math::
    u_t = -\mu_t \frac{\hat m_t}{\sqrt{\hat \nu_t + \epsilon_{root}}
          + \epsilon}

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    b1: the filter's pole.
    b2: the denominator's pole.
    eps: added outside the square root.
    eps_root: added inside the square root.
    mu_dtype: dtype of the first moment; None for the parameters' dtype.
    nesterov: refused (NAdam's bias correction is not the exact debias).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from autosgm_optax import presets
    >>> params = jnp.array([1.0, -2.0])
    >>> g = jnp.array([0.3, 0.1])
    >>> ours = presets.adam(1e-3).update(g, presets.adam(1e-3).init(params))[0]
    >>> theirs = optax.adam(1e-3).update(g, optax.adam(1e-3).init(params))[0]
    >>> bool((ours == theirs).all())
    True
  """
  _refuse_nadam(nesterov, "adam")
  return optax.chain(
    _adam_core(b1, b2, eps, eps_root, mu_dtype),
    scale_by_learning_rate(learning_rate),
  )


def adamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  eps_root: jax.typing.ArrayLike = 0.0,
  mu_dtype: Optional[Any] = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
  *,
  nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamW, bit for bit ``optax.adamw``.

  :func:`adam` plus decoupled weight decay with factor 1:

  .. math::
    u_t = -\mu_t \left(\frac{\hat m_t}{\sqrt{\hat \nu_t + \epsilon_{root}}
          + \epsilon} + \lambda_t w_t\right)

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    b1: the filter's pole.
    b2: the denominator's pole.
    eps: added outside the square root.
    eps_root: added inside the square root.
    mu_dtype: dtype of the first moment; None for the parameters' dtype.
    weight_decay: ``lambda``, a number or an ``optax.Schedule``.
    mask: a tree of bools or a callable; False leaves are not decayed.
    nesterov: refused (NAdam's bias correction is not the exact debias).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> from autosgm_optax import presets
    >>> tx = presets.adamw(1e-3, weight_decay=1e-2)
  """
  _refuse_nadam(nesterov, "adamw")
  with _base.unchecked():
    decay = decoupled_decay(weight_decay, 1.0, mask)
  return optax.chain(
    _adam_core(b1, b2, eps, eps_root, mu_dtype, decay),
    scale_by_learning_rate(learning_rate),
  )


_FILTERS: dict[str, Callable[[dict], Optional[_base.AutoSGMBlock]]] = {
  "sgd": lambda a: _sgd_filter(
    a["momentum"], a["nesterov"], a["accumulator_dtype"]
  ),
  "phb": lambda a: _sgd_filter(a["momentum"], False, a["accumulator_dtype"]),
  "nag": lambda a: _sgd_filter(a["momentum"], True, a["accumulator_dtype"]),
  "adam": lambda a: _adam_filter(a["b1"], a["mu_dtype"]),
  "adamw": lambda a: _adam_filter(a["b1"], a["mu_dtype"]),
}


def filter_block(
  preset: Callable[..., Any], *args: Any, **kwargs: Any
) -> Optional[_base.AutoSGMBlock]:
  """The filter block that ``preset(*args, **kwargs)`` runs (None where the
  preset has no filter); its ``facts.filter`` is the filter's
  :class:`autosgm_optax.FilterSpec`.

  Example:
    >>> from autosgm_optax import presets
    >>> from autosgm_optax._src.presets import filter_block
    >>> spec = filter_block(presets.nag, 0.1, momentum=0.5).facts.filter
    >>> spec.beta, spec.gamma, spec.eta, spec.nesterov
    (0.5, 0.3333333333333333, 1.5, True)
  """
  name = getattr(preset, "__name__", None)
  if name not in _FILTERS or globals().get(name) is not preset:
    raise ValueError(
      f"preset={preset!r} is not one of autosgm_optax.presets' "
      f"functions ({', '.join(sorted(_FILTERS))})."
    )
  bound = inspect.signature(preset).bind(*args, **kwargs)
  bound.apply_defaults()
  return _FILTERS[name](bound.arguments)
