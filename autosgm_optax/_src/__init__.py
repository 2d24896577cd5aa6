"""The implementation of :mod:`autosgm_optax`; import the public names from
the package (``autosgm_optax.autosgm``, ...), not from here."""
