"""The combinator :func:`scale_by_autosgm`: the blocks in their slots, in the
order they run, on one shared signal."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import Optional

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


def scale_by_autosgm(
  filter: Optional[_base.AutoSGMBlock] = None,  # pylint: disable=redefined-builtin
  denominator: Optional[_base.AutoSGMBlock] = None,
  decay: Optional[_base.AutoSGMBlock] = None,
  numerator: Optional[_base.AutoSGMBlock] = None,
  window: Optional[Window] = None,
  *,
  diagnostics: Optional[str] = None,
  diagnostics_every: Optional[int] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Wire AutoSGM blocks into the learning-rate-free AutoSGM update.

  .. math::
    u_t = F_t \, a_t \left(\frac{H[g]_t}{d_t} + c_\rho \rho_t w_t\right)

  The blocks run in one order, whatever the order of the arguments: coupled
  decay, filter, denominator, decoupled decay, numerator, window, on one
  shared signal. The denominator takes its statistics from the raw gradient
  and divides the filter's output; the numerator reads ``g / d``,
  ``H[g] / d`` and the parameters; the decoupled-decay term is scaled by the
  numerator and the window but never seen by the numerator's estimators. An
  ``optax.chain`` would hand each block only the previous one's output
  (``optax.chain(lowpass_filter(), moment_denominator())`` normalises the
  *filtered* signal, another algorithm): hence named slots. An empty slot
  (None) costs nothing. Like ``optax.scale_by_adam`` the result holds no
  learning rate: chain :func:`autosgm_optax.scale_by_learning_rate`.

  The mathematics: docs/algorithm.md, section 1.

  Args:
    filter: a :func:`lowpass_filter` block, or None (``H[g] = g``).
    denominator: a :func:`moment_denominator` block, or None (``d = 1``).
    decay: a :func:`decoupled_decay` or :func:`coupled_decay` block, or None.
    numerator: a :func:`correlation_numerator` block, or None (``a = 1``).
    window: a window block (e.g. :func:`raised_cosine_window`), an
      ``optax.Schedule``, a number, or None (``F = 1``).
    diagnostics: None, ``"summary"`` (per leaf: sup, mean and std of the
      effective learning rate, its ratio, the LTV input and the update) or
      ``"element"`` (per element), read with
      :func:`autosgm_optax.learning_dynamics`. They change no bit of the
      updates or of the other state that ``update`` returns (its scope:
      docs/guide.md, learning dynamics).
    diagnostics_every: with ``"summary"``, record only the updates whose
      number is a multiple of this; None (the default) records every
      update, as 1 does. A number given here is injected by
      ``optax.inject_hyperparams`` (and may then change between steps); the
      default None is not, so an injected optimizer keeps the plain one's
      state. See
      ``autosgm_optax._src.diagnostics`` for how, and
      docs/performance.md for what it costs.

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
  slots = _base.check_slots(
    decay=decay,
    filter=filter,
    denominator=denominator,
    numerator=numerator,
    window=None if window is None else as_window_block(window),
  )
  coupled = decay is not None and decay.kind == "coupled_decay"
  order = (  # (the field of the state, its block), in the order they run
    ("decay", decay if coupled else None),
    ("filter", filter),
    ("denominator", denominator),
    ("decay", None if coupled else decay),
    ("numerator", numerator),
    ("window", slots["window"]),
  )
  observer = _diagnostics.observer(slots, diagnostics, diagnostics_every)

  def init_fn(params):
    states = {
      name: optax.EmptyState() if block is None else block.init(params)
      for name, block in slots.items()
    }
    observed = optax.EmptyState() if observer is None else observer.init(params)
    return ScaleByAutoSGMState(**states, diagnostics=observed)

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
    if observer is None or not observer.every_update:
      return signal.finish(), ScaleByAutoSGMState(**new_state)
    out, new_state["diagnostics"] = observer.update(signal, state.diagnostics)
    return out, ScaleByAutoSGMState(**new_state)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    record = None
    if observer is not None and not observer.every_update:
      record = observer.recorder(blocks, state.diagnostics, updates)
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
    blocks_states = [(b, getattr(new_state, n)) for n, b in slots.items()]
    return _base.output_dtype(out, updates, blocks_states), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
