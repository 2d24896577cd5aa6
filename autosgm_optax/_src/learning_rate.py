"""The learning-rate block: ``-mu(t) * u``, applied last and once."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from autosgm_optax._src import base as _base


class ScaleByLearningRateState(NamedTuple):
  """State of :func:`scale_by_learning_rate`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; updates made so far.
  # mu of the last update; before the first, the mu the first update uses
  # (mu at count 0), so that both fields hold mu(1) until the first update.
  # (Not named learning_rate: optax.tree_utils.tree_get(state,
  # "learning_rate") then finds optax.inject_hyperparams' value alone.)
  mu: chex.Array  # shape=(); scalar dtype (see below)
  # mu of the update before the last; mu(1) before the second update.
  prev_mu: chex.Array  # shape=(); scalar dtype

  # The fields' earlier names, read-only (not pytree keys, so tree_get does
  # not find them).
  @property
  def learning_rate(self) -> chex.Array:
    """``mu``, by its earlier name."""
    return self.mu

  @property
  def prev_learning_rate(self) -> chex.Array:
    """``prev_mu``, by its earlier name."""
    return self.prev_mu


def scale_by_learning_rate(
  learning_rate: optax.ScalarOrSchedule,
  *,
  flip_sign: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""Scale by ``-mu(t)``, keeping ``mu(t)`` and ``mu(t-1)`` in the state.

  Arithmetically identical to ``optax.scale_by_learning_rate`` (a number
  multiplies as ``optax.scale``, a schedule as ``optax.scale_by_schedule``,
  evaluated at the count of updates made so far), but its state remembers
  the learning rate of the last two updates, so that readers and the
  learning-dynamics diagnostics can combine ``mu`` with the core's state
  (the ratio ``r(t)`` needs ``mu(t) / mu(t-1)``). The remembered values are
  stored as scalars of the widest real parameter dtype (at least float32).

  Before the first update both fields hold the learning rate the first
  update will use (``mu`` at count 0), and ``prev_mu`` holds it
  until the second update: the state then means the same whether ``mu`` is
  a number, an array (as ``optax.inject_hyperparams`` passes it) or a
  schedule, so ``inject_hyperparams(scale_by_learning_rate)(mu)`` and
  ``scale_by_learning_rate(mu)`` hold the same state after ``init`` and
  after every update.

  The mathematics: docs/algorithm.md, section 1.

  Args:
    learning_rate: ``mu``, a number, an array or an ``optax.Schedule``.
    flip_sign: multiply by ``-mu`` (descent) rather than ``mu``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import scale_by_learning_rate
    >>> tx = scale_by_learning_rate(0.1)
    >>> g = jnp.array([1.0, 2.0])
    >>> u, state = tx.update(g, tx.init(g))
    >>> u, state.mu
    (Array([-0.1, -0.2], dtype=float32), Array(0.1, dtype=float32))
  """
  sign = -1 if flip_sign else 1
  # A plain number is stored once, at init: the update then passes the two
  # fields through and XLA writes nothing for them (two scalar kernels less
  # per step, a few percent of a small model's step on a CPU).
  constant = _base.is_number(learning_rate)

  def init_fn(params):
    dtype = _base.scalar_dtype(params)
    count = jnp.zeros([], jnp.int32)
    first = _base.evaluate(learning_rate, count)  # mu of the first update
    # Two arrays, not one twice: a donated state may not hold a buffer twice.
    mu = lambda: jnp.array(first, dtype, copy=True).reshape(())
    return ScaleByLearningRateState(count=count, mu=mu(), prev_mu=mu())

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    if callable(learning_rate):
      mu = learning_rate(state.count)
      step = sign * mu
      updates = jax.tree.map(
        lambda g: jnp.array(step, dtype=g.dtype) * g, updates
      )
    else:
      mu = learning_rate
      step = sign * mu
      updates = jax.tree.map(lambda g: step * g, updates)
    if constant:
      return updates, state._replace(count=optax.safe_increment(state.count))
    new_state = ScaleByLearningRateState(
      count=optax.safe_increment(state.count),
      mu=jnp.asarray(mu, state.mu.dtype),
      prev_mu=state.mu,
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
