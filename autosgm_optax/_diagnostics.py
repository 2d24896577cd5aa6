r"""Learning dynamics: every AutoSGM update as a first-order LTV filter.

Per element, with the effective learning rate
:math:`\alpha(t) = \mu(t) F(t) a(t) / (d(t) s(t))` (``s`` the filter's debias
divisor, 1 without debias) and :math:`r(t) = \alpha(t) / \alpha(t-1)`,

.. math::
  \Delta w(t+1) = \beta\, r(t)\, \Delta w(t) + \eta\, \alpha(t)\, e(t),

with the input

.. math::
  e(t) = \gamma \hat g(t-1) - \hat g(t)
         + \frac{1}{\eta}\left(\beta z(t-1) - z(t)\right),

where :math:`\hat g` is the gradient after coupled decay (so coupled decay
adds :math:`\rho(\gamma w(t-1) - w(t))`) and
:math:`z(t) = c_\rho \rho(t)\, d(t)\, s(t)\, w(t)` is the decoupled-decay
term in the units of the filter's output (SPEC's
:math:`\rho' \tilde w` with :math:`\tilde w = d s w`, :math:`\rho' = c_\rho
\rho / \eta`, re-derived for this realisation: the derivation only uses
:math:`v(t) = \beta v(t-1) + \eta(\hat g(t) - \gamma \hat g(t-1))`, which
every realisation of the filter satisfies, the Nesterov form included).
Where :math:`\alpha(t-1) = 0` (no update yet, or a window at 0),
:math:`\Delta w(t) = 0` too: ``r`` is reported as 0 and flagged (never inf
or NaN). Taking :math:`r(t)\Delta w(t) = 0` there is exact at the first
update, where the filter's memory is empty; after a window that was 0 at a
later step, the memory survives in the filter (the true
:math:`r(t)\Delta w(t)` is the limit :math:`-\alpha(t) q(t-1)`), so a replay
from ``alpha``, ``r`` and ``e`` alone restarts after that step.

The core (:func:`autosgm_optax.scale_by_autosgm`) records everything but
``mu``, which the learning-rate block keeps (``mu(t)`` and ``mu(t-1)``);
:func:`learning_dynamics` combines the two. With ``maximize=True`` the
recurrence holds with ``-e``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from autosgm_optax import _base
from autosgm_optax import _sequence

LEVELS = ("summary", "element")


#: The per-element quantities of the core (without mu) that are recorded.
#: The margin beta |r| is beta r (alpha >= 0, so r >= 0): readers derive it.
QUANTITIES = ("alpha", "r", "e", "update")


class Summary(NamedTuple):
  """Per-leaf summaries of one quantity (each a tree of scalars)."""

  sup: Any  # max |x| over the leaf
  mean: Any  # mean of x over the leaf
  std: Any  # standard deviation of x over the leaf


class DiagnosticsState(NamedTuple):
  """Recorded learning dynamics of the last update, without ``mu``.

  ``alpha`` is ``F a / (d s)``, ``r`` its ratio to the previous step's,
  ``update`` the core's output ``u`` (the parameter change is ``-mu u``),
  ``e`` the LTV input. ``values`` holds a :class:`Summary` per quantity
  (summary level) or the per-element trees (element level).
  """

  alpha_prev: optax.Updates  # per element F a / (d s) of the last update
  input_prev: Optional[optax.Updates]  # gamma g + (beta / eta) z of the last
  # update: the part of e(t) that comes from step t-1 (None when the filter's
  # zero is a plain 0 and there is no decoupled decay)
  r_undefined: Any  # per leaf: number of elements where alpha(t-1) = 0
  beta: chex.Array  # shape=(); the filter's pole
  eta: chex.Array  # shape=(); the filter's gain
  values: dict  # quantity name -> Summary or per-element tree


def _summary(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  # jnp.std subtracts the mean first: E[x^2] - E[x]^2 loses the standard
  # deviation of a nearly constant alpha to cancellation in float32. (Of the
  # forms tried, this one also streams the fewest bytes under XLA on CPU:
  # moments about the first element made XLA write x - c to memory.)
  if not x.size:  # an empty leaf: nothing to summarise
    zero = jnp.zeros([], x.dtype)
    return zero, zero, zero
  return jnp.max(jnp.abs(x)), jnp.mean(x), jnp.std(x)


def check_level(level: Optional[str]) -> None:
  if level is not None:
    _base.check_choice("diagnostics", level, LEVELS)


def init(params: Any, level: str, *, track_grad: bool,
         track_decay: bool) -> DiagnosticsState:
  """The diagnostics state for ``params`` at ``level``."""
  zeros = lambda: _base.zeros_like_tree(params, None)
  scalars = lambda: jax.tree.map(
      lambda p: jnp.zeros([], _base.state_dtype(p.dtype, None)), params)
  if level == "summary":
    values = {q: Summary(scalars(), scalars(), scalars()) for q in QUANTITIES}
  else:
    values = {q: zeros() for q in QUANTITIES}
  dtype = _base.scalar_dtype(params)
  return DiagnosticsState(
      alpha_prev=zeros(),
      input_prev=zeros() if (track_grad or track_decay) else None,
      r_undefined=jax.tree.map(lambda p: jnp.zeros([], jnp.int32), params),
      beta=jnp.zeros([], dtype), eta=jnp.zeros([], dtype),
      values=values)


def update(signal: _base.Signal, finish: Callable[[], Any],
           state: DiagnosticsState, level: str, *, track_grad: bool
           ) -> tuple[Any, DiagnosticsState]:
  """The update ``finish()`` made from ``signal``, and its record.

  ``d`` is read from the estimators' copy (``Signal.estimate_denominator``,
  equal to ``d`` up to float32 rounding) so that the update's own kernel
  does not share it, which would make XLA write it to memory.

  XLA copies a donated buffer whose readers it cannot order before the
  kernel that overwrites it (here: the old history, and the parameters,
  which the caller's ``apply_updates`` overwrites). So the new history is
  multiplied by an exact 1 computed from everything that reads the old
  history, and the update by an exact 1 computed from the new history and
  the statistics that read the parameters: the order is then in the data.
  """
  beta, gamma, eta, s = signal.filter if signal.filter is not None else (
      0.0, 0.0, 1.0, 1)
  leaves, treedef = jax.tree.flatten(signal.grad)
  n = len(leaves)
  denominator = (signal.denominator if signal.estimate_denominator is None
                 else signal.estimate_denominator)

  def flat(tree):
    return [None] * n if tree is None else treedef.flatten_up_to(tree)

  def leaf(g, d, decay, a, alpha_prev, h_prev):
    dt = alpha_prev.dtype
    alpha = 1 / s
    if d is not None:
      alpha = alpha / d
    if a is not None:
      alpha = alpha * a
    if signal.window is not None:
      alpha = alpha * signal.window
    alpha = jnp.broadcast_to(alpha, alpha_prev.shape).astype(dt)
    defined = alpha_prev > 0
    # (The placeholder 2 is any nonzero number; a 1 here would be merged
    # with the numerator's bound 1 + EMA(w^2), and a broadcast shared by two
    # kernels is written to memory.)
    r = jnp.where(defined, alpha / jnp.where(defined, alpha_prev, 2), 0)
    g = g.astype(dt)
    e, h = -g, None
    if h_prev is not None:
      # e(t) = gamma g(t-1) - g(t) + (beta z(t-1) - z(t)) / eta, with the
      # terms of step t-1 kept together in h(t-1).
      e = e + h_prev
      h = gamma * g if track_grad else jnp.zeros_like(h_prev)
      if signal.decay is not None:
        if decay is None:  # a leaf the decay mask exempts: z = 0
          z = jnp.zeros_like(h_prev)
        else:  # z = c_rho rho d s w, the decay term in the filter's units
          z = decay * s if d is None else decay * d * s
          z = z.astype(dt)  # s may be float64 under x64 with Python poles
        e = e - z / eta
        h = h + (beta / eta) * z
      h = h.astype(dt)
    if alpha_prev.size < 2**24:  # counted exactly in float32, in one pass
      # alpha >= 0, so sign() is 1 where defined and 0 where not (a sum of
      # signs fuses into XLA's reduction kernel, a comparison does not). A
      # non-finite alpha(t-1) leaves nothing defined.
      defined_count = jnp.sum(jnp.sign(alpha_prev))
      undefined = jnp.where(jnp.isfinite(defined_count),
                            alpha_prev.size - defined_count,
                            alpha_prev.size).astype(jnp.int32)
    else:
      undefined = jnp.sum(jnp.where(defined, 0, 1), dtype=jnp.int32)
    return alpha, r, e, h, undefined

  columns = zip(flat(signal.grad), flat(denominator), flat(signal.decay),
                flat(signal.numerator), flat(state.alpha_prev),
                flat(state.input_prev))
  alphas, rs, es, hs, undefined = (list(x) for x in zip(
      *[leaf(*col) for col in columns])) if n else ([],) * 5
  record = _summary if level == "summary" else (lambda x: x)
  rs, es = [record(x) for x in rs], [record(x) for x in es]
  # Everything that reads the old history is done before it is replaced.
  one = _sequence.exact_one((rs, es, undefined), 1)
  alphas = [_sequence.times(x, one) for x in alphas]
  hs = [None if h is None else _sequence.times(h, one) for h in hs]
  # ... and everything that reads the parameters before the update exists.
  one = _sequence.exact_one((alphas, [h for h in hs if h is not None]), one)
  out = _sequence.times(finish(), one)
  dt = [a.dtype for a in alphas]
  us = [record(u.astype(t)) for u, t in zip(treedef.flatten_up_to(out), dt)]

  def tree_of(xs):
    return treedef.unflatten(xs)

  def stats_tree(xs):
    return Summary(*(tree_of([x[i] for x in xs]) for i in range(3)))

  columns = dict(alpha=[record(x) for x in alphas], r=rs, e=es, update=us)
  if level == "summary":
    values = {q: stats_tree(columns[q]) for q in QUANTITIES}
  else:
    values = {q: tree_of(columns[q]) for q in QUANTITIES}
  dtype = state.beta.dtype
  return out, DiagnosticsState(
      alpha_prev=tree_of(alphas),
      input_prev=None if state.input_prev is None else tree_of(hs),
      r_undefined=tree_of(undefined),
      beta=jnp.asarray(beta, dtype), eta=jnp.asarray(eta, dtype),
      values=values)
