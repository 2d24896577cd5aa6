"""The mapping of :mod:`autosgm_optax.migration` (its docstring has the
table)."""

from __future__ import annotations

import numbers
from typing import Any
from typing import Optional
from typing import Sequence

import jax
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers

from autosgm_optax._src import base as _base
from autosgm_optax._src.alias import autosgm
from autosgm_optax._src.combinator import scale_by_autosgm
from autosgm_optax._src.decay import coupled_decay
from autosgm_optax._src.decay import decoupled_decay
from autosgm_optax._src.learning_rate import scale_by_learning_rate
from autosgm_optax._src.lowpass import lowpass_filter
from autosgm_optax._src.matrix import matrix_numerator
from autosgm_optax._src.matrix import matrix_oracle
from autosgm_optax._src.window import window_schedule

#: The original constructor's defaults (``AutoSGM.__init__`` of the PyTorch
#: code): Adam with eps 1e-10, learning rate 1e-2, no window, no decay.
LR_CFG = (True, 1e-2, 0)
BETA_CFG = (0.9999, 0.999, 0.9, 0, 0, True)
RC_CFG = (0, 0, 0, 2, 1, 1000, 1, 1, 0)
WD_CFG = (0, 0)
EPS_CFG = (1e-10,)
MIX_CFG = (False, False, 1e-2, 0.95, 0)

#: The names of each tuple's fields, in the original's order.
FIELDS = {
  "lr_cfg": ("aoptlr", "lr_init", "num_lrc"),
  "beta_cfg": ("beta_n", "beta_a", "beta", "gamma", "eta_i", "debias"),
  "rc_cfg": ("rcm", "inseq", "x", "n", "m", "tau", "spe", "cfact", "e"),
  "wd_cfg": ("rho", "lvl"),
  "eps_cfg": ("eps", "repeat_eps"),
  "mix_cfg": ("mix", "avg", "lr0", "pole", "zero"),
}

#: The original's matrix leaves (its ``_class_opt``): rank >= 2, taken as
#: ``(shape[0], rest)``, with ``4 <= min dim`` and ``max dim <= 2048``.
MIN_DIM, MAX_DIM = 4, 2048

#: num_lrc -> numerator, as the original code reads it (its README's labels
#: differ; 4, a Chebyshev clip, is never executed there: unity).
NUMERATORS = {
  0: "unity",
  1: "correlation",
  2: "robust_correlation",
  3: "moment",
  4: "unity",
}

#: rcm -> (window shape, the keyword that receives n).
SHAPES = {
  1: ("raised_cosine", "order"),
  2: ("polynomial", "order"),
  3: ("beta_exponential", "base"),
  4: ("simple_polynomial", "order"),
  5: ("sigmoid", "rate"),
  6: ("late_sigmoid", "rate"),
}

#: wd_lvl -> autosgm's decay.
DECAYS = {0: "coupled", 1: "decoupled"}


# ---------------------------------------------------------------------------
# reading the tuples


def _unpack(name: str, cfg: Any, lengths: tuple[int, ...]) -> tuple:
  fields = FIELDS[name]
  expected = " or ".join(f"{n} ({', '.join(fields[:n])})" for n in lengths)
  if isinstance(cfg, (str, bytes)) or not isinstance(cfg, Sequence):
    raise TypeError(f"{name}={cfg!r} must be a tuple of {expected}.")
  if len(cfg) not in lengths:
    raise ValueError(
      f"{name}={tuple(cfg)!r} has {len(cfg)} entries; expected {expected}."
    )
  return tuple(cfg)


def _label(name: str, i: int, value: Any) -> str:
  return f"{name}[{i}] ({FIELDS[name][i]})={value!r}"


def _bool(name: str, i: int, value: Any) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{_label(name, i, value)} must be a bool.")
  return bool(value)


def _int(
  name: str,
  i: int,
  value: Any,
  codes: Optional[dict] = None,
  low: Optional[int] = None,
) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(
    value, numbers.Integral
  ):
    raise TypeError(f"{_label(name, i, value)} must be an int.")
  value = int(value)
  if codes is not None and value not in codes:
    known = ", ".join(f"{k} ({v})" for k, v in codes.items())
    raise ValueError(
      f"{_label(name, i, value)} is not a valid code; the codes are {known}."
    )
  if low is not None and value < low:
    raise ValueError(f"{_label(name, i, value)} must be >= {low}.")
  return value


def _real(
  name: str,
  i: int,
  value: Any,
  low: Optional[float] = None,
  high: Optional[float] = None,
  *,
  low_open: bool = False,
  high_open: bool = True,
) -> float:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
    raise TypeError(f"{_label(name, i, value)} must be a number.")
  v = float(value)
  interval = _base.outside(v, low, high, low_open=low_open, high_open=high_open)
  if interval:
    raise ValueError(
      f"{_label(name, i, value)} is outside the valid range {interval}."
    )
  return v


class TorchWindow:
  """``window_schedule(length, shape, **options)``, readable.

  A schedule (``count -> F(count)``) that prints as the call that built it
  and compares equal to another of the same arguments, so that the keyword
  arguments of :func:`torch_config_kwargs` can be read and compared.

  Attributes:
    length: the frame length (in epochs with ``steps_per_epoch``).
    shape: the window shape.
    options: the other keyword arguments of
      :func:`autosgm_optax.window_schedule`.
  """

  def __init__(self, length: int, shape: str, **options: Any):
    self.length, self.shape, self.options = length, shape, options
    self._schedule = window_schedule(length, shape, **options)

  def __call__(self, count):
    return self._schedule(count)

  def __eq__(self, other: Any) -> bool:
    if not isinstance(other, TorchWindow):
      return NotImplemented
    return (self.length, self.shape, self.options) == (
      other.length,
      other.shape,
      other.options,
    )

  __hash__ = None  # type: ignore[assignment]  # mutable; equal by value

  def __repr__(self) -> str:
    options = "".join(f", {k}={v!r}" for k, v in self.options.items())
    return f"window_schedule({self.length!r}, {self.shape!r}{options})"


def _window(rc_cfg: Any) -> Optional[TorchWindow]:
  """The window of ``rc_cfg``, None for ``rcm = 0``."""
  name = "rc_cfg"
  rcm, inseq, x, n, m, tau, spe, cfact, e = _unpack(name, rc_cfg, (9,))
  rcm = _int(name, 0, rcm, {0: "off", **{k: v[0] for k, v in SHAPES.items()}})
  kronecker = _int(name, 1, inseq, {0: "uniform", 1: "Kronecker"}) == 1
  floor = _real(name, 2, x, 0.0, 1.0, high_open=False)
  n = _real(name, 3, n)
  full = _int(name, 4, m, {0: "full window", 1: "half window"}) == 0
  tau = _int(name, 5, tau, low=1)
  spe = _int(name, 6, spe, low=1)
  cfact = _int(name, 7, cfact, low=0)
  flat_top = _real(name, 8, e, 0.0, 1.0, high_open=False)
  if rcm == 0:
    return None
  if flat_top == 1:
    raise ValueError(
      f"{_label(name, 8, e)} holds the window at 1 for the whole frame: "
      "use rc_cfg[0] (rcm)=0, no window, for that."
    )
  shape, param = SHAPES[rcm]
  if n <= 0 or (param == "base" and n == 1):
    rule = "> 0 and not 1" if param == "base" else "> 0"
    raise ValueError(
      f"{_label(name, 3, rc_cfg[3])} must be {rule}: it is "
      f"the {param} of rcm={rcm} ({shape})."
    )
  if kronecker and (full or flat_top > 0):
    raise ValueError(
      f"{_label(name, 1, inseq)} (Kronecker ordering) needs a half window "
      f"without a flat top, got {_label(name, 4, m)} and "
      f"{_label(name, 8, e)}: the sorted sequence is ill-defined otherwise."
    )
  options = {
    param: rc_cfg[3],
    "floor": floor,
    "full": full,
    "flat_top": flat_top,
    "stairs": 1,
    "restarts": True,
    "steps_per_epoch": None,
    "kronecker": kronecker,
  }
  if cfact == 0:  # tau epochs of spe iterations, F constant within an epoch
    length = tau
    options["steps_per_epoch"] = spe
  elif cfact == 2:  # one epoch of spe iterations
    length = spe
  else:  # tau * spe iterations; cfact >= 3 sub-decays
    length = tau * spe
    options["stairs"] = max(cfact, 1)
  return TorchWindow(length, shape, **options)


# ---------------------------------------------------------------------------
# the translation


def torch_config_kwargs(
  lr_cfg: Sequence[Any] = LR_CFG,
  beta_cfg: Sequence[Any] = BETA_CFG,
  rc_cfg: Sequence[Any] = RC_CFG,
  wd_cfg: Sequence[Any] = WD_CFG,
  eps_cfg: Sequence[Any] = EPS_CFG,
  *,
  show: bool = False,
) -> dict[str, Any]:
  r"""The keyword arguments of ``autosgm`` for an original configuration.

  Reads the original PyTorch ``AutoSGM``'s tuples as its code reads them (see
  the table in :mod:`autosgm_optax.migration`): ``num_lrc`` 0 and 4 unity,
  1 correlation, 2 robust correlation, 3 moment; ``aoptlr=False`` no
  denominator and unity; ``eta = eta_i / (1 - gamma)`` for ``eta_i > 0``;
  ``wd_lvl`` 0 coupled, 1 decoupled with factor ``(1 - beta)/(1 - gamma)``;
  the window from ``rc_cfg``, restarted when its frame ends. An unknown
  code, a value out of range, a wrong type or a tuple of the wrong length is
  refused with the name of the field. The defaults are the original
  constructor's (Adam with eps 1e-10 and learning rate 1e-2).

  Deliberate differences from the original (details in the module's
  documentation): the exact debias and first-step gain; eps outside the
  square root (of order ``eps/|g|``); repeat_eps ignored; the denominator always
  debiased, apart from the filter; the numerator without the decoupled-decay
  term; mu applied last; the staircase for every shape; working Kronecker
  ordering; the normalised late sigmoid; epoch windows that never go
  negative; no weight copy (zero parameters escape on the fly); a step
  counter that does not stall at 2^24.

  Args:
    lr_cfg: ``(aoptlr, lr_init, num_lrc)``: bool, mu > 0, code 0-4.
    beta_cfg: ``(beta_n, beta_a, beta, gamma, eta_i, debias)``: the
      numerator's and the moment's poles in ``[0, 1)``, the filter's pole and
      zero (``gamma < beta`` or both 0), ``eta_i >= 0`` (0: unit DC gain) and
      the filter's debias (bool).
    rc_cfg: ``(rcm, inseq, x, n, m, tau, spe, cfact, e)``: window code 0-6,
      ordering 0 (uniform) or 1 (Kronecker), floor in ``[0, 1]``, the shape
      parameter, 1 half or 0 full window, ``tau >= 1``, ``spe >= 1``, step
      unit ``cfact >= 0``, flat-top coverage in ``[0, 1)``.
    wd_cfg: ``(rho, lvl)``: ``rho >= 0``, 0 coupled or 1 decoupled.
    eps_cfg: ``(eps,)`` or ``(eps, repeat_eps)``: ``eps >= 0``; repeat_eps
      (bool) is ignored.
    show: print the ``autosgm(...)`` call.

  Returns:
    A dict of keyword arguments for :func:`autosgm_optax.autosgm`; its
    ``window`` is None or a ``TorchWindow`` (a schedule that prints as
    the :func:`autosgm_optax.window_schedule` call that built it).

  Example:
    >>> from autosgm_optax.migration._torch import torch_config_kwargs
    >>> kw = torch_config_kwargs(
    ...     lr_cfg=(True, 1e-3, 1),
    ...     beta_cfg=(0.9999, 0.999, 0.9, 0.5528, 0, True),
    ...     rc_cfg=(1, 0, 0, 2, 1, 10, 100, 1, 0),
    ...     wd_cfg=(1e-2, 1))
    >>> kw["numerator"], kw["decay"], round(kw["decay_factor"], 4)
    ('correlation', 'decoupled', 0.2236)
    >>> kw["window"]
    window_schedule(1000, 'raised_cosine', order=2, floor=0.0, full=False,
    flat_top=0.0, stairs=1, restarts=True, steps_per_epoch=None,
    kronecker=False)
  """
  if not isinstance(show, bool):
    raise TypeError(f"show={show!r} must be a bool.")

  name = "lr_cfg"
  aoptlr, lr_init, num_lrc = _unpack(name, lr_cfg, (3,))
  aoptlr = _bool(name, 0, aoptlr)
  learning_rate = _real(name, 1, lr_init, 0.0, None, low_open=True)
  numerator = NUMERATORS[_int(name, 2, num_lrc, NUMERATORS)]
  if not aoptlr:  # the constant learning rate: no ratio at all
    numerator = "unity"

  name = "beta_cfg"
  beta_n, beta_a, beta, gamma, eta_i, debias = _unpack(name, beta_cfg, (6,))
  beta_n = _real(name, 0, beta_n, 0.0, 1.0)
  beta_a = _real(name, 1, beta_a, 0.0, 1.0)
  beta = _real(name, 2, beta, 0.0, 1.0)
  gamma = _real(name, 3, gamma)
  if gamma >= beta and not beta == gamma == 0:
    raise ValueError(
      f"{_label(name, 3, beta_cfg[3])} must be below "
      f"{_label(name, 2, beta_cfg[2])}"
      + (
        ": the zero cancels the pole; for a pure gain set both to 0."
        if gamma == beta
        else "."
      )
    )
  eta_i = _real(name, 4, eta_i, 0.0, None)
  debias = _bool(name, 5, debias)
  eta = eta_i / (1 - gamma) if eta_i > 0 else None

  name = "wd_cfg"
  rho, lvl = _unpack(name, wd_cfg, (2,))
  rho = _real(name, 0, rho, 0.0, None)
  decay = DECAYS[_int(name, 1, lvl, DECAYS)]

  name = "eps_cfg"
  eps_values = _unpack(name, eps_cfg, (1, 2))
  eps = _real(name, 0, eps_values[0], 0.0, None)
  if len(eps_values) == 2:
    _bool(name, 1, eps_values[1])  # repeat_eps: read, and ignored

  kwargs = dict(
    learning_rate=learning_rate,
    beta=beta,
    gamma=gamma,
    eta=eta,
    debias=debias,
    denominator=aoptlr,
    moment_beta=beta_a,
    eps=eps,
    numerator=numerator,
    numerator_beta=beta_n,
    window=_window(rc_cfg),
    weight_decay=rho,
    decay=decay,
  )
  if decay == "decoupled":  # the original's factor: the default gain
    kwargs["decay_factor"] = (1 - beta) / (1 - gamma)
  if show:
    print(
      "autosgm(\n"
      + "".join(f"    {k}={v!r},\n" for k, v in kwargs.items())
      + ")"
    )
  return kwargs


def from_torch_config(
  lr_cfg: Sequence[Any] = LR_CFG,
  beta_cfg: Sequence[Any] = BETA_CFG,
  rc_cfg: Sequence[Any] = RC_CFG,
  wd_cfg: Sequence[Any] = WD_CFG,
  eps_cfg: Sequence[Any] = EPS_CFG,
  mix_cfg: Sequence[Any] = MIX_CFG,
  *,
  show: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""The ``autosgm`` equivalent of an original PyTorch AutoSGM.

  ``AutoSGM(params, lr_cfg=..., beta_cfg=..., rc_cfg=..., wd_cfg=...,
  eps_cfg=...)`` becomes ``from_torch_config(lr_cfg=..., ...)``: it is
  ``autosgm(**torch_config_kwargs(...))``, see there for the mapping and
  :mod:`autosgm_optax.migration` for a table. With a constant learning rate
  it computes the original's update up to round-off wherever the original
  has no defect, and up to eps placement.

  Deliberate differences from the original: the exact debias and first-step
  gain; eps outside the square root (of order ``eps/|g|``); repeat_eps ignored;
  the denominator always debiased, apart from the filter; the numerator
  without the decoupled-decay term; mu applied last; the staircase for every
  shape; working Kronecker ordering; the normalised late sigmoid; epoch
  windows that never go negative; no weight copy (zero parameters escape on
  the fly); a step counter that does not stall at 2^24.

  Args:
    lr_cfg: ``(aoptlr, lr_init, num_lrc)``.
    beta_cfg: ``(beta_n, beta_a, beta, gamma, eta_i, debias)``.
    rc_cfg: ``(rcm, inseq, x, n, m, tau, spe, cfact, e)``.
    wd_cfg: ``(rho, lvl)`` (the original's ``(wd_cte, wd_lvl)``).
    eps_cfg: ``(eps,)`` or ``(eps, repeat_eps)``.
    mix_cfg: ``(mix, avg, lr0, pole, zero)``, the original's matrix
      variant. With ``mix`` the original's matrix leaves (rank >= 2 taken as
      ``(shape[0], rest)``, ``4 <= min dim``, ``max dim <= 2048``) take
      their own update (its filter, the polar factor by its Lakic
      iteration, its scalar numerator, the learning rate ``lr0``:
      docs/matrix.md), the others ``autosgm(...)``,
      in an ``optax.partition``. ``avg`` (short-term averages of ``v v^T``
      and of the numerator's statistics, two EMAs sharing one buffer there)
      is refused.
    show: print the ``autosgm(...)`` call it makes.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`: ``autosgm(...)``, or
    with ``mix`` the partition of the matrix leaves' update and it.

  Example:
    The original README's example, for one epoch of 1000 iterations:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from autosgm_optax.migration._torch import from_torch_config
    >>> tx = from_torch_config(
    ...     lr_cfg=(True, 1e-3, 3),
    ...     beta_cfg=(0.9999, 0.999, 0.9, 0.5528, 0, True),
    ...     rc_cfg=(1, 0, 0, 2, 1, 1, 1000, 1, 0),
    ...     wd_cfg=(0.0, 0),
    ...     eps_cfg=(1e-10, True),
    ...     show=True)
    autosgm(
        learning_rate=0.001,
        beta=0.9,
        gamma=0.5528,
        eta=None,
        debias=True,
        denominator=True,
        moment_beta=0.999,
        eps=1e-10,
        numerator='moment',
        numerator_beta=0.9999,
        window=window_schedule(1000, 'raised_cosine', order=2, floor=0.0,
          full=False, flat_top=0.0, stairs=1, restarts=True,
          steps_per_epoch=None, kronecker=False),
        weight_decay=0.0,
        decay='coupled',
    )
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda w: jnp.sum(w ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
  """
  kwargs = torch_config_kwargs(
    lr_cfg, beta_cfg, rc_cfg, wd_cfg, eps_cfg, show=show
  )
  elementwise = autosgm(**kwargs)
  matrices = matrix_update(lr_cfg, wd_cfg, eps_cfg, mix_cfg, kwargs["window"])
  if matrices is None:
    return elementwise
  return optax.partition(
    {"matrix": matrices, "elementwise": elementwise}, matrix_labels
  )


def matrix_rule(x: Any) -> Optional[MuonDimensionNumbers]:
  """The original's rule for a leaf: ``(shape[0], rest)`` for a matrix it
  would take (rank >= 2, ``4 <= min dim``, ``max dim <= 2048``), else None
  (the element-wise path)."""
  shape = tuple(x.shape)
  if len(shape) < 2:
    return None
  rows, cols = shape[0], int(np.prod(shape[1:]))
  if min(rows, cols) < MIN_DIM or max(rows, cols) > MAX_DIM:
    return None
  return MuonDimensionNumbers(0, tuple(range(1, len(shape))))


def matrix_labels(params: Any) -> Any:
  """``"matrix"`` for the leaves :func:`matrix_rule` takes, else
  ``"elementwise"``."""
  return jax.tree.map(
    lambda x: "elementwise" if matrix_rule(x) is None else "matrix", params
  )


def matrix_update(
  lr_cfg: Sequence[Any] = LR_CFG,
  wd_cfg: Sequence[Any] = WD_CFG,
  eps_cfg: Sequence[Any] = EPS_CFG,
  mix_cfg: Sequence[Any] = MIX_CFG,
  window: Any = None,
) -> Optional[optax.GradientTransformationExtraArgs]:
  r"""The original's update of a matrix leaf (``mix_cfg``), or None when
  ``mix`` is off.

  Its filter (pole ``pole``, zero ``zero``, gain 1, no debias), the polar
  factor by its Lakic iteration (:func:`autosgm_optax.matrix_oracle`
  ``("lakic")``, K = 5, its ``eps``), the scalar numerator for ``num_lrc``
  1 and 2 (:func:`autosgm_optax.matrix_numerator`, else ``a = 1``), the
  weight decay (coupled, or decoupled with factor ``(1 - pole)/(1 -
  zero)``), the window, and the learning rate ``lr0``. As in the original's
  code, the matrix path reads ``num_lrc`` only (``aoptlr=False`` does not
  turn its numerator off). Differences from the
  original: tall matrices transposed, leaves of rank >= 3 taken as
  ``(shape[0], rest)`` (the original crashes on them), the numerator's floor
  ``eps`` on ``a`` rather than on ``lr0 a``.
  """
  name = "mix_cfg"
  mix, avg, lr0, pole, zero = _unpack(name, mix_cfg, (5,))
  if not _bool(name, 0, mix):
    return None
  if _bool(name, 1, avg):
    raise ValueError(
      f"{_label(name, 1, mix_cfg[1])}: the short-term averages of v v^T and "
      "of the numerator's statistics (two EMAs sharing one buffer in the "
      "original) are not offered; use avg=False."
    )
  lr0 = _real(name, 2, lr0, 0.0, None, low_open=True)
  pole = _real(name, 3, pole, 0.0, 1.0)
  zero = _real(name, 4, zero)
  if zero >= pole and not pole == zero == 0:
    raise ValueError(
      f"{_label(name, 4, mix_cfg[4])} must be below {_label(name, 3, pole)}."
    )
  num_lrc = _int("lr_cfg", 2, _unpack("lr_cfg", lr_cfg, (3,))[2], NUMERATORS)
  rho, lvl = _unpack("wd_cfg", wd_cfg, (2,))
  rho = _real("wd_cfg", 0, rho, 0.0, None)
  eps = _real("eps_cfg", 0, _unpack("eps_cfg", eps_cfg, (1, 2))[0], 0.0, None)
  if DECAYS[_int("wd_cfg", 1, lvl, DECAYS)] == "coupled":
    decay = coupled_decay(rho)
  else:
    decay = decoupled_decay(rho, (1 - pole) / (1 - zero))
  core = scale_by_autosgm(
    filter=lowpass_filter(pole, zero, 1.0, debias=False),
    denominator=matrix_oracle(
      "lakic", eps=max(eps, 1e-30), dimension_numbers=matrix_rule_tree
    ),
    decay=decay,
    numerator=(
      matrix_numerator(max(eps, 1e-30), dimension_numbers=matrix_rule_tree)
      if num_lrc in (1, 2)
      else None
    ),
    window=window,
  )
  return optax.chain(core, scale_by_learning_rate(lr0))


def matrix_rule_tree(params: Any) -> Any:
  """:func:`matrix_rule` of every leaf, as a tree."""
  return jax.tree.map(matrix_rule, params)
