"""autosgm_optax.design against independent computations: scipy.signal
(freqz, group_delay, lfilter), the recurrences simulated in NumPy, the closed
forms, np.roots and the library's own blocks and presets run on a scalar."""

import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import design
from autosgm_optax import presets

signal = pytest.importorskip("scipy.signal")

EPS = np.finfo(np.float64).eps

# (beta, gamma, eta): heavy ball, Adam, Nesterov, NAG's gain, negative zeros,
# the original examples' zero, a pure gain, a zero below -1.
DESIGNS = [
    (0.9, 0.0, 1.0),
    (0.9, 0.0, None),
    (0.9, 0.9 / 1.9, None),
    (0.5, 0.5 / 1.5, 1.5),
    (0.9, -0.9, None),
    (0.99, -0.5, 0.3),
    (0.9, 0.5528, None),
    (0.999, 0.2, 2.0),
    (0.0, 0.0, 1.0),
    (0.0, 0.0, 2.5),
    (0.3, -1.5, 0.7),
]
IDS = [f"b{b}_g{g:.3g}_e{e}" for b, g, e in DESIGNS]


def gain(beta, gamma, eta):
  return (1 - beta) / (1 - gamma) if eta is None else eta


def ba(beta, gamma, eta):
  """scipy.signal's (b, a) of the filter."""
  e = gain(beta, gamma, eta)
  return [e, -e * gamma], [1.0, -beta]


def recurrence(beta, gamma, eta, x):
  """The filter as docs/algorithm.md, section 2, writes it first:
  v(t) = beta v(t-1) + eta (x(t) - gamma x(t-1)), v(0) = x(0) = 0."""
  e = gain(beta, gamma, eta)
  v, x_prev, out = 0.0, 0.0, []
  for xt in x:
    v = beta * v + e * (xt - gamma * x_prev)
    x_prev = xt
    out.append(v)
  return np.array(out)


# ---------------------------------------------------------------------------
# responses


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_frequency_response_is_freqz(beta, gamma, eta):
  omega, h = design.frequency_response(beta, gamma, eta, n=257)
  assert omega.shape == h.shape == (257,)
  assert h.dtype == np.complex128
  assert omega[0] == 0.0 and omega[-1] == np.pi  # both ends included
  np.testing.assert_allclose(np.diff(omega), np.pi / 256, rtol=1e-12)
  _, expected = signal.freqz(*ba(beta, gamma, eta), worN=omega)
  np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-15)
  assert abs(h[0] - design.dc_gain(beta, gamma, eta)) <= 1e-12 * abs(h[0])


def test_frequency_response_default_grid():
  omega, h = design.frequency_response(0.9, 0.0)
  assert omega.shape == h.shape == (512,)
  np.testing.assert_allclose(omega, np.linspace(0, np.pi, 512))


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_impulse_response_is_lfilter_and_the_closed_form(beta, gamma, eta):
  steps = 80
  got = design.impulse_response(beta, gamma, eta, steps=steps)
  x = np.zeros(steps)
  x[0] = 1.0
  np.testing.assert_allclose(got, signal.lfilter(*ba(beta, gamma, eta), x),
                             rtol=1e-12, atol=1e-300)
  np.testing.assert_allclose(got, recurrence(beta, gamma, eta, x),
                             rtol=1e-12, atol=1e-300)
  e = gain(beta, gamma, eta)
  closed = np.r_[e, e * (beta - gamma) * beta ** np.arange(steps - 1)]
  np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_step_response_is_lfilter_and_the_debias_divisor(beta, gamma, eta):
  steps = 300
  got = design.step_response(beta, gamma, eta, steps=steps)
  ones = np.ones(steps)
  np.testing.assert_allclose(got, signal.lfilter(*ba(beta, gamma, eta), ones),
                             rtol=1e-12)
  np.testing.assert_allclose(got, recurrence(beta, gamma, eta, ones),
                             rtol=1e-12)
  # The library's own exact debias divisor s(t) (docs/algorithm.md, sec. 2).
  from autosgm_optax._src.lowpass import debias_divisor  # pylint: disable=g-import-not-at-top
  t = np.arange(1, steps + 1, dtype=float)
  e = gain(beta, gamma, eta)
  np.testing.assert_allclose(got, debias_divisor(t, beta, gamma, e),
                             rtol=1e-12)
  assert got[0] == pytest.approx(e, rel=1e-15)
  assert got[-1] == pytest.approx(design.dc_gain(beta, gamma, eta),
                                  rel=1e-12 + beta ** steps / (1 - beta))


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_debiased_step_response_is_one_from_the_first_step(beta, gamma, eta):
  got = design.step_response(beta, gamma, eta, steps=2000, debias=True)
  assert got.shape == (2000,)
  # float64 round-off: a few ulps, growing with the memory 1 / (1 - beta).
  assert np.max(np.abs(got - 1.0)) <= 8 * EPS / (1 - beta), np.max(
      np.abs(got - 1.0))


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_group_delay_is_scipys(beta, gamma, eta):
  omega = np.linspace(0.0, np.pi, 101)
  got = design.group_delay(beta, gamma, eta, omega=omega)
  _, expected = signal.group_delay(ba(beta, gamma, eta), w=omega)
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
  assert got[0] == pytest.approx(beta / (1 - beta) - gamma / (1 - gamma),
                                 rel=1e-12, abs=1e-12)
  # And -d(arg H)/d(omega) by finite differences of frequency_response.
  w, h = design.frequency_response(beta, gamma, eta, n=20001)
  numeric = -np.gradient(np.unwrap(np.angle(h)), w)
  np.testing.assert_allclose(design.group_delay(beta, gamma, eta)[1:-1],
                             np.interp(np.linspace(0, np.pi, 512), w,
                                       numeric)[1:-1],
                             rtol=1e-3, atol=1e-3 / (1 - beta) ** 2)


def test_group_delay_shapes_and_grid():
  assert design.group_delay(0.9, 0.0).shape == (512,)
  grid = np.array([[0.1, 0.2], [0.3, 0.4]])
  assert design.group_delay(0.9, 0.5, omega=grid).shape == (2, 2)
  assert np.isnan(design.group_delay(0.5, -1.0, omega=[np.pi])[0])


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_noise_gain_is_the_energy_of_the_impulse_response(beta, gamma, eta):
  steps = int(np.ceil(np.log(1e-30) / np.log(beta))) + 2 if beta else 2
  h = design.impulse_response(beta, gamma, eta, steps=steps)
  got = design.noise_gain(beta, gamma, eta)
  assert got == pytest.approx(np.sum(h ** 2), rel=1e-11)
  # Parseval: the mean of |H|^2 over the circle.
  _, hw = signal.freqz(*ba(beta, gamma, eta), worN=2 ** 16, whole=True)
  assert got == pytest.approx(np.mean(np.abs(hw) ** 2), rel=1e-6)


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
def test_dc_gain(beta, gamma, eta):
  e = gain(beta, gamma, eta)
  assert design.dc_gain(beta, gamma, eta) == pytest.approx(
      e * (1 - gamma) / (1 - beta), rel=1e-15)
  if eta is None:
    assert design.dc_gain(beta, gamma) == pytest.approx(1.0, rel=1e-15)


# ---------------------------------------------------------------------------
# named zeros and other methods as points


def test_named_zeros():
  for beta in (0.0, 0.1, 0.5, 0.9, 0.999):
    assert design.named_zero("heavy_ball", beta) == 0.0
    assert design.named_zero("nesterov", beta) == beta / (1 + beta)
    assert design.named_zero("max_variance_reduction", beta) == -beta
    assert design.named_zero("variance_per_unit_gain", beta) == max(
        -beta, 1 - np.sqrt(2 * (1 - beta)))
  assert design.named_zero("variance_per_unit_gain", 0.9) == pytest.approx(
      0.5528, abs=1e-4)
  # Below beta = sqrt(5) - 2 the clip at -beta is what is left.
  assert design.named_zero("variance_per_unit_gain", 0.2) == -0.2
  assert design.named_zero("variance_per_unit_gain", 0.3) > -0.3
  assert str(design.named_zero("max_variance_reduction", 0.0)) == "0.0"


@pytest.mark.parametrize("beta", [0.3, 0.5, 0.9, 0.99])
def test_what_the_named_zeros_minimise(beta):
  zeros = np.linspace(-beta, beta, 20001)[:-1]  # -beta <= gamma < beta
  # At unit DC gain the noise gain is least at gamma = -beta in this range.
  unit_dc = [design.noise_gain(beta, g) for g in zeros]
  assert zeros[np.argmin(unit_dc)] == pytest.approx(
      design.named_zero("max_variance_reduction", beta), abs=1e-12)
  # At a fixed gain, noise gain per unit DC gain is least at this zero.
  ratio = [design.noise_gain(beta, g, 0.1) / design.dc_gain(beta, g, 0.1)
           for g in zeros]
  assert zeros[np.argmin(ratio)] == pytest.approx(
      design.named_zero("variance_per_unit_gain", beta), abs=2e-4)


def qhm(nu, beta, x):
  """Ma & Yarats (2019): b(t) = beta b(t-1) + (1 - beta) g(t), step along
  (1 - nu) g(t) + nu b(t)."""
  b, out = 0.0, []
  for g in x:
    b = beta * b + (1 - beta) * g
    out.append((1 - nu) * g + nu * b)
  return np.array(out)


@pytest.mark.parametrize("nu, beta", [(0.7, 0.999), (0.7, 0.9), (0.5, 0.5),
                                      (1.0, 0.9), (0.0, 0.9), (0.3, 0.0),
                                      (0.999, 0.95)])
def test_qhm_is_the_pole_zero_filter(nu, beta):
  b, g, e = design.from_qhm(nu, beta)
  x = np.random.default_rng(0).normal(size=500)
  np.testing.assert_allclose(recurrence(b, g, e, x), qhm(nu, beta, x),
                             rtol=1e-10, atol=1e-12)
  assert design.dc_gain(b, g, e) == pytest.approx(1.0, rel=1e-14)
  if 0 < nu and 0 < beta:  # the closed form of the brief
    assert (b, g, e) == pytest.approx(
        (beta, (1 - nu) * beta / (1 - nu * beta), 1 - nu * beta), rel=1e-15)
  else:  # the zero cancels the pole: plain SGD
    assert (b, g, e) == (0.0, 0.0, 1.0)
  if nu == 1.0:  # the EMA
    assert (g, e) == pytest.approx((0.0, 1 - beta), abs=1e-15)


def nadam_undebiased(b1, x):
  """NAdam's numerator without its debias: m(t) = b1 m(t-1) + (1-b1) g(t),
  output b1 m(t) + (1 - b1) g(t)."""
  m, out = 0.0, []
  for g in x:
    m = b1 * m + (1 - b1) * g
    out.append(b1 * m + (1 - b1) * g)
  return np.array(out)


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9, 0.99])
def test_nadam_is_nesterovs_zero_with_unit_dc_gain(b1):
  b, g, e = design.from_nadam(b1)
  assert (b, g, e) == pytest.approx((b1, b1 / (1 + b1), 1 - b1 ** 2),
                                    rel=1e-15)
  x = np.random.default_rng(1).normal(size=400)
  np.testing.assert_allclose(recurrence(b, g, e, x), nadam_undebiased(b1, x),
                             rtol=1e-10, atol=1e-12)
  assert design.dc_gain(b, g, e) == pytest.approx(1.0, rel=1e-14)
  # NAG's filter (gain 1 + b1) times 1 - b1, as Adam is the heavy ball's.
  np.testing.assert_allclose(
      design.impulse_response(b, g, e),
      (1 - b1) * design.impulse_response(b1, b1 / (1 + b1), 1 + b1),
      rtol=1e-12)


def test_nadam_is_optax_nadam_once_its_debias_has_faded(enable_x64):
  del enable_x64
  b1, b2, eps, steps = 0.9, 0.999, 1e-8, 500
  tx = optax.scale_by_adam(b1, b2, eps, nesterov=True)
  x = np.random.default_rng(2).normal(size=steps) + 0.5
  state = tx.init(jnp.zeros((), jnp.float64))
  mu_hat = []
  for t, g in enumerate(x, start=1):
    u, state = tx.update(jnp.asarray(g, jnp.float64), state)
    nu = float(state.nu)  # undo the denominator: mu_hat = u * d
    mu_hat.append(float(u) * (np.sqrt(nu / (1 - b2 ** t)) + eps))
  mu_hat = np.array(mu_hat)
  ours = recurrence(*design.from_nadam(b1), x)
  np.testing.assert_allclose(mu_hat[-100:], ours[-100:], rtol=1e-9)
  # Its per-term debias is not the exact one: 1.47 at t = 1 for a constant.
  first = b1 * (1 - b1) / (1 - b1 ** 2) + 1.0
  assert first == pytest.approx(1.4737, abs=1e-4)
  assert design.step_response(*design.from_nadam(b1), steps=1,
                              debias=True)[0] == 1.0


# ---------------------------------------------------------------------------
# the quadratic view

MU_H = [0.01, 0.1, 0.5, 1.0, 1.9, 3.0, 10.0, -0.1]


def simulate_quadratic(beta, gamma, eta, mu_h, w0, steps):
  """w <- w - mu v with v = H[g], g = h w, on f(w) = h w^2 / 2 (with h = 1,
  mu = mu_h), by the filter's recurrence from an empty memory."""
  e = gain(beta, gamma, eta)
  w, v, g_prev, path = w0, 0.0, 0.0, []
  for _ in range(steps):
    g = w
    v = beta * v + e * (g - gamma * g_prev)
    g_prev = g
    w = w - mu_h * v
    path.append(w)
  return np.array(path)


@pytest.mark.parametrize("beta, gamma, eta", DESIGNS, ids=IDS)
@pytest.mark.parametrize("mu_h", MU_H)
def test_closed_loop_poles_are_the_roots(beta, gamma, eta, mu_h):
  got = design.closed_loop_poles(beta, gamma, eta, mu_h)
  assert got.shape == (2,) and got.dtype == np.complex128
  k = mu_h * gain(beta, gamma, eta)
  expected = np.roots([1.0, -(1 + beta - k), beta - k * gamma])
  key = lambda z: (round(z.real, 9), round(z.imag, 9))
  np.testing.assert_allclose(sorted(got, key=key), sorted(expected, key=key),
                             atol=1e-12 * (1 + np.max(np.abs(expected))))
  assert abs(got[0]) >= abs(got[1])
  assert design.convergence_rate(beta, gamma, eta, mu_h) == pytest.approx(
      np.max(np.abs(expected)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("beta, gamma, eta, mu_h", [
    (0.9, 0.0, 1.0, 0.1),  # complex pair
    (0.9, 0.0, 1.0, 0.001),  # real, slow
    (0.5, 0.0, 1.0, 2.0),  # real, one negative
    (0.9, 0.9 / 1.9, 1.9, 0.3),
    (0.9, -0.9, None, 5.0),
    (0.99, 0.5528, None, 20.0),
    (0.0, 0.0, 1.0, 0.5),
    (0.9, 0.0, 1.0, 3.9),  # unstable: grows at the rate
])
def test_convergence_rate_is_the_simulated_decay(beta, gamma, eta, mu_h):
  rate = design.convergence_rate(beta, gamma, eta, mu_h)
  path = simulate_quadratic(beta, gamma, eta, mu_h, 1.0, 601)
  # The error's state (w(t), w(t+1)) shrinks as rate^t times a bounded
  # factor (a polynomial one for a double root): measured over 400 steps.
  norm = np.hypot(path[:-1], path[1:])
  measured = (norm[600 - 1] / norm[200 - 1]) ** (1 / 400)
  assert measured == pytest.approx(rate, rel=2e-2, abs=1e-3)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_deadbeat_puts_both_poles_at_zero(beta):
  gamma, mu_eta_h = design.deadbeat(beta)
  assert (gamma, mu_eta_h) == (beta / (1 + beta), 1 + beta)
  assert gamma == design.named_zero("nesterov", beta)
  np.testing.assert_allclose(
      design.closed_loop_poles(beta, gamma, 1 + beta, 1.0), 0.0, atol=1e-15)
  # Any gain: mu h = (1 + beta) / eta.
  np.testing.assert_allclose(
      design.closed_loop_poles(beta, gamma, 0.5, mu_eta_h / 0.5), 0.0,
      atol=1e-15)
  path = simulate_quadratic(beta, gamma, 1 + beta, 1.0, 3.0, 4)
  assert abs(path[0]) == pytest.approx(3.0 * beta, rel=1e-15)
  assert np.all(np.abs(path[1:]) <= 1e-14), path
  # Another zero at the same mu eta h is not deadbeat.
  if beta > 0:
    assert design.convergence_rate(beta, 0.0, 1 + beta, 1.0) > 0.1


STARTS = [1.0, -3.7, 10.0, 1e-3, -0.25]


def two_steps(tx, h, w0):
  """|w| after each of the first three updates of tx on f(w) = h w^2 / 2
  from w0, with tx's filter memory empty at the first (a cold start)."""
  w = jnp.asarray(w0, jnp.float64)
  state = tx.init(w)
  out = []
  for _ in range(3):
    updates, state = tx.update(h * w, state, w)
    w = optax.apply_updates(w, updates)
    assert w.dtype == jnp.float64
    out.append(np.abs(np.asarray(w)))
  return out


@pytest.mark.parametrize("beta", [0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("h", [1.0, 2.5, 0.3, 7.0])
def test_nag_preset_reaches_the_minimum_in_two_steps(enable_x64, beta, h):
  """presets.nag(1/h, momentum=beta) on h w^2/2: counting updates from 1,
  update 1 (from the empty memory, m(0) = 0) gives w(2) = -beta w(1), and
  update 2 gives w(3) = 0 up to float64 round-off, for every start."""
  del enable_x64
  after_1, after_2, after_3 = two_steps(presets.nag(1 / h, momentum=beta), h,
                                        STARTS)
  np.testing.assert_allclose(after_1, beta * np.abs(STARTS), rtol=1e-14)
  assert np.all(after_2 <= 1e-12), after_2
  assert np.all(after_3 <= 1e-12), after_3


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_the_pole_zero_realisation_is_deadbeat_too(enable_x64, beta):
  gamma, mu_eta_h = design.deadbeat(beta)
  eta, h = 0.1, 4.0  # any gain, with mu = mu_eta_h / (eta h)
  tx = optax.chain(
      asgm.scale_by_autosgm(filter=asgm.lowpass_filter(
          beta, gamma, eta, debias=False)),
      asgm.scale_by_learning_rate(mu_eta_h / (eta * h)))
  after_1, after_2, _ = two_steps(tx, h, STARTS)
  np.testing.assert_allclose(after_1, beta * np.abs(STARTS), rtol=1e-13)
  assert np.all(after_2 <= 1e-12), after_2


# ---------------------------------------------------------------------------
# FilterDesign and of()


def test_filter_design_fills_in_and_mirrors_the_functions():
  d = design.FilterDesign(0.9, 0.5)
  assert (d.beta, d.gamma, d.eta, d.debias, d.nesterov) == (
      0.9, 0.5, pytest.approx(0.2), False, False)
  args = (d.beta, d.gamma, d.eta)
  np.testing.assert_array_equal(d.frequency_response(7)[1],
                                design.frequency_response(*args, n=7)[1])
  np.testing.assert_array_equal(d.impulse_response(9),
                                design.impulse_response(*args, steps=9))
  np.testing.assert_array_equal(d.step_response(9),
                                design.step_response(*args, steps=9))
  np.testing.assert_array_equal(d.group_delay(), design.group_delay(*args))
  assert d.noise_gain() == design.noise_gain(*args)
  assert d.dc_gain() == design.dc_gain(*args)
  np.testing.assert_array_equal(d.closed_loop_poles(0.4),
                                design.closed_loop_poles(*args, 0.4))
  assert d.convergence_rate(0.4) == design.convergence_rate(*args, 0.4)
  with pytest.raises(AttributeError):
    d.beta = 0.5  # frozen
  debiased = design.FilterDesign(0.9, 0.0, debias=True)
  np.testing.assert_allclose(debiased.step_response(5), 1.0, rtol=1e-15)
  np.testing.assert_allclose(debiased.step_response(5, debias=False),
                             design.step_response(0.9, 0.0, steps=5))


def test_filter_design_nesterov_is_its_transfer_function():
  d = design.FilterDesign(0.9, nesterov=True)
  assert (d.gamma, d.eta) == (0.9 / 1.9, 1.9)
  assert design.FilterDesign(0.9, 0.9 / 1.9, 1.9, nesterov=True) == d
  # float32 values of a FilterSpec under inject_hyperparams are accepted.
  assert design.FilterDesign(jnp.float32(0.9), jnp.float32(0.9) / 1.9,
                             jnp.float32(1.9), nesterov=True).gamma == (
                                 pytest.approx(0.9 / 1.9, rel=1e-7))
  with pytest.raises(ValueError, match="nesterov=True"):
    design.FilterDesign(0.9, 0.3, 1.9, nesterov=True)


def test_filter_design_carries_a_methods_own_debias():
  d = design.FilterDesign(*design.from_nadam(0.9), debias="nadam")
  assert d.debias == "nadam"
  # NAdam's per-term debias overshoots: 1 + b1 / (1 + b1) at t = 1
  np.testing.assert_allclose(d.step_response(1), [1 + 0.9 / 1.9],
                             rtol=1e-12)
  np.testing.assert_allclose(d.step_response(3, debias=True), 1.0)
  spec = asgm.FilterSpec(0.9, 0.9 / 1.9, 0.19, "nadam", False)
  assert design.of(spec).debias == "nadam"


def _qh_step(beta, nu, debias, steps):
  """The quasi-hyperbolic form run on a unit constant, terms debiased as
  the papers write them (QHAdam: Ma & Yarats 2019, eq. 5; NAdam: optax)."""
  m, out = 0.0, []
  for t in range(1, steps + 1):
    m = beta * m + (1 - beta) * 1.0
    if debias == "ema":
      out.append((1 - nu) * 1.0 + nu * m / (1 - beta**t))
    else:
      out.append(nu * m / (1 - beta**(t + 1)) + (1 - nu) * 1.0
                 / (1 - beta**t))
  return np.array(out)


@pytest.mark.parametrize("beta, nu", [(0.9, 0.9), (0.995, 0.7), (0.5, 0.2)])
@pytest.mark.parametrize("debias", ["ema", "nadam"])
def test_step_response_with_a_per_term_debias(beta, nu, debias):
  b, g, e = design.from_qhm(nu, beta)
  np.testing.assert_allclose(design.step_response(b, g, e, 40, debias),
                             _qh_step(beta, nu, debias, 40), rtol=1e-12)


def test_per_term_debias_needs_the_quasi_hyperbolic_form():
  with pytest.raises(ValueError, match="quasi-hyperbolic"):
    design.step_response(0.9, 0.5, 0.3, 3, debias="ema")


def spec_of(d):
  return (d.beta, d.gamma, d.eta, d.debias, d.nesterov)


@pytest.mark.parametrize("block, expected", [
    (asgm.lowpass_filter(), (0.9, 0.0, 0.1, True, False)),
    (asgm.lowpass_filter(0.9, 0.5, debias=False), (0.9, 0.5, 0.2, False,
                                                   False)),
    (asgm.lowpass_filter(0.8, -0.8, 3.0), (0.8, -0.8, 3.0, True, False)),
    (asgm.lowpass_filter(0.5, nesterov=True, debias=False),
     (0.5, 1 / 3, 1.5, False, True)),
    (asgm.lowpass_filter(0.0, 0.0, 2.0), (0.0, 0.0, 2.0, True, False)),
])
def test_of_a_filter_block(block, expected):
  d = design.of(block)
  assert isinstance(d, design.FilterDesign)
  assert spec_of(d) == pytest.approx(expected, rel=1e-15)
  assert design.of(block.facts.filter) == d
  assert design.of(d) is d


PRESETS = [
    ("sgd", (presets.sgd, (0.1,), {}), (0.0, 0.0, 1.0, False, False)),
    ("sgd_momentum", (presets.sgd, (0.1, 0.8), {}),
     (0.8, 0.0, 1.0, False, False)),
    ("sgd_nesterov", (presets.sgd, (0.1,), dict(momentum=0.8, nesterov=True)),
     (0.8, 0.8 / 1.8, 1.8, False, True)),
    ("phb", (presets.phb, (0.1,), {}), (0.9, 0.0, 1.0, False, False)),
    ("nag", (presets.nag, (0.1,), dict(momentum=0.5)),
     (0.5, 1 / 3, 1.5, False, True)),
    ("adam", (presets.adam, (1e-3,), {}), (0.9, 0.0, 0.1, True, False)),
    ("adam_b1", (presets.adam, (1e-3, 0.5), {}), (0.5, 0.0, 0.5, True, False)),
    ("adamw", (presets.adamw, (1e-3,), dict(b1=0.95)),
     (0.95, 0.0, 0.05, True, False)),
    ("nadam_nesterov_false", (presets.nadam, (1e-3,), dict(nesterov=False)),
     (0.9, 0.0, 0.1, True, False)),
    ("nadamw", (presets.nadamw, (1e-3,), {}),
     (0.9, 0.9 / 1.9, 0.19, "nadam", False)),
]


@pytest.mark.parametrize("call, expected", [p[1:] for p in PRESETS],
                         ids=[p[0] for p in PRESETS])
def test_of_a_preset(call, expected):
  preset, args, kwargs = call
  d = design.of(preset, *args, **kwargs)
  assert spec_of(d)[:3] == pytest.approx(expected[:3], rel=1e-15)
  assert spec_of(d)[3:] == expected[3:]  # (debias, nesterov)


def test_of_a_preset_with_injected_hyperparameters():
  momentum = jnp.asarray(0.9, jnp.float32)
  d = design.of(presets.nag, 0.1, momentum=momentum)
  assert d.nesterov and d.beta == float(momentum)
  assert (d.gamma, d.eta) == (d.beta / (1 + d.beta), 1 + d.beta)


def run_block(block, x):
  """The block's output, used alone on a float64 scalar, for the input x."""
  state = block.init(jnp.zeros((), jnp.float64))
  out = []
  for xt in x:
    v, state = block.update(jnp.asarray(xt, jnp.float64), state)
    assert v.dtype == jnp.float64
    out.append(float(v))
  return np.array(out)


# (with a filter, and the exact debias or none: a per-term debias is not a
# factor of the impulse response)
FILTERED = [p for p in PRESETS if p[0] != "sgd" and not isinstance(p[2][3], str)]


@pytest.mark.parametrize("call", [p[1] for p in FILTERED],
                         ids=[p[0] for p in FILTERED])
def test_of_a_preset_is_what_its_filter_block_computes(enable_x64, call):
  del enable_x64
  from autosgm_optax._src.presets import filter_block  # pylint: disable=g-import-not-at-top
  preset, args, kwargs = call
  block = filter_block(preset, *args, **kwargs)
  d = design.of(preset, *args, **kwargs)
  steps = 60
  impulse = np.zeros(steps)
  impulse[0] = 1.0
  out = run_block(block, impulse)
  if d.debias:  # undo the block's debias: multiply by s(t)
    out = out * d.step_response(steps, debias=False)
  np.testing.assert_allclose(out, d.impulse_response(steps), rtol=1e-12,
                             atol=1e-300)
  # The step response with the design's own debias.
  np.testing.assert_allclose(run_block(block, np.ones(steps)),
                             d.step_response(steps), rtol=1e-12)


def test_of_a_preset_without_filter_is_the_identity():
  d = design.of(presets.sgd, 0.1)
  np.testing.assert_array_equal(d.impulse_response(4), [1.0, 0, 0, 0])
  np.testing.assert_array_equal(d.step_response(4), 1.0)
  assert d.noise_gain() == 1.0
  np.testing.assert_array_equal(d.group_delay(), 0.0)


def test_of_refuses():
  with pytest.raises(ValueError, match="'denominator'"):
    design.of(asgm.moment_denominator())
  with pytest.raises(ValueError, match="preset"):
    design.of(optax.sgd, 0.1)
  with pytest.raises(TypeError, match="no further arguments"):
    design.of(asgm.lowpass_filter(), 0.9)
  with pytest.raises(TypeError, match="neither"):
    design.of(0.9)
  # A preset's Optax-accepted but invalid pole is named when studied.
  with pytest.raises(ValueError, match=r"beta=1.0.*\[0, 1\)"):
    design.of(presets.sgd, 0.1, momentum=1.0)


# ---------------------------------------------------------------------------
# input errors

BAD = [
    (design.frequency_response, (1.0, 0.0), {}, ValueError,
     ["beta=1.0", "[0, 1)"]),
    (design.frequency_response, (-0.1, -0.2), {}, ValueError,
     ["beta=-0.1", "[0, 1)"]),
    (design.impulse_response, (0.9, 0.95), {}, ValueError,
     ["gamma=0.95", "gamma < beta"]),
    (design.step_response, (0.9, 0.9), {}, ValueError,
     ["gamma=0.9", "cancels the pole"]),
    (design.noise_gain, (0.9, 0.0, 0.0), {}, ValueError,
     ["eta=0.0", "(0, inf)"]),
    (design.dc_gain, (0.9, 0.0, -1.0), {}, ValueError,
     ["eta=-1.0", "(0, inf)"]),
    (design.group_delay, (0.9, float("nan")), {}, ValueError,
     ["gamma=nan"]),
    (design.frequency_response, (0.9, 0.0), dict(n=1), ValueError,
     ["n=1", "[2, inf)"]),
    (design.frequency_response, (0.9, 0.0), dict(n=10.0), ValueError,
     ["n=10.0", "whole number", "[2, inf)"]),
    (design.impulse_response, (0.9, 0.0), dict(steps=0), ValueError,
     ["steps=0", "[1, inf)"]),
    (design.step_response, (0.9, 0.0), dict(steps=True), ValueError,
     ["steps=True", "whole number"]),
    (design.step_response, (0.9, 0.0), dict(debias="exact"), ValueError,
     ["debias='exact'", "True", "False", "'nadam'"]),
    (design.step_response, (0.9, 0.0), dict(debias=1), ValueError,
     ["debias=1"]),
    (design.group_delay, (0.9, 0.0), dict(omega=[0.0, np.inf]), ValueError,
     ["omega=", "finite"]),
    (design.closed_loop_poles, (0.9, 0.0, 1.0, np.inf), {}, ValueError,
     ["mu_h=inf"]),
    (design.convergence_rate, (0.9, 0.0, 1.0, "1"), {}, TypeError,
     ["mu_h", "number"]),
    (design.named_zero, ("polyak", 0.9), {}, ValueError,
     ["name='polyak'", "'heavy_ball'", "'nesterov'",
      "'max_variance_reduction'", "'variance_per_unit_gain'"]),
    (design.named_zero, ("nesterov", 1.0), {}, ValueError,
     ["beta=1.0", "[0, 1)"]),
    (design.from_qhm, (1.5, 0.9), {}, ValueError, ["nu=1.5", "[0, 1]"]),
    (design.from_qhm, (0.7, 1.0), {}, ValueError, ["beta=1.0", "[0, 1)"]),
    (design.from_nadam, (-0.5,), {}, ValueError, ["b1=-0.5", "[0, 1)"]),
    (design.deadbeat, (1.2,), {}, ValueError, ["beta=1.2", "[0, 1)"]),
    (design.dc_gain, (True, 0.0), {}, TypeError, ["beta", "bool"]),
    (design.dc_gain, (np.array([0.9, 0.8]), 0.0), {}, ValueError,
     ["beta=", "shape ()"]),
    (design.FilterDesign, (0.9, 0.95), {}, ValueError,
     ["gamma=0.95", "gamma < beta"]),
    (design.FilterDesign, (0.9,), dict(debias=1), TypeError, ["debias=1"]),
    (design.FilterDesign, (0.9,), dict(nesterov=1), TypeError,
     ["nesterov=1"]),
]


@pytest.mark.parametrize("fn, args, kwargs, error, words", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in
                              enumerate(BAD)])
def test_bad_input_is_refused_naming_argument_value_and_range(
    fn, args, kwargs, error, words):
  with pytest.raises(error) as info:
    fn(*args, **kwargs)
  for word in words:
    assert word in str(info.value), (word, str(info.value))


def test_scalars_of_any_kind_are_accepted():
  expected = design.noise_gain(0.9, 0.5, 0.2)
  for kind in (np.float32, np.float64, jnp.float32, jnp.asarray):
    got = design.noise_gain(kind(0.9), kind(0.5), kind(0.2))
    assert got == pytest.approx(expected, rel=1e-6)
  assert design.noise_gain(0, 0, 1) == 1.0  # ints


# ---------------------------------------------------------------------------
# plot_filter


@pytest.fixture
def plt():
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as pyplot  # pylint: disable=g-import-not-at-top
  pyplot.close("all")
  yield pyplot
  pyplot.close("all")


def test_plot_filter_draws_each_design(plt):
  import matplotlib.figure  # pylint: disable=g-import-not-at-top
  designs = {
      "adam": design.of(presets.adam, 1e-3),
      "nag": design.of(presets.nag, 0.1, momentum=0.5),
      "negative zero": (0.9, -0.9),
      "gain": (0.9, 0.5, 0.3),
      "nadam": design.FilterDesign(*design.from_nadam(0.9), debias="nadam"),
  }
  fig = design.plot_filter(designs, n=64, steps=20, title="designs")
  assert isinstance(fig, matplotlib.figure.Figure)
  magnitude, phase, zplane, step = fig.axes
  assert [ax.get_title() for ax in fig.axes] == [
      "magnitude", "phase", "poles (x) and zeros (o)", "step response"]
  assert fig._suptitle.get_text() == "designs"
  assert magnitude.get_xscale() == phase.get_xscale() == "log"
  assert [t.get_text() for t in magnitude.get_legend().get_texts()] == list(
      designs)
  for i, (label, value) in enumerate(designs.items()):
    d = value if isinstance(value, design.FilterDesign) else (
        design.FilterDesign(*value))
    line = magnitude.get_lines()[i]
    assert line.get_label() == label
    x = np.asarray(line.get_xdata())
    assert x.size == 64 and x[-1] == pytest.approx(1.0)
    h = design.frequency_response(d.beta, d.gamma, d.eta, n=2)[1]
    _, expected = signal.freqz([d.eta, -d.eta * d.gamma], [1, -d.beta],
                               worN=np.pi * x)
    np.testing.assert_allclose(line.get_ydata(),
                               20 * np.log10(np.abs(expected)), rtol=1e-9,
                               atol=1e-9)
    assert line.get_ydata()[-1] == pytest.approx(
        20 * np.log10(abs(h[-1])), rel=1e-9)
    np.testing.assert_allclose(
        np.diff(phase.get_lines()[i].get_ydata()),
        np.diff(np.degrees(np.unwrap(np.angle(expected)))), atol=1e-9)
    pole, zero = zplane.get_lines()[2 * i: 2 * i + 2]
    assert (pole.get_xdata()[0], zero.get_xdata()[0]) == (d.beta, d.gamma)
    assert pole.get_marker() == "x" and zero.get_marker() == "o"
    step_line = step.get_lines()[i]
    np.testing.assert_array_equal(step_line.get_xdata(), np.arange(1, 21))
    np.testing.assert_array_equal(step_line.get_ydata(),
                                  d.step_response(20))
  # The unit circle, and the label of a per-term debias.
  circle = zplane.get_lines()[2 * len(designs)]
  np.testing.assert_allclose(np.hypot(circle.get_xdata(), circle.get_ydata()),
                             1.0)
  assert step.get_lines()[-1].get_label() == (
      "nadam (debias 'nadam')")
  np.testing.assert_allclose(step.get_lines()[0].get_ydata(), 1.0)


def test_plot_filter_refuses(plt):
  del plt
  with pytest.raises(ValueError, match="empty"):
    design.plot_filter({})
  with pytest.raises(TypeError, match="beta, gamma"):
    design.plot_filter({"x": 0.9})
  with pytest.raises(TypeError, match="pairs"):
    design.plot_filter([(0.9, 0.0, 1.0)])
  with pytest.raises(ValueError, match="gamma=0.95"):
    design.plot_filter({"x": (0.9, 0.95)})
  with pytest.raises(ValueError, match="steps=0"):
    design.plot_filter({"x": (0.9, 0.0)}, steps=0)


def test_plot_filter_names_the_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(ImportError) as info:
    design.plot_filter({"x": (0.9, 0.0)})
  assert str(info.value).startswith("plot_filter needs matplotlib, ")
  assert "`pip install matplotlib`" in str(info.value)


def test_design_is_public():
  assert "design" in asgm.__all__
  assert asgm.design is design
  for name in design.__all__:
    assert getattr(design, name).__doc__, name
  # Pure NumPy: float64 out, whatever JAX's default precision.
  assert design.impulse_response(0.9, 0.0).dtype == np.float64


def test_muons_filter_is_the_matrix_leaves_nadam_or_adam_filter():
  from autosgm_optax._src.presets import filter_block  # pylint: disable=g-import-not-at-top
  spec = lambda *a, **k: filter_block(*a, **k).facts.filter
  # optax.contrib.muon's nesterov momentum is NAdam's first moment
  assert spec(presets.muon, 0.02) == spec(presets.nadam, 1e-3, b1=0.95)
  assert spec(presets.muon, 0.02, beta=0.9) == spec(presets.nadam, 1e-3)
  assert spec(presets.muon, 0.02, nesterov=False) == spec(
      presets.adam, 1e-3, b1=0.95)
  # the other leaves' pole (adam_b1) is not the matrix leaves' filter
  assert spec(presets.muon, 0.02, adam_b1=0.5) == spec(presets.muon, 0.02)
  d = design.of(presets.muon, 0.02)
  assert (d.beta, d.debias) == (0.95, "nadam")
