"""The classic optimizers as exact points of AutoSGM.

Each preset is a thin configuration of :func:`autosgm_optax.scale_by_autosgm`
chained with :func:`autosgm_optax.scale_by_learning_rate`. Where Optax has a
twin, the preset computes bit for bit what the twin computes; ``qhm`` and
``qhadam``, which Optax lacks, follow their paper's equations:

==========  =====================================  ============================
preset      configuration                          twin
==========  =====================================  ============================
``sgd``     no filter (or heavy ball, Nesterov)    ``optax.sgd``
``phb``     ``beta``, ``gamma = 0``, ``eta = 1``   ``optax.sgd(momentum=m)``
``nag``     the filter in Optax's Nesterov form    ``optax.sgd(nesterov=True)``
``adam``    ``eta = 1 - b1``, debias; denominator  ``optax.adam``
``adamw``   ``adam`` + decoupled decay, factor 1   ``optax.adamw``
``nadam``   quasi-hyperbolic form ``nu = b1``,     ``optax.nadam``
            NAdam's per-term debias; denominator
``nadamw``  ``nadam`` + decoupled decay, factor 1  ``optax.nadamw``
``qhm``     quasi-hyperbolic form ``nu``, no       none (Ma & Yarats, 2019)
            debias, no denominator
``qhadam``  quasi-hyperbolic form ``nu1``, EMA     none (Ma & Yarats, 2019)
            debias; denominator mixed by ``nu2``
``muon``    ``nadam``'s filter and the matrix      ``optax.contrib.muon``
            oracle on matrix leaves, ``adamw``
            elsewhere
==========  =====================================  ============================

``sgd``, ``adam``, ``adamw``, ``nadam`` and ``nadamw`` take their twins'
parameter names, kinds and defaults, accept what the twins accept (no extra
validation) and keep their state dtypes (the parameters' dtype unless
``mu_dtype`` / ``accumulator_dtype`` says otherwise), so swapping one for the
other changes nothing. ``phb`` and ``nag`` are named shortcuts.
"""

from autosgm_optax._src.presets import adam
from autosgm_optax._src.presets import adamw
from autosgm_optax._src.presets import muon
from autosgm_optax._src.presets import nadam
from autosgm_optax._src.presets import nadamw
from autosgm_optax._src.presets import nag
from autosgm_optax._src.presets import phb
from autosgm_optax._src.presets import qhadam
from autosgm_optax._src.presets import qhm
from autosgm_optax._src.presets import sgd

__all__ = (
  "sgd",
  "phb",
  "nag",
  "adam",
  "adamw",
  "nadam",
  "nadamw",
  "qhm",
  "qhadam",
  "muon",
)
