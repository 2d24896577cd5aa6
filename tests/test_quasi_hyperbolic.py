"""QHM, QHAdam and NAdam: the quasi-hyperbolic form of the filter.

QHM and QHAdam have no Optax twin: they are checked against a float64 NumPy
re-derivation written from the paper's equations (Ma & Yarats, ICLR 2019,
Algorithms 1 and 2), which imports neither the library nor JAX, and against
a float32 JAX loop of the same equations. NAdam's bit-identity with
``optax.nadam`` is in test_exactness.py; here its overshoot at ``t = 1``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import design
from autosgm_optax import presets
from conftest import assert_bitwise_equal, counted_step, relative_error, run

STEPS = 300
LR = 1e-2


def _data(seed=3):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(40, 12)) * np.logspace(0, 0.7, 12)
  b = rng.normal(size=(40,))
  w0 = {"x": rng.normal(size=(12,)), "s": rng.normal(size=(3, 4))}
  return a, b, w0


def _numpy_grad(a, b, w):
  """The gradient of 0.5 mean(r^2) + 0.05 |s|^2, r = a x + sum(s) - b."""
  r = a @ w["x"] + np.sum(w["s"]) - b
  n = len(b)
  return {"x": a.T @ r / n, "s": np.full((3, 4), np.sum(r) / n) + 0.1 * w["s"]}


def _jax_problem(dtype):
  a, b, w0 = _data()
  a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)

  def loss(p):
    r = a @ p["x"] + jnp.sum(p["s"]) - b
    return 0.5 * jnp.mean(r ** 2) + 0.05 * jnp.sum(p["s"] ** 2)

  return jax.tree.map(lambda x: jnp.asarray(x, dtype), w0), loss


def numpy_qhm(lr, nu, beta, steps):
  """Algorithm 1 of the paper: g_buf <- beta g_buf + (1 - beta) g,
  theta <- theta - lr [(1 - nu) g + nu g_buf]."""
  a, b, w = _data()
  buf = {k: np.zeros_like(v) for k, v in w.items()}
  for _ in range(steps):
    g = _numpy_grad(a, b, w)
    for k in w:
      buf[k] = beta * buf[k] + (1 - beta) * g[k]
      w[k] = w[k] - lr * ((1 - nu) * g[k] + nu * buf[k])
  return w


def numpy_qhadam(lr, b1, b2, nu1, nu2, eps, steps):
  """Algorithm 2 of the paper: g1, g2 EMAs of g and g^2 with Adam's bias
  correction, theta <- theta - lr [(1 - nu1) g + nu1 g1'] /
  [sqrt((1 - nu2) g^2 + nu2 g2') + eps]."""
  a, b, w = _data()
  m1 = {k: np.zeros_like(v) for k, v in w.items()}
  m2 = {k: np.zeros_like(v) for k, v in w.items()}
  for t in range(1, steps + 1):
    g = _numpy_grad(a, b, w)
    for k in w:
      m1[k] = b1 * m1[k] + (1 - b1) * g[k]
      m2[k] = b2 * m2[k] + (1 - b2) * g[k] ** 2
      m1_hat = m1[k] / (1 - b1 ** t)
      m2_hat = m2[k] / (1 - b2 ** t)
      num = (1 - nu1) * g[k] + nu1 * m1_hat
      den = np.sqrt((1 - nu2) * g[k] ** 2 + nu2 * m2_hat) + eps
      w[k] = w[k] - lr * num / den
  return w


QHM_CASES = [dict(nu=0.7, beta=0.999), dict(nu=0.7, beta=0.9),
             dict(nu=0.9, beta=0.9), dict(nu=0.0, beta=0.9),
             dict(nu=1.0, beta=0.5)]
QHADAM_CASES = [dict(b1=0.995, b2=0.999, nu1=0.7, nu2=1.0),
                dict(b1=0.9, b2=0.999, nu1=0.7, nu2=0.5),
                dict(b1=0.9, b2=0.99, nu1=1.0, nu2=0.3)]


@pytest.mark.parametrize("kwargs", QHM_CASES, ids=str)
def test_qhm_against_the_papers_equations_float64(kwargs, enable_x64):
  del enable_x64
  params, loss = _jax_problem(jnp.float64)
  ours = run(presets.qhm(LR, **kwargs), params, loss, STEPS)
  ref = numpy_qhm(LR, kwargs["nu"], kwargs["beta"], STEPS)
  assert ours["x"].dtype == jnp.float64
  start = _data()[2]
  assert relative_error(ours, start) > 1e-3  # it moved
  assert relative_error(ours, ref) <= 1e-9


@pytest.mark.parametrize("kwargs", QHADAM_CASES, ids=str)
def test_qhadam_against_the_papers_equations_float64(kwargs, enable_x64):
  del enable_x64
  params, loss = _jax_problem(jnp.float64)
  ours = run(presets.qhadam(LR, eps=1e-8, **kwargs), params, loss, STEPS)
  ref = numpy_qhadam(LR, eps=1e-8, steps=STEPS, **kwargs)
  assert relative_error(ours, _data()[2]) > 1e-3
  assert relative_error(ours, ref) <= 1e-9


def _float32_loop(kind, steps, **kw):
  """The paper's equations as a plain float32 JAX loop (no library code)."""
  params, loss = _jax_problem(jnp.float32)

  @jax.jit
  def go(params):
    zeros = jax.tree.map(jnp.zeros_like, params)

    def body(t, carry):
      p, m1, m2 = carry
      t = (t + 1).astype(jnp.float32)
      g = jax.grad(loss)(p)
      if kind == "qhm":
        m1 = jax.tree.map(lambda m, x: kw["beta"] * m + (1 - kw["beta"]) * x,
                          m1, g)
        step = jax.tree.map(
            lambda x, m: (1 - kw["nu"]) * x + kw["nu"] * m, g, m1)
      else:
        b1, b2, nu1, nu2 = kw["b1"], kw["b2"], kw["nu1"], kw["nu2"]
        m1 = jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, m1, g)
        m2 = jax.tree.map(lambda m, x: b2 * m + (1 - b2) * x * x, m2, g)
        step = jax.tree.map(
            lambda x, m, v: ((1 - nu1) * x + nu1 * m / (1 - b1 ** t))
            / (jnp.sqrt((1 - nu2) * x * x + nu2 * v / (1 - b2 ** t)) + 1e-8),
            g, m1, m2)
      p = jax.tree.map(lambda w, s: w - LR * s, p, step)
      return p, m1, m2

    return jax.lax.fori_loop(0, steps, body, (params, zeros, zeros))[0]

  return go(params), params, loss


# Round-off: each update agrees to a few float32 ulps (the same formulas,
# differently associated), and on these contracting problems the difference
# of the iterates grows at most linearly with the steps: |dw| <= steps *
# c * eps_32 * |w|, c = 8 (a generous count of roundings per update).
ROUND_OFF = STEPS * 8 * np.finfo(np.float32).eps


@pytest.mark.parametrize("kind, kwargs", [("qhm", QHM_CASES[1]),
                                          ("qhadam", QHADAM_CASES[1])])
def test_float32_against_a_plain_loop(kind, kwargs):
  loop, params, loss = _float32_loop(kind, STEPS, **kwargs)
  tx = (presets.qhm(LR, **kwargs) if kind == "qhm"
        else presets.qhadam(LR, eps=1e-8, **kwargs))
  ours = run(tx, params, loss, STEPS)
  assert ours["x"].dtype == jnp.float32
  assert relative_error(ours, loop) <= ROUND_OFF


def test_qhadam_at_nu_one_is_adam():
  # To round-off, not bit for bit: the filter alone is Adam's first moment
  # bit for bit (below), but the mixing's 0 * g makes XLA fuse the division
  # by d differently (the first update differs in the last bit).
  params, loss = _jax_problem(jnp.float32)
  ours = run(presets.qhadam(LR, b1=0.9, b2=0.999, nu1=1.0, nu2=1.0), params,
             loss, STEPS)
  assert relative_error(ours, run(optax.adam(LR), params, loss, STEPS)) <= (
      ROUND_OFF)
  g = jax.grad(loss)(params)
  qh, adam = (asgm.lowpass_filter(0.9, nu=1.0, debias="ema"),
              asgm.lowpass_filter(0.9))
  s_qh, s_adam = qh.init(params), adam.init(params)
  for _ in range(5):
    v_qh, s_qh = qh.update(g, s_qh)
    v_adam, s_adam = adam.update(g, s_adam)
    assert_bitwise_equal(v_qh, v_adam)


@pytest.mark.parametrize("nu, beta", [(0.7, 0.999), (0.3, 0.5), (1.0, 0.9)])
def test_the_form_is_the_pole_zero_filter(nu, beta, enable_x64):
  # The quasi-hyperbolic form realises H(z) with design.from_qhm's zero and
  # gain: the block alone, undebiased, on a random input.
  del enable_x64
  x = np.random.default_rng(0).normal(size=(60, 3))
  b, g, e = design.from_qhm(nu, beta)
  qh = asgm.lowpass_filter(beta, nu=nu, debias=False)
  pz = (asgm.lowpass_filter(b, g, e, debias=False) if b > 0 or g > 0
        else None)
  s_qh = qh.init(jnp.zeros(3, jnp.float64))
  out = []
  for row in x:
    v, s_qh = qh.update(jnp.asarray(row), s_qh)
    out.append(np.asarray(v))
  ref = np.stack([np.convolve(x[:, j], design.impulse_response(b, g, e, 60))
                  [:60] for j in range(3)], axis=1)
  np.testing.assert_allclose(np.stack(out), ref, rtol=1e-12, atol=1e-12)
  if pz is not None:
    assert design.of(qh).gamma == pytest.approx(g, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("b1", [0.9, 0.5])
def test_nadam_overshoots_at_the_first_step_where_the_exact_debias_does_not(
    b1):
  g = jnp.array([2.0, -0.5])
  params = jnp.zeros(2)
  # (b2 = 0.5: 1 - b2 is exact in float32, so d(1) = |g| exactly)
  tx = presets.nadam(1.0, b1=b1, b2=0.5, eps=0.0, eps_root=1e-30)
  u, _ = tx.update(g, tx.init(params), params)
  overshoot = design.step_response(*design.from_nadam(b1), 1, "nadam")[0]
  assert overshoot == pytest.approx(1 + b1 / (1 + b1), rel=1e-12)
  np.testing.assert_allclose(u, -overshoot * jnp.sign(g), rtol=1e-6)
  # the same zero and gain with the exact debias: a unit step from t = 1
  exact = asgm.autosgm(1.0, beta=b1, gamma=b1 / (1 + b1), moment_beta=0.5,
                       eps=0.0, eps_root=1e-30)
  u, _ = exact.update(g, exact.init(params), params)
  np.testing.assert_allclose(u, -jnp.sign(g), rtol=1e-6)


def test_the_denominators_zero_against_numpy():
  rng = np.random.default_rng(1)
  xs = rng.normal(size=(20, 5)).astype(np.float32)
  block = asgm.moment_denominator(0.9, 1e-8, nu=0.3)
  state = block.init(jnp.zeros(5))
  ema = np.zeros(5)
  for t, x in enumerate(xs, start=1):
    u, state = block.update(jnp.asarray(x), state)
    ema = 0.9 * ema + 0.1 * x.astype(np.float64) ** 2
    d = np.sqrt(0.7 * x.astype(np.float64) ** 2 + 0.3 * ema / (1 - 0.9 ** t))
    np.testing.assert_allclose(u, x / (d + 1e-8), rtol=1e-5)


def test_per_term_debiases_refuse_diagnostics():
  filt = asgm.lowpass_filter(0.9, nu=0.9, debias="nadam")
  with pytest.raises(ValueError, match="debias='nadam'"):
    asgm.scale_by_autosgm(filter=filt, diagnostics="summary")
  # an exact debias in the same form is described
  asgm.scale_by_autosgm(filter=asgm.lowpass_filter(0.9, nu=0.9),
                        diagnostics="summary", diagnostics_every=5)


def test_denominators_zero_has_no_last_for_diagnostics_every():
  with pytest.raises(ValueError, match="last"):
    asgm.scale_by_autosgm(denominator=asgm.moment_denominator(nu=0.5),
                          diagnostics="summary", diagnostics_every=5)


def test_injected_qh_weights_change_without_recompiling():
  params, loss = _jax_problem(jnp.float32)
  tx = optax.inject_hyperparams(presets.qhadam)(LR, nu1=0.7, nu2=0.5)
  step, traces = counted_step(tx, loss)
  state = tx.init(params)
  for nu1 in (0.7, 0.5, 0.9):
    state.hyperparams["nu1"] = jnp.asarray(nu1)
    params, state = step(params, state)
  assert len(traces) == 1
  # and the injected run follows the plain one to round-off
  plain = run(presets.qhm(LR, nu=0.6, beta=0.9), *_jax_problem(jnp.float32),
              STEPS)
  injected = run(optax.inject_hyperparams(presets.qhm)(LR, nu=0.6, beta=0.9),
                 *_jax_problem(jnp.float32), STEPS)
  assert relative_error(injected, plain) <= ROUND_OFF
