"""The original PyTorch AutoSGM's matrix variant (mix_cfg) through
from_torch_config: which leaves take it, and its update against a float64
NumPy re-derivation of the original's matrix step (its filter, the Lakic
inverse square root of v v^T, its scalar numerator, its learning rate)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autosgm_optax.migration._torch import from_torch_config
from autosgm_optax.migration._torch import matrix_labels
from conftest import assert_bitwise_equal, relative_error
from test_polar import _np_lakic

LR0 = 1e-2
POLE = 0.95
EPS = 1e-10


def test_the_original_matrix_leaves():
  params = {"w": jnp.zeros((8, 16)), "thin": jnp.zeros((3, 16)),
            "wide": jnp.zeros((4, 3000)), "conv": jnp.zeros((4, 5, 6)),
            "b": jnp.zeros(16), "s": jnp.zeros(())}
  assert matrix_labels(params) == {
      "w": "matrix", "thin": "elementwise", "wide": "elementwise",
      "conv": "matrix", "b": "elementwise", "s": "elementwise"}


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(32, 6))
  y = rng.normal(size=(32, 10))
  w0 = rng.normal(size=(6, 10)) * 0.3
  return x, y, w0


def _numpy_original(num_lrc, wd, steps):
  """The original's matrix step on W (6 x 10, the smaller dimension first),
  loss 0.5 mean ||x W - y||^2: v = pole v + g (gain 1, zero 0, no
  debias); direction V = (v v^T + eps I)^(-1/2) v by its Lakic iteration;
  a = clip(||lr0 W V^T||, eps, clip(||lr0 W W^T||, eps, lr0)) for
  num_lrc 1, 2 (lr0 for 0); decoupled decay (1 - pole) wd W added to V;
  W <- W - a V."""
  x, y, w = _problem()
  v = np.zeros_like(w)
  for _ in range(steps):
    g = x.T @ (x @ w - y) / len(x)
    v = POLE * v + g
    d = _np_lakic(v, 5, EPS)
    d = d + (1 - POLE) * wd * w
    if num_lrc in (1, 2):
      cw = np.clip(np.linalg.norm(LR0 * w @ w.T), EPS, LR0)
      a = np.clip(np.linalg.norm(LR0 * w @ d.T), EPS, cw)
    else:
      a = LR0
    w = w - a * d
  return w


def _run(tx, steps, dtype=jnp.float32):
  x, y, w0 = _problem()
  x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
  # b takes the element-wise path; it stays out of the loss (zero
  # gradient: it does not move), so that W's gradient is the reference's.
  params = {"w": jnp.asarray(w0, dtype), "b": jnp.zeros(10, dtype)}
  loss = lambda p: (0.5 * jnp.mean(jnp.sum((x @ p["w"] - y) ** 2, 1))
                    + 0.0 * jnp.sum(p["b"]))
  state = tx.init(params)
  for _ in range(steps):
    u, state = jax.jit(tx.update)(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, u)
  return params


@pytest.mark.parametrize("num_lrc, wd", [(0, 0.0), (1, 0.0), (2, 0.1)])
def test_the_matrix_update_against_the_original_formulas(num_lrc, wd):
  steps = 8
  tx = from_torch_config(lr_cfg=(True, 1e-3, num_lrc), wd_cfg=(wd, 1),
                         eps_cfg=(EPS,), mix_cfg=(True, False, LR0, POLE, 0))
  out = _run(tx, steps)
  ours = out["w"]
  np.testing.assert_array_equal(out["b"], 0.0)
  ref = _numpy_original(num_lrc, wd, steps)
  start = _problem()[2]
  assert relative_error(ref, start) > 1e-3  # it moved
  # float32 against float64: the Lakic iteration works on v v^T, whose
  # float32 rounding (about 1e-7 relative) the inverse square root turns
  # into about 1e-6 in the direction; 8 steps of lr0 = 1e-2 (measured:
  # 3.3e-7).
  assert relative_error(ours, ref) <= 1e-5


@pytest.mark.parametrize("num_lrc, wd", [(0, 0.0), (1, 0.0), (2, 0.1)])
def test_the_matrix_update_is_the_original_formulas_in_float64(
    num_lrc, wd, enable_x64):
  del enable_x64
  tx = from_torch_config(lr_cfg=(True, 1e-3, num_lrc), wd_cfg=(wd, 1),
                         eps_cfg=(EPS,), mix_cfg=(True, False, LR0, POLE, 0))
  ours = _run(tx, 8, jnp.float64)["w"]
  assert ours.dtype == jnp.float64
  assert relative_error(ours, _numpy_original(num_lrc, wd, 8)) <= 1e-12


def test_without_mix_it_is_autosgm():
  plain = from_torch_config()
  mixed_off = from_torch_config(mix_cfg=(False, False, 1e-2, 0.95, 0))
  assert_bitwise_equal(_run(plain, 3), _run(mixed_off, 3))


def test_mix_cfg_refusals():
  with pytest.raises(ValueError, match="avg"):
    from_torch_config(mix_cfg=(True, True, 1e-2, 0.95, 0))
  with pytest.raises(ValueError, match="lr0"):
    from_torch_config(mix_cfg=(True, False, 0.0, 0.95, 0))
  with pytest.raises(ValueError, match="zero"):
    from_torch_config(mix_cfg=(True, False, 1e-2, 0.5, 0.6))
  with pytest.raises(ValueError, match="mix_cfg"):
    from_torch_config(mix_cfg=(True, False, 1e-2))
