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
term in the units of the filter's output (docs/algorithm.md, section 7: for
a constant rate :math:`z / \eta = \rho' \tilde w` with
:math:`\tilde w = d s w`, :math:`\rho' = c_\rho \rho / \eta`, derived for this
realisation: the derivation only uses
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

Recording. With ``diagnostics_every=1`` (and at the element level) the
record is computed with the step, keeping ``alpha(t-1)`` per element
(:func:`update`): about 3x the step without diagnostics on a 2-core CPU,
since it streams two more per-element buffers and reduces four quantities
per leaf three ways. With ``diagnostics_every=k > 1`` (:func:`record`) it
is taken in a ``lax.cond`` before the update, from the step's inputs:
``alpha(t-1)`` is rebuilt from the blocks' ``last`` (no per-element
``alpha`` is kept) and the history for ``e`` is written on the update
before a record only, so ``r`` and ``e`` of a recorded update are exact;
the other updates run the plain step (docs/performance.md has the costs).
Under ``optax.inject_hyperparams`` a ``diagnostics_every`` given as a
number is injected like any number and may change between steps without
recompiling; it then always takes the conditional path (the default None
is not injected and keeps the every-update path; so does
``static_args=("diagnostics_every",)``),
the first record after a change may lack ``e`` (NaN: the history of the
update before was not kept), and ``alpha(t-1)`` is rebuilt with the current
values of injected filter and denominator hyperparameters.

Either way the record observes: the backend orders the step's kernels
after the record's readers by selects, not arithmetic
(``autosgm_optax/_src/backend.py``), so the updates and the other state
buffers that ``update`` returns are bit for bit those without diagnostics.
(In one program with the caller's gradient and ``apply_updates``, XLA may
fuse and contract the caller's operations with the step's otherwise:
docs/guide.md, learning dynamics.)
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from autosgm_optax._src import base as _base

LEVELS = ("summary", "element")


#: The per-element quantities of the core (without mu) that are recorded.
#: The margin beta |r| is beta r (alpha >= 0, so r >= 0): readers derive it.
QUANTITIES = ("alpha", "r", "e", "update")
#: The shape of a leaf's summary row: (sup, mean, std) per quantity.
ROW = (len(QUANTITIES), 3)


class Summary(NamedTuple):
  """Per-leaf summaries of one quantity (each a tree of scalars)."""

  sup: Any  # max |x| over the leaf
  mean: Any  # mean of x over the leaf
  std: Any  # standard deviation of x over the leaf


class DiagnosticsState(NamedTuple):
  """Recorded learning dynamics of the last update, without ``mu``.

  ``alpha`` is ``F a / (d s)``, ``r`` its ratio to the previous step's,
  ``update`` the core's output ``u`` (the parameter change is ``-mu u``),
  ``e`` the LTV input. ``values`` holds, at the summary level,
  ``{"summary": PerLeaf}``: per leaf a row of shape ``(4, 3)``, the
  quantities of ``QUANTITIES`` by (sup, mean, std), all the leaves'
  rows in one array (a jitted step handles every buffer of its state on
  each call: see :class:`autosgm_optax._src.base.PerLeaf`). ``unpack``
  reads it. At the element level ``values`` holds the per-element tree of
  each quantity.
  """

  alpha_prev: Optional[optax.Updates]  # per element F a / (d s) of the last
  # update (element level; the summary level rebuilds it from the blocks'
  # states, see record)
  input_prev: Optional[optax.Updates]  # gamma g + (beta / eta) z of the last
  # update: the part of e(t) that comes from step t-1 (None when the filter's
  # zero is a plain 0 and there is no decoupled decay)
  r_undefined: _base.PerLeaf  # per leaf: int32, the number of elements
  # where alpha(t-1) is not > 0 (0, negative or NaN), where r is reported as 0
  beta: chex.Array  # shape=(); the filter's pole. A number fixed when the
  # optimizer is built is written once, by init, and passed through by the
  # updates (no per-step copy); an injected one may change between updates
  # and is written with each record (the pole of the recorded update). The
  # state has the same structure either way (optax.inject_hyperparams gives
  # the plain state).
  eta: chex.Array  # shape=(); the filter's gain, kept as beta
  values: dict  # quantity name -> Summary or per-element tree
  count: chex.Array  # shape=(), int32; updates made so far
  recorded: chex.Array  # shape=(), int32; the update ``values`` describe
  # (0: none yet); the last multiple of ``every``
  input_at: chex.Array  # shape=(), int32; the update whose h is kept in
  # input_prev (a record's e is NaN unless it is the update before)


def _summary(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  # jnp.std subtracts the mean first: E[x^2] - E[x]^2 loses the standard
  # deviation of a nearly constant alpha to cancellation in float32 (and of
  # the forms tried it streamed the fewest bytes: moments about the first
  # element made the compiler write x - c to memory).
  if not x.size:  # an empty leaf: nothing to summarise
    zero = jnp.zeros([], x.dtype)
    return zero, zero, zero
  return jnp.max(jnp.abs(x)), jnp.mean(x), jnp.std(x)


def check_level(level: Optional[str], every: Any = None) -> Any:
  """Checks ``diagnostics=level`` and ``diagnostics_every=every``.

  Returns ``every`` as a Python int (1 for None, the default), or, for an
  array (what ``optax.inject_hyperparams`` passes for a number: concrete in
  an eager ``init``, traced in a jitted step), the array as an int32
  scalar. An array means the value
  may change between steps: the summary is then always recorded through
  :func:`record`'s conditionals, and the state has the same structure
  however ``init`` is called. (Pass ``static_args=("diagnostics_every",)``
  to ``optax.inject_hyperparams`` to keep a number, and with 1 the faster
  every-update path.) A concrete array is checked like a number; a traced
  one cannot be, and a value below 1 records every update.
  """
  if level is not None:
    _base.check_choice("diagnostics", level, LEVELS)
  if every is None:
    return 1
  if isinstance(every, (jax.Array, np.ndarray)):
    if every.shape or not jnp.issubdtype(every.dtype, jnp.integer):
      raise TypeError(_invalid_every(every))
    if not isinstance(every, jax.core.Tracer):
      _check_every(level, int(every))
    if level != "summary":
      return 1
    return jnp.maximum(jnp.asarray(every, jnp.int32), 1)
  if isinstance(every, bool) or not isinstance(every, (int, np.integer)):
    raise TypeError(_invalid_every(every))
  _check_every(level, int(every))
  return int(every)


def _invalid_every(every: Any) -> str:
  return f"diagnostics_every={every!r} must be an int >= 1, or None."


def _check_every(level: Optional[str], every: int) -> None:
  if every < 1:
    raise ValueError(_invalid_every(every))
  if every != 1 and level != "summary":
    raise ValueError(
      f'diagnostics_every={every!r} needs diagnostics="summary" (got '
      f"diagnostics={level!r}); the element level records every update."
    )


def every_update(level: str, every: Any) -> bool:
  """Whether the record is taken on every update by :func:`update` (which
  keeps ``alpha(t-1)``), rather than by :func:`record`."""
  return level == "element" or (isinstance(every, int) and every == 1)


def init(
  params: Any,
  level: str,
  *,
  track_grad: bool,
  track_decay: bool,
  every: Any = 1,
  pole: Any = None,
  gain: Any = None,
) -> DiagnosticsState:
  """The diagnostics state for ``params`` at ``level``; ``pole`` and
  ``gain`` are the filter's ``beta`` and ``eta`` as built (numbers, or the
  arrays ``optax.inject_hyperparams`` passes; 0 and 1 without a filter)."""
  zeros = lambda: _base.zeros_like_tree(params, None)
  leaves, treedef = jax.tree.flatten(params)
  if level == "summary":
    rows = [jnp.zeros(ROW) for _ in leaves]
    values = {
      "summary": _base.PerLeaf.stack(rows, treedef, summary_dtype(params), ROW)
    }
  else:
    values = {q: zeros() for q in QUANTITIES}
  dtype = _base.scalar_dtype(params)
  counts = [jnp.zeros([], jnp.int32) for _ in leaves]
  return DiagnosticsState(
    alpha_prev=zeros() if every_update(level, every) else None,
    input_prev=zeros() if (track_grad or track_decay) else None,
    r_undefined=_base.PerLeaf.stack(counts, treedef, jnp.int32),
    beta=jnp.asarray(0.0 if pole is None else pole, dtype),
    eta=jnp.asarray(1.0 if gain is None else gain, dtype),
    values=values,
    count=jnp.zeros([], jnp.int32),
    recorded=jnp.zeros([], jnp.int32),
    input_at=jnp.zeros([], jnp.int32),
  )


def summary_dtype(params: Any) -> jnp.dtype:
  """The summaries' dtype: the widest of the leaves' state dtypes."""
  dtypes = [_base.state_dtype(p.dtype, None) for p in jax.tree.leaves(params)]
  return jnp.result_type(*dtypes) if dtypes else jnp.dtype(jnp.float32)


class Parts(NamedTuple):
  """The factors of ``alpha = F a / (d s)`` (None where a slot is empty):
  ``s`` and ``window`` scalars, ``d`` and ``a`` trees like the gradient."""

  s: Any = None
  d: Any = None
  a: Any = None
  window: Any = None


def _alpha(s, d, a, window, shape, dt):
  """``F a / (d s)`` of one leaf, broadcast to ``shape`` in ``dt``."""
  alpha = 1 / s if s is not None else 1.0
  if d is not None:
    alpha = alpha / d
  if a is not None:
    alpha = alpha * a
  if window is not None:
    alpha = alpha * window
  return jnp.broadcast_to(jnp.asarray(alpha), shape).astype(dt)


def _flat(treedef: Any, n: int, tree: Any) -> list:
  return [None] * n if tree is None else treedef.flatten_up_to(tree)


def previous_alpha(parts: Parts, grad: Any, count: chex.Array) -> list:
  """Per leaf, ``alpha(t-1)`` from the blocks' ``last`` factors (0 before
  the first update, ``count == 0``)."""
  leaves, treedef = jax.tree.flatten(grad)
  n = len(leaves)
  flat = lambda tree: _flat(treedef, n, tree)
  out = []
  for g, d, a in zip(leaves, flat(parts.d), flat(parts.a)):
    dt = _base.state_dtype(g.dtype, None)
    alpha = _alpha(parts.s, d, a, parts.window, g.shape, dt)
    out.append(jnp.where(count > 0, alpha, 0).astype(dt))
  return out


def _quantities(
  signal: _base.Signal,
  alpha_prevs: Optional[list],
  h_prevs: list,
  *,
  track_grad: bool,
) -> tuple[list, ...]:
  """Per leaf: alpha(t), r(t), e(t), the new history h(t) (or None) and the
  number of elements where alpha(t-1) = 0, as lists over the leaves (r and
  the count None without ``alpha_prevs``)."""
  beta, gamma, eta, s = (
    signal.filter if signal.filter is not None else (0.0, 0.0, 1.0, None)
  )
  treedef: Any
  leaves, treedef = jax.tree.flatten(signal.grad)
  n = len(leaves)
  flat = lambda tree: _flat(treedef, n, tree)

  def leaf(g, d, decay, a, alpha_prev, h_prev):
    dt = _base.state_dtype(g.dtype, None)
    alpha = _alpha(s, d, a, signal.window, g.shape, dt)
    r = undefined = None
    if alpha_prev is not None:
      defined = alpha_prev > 0
      # (The placeholder 2 is any nonzero number; a 1 here would be merged
      # with the numerator's bound 1 + EMA(w^2), and a broadcast shared by
      # two kernels is written to memory.)
      r = jnp.where(defined, alpha / jnp.where(defined, alpha_prev, 2), 0)
      # Counted exactly, in int32: each element where alpha(t-1) is not > 0
      # (0, a negative window, NaN) once.
      undefined = jnp.sum(jnp.where(defined, 0, 1), dtype=jnp.int32)
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
          z = decay if d is None else decay * d
          z = z if s is None else z * s
          z = z.astype(dt)  # s may be float64 under x64 with Python poles
        e = e - z / eta
        h = h + (beta / eta) * z
      h = h.astype(dt)
    return alpha, r, e, h, undefined

  if not n:
    return ([],) * 5
  alpha_prevs = [None] * n if alpha_prevs is None else alpha_prevs
  columns = zip(
    leaves,
    flat(signal.denominator),
    flat(signal.decay),
    flat(signal.numerator),
    alpha_prevs,
    h_prevs,
  )
  return tuple(list(x) for x in zip(*[leaf(*col) for col in columns]))


def _rows(columns: dict, dtype: Any) -> list:
  """Per leaf, the (4, 3) row of ``columns[q]`` (per leaf (sup, mean, std))."""
  n = len(columns[QUANTITIES[0]])
  return [
    jnp.stack([jnp.stack(columns[q][i]) for q in QUANTITIES]).astype(dtype)
    for i in range(n)
  ]


def unpack(values: dict) -> dict:
  """The summary level's ``values``: a :class:`Summary` per quantity."""
  tree = values["summary"].tree()
  return {
    q: Summary(
      *(jax.tree.map(lambda v, i=i, j=j: v[i, j], tree) for j in range(3))
    )
    for i, q in enumerate(QUANTITIES)
  }


class Part(NamedTuple):
  """Some leaves of the tree, for :func:`record`: ``rerun()`` applies the
  blocks to their inputs, ``previous()`` gives the factors of their last
  ``alpha``, ``diagnostics`` is their part of the diagnostics state (their
  rows of the summaries and counts; their history, or None)."""

  rerun: Callable[[], _base.Signal]
  previous: Callable[[], Parts]
  diagnostics: DiagnosticsState


def record(
  parts: list[Part],
  treedef: Any,
  state: DiagnosticsState,
  *,
  track_grad: bool,
  every: Any,
  fixed: bool = False,
  token: Callable[[Any], Any] = _base.PLAIN.token,
) -> tuple[DiagnosticsState, list]:
  """The summary level's record with ``diagnostics_every``, taken before the
  update.

  Two conditionals per part (a leaf where the backend runs the step leaf by
  leaf, else the tree). The first records the part's statistics on the
  updates whose number is a multiple of ``every`` (and hands back the last
  record on the others); the second keeps the history ``h(t)`` on the
  updates before those, which ``e`` of the next one needs (and passes the
  old one through on the others). Their branches recompute what they need
  from the step's own inputs (the blocks applied again to the old states,
  the gradient and the parameters; ``alpha(t-1)`` from the factors the
  blocks' old states hold), so that they read only buffers that exist
  anyway.

  Each conditional also returns ``token(count)`` (the realisation's; None
  for the plain one): the second takes the first's as an operand, and the
  backend orders the part's step after the second's (backend.py,
  ``ordered_record``, says why).

  Returns the new diagnostics state and the token of each part.
  """
  count = optax.safe_increment(state.count)
  due = count % every == 0
  due_next = (count + 1) % every == 0
  dtype = state.values["summary"].rows.dtype
  rows, counted, hs, ones = [], [], [], []
  # (a pole and gain fixed when built pass by the conditionals: init wrote
  # them; an injected pair is the recorded update's)
  filter_record = None
  for part in parts:
    old = part.diagnostics

    def take(_, part=part, old=old):
      again = part.rerun()
      leaves, part_def = jax.tree.flatten(again.grad)
      alpha_prevs = previous_alpha(part.previous(), again.grad, state.count)
      h_prevs = _flat(part_def, len(leaves), old.input_prev)
      alphas, rs, es, _, counts = _quantities(
        again, alpha_prevs, h_prevs, track_grad=track_grad
      )
      us = part_def.flatten_up_to(again.finish())
      us = [u.astype(a.dtype) for u, a in zip(us, alphas)]
      columns = {
        q: [_summary(x) for x in xs]
        for q, xs in zip(QUANTITIES, (alphas, rs, es, us))
      }
      if old.input_prev is not None:
        # e(t) needs h(t-1); after a change of an injected
        # diagnostics_every the history may be older: no e then.
        fresh = state.input_at == state.count
        columns["e"] = [
          tuple(jnp.where(fresh, x, jnp.nan) for x in stats)
          for stats in columns["e"]
        ]
      filt = again.filter if again.filter is not None else (0.0, 0.0, 1.0, 1)
      return (
        _base.PerLeaf.stack(_rows(columns, dtype), part_def, dtype, ROW).rows,
        _base.PerLeaf.stack(counts, part_def, jnp.int32).rows,
        None
        if fixed
        else (
          jnp.asarray(filt[0], state.beta.dtype),
          jnp.asarray(filt[2], state.eta.dtype),
        ),
        token(count),
      )

    def keep(_, old=old):
      return (
        old.values["summary"].rows,
        old.r_undefined.rows,
        None if fixed else (state.beta, state.eta),
        token(state.recorded),
      )

    part_rows, part_counts, filter_record, one = jax.lax.cond(
      due, take, keep, None
    )
    rows.append(part_rows)
    counted.append(part_counts)
    if old.input_prev is not None:

      def stash(_, part=part, old=old, one=one):
        again = part.rerun()
        leaves, part_def = jax.tree.flatten(again.grad)
        h_prevs = _flat(part_def, len(leaves), old.input_prev)
        _, _, _, part_hs, _ = _quantities(
          again, None, h_prevs, track_grad=track_grad
        )
        mine = token(count)
        return part_hs, None if mine is None else mine * one

      def pass_on(_, old=old, one=one):
        return jax.tree.leaves(old.input_prev), one

      part_hs, one = jax.lax.cond(due_next, stash, pass_on, None)
      hs.extend(part_hs)
    ones.append(one)
  stacked = lambda xs: xs[0] if len(xs) == 1 else jnp.concatenate(xs)
  return DiagnosticsState(
    alpha_prev=state.alpha_prev,
    input_prev=None if state.input_prev is None else treedef.unflatten(hs),
    r_undefined=_base.PerLeaf(stacked(counted), treedef),
    beta=state.beta if filter_record is None else filter_record[0],
    eta=state.eta if filter_record is None else filter_record[1],
    values={"summary": _base.PerLeaf(stacked(rows), treedef)},
    count=count,
    recorded=jnp.where(due, count, state.recorded),
    input_at=jnp.where(due_next, count, state.input_at),
  ), ones


def check_blocks(slots: dict, every: Any, every_update: bool) -> None:
  """Refuses what the record cannot describe: a filter whose terms are
  debiased apart (its output is not ``H[g] / s``), and, with
  ``diagnostics_every`` (which rebuilds ``alpha(t-1)`` from the blocks'
  ``last``), a block without ``last``."""
  spec = slots["filter"].facts.filter if slots["filter"] is not None else None
  if spec is not None and isinstance(spec.debias, str):
    raise ValueError(
      f"diagnostics: the filter's debias={spec.debias!r} divides its terms "
      "apart, so its output is not the filter's H[g] / s(t) that the "
      "learning dynamics describe; use debias=True or False, or no "
      "diagnostics."
    )
  oracle = slots["denominator"]
  if oracle is not None and oracle.facts.matrix:
    raise ValueError(
      "diagnostics: the matrix oracle maps matrix leaves as matrices "
      "(their polar factor), which the per-element learning dynamics do not "
      "describe; record without it, or no diagnostics."
    )
  if every_update:
    return
  for name in ("filter", "denominator", "numerator", "window"):
    block = slots[name]
    if block is not None and block.last is None:
      raise ValueError(
        f"diagnostics_every={every!r} rebuilds alpha(t-1) from each "
        f"block's state, but the {name} block {block!r} has no "
        "last(state); give it one (AutoSGMBlock(..., last=...)) or record "
        "every update (diagnostics_every=1)."
      )


def _previous(slots: dict, state: Any) -> Parts:
  """The factors of the last update's alpha, from the blocks' states."""
  parts = {}
  for name, field in (
    ("filter", "s"),
    ("denominator", "d"),
    ("numerator", "a"),
    ("window", "window"),
  ):
    block = slots[name]
    if block is not None:
      parts[field] = block.last(getattr(state, name))
  return Parts(**parts)


def recorder(
  blocks: Callable,
  slots: dict,
  state: DiagnosticsState,
  treedef: Any,
  *,
  track_grad: bool,
  every: Any,
  fixed: bool = False,
) -> Callable:
  """The record of ``diagnostics_every`` for ``backend.run``: from the parts
  of the step (``(updates, state, params)`` each), the new diagnostics state
  and an exact 1 per part (see :func:`record`). ``blocks(updates, state,
  params, realisation)`` runs the blocks."""

  def run(parts: list, realisation: _base.Realisation) -> tuple[Any, list]:
    def part(updates, core, params):
      def rerun():
        return blocks(updates, core, params, realisation)[0]

      return Part(rerun, lambda: _previous(slots, core), core.diagnostics)

    return record(
      [part(*p) for p in parts],
      treedef,
      state,
      track_grad=track_grad,
      every=every,
      fixed=fixed,
      token=realisation.token,
    )

  return run


def _recorded(old: chex.Array, new: Any, fixed: bool) -> chex.Array:
  """The record's pole or gain: one fixed when the optimizer was built
  passes through (init wrote it); an injected one is recorded (it may change
  between updates)."""
  return old if fixed else jnp.asarray(new, old.dtype)


def update(
  signal: _base.Signal,
  state: DiagnosticsState,
  level: str,
  *,
  track_grad: bool,
  fixed: bool = False,
) -> tuple[Any, DiagnosticsState]:
  """The update ``signal.finish()`` and its record, on every update (the
  element level, and the summary level with ``diagnostics_every=1``).

  The new history is taken after everything that reads the old history,
  and the update after the new history and the statistics that read the
  parameters, through ``signal.realisation.after`` (the plain realisation
  leaves the order to the compiler; backend.py, ``ordered_record``, says
  why the CPU one orders them). With
  ``fixed`` the filter's pole and gain were fixed when the optimizer was
  built: init wrote them and they pass through.
  """
  beta, _, eta, _ = (
    signal.filter if signal.filter is not None else (0.0, 0.0, 1.0, 1)
  )
  treedef: Any
  leaves, treedef = jax.tree.flatten(signal.grad)
  n = len(leaves)
  alphas, rs, es, hs, undefined = _quantities(
    signal,
    _flat(treedef, n, state.alpha_prev),
    _flat(treedef, n, state.input_prev),
    track_grad=track_grad,
  )
  keep = _summary if level == "summary" else (lambda x: x)
  rs, es = [keep(x) for x in rs], [keep(x) for x in es]
  after = signal.realisation.after
  # Everything that reads the old history is done before it is replaced ...
  alphas, hs = after((alphas, hs), (rs, es, undefined))
  # ... and everything that reads the parameters before the update exists.
  out = after(signal.finish(), (alphas, hs))
  us = [
    keep(u.astype(a.dtype)) for u, a in zip(treedef.flatten_up_to(out), alphas)
  ]
  columns = dict(alpha=[keep(x) for x in alphas], r=rs, e=es, update=us)
  rows_def = state.r_undefined.treedef  # the whole tree's, or a part's
  if level == "summary":
    summary_dtype = state.values["summary"].rows.dtype
    values = {
      "summary": _base.PerLeaf.stack(
        _rows(columns, summary_dtype),
        rows_def,
        summary_dtype,
        ROW,
      )
    }
  else:
    values = {q: treedef.unflatten(columns[q]) for q in QUANTITIES}
  count = optax.safe_increment(state.count)
  return out, DiagnosticsState(
    alpha_prev=treedef.unflatten(alphas),
    input_prev=None if state.input_prev is None else treedef.unflatten(hs),
    r_undefined=_base.PerLeaf.stack(undefined, rows_def, jnp.int32),
    beta=_recorded(state.beta, beta, fixed),
    eta=_recorded(state.eta, eta, fixed),
    values=values,
    count=count,
    recorded=count,
    input_at=count,
  )


@dataclasses.dataclass(frozen=True)
class Observer:
  """The diagnostics of one ``scale_by_autosgm``: its level, cadence and
  blocks (the slots), and what the record keeps.

  Attributes:
    level: ``"summary"`` or ``"element"``.
    every: ``diagnostics_every`` (an int, or an int32 array when injected).
    slots: the combinator's blocks by slot (None for an empty slot).
    track_grad: keep ``gamma g(t-1)`` for ``e(t)`` (the filter's zero is
      not a plain 0).
    track_decay: keep the decoupled-decay term for ``e(t)``.
    fixed: the filter's pole and gain are numbers fixed when the optimizer
      is built (or there is no filter): init writes them into the state
      and the updates pass them through.
  """

  level: str
  every: Any
  slots: dict
  track_grad: bool
  track_decay: bool
  fixed: bool

  @property
  def every_update(self) -> bool:
    """Recorded with the step by :func:`update`, else by :func:`record`."""
    return every_update(self.level, self.every)

  def init(self, params: Any) -> DiagnosticsState:
    filt = self.slots["filter"]
    spec = None if filt is None else filt.facts.filter
    pole: Any
    gain: Any
    if filt is None:  # H[g] = g: beta = 0, eta = 1
      pole, gain = 0.0, 1.0
    elif spec is None:  # a filter of one's own: recorded as it runs
      pole = gain = jnp.zeros([])
    else:
      pole, gain = spec.beta, spec.eta
    return init(
      params,
      self.level,
      track_grad=self.track_grad,
      track_decay=self.track_decay,
      every=self.every,
      pole=pole,
      gain=gain,
    )

  def update(
    self, signal: _base.Signal, state: DiagnosticsState
  ) -> tuple[Any, DiagnosticsState]:
    return update(
      signal,
      state,
      self.level,
      track_grad=self.track_grad,
      fixed=self.fixed,
    )

  def recorder(
    self, blocks: Callable, state: DiagnosticsState, updates: Any
  ) -> Callable:
    return recorder(
      blocks,
      self.slots,
      state,
      jax.tree.structure(updates),
      track_grad=self.track_grad,
      every=self.every,
      fixed=self.fixed,
    )


def observer(
  slots: dict, level: Optional[str], every: Any
) -> Optional[Observer]:
  """The :class:`Observer` for ``diagnostics=level`` and
  ``diagnostics_every=every`` (checked), or None when they are off."""
  every = check_level(level, every)
  if level is None:
    return None
  check_blocks(slots, every, every_update(level, every))
  _base.register_with_flax()  # (its records, for flax.serialization)
  filt, decay = slots["filter"], slots["decay"]
  coupled = decay is not None and decay.kind == "coupled_decay"
  spec = None if filt is None else filt.facts.filter
  fixed = filt is None or (
    spec is not None
    and _base.is_number(spec.beta)
    and _base.is_number(spec.eta)
  )
  return Observer(
    level=level,
    every=every,
    slots=slots,
    track_grad=filt is not None and not filt.facts.zero_is_zero,
    track_decay=decay is not None and not coupled and not decay.facts.identity,
    fixed=fixed,
  )
