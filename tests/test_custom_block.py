"""docs/custom_block.md: a numerator of one's own runs through
scale_by_autosgm, leaf by leaf where the library's do, and with the
diagnostics, and computes what its formulas say (a NumPy re-derivation)."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from conftest import relative_error

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / (
    "custom_block.md")
BETA, GAMMA, BETA2, EPS, LR, CAP = 0.9, 0.5528, 0.999, 1e-8, 1e-3, 10.0


@pytest.fixture(scope="module")
def page():
  blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
  assert len(blocks) == 1
  namespace = {}
  exec(compile(blocks[0], str(PAGE), "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def _grads(params):
  return jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)


def _numpy_reference(params, steps):
  """The page's optimizer from the formulas, in float64."""
  w = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in w.items()}
  nu = {k: np.zeros_like(v) for k, v in w.items()}
  eta = (1 - BETA) / (1 - GAMMA)
  alpha = {}
  for t in range(1, steps + 1):
    for k in w:
      g = np.cos(w[k]) + 0.1
      m_old = m[k]
      m[k] = BETA * m_old + eta * g
      s = ((1 - BETA**t) - GAMMA * (1 - BETA**(t - 1))) * eta / (1 - BETA)
      nu[k] = BETA2 * nu[k] + (1 - BETA2) * g**2
      d = np.sqrt(nu[k] / (1 - BETA2**t)) + EPS
      vbar = (m[k] - GAMMA * m_old) / s / d
      wn, vn = np.linalg.norm(w[k]), np.linalg.norm(vbar)
      a = min(wn / vn, CAP) if wn > 0 and vn > 0 else 1.0
      w[k] = w[k] - LR * a * vbar
      alpha[k] = LR * a / (d * s)  # the effective learning rate
  return w, alpha


def _train(tx, params, steps):
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(steps):
    updates, state = step(_grads(params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("diagnostics", [None, "summary", "element"])
def test_the_pages_numerator_against_numpy(page, diagnostics):
  params = {"w": jnp.linspace(-1.0, 2.0, 12).reshape(4, 3),
            "b": jnp.zeros(3), "c": jnp.arange(5.0)}
  tx = optax.chain(
      asgm.scale_by_autosgm(
          filter=asgm.lowpass_filter(BETA, gamma=GAMMA),
          denominator=asgm.moment_denominator(BETA2, EPS),
          numerator=page["trust_ratio_numerator"](CAP),
          diagnostics=diagnostics),
      asgm.scale_by_learning_rate(LR))
  got, state = _train(tx, params, 30)
  want, alpha = _numpy_reference(params, 30)
  for k in want:
    # 30 steps of float32 rounding in a lr-sized change
    assert relative_error(got[k], want[k]) < 1e-5, k
  if diagnostics is not None:
    # alpha = a / (d s): its sup over the zero-initialised bias is that
    # leaf's a = 1 over its smallest d s.
    (dyn,) = asgm.learning_dynamics(state).values()
    for k in want:
      sup = (dyn.alpha.sup[k] if diagnostics == "summary" else
             np.max(np.abs(dyn.alpha[k])))
      assert relative_error(sup, np.max(alpha[k])) < 1e-5, k


def test_the_page_runs_with_a_cadence(page):
  # The page's own run: diagnostics_every=2 reads a(t-1) through last().
  sup = page["dynamics"].alpha.sup
  assert set(sup) == {"w", "b"}
  assert all(np.isfinite(float(x)) and float(x) > 0 for x in sup.values())


def test_a_numerator_without_last_is_refused_with_a_cadence(page):
  block = page["trust_ratio_numerator"]()._replace(last=None)
  with pytest.raises(ValueError, match="has no last"):
    asgm.scale_by_autosgm(numerator=block, diagnostics="summary",
                          diagnostics_every=2)
