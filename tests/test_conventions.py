"""Optax's conventions: updates in the gradients' dtype, a state whose
layout never changes, inject_hyperparams that changes only where the numbers
live, and blocks that are ordinary, copyable values."""

import copy
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import presets

LR = 1e-2
SCHEDULE = optax.linear_schedule(LR, LR / 10, 20)

# Every factory of the library, as (factory, keyword arguments, whether it
# supports complex parameters).
FACTORIES = {
    "presets.sgd": (presets.sgd, dict(learning_rate=LR), True),
    "presets.sgd momentum": (presets.sgd, dict(learning_rate=LR,
                                               momentum=0.9), True),
    "presets.phb": (presets.phb, dict(learning_rate=LR), True),
    "presets.nag": (presets.nag, dict(learning_rate=LR), True),
    "presets.adam": (presets.adam, dict(learning_rate=LR), True),
    "presets.adamw": (presets.adamw, dict(learning_rate=LR), True),
    "autosgm adam point": (asgm.autosgm, dict(learning_rate=LR), True),
    "autosgm schedule": (asgm.autosgm, dict(learning_rate=SCHEDULE), True),
    "autosgm zero": (asgm.autosgm, dict(learning_rate=LR, gamma=0.5528),
                     True),
    "autosgm zero decay": (asgm.autosgm, dict(
        learning_rate=LR, gamma=0.5528, weight_decay=1e-2), True),
    "autosgm coupled": (asgm.autosgm, dict(
        learning_rate=LR, weight_decay=1e-2, decay="coupled"), True),
    "autosgm window": (asgm.autosgm, dict(
        learning_rate=LR, window=asgm.raised_cosine_schedule(20)), True),
    "autosgm no denominator": (asgm.autosgm, dict(
        learning_rate=LR, denominator=False, gamma=0.3), True),
    "autosgm moment": (asgm.autosgm, dict(learning_rate=LR,
                                          numerator="moment"), False),
    "autosgm correlation": (asgm.autosgm, dict(
        learning_rate=LR, gamma=0.5528, numerator="correlation",
        weight_decay=1e-2), False),
    "autosgm robust": (asgm.autosgm, dict(
        learning_rate=LR, numerator="robust_correlation",
        numerator_average=False, numerator_smoothing=None), False),
    "autosgm diagnostics": (asgm.autosgm, dict(
        learning_rate=LR, gamma=0.5528, weight_decay=1e-2,
        diagnostics="summary"), False),
    "autosgm bf16 filter": (asgm.autosgm, dict(
        learning_rate=LR, filter_dtype=jnp.bfloat16), True),
    "lowpass_filter": (asgm.lowpass_filter, dict(beta=0.9, gamma=0.5), True),
    "moment_denominator": (asgm.moment_denominator, dict(), True),
    "correlation_numerator": (asgm.correlation_numerator, dict(), False),
    "decoupled_decay": (asgm.decoupled_decay, dict(rate=1e-2), True),
    "coupled_decay": (asgm.coupled_decay, dict(rate=1e-2), True),
    "scale_by_window": (asgm.scale_by_window, dict(window=0.5), True),
    "raised_cosine_window": (asgm.raised_cosine_window, dict(length=20),
                             True),
    "scale_by_learning_rate": (asgm.scale_by_learning_rate,
                               dict(learning_rate=LR), True),
}

# Injectable factories (a window block takes integers that shape it: its
# length is structural, so it is injected as a schedule through autosgm).
INJECTABLE = sorted(k for k in FACTORIES if k != "raised_cosine_window")

# The Optax twins of the presets: their update dtypes are the twins'.
TWINS = {
    "presets.sgd": lambda: optax.sgd(LR),
    "presets.sgd momentum": lambda: optax.sgd(LR, 0.9),
    "presets.phb": lambda: optax.sgd(LR, 0.9),
    "presets.nag": lambda: optax.sgd(LR, 0.9, nesterov=True),
    "presets.adam": lambda: optax.adam(LR),
    "presets.adamw": lambda: optax.adamw(LR),
}

REAL = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
COMPLEX = (jnp.complex64, jnp.complex128)


def _problem(dtype):
  rng = np.random.default_rng(0)
  def make(shape):
    x = rng.normal(size=shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
      x = x + 1j * rng.normal(size=shape)
    return jnp.asarray(x, dtype)
  params = {"w": make((4, 3)), "b": make((3,))}
  grads = {"w": make((4, 3)), "b": make((3,))}
  return params, grads


def _avals(tree):
  return jax.tree.map(lambda x: (x.shape, jnp.dtype(x.dtype)), tree)


def _needs_x64(dtype):
  return jnp.dtype(dtype) in (jnp.float64, jnp.complex128)


@pytest.mark.parametrize("dtype", REAL + COMPLEX,
                         ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_updates_keep_the_gradients_dtype_and_the_state_its_layout(
    name, dtype, request):
  if _needs_x64(dtype):
    request.getfixturevalue("enable_x64")
  factory, kwargs, supports_complex = FACTORIES[name]
  if jnp.issubdtype(dtype, jnp.complexfloating) and not supports_complex:
    pytest.skip("the correlation numerators refuse complex parameters")
  tx = factory(**kwargs)
  params, grads = _problem(dtype)
  if name == "autosgm bf16 filter" and jnp.issubdtype(
      dtype, jnp.complexfloating):  # a real state would drop the imaginary
    with pytest.raises(TypeError, match="imaginary part"):  # part
      tx.init(params)
    return
  state = tx.init(params)
  updates, new_state = tx.update(grads, state, params)
  if name in TWINS:  # the presets keep their twins' dtypes
    twin = TWINS[name]()
    expected, _ = twin.update(grads, twin.init(params), params)
    assert _avals(updates) == _avals(expected)
  if name == "autosgm bf16 filter":  # a chosen state dtype promotes
    wanted = jnp.promote_types(dtype, jnp.bfloat16)
  else:
    wanted = jnp.dtype(dtype)
  assert _avals(updates) == _avals(
      jax.tree.map(lambda g: g.astype(wanted), grads))
  # The state's layout never changes, and a step under lax.cond traces.
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert _avals(new_state) == _avals(state)
  skip = params if wanted == dtype else jax.tree.map(jnp.zeros_like, updates)

  @jax.jit
  def maybe_step(take, params, state):
    return jax.lax.cond(take, lambda: tx.update(grads, state, params),
                        lambda: (skip, state))

  u, s = maybe_step(True, params, state)
  assert _avals(s) == _avals(state)
  for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(updates)):
    np.testing.assert_allclose(np.asarray(x, np.complex128),
                               np.asarray(y, np.complex128),
                               rtol=4 * float(jnp.finfo(dtype).eps))


def test_an_explicit_state_dtype_promotes_as_in_optax():
  # As optax.adam(mu_dtype=float32) returns float32 updates for bfloat16
  # parameters, a state dtype the user chose enters the update's dtype.
  params, grads = _problem(jnp.bfloat16)
  for ours, twin in ((presets.adam(LR, mu_dtype=jnp.float32),
                      optax.adam(LR, mu_dtype=jnp.float32)),
                     (presets.sgd(LR, 0.9, accumulator_dtype=jnp.float32),
                      optax.sgd(LR, 0.9, accumulator_dtype=jnp.float32))):
    u, _ = ours.update(grads, ours.init(params), params)
    v, _ = twin.update(grads, twin.init(params), params)
    assert _avals(u) == _avals(v) == _avals(
        jax.tree.map(lambda g: g.astype(jnp.float32), grads))
  tx = asgm.autosgm(LR, filter_dtype=jnp.float32)
  u, _ = tx.update(grads, tx.init(params), params)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(u))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16],
                         ids=lambda d: jnp.dtype(d).name)
def test_low_precision_autosgm_is_float32_arithmetic_rounded_once(dtype):
  # autosgm keeps float32 state for low-precision parameters: its core's
  # update is the float32 computation on the upcast inputs, rounded once to
  # the gradients' dtype (the learning rate then multiplies in that dtype,
  # as Optax's does).
  params, grads = _problem(dtype)
  up = lambda t: jax.tree.map(lambda x: x.astype(jnp.float32), t)
  tx = asgm.scale_by_autosgm(  # the core, before the learning rate
      filter=asgm.lowpass_filter(0.9, 0.5),
      denominator=asgm.moment_denominator(),
      numerator=asgm.correlation_numerator())
  state = tx.init(params)
  state32 = tx.init(up(params))
  for _ in range(3):
    u, state = tx.update(grads, state, params)
    u32, state32 = tx.update(up(grads), state32, up(params))
    for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(u32)):
      assert x.dtype == dtype
      np.testing.assert_array_equal(np.asarray(x), np.asarray(
          y.astype(dtype)))


# ---------------------------------------------------------------------------
# inject_hyperparams: the same inner state as the plain factory


def _compare_states(plain, injected, rtol):
  """Leaf by leaf: the same structure, shapes and dtypes, and values equal
  to ``rtol`` of each leaf's largest magnitude."""
  assert jax.tree.structure(plain) == jax.tree.structure(injected)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(plain),
                          jax.tree.leaves(injected)):
    where = jax.tree_util.keystr(path)
    assert (x.shape, x.dtype) == (y.shape, y.dtype), where
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                    err_msg=where)
      continue
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(float(np.max(np.abs(x), initial=0.0)), 1e-30)
    assert float(np.max(np.abs(x - y), initial=0.0)) <= rtol * scale, where


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("name", INJECTABLE)
def test_inject_hyperparams_gives_the_plain_state(name, x64, request):
  if x64:
    request.getfixturevalue("enable_x64")
  factory, kwargs, _ = FACTORIES[name]
  dtype = jnp.float64 if x64 else jnp.float32
  params, _ = _problem(dtype)
  loss = lambda p: sum(jnp.sum(jnp.sin(x) ** 2 + 0.1 * x)
                       for x in jax.tree.leaves(p))
  # (A dtype such as jnp.bfloat16 is callable: static, as Optax's mu_dtype.)
  static = tuple(k for k in kwargs if k.endswith("dtype"))
  injected = optax.inject_hyperparams(
      factory, static_args=static, hyperparam_dtype=dtype)(**kwargs)
  # The injected numbers are arrays of the parameters' dtype. The plain run
  # gets the same numbers (rounded to that dtype) as Python floats, so that
  # no difference comes from the hyperparameters themselves (0.999 rounded
  # to float32 moves 1 - 0.999 by 1.3e-5 of itself). What remains is the
  # rounding of expressions formed from them (e.g. eta / (1 - beta) in
  # Python's float64 against the dtype) and of algebraically equal forms (a
  # filter zero is realised from its new state for plain poles on one CPU
  # device, autosgm_optax/_src/backend.py): a few
  # ulps per operation, compounded over a handful of operations and 4
  # steps; 64 ulps bound that with room, while a difference of meaning (a
  # missing debias, a stale mu) is of order 1.
  as_dtype = lambda v: float(np.asarray(v, dtype)) if isinstance(
      v, float) else v
  every = inspect.signature(factory).bind(**kwargs)  # defaults included:
  every.apply_defaults()  # inject_hyperparams injects them too
  plain = factory(**{k: as_dtype(v) for k, v in every.arguments.items()})
  rtol = 64 * float(jnp.finfo(dtype).eps)
  if name == "autosgm bf16 filter":
    # A chosen bfloat16 state: a Python pole multiplies it in bfloat16, an
    # injected array pole in its own dtype (as in Optax, whose injected
    # mu_dtype=bfloat16 moment does the same). The state is rounded to
    # bfloat16 on each of the 4 steps: a few of its ulps.
    rtol = 16 * float(jnp.finfo(jnp.bfloat16).eps)
  s_plain, s_injected = plain.init(params), injected.init(params)
  p_plain = p_injected = params
  for _ in range(4):
    _compare_states(s_plain, s_injected.inner_state, rtol)
    u_plain, s_plain = plain.update(jax.grad(loss)(p_plain), s_plain,
                                    p_plain)
    u_injected, s_injected = injected.update(
        jax.grad(loss)(p_injected), s_injected, p_injected)
    _compare_states(u_plain, u_injected, rtol)
    p_plain = optax.apply_updates(p_plain, u_plain)
    p_injected = optax.apply_updates(p_injected, u_injected)
  _compare_states(s_plain, s_injected.inner_state, rtol)


def test_learning_rate_state_means_the_same_for_numbers_arrays_schedules():
  params = {"w": jnp.ones(2)}
  g = {"w": jnp.ones(2)}
  sched = lambda count: 0.1 * (count + 1)
  txs = [asgm.scale_by_learning_rate(0.1),
         asgm.scale_by_learning_rate(jnp.asarray(0.1)),
         asgm.scale_by_learning_rate(lambda count: 0.1 + 0 * count),
         optax.inject_hyperparams(asgm.scale_by_learning_rate)(0.1)]
  states = [tx.init(params) for tx in txs]
  inner = lambda s: getattr(s, "inner_state", s)
  for t in range(3):
    for s in states:  # before the first update: the mu it will use
      assert float(inner(s).mu) == pytest.approx(0.1)
      assert float(inner(s).prev_mu) == pytest.approx(0.1)
    states = [tx.update(g, s, params)[1] for tx, s in zip(txs, states)]
  tx = asgm.scale_by_learning_rate(sched)
  state = tx.init(params)
  seen = [(float(state.mu), float(state.prev_mu))]
  for _ in range(3):
    _, state = tx.update(g, state, params)
    seen.append((float(state.mu), float(state.prev_mu)))
  np.testing.assert_allclose(
      seen, [(0.1, 0.1), (0.1, 0.1), (0.2, 0.1), (0.3, 0.2)], rtol=1e-6)
  # the fields' earlier names read the same numbers, and are no keys
  assert (state.learning_rate, state.prev_learning_rate) == (
      state.mu, state.prev_mu)
  assert state._fields == ("count", "mu", "prev_mu")


# ---------------------------------------------------------------------------
# Blocks are ordinary values


def _signal_passthrough(signal, state, params):
  del params
  return signal._replace(direction=jax.tree.map(lambda x: 2 * x,
                                                signal.direction)), state


def test_a_block_of_ones_own_without_info_runs_in_the_combinator():
  block = asgm.AutoSGMBlock(lambda params: optax.EmptyState(),
                            _signal_passthrough, kind="filter")
  tx = asgm.scale_by_autosgm(filter=block, diagnostics="summary")
  params = {"w": jnp.ones(3)}
  u, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(u["w"]), 2 * np.ones(3))
  assert block.info == {"zero_is_zero": False, "explicit_dtype": None,
                        "identity": False, "like_params": False,
                        "filter": None, "matrix": False}
  with pytest.raises(ValueError, match="unknown keys"):
    asgm.AutoSGMBlock(lambda params: optax.EmptyState(), _signal_passthrough,
                      kind="filter", info={"zero_is_0": True})
  with pytest.raises(TypeError, match="kind"):
    asgm.AutoSGMBlock(lambda params: optax.EmptyState(), _signal_passthrough,
                      kind=None)


@pytest.mark.parametrize("name", sorted(
    k for k in FACTORIES if isinstance(FACTORIES[k][0](**FACTORIES[k][1]),
                                       asgm.AutoSGMBlock)))
def test_blocks_survive_copy_deepcopy_and_replace(name):
  factory, kwargs, _ = FACTORIES[name]
  block = factory(**kwargs)
  params, grads = _problem(jnp.float32)
  expected, _ = block.update(grads, block.init(params), params)
  leaves, treedef = jax.tree.flatten(block)
  for other in (copy.copy(block), copy.deepcopy(block), block._replace(),
                jax.tree.map(lambda x: x, block),
                jax.tree.unflatten(treedef, leaves)):
    assert isinstance(other, asgm.AutoSGMBlock)
    assert (other.kind, other.info, other.last) == (
        block.kind, block.info, block.last)
    u, _ = other.update(grads, other.init(params), params)
    for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  renamed = block._replace(info={**block.info, "zero_is_zero": False})
  assert renamed.kind == block.kind and renamed.apply is block.apply
  with pytest.raises(TypeError, match="made from its apply"):
    block._replace(update=block.update)
  # As an Optax transformation, init and update are its pytree leaves; a map
  # that replaces the update gives an Optax transformation, and the raw
  # constructor refuses a block without its BlockUpdate.
  assert leaves == [block.init, block.update]
  plain = jax.tree.map(lambda x: x if x is block.init else (lambda *a: a),
                       block)
  assert type(plain) is optax.GradientTransformationExtraArgs
  with pytest.raises(TypeError, match="BlockUpdate"):
    asgm.AutoSGMBlock._make((block.init, block.apply))
  # A whole optimizer holding blocks copies too (config systems, Orbax).
  tx = copy.deepcopy(asgm.autosgm(LR, gamma=0.5, numerator="correlation"))
  tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("make", [
    lambda: optax.inject_hyperparams(asgm.autosgm)(0.01),
    lambda: optax.inject_hyperparams(presets.adam)(0.01),
], ids=["autosgm", "presets.adam"])
def test_tree_get_reads_the_injected_learning_rate(make):
  """As with optax.adam: optax.tree_utils finds the injected learning rate
  (the learning-rate block's own record is named mu, not learning_rate)."""
  params = {"w": jnp.ones(2)}
  tx, twin = make(), optax.inject_hyperparams(optax.adam)(0.01)
  state, twin_state = tx.init(params), twin.init(params)
  assert float(optax.tree_utils.tree_get(state, "learning_rate")) == float(
      optax.tree_utils.tree_get(twin_state, "learning_rate"))
  state = optax.tree_utils.tree_set(state, learning_rate=0.0)
  u, _ = tx.update(params, state, params)
  assert float(jnp.abs(u["w"]).max()) == 0.0


DIAGNOSTICS = {
    "summary": dict(diagnostics="summary"),
    "summary every 3": dict(diagnostics="summary", diagnostics_every=3),
    "element": dict(diagnostics="element"),
}


@pytest.mark.parametrize("params", [
    {"w": jnp.ones((4, 3)), "b": jnp.ones((3,))}, {}, jnp.ones((3,))],
    ids=["dict", "empty", "array"])
@pytest.mark.parametrize("level", sorted(DIAGNOSTICS))
def test_state_with_diagnostics_maps_and_compares_as_optax_states(level,
                                                                  params):
  # What Optax's own tests do with every optimizer's state:
  # optax.tree.map_params (which maps the state of a parameter placeholder
  # together with the real one), and trees of dtypes that compare equal.
  tx = asgm.autosgm(LR, gamma=0.5, numerator="correlation",
                    weight_decay=1e-2, **DIAGNOSTICS[level])
  state0 = tx.init(params)
  state = jax.jit(tx.update)(params, state0, params)[1]
  assert jax.tree.structure(state) == jax.tree.structure(state0)
  dtypes = lambda s: jax.tree.map(lambda x: x.dtype, s)
  assert dtypes(state) == dtypes(state0)

  same = optax.tree.map_params(tx, lambda v: v, state)
  assert jax.tree.structure(same) == jax.tree.structure(state)
  for got, want in zip(jax.tree.leaves(same), jax.tree.leaves(state)):
    np.testing.assert_array_equal(got, want)
  # only the leaves like the parameters are mapped (here: their shapes)
  tags = optax.tree.map_params(tx, lambda v: "param", state,
                               transform_non_params=lambda v: "other")
  n_params = len(jax.tree.leaves(params))
  mapped = [t for t in jax.tree.leaves(tags) if t == "param"]
  assert len(mapped) % max(n_params, 1) == 0 and bool(mapped) == bool(
      n_params)
  # the records' rows are not like the parameters: not mapped
  records = tags[0].diagnostics.r_undefined
  assert jax.tree.leaves(records) == ["other"]
  # the mapped records carry map_params' placeholder structure: the readers
  # refuse them rather than key their rows wrongly; the state itself reads
  asgm.learning_dynamics(state)
  if n_params:
    with pytest.raises(ValueError, match="map_params"):
      asgm.learning_dynamics(same)


def test_per_leaf_records_compare_field_by_field():
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones((3,))}
  tx = asgm.autosgm(LR, diagnostics="summary")
  record = tx.init(params)[0].diagnostics.r_undefined
  same = jax.tree.map(lambda x: x.dtype, record)
  assert same == jax.tree.map(lambda x: x.dtype, record)
  other = asgm.autosgm(LR, diagnostics="summary").init(
      {"v": jnp.ones((4, 3)), "b": jnp.ones((3,))})[0].diagnostics
  assert same != jax.tree.map(lambda x: x.dtype, other.r_undefined)
  assert (jax.tree.structure(record)
          != jax.tree.structure(other.r_undefined))
