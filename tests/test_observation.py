"""How the program around the step changes its bits: donated buffers do not,
and diagnostics do not change the optimizer's program's outputs (every
level, every cadence, on the whole tree and leaf by leaf, plain and under
inject_hyperparams, float32 and float64).

The diagnostics' guarantee is about ``tx.update`` compiled as a program of
its own (docs/guide.md, "Diagnostics observe"): compiled in one program with
the gradient's computation and ``apply_updates``, XLA on CPU fuses the
caller's last operations with the update's and contracts multiply-adds
where they meet, and the diagnostics' extra readers move those boundaries.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from conftest import PROBLEMS

STEPS = 25
CONFIGS = {
    "adam": dict(),
    "adamw_zero": dict(gamma=0.5528, weight_decay=0.05),
    "coupled": dict(gamma=0.5, weight_decay=0.05, decay="coupled"),
    "no_debias_small_pole": dict(beta=0.3, gamma=-0.3, debias=False),
    "correlation_window": dict(
        gamma=0.5528, numerator="correlation", weight_decay=0.01,
        window=asgm.raised_cosine_window(STEPS, full=True, floor=0.05)),
    "robust_masked": dict(numerator="robust_correlation", gamma=0.2,
                          numerator_mask={"w1": True, "b1": False,
                                          "w2": True}),
    "moment_no_average": dict(numerator="moment", numerator_average=False,
                              numerator_smoothing=None, denominator=False),
    # the first leaf of a leaf-by-leaf step with coupled decay: ordered
    # alike with and without a record (backend.run)
    "coupled_moment_no_average": dict(
        gamma=0.3, weight_decay=0.02, decay="coupled", numerator="moment",
        numerator_average=False, numerator_smoothing=None),
}
LEVELS = [("summary", 1), ("summary", 3), ("element", 1)]


def _scalar_gain_problem(dtype=jnp.float32):
  """The tanh network with a scalar (0-d) output gain and an L2 term: a
  scalar leaf's kernels are compiled without a loop, where an ordering
  select sits in straight-line code."""
  params, loss = PROBLEMS["mlp"](dtype)
  params = dict(params, gain=jnp.asarray(0.5, dtype))

  def gained(p):
    rest = {k: v for k, v in p.items() if k != "gain"}
    return p["gain"] * loss(rest) + 0.01 * jnp.sum(p["w1"] ** 2)

  return params, gained


def _run(tx, params, loss, donate, inner=lambda state: state, apart=False):
  """The trace of params, updates and every state leaf but the records
  (``inner`` finds the chain's state, e.g. inside inject_hyperparams).

  ``apart``: the gradient, ``tx.update`` and ``apply_updates`` each
  compiled on their own (the scope of the diagnostics' guarantee); else the
  three in one program that also returns the updates."""
  if apart:
    grad = jax.jit(jax.grad(loss))
    update = jax.jit(tx.update, donate_argnums=(1,) if donate else ())
    apply = jax.jit(optax.apply_updates)

    def step(params, state):
      updates, state = update(grad(params), state, params)
      return apply(params, updates), state, updates

  else:

    def step(params, state):
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, updates), state, updates

    step = jax.jit(step, donate_argnums=(0, 1) if donate else ())
  params = jax.tree.map(jnp.copy, params)  # donated below
  state = tx.init(params)
  trace = []
  for _ in range(STEPS):
    params, state, updates = step(params, state)
    chain = inner(state)
    core = chain[0]._replace(diagnostics=None)
    trace.append(jax.device_get((params, updates, core, chain[1:])))
  return trace


def _assert_bitwise(trace, reference):
  for step, (got, want) in enumerate(zip(trace, reference)):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
      g, w = np.asarray(g), np.asarray(w)
      assert g.dtype == w.dtype and g.shape == w.shape
      # bit patterns, so that NaNs and signed zeros count too
      assert np.array_equal(np.atleast_1d(g).view(np.uint8),
                            np.atleast_1d(w).view(np.uint8)), (
          f"update {step + 1} differs")


def _check(name, dtype):
  # The tanh network in one program with its gradient (as before), and
  # with a one-element leaf, the update compiled on its own.
  for problem, apart in ((PROBLEMS["mlp"], False), (_scalar_gain_problem, True)):
    params, loss = problem(dtype)
    config = CONFIGS[name]
    if "numerator_mask" in config and "gain" in params:
      config = dict(config, numerator_mask=dict(config["numerator_mask"],
                                                gain=False))
    off = _run(asgm.autosgm(1e-2, **config), params, loss, True, apart=apart)
    for level, every in LEVELS:
      tx = asgm.autosgm(1e-2, diagnostics=level, diagnostics_every=every,
                        **config)
      _assert_bitwise(_run(tx, params, loss, True, apart=apart), off)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_donated_buffers_change_no_bit(name):
  # XLA fuses a donated step differently; a(t)'s smoothing is written so
  # that no constant folding depends on it (see numerator.py).
  params, loss = PROBLEMS["mlp"]()
  tx = asgm.autosgm(1e-2, **CONFIGS[name])
  _assert_bitwise(_run(tx, params, loss, True), _run(tx, params, loss, False))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_diagnostics_change_no_bit(name):
  _check(name, jnp.float32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_diagnostics_change_no_bit_float64(name, enable_x64):
  del enable_x64
  _check(name, jnp.float64)


def test_diagnostics_change_no_bit_under_inject_hyperparams():
  config = dict(gamma=0.5528, numerator="correlation", weight_decay=0.01)
  make = lambda **kw: optax.inject_hyperparams(asgm.autosgm)(
      learning_rate=1e-2, **config, **kw)
  inner = lambda state: state.inner_state
  for problem, apart in ((PROBLEMS["mlp"], False), (_scalar_gain_problem, True)):
    params, loss = problem()
    want = _run(make(), params, loss, False, inner, apart=apart)
    got = _run(make(diagnostics="summary", diagnostics_every=jnp.int32(4)),
               params, loss, False, inner, apart=apart)
    _assert_bitwise(got, want)
