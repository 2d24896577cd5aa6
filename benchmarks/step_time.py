"""Step-time benchmark of autosgm_optax against its Optax twins and a floor.

Targets:

- presets (``presets.sgd/nag/adam/adamw/nadam`` and ``autosgm(lr)``, the
  Adam point): XLA cost-analysis bytes accessed <= 1.0x their Optax twins
  (the deterministic gate), and time within the control row's spread of
  1.0x; ``presets.muon`` against ``optax.contrib.muon`` likewise;
  ``presets.qhadam`` has no twin and is shown against ``optax.adam``
  (for information: what mixing ``g`` into both moments costs);
- the full configuration (``autosgm(lr, gamma=0.5528,
  numerator="correlation", window=raised_cosine_window(1000),
  weight_decay=1e-4)``, with and without the numerator's per-leaf
  averaging): <= 1.3x (goal 1.15x) a floor kernel timed in the same run.
  The floor is a hand-written jnp step that streams the same buffers (reads
  the parameters, the gradient and the same number of per-element state
  buffers, writes the new state buffers and the new parameters) with
  trivial arithmetic; for the averaged variant it also has a per-leaf
  reduction whose result scales the final update;
- learning dynamics: the full configuration
  with ``diagnostics="summary"`` <= 1.3x the same configuration without
  diagnostics, timed in the same interleaved run. Recorded on every update
  the summary level keeps ``alpha(t-1)`` and ``h(t-1) = gamma g(t-1) +
  (beta / eta) z(t-1)`` per element (2 more buffers, each written and read)
  and reduces four quantities per leaf three ways (12 reductions, each a
  pass over the leaf): by stream count alone about 2x the full
  configuration on a memory-bound CPU. With ``diagnostics_every=k`` the
  record is taken in a conditional on every k-th update only; the row
  reports the steps between records, the step before a record (which keeps
  ``h``), a record, and the average over a period of k updates computed from
  those three medians (a period holds k - 2, 1 and 1 of them).

Every step is ``(params, state, grads) -> (new_params, new_state)`` (update
plus ``optax.apply_updates``), jitted with ``donate_argnums=(0, 1)`` and
compiled once; the same executable gives XLA's cost analysis and is timed.
All optimizers are timed interleaved: round r runs step r of every
optimizer in a fresh random order (seeded), each call followed by
``block_until_ready``. A rotated order would keep every optimizer behind the
same predecessor (rotation preserves the cycle): the first entry then always
ran after the diagnostics row, which evicts the caches, and two identical
copies of ``optax.adam`` read 0.8x. The
table reports per-optimizer medians. The control row times two independent
copies of ``optax.adam`` against each other: its ratio shows the noise.

With ``--ablation`` it times, instead, each trick of the CPU backend
(``autosgm_optax/_src/backend.py``) on and off, side by side, on the
configurations the tricks target: the ratio is the step without the trick
over the step with it, the trick's earnings (it is kept only if it earns at
least 5% on the configuration it targets).

Usage:
  python benchmarks/step_time.py                 # sizes 1e6, 1e7
  python benchmarks/step_time.py --ablation      # the backend's tricks
  python benchmarks/step_time.py --quick         # a smoke run (seconds)
  python benchmarks/step_time.py --sizes 1e6 --steps 101

Prints to stdout only; writes no files.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import autosgm_optax as asgm
from autosgm_optax import presets
from autosgm_optax._src import backend

LR = 1e-3
FULL_KWARGS = dict(gamma=0.5528, numerator="correlation", weight_decay=1e-4)
FLOOR_TARGET = 1.3
FLOOR_GOAL = 1.15
BYTES_TARGET = 1.0
DIAGNOSTICS_TARGET = 1.3
EVERY = 10  # diagnostics_every of the cadence row


# ---------------------------------------------------------------------------
# parameters and gradients


def leaf_shapes(total: int, leaves: int) -> list[tuple[int, ...]]:
  """``leaves`` shapes (matrices and vectors) holding exactly ``total``
  elements: matrices of varied widths carry most of the weight, one leaf in
  three is a vector (a bias or a norm scale), the last leaf is a vector that
  takes the remainder."""
  if leaves < 1:
    raise ValueError("--leaves must be >= 1")
  kinds = ["vector" if (i % 3 == 2 or i == leaves - 1) else "matrix"
           for i in range(leaves)]
  weights = [0.05 if k == "vector" else 1.0 + 0.5 * (i % 4)
             for i, k in enumerate(kinds)]
  widths = (128, 256, 512, 1024, 384)
  shapes, used = [], 0
  for i, (kind, w) in enumerate(zip(kinds, weights)):
    if i == leaves - 1:
      size = max(total - used, 1)
      shapes.append((size,))
      used += size
      break
    size = max(int(total * w / sum(weights)), 1)
    if kind == "matrix":
      cols = widths[i % len(widths)]
      while cols > 1 and size // cols < 1:
        cols //= 2
      shapes.append((size // cols, cols))
      used += (size // cols) * cols
    else:
      shapes.append((size,))
      used += size
  return shapes


def make_tree(shapes, key, scale: float) -> dict[str, jax.Array]:
  keys = jax.random.split(key, len(shapes))
  return {f"leaf{i:02d}": scale * jax.random.normal(k, s, jnp.float32)
          for i, (k, s) in enumerate(zip(keys, shapes))}


def tree_nbytes(tree: Any) -> int:
  return sum(int(x.nbytes) for x in jax.tree.leaves(tree)
             if hasattr(x, "nbytes"))


# ---------------------------------------------------------------------------
# the floor kernels


class Floor(NamedTuple):
  """A trivial optimizer that streams ``buffers`` per-element state buffers
  (and, when ``reduce``, a per-leaf reduction that scales the update)."""

  init: Callable[[Any], Any]
  update_and_apply: Callable[[Any, Any, Any], tuple[Any, Any]]


def floor_kernel(buffers: int, reduce: bool) -> Floor:
  poles = [0.9 - 0.05 * j for j in range(buffers)]

  def init(params):
    return tuple(jax.tree.map(jnp.zeros_like, params) for _ in range(buffers))

  def leaf(p, g, *olds):
    news = [a * old + (1 - a) * g for a, old in zip(poles, olds)]
    total = news[0]
    for x in news[1:]:
      total = total + x
    scale = LR
    if reduce:  # a separate per-leaf pass; its result scales the update
      scale = LR * jnp.mean(jnp.abs(news[-1]))
    return p - scale * total, tuple(news)

  def update_and_apply(params, state, grads):
    leaves_p, treedef = jax.tree.flatten(params)
    leaves_g = treedef.flatten_up_to(grads)
    leaves_s = [treedef.flatten_up_to(s) for s in state]
    new_p, new_s = [], [[] for _ in range(buffers)]
    for i, (p, g) in enumerate(zip(leaves_p, leaves_g)):
      np_, news = leaf(p, g, *(s[i] for s in leaves_s))
      new_p.append(np_)
      for j, x in enumerate(news):
        new_s[j].append(x)
    return (treedef.unflatten(new_p),
            tuple(treedef.unflatten(s) for s in new_s))

  return Floor(init, update_and_apply)


# ---------------------------------------------------------------------------
# one timed optimizer


def bytes_accessed(compiled) -> Optional[float]:
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if analysis is None:
    return None
  if isinstance(analysis, dict):
    analysis = [analysis]
  total, found = 0.0, False
  for entry in analysis:
    if entry and "bytes accessed" in entry:
      total += float(entry["bytes accessed"])
      found = True
  return total if found else None


class Entry:
  """An optimizer, its compiled donating step, its own buffers and times."""

  def __init__(self, name: str, opt: Any, params0: Any, grads: Any):
    self.name = name
    if isinstance(opt, Floor):
      init, step = opt.init, opt.update_and_apply
    else:
      init = opt.init

      def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    self.params = jax.tree.map(jnp.copy, params0)
    self.state = init(self.params)
    self.state_ratio = tree_nbytes(self.state) / tree_nbytes(self.params)
    self.compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
        self.params, self.state, grads).compile()
    self.bytes = bytes_accessed(self.compiled)
    try:
      self.temp_bytes = self.compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # pylint: disable=broad-except
      self.temp_bytes = None
    self.faults: list[int] = []
    self.grads = grads
    self.times: list[float] = []
    jax.block_until_ready((self.params, self.state))

  def step(self) -> float:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    self.params, self.state = self.compiled(self.params, self.state,
                                            self.grads)
    jax.block_until_ready((self.params, self.state))
    t = time.perf_counter() - t0
    self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return t

  def release(self) -> None:
    self.params = self.state = self.compiled = None

  @property
  def median_ms(self) -> float:
    return 1e3 * statistics.median(self.times)


def time_interleaved(order: list[Entry], args) -> None:
  """``args.warmup`` untimed steps of each entry, then ``args.steps`` timed
  rounds, each running every entry once in a fresh random order."""
  for _ in range(args.warmup):
    for e in order:
      e.step()
  rng = np.random.default_rng(args.seed)
  for _ in range(args.steps):
    for i in rng.permutation(len(order)):
      order[i].times.append(order[i].step())


def cadence_steps(entry: Entry, warmup: int) -> dict[str, list[float]]:
  """The timed steps of a ``diagnostics_every=EVERY`` entry by kind: the
  recorded updates (number a multiple of EVERY), the updates before them
  (which keep the history for e), and the others."""
  kinds = {"record": [], "history": [], "plain": []}
  for j, t in enumerate(entry.times):
    number = warmup + j + 1  # updates are numbered from 1
    kind = ("record" if number % EVERY == 0 else
            "history" if (number + 1) % EVERY == 0 else "plain")
    kinds[kind].append(t)
  return kinds


def cadence_verdict(kinds: dict[str, list[float]], twin_ms: float) -> str:
  """Per-kind ratios and the average over a period of k updates, from the
  per-kind medians: ((k - 2) plain + history + record) / k."""
  med = {k: 1e3 * statistics.median(v) / twin_ms for k, v in kinds.items()
         if v}
  if len(med) < 3:
    return "- cadence row: too few timed steps to see every kind"
  average = lambda k: ((k - 2) * med["plain"] + med["history"]
                       + med["record"]) / k
  smallest = next((k for k in range(2, 100001)
                   if average(k) <= DIAGNOSTICS_TARGET), None)
  where = (f"meets target for diagnostics_every >= {smallest}"
           if smallest else "MISSES target for every k")
  return (f"- diagnostics_every: steps between records {med['plain']:.3f}x, "
          f"the step before a record (keeps h) {med['history']:.3f}x, a "
          f"record {med['record']:.3f}x the full config (medians of "
          f"{len(kinds['plain'])}, {len(kinds['history'])}, "
          f"{len(kinds['record'])} steps); average over a period: every "
          f"{EVERY} {average(EVERY):.3f}x, every 100 {average(100):.3f}x: "
          f"{where} (target <= {DIAGNOSTICS_TARGET}x)")


def ratios_per_round(a: Entry, b: Entry) -> list[float]:
  return [x / y for x, y in zip(a.times, b.times)]


def quantile(xs, q):
  return float(np.quantile(np.asarray(xs), q))


def spread_text(per_round: list[float]) -> str:
  """The per-round ratios' median and interquartile range, as printed."""
  return (f"median {statistics.median(per_round):.3f}, interquartile "
          f"[{quantile(per_round, 0.25):.3f}, {quantile(per_round, 0.75):.3f}]")


# ---------------------------------------------------------------------------
# the rows


def optimizers() -> tuple[list[tuple[str, Callable[[], Any]]],
                          list[tuple[str, str, str, str]]]:
  """(entry name, factory) pairs and rows (label, ours, twin, kind)."""
  window = lambda: asgm.raised_cosine_window(1000)
  entries = [
      ("optax.adam", lambda: optax.adam(LR)),
      ("optax.adam (copy)", lambda: optax.adam(LR)),
      ("presets.sgd", lambda: presets.sgd(LR, momentum=0.9)),
      ("optax.sgd", lambda: optax.sgd(LR, 0.9)),
      ("presets.nag", lambda: presets.nag(LR)),
      ("optax.sgd nesterov", lambda: optax.sgd(LR, 0.9, nesterov=True)),
      ("presets.adam", lambda: presets.adam(LR)),
      ("presets.adamw", lambda: presets.adamw(LR)),
      ("optax.adamw", lambda: optax.adamw(LR)),
      ("presets.nadam", lambda: presets.nadam(LR)),
      ("optax.nadam", lambda: optax.nadam(LR)),
      ("presets.qhadam", lambda: presets.qhadam(LR)),
      ("presets.muon", lambda: presets.muon(LR)),
      ("optax.contrib.muon", lambda: optax.contrib.muon(LR)),
      ("autosgm(lr)", lambda: asgm.autosgm(LR)),
      ("full", lambda: asgm.autosgm(LR, window=window(), **FULL_KWARGS)),
      ("floor (4 buffers + reduction)", lambda: floor_kernel(4, True)),
      ("full, no averaging", lambda: asgm.autosgm(
          LR, window=window(), numerator_average=False,
          numerator_smoothing=None, **FULL_KWARGS)),
      ("floor (4 buffers)", lambda: floor_kernel(4, False)),
      ("full, matrix path", lambda: asgm.autosgm(
          LR, window=window(), matrix="newton_schulz", **FULL_KWARGS)),
      ("full, diagnostics", lambda: asgm.autosgm(
          LR, window=window(), diagnostics="summary", **FULL_KWARGS)),
      (f"full, diagnostics every {EVERY}", lambda: asgm.autosgm(
          LR, window=window(), diagnostics="summary",
          diagnostics_every=EVERY, **FULL_KWARGS)),
  ]
  rows = [
      ("control: optax.adam vs optax.adam", "optax.adam (copy)",
       "optax.adam", "control"),
      ("presets.sgd(lr, momentum=0.9) vs optax.sgd", "presets.sgd",
       "optax.sgd", "preset"),
      ("presets.nag vs optax.sgd(nesterov=True)", "presets.nag",
       "optax.sgd nesterov", "preset"),
      ("presets.adam vs optax.adam", "presets.adam", "optax.adam", "preset"),
      ("presets.adamw vs optax.adamw", "presets.adamw", "optax.adamw",
       "preset"),
      ("presets.nadam vs optax.nadam", "presets.nadam", "optax.nadam",
       "preset"),
      ("presets.qhadam vs optax.adam (no twin; information)",
       "presets.qhadam", "optax.adam", "info"),
      ("presets.muon vs optax.contrib.muon", "presets.muon",
       "optax.contrib.muon", "preset"),
      ("autosgm(lr) vs optax.adam", "autosgm(lr)", "optax.adam", "preset"),
      ("full config vs floor (4 buffers + reduction)", "full",
       "floor (4 buffers + reduction)", "floor"),
      ("full config, no averaging vs floor (4 buffers)", "full, no averaging",
       "floor (4 buffers)", "floor"),
      ("full config, matrix path (Newton-Schulz) vs full config "
       "(information)", "full, matrix path", "full", "info"),
      ('full config, diagnostics="summary" vs full config',
       "full, diagnostics", "full", "diagnostics"),
      (f'full config, diagnostics="summary", diagnostics_every={EVERY}: '
       "steps between records vs full config",
       f"full, diagnostics every {EVERY}", "full", "cadence"),
  ]
  return entries, rows


def run_size(total: int, args) -> None:
  shapes = leaf_shapes(total, args.leaves)
  n = sum(int(np.prod(s)) for s in shapes)
  key_p, key_g = jax.random.split(jax.random.PRNGKey(args.seed))
  params0 = make_tree(shapes, key_p, 0.1)
  grads = make_tree(shapes, key_g, 1.0)  # fixed for the whole run
  jax.block_until_ready((params0, grads))

  print(f"\n## {n:,} parameters ({n * 4 / 2**20:.1f} MiB float32), "
        f"{len(shapes)} leaves")
  n_mat = sum(len(s) == 2 for s in shapes)
  print(f"leaves: {n_mat} matrices, {len(shapes) - n_mat} vectors; shapes "
        + ", ".join("x".join(map(str, s)) for s in shapes))

  entry_specs, rows = optimizers()
  t0 = time.perf_counter()
  entries = {}
  for name, factory in entry_specs:
    entries[name] = Entry(name, factory(), params0, grads)
  compile_s = time.perf_counter() - t0
  del params0

  load_before = _load()
  time_interleaved(list(entries.values()), args)
  bench_s = time.perf_counter() - t0 - compile_s
  print(f"(compile {compile_s:.1f} s; {args.warmup} warm-up + "
        f"{args.steps} timed interleaved steps per optimizer, "
        f"{bench_s:.1f} s; load average before timing {load_before})\n")

  control = entries["optax.adam (copy)"], entries["optax.adam"]
  control_ratio = control[0].median_ms / control[1].median_ms
  per_round = ratios_per_round(*control)
  lo, hi = quantile(per_round, 0.25), quantile(per_round, 0.75)
  # The spread of 1.0x that the control shows in this run.
  spread = max(abs(control_ratio - 1), (hi - lo) / 2)

  smallest_leaf = min(int(np.prod(s)) for s in shapes) * 4
  scalar_slack = min(1024, smallest_leaf // 2)
  print("| row | ours (ms) | twin/floor (ms) | time ratio "
        "| bytes-accessed ratio | state/params (ours, twin) |")
  print("|---|---:|---:|---:|---:|---:|")
  verdicts = []
  for label, ours_name, twin_name, kind in rows:
    ours, twin = entries[ours_name], entries[twin_name]
    ours_ms = ours.median_ms
    if kind == "cadence":  # the steps between records; the rest below
      kinds = cadence_steps(ours, args.warmup)
      ours_ms = statistics.median(kinds["plain"]) * 1e3
    ratio = ours_ms / twin.median_ms
    if ours.bytes is not None and twin.bytes:
      bratio = ours.bytes / twin.bytes
      excess = ours.bytes - twin.bytes
      btxt = f"{bratio:.3f} ({excess:+,.0f} B)"
    else:
      bratio = excess = None
      btxt = "n/a"
    state = f"{ours.state_ratio:.2f}, {twin.state_ratio:.2f}"
    print(f"| {label} | {ours_ms:.3f} | {twin.median_ms:.3f} "
          f"| {ratio:.3f} | {btxt} | {state} |")
    if kind == "preset":
      # "Scalars aside": a few scalar state entries may differ; any extra
      # per-element traffic costs at least a whole leaf.
      bytes_ok = excess is not None and (
          excess <= BYTES_TARGET * twin.bytes - twin.bytes + scalar_slack)
      if abs(ratio - 1) <= spread:
        where = "within"
      elif ratio < 1:
        where = "faster than (not a miss)"
      else:
        where = "SLOWER than"
      verdicts.append(
          f"- {label}: bytes {btxt} "
          f"{'<=' if bytes_ok else 'MISSES'} 1.0 (gate); time {ratio:.3f} "
          f"{where} the control spread 1 +- {spread:.3f}")
    elif kind == "floor":
      mark = ("meets goal" if ratio <= FLOOR_GOAL else
              "meets target" if ratio <= FLOOR_TARGET else "MISSES target")
      verdicts.append(
          f"- {label}: {ratio:.3f}x the floor: {mark} "
          f"(target <= {FLOOR_TARGET}x, goal {FLOOR_GOAL}x); per-round "
          f"ratios: {spread_text(ratios_per_round(ours, twin))}")
    elif kind == "diagnostics":
      mark = ("meets target" if ratio <= DIAGNOSTICS_TARGET
              else "MISSES target")
      verdicts.append(
          f"- {label}: {ratio:.3f}x without diagnostics: {mark} "
          f"(target <= {DIAGNOSTICS_TARGET}x)")
    elif kind == "cadence":
      verdicts.append(cadence_verdict(kinds, twin.median_ms))

  print(f"\ncontrol row (two copies of optax.adam): time ratio "
        f"{control_ratio:.3f}; per-round ratios: {spread_text(per_round)}, "
        f"range [{min(per_round):.3f}, "
        f"{max(per_round):.3f}]; spread used for the presets: "
        f"1 +- {spread:.3f}")
  print("XLA temp buffers per step (compiled memory_analysis) and minor "
        "page faults per timed step (median; a temp above glibc's 32 MiB mmap "
        "threshold is mapped afresh every step):")
  listed, others = [], []
  for e in entries.values():
    temp = (e.temp_bytes or 0) / 2**20
    faults = statistics.median(e.faults[-args.steps:])
    if temp >= 0.05 or faults > 0:
      listed.append(f"{e.name} {temp:.1f} MiB, {faults:.0f} faults")
    else:
      others.append(e.name)
  print("; ".join(listed + ([f"all others ({len(others)}) 0"] if others
                            else [])))
  print(f"load average after the run: {_load()}")
  print("targets (see the module docstring; bytes gate: at most "
        f"{scalar_slack} B of scalars above the twin):")
  print("\n".join(verdicts))
  for e in entries.values():
    e.release()


def ablation_configs() -> list[tuple[str, Callable[[], Any], tuple]]:
  """(name, factory, the tricks that target it)."""
  window = lambda: asgm.raised_cosine_window(1000)
  full = lambda **kw: asgm.autosgm(LR, window=window(), **FULL_KWARGS, **kw)
  return [
      ("full", full, ("in_place_filter", "leaf_by_leaf")),
      ("full, no averaging", lambda: full(
          numerator_average=False, numerator_smoothing=None),
       ("in_place_filter", "leaf_by_leaf")),
      ("a zero, no numerator (gamma=0.5528)",
       lambda: asgm.autosgm(LR, gamma=0.5528), ("in_place_filter",)),
      ('full, diagnostics="summary"', lambda: full(diagnostics="summary"),
       ("ordered_record",)),
  ]


def run_ablation(total: int, args) -> None:
  shapes = leaf_shapes(total, args.leaves)
  key_p, key_g = jax.random.split(jax.random.PRNGKey(args.seed))
  params0 = make_tree(shapes, key_p, 0.1)
  grads = make_tree(shapes, key_g, 1.0)
  jax.block_until_ready((params0, grads))
  print(f"\n## ablation, {sum(int(np.prod(s)) for s in shapes):,} "
        f"parameters, {len(shapes)} leaves")
  entries = {}
  t0 = time.perf_counter()
  for name, factory, tricks in ablation_configs():
    for off in ((),) + tuple((t,) for t in tricks):
      with backend.without(*off):
        entries[(name, off)] = Entry(f"{name} -{off}", factory(), params0,
                                     grads)
  compile_s = time.perf_counter() - t0
  time_interleaved(list(entries.values()), args)
  print(f"(compile {compile_s:.1f} s; {args.steps} timed interleaved steps "
        f"each; load average {_load()})\n")
  print("| configuration | trick off | with (ms) | without (ms) | time ratio "
        "| bytes ratio | temp MiB (with, without) |")
  print("|---|---|---:|---:|---:|---:|---:|")
  verdicts = []
  for name, _, tricks in ablation_configs():
    on = entries[(name, ())]
    for trick in tricks:
      off = entries[(name, (trick,))]
      ratio = off.median_ms / on.median_ms
      bratio = (off.bytes / on.bytes) if off.bytes and on.bytes else float(
          "nan")
      temps = ", ".join(f"{(e.temp_bytes or 0) / 2**20:.1f}"
                        for e in (on, off))
      print(f"| {name} | {trick} | {on.median_ms:.3f} | {off.median_ms:.3f} "
            f"| {ratio:.3f} | {bratio:.3f} | {temps} |")
      verdicts.append(f"- {trick} on {name}: earns {100 * (ratio - 1):+.1f}%"
                      f" ({'keep' if ratio >= 1.05 else 'below 5%'})")
  print("\n".join(verdicts))
  for e in entries.values():
    e.release()


def _jaxlib_version() -> str:
  try:
    import jaxlib  # pylint: disable=import-outside-toplevel
    return jaxlib.__version__
  except (ImportError, AttributeError):
    return "?"


def _load() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``, as ``lscpu`` prints it)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def parse_sizes(text: str) -> list[int]:
  return [int(float(s)) for s in text.split(",") if s.strip()]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="1e6,1e7",
                      help="comma-separated total parameter counts")
  parser.add_argument("--leaves", type=int, default=20,
                      help="number of parameter leaves")
  parser.add_argument("--steps", type=int, default=31,
                      help="timed interleaved steps per optimizer (>= 25)")
  parser.add_argument("--warmup", type=int, default=3,
                      help="untimed steps per optimizer after compiling")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--ablation", action="store_true",
                      help="time each trick of the CPU backend on and off")
  parser.add_argument("--quick", action="store_true",
                      help="smoke run: size 1e5, at most 6 leaves, 5 steps, 1 warm-up")
  args = parser.parse_args(argv)
  if args.quick:
    args.sizes, args.steps, args.warmup = "1e5", 5, 1
    args.leaves = min(args.leaves, 6)
  elif args.steps < 25:
    print(f"warning: --steps {args.steps} < 25; medians will be noisy",
          file=sys.stderr)

  cmd = shlex.join([sys.executable] + (sys.argv if argv is None else
                                       ["step_time.py"] + list(argv)))
  dev = jax.devices()[0]
  cpu = cpu_model()
  print(f"command: {cmd}")
  print(f"jax {jax.__version__}, jaxlib {_jaxlib_version()}, "
        f"optax {optax.__version__}, autosgm_optax {asgm.__version__}, "
        f"python {platform.python_version()}")
  print(f"device: {dev.platform} {dev.device_kind} ({jax.device_count()} "
        f"device(s)); host CPU {cpu}, {os.cpu_count()} cores")
  print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
  print(f"learning rate {LR}; float32 parameters; full configuration: "
        f"autosgm(lr, gamma=0.5528, numerator='correlation', "
        f"window=raised_cosine_window(1000), weight_decay=1e-4)")
  if args.quick:
    print("--quick: a smoke run; its timings say nothing about the targets")
  for total in parse_sizes(args.sizes):
    (run_ablation if args.ablation else run_size)(total, args)


if __name__ == "__main__":
  main()
