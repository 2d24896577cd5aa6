"""The classic optimizers as exact points of AutoSGM.

Each preset is a thin configuration of :func:`autosgm_optax.scale_by_autosgm`
chained with :func:`autosgm_optax.scale_by_learning_rate`, and computes
bit for bit what its Optax twin computes:

=========  =====================================  ============================
preset     configuration                          twin
=========  =====================================  ============================
``sgd``    no filter (or heavy ball, Nesterov)    ``optax.sgd``
``phb``    ``beta``, ``gamma = 0``, ``eta = 1``   ``optax.sgd(momentum=m)``
``nag``    the filter in Optax's Nesterov form    ``optax.sgd(nesterov=True)``
``adam``   ``eta = 1 - b1``, debias; denominator  ``optax.adam``
``adamw``  ``adam`` + decoupled decay, factor 1   ``optax.adamw``
=========  =====================================  ============================

``sgd``, ``adam`` and ``adamw`` take their twins' parameter names, kinds and
defaults, accept what the twins accept (no extra validation) and keep their
state dtypes (the parameters' dtype unless ``mu_dtype`` /
``accumulator_dtype`` says otherwise), so swapping one for the other changes
nothing. ``phb`` and ``nag`` are named shortcuts.
"""

from autosgm_optax._src.presets import adam
from autosgm_optax._src.presets import adamw
from autosgm_optax._src.presets import nag
from autosgm_optax._src.presets import phb
from autosgm_optax._src.presets import sgd

__all__ = ("sgd", "phb", "nag", "adam", "adamw")
