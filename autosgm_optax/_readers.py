"""Readers of AutoSGM's learning dynamics from an optimizer state.

They find the library's states wherever they sit: inside ``optax.chain``,
``optax.masked``, ``optax.partition`` / ``optax.multi_transform``,
``optax.inject_hyperparams``, ``optax.apply_if_finite``, ``optax.MultiSteps``,
or a Flax ``nnx.Optimizer`` (pass the optimizer or its ``opt_state``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autosgm_optax import _diagnostics
from autosgm_optax._autosgm import ScaleByAutoSGMState
from autosgm_optax._diagnostics import DiagnosticsState
from autosgm_optax._diagnostics import Summary
from autosgm_optax._learning_rate import ScaleByLearningRateState
from autosgm_optax._numerator import CorrelationNumeratorState
from autosgm_optax._numerator import last_values
from autosgm_optax._window import WindowState


def _unwrap(state: Any) -> Any:
  """The plain Optax state of ``state``, an ``nnx.Optimizer`` or its state."""
  state = getattr(state, "opt_state", state)

  def is_variable(x):
    return hasattr(x, "get_value") and hasattr(x, "get_metadata")

  return jax.tree.map(lambda v: v.get_value() if is_variable(v) else v, state,
                      is_leaf=is_variable)


def _is_autosgm_chain(x: Any) -> bool:
  return (type(x) is tuple and len(x) == 2  # pylint: disable=unidiomatic-typecheck
          and isinstance(x[0], ScaleByAutoSGMState)
          and isinstance(x[1], ScaleByLearningRateState))


def _find(state: Any, predicate) -> dict[str, Any]:
  found = {}

  def visit(path, x):
    if predicate(x):
      found[jax.tree_util.keystr(path)] = x
    return x

  jax.tree_util.tree_map_with_path(visit, state, is_leaf=predicate)
  return found


def effective_learning_rates(state: Any) -> dict[str, jax.Array]:
  r"""``mu(t) * F(t)`` of the last update, for every ``autosgm`` in ``state``.

  ``mu`` comes from the library's learning-rate block and ``F`` from the
  window (1 without one); both are 0 before the first update. The keys are
  the paths of the optimizers inside ``state`` (``''`` for a bare
  ``autosgm``). The per-element rate also includes the numerator and the
  denominator: see :func:`numerator_values`.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.

  Returns:
    A dict from path to a scalar array.
  """
  rates = {}
  for path, (core, lr) in _find(_unwrap(state), _is_autosgm_chain).items():
    rate = lr.learning_rate
    if isinstance(core.window, WindowState):
      rate = rate * core.window.value
    rates[path] = rate
  return rates


def effective_learning_rate(state: Any) -> jax.Array:
  """``mu(t) * F(t)`` of the last update of the one ``autosgm`` in ``state``.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.

  Returns:
    A scalar array.

  Raises:
    ValueError: if ``state`` holds no ``autosgm`` optimizer or several (use
      :func:`effective_learning_rates` then).

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(0.1, window=asgm.raised_cosine_window(4))
    >>> params = jnp.ones(2)
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   _, state = tx.update(jnp.ones(2), state, params)
    >>> asgm.effective_learning_rate(state)  # 0.1 * F(2) = 0.1 * 0.5
    Array(0.05, dtype=float32)
  """
  rates = effective_learning_rates(state)
  if len(rates) != 1:
    raise ValueError(
        f"found {len(rates)} autosgm optimizers in the state "
        f"(paths {sorted(rates)}); use effective_learning_rates(state).")
  return next(iter(rates.values()))


def numerator_values(state: Any) -> dict[str, Any]:
  """The numerator ``a(t)`` of the last update, for every estimated numerator.

  With layer averaging these are the (smoothed) per-leaf values, one per
  leaf (or per index of the kept leading axes); without, the per-element
  estimates ``ahat``. The unity numerator holds no state and is not listed.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.

  Returns:
    A dict from the path of each numerator's state to a tree like the
    parameters.

  Example:
    >>> import jax.numpy as jnp
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(0.1, numerator="correlation")
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> [(path, a["w"].shape) for path, a in asgm.numerator_values(state).items()]
    [('[0].numerator', (1,))]
  """
  found = _find(_unwrap(state),
                lambda x: isinstance(x, CorrelationNumeratorState))
  return {path: last_values(n) for path, n in found.items()
          if n.c is not None}


class Dynamics(NamedTuple):
  """The learning dynamics of the last update of one ``autosgm``.

  At the ``"summary"`` level every field but ``r_undefined`` is a
  :class:`Summary` of per-leaf trees (``sup`` = max of the absolute value,
  ``mean``, ``std``); at the ``"element"`` level a tree like the parameters
  (``margin`` is then ``beta |r|`` per element). Every field holds arrays,
  so a jitted train step may return it; :attr:`level` is read from the
  fields' types.

  With ``diagnostics_every=k`` only every k-th update is recorded; after
  the others ``recorded`` is False and the values are NaN (the last record
  is kept in the state, but ``mu`` has moved on since).
  """

  alpha: Any  # effective learning rate mu F a / (d s)
  r: Any  # alpha(t) / alpha(t-1); 0 where alpha(t-1) = 0 (flagged)
  margin: Any  # per-step contraction margin beta |r(t)|
  e: Any  # the LTV input e(t)
  dw: Any  # the parameter change dw(t+1) = -mu u
  r_undefined: Any  # per leaf: elements where alpha(t-1) = 0
  beta: jax.Array  # the filter's pole
  eta: jax.Array  # the filter's gain
  step: Any = None  # the update t the values describe (1, 2, ...; 0: none)
  recorded: Any = None  # bool: the last update was recorded (else NaNs;
  # r_undefined then still counts the last record's)

  @property
  def level(self) -> str:
    """``"summary"`` or ``"element"``."""
    return "summary" if isinstance(self.alpha, Summary) else "element"


def _scale_summary(summary: Summary, factor: jax.Array) -> Summary:
  scale = lambda tree, f: jax.tree.map(lambda x: f * x, tree)
  return Summary(sup=scale(summary.sup, jnp.abs(factor)),
                 mean=scale(summary.mean, factor),
                 std=scale(summary.std, jnp.abs(factor)))


def _dynamics(core: ScaleByAutoSGMState, lr: ScaleByLearningRateState,
              descent: bool) -> Dynamics:
  diag = core.diagnostics
  mu, mu_prev = lr.learning_rate, lr.prev_learning_rate
  ratio = jnp.where(mu_prev > 0, mu / jnp.where(mu_prev > 0, mu_prev, 1), 0)
  step = -mu if descent else mu
  values = diag.values
  recorded = (diag.recorded == diag.count) & (diag.count > 0)
  common = dict(r_undefined=diag.r_undefined, beta=diag.beta, eta=diag.eta,
                step=diag.recorded, recorded=recorded)
  if "summary" in values:
    values, common["r_undefined"] = _diagnostics.unpack(values)
    # Between records (diagnostics_every > 1) mu has moved on: NaN, not a
    # stale record scaled by today's mu.
    fresh = lambda x: jax.tree.map(
        lambda v: jnp.where(recorded, v, jnp.nan), x)
    return Dynamics(
        alpha=fresh(_scale_summary(values["alpha"], mu)),
        r=fresh(_scale_summary(values["r"], ratio)),
        margin=fresh(_scale_summary(values["r"], diag.beta * ratio)),  # r>=0
        e=fresh(values["e"]),
        dw=fresh(_scale_summary(values["update"], step)),
        **common)
  r = jax.tree.map(lambda x: ratio * x, values["r"])
  return Dynamics(
      alpha=jax.tree.map(lambda x: mu * x, values["alpha"]),
      r=r,
      margin=jax.tree.map(lambda x: diag.beta * jnp.abs(x), r),
      e=values["e"],
      dw=jax.tree.map(lambda x: step * x, values["update"]),
      **common)


def learning_dynamics(state: Any, *, maximize: bool = False
                      ) -> dict[str, Dynamics]:
  r"""The recorded LTV view of the last update, for every ``autosgm``.

  Needs ``autosgm(..., diagnostics="summary" | "element")``. Combines the
  core's record (everything but ``mu``) with ``mu(t)`` and ``mu(t-1)`` from
  the learning-rate block: ``alpha = mu F a / (d s)``,
  ``r = (mu(t) / mu(t-1)) alpha_core(t) / alpha_core(t-1)``,
  ``dw(t+1) = -mu u``, and the recurrence
  ``dw(t+1) = beta r(t) dw(t) + eta alpha(t) e(t)`` holds per element
  (see :mod:`autosgm_optax._diagnostics`).

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.
    maximize: the optimizer was built with ``maximize=True`` (then
      ``dw = +mu u`` and the recurrence holds with ``-e``).

  Returns:
    A dict from the path of each ``autosgm`` in ``state`` (``''`` for a bare
    one) to its :class:`Dynamics`; optimizers without diagnostics are left
    out.

  Example:
    >>> import jax.numpy as jnp
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(0.1, diagnostics="summary")
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   _, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> dyn = asgm.learning_dynamics(state)[""]
    >>> # alpha includes the debias 1 / (1 - 0.9^t): r(2) = 0.1 / 0.19
    >>> round(float(dyn.r.sup["w"]), 4), int(dyn.r_undefined["w"])
    (0.5263, 0)
  """
  out = {}
  for path, (core, lr) in _find(_unwrap(state), _is_autosgm_chain).items():
    if isinstance(core.diagnostics, DiagnosticsState):
      out[path] = _dynamics(core, lr, descent=not maximize)
  return out
