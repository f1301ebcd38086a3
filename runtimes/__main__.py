"""On-device entry points (numpy + one runtime, no torch): ``python -m swedge.runtimes verify|bench BUNDLE``."""

from __future__ import annotations

import argparse
import sys

from swedge.errors import SwedgeError
from swedge.runtimes import bench_cli, verify_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swedge.runtimes",
                                     description="Verify or benchmark a swedge bundle with the runtimes installed "
                                     "here (no torch needed).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("verify", help="check every artifact's features against the bundle's references",
                       epilog=verify_cli.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify_cli.add_arguments(p)
    p.set_defaults(func=verify_cli.run)
    p = sub.add_parser("bench", help="latency p50 / p90 and peak memory per artifact; JSON for `swedge select`",
                       epilog=bench_cli.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_cli.add_arguments(p)
    p.set_defaults(func=bench_cli.run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SwedgeError as exc:
        print(f"{args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C on the device: one line, the shell's code for SIGINT
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
