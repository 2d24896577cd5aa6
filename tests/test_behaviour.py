"""What users rely on: jit without recompiling, array-only state, Optax
wrappers around autosgm, extra arguments, complex parameters, preset
signatures, non-finite gradients."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import presets
from conftest import (PROBLEMS, assert_bitwise_equal, counted_step,
                      relative_error, run)

FULL = dict(beta=0.9, gamma=0.5528, numerator="robust_correlation",
            window=asgm.raised_cosine_window(50, full=True, floor=0.1),
            weight_decay=1e-3)


def test_hundred_jitted_steps_compile_once():
  params, loss = PROBLEMS["mlp"]()
  tx = asgm.autosgm(optax.cosine_decay_schedule(1e-2, 100), **FULL)
  step, traces = counted_step(tx, loss)
  p, s = params, tx.init(params)
  for _ in range(100):
    p, s = step(p, s)
  assert len(traces) == 1
  assert step._cache_size() == 1
  assert int(s[0].filter.count) == 100


def test_state_is_arrays_and_counter_saturates():
  params = {"w": jnp.ones((3, 2))}
  tx = asgm.autosgm(1e-3, **FULL)
  state = tx.init(params)
  for leaf in jax.tree.leaves(state):
    assert isinstance(leaf, jax.Array)
  top = jnp.iinfo(jnp.int32).max
  state = jax.tree.map(
      lambda x: jnp.full_like(x, top) if x.dtype == jnp.int32 else x, state)
  _, state = tx.update({"w": jnp.ones((3, 2))}, state, params)
  counts = [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
  assert counts and all(int(c) == top for c in counts)


def test_state_dtypes_never_change_and_bf16_keeps_float32_state():
  params = {"w": jnp.ones((4, 4), jnp.bfloat16), "b": jnp.zeros(4, jnp.bfloat16)}
  tx = asgm.autosgm(1e-3, **FULL)
  state = tx.init(params)
  for leaf in jax.tree.leaves(state):
    assert leaf.dtype in (jnp.int32, jnp.float32)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  _, new_state = jax.jit(tx.update)(grads, state, params)
  assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(
      lambda x: x.dtype, state)


def test_numerator_without_params_is_a_clear_error():
  tx = asgm.autosgm(1e-3, numerator="correlation")
  g = {"w": jnp.ones(3)}
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update(g, tx.init(g))


def test_extra_args_are_accepted_and_ignored():
  params, loss = PROBLEMS["quadratic"]()
  tx = asgm.autosgm(1e-2, **FULL)
  g = jax.grad(loss)(params)
  state = tx.init(params)
  plain = tx.update(g, state, params)
  extra = tx.update(g, state, params, value=loss(params), grad=g)
  assert_bitwise_equal(plain, extra)
  # also inside an optax.chain next to a transformation that needs `value`
  chained = optax.chain(asgm.autosgm(1e-2),
                        optax.contrib.reduce_on_plateau())
  u, _ = chained.update(g, chained.init(params), params, value=loss(params))
  assert_bitwise_equal(u, optax.adam(1e-2).update(
      g, optax.adam(1e-2).init(params))[0])


def test_composes_with_optax_wrappers():
  params, loss = PROBLEMS["mlp"]()
  clip = optax.chain(optax.clip_by_global_norm(0.5), asgm.autosgm(1e-2))
  clip_twin = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2))
  assert_bitwise_equal(run(clip, params, loss, 200),
                       run(clip_twin, params, loss, 200))
  mask = {"w1": True, "b1": False, "w2": True}
  masked = optax.masked(asgm.autosgm(1e-2, **FULL), mask)
  final = run(masked, params, loss, 20)
  # the masked-out leaf receives the raw gradient, as optax.masked does
  assert not np.array_equal(final["b1"], params["b1"])
  multi = optax.MultiSteps(asgm.autosgm(1e-2), every_k_schedule=4)
  multi_twin = optax.MultiSteps(optax.adam(1e-2), every_k_schedule=4)
  assert_bitwise_equal(run(multi, params, loss, 40),
                       run(multi_twin, params, loss, 40))


def test_apply_if_finite_leaves_state_unchanged_on_nan():
  params = {"w": jnp.ones(3)}
  tx = optax.apply_if_finite(asgm.autosgm(1e-2, **FULL), 3)
  state = tx.init(params)
  _, state = tx.update({"w": jnp.ones(3)}, state, params)
  bad = {"w": jnp.array([1.0, jnp.nan, 1.0])}
  updates, new_state = tx.update(bad, state, params)
  assert_bitwise_equal(new_state.inner_state, state.inner_state)
  np.testing.assert_array_equal(updates["w"], np.zeros(3))
  assert int(new_state.notfinite_count) == 1


def test_without_apply_if_finite_nan_propagates_as_in_optax():
  params = {"w": jnp.ones(3)}
  bad = {"w": jnp.array([1.0, jnp.nan, 1.0])}
  for tx, moment in ((asgm.autosgm(1e-2), lambda s: s[0].filter.m),
                     (optax.adam(1e-2), lambda s: s[0].mu)):
    updates, state = tx.update(bad, tx.init(params), params)
    assert bool(jnp.isnan(updates["w"][1]))
    assert bool(jnp.isnan(moment(state)["w"][1]))


@pytest.mark.parametrize("numerator", ["unity", "moment", "correlation",
                                       "robust_correlation"])
def test_zero_gradients_and_zero_params_stay_finite(numerator):
  params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
  tx = asgm.autosgm(1e-2, numerator=numerator, gamma=0.5,
                    weight_decay=1e-2,
                    window=asgm.raised_cosine_window(4, full=True))
  state = tx.init(params)
  for _ in range(5):
    updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state,
                               params)
    for leaf in jax.tree.leaves((updates, state)):
      assert bool(jnp.all(jnp.isfinite(leaf)))


def test_complex_parameters_with_presets_and_unity():
  params = {"z": jnp.array([1.0 + 2.0j, -0.5j], jnp.complex64)}
  loss = lambda p: jnp.sum(jnp.abs(p["z"] - (0.3 + 0.1j)) ** 2)
  grad = lambda p: jax.tree.map(jnp.conj, jax.grad(loss)(p))
  for ours, twin in ((presets.adam(1e-2), optax.adam(1e-2)),
                     (asgm.autosgm(1e-2), optax.adam(1e-2)),
                     (presets.sgd(1e-2, 0.9), optax.sgd(1e-2, 0.9))):
    states = [ours.init(params), twin.init(params)]
    ps = [params, params]
    for _ in range(20):
      for i, tx in enumerate((ours, twin)):
        u, states[i] = tx.update(grad(ps[i]), states[i], ps[i])
        ps[i] = optax.apply_updates(ps[i], u)
    assert_bitwise_equal(ps[0], ps[1])
  with pytest.raises(TypeError, match="complex"):
    asgm.autosgm(1e-2, numerator="correlation").init(params)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "nadam", "nadamw"])
def test_preset_signatures_match_optax(name):
  def shape(fn):
    return [(p.name, p.kind, p.default)
            for p in inspect.signature(fn).parameters.values()]

  assert shape(getattr(presets, name)) == shape(getattr(optax, name))


def test_phb_and_nag_signatures():
  for fn in (presets.phb, presets.nag):
    params = inspect.signature(fn).parameters
    assert list(params)[:2] == ["learning_rate", "momentum"]
    assert params["momentum"].default == 0.9


def test_maximize_ascends():
  params = {"x": jnp.array([0.0])}
  tx = asgm.autosgm(0.1, maximize=True)
  u, _ = tx.update({"x": jnp.array([1.0])}, tx.init(params), params)
  assert float(u["x"][0]) > 0


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, decay="coupled"),
    dict(gamma=0.5528, numerator="correlation", weight_decay=0.05,
         decay_factor=0.3, window=asgm.raised_cosine_window(30)),
    dict(numerator="robust_correlation", weight_decay=0.05,
         decay="coupled"),
], ids=["adam", "decoupled", "coupled", "full", "robust_coupled"])
def test_maximize_is_minimising_the_negated_objective(kwargs):
  """Bit for bit: maximising f is minimising -f, weight decay included (it
  still pulls the parameters towards zero, as torch's ``maximize``)."""
  params = {"w": jnp.linspace(-2.0, 3.0, 12).reshape(3, 4),
            "b": jnp.array([0.5, -1.0, 2.0])}
  f = lambda p: (jnp.sum(jnp.sin(p["w"]) * p["w"]) + jnp.sum(p["b"] ** 3)
                 - 0.1 * jnp.sum(p["w"] ** 4))

  grad = jax.jit(jax.grad(f))

  def run(maximize):
    tx = asgm.autosgm(0.05, maximize=maximize, **kwargs)
    step = jax.jit(tx.update)
    p, s = params, tx.init(params)
    for _ in range(40):
      g = grad(p)  # negated apart, so that XLA fuses the gradient alike
      u, s = step(g if maximize else jax.tree.map(jnp.negative, g), s, p)
      p = optax.apply_updates(p, u)
    return p

  assert_bitwise_equal(run(True), run(False))
  # With only decay and a zero gradient, maximising shrinks the weights too
  # (an estimated numerator, fed a zero vbar, would stop the step).
  decay_alone = kwargs.keys() == {"weight_decay"}
  coupled = kwargs.get("decay") == "coupled"  # (the numerator sees it)
  if decay_alone or coupled:
    tx = asgm.autosgm(0.1, maximize=True, **kwargs)
    p, s = params, tx.init(params)
    for _ in range(5):
      u, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
      p = optax.apply_updates(p, u)
    assert float(jnp.abs(p["w"]).sum()) < float(jnp.abs(params["w"]).sum())


def test_learning_rate_block_remembers_two_values():
  sched = lambda count: 0.1 * (count + 1)
  tx = asgm.autosgm(sched)
  params = {"x": jnp.ones(2)}
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update({"x": jnp.ones(2)}, state, params)
  lr_state = state[1]
  np.testing.assert_allclose(float(lr_state.mu), 0.3, rtol=1e-6)
  np.testing.assert_allclose(float(lr_state.prev_mu), 0.2,
                             rtol=1e-6)


def test_window_accepts_schedule_number_and_block():
  params, loss = PROBLEMS["quadratic"]()
  sched = asgm.raised_cosine_schedule(30, floor=0.2)
  by_block = run(asgm.autosgm(1e-2, window=asgm.raised_cosine_window(
      30, floor=0.2)), params, loss, 30)
  by_schedule = run(asgm.autosgm(1e-2, window=sched), params, loss, 30)
  assert_bitwise_equal(by_block, by_schedule)
  half = run(asgm.autosgm(1e-2, window=0.5), params, loss, 30)
  injected = run(optax.inject_hyperparams(asgm.autosgm)(1e-2, window=0.5),
                 params, loss, 30)
  assert relative_error(half, injected) < 1e-5  # array vs Python rounding


def test_inject_hyperparams_window_schedule_and_no_recompile():
  params, loss = PROBLEMS["quadratic"]()
  tx = optax.inject_hyperparams(asgm.autosgm)(
      1e-2, gamma=0.5, numerator="correlation", weight_decay=1e-3,
      window=asgm.raised_cosine_schedule(30))
  state = tx.init(params)
  step = jax.jit(tx.update)
  g = jax.grad(loss)(params)
  _, state = step(g, state, params)
  hp = state.hyperparams
  hp["learning_rate"] = jnp.full_like(hp["learning_rate"], 5e-3)
  hp["gamma"] = jnp.full_like(hp["gamma"], 0.3)
  _, state = step(g, state, params)
  assert step._cache_size() == 1


@pytest.mark.parametrize("make", [
    lambda: asgm.autosgm(1e-2),
    lambda: asgm.autosgm(optax.linear_schedule(1e-2, 0.0, 10), **FULL),
    lambda: asgm.autosgm(1e-2, diagnostics="summary", **FULL),
    lambda: asgm.presets.nag(1e-2),
])
def test_an_eager_init_state_can_be_donated(make):
  # Every array of a fresh state is its own buffer (a donated argument may
  # not hold one buffer twice), and a constant learning rate is kept in the
  # state from the start.
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  tx = make()
  state = tx.init(params)
  ids = [id(x) for x in jax.tree.leaves(state)]
  assert len(ids) == len(set(ids))
  step = jax.jit(lambda s, p: tx.update(p, s, p), donate_argnums=(0,))
  for _ in range(3):
    _, state = step(state, params)
  assert 0 < float(asgm.effective_learning_rate(state)) <= 1e-2
