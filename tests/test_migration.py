"""``from_torch_config``: the original PyTorch AutoSGM's tuples in ``autosgm``.

Three kinds of test:

- every documented code maps to the configuration docs/algorithm.md,
  section 10 says (the
  keyword dict, and the numbers of updates against ``autosgm`` built by hand);
  bad codes, values, types and tuple lengths are refused by name;
- the original README's example translates and trains;
- float64 runs of translated configurations match a NumPy re-derivation of
  the ORIGINAL code's arithmetic (``original_run`` below), written from
  the description of that code in docs/algorithm.md, section 10, and fed
  the tuples themselves, with the original's defects (listed there)
  replaced by the library's mathematics: the
  exact debias and first-step gain, eps outside the square root, the
  denominator always debiased, the numerator fed ``vbar`` without the
  decoupled-decay term, zero parameters escaping on the fly, epoch windows
  counted from ``spe``, the normalised late sigmoid, a working Kronecker
  ordering. Its structure is the original's: the transposed canonical
  filter, the learning-rate constant folded into the numerators.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax.migration._torch import TorchWindow
from autosgm_optax.migration._torch import from_torch_config
from autosgm_optax.migration._torch import torch_config_kwargs
from conftest import assert_bitwise_equal, mlp_problem, relative_error

README_LR = (True, 1e-3, 3)
README_BETA = (0.9999, 0.999, 0.9, 0.5528, 0, True)
README_WD = (0.0, 0)
README_EPS = (1e-10, True)


def readme_rc(num_epochs, iters_epoch):
  return (1, 0, 0, 2, 1, num_epochs, iters_epoch, 1, 0)


# XLA's backend optimisation level 0 compiles faster (as in
# test_reference.py); both sides of a bitwise comparison share one compile.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def window_values(schedule, n):
  return np.asarray(jax.vmap(schedule)(jnp.arange(n)), np.float64)


# ---------------------------------------------------------------------------
# the mapping, code by code


@pytest.mark.parametrize("aoptlr, num_lrc, denominator, numerator", [
    (True, 0, True, "unity"),
    (True, 1, True, "correlation"),
    (True, 2, True, "robust_correlation"),
    (True, 3, True, "moment"),
    (True, 4, True, "unity"),  # the original's Chebyshev gate is dead code
    *[(False, k, False, "unity") for k in range(5)],
])
def test_lr_cfg_codes(aoptlr, num_lrc, denominator, numerator):
  kw = torch_config_kwargs(lr_cfg=(aoptlr, 3e-3, num_lrc))
  assert kw["learning_rate"] == 3e-3
  assert kw["denominator"] is denominator
  assert kw["numerator"] == numerator


def test_beta_cfg_fields():
  kw = torch_config_kwargs(beta_cfg=(0.99, 0.95, 0.8, -0.2, 0, False))
  assert (kw["numerator_beta"], kw["moment_beta"]) == (0.99, 0.95)
  assert (kw["beta"], kw["gamma"], kw["debias"]) == (0.8, -0.2, False)
  assert kw["eta"] is None  # autosgm's default: (1 - beta) / (1 - gamma)


@pytest.mark.parametrize("beta, gamma, eta_i, eta", [
    (0.9, 0.5528, 0, None),
    (0.9, 0.9 / 1.9, 1.0, 1.9),  # eta_i = 1 at the Nesterov zero: 1 + beta
    (0.9, 0.5528, 0.3, 0.3 / (1 - 0.5528)),
    (0.0, 0.0, 0, None),
])
def test_beta_cfg_gain(beta, gamma, eta_i, eta):
  kw = torch_config_kwargs(beta_cfg=(0.9999, 0.999, beta, gamma, eta_i, True))
  assert kw["eta"] == pytest.approx(eta)


def test_default_gain_is_the_unit_dc_gain():
  """eta_i = 0 leaves autosgm's default gain, (1 - beta)/(1 - gamma): the
  same updates as that gain given explicitly (no debias, so it shows)."""
  beta, gamma = 0.9, 0.5528
  cfg = dict(lr_cfg=(True, 1e-2, 0), beta_cfg=(0.9999, 0.999, beta, gamma, 0,
                                               False))
  explicit = asgm.autosgm(1e-2, beta=beta, gamma=gamma, debias=False,
                          eta=(1 - beta) / (1 - gamma), eps=1e-10)
  _assert_same_updates(from_torch_config(**cfg), explicit, rtol=1e-6)


@pytest.mark.parametrize("lvl, decay", [(0, "coupled"), (1, "decoupled")])
def test_wd_cfg_levels(lvl, decay):
  beta, gamma = 0.9, 0.5528
  kw = torch_config_kwargs(beta_cfg=(0.9999, 0.999, beta, gamma, 0.5, True),
                           wd_cfg=(1e-2, lvl))
  assert (kw["weight_decay"], kw["decay"]) == (1e-2, decay)
  if decay == "decoupled":  # the default gain even when eta_i is set
    assert kw["decay_factor"] == pytest.approx((1 - beta) / (1 - gamma))
  else:
    assert "decay_factor" not in kw


@pytest.mark.parametrize("eps_cfg", [(1e-7,), (1e-7, True), (1e-7, False)])
def test_eps_cfg_repeat_eps_ignored(eps_cfg):
  kw = torch_config_kwargs(eps_cfg=eps_cfg)
  assert kw == torch_config_kwargs(eps_cfg=(1e-7,))
  assert kw["eps"] == 1e-7


def _spec(length, shape, param, value, **options):
  base = dict(floor=0.0, full=False, flat_top=0.0, stairs=1, restarts=True,
              steps_per_epoch=None, kronecker=False)
  base.update(options)
  return length, shape, {param: value, **base}


RC_CASES = {
    # rcm: the shapes and their parameter n
    "raised_cosine": ((1, 0, 0, 2, 1, 3, 10, 1, 0),
                      _spec(30, "raised_cosine", "order", 2)),
    "polynomial": ((2, 0, 0, 1, 1, 3, 10, 1, 0),
                   _spec(30, "polynomial", "order", 1)),
    "beta_exponential": ((3, 0, 0, 0.05, 1, 3, 10, 1, 0),
                         _spec(30, "beta_exponential", "base", 0.05)),
    "simple_polynomial": ((4, 0, 0, 1.8, 1, 3, 10, 1, 0),
                          _spec(30, "simple_polynomial", "order", 1.8)),
    "sigmoid": ((5, 0, 0, 4, 1, 3, 10, 1, 0), _spec(30, "sigmoid", "rate", 4)),
    "late_sigmoid": ((6, 0, 0, 4, 1, 3, 10, 1, 0),
                     _spec(30, "late_sigmoid", "rate", 4)),
    # inseq, x, m, e
    "kronecker": ((1, 1, 0, 2, 1, 3, 10, 1, 0),
                  _spec(30, "raised_cosine", "order", 2, kronecker=True)),
    "floor": ((1, 0, 0.2, 2, 1, 3, 10, 1, 0),
              _spec(30, "raised_cosine", "order", 2, floor=0.2)),
    "full": ((1, 0, 0, 2, 0, 3, 10, 1, 0),
             _spec(30, "raised_cosine", "order", 2, full=True)),
    "flat_top": ((2, 0, 0, 2, 0, 3, 10, 1, 0.25),
                 _spec(30, "polynomial", "order", 2, full=True,
                       flat_top=0.25)),
    # cfact: the step unit and the frame length
    "epochs": ((1, 0, 0.1, 2, 1, 4, 5, 0, 0),
               _spec(4, "raised_cosine", "order", 2, floor=0.1,
                     steps_per_epoch=5)),
    "one_epoch": ((1, 0, 0, 2, 1, 4, 7, 2, 0),
                  _spec(7, "raised_cosine", "order", 2)),
    "stairs": ((3, 0, 0, 0.1, 1, 3, 10, 3, 0),
               _spec(30, "beta_exponential", "base", 0.1, stairs=3)),
    "stairs_sigmoid": ((5, 0, 0, 4, 1, 2, 10, 5, 0),
                       _spec(20, "sigmoid", "rate", 4, stairs=5)),
}


@pytest.mark.parametrize("name", sorted(RC_CASES))
def test_rc_cfg_codes(name):
  rc_cfg, (length, shape, options) = RC_CASES[name]
  window = torch_config_kwargs(rc_cfg=rc_cfg)["window"]
  assert isinstance(window, TorchWindow)
  assert (window.length, window.shape, window.options) == (
      length, shape, options)
  assert window == TorchWindow(length, shape, **options)
  assert repr(window).startswith(f"window_schedule({length}, {shape!r}")
  n = 3 * length * (options["steps_per_epoch"] or 1)
  np.testing.assert_array_equal(
      window_values(window, n),
      window_values(asgm.window_schedule(length, shape, **options), n))


@pytest.mark.parametrize("rc_cfg", [(0, 0, 0, 2, 1, 10, 10, 1, 0),
                                    (0, 1, 0, 2, 0, 10, 10, 1, 1)])
def test_rc_cfg_off(rc_cfg):
  """rcm = 0: no window (a coverage of 1, the original's constant window,
  is fine there)."""
  assert torch_config_kwargs(rc_cfg=rc_cfg)["window"] is None


def test_window_restarts_in_every_unit():
  """Frames restart (the original spawns a new frame when one ends): in
  iteration units at tau * spe, in epoch units after tau epochs, and F is
  constant within an epoch."""
  it = torch_config_kwargs(rc_cfg=(1, 0, 0.1, 2, 1, 2, 5, 1, 0))["window"]
  got = window_values(it, 30)
  np.testing.assert_allclose(got[:10], got[10:20], atol=1e-7)
  assert got[10] == pytest.approx(1.0)
  ep = torch_config_kwargs(rc_cfg=(1, 0, 0.1, 2, 1, 3, 4, 0, 0))["window"]
  got = window_values(ep, 24)
  for epoch in range(6):
    np.testing.assert_array_equal(got[4 * epoch:4 * epoch + 4],
                                  got[4 * epoch])
  assert got[12] == pytest.approx(1.0)  # epoch 3 starts a new frame
  assert np.all(got >= 0.1 - 1e-7)  # never below the floor, never negative


def test_readme_example_kwargs(capsys):
  kw = torch_config_kwargs(README_LR, README_BETA, readme_rc(2, 100),
                           README_WD, README_EPS, show=True)
  expected = dict(
      learning_rate=1e-3, beta=0.9, gamma=0.5528, eta=None, debias=True,
      denominator=True, moment_beta=0.999, eps=1e-10, numerator="moment",
      numerator_beta=0.9999,
      window=TorchWindow(200, "raised_cosine", order=2, floor=0.0,
                         full=False, flat_top=0.0, stairs=1, restarts=True,
                         steps_per_epoch=None, kronecker=False),
      weight_decay=0.0, decay="coupled")
  assert kw == expected
  printed = capsys.readouterr().out
  assert printed.startswith("autosgm(\n") and "numerator='moment'" in printed
  assert "window=window_schedule(200, 'raised_cosine'" in printed


def _assert_same_updates(tx_a, tx_b, steps=4, rtol=0.0):
  """Updates of two transformations on the same gradients and parameters
  (those of ``tx_b``'s run), step by step."""
  params, loss = mlp_problem()

  @jax.jit
  def go(params):
    def body(carry, _):
      p, sa, sb = carry
      g = jax.grad(loss)(p)
      ua, sa = tx_a.update(g, sa, p)
      ub, sb = tx_b.update(g, sb, p)
      return (optax.apply_updates(p, ub), sa, sb), (ua, ub)

    carry = (params, tx_a.init(params), tx_b.init(params))
    return jax.lax.scan(body, carry, None, length=steps)[1]

  all_a, all_b = go.lower(params).compile(COMPILER_OPTIONS)(params)
  for k in range(steps):
    ua, ub = (jax.tree.map(lambda x, k=k: x[k], u) for u in (all_a, all_b))
    if rtol:
      assert relative_error(ua, ub) <= rtol, k
    else:
      assert_bitwise_equal(ua, ub)


BETA, GAMMA = 0.9, 0.5528
C_RHO = (1 - BETA) / (1 - GAMMA)
NAG_ZERO = BETA / (1 + BETA)

# (tuples, the autosgm call written by hand from docs/algorithm.md, section 10)
UPDATE_CASES = {
    "readme": (
        dict(lr_cfg=README_LR, beta_cfg=README_BETA, rc_cfg=readme_rc(1, 50),
             wd_cfg=README_WD, eps_cfg=README_EPS),
        lambda: asgm.autosgm(
            1e-3, beta=0.9, gamma=0.5528, moment_beta=0.999, eps=1e-10,
            numerator="moment", numerator_beta=0.9999,
            window=asgm.window_schedule(50, "raised_cosine", order=2,
                                        restarts=True))),
    "correlation_decoupled": (
        dict(lr_cfg=(True, 5e-3, 1), beta_cfg=(0.999, 0.99, BETA, GAMMA, 0,
                                               True),
             rc_cfg=(2, 0, 0.1, 1, 0, 2, 5, 0, 0.2), wd_cfg=(1e-2, 1),
             eps_cfg=(1e-8,)),
        lambda: asgm.autosgm(
            5e-3, beta=BETA, gamma=GAMMA, moment_beta=0.99, eps=1e-8,
            numerator="correlation", numerator_beta=0.999,
            weight_decay=1e-2, decay="decoupled", decay_factor=C_RHO,
            window=asgm.window_schedule(
                2, "polynomial", order=1, floor=0.1, full=True,
                flat_top=0.2, restarts=True, steps_per_epoch=5))),
    "robust_coupled_nodebias": (
        dict(lr_cfg=(True, 5e-3, 2), beta_cfg=(0.9999, 0.999, BETA, GAMMA, 0,
                                               False),
             rc_cfg=(6, 0, 0, 4, 1, 1, 8, 2, 0), wd_cfg=(1e-2, 0)),
        lambda: asgm.autosgm(
            5e-3, beta=BETA, gamma=GAMMA, debias=False, eps=1e-10,
            numerator="robust_correlation", weight_decay=1e-2,
            decay="coupled",
            window=asgm.window_schedule(8, "late_sigmoid", rate=4,
                                        restarts=True))),
    "constant_lr_nesterov": (
        dict(lr_cfg=(False, 1e-2, 3),
             beta_cfg=(0.9999, 0.999, BETA, NAG_ZERO, 1, True),
             rc_cfg=(4, 1, 0, 2, 1, 4, 4, 3, 0), wd_cfg=(1e-3, 1)),
        lambda: asgm.autosgm(
            1e-2, beta=BETA, gamma=NAG_ZERO, eta=1 / (1 - NAG_ZERO),
            denominator=False, eps=1e-10, weight_decay=1e-3,
            decay_factor=(1 - BETA) / (1 - NAG_ZERO),
            window=asgm.window_schedule(16, "simple_polynomial", order=2,
                                        stairs=3, restarts=True,
                                        kronecker=True))),
}


@pytest.mark.parametrize("name", sorted(UPDATE_CASES))
def test_updates_equal_autosgm_written_by_hand(name):
  cfg, build = UPDATE_CASES[name]
  _assert_same_updates(from_torch_config(**cfg), build(), steps=6)


def test_original_defaults_are_adam():
  """The original constructor's defaults are Adam (eps 1e-10, lr 1e-2): the
  translation is bit for bit optax.adam."""
  _assert_same_updates(from_torch_config(), optax.adam(1e-2, eps=1e-10),
                       steps=20)


# ---------------------------------------------------------------------------
# refusals, by name


BAD = [
    # wrong codes and values
    (dict(lr_cfg=(True, 1e-3, 7)), ValueError, r"lr_cfg\[2\] \(num_lrc\)=7"),
    (dict(lr_cfg=(True, 0.0, 1)), ValueError, r"lr_cfg\[1\] \(lr_init\)"),
    (dict(lr_cfg=(False, -1e-3, 0)), ValueError, r"lr_cfg\[1\] \(lr_init\)"),
    (dict(beta_cfg=(1.0, 0.999, 0.9, 0, 0, True)), ValueError,
     r"beta_cfg\[0\] \(beta_n\)"),
    (dict(beta_cfg=(0.9999, -0.1, 0.9, 0, 0, True)), ValueError,
     r"beta_cfg\[1\] \(beta_a\)"),
    (dict(beta_cfg=(0.9999, 0.999, 1.0, 0, 0, True)), ValueError,
     r"beta_cfg\[2\] \(beta\)"),
    (dict(beta_cfg=(0.9999, 0.999, 0.9, 0.9, 0, True)), ValueError,
     r"beta_cfg\[3\] \(gamma\)=0.9.*cancels the pole"),
    (dict(beta_cfg=(0.9999, 0.999, 0.5, 0.7, 0, True)), ValueError,
     r"beta_cfg\[3\] \(gamma\)=0.7"),
    (dict(beta_cfg=(0.9999, 0.999, 0.9, 0, -1, True)), ValueError,
     r"beta_cfg\[4\] \(eta_i\)=-1"),
    (dict(rc_cfg=(9, 0, 0, 2, 1, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[0\] \(rcm\)=9 is not a valid code"),
    (dict(rc_cfg=(1, 2, 0, 2, 1, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[1\] \(inseq\)=2"),
    (dict(rc_cfg=(1, 0, 1.5, 2, 1, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[2\] \(x\)=1.5"),
    (dict(rc_cfg=(1, 0, 0, 0, 1, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[3\] \(n\)=0"),
    (dict(rc_cfg=(3, 0, 0, 1, 1, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[3\] \(n\)=1 must be > 0 and not 1"),
    (dict(rc_cfg=(1, 0, 0, 2, 2, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[4\] \(m\)=2 is not a valid code"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 0, 10, 1, 0)), ValueError,
     r"rc_cfg\[5\] \(tau\)=0"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 0, 1, 0)), ValueError,
     r"rc_cfg\[6\] \(spe\)=0"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 10, -1, 0)), ValueError,
     r"rc_cfg\[7\] \(cfact\)=-1"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 10, 1, 1)), ValueError,
     r"rc_cfg\[8\] \(e\)=1 .*rcm\)=0"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 10, 1, -0.1)), ValueError,
     r"rc_cfg\[8\] \(e\)=-0.1"),
    (dict(rc_cfg=(0, 0, 0, 2, 1, 10, 10, 1, 1.5)), ValueError,
     r"rc_cfg\[8\] \(e\)=1.5"),
    (dict(rc_cfg=(1, 1, 0, 2, 0, 10, 10, 1, 0)), ValueError,
     r"rc_cfg\[1\] \(inseq\)=1 .*rc_cfg\[4\] \(m\)=0"),
    (dict(rc_cfg=(1, 1, 0, 2, 1, 10, 10, 1, 0.2)), ValueError,
     r"rc_cfg\[1\] \(inseq\)=1 .*rc_cfg\[8\] \(e\)=0.2"),
    (dict(wd_cfg=(1e-2, 3)), ValueError, r"wd_cfg\[1\] \(lvl\)=3"),
    (dict(wd_cfg=(-1e-2, 1)), ValueError, r"wd_cfg\[0\] \(rho\)"),
    (dict(eps_cfg=(-1e-10,)), ValueError, r"eps_cfg\[0\] \(eps\)"),
    # wrong types
    (dict(lr_cfg=(1, 1e-3, 0)), TypeError, r"lr_cfg\[0\] \(aoptlr\)=1 must"),
    (dict(lr_cfg=(True, "1e-3", 0)), TypeError, r"lr_cfg\[1\] \(lr_init\)"),
    (dict(lr_cfg=(True, 1e-3, 1.0)), TypeError, r"lr_cfg\[2\] \(num_lrc\)"),
    (dict(beta_cfg=(0.9999, 0.999, 0.9, 0, 0, "yes")), TypeError,
     r"beta_cfg\[5\] \(debias\)"),
    (dict(rc_cfg=("1", 0, 0, 2, 1, 10, 10, 1, 0)), TypeError,
     r"rc_cfg\[0\] \(rcm\)"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 2.5, 10, 1, 0)), TypeError,
     r"rc_cfg\[5\] \(tau\)"),
    (dict(wd_cfg=(1e-2, True)), TypeError, r"wd_cfg\[1\] \(lvl\)"),
    (dict(eps_cfg=(1e-10, "twice")), TypeError,
     r"eps_cfg\[1\] \(repeat_eps\)"),
    (dict(lr_cfg=1e-3), TypeError, r"lr_cfg=0.001 must be a tuple"),
    (dict(eps_cfg="1e-10"), TypeError, r"eps_cfg='1e-10' must be a tuple"),
    (dict(show="yes"), TypeError, r"show="),
    # wrong lengths
    (dict(lr_cfg=(True, 1e-3)), ValueError, r"lr_cfg=.* has 2 entries"),
    (dict(beta_cfg=(0.9999, 0.999, 0.9, 0, 0)), ValueError,
     r"beta_cfg=.* has 5 entries; expected 6"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 10, 1)), ValueError,
     r"rc_cfg=.* has 8 entries; expected 9"),
    (dict(rc_cfg=(1, 0, 0, 2, 1, 10, 10, 1, 0, 0)), ValueError,
     r"rc_cfg=.* has 10 entries"),
    (dict(wd_cfg=(1e-2,)), ValueError, r"wd_cfg=.* has 1 entries"),
    (dict(eps_cfg=()), ValueError, r"eps_cfg=.* has 0 entries; expected 1"),
    (dict(eps_cfg=(1e-10, True, 0)), ValueError, r"eps_cfg=.* has 3 entries"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD,
                         ids=[m[:40] for _, _, m in BAD])
def test_refused_by_name(kwargs, error, match):
  with pytest.raises(error, match=match):
    torch_config_kwargs(**kwargs)
  with pytest.raises(error, match=match):
    from_torch_config(**kwargs)


# ---------------------------------------------------------------------------
# the README's example trains


def test_readme_example_trains():
  steps = 1000  # the moment numerator's warm-up is slow (docs/algorithm.md,
  # section 4)
  tx = from_torch_config(README_LR, README_BETA, readme_rc(2, steps // 2),
                         README_WD, README_EPS)
  params, loss = mlp_problem()

  @jax.jit
  def go(params):
    def body(_, carry):
      p, s = carry
      u, s = tx.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s

    return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]

  final = go.lower(params).compile(COMPILER_OPTIONS)(params)
  before, after = float(loss(params)), float(loss(final))
  assert np.isfinite(after) and after < 0.9 * before, (before, after)
  assert float(jnp.max(jnp.abs(final["b1"]))) > 0  # the zero bias trains


# ---------------------------------------------------------------------------
# float64: the translation against the original's arithmetic


STEPS = 300
TOL = 1e-6  # docs/algorithm.md, section 8
HUBER_K = 4  # the original's Markov clip multiple (its state['cf'])
SMOOTHING = 0.1  # the original's pole for the per-leaf average
KRONECKER = 0.5 * (math.sqrt(5) - 1)  # the original's seq_kron step


def _make_problem():
  """A tanh layer with a zero bias and a noisy ill-conditioned quadratic:
  float64 NumPy data, the loss in jnp, noise indexed by step."""
  rng = np.random.default_rng(3)
  inputs = rng.normal(size=(16, 4))
  targets = np.sin(inputs @ rng.normal(size=(4,)))
  curvature = np.logspace(-1, 1, 5)
  params0 = {"w1": rng.normal(size=(4, 5)) * 0.5, "b1": np.zeros(5),
             "w2": rng.normal(size=(5,)) * 0.5, "x": rng.normal(size=(5,))}
  noise = 0.1 * rng.normal(size=(STEPS, 5))

  def grad(p, k):
    def loss(p):
      h = jnp.tanh(jnp.asarray(inputs) @ p["w1"] + p["b1"])
      fit = jnp.mean((h @ p["w2"] - jnp.asarray(targets)) ** 2)
      return fit + 0.5 * jnp.sum(jnp.asarray(curvature) * p["x"] ** 2)

    g = jax.grad(loss)(p)
    return {**g, "x": g["x"] + jnp.asarray(noise)[k]}

  return params0, grad


PARAMS0, GRAD = _make_problem()
_grad_jit = jax.jit(GRAD)


def _grad_np(params, k):
  g = _grad_jit(params, jnp.asarray(k))
  return {n: np.asarray(v, np.float64) for n, v in g.items()}


def _phi(rcm, n, f):
  """The original's shapes at f in [0, 1] (docs/algorithm.md, section 5),
  with the late
  sigmoid normalised by its own bounds (the original uses the centred
  one's: a defect)."""
  if rcm == 1:
    return math.cos(0.5 * math.pi * f) ** n
  if rcm == 2:
    return (1 - f) ** n
  if rcm == 3:
    return (n ** f - n) / (1 - n)
  if rcm == 4:
    return (1 - f ** n) ** 2
  centre = 0.5 if rcm == 5 else 0.875
  s = lambda y: 1 / (1 + 2.0 ** (2 * n * (y - centre)))
  return (s(f) - s(1)) / (s(0) - s(1))


def _staircase(rcm, n, stairs, x, f):
  i = max(1, math.ceil(f * stairs))
  return x + (1 - x) * (stairs - i + _phi(rcm, n, stairs * f - i + 1)) / stairs


def original_window(rc_cfg):
  """The original's WINF / WINF_II as a function of the iteration t >= 1:
  the frame restarts when it ends; the epoch is counted from ``spe`` (the
  original counts it from ``tau``: a defect); the Kronecker table is used
  (the original never uses it)."""
  rcm, inseq, x, n, m, tau, spe, cfact, e = rc_cfg
  stairs = cfact if cfact >= 3 else 1
  length = {0: tau, 2: spe}.get(cfact, tau * spe)
  if rcm and inseq == 1:  # half window, no flat top: WINF_II's sorted table
    table = sorted(_staircase(rcm, n, stairs, x, (KRONECKER * k) % 1)
                   for k in range(length))

  def window(t):
    if rcm == 0:
      return 1.0
    unit = (t - 1) // spe if cfact == 0 else t - 1  # epochs or iterations
    tc = unit % length  # position in the current frame
    if inseq == 1:
      return table[length - 1 - tc]  # the largest first
    f = tc / length
    if m == 0:  # full window
      f = abs(2 * f - 1)
    if f < e:  # flat top
      return 1.0
    f = (f - e) / (1 - e)
    return _staircase(rcm, n, stairs, x, f)

  return window


def _transposed_filter(state, x, beta, gamma):
  """The original's first-order filter (transposed canonical form) on the
  already weighted input x, dividing by (1 - gamma) from the first step on
  (the original divides by 1 at t = 1: a defect)."""
  state = state + x
  y = state / (1 - gamma)
  return y, beta * state - gamma * x


def original_run(params0, grad_fn, steps, lr_cfg, beta_cfg, rc_cfg, wd_cfg,
                 eps_cfg, *, eps_inside=False, defects=()):
  """The original AutoSGM's element-wise update, tuples in, in float64.

  Defects replaced by the mathematics of docs/algorithm.md unless named in
  ``defects``
  ("debias": the original's 1 - beta^t debias and first-step gain;
  "decay_in_numerator": the numerator fed the decayed direction), so the
  test can show it would notice them. ``eps_inside`` averages
  (g + eps)^2 as the original does.
  """
  aoptlr, lr0, num_lrc = lr_cfg
  beta_n, beta_a, beta, gamma, eta_i, debias = beta_cfg
  rho, lvl = wd_cfg
  eps = eps_cfg[0]
  eta = eta_i if eta_i > 0 else 1 - beta  # the input weight
  c_rho = (1 - beta) / (1 - gamma)  # the original's decoupled-decay factor
  window = original_window(rc_cfg)
  w = {k: np.array(v, np.float64) for k, v in params0.items()}
  zeros = lambda: {k: np.zeros_like(v) for k, v in w.items()}
  g_sm, g_var, pc, wsq, pcx = zeros(), zeros(), zeros(), zeros(), zeros()
  lrn = {k: 0.0 for k in w}
  unit_state = 0.0  # the same filter fed a unit step: its exact response

  for k in range(steps):
    t = k + 1
    grads = grad_fn({n: v.copy() for n, v in w.items()}, k)
    unit, unit_state = _transposed_filter(unit_state, eta, beta, gamma)
    if "debias" in defects:  # the original's y *= (eta_n / eta) / (1 - beta^t)
      unit = (1 - beta ** t) * eta / (1 - beta)
    F = window(t)
    for name in w:
      wd = rho * w[name]
      g = grads[name] + (wd if lvl == 0 else 0.0)
      v, g_sm[name] = _transposed_filter(g_sm[name], eta * g, beta, gamma)
      if "debias" in defects and t == 1:
        v = v * (1 - gamma)  # the original's gain of 1 at t = 1
      if debias:
        v = v / unit
      if aoptlr:  # the moment, always debiased
        gsq = (g + eps) ** 2 if eps_inside else g * g
        g_var[name] = beta_a * g_var[name] + (1 - beta_a) * gsq
        gpow = np.sqrt(g_var[name] / (1 - beta_a ** t)) + eps
      else:
        gpow = 1.0
      u, v = g / gpow, v / gpow
      dec = c_rho * wd if lvl == 1 else 0.0
      seen = v + dec if "decay_in_numerator" in defects else v
      if not aoptlr or num_lrc in (0, 4):
        numlr = lr0
      else:
        we = np.where(np.abs(w[name]) < eps, w[name] + eps, w[name])
        wsq[name] = beta_n * wsq[name] + (1 - beta_n) * we * we
        cmax = wsq[name] + 1
        if num_lrc == 1:
          pc[name] = beta_n * pc[name] + lr0 * we * seen
          out = np.minimum(np.abs(pc[name]), lr0 * cmax)
        elif num_lrc == 2:
          p = we * seen
          pcx[name] = beta_a * pcx[name] + (1 - beta_a) * np.abs(p)
          clipped = np.sign(p) * np.minimum(np.abs(p), HUBER_K * pcx[name])
          pc[name] = beta_n * pc[name] + lr0 * clipped / cmax
          out = np.minimum(np.abs(pc[name]), lr0 * cmax)
        else:  # num_lrc == 3
          pc[name] = beta_n * pc[name] + (1 - beta_n) * lr0 * u * u
          out = np.minimum(pc[name], lr0)
        lrn[name] = SMOOTHING * lrn[name] + (1 - SMOOTHING) * np.mean(out)
        numlr = lrn[name]
      w[name] = w[name] - numlr * F * (v + dec)
  return w


ORIGINAL_CASES = {
    "correlation_gamma_decoupled_rcos_debias": dict(
        lr_cfg=(True, 5e-3, 1),
        beta_cfg=(0.9999, 0.999, 0.9, 0.5528, 0, True),
        rc_cfg=(1, 0, 0.05, 2, 1, 3, 40, 1, 0),  # 120-step frames, restarts
        wd_cfg=(1e-2, 1), eps_cfg=(1e-10, True)),
    "robust_coupled_nodebias_epochs_full": dict(
        lr_cfg=(True, 5e-3, 2),
        beta_cfg=(0.9999, 0.999, 0.9, 0.5528, 0, False),
        rc_cfg=(2, 0, 0.1, 1, 0, 4, 25, 0, 0.2),  # 4 epochs of 25, flat top
        wd_cfg=(1e-2, 0), eps_cfg=(1e-10,)),
    "moment_nesterov_gain_stairs": dict(
        lr_cfg=(True, 1e-2, 3),
        beta_cfg=(0.999, 0.99, 0.9, 0.9 / 1.9, 1, True),
        rc_cfg=(3, 0, 0, 0.1, 1, 2, 50, 3, 0),  # 3 sub-decays per 100 steps
        wd_cfg=(1e-3, 1), eps_cfg=(1e-10,)),
    "constant_lr_kronecker": dict(
        lr_cfg=(False, 1e-2, 2),
        beta_cfg=(0.9999, 0.999, 0.9, 0, 0, True),
        rc_cfg=(4, 1, 0, 2, 1, 1, 64, 2, 0),  # one epoch of 64, Kronecker
        wd_cfg=(1e-2, 1), eps_cfg=(1e-10,)),
    "unity_late_sigmoid_negative_zero": dict(
        lr_cfg=(True, 1e-2, 4),
        beta_cfg=(0.9999, 0.999, 0.8, -0.3, 0, True),
        rc_cfg=(6, 0, 0, 4, 1, 1, 150, 1, 0),
        wd_cfg=(0.0, 0), eps_cfg=(1e-10,)),
    "sigmoid_full_correlation_nodebias": dict(
        lr_cfg=(True, 5e-3, 1),
        beta_cfg=(0.9999, 0.999, 0.9, 0.5528, 0, False),
        rc_cfg=(5, 0, 0.1, 4, 0, 1, 100, 1, 0),
        wd_cfg=(1e-2, 1), eps_cfg=(1e-10,)),
}

_LIBRARY = {}


def _library_run(name):
  """Final float64 parameters of the translated configuration (cached)."""
  if name not in _LIBRARY:
    tx = from_torch_config(**ORIGINAL_CASES[name])
    params = {k: jnp.asarray(v) for k, v in PARAMS0.items()}

    @jax.jit
    def go(params):
      def body(k, carry):
        p, s = carry
        u, s = tx.update(GRAD(p, k), s, p)
        return optax.apply_updates(p, u), s

      return jax.lax.fori_loop(0, STEPS, body, (params, tx.init(params)))[0]

    final = go.lower(params).compile(COMPILER_OPTIONS)(params)
    assert all(v.dtype == jnp.float64 for v in final.values())
    _LIBRARY[name] = {k: np.asarray(v) for k, v in final.items()}
  return _LIBRARY[name]


@pytest.mark.parametrize("name", sorted(ORIGINAL_CASES))
def test_matches_original_arithmetic(enable_x64, name):
  got = _library_run(name)
  expected = original_run(PARAMS0, _grad_np, STEPS, **ORIGINAL_CASES[name])
  moved = max(float(np.max(np.abs(expected[k] - v)))
              for k, v in PARAMS0.items())
  assert moved > 1e-3, "the run must move the parameters"
  assert relative_error(got, expected) <= TOL
  assert np.max(np.abs(got["b1"])) > 0  # the zero bias escapes


def test_eps_inside_the_square_is_a_small_difference(enable_x64):
  """The original's (g + eps)^2: a difference of order eps/|g|, far below
  the tolerance here (eps = 1e-10)."""
  name = "correlation_gamma_decoupled_rcos_debias"
  expected = original_run(PARAMS0, _grad_np, STEPS, **ORIGINAL_CASES[name],
                          eps_inside=True)
  assert relative_error(_library_run(name), expected) <= TOL


@pytest.mark.parametrize("defect", ["debias", "decay_in_numerator"])
def test_the_comparison_sees_the_original_defects(enable_x64, defect):
  """The reference with one of the original's defects kept is far from the
  translation: the comparison above has the power to tell."""
  name = "correlation_gamma_decoupled_rcos_debias"
  expected = original_run(PARAMS0, _grad_np, STEPS, **ORIGINAL_CASES[name],
                          defects=(defect,))
  assert relative_error(_library_run(name), expected) > 100 * TOL
