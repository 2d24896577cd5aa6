"""Weight decay: decoupled (AdamW's) and coupled (L2)."""

from __future__ import annotations

from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional
from typing import Union

import chex
import jax
import jax.numpy as jnp
import optax

from autosgm_optax._src import base as _base

Mask = Optional[Union[Any, Callable[[optax.Params], Any]]]


class WeightDecayState(NamedTuple):
  """State of :func:`decoupled_decay` and :func:`coupled_decay`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; evaluates a rate schedule.


def _decay_terms(params: Any, coef: Any, mask: Mask) -> Any:
  """``coef * w`` per leaf; None for leaves the mask exempts."""
  term = lambda p: coef * p
  if mask is None:
    return jax.tree.map(term, params)
  mask_tree = mask(params) if callable(mask) else mask
  return jax.tree.map(
    lambda m, sub: jax.tree.map(term if m else (lambda p: None), sub),
    mask_tree,
    params,
  )


def _decay_block(
  rate: Any,
  factor: Any,
  mask: Mask,
  coupled: bool,
  name: str,
  ascent: bool = False,
) -> _base.AutoSGMBlock:
  _base.check_range("rate", rate, 0.0, None, allow_schedule=True)
  _base.check_range("factor", factor, 0.0, None)
  skip = _base.is_number(rate) and rate == 0

  def init_fn(params):
    del params
    return WeightDecayState(count=jnp.zeros([], jnp.int32))

  def apply_fn(signal, state, params):
    new_state = WeightDecayState(count=optax.safe_increment(state.count))
    if skip:  # a plain zero rate costs nothing and reads no parameters
      return signal, new_state
    _base.require_params(params, name)
    r = _base.evaluate(rate, state.count)
    coef = r if _base.is_number(factor) and factor == 1 else factor * r
    if ascent:  # the step is applied with +mu: the decay still shrinks w
      coef = -coef
    terms = _decay_terms(params, coef, mask)  # in the parameters' dtype,
    # as optax.add_decayed_weights
    if coupled:
      grad = jax.tree.map(
        lambda t, g: g if t is None else g + t,
        terms,
        signal.grad,
        is_leaf=_base._is_none,
      )
      return signal._replace(grad=grad, direction=grad), new_state
    return signal._replace(decay=terms), new_state

  kind = "coupled_decay" if coupled else "decoupled_decay"
  return _base.AutoSGMBlock(
    init_fn, apply_fn, kind=kind, facts=_base.BlockFacts(identity=skip)
  )


def decoupled_decay(
  rate: optax.ScalarOrSchedule,
  factor: Any = 1.0,
  mask: Mask = None,
) -> _base.AutoSGMBlock:
  r"""Decoupled weight decay, added after the normalisation.

  .. math::
    \Delta w_t = -\mu F a \left(\bar v_t + c_\rho \rho_t w_t\right)

  with ``rho = rate`` and ``c_rho = factor``: inside
  :func:`autosgm_optax.scale_by_autosgm` the term is added to the normalised
  filter output and scaled by the numerator and the window, but it is never
  seen by the numerator's estimators. ``factor = 1`` is AdamW's decay; the
  original AutoSGM code uses ``factor = (1 - beta) / (1 - gamma)``. Used
  alone it adds ``factor * rate * w`` to its input, as
  ``optax.add_decayed_weights``.

  The mathematics: docs/algorithm.md, section 6.

  Args:
    rate: the decay rate ``rho >= 0``, a number or an ``optax.Schedule`` of
      the step count (as ``optax.adamw`` allows).
    factor: the explicit factor ``c_rho >= 0``.
    mask: a tree of bools like (or a prefix of) the parameters, or a callable
      returning one from the parameters; ``False`` leaves are not decayed.

  Returns:
    An :class:`AutoSGMBlock` for the ``decay`` slot.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import decoupled_decay
    >>> tx = decoupled_decay(0.1)
    >>> w = jnp.array([1.0, -2.0])
    >>> u, _ = tx.update(jnp.zeros(2), tx.init(w), w)
    >>> u
    Array([ 0.1, -0.2], dtype=float32)
  """
  return _decay_block(rate, factor, mask, coupled=False, name="decoupled_decay")


def coupled_decay(
  rate: optax.ScalarOrSchedule,
  mask: Mask = None,
) -> _base.AutoSGMBlock:
  r"""Coupled (L2) weight decay, added to the gradient before everything.

  .. math::
    g_t \leftarrow g_t + \rho_t w_t

  Inside :func:`autosgm_optax.scale_by_autosgm` it runs first, so the
  filter, the denominator's statistics and the numerator all see the decayed
  gradient. Used alone it adds ``rate * w`` to its input.

  The mathematics: docs/algorithm.md, section 6.

  Args:
    rate: the decay rate ``rho >= 0``, a number or an ``optax.Schedule``.
    mask: a tree of bools like (or a prefix of) the parameters, or a callable
      returning one from the parameters; ``False`` leaves are not decayed.

  Returns:
    An :class:`AutoSGMBlock` for the ``decay`` slot.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import coupled_decay
    >>> tx = coupled_decay(0.5)
    >>> w = jnp.array([1.0, -2.0])
    >>> u, _ = tx.update(jnp.ones(2), tx.init(w), w)
    >>> u
    Array([1.5, 0. ], dtype=float32)
  """
  return _decay_block(rate, 1.0, mask, coupled=True, name="coupled_decay")


#: Leaf names that are never decayed by :func:`default_weight_decay_mask`:
#: Flax's and Equinox's biases and normalisation scales.
NO_DECAY_NAMES = frozenset({"bias", "scale"})


def _key_name(key: Any) -> Optional[str]:
  for attr in ("key", "name"):  # DictKey / FlattenedIndexKey, GetAttrKey
    name = getattr(key, attr, None)
    if isinstance(name, str):
      return name
  return None


def default_weight_decay_mask(params: Any) -> Any:
  """A decay mask that exempts biases and normalisation scales.

  A leaf is decayed when it has at least two dimensions and its name (the
  last dict key or attribute on its path) is not ``"bias"`` or ``"scale"``.
  So kernels and embeddings are decayed, while biases and LayerNorm /
  BatchNorm / RMSNorm scales are not, also when ``nnx.scan`` stacks them
  into matrices (their names give them away) and in Equinox modules, whose
  1-D norm ``weight`` falls to the dimension rule. Works on nested dicts,
  Flax NNX states and any pytree.

  Args:
    params: the parameters (or a tree like them).

  Returns:
    A tree of bools like ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from autosgm_optax import default_weight_decay_mask
    >>> params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
    ...           "norm": {"scale": jnp.ones((4, 2))}}
    >>> default_weight_decay_mask(params)
    {'dense': {'bias': False, 'kernel': True}, 'norm': {'scale': False}}
  """

  def decide(path, leaf):
    names = [_key_name(key) for key in path]
    while names and names[-1] == "value":  # inside a Flax nnx.Variable
      names.pop()
    name = names[-1] if names else None
    return jnp.ndim(leaf) >= 2 and name not in NO_DECAY_NAMES

  return jax.tree_util.tree_map_with_path(decide, params)


def for_ascent(
  rate: Any, factor: Any, mask: Mask, *, coupled: bool
) -> _base.AutoSGMBlock:
  """The decay block of an optimizer that maximises (its step is applied
  with ``+mu``): the term enters with the opposite sign, so that
  maximising ``f`` is minimising ``-f`` with the same decay, which still
  pulls the parameters towards zero.

  Args:
    rate: the decay rate ``rho >= 0``, a number or a schedule.
    factor: ``c_rho`` of decoupled decay (ignored when ``coupled``).
    mask: as :func:`decoupled_decay`'s.
    coupled: coupled (L2) decay rather than decoupled.

  Returns:
    An :class:`AutoSGMBlock` for the ``decay`` slot.
  """
  if coupled:
    return _decay_block(
      rate, 1.0, mask, coupled=True, name="coupled_decay", ascent=True
    )
  return _decay_block(
    rate, factor, mask, coupled=False, name="decoupled_decay", ascent=True
  )
