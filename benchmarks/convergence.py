"""Convergence benchmark: when does AutoSGM train better than ``optax.adamw``?

Runs a grid of (task, optimizer configuration, learning rate, seed), records
every run in ``<out>/results.json`` as it finishes, and (``--report``) turns
the records into tables and plots.

Tasks, each with train / validation / test splits (learning rates are
chosen on validation and reported on test):

- ``charlm``: a character-level transformer language model (a small GPT in
  Flax NNX: pre-LayerNorm blocks, causal attention, learned positions) on
  the text of the standard library's ``pydoc_data.topics.topics`` (the
  values joined, about 465k characters), split contiguously 90/5/5;
  metric: validation / test loss in bits per character (lower is better).
- ``digits``: a small convolutional classifier (Flax NNX, two 3x3 conv
  layers and a dense layer) on scikit-learn's 8x8 digits, a fixed
  stratified 60/20/20 split; metric: accuracy (higher is better); the test
  loss is recorded too.
- ``quadratic``: a noisy quadratic with a known optimum, the streaming
  least-squares problem ``f(w) = E 0.5 (x.w - y)^2`` with
  ``x ~ N(0, H)``, ``H = Q diag(h) Q^T`` (dimension 100, ``h`` log-spaced
  over 3 decades, a random rotation ``Q``) and ``y = x.w* + sigma noise``;
  each step draws a fresh minibatch, so the gradient noise is the real
  one of minibatch least squares. Metric: ``f(w) - f(w*)`` (lower is
  better), exact on test (``0.5 (w - w*)^T H (w - w*)``), estimated from a
  fixed sample of 1000 inputs on validation.

Optimizer configurations, all with the same window (a raised cosine over the
run to 0: ``raised_cosine_window(steps)`` for AutoSGM, the equal
``optax.cosine_decay_schedule`` as AdamW's learning rate, as
``autosgm_optax.demo`` does) and the same decoupled weight decay 1e-4:
``adamw``; ``unity_g{gamma}`` (Adam with a filter zero) and
``corr_g{gamma}`` (the correlation numerator) for gamma in
{0, 0.31, 0.47, 0.5528, 0.64, 0.85}; ``robust_g0.5528``,
``moment_g0.5528``; and ``corr_g0.5528_masked`` (biases and normalisation
parameters on the unity numerator, ``numerator_mask=
default_weight_decay_mask``; skipped with a message while ``autosgm`` has
no ``numerator_mask`` keyword). ``unity_g0`` is AdamW in AutoSGM's form: it
must track ``adamw`` (a check of the harness).

Three phases per task: the grid phase runs ``adamw``, ``unity_g0``,
``unity_g0.5528``, ``corr_g0`` and ``corr_g0.5528`` on a log grid of 7
learning rates from 1e-4 to 3e-1 (0.58 decades apart); the refinement adds,
for each of them, the two geometric midpoints between its best coarse rate
(on validation) and its neighbours; the "at best lr" phase runs every other
configuration at the best validation learning rate of its numerator's
tuned configurations (unity: the better of ``unity_g0`` /
``unity_g0.5528``; the correlation, robust, moment and masked ones: the
better of ``corr_g0`` / ``corr_g0.5528``), dropping its records at an
earlier best rate when more seeds or the refinement moved the best. Then
the best AutoSGM run on validation (charlm, or ``--task``) is trained once
more, seed 0, with ``diagnostics="summary", diagnostics_every=5``, and its
learning dynamics are drawn by ``autosgm_optax.plot_dynamics`` into
``docs/convergence_dynamics.png`` (``<out>/`` with ``--quick``).

Each (task, configuration, learning rate) is one jitted training call: the
seeds (initialisations and data orders) are batched by ``jax.vmap`` and the
steps run in ``lax.scan`` (an outer scan over 20 evaluation intervals, an
inner one over the steps of an interval), which returns the mean minibatch
loss of every interval and the parameters at its end. A second jitted,
vmapped program, compiled once per task, evaluates those snapshots (the
validation curve at step 0 and the 20 interval ends) and the final
parameters (train, validation and test metrics). The learning rate and the
filter zero are traced arguments, so one training program per (task,
numerator, mask) serves every learning rate and every gamma: 6 programs per
task. Seed ``s`` has the same initial weights and data order for every
configuration. Diverged runs are recorded with ``diverged: true`` and null
losses. ``wall_s`` is the call's time (compilation included for the first
call of a program and shape) divided by its number of seeds;
``train_s_call`` the call's training alone (compiled ahead of time, so no
compilation; no evaluation), ``compile_s_call`` its compilation (0 when an
earlier call compiled it) and ``seeds_in_call`` the seeds batched in it.

Sizes (full / ``--quick``):

- charlm: 2 layers, d_model 64, 4 heads, context 64, batch 8 sequences,
  1000 steps (about 1.2 epochs' worth of characters); the validation
  curve on 32 evenly spaced validation windows, the final metrics on every
  non-overlapping window of the validation and test splits (and as many of
  the training split). Quick: 1 layer, d_model 32, 2 heads, context 32,
  batch 8, 40 steps.
- digits: conv 16, conv 32, dense, batch 64, 640 steps (40 epochs of the
  1078 training images; 359 validation, 360 test; the curve and the final
  metrics on the whole splits). Quick: width 8, batch 32, 20 steps, the
  curve on 64 validation images, the training loss on 256 images.
- quadratic: dimension 100 (one 10 x 10 "kernel" leaf), batch 8, noise
  sigma 0.5, 5000 steps. Quick: 100 steps.

The full run uses 5 seeds; the quick run 1 seed and the rates 3e-3 and
3e-2 (no refinement), and compiles
without XLA's CPU fusion emitters and with LLVM's optimisation level 0
(XLA_FLAGS, QUICK_XLA_FLAGS), which cuts XLA's compile time about 5x; the
full run keeps XLA's defaults.

The matrix oracle's comparison (``--matrix``, issue 19; results and its
``report.md`` in ``benchmarks/results/convergence_matrix/``) runs the same
protocol (window / cosine schedule, decoupled decay 1e-4, the grid and its
refinement, validation / test) on the tasks with matrix parameters (charlm
and digits), 3 seeds by default, with four configurations, all tuned on the
grid: ``adamw``; ``muon`` (``presets.muon`` with the cosine schedule as the
learning rate of its matrix and its Adam leaves, ``adam_learning_rate=
None``, decay 1e-4 on both); ``matrix_corr_g0.5528`` (``autosgm`` at gamma
0.5528 with ``matrix="newton_schulz"``, the correlation numerator on the
leaves that are not matrices); and ``matrix_scalar_g0.5528`` (the same with
``matrix_numerator=True``). The default rule sends rank-2 leaves to the
matrix path (the report lists them per task); the 3x3 conv kernels are rank
4 and take the element-wise path. No learning-dynamics plot (the
diagnostics refuse the matrix oracle).

Usage:
  python benchmarks/convergence.py           # the full grid, 5 seeds
  python benchmarks/convergence.py --matrix  # the matrix comparison, 3 seeds
  python benchmarks/convergence.py --matrix --report  # its report only
  python benchmarks/convergence.py --quick   # every task and configuration
  python benchmarks/convergence.py --tasks charlm --seeds 5
  python benchmarks/convergence.py --report [--out DIR] [--docs DIR]

An interrupted run resumes from ``results.json`` (records keyed by task,
optimizer, learning rate and seed are not run again).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import shlex
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import autosgm_optax as asgm

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the sibling convergence_report.py
  sys.path.insert(0, HERE)

import convergence_report  # pylint: disable=wrong-import-position
from step_time import cpu_model  # pylint: disable=wrong-import-position

best_learning_rate = convergence_report.best_learning_rate
mean_valid = convergence_report.mean_valid

ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results", "convergence")
DEFAULT_QUICK_OUT = os.path.join(HERE, "results", "convergence_quick")
DEFAULT_MATRIX_OUT = os.path.join(HERE, "results", "convergence_matrix")
DEFAULT_MATRIX_QUICK_OUT = os.path.join(DEFAULT_QUICK_OUT, "matrix")
#: ``--matrix``: seeds per point (the machine budget of issue 19).
DEFAULT_MATRIX_SEEDS = 3
DEFAULT_DOCS = os.path.join(ROOT, "docs")

BETA = 0.9
WEIGHT_DECAY = 1e-4
GAMMAS = (0.0, 0.31, 0.47, 0.5528, 0.64, 0.85)
TUNED_GAMMA = 0.5528
#: The learning-rate grid of the tuned configurations: 7 points, 1e-4 to
#: 3e-1 (3.5 decades).
LR_GRID = tuple(float(f"{v:.3g}")
                for v in np.logspace(-4, math.log10(3e-1), 7))
QUICK_LR_GRID = (3e-3, 3e-2)
#: The refinement around each grid configuration's best coarse rate: the
#: geometric midpoints to its neighbours (half the grid's 0.58 decades).
REFINE_STEP = math.sqrt(LR_GRID[1] / LR_GRID[0])
N_EVAL = 20
#: XLA flags of the quick run (compile time; see main).
QUICK_XLA_FLAGS = ("--xla_backend_optimization_level=0",
                   "--xla_cpu_use_fusion_emitters=false")
DEFAULT_SEEDS = 5


# ----------------------------------------------------------------------------
# Optimizer configurations.


@dataclasses.dataclass(frozen=True)
class Config:
  """One optimizer configuration.

  Attributes:
    name: short unique name (``adamw``, ``unity_g0.5528``, ...).
    family: ``"adamw"`` or the numerator (``"unity"``, ``"correlation"``,
      ``"robust_correlation"``, ``"moment"``).
    gamma: the filter zero (None for AdamW).
    masked: biases and normalisation parameters on the unity numerator.
    grid: tuned on the learning-rate grid (else run at a tuned one's best).
    tuned_by: the family whose best learning rate an untuned configuration
      takes (``"unity"`` or ``"correlation"``).
  """

  name: str
  family: str
  gamma: Optional[float]
  masked: bool = False
  grid: bool = False
  tuned_by: Optional[str] = None

  @property
  def numerator(self) -> Optional[str]:
    if self.family in ("adamw", "muon"):
      return None
    if self.family in MATRIX_FAMILIES:
      return "correlation"  # on the leaves that are not matrices
    return self.family

  @property
  def program(self) -> tuple[str, bool]:
    """What the compiled program depends on (not gamma, not the rate)."""
    return (self.family, self.masked)


def _g(gamma: float) -> str:
  return f"g{gamma:g}"


def all_configurations() -> list[Config]:
  """Every configuration of the benchmark, grid ones first."""
  configs = [Config("adamw", "adamw", None, grid=True)]
  for gamma in (0.0, TUNED_GAMMA):
    configs.append(Config(f"unity_{_g(gamma)}", "unity", gamma, grid=True))
  for gamma in (0.0, TUNED_GAMMA):
    configs.append(Config(f"corr_{_g(gamma)}", "correlation", gamma,
                          grid=True))
  for gamma in GAMMAS:
    if gamma not in (0.0, TUNED_GAMMA):
      configs.append(Config(f"unity_{_g(gamma)}", "unity", gamma,
                            tuned_by="unity"))
  for gamma in GAMMAS:
    if gamma not in (0.0, TUNED_GAMMA):
      configs.append(Config(f"corr_{_g(gamma)}", "correlation", gamma,
                            tuned_by="correlation"))
  configs += [
      Config(f"robust_{_g(TUNED_GAMMA)}", "robust_correlation", TUNED_GAMMA,
             tuned_by="correlation"),
      Config(f"moment_{_g(TUNED_GAMMA)}", "moment", TUNED_GAMMA,
             tuned_by="correlation"),
      Config(f"corr_{_g(TUNED_GAMMA)}_masked", "correlation", TUNED_GAMMA,
             masked=True, tuned_by="correlation"),
  ]
  return configs


def numerator_mask_supported() -> bool:
  """Whether ``autosgm`` accepts the ``numerator_mask`` keyword yet."""
  return "numerator_mask" in inspect.signature(asgm.autosgm).parameters


def configurations() -> list[Config]:
  """The configurations this installation can run (the masked one only
  where ``autosgm`` has ``numerator_mask``)."""
  ok = numerator_mask_supported()
  return [c for c in all_configurations() if ok or not c.masked]


#: ``--matrix``: the matrix oracle's families (the correlation numerator on
#: the leaves that are not matrices; ``matrix_scalar`` adds the original
#: code's scalar numerator on the matrix leaves).
MATRIX_FAMILIES = ("matrix_correlation", "matrix_scalar")
#: ``--matrix``: the tasks with matrix (rank-2) parameters.
MATRIX_TASKS = ("charlm", "digits")


def matrix_configurations() -> list[Config]:
  """``--matrix``: AdamW, Muon (``presets.muon``) and the matrix path of
  ``autosgm`` at gamma 0.5528 (correlation numerator on the other leaves;
  with and without the scalar matrix numerator), all tuned on the grid."""
  return [
      Config("adamw", "adamw", None, grid=True),
      Config("muon", "muon", None, grid=True),
      Config(f"matrix_corr_{_g(TUNED_GAMMA)}", "matrix_correlation",
             TUNED_GAMMA, grid=True),
      Config(f"matrix_scalar_{_g(TUNED_GAMMA)}", "matrix_scalar",
             TUNED_GAMMA, grid=True),
  ]


def matrix_leaves(params: Any) -> tuple[list[str], list[str]]:
  """The leaf paths of ``params`` that the default rule sends to the matrix
  path (rank 2) and those that take the element-wise one."""
  matrix, other = [], []
  for keys, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(
        k, "name", k)))) for k in keys)
    name = name[:-len("/value")] if name.endswith("/value") else name
    (matrix if np.ndim(leaf) == 2 else other).append(
        f"{name} {tuple(np.shape(leaf))}")
  return matrix, other


def make_optimizer(config: Config, learning_rate: Any, gamma: Any,
                   steps: int, **diagnostics: Any
                   ) -> optax.GradientTransformation:
  """The optimizer of ``config``; ``learning_rate`` and ``gamma`` may be
  traced (one compiled program serves every rate and zero).
  ``diagnostics`` (``diagnostics=``, ``diagnostics_every=``) go to
  ``autosgm``."""
  if config.family == "adamw":
    return optax.adamw(optax.cosine_decay_schedule(learning_rate, steps),
                       weight_decay=WEIGHT_DECAY)
  if config.family == "muon":
    # Muon's matrix leaves and its Adam leaves share the cosine schedule
    # (adam_learning_rate=None); decoupled decay 1e-4 on both, as AdamW.
    return asgm.presets.muon(
        optax.cosine_decay_schedule(learning_rate, steps),
        weight_decay=WEIGHT_DECAY, adam_weight_decay=WEIGHT_DECAY,
        adam_learning_rate=None)
  extra = {}
  if config.family in MATRIX_FAMILIES:
    extra["matrix"] = "newton_schulz"
    extra["matrix_numerator"] = config.family == "matrix_scalar"
  numerator = config.numerator
  if config.masked:
    extra["numerator_mask"] = asgm.default_weight_decay_mask
  return asgm.autosgm(
      learning_rate, beta=BETA, gamma=gamma, numerator=numerator,
      window=asgm.raised_cosine_window(steps, floor=0.0),
      weight_decay=WEIGHT_DECAY, **extra, **diagnostics)


# ----------------------------------------------------------------------------
# Tasks.


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


class Task:
  """A training problem: data, model, loss and metrics.

  A task's functions are pure: ``loss(params, data, x_t)`` on one step's
  slice ``x_t`` of the data order, ``curve(params, data)`` the validation
  metric at an evaluation point, ``final(params, data)`` a dict of the
  final metrics. ``data`` is a pytree of arrays passed to the compiled
  program as an argument (not baked in as constants).
  """

  name: str = ""
  metric: str = ""
  higher_is_better: bool = False
  steps: int = 0
  size: dict[str, Any] = {}
  #: The recorded training loss is ``loss * loss_scale`` (charlm: nats to
  #: bits, the unit of its metric), in ``loss_unit``.
  loss_scale: float = 1.0
  loss_unit: str = ""

  def data(self) -> Any:
    raise NotImplementedError

  def init(self, seed: int) -> Any:
    raise NotImplementedError

  def order(self, seed: int) -> Any:
    """Per-step data order of ``seed``: a pytree with leading axis steps."""
    raise NotImplementedError

  def loss(self, params: Any, data: Any, x_t: Any) -> jax.Array:
    raise NotImplementedError

  def curve(self, params: Any, data: Any) -> jax.Array:
    raise NotImplementedError

  def final(self, params: Any, data: Any) -> dict[str, jax.Array]:
    raise NotImplementedError


# --- charlm ------------------------------------------------------------------


class Block(nnx.Module):
  """A pre-LayerNorm transformer block: causal self-attention and a 4x MLP."""

  def __init__(self, d_model: int, heads: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
    self.proj = nnx.Linear(d_model, d_model, rngs=rngs)
    self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
    self.fc = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
    self.out = nnx.Linear(4 * d_model, d_model, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    q, k, v = jnp.split(self.qkv(self.ln1(x)), 3, axis=-1)
    shape = (b, t, self.heads, d // self.heads)
    y = jax.nn.dot_product_attention(q.reshape(shape), k.reshape(shape),
                                     v.reshape(shape), is_causal=True)
    x = x + self.proj(y.reshape(b, t, d))
    return x + self.out(nnx.gelu(self.fc(self.ln2(x))))


class GPT(nnx.Module):
  """A small GPT: token and position embeddings, blocks, LayerNorm, head."""

  def __init__(self, vocab: int, d_model: int, heads: int, layers: int,
               context: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)  # GPT-2's embedding initialisation
    self.embed = nnx.Embed(vocab, d_model, embedding_init=init, rngs=rngs)
    self.pos = nnx.Param(init(rngs.params(), (context, d_model)))
    self.blocks = nnx.List([Block(d_model, heads, rngs=rngs)
                            for _ in range(layers)])
    self.ln = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, vocab, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = self.embed(tokens) + self.pos[...][:tokens.shape[-1]]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln(x))


def load_text() -> str:
  """The text of ``pydoc_data.topics.topics``, the values joined."""
  from pydoc_data.topics import topics  # pylint: disable=g-import-not-at-top
  return "".join(topics.values())


class CharLM(Task):
  """A character-level GPT on the standard library's pydoc topics."""

  name = "charlm"
  metric = "bits_per_char"
  higher_is_better = False
  loss_scale = 1.0 / math.log(2.0)
  loss_unit = "bits_per_char"

  def __init__(self, quick: bool = False):
    if quick:
      self.size = dict(layers=1, d_model=32, heads=2, context=32, batch=8,
                       steps=40, curve_windows=8, eval_windows=16)
    else:
      self.size = dict(layers=2, d_model=64, heads=4, context=64, batch=8,
                       steps=1000, curve_windows=32, eval_windows=None)
    self.steps = self.size["steps"]
    text = load_text()
    chars = sorted(set(text))
    self.vocab = len(chars)
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((lookup[c] for c in text), np.int32, len(text))
    n = len(ids)
    self.splits = {"train": ids[:int(0.9 * n)],
                   "valid": ids[int(0.9 * n):int(0.95 * n)],
                   "test": ids[int(0.95 * n):]}

  def _windows(self, ids: np.ndarray, count: Optional[int]) -> np.ndarray:
    """Non-overlapping (context + 1)-windows; ``count`` evenly spaced."""
    t = self.size["context"]
    n = (len(ids) - 1) // t
    starts = np.arange(n) * t
    if count is not None and count < n:
      starts = starts[np.linspace(0, n - 1, count).round().astype(int)]
    return np.stack([ids[s:s + t + 1] for s in starts])

  def data(self) -> dict[str, jax.Array]:
    ev = self.size["eval_windows"]
    valid = self._windows(self.splits["valid"], ev)
    return {
        "train": jnp.asarray(self.splits["train"]),
        # as many training windows as validation ones, evenly spaced
        "train_eval": jnp.asarray(self._windows(self.splits["train"],
                                                len(valid))),
        "valid": jnp.asarray(valid),
        "curve": jnp.asarray(self._windows(self.splits["valid"],
                                           self.size["curve_windows"])),
        "test": jnp.asarray(self._windows(self.splits["test"], ev)),
    }

  def model(self, seed: int) -> GPT:
    s = self.size
    return GPT(self.vocab, s["d_model"], s["heads"], s["layers"],
               s["context"], rngs=nnx.Rngs(seed))

  def init(self, seed: int) -> Any:
    graphdef, params = nnx.split(self.model(seed), nnx.Param)
    self.graphdef = graphdef
    return params

  def order(self, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    high = len(self.splits["train"]) - self.size["context"] - 1
    return rng.integers(0, high, (self.steps, self.size["batch"]),
                        dtype=np.int32)

  def _bits(self, params: Any, windows: jax.Array) -> jax.Array:
    logits = nnx.merge(self.graphdef, params)(windows[:, :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         windows[:, 1:])
    return jnp.mean(ce) / math.log(2.0)

  def loss(self, params: Any, data: Any, x_t: jax.Array) -> jax.Array:
    idx = x_t[:, None] + jnp.arange(self.size["context"] + 1)
    return self._bits(params, data["train"][idx]) * math.log(2.0)

  def curve(self, params: Any, data: Any) -> jax.Array:
    return self._bits(params, data["curve"])

  def final(self, params: Any, data: Any) -> dict[str, jax.Array]:
    return {"train_loss": self._bits(params, data["train_eval"]),
            "valid_metric": self._bits(params, data["valid"]),
            "test_metric": self._bits(params, data["test"])}


# --- digits ------------------------------------------------------------------


class Conv3x3(nnx.Module):
  """A 3x3 'SAME' convolution as one matrix product over 3x3 patches.

  The same function as ``nnx.Conv(in, out, (3, 3))`` (the same kernel
  layout and initialisation), written as patches times kernel: under
  ``jax.vmap`` over parameters (seeds) XLA on CPU turns ``lax.conv`` into
  a grouped convolution that runs about 10x slower, while this becomes a
  batched matrix product.
  """

  def __init__(self, in_features: int, out_features: int, *,
               rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(),
                                 (3, 3, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
        axis=-1)
    kernel = self.kernel[...].reshape(9 * c, -1)
    return patches @ kernel + self.bias[...]


class CNN(nnx.Module):
  """conv 3x3 - ReLU - conv 3x3 (twice the width) - ReLU - 2x2 mean pool -
  dense (to 10 classes)."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.conv1 = Conv3x3(1, width, rngs=rngs)
    self.conv2 = Conv3x3(width, 2 * width, rngs=rngs)
    self.dense = nnx.Linear(4 * 4 * 2 * width, 10, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.conv1(x))
    x = nnx.relu(self.conv2(x))
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return self.dense(x.reshape(b, -1))


class Digits(Task):
  """A small CNN on scikit-learn's 8x8 digits."""

  name = "digits"
  metric = "accuracy"
  higher_is_better = True
  loss_unit = "cross_entropy_nats"

  def __init__(self, quick: bool = False):
    # pylint: disable=import-outside-toplevel
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    # curve / train_eval: how many validation images the curve uses and
    # how many training images the final training loss (None: all).
    if quick:
      self.size = dict(width=8, batch=32, epochs=1, curve=64,
                       train_eval=256)
    else:
      self.size = dict(width=16, batch=64, epochs=40, curve=None,
                       train_eval=None)
    digits = load_digits()
    x = digits.data.astype(np.float32).reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=0, stratify=y)
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    mean, std = x_train.mean(), x_train.std()
    norm = lambda a: ((a - mean) / std).astype(np.float32)
    self.arrays = {"x_train": norm(x_train), "y_train": y_train,
                   "x_valid": norm(x_valid), "y_valid": y_valid,
                   "x_test": norm(x_test), "y_test": y_test}
    self.steps_per_epoch = len(x_train) // self.size["batch"]
    # a multiple of N_EVAL steps (the evaluation points)
    self.steps = (self.size["epochs"] * self.steps_per_epoch
                  // N_EVAL) * N_EVAL
    self.size["steps"] = self.steps
    self.size["split"] = f"{len(x_train)}/{len(x_valid)}/{len(x_test)}"

  def data(self) -> dict[str, jax.Array]:
    data = {k: jnp.asarray(v) for k, v in self.arrays.items()}
    for name, split in (("curve", "valid"), ("train_eval", "train")):
      n = self.size[name]
      data[f"x_{name}"] = data[f"x_{split}"][:n]
      data[f"y_{name}"] = data[f"y_{split}"][:n]
    return data

  def init(self, seed: int) -> Any:
    graphdef, params = nnx.split(CNN(self.size["width"], rngs=nnx.Rngs(seed)),
                                 nnx.Param)
    self.graphdef = graphdef
    return params

  def order(self, seed: int) -> np.ndarray:
    rng = np.random.default_rng(2000 + seed)
    n, b = len(self.arrays["y_train"]), self.size["batch"]
    epochs = -(-self.steps // self.steps_per_epoch)
    rows = [rng.permutation(n)[:self.steps_per_epoch * b].reshape(-1, b)
            for _ in range(epochs)]
    return np.concatenate(rows)[:self.steps].astype(np.int32)

  def _eval(self, params: Any, x: jax.Array, y: jax.Array):
    logits = nnx.merge(self.graphdef, params)(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

  def loss(self, params: Any, data: Any, x_t: jax.Array) -> jax.Array:
    return self._eval(params, data["x_train"][x_t], data["y_train"][x_t])[0]

  def curve(self, params: Any, data: Any) -> jax.Array:
    return self._eval(params, data["x_curve"], data["y_curve"])[1]

  def final(self, params: Any, data: Any) -> dict[str, jax.Array]:
    train_loss, _ = self._eval(params, data["x_train_eval"],
                               data["y_train_eval"])
    valid_loss, valid_acc = self._eval(params, data["x_valid"],
                                       data["y_valid"])
    test_loss, test_acc = self._eval(params, data["x_test"], data["y_test"])
    return {"train_loss": train_loss, "valid_metric": valid_acc,
            "test_metric": test_acc, "valid_loss": valid_loss,
            "test_loss": test_loss}


# --- quadratic ---------------------------------------------------------------


class Quadratic(Task):
  """Streaming least squares ``E 0.5 (x.w - y)^2``, ``x ~ N(0, H)``."""

  name = "quadratic"
  metric = "loss"
  higher_is_better = False
  loss_unit = "loss"

  def __init__(self, quick: bool = False):
    self.size = dict(dim=100, decades=3, batch=8, sigma=0.5,
                     steps=100 if quick else 5000, valid_samples=1000)
    d = self.size["dim"]
    self.steps = self.size["steps"]
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    h = np.logspace(0, -self.size["decades"], d)
    self.sqrt_h = q * np.sqrt(h)  # x = Q sqrt(h) z
    self.hessian = (q * h) @ q.T
    self.w_star = rng.normal(size=d)
    self.x_valid = rng.normal(size=(self.size["valid_samples"], d)) @ (
        self.sqrt_h.T)

  def data(self) -> dict[str, jax.Array]:
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return {"sqrt_h": f32(self.sqrt_h), "hessian": f32(self.hessian),
            "w_star": f32(self.w_star), "x_valid": f32(self.x_valid)}

  def init(self, seed: int) -> Any:
    rng = np.random.default_rng(3000 + seed)
    side = int(round(math.sqrt(self.size["dim"])))
    # A matrix leaf (a "kernel"), so every numerator and mask treats it as a
    # weight.
    return {"kernel": jnp.asarray(rng.normal(size=(side, side)),
                                  jnp.float32)}

  def order(self, seed: int) -> np.ndarray:
    keys = jax.random.split(jax.random.key(4000 + seed), self.steps)
    return np.asarray(jax.random.key_data(keys))

  def loss(self, params: Any, data: Any, x_t: jax.Array) -> jax.Array:
    key = jax.random.wrap_key_data(x_t)
    kx, ky = jax.random.split(key)
    b, d = self.size["batch"], self.size["dim"]
    x = jax.random.normal(kx, (b, d)) @ data["sqrt_h"].T
    y = x @ data["w_star"] + self.size["sigma"] * jax.random.normal(ky, (b,))
    w = params["kernel"].reshape(-1)
    return 0.5 * jnp.mean((x @ w - y) ** 2)

  def _excess(self, params: Any, data: Any) -> jax.Array:
    e = params["kernel"].reshape(-1) - data["w_star"]
    return 0.5 * e @ data["hessian"] @ e

  def curve(self, params: Any, data: Any) -> jax.Array:
    e = params["kernel"].reshape(-1) - data["w_star"]
    return 0.5 * jnp.mean((data["x_valid"] @ e) ** 2)

  def final(self, params: Any, data: Any) -> dict[str, jax.Array]:
    excess = self._excess(params, data)
    return {"train_loss": excess + 0.5 * self.size["sigma"] ** 2,
            "valid_metric": self.curve(params, data),
            "test_metric": excess}


TASKS: dict[str, Callable[[bool], Task]] = {
    "charlm": CharLM, "digits": Digits, "quadratic": Quadratic}


# ----------------------------------------------------------------------------
# The training loop: one jitted, vmapped call per (task, config, rate).


def make_trainer(task: Task, config: Config) -> Callable[..., Any]:
  """``train(params, orders, data, learning_rate, gamma)`` for a batch of
  seeds (the leading axis of ``params`` and ``orders``): the training curve
  (the mean minibatch loss of each of the N_EVAL intervals) and the
  parameters at the end of every interval. Only the training is in this
  program; :func:`make_evaluator` evaluates the snapshots in a program of
  its own, compiled once per task for every configuration."""
  per = task.steps // N_EVAL

  def one(params, order, data, learning_rate, gamma):
    tx = make_optimizer(config, learning_rate, gamma, task.steps)
    grad_fn = jax.value_and_grad(task.loss)

    def step(carry, x_t):
      params, state = carry
      loss, grads = grad_fn(params, data, x_t)
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), loss

    def interval(carry, xs):
      carry, losses = jax.lax.scan(step, carry, xs)
      return carry, (jnp.mean(losses) * task.loss_scale, carry[0])

    order = jax.tree.map(
        lambda a: a.reshape((N_EVAL, per) + a.shape[1:]), order)
    _, (train_curve, snapshots) = jax.lax.scan(
        interval, (params, tx.init(params)), order)
    return train_curve, snapshots

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))


def make_evaluator(task: Task) -> Callable[..., Any]:
  """``evaluate(params0, snapshots, data)`` for a batch of seeds: the
  validation curve (at step 0 and at every snapshot) and the final metrics
  (of the last snapshot)."""

  def one(params0, snapshots, data):
    points = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]),
                          params0, snapshots)
    curve = jax.lax.map(lambda p: task.curve(p, data), points)
    final = task.final(jax.tree.map(lambda a: a[-1], snapshots), data)
    return curve, final

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def _finite(x: float) -> Optional[float]:
  return float(x) if math.isfinite(float(x)) else None


_COMPILED: dict[Any, Any] = {}


def _compiled(trainer: Callable[..., Any], args: tuple[Any, ...]) -> Any:
  """``trainer`` compiled for ``args``' shapes (once per trainer and
  shapes), so that a call's training time excludes compilation."""
  shapes = jax.tree.map(lambda a: (np.shape(a), str(getattr(a, "dtype", type(a)))), args)
  key = (id(trainer), str(shapes))
  if key not in _COMPILED:
    _COMPILED[key] = (trainer, trainer.lower(*args).compile())
  return _COMPILED[key][1]


def run_point(task: Task, trainer: Callable[..., Any],
              evaluator: Callable[..., Any], data: Any, config: Config,
              learning_rate: float, seeds: Sequence[int],
              setting: str) -> list[dict[str, Any]]:
  """Trains ``config`` at ``learning_rate`` for every seed (one call),
  evaluates, and returns one record per seed."""
  start = time.perf_counter()
  params = _stack([task.init(s) for s in seeds])
  orders = np.stack([task.order(s) for s in seeds])
  gamma = 0.0 if config.gamma is None else config.gamma
  args = (params, orders, data, jnp.float32(learning_rate),
          jnp.float32(gamma))
  compile_start = time.perf_counter()
  compiled = _compiled(trainer, args)
  train_start = time.perf_counter()
  train_curve, snapshots = jax.block_until_ready(compiled(*args))
  train_s = time.perf_counter() - train_start
  compile_s = train_start - compile_start
  valid_curve, final = evaluator(params, snapshots, data)
  train_curve, valid_curve, final = jax.device_get(
      (train_curve, valid_curve, final))
  wall = time.perf_counter() - start
  per = task.steps // N_EVAL
  train_steps = [(i + 1) * per for i in range(N_EVAL)]
  valid_steps = [0] + train_steps
  records = []
  for i, seed in enumerate(seeds):
    metrics = {k: _finite(v[i]) for k, v in final.items()}
    diverged = any(v is None for v in metrics.values()) or not np.all(
        np.isfinite(train_curve[i]))
    record = {
        "task": task.name,
        "optimizer": config.name,
        "family": config.family,
        "numerator": config.numerator,
        "gamma": config.gamma,
        "masked": config.masked,
        "phase": "grid" if config.grid else "best",
        "learning_rate": float(learning_rate),
        "seed": int(seed),
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "loss_unit": task.loss_unit,
        "final_train_loss": metrics.pop("train_loss"),
        "final_valid_metric": metrics.pop("valid_metric"),
        "final_test_metric": metrics.pop("test_metric"),
        **{f"final_{k}": v for k, v in metrics.items()},
        "diverged": bool(diverged),
        "steps": task.steps,
        "wall_s": wall / len(seeds),
        "wall_s_call": wall,
        "train_s_call": train_s,
        "compile_s_call": compile_s,
        "seeds_in_call": len(seeds),
        "setting": setting,
        "size": task.size,
        "train_curve": [[s, _finite(v)] for s, v in zip(train_steps,
                                                         train_curve[i])],
        "valid_curve": [[s, _finite(v)] for s, v in zip(valid_steps,
                                                         valid_curve[i])],
    }
    records.append(record)
  return records


# ----------------------------------------------------------------------------
# Results file.


def record_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
  """Records are keyed by task, optimizer, learning rate and seed."""
  return (record["task"], record["optimizer"],
          f"{float(record['learning_rate']):.6e}", int(record["seed"]))


def load_results(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def save_results(path: str, records: list[dict[str, Any]]) -> None:
  """Writes ``records`` atomically (a temporary file, then os.replace)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".results.",
                             suffix=".json.tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(records, f, indent=1, allow_nan=False)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


# ----------------------------------------------------------------------------
# Main.


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python benchmarks/convergence.py",
      description="AutoSGM against optax.adamw: a grid of tasks, "
                  "configurations, learning rates and seeds.")
  parser.add_argument("--out", default=None,
                      help="results directory (default "
                           "benchmarks/results/convergence, "
                           "benchmarks/results/convergence_quick with "
                           "--quick)")
  parser.add_argument("--quick", action="store_true",
                      help="tiny tasks, 1 seed, 2 rates (for tests)")
  parser.add_argument("--matrix", action="store_true",
                      help="the matrix oracle's comparison: adamw, muon "
                           "and autosgm's matrix path on charlm and digits "
                           "(results in benchmarks/results/"
                           "convergence_matrix, its report in report.md "
                           "there)")
  parser.add_argument("--tasks", default=None,
                      help=f"comma-separated subset of {','.join(TASKS)} "
                           f"(default all; {','.join(MATRIX_TASKS)} with "
                           "--matrix)")
  parser.add_argument("--seeds", type=int, default=None,
                      help=f"seeds per point (default {DEFAULT_SEEDS}, 1 "
                           "with --quick)")
  parser.add_argument("--report", action="store_true",
                      help="analyse an existing results.json (no training)")
  parser.add_argument("--docs", default=DEFAULT_DOCS,
                      help="where --report writes its plots (default docs/)")
  parser.add_argument("--task", default=None,
                      help="the task of the gamma panels (--report) and of "
                           "the learning-dynamics plot (default charlm)")
  parser.add_argument("--no-progress", action="store_true",
                      help="hide the progress bar")
  args = parser.parse_args(argv)
  if args.tasks is None:
    args.tasks = ",".join(MATRIX_TASKS if args.matrix else TASKS)
  tasks = [t for t in args.tasks.split(",") if t]
  unknown = [t for t in tasks if t not in TASKS]
  if unknown or not tasks:
    parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
  args.tasks = tasks
  if args.seeds is None:
    args.seeds = 1 if args.quick else (DEFAULT_MATRIX_SEEDS if args.matrix
                                       else DEFAULT_SEEDS)
  if args.seeds < 1:
    parser.error("--seeds must be positive")
  if args.out is None:
    if args.matrix:
      args.out = DEFAULT_MATRIX_QUICK_OUT if args.quick else (
          DEFAULT_MATRIX_OUT)
    else:
      args.out = DEFAULT_QUICK_OUT if args.quick else DEFAULT_OUT
  return args


def refined_rates(records: Sequence[dict[str, Any]], task: str,
                  optimizer: str, higher: bool,
                  seeds: Sequence[int]) -> list[float]:
  """The geometric midpoints between ``optimizer``'s best coarse-grid rate
  (on validation) and its grid neighbours (one at an end of the grid)."""
  coarse = [r for r in records
            if float(f"{r['learning_rate']:.3g}") in LR_GRID]
  found = best_learning_rate(coarse, task, [optimizer], higher, seeds)
  if found is None:
    return []
  lr = found[1]
  out = []
  if lr > LR_GRID[0] * 1.001:
    out.append(float(f"{lr / REFINE_STEP:.3g}"))
  if lr < LR_GRID[-1] / 1.001:
    out.append(float(f"{lr * REFINE_STEP:.3g}"))
  return out


def train_all(args: argparse.Namespace) -> list[dict[str, Any]]:
  """Runs (or resumes) the grid; returns every record of the file."""
  path = os.path.join(args.out, "results.json")
  setting = "quick" if args.quick else "full"
  records = load_results(path)
  other = {r["setting"] for r in records} - {setting}
  if other:
    raise SystemExit(
        f"{path} holds {sorted(other)} records; this is a {setting} run: "
        "give it another --out.")
  done = {record_key(r) for r in records}
  matrix = getattr(args, "matrix", False)
  configs = matrix_configurations() if matrix else configurations()
  if not matrix and not numerator_mask_supported():
    print("skipping corr_g0.5528_masked: autosgm has no numerator_mask "
          "keyword yet", flush=True)
  grid = [c for c in configs if c.grid]
  rest = [c for c in configs if not c.grid]
  lrs = QUICK_LR_GRID if args.quick else LR_GRID
  seeds = list(range(args.seeds))
  refine = 0 if args.quick else 2
  total = len(args.tasks) * (len(grid) * (len(lrs) + refine) + len(rest))
  bar = tqdm(total=total, desc="convergence", unit="point",
             disable=args.no_progress, dynamic_ncols=True)
  for name in args.tasks:
    task = None  # built on first need: a finished task costs nothing
    data = None
    trainers: dict[tuple[str, bool], Callable[..., Any]] = {}
    evaluator = None

    def point(config: Config, lr: float) -> None:
      nonlocal task, data, evaluator
      missing = [s for s in seeds
                 if (name, config.name, f"{lr:.6e}", s) not in done]
      bar.set_postfix_str(f"{name} {config.name} lr={lr:.3g}")
      if missing:
        if task is None:
          task = TASKS[name](args.quick)
          data = task.data()
          evaluator = make_evaluator(task)
        if config.program not in trainers:
          trainers[config.program] = make_trainer(task, config)
        new = run_point(task, trainers[config.program], evaluator, data,
                        config, lr, missing, setting)
        records.extend(new)
        done.update(record_key(r) for r in new)
        save_results(path, records)
        first = new[0]
        bar.write(f"{name:<9} {config.name:<20} lr={lr:<8.3g} "
                  f"valid {first['metric']}="
                  f"{mean_valid(new, first['higher_is_better']):.4g} "
                  f"({len(new)} seeds, {first['wall_s_call']:.1f}s)")
      bar.update(1)

    higher = TASKS[name].higher_is_better
    for config in grid:
      for lr in lrs:
        point(config, lr)
      if not args.quick:
        for lr in refined_rates(records, name, config.name, higher, seeds):
          point(config, lr)
    best = {}
    for family in ("unity", "correlation"):
      tuned = [c.name for c in grid if c.family == family]
      best[family] = best_learning_rate(records, name, tuned, higher, seeds)
    for config in rest:
      found = best[config.tuned_by]
      if found is None:
        bar.update(1)
        continue
      # An untuned configuration runs at its numerator's best rate only:
      # records at an earlier best (before more seeds or the refinement
      # moved it) are dropped.
      stale = [r for r in records
               if r["task"] == name and r["optimizer"] == config.name
               and f"{r['learning_rate']:.6e}" != f"{found[1]:.6e}"]
      if stale:
        bar.write(f"{name:<9} {config.name:<20} dropping {len(stale)} "
                  "records at an earlier best rate")
        records[:] = [r for r in records if r not in stale]
        done.difference_update(record_key(r) for r in stale)
        save_results(path, records)
      point(config, found[1])
  bar.close()
  return records


# ----------------------------------------------------------------------------
# The learning dynamics of the best run.

#: Diagnostics cadence of the dynamics run (updates between records).
DYNAMICS_EVERY = 5
#: The leaves the dynamics plot draws where present (charlm's embedding, an
#: attention and an MLP kernel, a zero-initialised bias, a norm scale, the
#: head; all leaves for another task).
DYNAMICS_LEAVES = ("embed/embedding", "blocks/0/qkv/kernel",
                   "blocks/1/fc/kernel", "blocks/1/fc/bias", "ln/scale",
                   "head/kernel")


def best_autosgm(records: Sequence[dict[str, Any]], task: str
                 ) -> Optional[tuple[Config, float]]:
  """The AutoSGM configuration and rate with the best mean validation
  metric on ``task`` (every configuration but AdamW, every rate run)."""
  configs = {c.name: c for c in configurations() if c.family != "adamw"}
  higher = TASKS[task].higher_is_better
  found = best_learning_rate(records, task, list(configs), higher)
  return None if found is None else (configs[found[0]], found[1])


def dynamics_run(task: Task, config: Config, learning_rate: float,
                 seed: int = 0, every: int = DYNAMICS_EVERY) -> list[Any]:
  """Trains ``config`` on ``task`` (one seed, the grid run's initial weights
  and data order) with ``diagnostics="summary", diagnostics_every=every``
  and returns ``learning_dynamics(state)[""]`` after every update: the
  history :func:`autosgm_optax.plot_dynamics` draws."""
  gamma = 0.0 if config.gamma is None else config.gamma
  tx = make_optimizer(config, learning_rate, gamma, task.steps,
                      diagnostics="summary", diagnostics_every=every)
  data = task.data()
  grad_fn = jax.value_and_grad(task.loss)

  @jax.jit
  def step(params, state, x_t):
    _, grads = grad_fn(params, data, x_t)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return params, state, asgm.learning_dynamics(state)[""]

  params = task.init(seed)
  state = tx.init(params)
  order = task.order(seed)
  history = []
  for t in range(task.steps):
    x_t = jax.tree.map(lambda a, t=t: a[t], order)
    params, state, dynamics = step(params, state, x_t)
    if (t + 1) % every == 0:
      history.append(jax.device_get(dynamics))
  return history


def plot_best_dynamics(records: Sequence[dict[str, Any]], task_name: str,
                       path: str, quick: bool = False) -> Optional[str]:
  """Draws the learning dynamics of the best AutoSGM run of ``task_name``
  into ``path``; returns a line saying which run it is (None without
  records)."""
  found = best_autosgm(records, task_name)
  if found is None:
    return None
  config, lr = found
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  history = dynamics_run(TASKS[task_name](quick), config, lr)
  title = (f"{task_name}: {config.name} at mu = {lr:.3g} (best AutoSGM "
           f"run on validation), seed 0")
  names = set()
  if history:
    for keys, _ in jax.tree_util.tree_flatten_with_path(
        history[0].alpha.sup)[0]:
      names.add("/".join(str(getattr(k, "key", getattr(k, "idx", getattr(
          k, "name", k)))) for k in keys))
  leaves = [n for n in DYNAMICS_LEAVES if n in names] or None
  fig = asgm.plot_dynamics(history, title=title, leaves=leaves)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return f"{title}: {len(history)} records -> {path}"


# ----------------------------------------------------------------------------
# The matrix comparison's report (--matrix).

#: The paired comparisons of ``--matrix``'s report: (configuration, baseline).
MATRIX_PAIRS = (("muon", "adamw"), ("matrix_corr_g0.5528", "adamw"),
                ("matrix_scalar_g0.5528", "adamw"),
                ("matrix_corr_g0.5528", "muon"),
                ("matrix_scalar_g0.5528", "matrix_corr_g0.5528"))


def matrix_report(records: Sequence[dict[str, Any]], quick: bool = False
                  ) -> str:
  """``--matrix``'s report (Markdown): which leaves took the matrix path,
  the summary (each configuration at its best validation rate, test metric
  with its 95% t-interval), the full table of
  :mod:`convergence_report`, the paired differences and the test metric at
  every rate."""
  cr = convergence_report
  names = [c.name for c in matrix_configurations()]
  tasks = [t for t in cr.TASK_ORDER if any(r["task"] == t for r in records)]
  seeds = sorted({r["seed"] for r in records})
  calls = {(r["task"], r["optimizer"], r["learning_rate"]): r["wall_s_call"]
           for r in records}
  out = ["# Matrix oracle: training comparison", "",
         f"{len(records)} runs ({len(calls)} calls of {len(seeds)} seed(s) "
         f"batched by jax.vmap; {sum(calls.values()) / 60:.1f} min of "
         f"calls, compilation included) on {cpu_model()}, "
         f"{os.cpu_count()} CPUs. Rates chosen on validation, reported on "
         "test; mean ± 95% t-interval over seeds.", ""]
  summary = []
  for task in tasks:
    tr = cr.TaskResults(task, records)
    row = [f"{task} (test {tr.metric})"]
    for name in names:
      lr = tr.best(name) if name in tr.optimizers else None
      if lr is None:
        row.append("not run")
        continue
      mean, half = tr.test(name, lr)
      row.append(f"{cr._fmt_ci(tr.metric, mean, half)} (lr {lr:.2g})")  # pylint: disable=protected-access
    summary.append(row)
  out += ["## Summary", "",
          cr._markdown(["task"] + names, summary), ""]  # pylint: disable=protected-access
  for task in tasks:
    tr = cr.TaskResults(task, records)
    params = TASKS[task](quick).init(0)
    matrix, other = matrix_leaves(params)
    out += [f"## {task}", "",
            f"Matrix path (rank 2, the default rule; Muon's and autosgm's "
            f"matrix leaves): {', '.join(matrix) or 'none'}.", "",
            f"Element-wise path (Muon's Adam leaves; autosgm's numerator "
            f"leaves): {', '.join(other) or 'none'}.", ""]
    target = tr.target()
    header = [h.format(metric=tr.metric) for h in cr.HEADER]
    rows = []
    for name in names:
      lr = tr.best(name) if name in tr.optimizers else None
      if lr is not None:
        rows.append(cr._row(tr, name, name, lr, target))  # pylint: disable=protected-access
    out += [cr._markdown(header, rows), ""]  # pylint: disable=protected-access
    pairs = []
    for a, b in MATRIX_PAIRS:
      la = tr.best(a) if a in tr.optimizers else None
      lb = tr.best(b) if b in tr.optimizers else None
      if la is None or lb is None:
        continue
      mean, half, n = tr.paired_with(a, la, b, lb)
      if not math.isfinite(half):
        verdict = "n/a"
      elif mean - half > 0 or mean + half < 0:
        verdict = f"{a} better" if (mean > 0) == tr.higher else (
            f"{b} better")
      else:
        verdict = "no difference"
      pairs.append([f"{a} @ {la:.3g} - {b} @ {lb:.3g}",
                    cr._fmt_paired(tr, mean, half, n), str(n), verdict])  # pylint: disable=protected-access
    if pairs:
      out += ["Paired over seeds, each at its own best validation rate:", "",
              cr._markdown(["comparison", "difference (95% CI)", "pairs",  # pylint: disable=protected-access
                            "verdict"], pairs), ""]
    rates = sorted({lr for (n, lr) in tr.points if n in names})
    grid_rows = []
    for lr in rates:
      row = [f"{lr:.3g}"]
      for name in names:
        if (name, lr) in tr.points:
          mean, _ = tr.test(name, lr)
          row.append(cr._fmt(tr.metric, mean))  # pylint: disable=protected-access
        else:
          row.append("")
      grid_rows.append(row)
    out += [f"Mean test {tr.metric} at every rate run:", "",
            cr._markdown(["lr"] + names, grid_rows), ""]  # pylint: disable=protected-access
  return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> None:
  start = time.perf_counter()
  args = parse_args(argv)
  if args.quick and not args.report:
    # The quick run is a smoke test whose time is XLA's compilation. XLA's
    # CPU fusion emitters and LLVM at its default optimisation level take
    # most of it: without them the quick programs compile about 5x faster
    # (set before JAX starts its CPU backend; the full run keeps XLA's
    # defaults).
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), *QUICK_XLA_FLAGS]).strip()
  command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
  if args.matrix:
    if not args.report:
      print(f"jax {jax.__version__} on {jax.default_backend()}, "
            f"{os.cpu_count()} CPUs; matrix comparison; tasks "
            f"{','.join(args.tasks)}; {args.seeds} seed(s); results in "
            f"{os.path.join(args.out, 'results.json')}", flush=True)
      train_all(args)
    records = load_results(os.path.join(args.out, "results.json"))
    text = matrix_report(records, quick=args.quick)
    with open(os.path.join(args.out, "report.md"), "w") as f:
      f.write(text + "\n")
    print(text)
  elif args.report:
    convergence_report.main(["--out", args.out, "--docs", args.docs]
                            + ([] if args.task is None
                               else ["--task", args.task]))
  else:
    print(f"jax {jax.__version__} on {jax.default_backend()}, "
          f"{os.cpu_count()} CPUs; tasks {','.join(args.tasks)}; "
          f"{args.seeds} seed(s); {'quick' if args.quick else 'full'} grid; "
          f"results in {os.path.join(args.out, 'results.json')}", flush=True)
    records = train_all(args)
    chosen = args.task or ("charlm" if "charlm" in args.tasks
                           else args.tasks[0])
    where = args.out if args.quick else args.docs
    line = plot_best_dynamics(
        records, chosen, os.path.join(where, "convergence_dynamics.png"),
        quick=args.quick)
    if line:
      print(f"learning dynamics: {line}", flush=True)
  print(f"command: {command}")
  print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
  main()
