"""The leaf-by-leaf schedule of configurations with a numerator (CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax._src import backend
from conftest import relative_error

PARAMS = {
    "dense": {"kernel": jnp.linspace(-1.0, 1.0, 24).reshape(6, 4),
              "bias": jnp.zeros(4)},
    "empty": jnp.zeros((0, 3)),
    "norm": {"scale": jnp.ones(4)},
    "out": jnp.linspace(0.5, -0.5, 8).reshape(4, 2),
}

CONFIGS = {
    "full": dict(gamma=0.5528, numerator="correlation", weight_decay=1e-2,
                 window=asgm.raised_cosine_window(20)),
    "no averaging": dict(numerator="robust_correlation",
                         numerator_average=False, numerator_smoothing=None),
    "moment, coupled decay": dict(numerator="moment", weight_decay=1e-2,
                                  decay="coupled"),
    "masked decay": dict(numerator="correlation", weight_decay=1e-2,
                         weight_decay_mask=asgm.default_weight_decay_mask),
    "diagnostics": dict(gamma=0.5, numerator="correlation", weight_decay=1e-2,
                        diagnostics="summary"),
}


def _grads(params, k):
  return jax.tree.map(lambda p: jnp.cos(3.0 * p + k) + 0.1 * k, params)


def _train(tx, steps=8):
  params, state = PARAMS, tx.init(PARAMS)
  step = jax.jit(tx.update)
  for k in range(steps):
    updates, state = step(_grads(params, k), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.fixture
def whole_tree(monkeypatch):
  monkeypatch.setattr(backend, "enabled", lambda leaves: False)


def test_the_schedule_is_on_for_numerator_configurations_here():
  leaves = jax.tree.leaves(PARAMS)
  assert jax.default_backend() != "cpu" or jax.device_count() != 1 or (
      backend.enabled(leaves))
  assert not backend.enabled([jnp.ones(3), jnp.zeros((0,))])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_leaf_by_leaf_equals_the_whole_tree(name, monkeypatch):
  tx = asgm.autosgm(1e-2, **CONFIGS[name])
  sequenced = _train(tx)
  monkeypatch.setattr(backend, "enabled", lambda leaves: False)
  whole = _train(tx)
  assert jax.tree.structure(sequenced) == jax.tree.structure(whole)
  for a, b in zip(jax.tree.leaves(sequenced), jax.tree.leaves(whole)):
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.size:  # XLA may round a one-leaf program's divisions differently
      assert relative_error(a, b) < 1e-5


def test_under_optax_masked_and_with_none_leaves():
  params = {"a": jnp.ones((3, 2)), "b": None, "c": jnp.arange(4.0)}
  tx = optax.masked(asgm.autosgm(1e-2, numerator="correlation"),
                    {"a": True, "b": None, "c": False})
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  assert updates["c"] is not None and np.all(updates["c"] == 1)  # untouched
  assert np.all(np.isfinite(updates["a"])) and np.any(updates["a"] != 0)


def test_split_and_merge_are_inverse():
  tx = asgm.autosgm(1e-2, numerator="correlation", diagnostics="element")
  state = tx.init(PARAMS)
  treedef = jax.tree.structure(PARAMS)
  parts = [backend.split(state, treedef, i)
           for i in range(treedef.num_leaves)]
  merged = backend.merge(parts, state, treedef)
  assert jax.tree.structure(merged) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(state)):
    assert a is b


@pytest.mark.parametrize("token", [0.0, -3.5, 1e30, np.inf, -np.inf, np.nan])
def test_exact_one_is_one_for_every_token(token):
  one = jax.jit(backend.exact_one)(jnp.full((5,), token, jnp.float32))
  assert one.dtype == jnp.float32 and float(one) == 1.0
  # (XLA on CPU flushes subnormals in every product, with or without it.)
  x = jnp.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, -3.0], jnp.float32)
  assert np.array_equal(np.asarray(backend.times(x, one)), np.asarray(x),
                        equal_nan=True)


def test_no_added_traffic(whole_tree):
  """The schedule changes the order of the kernels, not what they stream."""
  tx = asgm.autosgm(1e-2, **CONFIGS["full"])
  params = {f"w{i}": jnp.ones((256, 64)) for i in range(4)}
  state = tx.init(params)

  def bytes_accessed(enabled):
    jax.clear_caches()
    backend.enabled = enabled
    step = lambda g, s, p: tx.update(g, s, p)
    analysis = jax.jit(step).lower(params, state, params).compile(
    ).cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["bytes accessed"]

  whole = bytes_accessed(lambda leaves: False)
  sequenced = bytes_accessed(lambda leaves: True)
  assert sequenced <= whole + 4096  # scalars aside
