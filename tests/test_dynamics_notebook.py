"""notebooks/learning_dynamics.ipynb runs, in a small size, and shows what it
says.

The notebook reads its size from the environment (``DYNAMICS_STEPS``); here
it runs 20 steps in a fresh kernel, and a cell appended at the end reports
its results as JSON.
"""

import pathlib

import numpy as np
import pytest

import notebook_support

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

NOTEBOOK = (pathlib.Path(__file__).resolve().parent.parent / "notebooks"
            / "learning_dynamics.ipynb")
STEPS = 20
MARKER = "DYNAMICS_RESULTS "

REPORT = f"""
import json

def _summary(run):
    report = check_stability(run["history"], rates=run["rates"])
    return {{
        "alpha": per_step(run["history"], "alpha").tolist(),
        "r": per_step(run["history"], "r").tolist(),
        "stable": report.stable,
        "growth": len(report.growth),
        "divergence": len(report.divergence),
        "warmup": len(report.warmup),
        "accuracy": run["accuracy"],
    }}

_lsq = {{}}
for _factor, (_history, _rates, _losses) in lsq.items():
    _report = check_stability(_history, rates=_rates)
    _lsq[str(_factor)] = {{"stable": _report.stable,
                          "divergence": len(_report.divergence),
                          "margin": len(_report.margin)}}
print({MARKER!r} + json.dumps({{
    "steps": STEPS,
    "runs": {{name: _summary(run) for name, run in runs.items()}},
    "blind_stable": blind.stable,
    "lsq": _lsq,
    "sparse": {{"every": EVERY,
                "steps": [int(d.step) for d in recorded],
                "alpha_worst": worst,
                "loss": sparse["loss"].tolist(),
                "loss_every_update": runs["cosine"]["loss"].tolist(),
                "stable": check_stability(sparse["history"],
                                          rates=rates).stable}},
}}))
"""


def test_notebook_runs_in_small_size(monkeypatch):
  monkeypatch.setenv("DYNAMICS_STEPS", str(STEPS))
  nb, report = notebook_support.run_with_report(
      NOTEBOOK, REPORT, MARKER, timeout=240)
  assert report["steps"] == STEPS
  runs = report["runs"]
  assert set(runs) == {"constant", "cosine", "full, to 0"}
  for name, run in runs.items():
    assert len(run["alpha"]) == len(run["r"]) == STEPS
    assert run["stable"] and run["growth"] == 0 and run["divergence"] == 0, (
        name, run)
  # alpha anneals under the windows, not without one
  constant, cosine, full = runs["constant"], runs["cosine"], runs["full, to 0"]
  assert constant["alpha"][-1] > 0.1 * max(constant["alpha"])
  assert cosine["alpha"][-1] < 0.05 * max(cosine["alpha"])
  # r drops at the end of the cosine but stays > 0; it is 0 exactly where
  # the full window reaches 0, and so is alpha
  assert 0 < cosine["r"][-1] < 0.5
  assert full["alpha"][-1] == 0 and full["r"][-1] == 0
  assert constant["r"][-1] == pytest.approx(1, abs=0.05)
  # the full window's warm-up is reported apart; without rates it is not
  assert full["warmup"] > 0 and not report["blind_stable"]
  # heavy ball on least squares: stable at half the bound, diverging at 2x
  assert report["lsq"]["0.5"] == {"stable": True, "divergence": 0,
                                  "margin": 0}
  assert not report["lsq"]["2.0"]["stable"]
  assert report["lsq"]["2.0"]["divergence"] > 0
  assert report["lsq"]["2.0"]["margin"] == 0
  # every k-th update recorded: the same records at those updates, the
  # same training
  sparse = report["sparse"]
  every = sparse["every"]
  assert sparse["steps"] == list(range(every, STEPS + 1, every))
  assert sparse["alpha_worst"] < 1e-5
  np.testing.assert_allclose(sparse["loss"], sparse["loss_every_update"],
                             rtol=1e-5)
  assert sparse["stable"]
  assert len(notebook_support.images(nb)) == 3


def test_stored_notebook_was_run_in_full_and_is_small():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert NOTEBOOK.stat().st_size < 400_000
  assert not notebook_support.errors(nb)
  params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", ())]
  assert len(params) == 1 and "DYNAMICS_STEPS" in params[0].source
  text = notebook_support.text(nb)
  assert "600 steps" in text
  assert "UNSTABLE" in text and "stable, contractive at every step" in text
  assert "30 of 600 updates recorded (every 20)" in text
  assert len(notebook_support.images(nb)) == 3
