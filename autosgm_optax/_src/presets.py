"""The presets of :mod:`autosgm_optax.presets`: each a configuration of the
blocks, bit for bit its Optax twin."""

from __future__ import annotations

import inspect
from typing import Any
from typing import Callable
from typing import Optional
from typing import Union

import jax
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers

from autosgm_optax._src import base as _base
from autosgm_optax._src import polar as _polar
from autosgm_optax._src.combinator import scale_by_autosgm
from autosgm_optax._src.decay import decoupled_decay
from autosgm_optax._src.denominator import moment_denominator
from autosgm_optax._src.learning_rate import scale_by_learning_rate
from autosgm_optax._src.lowpass import lowpass_filter
from autosgm_optax._src.matrix import matrix_oracle

__all__ = (
  "sgd",
  "phb",
  "nag",
  "adam",
  "adamw",
  "nadam",
  "nadamw",
  "qhm",
  "qhadam",
  "muon",
)


def _like_params(dtype: Optional[Any]) -> _base.DTypePolicy:
  return _base.LIKE_PARAMS if dtype is None else dtype


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


def _adam_filter(b1, mu_dtype, nesterov=False):
  dtype = _like_params(mu_dtype)
  with _base.unchecked():
    if nesterov:  # NAdam: Nesterov's zero in the quasi-hyperbolic form
      return lowpass_filter(b1, nu=b1, debias="nadam", dtype=dtype)
    return lowpass_filter(b1, 0.0, None, debias=True, dtype=dtype)


def _adam_core(b1, b2, eps, eps_root, mu_dtype, decay=None, nesterov=False):
  with _base.unchecked():
    return scale_by_autosgm(
      filter=_adam_filter(b1, mu_dtype, nesterov),
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
    nesterov: NAdam (bit for bit ``optax.adam(..., nesterov=True)``): the
      filter in the quasi-hyperbolic form with ``nu = b1`` (Nesterov's zero
      ``b1 / (1 + b1)``) and NAdam's per-term debias, which is not the
      exact one (see :func:`nadam`).

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
  return optax.chain(
    _adam_core(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
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
    nesterov: NAdamW (bit for bit ``optax.adamw(..., nesterov=True)``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> from autosgm_optax import presets
    >>> tx = presets.adamw(1e-3, weight_decay=1e-2)
  """
  with _base.unchecked():
    decay = decoupled_decay(weight_decay, 1.0, mask)
  return optax.chain(
    _adam_core(b1, b2, eps, eps_root, mu_dtype, decay, nesterov),
    scale_by_learning_rate(learning_rate),
  )


def nadam(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  eps_root: jax.typing.ArrayLike = 0.0,
  mu_dtype: Optional[Any] = None,
  *,
  nesterov: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""NAdam, bit for bit ``optax.nadam``: ``adam(..., nesterov=True)``.

  The first moment is the filter with pole ``b1`` and Nesterov's zero
  ``b1 / (1 + b1)`` (gain ``1 - b1^2``), realised in the quasi-hyperbolic
  form with ``nu = b1`` and debiased term by term:

  .. math::
    m_t = b_1 m_{t-1} + (1 - b_1) g_t, \qquad
    u_t = -\mu_t \frac{b_1 m_t / (1 - b_1^{t+1})
          + (1 - b_1) g_t / (1 - b_1^t)}{\sqrt{\hat\nu_t + \epsilon_{root}}
          + \epsilon}.

  This is not the filter's exact debias: at ``t = 1`` a constant gradient
  comes out ``1 + b1 / (1 + b1)`` times itself (1.47 at ``b1 = 0.9``),
  and the factor fades as ``b1^t`` (``design.step_response`` shows the
  exact one beside it; docs/design.md).

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    b1: the filter's pole.
    b2: the denominator's pole.
    eps: added outside the square root.
    eps_root: added inside the square root.
    mu_dtype: dtype of the first moment; None for the parameters' dtype.
    nesterov: as ``optax.nadam``'s (a ``functools.partial`` of
      ``optax.adam``): False gives :func:`adam`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from autosgm_optax import presets
    >>> params, g = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.1])
    >>> ours = presets.nadam(1e-3).update(g, presets.nadam(1e-3).init(params))
    >>> theirs = optax.nadam(1e-3).update(g, optax.nadam(1e-3).init(params))
    >>> bool((ours[0] == theirs[0]).all())
    True
  """
  return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def nadamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  eps_root: jax.typing.ArrayLike = 0.0,
  mu_dtype: Optional[Any] = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
  *,
  nesterov: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """NAdamW, bit for bit ``optax.nadamw``: ``adamw(..., nesterov=True)``.

  :func:`nadam`'s first moment, :func:`adamw`'s decoupled decay.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    b1: the filter's pole.
    b2: the denominator's pole.
    eps: added outside the square root.
    eps_root: added inside the square root.
    mu_dtype: dtype of the first moment; None for the parameters' dtype.
    weight_decay: ``lambda``, a number or an ``optax.Schedule``.
    mask: a tree of bools or a callable; False leaves are not decayed.
    nesterov: as ``optax.nadamw``'s: False gives :func:`adamw`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> from autosgm_optax import presets
    >>> tx = presets.nadamw(1e-3, weight_decay=1e-2)
  """
  return adamw(
    learning_rate,
    b1,
    b2,
    eps,
    eps_root,
    mu_dtype,
    weight_decay,
    mask,
    nesterov=nesterov,
  )


def _qhm_filter(nu, beta, debias):  # (no twin: checked)
  return lowpass_filter(beta, nu=nu, debias=debias)


def qhm(
  learning_rate: optax.ScalarOrSchedule,
  nu: jax.typing.ArrayLike = 0.7,
  beta: jax.typing.ArrayLike = 0.999,
) -> optax.GradientTransformationExtraArgs:
  r"""Quasi-hyperbolic momentum (Ma & Yarats, ICLR 2019).

  .. math::
    b_t = \beta b_{t-1} + (1 - \beta) g_t, \qquad
    u_t = -\mu_t \left((1 - \nu) g_t + \nu b_t\right),

  the filter with pole ``beta``, zero ``(1 - nu) beta / (1 - nu beta)`` and
  gain ``1 - nu beta`` (unit DC gain), without debias or denominator.
  ``nu = 0`` is plain SGD, ``nu = 1`` an EMA of the gradient; ``nu = beta``
  is NAdam's undebiased first moment.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    nu: the weight of the momentum buffer, ``0 <= nu <= 1``.
    beta: the pole, ``0 <= beta < 1``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import presets
    >>> tx = presets.qhm(0.1, nu=0.5, beta=0.9)
    >>> params = jnp.array([1.0])
    >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(params), params)
    >>> updates  # -0.1 * (0.5 * 2 + 0.5 * (0.1 * 2))
    Array([-0.11], dtype=float32)
  """
  return optax.chain(
    scale_by_autosgm(filter=_qhm_filter(nu, beta, False)),
    scale_by_learning_rate(learning_rate),
  )


def qhadam(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.995,
  b2: jax.typing.ArrayLike = 0.999,
  nu1: jax.typing.ArrayLike = 0.7,
  nu2: jax.typing.ArrayLike = 1.0,
  eps: jax.typing.ArrayLike = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  r"""QHAdam (Ma & Yarats, ICLR 2019).

  .. math::
    u_t = -\mu_t \frac{(1 - \nu_1) g_t + \nu_1 \hat m_t}
          {\sqrt{(1 - \nu_2) g_t^2 + \nu_2 \hat v_t} + \epsilon},

  with ``m_hat`` and ``v_hat`` Adam's debiased EMAs of ``g`` and ``g^2``
  (poles ``b1``, ``b2``). The numerator is the quasi-hyperbolic filter
  (zero ``(1 - nu1) b1 / (1 - nu1 b1)``) with its EMA debiased alone
  (``debias="ema"``). That passes a constant gradient unchanged, but is not
  the exact debias: from step 2 on it weighs past gradients otherwise,
  since ``g_t``'s weight stays ``1 - nu1`` while the EMA's term is
  renormalised (docs/algorithm.md, section 2). The denominator mixes
  ``g^2`` with its EMA (``moment_denominator(nu=nu2)``); ``nu1 = nu2 = 1``
  is Adam.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    b1: the filter's pole.
    b2: the denominator's pole.
    nu1: the weight of the first moment's EMA, ``0 <= nu1 <= 1``.
    nu2: the weight of the second moment's EMA, ``0 <= nu2 <= 1``.
    eps: added outside the square root, ``> 0``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import presets
    >>> tx = presets.qhadam(1e-3)
    >>> params = jnp.array([1.0, -2.0])
    >>> updates, _ = tx.update(jnp.array([0.3, -0.1]), tx.init(params))
    >>> updates  # the first step is -lr sign(g), as Adam's
    Array([-0.001,  0.001], dtype=float32)
  """
  # (checked under the paper's names before the blocks check theirs)
  for name, value, high_open in (
    ("b1", b1, True),
    ("b2", b2, True),
    ("nu1", nu1, False),
    ("nu2", nu2, False),
  ):
    _base.check_range(name, value, 0.0, 1.0, high_open=high_open)
  return optax.chain(
    scale_by_autosgm(
      filter=_qhm_filter(nu1, b1, "ema"),
      denominator=moment_denominator(b2, eps, nu=nu2),
    ),
    scale_by_learning_rate(learning_rate),
  )


_FILTERS: dict[str, Callable[[dict], Optional[_base.AutoSGMBlock]]] = {
  "sgd": lambda a: _sgd_filter(
    a["momentum"], a["nesterov"], a["accumulator_dtype"]
  ),
  "phb": lambda a: _sgd_filter(a["momentum"], False, a["accumulator_dtype"]),
  "nag": lambda a: _sgd_filter(a["momentum"], True, a["accumulator_dtype"]),
  "adam": lambda a: _adam_filter(a["b1"], a["mu_dtype"], a["nesterov"]),
  "adamw": lambda a: _adam_filter(a["b1"], a["mu_dtype"], a["nesterov"]),
  "nadam": lambda a: _adam_filter(a["b1"], a["mu_dtype"], a["nesterov"]),
  "nadamw": lambda a: _adam_filter(a["b1"], a["mu_dtype"], a["nesterov"]),
  "qhm": lambda a: _qhm_filter(a["nu"], a["beta"], False),
  "qhadam": lambda a: _qhm_filter(a["nu1"], a["b1"], "ema"),
  # the matrix leaves' filter (the other leaves run adamw's, pole adam_b1)
  "muon": lambda a: _adam_filter(a["beta"], a["mu_dtype"], a["nesterov"]),
}


def filter_block(
  preset: Callable[..., Any], *args: Any, **kwargs: Any
) -> Optional[_base.AutoSGMBlock]:
  """The filter block that ``preset(*args, **kwargs)`` runs (None where the
  preset has no filter); its ``facts.filter`` is the filter's
  :class:`autosgm_optax.FilterSpec`. For :func:`muon`, the matrix leaves'
  filter (its other leaves run :func:`adamw`'s, with pole ``adam_b1``).

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


def _muon_labels(dimension_numbers: Any) -> Callable[[Any], Any]:
  """``optax.contrib.muon``'s partition: "muon" for the leaves its
  ``muon_weight_dimension_numbers`` names (rank 2 by default), else
  "adam"."""
  if dimension_numbers is None:
    return lambda params: jax.tree.map(
      lambda x: "muon" if x.ndim == 2 else "adam", params
    )

  def labels(params):
    dims = (
      dimension_numbers(params)
      if callable(dimension_numbers)
      else dimension_numbers
    )
    return jax.tree.map(
      lambda rule, sub: jax.tree.map(
        lambda _: "adam" if rule is None else "muon", sub
      ),
      dims,
      params,
      is_leaf=lambda x: x is None or isinstance(x, MuonDimensionNumbers),
    )

  return labels


def muon(
  learning_rate: optax.ScalarOrSchedule,
  ns_coeffs: Any = _polar.MUON_COEFFS,
  ns_steps: int = 5,
  beta: jax.typing.ArrayLike = 0.95,
  eps: jax.typing.ArrayLike = 1e-8,
  weight_decay: jax.typing.ArrayLike = 0.0,
  weight_decay_mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
  mu_dtype: Optional[Any] = None,
  *,
  nesterov: bool = True,
  adam_b1: jax.typing.ArrayLike = 0.9,
  adam_b2: jax.typing.ArrayLike = 0.999,
  adam_eps_root: jax.typing.ArrayLike = 0.0,
  adam_weight_decay: jax.typing.ArrayLike = 0.0,
  adam_learning_rate: Optional[optax.ScalarOrSchedule] = None,
  muon_weight_dimension_numbers: Any = None,
  consistent_rms: Optional[jax.typing.ArrayLike] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Muon, bit for bit ``optax.contrib.muon`` (its main arguments).

  On the matrix leaves: NAdam's first moment (the filter with pole ``beta``
  and Nesterov's zero in the quasi-hyperbolic form, debiased per term; with
  ``nesterov=False`` Adam's, with the exact debias), then the matrix oracle
  (:func:`autosgm_optax.matrix_oracle`) with Muon's Newton-Schulz quintic
  and its shape scaling, then decoupled decay with factor 1:

  .. math::
    u_t = -\mu_t \left(s\, \operatorname{NS}_5(\hat m_t) + \lambda w_t\right),
    \qquad s = \sqrt{\max(1, \text{fan_out} / \text{fan_in})},

  (``s = c sqrt(max(fan_in, fan_out))`` with ``consistent_rms=c``). The
  other leaves follow :func:`adamw` (NAdamW with ``nesterov=True``), as in
  Optax. Optax's ``adaptive`` and non-Frobenius ``preconditioning`` are not
  offered. With bfloat16 or float16 parameters and ``mu_dtype=None`` the
  iteration runs in float32 (the matrix oracle's rule), where Optax's runs
  in the parameters' dtype: there the preset is not Optax's bit for bit
  (with ``mu_dtype=jnp.float32`` it is). ``ns_steps`` may be injected (the
  loop's bound), except with a table of ``ns_coeffs``.

  Args:
    learning_rate: a number or an ``optax.Schedule``.
    ns_coeffs: the quintic's coefficients, ``(3,)`` or one row per step, or
      Optax's preset names ``"standard"`` and ``"dion"``.
    ns_steps: Newton-Schulz iterations (a table of coefficients runs one
      step per row).
    beta: the filter's pole on the matrix leaves.
    eps: the normalisation's guard, and Adam's ``eps``.
    weight_decay: decoupled decay of the matrix leaves (times the learning
      rate).
    weight_decay_mask: a tree of bools or a callable; False leaves are not
      decayed.
    mu_dtype: dtype of the first moments.
    nesterov: NAdam's first moment (True) or Adam's.
    adam_b1: the other leaves' filter pole.
    adam_b2: the other leaves' denominator pole.
    adam_eps_root: the other leaves' ``eps_root``.
    adam_weight_decay: the other leaves' decoupled decay.
    adam_learning_rate: the other leaves' learning rate (default
      ``learning_rate``).
    muon_weight_dimension_numbers: which leaves are matrices and how leaves
      of rank >= 3 are reshaped: a tree of
      :class:`optax.contrib.MuonDimensionNumbers` (None: Adam), or a
      callable of the parameters returning one; default: the rank-2 leaves.
    consistent_rms: None (Muon's width scaling) or ``c`` (consistent RMS).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from autosgm_optax import presets
    >>> params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    >>> g = {"w": jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]),
    ...      "b": jnp.array([0.1, -0.2, 0.3])}
    >>> ours = presets.muon(1e-2)
    >>> theirs = optax.contrib.muon(1e-2)
    >>> a = ours.update(g, ours.init(params), params)[0]
    >>> b = theirs.update(g, theirs.init(params), params)[0]
    >>> all(bool((a[k] == b[k]).all()) for k in a)
    True
  """
  if isinstance(ns_coeffs, str):
    presets_ = {"standard": _polar.MUON_COEFFS, "dion": _polar.DION_COEFFS}
    _base.check_choice("ns_coeffs", ns_coeffs, tuple(presets_))
    ns_coeffs = presets_[ns_coeffs]
  steps: Any = ns_steps  # an int, or an injected array (the loop's bound)
  if np.ndim(ns_coeffs) == 2:  # (Optax keeps the last ns_steps rows)
    if isinstance(ns_steps, jax.core.Tracer):
      raise ValueError(
        "a table of ns_coeffs needs a static ns_steps: pass "
        "static_args=('ns_steps',) to optax.inject_hyperparams."
      )
    ns_coeffs = tuple(map(tuple, ns_coeffs))[-int(ns_steps) :]
    steps = None
  with _base.unchecked():
    filt = (
      _adam_filter(beta, mu_dtype, True)
      if nesterov
      else _adam_filter(beta, mu_dtype)
    )
    oracle = matrix_oracle(
      "newton_schulz",
      coeffs=ns_coeffs,
      steps=steps,
      eps=eps,
      dimension_numbers=muon_weight_dimension_numbers,
      shape_scale="width" if consistent_rms is None else consistent_rms,
    )
    decay = decoupled_decay(weight_decay, 1.0, weight_decay_mask)
  matrices = optax.chain(
    scale_by_autosgm(filter=filt, denominator=oracle, decay=decay),
    scale_by_learning_rate(learning_rate),
  )
  others = adamw(
    learning_rate if adam_learning_rate is None else adam_learning_rate,
    adam_b1,
    adam_b2,
    eps,
    adam_eps_root,
    mu_dtype,
    adam_weight_decay,
    nesterov=nesterov,
  )
  return optax.partition(
    {"muon": matrices, "adam": others},
    _muon_labels(muon_weight_dimension_numbers),
  )
