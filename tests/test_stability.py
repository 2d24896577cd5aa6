"""Stability of the learning dynamics (docs/algorithm.md, section 9): the
conditions of a
configuration, and the check of a recorded history (constructed histories
with known findings, a diverging run, and a stable run with a warm-up)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax.analysis import Finding
from autosgm_optax.analysis import check_stability
from autosgm_optax.analysis import stability_conditions
from autosgm_optax.analysis._history import history_table
from conftest import PROBLEMS

BETA = 0.9
LEAVES = ("a", "b")


# ---------------------------------------------------------------------------
# stability_conditions


def test_annealing_window_is_bibo_and_exponentially_stable():
  c = stability_conditions(BETA, learning_rate=1e-3,
                           window=asgm.raised_cosine_window(50), horizon=50)
  assert c.beta_ok and c.learning_rate_ok and c.window_ok
  assert c.bibo and c.stable and c.anneals and c.exponential
  assert c.rate_sup == pytest.approx(1e-3)
  assert c.rate_final == 0.0 and c.window_range == (0.0, 1.0)
  assert c.warmup_steps == 0 and c.schedule_margin is None
  text = str(c)
  assert text == c.explain()
  assert "BIBO stable (beta < 1 and sup alpha < inf): yes" in text
  assert "exponentially stable (BIBO and annealed): yes" in text
  assert "a cosine window keeps r near 1" in text


def test_constant_rate_is_bibo_only():
  c = stability_conditions(BETA, learning_rate=1e-3)
  assert c.bibo and not c.anneals and not c.exponential
  assert c.horizon is None and c.rate_final == pytest.approx(1e-3)
  assert "anneal the window or the learning rate" in c.explain()
  # a floor keeps alpha away from 0; restarts bring F back to 1
  for window in (asgm.raised_cosine_window(20, floor=0.1),
                 asgm.raised_cosine_window(10, restarts=True)):
    c = stability_conditions(BETA, window=window, horizon=20)
    assert c.bibo and not c.anneals and not c.exponential


def test_warm_up_schedule_is_reported_apart():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 100)
  c = stability_conditions(BETA, learning_rate=schedule, horizon=100)
  assert c.bibo and c.anneals and c.exponential
  assert c.warmup_steps == 9  # counts 2..10 (mu(0) = 0 makes count 1's
  #                             ratio undefined)
  assert c.schedule_margin == pytest.approx(BETA * 2.0)  # mu(2) / mu(1)
  assert "warm-up" in c.explain() and "r(2) is undefined" in c.explain()
  full = stability_conditions(BETA, window=asgm.raised_cosine_window(
      40, full=True), horizon=40)
  assert full.exponential and full.warmup_steps > 0


@pytest.mark.parametrize("case", ["beta_one", "beta_negative",
                                  "negative_window", "window_above_one",
                                  "infinite_rate"])
def test_violated_conditions(case):
  kwargs = {
      "beta_one": dict(beta=1.0),
      "beta_negative": dict(beta=-0.1),
      # the original's epoch-unit defect: F goes negative (gradient ascent)
      "negative_window": dict(beta=BETA, window=lambda c: 1.0 - c / 10.0),
      "window_above_one": dict(beta=BETA, window=1.5),
      "infinite_rate": dict(beta=BETA, learning_rate=lambda c: jnp.where(
          c > 5, jnp.inf, 1e-3)),
  }[case]
  c = stability_conditions(horizon=20, **kwargs)
  assert c.bibo is False and c.exponential is False
  which = {"beta_one": "beta_ok", "beta_negative": "beta_ok",
           "negative_window": "window_ok", "window_above_one": "window_ok",
           "infinite_rate": "learning_rate_ok"}[case]
  assert getattr(c, which) is False
  assert "NO" in c.explain()
  if case == "negative_window":
    assert "gradient ascent" in c.explain()


def test_schedules_need_a_horizon():
  c = stability_conditions(BETA, window=asgm.raised_cosine_window(10))
  assert c.bibo is None and c.anneals is None and c.window_ok is None
  assert "pass horizon" in c.explain() and "unknown" in c.explain()
  assert stability_conditions(1.0, learning_rate=lambda c: 1.0).bibo is False


def test_window_block_schedule_and_number_agree():
  block = stability_conditions(BETA, window=asgm.raised_cosine_window(
      30, floor=0.2), horizon=30)
  schedule = stability_conditions(BETA, window=asgm.raised_cosine_schedule(
      30, floor=0.2), horizon=30)
  assert block.window_range == pytest.approx(schedule.window_range)
  assert block.rate_final == pytest.approx(0.2)
  assert schedule.rate_final == pytest.approx(0.2)
  assert stability_conditions(BETA, window=0.5).rate_sup == 0.5


def test_conditions_reject_bad_arguments():
  with pytest.raises(ValueError, match="horizon"):
    stability_conditions(BETA, horizon=0)
  with pytest.raises(TypeError, match="horizon"):
    stability_conditions(BETA, horizon=2.5)
  with pytest.raises(TypeError, match="not a window"):
    stability_conditions(BETA, window=asgm.lowpass_filter(0.9), horizon=5)
  with pytest.raises(ValueError, match="scalar"):
    stability_conditions(BETA, window=lambda c: jnp.ones(2), horizon=5)


# ---------------------------------------------------------------------------
# check_stability on constructed histories


def _summary(values):
  return asgm.Summary(
      sup={k: np.float32(abs(v)) for k, v in values.items()},
      mean={k: np.float32(v) for k, v in values.items()},
      std={k: np.float32(0.0) for k in values})


def _history(alpha, level="summary", beta=BETA, e=None):
  """Dynamics from alpha[t][leaf]; r = alpha(t) / alpha(t-1)."""
  history = []
  prev = {k: 0.0 for k in LEAVES}
  for t, a in enumerate(alpha):
    r = {k: a[k] / prev[k] if prev[k] > 0 else 0.0 for k in LEAVES}
    ek = {k: 1.0 for k in LEAVES} if e is None else e[t]
    dw = {k: a[k] * ek[k] for k in LEAVES}
    margin = {k: beta * abs(r[k]) for k in LEAVES}
    if level == "summary":
      fields = {n: _summary(v) for n, v in
                dict(alpha=a, r=r, margin=margin, e=ek, dw=dw).items()}
    else:  # three elements per leaf, the first carries the value
      vec = lambda v: {k: np.array([v[k], 0.5 * v[k], 0.0], np.float32)
                       for k in LEAVES}
      fields = {n: vec(v) for n, v in
                dict(alpha=a, r=r, margin=margin, e=ek, dw=dw).items()}
    history.append(asgm.Dynamics(
        r_undefined={k: int(prev[k] == 0) for k in LEAVES},
        beta=np.float32(beta), eta=np.float32(1 - beta), **fields))
    prev = a
  return history


def _constant(n, value=1e-2):
  return [{k: value for k in LEAVES} for _ in range(n)]


@pytest.mark.parametrize("level", ["summary", "element"])
def test_constant_alpha_is_stable_and_contractive(level):
  report = check_stability(_history(_constant(30), level))
  assert report.stable and report.contractive
  assert (report.margin, report.growth, report.alpha, report.divergence,
          report.warmup) == ([], [], [], [], [])
  assert report.leaves == ("['a']", "['b']") and report.level == level
  assert report.steps == (1, 30) and report.beta == pytest.approx(BETA)
  assert report.max_margin["['a']"].value == pytest.approx(BETA)
  assert "stable, contractive at every step" in str(report)


@pytest.mark.parametrize("level", ["summary", "element"])
def test_isolated_margin_is_a_transient_not_instability(level):
  alpha = _constant(30)
  alpha[9] = {"a": 2e-2, "b": 1e-2}  # r(10) = 2, r(11) = 0.5 for leaf a
  report = check_stability(_history(alpha, level))
  assert report.margin == [Finding(10, "['a']", pytest.approx(1.8))]
  assert report.stable and not report.contractive
  assert report.growth == [] and report.warmup == []
  assert report.max_margin["['a']"] == (10, "['a']", pytest.approx(1.8))
  assert "transient expansions): 1" in report.explain()


@pytest.mark.parametrize("level", ["summary", "element"])
def test_sustained_growth_of_alpha_is_flagged(level):
  # leaf b: alpha grows 1.25x per step from step 11: margin 1.125 > 1
  alpha = [{"a": 1e-2, "b": 1e-2 * 1.25 ** max(0, t - 10)}
           for t in range(1, 41)]
  report = check_stability(_history(alpha, level))
  assert not report.stable and not report.contractive
  assert {f.leaf for f in report.margin} == {"['b']"}
  assert [f.step for f in report.margin] == list(range(11, 41))
  # the memory gain 1.125^n passes 10 after 20 steps of growth
  first = math.ceil(math.log(10) / math.log(1.125))
  assert [f.step for f in report.growth] == list(range(10 + first, 41))
  assert report.growth[0].value == pytest.approx(1.125 ** first, rel=1e-5)
  assert report.alpha == [] and report.divergence == []
  assert "UNSTABLE" in str(report)
  # the same growth, declared as mu F (a warm-up): not instability
  rates = [a["b"] for a in alpha]
  warm = check_stability(_history(alpha, level), rates=rates)
  assert warm.stable and warm.contractive and warm.margin == []
  assert [f.step for f in warm.warmup] == list(range(11, 41))
  assert all(f.leaf == "['b']" for f in warm.warmup)
  assert warm.warmup[0].value == pytest.approx(1.25)


def test_slow_growth_is_absorbed_by_the_pole():
  """alpha growing 1.05x per step (< 1/beta) for 200 steps: 17,000x, yet
  beta r = 0.945 < 1 at every step."""
  alpha = [{"a": 1e-6 * 1.05 ** t, "b": 1e-2} for t in range(200)]
  report = check_stability(_history(alpha))
  assert report.stable and report.contractive


@pytest.mark.parametrize("level", ["summary", "element"])
def test_non_finite_alpha_and_diverging_input(level):
  alpha = _constant(30)
  alpha[20] = {"a": math.inf, "b": 1e-2}
  e = [{"a": 1.0, "b": 1.0 if t < 15 else 10.0 ** (t - 12)}
       for t in range(30)]
  report = check_stability(_history(alpha, level, e=e),
                           alpha_bound=1.0, divergence_bound=1e3)
  assert not report.stable
  assert report.alpha == [Finding(21, "['a']", math.inf)]
  # e(t) = 10^(t-13) at update t: above 1000x its start from update 17;
  # dw = alpha e is infinite at update 21 for leaf a
  assert [(f.step, f.leaf) for f in report.divergence] == sorted(
      [(21, "['a']")] + [(t, "['b']") for t in range(17, 31)])
  assert report.divergence[0].value == pytest.approx(1e4, rel=1e-5)
  # alpha_bound flags a finite alpha too
  bounded = check_stability(_history(_constant(5, 0.5)), alpha_bound=0.1)
  assert [f.step for f in bounded.alpha if f.leaf == "['a']"] == [1, 2, 3, 4,
                                                                   5]


def test_first_step_and_schedule_rates_match_the_full_history():
  schedule = optax.linear_schedule(1e-3, 1e-2, 20)  # a linear warm-up
  alpha = [{"a": float(schedule(t)), "b": float(schedule(t)) * 3}
           for t in range(30)]
  history = _history(alpha)
  full = check_stability(history, rates=schedule)
  tail = check_stability(history[10:], rates=schedule, first_step=11)
  assert full.stable and full.contractive and tail.steps == (11, 30)
  # the rises of counts 1..20: updates 2..21
  assert sorted({f.step for f in full.warmup}) == list(range(2, 22))
  assert [f for f in full.warmup if f.step >= 11] == tail.warmup
  values = [schedule(t) for t in range(30)]
  assert check_stability(history, rates=values).warmup == full.warmup
  # a sequence holds no rate before its first step: that step is not excused
  tail_sequence = check_stability(history[10:], rates=values[10:],
                                  first_step=11)
  assert tail_sequence.warmup == [f for f in tail.warmup if f.step > 11]
  assert 11 in {f.step for f in tail.warmup}


def test_check_rejects_bad_histories():
  with pytest.raises(ValueError, match="empty"):
    check_stability([])
  history = _history(_constant(3))
  mixed = history[:2] + _history(_constant(1), "element")
  with pytest.raises(ValueError, match="one level"):
    check_stability(mixed)
  with pytest.raises(ValueError, match="rates has 2 values"):
    check_stability(history, rates=[1.0, 1.0])
  with pytest.raises(ValueError, match="margin_bound"):
    check_stability(history, margin_bound=0)
  with pytest.raises(ValueError, match="statistic"):
    history_table(history, "alpha", "median")


# ---------------------------------------------------------------------------
# check_stability on recorded training runs


def _record(lr, problem, steps, level="summary", **config):
  params, loss = PROBLEMS[problem]()
  tx = asgm.autosgm(lr, diagnostics=level, **config)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  history, rates = [], []
  for _ in range(steps):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
    history.append(asgm.learning_dynamics(state)[""])
    rates.append(asgm.effective_learning_rate(state))
  return history, rates


def test_huge_learning_rate_diverges_and_is_flagged():
  """Heavy ball (no denominator) with mu = 1 on the quadratic: the filter's
  conditions hold (beta r < 1 at every step) but the loop through the loss
  diverges; the input e grows without bound."""
  history, rates = _record(1.0, "quadratic", 60, denominator=False)
  report = check_stability(history, rates=rates)
  assert not report.stable
  assert report.margin == [] and report.growth == []
  assert {f.leaf for f in report.divergence} == {"['s']", "['x']"}
  assert report.divergence[0].step < 30
  assert "input e grown above 1000x" in report.explain()
  small, small_rates = _record(1e-2, "quadratic", 60, denominator=False)
  assert check_stability(small, rates=small_rates).contractive


def test_exploding_learning_rate_is_flagged():
  """mu(t) = 1e-4 * 1.3^t: beta r = 1.17 at every step, alpha -> inf."""
  history, _ = _record(lambda count: 1e-4 * 1.3 ** count, "quadratic", 40)
  report = check_stability(history)
  assert not report.stable and report.growth
  assert len(report.margin) > 50  # most steps of both leaves
  assert stability_conditions(
      BETA, learning_rate=lambda count: 1e-4 * 1.3 ** count,
      horizon=40).rate_sup > 1.0


@pytest.mark.parametrize("level", ["summary", "element"])
def test_full_window_warm_up_is_not_instability(level):
  """A full raised-cosine window: F rises from 0, then anneals to 0."""
  steps = 60
  history, rates = _record(1e-2, "mlp", steps, level, gamma=0.5528,
                           window=asgm.raised_cosine_window(steps, full=True))
  report = check_stability(history, rates=rates)
  assert report.stable and report.contractive, report
  assert report.margin == [] and report.growth == []
  warm_steps = {f.step for f in report.warmup}
  assert warm_steps and max(warm_steps) <= steps // 2 + 1
  assert min(warm_steps) == 3  # r(2) is undefined: F(0) = 0
  # alpha and r anneal: r near 1 in the middle, dropping at the end
  _, r = history_table(history, "r")
  assert np.all(np.abs(r[steps // 2 - 3: steps // 2 + 3] - 1) < 0.1)
  assert np.all(r[-1] < 0.5)
  # without rates the warm-up's first steps expand the memory
  blind = check_stability(history)
  assert not blind.contractive and blind.warmup == []
  assert min(f.step for f in blind.margin) == 3


def test_warmup_cosine_schedule_as_rates():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 50)
  history, _ = _record(schedule, "mlp", 50)
  report = check_stability(history, rates=schedule)
  assert report.stable and report.contractive
  assert {f.step for f in report.warmup} <= set(range(3, 12))
  assert len({f.step for f in report.warmup}) >= 8


# ---------------------------------------------------------------------------
# errors surface; the vectorised check equals a step-by-step one


def test_errors_surface_instead_of_being_hidden():
  history = _history(_constant(4))
  # a leaf missing from one entry: named, not a NumPy or tree error
  broken = list(history)
  broken[2] = broken[2]._replace(alpha=_summary({"a": 1e-2}))
  with pytest.raises(ValueError, match=r"alpha.sup of history entry 2 has "
                     r"the leaves \[\"\['a'\]\"\]"):
    check_stability(broken)
  # a leaf that changes shape over an element-level history
  element = _history(_constant(4), "element")
  element[1] = element[1]._replace(
      r={"a": np.zeros(5, np.float32), "b": element[1].r["b"]})
  with pytest.raises(ValueError, match=r"leaf \['a'\] of r changes shape"):
    check_stability(element)
  # a schedule that fails for another reason than Python control flow on
  # the count raises its own error, once: it is not retried count by count
  # (which would hide the bug behind the values of the retry)
  calls = []

  def buggy(count):
    calls.append(count)
    if not isinstance(count, int):  # traced: the bug
      raise RuntimeError("a bug in the schedule")
    return 1e-3

  with pytest.raises(RuntimeError, match="a bug in the schedule"):
    check_stability(history, rates=buggy)
  with pytest.raises(RuntimeError, match="a bug in the schedule"):
    stability_conditions(BETA, learning_rate=buggy, horizon=5)
  assert len(calls) == 2
  # Python control flow on the count is evaluated count by count
  stepped = stability_conditions(
      BETA, learning_rate=lambda c: 1e-3 if c < 5 else 1e-4, horizon=10)
  assert stepped.rate_sup == 1e-3 and stepped.rate_final == 1e-4


def _random_history(rng, level, n):
  """Random Dynamics with gaps, zeros, NaN and inf among the values."""
  shapes = {"a": (3,), "b": (2, 2), "c": ()}
  history, step = [], 0
  for _ in range(n):
    step += int(rng.choice([1, 1, 1, 2]))

    def values(scale):
      out = {}
      for k, shape in shapes.items():
        x = np.abs(rng.lognormal(0.0, 0.3, shape)) * scale
        odd = rng.random(shape) < 0.03
        x = np.where(odd, rng.choice([0.0, np.nan, np.inf], shape), x)
        out[k] = np.asarray(x, np.float32)
      return out

    fields = dict(alpha=values(1e-2), r=values(1.05), e=values(1.0),
                  dw=values(1e-2))
    fields["margin"] = {k: np.float32(BETA) * np.abs(v)
                        for k, v in fields["r"].items()}
    if level == "summary":
      with np.errstate(invalid="ignore"):  # the std of inf
        fields = {name: asgm.Summary(
            sup={k: np.float32(np.max(np.abs(v))) for k, v in tree.items()},
            mean={k: np.float32(np.mean(v)) for k, v in tree.items()},
            std={k: np.float32(np.std(v)) for k, v in tree.items()})
                  for name, tree in fields.items()}
    history.append(asgm.Dynamics(
        r_undefined={k: 0 for k in shapes}, beta=np.float32(BETA),
        eta=np.float32(1 - BETA), step=np.int32(step), recorded=True,
        **fields))
  return history


def _reference_check(history, rates, bounds):
  """check_stability's findings, one step and one leaf at a time."""
  leaves = ["['a']", "['b']", "['c']"]
  keys = ["a", "b", "c"]
  level = history[0].level
  sup = lambda d, field, k: (
      float(getattr(d, field).sup[k]) if level == "summary" else
      float(np.max(np.abs(np.asarray(getattr(d, field)[k], np.float64)))))
  steps = [int(d.step) for d in history]
  found = {kind: [] for kind in ("margin", "growth", "alpha", "divergence",
                                 "warmup")}
  reference = {}
  for k in keys:
    good = [sup(d, "e", k) for d in history]
    good = [x for x in good if math.isfinite(x) and x > 0]
    reference[k] = max(good[:bounds["reference_steps"]]) if good else None
  log_gain = {}
  for i, d in enumerate(history):
    consecutive = i > 0 and steps[i] - steps[i - 1] == 1
    excuse = 1.0
    if rates is not None and consecutive:
      ratio = rates[i] / rates[i - 1]
      excuse = ratio if math.isfinite(ratio) and ratio > 1 else 1.0
    for j, k in enumerate(keys):
      t, leaf = steps[i], leaves[j]
      r = sup(d, "r", k)
      m = sup(d, "margin", k) if level == "summary" else float(d.beta) * r
      if not m / excuse <= bounds["margin_bound"]:
        found["margin"].append(Finding(t, leaf, m))
      elif r > 1 and excuse > 1:
        found["warmup"].append(Finding(t, leaf, r))
      # the memory gain, per element at the element level
      ms = ([m] if level == "summary" else
            [abs(float(x)) for x in np.ravel(d.margin[k])])
      prev = log_gain.get(k) if consecutive else None
      with np.errstate(divide="ignore", invalid="ignore"):
        now = [np.fmax(0.0, (0.0 if prev is None else prev[e]) + np.log(x)
                       - np.log(excuse)) for e, x in enumerate(ms)]
      log_gain[k] = now
      gain = float(np.exp(max(now))) if level == "summary" else math.exp(
          min(max(now), 700.0))
      if gain > bounds["growth_bound"]:
        found["growth"].append(Finding(t, leaf, gain))
      a = sup(d, "alpha", k)
      if not (math.isfinite(a) and a <= bounds["alpha_bound"]):
        found["alpha"].append(Finding(t, leaf, a))
      e, dw = sup(d, "e", k), sup(d, "dw", k)
      if not (math.isfinite(e) and math.isfinite(dw)):
        found["divergence"].append(
            Finding(t, leaf, e if not math.isfinite(e) else dw))
      elif reference[k] is not None and (
          e > bounds["divergence_bound"] * reference[k]):
        found["divergence"].append(Finding(t, leaf, e / reference[k]))
  return found


@pytest.mark.parametrize("level", ["summary", "element"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_check_equals_a_step_by_step_reference(level, seed):
  rng = np.random.default_rng(seed)
  history = _random_history(rng, level, 60)
  rates = (None if seed == 0 else
           list(1e-2 * np.exp(np.cumsum(rng.normal(0.0, 0.1, 60)))))
  bounds = dict(margin_bound=1.0, growth_bound=1.5, alpha_bound=0.02,
                divergence_bound=1.5, reference_steps=5)
  report = check_stability(history, rates=rates, **bounds)
  expected = _reference_check(history, rates, bounds)
  for kind, findings in expected.items():
    got = getattr(report, kind)
    assert [(f.step, f.leaf) for f in got] == [
        (f.step, f.leaf) for f in findings], kind
    np.testing.assert_allclose([f.value for f in got],
                               [f.value for f in findings], rtol=1e-12,
                               err_msg=kind)
  assert all(expected[kind] for kind in ("margin", "growth", "divergence"))
  assert report.stable is False and report.contractive is False
