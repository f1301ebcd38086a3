"""On-device entry point (numpy + one runtime, no torch): ``python -m swedge.runtimes verify BUNDLE``."""

from __future__ import annotations

import argparse
import sys

from swedge.errors import SwedgeError
from swedge.runtimes import verify_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swedge.runtimes",
                                     description="Verify a swedge bundle with the runtimes installed here (no torch needed).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("verify", help="check every artifact's features against the bundle's references",
                       epilog=verify_cli.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify_cli.add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return verify_cli.run(args)
    except SwedgeError as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C on the device: one line, the shell's code for SIGINT
        print("verify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
