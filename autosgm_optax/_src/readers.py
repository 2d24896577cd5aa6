"""Readers of AutoSGM's learning dynamics from an optimizer state.

They find the library's states wherever they sit: inside ``optax.chain``,
``optax.masked``, ``optax.partition`` / ``optax.multi_transform``,
``optax.inject_hyperparams``, ``optax.apply_if_finite``, ``optax.MultiSteps``,
or a Flax ``nnx.Optimizer`` (pass the optimizer or its ``opt_state``).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from autosgm_optax._src import base as _base
from autosgm_optax._src import diagnostics as _diagnostics
from autosgm_optax._src.combinator import ScaleByAutoSGMState
from autosgm_optax._src.diagnostics import DiagnosticsState
from autosgm_optax._src.diagnostics import Summary
from autosgm_optax._src.learning_rate import ScaleByLearningRateState
from autosgm_optax._src.numerator import CorrelationNumeratorState
from autosgm_optax._src.numerator import last_values
from autosgm_optax._src.window import WindowState


def _unwrap(state: Any) -> Any:
  """The plain Optax state of ``state``, an ``nnx.Optimizer`` or its state."""
  state = getattr(state, "opt_state", state)

  def is_variable(x):
    return hasattr(x, "get_value") and hasattr(x, "get_metadata")

  return jax.tree.map(
    lambda v: v.get_value() if is_variable(v) else v, state, is_leaf=is_variable
  )


def _is_ours(x: Any) -> bool:
  return isinstance(x, (ScaleByAutoSGMState, ScaleByLearningRateState))


def _children(x: Any) -> list[tuple[Any, Any]]:
  """The immediate children of a node of a state tree, as (key, child), in
  the order the transformations run (a dict's own order: optax.named_chain
  keeps its states in one)."""
  if isinstance(x, dict):
    return [(jax.tree_util.DictKey(k), v) for k, v in x.items()]
  flat, _ = jax.tree_util.tree_flatten_with_path(
    x, is_leaf=lambda y: y is not x
  )
  return [(path[0], child) for path, child in flat if path]


class _Found(NamedTuple):
  """An AutoSGM core found in a state, with the learning-rate block that
  follows it in the same chain (or None)."""

  core: ScaleByAutoSGMState
  learning_rate: Any  # ScaleByLearningRateState or None


def _find_cores(state: Any) -> dict[str, _Found]:
  """Every ``ScaleByAutoSGMState`` in ``state``, wherever it sits, by the
  path of the chain that holds it (the core's own path where it is not in a
  chain, or where one chain holds several cores), each with the library's
  learning-rate block that follows it in its chain, if there is one."""
  found: dict[str, _Found] = {}

  def visit(node, path):
    if isinstance(node, ScaleByAutoSGMState):  # a core outside any chain
      found[jax.tree_util.keystr(path)] = _Found(node, None)
      return
    children = _children(node)
    cores = [
      i
      for i, (_, c) in enumerate(children)
      if isinstance(c, ScaleByAutoSGMState)
    ]
    for i in cores:
      after = None
      for _, c in children[i + 1 :]:
        if isinstance(c, ScaleByAutoSGMState):
          break
        if isinstance(c, ScaleByLearningRateState):
          after = c
          break
      key = path if len(cores) == 1 else path + (children[i][0],)
      found[jax.tree_util.keystr(key)] = _Found(children[i][1], after)
    for i, (k, c) in enumerate(children):
      if i not in cores and not _is_ours(c) and _children(c):
        visit(c, path + (k,))

  visit(state, ())
  return found


def _cores(state: Any, reader: str) -> dict[str, _Found]:
  found = _find_cores(_unwrap(state))
  if not found:
    raise ValueError(
      f"{reader} found no AutoSGM state (a ScaleByAutoSGMState, made by "
      "autosgm, scale_by_autosgm or a preset) in the state given, a "
      f"{type(state).__name__}; pass the optimizer state (or the "
      "nnx.Optimizer) of an optimizer built with this library."
    )
  return found


def _count_or_none(core: ScaleByAutoSGMState) -> Any:
  """The number of updates the core has made (from its blocks' counters),
  or None where every slot is empty."""
  for block_state in core:
    if "count" in getattr(block_state, "_fields", ()):  # (a tuple's count
      if block_state.count is not None:  # is a method; None: not counted)
        return block_state.count
  return None


def _count(core: ScaleByAutoSGMState) -> jax.Array:
  count = _count_or_none(core)
  if count is not None:
    return count
  raise ValueError(
    "no block of the AutoSGM state counts its updates (a filter without "
    "debias keeps no count, and the other slots are empty), so a "
    "learning-rate schedule cannot be evaluated: pass a number, or follow "
    "the core with autosgm_optax.scale_by_learning_rate(schedule), whose "
    "state the readers read."
  )


def _mu(
  path: str, found: _Found, learning_rate: Any, reader: str
) -> tuple[jax.Array, jax.Array]:
  """``mu`` of the last update and of the one before (the library's
  learning-rate block's convention: both ``mu`` at count 0 before any
  update), from the library's learning-rate block or from
  ``learning_rate``."""
  if found.learning_rate is not None:
    if learning_rate is not None:
      raise ValueError(
        f"{reader}: the optimizer at {path!r} has the library's "
        "learning-rate block, which holds mu; do not pass learning_rate."
      )
    return (
      found.learning_rate.mu,
      found.learning_rate.prev_mu,
    )
  if learning_rate is None:
    raise ValueError(
      f"{reader}: the AutoSGM core at {path!r} is not followed by the "
      "library's learning-rate block (autosgm_optax.scale_by_learning_rate; "
      "e.g. it is chained with optax.scale_by_learning_rate), so the state "
      "does not hold mu: pass learning_rate= (the number or schedule "
      "given to the optimizer)."
    )
  if callable(learning_rate):
    count = _count(found.core)
    last = learning_rate(jnp.maximum(count - 1, 0))
    before = learning_rate(jnp.maximum(count - 2, 0))
    return jnp.asarray(last), jnp.asarray(before)
  _base.check_type("learning_rate", learning_rate)
  mu = jnp.asarray(learning_rate)
  return mu, mu


def effective_learning_rates(
  state: Any, *, learning_rate: Any = None
) -> dict[str, jax.Array]:
  r"""``mu(t) * F(t)`` of the last update, for every AutoSGM in ``state``.

  The AutoSGM cores (``ScaleByAutoSGMState``) are found by type wherever
  they sit: in ``optax.chain`` (nested, with other transformations in
  between), ``optax.named_chain``, ``optax.masked``, ``optax.partition``,
  ``optax.MultiSteps``, ``optax.inject_hyperparams``,
  ``optax.apply_if_finite``, or a Flax ``nnx.Optimizer``. ``mu`` comes from
  the library's learning-rate block that follows the core in its chain (as
  in :func:`autosgm_optax.autosgm` and the presets); where the learning
  rate is Optax's (e.g. ``optax.chain(scale_by_autosgm(...),
  optax.scale_by_learning_rate(lr))``), pass it as ``learning_rate``. ``F``
  comes from the window (1 without one). Before the first update the rate
  is 0.

  The keys are the paths of the chains that hold the cores (``''`` for a
  bare ``autosgm``). The per-element rate also includes the numerator and
  the denominator: see :func:`numerator_values`.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.
    learning_rate: ``mu`` (a number or a schedule, as given to the
      optimizer) for cores that are not followed by the library's
      learning-rate block; must be None where they are.

  Returns:
    A dict from path to a scalar array.

  Raises:
    ValueError: if ``state`` holds no AutoSGM core, or a core's ``mu`` can
      be read neither from the state nor from ``learning_rate``.
  """
  rates = {}
  for path, found in _cores(state, "effective_learning_rates").items():
    rate, _ = _mu(path, found, learning_rate, "effective_learning_rates")
    if isinstance(found.core.window, WindowState):
      rate = rate * found.core.window.value
    count = _count_or_none(found.core)
    if count is not None:
      rate = jnp.where(count > 0, rate, jnp.zeros_like(rate))
    rates[path] = rate
  return rates


def effective_learning_rate(
  state: Any, *, learning_rate: Any = None
) -> jax.Array:
  """``mu(t) * F(t)`` of the last update of the one AutoSGM in ``state``.

  See :func:`effective_learning_rates`.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.
    learning_rate: ``mu`` where the state does not hold it (see
      :func:`effective_learning_rates`).

  Returns:
    A scalar array.

  Raises:
    ValueError: if ``state`` holds no AutoSGM core or several (use
      :func:`effective_learning_rates` then), or ``mu`` cannot be read.

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
  rates = effective_learning_rates(state, learning_rate=learning_rate)
  if len(rates) != 1:
    raise ValueError(
      f"found {len(rates)} autosgm optimizers in the state "
      f"(paths {sorted(rates)}); use effective_learning_rates(state)."
    )
  return next(iter(rates.values()))


def numerator_values(state: Any) -> dict[str, Any]:
  """The numerator ``a(t)`` of the last update, for every estimated numerator.

  With layer averaging these are the (smoothed) per-leaf values, one per
  leaf (or per index of the kept leading axes); without, the per-element
  estimates ``ahat``. The numerators' states
  (``CorrelationNumeratorState``) are found by type wherever they sit (see
  :func:`effective_learning_rates`), also a ``correlation_numerator`` used
  alone. The unity numerator holds no estimate and is not listed.

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.

  Returns:
    A dict from the path of each numerator's state to a tree like the
    parameters.

  Raises:
    ValueError: if ``state`` holds no estimated numerator (e.g. the unity
      numerator of ``autosgm(lr)``, Adam's point, which keeps none).

  Example:
    >>> import jax.numpy as jnp
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(0.1, numerator="correlation")
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> values = asgm.numerator_values(state)
    >>> [(path, a["w"].shape) for path, a in values.items()]
    [('[0].numerator', (1,))]
  """
  is_numerator = lambda x: isinstance(x, CorrelationNumeratorState)
  values = {}
  for path, x in jax.tree_util.tree_flatten_with_path(
    _unwrap(state), is_leaf=is_numerator
  )[0]:
    if is_numerator(x) and x.c is not None:
      values[jax.tree_util.keystr(path)] = last_values(x)
  if not values:
    raise ValueError(
      "numerator_values found no estimated numerator in the state (a "
      "CorrelationNumeratorState of numerator='moment', 'correlation' or "
      "'robust_correlation'); the unity numerator (the default, Adam's "
      "point) keeps no estimate: a = 1."
    )
  return values


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
  return Summary(
    sup=scale(summary.sup, jnp.abs(factor)),
    mean=scale(summary.mean, factor),
    std=scale(summary.std, jnp.abs(factor)),
  )


def _dynamics(
  core: ScaleByAutoSGMState, mus: tuple[jax.Array, jax.Array], descent: bool
) -> Dynamics:
  diag = core.diagnostics
  mu, mu_prev = mus
  ratio = jnp.where(mu_prev > 0, mu / jnp.where(mu_prev > 0, mu_prev, 1), 0)
  step = -mu if descent else mu
  values = diag.values
  recorded = (diag.recorded == diag.count) & (diag.count > 0)
  common = dict(
    r_undefined=diag.r_undefined.tree(),
    beta=diag.beta,
    eta=diag.eta,
    step=diag.recorded,
    recorded=recorded,
  )
  if "summary" in values:
    values = _diagnostics.unpack(values)
    # Between records (diagnostics_every > 1) mu has moved on: NaN, not a
    # stale record scaled by today's mu.
    fresh = lambda x: jax.tree.map(lambda v: jnp.where(recorded, v, jnp.nan), x)
    return Dynamics(
      alpha=fresh(_scale_summary(values["alpha"], mu)),
      r=fresh(_scale_summary(values["r"], ratio)),
      margin=fresh(_scale_summary(values["r"], diag.beta * ratio)),  # r>=0
      e=fresh(values["e"]),
      dw=fresh(_scale_summary(values["update"], step)),
      **common,
    )
  r = jax.tree.map(lambda x: ratio * x, values["r"])
  return Dynamics(
    alpha=jax.tree.map(lambda x: mu * x, values["alpha"]),
    r=r,
    margin=jax.tree.map(lambda x: diag.beta * jnp.abs(x), r),
    e=values["e"],
    dw=jax.tree.map(lambda x: step * x, values["update"]),
    **common,
  )


def learning_dynamics(
  state: Any, *, maximize: bool = False, learning_rate: Any = None
) -> dict[str, Dynamics]:
  r"""The recorded LTV view of the last update, for every ``autosgm``.

  Needs ``autosgm(..., diagnostics="summary" | "element")``. Combines the
  core's record (everything but ``mu``) with ``mu(t)`` and ``mu(t-1)`` from
  the learning-rate block: ``alpha = mu F a / (d s)``,
  ``r = (mu(t) / mu(t-1)) alpha_core(t) / alpha_core(t-1)``,
  ``dw(t+1) = -mu u``, and the recurrence
  ``dw(t+1) = beta r(t) dw(t) + eta alpha(t) e(t)`` holds per element
  (see docs/algorithm.md, section 7). The cores are found wherever they sit
  in ``state``, and ``mu`` is read as :func:`effective_learning_rates`
  reads it (pass ``learning_rate`` where the learning rate is Optax's).

  Args:
    state: an optimizer state, or a Flax ``nnx.Optimizer``.
    maximize: the optimizer was built with ``maximize=True`` (then
      ``dw = +mu u`` and the recurrence holds with ``-e``).
    learning_rate: ``mu`` for cores not followed by the library's
      learning-rate block (see :func:`effective_learning_rates`).

  Returns:
    A dict from the path of each AutoSGM in ``state`` (``''`` for a bare
    one) to its :class:`Dynamics`; cores without diagnostics are left out.

  Raises:
    ValueError: if ``state`` holds no AutoSGM core, none with diagnostics,
      or ``mu`` cannot be read.

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
  found = _cores(state, "learning_dynamics")
  for path, core_lr in found.items():
    if isinstance(core_lr.core.diagnostics, DiagnosticsState):
      mu = _mu(path, core_lr, learning_rate, "learning_dynamics")
      out[path] = _dynamics(core_lr.core, mu, descent=not maximize)
  if not out:
    raise ValueError(
      f"learning_dynamics found {len(found)} AutoSGM core(s) (at "
      f"{sorted(found)}) but none records its dynamics: build the "
      'optimizer with diagnostics="summary" or "element".'
    )
  return out
