"""The combinator ``scale_by_autosgm`` and the one-liner ``autosgm``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from autosgm_optax import _base
from autosgm_optax import _diagnostics
from autosgm_optax import _sequence
from autosgm_optax._decay import Mask, coupled_decay, decoupled_decay
from autosgm_optax._denominator import moment_denominator
from autosgm_optax._filter import lowpass_filter
from autosgm_optax._learning_rate import scale_by_learning_rate
from autosgm_optax._numerator import ESTIMATORS, correlation_numerator
from autosgm_optax._window import Window, as_window_block


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
      if slots[name] is not None and slots[name].last is None:
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
    gradient and the parameters wait for (see _sequence); ``after``: the
    summary record's exact 1, which the states and the parameters wait for.
    Every kernel of the step reads a state or the parameters, so all of them
    run after the record, and XLA copies no donated buffer (measured: the
    steps between records 1.04x the step without diagnostics at 10M
    parameters, 1.08x at 1M). The extra factors change how XLA fuses the
    step: the update is the one without diagnostics up to float32 rounding
    (about 1e-7 relative per step; leaving the denominator's state out
    kept it bit for bit but made XLA copy that state, 1.22x)."""
    if one is not None:
      updates = _sequence.times(updates, one)
    if after is not None:  # the blocks' per-element buffers (a scalar XLA
      # copies for nothing; every multiplication of one is a kernel)
      state = state._replace(**{
          name: jax.tree.map(
              lambda x: _sequence.times(x, after) if jnp.size(x) > 1 else x,
              getattr(state, name))
          for name in slots})
    both = one if after is None else after if one is None else one * after
    if both is not None and params is not None:
      params = _sequence.times(params, both)
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
            _sequence.times((updates, state, params), one))
        return blocks(*args)[0]
      return _diagnostics.Part(
          rerun, lambda: previous(state),
          jax.tree.leaves(state.diagnostics.values),
          state.diagnostics.input_prev,
          jax.tree.leaves(state.diagnostics.r_undefined))

    if sequenced:
      split = lambda tree, i: None if tree is None else _sequence.split(
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
    sequenced = numerator is not None and _sequence.enabled(leaves)
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
      # Leaf by leaf (see _sequence): every block and the diagnostics see a
      # tree that holds one leaf (the others None), in the parameters'
      # order.
      outs, states, one = [], [], None
      for i in range(len(leaves)):
        g = _sequence.split(updates, treedef, i)
        p = None if params is None else _sequence.split(params, treedef, i)
        out, new = run(g, _sequence.split(state, treedef, i), p, one,
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
        one = _sequence.exact_one(token, one)
        outs.append(out)
        states.append(new)
      out = _sequence.merge(outs, updates, treedef)
      new_state = _sequence.merge(states, state, treedef)
    if diagnostics_state is not None:
      new_state = new_state._replace(diagnostics=diagnostics_state)
    return _base.output_dtype(out, updates, explicit_dtypes), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def autosgm(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: Any = 0.9,
    gamma: Any = 0.0,
    eta: Optional[Any] = None,
    debias: bool = True,
    denominator: bool = True,
    moment_beta: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    numerator: str = "unity",
    numerator_beta: Any = 0.9999,
    numerator_average: bool = True,
    numerator_smoothing: Optional[Any] = 0.1,
    numerator_keep_axes: tuple[int, ...] = (),
    numerator_mask: Mask = None,
    huber_k: Any = 4.0,
    window: Optional[Window] = None,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    decay: str = "decoupled",
    decay_factor: Any = 1.0,
    weight_decay_mask: Mask = None,
    maximize: bool = False,
    filter_dtype: Optional[Any] = None,
    diagnostics: Optional[str] = None,
    diagnostics_every: int = 1,
) -> optax.GradientTransformationExtraArgs:
  r"""AutoSGM: a lowpass filter and an iteration-dependent learning rate.

  .. math::
    w_{t+1} = w_t - \mu_t \, F_t \, \frac{a_t}{d_t} H[g]_t
              \;(- \mu_t F_t a_t c_\rho \rho_t w_t),
    \qquad H(z) = \eta \frac{1 - \gamma z^{-1}}{1 - \beta z^{-1}}

  with the filter ``H`` (:func:`lowpass_filter`), the denominator ``d``
  (:func:`moment_denominator`, the debiased RMS of the raw gradient), the
  numerator ``a`` (:func:`correlation_numerator`), the window ``F``
  (:func:`raised_cosine_window` or any schedule) and the learning rate
  ``mu``, applied last and once (:func:`scale_by_learning_rate`). It is
  ``chain(scale_by_autosgm(...), scale_by_learning_rate(learning_rate))``.

  With its defaults ``autosgm(lr)`` is bit for bit ``optax.adam(lr)``;
  ``weight_decay=w`` makes it ``optax.adamw(lr, weight_decay=w)``: for
  float32 and float64 parameters. For bfloat16 and float16 parameters it
  keeps float32 state (``presets.adam`` keeps Optax's dtypes and is bit for
  bit there too).

  Updates come in the gradients' dtype, whatever the state's (a chosen
  ``filter_dtype`` promotes them, as ``optax.adam``'s ``mu_dtype`` does),
  and the state's shapes and dtypes never change across updates.

  Under ``optax.inject_hyperparams`` every number becomes an array, and the
  inner state is the plain one's (the same layout and dtypes; values to the
  rounding of array against Python numbers): pass
  ``hyperparam_dtype=jnp.float32`` for low-precision parameters (bfloat16
  rounds 0.999 to 1), and ``filter_dtype`` (a dtype is callable) and a
  callable ``weight_decay_mask`` through ``static_args``. A plain
  ``weight_decay=0.0`` does no work and reads no parameters; an array 0
  multiplies (same numbers). A schedule given for ``window`` is evaluated by
  the wrapper and arrives as a number. With diagnostics on, the
  diagnostics' own state depends on which numbers are plain: a plain
  ``gamma=0`` without decay keeps no gradient history, a plain
  ``diagnostics_every=1`` keeps ``alpha(t-1)`` per element; injected, they
  are arrays and the history is kept (pass them through ``static_args`` to
  keep the plain layout).

  A non-finite gradient propagates into the state, as in Optax: wrap with
  ``optax.apply_if_finite`` to skip such steps.

  Args:
    learning_rate: ``mu > 0``, a number or an ``optax.Schedule``.
    beta: the filter's pole, ``0 <= beta < 1``.
    gamma: the filter's zero, ``gamma < beta`` (or ``beta = gamma = 0``).
      0.5528 at ``beta = 0.9`` reduces variance per unit gain.
    eta: the filter's gain ``> 0``; default ``(1 - beta) / (1 - gamma)``.
    debias: debias the filter exactly (the denominator is always debiased).
    denominator: divide by the debiased RMS of the gradient (False: ``d=1``).
    moment_beta: pole of the denominator's second moment, ``[0, 1)``.
    eps: added to the denominator outside the square root, ``>= 0``.
    eps_root: added inside the square root, ``>= 0``.
    numerator: ``"unity"``, ``"moment"``, ``"correlation"`` or
      ``"robust_correlation"``.
    numerator_beta: pole of the numerator's estimators, ``[0, 1)``.
    numerator_average: average the numerator over each leaf.
    numerator_smoothing: pole of the smoothing of the average, or None.
    numerator_keep_axes: leading axes the average keeps (stacked layers).
    numerator_mask: None (every leaf estimated), a tree of bools like the
      parameters, or a callable returning one (e.g.
      :func:`default_weight_decay_mask`, which leaves out biases and
      normalisation scales); leaves where it is False use the unity
      numerator ``a = 1``. Needs an estimated numerator. Under
      ``optax.inject_hyperparams`` pass a callable through
      ``static_args=("numerator_mask",)``.
    huber_k: the robust estimator's clip multiple, ``> 0``.
    window: a window block, an ``optax.Schedule`` or a number; None for none.
    weight_decay: ``rho >= 0``, a number or a schedule.
    decay: ``"decoupled"`` (AdamW's, scaled by ``decay_factor``) or
      ``"coupled"`` (L2, added to the gradient).
    decay_factor: ``c_rho >= 0`` of decoupled decay (1 is AdamW's).
    weight_decay_mask: a tree of bools like the parameters, or a callable
      returning one (e.g. :func:`default_weight_decay_mask`); False leaves
      are not decayed. Under ``optax.inject_hyperparams`` pass a callable
      through ``static_args=("weight_decay_mask",)``.
    maximize: ascend instead of descend.
    filter_dtype: dtype of the filter's buffer; None for the parameters'
      dtype but at least float32 (as every other buffer, always). bfloat16
      halves the filter's memory; the moment and numerator EMAs stay float32
      (with pole 0.999 a bfloat16 EMA never moves).
    diagnostics: None, ``"summary"`` or ``"element"``: record the learning
      dynamics in the state (see :func:`scale_by_autosgm`); read them with
      :func:`learning_dynamics`.
    diagnostics_every: record the summary on every this-many updates only
      (see :func:`scale_by_autosgm`).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import autosgm_optax as asgm
    >>> tx = asgm.autosgm(1e-1, gamma=0.5528, numerator="correlation")
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> loss = lambda w: jnp.sum(w ** 2)
    >>> for _ in range(3):
    ...   grads = jax.grad(loss)(params)
    ...   updates, state = tx.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)
  """
  if not isinstance(learning_rate, bool) and _base.is_number(learning_rate):
    _base.check_range("learning_rate", learning_rate, 0.0, None,
                      low_open=True)
  else:
    _base.check_type("learning_rate", learning_rate, allow_schedule=True)
  _base.check_range("weight_decay", weight_decay, 0.0, None,
                    allow_schedule=True)
  _base.check_choice("decay", decay, ("decoupled", "coupled"))
  _base.check_range("decay_factor", decay_factor, 0.0, None)
  _base.check_choice("numerator", numerator, ESTIMATORS)
  if numerator_mask is not None and numerator == "unity":
    raise ValueError(
        "numerator_mask is given but numerator='unity' estimates nothing: "
        "choose numerator='moment', 'correlation' or 'robust_correlation', "
        "or leave numerator_mask=None.")
  for name, flag in (("debias", debias), ("denominator", denominator),
                     ("maximize", maximize)):
    if not isinstance(flag, bool):
      raise TypeError(f"{name}={flag!r} must be a bool.")

  _base.check_dtype_policy("filter_dtype", filter_dtype)
  filter_block = lowpass_filter(beta, gamma, eta, debias=debias,
                                dtype=filter_dtype)
  denominator_block = moment_denominator(
      moment_beta, eps, eps_root) if denominator else None
  numerator_block = None if numerator == "unity" else correlation_numerator(
      numerator, beta=numerator_beta, moment_beta=moment_beta,
      huber_k=huber_k, average=numerator_average,
      smoothing=numerator_smoothing, keep_axes=numerator_keep_axes, eps=eps,
      mask=numerator_mask)
  # Always a decay block, so that the state has one layout whatever the
  # rate (an array rate under inject_hyperparams); a plain 0 does no work
  # and reads no parameters.
  if decay == "coupled":
    decay_block = coupled_decay(weight_decay, mask=weight_decay_mask)
  else:
    decay_block = decoupled_decay(weight_decay, decay_factor,
                                  mask=weight_decay_mask)
  core = scale_by_autosgm(
      filter=filter_block, denominator=denominator_block, decay=decay_block,
      numerator=numerator_block, window=window, diagnostics=diagnostics,
      diagnostics_every=diagnostics_every)
  return optax.chain(
      core, scale_by_learning_rate(learning_rate, flip_sign=not maximize))
