"""swedge.calibration: calibration sets and per-backend quantizers (issue 4)."""
