"""Checkpointing: an AutoSGM state saved mid-run with Orbax and restored in a
fresh process continues the run bit for bit.

The full configuration is used (filter zero, robust-correlation numerator,
a full raised-cosine window with warm restarts, decoupled weight decay), so
the checkpoint holds every kind of state: step counts, the filter and moment
buffers, the numerator's estimates and the window's position and value. The
run is split at step 20 of 50; the window (30 steps, restarting) restarts
after the split.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

ocp = pytest.importorskip("orbax.checkpoint")

# Written to a file and run both in this process (the uninterrupted run and
# the first half) and in a fresh interpreter (restore, second half), so that
# both sides trace the same code.
WORKER = textwrap.dedent('''
    """Restores an AutoSGM checkpoint and finishes the run (a fresh process).

    python worker.py CHECKPOINT_DIR OUTPUT_DIR
    """
    import sys

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import autosgm_optax as asgm

    STEPS = 50
    SPLIT = 20
    BATCH = 32
    LR = 1e-2


    def make_tx():
      return asgm.autosgm(
          LR, gamma=0.5528, numerator="robust_correlation",
          window=asgm.window_schedule(30, "raised_cosine", full=True,
                                      restarts=True),
          weight_decay=1e-3)


    TX = make_tx()


    def problem():
      """A tanh network regression: (params, x, y) from a fixed seed."""
      rng = np.random.default_rng(0)
      x = rng.normal(size=(256, 8)).astype(np.float32)
      y = np.sin(x @ rng.normal(size=(8, 2))).astype(np.float32)
      params = {
          "dense1": {"kernel": rng.normal(size=(8, 16)).astype(np.float32)
                               * np.float32(0.4),
                     "bias": np.zeros((16,), np.float32)},
          "dense2": {"kernel": rng.normal(size=(16, 2)).astype(np.float32)
                               * np.float32(0.4),
                     "bias": np.zeros((2,), np.float32)},
      }
      return jax.tree.map(jnp.asarray, params), x, y


    def loss(params, x, y):
      h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
      out = h @ params["dense2"]["kernel"] + params["dense2"]["bias"]
      return jnp.mean((out - y) ** 2)


    @jax.jit
    def step(params, opt_state, x, y):
      value, grads = jax.value_and_grad(loss)(params, x, y)
      updates, opt_state = TX.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value


    def run(params, opt_state, x, y, start, stop):
      """Steps start..stop-1 (minibatch t is fixed by t); the losses."""
      losses = []
      for t in range(start, stop):
        i = (t * BATCH) % len(x)
        params, opt_state, value = step(params, opt_state, x[i:i + BATCH],
                                        y[i:i + BATCH])
        losses.append(value)
      return params, opt_state, np.asarray(losses)


    def flat(tree):
      """{path: array} of a tree's leaves (np.savez keeps the dtypes)."""
      return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in
              jax.tree_util.tree_flatten_with_path(tree)[0]}


    def abstract_target(params):
      return {"params": jax.tree.map(
                  lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params),
              "opt_state": jax.eval_shape(TX.init, params)}


    def resume(checkpoint_dir, output_dir):
      import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
      params0, x, y = problem()
      checkpointer = ocp.StandardCheckpointer()
      restored = checkpointer.restore(checkpoint_dir, abstract_target(params0))
      checkpointer.close()
      np.savez(f"{output_dir}/restored.npz", **flat(restored))
      structure = jax.tree.structure(restored)
      assert structure == jax.tree.structure(abstract_target(params0)), (
          structure)
      params, opt_state, losses = run(restored["params"],
                                      restored["opt_state"], x, y, SPLIT,
                                      STEPS)
      np.savez(f"{output_dir}/final.npz",
               **flat({"params": params, "opt_state": opt_state}))
      np.save(f"{output_dir}/losses.npy", losses)


    if __name__ == "__main__":
      resume(sys.argv[1], sys.argv[2])
''')


def _load_worker(path):
  spec = importlib.util.spec_from_file_location("autosgm_ckpt_worker", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _assert_same_leaves(actual, expected):
  assert sorted(actual) == sorted(expected)
  for key, want in expected.items():
    got = actual[key]
    assert got.dtype == want.dtype, (key, got.dtype, want.dtype)
    assert got.shape == want.shape, (key, got.shape, want.shape)
    np.testing.assert_array_equal(got, want, err_msg=key)


def test_restored_in_a_fresh_process_continues_bit_for_bit(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  worker = _load_worker(script)
  params0, x, y = worker.problem()

  # The uninterrupted run.
  full_params, full_state, full_losses = worker.run(
      params0, worker.TX.init(params0), x, y, 0, worker.STEPS)
  assert full_losses[-1] < 0.5 * full_losses[0], full_losses

  # The first part, saved mid-run.
  params, opt_state, _ = worker.run(params0, worker.TX.init(params0), x, y, 0,
                                    worker.SPLIT)
  saved = {"params": params, "opt_state": opt_state}
  core = opt_state[0]
  # The checkpoint holds the numerator's estimates and the window position.
  assert core.numerator.p_abs is not None and core.numerator.a is not None
  assert int(core.window.count) == worker.SPLIT
  assert 0 < float(core.window.value) < 1
  checkpoint = tmp_path / "checkpoint"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(checkpoint, saved)
  checkpointer.wait_until_finished()
  checkpointer.close()

  # Restore and finish in a fresh interpreter.
  out = tmp_path / "out"
  out.mkdir()
  proc = subprocess.run(
      [sys.executable, str(script), str(checkpoint), str(out)],
      capture_output=True, text=True, timeout=120, cwd=tmp_path,
      env=dict(os.environ), check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]

  # The restored state is the saved one, leaf by leaf, dtypes included.
  with np.load(out / "restored.npz") as restored:
    restored = dict(restored)
  saved_leaves = worker.flat(saved)
  _assert_same_leaves(restored, saved_leaves)
  assert {leaf.dtype for leaf in saved_leaves.values()} >= {
      np.dtype(np.float32), np.dtype(np.int32)}
  assert len(restored) == len(jax.tree.leaves(saved))

  # The resumed trajectory is the uninterrupted one, bit for bit.
  np.testing.assert_array_equal(np.load(out / "losses.npy"),
                                full_losses[worker.SPLIT:])
  with np.load(out / "final.npz") as final:
    final = dict(final)
  _assert_same_leaves(final, worker.flat({"params": full_params,
                                          "opt_state": full_state}))


@pytest.mark.parametrize("name", ["numerator_mask", "muon", "matrix",
                                  "diagnostics_every", "optax_masked"])
def test_orbax_saves_every_layout(tmp_path, name):
  """States with leaves that keep nothing (a numerator mask, the matrix
  leaves of the element-wise path: an empty ``NoState``), with diagnostics,
  and under ``optax.masked`` (its ``MaskedNode``) save and restore with
  Orbax, which refuses zero-size arrays; the restored state continues bit
  for bit."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  import autosgm_optax as asgm  # pylint: disable=g-import-not-at-top

  tx = {
      "numerator_mask": lambda: asgm.autosgm(
          1e-2, numerator="correlation",
          numerator_mask=asgm.default_weight_decay_mask),
      "muon": lambda: asgm.presets.muon(1e-2),
      "matrix": lambda: asgm.autosgm(1e-2, matrix="newton_schulz",
                                     numerator="correlation",
                                     matrix_numerator=True),
      "diagnostics_every": lambda: asgm.autosgm(
          1e-2, numerator="correlation", diagnostics="summary",
          diagnostics_every=3),
      "optax_masked": lambda: optax.masked(asgm.autosgm(
          1e-2, numerator="correlation",
          numerator_mask=asgm.default_weight_decay_mask,
          diagnostics="summary", diagnostics_every=2),
                                           {"w": True, "b": True, "v": False}),
  }[name]()
  params = {"w": jnp.linspace(-1.0, 1.0, 15).reshape(5, 3),
            "b": jnp.array([0.1, -0.2, 0.3]), "v": jnp.ones((2, 2))}
  grads = jax.tree.map(lambda p: jnp.cos(3 * p), params)
  step = jax.jit(tx.update)
  state = tx.init(params)
  for _ in range(4):
    _, state = step(grads, state, params)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "state", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "state",
                                  jax.eval_shape(lambda: state))
  checkpointer.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  ours, _ = step(grads, restored, params)
  want, _ = step(grads, state, params)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)
  empty = [x for x in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, asgm.NoState))
           if isinstance(x, asgm.NoState)]
  assert bool(empty) == (name != "diagnostics_every")
