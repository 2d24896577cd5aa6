"""The package passes its linter, its formatter's check and its type checker
(configured in pyproject.toml), and ships a py.typed marker."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command):
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False)


def test_ruff_finds_nothing():
  ruff = shutil.which("ruff")
  if ruff is None:
    pytest.skip("ruff is not installed (it is in the test extra)")
  result = _run(ruff, "check", "autosgm_optax")
  assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_is_ruff_formatted():
  ruff = shutil.which("ruff")
  if ruff is None:
    pytest.skip("ruff is not installed (it is in the test extra)")
  result = _run(ruff, "format", "--check", "autosgm_optax")
  assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
  pytest.importorskip("mypy")
  result = _run(sys.executable, "-m", "mypy")
  assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_is_marked_typed():
  assert (ROOT / "autosgm_optax" / "py.typed").exists()
  pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
  assert '"py.typed"' in pyproject
