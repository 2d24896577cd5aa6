"""Analysis of AutoSGM's learning dynamics, apart from the optimizer.

What the optimizer records (``autosgm(..., diagnostics=...)``, read with
:func:`autosgm_optax.learning_dynamics`) is analysed here, outside any
training step: the stability conditions of a configuration
(:func:`stability_conditions`), a check of a recorded history against them
(:func:`check_stability`), and plots of windows and of learning dynamics
(:func:`plot_windows`, :func:`plot_dynamics`; matplotlib is an optional
dependency). The names are also importable from :mod:`autosgm_optax`.
"""

from autosgm_optax.analysis._check import Finding
from autosgm_optax.analysis._check import StabilityReport
from autosgm_optax.analysis._check import check_stability
from autosgm_optax.analysis._conditions import StabilityConditions
from autosgm_optax.analysis._conditions import stability_conditions
from autosgm_optax.analysis._plotting import plot_dynamics
from autosgm_optax.analysis._plotting import plot_windows

__all__ = (
  "Finding",
  "StabilityConditions",
  "StabilityReport",
  "check_stability",
  "plot_dynamics",
  "plot_windows",
  "stability_conditions",
)
