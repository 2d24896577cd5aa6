"""Bad input is refused when the optimizer is built, naming the argument, its
value and the valid range; arrays and tracers pass through unchecked; the
presets accept what Optax accepts."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autosgm_optax as asgm
from autosgm_optax import presets

# (factory, kwargs, error type, words the message must contain)
BAD = [
    (asgm.autosgm, dict(beta=1.0), ValueError, ["beta=1.0", "[0, 1)"]),
    (asgm.autosgm, dict(beta=-0.1), ValueError, ["beta=-0.1", "[0, 1)"]),
    (asgm.autosgm, dict(beta=0.9, gamma=0.95), ValueError,
     ["gamma=0.95", "gamma < beta"]),
    (asgm.autosgm, dict(beta=0.9, gamma=0.9), ValueError,
     ["gamma=0.9", "cancels the pole", "beta=0.0"]),
    (asgm.autosgm, dict(eta=0.0), ValueError, ["eta=0.0", "(0, inf)"]),
    (asgm.autosgm, dict(eta=-1.0), ValueError, ["eta=-1.0", "(0, inf)"]),
    (asgm.autosgm, dict(eps=-1e-8), ValueError, ["eps=-1e-08", "[0, inf)"]),
    (asgm.autosgm, dict(eps_root=-1.0), ValueError,
     ["eps_root=-1.0", "[0, inf)"]),
    (asgm.autosgm, dict(eps=0.0, eps_root=0.0), ValueError,
     ["eps=0", "eps_root=0"]),
    (asgm.autosgm, dict(learning_rate=0.0), ValueError,
     ["learning_rate=0.0", "(0, inf)"]),
    (asgm.autosgm, dict(learning_rate=-1e-3), ValueError,
     ["learning_rate=-0.001", "(0, inf)"]),
    (asgm.autosgm, dict(learning_rate="fast"), TypeError,
     ["learning_rate", "'fast'"]),
    (asgm.autosgm, dict(weight_decay=-0.1), ValueError,
     ["weight_decay=-0.1", "[0, inf)"]),
    (asgm.autosgm, dict(numerator="adaptive"), ValueError,
     ["numerator='adaptive'", "'correlation'"]),
    (asgm.autosgm, dict(decay="l2"), ValueError, ["decay='l2'", "'coupled'"]),
    (asgm.autosgm, dict(moment_beta=1.5), ValueError,
     ["moment_beta=1.5", "[0, 1)"]),
    (asgm.autosgm, dict(denominator=False, numerator="robust_correlation",
                        moment_beta=1.0), ValueError,
     ["moment_beta=1.0", "[0, 1)"]),
    (asgm.autosgm, dict(numerator="correlation", numerator_beta=1.0),
     ValueError, ["numerator_beta=1.0", "[0, 1)"]),
    (asgm.autosgm, dict(numerator="correlation", numerator_smoothing=1.5),
     ValueError, ["numerator_smoothing=1.5", "[0, 1)"]),
    (asgm.autosgm, dict(window=-0.5), ValueError, ["window=-0.5", "[0, inf)"]),
    (asgm.scale_by_window, dict(window=-1), ValueError,
     ["window=-1", "[0, inf)"]),
    (asgm.autosgm, dict(numerator="robust_correlation", huber_k=0.0),
     ValueError, ["huber_k=0.0", "(0, inf)"]),
    (asgm.autosgm, dict(numerator="correlation", numerator_average=False),
     ValueError, ["numerator_smoothing=0.1", "numerator_average=True"]),
    (asgm.autosgm, dict(numerator="correlation", numerator_keep_axes=(1,)),
     ValueError, ["numerator_keep_axes=(1,)", "leading"]),
    (asgm.autosgm, dict(debias=1), TypeError, ["debias=1", "bool"]),
    (asgm.raised_cosine_window, dict(length=0), ValueError,
     ["length=0", "[1, inf)"]),
    (asgm.raised_cosine_window, dict(length=10, floor=1.5), ValueError,
     ["floor=1.5", "[0, 1]"]),
    (asgm.raised_cosine_window, dict(length=10, floor=-0.1), ValueError,
     ["floor=-0.1", "[0, 1]"]),
    (asgm.raised_cosine_window, dict(length=10, flat_top=1.0), ValueError,
     ["flat_top=1.0", "[0, 1)"]),
    (asgm.raised_cosine_window, dict(length=10, order=0), ValueError,
     ["order=0", "(0, inf)"]),
    (asgm.raised_cosine_schedule, dict(length=0.5), ValueError,
     ["length=0.5", "[1, inf)"]),
    (asgm.lowpass_filter, dict(beta=0.5, gamma=0.7), ValueError,
     ["gamma=0.7", "gamma < beta"]),
    (asgm.lowpass_filter, dict(beta=0.5, nesterov=True, gamma=0.1),
     ValueError, ["nesterov=True", "gamma=0.1"]),
    (asgm.moment_denominator, dict(beta=1.0), ValueError,
     ["beta=1.0", "[0, 1)"]),
    (asgm.moment_denominator, dict(eps=0.0, eps_root=0.0), ValueError,
     ["eps=0", "eps_root=0"]),
    (asgm.correlation_numerator, dict(estimator="mean"), ValueError,
     ["estimator='mean'", "'robust_correlation'"]),
    (asgm.correlation_numerator, dict(smoothing=1.0), ValueError,
     ["smoothing=1.0", "[0, 1)"]),
    (asgm.decoupled_decay, dict(rate=-1.0), ValueError,
     ["rate=-1.0", "[0, inf)"]),
    (asgm.decoupled_decay, dict(rate=0.1, factor=-2.0), ValueError,
     ["factor=-2.0", "[0, inf)"]),
    (asgm.coupled_decay, dict(rate=float("nan")), ValueError, ["rate=nan"]),
    (asgm.scale_by_window, dict(window="cosine"), TypeError,
     ["window", "'cosine'"]),
    (asgm.scale_by_autosgm, dict(filter=optax.adam(1e-3)), TypeError,
     ["filter=", "not an AutoSGM block"]),
    (asgm.scale_by_autosgm, dict(denominator=asgm.lowpass_filter()),
     TypeError, ["'filter' block", "denominator slot"]),
    (asgm.scale_by_autosgm, dict(window=asgm.moment_denominator()),
     TypeError, ["window=", "not a window"]),
    (asgm.lowpass_filter, dict(beta=0.5, debias="nadam"), ValueError,
     ["debias='nadam'", "nu"]),
    (asgm.lowpass_filter, dict(beta=0.5, debias="exact"), TypeError,
     ["debias='exact'", "'ema', 'nadam'"]),
    (asgm.lowpass_filter, dict(beta=0.5, nu=0.7, gamma=0.1), ValueError,
     ["nu=0.7", "gamma=0.1"]),
    (asgm.lowpass_filter, dict(beta=0.5, nu=0.7, nesterov=True), ValueError,
     ["nesterov=True", "nu=0.7"]),
    (asgm.lowpass_filter, dict(beta=0.5, nu=1.5), ValueError,
     ["nu=1.5", "[0, 1]"]),
    (asgm.moment_denominator, dict(nu=-0.1), ValueError,
     ["nu=-0.1", "[0, 1]"]),
    (presets.qhm, dict(learning_rate=1e-3, nu=1.2), ValueError,
     ["nu=1.2", "[0, 1]"]),
    (presets.qhm, dict(learning_rate=1e-3, beta=1.0), ValueError,
     ["beta=1.0", "[0, 1)"]),
    (presets.qhadam, dict(learning_rate=1e-3, nu2=2.0), ValueError,
     ["nu2=2.0", "[0, 1]"]),
    (presets.qhadam, dict(learning_rate=1e-3, b1=1.0), ValueError,
     ["b1=1.0", "[0, 1)"]),
    (presets.qhadam, dict(learning_rate=1e-3, eps=0.0), ValueError,
     ["eps=0", "eps_root=0"]),
]


def _ids(case):
  factory, kwargs, _, _ = case
  simple = (int, float, str, bool, tuple, type(None))
  parts = [f"{k}={v!r}" if type(v) in simple else f"{k}={type(v).__name__}"
           for k, v in kwargs.items()]
  return f"{factory.__name__}-{'-'.join(parts)}"


@pytest.mark.parametrize("case", BAD, ids=[_ids(c) for c in BAD])
def test_refused_at_construction(case):
  factory, kwargs, error, words = case
  kwargs = dict(kwargs)
  if factory is asgm.autosgm:
    kwargs.setdefault("learning_rate", 1e-3)
  with pytest.raises(error) as info:
    factory(**kwargs)
  message = str(info.value)
  for word in words:
    assert word in message, (word, message)


@pytest.mark.parametrize("kwargs", [
    dict(beta=0.0, gamma=0.0),  # a pure gain
    dict(beta=0.9, gamma=-0.9),  # maximum variance reduction
    dict(beta=0.9, gamma=0.9 / 1.9, eta=1.9),  # Nesterov's zero
    dict(eps=0.0, eps_root=1e-12),
    dict(denominator=False, eps=0.0, eps_root=0.0),
    dict(denominator=False, moment_beta=1.0),  # (unused: not checked)
    dict(weight_decay=optax.constant_schedule(1e-3)),
    dict(learning_rate=optax.linear_schedule(1e-3, 0.0, 100)),
])
def test_valid_edges_accepted(kwargs):
  kwargs.setdefault("learning_rate", 1e-3)
  asgm.autosgm(**kwargs)


def test_arrays_pass_through_unchecked():
  # inject_hyperparams hands arrays; they are not range-checked.
  asgm.autosgm(jnp.asarray(-1.0), beta=jnp.asarray(2.0),
               gamma=jnp.asarray(3.0), eps=jnp.asarray(-1.0),
               weight_decay=jnp.asarray(-1.0))


def test_presets_accept_what_optax_accepts():
  for ours, twin in ((presets.adam, optax.adam), (presets.adamw, optax.adamw)):
    ours(-1e-3, b1=1.0, b2=1.5, eps=0.0)
    twin(-1e-3, b1=1.0, b2=1.5, eps=0.0)
  presets.sgd(0.0, momentum=1.0)
  presets.adamw(1e-3, weight_decay=-1.0)


@pytest.mark.parametrize("ours, twin", [
    (lambda: presets.adam(1e-2, b1=1.0), lambda: optax.adam(1e-2, b1=1.0)),
    (lambda: presets.nadam(1e-2, b1=1.0), lambda: optax.nadam(1e-2, b1=1.0)),
    (lambda: presets.adamw(1e-2, b1=1.0, nesterov=True),
     lambda: optax.adamw(1e-2, b1=1.0, nesterov=True)),
    (lambda: presets.nadamw(1e-2, b1=1.0), lambda: optax.nadamw(1e-2, b1=1.0)),
    (lambda: presets.muon(1e-2, beta=1.0),
     lambda: optax.contrib.muon(1e-2, beta=1.0)),
], ids=["adam", "nadam", "adamw_nesterov", "nadamw", "muon"])
def test_a_unit_pole_builds_and_runs_as_optax(ours, twin):
  """b1 = 1 divides 0 by 0 in the debias: Optax builds the optimizer and
  its update is NaN; so are the presets' (no ZeroDivisionError)."""
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  outs = []
  for tx in (ours(), twin()):
    u, _ = tx.update(params, tx.init(params), params)
    outs.append(u)
  for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(np.where(np.isnan(a), 0, a),
                                  np.where(np.isnan(b), 0, b))


def test_messages_name_the_valid_range_once():
  with pytest.raises(ValueError, match=re.escape("[0, 1)")):
    asgm.autosgm(1e-3, beta=2)
