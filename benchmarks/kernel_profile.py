"""Where a compiled step's time goes, kernel by kernel, on the CPU.

``benchmarks/step_time.py`` says how much slower the full configuration is
than its floor; this script says where. It compiles the same donating steps
(the full configuration, the floor with 4 buffers and a reduction,
``optax.adam``), runs each with ``jax.profiler`` tracing, and reads the
trace's kernel events (the compiled program's instructions: fusions, the
reductions, copies). Per optimizer and cache condition it prints:

- the step's median time, measured without the profiler;
- the kernels' summed time per step, by kind (an instruction's name without
  its ``.N`` suffix: ``multiply_add_fusion``, ``ynn_fusion``, ...), and the
  count of each kind per step;
- the kernels' wall time per step (first start to last end) and their
  concurrency, summed time over wall time: above 1 where independent
  kernels ran at once on different threads.

Two cache conditions: ``warm`` runs the steps back to back, so that what one
step leaves in the caches the next step reads; ``flushed`` writes a buffer
of ``--flush-mib`` MiB (default 64, twice a 32 MiB L3) before every step,
so that the step starts from memory, as after a forward and backward pass
over a model larger than the caches. ``step_time.py`` interleaves many
optimizers, between the two.

The profiler's own overhead makes every kernel a few microseconds longer,
and the optimizers run one after the other, not interleaved: the step
times of two processes can differ by 1.5x (the buffers' placement), so
ratios of optimizers come from ``step_time.py``; this script shows the
kernels' shares and concurrency within one step.

Usage:
  python benchmarks/kernel_profile.py                 # sizes 1e6, 1e7
  python benchmarks/kernel_profile.py --sizes 1e6 --steps 30
  python benchmarks/kernel_profile.py --quick         # a smoke run

Prints to stdout only; the traces go to a temporary directory, removed.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
from typing import Any
from typing import Callable
from typing import Optional

import jax
import numpy as np
import optax
import step_time as st

#: The rows of ``step_time.py`` this script profiles, by its entry names.
PROFILED = ("full", "floor (4 buffers + reduction)", "optax.adam")


def optimizers() -> list[tuple[str, Callable[[], Any]]]:
  factories = dict(st.optimizers()[0])
  return [(name, factories[name]) for name in PROFILED]


def kernel_names(compiled: Any) -> set[str]:
  """The names of the instructions of the compiled program's entry
  computation: the kernels its trace events are named after."""
  text = compiled.as_text()
  entry = text[text.index("\nENTRY"):] if "\nENTRY" in text else text
  return set(re.findall(r"^\s*(?:ROOT )?%(\S+) = ", entry, re.M))


def kind(name: str) -> str:
  return re.sub(r"\.\d+$", "", name)


def trace_events(directory: str) -> list[dict]:
  files = sorted(glob.glob(os.path.join(directory, "**", "*.trace.json.gz"),
                           recursive=True))
  if not files:
    return []
  with gzip.open(files[-1]) as f:
    events = json.load(f).get("traceEvents", [])
  return [e for e in events if e.get("ph") == "X" and "dur" in e]


def profile(entry: st.Entry, steps: int, flush: Optional[np.ndarray]) -> dict:
  """Median step time (without the profiler), then ``steps`` traced steps:
  kernel time per kind, launches per kind, kernel wall and concurrency."""

  def one() -> float:
    if flush is not None:
      np.add(flush, 1, out=flush)  # writes every byte: evicts the caches
    return entry.step()

  for _ in range(3):
    one()
  median_ms = 1e3 * statistics.median(one() for _ in range(steps))
  names = kernel_names(entry.compiled)
  with tempfile.TemporaryDirectory() as directory:
    jax.profiler.start_trace(directory)
    for _ in range(steps):
      one()
    jax.profiler.stop_trace()
    events = trace_events(directory)
  kernels = [e for e in events if e["name"] in names]
  per_kind: dict[str, float] = collections.defaultdict(float)
  launches: collections.Counter = collections.Counter()
  for e in kernels:
    per_kind[kind(e["name"])] += e["dur"] / steps
    launches[kind(e["name"])] += 1
  # One window per step: from one execution's start to the next one's.
  starts = sorted(e["ts"] for e in events
                  if e["name"].startswith("CommonPjRtLoadedExecutable::Execute"
                                          "HelperOnSingleDevice"))
  walls, sums = [], []
  for t0, t1 in zip(starts, starts[1:] + [float("inf")]):
    inside = [e for e in kernels if t0 <= e["ts"] < t1]
    if inside:
      walls.append(max(e["ts"] + e["dur"] for e in inside)
                   - min(e["ts"] for e in inside))
      sums.append(sum(e["dur"] for e in inside))
  wall = statistics.median(walls) if walls else float("nan")
  busy = statistics.median(sums) if sums else float("nan")
  return dict(median_ms=median_ms, per_kind=dict(per_kind),
              launches={k: v / steps for k, v in launches.items()},
              wall_us=wall, concurrency=busy / wall if walls else float("nan"))


def run_size(total: int, args) -> None:
  shapes = st.leaf_shapes(total, args.leaves)
  params = st.make_tree(shapes, jax.random.PRNGKey(0), 1.0)
  grads = st.make_tree(shapes, jax.random.PRNGKey(1), 1e-2)
  flush = np.ones(args.flush_mib * 2**20 // 4, np.float32)
  print(f"\n## {total:,} parameters, {args.leaves} leaves")
  results = {}
  for name, make in optimizers():
    entry = st.Entry(name, make(), params, grads)
    for condition, buffer in (("warm", None), ("flushed", flush)):
      results[name, condition] = profile(entry, args.steps, buffer)
    entry.release()
  for condition in ("warm", "flushed"):
    print(f"\n### {condition}"
          + (f" ({args.flush_mib} MiB written before every step)"
             if condition == "flushed" else " (steps back to back)"))
    print("\n| optimizer | step (ms) | kernel wall (us) | concurrency "
          "| kernel time per step by kind (us, launches) |")
    print("|---|---:|---:|---:|---|")
    for name, _ in optimizers():
      r = results[name, condition]
      kinds = sorted(r["per_kind"].items(), key=lambda kv: -kv[1])
      shown = ", ".join(f"{k} {v:.0f} ({r['launches'][k]:.0f})"
                        for k, v in kinds if v >= 0.02 * sum(r["per_kind"]
                                                             .values()))
      print(f"| {name} | {r['median_ms']:.3f} | {r['wall_us']:.0f} "
            f"| {r['concurrency']:.2f} "
            f"| {shown or 'no kernel events in the trace'} |")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="1e6,1e7")
  parser.add_argument("--leaves", type=int, default=20)
  parser.add_argument("--steps", type=int, default=20,
                      help="timed and traced steps per optimizer and "
                      "condition")
  parser.add_argument("--flush-mib", type=int, default=64,
                      help="MiB written before every step of the flushed "
                      "condition")
  parser.add_argument("--quick", action="store_true",
                      help="smoke run: size 1e4, 4 leaves, 3 steps, 1 MiB")
  args = parser.parse_args(argv)
  if args.quick:
    args.sizes, args.leaves, args.steps, args.flush_mib = "1e4", 4, 3, 1
  cmd = shlex.join([sys.executable] + (sys.argv if argv is None else
                                       ["kernel_profile.py"] + list(argv)))
  print(f"command: {cmd}")
  print(f"jax {jax.__version__}, optax {optax.__version__}; host CPU "
        f"{st.cpu_model()}, {os.cpu_count()} cores")
  if args.quick:
    print("--quick: a smoke run; its timings say nothing")
  for total in st.parse_sizes(args.sizes):
    run_size(total, args)


if __name__ == "__main__":
  main()
