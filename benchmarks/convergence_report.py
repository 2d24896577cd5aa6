"""Analysis of ``benchmarks/convergence.py``'s results: tables and plots.

Reads ``<out>/results.json`` (no training, no JAX) and, for each task:

- the summary table: AdamW, the best unity configuration and the best
  correlation configuration, each at its own best validation learning rate:
  the mean test metric with its 95% t-interval over seeds, the difference
  to tuned AdamW's test metric paired over seeds (a seed has the same
  initial weights and data order for every configuration, so the paired
  interval is much narrower than the two intervals; for the quadratic the
  ratio, a geometric mean), the mean validation metric, the final training
  loss, the learning-rate range width and the steps to the target;
- the table of every configuration at its best validation learning rate;
- the width in decades of the learning-rate range (on the grid, around the
  configuration's best point, contiguous) whose mean test metric stays
  within a tolerance of that configuration's best mean test metric: 1 point
  of accuracy (digits), 0.02 bits per character (charlm), a factor of 2 (the
  quadratic). A single grid point gives 0; the grid's spacing is 0.58
  decades, its span 3.48;
- the steps to reach tuned AdamW's final validation metric: the first
  evaluation point where a configuration's mean validation curve (over
  seeds, at its best validation rate) is at least as good as AdamW's mean
  curve at its last point (the same measurement; for charlm the curve is
  taken on a fixed subset of the validation windows), and the wall time
  of those steps: the steps times the configuration's training seconds per
  step and seed (the median over its calls of a call's training time,
  compiled ahead and without evaluation, over its steps and its batched
  seeds; seeds batched by ``jax.vmap`` share the machine, so this is the
  cost of a step within the batch, for comparing configurations).

Plots (matplotlib, Agg) written to ``--docs`` (default ``docs/``):

- ``convergence_lr.png``: the final test metric against the learning rate,
  one curve per grid configuration (mean and 95% interval over seeds), one
  panel per task; the best validation rate is ringed;
- ``convergence_gamma.png``: 2 x 4 panels for one task (charlm when
  present): six panels, one per filter zero gamma, with the training
  (solid) and validation (dashed) curves over iterations of the unity and
  the correlation numerator, each at its numerator's tuned rate (the rate
  the "at best lr" phase used), with tuned AdamW in grey; a panel of the
  final test metric against gamma; and a panel with the validation curves
  of tuned AdamW, the best unity and the best correlation configuration.

The tables are printed as Markdown to stdout.

Usage:
  python benchmarks/convergence_report.py [--out DIR] [--docs DIR] [--task T]
  python benchmarks/convergence.py --report [--out DIR] [--docs DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results", "convergence")
DEFAULT_DOCS = os.path.join(ROOT, "docs")

#: The tuned (grid) configurations of each numerator family.
TUNED = {"unity": ("unity_g0", "unity_g0.5528"),
         "correlation": ("corr_g0", "corr_g0.5528")}
GAMMAS = (0.0, 0.31, 0.47, 0.5528, 0.64, 0.85)
#: Tolerance of the learning-rate range width: (kind, amount).
TOLERANCE = {"accuracy": ("abs", 0.01), "bits_per_char": ("abs", 0.02),
             "loss": ("factor", 2.0)}
TASK_ORDER = ("charlm", "digits", "quadratic")

Record = dict[str, Any]


# ----------------------------------------------------------------------------
# Selection (shared with convergence.py, which picks the "at best lr" rates
# with these functions).


def mean_valid(records: Sequence[Record], higher: bool) -> float:
  """Mean validation metric over seeds; a diverged seed makes it the worst."""
  values = [r["final_valid_metric"] for r in records]
  if not values or any(v is None for v in values):
    return -math.inf if higher else math.inf
  return float(np.mean(values))


def best_learning_rate(records: Sequence[Record], task: str,
                       optimizers: Sequence[str], higher: bool,
                       seeds: Optional[Sequence[int]] = None,
                       ) -> Optional[tuple[str, float]]:
  """(optimizer, rate) with the best mean validation metric among
  ``optimizers`` on ``task`` (over ``seeds``, all when None); ties go to
  the lower mean validation loss where one is recorded, then to the smaller
  rate, then to the earlier optimizer of ``optimizers``."""
  groups: dict[tuple[str, float], list[Record]] = {}
  for r in records:
    if (r["task"] == task and r["optimizer"] in optimizers
        and (seeds is None or r["seed"] in seeds)):
      groups.setdefault((r["optimizer"], r["learning_rate"]), []).append(r)
  if not groups:
    return None

  def score(item):
    (name, lr), rs = item
    v = mean_valid(rs, higher)
    losses = [r.get("final_valid_loss") for r in rs]
    tie = (float(np.mean(losses)) if losses and None not in losses
           else math.inf)
    return (-v if higher else v, tie, lr, list(optimizers).index(name))

  return min(groups.items(), key=score)[0]


# ----------------------------------------------------------------------------
# Statistics.


def t_interval(values: Sequence[float]) -> tuple[float, float]:
  """(mean, half-width of the 95% t-interval); the half-width is NaN for
  fewer than two values, and the mean NaN when a value is missing."""
  if not values or any(v is None for v in values):
    return math.nan, math.nan
  x = np.asarray(values, np.float64)
  if len(x) < 2:
    return float(x.mean()), math.nan
  from scipy import stats  # pylint: disable=import-outside-toplevel
  t = float(stats.t.ppf(0.975, len(x) - 1))
  return float(x.mean()), t * float(x.std(ddof=1)) / math.sqrt(len(x))


def _mean_curve(records: Sequence[Record], key: str
                ) -> tuple[np.ndarray, np.ndarray]:
  """Steps and the mean over seeds of a curve (NaN where a seed has none)."""
  curves = [r[key] for r in records]
  steps = np.asarray([s for s, _ in curves[0]], np.float64)
  values = np.asarray([[math.nan if v is None else v for _, v in c]
                       for c in curves], np.float64)
  return steps, values.mean(axis=0)


class TaskResults:
  """The records of one task, grouped by (optimizer, learning rate)."""

  def __init__(self, name: str, records: Sequence[Record]):
    self.name = name
    self.records = [r for r in records if r["task"] == name]
    first = self.records[0]
    self.metric = first["metric"]
    self.higher = bool(first["higher_is_better"])
    self.steps = int(first["steps"])
    self.points: dict[tuple[str, float], list[Record]] = {}
    for r in self.records:
      self.points.setdefault((r["optimizer"], r["learning_rate"]),
                             []).append(r)
    names: list[str] = []
    for r in self.records:
      if r["optimizer"] not in names:
        names.append(r["optimizer"])
    self.optimizers = names
    self.info = {r["optimizer"]: r for r in self.records}

  def rates(self, optimizer: str) -> list[float]:
    return sorted(lr for (name, lr) in self.points if name == optimizer)

  def best(self, optimizer: str) -> Optional[float]:
    found = best_learning_rate(self.records, self.name, [optimizer],
                               self.higher)
    return None if found is None else found[1]

  def best_of(self, optimizers: Sequence[str]) -> Optional[tuple[str, float]]:
    present = [o for o in optimizers if o in self.optimizers]
    if not present:
      return None
    return best_learning_rate(self.records, self.name, present, self.higher)

  def family(self, optimizer: str) -> str:
    return self.info[optimizer]["family"]

  def grid(self, optimizer: str) -> bool:
    return self.info[optimizer]["phase"] == "grid"

  def test(self, optimizer: str, lr: float) -> tuple[float, float]:
    return t_interval([r["final_test_metric"]
                       for r in self.points[(optimizer, lr)]])

  def paired(self, optimizer: str, lr: float) -> tuple[float, float, int]:
    """The test metric against tuned AdamW's, paired over the seeds both
    have (see :meth:`paired_with`)."""
    adamw_lr = self.best("adamw") if "adamw" in self.optimizers else None
    if adamw_lr is None:
      return math.nan, math.nan, 0
    return self.paired_with(optimizer, lr, "adamw", adamw_lr)

  def paired_with(self, optimizer: str, lr: float, base: str,
                  base_lr: float) -> tuple[float, float, int]:
    """``optimizer`` at ``lr`` against ``base`` at ``base_lr``, paired over
    the seeds both have (a seed has the same initial weights and data order
    for every configuration): mean and 95% half-width of the difference of
    the test metrics (of the log ratio for the quadratic's loss), and the
    number of pairs."""
    reference = {r["seed"]: r["final_test_metric"]
                 for r in self.points[(base, base_lr)]}
    diffs = []
    for r in self.points[(optimizer, lr)]:
      a, b = reference.get(r["seed"]), r["final_test_metric"]
      if a is None or b is None:
        continue
      if TOLERANCE.get(self.metric, ("abs",))[0] == "factor":
        if a <= 0 or b <= 0:
          continue
        diffs.append(math.log(b / a))
      else:
        diffs.append(b - a)
    mean, half = t_interval(diffs)
    return mean, half, len(diffs)

  def mean(self, optimizer: str, lr: float, key: str) -> float:
    values = [r.get(key) for r in self.points[(optimizer, lr)]]
    if not values or any(v is None for v in values):
      return math.nan
    return float(np.mean(values))

  def width(self, optimizer: str) -> tuple[float, Optional[tuple[float,
                                                                 float]]]:
    """Width in decades (and the range) of the contiguous grid range around
    the best mean test metric that stays within the tolerance."""
    rates = self.rates(optimizer)
    means = [self.test(optimizer, lr)[0] for lr in rates]
    ok = [m for m in means if math.isfinite(m)]
    if not ok:
      return math.nan, None
    best_value = max(ok) if self.higher else min(ok)
    i = means.index(best_value)
    kind, amount = TOLERANCE.get(self.metric, ("abs", 0.0))

    def within(m: float) -> bool:
      if not math.isfinite(m):
        return False
      if kind == "factor":
        return m <= best_value * amount if not self.higher else (
            m >= best_value / amount)
      return (m >= best_value - amount) if self.higher else (
          m <= best_value + amount)

    lo = hi = i
    while lo > 0 and within(means[lo - 1]):
      lo -= 1
    while hi < len(rates) - 1 and within(means[hi + 1]):
      hi += 1
    return math.log10(rates[hi] / rates[lo]), (rates[lo], rates[hi])

  def step_seconds(self, optimizer: str) -> float:
    """Training seconds per step and seed of ``optimizer``: the median over
    its calls of the call's training time (compiled ahead, no evaluation)
    over its steps and its batched seeds; NaN without timed calls."""
    calls = {(r["learning_rate"], r["train_s_call"], r["seeds_in_call"])
             for r in self.records
             if r["optimizer"] == optimizer and "train_s_call" in r}
    if not calls:
      return math.nan
    return float(np.median([t / (self.steps * n) for _, t, n in calls]))

  def target(self) -> Optional[float]:
    """Tuned AdamW's mean validation curve at its last point."""
    lr = self.best("adamw") if "adamw" in self.optimizers else None
    if lr is None:
      return None
    _, curve = _mean_curve(self.points[("adamw", lr)], "valid_curve")
    return float(curve[-1]) if math.isfinite(curve[-1]) else None

  def steps_to(self, optimizer: str, lr: float,
               target: Optional[float]) -> Optional[int]:
    if target is None:
      return None
    steps, curve = _mean_curve(self.points[(optimizer, lr)], "valid_curve")
    slack = 1e-5 * abs(target)  # float32 rounding: unity_g0 is AdamW
    for s, v in zip(steps, curve):
      if math.isfinite(v) and (v >= target - slack if self.higher
                               else v <= target + slack):
        return int(s)
    return None


# ----------------------------------------------------------------------------
# Tables.


def _fmt(metric: str, value: float, digits: Optional[int] = None) -> str:
  if not math.isfinite(value):
    return "n/a"
  if metric == "accuracy":
    return f"{100 * value:.{2 if digits is None else digits}f}%"
  if metric == "bits_per_char":
    return f"{value:.{3 if digits is None else digits}f}"
  return f"{value:.3g}"


def _fmt_ci(metric: str, mean: float, half: float) -> str:
  if not math.isfinite(mean):
    return "diverged"
  if not math.isfinite(half):
    return f"{_fmt(metric, mean)} (1 seed)"
  if metric == "loss":
    return (f"{mean:.3g} [{mean - half:.3g}, {mean + half:.3g}]")
  return f"{_fmt(metric, mean)} ± {_fmt(metric, half)}"


#: The paired comparisons of the claims: (claim, label, configuration,
#: baseline); a name ``best:<family>`` is that family's best tuned
#: configuration. Each at its own best validation rate.
CLAIMS = (
    ("1 (gamma)", "unity: gamma 0.5528 - gamma 0", "unity_g0.5528",
     "unity_g0"),
    ("1 (gamma)", "correlation: gamma 0.5528 - gamma 0", "corr_g0.5528",
     "corr_g0"),
    ("2 (numerator)", "best correlation - best unity", "best:correlation",
     "best:unity"),
    ("2 (numerator)", "at gamma 0.5528: correlation - unity",
     "corr_g0.5528", "unity_g0.5528"),
    ("mask", "correlation at gamma 0.5528: masked - unmasked",
     "corr_g0.5528_masked", "corr_g0.5528"),
)


def claim_table(tr: TaskResults) -> Optional[str]:
  """The claims' paired differences on one task, as a Markdown table."""
  def resolve(name: str) -> Optional[tuple[str, float]]:
    if name.startswith("best:"):
      return tr.best_of(TUNED[name[5:]])
    if name not in tr.optimizers:
      return None
    lr = tr.best(name)
    return None if lr is None else (name, lr)

  rows, seen = [], set()
  for claim, label, a, b in CLAIMS:
    first, second = resolve(a), resolve(b)
    if first is None or second is None or (first, second) in seen:
      continue  # (best correlation - best unity may be the next row's)
    seen.add((first, second))
    mean, half, n = tr.paired_with(*first, *second)
    lo, hi = mean - half, mean + half
    if not math.isfinite(half):
      verdict = "n/a"
    elif lo > 0 or hi < 0:
      better = (mean > 0) == tr.higher
      verdict = (f"{first[0]} better" if better else f"{second[0]} better")
    else:
      verdict = "no difference"
    rows.append([claim, label, f"{first[0]} @ {first[1]:.3g}",
                 f"{second[0]} @ {second[1]:.3g}",
                 _fmt_paired(tr, mean, half, n), str(n), verdict])
  if not rows:
    return None
  return _markdown(["claim", "comparison", "configuration", "baseline",
                    "difference (paired, 95% CI)", "pairs", "verdict"], rows)


def _fmt_paired(tr: TaskResults, mean: float, half: float, n: int) -> str:
  if n == 0 or not math.isfinite(mean):
    return "n/a"
  if TOLERANCE.get(tr.metric, ("abs",))[0] == "factor":
    if not math.isfinite(half):
      return f"x{math.exp(mean):.3g}"
    return (f"x{math.exp(mean):.3g} "
            f"[{math.exp(mean - half):.3g}, {math.exp(mean + half):.3g}]")
  scale, unit, digits = ((100.0, " pt", 2) if tr.metric == "accuracy"
                         else (1.0, "", 3))
  if not math.isfinite(half):
    return f"{scale * mean:+.{digits}f}{unit}"
  lo, hi = scale * (mean - half), scale * (mean + half)
  return (f"{scale * mean:+.{digits}f}{unit} "
          f"[{lo:+.{digits}f}, {hi:+.{digits}f}]")


def _row(tr: TaskResults, label: str, optimizer: str, lr: float,
         target: Optional[float]) -> list[str]:
  mean, half = tr.test(optimizer, lr)
  n = len(tr.points[(optimizer, lr)])
  if tr.grid(optimizer):
    width, span = tr.width(optimizer)
    width_s = (f"{width:.2f} ({span[0]:.3g}-{span[1]:.3g})"
               if span is not None else "n/a")
  else:
    width_s = "(not tuned)"
  steps = tr.steps_to(optimizer, lr, target)
  steps_s = "not reached" if steps is None else f"{steps} / {tr.steps}"
  per_step = tr.step_seconds(optimizer)
  if steps is not None and math.isfinite(per_step):
    steps_s += f" ({steps * per_step:.2f} s)"
  return [label, f"{lr:.3g}", _fmt_ci(tr.metric, mean, half), str(n),
          _fmt_paired(tr, *tr.paired(optimizer, lr)),
          _fmt(tr.metric, tr.mean(optimizer, lr, "final_valid_metric")),
          f"{tr.mean(optimizer, lr, 'final_train_loss'):.4g}", width_s,
          steps_s]


HEADER = ["configuration", "lr (best valid)", "test {metric} (mean ± 95% CI)",
          "seeds", "vs tuned AdamW (paired, 95% CI)", "valid {metric}",
          "final train loss",
          "lr range within tol. (decades)",
          "steps (wall time) to AdamW's valid"]


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def task_tables(tr: TaskResults) -> str:
  """The Markdown tables of one task."""
  target = tr.target()
  header = [h.format(metric=tr.metric) for h in HEADER]
  better = "higher" if tr.higher else "lower"
  kind, amount = TOLERANCE.get(tr.metric, ("abs", 0.0))
  tol = (f"a factor of {amount:g}" if kind == "factor" else
         f"{_fmt(tr.metric, amount, 0) if tr.metric == 'accuracy' else amount}")
  out = [f"### {tr.name}: {tr.metric} ({better} is better), {tr.steps} steps",
         ""]
  summary = []
  if "adamw" in tr.optimizers:
    summary.append(("AdamW", "adamw", tr.best("adamw")))
  for label, family in (("best unity", "unity"),
                        ("best correlation", "correlation")):
    found = tr.best_of(TUNED[family])
    if found is not None:
      summary.append((f"{label}: {found[0]}", found[0], found[1]))
    # Over every gamma (and the mask), at the family's tuned rate.
    names = [o for o in tr.optimizers if tr.family(o) == family]
    anyone = tr.best_of(names)
    if anyone is not None and found is not None and anyone != found:
      summary.append((f"{label}, any gamma: {anyone[0]} (at the tuned rate)",
                      anyone[0], anyone[1]))
  out.append(_markdown(header, [_row(tr, label, o, lr, target)
                                for label, o, lr in summary]))
  out += ["", "(best unity / best correlation: the better of the two tuned "
          "configurations, gamma 0 and 0.5528, on validation; \"any "
          "gamma\": the best of every configuration of the numerator, the "
          "untuned ones at the tuned rate; selected on validation, reported "
          "on test. \"vs tuned AdamW\": the test metric minus AdamW's at "
          "its best rate, paired over seeds"
          + (" (as a ratio, geometric mean)" if kind == "factor" else "")
          + ".)"]
  out += ["", f"All configurations, each at its best validation rate "
          f"(lr range: contiguous grid range within {tol} of the "
          f"configuration's best mean test {tr.metric}; target of the "
          f"steps: tuned AdamW's final mean validation "
          f"{_fmt(tr.metric, target) if target is not None else 'n/a'}):",
          ""]
  rows = []
  for o in tr.optimizers:
    lr = tr.best(o)
    if lr is not None:
      rows.append(_row(tr, o, o, lr, target))
  out.append(_markdown(header, rows))
  claims = claim_table(tr)
  if claims is not None:
    out += ["", "The claims, paired over seeds, each configuration at its "
            "own best validation rate (a difference is called only where "
            "the interval excludes 0):", "", claims]
  if any(tr.grid(o) for o in tr.optimizers):
    out += ["", "Mean test metric on the learning-rate grid:", ""]
    grid = [o for o in tr.optimizers if tr.grid(o)]
    rates = sorted({lr for o in grid for lr in tr.rates(o)})
    rows = []
    for o in grid:
      cells = [o]
      for lr in rates:
        cells.append(_fmt(tr.metric, tr.test(o, lr)[0])
                     if (o, lr) in tr.points else "")
      rows.append(cells)
    out.append(_markdown(["configuration"] + [f"{lr:.3g}" for lr in rates],
                         rows))
  return "\n".join(out)


# ----------------------------------------------------------------------------
# Plots.


def _family_rate(tr: TaskResults, family: str) -> Optional[float]:
  found = tr.best_of(TUNED[family])
  return None if found is None else found[1]


def plot_lr(tasks: Sequence[TaskResults], path: str) -> None:
  """Final test metric against the learning rate, one panel per task."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2),
                           squeeze=False)
  for ax, tr in zip(axes[0], tasks):
    grid = [o for o in tr.optimizers if tr.grid(o)]
    finite = []
    for k, o in enumerate(grid):
      rates = tr.rates(o)
      stats = [tr.test(o, lr) for lr in rates]
      means = np.asarray([m for m, _ in stats])
      halves = np.nan_to_num(np.asarray([h for _, h in stats]))
      scale = 100.0 if tr.metric == "accuracy" else 1.0
      style = "--" if o == "unity_g0" else "-"
      ax.errorbar(rates, scale * means, yerr=scale * halves, fmt="o" + style,
                  ms=3.5, capsize=2, color=f"C{k}", label=o, lw=1.3)
      best = tr.best(o)
      if best is not None:
        m = tr.test(o, best)[0]
        ax.plot([best], [scale * m], "o", ms=9, mfc="none", color=f"C{k}")
      finite += [scale * m for m in means if math.isfinite(m)]
    ax.set_xscale("log")
    # Ticks at the rates every grid configuration ran (the coarse grid; the
    # refined points between are drawn, not labelled).
    rates = sorted(set.intersection(*(set(tr.rates(o)) for o in grid)))
    ax.set_xticks(rates, [f"{lr:.2g}" for lr in rates])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("learning rate (peak)")
    unit = {"accuracy": "test accuracy (%)",
            "bits_per_char": "test bits per char",
            "loss": "test loss - optimum"}.get(tr.metric, tr.metric)
    ax.set_ylabel(unit)
    if tr.metric == "loss":
      ax.set_yscale("log")
    elif finite:
      lo, hi = min(finite), max(finite)
      if tr.metric == "accuracy":
        ax.set_ylim(max(lo - 1, hi - 25), min(100, hi + 1))
      else:
        ax.set_ylim(lo - 0.05, min(hi, lo + 2.5) + 0.05)
    ax.set_title(f"{tr.name} ({tr.steps} steps)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Final test metric against the learning rate "
               "(mean and 95% interval over seeds; ring: best on validation)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_gamma(tr: TaskResults, path: str) -> None:
  """The 2 x 4 gamma panels of one task (see the module docstring)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
  axes = axes.ravel()
  rates = {f: _family_rate(tr, f) for f in TUNED}
  adamw_lr = tr.best("adamw") if "adamw" in tr.optimizers else None
  same_axis = tr.metric != "accuracy"
  scale = 100.0 if tr.metric == "accuracy" else 1.0
  ylabel = {"accuracy": "valid accuracy (%)",
            "bits_per_char": "bits per char",
            "loss": "loss"}.get(tr.metric, tr.metric)

  def draw(ax, ax_valid, records, color, label, lw=1.4, zorder=2):
    steps, curve = _mean_curve(records, "train_curve")
    ax.plot(steps, curve, "-", color=color, lw=lw, zorder=zorder,
            label=f"{label} train")
    steps, curve = _mean_curve(records, "valid_curve")
    ax_valid.plot(steps, scale * curve, "--", color=color, lw=lw,
                  zorder=zorder, label=f"{label} valid")

  finals = {"unity": [], "correlation": []}
  for k, gamma in enumerate(GAMMAS):
    ax = axes[k]
    ax_valid = ax if same_axis else ax.twinx()
    if adamw_lr is not None:  # underneath: unity at gamma 0 is AdamW
      draw(ax, ax_valid, tr.points[("adamw", adamw_lr)], "0.6",
           f"AdamW (lr {adamw_lr:.3g})", lw=3.0, zorder=1)
    for family, prefix, color in (("unity", "unity", "C0"),
                                  ("correlation", "corr", "C1")):
      name = f"{prefix}_g{gamma:g}"
      lr = rates[family]
      if lr is None or (name, lr) not in tr.points:
        continue
      draw(ax, ax_valid, tr.points[(name, lr)], color,
           f"{family} (lr {lr:.3g})")
      finals[family].append((gamma,) + tr.test(name, lr))
    ax.set_title(f"gamma = {gamma:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("train loss" + (" / " + ylabel if same_axis else ""))
    if not same_axis:
      ax_valid.set_ylabel(ylabel)
    if tr.metric == "loss":
      ax.set_yscale("log")
      ax_valid.set_yscale("log")
    elif tr.metric == "bits_per_char":
      values = [v for line in ax.get_lines() for v in line.get_ydata()
                if math.isfinite(v)]
      if values:
        ax.set_ylim(min(values) - 0.1, min(max(values), min(values) + 2.5))
    ax.grid(True, alpha=0.3)
    if k == 0:
      handles = ax.get_legend_handles_labels()
      if not same_axis:
        more = ax_valid.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
      ax.legend(*handles, fontsize=7)

  ax = axes[6]
  for family, color in (("unity", "C0"), ("correlation", "C1")):
    if finals[family]:
      g, m, h = (np.asarray(v) for v in zip(*finals[family]))
      ax.errorbar(g, scale * m, yerr=scale * np.nan_to_num(h), fmt="o-",
                  color=color, capsize=2, label=family)
  if adamw_lr is not None:
    ax.axhline(scale * tr.test("adamw", adamw_lr)[0], color="0.55", ls=":",
               label="AdamW")
  ax.set_xlabel("gamma")
  ax.set_ylabel(f"test {ylabel}" if tr.metric != "loss" else
                "test loss - optimum")
  if tr.metric == "loss":
    ax.set_yscale("log")
  ax.set_title("final test metric against gamma")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)

  ax = axes[7]
  picks = []
  if adamw_lr is not None:
    picks.append(("adamw", adamw_lr, "0.3"))
  for family, color in (("unity", "C0"), ("correlation", "C1")):
    found = tr.best_of([o for o in tr.optimizers
                        if tr.family(o) == family])
    if found is not None:
      picks.append((found[0], found[1], color))
  for name, lr, color in picks:
    steps, curve = _mean_curve(tr.points[(name, lr)], "valid_curve")
    ax.plot(steps, scale * curve, "-", color=color, lw=1.5,
            label=f"{name} (lr {lr:.3g})")
  if tr.metric == "loss":
    ax.set_yscale("log")
  elif tr.metric == "bits_per_char":
    values = [v for line in ax.get_lines() for v in line.get_ydata()
              if math.isfinite(v)]
    if values:
      ax.set_ylim(min(values) - 0.1, min(max(values), min(values) + 2.5))
  elif tr.metric == "accuracy":
    values = [v for line in ax.get_lines() for v in line.get_ydata()
              if math.isfinite(v)]
    if values:
      ax.set_ylim(max(min(values), max(values) - 25), 100.5)
  ax.set_xlabel("iteration")
  ax.set_ylabel(ylabel)
  ax.set_title("tuned: validation curves")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  fig.suptitle(
      f"{tr.name}: unity against correlation numerator for each filter zero "
      f"gamma, each at its numerator's tuned rate (mean over seeds; solid: "
      f"training minibatch loss, dashed: validation; grey: tuned AdamW, "
      f"which unity at gamma 0 equals)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ----------------------------------------------------------------------------
# Main.


def report(records: Sequence[Record], docs: str,
           gamma_task: Optional[str] = None) -> str:
  """Writes the plots into ``docs`` and returns the Markdown tables."""
  names = [t for t in TASK_ORDER if any(r["task"] == t for r in records)]
  names += sorted({r["task"] for r in records} - set(names))
  tasks = [TaskResults(n, records) for n in names]
  if not tasks:
    raise SystemExit("no records to report")
  os.makedirs(docs, exist_ok=True)
  plot_lr(tasks, os.path.join(docs, "convergence_lr.png"))
  chosen = gamma_task or ("charlm" if "charlm" in names else names[0])
  plot_gamma(next(t for t in tasks if t.name == chosen),
             os.path.join(docs, "convergence_gamma.png"))
  seeds = sorted({r["seed"] for r in records})
  parts = [f"## Convergence benchmark ({len(records)} runs, seeds "
           f"{seeds[0]}-{seeds[-1]}, setting "
           f"{', '.join(sorted({r['setting'] for r in records}))})", ""]
  for tr in tasks:
    parts += [task_tables(tr), ""]
  parts.append(f"Plots: {os.path.join(docs, 'convergence_lr.png')}, "
               f"{os.path.join(docs, 'convergence_gamma.png')} "
               f"(gamma panels: {chosen}).")
  return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> str:
  """Reads ``<out>/results.json``, writes the plots, prints the tables."""
  parser = argparse.ArgumentParser(
      prog="python benchmarks/convergence_report.py",
      description="Tables and plots of benchmarks/convergence.py's results.")
  parser.add_argument("--out", default=DEFAULT_OUT,
                      help="the results directory (holds results.json)")
  parser.add_argument("--docs", default=DEFAULT_DOCS,
                      help="where the plots go (default docs/)")
  parser.add_argument("--task", default=None,
                      help="the task of the gamma panels (default charlm)")
  args = parser.parse_args(argv)
  path = os.path.join(args.out, "results.json")
  if not os.path.exists(path):
    raise SystemExit(f"{path} does not exist: run benchmarks/convergence.py "
                     "first")
  with open(path) as f:
    records = json.load(f)
  text = report(records, args.docs, args.task)
  print(text, flush=True)
  return text


if __name__ == "__main__":
  main()
