"""`unified`: one switchable net, summed per-width CE (+ triplet), a private classifier per width and no
compatibility regulariser: the seed's "Unified Model" (it reports only its self-tests)."""

from __future__ import annotations

from swedge.methods import METHODS
from swedge.methods.sfsc_sum import SfscSum


@METHODS.register("unified")
class Unified(SfscSum):
    def model_extra(self) -> dict:
        return {"classifier": "per-width"}
