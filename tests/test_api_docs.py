"""The API reference (docs/) builds without a warning and documents every
public name: what ``autosgm_optax.__all__`` and its public submodules'
``__all__`` export, NamedTuple states with their fields, and the Markdown
pages and notebooks."""

import inspect
import os
import pathlib
import re
import subprocess
import sys
import types
import zlib

import pytest

import autosgm_optax

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUILD_TIMEOUT_S = 600

# One objects.inv entry: name, domain:role, priority, uri, display name.
_ENTRY = re.compile(r"(.+?)\s+(\S+?:\S+)\s+(-?\d+)\s+?(\S*)\s+(.*)")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
  """Builds the HTML docs once: (process, warnings text, output folder)."""
  pytest.importorskip("sphinx")
  out = tmp_path_factory.mktemp("docs") / "html"
  warnings = out.parent / "warnings.txt"
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  process = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
       "-q", "-w", str(warnings), str(DOCS), str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=BUILD_TIMEOUT_S, check=False)
  text = warnings.read_text(encoding="utf-8") if warnings.exists() else ""
  return process, text, out


def _inventory(out):
  """``{(domain:role, name)}`` of the built objects.inv (format version 2:
  four header lines, then zlib-compressed entries)."""
  data = (out / "objects.inv").read_bytes()
  header = data.split(b"\n", 4)
  assert header[0].strip() == b"# Sphinx inventory version 2", header[0]
  entries = set()
  for line in zlib.decompress(header[4]).decode("utf-8").splitlines():
    match = _ENTRY.match(line.rstrip())
    if match:
      entries.add((match.group(2), match.group(1)))
  return entries


def _submodules():
  """The public submodules: the modules in ``autosgm_optax.__all__``."""
  return [getattr(autosgm_optax, name) for name in autosgm_optax.__all__
          if isinstance(getattr(autosgm_optax, name), types.ModuleType)]


def _role(obj):
  if isinstance(obj, types.ModuleType):
    return "py:module"
  if inspect.isclass(obj):
    return "py:class"
  if callable(obj):
    return "py:function"
  return "py:data"


def _expected():
  """``{(role, documented name): exported as}`` for every public name. A
  name re-exported by ``autosgm_optax`` from a public submodule is
  documented once, at the submodule's path."""
  expected = {("py:module", "autosgm_optax"): "autosgm_optax"}
  canonical = {}
  for module in _submodules():
    expected["py:module", module.__name__] = module.__name__
    for name in module.__all__:
      obj = getattr(module, name)
      path = f"{module.__name__}.{name}"
      expected[_role(obj), path] = path
      canonical[id(obj)] = path
  for name in autosgm_optax.__all__:
    obj = getattr(autosgm_optax, name)
    if isinstance(obj, types.ModuleType):
      continue
    path = canonical.get(id(obj), f"autosgm_optax.{name}")
    expected[_role(obj), path] = f"autosgm_optax.{name}"
  return expected


def _fields(expected):
  """``{(py:attribute, Class.field)}`` of every documented NamedTuple's
  own fields (``AutoSGMBlock`` inherits ``init`` and ``update`` from Optax's
  ``GradientTransformation``, whose documentation has them)."""
  fields = set()
  for (role, path), exported in expected.items():
    if role != "py:class":
      continue
    module, _, name = exported.rpartition(".")
    cls = getattr(sys.modules[module], name)
    for field in getattr(cls, "_fields", ()):
      if field in vars(cls):
        fields.add(("py:attribute", f"{path}.{field}"))
  return fields


def _pages():
  """The documents the build must render: docs/*.md and the notebooks."""
  pages = {"index", "api"}
  pages |= {p.stem for p in DOCS.glob("*.md") if p.name != "README.md"}
  pages |= {f"notebooks/{p.stem}"
            for p in (ROOT / "notebooks").glob("*.ipynb")}
  return {("std:doc", page) for page in pages}


def test_docs_build_without_warnings(build):
  process, warnings, _ = build
  assert process.returncode == 0, (
      f"sphinx-build failed (exit {process.returncode}):\n"
      f"{process.stdout[-3000:]}\n{process.stderr[-6000:]}")
  # Sphinx's and docutils' warnings and errors, as -w writes them (stderr
  # may hold other libraries' log lines).
  assert not warnings.strip(), f"sphinx-build warned:\n{warnings}"


def test_every_public_name_is_documented(build):
  process, _, out = build
  # Checked apart from the warnings (test_docs_build_without_warnings):
  # with --keep-going a build that warns still writes its inventory.
  assert (out / "objects.inv").is_file(), process.stderr[-6000:]
  inventory = _inventory(out)
  expected = _expected()
  # The public names are all there (sanity: the lists are not empty).
  assert len(expected) > len(autosgm_optax.__all__), expected
  missing = sorted(f"{path} ({role[3:]}, exported as {exported})"
                   for (role, path), exported in expected.items()
                   if (role, path) not in inventory)
  assert not missing, (
      "public names missing from the API reference (add them to "
      "docs/api.rst):\n" + "\n".join(missing))


def test_named_tuple_fields_are_documented(build):
  process, _, out = build
  # Checked apart from the warnings (test_docs_build_without_warnings):
  # with --keep-going a build that warns still writes its inventory.
  assert (out / "objects.inv").is_file(), process.stderr[-6000:]
  fields = _fields(_expected())
  assert fields, "no NamedTuple state found among the public names"
  missing = sorted(name for _, name in fields - _inventory(out))
  assert not missing, "fields missing from the API reference: " + ", ".join(
      missing)


def test_pages_and_notebooks_are_rendered(build):
  process, _, out = build
  # Checked apart from the warnings (test_docs_build_without_warnings):
  # with --keep-going a build that warns still writes its inventory.
  assert (out / "objects.inv").is_file(), process.stderr[-6000:]
  missing = sorted(page for _, page in _pages() - _inventory(out))
  assert not missing, "pages missing from the docs build: " + ", ".join(
      missing)
  for _, page in _pages():
    assert (out / f"{page}.html").is_file(), page
