"""Shared fixtures: test problems and a float64 switch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


@pytest.fixture
def enable_x64():
  """Runs a test with float64 enabled, restoring the setting afterwards."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


def mlp_problem(dtype=jnp.float32, seed=0):
  """A small tanh network regression: (params, loss) with a zero bias."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(64, 8)), dtype)
  y = jnp.asarray(np.sin(rng.normal(size=(64,))), dtype)
  params = {
      "w1": jnp.asarray(rng.normal(size=(8, 16)) * 0.4, dtype),
      "b1": jnp.zeros((16,), dtype),
      "w2": jnp.asarray(rng.normal(size=(16,)) * 0.4, dtype),
  }

  def loss(p):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] - y) ** 2)

  return params, loss


def quadratic_problem(dtype=jnp.float32, seed=1):
  """An ill-conditioned least-squares problem with two leaves."""
  rng = np.random.default_rng(seed)
  a = jnp.asarray(rng.normal(size=(32, 12)) * np.logspace(0, 1, 12), dtype)
  b = jnp.asarray(rng.normal(size=(32,)), dtype)
  params = {"x": jnp.asarray(rng.normal(size=(12,)), dtype),
            "s": jnp.asarray(rng.normal(size=(3, 4)), dtype)}

  def loss(p):
    r = a @ p["x"] + jnp.sum(p["s"]) - b
    return 0.5 * jnp.mean(r ** 2) + 0.05 * jnp.sum(p["s"] ** 2)

  return params, loss


PROBLEMS = {"mlp": mlp_problem, "quadratic": quadratic_problem}


def run(tx, params, loss, steps):
  """Final parameters after ``steps`` jitted updates (one compiled loop)."""

  @jax.jit
  def go(params):
    def body(_, carry):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]

  return go(params)


def relative_error(a, b):
  """docs/algorithm.md, section 8: per leaf max|a - b| / max(max|b|, 1e-30),
  worst leaf."""
  worst = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(np.max(np.abs(y)), 1e-30)
    worst = max(worst, float(np.max(np.abs(x - y)) / scale))
  return worst


def assert_bitwise_equal(a, b):
  for path_x, y in zip(jax.tree_util.tree_leaves_with_path(a),
                       jax.tree.leaves(b)):
    path, x = path_x
    assert x.dtype == y.dtype, (path, x.dtype, y.dtype)
    np.testing.assert_array_equal(
        np.asarray(x), np.asarray(y),
        err_msg=f"leaf {jax.tree_util.keystr(path)} differs")


def counted_step(tx, loss):
  """A jitted training step and the list it appends to on every trace."""
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(1)
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  return step, traces
