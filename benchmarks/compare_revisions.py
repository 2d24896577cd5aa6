"""Side-by-side step times of this checkout against an earlier revision.

The earlier revision's package is taken from git (``git archive``), renamed
(``autosgm_optax`` -> ``autosgm_optax_base``) into a temporary folder and
imported beside this checkout's, in the same process. Each configuration
of both is compiled once and timed interleaved (a fresh random order each
round, as ``step_time.py``): the ratio new / base is measured under the
same load.

Usage:
  python benchmarks/compare_revisions.py --base d686009 --sizes 1e6,1e7

Prints to stdout only; the temporary folder is removed.
"""

from __future__ import annotations

import argparse
import importlib
import io
import pathlib
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile

import jax
import numpy as np

import step_time as st

ROOT = pathlib.Path(__file__).resolve().parent.parent


def configs(asgm):
  window = lambda: asgm.raised_cosine_window(1000)
  return {
      "autosgm(lr) (the Adam point)": lambda: asgm.autosgm(st.LR),
      "full": lambda: asgm.autosgm(st.LR, window=window(), **st.FULL_KWARGS),
      "full, no averaging": lambda: asgm.autosgm(
          st.LR, window=window(), numerator_average=False,
          numerator_smoothing=None, **st.FULL_KWARGS),
      'full, diagnostics="summary"': lambda: asgm.autosgm(
          st.LR, window=window(), diagnostics="summary", **st.FULL_KWARGS),
      'full, diagnostics="summary", every 100': lambda: asgm.autosgm(
          st.LR, window=window(), diagnostics="summary",
          diagnostics_every=100, **st.FULL_KWARGS),
  }


def load_base(rev: str, folder: pathlib.Path):
  """The package at ``rev``, renamed and imported from ``folder``."""
  data = subprocess.run(["git", "archive", rev, "autosgm_optax"], cwd=ROOT,
                        check=True, capture_output=True).stdout
  with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    try:
      tar.extractall(folder, filter="data")
    except TypeError:  # Python releases before the extraction filters
      tar.extractall(folder)  # noqa: S202 (our own git archive)
  src = folder / "autosgm_optax"
  dst = folder / "autosgm_optax_base"
  src.rename(dst)
  for path in dst.rglob("*.py"):
    path.write_text(path.read_text().replace("autosgm_optax",
                                             "autosgm_optax_base"))
  sys.path.insert(0, str(folder))
  return importlib.import_module("autosgm_optax_base")


def run(total: int, base, new, args) -> None:
  shapes = st.leaf_shapes(total, args.leaves)
  key_p, key_g = jax.random.split(jax.random.PRNGKey(args.seed))
  params0 = st.make_tree(shapes, key_p, 0.1)
  grads = st.make_tree(shapes, key_g, 1.0)
  entries = {}
  for label, module in (("base", base), ("new", new)):
    for name, factory in configs(module).items():
      entries[(name, label)] = st.Entry(f"{name} ({label})", factory(),
                                        params0, grads)
  order = list(entries.values())
  st.time_interleaved(order, args)
  print(f"\n## {sum(int(np.prod(s)) for s in shapes):,} parameters, "
        f"{len(shapes)} leaves, {args.steps} interleaved steps\n")
  print("| configuration | base (ms) | new (ms) | new / base | per-round "
        "ratio, interquartile | bytes new / base |")
  print("|---|---:|---:|---:|---:|---:|")
  for name in configs(new):
    b, n = entries[(name, "base")], entries[(name, "new")]
    rounds = st.ratios_per_round(n, b)
    bratio = n.bytes / b.bytes if n.bytes and b.bytes else float("nan")
    print(f"| {name} | {b.median_ms:.3f} | {n.median_ms:.3f} "
          f"| {n.median_ms / b.median_ms:.3f} "
          f"| [{st.quantile(rounds, 0.25):.3f}, {st.quantile(rounds, 0.75):.3f}]"
          f" | {bratio:.3f} |")
  for e in order:
    e.release()


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--base", required=True, help="a git revision")
  parser.add_argument("--sizes", default="1e6,1e7")
  parser.add_argument("--leaves", type=int, default=20)
  parser.add_argument("--steps", type=int, default=51)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  new = importlib.import_module("autosgm_optax")
  print("command: " + shlex.join([sys.executable] + sys.argv))
  print(f"jax {jax.__version__}; host CPU {st.cpu_model()}; python "
        f"{platform.python_version()}")
  with tempfile.TemporaryDirectory() as tmp:
    base = load_base(args.base, pathlib.Path(tmp))
    for total in st.parse_sizes(args.sizes):
      run(total, base, new, args)


if __name__ == "__main__":
  main()
