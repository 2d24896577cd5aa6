"""The window family of docs/algorithm.md, section 5: shapes, options and
their order."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax._src.window import KRONECKER_STEP, SHAPES

TAU = 40
SHAPE_NAMES = sorted(SHAPES)
ANNEALING = [s for s in SHAPE_NAMES if s != "flat"]


def values(schedule, n, jit=True):
  fn = jax.jit(jax.vmap(schedule)) if jit else jax.vmap(schedule)
  return np.asarray(fn(jnp.arange(n)), np.float64)


def phi(shape, f):
  """The shapes written again from docs/algorithm.md, section 5 (defaults of
  the library)."""
  if shape == "flat":
    return np.ones_like(f)
  if shape == "raised_cosine":
    return np.cos(np.pi * f / 2) ** 2
  if shape == "polynomial":
    return 1 - f
  if shape == "beta_exponential":
    return (0.01 ** f - 0.01) / (1 - 0.01)
  if shape == "simple_polynomial":
    return (1 - f ** 2) ** 2
  c = 0.5 if shape == "sigmoid" else 0.875
  s = lambda x: 1 / (1 + 2.0 ** (8 * (x - c)))
  return (s(f) - s(1)) / (s(0) - s(1))


@pytest.mark.parametrize("shape", SHAPE_NAMES)
@pytest.mark.parametrize("floor", [0.0, 0.15])
def test_half_window_matches_spec_and_ends_at_floor(shape, floor):
  got = values(asgm.window_schedule(TAU, shape, floor=floor), 2 * TAU)
  f = np.minimum(np.arange(2 * TAU) / TAU, 1.0)
  expected = floor + (1 - floor) * phi(shape, f)
  np.testing.assert_allclose(got, expected, atol=2e-6)
  assert got[0] == pytest.approx(1.0, abs=1e-6)
  assert np.all(got >= floor - 1e-6) and np.all(got <= 1 + 1e-6)
  if shape != "flat":
    np.testing.assert_allclose(got[TAU:], floor, atol=1e-6)
    assert np.all(np.diff(got) <= 1e-6)  # non-increasing


@pytest.mark.parametrize("shape", ANNEALING)
def test_restarts_are_periodic_and_start_at_one(shape):
  got = values(asgm.window_schedule(TAU, shape, floor=0.1, restarts=True),
               3 * TAU)
  assert got[TAU] == pytest.approx(1.0, abs=1e-6)
  np.testing.assert_allclose(got[:TAU], got[TAU:2 * TAU], atol=1e-7)
  np.testing.assert_allclose(got[:TAU], got[2 * TAU:], atol=1e-7)


@pytest.mark.parametrize("shape", ANNEALING)
def test_full_window_starts_at_floor_symmetric_peak(shape):
  got = values(asgm.window_schedule(TAU, shape, floor=0.2, full=True), TAU)
  assert got[0] == pytest.approx(0.2, abs=1e-6)
  assert got[TAU // 2] == pytest.approx(1.0, abs=1e-6)
  np.testing.assert_allclose(got[1:TAU // 2], got[TAU - 1:TAU // 2:-1],
                             atol=1e-6)
  assert np.all(np.diff(got[:TAU // 2 + 1]) >= -1e-6)  # warm-up rises
  assert np.all(np.diff(got[TAU // 2:]) <= 1e-6)  # then anneals


@pytest.mark.parametrize("shape", ANNEALING)
def test_flat_top_is_exactly_one_then_anneals(shape):
  got = values(asgm.window_schedule(TAU, shape, flat_top=0.25, floor=0.1),
               TAU + 1)
  assert np.all(got[:10] == 1.0)
  f = (np.arange(10, TAU + 1) / TAU - 0.25) / 0.75
  np.testing.assert_allclose(got[10:], 0.1 + 0.9 * phi(shape, f), atol=2e-6)


@pytest.mark.parametrize("shape", ["raised_cosine", "polynomial", "sigmoid"])
def test_staircase_stacks_sub_decays(shape):
  m = 4
  got = values(asgm.window_schedule(TAU, shape, stairs=m), TAU + 1)
  f = np.arange(TAU + 1) / TAU
  i = np.maximum(1, np.ceil(m * f))
  expected = (m - i + phi(shape, m * f - i + 1)) / m
  np.testing.assert_allclose(got, expected, atol=2e-6)
  # each sub-decay ends on a stair: (m - i) / m at f = i / m
  for j in range(1, m + 1):
    assert got[j * TAU // m] == pytest.approx((m - j) / m, abs=2e-6)


def test_epoch_units_hold_within_an_epoch():
  spe = 7
  got = values(asgm.window_schedule(5, steps_per_epoch=spe, restarts=True),
               spe * 12)
  per_epoch = got.reshape(12, spe)
  assert np.all(per_epoch == per_epoch[:, :1])
  epoch_values = per_epoch[:, 0]
  np.testing.assert_allclose(epoch_values[:5], epoch_values[5:10], atol=1e-7)
  assert np.all(epoch_values >= 0)  # never negative (the original's defect)


@pytest.mark.parametrize("shape", ANNEALING)
def test_kronecker_is_sorted_low_discrepancy_values(shape):
  floor = 0.05
  got = values(asgm.window_schedule(TAU, shape, floor=floor, kronecker=True,
                                    restarts=True), 2 * TAU)
  points = np.mod(np.arange(TAU) * KRONECKER_STEP, 1.0)
  expected = np.sort(floor + (1 - floor) * phi(shape, points))[::-1]
  np.testing.assert_allclose(got[:TAU], expected, atol=2e-6)
  np.testing.assert_allclose(got[TAU:], expected, atol=2e-6)
  assert got[0] == pytest.approx(1.0)
  assert np.all(got > floor)  # never reaches the floor


def test_equal_to_optax_schedules():
  counts = jnp.arange(2 * TAU)
  ours = values(asgm.window_schedule(TAU, "raised_cosine", floor=0.1),
                2 * TAU)
  twin = jax.vmap(optax.cosine_decay_schedule(1.0, TAU, alpha=0.1))(counts)
  np.testing.assert_allclose(ours, twin, atol=1e-6)
  ours = values(asgm.window_schedule(TAU, "polynomial", order=1), 2 * TAU)
  twin = jax.vmap(optax.linear_schedule(1.0, 0.0, TAU))(counts)
  np.testing.assert_allclose(ours, twin, atol=1e-6)


OPTIONS = [dict(full=True), dict(flat_top=0.3), dict(stairs=3),
           dict(restarts=True), dict(steps_per_epoch=3),
           dict(kronecker=True), dict(floor=0.3)]


@pytest.mark.parametrize("shape,options", list(itertools.product(
    SHAPE_NAMES, OPTIONS)))
def test_every_option_jits_with_traced_count_and_large_counts(shape, options):
  schedule = asgm.window_schedule(TAU, shape, **options)
  eager = values(schedule, 3 * TAU, jit=False)
  traced = values(schedule, 3 * TAU, jit=True)
  np.testing.assert_allclose(eager, traced, atol=1e-6)
  floor = options.get("floor", 0.0)
  assert np.all(eager >= floor - 1e-6) and np.all(eager <= 1 + 1e-6)
  big = 10 ** 7
  late = float(jax.jit(schedule)(jnp.int32(big)))
  assert np.isfinite(late)
  if options.get("restarts"):  # a whole number of frames: back to the start
    assert late == pytest.approx(float(schedule(big % TAU)), abs=1e-6)
  elif not options.get("kronecker") and not options.get("steps_per_epoch"):
    assert late == pytest.approx(float(schedule(TAU)), abs=1e-6)


def test_window_in_autosgm_and_injected():
  params = {"x": jnp.ones(3)}
  grads = {"x": jnp.array([1.0, -2.0, 0.5])}
  schedule = asgm.window_schedule(10, "sigmoid", floor=0.1)
  inject = optax.inject_hyperparams
  for tx, adam in ((asgm.autosgm(0.1, window=schedule), optax.adam(0.1)),
                   (inject(asgm.autosgm)(0.1, window=schedule),
                    inject(optax.adam)(0.1))):
    state, adam_state = tx.init(params), adam.init(params)
    step = jax.jit(tx.update)
    for k in range(12):
      u, state = step(grads, state, params)
      v, adam_state = adam.update(grads, adam_state, params)
      # the window multiplies Adam's step by F(k), k = updates made before
      np.testing.assert_allclose(np.asarray(u["x"]),
                                 np.asarray(v["x"]) * float(schedule(k)),
                                 rtol=2e-6)


@pytest.mark.parametrize("kwargs,words", [
    (dict(shape="cosine"), ["shape='cosine'", "'raised_cosine'"]),
    (dict(order=0), ["order=0", "(0, inf)"]),
    (dict(shape="sigmoid", rate=-1.0), ["rate=-1.0", "(0, inf)"]),
    (dict(shape="beta_exponential", base=1.0), ["base=1"]),
    (dict(shape="beta_exponential", base=0.0), ["base=0.0", "(0, inf)"]),
    (dict(shape="polynomial", rate=2.0), ["rate=2.0", "no meaning",
                                          "'order'"]),
    (dict(shape="flat", order=2), ["order=2", "no meaning"]),
    (dict(length=0), ["length=0", "[1, inf)"]),
    (dict(floor=1.2), ["floor=1.2", "[0, 1]"]),
    (dict(flat_top=1.0), ["flat_top=1.0", "[0, 1)"]),
    (dict(stairs=0), ["stairs=0", "[1, inf)"]),
    (dict(stairs=2.5), ["stairs=2.5", "whole number"]),
    (dict(steps_per_epoch=0), ["steps_per_epoch=0", "[1, inf)"]),
    (dict(kronecker=True, full=True), ["kronecker=True", "full=True"]),
    (dict(kronecker=True, flat_top=0.2), ["kronecker=True", "flat_top=0.2"]),
    (dict(restarts=1), ["restarts=1", "bool"]),
])
def test_bad_options_are_refused_by_name(kwargs, words):
  kwargs = dict(kwargs)
  length = kwargs.pop("length", TAU)
  with pytest.raises((ValueError, TypeError)) as info:
    asgm.window_schedule(length, **kwargs)
  for word in words:
    assert word in str(info.value), (word, str(info.value))
