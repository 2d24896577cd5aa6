"""Gallery of windows F(step) (docs/algorithm.md, section 5): the README's
docs/windows.png.

Each panel is drawn by ``autosgm_optax.analysis._plotting.plot_windows`` from
``window_schedule`` (frame length 100 steps unless stated):

1. the seven shapes as half windows with floor 0.1;
2. the shape parameters: raised-cosine orders and sigmoid rates;
3. full windows (warm up, then anneal) of three shapes;
4. a flat top of coverage 0.3 (half and full window);
5. a staircase of 3 sub-decays;
6. warm restarts: 3 frames of 40 steps;
7. Kronecker ordering against the plain half window (length 16, markers);
8. epoch units: a 10-epoch frame of 10 steps per epoch against 100 steps;
9. everything composed: full window, flat top, staircase, floor, restarts.

Usage:
  python benchmarks/window_gallery.py                    # docs/windows.png
  python benchmarks/window_gallery.py --out other.png --dpi 100
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from autosgm_optax import window_schedule  # pylint: disable=g-import-not-at-top
from autosgm_optax.analysis._plotting import plot_windows  # pylint: disable=g-import-not-at-top

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_OUT = os.path.join(_ROOT, "docs", "windows.png")

LENGTH = 100
HORIZON = 120
#: The shapes panel runs on past the frame to leave room for its legend.
SHAPES_HORIZON = 190


def panels():
  """(title, windows, horizon) for each panel, in reading order."""
  w = window_schedule
  shapes = [
      ("flat", w(LENGTH, "flat")),
      ("raised_cosine", w(LENGTH, "raised_cosine", floor=0.1)),
      ("polynomial", w(LENGTH, "polynomial", floor=0.1)),
      ("beta_exponential", w(LENGTH, "beta_exponential", floor=0.1)),
      ("simple_polynomial", w(LENGTH, "simple_polynomial", floor=0.1)),
      ("sigmoid", w(LENGTH, "sigmoid", floor=0.1)),
      ("late_sigmoid", w(LENGTH, "late_sigmoid", floor=0.1)),
  ]
  params = [  # in this order, the legend's rows are cosines, sigmoids.
      ("cosine n=1", w(LENGTH, order=1)),
      ("sigmoid r=2", w(LENGTH, "sigmoid", rate=2)),
      ("cosine n=2", w(LENGTH, order=2)),
      ("sigmoid r=8", w(LENGTH, "sigmoid", rate=8)),
      ("cosine n=8", w(LENGTH, order=8)),
  ]
  full = [
      ("raised_cosine", w(LENGTH, full=True, floor=0.1)),
      ("polynomial", w(LENGTH, "polynomial", full=True, floor=0.1)),
      ("sigmoid", w(LENGTH, "sigmoid", full=True, floor=0.1)),
  ]
  flat_top = [
      ("half, flat_top=0.3", w(LENGTH, flat_top=0.3, floor=0.1)),
      ("full, flat_top=0.3", w(LENGTH, full=True, flat_top=0.3, floor=0.1)),
  ]
  stairs = [
      ("cosine, stairs=3", w(LENGTH, stairs=3, floor=0.1)),
      ("sigmoid r=8, stairs=3", w(LENGTH, "sigmoid", rate=8, stairs=3,
                                  floor=0.1)),
  ]
  restarts = [
      ("half cosine", w(40, restarts=True, floor=0.1)),
      ("full cosine", w(40, full=True, restarts=True, floor=0.1)),
  ]
  kronecker = [
      ("plain", w(16, floor=0.1)),
      ("kronecker=True", w(16, floor=0.1, kronecker=True)),
  ]
  epochs = [
      ("100 steps", w(LENGTH, floor=0.1)),
      ("10 epochs x 10 steps", w(10, floor=0.1, steps_per_epoch=10)),
  ]
  composed = [
      ("full, flat_top=0.2, stairs=2, restarts",
       w(60, full=True, flat_top=0.2, stairs=2, floor=0.2, restarts=True)),
  ]
  return [
      ("seven shapes (half, floor 0.1)", shapes, SHAPES_HORIZON),
      ("shape parameters (floor 0)", params, HORIZON),
      ("full windows: warm up, anneal", full, HORIZON),
      ("flat top 0.3", flat_top, HORIZON),
      ("staircase: 3 sub-decays", stairs, HORIZON),
      ("warm restarts: 3 frames of 40", restarts, HORIZON),
      ("Kronecker ordering (length 16)", kronecker, 16),
      ("epoch units (steps_per_epoch=10)", epochs, HORIZON),
      ("composed (length 60, floor 0.2)", composed, HORIZON),
  ]


def _shrink(path: str) -> None:
  """Rewrites the PNG with a 256-colour palette (a third of the bytes)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as image:
    small = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
  small.save(path, optimize=True)


def gallery(out: str, dpi: int = 100) -> str:
  """Draws the gallery into ``out`` (a PNG) and returns its path."""
  specs = panels()
  # Larger type than matplotlib's default: the README shows the image shrunk.
  with plt.rc_context({"font.size": 11}):
    fig = _draw(specs)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=dpi)
  plt.close(fig)
  _shrink(out)
  return out


def _draw(specs):
  """The gallery's figure, one panel per spec."""
  fig, axes = plt.subplots(3, 3, figsize=(13, 10.5), layout="constrained")
  for i, (ax, (title, windows, horizon)) in enumerate(zip(axes.flat, specs)):
    plot_windows(windows, horizon, ax=ax, title=title)
    if i == 6:  # Kronecker: few steps; markers show the values visited.
      for line, marker in zip(ax.get_lines(), ("o", "s")):
        line.set_marker(marker)
        line.set_markersize(4)
    if i == 0:  # seven entries: beside the floor, after the frame.
      ax.legend(loc="center right", fontsize="small")
    else:  # a band above F = 1 keeps the legend off the curves.
      ax.set_ylim(-0.02, 1.3)
      ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
      ax.legend(loc="upper center", ncol=min(3, len(windows)),
                fontsize="small", columnspacing=0.8, handlelength=1.5)
  fig.suptitle("autosgm_optax windows F(step): window_schedule(...)",
               fontsize="large")
  return fig


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=_DEFAULT_OUT, help="PNG path.")
  parser.add_argument("--dpi", type=int, default=100)
  args = parser.parse_args()
  path = gallery(args.out, args.dpi)
  print(f"{path}: {os.path.getsize(path) / 1024:.0f} KB")


if __name__ == "__main__":
  main()
