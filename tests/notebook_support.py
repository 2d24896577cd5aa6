"""Running a notebook in a fresh kernel and reading what it printed."""

import json
import pathlib

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def outputs(nb):
  for cell in nb.cells:
    if cell.cell_type == "code":
      yield from cell.get("outputs", [])


def text(nb):
  return "".join(o.get("text", "") for o in outputs(nb)
                 if o.output_type == "stream")


def images(nb):
  return [o for o in outputs(nb)
          if o.output_type in ("display_data", "execute_result")
          and "image/png" in o.get("data", {})]


def errors(nb):
  return [o for o in outputs(nb) if o.output_type == "error"]


def run_with_report(path, report_code, marker, timeout):
  """Executes ``path`` with ``report_code`` appended; returns the notebook
  and the JSON the report printed after ``marker``."""
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  nb = nbformat.read(path, as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell(report_code.strip()))
  client = nbclient.NotebookClient(
      nb, timeout=timeout, kernel_name="python3", record_timing=False,
      resources={"metadata": {"path": str(path.parent)}})
  client.execute()  # raises CellExecutionError on any error
  assert not errors(nb)
  printed = text(nb)
  lines = [line for line in printed.splitlines() if line.startswith(marker)]
  assert len(lines) == 1, printed[-2000:]
  return nb, json.loads(lines[0][len(marker):])
