"""`swedge verify`: are the bundle's device models still compatible with the server model?"""

from __future__ import annotations

import argparse

from swedge.runtimes import verify_cli


def register(sub) -> None:
    p = sub.add_parser("verify", help="run every artifact of a bundle on its runtime and check fidelity and "
                       "compatibility with the server model (CI gate)", epilog=verify_cli.EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Verify a bundle written by `swedge export`: per-artifact fidelity, retrieval "
                       "compatibility with the server gallery, the full compatibility matrix; exit 0 only if all pass.")
    verify_cli.add_arguments(p)
    p.set_defaults(func=verify_cli.run)
