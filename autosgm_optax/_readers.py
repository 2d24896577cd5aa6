"""Readers of AutoSGM's learning dynamics from an optimizer state.

They find the library's states wherever they sit: inside ``optax.chain``,
``optax.masked``, ``optax.partition`` / ``optax.multi_transform``,
``optax.inject_hyperparams``, ``optax.apply_if_finite``, ``optax.MultiSteps``,
or a Flax ``nnx.Optimizer`` (pass the optimizer or its ``opt_state``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autosgm_optax._autosgm import ScaleByAutoSGMState
from autosgm_optax._learning_rate import ScaleByLearningRateState
from autosgm_optax._numerator import CorrelationNumeratorState
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


def _values(numerator: CorrelationNumeratorState) -> Any:
  if numerator.a is not None:
    return numerator.a
  if numerator.w2 is None:  # the moment estimator
    return jax.tree.map(lambda c: jnp.minimum(c, 1), numerator.c)
  return jax.tree.map(lambda c, w2: jnp.minimum(jnp.abs(c), 1 + w2),
                      numerator.c, numerator.w2)


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
  return {path: _values(n) for path, n in found.items() if n.c is not None}
