"""benchmarks/convergence.py: the quick grid end to end, resuming, the report.

The quick run trains every task and every optimizer configuration at tiny
size (1 seed, 2 learning rates on the grid phase) in a subprocess, as a user
runs it; the module itself is imported only to read what the quick grid
must contain.
"""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

for _module in ("flax", "sklearn", "tqdm", "matplotlib", "scipy"):
  pytest.importorskip(_module)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "convergence.py"
TIMEOUT_S = 300

REQUIRED = ("task", "optimizer", "numerator", "gamma", "learning_rate",
            "seed", "final_train_loss", "final_valid_metric",
            "final_test_metric", "metric", "steps", "wall_s", "train_curve",
            "valid_curve")
NUMBERS = ("learning_rate", "final_train_loss", "final_valid_metric",
           "final_test_metric", "steps", "wall_s")


def _load_module():
  spec = importlib.util.spec_from_file_location("convergence_under_test",
                                                SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up
  spec.loader.exec_module(module)
  return module


cv = _load_module()


def _run(*args: str) -> tuple[subprocess.CompletedProcess, float]:
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=TIMEOUT_S)
  elapsed = time.perf_counter() - start
  assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
  return proc, elapsed


def _records(out: Path) -> list:
  return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  """(out, stdout, seconds) of ``--quick --out <tmp>`` (progress bar on)."""
  out = tmp_path_factory.mktemp("convergence_quick")
  proc, elapsed = _run("--quick", "--out", str(out))
  print(f"--quick took {elapsed:.1f}s")
  return out, proc.stdout, elapsed


def test_quick_grid_has_one_record_per_point(quick):
  out, stdout, _ = quick
  records = _records(out)
  configs = cv.configurations()
  assert {c.name for c in configs} >= {
      "adamw", "unity_g0", "unity_g0.5528", "corr_g0", "corr_g0.5528",
      "robust_g0.5528", "moment_g0.5528"}
  if cv.numerator_mask_supported():
    assert "corr_g0.5528_masked" in {c.name for c in configs}

  keys = [cv.record_key(r) for r in records]
  assert len(keys) == len(set(keys)), "a point was recorded twice"
  seen = {}
  for r in records:
    seen.setdefault((r["task"], r["optimizer"]), []).append(r)
  expected = {(t, c.name) for t in cv.TASKS for c in configs}
  assert set(seen) == expected

  for (task, name), rs in seen.items():
    config = next(c for c in configs if c.name == name)
    assert [r["seed"] for r in rs] == [0] * len(rs)
    rates = sorted(r["learning_rate"] for r in rs)
    if config.grid:
      assert rates == sorted(cv.QUICK_LR_GRID), (task, name)
    else:  # at its numerator's best validation rate, one record
      assert len(rs) == 1, (task, name)
      tuned = [c.name for c in configs
               if c.grid and c.family == config.tuned_by]
      best = cv.best_learning_rate(records, task, tuned,
                                   rs[0]["higher_is_better"], [0])
      assert rates == [best[1]], (task, name, best)

  for r in records:
    missing = [k for k in REQUIRED if k not in r]
    assert not missing, (r["task"], r["optimizer"], missing)
    for k in NUMBERS:
      assert isinstance(r[k], (int, float)) and math.isfinite(r[k]), (
          r["task"], r["optimizer"], k, r[k])
    assert r["setting"] == "quick" and r["steps"] > 0
    assert len(r["train_curve"]) == cv.N_EVAL
    assert len(r["valid_curve"]) == cv.N_EVAL + 1
    for curve in (r["train_curve"], r["valid_curve"]):
      steps = [s for s, _ in curve]
      assert steps == sorted(steps) and steps[-1] == r["steps"]
      assert all(math.isfinite(v) for _, v in curve), (r["optimizer"],
                                                       curve)

  # unity_g0 is AdamW in AutoSGM's form (same cosine annealing, same
  # decay): the harness must give both the same numbers.
  by_key = {cv.record_key(r): r for r in records}
  for task in cv.TASKS:
    for lr in cv.QUICK_LR_GRID:
      a = by_key[(task, "adamw", f"{lr:.6e}", 0)]
      u = by_key[(task, "unity_g0", f"{lr:.6e}", 0)]
      assert math.isclose(a["final_test_metric"], u["final_test_metric"],
                          rel_tol=1e-3, abs_tol=1e-6), (task, lr)

  assert "command:" in stdout and "--quick" in stdout
  assert "total time:" in stdout
  assert not list(out.glob(".results.*")), "a temporary file was left"


def test_second_invocation_resumes_and_does_nothing(quick):
  out, _, first = quick
  path = out / "results.json"
  before, mtime = path.read_text(), path.stat().st_mtime_ns
  proc, elapsed = _run("--quick", "--out", str(out), "--no-progress")
  assert path.read_text() == before and path.stat().st_mtime_ns == mtime
  assert " lr=" not in proc.stdout  # no point was trained
  assert "total time:" in proc.stdout
  assert elapsed < 60, elapsed  # start-up only, no compilation
  print(f"first run {first:.1f}s, resumed run {elapsed:.1f}s")


def test_interrupted_run_redoes_only_the_missing_points(quick, tmp_path):
  out, _, _ = quick
  shutil.copy(out / "results.json", tmp_path / "results.json")
  records = _records(tmp_path)
  drop = [r for r in records if r["task"] == "quadratic"
          and (r["optimizer"] == "unity_g0.31"
               or (r["optimizer"] == "adamw"
                   and r["learning_rate"] == cv.QUICK_LR_GRID[0]))]
  assert len(drop) == 2
  kept = [r for r in records if r not in drop]
  (tmp_path / "results.json").write_text(json.dumps(kept))
  proc, _ = _run("--quick", "--out", str(tmp_path), "--tasks", "quadratic",
                 "--no-progress")
  after = _records(tmp_path)
  assert after[:len(kept)] == kept  # untouched, in order
  redone = after[len(kept):]
  assert sorted(cv.record_key(r) for r in redone) == sorted(
      cv.record_key(r) for r in drop)
  assert proc.stdout.count(" lr=") == 2


def test_report_writes_the_plots_and_prints_tables(quick, tmp_path):
  out, _, _ = quick
  before = (out / "results.json").read_text()
  docs = tmp_path / "docs"
  proc, _ = _run("--report", "--out", str(out), "--docs", str(docs))
  for name in ("convergence_lr.png", "convergence_gamma.png"):
    path = docs / name
    assert path.exists() and path.stat().st_size > 10_000, name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  text = proc.stdout
  for task in cv.TASKS:
    assert f"### {task}:" in text
  assert "| configuration | lr (best valid) |" in text
  assert "| AdamW |" in text and "| adamw |" in text
  assert "best unity" in text and "best correlation" in text
  assert "|---|" in text
  assert (out / "results.json").read_text() == before  # read only


def test_refuses_to_mix_quick_and_full_records(quick):
  out, _, _ = quick
  proc = subprocess.run(
      [sys.executable, str(SCRIPT), "--out", str(out), "--tasks",
       "quadratic", "--no-progress"],
      cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
  assert proc.returncode != 0
  assert "another --out" in proc.stdout + proc.stderr
