"""What the diagnostics state keeps of the filter, and how records stack.

A pole and gain fixed when the optimizer is built are written once, by
``init``, and passed through by every update. An injected pole may change
between updates and is recorded with each record. Both have the same state
structure (``optax.inject_hyperparams`` gives the plain state). Records
stacked over steps (``jax.lax.scan``) still read back per leaf.
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
