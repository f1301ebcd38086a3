"""swedge.runtimes: numpy-in / numpy-out runners for exported artifacts (no torch import here).

The runners and the verification harness arrive with the harness work (issue 5); this package already exists
so that the torch-free import rule can be tested from the start.
"""
