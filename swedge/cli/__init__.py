"""The ``swedge`` command line: one sub-module per sub-command, registered in SUBCOMMANDS.

Each sub-module defines ``register(subparsers)`` that adds its parser and sets ``func`` (called with the parsed
args, returns an exit code). Sub-modules import torch and friends lazily inside ``func`` so ``swedge --help``
stays instant and a missing backend is a one-line message, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from swedge import omp_policy
from swedge.errors import SwedgeError

# name -> module under swedge.cli; the order is the order shown by --help.
SUBCOMMANDS = {
    "demo": "swedge.cli.demo",
    "data": "swedge.cli.data",
    "train": "swedge.cli.train",
    "eval": "swedge.cli.eval",
    "compare": "swedge.cli.compare",
    "export": "swedge.cli.export",
    "verify": "swedge.cli.verify",
    "bench": "swedge.cli.bench",
    "select": "swedge.cli.select",
}

EPILOG = """\
typical use:
  swedge demo                                 # the whole product on the embedded data (~10 min on 2 cores)
  swedge data synth --out data/synth          # embedded procedurally generated re-ID set (Market-1501 layout)
  swedge train --data data/synth --out runs/a # switchable model, all widths in one checkpoint
  swedge eval runs/a/model.safetensors --data data/synth --json runs/a/eval.json
  swedge export runs/a/model.safetensors --calib data/synth --out bundles/a   # {formats}
  swedge verify bundles/a --report reports/a  # fidelity + compatibility of every artifact; exit 0 = pass
  swedge bench bundles/a --json bench.json    # latency p50/p90 vs torch eager
  swedge select bundles/a --profiles examples/profiles.toml --out shipped   # the artifact each device class gets

`swedge COMMAND --help` explains each command. Add --debug to see tracebacks.
"""


def build_parser() -> argparse.ArgumentParser:
    from swedge.exporters.formats import FORMATS  # not at import: main() sets the OpenMP policy before numpy loads

    parser = argparse.ArgumentParser(
        prog="swedge",
        description="Train one width-switchable retrieval checkpoint whose sub-models emit compatible features, "
        "export each width to edge formats, and verify every artifact stays compatible with the server model.",
        epilog=EPILOG.format(formats="/".join(f.title for f in FORMATS.values())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--omp-wait-policy", choices=omp_policy.CHOICES, default=None,
                        help="OpenMP threads between parallel regions: sleep (passive: best when other jobs share "
                             "the CPU), spin (active), or auto (the default unless OMP_WAIT_POLICY is set: passive "
                             "when other processes are running at start, else libgomp's spin-then-sleep); see "
                             "README, 'A shared CPU'")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


# Output options of every sub-command (dest -> is a folder), checked before the command's work starts.
OUTPUT_OPTIONS = {"out": True, "report": True, "json": False, "junit": False}


def preflight(args) -> None:
    """Every output path given can be written: one line now, not a traceback after the long work."""
    from swedge.outputs import check_writable

    for dest, folder in OUTPUT_OPTIONS.items():
        if getattr(args, dest, None):
            check_writable(getattr(args, dest), f"--{dest}", folder=folder)


def main(argv: list[str] | None = None) -> int:
    from swedge import interrupts

    _apply_omp_policy(argv)  # first: building the parser imports the methods, and with them torch
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for tables that name it
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    interrupts.reset()
    say = f"swedge {args.command}:"
    try:
        preflight(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _interrupted(say)
    except SwedgeError as exc:
        if args.debug:
            raise
        print(f"{say} error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the last resort for the environment (disk full, a path that vanished): one line
        if interrupts.interrupted():
            return _interrupted(say)
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{say} error: {exc.strerror or exc}{where} (add --debug for a traceback)", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"{say} error: out of memory; use smaller inputs or a machine with more memory (add --debug for a "
              "traceback)", file=sys.stderr)
        return 2
    except Exception:  # re-raised unless it is a Ctrl-C that a backend turned into another exception
        if args.debug or not interrupts.interrupted():
            raise
        return _interrupted(say)


def _apply_omp_policy(argv: list[str] | None) -> None:
    """Set OMP_WAIT_POLICY from --omp-wait-policy (else the environment's, else auto) before torch loads; the
    full parser checks the value's spelling afterwards. Silent: the trainer's contention warning names it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--omp-wait-policy", default=None)
    known, _ = pre.parse_known_args(argv)
    omp_policy.apply(known.omp_wait_policy if known.omp_wait_policy in omp_policy.CHOICES else None)


def _interrupted(say: str) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: another Ctrl-C must not kill the exit
    print(f"{say} interrupted (Ctrl-C)", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
