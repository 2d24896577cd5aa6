"""``numerator_mask``: leaves on the unity numerator beside estimated ones
(the NumPy re-derivation is in test_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from conftest import PROBLEMS, counted_step, relative_error, run

LR = 1e-2
MASK = {"w1": True, "b1": False, "w2": True}  # the mlp problem's leaves


def _masked_leaves_follow_unity(mask, **kwargs):
  """Runs the mlp problem with the mask and checks each masked-out leaf
  against the same configuration on the unity numerator (a leaf's update
  depends only on its own gradient and state, and the mlp's gradients
  couple the leaves, so the check runs one step from the same state)."""
  params, loss = PROBLEMS["mlp"]()
  masked = asgm.autosgm(LR, numerator_mask=mask, **kwargs)
  unity = asgm.autosgm(LR, **{k: v for k, v in kwargs.items()
                              if not k.startswith("numerator")})
  full = asgm.autosgm(LR, **kwargs)
  g = jax.grad(loss)(params)
  u_masked, state = masked.update(g, masked.init(params), params)
  u_unity, _ = unity.update(g, unity.init(params), params)
  u_full, _ = full.update(g, full.init(params), params)
  resolved = mask(params) if callable(mask) else mask
  for name, estimated in resolved.items():
    want = u_full if estimated else u_unity
    # The same formulas; a configuration with a numerator runs leaf by leaf
    # on one CPU device, and XLA may fuse (and round) the unity leaves'
    # division differently there: a few float32 ulps, against a numerator
    # that is not 1 (order-1 differences).
    np.testing.assert_allclose(np.asarray(u_masked[name]),
                               np.asarray(want[name]), err_msg=name,
                               rtol=8 * float(jnp.finfo(jnp.float32).eps))
  return state


@pytest.mark.parametrize("numerator", ["moment", "correlation",
                                       "robust_correlation"])
def test_masked_leaves_take_the_unity_numerator(numerator):
  state = _masked_leaves_follow_unity(MASK, numerator=numerator, gamma=0.5)
  numerator_state = state[0].numerator
  # The masked-out leaf keeps no estimator state: an empty NoState (no
  # array, so Orbax saves the state).
  assert isinstance(numerator_state.c["b1"], asgm.NoState)
  assert numerator_state.c["w1"].shape == (8, 16)
  values = asgm.numerator_values(state)["[0].numerator"]
  assert values["b1"] is None and values["w1"].shape == (1, 1)


def test_a_callable_mask_and_default_weight_decay_mask():
  # default_weight_decay_mask: only the 2-D kernel is estimated.
  state = _masked_leaves_follow_unity(asgm.default_weight_decay_mask,
                                      numerator="correlation")
  assert isinstance(state[0].numerator.c["w2"], asgm.NoState)


def test_mask_trains_the_zero_bias():
  # Under the correlation numerator a zero bias starts from the escape
  # constant eps (1e-8) and barely moves in 50 steps (2e-7 measured); on the
  # unity numerator it moves as Adam's does, about lr per step (0.47).
  params, loss = PROBLEMS["mlp"]()
  masked = run(asgm.autosgm(LR, numerator="correlation",
                            numerator_mask=MASK), params, loss, 50)
  plain = run(asgm.autosgm(LR, numerator="correlation"), params, loss, 50)
  assert float(jnp.max(jnp.abs(plain["b1"]))) < 1e-4
  assert float(jnp.max(jnp.abs(masked["b1"]))) > 0.1


def test_mask_with_diagnostics_observes_the_same_training():
  params, loss = PROBLEMS["mlp"]()
  base = dict(numerator="correlation", numerator_mask=MASK, gamma=0.5)
  plain = run(asgm.autosgm(LR, **base), params, loss, 20)
  for level in ("summary", "element"):
    observed = run(asgm.autosgm(LR, diagnostics=level, **base), params, loss,
                   20)
    np.testing.assert_allclose(np.asarray(observed["w1"]),
                               np.asarray(plain["w1"]), rtol=1e-5, atol=1e-7)
  tx = asgm.autosgm(LR, diagnostics="element", **base)
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update(jax.grad(loss)(params), state, params)
  (dyn,) = asgm.learning_dynamics(state).values()
  assert all(bool(jnp.all(jnp.isfinite(x)))
             for x in jax.tree.leaves(dyn.alpha))


def test_mask_under_inject_hyperparams():
  params, loss = PROBLEMS["mlp"]()
  for mask, static in ((MASK, ()), (asgm.default_weight_decay_mask,
                                    ("numerator_mask",))):
    tx = optax.inject_hyperparams(asgm.autosgm, static_args=static)(
        LR, numerator="correlation", numerator_mask=mask)
    step, traces = counted_step(tx, loss)
    state = tx.init(params)
    p = params
    for k in range(3):
      p, state = step(p, state)
      hp = state.hyperparams
      hp["learning_rate"] = jnp.full_like(hp["learning_rate"], LR / (k + 2))
    assert len(traces) == 1
    plain = asgm.autosgm(LR, numerator="correlation", numerator_mask=mask)
    assert jax.tree.structure(plain.init(params)) == jax.tree.structure(
        state.inner_state)


def test_mask_validation():
  with pytest.raises(ValueError, match="numerator='unity'"):
    asgm.autosgm(LR, numerator_mask=MASK)
  with pytest.raises(TypeError, match="must be bools"):
    asgm.autosgm(LR, numerator="correlation",
                 numerator_mask={"w1": 1.0, "b1": 0.0, "w2": 1.0})
  with pytest.raises(ValueError, match="holds no bools"):
    asgm.autosgm(LR, numerator="correlation", numerator_mask={})
  params, _ = PROBLEMS["mlp"]()
  tx = asgm.autosgm(LR, numerator="correlation",
                    numerator_mask={"w1": True, "b1": False})
  with pytest.raises(ValueError, match="does not match the parameters"):
    tx.init(params)
  tx = asgm.autosgm(LR, numerator="correlation",
                    numerator_mask=lambda p: {k: 0 for k in p})
  with pytest.raises(TypeError, match="must be bools"):
    tx.init(params)


def test_all_masked_is_the_unity_numerator():
  params, loss = PROBLEMS["mlp"]()
  none = {k: False for k in params}
  masked = run(asgm.autosgm(LR, gamma=0.5, numerator="correlation",
                            numerator_mask=none), params, loss, 50)
  unity = run(asgm.autosgm(LR, gamma=0.5), params, loss, 50)
  # (Run leaf by leaf, as every configuration with a numerator: a few ulps
  # per step from XLA's fusion, over 50 steps.)
  assert relative_error(masked, unity) <= 50 * 8 * float(
      jnp.finfo(jnp.float32).eps)


def test_under_optax_masked_with_diagnostics_every():
  """optax.masked puts a MaskedNode where it masks a whole leaf, the
  numerator mask a NoState: the record (diagnostics_every) and the readers
  tell them apart (a MaskedNode stays, a unity leaf reads None)."""
  params = {"k": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2),
            "bias": jnp.array([0.1, 0.2]), "off": jnp.ones(4)}
  tx = optax.masked(
      asgm.autosgm(1e-2, numerator="correlation", diagnostics="summary",
                   diagnostics_every=2,
                   numerator_mask=asgm.default_weight_decay_mask),
      {"k": True, "bias": True, "off": False})
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(4):
    updates, state = step(jax.tree.map(jnp.cos, params), state, params)
  assert np.all(updates["off"] == jnp.cos(params["off"]))  # passed through
  values = asgm.numerator_values(state)
  (path, a), = values.items()
  assert isinstance(a["off"], optax.MaskedNode), path
  assert a["bias"] is None and a["k"].shape == (1, 1)
  dyn = asgm.learning_dynamics(state)
  assert len(dyn) == 1
