"""The combinator :func:`scale_by_autosgm`: the blocks in their slots, in the
order they run, on one shared signal."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from autosgm_optax._src import backend
from autosgm_optax._src import base as _base
from autosgm_optax._src import diagnostics as _diagnostics
from autosgm_optax._src.window import Window
from autosgm_optax._src.window import as_window_block


class ScaleByAutoSGMState(NamedTuple):
  """State of :func:`scale_by_autosgm`: one state per slot, in the order the
  slots run (``optax.EmptyState()`` for an empty slot)."""

  decay: Any  # WeightDecayState
  filter: Any  # LowpassFilterState
  denominator: Any  # MomentDenominatorState
  numerator: Any  # CorrelationNumeratorState
  window: Any  # WindowState
  diagnostics: Any  # DiagnosticsState, EmptyState() when diagnostics are off


_SLOT_KINDS = {
    "decay": ("coupled_decay", "decoupled_decay"),
    "filter": ("filter",),
    "denominator": ("denominator",),
    "numerator": ("numerator",),
    "window": ("window",),
}


def _check_slot(slot: str, block: Any) -> None:
  if block is None:
    return
  if not isinstance(block, _base.AutoSGMBlock):
    raise TypeError(
        f"{slot}={block!r} is not an AutoSGM block: build it with the "
        f"library's {slot} block factory.")
  if block.kind not in _SLOT_KINDS[slot]:
    raise TypeError(
        f"{slot}= got a {block.kind!r} block; the {slot} slot takes "
        f"{' or '.join(_SLOT_KINDS[slot])} blocks.")


def scale_by_autosgm(
    filter: Optional[_base.AutoSGMBlock] = None,  # pylint: disable=redefined-builtin
    denominator: Optional[_base.AutoSGMBlock] = None,
    decay: Optional[_base.AutoSGMBlock] = None,
    numerator: Optional[_base.AutoSGMBlock] = None,
    window: Optional[Window] = None,
    *,
    diagnostics: Optional[str] = None,
    diagnostics_every: int = 1,
) -> optax.GradientTransformationExtraArgs:
  r"""Wire AutoSGM blocks into the learning-rate-free AutoSGM update.

  .. math::
    u_t = F_t \, a_t \left(\frac{H[g]_t}{d_t} + c_\rho \rho_t w_t\right)

  The blocks run in the only order that is right, whatever the order of the
  arguments: coupled decay, filter, denominator, decoupled decay, numerator,
  window. They share one per-step context: the denominator takes its
  statistics from the raw gradient (after coupled decay) and divides the
  filter's output; the numerator reads ``g / d``, ``vbar = H[g] / d`` and the
  parameters; the decoupled-decay term is scaled by the numerator and the
  window but never seen by the numerator's estimators. This is why the
  blocks go in named slots rather than an ``optax.chain``: a chain would hand
  each block only the previous block's output (``optax.chain(lowpass_filter(),
  moment_denominator())`` normalises the *filtered* signal, a different
  algorithm).

  Like ``optax.scale_by_adam``, the result holds no learning rate; chain it
  with :func:`autosgm_optax.scale_by_learning_rate` (as
  :func:`autosgm_optax.autosgm` does). An empty slot (None) costs nothing.

  On a single CPU device, a configuration with a numerator runs the blocks
  leaf by leaf, each leaf after the previous one, so that XLA keeps a leaf in
  cache between its kernels (1.4x -> 1.2x a floor kernel at 10M parameters,
  ``benchmarks/step_time.py``). The numbers are those of the whole-tree
  program up to float32 rounding; elsewhere, and for the presets, the blocks
  run on the whole tree.

  Args:
    filter: a :func:`lowpass_filter` block, or None (``H[g] = g``).
    denominator: a :func:`moment_denominator` block, or None (``d = 1``).
    decay: a :func:`decoupled_decay` or :func:`coupled_decay` block, or None.
    numerator: a :func:`correlation_numerator` block, or None (``a = 1``).
    window: a window block (e.g. :func:`raised_cosine_window`), an
      ``optax.Schedule``, a number, or None (``F = 1``).
    diagnostics: None (off: no added state, no added work), ``"summary"``
      (per-leaf sup, mean and standard deviation of the effective learning
      rate, its ratio, the margin, the LTV input and the update, recorded in
      the state) or ``"element"`` (the same per element). Both keep the
      previous step's per-element ``alpha`` and, when the filter has a zero
      or decoupled decay is on, one more per-element buffer, the part of the
      LTV input that comes from the previous step (with
      ``diagnostics_every > 1`` only the latter). Read them with
      :func:`autosgm_optax.learning_dynamics`.
    diagnostics_every: with ``diagnostics="summary"``, record only the
      updates whose number (1, 2, ...) is a multiple of this, as one logs
      every k steps. The record is taken in a ``lax.cond`` before the
      update, from the step's inputs: ``alpha(t-1)`` is rebuilt from the
      blocks' states (no per-element ``alpha`` is kept) and the history
      for ``e`` is written on the update before a record only, so ``r``
      and ``e`` of a recorded update are exact. The other updates run the
      plain step (``benchmarks/step_time.py``, 2-core CPU: 1.02-1.25x the
      step without diagnostics, against about 3x for a record on every
      update; a record itself costs 3.5-5 steps, so every 35 or more
      updates the average stays within 1.3x). Between
      records :func:`autosgm_optax.learning_dynamics` reports NaN and
      ``recorded=False``. The update equals the one without diagnostics up
      to float32 rounding (XLA fuses the step around the record
      differently). Under ``optax.inject_hyperparams`` it is injected like
      any number and may change between steps without recompiling; it
      then always takes the conditional path (pass
      ``static_args=("diagnostics_every",)`` for the every-update path
      with 1), the first record after a change may lack ``e`` (NaN: the
      history of the update before was not kept), and ``alpha(t-1)`` is
      rebuilt with the current values of injected filter and denominator
      hyperparameters. Blocks of your own need ``last`` (see
      :class:`autosgm_optax.AutoSGMBlock`); one without is refused here.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; extra update
    arguments (``value=loss``, ...) are accepted and ignored.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import autosgm_optax as asgm
    >>> core = asgm.scale_by_autosgm(
    ...     filter=asgm.lowpass_filter(0.9, gamma=0.5528),
    ...     denominator=asgm.moment_denominator(),
    ...     numerator=asgm.correlation_numerator("correlation"),
    ...     window=asgm.raised_cosine_window(1000),
    ...     decay=asgm.decoupled_decay(1e-4))
    >>> tx = optax.chain(core, asgm.scale_by_learning_rate(1e-2))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
  """
  for slot, block in (("filter", filter), ("denominator", denominator),
                      ("decay", decay), ("numerator", numerator)):
    _check_slot(slot, block)
  diagnostics_every = _diagnostics.check_level(diagnostics, diagnostics_every)
  if window is not None:
    window = as_window_block(window)

  coupled = decay is not None and decay.kind == "coupled_decay"
  # (field of the state, block), in the order the blocks run.
  order = (
      ("decay", decay if coupled else None),
      ("filter", filter),
      ("denominator", denominator),
      ("decay", None if coupled else decay),
      ("numerator", numerator),
      ("window", window),
  )
  slots = dict(decay=decay, filter=filter, denominator=denominator,
               numerator=numerator, window=window)

  track_grad = filter is not None and not filter.info["zero_is_zero"]
  # A state dtype the user chose gives the update the dtype arithmetic with
  # it gives (as optax.adam(mu_dtype=...)); else the gradients' dtype.
  explicit_dtypes = [block.info["explicit_dtype"] for block in slots.values()
                     if block is not None]
  track_decay = (decay is not None and not coupled
                 and not decay.info["identity"])

  def init_fn(params):
    states = {name: optax.EmptyState() if block is None else block.init(params)
              for name, block in slots.items()}
    states["diagnostics"] = optax.EmptyState() if diagnostics is None else (
        _diagnostics.init(params, diagnostics, track_grad=track_grad,
                          track_decay=track_decay, every=diagnostics_every))
    return ScaleByAutoSGMState(**states)

  every_update = diagnostics is not None and _diagnostics.every_update(
      diagnostics, diagnostics_every)
  if diagnostics is not None and not every_update:
    for name in ("filter", "denominator", "numerator", "window"):
      block = slots[name]
      if block is not None and block.last is None:
        raise ValueError(
            f"diagnostics_every={diagnostics_every!r} rebuilds alpha(t-1) "
            f"from each block's state, but the {name} block "
            f"{slots[name]!r} has no last(state); give it one "
            "(AutoSGMBlock(..., last=...)) or record every update "
            "(diagnostics_every=1).")

  def blocks(updates, state, params):
    signal = _base.Signal.from_gradient(updates)
    new_state = state._asdict()
    for name, block in order:
      if block is not None:
        signal, new_state[name] = block.apply(signal, new_state[name], params)
    return signal, new_state

  def previous(state):
    """The factors of the last update's alpha, from the blocks' states."""
    parts = {}
    for name, field in (("filter", "s"), ("denominator", "d"),
                        ("numerator", "a"), ("window", "window")):
      block = slots[name]
      if block is not None and block.last is not None:
        parts[field] = block.last(getattr(state, name))
    return _diagnostics.Parts(**parts)

  def run(updates, state, params, one=None, after=None):
    """One update. ``one``: an exact 1 from the previous leaf, which the
    gradient and the parameters wait for (see backend); ``after``: the
    summary record's exact 1, which the states and the parameters wait for.
    Every kernel of the step reads a state or the parameters, so all of them
    run after the record, and XLA copies no donated buffer (measured: the
    steps between records 1.04x the step without diagnostics at 10M
    parameters, 1.08x at 1M). The extra factors change how XLA fuses the
    step: the update is the one without diagnostics up to float32 rounding
    (about 1e-7 relative per step; leaving the denominator's state out
    kept it bit for bit but made XLA copy that state, 1.22x)."""
    if one is not None:
      updates = backend.times(updates, one)
    if after is not None:  # the blocks' per-element buffers (a scalar XLA
      # copies for nothing; every multiplication of one is a kernel)
      state = state._replace(**{
          name: jax.tree.map(
              lambda x: backend.times(x, after) if jnp.size(x) > 1 else x,
              getattr(state, name))
          for name in slots})
    both = one if after is None else after if one is None else one * after
    if both is not None and params is not None:
      params = backend.times(params, both)
    signal, new_state = blocks(updates, state, params)
    if not every_update:  # none, or the summary's record: see update_fn
      return signal.finish(), ScaleByAutoSGMState(**new_state)
    out, new_state["diagnostics"] = _diagnostics.update(
        signal, state.diagnostics, diagnostics, track_grad=track_grad)
    return out, ScaleByAutoSGMState(**new_state)

  def record(updates, state, params, leaves, treedef, sequenced):
    """The summary level's record (``diagnostics_every``), taken before the
    update: its state and the exact 1 the update waits for."""
    def part(updates, state, params):
      def rerun(one):
        args = (updates, state, params) if one is None else (
            backend.times((updates, state, params), one))
        return blocks(*args)[0]
      return _diagnostics.Part(
          rerun, lambda: previous(state),
          jax.tree.leaves(state.diagnostics.values),
          state.diagnostics.input_prev,
          jax.tree.leaves(state.diagnostics.r_undefined))

    if sequenced:
      split = lambda tree, i: None if tree is None else backend.split(
          tree, treedef, i)
      parts = [part(split(updates, i), split(state, i), split(params, i))
               for i in range(len(leaves))]
    else:
      parts = [part(updates, state, params)]
    return _diagnostics.record(parts, treedef, state.diagnostics,
                               track_grad=track_grad, every=diagnostics_every)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    leaves, treedef = jax.tree.flatten(updates)
    sequenced = numerator is not None and backend.enabled(leaves)
    after = diagnostics_state = None
    if diagnostics is not None and not every_update:
      diagnostics_state, after = record(updates, state, params, leaves,
                                        treedef, sequenced)
    if not sequenced:
      # Without a numerator a leaf has few kernels to keep in cache, and
      # the presets stay one program over the tree, as their Optax twins:
      # XLA rounds a division by a scalar differently in a one-leaf program.
      out, new_state = run(updates, state, params, None,
                           None if after is None else after[0])
    else:
      # Leaf by leaf (see backend): every block and the diagnostics see a
      # tree that holds one leaf (the others None), in the parameters'
      # order.
      outs, states, one = [], [], None
      for i in range(len(leaves)):
        g = backend.split(updates, treedef, i)
        p = None if params is None else backend.split(params, treedef, i)
        out, new = run(g, backend.split(state, treedef, i), p, one,
                       None if after is None else after[i])
        # From the numerator's estimate c: written late in the leaf and to
        # memory anyway (its per-leaf average would make the next leaf wait
        # for a single-threaded reduction).
        token = new.numerator.c
        if diagnostics == "summary" and every_update:
          # ... and from all of the leaf's statistics, so that XLA frees
          # (and reuses) the leaf's temporaries before the next leaf
          # (measured at 10M parameters in 4 leaves: 112 -> 68 MiB of
          # temporaries mapped afresh each step, 4.1x -> 3.5x the step).
          token = (token, _diagnostics.token(jax.tree.leaves(
              new.diagnostics.values)))
        one = backend.exact_one(token, one)
        outs.append(out)
        states.append(new)
      out = backend.merge(outs, updates, treedef)
      new_state = backend.merge(states, state, treedef)
    if diagnostics_state is not None:
      new_state = new_state._replace(diagnostics=diagnostics_state)
    return _base.output_dtype(out, updates, explicit_dtypes), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
