"""The speed benchmarks' extra modes run (smoke runs at a tiny size: their
timings say nothing; docs/performance.md has the real runs)."""

import pathlib
import re
import subprocess
import sys

import pytest

from autosgm_optax._src import backend

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _run(*args):
  result = subprocess.run([sys.executable, *args], cwd=BENCHMARKS,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_the_ablation_times_every_trick_on_its_configurations():
  out = _run("step_time.py", "--quick", "--ablation")
  rows = re.findall(r"^\| ([^|]+) \| (\w+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|",
                    out, re.M)
  assert {trick for _, trick in rows} == set(backend.TRICKS), rows
  verdicts = re.findall(r"^- (\w+) on .*: earns [+-][\d.]+% \((keep|below "
                        r"5%)\)$", out, re.M)
  assert len(verdicts) == len(rows) > 0


def test_compare_revisions_times_this_checkout_against_a_revision():
  if subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS,
                    capture_output=True, check=False).returncode:
    pytest.skip("not a git checkout")
  out = _run("compare_revisions.py", "--base", "HEAD", "--sizes", "1e4",
             "--steps", "3", "--warmup", "1", "--leaves", "4")
  rows = re.findall(r"^\| (.+?) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out, re.M)
  assert "full" in rows and len(rows) == 5, out


def test_convergence_matrix_mode_compares_adamw_muon_and_the_matrix_path(
    tmp_path):
  out = _run("convergence.py", "--matrix", "--quick", "--tasks", "digits",
             "--out", str(tmp_path), "--no-progress")
  report = (tmp_path / "report.md").read_text()
  assert report.strip() in out
  for name in ("adamw", "muon", "matrix_corr_g0.5528",
               "matrix_scalar_g0.5528"):
    assert re.search(rf"^\| {re.escape(name)} \| ", report, re.M), report
  assert "Matrix path (rank 2" in report and "dense/kernel" in report


def test_kernel_profile_reads_the_kernels_of_each_step_from_the_trace():
  out = _run("kernel_profile.py", "--quick")
  for condition in ("warm", "flushed"):
    assert f"### {condition}" in out, out
  rows = re.findall(r"^\| (full|floor \(4 buffers \+ reduction\)|optax\.adam)"
                    r" \| [\d.]+ \| \d+ \| [\d.]+ \| (.+) \|$",
                    out, re.M)
  assert len(rows) == 6, out
  kinds = {name: shown for name, shown in rows}
  # The full configuration's per-leaf average is a reduction kernel; the
  # trace's events are matched to the compiled program's instructions.
  assert "reduce" in kinds["full"] or "ynn" in kinds["full"], out
  assert "fusion" in kinds["optax.adam"], out
