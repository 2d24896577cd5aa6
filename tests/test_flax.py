"""AutoSGM inside Flax: nnx.Optimizer, nnx.scan-stacked layers with one
numerator per layer, linen's TrainState, and weight-decay masks on NNX state.

Every run is a small classifier on a fixed slice of scikit-learn's digits
(shipped with scikit-learn, nothing is downloaded), trained with jitted
minibatch steps in a fixed order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")
train_state = pytest.importorskip("flax.training.train_state")
datasets = pytest.importorskip("sklearn.datasets")

import autosgm_optax as asgm  # pylint: disable=g-import-not-at-top

LR = 1e-2
STEPS = 60
BATCH = 64
N = 512  # samples of the digits used
HIDDEN = 32


def _digits():
  digits = datasets.load_digits()
  x = (digits.data[:N] / 16.0).astype(np.float32)
  y = digits.target[:N].astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


X, Y = _digits()


def _batch(step):
  start = (step * BATCH) % N
  return X[start:start + BATCH], Y[start:start + BATCH]


def _xent(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _leaves(tree):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _assert_bitwise_equal(a, b):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- Flax NNX


class MLP(nnx.Module):
  """64 -> HIDDEN -> 10, tanh; nnx.Linear's zero biases."""

  def __init__(self, *, rngs):
    self.hidden = nnx.Linear(64, HIDDEN, rngs=rngs)
    self.out = nnx.Linear(HIDDEN, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x)))


class Block(nnx.Module):

  def __init__(self, features, *, rngs):
    self.linear = nnx.Linear(features, features, rngs=rngs)

  def __call__(self, x):
    return x + jnp.tanh(self.linear(x))


class StackedMLP(nnx.Module):
  """64 -> HIDDEN, then LAYERS residual blocks stacked by nnx.vmap and
  applied by nnx.scan (one kernel of shape (LAYERS, HIDDEN, HIDDEN)), -> 10."""

  LAYERS = 3

  def __init__(self, *, rngs):
    self.inp = nnx.Linear(64, HIDDEN, rngs=rngs)

    @nnx.split_rngs(splits=self.LAYERS)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create_blocks(rngs):
      return Block(HIDDEN, rngs=rngs)

    self.blocks = create_blocks(rngs)
    self.out = nnx.Linear(HIDDEN, 10, rngs=rngs)

  def __call__(self, x):

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def forward(x, block):
      return block(x)

    return self.out(forward(jnp.tanh(self.inp(x)), self.blocks))


def _nnx_loss(model, x, y):
  return _xent(model(x), y)


@nnx.jit
def _nnx_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(_nnx_loss)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def _nnx_full_loss(model):
  return _nnx_loss(model, X, Y)


def _train_nnx(model_cls, tx, steps=STEPS):
  model = model_cls(rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  initial = float(_nnx_full_loss(model))
  losses = np.array([_nnx_step(model, optimizer, *_batch(t))
                     for t in range(steps)])
  return model, optimizer, initial, losses, float(_nnx_full_loss(model))


def test_nnx_optimizer_trains_and_autosgm_lr_is_adam_bit_for_bit():
  model, optimizer, initial, losses, final = _train_nnx(MLP, asgm.autosgm(LR))
  assert initial > 2.0  # about ln(10) at the start
  assert final < 0.25 * initial, (initial, final)
  assert np.all(np.isfinite(losses))

  twin, twin_optimizer, twin_initial, twin_losses, twin_final = _train_nnx(
      MLP, optax.adam(LR))
  assert initial == twin_initial
  np.testing.assert_array_equal(losses, twin_losses)
  assert final == twin_final
  _assert_bitwise_equal(nnx.state(model, nnx.Param),
                        nnx.state(twin, nnx.Param))
  assert int(optimizer.step[...]) == int(twin_optimizer.step[...]) == STEPS

  # The readers accept the optimizer itself.
  assert float(asgm.effective_learning_rate(optimizer)) == pytest.approx(LR)
  with pytest.raises(ValueError, match="unity numerator"):  # a = 1: no state
    asgm.numerator_values(optimizer)


def test_nnx_scan_stacked_layers_get_one_numerator_each():
  layers = StackedMLP.LAYERS
  tx = asgm.autosgm(LR, numerator="correlation", numerator_keep_axes=(0,))
  model, optimizer, initial, losses, final = _train_nnx(StackedMLP, tx)

  params = nnx.state(model, nnx.Param)
  assert params["blocks"]["linear"]["kernel"].shape == (layers, HIDDEN, HIDDEN)
  assert final < 0.5 * initial, (initial, final)
  assert np.all(np.isfinite(losses))

  values = asgm.numerator_values(optimizer)
  assert len(values) == 1
  (a,) = values.values()
  kernel_a = np.asarray(a["blocks"]["linear"]["kernel"])
  bias_a = np.asarray(a["blocks"]["linear"]["bias"])
  assert kernel_a.shape == (layers, 1, 1)
  assert bias_a.shape == (layers, 1)
  assert np.all(np.isfinite(kernel_a)) and np.all(kernel_a > 0)
  # One value per layer, and the layers' values differ.
  assert len(np.unique(kernel_a)) == layers, kernel_a.ravel()
  assert np.ptp(kernel_a) > 1e-4 * np.max(np.abs(kernel_a)), kernel_a.ravel()

  # Without keep_axes the stacked kernel would get a single value.
  flat_state = jax.eval_shape(asgm.autosgm(LR, numerator="correlation").init,
                              nnx.as_pure(params))
  (flat_a,) = asgm.numerator_values(flat_state).values()
  assert flat_a["blocks"]["linear"]["kernel"].shape == (1, 1, 1)


# ------------------------------------------------------------- Flax linen


class LinenMLP(linen.Module):

  @linen.compact
  def __call__(self, x):
    return linen.Dense(10)(jnp.tanh(linen.Dense(HIDDEN)(x)))


@jax.jit
def _linen_step(state, x, y):

  def loss(params):
    return _xent(state.apply_fn({"params": params}, x), y)

  value, grads = jax.value_and_grad(loss)(state.params)
  return state.apply_gradients(grads=grads), value


def _train_linen(tx):
  model = LinenMLP()
  params = model.init(jax.random.key(0), X[:1])["params"]
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=tx)
  full = lambda p: float(_xent(model.apply({"params": p}, X), Y))
  initial = full(state.params)
  losses = []
  for t in range(STEPS):
    state, value = _linen_step(state, *_batch(t))
    losses.append(value)
  return state, initial, np.array(losses), full(state.params)


def test_linen_train_state_trains_and_autosgm_lr_is_adam_bit_for_bit():
  state, initial, losses, final = _train_linen(asgm.autosgm(LR))
  assert final < 0.25 * initial, (initial, final)
  assert int(state.step) == STEPS

  twin, twin_initial, twin_losses, twin_final = _train_linen(optax.adam(LR))
  assert initial == twin_initial
  np.testing.assert_array_equal(losses, twin_losses)
  assert final == twin_final
  _assert_bitwise_equal(state.params, twin.params)
  assert float(asgm.effective_learning_rate(state.opt_state)) == (
      pytest.approx(LR))


# ------------------------------------------- weight-decay masks, NNX state


def _with_unit_biases(model):
  """Sets every bias to 1, so that a decayed bias would visibly shrink."""
  state = nnx.as_pure(nnx.state(model, nnx.Param))
  ones = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.ones_like(v) if "bias" in jax.tree_util.keystr(path)
      else v, state)
  nnx.update(model, ones)
  return model


@nnx.jit
def _nnx_update(model, optimizer, grads):
  optimizer.update(model, grads)


def test_nnx_default_mask_leaves_biases_undecayed():
  """Zero gradients: only decay moves the parameters. The kernels shrink by
  (1 - lr wd) per step; the biases (nnx.Linear's and the nnx.scan-stacked
  ones, of shape (LAYERS, HIDDEN)) stay exactly where they are. Masked
  optax.adamw does the same, bit for bit."""
  wd, steps = 0.1, 5
  mask = asgm.default_weight_decay_mask
  finals = []
  for tx in (asgm.autosgm(LR, weight_decay=wd, weight_decay_mask=mask),
             optax.adamw(LR, weight_decay=wd, mask=mask)):
    model = _with_unit_biases(StackedMLP(rngs=nnx.Rngs(0)))
    before = nnx.as_pure(nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    zero_grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    for _ in range(steps):
      _nnx_update(model, optimizer, zero_grads)
    finals.append(nnx.as_pure(nnx.state(model, nnx.Param)))
  after, adamw_after = finals
  _assert_bitwise_equal(after, adamw_after)

  shrink = (1 - LR * wd) ** steps
  checked = []
  for (path, old), new in zip(jax.tree_util.tree_flatten_with_path(before)[0],
                              jax.tree.leaves(after)):
    name = jax.tree_util.keystr(path)
    old, new = np.asarray(old), np.asarray(new)
    if name.endswith("['bias']"):
      assert np.all(old == 1)
      np.testing.assert_array_equal(new, old, err_msg=name)  # not decayed
    else:
      assert name.endswith("['kernel']"), name
      # per step w + (-lr (wd w)) rounds once at relative 2^-24 (the decay
      # term's own roundings count lr wd times less); the reference is
      # float64 (old * shrink in float32 would round once more)
      np.testing.assert_allclose(
          new, old.astype(np.float64) * shrink,
          rtol=steps * (1 + 4 * LR * wd) * 2.0**-24, err_msg=name)
      assert np.max(np.abs(new)) < np.max(np.abs(old))
    checked.append((name, old.shape))
  assert ("['blocks']['linear']['bias']", (StackedMLP.LAYERS, HIDDEN)) in checked
  assert len(checked) == 6, checked


def test_default_mask_on_pure_nnx_state():
  """What nnx.Optimizer hands the mask callable: a State of plain arrays."""
  model = StackedMLP(rngs=nnx.Rngs(0))
  mask = asgm.default_weight_decay_mask(
      nnx.as_pure(nnx.state(model, nnx.Param)))
  assert mask["blocks"]["linear"]["kernel"] is True
  assert mask["blocks"]["linear"]["bias"] is False  # stacked, 2-D, exempt
  assert mask["inp"]["kernel"] is True and mask["inp"]["bias"] is False


def test_default_mask_on_nnx_state_of_variables():
  model = StackedMLP(rngs=nnx.Rngs(0))
  mask = asgm.default_weight_decay_mask(nnx.state(model, nnx.Param))
  flags = {jax.tree_util.keystr(path): bool(flag) for path, flag in
           jax.tree_util.tree_flatten_with_path(nnx.as_pure(mask))[0]}
  stacked_bias = [k for k in flags if "blocks" in k and "bias" in k]
  assert stacked_bias and not any(flags[k] for k in stacked_bias), flags


def test_flax_serialization_round_trips_a_state_with_diagnostics():
  """flax.serialization.to_bytes / from_bytes of a state whose diagnostics
  hold PerLeaf records (registered with Flax when diagnostics are built,
  flax being imported); the restored state continues bit for bit."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  tx = asgm.autosgm(LR, numerator="correlation", diagnostics="summary",
                    diagnostics_every=2)
  params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
            "b": jnp.array([0.1, -0.2, 0.3])}
  grads = jax.tree.map(lambda p: jnp.cos(3 * p), params)
  step = jax.jit(tx.update)
  state = tx.init(params)
  for _ in range(3):
    _, state = step(grads, state, params)
  restored = serialization.from_bytes(tx.init(params),
                                      serialization.to_bytes(state))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(step(grads, restored, params)),
                  jax.tree.leaves(step(grads, state, params))):
    np.testing.assert_array_equal(a, b)
