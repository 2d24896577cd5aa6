"""The LTV view (docs/algorithm.md, section 7): the recorded alpha, r and e
replay every
update exactly, for every decay mode, numerator, window and debias."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from conftest import PROBLEMS, relative_error

STEPS = 40
CONFIGS = {
    "adam": dict(),
    "zero_no_debias": dict(gamma=0.5528, debias=False),
    "negative_zero_beta_small": dict(beta=0.3, gamma=-0.3),
    "coupled": dict(gamma=0.5, weight_decay=0.05, decay="coupled"),
    "decoupled": dict(gamma=0.5528, weight_decay=0.05),
    "decoupled_factor_masked": dict(
        weight_decay=0.05, decay_factor=0.3,
        weight_decay_mask={"w1": True, "b1": False, "w2": True}),
    "correlation_window": dict(
        gamma=0.5528, numerator="correlation", weight_decay=0.01,
        window=asgm.raised_cosine_window(STEPS, full=True, floor=0.05)),
    "moment_no_average": dict(numerator="moment", numerator_average=False,
                              numerator_smoothing=None),
    "robust_no_denominator": dict(numerator="robust_correlation",
                                  denominator=False, gamma=0.2),
    "schedule_lr": dict(gamma=0.5, window=asgm.window_schedule(
        10, "sigmoid", restarts=True, floor=0.1)),
}


def _record(config, lr=1e-2):
  params, loss = PROBLEMS["mlp"]()
  tx = asgm.autosgm(lr, diagnostics="element", **config)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  records, changes = [], []
  for _ in range(STEPS):
    updates, state = step(params, state)
    new_params = optax.apply_updates(params, updates)
    changes.append(updates)  # the parameter change, before float32 rounding
    (dyn,) = asgm.learning_dynamics(state).values()
    records.append(jax.tree.map(np.asarray, dyn))
    params = new_params
  return records, changes


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_replay_reproduces_every_update(name):
  lr = optax.linear_schedule(2e-2, 5e-3, STEPS) if name == "schedule_lr" \
      else 1e-2
  records, changes = _record(CONFIGS[name], lr)
  first = records[0]
  # dw(1) = 0: r(1) is reported as 0 and flagged for every element
  for leaf, count in zip(jax.tree.leaves(first.alpha),
                         jax.tree.leaves(first.r_undefined)):
    assert count == leaf.size
  dw = jax.tree.map(np.zeros_like, first.dw)
  worst = 0.0
  for rec, change in zip(records, changes):
    beta, eta = float(rec.beta), float(rec.eta)
    replay = jax.tree.map(
        lambda d, r, a, e: beta * r * d + eta * a * e,
        dw, rec.r, rec.alpha, rec.e)
    worst = max(worst, relative_error(replay, rec.dw))
    # the logged dw is the actual update (float32 round-off)
    assert relative_error(change, rec.dw) < 1e-6
    dw = replay
  # replayed from the start through all steps: float32 round-off only
  assert worst < 2e-5, worst
  assert float(jnp.max(jnp.abs(jnp.asarray(
      jax.tree.leaves(records[-1].dw)[0])))) > 0


def test_window_at_zero_flags_r_and_replay_holds():
  """A full window with floor 0 starts at F = 0: alpha(1) = 0, dw(1) = 0,
  so r(2) is reported as 0 with a flag, never inf or NaN."""
  config = dict(window=asgm.raised_cosine_window(20, full=True, floor=0.0))
  records, _ = _record(config)
  first, second = records[0], records[1]
  for a in jax.tree.leaves(first.alpha):
    assert np.all(a == 0)
  for r, count, a in zip(jax.tree.leaves(second.r),
                         jax.tree.leaves(second.r_undefined),
                         jax.tree.leaves(second.alpha)):
    assert np.all(np.isfinite(r)) and np.all(r == 0) and count == a.size
  third = records[2]
  assert all(int(c) == 0 for c in jax.tree.leaves(third.r_undefined))
  # dw(2) = 0 but the filter remembers g(1): beta r(2) dw(2) stands for
  # -beta alpha(2) q(1), not 0, so the dw-only replay resumes from step 3.
  dw = records[2].dw
  for rec in records[3:]:
    beta, eta = float(rec.beta), float(rec.eta)
    dw = jax.tree.map(lambda d, r, a, e: beta * r * d + eta * a * e,
                      dw, rec.r, rec.alpha, rec.e)
    assert relative_error(dw, rec.dw) < 2e-5


def test_proximal_reading():
  """Each step minimises -eta D e + (D - beta r dw)^2 / (2 alpha)."""
  records, _ = _record(CONFIGS["correlation_window"])
  rng = np.random.default_rng(0)
  for prev, rec in zip(records[1:-1], records[2:]):
    beta, eta = float(rec.beta), float(rec.eta)
    for d_prev, r, a, e, d in zip(*(jax.tree.leaves(x) for x in (
        prev.dw, rec.r, rec.alpha, rec.e, rec.dw))):
      assert np.all(a > 0)
      q = lambda x: -eta * x * e + (x - beta * r * d_prev) ** 2 / (2 * a)
      # the stationary point of the strongly convex quadratic is the step
      grad = -eta * e + (d - beta * r * d_prev) / a
      np.testing.assert_allclose(grad * a, 0, atol=1e-6 * max(
          1.0, float(np.max(np.abs(d)))))
      for delta in (1e-3, -1e-3):
        bump = delta * (np.abs(d) + 1e-8) * rng.uniform(0.5, 1.5, d.shape)
        assert np.all(q(d + bump) >= q(d) - 1e-12)


@pytest.mark.parametrize("level", ["summary", "element"])
def test_dynamics_can_leave_a_jitted_step(level):
  params, loss = PROBLEMS["quadratic"]()
  tx = asgm.autosgm(1e-2, diagnostics=level, **CONFIGS["correlation_window"])

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state, (
        asgm.learning_dynamics(state))

  state = tx.init(params)
  for _ in range(3):
    params, state, inside = step(params, state)
  (inside,) = inside.values()
  (outside,) = asgm.learning_dynamics(state).values()
  assert inside.level == outside.level == level
  for a, b in zip(jax.tree.leaves(inside), jax.tree.leaves(outside)):
    np.testing.assert_allclose(a, b, rtol=1e-6)  # XLA may fuse the products


def test_summary_level_matches_element_level():
  params, loss = PROBLEMS["quadratic"]()
  config = CONFIGS["correlation_window"]
  txs = [asgm.autosgm(1e-2, diagnostics=level, **config)
         for level in ("summary", "element")]
  states = [tx.init(params) for tx in txs]
  for _ in range(5):
    g = jax.grad(loss)(params)
    outs = []
    for i, tx in enumerate(txs):
      u, states[i] = tx.update(g, states[i], params)
      outs.append(u)
    params = optax.apply_updates(params, outs[0])
  (summary,) = asgm.learning_dynamics(states[0]).values()
  (element,) = asgm.learning_dynamics(states[1]).values()
  for field in ("alpha", "r", "margin", "e", "dw"):
    got = getattr(summary, field)
    full = getattr(element, field)
    for name in full:
      x = np.asarray(full[name])
      np.testing.assert_allclose(got.sup[name], np.max(np.abs(x)), rtol=1e-5)
      np.testing.assert_allclose(got.mean[name], np.mean(x), rtol=1e-4,
                                 atol=1e-7)
      np.testing.assert_allclose(got.std[name], np.std(x), rtol=1e-4,
                                 atol=1e-7)


@pytest.mark.parametrize("kwargs, history", [
    (dict(), False),  # the Adam point: gamma = 0, no decay
    (dict(weight_decay=1e-2, decay="coupled"), False),
    (dict(gamma=0.5), True),
    (dict(weight_decay=1e-2), True),
    (dict(gamma=0.5, weight_decay=1e-2, numerator="correlation"), True),
])
def test_diagnostics_keep_alpha_and_at_most_one_history_buffer(kwargs,
                                                               history):
  params = {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}
  state = asgm.autosgm(1e-2, diagnostics="summary", **kwargs).init(params)
  diag = state[0].diagnostics
  assert jax.tree.structure(diag.alpha_prev) == jax.tree.structure(params)
  assert (diag.input_prev is not None) == history
  shapes = {p.shape for p in jax.tree.leaves(params)}
  per_element = [x for x in jax.tree.leaves(diag) if x.shape in shapes]
  assert len(per_element) == 2 * (1 + history)  # two leaves each
  # the summaries: one buffer, a (quantity, statistic) row per leaf, no
  # scalar per statistic; the counts of undefined r one int32 buffer
  assert [x.shape for x in jax.tree.leaves(diag.values)] == [(2, 4, 3)]
  assert [(x.shape, x.dtype) for x in jax.tree.leaves(diag.r_undefined)] == [
      ((2,), jnp.int32)]
  # ... read per leaf, keyed like the parameters
  assert jax.tree.map(jnp.shape, diag.values["summary"].tree()) == {
      "w": (4, 3), "b": (4, 3)}
  assert jax.tree.map(jnp.shape, diag.r_undefined.tree()) == {
      "w": (), "b": ()}


def test_summary_std_of_a_nearly_constant_leaf():
  # E[x^2] - E[x]^2 cancels in float32 here; the recorded std must not.
  from autosgm_optax._src import diagnostics as _diagnostics  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = (1e3 + 1e-2 * rng.standard_normal(10_000)).astype(np.float32)
  sup, mean, std = jax.jit(_diagnostics._summary)(jnp.asarray(x))
  ref = x.astype(np.float64)
  np.testing.assert_allclose(std, ref.std(), rtol=1e-3)
  # a float32 sum of n positive terms in any order (XLA's CPU kernel picks
  # it per vector width) is within (n - 1) 2^-24 of the exact sum, relative;
  # the division by n (exact in float32) adds one rounding
  np.testing.assert_allclose(mean, ref.mean(), rtol=x.size * 2.0**-24)
  assert float(sup) == float(np.max(np.abs(x)))
  naive = np.sqrt(max(np.mean(x * x) - np.mean(x) ** 2, 0))
  assert abs(naive - ref.std()) > 0.5 * ref.std()  # the failure it avoids


def test_diagnostics_off_adds_no_state_and_no_work():
  params = {"w": jnp.ones((64, 64)), "b": jnp.zeros(64)}
  grads = jax.tree.map(jnp.ones_like, params)

  def compiled(tx):
    state = tx.init(params)
    step = lambda g, s, p: tx.update(g, s, p)
    lowered = jax.jit(step).lower(grads, state, params)
    analysis = lowered.compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return (state, lowered.as_text(debug_info=False),
            analysis["bytes accessed"])

  config = CONFIGS["correlation_window"]
  off_state, off_text, off_bytes = compiled(asgm.autosgm(1e-2, **config))
  on_state, _, on_bytes = compiled(
      asgm.autosgm(1e-2, diagnostics="summary", **config))
  # off: the diagnostics slot is empty, nothing else in the state changes
  assert isinstance(off_state[0].diagnostics, optax.EmptyState)
  assert jax.tree.structure(off_state[0]._replace(diagnostics=None)) == (
      jax.tree.structure(on_state[0]._replace(diagnostics=None)))
  # the compiled update does not depend on the (disabled) feature
  _, text, _ = compiled(asgm.autosgm(1e-2, diagnostics=None, **config))
  assert text == off_text
  # and the Adam point streams what optax.adam streams (scalars aside)
  _, _, adam_bytes = compiled(optax.adam(1e-2))
  _, _, ours_bytes = compiled(asgm.autosgm(1e-2))
  assert 0 <= ours_bytes - adam_bytes <= 256
  assert on_bytes > off_bytes
