"""notebooks/filter_design.ipynb runs, in a small size, and shows what it
says.

The notebook reads its size from the environment (``FILTER_DESIGN_STEPS``);
here it runs 600 steps on the quadratic in a fresh kernel, and a cell
appended at the end reports its results as JSON. The test recomputes what
it can with ``autosgm_optax.design`` and the closed forms of docs/design.md.
"""

import math
import pathlib

import pytest

import notebook_support
from autosgm_optax import design
from autosgm_optax import presets

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = (pathlib.Path(__file__).resolve().parent.parent / "notebooks"
            / "filter_design.ipynb")
STEPS = 600
MARKER = "FILTER_DESIGN_RESULTS "
BETA = 0.9

REPORT = f"""
import json
print({MARKER!r} + json.dumps({{
    "steps": STEPS,
    "beta": BETA,
    "lr": LR,
    "presets": {{name: [d.beta, d.gamma, d.eta, d.debias]
                 for name, d in PRESETS.items()}},
    "named": {{label: [d.beta, d.gamma, d.eta] for label, d in NAMED.items()}},
    "nadam_step": NADAM_STEP.tolist(),
    "exact_step": EXACT_STEP.tolist(),
    "sweep": SWEEP_NAMED,
    "deadbeat": DEADBEAT,
    "decay": DECAY,
    "noise": NOISE,
}}))
"""

# The presets as the notebook calls them, and the points docs/algorithm.md,
# section 2, gives for them: (beta, gamma, eta, debias).
PRESET_CALLS = {
    "sgd": (presets.sgd, (0.1,), (0.0, 0.0, 1.0, False)),
    "phb": (presets.phb, (0.1,), (0.9, 0.0, 1.0, False)),
    "nag": (presets.nag, (0.1,), (0.9, 0.9 / 1.9, 1.9, False)),
    "adam": (presets.adam, (1e-3,), (0.9, 0.0, 0.1, True)),
    "nadam": (presets.nadam, (1e-3,), (0.9, 0.9 / 1.9, 0.19, "nadam")),
    "qhm": (presets.qhm, (0.1,), (*design.from_qhm(0.7, 0.999), False)),
    "qhadam": (presets.qhadam, (1e-3,), (*design.from_qhm(0.7, 0.995), "ema")),
}
# The named zeros at beta = 0.9 (docs/design.md).
NAMED = {
    "heavy ball": ("heavy_ball", 0.0),
    "Nesterov": ("nesterov", 0.9 / 1.9),
    "-beta": ("max_variance_reduction", -0.9),
    "variance per unit gain": ("variance_per_unit_gain", 1 - math.sqrt(0.2)),
}
ZEROS_09 = tuple(NAMED)


@pytest.fixture(scope="module")
def executed():
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("FILTER_DESIGN_STEPS", str(STEPS))
    return notebook_support.run_with_report(
        NOTEBOOK, REPORT, MARKER, timeout=240)


def _double_root(beta, gamma):
  """The smaller modulus of the closed loop's double roots: at the gains
  ``k = mu eta h`` where ``(1 + beta - k)^2 = 4 (beta - k gamma)``, i.e.
  ``k^2 - (2 (1 + beta) - 4 gamma) k + (1 - beta)^2 = 0``, the root is
  ``(1 + beta - k) / 2``."""
  b = 2 * (1 + beta) - 4 * gamma
  gains = [(b + s * math.sqrt(b * b - 4 * (1 - beta) ** 2)) / 2
           for s in (1, -1)]
  return min(abs(1 + beta - k) / 2 for k in gains)


def test_map_is_the_presets_designs(executed):
  _, report = executed
  assert report["steps"] == STEPS and report["beta"] == BETA
  assert set(report["presets"]) == set(PRESET_CALLS)
  for name, (preset, args, closed_form) in PRESET_CALLS.items():
    d = design.of(preset, *args)
    beta, gamma, eta, debias = report["presets"][name]
    assert [beta, gamma, eta] == pytest.approx(
        [d.beta, d.gamma, d.eta], rel=1e-12, abs=1e-15), name
    assert debias == d.debias, name
    assert [beta, gamma, eta] == pytest.approx(
        list(closed_form[:3]), rel=1e-12, abs=1e-15), name
    assert debias == closed_form[3], name
  for label, (name, gamma) in NAMED.items():
    beta, g, eta = report["named"][label]
    assert beta == BETA
    assert g == pytest.approx(design.named_zero(name, BETA), abs=1e-15)
    assert g == pytest.approx(gamma, abs=1e-12)
    assert eta == pytest.approx((1 - BETA) / (1 - gamma), rel=1e-12)


def test_nadam_overshoot_and_exact_debias(executed):
  _, report = executed
  nadam, exact = report["nadam_step"], report["exact_step"]
  assert nadam[0] == pytest.approx(1 + BETA / (1 + BETA), rel=1e-12)
  assert nadam[0] == pytest.approx(1.4737, abs=1e-4)
  # the overshoot fades as b1^t, from above
  assert all(a > b > 1 for a, b in zip(nadam, nadam[1:]))
  assert nadam[-1] - 1 < 2 * BETA ** len(nadam)
  assert exact == pytest.approx([1.0] * len(exact), abs=1e-12)


def test_sweep_of_the_zero(executed):
  _, report = executed
  sweep = report["sweep"]
  for label in ZEROS_09:
    d = design.FilterDesign(BETA, NAMED[label][1])
    assert sweep[label]["noise_gain"] == pytest.approx(d.noise_gain(),
                                                       rel=1e-12)
    # the best rate is no better than the design allows at its mu_h
    assert sweep[label]["best_rate"] == pytest.approx(
        d.convergence_rate(sweep[label]["mu_h"]), abs=1e-15)
  assert sweep["heavy ball"]["best_rate"] == pytest.approx(math.sqrt(BETA),
                                                           abs=1e-9)
  assert sweep["Nesterov"]["best_rate"] < 1e-4
  assert sweep["Nesterov"]["mu_h"] == pytest.approx(10.0, rel=1e-6)
  for label in ("-beta", "variance per unit gain"):
    assert sweep[label]["best_rate"] == pytest.approx(
        _double_root(BETA, NAMED[label][1]), abs=1e-4), label


def test_deadbeat_after_two_updates(executed):
  _, report = executed
  assert set(report["deadbeat"]) == {"0.5", "0.9", "0.99"}
  for beta, runs in report["deadbeat"].items():
    assert set(runs) == {"nag", "autosgm"}
    for name, run in runs.items():
      # one update: w(2) = -beta w(1), not 0; two: round-off
      assert run["relative"][0] == pytest.approx(float(beta), rel=1e-12)
      assert run["max"][0] == pytest.approx(1e3 * float(beta), rel=1e-12)
      assert run["relative"][1] <= 1e-14 and run["relative"][2] <= 1e-14, (
          beta, name, run)
    assert runs["nag"]["max"][1] <= 1e-12, (beta, runs["nag"])


def test_noiseless_decay_matches_the_closed_loop(executed):
  _, report = executed
  lr = report["lr"]
  designs = {label: design.FilterDesign(BETA, gamma)
             for label, (_, gamma) in NAMED.items()}
  designs["QHM (default)"] = design.FilterDesign(*design.from_qhm(0.7, 0.999))
  designs["SGD"] = design.FilterDesign(0.0, 0.0, 1.0)
  assert set(report["decay"]) == set(designs)
  for label, d in designs.items():
    decay = report["decay"][label]
    expected = [d.convergence_rate(lr * h) for h in decay["h"]]
    assert decay["predicted"] == pytest.approx(expected, rel=1e-12), label
    for h, predicted, simulated in zip(decay["h"], decay["predicted"],
                                       decay["simulated"]):
      if predicted == 0.0:  # SGD at mu h = 1: 0 after one update
        assert simulated == 0.0, (label, h)
      else:  # within 5 % in log terms over the second half of the run
        assert math.log(simulated) / math.log(predicted) == pytest.approx(
            1.0, abs=0.05), (label, h, predicted, simulated)


def test_noise_against_its_predictions(executed):
  _, report = executed
  noise = report["noise"]
  for label in (*ZEROS_09, "SGD"):
    n = noise[label]
    # the exact linear prediction holds at every curvature
    assert n["var_w"] == pytest.approx(n["exact_w"], rel=0.15), label
    assert n["var_v"] == pytest.approx(n["exact_v"], rel=0.15), label
  for label in ZEROS_09:
    n = noise[label]
    # at mu h = 0.1 the noise gain predicts the step's noise ...
    assert n["var_v"][0] == pytest.approx(n["noise_gain"], rel=0.15), label
    # ... not the iterate's: that is about mu sigma^2 / (2h), as for SGD
    assert n["var_w"][0] > 5 * n["naive_w"][0], label
    assert n["var_w"][0] == pytest.approx(n["small_step_w"][0], rel=0.15)


def test_notebook_draws_its_figures(executed):
  nb, _ = executed
  assert len(notebook_support.images(nb)) == 6
  assert "overshoot at t = 1: 1.473684" in notebook_support.text(nb)


def test_stored_notebook_was_run_in_full_and_is_small():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert NOTEBOOK.stat().st_size < 400_000
  assert not notebook_support.errors(nb)
  params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", ())]
  assert len(params) == 1 and "FILTER_DESIGN_STEPS" in params[0].source
  text = notebook_support.text(nb)
  assert "6 optimizers x 2 runs of 2000 steps" in text
  assert "overshoot at t = 1: 1.473684 = 1 + b1/(1 + b1) = 1.473684" in text
  assert len(notebook_support.images(nb)) == 6
  assert nb.cells[-1].cell_type == "markdown"
  assert nb.cells[-1].source.startswith("## Summary")
