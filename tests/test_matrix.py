"""The matrix oracle (matrix_oracle) and the Muon point (presets.muon).

presets.muon against optax.contrib.muon bit for bit (its arithmetic is
reproduced: the same first moment, Newton-Schulz iteration, shape scaling,
decay and learning rate); the oracle's routing of leaves (matrices, rules,
masks, the element-wise fall-back) against the polar factor and the moment
denominator computed apart.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers
import pytest

import autosgm_optax as asgm
from autosgm_optax import presets
from autosgm_optax._src import polar
from conftest import assert_bitwise_equal, counted_step

STEPS = 1000
LR = 1e-2


def _problem(dtype=jnp.float32, seed=0):
  """A two-layer tanh network with a rank-3 leaf (heads x in x out), a tall
  and a wide matrix, and biases."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(64, 12)), dtype)
  y = jnp.asarray(np.sin(rng.normal(size=(64, 3))), dtype)
  params = {
      "w1": jnp.asarray(rng.normal(size=(12, 24)) * 0.3, dtype),  # wide
      "b1": jnp.zeros((24,), dtype),
      "heads": jnp.asarray(rng.normal(size=(2, 12, 4)) * 0.3, dtype),
      "w2": jnp.asarray(rng.normal(size=(24, 3)) * 0.3, dtype),  # tall
      "b2": jnp.zeros((3,), dtype),
  }

  def loss(p):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    extra = jnp.einsum("bi,hio->bo", x, p["heads"]).mean()
    return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2) + 0.1 * extra ** 2

  return params, loss


def _run(tx, params, loss, steps):
  @jax.jit
  def go(params):
    def body(_, carry):
      p, s = carry
      u, s = tx.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s
    return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]
  return go(params)


HEADS = {"w1": MuonDimensionNumbers(0, 1), "b1": None,
         "heads": MuonDimensionNumbers(1, 2), "w2": MuonDimensionNumbers(),
         "b2": None}

CASES = {
    "defaults": dict(),
    "decay_and_options": dict(beta=0.9, weight_decay=0.1, ns_steps=4,
                              adam_b1=0.8, adam_weight_decay=0.01,
                              adam_learning_rate=3e-3),
    "not_nesterov": dict(nesterov=False),
    "consistent_rms": dict(consistent_rms=0.2),
    "dion": dict(ns_coeffs="dion"),
    "rank3_rules": dict(muon_weight_dimension_numbers=HEADS),
    "rules_callable": dict(
        muon_weight_dimension_numbers=lambda p: HEADS,
        weight_decay=0.05, weight_decay_mask=lambda p: {
            k: k != "w2" for k in p}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_muon_is_optax_contrib_muon_bit_for_bit(name):
  params, loss = _problem()
  kwargs = CASES[name]
  ours = _run(presets.muon(LR, **kwargs), params, loss, STEPS)
  theirs = _run(optax.contrib.muon(LR, **kwargs), params, loss, STEPS)
  assert float(loss(ours)) < 0.7 * float(loss(params))  # it trained
  assert_bitwise_equal(ours, theirs)


def test_muon_under_inject_hyperparams_bit_for_bit():
  params, loss = _problem()
  schedule = optax.cosine_decay_schedule(LR, STEPS)
  make = lambda f: optax.inject_hyperparams(f, static_args=("ns_steps",))(
      schedule, beta=0.9, weight_decay=0.01)
  assert_bitwise_equal(_run(make(presets.muon), params, loss, STEPS),
                       _run(make(optax.contrib.muon), params, loss, STEPS))


def _alone(block, grads, params, steps=3):
  state = block.init(params)
  for _ in range(steps):
    out, state = block.update(grads, state, params)
  return out, state


@pytest.mark.parametrize("method", ["newton_schulz", "cubic", "lakic", "svd"])
def test_the_oracle_maps_matrices_and_falls_back_elsewhere(method):
  params, loss = _problem()
  grads = jax.grad(loss)(params)
  rules = {**HEADS, "w1": MuonDimensionNumbers()}
  block = asgm.matrix_oracle(method, dimension_numbers=rules,
                             mask={"w1": True, "b1": True, "heads": True,
                                   "w2": False, "b2": True})
  out, state = _alone(block, grads, params, steps=1)
  # The same formulas computed apart, in another XLA program: equal to a
  # few float32 ulps (XLA may fuse and contract them differently).
  close = lambda a, b: np.testing.assert_array_max_ulp(
      np.asarray(a), np.asarray(b), maxulp=4)
  # matrices (w1; heads by its rule): the polar factor of the input
  close(out["w1"], polar.polar_factor(grads["w1"], method))
  close(out["heads"], polar.polar_factor(grads["heads"], method,
                                         rule=rules["heads"]))
  # the others (vectors; w2, which the mask sends back): the moment
  # denominator, whose first step is g / (|g| + eps)
  denominator = asgm.moment_denominator()
  for k in ("b1", "w2", "b2"):
    ref, _ = denominator.update(grads[k], denominator.init(grads[k]))
    close(out[k], ref)
  # the element-wise state holds the other leaves only (an empty NoState at
  # the matrix leaves: no array)
  nu = state.elementwise.nu
  assert isinstance(nu["w1"], asgm.NoState)
  assert isinstance(nu["heads"], asgm.NoState)
  assert nu["w2"].shape == (24, 3)


def test_tall_matrices_are_transposed_not_reshaped():
  rng = np.random.default_rng(1)
  v = jnp.asarray(rng.normal(size=(9, 4)), jnp.float32)
  block = asgm.matrix_oracle("svd", elementwise=None)
  q, _ = _alone(block, {"w": v}, {"w": v}, steps=1)
  q_t, _ = _alone(block, {"w": v.T}, {"w": v.T}, steps=1)
  np.testing.assert_allclose(q["w"], q_t["w"].T, atol=1e-6)
  # the polar factor of a tall matrix: orthonormal columns
  np.testing.assert_allclose(q["w"].T @ q["w"], np.eye(4), atol=1e-5)


@pytest.mark.parametrize("method", ["newton_schulz", "cubic", "lakic", "svd"])
def test_zero_and_rank_deficient_gradients_give_no_nan(method):
  params = {"w": jnp.zeros((5, 3)), "row": jnp.zeros((1, 6))}
  block = asgm.matrix_oracle(method)
  zeros = jax.tree.map(jnp.zeros_like, params)
  out, _ = _alone(block, zeros, params)
  for x in jax.tree.leaves(out):
    np.testing.assert_array_equal(x, 0.0)
  rank1 = {"w": jnp.outer(jnp.arange(1.0, 6.0), jnp.array([1.0, -2.0, 0.5])),
           "row": jnp.arange(1.0, 7.0)[None]}
  out, _ = _alone(block, rank1, params, steps=1)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))
  # a 1 x N matrix: its polar factor is the unit row (svd exactly)
  if method == "svd":
    row = rank1["row"]
    np.testing.assert_allclose(out["row"], row / jnp.linalg.norm(row),
                               rtol=1e-6)


def test_bfloat16_parameters_compute_in_float32():
  rng = np.random.default_rng(2)
  g32 = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
  g16 = g32.astype(jnp.bfloat16)
  block = asgm.matrix_oracle("newton_schulz")
  out, _ = _alone(block, {"w": g16}, {"w": g16}, steps=1)
  assert out["w"].dtype == jnp.bfloat16
  ref = polar.polar_factor(g16.astype(jnp.float32)).astype(jnp.bfloat16)
  np.testing.assert_array_equal(out["w"], ref)


def test_the_oracle_refuses_bad_arguments_at_construction():
  with pytest.raises(ValueError, match="method='qr'"):
    asgm.matrix_oracle("qr")
  with pytest.raises(ValueError, match="steps=0"):
    asgm.matrix_oracle(steps=0)
  with pytest.raises(ValueError, match="coeffs="):
    asgm.matrix_oracle("svd", coeffs=(1.0, 2.0, 3.0))
  with pytest.raises(ValueError, match="shape_scale='height'"):
    asgm.matrix_oracle(shape_scale="height")
  with pytest.raises(TypeError, match="denominator"):
    asgm.matrix_oracle(elementwise=asgm.lowpass_filter())
  with pytest.raises(ValueError, match="matrix oracle"):
    asgm.scale_by_autosgm(denominator=asgm.matrix_oracle(),
                          diagnostics="summary")


def test_the_oracle_runs_under_jit_without_recompiling():
  params, loss = _problem()
  tx = optax.chain(
      asgm.scale_by_autosgm(filter=asgm.lowpass_filter(0.95),
                            denominator=asgm.matrix_oracle()),
      asgm.scale_by_learning_rate(LR))
  step, traces = counted_step(tx, loss)

  state = tx.init(params)
  for _ in range(5):
    params, state = step(params, state)
  assert len(traces) == 1
  assert float(loss(params)) < float(loss(_problem()[0]))


def _numpy_scalar_numerator(w, v, eps=1e-8):
  """The original's a = max(min(||W V^T||_F, ||W W^T||_F, 1), eps), in the
  orientation of the smaller Gram matrix, in float64."""
  w, v = np.asarray(w, np.float64), np.asarray(v, np.float64)
  if w.shape[0] > w.shape[1]:
    w, v = w.T, v.T
  return max(min(np.linalg.norm(w @ v.T), np.linalg.norm(w @ w.T), 1.0), eps)


@pytest.mark.parametrize("scale", [0.05, 0.3, 3.0, 0.0])
def test_the_scalar_numerator_against_numpy(scale):
  rng = np.random.default_rng(3)
  params = {"wide": jnp.asarray(rng.normal(size=(3, 7)) * scale, jnp.float32),
            "tall": jnp.asarray(rng.normal(size=(8, 2)) * scale, jnp.float32),
            "bias": jnp.ones(4)}
  grads = jax.tree.map(
      lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
  block = asgm.matrix_numerator()
  u, _ = block.update(grads, block.init(params), params)
  for k in ("wide", "tall"):
    a = _numpy_scalar_numerator(params[k], grads[k])
    np.testing.assert_allclose(u[k], a * np.asarray(grads[k]), rtol=2e-6)
  np.testing.assert_array_equal(u["bias"], grads["bias"])  # a = 1


def test_the_scalar_numerator_per_matrix_of_a_stack():
  rng = np.random.default_rng(4)
  w = jnp.asarray(rng.normal(size=(2, 5, 3)) * 0.2, jnp.float32)
  g = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  rule = MuonDimensionNumbers(1, 2)  # axis 0 is the batch
  block = asgm.matrix_numerator(dimension_numbers={"w": rule})
  u, _ = block.update({"w": g}, block.init({"w": w}), {"w": w})
  for i in range(2):
    a = _numpy_scalar_numerator(w[i], g[i])
    np.testing.assert_allclose(u["w"][i], a * np.asarray(g[i]), rtol=2e-6)


def test_autosgm_matrix_path_first_step():
  # At the first step the debiased filter passes g (gamma = 0): a matrix
  # leaf moves by -lr polar(g) (times the scalar numerator when asked); a
  # vector by the element-wise path, the same as without the matrix path.
  params, loss = _problem()
  grads = jax.grad(loss)(params)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                  atol=1e-7)
  plain = asgm.autosgm(LR, numerator="correlation")
  u_plain, _ = plain.update(grads, plain.init(params), params)
  for scalar in (False, True):
    tx = asgm.autosgm(LR, numerator="correlation", matrix="svd",
                      matrix_numerator=scalar)
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for k in ("w1", "w2"):
      a = _numpy_scalar_numerator(params[k], polar.svd_polar(grads[k]))
      close(u[k], -LR * (a if scalar else 1.0) * polar.svd_polar(grads[k]))
    for k in ("b1", "b2", "heads"):  # rank 3 without a rule: element-wise
      close(u[k], u_plain[k])


def test_autosgm_matrix_path_trains_without_recompiling():
  params, loss = _problem()
  tx = asgm.autosgm(LR, gamma=0.5528, numerator="correlation",
                    matrix="newton_schulz", matrix_numerator=True,
                    matrix_dimension_numbers=HEADS,
                    window=asgm.raised_cosine_window(200))
  step, traces = counted_step(tx, loss)

  state = tx.init(params)
  start = float(loss(params))
  for _ in range(100):
    params, state = step(params, state)
  assert len(traces) == 1
  assert float(loss(params)) < 0.8 * start


def test_autosgm_matrix_arguments_refused():
  with pytest.raises(ValueError, match="matrix='qr'"):
    asgm.autosgm(LR, matrix="qr")
  with pytest.raises(ValueError, match="denominator=False"):
    asgm.autosgm(LR, matrix="svd", denominator=False)
  with pytest.raises(ValueError, match="matrix_numerator=True"):
    asgm.autosgm(LR, matrix_numerator=True)
  with pytest.raises(TypeError, match="matrix_numerator=1"):
    asgm.autosgm(LR, matrix="svd", matrix_numerator=1)


def test_injected_numbers_with_the_matrix_path():
  # Numbers are injectable (eps, the filter's pole); the method is
  # structural (a string: static under inject_hyperparams).
  params, loss = _problem()
  tx = optax.inject_hyperparams(asgm.autosgm)(
      LR, beta=0.9, eps=1e-8, matrix="newton_schulz")
  step, traces = counted_step(tx, loss)

  state = tx.init(params)
  for beta in (0.9, 0.8, 0.95):
    state.hyperparams["beta"] = jnp.asarray(beta)
    params, state = step(params, state)
  assert len(traces) == 1
  plain = asgm.autosgm(LR, beta=0.9, eps=1e-8, matrix="newton_schulz")
  p0, _ = _problem()
  g = jax.grad(loss)(p0)
  u_inj, _ = tx.update(g, tx.init(p0), p0)
  u_plain, _ = plain.update(g, plain.init(p0), p0)
  for a, b in zip(jax.tree.leaves(u_inj), jax.tree.leaves(u_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_muon_with_injected_ns_steps_and_consistent_rms_bit_for_bit():
  # As Optax's: ns_steps injected (the loop's bound traced), consistent_rms
  # injected (an array scale).
  params, loss = _problem()
  for kwargs in (dict(), dict(consistent_rms=0.2)):
    make = lambda f: optax.inject_hyperparams(f)(LR, **kwargs)
    assert_bitwise_equal(_run(make(presets.muon), params, loss, 50),
                         _run(make(optax.contrib.muon), params, loss, 50))


def test_a_numerator_after_the_oracle_takes_d_1_on_matrix_leaves():
  params, loss = _problem()
  grads = jax.grad(loss)(params)
  core = asgm.scale_by_autosgm(
      filter=asgm.lowpass_filter(0.9), denominator=asgm.matrix_oracle(),
      numerator=asgm.correlation_numerator("moment"))
  u, _ = jax.jit(core.update)(grads, core.init(params), params)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


def test_blocks_with_injected_hyperparameters_stay_hashable():
  block = asgm.lowpass_filter(jnp.asarray(0.9))
  hash(block)
  assert block.facts.filter.beta is not None
