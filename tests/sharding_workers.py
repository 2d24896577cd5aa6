"""Subprocess workers for ``tests/test_sharding.py``: multi-device JAX runs.

JAX reads ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` only when
its backend starts, so the multi-device checks cannot run inside the pytest
process (JAX already runs there on one CPU device). The tests start this
file as a script with the flag in the environment; it does every check of
its mode in one run and prints one JSON line, ``RESULT {...}``, last.
Nothing runs on import (pytest's ``--doctest-modules`` imports this file).

    python tests/sharding_workers.py mesh
        8 virtual devices: jit + NamedSharding on explicit and auto meshes,
        where init places the state, and pmap data parallelism.
    python tests/sharding_workers.py distributed PROCESS_ID PORT
        one of two processes (4 virtual devices each) on JAX's distributed
        runtime, coordinator on 127.0.0.1:PORT, one global 8-device mesh.
    python tests/sharding_workers.py matrix
        8 virtual devices: presets.muon and matrix_oracle with sharded
        matrix leaves (issue 19), against one device.

Every optimizer is checked against a single-device run of itself. To keep
the compile count (the cost on 2 cores) low, the optimizers of a check run
side by side in one jitted step, each on its own copy of the parameters.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import numpy as np
import optax

import autosgm_optax as asgm

LR = 0.05
STEPS = 20
DIST_STEPS = 10
SHAPES = {"w": (16, 32), "b": (32,), "s": (4, 8, 8)}  # "s": 4 stacked layers
SPECS = {"w": ("data", "model"), "b": ("model",), "s": (None, "data", "model")}


def configs():
  """The optimizers under test, by name (fresh instances)."""
  full = dict(gamma=0.5528, window=asgm.raised_cosine_window(20),
              weight_decay=1e-3)
  return {
      # bit for bit optax.adam
      "adam_point": asgm.autosgm(LR),
      # per-leaf averages of shape (1, 1), (1,) and (1, 1, 1)
      "full": asgm.autosgm(LR, numerator="correlation", **full),
      # one average per layer of "s" (and per row of "w"): the averaged
      # axes are sharded over both mesh axes
      "robust_stacked": asgm.autosgm(LR, numerator="robust_correlation",
                                     numerator_keep_axes=(0,), **full),
  }


# ---------------------------------------------------------------------------
# the problem: three leaves, gradients that change every step and couple
# elements across shards through global means.


def host_problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {k: (0.5 * rng.normal(size=s)).astype(np.float32)
            for k, s in SHAPES.items()}
  targets = {k: rng.normal(size=s).astype(np.float32)
             for k, s in SHAPES.items()}
  return params, targets


def loss(p, t, phase):
  total = 0.0
  for k in sorted(p):
    r = p[k] - phase * t[k]
    total = total + 0.5 * jnp.mean(r * r)
  total = total + 0.1 * jnp.tanh(jnp.mean(p["w"])) * jnp.mean(p["b"])
  total = total + 0.05 * jnp.sum(jnp.mean(jnp.sin(p["s"]), axis=(1, 2)) ** 2)
  return total


def phase_of(i):
  return np.float32(np.cos(0.3 * i))


def make_step(tx):
  def step(params, state, targets, phase):
    grads = jax.grad(loss)(params, targets, phase)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


def make_all(txs):
  """One init and one step running every optimizer of ``txs`` (a dict),
  each on its own copy of the parameters (a dict of the same names)."""
  steps = {name: make_step(tx) for name, tx in txs.items()}

  def init(params):
    return {name: tx.init(params[name]) for name, tx in txs.items()}

  def step(params, states, targets, phase):
    out = {name: steps[name](params[name], states[name], targets, phase)
           for name in txs}
    return ({n: o[0] for n, o in out.items()},
            {n: o[1] for n, o in out.items()})

  return init, step


def copies(tree, names):
  return {name: tree for name in names}


# ---------------------------------------------------------------------------
# measures


def rel_err(a, b):
  """docs/algorithm.md, section 8, for one leaf: max|a - b| / max(max|b|,
  1e-30)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape:
    return float("inf")
  if a.size == 0:
    return 0.0
  scale = max(float(np.max(np.abs(b))), 1e-30)
  return float(np.max(np.abs(a - b)) / scale)


def tree_err(a, b):
  """The worst leaf of ``rel_err``; inf if the structures differ."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  if ta != tb:
    return float("inf")
  return max([rel_err(x, y) for x, y in zip(la, lb)] + [0.0])


def max_change(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------
# round-off bounds
#
# A sharded (or pmapped, or donated) run and its single-device reference do
# the same float32 arithmetic in another order: the sums over sharded axes
# (per-device partial sums, then across devices), the batch sum split into
# per-replica sums and a pmean, and the multiply-adds that XLA contracts into
# FMAs, which it decides per program and per CPU (AVX-512 or AVX2). So the
# tolerance comes from the arithmetic, not from one CPU's rounding. With U
# float32's unit round-off (round to nearest, 2^-24): a sum of n terms in any
# order (sequential, blocked, pairwise, across devices) is within (n - 1) U
# sum|x_i| of the exact sum (Higham, "Accuracy and Stability of Numerical
# Algorithms", 2nd ed., section 4.2: gamma_{n-1}, whose
# 1 / (1 - (n - 1) U) is below 1.0001 here), and every other operation adds
# one rounding. Take every element to be a well-conditioned function of the
# inputs relative to its leaf's largest element: sums of terms bounded by it
# (the EMAs of g and g^2, the average of ahat >= 0, the parameters plus
# their steps), products, quotients, square roots. Then, per run and
# relative to that largest element, the error is at most
# (2 (n - 1) + K t) U: two sums of up to n terms on any path (a mean in the
# loss, or the batch sum of the gradient, and the numerator's per-leaf
# average), K roundings per update, and the t updates whose errors the EMAs
# and the parameters carry forward, added up (the worst case). Two runs
# differ by at most twice that. For the sizes here (n <= 512, t <= 20) the
# bound is at most 3e-4: a wrong formula (an O(1) difference), a missing
# debias (a factor 1 / (1 - beta^t)), a per-shard instead of a global mean
# (O(0.1) here) or a lagging shard (O(mu)) is far beyond it.
#
# The assumption fails for one quantity: alpha = mu F a / (d s) is largest
# where d, so |g|, is smallest, and a gradient computed under the mesh
# carries the cancellation of its terms there (on this problem, 544 times
# |g| at the largest alpha of "s" after the first update: 140 U (AVX2) and
# 180 U (AVX-512) measured in its sup, not a reduction of the summary; a
# max is exact). The summaries'
# check (``diagnostics_training``) therefore feeds both runs the same
# gradients.

U = 2.0 ** -24
#: float32 roundings per element per update, counted generously along one
#: update of the configurations here: the loss gradient <= 16, the filter
#: <= 6, the denominator <= 7 (square, two multiply-adds, debias, root,
#: eps), the numerator <= 14, the decay <= 4, window, learning rate and
#: apply_updates <= 5, the diagnostics record <= 12.
OPS_PER_UPDATE = 64


def roundoff_bound(n, updates):
  """The largest difference allowed between two float32 runs of the same
  computation in another order after ``updates`` updates, relative to a
  leaf's largest element, with sums of at most ``n`` terms (see above)."""
  return 2 * (2 * (n - 1) + OPS_PER_UPDATE * updates) * U


def summary_bound(stat, n, updates, sup, rms):
  """The same for a summary of an n-element leaf whose largest |x| is
  ``sup`` and whose root mean square is ``rms``. sup, mean and std move by
  at most the largest change of one element (each is 1-Lipschitz in the
  max norm), ``roundoff_bound(n, updates) * sup``; sup (a max of |x|) is
  exact in any order, while mean and std add their own sums in each run:
  at most n U rms each (the mean: (n - 1) U mean|x| + U |mean|, and
  mean|x| <= rms; the std: deviations, squares, their sum of n terms, the
  division and the root, (n + 5) U / 2 of the std <= n U rms for n >= 5,
  the mean's own error entering to second order only, as the deviations
  sum to 0)."""
  elements = roundoff_bound(n, updates) * sup
  if stat == "sup":
    return elements
  return elements + 2 * n * U * rms


def reference_run(txs, params, targets, steps, make=None):
  """Single-device run of every optimizer of ``txs`` (built into one init
  and one step by ``make``, default :func:`make_all`): host copies of
  (params, states) before the first step and after each step."""
  dev = jax.local_devices()[0]
  init, step = (make_all if make is None else make)(txs)
  p = jax.device_put(copies(params, txs), dev)
  t = jax.device_put(targets, dev)
  states = jax.jit(init)(p)
  step = jax.jit(step)
  history = [jax.device_get((p, states))]
  for i in range(steps):
    p, states = step(p, states, t, phase_of(i))
    history.append(jax.device_get((p, states)))
  return history


# ---------------------------------------------------------------------------
# sharding bookkeeping


def param_key(path, names=None):
  """The parameter a state leaf belongs to: the last dict key that names one
  (of ``names``, default the parameters of SHAPES)."""
  names = SHAPES if names is None else names
  for entry in reversed(path):
    if isinstance(entry, jax.tree_util.DictKey) and entry.key in names:
      return entry.key
  return None


def state_shardings(abstract_state, param_shardings, mesh, names=None):
  """out_shardings for init, from ``jax.eval_shape``: a parameter's sharding
  for the leaves shaped like it, replicated for the rest (counts, rates,
  windows, per-leaf averages). ``names``: the parameters' shapes by name
  (default the main problem's ``SHAPES``)."""
  names = SHAPES if names is None else names

  def pick(path, leaf):
    key = param_key(path, names)
    if key is not None and tuple(leaf.shape) == names[key]:
      return param_shardings[key]
    return NamedSharding(mesh, P())
  return jax.tree_util.tree_map_with_path(pick, abstract_state)


def placement_problems(tree, params, where, local=True, names=None):
  """Leaves of ``tree`` not placed as the sharding contract says.

  Per-element buffers (a parameter's shape, under that parameter's key) have
  that parameter's sharding; one-element leaves (counts, learning rates,
  window values, per-leaf averages) are replicated; with ``local`` every
  leaf is fully addressable (one process).
  """
  problems = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = f"{where}{jax.tree_util.keystr(path)}"
    if local and not leaf.is_fully_addressable:
      problems.append(f"{name}: not fully addressable")
      continue
    key = param_key(path, names)
    if key is not None and leaf.shape == params[key].shape:
      want = params[key].sharding
      if not leaf.sharding.is_equivalent_to(want, leaf.ndim):
        problems.append(f"{name}: sharding {leaf.sharding.spec} != the "
                        f"parameter's {want.spec}")
    elif leaf.size == 1 and not leaf.sharding.is_fully_replicated:
      problems.append(f"{name}: one-element leaf not replicated "
                      f"({leaf.sharding})")
  return problems


def capture(fn, *args):
  """``fn(*args)``, or {"error": traceback} if it raises."""
  try:
    return fn(*args)
  except Exception:  # pylint: disable=broad-except
    return {"error": traceback.format_exc()}


# ---------------------------------------------------------------------------
# mode "mesh": 8 devices


def sharded_problem(mesh):
  host_params, host_targets = host_problem()
  shardings = {k: NamedSharding(mesh, P(*SPECS[k])) for k in SHAPES}
  params = {k: jax.device_put(v, shardings[k]) for k, v in host_params.items()}
  targets = {k: jax.device_put(v, shardings[k])
             for k, v in host_targets.items()}
  return shardings, params, targets


def mesh_training(axis_type, history):
  """jit + NamedSharding on a (2, 4) data x model mesh, every configuration
  against its single-device run (``history``) at every step."""
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(axis_type, axis_type))
  txs = configs()
  init, step = make_all(txs)
  problems = []
  errors = {name: {} for name in txs}

  def record(what, got, want):
    for name in txs:
      errors[name][what] = max(errors[name].get(what, 0.0),
                               tree_err(got[name], want[name]))

  with jax.set_mesh(mesh):
    shardings, params0, targets = sharded_problem(mesh)
    params = copies(params0, txs)
    # init with out_shardings computed from the abstract state
    abstract = jax.eval_shape(init, params)
    states = jax.jit(init, out_shardings=state_shardings(
        abstract, shardings, mesh))(params)
    problems += placement_problems(states, params0, "init(out_shardings)")
    record("init(out_shardings)", jax.device_get(states), history[0][1])
    # plain jit(init): right values, addressable (where it puts per-element
    # buffers is compared with Optax in init_placement)
    plain = jax.jit(init)(params)
    record("init(plain jit)", jax.device_get(plain), history[0][1])
    problems += [f"init(plain jit){jax.tree_util.keystr(k)}: not addressable"
                 for k, x in jax.tree_util.tree_leaves_with_path(plain)
                 if not x.is_fully_addressable]
    step = jax.jit(step)
    for i in range(STEPS):
      params, states = step(params, states, targets, phase_of(i))
      problems += placement_problems(params, params0, f"step {i} params")
      problems += placement_problems(states, params0, f"step {i} state")
      p_host, s_host = jax.device_get((params, states))
      record("params, every step", p_host, history[i + 1][0])
      record("state, every step", s_host, history[i + 1][1])
  moved = {name: max_change(history[-1][0][name], history[0][0][name])
           for name in txs}
  return dict(problems=problems[:20], n_problems=len(problems),
              errors=errors, moved=moved)


def init_placement():
  """Where init puts the per-element state, with optax.adam as the control.

  Under an explicit-axes mesh the sharding is part of an array's type;
  Optax's init types the state like the parameters, so init and update agree
  and the state can be a ``fori_loop`` carry. Also eager init of sharded
  parameters under an auto mesh (Optax: state sharded like the parameters).
  """
  result = {}
  txs = dict(configs(), **{"optax.adam": optax.adam(LR)})
  for axis_type in (AxisType.Explicit, AxisType.Auto):
    mesh = jax.make_mesh((2, 4), ("data", "model"),
                         axis_types=(axis_type, axis_type))
    kind = axis_type.name.lower()
    with jax.set_mesh(mesh):
      _, params, targets = sharded_problem(mesh)
      for name, tx in txs.items():
        result[f"{kind}: eager init, {name}"] = placement_problems(
            tx.init(params), params, "")[:6]
        if axis_type != AxisType.Explicit:
          continue
        result[f"{kind}: jit(init), {name}"] = placement_problems(
            jax.jit(tx.init)(params), params, "")[:6]
        step = make_step(tx)

        def train(p, t, tx=tx, step=step):
          def body(i, carry):
            return step(*carry, t, jnp.cos(0.3 * i))
          return jax.lax.fori_loop(0, 2, body, (p, tx.init(p)))[0]

        try:
          jax.jit(train).trace(params, targets)  # the type check is here
          result[f"{kind}: fori_loop training, {name}"] = []
        except Exception as e:  # pylint: disable=broad-except
          result[f"{kind}: fori_loop training, {name}"] = [
              f"{type(e).__name__}: {str(e)[:400]}"]
  return result


def pmap_training():
  """pmap data parallelism: per-device gradients averaged by lax.pmean,
  against one device with the full-batch gradient."""
  n = jax.local_device_count()
  rng = np.random.default_rng(3)
  x = rng.normal(size=(8 * n, 8)).astype(np.float32)
  y = np.sin(rng.normal(size=(8 * n,))).astype(np.float32)
  params0 = {"w1": (0.4 * rng.normal(size=(8, 16))).astype(np.float32),
             "b1": np.zeros((16,), np.float32),
             "w2": (0.4 * rng.normal(size=(16,))).astype(np.float32)}
  txs = {k: v for k, v in configs().items() if k != "robust_stacked"}

  def batch_loss(p, xb, yb):
    h = jnp.tanh(xb @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] - yb) ** 2)

  def make(grad_fn):
    def step(params, states, xb, yb):
      new_p, new_s = {}, {}
      for name, tx in txs.items():
        g = grad_fn(params[name], xb, yb)
        u, new_s[name] = tx.update(g, states[name], params[name])
        new_p[name] = optax.apply_updates(params[name], u)
      return new_p, new_s
    return step

  def init(params):
    return {name: tx.init(params[name]) for name, tx in txs.items()}

  # one device, the full batch
  full_step = jax.jit(make(jax.grad(batch_loss)))
  p_ref = jax.device_put(copies(params0, txs), jax.local_devices()[0])
  s_ref = jax.jit(init)(p_ref)
  # n replicas, a slice of the batch each, gradients averaged by pmean
  pmean_grad = lambda p, xb, yb: jax.lax.pmean(
      jax.grad(batch_loss)(p, xb, yb), axis_name="batch")
  pstep = jax.pmap(make(pmean_grad), axis_name="batch")
  p_rep = jax.tree.map(lambda a: np.broadcast_to(a, (n,) + a.shape),
                       copies(params0, txs))
  s_rep = jax.pmap(init)(p_rep)
  xs, ys = x.reshape(n, -1, 8), y.reshape(n, -1)
  divergent = []
  worst = {name: {"params": 0.0, "state": 0.0} for name in txs}
  for i in range(STEPS):
    p_rep, s_rep = pstep(p_rep, s_rep, xs, ys)
    p_ref, s_ref = full_step(p_ref, s_ref, x, y)
    host = jax.device_get((p_rep, s_rep))
    for path, leaf in jax.tree_util.tree_leaves_with_path(host):
      leaf = np.asarray(leaf)
      if leaf.shape[0] != n or not all(
          np.array_equal(leaf[0], leaf[r]) for r in range(n)):
        divergent.append(f"step {i}{jax.tree_util.keystr(path)}")
    first = jax.tree.map(lambda a: np.asarray(a)[0], host)
    ref = jax.device_get((p_ref, s_ref))
    for name in txs:
      for j, part in enumerate(("params", "state")):
        worst[name][part] = max(worst[name][part],
                                tree_err(first[j][name], ref[j][name]))
  moved = {name: max_change(jax.device_get(p_ref[name]), params0)
           for name in txs}
  return dict(replicas=n, divergent=divergent[:10], worst=worst, moved=moved)


DIAGNOSTICS_STEPS = 7


def diagnostics_configs():
  """The full configuration with summary diagnostics, on every update and
  on every 3rd."""
  full = dict(gamma=0.5528, window=asgm.raised_cosine_window(20),
              weight_decay=1e-3, numerator="correlation",
              diagnostics="summary")
  return {"every_update": asgm.autosgm(LR, **full),
          "every_3": asgm.autosgm(LR, diagnostics_every=3, **full)}


def dynamics_run(txs, params, targets, grads=None):
  """Parameters, the recorded summaries (sup, mean, std of alpha, r, e, dw
  per leaf) and the gradients of each update, on the host. The gradients
  are computed by one jitted function and given to a jitted update; with
  ``grads`` (such a list from another run) the updates take those instead,
  placed like the parameters."""
  names = list(txs)

  def init(params):
    return {n: txs[n].init(params[n]) for n in names}

  def update(params, states, grads):
    out = {}
    for n in names:
      u, s = txs[n].update(grads[n], states[n], params[n])
      out[n] = (optax.apply_updates(params[n], u), s)
    return ({n: o[0] for n, o in out.items()},
            {n: o[1] for n, o in out.items()})

  gradient = jax.jit(lambda params, targets, phase: {
      n: jax.grad(loss)(params[n], targets, phase) for n in names})
  params = copies(params, txs)
  states = jax.jit(init)(params)
  update = jax.jit(update)
  out = []
  for i in range(DIAGNOSTICS_STEPS):
    if grads is None:
      g = gradient(params, targets, phase_of(i))
    else:
      g = jax.tree.map(lambda x, p: jax.device_put(x, p.sharding),
                       grads[i], params)
    host_grads = jax.device_get(g)
    params, states = update(params, states, g)
    dyn = {n: asgm.learning_dynamics(s)[""] for n, s in states.items()}
    out.append(jax.device_get((params, dyn)) + (host_grads,))
  return out


def diagnostics_training(axis_type, reference):
  """The summary diagnostics under a (2, 4) mesh against one device, both
  runs on the single-device run's gradients (see the round-off bounds): the
  worst difference of a statistic relative to its bound
  (``summary_bound``; <= 1 passes), and in units of U times the leaf's sup
  (for the record)."""
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(axis_type, axis_type))
  with jax.set_mesh(mesh):
    _, params, targets = sharded_problem(mesh)
    got = dynamics_run(diagnostics_configs(), params, targets,
                       grads=[g for _, _, g in reference])
  errors = {"params": 0.0, "summaries_over_bound": 0.0,
            "summaries_in_U": 0.0}
  worst = None
  recorded = []
  for t, ((p, d, _), (p_ref, d_ref, _)) in enumerate(
      zip(got, reference), start=1):
    errors["params"] = max(errors["params"], tree_err(p, p_ref))
    recorded.append({n: bool(d[n].recorded) for n in d})
    for name in d:
      if not bool(d_ref[name].recorded):
        continue
      for field in ("alpha", "r", "e", "dw"):
        got_f, ref_f = getattr(d[name], field), getattr(d_ref[name], field)
        for leaf in SHAPES:
          n = int(np.prod(SHAPES[leaf]))
          sup = abs(float(ref_f.sup[leaf]))
          rms = float(np.hypot(float(ref_f.mean[leaf]),
                               float(ref_f.std[leaf])))
          for stat in ("sup", "mean", "std"):
            diff = abs(float(getattr(got_f, stat)[leaf])
                       - float(getattr(ref_f, stat)[leaf]))
            bound = summary_bound(stat, n, t, sup, rms)
            ratio = diff / bound if bound > 0 else (0.0 if diff == 0
                                                    else float("inf"))
            if np.isnan(errors["summaries_over_bound"]):
              pass  # a NaN difference is kept: it fails the test
            elif np.isnan(ratio) or ratio > errors["summaries_over_bound"]:
              errors["summaries_over_bound"] = ratio
              worst = f"{name} {field}.{stat}[{leaf!r}] after update {t}"
            errors["summaries_in_U"] = max(
                errors["summaries_in_U"], diff / (U * max(sup, 1e-30)))
  return dict(errors=errors, worst=worst, recorded=recorded)


def main_mesh():
  host_params, host_targets = host_problem()
  # the flags JAX started with (the test checks that inherited ones, such
  # as --xla_cpu_max_isa, reached this process)
  result = {"device_count": jax.device_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
  history = reference_run(configs(), host_params, host_targets, STEPS)
  for axis_type in (AxisType.Explicit, AxisType.Auto):
    result[f"mesh_{axis_type.name.lower()}"] = capture(
        mesh_training, axis_type, history)
  reference = dynamics_run(diagnostics_configs(), host_params, host_targets)
  for axis_type in (AxisType.Explicit, AxisType.Auto):
    result[f"diagnostics_{axis_type.name.lower()}"] = capture(
        diagnostics_training, axis_type, reference)
  result["init_placement"] = capture(init_placement)
  result["pmap"] = capture(pmap_training)
  return result


# ---------------------------------------------------------------------------
# mode "distributed": one of two processes, 4 devices each, one global mesh


def main_distributed(process_id, port):
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  print("INITIALIZING", file=sys.stderr, flush=True)  # the test's markers
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}", num_processes=2,
      process_id=process_id, local_device_ids=list(range(4)),
      initialization_timeout=60, shutdown_timeout_seconds=30)
  print("INITIALIZED", file=sys.stderr, flush=True)
  result = dict(xla_flags=os.environ.get("XLA_FLAGS", ""),
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                device_count=jax.device_count(),
                local_device_count=jax.local_device_count())
  host_params, host_targets = host_problem()
  txs = {k: v for k, v in configs().items() if k == "full"}
  history = reference_run(txs, host_params, host_targets, DIST_STEPS)

  mesh = jax.make_mesh((2, 4), ("data", "model"))
  # the processes holding each "data" index (row of the mesh)
  result["processes_per_data_index"] = [
      sorted({d.process_index for d in row}) for row in mesh.devices]
  shardings = {k: NamedSharding(mesh, P(*SPECS[k])) for k in SHAPES}

  def global_tree(tree):
    return {k: jax.make_array_from_callback(
        v.shape, shardings[k], lambda idx, v=v: v[idx])
            for k, v in tree.items()}

  params0 = global_tree(host_params)
  targets = global_tree(host_targets)
  result["global_leaves_span_processes"] = not any(
      x.is_fully_addressable for x in jax.tree.leaves(params0))
  init, step = make_all(txs)
  params = copies(params0, txs)
  abstract = jax.eval_shape(init, params)
  states = jax.jit(init, out_shardings=state_shardings(
      abstract, shardings, mesh))(params)
  problems = placement_problems(states, params0, "init", local=False)
  step = jax.jit(step)
  for i in range(DIST_STEPS):
    params, states = step(params, states, targets, phase_of(i))
    problems += placement_problems(params, params0, f"step {i} params",
                                   local=False)
    problems += placement_problems(states, params0, f"step {i} state",
                                   local=False)
  gathered_p, gathered_s = multihost_utils.process_allgather(
      (params, states), tiled=True)
  result["problems"] = problems[:10]
  result["runs"] = {
      name: dict(params_err=tree_err(gathered_p[name], history[-1][0][name]),
                 state_err=tree_err(gathered_s[name], history[-1][1][name]),
                 moved=max_change(history[-1][0][name], host_params),
                 checksum=float(sum(np.sum(np.asarray(x, np.float64))
                                    for x in jax.tree.leaves(
                                        gathered_p[name]))))
      for name in txs}
  multihost_utils.sync_global_devices("autosgm sharding test done")
  jax.distributed.shutdown()
  return result


def main(argv):
  mode = argv[1]
  if mode == "mesh":
    result = main_mesh()
  elif mode == "distributed":
    result = main_distributed(int(argv[2]), int(argv[3]))
  elif mode == "matrix":
    result = main_matrix()
  else:
    raise SystemExit(f"unknown mode {mode!r}")
  print("\nRESULT " + json.dumps(result), flush=True)



# ---------------------------------------------------------------------------
# mode "matrix": the matrix oracle under sharding (issue 19)
#
# matrix_oracle and presets.muon replace a matrix leaf's filtered gradient by
# its polar factor: a global function of the whole matrix (its Frobenius
# norm, Gram matrices X X^T, their products, or an SVD). Sharded over a
# mesh, those reductions run per shard and then across devices; the result
# must still be the single-device one, to round-off.

from optax.contrib import MuonDimensionNumbers  # pylint: disable=g-import-not-at-top,wrong-import-position

MATRIX_STEPS = 20
MATRIX_LR = 0.02
MATRIX_BATCH = 128
#: "rows" is sharded on its rows (the reduction axis of x @ rows), "cols" on
#: its columns (the reduction axis of h @ cols^T), "heads" (8 matrices of
#: 16 x 24 under a rank-3 rule) on its batch axis, "b" (a vector: the
#: element-wise path) too; one mesh axis "x" of 8 devices.
MATRIX_SHAPES = {"rows": (64, 48), "cols": (64, 48), "heads": (8, 16, 24),
                 "b": (48,)}
MATRIX_SPECS = {"rows": ("x", None), "cols": (None, "x"),
                "heads": ("x", None, None), "b": ("x",)}
MATRIX_RULES = {"rows": MuonDimensionNumbers(0, 1),
                "cols": MuonDimensionNumbers(0, 1),
                "heads": MuonDimensionNumbers(1, 2), "b": None}
MATRIX_METHODS = ("newton_schulz", "cubic", "lakic", "svd")


def matrix_configs():
  """presets.muon and scale_by_autosgm with each oracle (fresh instances)."""
  txs = {"muon": asgm.presets.muon(
      MATRIX_LR, muon_weight_dimension_numbers=MATRIX_RULES)}
  for m in MATRIX_METHODS:
    txs[f"oracle_{m}"] = optax.chain(
        asgm.scale_by_autosgm(
            filter=asgm.lowpass_filter(0.95),
            denominator=asgm.matrix_oracle(m, dimension_numbers=MATRIX_RULES)),
        asgm.scale_by_learning_rate(MATRIX_LR))
  return txs


def matrix_problem(seed=5):
  """A two-layer model (x @ rows, tanh, @ cols^T) on a fixed batch, the
  heads pulled towards moving targets, and a quadratic pull on every leaf
  (so that every gradient has full rank: a polar factor of a rank-deficient
  matrix is discontinuous where its zero singular values sit)."""
  rng = np.random.default_rng(seed)
  params = {k: (0.3 * rng.normal(size=s)).astype(np.float32)
            for k, s in MATRIX_SHAPES.items()}
  data = {"x": rng.normal(size=(MATRIX_BATCH, 64)).astype(np.float32),
          "y": rng.normal(size=(MATRIX_BATCH, 64)).astype(np.float32)}
  data.update({f"t_{k}": rng.normal(size=s).astype(np.float32)
               for k, s in MATRIX_SHAPES.items()})
  return params, data


def matrix_loss(p, d, phase):
  # (the contractions run over sharded axes: under explicit axes the
  # output's sharding must be named; replicated here, under a mesh)
  out = None if jax.sharding.get_abstract_mesh().empty else P()
  h = jnp.tanh(jnp.matmul(d["x"], p["rows"], out_sharding=out) + p["b"])
  z = jnp.matmul(h, p["cols"].T, out_sharding=out)
  total = 0.5 * jnp.mean((z - phase * d["y"]) ** 2)
  for k in sorted(p):
    total = total + 0.05 * jnp.mean((p[k] - phase * d[f"t_{k}"]) ** 2)
  total = total + 0.05 * jnp.sum(
      jnp.mean(jnp.sin(p["heads"]), axis=(1, 2)) ** 2)
  return total


def matrix_make_all(txs):
  def init(params):
    return {n: tx.init(params[n]) for n, tx in txs.items()}

  def step(params, states, data, phase):
    new_p, new_s = {}, {}
    for n, tx in txs.items():
      g = jax.grad(matrix_loss)(params[n], data, phase)
      u, new_s[n] = tx.update(g, states[n], params[n])
      new_p[n] = optax.apply_updates(params[n], u)
    return new_p, new_s

  return init, step


def matrix_param_key(path):
  return param_key(path, MATRIX_SHAPES)


def matrix_placement_problems(tree, params, where):
  """``placement_problems`` for the matrix problem's leaves."""
  return placement_problems(tree, params, where, names=MATRIX_SHAPES)


def matrix_leaf_errors(got, want):
  """Per configuration and parameter: the worst ``rel_err`` over the
  parameter and its per-element state buffers."""
  out = {}
  for name in want[0]:
    per = {k: rel_err(got[0][name][k], want[0][name][k])
           for k in MATRIX_SHAPES}
    for path, leaf in jax.tree_util.tree_leaves_with_path(got[1][name]):
      key = matrix_param_key(path)
      ref = want[1][name]
      for entry in path:
        ref = ref[entry.key] if isinstance(
            entry, jax.tree_util.DictKey) else (
                ref[entry.idx] if isinstance(entry, jax.tree_util.SequenceKey)
                else getattr(ref, entry.name))
      slot = key if key is not None else "scalars"
      per[slot] = max(per.get(slot, 0.0), rel_err(leaf, ref))
    out[name] = per
  return out


def matrix_shardings(mesh, layout=None):
  """The parameters' shardings: every leaf sharded as ``MATRIX_SPECS`` says,
  or (``layout``, a key) only that leaf, the others replicated."""
  return {k: NamedSharding(mesh, P(*MATRIX_SPECS[k]) if layout in (None, k)
                           else P()) for k in MATRIX_SHAPES}


def matrix_training(history):
  """The matrix problem on an auto-axes mesh of 8 devices against
  ``history`` (the single-device run): the worst error per configuration
  and leaf over every step, the placement of params and state after init
  and every step, the jitted step's compile count after 1, 2 and all
  steps, and the leaves whose spec the first step changed."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  txs = matrix_configs()
  init, step = matrix_make_all(txs)
  host_params, host_data = matrix_problem()
  errors = {}
  problems = []
  compiles = []
  respecced = []

  def record(got, want):
    for name, per in matrix_leaf_errors(got, want).items():
      for k, e in per.items():
        worst = errors.setdefault(name, {}).setdefault(k, 0.0)
        if not e <= worst:
          errors[name][k] = e  # (a NaN is kept)

  with jax.set_mesh(mesh):
    shardings, params0, data = matrix_placed(mesh, host_params, host_data)
    params = copies(params0, txs)
    abstract = jax.eval_shape(init, params)
    states = jax.jit(init, out_shardings=state_shardings(
        abstract, shardings, mesh, names=MATRIX_SHAPES))(params)
    problems += matrix_placement_problems(states, params0, "init")
    # eager init (as nnx.Optimizer does) places the state too
    problems += matrix_placement_problems(init(params), params0,
                                          "eager init")
    jstep = jax.jit(step)
    for i in range(MATRIX_STEPS):
      before = (params, states)
      params, states = jstep(params, states, data, phase_of(i))
      if i == 0:
        respecced = [
            f"{jax.tree_util.keystr(k)}: {a.sharding.spec} -> "
            f"{b.sharding.spec}"
            for (k, a), b in zip(jax.tree_util.tree_leaves_with_path(before),
                                 jax.tree.leaves((params, states)))
            if a.sharding != b.sharding]
      if i < 2:
        compiles.append(jstep._cache_size())  # pylint: disable=protected-access
      problems += matrix_placement_problems(params, params0, f"step {i} ")
      problems += matrix_placement_problems(states, params0, f"step {i} ")
      record(jax.device_get((params, states)), history[i + 1])
    compiles.append(jstep._cache_size())  # pylint: disable=protected-access
  moved = {n: max_change(history[-1][0][n], history[0][0][n]) for n in txs}
  return dict(errors=errors, problems=problems[:20], n_problems=len(problems),
              compiles=compiles, respecced_by_first_step=respecced[:12],
              n_respecced=len(respecced), moved=moved)


def matrix_placed(mesh, host_params, host_data):
  """The matrix problem on ``mesh`` (inside ``jax.set_mesh``): the
  parameters' shardings, the sharded parameters and the replicated data."""
  shardings = matrix_shardings(mesh)
  params0 = {k: jax.device_put(v, shardings[k])
             for k, v in host_params.items()}
  data = {k: jax.device_put(v, NamedSharding(mesh, P()))
          for k, v in host_data.items()}
  return shardings, params0, data


def matrix_controls():
  """Optax on the same problem under the same auto mesh: the jitted step's
  compile count after 3 steps, for optax.adam and optax.contrib.muon."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  host_params, host_data = matrix_problem()
  out = {}
  with jax.set_mesh(mesh):
    _, params0, data = matrix_placed(mesh, host_params, host_data)
    for name, tx in (("optax.adam", optax.adam(MATRIX_LR)),
                     ("optax.contrib.muon", optax.contrib.muon(
                         MATRIX_LR,
                         muon_weight_dimension_numbers=MATRIX_RULES))):
      init, step = matrix_make_all({name: tx})
      jstep = jax.jit(step)
      params = {name: params0}
      states = init(params)
      for i in range(3):
        params, states = jstep(params, states, data, phase_of(i))
      out[name] = jstep._cache_size()  # pylint: disable=protected-access
  return out


def matrix_explicit_traces():
  """Under an explicit-axes mesh (the sharding part of the type), whether
  the step traces, per configuration and per sharded leaf (the others
  replicated): "ok" or the error's first line; optax.contrib.muon (the
  matrix leaves only) as the control."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
  host_params, host_data = matrix_problem()
  txs = dict(matrix_configs(), **{"optax.contrib.muon": optax.contrib.muon(
      MATRIX_LR, muon_weight_dimension_numbers=MATRIX_RULES)})
  out = {}
  with jax.set_mesh(mesh):
    data = {k: jax.device_put(v, NamedSharding(mesh, P()))
            for k, v in host_data.items()}
    for layout in ("rows", "cols", "heads"):
      shardings = matrix_shardings(mesh, layout)
      params = {k: jax.device_put(v, shardings[k])
                for k, v in host_params.items()}
      for name, tx in txs.items():
        init, step = matrix_make_all({name: tx})
        try:
          states = init({name: params})
          jax.jit(step).trace({name: params}, states, data, phase_of(0))
          out[f"{layout}: {name}"] = "ok"
        except Exception as e:  # pylint: disable=broad-except
          out[f"{layout}: {name}"] = (
              f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
  return out


def main_matrix():
  host_params, host_data = matrix_problem()
  history = reference_run(matrix_configs(), host_params, host_data,
                          MATRIX_STEPS, make=matrix_make_all)
  return {"device_count": jax.device_count(),
          "matrix_auto": capture(matrix_training, history),
          "matrix_controls": capture(matrix_controls),
          "matrix_explicit": capture(matrix_explicit_traces)}


if __name__ == "__main__":
  main(sys.argv)
