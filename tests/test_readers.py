"""Readers of the effective learning rate and the numerator, found through
Optax wrappers and a Flax nnx.Optimizer; the default decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm

LR = 0.1
TAU = 10


def _tx(**kwargs):
  return asgm.autosgm(LR, numerator="correlation",
                      window=asgm.raised_cosine_window(TAU, floor=0.1),
                      **kwargs)


def _steps(tx, params, n):
  state = tx.init(params)
  for _ in range(n):
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    _, state = tx.update(grads, state, params)
  return state


PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
F = asgm.raised_cosine_schedule(TAU, floor=0.1)


@pytest.mark.parametrize("wrap", ["bare", "chain", "masked", "inject",
                                  "apply_if_finite", "multisteps"])
def test_effective_learning_rate_through_wrappers(wrap):
  tx = {
      "bare": lambda: _tx(),
      "chain": lambda: optax.chain(optax.clip_by_global_norm(1.0), _tx()),
      "masked": lambda: optax.masked(_tx(), {"w": True, "b": True}),
      "inject": lambda: optax.inject_hyperparams(asgm.autosgm)(
          LR, numerator="correlation", window=F),
      "apply_if_finite": lambda: optax.apply_if_finite(_tx(), 3),
      "multisteps": lambda: optax.MultiSteps(_tx(), 1),
  }[wrap]()
  state = _steps(tx, PARAMS, 4)
  np.testing.assert_allclose(float(asgm.effective_learning_rate(state)),
                             LR * float(F(3)), rtol=1e-6)
  values = asgm.numerator_values(state)
  assert len(values) == 1
  a = next(iter(values.values()))
  assert a["w"].shape == (1, 1) and float(a["w"][0, 0]) > 0


def test_partition_gives_one_rate_per_group():
  tx = optax.partition(
      {"fast": asgm.autosgm(1.0), "slow": _tx()},
      {"w": "fast", "b": "slow"})
  state = _steps(tx, PARAMS, 3)
  rates = asgm.effective_learning_rates(state)
  assert sorted(float(r) for r in rates.values()) == pytest.approx(
      sorted([1.0, LR * float(F(2))]), rel=1e-6)
  with pytest.raises(ValueError, match="found 2"):
    asgm.effective_learning_rate(state)


def test_numerator_values_match_the_estimate():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  g = {"w": jnp.array([0.5, 0.5, -1.0])}
  tx = asgm.autosgm(LR, numerator="correlation", numerator_average=False,
                    numerator_smoothing=None, denominator=False, beta=0.0,
                    gamma=0.0, numerator_beta=0.5)
  _, state = tx.update(g, tx.init(params), params)
  (a,) = asgm.numerator_values(state).values()
  w, v = np.asarray(params["w"]), np.asarray(g["w"])
  expected = np.minimum(np.abs(w * v), 1 + 0.5 * w ** 2)  # c(1) = w vbar
  np.testing.assert_allclose(np.asarray(a["w"]), expected, rtol=1e-6)


def test_readers_find_state_inside_nnx_optimizer():
  nnx = pytest.importorskip("flax.nnx")
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, _tx(), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x):
    loss = lambda m: jnp.mean(m(x) ** 2)
    grads = nnx.grad(loss)(model)
    optimizer.update(model, grads)

  x = jnp.ones((4, 3))
  for _ in range(3):
    step(model, optimizer, x)
  np.testing.assert_allclose(float(asgm.effective_learning_rate(optimizer)),
                             LR * float(F(2)), rtol=1e-6)
  (a,) = asgm.numerator_values(optimizer).values()
  assert set(jax.tree.leaves(jax.tree.map(lambda x: x.shape, a))) == {1}


def test_default_weight_decay_mask_rules():
  params = {
      "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
      "stack": {"kernel": jnp.ones((2, 3, 3)), "bias": jnp.ones((2, 3)),
                "scale": jnp.ones((2, 3))},
      "embed": {"embedding": jnp.ones((10, 4))},
      "vec": jnp.ones(5),
  }
  mask = asgm.default_weight_decay_mask(params)
  assert mask == {
      "dense": {"kernel": True, "bias": False},
      "stack": {"kernel": True, "bias": False, "scale": False},
      "embed": {"embedding": True}, "vec": False}


def test_default_mask_in_autosgm_exempts_biases():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  tx = asgm.autosgm(LR, weight_decay=0.5,
                    weight_decay_mask=asgm.default_weight_decay_mask)
  u, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(u["kernel"]), -LR * 0.5, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(u["bias"]), 0.0)


def test_filter_dtype_bfloat16_only_the_filter():
  params = {"w": jnp.ones((4, 4), jnp.float32)}
  tx = asgm.autosgm(LR, numerator="correlation", filter_dtype=jnp.bfloat16)
  state = tx.init(params)
  core = state[0]
  assert core.filter.m["w"].dtype == jnp.bfloat16
  assert core.denominator.nu["w"].dtype == jnp.float32
  assert core.numerator.c["w"].dtype == jnp.float32
  _, new_state = jax.jit(tx.update)({"w": jnp.ones((4, 4))}, state, params)
  assert new_state[0].filter.m["w"].dtype == jnp.bfloat16


# ---------------------------------------------------------------------------
# The readers find the library's states by type wherever they sit, read mu
# from the library's learning-rate block or from the caller, and say what
# is missing rather than return nothing.


def _core(**kwargs):
  return asgm.scale_by_autosgm(
      filter=asgm.lowpass_filter(0.9, 0.5),
      denominator=asgm.moment_denominator(),
      numerator=asgm.correlation_numerator(),
      window=asgm.raised_cosine_window(TAU, floor=0.1), **kwargs)


CHAINS = {
    # the library's core with Optax's learning rate, clipping before it
    "optax lr": (lambda: optax.chain(optax.clip_by_global_norm(1.0), _core(),
                                     optax.scale_by_learning_rate(LR)), True),
    "optax schedule": (lambda: optax.chain(
        optax.clip_by_global_norm(1.0), _core(),
        optax.scale_by_learning_rate(optax.linear_schedule(LR, LR / 2, 8))),
                       True),
    # the library's learning-rate block, other transformations in between
    "clip between": (lambda: optax.chain(
        _core(), optax.clip(10.0), asgm.scale_by_learning_rate(LR)), False),
    "nested": (lambda: optax.chain(optax.identity(), optax.chain(
        optax.clip_by_global_norm(1.0), _tx())), False),
    "named_chain": (lambda: optax.named_chain(
        ("clip", optax.clip_by_global_norm(1.0)), ("core", _core()),
        ("lr", asgm.scale_by_learning_rate(LR))), False),
    "masked optax lr": (lambda: optax.masked(optax.chain(
        _core(), optax.scale_by_learning_rate(LR)),
                                             {"w": True, "b": True}), True),
    "multisteps": (lambda: optax.MultiSteps(optax.chain(
        optax.clip_by_global_norm(1.0), _tx()), 1), False),
}


def _optax_mu(name):
  if name == "optax schedule":
    return optax.linear_schedule(LR, LR / 2, 8)
  return LR


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_readers_find_the_core_in_any_chain(name):
  make, optax_lr = CHAINS[name]
  state = _steps(make(), PARAMS, 4)
  kwargs = {"learning_rate": _optax_mu(name)} if optax_lr else {}
  mu = LR if name != "optax schedule" else float(
      optax.linear_schedule(LR, LR / 2, 8)(3))
  np.testing.assert_allclose(
      float(asgm.effective_learning_rate(state, **kwargs)), mu * float(F(3)),
      rtol=1e-6)
  (a,) = asgm.numerator_values(state).values()
  assert float(a["w"][0, 0]) > 0
  if optax_lr:  # the state does not hold mu: the reader says so
    with pytest.raises(ValueError, match="pass learning_rate"):
      asgm.effective_learning_rate(state)
  else:  # the state holds mu: a second one is refused
    with pytest.raises(ValueError, match="do not pass learning_rate"):
      asgm.effective_learning_rate(state, learning_rate=LR)


def test_dynamics_with_optax_learning_rate_equal_the_librarys():
  # The same core, once with the library's learning-rate block, once with
  # Optax's: the readers give the same dynamics when told mu.
  sched = optax.linear_schedule(LR, LR / 4, 6)
  ours = optax.chain(_core(diagnostics="element"),
                     asgm.scale_by_learning_rate(sched))
  theirs = optax.chain(_core(diagnostics="element"),
                       optax.scale_by_learning_rate(sched))
  a, b = _steps(ours, PARAMS, 5), _steps(theirs, PARAMS, 5)
  (da,) = asgm.learning_dynamics(a).values()
  (db,) = asgm.learning_dynamics(b, learning_rate=sched).values()
  for x, y in zip(jax.tree.leaves(da), jax.tree.leaves(db)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_readers_say_what_is_missing():
  adam_state = _steps(optax.adam(LR), PARAMS, 2)
  for reader in (asgm.effective_learning_rates, asgm.learning_dynamics):
    with pytest.raises(ValueError, match="found no AutoSGM state"):
      reader(adam_state)
  with pytest.raises(ValueError, match="no estimated numerator"):
    asgm.numerator_values(adam_state)
  no_diagnostics = _steps(_tx(), PARAMS, 2)
  with pytest.raises(ValueError, match="diagnostics="):
    asgm.learning_dynamics(no_diagnostics)
  with pytest.raises(ValueError, match="unity numerator"):
    asgm.numerator_values(_steps(asgm.autosgm(LR), PARAMS, 2))


def test_effective_learning_rate_is_zero_before_the_first_update():
  for tx in (asgm.autosgm(LR), _tx()):
    assert float(asgm.effective_learning_rate(tx.init(PARAMS))) == 0.0


def test_a_schedule_without_any_count_is_refused_with_the_reason():
  """A core whose only block keeps no count (a filter without debias)
  cannot evaluate a schedule given to the reader: the error says why and
  what to do."""
  schedule = optax.linear_schedule(1e-2, 1e-3, 10)
  tx = optax.chain(
      asgm.scale_by_autosgm(filter=asgm.lowpass_filter(0.9, debias=False)),
      optax.scale_by_learning_rate(schedule))
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  _, state = tx.update(params, state, params)
  with pytest.raises(ValueError, match="filter without debias keeps no count"):
    asgm.effective_learning_rate(state, learning_rate=schedule)
  # With a number it reads mu: the core itself has no factor but s = 1.
  assert float(asgm.effective_learning_rate(state, learning_rate=1e-2)) == (
      pytest.approx(1e-2))
