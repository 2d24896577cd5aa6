"""The summary level on every k-th update (``diagnostics_every``): the same
record as on every update, NaN between records, the update unchanged bit for
bit, no added per-element state but the history, no copies, and histories
with gaps in the stability check and the plot."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax.analysis import check_stability
from conftest import PROBLEMS, relative_error

STEPS = 12
EVERY = 3
CONFIGS = {
    # no numerator (one program over the tree), no history
    "adam": dict(),
    # the filter's zero and decoupled decay: a history; a numerator: leaf by
    # leaf on one CPU device
    "full": dict(gamma=0.5528, numerator="correlation", weight_decay=0.05,
                 window=asgm.raised_cosine_window(STEPS, full=True,
                                                  floor=0.0)),
    "coupled_moment_no_average": dict(
        gamma=0.3, weight_decay=0.02, decay="coupled", numerator="moment",
        numerator_average=False, numerator_smoothing=None),
    "robust_no_denominator_no_debias": dict(
        numerator="robust_correlation", denominator=False, debias=False,
        gamma=0.2, weight_decay=0.01, decay_factor=0.5),
}


def _trajectory(tx, steps=STEPS, problem="mlp", diagnostics=True):
  """Parameters and learning_dynamics (or None, for an optimizer without
  diagnostics) after each of ``steps`` jitted updates, on the same data."""
  params, loss = PROBLEMS[problem]()
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  out = []
  for _ in range(steps):
    params, state = step(params, state)
    dyn = asgm.learning_dynamics(state)[""] if diagnostics else None
    out.append((params, None if dyn is None else jax.tree.map(np.asarray,
                                                              dyn)))
  return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_k_records_what_every_update_records(name):
  config = CONFIGS[name]
  plain = _trajectory(asgm.autosgm(1e-2, **config), diagnostics=False)
  every = _trajectory(asgm.autosgm(1e-2, diagnostics="summary", **config))
  sparse = _trajectory(asgm.autosgm(1e-2, diagnostics="summary",
                                    diagnostics_every=EVERY, **config))
  for t, ((p0, _), (p1, d1), (pk, dk)) in enumerate(
      zip(plain, every, sparse), start=1):
    # the diagnostics do not change the update, recorded on every update or
    # every k-th: bit for bit
    for a, b, c in zip(jax.tree.leaves(p0), jax.tree.leaves(p1),
                       jax.tree.leaves(pk)):
      np.testing.assert_array_equal(a, b)
      np.testing.assert_array_equal(a, c)
    assert bool(d1.recorded) and int(d1.step) == t
    if t % EVERY:
      assert not bool(dk.recorded) and int(dk.step) == t - t % EVERY
      for field in ("alpha", "r", "margin", "e", "dw"):
        assert all(np.isnan(x) for x in jax.tree.leaves(getattr(dk, field)))
      continue
    assert bool(dk.recorded) and int(dk.step) == t
    # r(t) from alpha(t-1) rebuilt from the blocks' states equals r(t) from
    # the kept alpha(t-1); e(t) from the history kept one update ahead
    # (to float32 round-off of the elements: the std of r, about 3e-5
    # around r = 1, moves with 1-ulp changes of r)
    for field in ("alpha", "r", "margin", "e", "dw"):
      got, want = getattr(dk, field), getattr(d1, field)
      for sup_k, sup_1, x, y in zip(
          jax.tree.leaves(got.sup), jax.tree.leaves(want.sup),
          jax.tree.leaves((got.mean, got.std)),
          jax.tree.leaves((want.mean, want.std))):
        np.testing.assert_allclose(sup_k, sup_1, rtol=2e-5)
      for x, y, scale in zip(jax.tree.leaves((got.mean, got.std)),
                             jax.tree.leaves((want.mean, want.std)),
                             2 * jax.tree.leaves(want.sup)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6 * scale,
                                   err_msg=f"{name} {field} t={t}")
    assert jax.tree.map(int, dk.r_undefined) == jax.tree.map(
        int, d1.r_undefined)
    np.testing.assert_array_equal(dk.beta, d1.beta)
    np.testing.assert_array_equal(dk.eta, d1.eta)


def test_window_at_zero_is_flagged_at_a_record():
  # F(0) = 0 for a full window with floor 0: alpha(1) = 0, so r(2) is
  # undefined everywhere; recording every 2nd update sees it at t = 2.
  config = dict(window=asgm.raised_cosine_window(STEPS, full=True, floor=0.0))
  params, _ = PROBLEMS["mlp"]()
  sparse = _trajectory(asgm.autosgm(1e-2, diagnostics="summary",
                                    diagnostics_every=2, **config), steps=4)
  dyn = sparse[1][1]
  assert bool(dyn.recorded) and int(dyn.step) == 2
  for count, leaf in zip(jax.tree.leaves(dyn.r_undefined),
                         jax.tree.leaves(params)):
    assert int(count) == leaf.size
  assert all(float(x) == 0 for x in jax.tree.leaves(dyn.r.sup))
  later = sparse[3][1]  # alpha(3) > 0: defined again
  assert all(int(c) == 0 for c in jax.tree.leaves(later.r_undefined))


def _entry_text(tx, params):
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, state, grads).compile()
  text = compiled.as_text()
  return state, text[text.index("ENTRY"):]


@pytest.mark.parametrize("config", [CONFIGS["full"], CONFIGS["adam"]])
def test_state_and_compiled_step(config):
  params = {"w": jnp.ones((64, 32)), "v": jnp.ones((48, 16)),
            "b": jnp.zeros(32)}
  sizes = {int(np.prod(p.shape)) for p in jax.tree.leaves(params)}
  state, entry = _entry_text(asgm.autosgm(
      1e-2, diagnostics="summary", diagnostics_every=10, **config), params)
  diag = state[0].diagnostics
  # no alpha(t-1) buffer; the history only where e(t) needs one
  assert diag.alpha_prev is None
  history = config.get("gamma", 0) != 0 or config.get("weight_decay", 0) > 0
  assert (diag.input_prev is not None) == history
  # XLA copies no parameter-sized buffer around the conditionals
  copied = [line for line in entry.splitlines()
            if " copy(" in line and _elements(line) in sizes]
  assert not copied, copied
  # a record and a history conditional per part: a leaf when the
  # configuration runs leaf by leaf (a numerator, one CPU device), else one
  # part for the tree
  parts = len(params) if "numerator" in config else 1
  assert entry.count("conditional(") == (2 if history else 1) * parts


def _elements(line):
  shape = re.search(r"= f32\[([\d,]*)\]", line)
  if shape is None:
    return 0
  dims = [int(x) for x in shape.group(1).split(",") if x]
  return int(np.prod(dims)) if dims else 1


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(diagnostics="summary", diagnostics_every=0), ValueError,
     "diagnostics_every=0 must be an int >= 1"),
    (dict(diagnostics="summary", diagnostics_every=2.0), TypeError,
     "diagnostics_every=2.0 must be an int >= 1"),
    (dict(diagnostics="summary", diagnostics_every=True), TypeError,
     "diagnostics_every=True"),
    (dict(diagnostics="element", diagnostics_every=2), ValueError,
     "needs diagnostics=\"summary\""),
    (dict(diagnostics_every=5), ValueError, "needs diagnostics=\"summary\""),
])
def test_bad_every_is_refused_at_build(kwargs, error, words):
  with pytest.raises(error, match=re.escape(words)):
    asgm.autosgm(1e-2, **kwargs)


def test_injected_every_changes_without_recompiling():
  params, loss = PROBLEMS["quadratic"]()
  tx = optax.inject_hyperparams(asgm.autosgm)(
      1e-2, gamma=0.5, weight_decay=1e-2, diagnostics="summary",
      diagnostics_every=2)
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(None)
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  recorded = []
  for t in range(1, 10):
    if t == 5:  # from update 5 on, every 3rd
      hp = state.hyperparams
      hp["diagnostics_every"] = jnp.full_like(hp["diagnostics_every"], 3)
    params, state = step(params, state)
    (dyn,) = asgm.learning_dynamics(state).values()
    recorded.append(bool(dyn.recorded))
  assert len(traces) == 1
  assert recorded == [t % 2 == 0 if t < 5 else t % 3 == 0
                      for t in range(1, 10)]


def _quadratic_history(tx, calls):
  """``learning_dynamics`` and ``mu F`` after each of ``calls`` updates of
  ``tx`` on a 4-parameter quadratic."""
  params = {"w": jnp.zeros(4)}
  loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
  state, history, rates = tx.init(params), [], []
  for _ in range(calls):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
    (dyn,) = asgm.learning_dynamics(state).values()
    history.append(dyn)
    rates.append(float(asgm.effective_learning_rate(state)))
  return history, rates


def test_stability_and_plot_read_a_history_with_gaps():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 40)
  histories = {}
  for every in (1, 4):
    histories[every], _ = _quadratic_history(
        asgm.autosgm(schedule, diagnostics="summary",
                     diagnostics_every=every), 40)
  full = check_stability(histories[1], rates=schedule)
  sparse = check_stability(histories[4], rates=schedule)
  assert full.steps == (1, 40) and sparse.steps == (4, 40)
  assert sparse.stable and sparse.contractive
  # the warm-up steps it sees are the recorded ones among the full run's
  assert {f.step for f in sparse.warmup} == {
      f.step for f in full.warmup if f.step % 4 == 0}
  # the same margins at the recorded updates
  worst_full = max(f.value for f in full.max_margin.values())
  worst_sparse = max(f.value for f in sparse.max_margin.values())
  assert worst_sparse <= worst_full + 1e-6
  # without rates the warm-up is growth: flagged at a recorded update
  assert not check_stability(histories[4]).contractive

  pytest.importorskip("matplotlib")
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from autosgm_optax.analysis._plotting import plot_dynamics  # pylint: disable=import-outside-toplevel
  fig = plot_dynamics(histories[4])
  x = fig.axes[0].get_lines()[0].get_xdata()
  np.testing.assert_array_equal(x, np.arange(4, 41, 4))
  plt.close(fig)


@pytest.mark.parametrize("block", [
    asgm.lowpass_filter(0.9, gamma=0.5),
    asgm.moment_denominator(0.99, eps=1e-6, eps_root=1e-9),
    asgm.correlation_numerator("correlation"),
    asgm.correlation_numerator("robust_correlation", average=False,
                               smoothing=None),
    asgm.correlation_numerator("moment", average=False, smoothing=None),
    asgm.raised_cosine_window(5),
], ids=["filter", "denominator", "numerator", "robust_per_element",
        "moment_per_element", "window"])
def test_block_last_is_the_factor_of_the_last_update(block):
  # What the summary level reads instead of keeping alpha(t-1).
  from autosgm_optax._src import base as _base  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
  state = block.init(params)
  field = {"filter": "filter", "denominator": "denominator",
           "numerator": "numerator", "window": "window"}[block.kind]
  for _ in range(3):
    g = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
    signal, state = block.apply(_base.Signal.from_gradient(g), state, params)
    got = block.last(state)
    want = getattr(signal, field)
    if field == "filter":
      want = want[3]  # (beta, gamma, eta, s): the debias divisor s
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


@pytest.mark.parametrize("every", [1, 2])
def test_undefined_r_is_counted_exactly_per_element(every):
  # A window below 0 makes alpha(t-1) negative on every element (it used to
  # be counted twice, as a sum of signs), and one NaN gradient element
  # makes one alpha(t-1) NaN (it used to mark the whole leaf).
  params = {"v": jnp.ones(3), "m": jnp.ones((2, 5))}
  tx = asgm.autosgm(0.1, window=asgm.scale_by_window(
      lambda count: jnp.where(count == 0, -1.0, 1.0)),
      diagnostics="summary", diagnostics_every=every)
  state = tx.init(params)
  grads = {"v": jnp.ones(3), "m": jnp.ones((2, 5)).at[0, 1].set(jnp.nan)}
  _, state = tx.update(grads, state, params)  # F = -1, one NaN in "m"
  _, state = tx.update(jax.tree.map(jnp.ones_like, grads), state, params)
  counts = asgm.learning_dynamics(state)[""].r_undefined
  assert counts["v"].dtype == jnp.int32
  assert {k: int(v) for k, v in counts.items()} == {"v": 3, "m": 10}
  _, state = tx.update(jax.tree.map(jnp.ones_like, grads), state, params)
  _, state = tx.update(jax.tree.map(jnp.ones_like, grads), state, params)
  counts = asgm.learning_dynamics(state)[""].r_undefined
  # alpha(t-1) > 0 on "v"; "m"'s denominator keeps the NaN element's.
  assert {k: int(v) for k, v in counts.items()} == {"v": 0, "m": 1}


def test_injected_every_gives_one_state_structure_however_init_runs():
  # optax.inject_hyperparams injects a diagnostics_every given as 1 too:
  # eager init, eval_shape and jit(init) must agree, and an injected value
  # may move to 1 and back.
  params, loss = PROBLEMS["quadratic"]()
  tx = optax.inject_hyperparams(asgm.autosgm)(
      1e-2, gamma=0.5, weight_decay=1e-2, diagnostics="summary",
      diagnostics_every=1)
  eager = tx.init(params)
  assert jax.tree.structure(jax.eval_shape(tx.init, params)) == (
      jax.tree.structure(eager))
  state = jax.jit(tx.init)(params)
  assert jax.tree.structure(state) == jax.tree.structure(eager)
  for every in (3, 1, 1, 2):
    state.hyperparams["diagnostics_every"] = jnp.asarray(every, jnp.int32)
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  (dyn,) = asgm.learning_dynamics(state).values()
  assert bool(dyn.recorded) and int(dyn.step) == 4  # 4 % 2 == 0
  assert all(np.isfinite(x) for x in jax.tree.leaves(dyn.e.sup))


def test_a_block_without_last_is_refused_with_every():
  # alpha(t-1) comes from the blocks' last(state); a block without one
  # would silently give a wrong r.
  plain = asgm.scale_by_window(lambda count: 0.5 ** count)
  custom = asgm.AutoSGMBlock(plain.init, plain.apply, kind="window")
  asgm.scale_by_autosgm(window=custom, diagnostics="summary")  # every 1: ok
  with pytest.raises(ValueError, match="has no last"):
    asgm.scale_by_autosgm(window=custom, diagnostics="summary",
                          diagnostics_every=2)


def test_a_stale_history_leaves_e_out_of_the_record():
  # every 3 until update 3, then every 2: h(3) was not kept (update 4 was
  # not due under 3), so the record at 4 has no e; alpha and r are exact.
  params, loss = PROBLEMS["quadratic"]()
  config = dict(gamma=0.5, weight_decay=1e-2, diagnostics="summary")
  tx = optax.inject_hyperparams(asgm.autosgm)(1e-2, diagnostics_every=3,
                                              **config)
  reference = asgm.autosgm(1e-2, **config)
  state, ref_state, p = tx.init(params), reference.init(params), params
  for t in range(1, 5):
    if t == 4:
      state.hyperparams["diagnostics_every"] = jnp.asarray(2, jnp.int32)
    g = jax.grad(loss)(p)
    updates, state = tx.update(g, state, p)
    _, ref_state = reference.update(g, ref_state, p)
    p = optax.apply_updates(p, updates)
  (dyn,) = asgm.learning_dynamics(state).values()
  (ref,) = asgm.learning_dynamics(ref_state).values()
  assert bool(dyn.recorded) and int(dyn.step) == 4
  assert all(np.isnan(x) for x in jax.tree.leaves(dyn.e))
  for x, y in zip(jax.tree.leaves(dyn.r), jax.tree.leaves(ref.r)):
    # (injected hyperparameters are float32 arrays: round-off of 1e-5)
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-9)


def test_nothing_is_recorded_before_the_first_update():
  params = {"w": jnp.ones(3)}
  state = asgm.autosgm(1e-2, diagnostics="summary").init(params)
  dyn = asgm.learning_dynamics(state)[""]
  assert not bool(dyn.recorded) and int(dyn.step) == 0


def test_stability_keeps_one_entry_per_update_and_reads_every_rate():
  # A history appended after every call of a wrapper that does not always
  # update (optax.MultiSteps) repeats updates: the memory gain must not
  # restart there. And rates of every update serve a sparse history.
  schedule = optax.exponential_decay(1e-3, 1, 1.3)  # mu grows 30% a step
  histories, rates = {}, {}
  for every in (1, 2):
    histories[every], rates[every] = _quadratic_history(optax.MultiSteps(
        asgm.autosgm(schedule, beta=0.99, diagnostics="summary",
                     diagnostics_every=every), every_k_schedule=2), 24)
  repeated = check_stability(histories[1], growth_bound=2.0)
  once = check_stability(histories[1][1::2], growth_bound=2.0)  # one each
  assert repeated.steps == once.steps == (1, 12)
  assert len(repeated.growth) == len(once.growth) > 0
  per_update = rates[1][1::2]
  sparse = check_stability(histories[2], rates=per_update)
  scheduled = check_stability(histories[2], rates=schedule)
  assert sparse.steps == (2, 12)
  assert len(sparse.warmup) == len(scheduled.warmup) > 0
  assert len(sparse.margin) == len(scheduled.margin)
