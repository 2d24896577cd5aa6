"""``autosgm`` against an independent float64 NumPy re-derivation of
docs/algorithm.md.

docs/algorithm.md, section 8: every configuration that is not an exact Optax
point must agree with a float64 NumPy re-derivation of that page (here
``numpy_reference.py``), run in float64, to ``<= 1e-6`` over 300 steps,
measured per leaf as ``max|a - b| / max(max|b|, 1e-30)`` on the final
parameters, worst leaf. Both runs compute their gradients from their own
parameters with the same gradient function and the same per-step noise, so
the trajectories agree to round-off.

The problems. Two independent problems are optimised side by side in one
parameter tree: a 2-layer tanh network regression (a weight matrix ``w1``,
a zero-initialised bias ``b1``, a stack of two residual hidden layers
``stack`` of shape (2, 6, 6) for ``keep_axes=(0,)``, an output vector
``w2``) and a noisy ill-conditioned quadratic ``x`` with a batch of noisy
Rosenbrock valleys ``r``. AutoSGM acts leaf by leaf (the numerator's average
is per leaf; the step count, the learning rate and the window are the same
for every leaf), so this is exactly two runs, at the cost of one compilation.

Speed. Compiling the update dominates the cost, so the configurations are
compiled in groups: one jitted step runs the updates of a group's
configurations side by side, each on its own parameters and state, with the
gradients from one shared, batched gradient function; the results are
cached for the tests of the group.
"""

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm


def _load_reference():
  """``numpy_reference`` from beside this file, whatever the import mode."""
  name = "numpy_reference"
  if name in sys.modules:
    return sys.modules[name]
  path = pathlib.Path(__file__).with_name("numpy_reference.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


ref = _load_reference()

STEPS = 300
TOL = 1e-6  # docs/algorithm.md, section 8
BETA, GAMMA = 0.9, 0.5528
GROUP_SIZE = 8  # configurations compiled together


# ---------------------------------------------------------------------------
# the problems: float64 NumPy data, losses in jnp, noise indexed by step


def _make_problem():
  rng = np.random.default_rng(0)
  # a 2-layer tanh network regression
  inputs = rng.normal(size=(24, 4))
  targets = np.sin(inputs @ rng.normal(size=(4,)))
  # a noisy ill-conditioned quadratic and noisy Rosenbrock valleys
  curvature = np.logspace(-1, 1, 6)
  x_star = rng.normal(size=(6,))
  params0 = {
      "w1": rng.normal(size=(4, 6)) * 0.5,
      "b1": np.zeros((6,)),
      "stack": rng.normal(size=(2, 6, 6)) * 0.4,
      "w2": rng.normal(size=(6,)) * 0.5,
      "x": rng.normal(size=(6,)),
      "r": np.stack([rng.uniform(-1.2, -0.2, 5), rng.uniform(0.0, 1.0, 5)]),
  }
  noise = {k: np.zeros((STEPS,) + v.shape) for k, v in params0.items()}
  for k in ("x", "r"):
    noise[k] = 0.1 * rng.normal(size=(STEPS,) + params0[k].shape)

  def mlp_loss(p):
    h = jnp.tanh(jnp.asarray(inputs) @ p["w1"] + p["b1"])
    for layer in range(2):
      h = h + jnp.tanh(h @ p["stack"][layer])
    return jnp.mean((h @ p["w2"] - jnp.asarray(targets)) ** 2)

  def quad_rosen_loss(p):
    quad = 0.5 * jnp.sum(
        jnp.asarray(curvature) * (p["x"] - jnp.asarray(x_star)) ** 2)
    r0, r1 = p["r"][0], p["r"][1]
    return quad + jnp.sum((1 - r0) ** 2 + 5.0 * (r1 - r0**2) ** 2)

  def loss(p):
    return mlp_loss(p) + quad_rosen_loss(p)

  return params0, noise, loss, mlp_loss


PARAMS0, NOISE, LOSS, MLP_LOSS = _make_problem()


def _grad(params, noise):
  g = jax.grad(LOSS)(params)
  return {k: g[k] + noise[k] for k in g}


_grad_jit = jax.jit(_grad)


def _grad_np(params, k):
  """The gradient function fed to the NumPy reference (same as the library
  run's, step noise included)."""
  g = _grad_jit(params, {n: x[k] for n, x in NOISE.items()})
  return {n: np.asarray(x, np.float64) for n, x in g.items()}


def _reference_run(steps=STEPS, **kwargs):
  return ref.reference_run(PARAMS0, _grad_np, steps, **kwargs)


# XLA's backend optimisation level 0 compiles about a third faster; the
# arithmetic is the same up to float64 round-off (FMA contraction), far below
# the tolerance on these well-conditioned runs.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

_grad_batch = jax.jit(jax.vmap(_grad, in_axes=(0, None)))


def _library_runs(txs, steps=STEPS):
  """Final float64 parameters of each transformation after ``steps`` jitted
  updates.

  The transformations' updates are compiled together, once (the cost of these
  tests is compilation); the gradients of all of them come from one batched,
  shared gradient function, each from its own parameters.
  """
  n = len(txs)
  params = {k: jnp.asarray(np.broadcast_to(v, (n,) + v.shape))
            for k, v in PARAMS0.items()}
  states = [tx.init({k: v[i] for k, v in params.items()})
            for i, tx in enumerate(txs)]

  def step(params, states, grads):
    new_params, new_states = [], []
    for i, (tx, s) in enumerate(zip(txs, states)):
      p = {k: v[i] for k, v in params.items()}
      g = {k: v[i] for k, v in grads.items()}
      u, s = tx.update(g, s, p)
      for leaf in jax.tree.leaves((u, s)):  # float64 runs stay float64
        assert leaf.dtype in (jnp.float64, jnp.int32), leaf.dtype
      new_params.append(optax.apply_updates(p, u))
      new_states.append(s)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *new_params), new_states

  noise = [{k: v[i] for k, v in NOISE.items()} for i in range(steps)]
  grads = _grad_batch(params, noise[0])
  update = jax.jit(step).lower(params, states, grads).compile(
      COMPILER_OPTIONS)
  for k in range(steps):
    params, states = update(params, states, _grad_batch(params, noise[k]))
  return [{k: np.asarray(v[i]) for k, v in params.items()} for i in range(n)]


class _GroupedRuns:
  """Library results by configuration name, computed a group per compile on
  first use and cached. A configuration whose construction fails fails
  alone; if a group fails to run, its members are run one by one."""

  def __init__(self, builders, group_size=GROUP_SIZE):
    self._builders = builders
    names = list(builders)
    self._groups = [names[i:i + group_size]
                    for i in range(0, len(names), group_size)]
    self._group_of = {n: g for g in self._groups for n in g}
    self._results = {}

  def __getitem__(self, name):
    if name not in self._results:
      self._compute(self._group_of[name])
    result = self._results[name]
    if isinstance(result, Exception):
      raise result
    return result

  def _compute(self, group):
    txs = {}
    for name in group:
      try:
        txs[name] = self._builders[name]()
      except Exception as e:  # pylint: disable=broad-except
        self._results[name] = e
    try:
      outs = _library_runs(list(txs.values()))
      self._results.update(zip(txs, outs))
    except Exception:  # pylint: disable=broad-except
      for name, tx in txs.items():
        try:
          self._results[name] = _library_runs([tx])[0]
        except Exception as e:  # pylint: disable=broad-except
          self._results[name] = e


def _moved(final):
  """Largest parameter change relative to the leaf's scale."""
  return max(
      float(np.max(np.abs(final[k] - v))) / max(float(np.max(np.abs(v))), 1.0)
      for k, v in PARAMS0.items())


# ---------------------------------------------------------------------------
# configurations: keyword arguments shared by autosgm(...) and reference_run;
# raised-cosine windows are given as specs and built for each side.


class RC:
  """A raised-cosine window spec, built as the library's window block and
  as the NumPy reference's window function."""

  def __init__(self, length, **kwargs):
    self.length, self.kwargs = length, kwargs

  def library(self):
    return asgm.raised_cosine_window(self.length, **self.kwargs)

  def numpy(self):
    return ref.raised_cosine_np(self.length, **self.kwargs)

  def __repr__(self):
    return f"RC({self.length}, {self.kwargs})"


def _split(config):
  """(library kwargs, reference kwargs) of one configuration."""
  lib, npy = dict(config), dict(config)
  if callable(config.get("numerator_mask")):  # the reference takes the
    # bools the callable gives for these parameters
    npy["numerator_mask"] = config["numerator_mask"](PARAMS0)
  if isinstance(config.get("window"), RC):
    lib["window"] = config["window"].library()
    npy["window"] = config["window"].numpy()
  return lib, npy


NESTEROV = dict(beta=BETA, gamma=BETA / (1 + BETA), eta=1 + BETA)
C_RHO_ORIGINAL = (1 - BETA) / (1 - GAMMA)  # the original code's decay factor

# Arithmetic-only schedules (float literals, so a traced int32 count gives
# float64 under x64): one function serves jnp and the NumPy reference.
LR_SCHEDULE = lambda k: 0.01 / (1.0 + k / 60.0)
WD_SCHEDULE = lambda k: 0.05 * (1.0 - k / 600.0)
PLAIN_WINDOW = lambda k: 1.0 / (1.0 + 0.01 * k)


def _cfg(**kwargs):
  """The common filter (beta 0.9, gamma 0.5528) and learning rate 0.005.

  The learning rate is small enough that every run stays well-conditioned:
  a start perturbed by 1e-13 relative changes the reference's final
  parameters by less than 1e-9 (with 0.02, normalised steps bouncing in the
  network's valleys amplify round-off past 1e-6 in some configurations).
  """
  return {"learning_rate": 0.005, "beta": BETA, "gamma": GAMMA, **kwargs}


def _numerator_configs():
  configs = {"unity": _cfg()}
  for est in ("moment", "correlation", "robust_correlation"):
    configs[f"{est}-avg-smooth"] = _cfg(numerator=est)
    configs[f"{est}-avg-no_smooth"] = _cfg(
        numerator=est, numerator_smoothing=None, numerator_beta=0.99)
    configs[f"{est}-no_avg"] = _cfg(
        numerator=est, numerator_average=False, numerator_smoothing=None,
        **(dict(huber_k=1.0) if est == "robust_correlation" else {}))
    configs[f"{est}-keep0"] = _cfg(
        numerator=est, numerator_keep_axes=(0,), numerator_smoothing=0.5,
        moment_beta=0.99)
  return configs


CONFIGS = {
    # numerators, each with averaging and smoothing, without smoothing,
    # without averaging, keeping the leading axis
    **_numerator_configs(),
    # filter designs
    "gamma0-correlation": _cfg(gamma=0.0, numerator="correlation"),
    # numerator masks: some leaves on the unity numerator
    "correlation-mask-tree": _cfg(
        numerator="correlation", weight_decay=0.05,
        numerator_mask={"w1": True, "b1": False, "stack": True, "w2": False,
                        "x": True, "r": False}),
    "robust-mask-callable-no_avg": _cfg(
        numerator="robust_correlation", numerator_average=False,
        numerator_smoothing=None,
        numerator_mask=asgm.default_weight_decay_mask),
    "moment-mask-keep0": _cfg(
        numerator="moment", numerator_keep_axes=(0,),
        numerator_mask={"w1": False, "b1": True, "stack": True, "w2": True,
                        "x": False, "r": True}),
    "gamma-0.9-robust": _cfg(gamma=-0.9, numerator="robust_correlation"),
    "nag": dict(learning_rate=0.01, debias=False, denominator=False,
                **NESTEROV),
    "nesterov-correlation": dict(learning_rate=0.01, numerator="correlation",
                                 **NESTEROV),
    "pure_gain-sgd": _cfg(beta=0.0, gamma=0.0, denominator=False),
    "pure_gain-moment": _cfg(beta=0.0, gamma=0.0, numerator="moment",
                             numerator_beta=0.99),
    "beta0-gamma-0.5-correlation": _cfg(beta=0.0, gamma=-0.5,
                                        numerator="correlation"),
    "beta0.99-correlation": _cfg(beta=0.99, gamma=0.5,
                                 numerator="correlation"),
    "eta0.3-correlation": _cfg(eta=0.3, numerator="correlation"),
    "no_debias-robust": _cfg(debias=False, numerator="robust_correlation"),
    "phb": _cfg(learning_rate=0.005, gamma=0.0, eta=1.0, debias=False,
                denominator=False),
    "no_denominator-moment": _cfg(learning_rate=0.05, denominator=False,
                                  numerator="moment", numerator_beta=0.99),
    "no_denominator-correlation": _cfg(learning_rate=0.005, denominator=False,
                                       numerator="correlation"),
    "eps_root-correlation": _cfg(eps_root=1e-4, numerator="correlation"),
    "eps0-eps_root-robust": _cfg(eps=0.0, eps_root=1e-8,
                                 numerator="robust_correlation"),
    # windows
    "window-half-correlation": _cfg(numerator="correlation",
                                    window=RC(STEPS, floor=0.1)),
    "window-full-moment": _cfg(numerator="moment", numerator_beta=0.99,
                               window=RC(STEPS, full=True, floor=0.1)),
    "window-flat_top-correlation": _cfg(
        numerator="correlation", window=RC(STEPS, flat_top=0.3, floor=0.1)),
    "window-full-flat_top": _cfg(window=RC(STEPS, full=True, flat_top=0.25,
                                           floor=0.1)),
    "window-restarts-robust": _cfg(numerator="robust_correlation",
                                   window=RC(70, restarts=True, floor=0.1)),
    "window-order1-correlation": _cfg(numerator="correlation",
                                      window=RC(STEPS, order=1, floor=0.1)),
    "window-order3-unity": _cfg(window=RC(120, order=3, floor=0.1)),
    "window-float_length": _cfg(numerator="correlation",
                                window=RC(float(STEPS), full=True,
                                          flat_top=0.25, floor=0.1)),
    "window-lambda-correlation": _cfg(numerator="correlation",
                                      window=PLAIN_WINDOW),
    "window-number": _cfg(window=0.5),
    # weight decay and schedules
    "decoupled-correlation": _cfg(numerator="correlation", weight_decay=0.05),
    "decoupled-robust-original_factor": _cfg(
        numerator="robust_correlation", weight_decay=0.1,
        decay_factor=C_RHO_ORIGINAL),
    "coupled-moment": _cfg(weight_decay=0.05, decay="coupled",
                           numerator="moment", numerator_beta=0.99),
    "coupled-correlation-no_denominator": _cfg(
        learning_rate=0.005, weight_decay=0.05, decay="coupled",
        numerator="correlation", denominator=False),
    "lr_schedule-correlation": _cfg(learning_rate=LR_SCHEDULE,
                                    numerator="correlation"),
    "wd_schedule-robust": _cfg(numerator="robust_correlation",
                               weight_decay=WD_SCHEDULE),
    "wd_schedule-coupled": _cfg(weight_decay=WD_SCHEDULE, decay="coupled"),
    "everything": dict(
        learning_rate=LR_SCHEDULE, beta=BETA, gamma=-0.5, eta=0.2,
        moment_beta=0.99, eps=1e-6, eps_root=1e-10,
        numerator="robust_correlation", numerator_beta=0.995,
        numerator_smoothing=0.3, numerator_keep_axes=(0,), huber_k=2.0,
        window=RC(90, full=True, flat_top=0.2, restarts=True, order=3,
                  floor=0.05),
        weight_decay=WD_SCHEDULE, decay_factor=0.5),
}


# ---------------------------------------------------------------------------
# the blocks composed by hand: scale_by_autosgm(...) + scale_by_learning_rate


def _hand_composed(c):
  """The blocks of a configuration, put in their slots by hand."""
  filt = asgm.lowpass_filter(c.get("beta", 0.9), c.get("gamma", 0.0),
                             c.get("eta"), debias=c.get("debias", True))
  eps = c.get("eps", 1e-8)
  moment_beta = c.get("moment_beta", 0.999)
  den = asgm.moment_denominator(moment_beta, eps, c.get("eps_root", 0.0)) if (
      c.get("denominator", True)) else None
  rho = c.get("weight_decay", 0.0)
  if c.get("decay", "decoupled") == "coupled":
    dec = asgm.coupled_decay(rho)
  else:
    dec = asgm.decoupled_decay(rho, c.get("decay_factor", 1.0))
  est = c.get("numerator", "unity")
  num = None if est == "unity" else asgm.correlation_numerator(
      est, beta=c.get("numerator_beta", 0.9999), moment_beta=moment_beta,
      huber_k=c.get("huber_k", 4.0), average=c.get("numerator_average", True),
      smoothing=c.get("numerator_smoothing", 0.1),
      keep_axes=c.get("numerator_keep_axes", ()), eps=eps)
  # the slots in an order other than the one they run in
  core = asgm.scale_by_autosgm(numerator=num, window=c.get("window"),
                               decay=dec, denominator=den, filter=filt)
  return optax.chain(core, asgm.scale_by_learning_rate(c["learning_rate"]))


HAND = {
    "hand-correlation-window-decoupled": _cfg(
        numerator="correlation", window=RC(STEPS, floor=0.1),
        weight_decay=0.05),
    "hand-robust-keep0-coupled": _cfg(
        gamma=-0.9, numerator="robust_correlation", numerator_keep_axes=(0,),
        weight_decay=0.05, decay="coupled"),
    "hand-moment-no_avg-lr_schedule-window_schedule": _cfg(
        learning_rate=LR_SCHEDULE, numerator="moment",
        numerator_average=False, numerator_smoothing=None,
        numerator_beta=0.99, window=asgm.raised_cosine_schedule(
            100.0, full=True, restarts=True, floor=0.1)),
    "hand-nag-no_denominator-lambda_window": dict(
        learning_rate=0.01, debias=False, denominator=False,
        window=PLAIN_WINDOW, **NESTEROV),
    "hand-everything": CONFIGS["everything"],
}
# the reference's window for the schedule given to the library directly
HAND_REF_WINDOW = {
    "hand-moment-no_avg-lr_schedule-window_schedule": ref.raised_cosine_np(
        100, full=True, restarts=True, floor=0.1),
}

RUNS = _GroupedRuns({
    **{name: (lambda c=c: asgm.autosgm(**_split(c)[0]))
       for name, c in CONFIGS.items()},
    **{name: (lambda c=c: _hand_composed(_split(c)[0]))
       for name, c in HAND.items()},
})


def _check(name, config, ref_window=None):
  got = RUNS[name]
  ref_kwargs = _split(config)[1]
  if ref_window is not None:
    ref_kwargs["window"] = ref_window
  want = _reference_run(**ref_kwargs)
  assert all(np.all(np.isfinite(v)) for v in want.values())
  assert _moved(want) > 1e-3, "the run barely moved: a weak test"
  err = ref.relative_error(got, want)
  if err > TOL:
    # Tell a discrepancy from an ill-conditioned run: how far does the
    # reference itself move when its start is perturbed by 1e-13 relative?
    perturbed = {k: v * (1 + 1e-13) for k, v in PARAMS0.items()}
    self_err = ref.relative_error(
        ref.reference_run(perturbed, _grad_np, STEPS, **ref_kwargs), want)
    per_leaf = {k: ref.relative_error({k: got[k]}, {k: want[k]}) for k in want}
    pytest.fail(
        f"{name}: relative error {err:.3g} > {TOL:g} (per leaf: "
        + ", ".join(f"{k} {v:.2g}" for k, v in per_leaf.items())
        + f"); the reference's own sensitivity to a 1e-13 perturbation of "
        f"the start is {self_err:.2g}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_autosgm_matches_numpy_reference(enable_x64, name):
  _check(name, CONFIGS[name])


@pytest.mark.parametrize("name", list(HAND))
def test_hand_composed_blocks_match_numpy_reference(enable_x64, name):
  _check(name, HAND[name], HAND_REF_WINDOW.get(name))


# ---------------------------------------------------------------------------
# the window alone, and the measure's power to tell variants apart


WINDOW_CASES = [
    dict(), dict(floor=0.1), dict(order=1), dict(order=3), dict(full=True),
    dict(full=True, floor=0.2), dict(flat_top=0.3, floor=0.1),
    dict(full=True, flat_top=0.25), dict(restarts=True),
    dict(full=True, restarts=True, order=3, floor=0.05),
]


@pytest.mark.parametrize("length", [10, 37.0])
def test_raised_cosine_schedule_matches_numpy_window(enable_x64, length):
  """Count by count, in float64 (a float32 window perturbs a float64 run by
  about 1e-7 relative per step)."""
  counts = np.arange(3 * int(length) + 2)
  for kwargs in WINDOW_CASES:
    lib = asgm.raised_cosine_schedule(length, **kwargs)
    npy = ref.raised_cosine_np(length, **kwargs)
    got = np.asarray(jax.vmap(lib)(jnp.asarray(counts, jnp.int32)),
                     np.float64)
    want = np.array([npy(int(k)) for k in counts])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12,
                               err_msg=f"length={length!r} {kwargs}")


def test_comparison_detects_numerator_seeing_decay(enable_x64):
  """docs/algorithm.md, section 4: feeding the decayed direction to the
  numerator (the
  original code's variant) is a different algorithm; the measure sees it."""
  config = CONFIGS["decoupled-correlation"]
  got = RUNS["decoupled-correlation"]
  assert ref.relative_error(got, _reference_run(**config)) <= TOL
  wrong = _reference_run(numerator_sees_decay=True, **config)
  assert ref.relative_error(got, wrong) > 10 * TOL


def test_comparison_detects_an_ignored_or_inverted_mask(enable_x64):
  """The masked leaves really take a = 1: the reference without the mask,
  or with it inverted, is far from the library's masked run."""
  config = CONFIGS["correlation-mask-tree"]
  got = RUNS["correlation-mask-tree"]
  assert ref.relative_error(got, _reference_run(**config)) <= TOL
  unmasked = dict(config, numerator_mask=None)
  assert ref.relative_error(got, _reference_run(**unmasked)) > 10 * TOL
  inverted = dict(config, numerator_mask={
      k: not v for k, v in config["numerator_mask"].items()})
  assert ref.relative_error(got, _reference_run(**inverted)) > 10 * TOL


def test_comparison_detects_a_different_zero(enable_x64):
  """A zero moved by 1e-4 is far beyond round-off."""
  config = dict(CONFIGS["gamma0-correlation"])
  got = RUNS["gamma0-correlation"]
  config["gamma"] = 1e-4
  assert ref.relative_error(got, _reference_run(**config)) > 10 * TOL


# ---------------------------------------------------------------------------
# zero-initialised parameters and zero gradients


def test_zero_initialised_bias_trains_under_correlation_numerator(enable_x64):
  """docs/algorithm.md, section 4: with w = 0 the correlation estimators
  would give a = 0
  for ever; the escape w + eps lets a zero bias train."""
  assert not np.any(PARAMS0["b1"])
  final = RUNS["correlation-avg-smooth"]  # default numerator options
  b1 = final["b1"]
  assert np.all(np.isfinite(b1))
  # far beyond the escape constant (eps = 1e-8): the bias really trains
  assert np.max(np.abs(b1)) > 1e-2, b1
  assert np.min(np.abs(b1)) > 1e-4, b1
  start = {k: jnp.asarray(v) for k, v in PARAMS0.items()}
  end = {k: jnp.asarray(v) for k, v in final.items()}
  assert float(MLP_LOSS(end)) < 0.5 * float(MLP_LOSS(start))


ZERO_CASES = [
    dict(),
    dict(gamma=GAMMA, denominator=False, debias=False, weight_decay=0.1,
         numerator_keep_axes=(0,)),
    dict(beta=0.0, gamma=0.0, eps=0.0, eps_root=1e-8,  # escape 1e-10
         weight_decay=0.1, decay="coupled", numerator_average=False,
         numerator_smoothing=None),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("numerator", list(ref.NUMERATORS))
def test_zero_gradients_and_zero_parameters_give_finite_updates(
    request, numerator, dtype):
  if dtype == "float64":
    request.getfixturevalue("enable_x64")
  dt = jnp.dtype(dtype)
  params = {"w": jnp.zeros((3, 4), dt), "s": jnp.zeros((), dt)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  for case in ZERO_CASES:
    tx = asgm.autosgm(0.1, numerator=numerator, **case)
    state = tx.init(params)
    p = params
    for _ in range(2):  # eager: a handful of steps needs no compilation
      u, state = tx.update(zeros, state, p)
      for k, v in u.items():
        assert v.dtype == dt, (case, k, v.dtype)
        assert np.all(np.isfinite(np.asarray(v))), (numerator, case, k, v)
      p = optax.apply_updates(p, u)
    # a zero gradient at zero moves nothing, in the reference too
    want = ref.reference_run(
        {k: np.zeros(v.shape) for k, v in params.items()},
        lambda w, k: {n: np.zeros_like(x) for n, x in w.items()}, 2,
        learning_rate=0.1, numerator=numerator, **case)
    for k, v in want.items():
      assert np.all(v == 0)
      np.testing.assert_array_equal(np.asarray(p[k]), 0.0, err_msg=str(case))
