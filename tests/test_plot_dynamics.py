"""plot_dynamics: four panels (alpha, r, margin, dw) per leaf over the
updates, drawing exactly the recorded values, at both diagnostics levels."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

import autosgm_optax as asgm  # pylint: disable=wrong-import-position
from autosgm_optax.analysis._plotting import plot_dynamics  # pylint: disable=wrong-import-position

STEPS = 12
PARAMS = {"layer": {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2),
                    "b": jnp.zeros(2)},
          "out": jnp.array([0.5, -0.25])}
KEYS = {"layer/w": ("layer", "w"), "layer/b": ("layer", "b"),
        "out": ("out",)}


def _loss(p):
  h = jnp.tanh(jnp.ones((4, 3)) @ p["layer"]["w"] + p["layer"]["b"])
  return jnp.sum((h @ p["out"] - 1.0) ** 2)


_CACHE = {}


def _history(level):
  if level not in _CACHE:
    tx = asgm.autosgm(0.05, gamma=0.5,
                      window=asgm.raised_cosine_window(STEPS, full=True),
                      diagnostics=level)
    params, state = PARAMS, tx.init(PARAMS)
    step = jax.jit(lambda p, s: tx.update(jax.grad(_loss)(p), s, p))
    history = []
    for _ in range(STEPS):
      updates, state = step(params, state)
      params = optax.apply_updates(params, updates)
      history.append(asgm.learning_dynamics(state)[""])
    _CACHE[level] = history
  return _CACHE[level]


def _get(tree, name):
  for key in KEYS[name]:
    tree = tree[key]
  return np.asarray(tree, np.float64)


def _expected(history, field, name, statistic):
  out = []
  for dyn in history:
    value = getattr(dyn, field)
    if dyn.level == "summary":
      if statistic == "rms":
        out.append(np.hypot(_get(value.mean, name), _get(value.std, name)))
      else:
        out.append(_get(getattr(value, statistic), name))
    else:
      x = _get(value, name)
      out.append({"sup": np.max(np.abs(x)), "mean": np.mean(x),
                  "rms": np.sqrt(np.mean(x ** 2))}[statistic])
  return np.asarray(out, np.float64)


def _lines(ax):
  return {line.get_label(): line for line in ax.get_lines()
          if not line.get_label().startswith("_")}


@pytest.mark.parametrize("level", ["summary", "element"])
@pytest.mark.parametrize("statistic", ["sup", "mean"])
def test_plotted_values_are_the_recorded_values(level, statistic):
  history = _history(level)
  fig = plot_dynamics(history, statistic=statistic)
  try:
    assert len(fig.axes) == 4
    stats = {"sup": ("sup",) * 4, "mean": ("mean", "mean", "mean", "rms")}
    for ax, field, stat in zip(fig.axes, ("alpha", "r", "margin", "dw"),
                               stats[statistic]):
      lines = _lines(ax)
      assert sorted(lines) == sorted(KEYS)  # in the tree's order
      for name, line in lines.items():
        np.testing.assert_array_equal(line.get_xdata(),
                                      np.arange(1, STEPS + 1))
        np.testing.assert_allclose(line.get_ydata(),
                                   _expected(history, field, name, stat),
                                   rtol=1e-6, atol=1e-12)
      assert stat in ax.get_ylabel()
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[3].get_yscale() == "log"
    # the reference line at 1 in the r and margin panels, not in the legend
    for ax in fig.axes[1:3]:
      assert any(line.get_label() == "_one" for line in ax.get_lines())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == list(_lines(fig.axes[0]))
  finally:
    plt.close(fig)


def test_margin_is_beta_times_r():
  history = _history("summary")
  fig = plot_dynamics(history, leaves=["out"])
  try:
    r = fig.axes[1].get_lines()[0].get_ydata()
    margin = fig.axes[2].get_lines()[0].get_ydata()
    np.testing.assert_allclose(margin, 0.9 * r, rtol=1e-6)
    # the full window starts at 0: alpha(1) = 0, r(1) = r(2) = 0 (undefined)
    alpha = fig.axes[0].get_lines()[0].get_ydata()
    assert alpha[0] == 0 and r[0] == 0 and r[1] == 0 and alpha[1] > 0
  finally:
    plt.close(fig)


def test_leaves_axes_first_step_and_title():
  history = _history("element")
  fig, axes = plt.subplots(1, 4)
  try:
    out = plot_dynamics(history, leaves=["['layer']['w']", "out"], axes=axes,
                        first_step=5, title="run")
    assert out is fig
    for ax in axes:
      assert list(_lines(ax)) == ["layer/w", "out"]
      x = ax.get_lines()[0].get_xdata()
      np.testing.assert_array_equal(x, np.arange(5, 5 + STEPS))
    assert fig._suptitle.get_text() == "run"  # pylint: disable=protected-access
  finally:
    plt.close(fig)


def test_bad_arguments():
  history = _history("summary")
  with pytest.raises(ValueError, match="no leaf 'nope'"):
    plot_dynamics(history, leaves=["nope"])
  with pytest.raises(ValueError, match="empty"):
    plot_dynamics([])
  with pytest.raises(ValueError, match="statistic"):
    plot_dynamics(history, statistic="median")
  fig, axes = plt.subplots(1, 3)
  try:
    with pytest.raises(ValueError, match="4 Axes"):
      plot_dynamics(history, axes=axes)
  finally:
    plt.close(fig)
  mixed = history[:2] + _history("element")[:1]
  with pytest.raises(ValueError, match="one level"):
    plot_dynamics(mixed)
  plt.close("all")


def test_import_error_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(ImportError, match="plot_dynamics needs matplotlib") as e:
    plot_dynamics(_history("summary"))
  assert '`pip install matplotlib`' in str(e.value)
