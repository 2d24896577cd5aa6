"""plot_windows: one line per window holding its values, labels, axes, errors."""

import builtins
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from autosgm_optax import window_schedule  # pylint: disable=g-import-not-at-top
from autosgm_optax.analysis._plotting import plot_windows  # pylint: disable=g-import-not-at-top

INSTALL_HINT = "`pip install matplotlib`"


@pytest.fixture(autouse=True)
def close_figures():
  """Every test starts and ends without open figures."""
  plt.close("all")
  yield
  plt.close("all")


def windows():
  return {
      "cosine": window_schedule(20, floor=0.1),
      "linear full": window_schedule(20, "polynomial", full=True, floor=0.2),
      "flat top": window_schedule(20, "sigmoid", flat_top=0.3),
      "stairs restarts": window_schedule(8, stairs=3, restarts=True),
      "kronecker": window_schedule(16, floor=0.1, kronecker=True),
      "epochs": window_schedule(5, "late_sigmoid", steps_per_epoch=4),
      "flat": window_schedule(20, "flat"),
      "lambda": lambda count: 0.5 ** (count / 10),
  }


def assert_lines_hold(ax, pairs, horizon):
  lines = ax.get_lines()
  assert len(lines) == len(pairs)
  steps = jnp.arange(horizon)
  for line, (label, schedule) in zip(lines, pairs):
    assert line.get_label() == label
    np.testing.assert_array_equal(line.get_xdata(), np.arange(horizon))
    np.testing.assert_allclose(
        line.get_ydata(), np.asarray(jax.vmap(schedule)(steps)),
        rtol=1e-6, atol=1e-7, err_msg=label)


def test_one_line_per_window_with_its_values_from_a_mapping():
  pairs = list(windows().items())
  horizon = 37  # past the frames: floors, holds and restarts are drawn too
  fig = plot_windows(dict(pairs), horizon)
  assert isinstance(fig, matplotlib.figure.Figure)
  assert len(fig.axes) == 1
  assert_lines_hold(fig.axes[0], pairs, horizon)
  legend = fig.axes[0].get_legend()
  assert legend is not None
  assert [t.get_text() for t in legend.get_texts()] == [l for l, _ in pairs]


def test_sequence_of_pairs_keeps_its_order():
  pairs = list(reversed(list(windows().items())))[:3]
  fig = plot_windows(pairs, 25)
  assert_lines_hold(fig.axes[0], pairs, 25)
  assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
      label for label, _ in pairs]


def test_axes_labels_limits_and_title():
  fig = plot_windows({"cosine": window_schedule(10)}, 12, title="half")
  ax = fig.axes[0]
  assert ax.get_xlabel() == "step"
  assert ax.get_ylabel() == "F(step)"
  np.testing.assert_allclose(ax.get_ylim(), (-0.02, 1.05))
  assert ax.get_title() == "half"
  fig = plot_windows({"cosine": window_schedule(10)}, 12)
  assert fig.axes[0].get_title() == ""


def test_a_given_ax_is_drawn_on_and_no_figure_is_made():
  fig, (left, right) = plt.subplots(1, 2)
  before = plt.get_fignums()
  pairs = [("a", window_schedule(10)), ("b", window_schedule(10, full=True))]
  returned = plot_windows(pairs, 15, ax=right, title="right")
  assert returned is fig
  assert plt.get_fignums() == before
  assert not left.get_lines()
  assert right.get_title() == "right"
  assert_lines_hold(right, pairs, 15)


def test_horizon_one():
  fig = plot_windows({"cosine": window_schedule(10)}, 1)
  np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1.0])


@pytest.mark.parametrize("horizon, error", [
    (0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_horizon(horizon, error):
  with pytest.raises(error, match="horizon"):
    plot_windows({"cosine": window_schedule(10)}, horizon)


def test_bad_windows():
  with pytest.raises(ValueError, match="empty"):
    plot_windows({}, 10)
  with pytest.raises(TypeError, match="not a schedule"):
    plot_windows({"number": 0.5}, 10)
  with pytest.raises(TypeError, match="pairs"):
    plot_windows([window_schedule(10)], 10)
  with pytest.raises(ValueError, match="scalar"):
    plot_windows({"vector": lambda count: jnp.ones(2) * count}, 10)


def test_import_error_names_the_extra_when_matplotlib_is_missing(
    monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(ImportError, match=r"matplotlib") as info:
    plot_windows({"cosine": window_schedule(10)}, 10)
  assert INSTALL_HINT in str(info.value)


def test_import_error_when_the_import_itself_fails(monkeypatch):
  real_import = builtins.__import__

  def no_matplotlib(name, *args, **kwargs):
    if name == "matplotlib" or name.startswith("matplotlib."):
      raise ModuleNotFoundError(f"No module named {name!r}")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_matplotlib)
  with pytest.raises(ImportError) as info:
    plot_windows({"cosine": window_schedule(10)}, 10)
  assert INSTALL_HINT in str(info.value)
  assert isinstance(info.value.__cause__, ModuleNotFoundError)
