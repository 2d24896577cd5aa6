"""Sphinx configuration of the autosgm_optax API reference.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``pip install ".[docs]"``). The notebooks live in ``notebooks/``, outside
this source tree; they are copied into ``docs/notebooks/`` (not tracked)
when the build starts and rendered with their stored outputs (myst-nb,
execution off).
"""

import ast
import inspect
import os
import pathlib
import re
import shutil
import sys
import tempfile
import textwrap

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from sphinx.pycode import ModuleAnalyzer  # noqa: E402
from sphinx.pycode import PycodeError  # noqa: E402

import autosgm_optax  # noqa: E402  pylint: disable=g-import-not-at-top

project = "autosgm_optax"
author = "autosgm_optax authors"
copyright = author
release = version = autosgm_optax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]

# Markdown pages and notebooks: $...$ / $$...$$ math, rendered as stored.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"

# Google-style docstrings (Args, Returns, Raises, Example).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not duplicate objects
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
# Type aliases by name, not as the unions they stand for (``Window``: a
# window block, a schedule or a number; the docstrings' Args say which).
autodoc_type_aliases = {
    name: name for name in (
        "optax.ScalarOrSchedule", "optax.Schedule", "optax.Updates",
        "optax.Params", "chex.Array", "chex.Numeric", "jax.typing.ArrayLike",
        "Window")
}

html_theme = "alabaster"
html_static_path = []
html_show_sourcelink = False


# The notebooks: copied in (only when changed, atomically, so that a
# concurrent build never reads a partial file), stale copies removed.
def _sync_notebooks():
  source, target = ROOT / "notebooks", DOCS / "notebooks"
  target.mkdir(exist_ok=True)
  wanted = {p.name: p for p in sorted(source.glob("*.ipynb"))}
  for name, path in wanted.items():
    copy = target / name
    data = path.read_bytes()
    if copy.exists() and copy.read_bytes() == data:
      continue
    fd, tmp = tempfile.mkstemp(dir=target, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    shutil.copystat(path, tmp)
    os.replace(tmp, copy)
  for copy in target.glob("*.ipynb"):
    if copy.name not in wanted:
      copy.unlink()


_sync_notebooks()


# NamedTuple fields: Python documents each as "Alias for field number N";
# the source says what a field holds in the comment after it
# (``count: chex.Array  # shape=(); updates made so far.``). Use that.
_ALIAS = re.compile(r"^Alias for field number \d+$")


def _field_comments(cls):
  """``{field: comment}`` from the class's source: the comment after a
  field, with the comment lines under it while they do not end a sentence
  (a block that ends with a full stop introduces the next field)."""
  try:
    src = textwrap.dedent(inspect.getsource(cls)).splitlines()
  except (OSError, TypeError):
    return {}
  fields = [node for node in ast.parse("\n".join(src)).body[0].body
            if isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)]
  comments, leading = {}, []
  for node in fields:
    line = src[node.end_lineno - 1]
    parts = leading + ([line.split("#", 1)[1].strip()] if "#" in line else [])
    block = []
    for nxt in src[node.end_lineno:]:
      if not nxt.strip().startswith("#"):
        break
      block.append(nxt.strip()[1:].strip())
    if block and block[-1].endswith("."):
      leading = block
    else:
      parts, leading = parts + block, []
    if parts:
      comments[node.target.id] = " ".join(parts)
  return comments


def _field_docstring(app, what, name, obj, options, lines):
  del app, options, obj
  if what != "attribute" or not lines or not _ALIAS.match(lines[0].strip()):
    return
  owner, _, field = name.rpartition(".")
  module, _, cls_name = owner.rpartition(".")
  cls = getattr(sys.modules.get(module), cls_name, None)
  comment = _field_comments(cls).get(field) if cls is not None else None
  lines[:] = [_literal(comment)] if comment else []


def _literal(text):
  """A source comment as reST: its double-backquoted literals kept, the
  characters reST would read as markup elsewhere (``|r|``, ``*``) escaped."""
  pieces = re.split(r"(``.+?``)", text)
  return "".join(piece if i % 2 else re.sub(r"([\\*`|_])", r"\\\1", piece)
                 for i, piece in enumerate(pieces))


# Module-level constants re-exported from a private module: autodoc looks
# for their ``#:`` comment where they are documented and, finding none, shows
# the docstring of their type (``str``). Use the comment of the module that
# defines them.
def _data_docstring(app, what, name, obj, options, lines):
  del app, options
  if what != "data" or not _is_type_doc(lines, obj):
    return
  short = name.rpartition(".")[2]
  for module_name, module in sorted(sys.modules.items()):
    if (module_name.startswith("autosgm_optax.")
        and getattr(module, short, None) is obj):
      try:
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
      except PycodeError:
        continue
      if ("", short) in docs:
        lines[:] = list(docs["", short])
        return


def _is_type_doc(lines, obj):
  """The docstring is that of the object's type (``str.__doc__``)."""
  doc = type(obj).__doc__
  return bool(doc) and " ".join("\n".join(lines).split()) == " ".join(
      doc.split())


# ``X | None`` with an alias X of ``autodoc_type_aliases`` is shown as
# ``TypeAliasForwardRef('X') | None`` (Sphinx 9); show the alias.
_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('([^']*)'\)")


def _signature(app, what, name, obj, options, signature, return_annotation):
  del app, what, name, obj, options
  return _unforward(signature), _unforward(return_annotation)


def _unforward(text):
  return _FORWARD_REF.sub(r"\1", text) if text else text


def setup(app):
  app.connect("autodoc-process-docstring", _field_docstring)
  app.connect("autodoc-process-docstring", _data_docstring)
  app.connect("autodoc-process-signature", _signature)
