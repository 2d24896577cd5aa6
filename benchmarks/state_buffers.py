"""What the number of state buffers costs a jitted step, side by side.

A jitted step handles every buffer of its state on each call. This times the
full configuration of ``step_time.py`` plain, with a chained transformation
that writes 20 (4, 3) arrays and 20 int32 scalars every step (the layout of
the summary diagnostics' ``values`` and ``r_undefined`` for 20 leaves), and
with the same numbers stacked into 2 arrays.

Usage:
  python benchmarks/state_buffers.py --sizes 1e6 --steps 81
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import autosgm_optax as asgm
import step_time as st


def carry(stacked: bool) -> optax.GradientTransformation:
  """Passes the updates through and rewrites its state every step."""

  def init(params):
    if stacked:
      n = len(jax.tree.leaves(params))
      return jnp.zeros((n, 4, 3)), jnp.zeros((n,), jnp.int32)
    return (jax.tree.map(lambda p: jnp.zeros((4, 3)), params),
            jax.tree.map(lambda p: jnp.zeros([], jnp.int32), params))

  def update(updates, state, params=None):
    del params
    return updates, jax.tree.map(lambda x: x + 1, state)

  return optax.GradientTransformation(init, update)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="1e6")
  parser.add_argument("--leaves", type=int, default=20)
  parser.add_argument("--steps", type=int, default=81)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__}; host CPU {st.cpu_model()}")
  full = lambda: asgm.autosgm(st.LR, window=asgm.raised_cosine_window(1000),
                              **st.FULL_KWARGS)
  for total in st.parse_sizes(args.sizes):
    shapes = st.leaf_shapes(total, args.leaves)
    key_p, key_g = jax.random.split(jax.random.PRNGKey(args.seed))
    params0 = st.make_tree(shapes, key_p, 0.1)
    grads = st.make_tree(shapes, key_g, 1.0)
    entries = {
        "full": st.Entry("full", full(), params0, grads),
        f"+ {2 * len(shapes)} small buffers": st.Entry(
            "small", optax.chain(full(), carry(False)), params0, grads),
        "+ the same stacked in 2": st.Entry(
            "stacked", optax.chain(full(), carry(True)), params0, grads),
    }
    st.time_interleaved(list(entries.values()), args)
    base = entries["full"].median_ms
    print(f"\n{total:,} parameters, {len(shapes)} leaves, {args.steps} "
          "interleaved steps")
    for name, e in entries.items():
      print(f"- {name}: {e.median_ms:.3f} ms, {e.median_ms / base:.3f}x")


if __name__ == "__main__":
  main()
