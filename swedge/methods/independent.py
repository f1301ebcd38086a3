"""`independent`: each width a separately trained model with its own classifier and no compatibility
objective (the self-test reference; its cross-tests show what incompatible features look like)."""

from __future__ import annotations

from swedge.methods import METHODS
from swedge.methods.sfsc_sum import SfscSum


@METHODS.register("independent")
class Independent(SfscSum):
    def model_extra(self) -> dict:
        return {"members": "per-width"}
