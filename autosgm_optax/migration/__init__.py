r"""The original PyTorch AutoSGM's configuration tuples, as ``autosgm``.

The original ``AutoSGM(params, lr_cfg=..., beta_cfg=..., rc_cfg=..,
wd_cfg=..., eps_cfg=...)`` is configured with positional tuples.
:func:`torch_config_kwargs` reads them as the original code reads them (where
the original README's labels disagree with its code, the code decides) and
returns the keyword arguments of :func:`autosgm_optax.autosgm`;
:func:`from_torch_config` builds the optimizer from them.

The mapping (``c_rho = (1 - beta) / (1 - gamma)``):

=========================================  ====================================
original field                              ``autosgm`` keyword
=========================================  ====================================
``lr_cfg[0]`` aoptlr True / False           ``denominator=True`` / ``False``
                                            (False: unity numerator whatever
                                            num_lrc says)
``lr_cfg[1]`` lr_init                       ``learning_rate`` (mu)
``lr_cfg[2]`` num_lrc 0, 1, 2, 3, 4         ``numerator="unity"``,
                                            ``"correlation"``,
                                            ``"robust_correlation"``,
                                            ``"moment"``, ``"unity"``
``beta_cfg[0]`` beta_n                      ``numerator_beta``
``beta_cfg[1]`` beta_a                      ``moment_beta``
``beta_cfg[2]`` beta, ``[3]`` gamma         ``beta``, ``gamma``
``beta_cfg[4]`` eta_i                       ``eta=eta_i / (1 - gamma)`` when
                                            ``eta_i > 0``, else None (the
                                            default ``(1 - beta)/(1 - gamma)``)
``beta_cfg[5]`` debias                      ``debias`` (the filter's only)
``wd_cfg[0]`` rho (wd_cte)                  ``weight_decay``
``wd_cfg[1]`` lvl (wd_lvl) 0 / 1            ``decay="coupled"`` /
                                            ``decay="decoupled",
                                            decay_factor=c_rho``
``eps_cfg[0]`` eps                          ``eps`` (outside the square root)
``eps_cfg[1]`` repeat_eps                   ignored
``rc_cfg``                                  ``window=window_schedule(...)``,
                                            below
=========================================  ====================================

The window ``rc_cfg = (rcm, inseq, x, n, m, tau, spe, cfact, e)`` becomes
``window_schedule(length, shape, <param>=n, floor=x, full=(m == 0),
flat_top=e, stairs=..., restarts=True, steps_per_epoch=..., kronecker=(inseq
== 1))`` (no window for ``rcm = 0``): ``rcm`` 1 ``"raised_cosine"``
(``order=n``), 2 ``"polynomial"`` (``order=n``), 3 ``"beta_exponential"``
(``base=n``), 4 ``"simple_polynomial"`` (``order=n``), 5 ``"sigmoid"``
(``rate=n``), 6 ``"late_sigmoid"`` (``rate=n``). The frame, restarted when
it ends as in the original (warm restarts): ``cfact = 1``: ``tau * spe``
iterations; ``cfact = 2``: ``spe`` iterations; ``cfact = 0``: ``tau`` epochs
of ``spe`` iterations (``steps_per_epoch=spe``, F constant within an
epoch); ``cfact >= 3``: ``tau * spe`` iterations holding ``cfact``
sub-decays (``stairs=cfact``).

The other numerator options keep ``autosgm``'s defaults, which are the
original's: per-leaf ("layer-aware") averaging, smoothing pole 0.1, Huber
``k = 4`` with ``E|p|`` on the moment pole. Options the original takes
outside the tuples: ``maximize`` is ``autosgm``'s keyword of that name
(``autosgm(**torch_config_kwargs(...), maximize=True)``); the debug history
(``dbg``) has no counterpart here. The 2-D matrix variant ``mix_cfg = (mix,
avg, lr0, pole, zero)`` is read by :func:`from_torch_config`: with ``mix``
the original's matrix leaves (rank >= 2 taken as ``(shape[0], rest)``,
``4 <= min dim``, ``max dim <= 2048``) step along the polar factor of their
own filter's output (pole ``pole``, zero ``zero``, gain 1, no debias) by the
original's Lakic iteration (``matrix_oracle("lakic")``), times the scalar
numerator ``max(min(||W V^T||_F, ||W W^T||_F, 1), eps)`` for ``num_lrc`` 1
and 2, with learning rate ``lr0``, in an ``optax.partition`` beside
``autosgm(...)``. Not copied from the original's matrix path: its crash on
leaves of rank 0 and >= 3, its reshaping of tall matrices (they are
transposed), and ``avg``'s two EMAs sharing one buffer (``avg=True`` is
refused).

The translation reproduces the original's arithmetic wherever the original
has no defect. Deliberate differences (docs/algorithm.md, section 10):

- **Exact debias and first-step gain.** The filter is debiased by its exact
  unit-step response ``s(t)``; the original uses gain ``1 - beta`` (not
  ``(1 - beta)/(1 - gamma)``) at ``t = 1`` and divides by ``1 - beta^t`` for
  every gamma (at ``t = 2`` a 1.6x overshoot at ``gamma = 0.5528``; without
  debias its first step is ``1 - gamma`` too small).
- **eps outside the square root.** ``d = sqrt(EMA(g^2) / (1 - beta_a^t)) +
  eps``; the original averages ``(g + eps)^2``: a relative difference of
  order ``eps / |g|``.
- **repeat_eps is ignored,** as the current original code ignores it (its
  README's older meaning, ``eps_root = eps``, is ``autosgm``'s ``eps_root``).
- **A separate, always-on denominator debias.** ``debias`` switches the
  filter's only; the original's one flag switches both, and with debias off
  its filter gain leaks into the moment's EMA.
- **The numerator without the decoupled-decay term:** it sees ``vbar``, the
  original the decayed direction (about 1e-5 relative in 300 steps).
- **mu applied last,** once, as in Optax; the original folds ``lr_init``
  into its numerators (the same numbers for a constant mu).
- **The staircase for every shape** (``cfact >= 3``); the original's rcm 2
  ignores the sub-decays and its rcm 5 sums ``cfact`` sigmoids.
- **Working Kronecker ordering** (``inseq = 1``, half windows without a flat
  top); the original builds it but never uses it.
- **The late sigmoid normalised** to run from 1 to the floor; the
  original's rcm 6 uses the centred sigmoid's bounds (from 1.058 to 0.311 at
  ``n = 4``).
- **Epoch windows never go negative.** The original counts epochs from
  ``tau`` instead of ``spe`` and restarts an epoch frame at the first
  iteration of its last epoch, after which F is about -0.9 (gradient ascent).
- **No weight copy.** The original keeps a private copy of the weights with
  entries ``|w| < eps`` bumped by ``eps`` once (zero biases become eps); here
  the numerator's estimators use ``w + eps`` for such entries on the fly and
  the parameters are never altered, so zero-initialised leaves still train.
- **A step counter that does not stall at 2^24** (int32, saturating, as
  Optax's; the original's float32 counter stops there), and state in the
  parameters' precision (at least float32).
"""

from autosgm_optax.migration._torch import from_torch_config
from autosgm_optax.migration._torch import torch_config_kwargs

__all__ = ("from_torch_config", "torch_config_kwargs")
