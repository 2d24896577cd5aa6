"""The documentation cites what a user can open: docs/algorithm.md (by its
numbered sections), tests/numpy_reference.py or a paper."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "algorithm.md"
#: Where docstrings, comments and notebooks live (README.md included).
SOURCES = ("autosgm_optax", "tests", "benchmarks", "notebooks")
SUFFIXES = {".py", ".ipynb", ".md", ".txt", ".rst"}

# The internal document's name, built from parts so that this file does not
# match itself; as a word (``SPECS``, a sharding-spec table, is not it).
INTERNAL = re.compile(r"\b" + "SP" + "EC" + r"\b")
# "docs/algorithm.md, section 4", "docs/algorithm.md, sections 1-6", also
# across a line break or a notebook's JSON string boundary.
CITATION = re.compile(
    r"docs/algorithm\.md,(?:[\s#:\"]|\\n)*sections?\s+(\d+)(?:\s*-\s*(\d+))?")
HEADING = re.compile(r"^## (\d+)\.", re.MULTILINE)


def _files():
  yield ROOT / "README.md"
  for name in SOURCES:
    for path in sorted((ROOT / name).rglob("*")):
      if (path.is_file() and path.suffix in SUFFIXES
          and ".ipynb_checkpoints" not in path.parts):
        yield path


def _read(path):
  return path.read_text(encoding="utf-8", errors="replace")


def test_no_internal_references():
  found = []
  for path in _files():
    for number, line in enumerate(_read(path).splitlines(), 1):
      if INTERNAL.search(line):
        found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
  assert not found, (
      "cite docs/algorithm.md, tests/numpy_reference.py or a paper instead "
      "of an internal document:\n" + "\n".join(found))


def test_algorithm_page_sections():
  headings = {int(n) for n in HEADING.findall(_read(PAGE))}
  assert headings, f"{PAGE} has no numbered sections (## N.)"
  cited, missing = 0, []
  for path in _files():
    for match in CITATION.finditer(_read(path)):
      first = int(match.group(1))
      last = int(match.group(2) or first)
      for n in range(first, last + 1):
        cited += 1
        if n not in headings:
          line = _read(path).count("\n", 0, match.start()) + 1
          missing.append(f"{path.relative_to(ROOT)}:{line}: section {n}")
  assert cited, "no file cites docs/algorithm.md by section"
  assert not missing, (
      f"sections cited but not headings (## N.) of {PAGE.name}: "
      + ", ".join(missing))
