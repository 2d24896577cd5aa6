"""The lowpass filter as an object to study.

AutoSGM's filter ``H(z) = eta (1 - gamma z^-1) / (1 - beta z^-1)``
(docs/algorithm.md, section 2) studied in float64 NumPy, apart from any
training step (docs/design.md):

- its responses: :func:`frequency_response`, :func:`impulse_response`,
  :func:`step_response` (with or without the exact debias),
  :func:`group_delay`, :func:`noise_gain`, :func:`dc_gain`;
- points of the design space: :func:`named_zero`, and other methods'
  momentum as filters, :func:`from_qhm` and :func:`from_nadam`;
- the closed loop on a quadratic ``f(w) = h w^2 / 2``:
  :func:`closed_loop_poles`, :func:`convergence_rate` and the
  :func:`deadbeat` design (Nesterov's zero);
- a design as a value, :class:`FilterDesign`, made by :func:`of` from a
  filter block or a preset of :mod:`autosgm_optax.presets`, and drawn by
  :func:`plot_filter` (matplotlib is an optional dependency).
"""

from autosgm_optax._src.design import FilterDesign
from autosgm_optax._src.design import closed_loop_poles
from autosgm_optax._src.design import convergence_rate
from autosgm_optax._src.design import dc_gain
from autosgm_optax._src.design import deadbeat
from autosgm_optax._src.design import frequency_response
from autosgm_optax._src.design import from_nadam
from autosgm_optax._src.design import from_qhm
from autosgm_optax._src.design import group_delay
from autosgm_optax._src.design import impulse_response
from autosgm_optax._src.design import named_zero
from autosgm_optax._src.design import noise_gain
from autosgm_optax._src.design import of
from autosgm_optax._src.design import plot_filter
from autosgm_optax._src.design import step_response

__all__ = (
  "FilterDesign",
  "closed_loop_poles",
  "convergence_rate",
  "dc_gain",
  "deadbeat",
  "frequency_response",
  "from_nadam",
  "from_qhm",
  "group_delay",
  "impulse_response",
  "named_zero",
  "noise_gain",
  "of",
  "plot_filter",
  "step_response",
)
