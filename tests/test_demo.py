"""The demo (python -m autosgm_optax.demo) trains both optimizers for real."""

import math
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from autosgm_optax import demo  # pylint: disable=g-import-not-at-top

NAMES = ("AutoSGM", "AdamW")


def test_quick_run_trains_both_and_prints_the_table(capsys):
  run = demo.main(["--quick"])
  out = capsys.readouterr().out

  results = run["results"]
  assert tuple(results) == NAMES
  for name, r in results.items():
    # Chance is 10%; the quick run reaches 92-97% for seeds 0-4.
    assert r["test_accuracy"] > 0.8, (name, r["test_accuracy"])
    assert math.isfinite(r["test_loss"]) and r["test_loss"] < 0.6, (name, r)
    # About ln(10) = 2.3 at the start; the full-train-set loss must fall far.
    assert r["initial_train_loss"] > 1.5, (name, r)
    assert r["train_loss"] < 0.25 * r["initial_train_loss"], (name, r)
    losses = r["epoch_losses"]
    assert len(losses) == demo.QUICK_EPOCHS
    assert losses[-1] < 0.5 * losses[0], (name, losses)
    assert r["steps"] > 0 and r["wall_time_s"] > 0

  # Both optimizers start from the same weights.
  assert (results["AutoSGM"]["initial_train_loss"]
          == results["AdamW"]["initial_train_loss"])

  # The table is printed, with a row per optimizer.
  assert run["table"] in out
  assert "test acc" in out
  rows = [line.split()[0] for line in out.splitlines() if line.strip()]
  for name in NAMES:
    assert name in rows, out


def test_autosgm_configuration_is_not_adam():
  """The demo's AutoSGM: correlation numerator, a window, not AdamW's steps."""
  tx = demo.make_optimizers(total_steps=10)
  params = {"w": jnp.array([0.5, -1.0, 2.0])}
  core = tx["AutoSGM"].init(params)[0]
  assert core.numerator.c is not None and core.numerator.p_abs is None
  assert not isinstance(core.window, optax.EmptyState)

  updates = {}
  for name, t in tx.items():
    state = t.init(params)
    g = {"w": jnp.array([1.0, 2.0, -3.0])}
    updates[name], _ = t.update(g, state, params)
  assert not np.allclose(updates["AutoSGM"]["w"], updates["AdamW"]["w"])


def test_readme_quotes_the_table_in_the_demos_format():
  """README.md's Demo section shows the table exactly as format_table prints it."""
  readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(
      encoding="utf-8")
  section = readme.split("\n## Demo\n", 1)[1]
  quoted = re.search(r"^```\n(.*?)^```$", section, re.S | re.M).group(1)
  header, rule, *rows = quoted.splitlines()
  assert [line.split()[0] for line in rows] == list(NAMES)
  results = {}
  for line in rows:
    name, train, test, accuracy, wall, ms, bias = line.split()
    results[name] = {
        "train_loss": float(train), "test_loss": float(test),
        "test_accuracy": float(accuracy.rstrip("%")) / 100,
        "wall_time_s": float(wall.rstrip("s")), "ms_per_step": float(ms),
        "max_abs_bias": float(bias)}
  assert demo.format_table(results).splitlines() == [header, rule, *rows]
  # Timings differ from machine to machine: the README says so.
  intro = " ".join(section.split("```", 1)[0].split())
  assert "vary by machine" in intro and "the demo prints its own" in intro
