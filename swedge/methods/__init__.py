"""Training methods, one registry. A method turns one batch into gradients on the model's parameters.

Each entry is a ``Method`` subclass with an ``Options`` dataclass (its knobs, listed by ``swedge train --help``
and recorded in the checkpoint). The trainer owns everything else (data, optimiser, schedule, logging,
checkpoints), so adding a method is one new file plus its ``@METHODS.register`` line.
"""

from swedge.registry import Registry

METHODS: Registry = Registry("method")

# Importing registers; this order is the order `swedge train --help` lists them.
from swedge.methods import (asymmetric, bct, independent, sfsc, sfsc_sum, unified)  # noqa: E402,F401
