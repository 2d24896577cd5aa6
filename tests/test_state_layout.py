"""What the states keep: numbers fixed when built, counters, stacked records.

A filter pole and gain fixed when the optimizer is built are written once
into the diagnostics state, by ``init``, and passed through by every update;
an injected pole may change between updates and is recorded with each
record. A window given as a number is written once too; a schedule's value
with each update. Both have the same state structure as their injected
forms (``optax.inject_hyperparams`` gives the plain state). A filter counts
updates only for a debias. Records stacked over steps (``jax.lax.scan``)
still read back per leaf.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm

PARAMS = {"b": jnp.zeros(3), "w": jnp.ones((2, 4))}


def _grads(t):
  return jax.tree.map(lambda p: jnp.cos(t + jnp.arange(p.size)).reshape(
      p.shape), PARAMS)


def _diagnostics(state):
  found = [x for x in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, asgm.ScaleByAutoSGMState))
           if isinstance(x, asgm.ScaleByAutoSGMState)]
  assert len(found) == 1
  return found[0].diagnostics


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("kwargs,beta,eta", [
    (dict(beta=0.8, gamma=0.3), 0.8, 0.2 / 0.7),
    (dict(beta=0.9), 0.9, 0.1),
    (dict(beta=0.0), 0.0, 1.0),
])
def test_a_fixed_pole_and_gain_are_written_once(kwargs, beta, eta, every):
  tx = asgm.autosgm(1e-2, diagnostics="summary", diagnostics_every=every,
                    **kwargs)
  state = tx.init(PARAMS)
  # written by init, before any record
  np.testing.assert_allclose(_diagnostics(state).beta, beta, rtol=1e-7)
  np.testing.assert_allclose(_diagnostics(state).eta, eta, rtol=1e-6)
  update = jax.jit(tx.update)
  for t in range(6):
    before = _diagnostics(state)
    _, state = update(_grads(t), state, PARAMS)
    after = _diagnostics(state)
    np.testing.assert_array_equal(after.beta, before.beta)
    np.testing.assert_array_equal(after.eta, before.eta)
  dyn = asgm.learning_dynamics(state)[""]
  np.testing.assert_allclose(dyn.beta, beta, rtol=1e-7)
  np.testing.assert_allclose(dyn.eta, eta, rtol=1e-6)
  assert dyn.beta.dtype == jnp.float32
  # the margin is beta |r|, from the constant
  if every == 1:
    np.testing.assert_allclose(
        jax.tree.leaves(dyn.margin.sup),
        [beta * x for x in jax.tree.leaves(dyn.r.sup)], rtol=1e-6)


@pytest.mark.parametrize("every", [1, 2])
def test_an_injected_pole_is_recorded_with_its_update(every):
  betas = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
  tx = optax.inject_hyperparams(
      asgm.autosgm, static_args=("diagnostics_every",))(
          learning_rate=1e-2, beta=lambda count: jnp.asarray(betas)[count],
          diagnostics="summary", diagnostics_every=every)
  state = tx.init(PARAMS)
  update = jax.jit(tx.update)
  for t in range(len(betas)):
    _, state = update(_grads(t), state, PARAMS)
    diag = _diagnostics(state)
    recorded = int(diag.recorded)  # the update the record describes
    assert recorded == t + 1 - (t + 1) % every
    if not recorded:  # no record yet
      continue
    # the pole of the recorded update (update k ran with betas[k - 1]),
    # not today's
    np.testing.assert_allclose(diag.beta, betas[recorded - 1], rtol=1e-7)
    np.testing.assert_allclose(diag.eta, 1 - betas[recorded - 1], rtol=1e-6)


def test_stacked_records_read_back_per_leaf():
  """lax.scan over steps stacks the records: the leaf axis is then the
  second; the readers' per-leaf view keeps the step axis in front."""
  tx = asgm.autosgm(1e-2, gamma=0.5, diagnostics="summary")

  def step(state, t):
    _, state = tx.update(_grads(t), state, PARAMS)
    return state, _diagnostics(state)

  steps = 5
  state, history = jax.lax.scan(step, tx.init(PARAMS), jnp.arange(steps))
  summary = history.values["summary"]
  assert summary.rows.shape == (steps, 2, 4, 3)
  per_leaf = summary.tree()
  assert per_leaf["w"].shape == (steps, 4, 3)
  # the last step's rows are the final state's
  last = _diagnostics(state).values["summary"].tree()
  for key in PARAMS:
    np.testing.assert_array_equal(per_leaf[key][-1], last[key])
  counts = history.r_undefined.tree()
  assert counts["w"].shape == (steps,)
  np.testing.assert_array_equal(counts["w"][0], PARAMS["w"].size)
  np.testing.assert_array_equal(counts["w"][1:], 0)
  np.testing.assert_array_equal(history.beta, np.float32(0.9))


@pytest.mark.parametrize("every", [1, 2])
def test_injected_and_plain_states_have_one_structure(every):
  kwargs = dict(learning_rate=1e-2, beta=0.9, gamma=0.5,
                diagnostics="summary", diagnostics_every=every)
  plain = asgm.autosgm(**kwargs)
  injected = optax.inject_hyperparams(
      asgm.autosgm, static_args=("diagnostics_every",))(**kwargs)
  s_plain, s_injected = plain.init(PARAMS), injected.init(PARAMS)
  for t in range(3):
    assert (jax.tree.structure(s_plain)
            == jax.tree.structure(s_injected.inner_state))
    np.testing.assert_allclose(_diagnostics(s_plain).beta,
                               _diagnostics(s_injected).beta, rtol=1e-7)
    _, s_plain = plain.update(_grads(t), s_plain, PARAMS)
    _, s_injected = injected.update(_grads(t), s_injected, PARAMS)


def test_a_fixed_window_is_written_once_a_schedule_every_update():
  fixed = asgm.scale_by_window(0.5)
  schedule = asgm.scale_by_window(lambda count: 0.5 ** count)
  g = jnp.ones(2)
  s_fixed, s_schedule = fixed.init(g), schedule.init(g)
  # before the first update: the F the first update uses
  assert float(s_fixed.value) == 0.5 and float(s_schedule.value) == 1.0
  for t in range(4):
    u_fixed, s_fixed = fixed.update(g, s_fixed)
    u_schedule, s_schedule = schedule.update(g, s_schedule)
    assert float(s_fixed.value) == 0.5
    np.testing.assert_array_equal(u_fixed, 0.5 * g)
    assert float(s_schedule.value) == 0.5 ** t  # F of update t + 1
    np.testing.assert_array_equal(u_schedule, 0.5 ** t * g)
    assert int(s_schedule.count) == int(s_fixed.count) == t + 1
  # the readers: mu F of the last update, 0 before the first
  tx = asgm.autosgm(0.1, window=0.5)
  state = tx.init(PARAMS)
  assert float(asgm.effective_learning_rate(state)) == 0.0
  _, state = tx.update(_grads(0), state, PARAMS)
  np.testing.assert_allclose(asgm.effective_learning_rate(state), 0.05)


def test_a_filter_counts_only_for_a_debias():
  for debias, counted in ((False, False), (True, True)):
    tx = asgm.lowpass_filter(0.9, debias=debias)
    state = tx.init(PARAMS)
    assert (state.count is not None) == counted
    _, state = tx.update(_grads(0), state)
    assert (state.count is not None) == counted
  # the library's one-liner at the PHB point: no counter for the filter,
  # and still exactly optax.sgd
  tx = asgm.presets.sgd(0.1, momentum=0.9)
  state = tx.init(PARAMS)
  twin = optax.sgd(0.1, momentum=0.9)
  twin_state = twin.init(PARAMS)
  for t in range(5):
    u, state = tx.update(_grads(t), state, PARAMS)
    v, twin_state = twin.update(_grads(t), twin_state, PARAMS)
    for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
      np.testing.assert_array_equal(x, y)
