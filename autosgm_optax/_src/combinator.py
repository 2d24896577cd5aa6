"""The combinator :func:`scale_by_autosgm`: the blocks in their slots, in the
order they run, on one shared signal."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import Optional

import jax
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
      f"library's {slot} block factory."
    )
  if block.kind not in _SLOT_KINDS[slot]:
    raise TypeError(
      f"{slot}= got a {block.kind!r} block; the {slot} slot takes "
      f"{' or '.join(_SLOT_KINDS[slot])} blocks."
    )


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

  On one CPU device the step is scheduled for XLA there (the filter's
  output from its new state, a numerator's configuration leaf by leaf: see
  ``autosgm_optax/_src/backend.py``); the numbers are those of the plain
  program up to float32 rounding, and the presets' are Optax's bit for bit.

  Args:
    filter: a :func:`lowpass_filter` block, or None (``H[g] = g``).
    denominator: a :func:`moment_denominator` block, or None (``d = 1``).
    decay: a :func:`decoupled_decay` or :func:`coupled_decay` block, or None.
    numerator: a :func:`correlation_numerator` block, or None (``a = 1``).
    window: a window block (e.g. :func:`raised_cosine_window`), an
      ``optax.Schedule``, a number, or None (``F = 1``).
    diagnostics: None (off: no added state, no added work), ``"summary"``
      (per leaf: sup, mean and standard deviation of the effective learning
      rate, its ratio, the LTV input and the update) or ``"element"`` (the
      same per element), recorded in the state and read with
      :func:`autosgm_optax.learning_dynamics`. They observe: the updates and
      every other state buffer are bit for bit those without diagnostics.
    diagnostics_every: with ``diagnostics="summary"``, record only the
      updates whose number (1, 2, ...) is a multiple of this, as one logs
      every k steps (between records ``learning_dynamics`` reports NaN and
      ``recorded=False``). The record is taken in a ``lax.cond`` from the
      step's inputs, ``alpha(t-1)`` rebuilt from the blocks' ``last`` (a
      block of one's own without ``last`` is refused). Injectable under
      ``optax.inject_hyperparams`` without recompiling. The costs and the
      details are in :mod:`autosgm_optax._src.diagnostics` and
      docs/performance.md.

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
  for slot, block in (
    ("filter", filter),
    ("denominator", denominator),
    ("decay", decay),
    ("numerator", numerator),
  ):
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
  slots = dict(
    decay=decay,
    filter=filter,
    denominator=denominator,
    numerator=numerator,
    window=window,
  )
  facts = {
    name: block.facts for name, block in slots.items() if block is not None
  }
  track_grad = filter is not None and not filter.facts.zero_is_zero
  track_decay = decay is not None and not coupled and not decay.facts.identity
  every_update = diagnostics is not None and _diagnostics.every_update(
    diagnostics, diagnostics_every
  )
  if diagnostics is not None:
    _diagnostics.check_blocks(slots, diagnostics_every, every_update)

  def init_fn(params):
    states = {
      name: optax.EmptyState() if block is None else block.init(params)
      for name, block in slots.items()
    }
    states["diagnostics"] = optax.EmptyState()
    if diagnostics is not None:
      states["diagnostics"] = _diagnostics.init(
        params,
        diagnostics,
        track_grad=track_grad,
        track_decay=track_decay,
        every=diagnostics_every,
      )
    return ScaleByAutoSGMState(**states)

  def blocks(updates, state, params, realisation):
    """The blocks in their order on one signal: the signal and new states."""
    signal = _base.Signal.from_gradient(updates, realisation)
    new_state = state._asdict()
    for name, block in order:
      if block is not None:
        signal, new_state[name] = block.apply(signal, new_state[name], params)
    return signal, new_state

  def step(updates, state, params, realisation):
    signal, new_state = blocks(updates, state, params, realisation)
    if not every_update:
      return signal.finish(), ScaleByAutoSGMState(**new_state)
    out, new_state["diagnostics"] = _diagnostics.update(
      signal, state.diagnostics, diagnostics, track_grad=track_grad
    )
    return out, ScaleByAutoSGMState(**new_state)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    record = None
    if diagnostics is not None and not every_update:
      # diagnostics_every: a record taken before the step, from its inputs.
      record = _diagnostics.recorder(
        blocks,
        slots,
        state.diagnostics,
        jax.tree.structure(updates),
        track_grad=track_grad,
        every=diagnostics_every,
      )
    out, new_state, recorded = backend.run(
      step,
      updates,
      state,
      params,
      leaf_by_leaf=numerator is not None,
      record=record,
    )
    if recorded is not None:
      new_state = new_state._replace(diagnostics=recorded)
    explicit = [f.explicit_dtype for f in facts.values()]
    return _base.output_dtype(out, updates, explicit), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
