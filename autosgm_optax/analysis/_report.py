"""The words of the analysis: what the conditions and the check found, as
text.

Everything here formats data it is given (a :class:`StabilityConditions`, a
:class:`StabilityReport`, numbers); nothing computes a condition or a
finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import Optional

# The notes of stability_conditions, by the fact each states.
NOTES = {
  "beta_unstable": "beta >= 1: the filter's pole is on or outside the unit "
  "circle, and dw need not stay bounded.",
  "beta_negative": "beta < 0 is not a valid design (docs/algorithm.md, "
  "section 2).",
  "rate_not_given": "learning_rate not given: taken as a constant.",
  "no_horizon": "a schedule was given without horizon: pass horizon "
  "(the number of steps) to check it.",
  "no_anneal": "alpha does not go to 0 (mu F does not anneal to 0): BIBO "
  "stability only; anneal the window or the learning rate "
  "for exponential stability.",
  "anneals": "r -> 0 only where the window reaches 0: a cosine window "
  "keeps r near 1 until its last steps.",
  "zero_start": "mu F = 0 at count 0 (e.g. a full window with floor 0): "
  "the first update is 0 and r(2) is undefined (reported as "
  "0, flagged).",
}


def bad_rate_note(count: int, mu: float) -> str:
  """The note of a learning rate not finite and >= 0 at ``count``."""
  return f"mu is not finite and >= 0 at count {count} (mu = {mu:.4g})."


def bad_window_note(count: int, f: float) -> str:
  """The note of a window outside [0, 1] at ``count``."""
  return f"F is outside [0, 1] at count {count} (F = {f:.4g})" + (
    "; a negative window is gradient ascent." if f < 0 else "."
  )


def fmt(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{x:.4g}"


def verdict(ok: Optional[bool]) -> str:
  return {True: "yes", False: "NO", None: "unknown"}[ok]


def conditions_text(c: Any) -> str:
  """A :class:`StabilityConditions`, one condition per line."""
  over = "" if c.horizon is None else f" over counts 0..{c.horizon}"
  lines = [
    "AutoSGM learning dynamics: dw(t+1) = beta r(t) dw(t) + eta alpha(t) e(t)",
    f"- pole 0 <= beta < 1: {verdict(c.beta_ok)} (beta = {c.beta:.4g})",
    f"- learning rate mu finite and >= 0{over}: {verdict(c.learning_rate_ok)}",
    f"- window F in [0, 1]{over}: {verdict(c.window_ok)}"
    + (
      ""
      if c.window_range is None
      else f" (range [{c.window_range[0]:.4g}, {c.window_range[1]:.4g}])"
    ),
    f"- BIBO stable (beta < 1 and sup alpha < inf): "
    f"{verdict(c.bibo)} (sup mu F = {fmt(c.rate_sup)})",
    (
      f"- alpha -> 0 (mu F anneals to 0 by count {c.horizon}): "
      if c.horizon is not None
      else "- alpha -> 0 (mu F anneals to 0): "
    )
    + f"{verdict(c.anneals)} (mu F at the end = {fmt(c.rate_final)})",
    f"- exponentially stable (BIBO and annealed): {verdict(c.exponential)}",
  ]
  if c.warmup_steps:
    lines.append(
      f"- warm-up: mu F rises at {c.warmup_steps} counts (largest "
      f"schedule margin beta * mu F(t) / mu F(t-1) = "
      f"{fmt(c.schedule_margin)}); growth of alpha there is the "
      "schedule's, not instability"
    )
  lines.extend(f"  note: {note}" for note in c.notes)
  return "\n".join(lines)


def _leaves_word(count: int) -> str:
  return "leaf" if count == 1 else "leaves"


def _listing(findings: Sequence[Any], what: str, limit: int) -> list[str]:
  """One kind of findings: a count, its steps and leaves, the first few."""
  if not findings:
    return [f"- {what}: none"]
  steps = sorted({f.step for f in findings})
  leaves = sorted({f.leaf for f in findings})
  out = [
    f"- {what}: {len(findings)} (steps {steps[0]}..{steps[-1]}; "
    f"{len(leaves)} {_leaves_word(len(leaves))}: "
    f"{', '.join(leaves[:limit])}"
    + (", ..." if len(leaves) > limit else "")
    + ")"
  ]
  out.extend(
    f"    step {f.step} {f.leaf}: {f.value:.4g}" for f in findings[:limit]
  )
  if len(findings) > limit:
    out.append(f"    ... {len(findings) - limit} more")
  return out


def report_text(report: Any, limit: int = 4) -> str:
  """A :class:`StabilityReport`, at most ``limit`` findings listed per kind."""
  b = report.bounds
  state = ("stable" if report.stable else "UNSTABLE") + (
    ", contractive at every step" if report.contractive else ""
  )
  lines = [
    f"learning dynamics of steps {report.steps[0]}..{report.steps[1]} "
    f"({report.level} level, {len(report.leaves)} "
    f"{_leaves_word(len(report.leaves))}, "
    f"beta = {report.beta:.4g}): {state}"
  ]
  if not 0 <= report.beta < 1:
    lines.append("- beta outside [0, 1): the filter itself is unstable")
  kinds = (
    (report.alpha, f"alpha not finite or above {b['alpha_bound']:g}"),
    (report.growth, f"memory gain prod beta|r| above {b['growth_bound']:g}"),
    (
      report.divergence,
      f"input e grown above {b['divergence_bound']:g}x its start, or e/dw "
      "not finite",
    ),
    (
      report.margin,
      f"margin beta|r| above {b['margin_bound']:g} (transient expansions)",
    ),
    (report.warmup, "warm-up: r > 1 while mu F rose (not instability)"),
  )
  for findings, what in kinds:
    lines += _listing(findings, what, limit)
  if not report.rates_given:
    lines.append(
      "  note: no rates given: a warm-up cannot be told apart "
      "from growth; pass rates (mu F of each step)."
    )
  worst = [
    f"{leaf} {f.value:.3g} (step {f.step})"
    for leaf, f in list(report.max_margin.items())[: 2 * limit]
  ]
  lines.append("largest margin per leaf: " + "; ".join(worst))
  return "\n".join(lines)
