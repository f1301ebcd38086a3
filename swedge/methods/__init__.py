"""Training methods, one registry. A method turns one batch into gradients on the model's parameters.

Each entry is a ``Method`` subclass with an ``Options`` dataclass (its knobs, listed by ``swedge train --help``
and recorded in the checkpoint). The trainer owns everything else (data, optimiser, schedule, logging,
checkpoints), so adding a method is one new file plus its ``@METHODS.register`` line.
"""

from swedge.registry import Registry

METHODS: Registry = Registry("method")

from swedge.methods import sfsc_sum  # noqa: E402,F401  (registers)
