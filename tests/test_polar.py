"""The polar-factor arithmetic (autosgm_optax/_src/polar.py): Muon's quintic
against Optax bit for bit, every method against its scalar recurrence on the
singular values of U diag(s) V^T, NumPy float64 re-derivations of each
iteration from its formula, shape rules, dtypes and jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from optax.contrib import MuonDimensionNumbers as Dims
from optax.contrib._muon import orthogonalize_via_newton_schulz
import pytest

from autosgm_optax._src import polar

EPS = 1e-8
STEPS = 5
ITERATIVE = ("newton_schulz", "cubic", "lakic")
SHAPES = [(8, 5), (5, 8), (6, 6), (1, 7), (7, 1), (1, 1), (33, 17), (3, 64)]


def _normal(shape, seed=0, dtype=np.float32):
  return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@functools.partial(
  jax.jit, static_argnames=("method", "coeffs", "steps", "eps", "rule")
)
def _pf(x, method="newton_schulz", coeffs=None, steps=None, eps=EPS, rule=None):
  """polar_factor under jit (one compilation per configuration: faster)."""
  return polar.polar_factor(
    x, method, coeffs=coeffs, steps=steps, eps=eps, rule=rule
  )


def _optax_ns(x, coeffs=polar.MUON_COEFFS, steps=STEPS, eps=EPS, dims=None):
  return orthogonalize_via_newton_schulz(
    x, jnp.asarray(coeffs), steps, "frobenius", eps, dims
  )


# ---------------------------------------------------------------------------
# Muon's quintic is Optax's, bit for bit


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_newton_schulz_is_optax_bit_for_bit(shape, jit):
  x = jnp.asarray(_normal(shape, seed=sum(shape)) * 3.0)
  ours = lambda x: polar.newton_schulz(x)
  via_dispatch = lambda x: polar.polar_factor(x, "newton_schulz")
  theirs = lambda x: _optax_ns(x)
  if jit:
    ours, via_dispatch, theirs = map(jax.jit, (ours, via_dispatch, theirs))
  expected = theirs(x)
  np.testing.assert_array_equal(ours(x), expected)
  np.testing.assert_array_equal(via_dispatch(x), expected)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (4, 4)])
@pytest.mark.parametrize(
  "coeffs,steps",
  [
    (polar.DION_COEFFS, None),
    (polar.DION_COEFFS[:3], 3),
    ((3.0, -3.2, 1.2), 2),
    ((3.4445, -4.7750, 2.0315), 7),
  ],
  ids=["dion", "dion3", "other-triple", "seven-steps"],
)
def test_newton_schulz_coeffs_and_steps_are_optax_bit_for_bit(
  shape, coeffs, steps
):
  x = jnp.asarray(_normal(shape, seed=3))
  optax_steps = STEPS if steps is None else steps
  expected = jax.jit(lambda x: _optax_ns(x, coeffs, optax_steps, 1e-6))(x)
  ours = jax.jit(lambda x: polar.newton_schulz(x, coeffs, steps, 1e-6))(x)
  np.testing.assert_array_equal(ours, expected)
  ours = polar.polar_factor(x, coeffs=coeffs, steps=steps, eps=1e-6)
  np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize(
  "shape,dims",
  [
    ((3, 4, 6), Dims(1, 2)),
    ((4, 3, 5), Dims(2, 0)),
    ((2, 3, 4, 5), Dims((1, 2), 3)),
  ],
)
def test_newton_schulz_with_a_rule_is_optax_bit_for_bit(shape, dims):
  x = jnp.asarray(_normal(shape, seed=4))
  expected = _optax_ns(x, dims=dims)
  np.testing.assert_array_equal(polar.polar_factor(x, rule=dims), expected)


def test_newton_schulz_is_optax_bit_for_bit_in_float64_and_complex(
  enable_x64,
):
  x = jnp.asarray(_normal((7, 4), seed=5, dtype=np.float64))
  np.testing.assert_array_equal(polar.newton_schulz(x), _optax_ns(x))
  z = jnp.asarray(_normal((4, 6), seed=6) + 1j * _normal((4, 6), seed=7))
  np.testing.assert_array_equal(polar.newton_schulz(z), _optax_ns(z))


# ---------------------------------------------------------------------------
# each method is U diag(f(s)) V^T with f a scalar recurrence

# The scalar maps of one step, written from the formulas in the docstrings.
_QUINTIC = lambda s: 3.4445 * s - 4.7750 * s**3 + 2.0315 * s**5
_CUBIC = lambda s: 1.5 * s - 0.5 * s**3
_LAKIC = lambda y: y * (15 - 10 * y**2 + 3 * y**4) / 8


def _iterate(f, s, steps=STEPS):
  for _ in range(steps):
    s = f(s)
  return s


# The iterations X <- X p(X^H X): matrix products per step, the sum of the
# coefficients' magnitudes, the scalar map.
_FAMILY = {
  "newton_schulz": (3, 3.4445 + 4.7750 + 2.0315, _QUINTIC),
  "cubic": (2, 1.5 + 0.5, _CUBIC),
}


def _rounding_bound(method, n, dtype=np.float32, steps=STEPS):
  """How far rounding may take ``method``'s result from its exact iteration,
  entry by entry, for matrices with at most ``n`` rows and columns.

  ``X_0 = X / ||X||_F`` has singular values in [0, 1], so every iterate's lie
  in [0, top], ``top`` the scalar map's maximum there, and a step's terms are
  at most ``top ** degree`` in magnitude. Each entry of a product is a sum of
  at most n terms, within ``n u`` of its sum of magnitudes (u the unit
  roundoff; Higham, Accuracy and Stability of Numerical Algorithms, 3.1).
  A later step carries an earlier error on by at most the map's largest
  slope on [0, top] (the Frechet derivative of ``X p(X^H X)`` is bounded by
  the map's divided differences), so the steps' errors add up with weights
  ``slope ** j``. Worst case: the rounding seen is far smaller.
  """
  products, coefficients, f = _FAMILY[method]
  s = np.linspace(0.0, 1.0, 10_001)
  top = max(1.0, float(np.max(f(s))))
  s = np.linspace(0.0, top, 10_001)
  slope = float(np.max(np.abs(np.gradient(f(s), s))))
  degree = 2 * products - 1
  one_step = products * coefficients * top**degree * n * np.finfo(dtype).eps / 2
  return float(one_step * sum(slope**j for j in range(steps)))


def _expected_singular_values(method, s, eps=EPS):
  """f(s) of each method for singular values s (NumPy float64)."""
  if method == "svd":
    return np.ones_like(s)
  if method == "lakic":
    gram_norm = np.sqrt(np.sum(s**4))
    y0 = np.sqrt((s**2 + eps) / gram_norm)
    return _iterate(_LAKIC, y0) * s / np.sqrt(s**2 + eps)
  s0 = s / (np.sqrt(np.sum(s**2)) + eps)
  return _iterate(_QUINTIC if method == "newton_schulz" else _CUBIC, s0)


def _designed(shape, s, seed=0):
  """U diag(s) V^T with orthonormal U (m, r), V (n, r), r = len(s)."""
  rng = np.random.default_rng(seed)
  m, n = shape
  u, _ = np.linalg.qr(rng.normal(size=(m, len(s))))
  v, _ = np.linalg.qr(rng.normal(size=(n, len(s))))
  return u, v, (u * s) @ v.T


@pytest.mark.parametrize("method", polar.METHODS)
@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9), (1, 6), (6, 1)])
@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e3])
def test_each_method_is_its_scalar_recurrence_on_the_singular_values(
  method, shape, scale
):
  # Well conditioned and full rank: s in [0.1, 1] * scale.
  r = min(shape)
  s = np.linspace(0.1, 1.0, r) * scale
  _, _, x = _designed(shape, s, seed=r)
  x32 = x.astype(np.float32)
  # The float32 matrix's own SVD (rounding x moves its singular values by
  # ~1e-7 relative, which the recurrences would amplify).
  u, s, vt = np.linalg.svd(x32.astype(np.float64), full_matrices=False)
  v = vt.T
  f = _expected_singular_values(method, s)
  q = np.asarray(_pf(jnp.asarray(x32), method), np.float64)
  np.testing.assert_allclose(q, (u * f) @ v.T, rtol=0, atol=1e-5)
  np.testing.assert_allclose(np.diag(u.T @ q @ v), f, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9)])
def test_svd_is_orthogonal_and_cubic_and_lakic_converge(shape):
  r = min(shape)
  u, v, x = _designed(shape, np.linspace(0.1, 1.0, r), seed=1)
  x = jnp.asarray(x, jnp.float32)
  q = np.asarray(_pf(x, "svd"), np.float64)
  gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
  assert np.linalg.norm(gram - np.eye(r)) < 1e-5
  np.testing.assert_allclose(q, u @ v.T, rtol=0, atol=1e-5)
  # Singular values of x / ||x||_F are >= 0.1 / ||s|| here; enough steps
  # (by the scalar bounds of the docstrings) bring both to U V^T.
  for method, steps in (("cubic", 12), ("lakic", 6)):
    q = np.asarray(_pf(x, method, steps=steps), np.float64)
    np.testing.assert_allclose(q, u @ v.T, rtol=0, atol=2e-5)


def test_muon_quintic_does_not_converge_to_one():
  s = np.geomspace(0.002, 1.0, 2001)
  f = _iterate(_QUINTIC, s)
  assert 0.68 <= f.min() and f.max() <= 1.21
  assert f.max() > 1.2 and f.min() < 0.69


def test_the_documented_bounds_of_cubic_and_lakic():
  s = np.geomspace(1e-6, 1.0, 100001)
  for f, slope, needs99, needs90 in (
    (_CUBIC, 1.5, 0.28, 0.18),
    (_LAKIC, 15 / 8, 0.090, 0.057),
  ):
    out = _iterate(f, s)
    assert np.all(out <= slope**STEPS * s * (1 + 1e-12))
    assert np.all(out <= 1 + 1e-12) and np.all(np.diff(out) >= -1e-15)
    assert out[np.searchsorted(s, needs99)] >= 0.99
    assert out[np.searchsorted(s, needs90)] >= 0.9
  np.testing.assert_allclose(1.5**STEPS, 7.59375)
  np.testing.assert_allclose((15 / 8) ** STEPS, 23.17, rtol=1e-3)


# ---------------------------------------------------------------------------
# NumPy float64 re-derivations, from the formulas


def _np_quintic(x, coeffs=polar.MUON_COEFFS, steps=STEPS, eps=EPS):
  tall = x.shape[0] > x.shape[1]
  x = x.T if tall else x
  x = x / (np.linalg.norm(x) + eps)
  c0, c1, c2 = coeffs
  for _ in range(steps):
    a = x @ x.T
    x = c0 * x + c1 * a @ x + c2 * a @ a @ x
  return x.T if tall else x


def _np_cubic(x, steps=STEPS, eps=EPS):
  x = x / (np.linalg.norm(x) + eps)
  for _ in range(steps):
    x = 1.5 * x - 0.5 * x @ x.T @ x
  return x


def _np_lakic(v, steps=STEPS, eps=EPS):
  """The original's _imsrSL3 on M = v v^T (never transposed), times v."""
  m = v @ v.T
  eye = np.eye(m.shape[0])
  c = 1 / max(np.linalg.norm(m), eps)
  s = c * (m + eps * eye)
  z = eye
  for _ in range(steps):
    t = 0.125 * (3 * s @ s - 10 * s + 15 * eye)
    z, s = z @ t, s @ t @ t
  return np.sqrt(c) * z @ v


def _np_svd(x):
  u, _, vt = np.linalg.svd(x, full_matrices=False)
  return u @ vt


@pytest.mark.parametrize("shape", [(9, 5), (5, 9), (6, 6), (1, 4), (4, 1)])
def test_float64_re_derivations(enable_x64, shape):
  x = _normal(shape, seed=11, dtype=np.float64) * 2.0
  for method, reference in (
    ("newton_schulz", _np_quintic(x)),
    ("cubic", _np_cubic(x)),
    ("lakic", _np_lakic(x)),
    ("svd", _np_svd(x)),
  ):
    q = _pf(jnp.asarray(x), method)
    assert q.dtype == jnp.float64
    np.testing.assert_allclose(q, reference, rtol=0, atol=1e-12)
  table = polar.DION_COEFFS
  q = polar.newton_schulz(jnp.asarray(x), table)
  expected = x
  expected = x.T if shape[0] > shape[1] else x
  expected = expected / (np.linalg.norm(x) + EPS)
  for c0, c1, c2 in table:
    a = expected @ expected.T
    expected = c0 * expected + (c1 * a + c2 * a @ a) @ expected
  expected = expected.T if shape[0] > shape[1] else expected
  np.testing.assert_allclose(q, expected, rtol=0, atol=1e-12)


def test_lakic_without_eps_is_the_uncoupled_quintic_on_schatten4(enable_x64):
  x = _normal((7, 5), seed=12, dtype=np.float64)
  y = x / np.sum(np.linalg.svd(x, compute_uv=False) ** 4) ** 0.25
  for _ in range(STEPS):
    g = y.T @ y
    y = y @ (15 * np.eye(5) - 10 * g + 3 * g @ g) / 8
  q = polar.lakic(jnp.asarray(x), eps=0.0)
  np.testing.assert_allclose(q, y, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("method", polar.METHODS)
@pytest.mark.parametrize("shape", [(8, 5), (1, 7), (6, 6)])
def test_the_transpose_of_x_gives_the_transposed_result(method, shape):
  x = jnp.asarray(_normal(shape, seed=13))
  q, q_t = _pf(x, method), _pf(x.T, method)
  # The tall one is transposed to the wide one: the same formulas, but XLA
  # may sum a product's terms in another order for a transposed operand (it
  # does, by an ulp, on a CPU without AVX2): each side within its rounding
  # bound of the exact result.
  atol = 2 * _rounding_bound(method, max(shape)) if method in _FAMILY else 1e-5
  np.testing.assert_allclose(q_t, q.T, rtol=0, atol=atol)


@pytest.mark.parametrize("method", polar.METHODS)
def test_a_rule_batches_over_the_other_axes(method):
  x = jnp.asarray(_normal((4, 3, 5), seed=14))  # (output, batch, reduction)
  q = _pf(x, method, rule=Dims(reduction_axis=2, output_axis=0))
  for b in range(3):
    expected = _pf(x[:, b, :].T, method).T
    np.testing.assert_allclose(q[:, b, :], expected, rtol=0, atol=1e-5)
  y = jnp.asarray(_normal((2, 3, 4, 5), seed=15))
  q = _pf(y, method, rule=Dims((1, 2), 3))
  for b in range(2):
    expected = _pf(y[b].reshape(12, 5), method)
    np.testing.assert_allclose(
      q[b], expected.reshape(3, 4, 5), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("method", polar.METHODS)
@pytest.mark.parametrize("shape", [(1, 9), (9, 1)])
def test_a_vector_shaped_matrix_is_normalised(method, shape):
  x = _normal(shape, seed=16)
  q = np.asarray(_pf(jnp.asarray(x), method))
  norm = np.linalg.norm(x)
  f = _expected_singular_values(method, np.array([norm]))[0]
  np.testing.assert_allclose(q, f * x / norm, rtol=0, atol=1e-6)
  if method != "newton_schulz":
    np.testing.assert_allclose(q, x / norm, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", polar.METHODS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_zero_gives_zero(method, dtype):
  for shape, rule in (((5, 3), None), ((2, 3, 4), Dims(1, 2))):
    q = _pf(jnp.zeros(shape, dtype), method, rule=rule)
    assert q.dtype == dtype and q.shape == shape
    np.testing.assert_array_equal(q, np.zeros(shape))


@pytest.mark.parametrize("method", polar.METHODS)
def test_rank_one_input(method):
  rng = np.random.default_rng(17)
  a, b = rng.normal(size=8), rng.normal(size=6)
  x = np.outer(a, b).astype(np.float32)
  u, v = a / np.linalg.norm(a), b / np.linalg.norm(b)
  q = np.asarray(_pf(jnp.asarray(x), method), np.float64)
  assert np.all(np.isfinite(q))
  sigma = np.linalg.norm(a) * np.linalg.norm(b)
  f = _expected_singular_values(method, np.array([sigma]))[0]
  # The quintic's slope at 0 (3.4445) grows float32 rounding in the null
  # space by up to 3.4445**5 = 485: 6.5e-6 with AVX2 and FMA, 1.0e-5 without.
  atol = _rounding_bound(method, x.shape[0]) if method in _FAMILY else 1e-5
  np.testing.assert_allclose(q, f * np.outer(u, v), rtol=0, atol=atol)
  if method == "svd":  # exactly the rank-1 polar factor u v^T
    np.testing.assert_allclose(q, np.outer(u, v), rtol=0, atol=1e-6)


def test_svd_threshold():
  x = jnp.diag(jnp.array([1.0, 1e-3, 1e-7]))
  np.testing.assert_array_equal(jnp.diag(polar.svd_polar(x)), [1.0, 1.0, 0.0])
  np.testing.assert_array_equal(
    jnp.diag(polar.svd_polar(x, rtol=1e-2)), [1.0, 0.0, 0.0]
  )
  np.testing.assert_array_equal(
    jnp.diag(polar.svd_polar(x, rtol=0.0)), [1.0, 1.0, 1.0]
  )


@pytest.mark.parametrize("method", polar.METHODS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_is_float32_arithmetic_rounded_once(method, dtype):
  x = jnp.asarray(_normal((6, 4), seed=18), dtype)
  q = _pf(x, method)
  assert q.dtype == dtype
  expected = _pf(x.astype(jnp.float32), method).astype(dtype)
  np.testing.assert_array_equal(q, expected)


def test_complex_matrices():
  rng = np.random.default_rng(19)
  z = rng.normal(size=(6, 4)) + 1j * rng.normal(size=(6, 4))
  z = jnp.asarray(z, jnp.complex64)
  q = _pf(z, "svd")
  assert q.dtype == jnp.complex64
  np.testing.assert_allclose(q.conj().T @ q, np.eye(4), atol=1e-5)
  for method in ("cubic", "lakic"):
    np.testing.assert_allclose(_pf(z, method, steps=12), q, atol=2e-5)


# ---------------------------------------------------------------------------
# jit and vmap


@pytest.mark.parametrize("method", polar.METHODS)
def test_jit_compiles_once_and_agrees(method):
  traces = []

  def f(x):
    traces.append(None)
    return polar.polar_factor(x, method)

  jitted = jax.jit(f)
  for seed in range(3):
    x = jnp.asarray(_normal((6, 4), seed=seed))
    np.testing.assert_allclose(jitted(x), f(x), rtol=0, atol=1e-5)
  assert len(traces) == 1 + 3  # one trace under jit, three eager calls


@pytest.mark.parametrize("method", polar.METHODS)
def test_under_vmap(method):
  x = jnp.asarray(_normal((3, 6, 4), seed=20))
  q = jax.vmap(lambda m: polar.polar_factor(m, method))(x)
  np.testing.assert_allclose(
    q, _pf(x, method, rule=Dims(1, 2)), rtol=0, atol=1e-5
  )
  for b in range(3):
    np.testing.assert_allclose(q[b], _pf(x[b], method), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# shape rules and validation


def test_is_matrix():
  assert polar.is_matrix(jnp.ones((3, 4)))
  assert not polar.is_matrix(jnp.ones(()))
  assert not polar.is_matrix(jnp.ones(4))
  assert not polar.is_matrix(jnp.ones((0, 4)))
  assert not polar.is_matrix(jnp.ones((2, 3, 4)))
  assert polar.is_matrix(jnp.ones((2, 3, 4)), Dims(1, 2))
  assert not polar.is_matrix(jnp.ones(4), Dims(0, 1))
  assert polar.is_matrix(jax.ShapeDtypeStruct((3, 4), jnp.float32))
  with pytest.raises(ValueError, match="outside the valid range"):
    polar.is_matrix(jnp.ones((3, 4)), Dims(0, 2))


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(method="qr"), "method='qr'"),
    (dict(steps=0), "steps=0 .* integers >= 1"),
    (dict(steps=-2), "steps=-2"),
    (dict(steps=2.0), "steps=2.0"),
    (dict(steps=True), "steps=True"),
    (dict(method="cubic", steps=0), "steps=0"),
    (dict(coeffs=(1.0, 2.0)), r"shape \(2,\)"),
    (dict(coeffs=((1.0, 2.0),)), r"shape \(1, 2\)"),
    (dict(coeffs=np.ones((2, 3, 3))), r"shape \(2, 3, 3\)"),
    (dict(coeffs=((1.0, 2.0, 3.0), (1.0,))), "coeffs="),
    (dict(coeffs=polar.DION_COEFFS, steps=3), "steps=3 .* 5 rows"),
    (dict(method="cubic", coeffs=polar.MUON_COEFFS), "newton_schulz"),
    (dict(eps=-1.0), r"eps=-1.0 is outside the valid range \[0, inf\)"),
    (dict(rule=(0, 1)), "MuonDimensionNumbers"),
    (dict(rule=Dims(0, 0)), "disjoint"),
    (dict(rule=Dims(0, 5)), "axis 5, outside"),
    (dict(rule=Dims((0, 0), 1)), "repeats"),
  ],
)
def test_bad_arguments_are_refused_by_name(kwargs, match):
  with pytest.raises(ValueError, match=match):
    polar.polar_factor(jnp.ones((3, 4)), **kwargs)


def test_bad_shapes_and_dtypes_are_refused():
  with pytest.raises(ValueError, match="rank >= 2"):
    polar.polar_factor(jnp.ones(4))
  with pytest.raises(ValueError, match="pass a rule"):
    polar.polar_factor(jnp.ones((2, 3, 4)))
  with pytest.raises(ValueError, match="floating or complex"):
    polar.polar_factor(jnp.ones((3, 4), jnp.int32))
  for fn in (polar.newton_schulz, polar.cubic, polar.lakic, polar.svd_polar):
    with pytest.raises(ValueError, match="one matrix"):
      fn(jnp.ones((2, 3, 4)))
  with pytest.raises(ValueError, match="steps=0"):
    polar.cubic(jnp.ones((3, 4)), steps=0)
  with pytest.raises(ValueError, match="rtol"):
    polar.svd_polar(jnp.ones((3, 4)), rtol=-1.0)
