"""The one-liner :func:`autosgm`: the blocks of one configuration, wired by
:func:`autosgm_optax.scale_by_autosgm`, then the learning rate."""

from __future__ import annotations

from typing import Any
from typing import Optional

import optax

from autosgm_optax._src import base as _base
from autosgm_optax._src import decay as _decay
from autosgm_optax._src import polar as _polar
from autosgm_optax._src.combinator import scale_by_autosgm
from autosgm_optax._src.decay import Mask
from autosgm_optax._src.decay import coupled_decay
from autosgm_optax._src.decay import decoupled_decay
from autosgm_optax._src.denominator import moment_denominator
from autosgm_optax._src.learning_rate import scale_by_learning_rate
from autosgm_optax._src.lowpass import lowpass_filter
from autosgm_optax._src.matrix import elementwise_mask
from autosgm_optax._src.matrix import matrix_numerator as matrix_numerator_block
from autosgm_optax._src.matrix import matrix_oracle
from autosgm_optax._src.numerator import ESTIMATORS
from autosgm_optax._src.numerator import check_keep_axes
from autosgm_optax._src.numerator import correlation_numerator
from autosgm_optax._src.window import Window


def autosgm(
  learning_rate: optax.ScalarOrSchedule,
  *,
  beta: Any = 0.9,
  gamma: Any = 0.0,
  eta: Optional[Any] = None,
  debias: bool = True,
  denominator: bool = True,
  moment_beta: Any = 0.999,
  eps: Any = 1e-8,
  eps_root: Any = 0.0,
  numerator: str = "unity",
  numerator_beta: Any = 0.9999,
  numerator_average: bool = True,
  numerator_smoothing: Optional[Any] = 0.1,
  numerator_keep_axes: tuple[int, ...] = (),
  numerator_mask: Mask = None,
  huber_k: Any = 4.0,
  window: Optional[Window] = None,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  decay: str = "decoupled",
  decay_factor: Any = 1.0,
  weight_decay_mask: Mask = None,
  maximize: bool = False,
  filter_dtype: Optional[Any] = None,
  diagnostics: Optional[str] = None,
  diagnostics_every: Optional[int] = None,
  matrix: Optional[str] = None,
  matrix_dimension_numbers: Any = None,
  matrix_numerator: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""AutoSGM: a lowpass filter and an iteration-dependent learning rate.

  .. math::
    w_{t+1} = w_t - \mu_t \, F_t \, \frac{a_t}{d_t} H[g]_t
              \;(- \mu_t F_t a_t c_\rho \rho_t w_t),
    \qquad H(z) = \eta \frac{1 - \gamma z^{-1}}{1 - \beta z^{-1}}

  with the filter ``H`` (:func:`lowpass_filter`), the denominator ``d``
  (:func:`moment_denominator`, the debiased RMS of the raw gradient), the
  numerator ``a`` (:func:`correlation_numerator`), the window ``F``
  (:func:`raised_cosine_window` or any schedule) and the learning rate
  ``mu``, applied last and once (:func:`scale_by_learning_rate`). It is
  ``chain(scale_by_autosgm(...), scale_by_learning_rate(learning_rate))``.

  With its defaults ``autosgm(lr)`` is bit for bit ``optax.adam(lr)``;
  ``weight_decay=w`` makes it ``optax.adamw(lr, weight_decay=w)``: for
  float32 and float64 parameters. For bfloat16 and float16 parameters it
  keeps float32 state (``presets.adam`` keeps Optax's dtypes and is bit for
  bit there too).

  Updates come in the gradients' dtype, whatever the state's (a chosen
  ``filter_dtype`` promotes them, as ``optax.adam``'s ``mu_dtype`` does),
  and the state's shapes and dtypes never change across updates. (With
  gradients narrower than the parameters ``optax.adam`` returns its
  state's dtype; cast the gradients to the parameters' dtype, or use
  ``presets.adam``, which follows Optax there.)

  Under ``optax.inject_hyperparams`` every number becomes an array, and the
  inner state is the plain one's (the same layout and dtypes; values to the
  rounding of array against Python numbers): pass
  ``hyperparam_dtype=jnp.float32`` for low-precision parameters (bfloat16
  rounds 0.999 to 1), and ``filter_dtype`` (a dtype is callable) and a
  callable ``weight_decay_mask`` through ``static_args``. A plain
  ``weight_decay=0.0`` does no work and reads no parameters; an array 0
  multiplies (same numbers). A schedule given for ``window`` is evaluated by
  the wrapper and arrives as a number. With diagnostics on, the
  diagnostics' own state depends on which numbers are plain: a plain
  ``gamma=0`` without decay keeps no gradient history, and a
  ``diagnostics_every`` given as a number is injected, so that the record
  takes its conditional path even at 1 (the default None is not injected:
  every update is recorded as without ``inject_hyperparams``); injected,
  they are arrays and the history is kept (pass them through
  ``static_args`` to keep the plain layout).

  A non-finite gradient propagates into the state, as in Optax: wrap with
  ``optax.apply_if_finite`` to skip such steps.

  The mathematics: docs/algorithm.md, sections 1-6 and 8.

  Args:
    learning_rate: ``mu > 0``, a number or an ``optax.Schedule``.
    beta: the filter's pole, ``0 <= beta < 1``.
    gamma: the filter's zero, ``gamma < beta`` (or ``beta = gamma = 0``).
      0.5528 at ``beta = 0.9`` reduces variance per unit gain.
    eta: the filter's gain ``> 0``; default ``(1 - beta) / (1 - gamma)``.
    debias: debias the filter exactly (the denominator is always debiased).
    denominator: divide by the debiased RMS of the gradient (False: ``d=1``).
    moment_beta: pole of the denominator's second moment, ``[0, 1)`` (and
      of the robust numerator's ``E|p|``).
    eps: added to the denominator outside the square root, ``>= 0``; also
      the numerators' and the matrix oracle's guard against a zero.
    eps_root: added inside the square root, ``>= 0``.
    numerator: ``"unity"``, ``"moment"``, ``"correlation"`` or
      ``"robust_correlation"``.
    numerator_beta: pole of the numerator's estimators, ``[0, 1)``.
    numerator_average: average the numerator over each leaf.
    numerator_smoothing: pole of the smoothing of the average, or None.
    numerator_keep_axes: leading axes the average keeps (stacked layers).
    numerator_mask: None (every leaf estimated), a tree of bools like the
      parameters, or a callable returning one (e.g.
      :func:`default_weight_decay_mask`, which leaves out biases and
      normalisation scales); leaves where it is False use the unity
      numerator ``a = 1``. Needs an estimated numerator. Under
      ``optax.inject_hyperparams`` pass a callable through
      ``static_args=("numerator_mask",)``.
    huber_k: the robust estimator's clip multiple, ``> 0``.
    window: a window block, an ``optax.Schedule`` or a number; None for none.
    weight_decay: ``rho >= 0``, a number or a schedule.
    decay: ``"decoupled"`` (AdamW's, scaled by ``decay_factor``) or
      ``"coupled"`` (L2, added to the gradient).
    decay_factor: ``c_rho >= 0`` of decoupled decay (1 is AdamW's).
    weight_decay_mask: a tree of bools like the parameters, or a callable
      returning one (e.g. :func:`default_weight_decay_mask`); False leaves
      are not decayed. Under ``optax.inject_hyperparams`` pass a callable
      through ``static_args=("weight_decay_mask",)``.
    maximize: ascend instead of descend: the same steps as minimising with
      the negated gradient (weight decay still shrinks the parameters).
    filter_dtype: dtype of the filter's buffer; None for the parameters'
      dtype but at least float32 (as every other buffer, always). bfloat16
      halves the filter's memory; the moment and numerator EMAs stay float32
      (with pole 0.999 a bfloat16 EMA never moves).
    diagnostics: None, ``"summary"`` or ``"element"``: record the learning
      dynamics in the state (see :func:`scale_by_autosgm`); read them with
      :func:`learning_dynamics`.
    diagnostics_every: record the summary on every this-many updates only;
      None (the default): every update (see :func:`scale_by_autosgm`).
    matrix: None, or the matrix oracle's method (``"newton_schulz"``,
      ``"cubic"``, ``"lakic"``, ``"svd"``): matrix leaves then step along
      the polar factor of their filtered gradient
      (:func:`matrix_oracle`, docs/matrix.md), the other leaves as above;
      a ``numerator`` then runs on the other leaves only.
    matrix_dimension_numbers: which leaves are matrices (see
      :func:`matrix_oracle`); default the rank-2 leaves.
    matrix_numerator: the original code's scalar numerator on the matrix
      leaves (:func:`matrix_numerator`; ``a = 1`` there otherwise).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(1e-1, gamma=0.5528, numerator="correlation")
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> loss = lambda w: jnp.sum(w ** 2)
    >>> for _ in range(3):
    ...   grads = jax.grad(loss)(params)
    ...   updates, state = tx.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)
  """
  if not isinstance(learning_rate, bool) and _base.is_number(learning_rate):
    _base.check_range("learning_rate", learning_rate, 0.0, None, low_open=True)
  else:
    _base.check_type("learning_rate", learning_rate, allow_schedule=True)
  _base.check_range(
    "weight_decay", weight_decay, 0.0, None, allow_schedule=True
  )
  _base.check_choice("decay", decay, ("decoupled", "coupled"))
  _base.check_range("decay_factor", decay_factor, 0.0, None)
  _base.check_choice("numerator", numerator, ESTIMATORS)
  # (checked here too, so that the errors name autosgm's arguments, not the
  # blocks')
  if denominator or numerator == "robust_correlation":  # (where it is used)
    _base.check_range("moment_beta", moment_beta, 0.0, 1.0)
  if numerator != "unity":
    _base.check_range("numerator_beta", numerator_beta, 0.0, 1.0)
    if numerator_smoothing is not None:
      _base.check_range("numerator_smoothing", numerator_smoothing, 0.0, 1.0)
      if numerator_average is False:
        raise ValueError(
          f"numerator_smoothing={numerator_smoothing!r} needs "
          "numerator_average=True (it smooths the per-leaf average); pass "
          "numerator_smoothing=None with numerator_average=False."
        )
    check_keep_axes("numerator_keep_axes", numerator_keep_axes)
  if numerator_mask is not None and numerator == "unity":
    raise ValueError(
      "numerator_mask is given but numerator='unity' estimates nothing: "
      "choose numerator='moment', 'correlation' or 'robust_correlation', "
      "or leave numerator_mask=None."
    )
  for name, flag in (
    ("debias", debias),
    ("denominator", denominator),
    ("maximize", maximize),
  ):
    if not isinstance(flag, bool):
      raise TypeError(f"{name}={flag!r} must be a bool.")

  if matrix is not None:
    _base.check_choice("matrix", matrix, _polar.METHODS)
    if not denominator:
      raise ValueError(
        f"matrix={matrix!r} with denominator=False: the matrix oracle takes "
        "the denominator's slot (the moment denominator stays on the leaves "
        "that are not matrices); keep denominator=True."
      )
  if not isinstance(matrix_numerator, bool):
    raise TypeError(f"matrix_numerator={matrix_numerator!r} must be a bool.")
  if matrix_numerator and matrix is None:
    raise ValueError(
      "matrix_numerator=True needs the matrix oracle: give matrix= (e.g. "
      "'newton_schulz')."
    )
  _base.check_dtype_policy("filter_dtype", filter_dtype)
  filter_block = lowpass_filter(
    beta, gamma, eta, debias=debias, dtype=filter_dtype
  )
  denominator_block = (
    moment_denominator(moment_beta, eps, eps_root) if denominator else None
  )
  if matrix is not None:
    denominator_block = matrix_oracle(
      matrix,
      eps=eps,
      dimension_numbers=matrix_dimension_numbers,
      elementwise=denominator_block,
    )
  numerator_block = (
    None
    if numerator == "unity"
    else correlation_numerator(
      numerator,
      beta=numerator_beta,
      moment_beta=moment_beta,
      huber_k=huber_k,
      average=numerator_average,
      smoothing=numerator_smoothing,
      keep_axes=numerator_keep_axes,
      eps=eps,
      # With the matrix path, the other leaves only (the matrix leaves take
      # the scalar numerator, or a = 1).
      mask=numerator_mask
      if matrix is None
      else elementwise_mask(matrix_dimension_numbers, numerator_mask),
    )
  )
  if matrix is not None and (matrix_numerator or numerator_block is not None):
    numerator_block = matrix_numerator_block(
      eps,
      dimension_numbers=matrix_dimension_numbers,
      elementwise=numerator_block,
      scalar=matrix_numerator,
    )
  # Always a decay block, so that the state has one layout whatever the
  # rate (an array rate under inject_hyperparams); a plain 0 does no work
  # and reads no parameters.
  if maximize:  # (the decay must still shrink the parameters)
    decay_block = _decay.for_ascent(
      weight_decay, decay_factor, weight_decay_mask, coupled=decay == "coupled"
    )
  elif decay == "coupled":
    decay_block = coupled_decay(weight_decay, mask=weight_decay_mask)
  else:
    decay_block = decoupled_decay(
      weight_decay, decay_factor, mask=weight_decay_mask
    )
  core = scale_by_autosgm(
    filter=filter_block,
    denominator=denominator_block,
    decay=decay_block,
    numerator=numerator_block,
    window=window,
    diagnostics=diagnostics,
    diagnostics_every=diagnostics_every,
  )
  return optax.chain(
    core, scale_by_learning_rate(learning_rate, flip_sign=not maximize)
  )
