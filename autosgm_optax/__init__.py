"""AutoSGM for Optax: one lowpass filter and one iteration-dependent learning
rate that contain heavy ball, Nesterov and Adam as exact special cases."""

from autosgm_optax import analysis
from autosgm_optax import design
from autosgm_optax import migration
from autosgm_optax import presets
from autosgm_optax._src import base as _base_module
from autosgm_optax._src.alias import autosgm
from autosgm_optax._src.base import LIKE_PARAMS
from autosgm_optax._src.base import AutoSGMBlock
from autosgm_optax._src.base import BlockFacts
from autosgm_optax._src.base import BlockUpdate
from autosgm_optax._src.base import FilterFacts
from autosgm_optax._src.base import FilterSpec
from autosgm_optax._src.base import NoState
from autosgm_optax._src.base import PerLeaf
from autosgm_optax._src.base import Realisation
from autosgm_optax._src.base import Signal
from autosgm_optax._src.combinator import ScaleByAutoSGMState
from autosgm_optax._src.combinator import scale_by_autosgm
from autosgm_optax._src.decay import WeightDecayState
from autosgm_optax._src.decay import coupled_decay
from autosgm_optax._src.decay import decoupled_decay
from autosgm_optax._src.decay import default_weight_decay_mask
from autosgm_optax._src.denominator import MomentDenominatorState
from autosgm_optax._src.denominator import moment_denominator
from autosgm_optax._src.diagnostics import DiagnosticsState
from autosgm_optax._src.diagnostics import Summary
from autosgm_optax._src.learning_rate import ScaleByLearningRateState
from autosgm_optax._src.learning_rate import scale_by_learning_rate
from autosgm_optax._src.lowpass import LowpassFilterState
from autosgm_optax._src.lowpass import lowpass_filter
from autosgm_optax._src.matrix import MatrixNumeratorState
from autosgm_optax._src.matrix import MatrixOracleState
from autosgm_optax._src.matrix import matrix_numerator
from autosgm_optax._src.matrix import matrix_oracle
from autosgm_optax._src.numerator import CorrelationNumeratorState
from autosgm_optax._src.numerator import correlation_numerator
from autosgm_optax._src.readers import Dynamics
from autosgm_optax._src.readers import effective_learning_rate
from autosgm_optax._src.readers import effective_learning_rates
from autosgm_optax._src.readers import learning_dynamics
from autosgm_optax._src.readers import numerator_values
from autosgm_optax._src.window import WindowState
from autosgm_optax._src.window import raised_cosine_schedule
from autosgm_optax._src.window import raised_cosine_window
from autosgm_optax._src.window import scale_by_window
from autosgm_optax._src.window import window_schedule
from autosgm_optax.analysis import Finding
from autosgm_optax.analysis import StabilityConditions
from autosgm_optax.analysis import StabilityReport
from autosgm_optax.analysis import check_stability
from autosgm_optax.analysis import plot_dynamics
from autosgm_optax.analysis import plot_windows
from autosgm_optax.analysis import stability_conditions
from autosgm_optax.migration import from_torch_config
from autosgm_optax.migration import torch_config_kwargs

# (flax.serialization learns the diagnostics' records if flax is already
# imported; diagnostics built later register them too)
_base_module.register_with_flax()

__version__ = "0.1.0"

__all__ = (
  "analysis",
  "design",
  "migration",
  "AutoSGMBlock",
  "BlockFacts",
  "BlockUpdate",
  "FilterFacts",
  "FilterSpec",
  "NoState",
  "PerLeaf",
  "Realisation",
  "Signal",
  "CorrelationNumeratorState",
  "DiagnosticsState",
  "Finding",
  "Dynamics",
  "LIKE_PARAMS",
  "LowpassFilterState",
  "MatrixNumeratorState",
  "MatrixOracleState",
  "MomentDenominatorState",
  "ScaleByAutoSGMState",
  "ScaleByLearningRateState",
  "StabilityConditions",
  "StabilityReport",
  "Summary",
  "WeightDecayState",
  "WindowState",
  "autosgm",
  "check_stability",
  "correlation_numerator",
  "coupled_decay",
  "decoupled_decay",
  "default_weight_decay_mask",
  "effective_learning_rate",
  "effective_learning_rates",
  "from_torch_config",
  "learning_dynamics",
  "lowpass_filter",
  "matrix_numerator",
  "matrix_oracle",
  "moment_denominator",
  "numerator_values",
  "plot_dynamics",
  "plot_windows",
  "presets",
  "raised_cosine_schedule",
  "raised_cosine_window",
  "scale_by_autosgm",
  "scale_by_learning_rate",
  "scale_by_window",
  "stability_conditions",
  "torch_config_kwargs",
  "window_schedule",
)
