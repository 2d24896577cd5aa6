"""Production training: sharding, multiple processes, pmap, abstract init and
buffer donation (issue 9).

The multi-device checks run JAX in subprocesses (``sharding_workers.py``)
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``: the flag only
takes effect before JAX starts, and JAX is already running in this process.
Each subprocess does all its checks in one run and reports them as JSON; the
tests below read that report. Every check is against a single-device run of
the same optimizer, with the measure of docs/algorithm.md, section 8 (per leaf
``max|a - b| / max(max|b|, 1e-30)``, the worst leaf), within the float32
round-off bound that ``sharding_workers.roundoff_bound`` derives from the
arithmetic (sums of up to n terms in another order, and the roundings of
the updates); the CPU (AVX-512 or AVX2) must not matter.
"""

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import presets
from conftest import relative_error
import sharding_workers as workers

WORKERS = pathlib.Path(__file__).with_name("sharding_workers.py")
# The bounds of ``workers.roundoff_bound(n, updates)``: n the longest sum on
# an element's path, updates the number of updates the run made.
# Sharded training: the loss's means over leaves of up to 512 elements.
MESH_BOUND = workers.roundoff_bound(512, workers.STEPS)  # 2.7e-4
DIST_BOUND = workers.roundoff_bound(512, workers.DIST_STEPS)  # 2.0e-4
# the summaries' run (same gradients in both runs): the numerator's average
DIAGNOSTICS_BOUND = workers.roundoff_bound(512, workers.DIAGNOSTICS_STEPS)
# pmap: the batch sum of 64 examples, the numerator's average over 128
PMAP_BOUND = workers.roundoff_bound(128, workers.STEPS)  # 1.8e-4
# donation: the same program with donated buffers (XLA may fuse it
# otherwise), the loss's means over up to 512 elements, 3 steps
DONATION_BOUND = workers.roundoff_bound(512, 3)  # 1.4e-4
CONFIGS = ("adam_point", "full", "robust_stacked")
MESH_TIMEOUT_S = 300
DIST_TIMEOUT_S = 240


def _env(devices):
  """This process's environment with N virtual CPU devices for JAX."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  flags.append(f"--xla_force_host_platform_device_count={devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  env["JAX_PLATFORMS"] = "cpu"
  env.pop("JAX_ENABLE_X64", None)
  return env


def _report(stdout):
  """The worker's JSON report: its last line that starts with RESULT."""
  for line in reversed(stdout.splitlines()):
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  return None


class WorkerError(RuntimeError):
  """A worker did not report (not an AssertionError: xfail must not eat it)."""


def _run_mesh_worker():
  try:
    proc = subprocess.run(
        [sys.executable, str(WORKERS), "mesh"], env=_env(8),
        capture_output=True, text=True, timeout=MESH_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    return {"failure": f"the 8-device worker ran past {MESH_TIMEOUT_S} s"}
  report = _report(proc.stdout)
  if proc.returncode != 0 or report is None:
    return {"failure": f"the 8-device worker failed (exit {proc.returncode})"
                       f":\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"}
  return report


@contextlib.contextmanager
def _file_lock(path):
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # no POSIX locks: each xdist worker runs its own
    yield
    return
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def mesh_report(tmp_path_factory):
  """One run of the 8-device worker per session (shared by pytest-xdist
  workers through a file in the session's temporary directory): sharded
  training on explicit and auto meshes, init placement, pmap."""
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = tmp_path_factory.getbasetemp().parent  # this session's, shared
    cache = root / "autosgm_sharding_mesh_report.json"
    with _file_lock(root / "autosgm_sharding_mesh_report.lock"):
      if not cache.exists():
        cache.write_text(json.dumps(_run_mesh_worker()))
      report = json.loads(cache.read_text())
  else:
    report = _run_mesh_worker()
  if "failure" in report:
    raise WorkerError(report["failure"])
  assert report["device_count"] == 8, report["device_count"]
  return report


def test_workers_inherit_xla_flags(mesh_report):
  """The worker runs with this process's XLA_FLAGS plus its device count
  (``XLA_FLAGS=--xla_cpu_max_isa=AVX2 pytest`` runs the workers under AVX2
  too), not with a replaced XLA_FLAGS."""
  flags = mesh_report["xla_flags"].split()
  assert "--xla_force_host_platform_device_count=8" in flags, flags
  inherited = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  assert all(f in flags for f in inherited), (inherited, flags)


def _part(report, key):
  part = report[key]
  if isinstance(part, dict) and "error" in part:
    raise WorkerError(f"{key} raised in the worker:\n{part['error']}")
  return part


# ---------------------------------------------------------------------------
# 1. jit + NamedSharding on 8 devices


@pytest.mark.parametrize("axis_types", ["explicit", "auto"])
def test_sharded_training_matches_single_device(mesh_report, axis_types):
  """A (2, 4) data x model mesh, parameters (16, 32) P("data", "model"),
  (32,) P("model") and stacked (4, 8, 8) P(None, "data", "model"); state
  from ``jax.jit(tx.init, out_shardings=...)`` built from
  ``jax.eval_shape(tx.init, params)``, and 20 jitted steps. After init and
  after every step each per-element state buffer has its parameter's
  sharding, counts / rates / (1, 1) averages are replicated, and params and
  state equal the single-device run of the same optimizer: the Adam point,
  the full configuration and the robust numerator averaged per stacked layer
  (its averaged axes are sharded: the reduction must be global)."""
  part = _part(mesh_report, f"mesh_{axis_types}")
  assert part["n_problems"] == 0, "\n".join(part["problems"])
  assert set(part["errors"]) == set(CONFIGS)
  for name in CONFIGS:
    errors = part["errors"][name]
    # init is exact (zeros), with and without out_shardings
    assert errors["init(out_shardings)"] == 0.0, (name, errors)
    assert errors["init(plain jit)"] == 0.0, (name, errors)
    assert errors["params, every step"] <= MESH_BOUND, (name, errors)
    assert errors["state, every step"] <= MESH_BOUND, (name, errors)
    # the runs really trained (the comparison is not between two standstills)
    assert part["moved"][name] > 0.03, (name, part["moved"])


@pytest.mark.parametrize("axis_types", ["explicit", "auto"])
def test_sharded_summary_diagnostics_match_single_device(mesh_report,
                                                         axis_types):
  """``diagnostics="summary"`` on every update and on every 3rd update of
  the full configuration, under the (2, 4) mesh: the records come on the
  same updates, their statistics equal the single-device run's to float32
  round-off, and the parameters too (7 jitted steps). Both runs take the
  single-device run's gradients: alpha's sup sits where |g| is smallest, and
  a gradient computed under the mesh carries the cancellation of its terms
  there (the problem's conditioning, not the optimizer's; the training test
  above covers gradients computed under the mesh)."""
  part = _part(mesh_report, f"diagnostics_{axis_types}")
  assert part["errors"]["params"] <= DIAGNOSTICS_BOUND, part["errors"]
  # each statistic within its own bound (``workers.summary_bound``, from the
  # leaf's size, the update, its sup and root mean square)
  assert part["errors"]["summaries_over_bound"] <= 1, part
  assert [r["every_update"] for r in part["recorded"]] == [True] * 7
  assert [r["every_3"] for r in part["recorded"]] == [
      t % 3 == 0 for t in range(1, 8)]


def _placement(mesh_report, kind, count):
  """The worker's placement checks under one mesh flavour, after checking
  the checks (raising WorkerError, which the xfail marks do not absorb)."""
  part = _part(mesh_report, "init_placement")
  control = {k: v for k, v in part.items()
             if k.startswith(kind) and k.endswith("optax.adam")}
  checks = {k: v for k, v in part.items()
            if k.startswith(kind) and not k.endswith("optax.adam")}
  if len(checks) != count or len(control) != count // len(CONFIGS):
    raise WorkerError(f"unexpected placement checks: {sorted(part)}")
  if any(control.values()):  # the checks must hold for Optax
    raise WorkerError(f"optax.adam, the control, fails: {control}")
  return checks


def test_explicit_mesh_init_types_state_like_the_parameters(mesh_report):
  """Under ``AxisType.Explicit`` the sharding is part of the type: eager and
  jitted init must give per-element state its parameter's sharding (as
  ``optax.adam`` does), so that a ``lax.fori_loop`` training loop carrying
  ``tx.init(params)`` type-checks."""
  checks = _placement(mesh_report, "explicit", 3 * len(CONFIGS))
  bad = {k: v for k, v in checks.items() if v}
  assert not bad, json.dumps(bad, indent=1)


def test_auto_mesh_eager_init_shards_state_like_the_parameters(mesh_report):
  """Eager ``tx.init`` of sharded parameters (what ``nnx.Optimizer`` does)
  must not replicate the state on every device (``optax.adam`` does not)."""
  checks = _placement(mesh_report, "auto", len(CONFIGS))
  bad = {k: v for k, v in checks.items() if v}
  assert not bad, json.dumps(bad, indent=1)


# ---------------------------------------------------------------------------
# 2. two processes on JAX's distributed runtime


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two_processes():
  """Both processes to the end (or killed at the time limit): (exit codes,
  (stdout, stderr) pairs, timed out)."""
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, str(WORKERS), "distributed", str(i), str(port)],
      env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs, timed_out = [], False
  for p in procs:
    try:
      outs.append(p.communicate(timeout=DIST_TIMEOUT_S if not timed_out
                                else 1))
    except subprocess.TimeoutExpired:
      timed_out = True
      for q in procs:
        q.kill()
      outs.append(p.communicate())
  return [p.returncode for p in procs], outs, timed_out


def test_two_process_training_matches_single_process():
  """Two processes on this machine (coordinator on 127.0.0.1, gloo CPU
  collectives, 4 virtual devices each) train the full configuration for 10
  steps on parameters and state sharded over one global (2, 4) mesh: the
  "data" axis spans the processes. Arrays come from
  ``jax.make_array_from_callback``; the result, gathered with
  ``process_allgather``, equals the single-process run."""
  for attempt in range(2):  # a second port if the first one was taken
    codes, outs, timed_out = _run_two_processes()
    reports = [_report(o[0]) for o in outs]
    started = all("INITIALIZING" in o[1] for o in outs)
    initialised = any("INITIALIZED" in o[1] for o in outs)
    if initialised or not started:
      break
  logs = "\n".join(
      f"--- process {i} (exit {c})\n{o[0][-1500:]}\n{o[1][-3000:]}"
      for i, (c, o) in enumerate(zip(codes, outs)))
  if any(r is None for r in reports):
    if started and not initialised:  # the runtime itself, not our code
      pytest.skip("jax.distributed.initialize did not complete on 127.0.0.1 "
                  f"in two tries (timed out: {timed_out}):\n{logs}")
    pytest.fail(f"a process failed after initialisation "
                f"(timed out: {timed_out}):\n{logs}")
  for i, r in enumerate(reports):
    assert r["process_index"] == i, r
    assert (r["process_count"], r["device_count"],
            r["local_device_count"]) == (2, 8, 4), r
    assert r["processes_per_data_index"] == [[0], [1]], r
    assert r["global_leaves_span_processes"], r
    assert r["problems"] == [], r["problems"]
    run = r["runs"]["full"]
    assert run["params_err"] <= DIST_BOUND, run
    assert run["state_err"] <= DIST_BOUND, run
    assert run["moved"] > 0.03, run
  assert reports[0]["runs"] == reports[1]["runs"]  # the same global result


# ---------------------------------------------------------------------------
# 3. pmap data parallelism


def test_pmap_replicas_agree_and_match_full_batch(mesh_report):
  """``jax.pmap`` over 8 devices, each with 1/8 of the batch and gradients
  averaged by ``lax.pmean``: after every one of 20 steps all replicas of
  params and state are bit for bit identical and equal one device stepping
  with the full-batch gradient, for the Adam point and the full
  configuration."""
  part = _part(mesh_report, "pmap")
  assert part["replicas"] == 8
  assert part["divergent"] == [], part["divergent"]
  for name in ("adam_point", "full"):
    worst = part["worst"][name]
    # (a mean of 8 slice means differs from the full-batch mean by the
    # round-off of a sum of 64 terms in another order; the filter's buffer,
    # an EMA of the gradient, carries it: one bound for params and state)
    assert worst["params"] <= PMAP_BOUND, (name, worst)
    assert worst["state"] <= PMAP_BOUND, (name, worst)
    assert part["moved"][name] > 0.03, (name, part["moved"])


# ---------------------------------------------------------------------------
# 4. init on abstract shapes


ABSTRACT_PARAMS = {
    "w": jax.ShapeDtypeStruct((16, 32), jnp.float32),
    "b": jax.ShapeDtypeStruct((32,), jnp.float32),
    "s": jax.ShapeDtypeStruct((4, 8, 8), jnp.bfloat16),
    "t": jax.ShapeDtypeStruct((), jnp.float32),
}

_FULL = dict(gamma=0.5528, weight_decay=1e-3,
             window=asgm.raised_cosine_window(20))

ABSTRACT_CASES = {
    **{f"numerator={n}": (lambda n=n: asgm.autosgm(1e-2, numerator=n,
                                                   **_FULL))
       for n in ("unity", "moment", "correlation", "robust_correlation")},
    "robust, keep_axes=(0,)": lambda: asgm.autosgm(
        1e-2, numerator="robust_correlation", numerator_keep_axes=(0,),
        **_FULL),
    "moment, no average": lambda: asgm.autosgm(
        1e-2, numerator="moment", numerator_average=False,
        numerator_smoothing=None),
    "correlation, coupled, filter bf16": lambda: asgm.autosgm(
        1e-2, numerator="correlation", weight_decay=1e-3, decay="coupled",
        filter_dtype=jnp.bfloat16),
    **{f"window {shape}": (lambda shape=shape: asgm.autosgm(
        1e-2, numerator="correlation",
        window=asgm.scale_by_window(asgm.window_schedule(30, shape))))
       for shape in ("flat", "raised_cosine", "polynomial",
                     "beta_exponential", "simple_polynomial", "sigmoid",
                     "late_sigmoid")},
    "window full, floor, restarts": lambda: asgm.autosgm(
        1e-2, window=asgm.raised_cosine_window(
            50, floor=0.1, full=True, restarts=True)),
    "window stairs, epochs, kronecker": lambda: asgm.autosgm(
        1e-2, window=asgm.scale_by_window(asgm.window_schedule(
            40, stairs=4, steps_per_epoch=5, kronecker=True))),
    "window optax schedule": lambda: asgm.autosgm(
        1e-2, window=optax.cosine_decay_schedule(1.0, 100)),
    "window number": lambda: asgm.autosgm(1e-2, window=0.5),
    "learning-rate schedule": lambda: asgm.autosgm(
        optax.linear_schedule(1e-2, 0.0, 100), numerator="correlation"),
    "inject_hyperparams(autosgm)": lambda: optax.inject_hyperparams(
        asgm.autosgm)(learning_rate=1e-2, numerator="correlation",
                      window=optax.cosine_decay_schedule(1.0, 100),
                      weight_decay=1e-3),
    "presets.sgd": lambda: presets.sgd(1e-2),
    "presets.sgd momentum": lambda: presets.sgd(1e-2, momentum=0.9),
    "presets.sgd nesterov": lambda: presets.sgd(1e-2, 0.9, nesterov=True),
    "presets.phb": lambda: presets.phb(1e-2),
    "presets.nag": lambda: presets.nag(1e-2),
    "presets.adam": lambda: presets.adam(1e-3),
    "presets.adam mu_dtype": lambda: presets.adam(1e-3,
                                                 mu_dtype=jnp.bfloat16),
    "presets.adamw": lambda: presets.adamw(1e-3, weight_decay=1e-2),
    "presets.adamw mask": lambda: presets.adamw(
        1e-3, mask=asgm.default_weight_decay_mask),
    "inject_hyperparams(presets.adam)": lambda: optax.inject_hyperparams(
        presets.adam)(learning_rate=1e-3),
}


def _signature(tree):
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, [(tuple(x.shape), jnp.dtype(x.dtype)) for x in leaves]


@pytest.mark.parametrize("case", sorted(ABSTRACT_CASES))
def test_init_on_abstract_shapes(case):
  """``jax.eval_shape(tx.init, params)`` on ``ShapeDtypeStruct`` leaves
  (float32, bfloat16, stacked, 0-d), and ``tx.init`` called on them directly
  (as Optax's own sharding test does), give the tree, shapes and dtypes of
  the state that init builds from concrete arrays."""
  tx = ABSTRACT_CASES[case]()
  concrete = tx.init(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  ABSTRACT_PARAMS))
  want = _signature(concrete)
  abstract = jax.eval_shape(tx.init, ABSTRACT_PARAMS)
  assert all(isinstance(x, jax.ShapeDtypeStruct)
             for x in jax.tree.leaves(abstract))
  assert _signature(abstract) == want
  if not case.startswith("inject_hyperparams"):
    # (optax.inject_hyperparams's own init needs concrete leaves here: its
    # dtype inference calls np.asarray on the first parameter)
    assert _signature(tx.init(ABSTRACT_PARAMS)) == want
  # and the abstract state drives an abstract update
  grads = ABSTRACT_PARAMS
  updates, new_state = jax.eval_shape(tx.update, grads, abstract,
                                      ABSTRACT_PARAMS)
  assert _signature(new_state) == want
  # shapes only: with float32 state a bfloat16 leaf's update is float32, as
  # optax.adam(mu_dtype=jnp.float32) gives (apply_updates casts it back)
  assert (jax.tree.map(jnp.shape, updates)
          == jax.tree.map(jnp.shape, ABSTRACT_PARAMS))


# ---------------------------------------------------------------------------
# 5. buffer donation


DONATION_CASES = {
    "adam point": lambda: asgm.autosgm(1e-2),
    "full": lambda: asgm.autosgm(1e-2, numerator="correlation", **_FULL),
    "robust, keep_axes=(0,)": lambda: asgm.autosgm(
        1e-2, numerator="robust_correlation", numerator_keep_axes=(0,),
        **_FULL),
    "inject_hyperparams(full)": lambda: optax.inject_hyperparams(
        asgm.autosgm)(learning_rate=1e-2, numerator="correlation",
                      gamma=0.5528, weight_decay=1e-3,
                      window=asgm.raised_cosine_schedule(20)),
    "presets.sgd": lambda: presets.sgd(1e-2),
    "presets.phb": lambda: presets.phb(1e-2),
    "presets.nag": lambda: presets.nag(1e-2),
    "presets.adam": lambda: presets.adam(1e-2),
    "presets.adamw": lambda: presets.adamw(1e-2, weight_decay=1e-2),
}


def _donation_problem():
  rng = np.random.default_rng(7)
  params = {"w": rng.normal(size=(16, 32)), "b": np.zeros(32),
            "s": 0.5 * rng.normal(size=(4, 8, 8))}
  target = {k: rng.normal(size=v.shape) for k, v in params.items()}

  def loss(p):
    return sum(jnp.mean(jnp.sin(p[k]) * target[k] + 0.5 * p[k] ** 2)
               for k in p)

  fresh = lambda: {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
  return fresh, loss


def _pointers(tree):
  return [x.unsafe_buffer_pointer() for x in jax.tree.leaves(tree)]


def _donated_warnings(caught):
  return [str(w.message) for w in caught if "donat" in str(w.message).lower()]


def test_donation_warning_is_detected():
  """The control for the donation test: a donated buffer XLA cannot reuse
  does raise the warning that test looks for."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    jax.jit(lambda x: jnp.sum(x), donate_argnums=0)(jnp.ones(100))
  assert _donated_warnings(caught)


@pytest.mark.parametrize("case", list(DONATION_CASES))
def test_donated_step(case):
  """``jax.jit(step, donate_argnums=(0, 1))`` on params and state: no
  "donated buffers were not usable" warning, the donated params and
  per-element state buffers are consumed, no state leaf shares a buffer
  with a parameter (at init or after a step), and three donated steps give
  the non-donated run's numbers."""
  fresh, loss = _donation_problem()
  tx = DONATION_CASES[case]()

  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  # the reference: the same steps without donation
  ref_p = fresh()
  ref_s = tx.init(ref_p)
  plain = jax.jit(step)
  for _ in range(3):
    ref_p, ref_s = plain(ref_p, ref_s)

  params = fresh()
  state = tx.init(params)  # eager, as nnx.Optimizer does
  assert not set(_pointers(params)) & set(_pointers(state)), (
      "a state leaf aliases a parameter at init")
  donated = jax.jit(step, donate_argnums=(0, 1))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(3):
      new_params, new_state = donated(params, state)
      jax.block_until_ready((new_params, new_state))
      # every parameter and every per-element buffer was consumed (scalars
      # the step never reads, such as the last learning rate, are pruned
      # from the call by jit and so are left alone)
      kept = [f"params{jax.tree_util.keystr(k)}"
              for k, x in jax.tree_util.tree_leaves_with_path(params)
              if not x.is_deleted()]
      kept += [f"state{jax.tree_util.keystr(k)}"
               for k, x in jax.tree_util.tree_leaves_with_path(state)
               if x.ndim and not x.is_deleted()]
      assert not kept, (i, kept)
      pointers = _pointers((new_params, new_state))
      assert len(set(pointers)) == len(pointers), (
          f"step {i}: two outputs share a buffer")
      params, state = new_params, new_state
  assert not _donated_warnings(caught), _donated_warnings(caught)
  assert relative_error(params, ref_p) <= DONATION_BOUND
  assert relative_error(state, ref_s) <= DONATION_BOUND


# ---------------------------------------------------------------------------
# 6. the matrix oracle under sharding (issue 19)

MATRIX_TIMEOUT_S = 300
MATRIX_CONFIGS = ("muon",) + tuple(f"oracle_{m}"
                                   for m in workers.MATRIX_METHODS)
# The tolerance, from the arithmetic. A polar factor is a global function of
# its matrix: sharded, its Frobenius norm and the products X X^T, A A, B X
# reduce per shard and then across devices, in another order than on one
# device (and the model's own products x @ rows, h @ cols^T reduce over the
# sharded axes too). Per update and per run, on a matrix element's path:
# K = 5 iterations of 3 products of length <= n = 64 (the longer side of
# the 64 x 48 leaves; the iterates have singular values <= 1.2, so each
# product's sum |terms| is O(1) and each contributes <= n U, Higham's
# gamma_n), the normalisation (the squared norm, a sum of 64 * 48 positive
# terms, then a root: relative error ~ sqrt(3072) U ~ 55 U by the
# probabilistic bound of Higham and Mary, SISC 2019), the gradient's sums
# (<= 128 batch terms, the element-wise denominator of "b" and Muon's Adam
# leaves) and the filter's and update's few roundings: all within 16 n U.
# Two runs differ by twice that, 16 n eps_32 (eps_32 = 2 U = 2^-23), and the
# filter's buffer and the parameters carry every update's difference
# forward: after t updates <= t * 16 * n * eps_32. Worst-case sums; it
# ignores the damping of the polar factor's error by the learning rate in
# the parameters (0.02 here) and the slope of the iteration's scalar map
# (Muon's quintic up to 3.4445 per step for the smallest singular values).
# A per-shard norm or Gram matrix (an O(1) change of the polar factor) moves
# the parameters by ~lr = 0.02 relative per step: far beyond it.
# Measured (AVX2, 2 cores): <= 7.1e-7 on the matrix leaves (~12 U),
# <= 2.3e-6 on "b" (Muon's Adam path), 0 on "heads" (sharded on its batch
# axis: no cross-device sum): the bound is ~1000 times the measured worst.
MATRIX_BOUND = workers.MATRIX_STEPS * 16 * 64 * 2.0 ** -23  # 2.4e-3


@pytest.fixture(scope="module")
def matrix_report():
  """One run of the 8-device worker's matrix mode: presets.muon and
  scale_by_autosgm with each matrix_oracle method, side by side."""
  try:
    proc = subprocess.run(
        [sys.executable, str(WORKERS), "matrix"], env=_env(8),
        capture_output=True, text=True, timeout=MATRIX_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    raise WorkerError(f"the matrix worker ran past {MATRIX_TIMEOUT_S} s")
  report = _report(proc.stdout)
  if proc.returncode != 0 or report is None:
    raise WorkerError(f"the matrix worker failed (exit {proc.returncode}):"
                      f"\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  assert report["device_count"] == 8, report["device_count"]
  return report


def test_sharded_matrix_oracle_matches_single_device(matrix_report):
  """A 1-D mesh of 8 devices (auto axes): a (64, 48) matrix sharded on its
  rows, one on its columns, a (8, 16, 24) stack of matrices under
  ``MuonDimensionNumbers(1, 2)`` sharded on its batch axis and a (48,)
  vector; 20 jitted steps of a two-layer model. presets.muon and
  scale_by_autosgm(lowpass_filter(0.95), matrix_oracle(m)) +
  scale_by_learning_rate for m in newton_schulz, cubic, lakic, svd give
  the single-device run's params and state after every step, to float32
  round-off (MATRIX_BOUND)."""
  part = _part(matrix_report, "matrix_auto")
  assert set(part["errors"]) == set(MATRIX_CONFIGS), part["errors"]
  for name in MATRIX_CONFIGS:
    errors = part["errors"][name]
    assert set(errors) >= {"rows", "cols", "heads", "b"}, (name, errors)
    assert all(e <= MATRIX_BOUND for e in errors.values()), (name, errors)
    assert part["moved"][name] > 0.03, (name, part["moved"])


def test_sharded_matrix_oracle_state_keeps_the_parameters_shardings(
    matrix_report):
  """After init (jitted with out_shardings from ``jax.eval_shape``, and
  eager) and after every step, every per-element buffer (the filter's, the
  element-wise denominator's of the vector) has its parameter's sharding,
  one-element leaves are replicated, and everything is addressable."""
  part = _part(matrix_report, "matrix_auto")
  assert part["n_problems"] == 0, "\n".join(part["problems"])


def test_sharded_matrix_oracle_step_does_not_recompile_across_steps(matrix_report):
  """The jitted step with sharded inputs does not compile again across the
  20 steps. It does compile a second time at the second step: the first
  step returns P('x',) for the P('x', None) of the row-sharded leaves (the
  same sharding, another spelling, another jit cache key); optax.adam, the
  control, does the same on this problem, so this is JAX's, not the
  oracle's."""
  part = _part(matrix_report, "matrix_auto")
  after_1, after_2, after_all = part["compiles"]
  assert after_1 == 1, part["compiles"]
  assert after_all == after_2 <= 2, part["compiles"]
  controls = _part(matrix_report, "matrix_controls")
  assert after_all <= controls["optax.adam"], (part["compiles"], controls)
  assert all(": P('x', None" in r and r.endswith("-> P('x',)")
             for r in part["respecced_by_first_step"]), (
                 part["respecced_by_first_step"])


_EXPLICIT_REASON = (
    "under explicit axes the polar iteration's X X^T contracts a sharded "
    "axis with no out_sharding (ShardingTypeError; svd: 'Input 0 to svd "
    "must be unsharded on non-batch dimensions'); optax.contrib.muon fails "
    "the same way")


@pytest.mark.parametrize("layout", [
    pytest.param("rows", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError, reason=_EXPLICIT_REASON)),
    pytest.param("cols", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError, reason=_EXPLICIT_REASON)),
    "heads"])
def test_explicit_mesh_matrix_oracle_traces(matrix_report, layout):
  """Under an explicit-axes mesh each configuration's step traces with the
  one leaf sharded (the others replicated)."""
  part = _part(matrix_report, "matrix_explicit")
  got = {name: part[f"{layout}: {name}"] for name in MATRIX_CONFIGS}
  assert all(v == "ok" for v in got.values()), json.dumps(got, indent=1)


def test_explicit_mesh_matrix_failures_are_optax_muons(matrix_report):
  """Where the step does not trace under explicit axes (matrices sharded on
  a matrix axis), optax.contrib.muon does not either, with the same error
  as presets.muon; batch-sharded stacks trace for both."""
  part = _part(matrix_report, "matrix_explicit")
  for layout in ("rows", "cols"):
    assert part[f"{layout}: optax.contrib.muon"] != "ok", part
    assert part[f"{layout}: optax.contrib.muon"] == part[f"{layout}: muon"]
  assert part["heads: optax.contrib.muon"] == "ok", part
