"""The backend's tricks for XLA on one CPU device (autosgm_optax/_src/
backend.py): each changes the schedule, never the numbers beyond float32
rounding, and what a step streams not at all."""

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
    "matrix path": dict(gamma=0.5, numerator="correlation", weight_decay=1e-2,
                        matrix="newton_schulz"),
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


def test_the_tricks_are_on_for_arrays_on_one_cpu_device():
  on_cpu = jax.devices()[0].platform == "cpu" and jax.device_count() == 1
  assert backend.on_one_cpu([jnp.ones(3)]) == on_cpu
  seen = []
  jax.jit(lambda x: seen.append(backend.on_one_cpu([x])) or x)(jnp.ones(3))
  assert seen == [on_cpu]
  realisation = backend.realisation([jnp.ones(3)])
  assert (realisation is not asgm.Signal(0, 0).realisation) == on_cpu
  with backend.without(*backend.TRICKS):
    assert backend.realisation([jnp.ones(3)]).filter_output is None
  with pytest.raises(ValueError, match="unknown tricks"):
    with backend.without("fast_math"):
      pass


def test_the_in_place_filter_output_is_the_plain_one():
  beta, gamma, eta = 0.9, 0.5528, 0.1 / (1 - 0.5528)
  rng = np.random.default_rng(0)
  m_old, g = rng.normal(size=(2, 1000))
  m_new = beta * m_old + eta * g
  got = backend._in_place_filter(m_new, g, beta, gamma, eta)
  np.testing.assert_allclose(got, m_new - gamma * m_old, rtol=1e-12,
                             atol=1e-14)
  # Not for small or traced poles, where dividing by beta loses accuracy.
  assert backend._in_place_filter(m_new, g, 0.3, -0.3, 1.0) is None
  assert backend._in_place_filter(m_new, g, jnp.float32(0.9), 0.5, 1.0) is None


@pytest.mark.parametrize("trick, name", [
    ("in_place_filter", "full"), ("leaf_by_leaf", "full"),
    ("ordered_record", "diagnostics")])
def test_without_turns_the_trick_off(trick, name):
  """Each trick changes the compiled program on the configuration it
  targets (so the tests of rounding below compare two programs)."""
  tx = asgm.autosgm(1e-2, **CONFIGS[name])
  state = tx.init(PARAMS)

  def text():  # a fresh function: jit caches traces by function
    step = lambda g, s, p: tx.update(g, s, p)
    return jax.jit(step).lower(PARAMS, state, PARAMS).as_text()

  with_trick = text()
  with backend.without(trick):
    assert text() != with_trick


@pytest.mark.parametrize("trick", backend.TRICKS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_trick_changes_rounding_only(name, trick):
  tx = asgm.autosgm(1e-2, **CONFIGS[name])
  with_tricks = _train(tx)
  with backend.without(trick):
    without = _train(tx)
  assert jax.tree.structure(with_tricks) == jax.tree.structure(without)
  for a, b in zip(jax.tree.leaves(with_tricks), jax.tree.leaves(without)):
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.size:  # 8 steps of float32 rounding, relative to the values
      assert relative_error(a, b) < 1e-5, (name, trick)


def test_under_optax_masked_and_with_none_leaves():
  params = {"a": jnp.ones((3, 2)), "b": None, "c": jnp.arange(4.0)}
  tx = optax.masked(asgm.autosgm(1e-2, numerator="correlation"),
                    {"a": True, "b": None, "c": False})
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  assert updates["c"] is not None and np.all(updates["c"] == 1)  # untouched
  assert np.all(np.isfinite(updates["a"])) and np.any(updates["a"] != 0)


@pytest.mark.parametrize("numerator_mask", [None, "default"])
def test_leaf_by_leaf_under_optax_masked(numerator_mask):
  """Under optax.masked the updates hold a MaskedNode where a whole leaf is
  masked, and the core's state too; a numerator mask's unity leaves hold a
  NoState. The split still gives each part one leaf of every per-element
  buffer (leaf by leaf stays on), and merge inverts it."""
  params = {"k1": jnp.ones((3, 2)), "bias": jnp.ones(2),
            "k2": jnp.ones((2, 4)), "off": jnp.ones(5)}
  mask = None if numerator_mask is None else asgm.default_weight_decay_mask
  tx = optax.masked(asgm.autosgm(1e-2, numerator="correlation",
                                 numerator_mask=mask),
                    {"k1": True, "bias": True, "k2": True, "off": False})
  core = tx.init(params).inner_state[0]
  # (what optax.masked hands the inner update)
  updates = dict(params, off=optax.MaskedNode())
  leaves, treedef = jax.tree.flatten(updates)
  assert len(leaves) == 3
  parts = [backend.split(core, treedef, i) for i in range(len(leaves))]
  for i, part in enumerate(parts):
    c = part.numerator.c
    kept = [k for k in ("k1", "bias", "k2") if c[k] is not None]
    assert kept == [sorted(("bias", "k1", "k2"))[i]], (i, c)
    assert isinstance(c["off"], optax.MaskedNode)
  if numerator_mask is not None:
    assert isinstance(core.numerator.c["bias"], asgm.NoState)
  merged = backend.merge(parts, core, treedef)
  assert jax.tree.structure(merged) == jax.tree.structure(core)


@pytest.mark.parametrize("level", ["element", "summary"])
def test_split_and_merge_are_inverse(level):
  tx = asgm.autosgm(1e-2, numerator="correlation", diagnostics=level)
  state = tx.init(PARAMS)
  # distinct rows, so that a row merged into the wrong place shows
  state = jax.tree.map(
      lambda x: (x + jnp.arange(x.size).reshape(x.shape).astype(x.dtype)
                 if isinstance(x, jax.Array) else x), state)
  treedef = jax.tree.structure(PARAMS)
  parts = [backend.split(state, treedef, i)
           for i in range(treedef.num_leaves)]
  rows = lambda s: s[0].diagnostics.r_undefined.rows
  assert [rows(p).shape for p in parts] == [(1,)] * treedef.num_leaves
  merged = backend.merge(parts, state, treedef)
  assert jax.tree.structure(merged) == jax.tree.structure(state)
  is_rows = lambda x: isinstance(x, asgm.PerLeaf)
  stacked = {id(x.rows) for x in jax.tree.leaves(state, is_leaf=is_rows)
             if is_rows(x)}
  assert len(stacked) == (2 if level == "summary" else 1)
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(state)):
    if id(b) in stacked:  # a PerLeaf's rows: split by row, concatenated
      np.testing.assert_array_equal(a, b)
    else:  # every other buffer is passed through, not copied
      assert a is b


@pytest.mark.parametrize("token", [0.0, -3.5, 1e30, np.inf, -np.inf, np.nan])
def test_exact_one_is_one_for_every_token(token):
  one = jax.jit(backend.exact_one)(jnp.full((5,), token, jnp.float32))
  assert one.dtype == jnp.float32 and float(one) == 1.0
  # (XLA on CPU flushes subnormals in every product, with or without it.)
  x = jnp.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, -3.0], jnp.float32)
  assert np.array_equal(np.asarray(backend.times(x, one)), np.asarray(x),
                        equal_nan=True)
  assert backend.exact_one([jnp.zeros((0,))]) is None


def test_leaf_by_leaf_adds_no_traffic():
  """The schedule changes the order of the kernels, not what they stream."""
  tx = asgm.autosgm(1e-2, **CONFIGS["full"])
  params = {f"w{i}": jnp.ones((256, 64)) for i in range(4)}
  state = tx.init(params)

  def bytes_accessed():
    step = lambda g, s, p: tx.update(g, s, p)
    analysis = jax.jit(step).lower(params, state, params).compile(
    ).cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["bytes accessed"]

  sequenced = bytes_accessed()
  with backend.without("leaf_by_leaf"):
    whole = bytes_accessed()
  assert sequenced <= whole + 4096  # scalars aside


def test_the_in_place_filter_streams_less():
  """Its reason to exist: XLA updates the filter's donated buffer in place
  (the plain form makes it copy the buffer, 1.09x the bytes)."""
  tx = asgm.autosgm(1e-2, gamma=0.5528)
  params = {f"w{i}": jnp.ones((256, 64)) for i in range(4)}

  def bytes_accessed():
    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s
    analysis = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, tx.init(params), params).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["bytes accessed"]

  in_place = bytes_accessed()
  with backend.without("in_place_filter"):
    plain = bytes_accessed()
  assert in_place < plain
