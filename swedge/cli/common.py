"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse


def parse_widths(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated numbers like 0.25,0.5,1.0, got '{text}'")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        assert h > 0 and w > 0
        return h, w
    except Exception:
        raise argparse.ArgumentTypeError(f"size must be HxW like 128x64, got '{text}'") from None
