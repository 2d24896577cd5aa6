"""Each block alone does what its docstring says (closed forms, Optax), and
composing the blocks by hand gives the numbers of the keyword form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax._src import lowpass
from conftest import PROBLEMS, assert_bitwise_equal, run


def _feed(tx, grads, params=None):
  """Outputs of ``tx`` for a sequence of gradients."""
  state = tx.init(grads[0] if params is None else params)
  outs = []
  for g in grads:
    u, state = tx.update(g, state, params)
    outs.append(np.asarray(u, np.float64))
  return np.stack(outs), state


@pytest.mark.parametrize("beta,gamma", [(0.9, 0.0), (0.9, 0.5528), (0.99, 0.9),
                                        (0.9, -0.9), (0.9, 0.9 / 1.9),
                                        (0.0, 0.0)])
def test_filter_debias_passes_constants_through(beta, gamma):
  c = jnp.array([1.5, -2.0, 0.25])
  outs, _ = _feed(asgm.lowpass_filter(beta, gamma), [c] * 20)
  # float32 round-off of the cancellation in s(t) (largest at 0.99, 0.9)
  np.testing.assert_allclose(outs, np.broadcast_to(c, outs.shape), rtol=1e-5)


def test_filter_matches_transfer_function():
  rng = np.random.default_rng(0)
  g = rng.normal(size=(50, 4))
  beta, gamma, eta = 0.8, 0.3, 1.7
  outs, state = _feed(asgm.lowpass_filter(beta, gamma, eta, debias=False),
                      [jnp.asarray(x, jnp.float32) for x in g])
  v, g_prev = np.zeros(4), np.zeros(4)
  expected = []
  for x in g:  # v(t) = beta v(t-1) + eta (g(t) - gamma g(t-1))
    v = beta * v + eta * (x - gamma * g_prev)
    g_prev = x
    expected.append(v)
  np.testing.assert_allclose(outs, expected, rtol=1e-5, atol=1e-5)
  # without a debias nothing reads a count: the filter keeps none (as
  # optax.trace)
  assert state.count is None
  _, counted = _feed(asgm.lowpass_filter(beta, gamma, eta),
                     [jnp.asarray(x, jnp.float32) for x in g])
  assert int(counted.count) == 50


def test_filter_debias_divisor_closed_form():
  beta, gamma = 0.95, 0.6
  eta = (1 - beta) / (1 - gamma)
  for t in (1, 2, 3, 10):
    s = eta * ((1 - beta**t) - gamma * (1 - beta**(t - 1))) / (1 - beta)
    # unit DC gain: s(t) = 1 - (1 - eta) beta^(t-1) (docs/algorithm.md,
    # section 2)
    assert np.isclose(s, 1 - (1 - eta) * beta**(t - 1))
    got = lowpass.debias_divisor(jnp.int32(t), beta, gamma, eta)
    np.testing.assert_allclose(float(got), s, rtol=1e-6)


def test_phb_filter_is_optax_trace():
  rng = np.random.default_rng(1)
  grads = [jnp.asarray(x, jnp.float32) for x in rng.normal(size=(30, 5))]
  ours, _ = _feed(asgm.lowpass_filter(0.9, 0.0, 1.0, debias=False), grads)
  twin, _ = _feed(optax.trace(0.9), grads)
  np.testing.assert_array_equal(ours, twin)
  # lowpass_filter(beta, gamma, eta, debias): debias also by position
  positional, _ = _feed(asgm.lowpass_filter(0.9, 0.0, 1.0, False), grads)
  np.testing.assert_array_equal(positional, twin)


def test_denominator_alone_is_rms_normalisation():
  rng = np.random.default_rng(2)
  g = rng.normal(size=(40, 6)) * np.logspace(-3, 3, 6)
  outs, _ = _feed(asgm.moment_denominator(0.99, eps=1e-8),
                  [jnp.asarray(x, jnp.float32) for x in g])
  nu = np.zeros(6)
  for t, (x, out) in enumerate(zip(g, outs), start=1):
    nu = 0.99 * nu + 0.01 * x**2
    np.testing.assert_allclose(
        out, x / (np.sqrt(nu / (1 - 0.99**t)) + 1e-8), rtol=2e-5)


def test_denominator_alone_is_rmsprop_debiased():
  # optax.scale_by_rms with bias correction and eps outside the root.
  rng = np.random.default_rng(3)
  grads = [jnp.asarray(x, jnp.float32) for x in rng.normal(size=(25, 7))]
  ours, _ = _feed(asgm.moment_denominator(0.9, eps=1e-6), grads)
  twin, _ = _feed(optax.scale_by_rms(0.9, eps=1e-6, eps_in_sqrt=False,
                                     bias_correction=True,
                                     initial_scale=0.0), grads)
  np.testing.assert_allclose(ours, twin, rtol=1e-6)


def test_chaining_filter_and_denominator_is_not_adam():
  """The documented warning: a chain normalises the filtered signal."""
  params, loss = PROBLEMS["mlp"]()
  chained = optax.chain(asgm.lowpass_filter(0.9),
                        asgm.moment_denominator(0.999),
                        asgm.scale_by_learning_rate(1e-2))
  slotted = optax.chain(
      asgm.scale_by_autosgm(filter=asgm.lowpass_filter(0.9),
                            denominator=asgm.moment_denominator(0.999)),
      asgm.scale_by_learning_rate(1e-2))
  adam = run(optax.adam(1e-2), params, loss, 50)
  assert_bitwise_equal(run(slotted, params, loss, 50), adam)
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                      run(chained, params, loss, 50), adam)
  assert max(jax.tree.leaves(diff)) > 1e-4


def test_numerator_moment_alone_closed_form():
  g = jnp.array([0.5, -2.0, 3.0])
  tx = asgm.correlation_numerator("moment", beta=0.9, average=False,
                                  smoothing=None)
  out, _ = _feed(tx, [g, g], params=jnp.ones(3))
  c1 = 0.1 * np.asarray(g) ** 2
  c2 = 0.9 * c1 + 0.1 * np.asarray(g) ** 2
  np.testing.assert_allclose(out[0], np.minimum(c1, 1) * g, rtol=1e-6)
  np.testing.assert_allclose(out[1], np.minimum(c2, 1) * g, rtol=1e-6)


def test_numerator_correlation_alone_average_and_smoothing():
  w = jnp.array([[1.0, -2.0], [0.0, 3.0]])
  g = jnp.array([[0.5, 0.5], [-1.0, 2.0]])
  tx = asgm.correlation_numerator("correlation", beta=0.5, smoothing=0.1)
  out, state = _feed(tx, [g], params=w)
  we = np.where(np.abs(w) < 1e-8, np.asarray(w) + 1e-8, np.asarray(w))
  s = 1 + 0.5 * we**2
  c = we * np.asarray(g)
  a = 0.9 * np.mean(np.minimum(np.abs(c), s))
  np.testing.assert_allclose(out[0], a * np.asarray(g), rtol=1e-6)
  assert state.a.shape == (1, 1)
  np.testing.assert_allclose(np.asarray(state.a), [[a]], rtol=1e-6)


def test_numerator_keep_axes_gives_one_value_per_layer():
  w = jnp.stack([jnp.ones((3, 2)), 2 * jnp.ones((3, 2))])
  tx = asgm.correlation_numerator("correlation", keep_axes=(0,))
  state = tx.init(w)
  assert state.a.shape == (2, 1, 1)
  _, state = tx.update(jnp.ones_like(w), state, w)
  a = np.asarray(state.a).ravel()
  assert a[0] != a[1]


def test_numerator_refuses_missing_params_and_complex():
  tx = asgm.correlation_numerator("correlation")
  g = jnp.ones(3)
  state = tx.init(g)
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update(g, state)
  with pytest.raises(TypeError, match="complex"):
    tx.init(jnp.ones(3, jnp.complex64))


def test_window_schedule_matches_optax_cosine_and_endpoints():
  tau = 100
  ours = asgm.raised_cosine_schedule(tau, floor=0.1)
  twin = optax.cosine_decay_schedule(1.0, tau, alpha=0.1)
  counts = jnp.arange(0, 2 * tau)
  np.testing.assert_allclose(jax.vmap(ours)(counts), jax.vmap(twin)(counts),
                             atol=1e-6)
  assert float(ours(0)) == 1.0
  np.testing.assert_allclose(float(ours(tau)), 0.1, atol=1e-7)
  restarting = asgm.raised_cosine_schedule(tau, floor=0.1, restarts=True)
  assert float(restarting(tau)) == 1.0
  np.testing.assert_allclose(jax.vmap(restarting)(counts[:tau]),
                             jax.vmap(restarting)(counts[tau:]))


def test_window_full_flat_top_and_order():
  tau = 20
  full = asgm.raised_cosine_schedule(tau, full=True, floor=0.2)
  values = np.asarray(jax.vmap(full)(jnp.arange(tau)))
  np.testing.assert_allclose(values[0], 0.2, atol=1e-6)
  assert values[tau // 2] == pytest.approx(1.0, abs=1e-7)
  np.testing.assert_allclose(values[1:tau // 2], values[tau - 1:tau // 2:-1],
                             atol=1e-6)  # symmetric about the peak
  flat = asgm.raised_cosine_schedule(tau, flat_top=0.5)
  assert all(float(flat(k)) == 1.0 for k in range(10))
  f = 0.75
  linear_ish = asgm.raised_cosine_schedule(tau, order=1.0)
  np.testing.assert_allclose(float(linear_ish(15)), np.cos(np.pi * f / 2),
                             rtol=1e-6)
  values = np.asarray(jax.vmap(asgm.raised_cosine_schedule(tau))(
      jnp.arange(tau + 1)))
  assert np.all(np.diff(values) <= 0) and values.min() >= 0


def test_decay_blocks_alone_add_rate_times_params():
  w = jnp.array([1.0, -2.0, 0.5])
  g = jnp.array([0.1, 0.2, 0.3])
  for block in (asgm.decoupled_decay(0.01), asgm.coupled_decay(0.01)):
    u, _ = block.update(g, block.init(w), w)
    twin, _ = optax.add_decayed_weights(0.01).update(g, None, w)
    np.testing.assert_array_equal(u, twin)
  masked = asgm.decoupled_decay(0.01, factor=2.0, mask={"a": True, "b": False})
  tree_w, tree_g = {"a": w, "b": w}, {"a": g, "b": g}
  u, _ = masked.update(tree_g, masked.init(tree_w), tree_w)
  np.testing.assert_allclose(u["a"], g + 0.02 * w, rtol=1e-7)
  np.testing.assert_array_equal(u["b"], g)


def _full_keyword(lr):
  return asgm.autosgm(lr, beta=0.9, gamma=0.5528, numerator="correlation",
                      window=asgm.raised_cosine_window(300, floor=0.05),
                      weight_decay=1e-3)


def _full_blocks(lr):
  core = asgm.scale_by_autosgm(
      window=asgm.raised_cosine_window(300, floor=0.05),  # any argument order
      numerator=asgm.correlation_numerator("correlation"),
      decay=asgm.decoupled_decay(1e-3),
      denominator=asgm.moment_denominator(0.999, eps=1e-8),
      filter=asgm.lowpass_filter(0.9, gamma=0.5528))
  return optax.chain(core, asgm.scale_by_learning_rate(lr))


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_blocks_by_hand_equal_keyword_form(problem):
  params, loss = PROBLEMS[problem]()
  by_hand = run(_full_blocks(1e-2), params, loss, 300)
  keyword = run(_full_keyword(1e-2), params, loss, 300)
  assert_bitwise_equal(by_hand, keyword)
  assert float(loss(keyword)) < float(loss(params))


@pytest.mark.parametrize("block", [
    asgm.correlation_numerator("correlation"),
    asgm.correlation_numerator("moment", average=False, smoothing=None),
    asgm.decoupled_decay(0.1),
    asgm.coupled_decay(0.1),
    asgm.lowpass_filter(0.9, 0.5528),
], ids=lambda b: b.kind)
def test_block_alone_equals_its_slot_on_a_tree(block):
  """On a tree of several leaves, where the backend runs a numerator leaf
  by leaf, alone and slotted alike: the same bits."""
  slot = "decay" if block.kind.endswith("decay") else block.kind
  tx = asgm.scale_by_autosgm(**{slot: block})
  params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3),
            "b": jnp.zeros(3), "v": jnp.arange(5.0)}
  states = block.init(params), tx.init(params)
  for k in range(5):
    grads = jax.tree.map(lambda p, k=k: jnp.cos(p + k), params)
    alone, s0 = jax.jit(block.update)(grads, states[0], params)
    slotted, s1 = jax.jit(tx.update)(grads, states[1], params)
    states = s0, s1
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(slotted)):
      np.testing.assert_array_equal(a, b)
    params = jax.tree.map(lambda p, u: p - 0.01 * u, params, alone)


def test_single_slot_equals_block_alone():
  """A block in a slot of its own computes what the block computes alone."""
  rng = np.random.default_rng(4)
  grads = [jnp.asarray(x, jnp.float32) for x in rng.normal(size=(10, 3))]
  for block in (asgm.lowpass_filter(0.9, 0.3), asgm.moment_denominator(),
                asgm.raised_cosine_window(7)):
    slot = {"filter": "filter", "denominator": "denominator",
            "window": "window"}[block.kind]
    alone, _ = _feed(block, grads)
    slotted, _ = _feed(asgm.scale_by_autosgm(**{slot: block}), grads)
    np.testing.assert_array_equal(alone, slotted)
