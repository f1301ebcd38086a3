"""swedge.exporters: one module per export format, one registry (issue 4)."""
