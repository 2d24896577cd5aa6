"""What a new user meets first: the README's code, the licence, install hints.

Every fenced ``python`` block of README.md and of the pages of docs/ must
run when pasted alone into a fresh interpreter: each block is run as its own script by ``sys.executable``
in an empty temporary directory, with this checkout first on ``PYTHONPATH``
and matplotlib's non-interactive Agg backend.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LICENSE = ROOT / "LICENSE"
PYPROJECT = ROOT / "pyproject.toml"

#: Seconds one block may take (importing jax and flax takes a few).
BLOCK_TIMEOUT_S = 120

#: SHA-256 of the standard Apache License 2.0 text (the file at
#: apache.org/licenses/LICENSE-2.0.txt, as jax and optax ship it, its
#: appendix's boilerplate left unfilled), whitespace collapsed to one space.
APACHE_2_SHA256 = (
    "0ffddef9e48f8a09aed5caf2d44f7ba1c1be2d9b8e0a6f693b1635b2d5566645")


def _words(text):
  """The text with every run of whitespace (line wraps too) as one space."""
  return " ".join(text.split())


def python_blocks(path=README):
  """(first line number, code) of each fenced ```python block of a page."""
  text = path.read_text(encoding="utf-8")
  blocks = []
  for match in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text,
                           re.S | re.M):
    line = text.count("\n", 0, match.start(1)) + 1
    blocks.append((line, match.group(1)))
  return blocks


BLOCKS = python_blocks()
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
PAGE_BLOCKS = [(path.relative_to(ROOT).as_posix(), line, code)
               for path in PAGES for line, code in python_blocks(path)]


def _fresh_env():
  env = dict(os.environ)
  env["MPLBACKEND"] = "Agg"
  # This checkout's package, whatever copy the environment has installed.
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
  return env


def test_the_readme_has_python_blocks():
  assert len(BLOCKS) >= 3, [line for line, _ in BLOCKS]
  assert len(PAGE_BLOCKS) >= 7, [(p, line) for p, line, _ in PAGE_BLOCKS]


@pytest.mark.parametrize("page, line, code", PAGE_BLOCKS,
                         ids=[f"{p}:{line}" for p, line, _ in PAGE_BLOCKS])
def test_python_block_runs_alone_in_a_fresh_interpreter(page, line, code,
                                                         tmp_path):
  script = tmp_path / f"line_{line}.py"
  script.write_text(code, encoding="utf-8")
  run = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                       env=_fresh_env(), capture_output=True, text=True,
                       timeout=BLOCK_TIMEOUT_S, check=False)
  assert run.returncode == 0, (
      f"{page}'s python block at line {line} failed when run alone "
      f"(exit {run.returncode}):\n{run.stderr[-4000:]}")


def test_license_file_is_the_apache_2_text():
  assert LICENSE.is_file(), "LICENSE is missing at the top level"
  text = LICENSE.read_text(encoding="utf-8")
  assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
  assert "END OF TERMS AND CONDITIONS" in text
  digest = hashlib.sha256(_words(text).encode("utf-8")).hexdigest()
  assert digest == APACHE_2_SHA256, "LICENSE is not the standard Apache 2.0 text"


def test_pyproject_declares_the_license_file():
  project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
  assert project["license"] == "Apache-2.0"
  assert "LICENSE" in project["license-files"]


_MISSING_MATPLOTLIB = """
import json, sys
sys.modules["matplotlib"] = None  # as if matplotlib were not installed
from autosgm_optax.analysis._plotting import plot_dynamics, plot_windows
messages = {}
for name, call in (("plot_windows", lambda: plot_windows({}, 10)),
                   ("plot_dynamics", lambda: plot_dynamics([]))):
  try:
    call()
  except ImportError as error:
    messages[name] = str(error)
print(json.dumps(messages))
"""


def _install_hint_messages():
  run = subprocess.run([sys.executable, "-c", _MISSING_MATPLOTLIB],
                       cwd=ROOT, env=_fresh_env(), capture_output=True,
                       text=True, timeout=BLOCK_TIMEOUT_S, check=True)
  return json.loads(run.stdout.strip().splitlines()[-1])


def test_missing_matplotlib_hint_is_the_guides():
  messages = _install_hint_messages()
  assert set(messages) == {"plot_windows", "plot_dynamics"}, messages
  hints = set()
  for name, message in messages.items():
    assert message.startswith(f"{name} needs matplotlib, "), message
    hints.add(message.split("needs matplotlib, ", 1)[1].rstrip("."))
  assert len(hints) == 1, hints
  hint, = hints
  # One hint that works from a checkout and from an installed package.
  assert "`pip install matplotlib`" in hint, hint
  guide = _words((ROOT / "docs" / "guide.md").read_text(encoding="utf-8"))
  assert hint in guide, (hint, "is not what docs/guide.md says")
  # The docstrings say the same (reST's double backquotes aside).
  from autosgm_optax.analysis import _plotting  # pylint: disable=import-outside-toplevel
  for function in (_plotting.plot_windows, _plotting.plot_dynamics):
    doc = _words(function.__doc__.replace("``", "`"))
    assert hint.replace("an optional", "matplotlib is an optional") in doc, (
        function.__name__)


def test_no_install_hint_names_an_unpublished_package():
  """autosgm-optax is on no registry: `pip install "autosgm-optax[...]"` fails."""
  for path in (README, ROOT / "docs" / "guide.md",
               ROOT / "autosgm_optax" / "analysis" / "_plotting.py",
               ROOT / "autosgm_optax" / "demo.py"):
    assert "autosgm-optax[" not in path.read_text(encoding="utf-8"), path
