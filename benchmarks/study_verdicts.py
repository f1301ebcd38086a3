"""The README's verdict table: the seed's claims, judged afresh (swedge.study.claims) on each committed study table.

    .venv/bin/python benchmarks/study_verdicts.py                 # print the table
    .venv/bin/python benchmarks/study_verdicts.py --write README.md   # replace the block between the markers
    .venv/bin/python benchmarks/study_verdicts.py --check README.md   # exit 1 if the README's block is stale

Each cell: the verdict (holds / fails / unresolved, seed-level: t-CI over seeds and the perturbation floor), the
number of seeds it rests on, and the mean differences it judged (mAP points, by query width where it has widths).
Nothing here is typed by hand: a new table.json under STUDIES changes the README only through --write, and the
test suite runs --check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: the package beside it, installed or not

from swedge.study.claims import check_claims  # noqa: E402

# (column title, table.json): the studies run under issue 18's rules (benchmarks/study/README.md).
STUDIES = (
    ("embedded data, ResNet-18 from scratch", "benchmarks/study/synth-issue18/table.json"),
    ("embedded data, MobileNetV2 from ImageNet", "benchmarks/study/synth-mnv2-issue18/table.json"),
    ("emoji data, ResNet-18 from scratch", "benchmarks/study/emoji-issue18/table.json"),
)
BEGIN, END = "<!-- study verdicts: begin (benchmarks/study_verdicts.py --write README.md) -->", \
    "<!-- study verdicts: end -->"
SHORT = {  # the claims' own texts are long; the table's first column
    "is compatible": "compatible (cross > self at every w < 1) in every seed; cross − self",
    "beat bct-s": "cross-tests beat `bct-s`",
    "beat asymmetric-s": "cross-tests beat `asymmetric-s`",
    "beat bct ": "cross-tests beat `bct`",
    "beat asymmetric ": "cross-tests beat `asymmetric`",
    "within 1 point of unified": "self-tests within 1 point of `unified`",
    "default-method rule": "mean off-diagonal beats `sfsc-sum` (the default-method rule)",
}


def _short(claim: str) -> str:
    return next((v for k, v in SHORT.items() if k in claim), claim)


def _cell(c: dict) -> str:
    if c["status"] == "not run":
        return "not run"
    values = " / ".join(f"{v:+.1f}".replace("-", "−") for v in c["values"])
    held = f" (met in {c['holds_in']} of {c['seeds']} seeds)" if "holds_in" in c else f" ({c['seeds']} seeds)"
    floor = f" (floor {c['floor']:.2f})" if c.get("floor") is not None else ""
    return f"**{c['status']}**{held}: {values}{floor}"


def verdict_table(studies=STUDIES, root: Path = ROOT) -> str:
    present = [(title, json.loads((root / path).read_text())) for title, path in studies if (root / path).is_file()]
    if not present:
        raise SystemExit("no study table found: run benchmarks/study.sh first")
    judged = [(title, check_claims(table)) for title, table in present]
    lines = [BEGIN, "", "| the seed's claim for `sfsc` | " + " | ".join(t for t, _ in judged) + " |",
             "|---" * (len(judged) + 1) + "|"]
    for i, claim in enumerate(judged[0][1]):
        lines.append(f"| {_short(claim['claim'])} | " + " | ".join(_cell(c[i]) for _, c in judged) + " |")
    return "\n".join(lines + ["", END])


def _replace_block(text: str, block: str, path: Path) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{path}: needs exactly one line '{BEGIN}' and one '{END}'")
    head, rest = text.split(BEGIN)
    return head + block + rest.split(END, 1)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", type=Path, metavar="README", help="replace the marked block in README")
    mode.add_argument("--check", type=Path, metavar="README", help="exit 1 if README's marked block is stale")
    args = ap.parse_args(argv)
    block = verdict_table()
    if args.write is None and args.check is None:
        print(block)
        return 0
    path = args.write or args.check
    text = path.read_text()
    new = _replace_block(text, block, path)
    if args.check:
        if new != text:
            print(f"{path}: the study verdict table is stale: run benchmarks/study_verdicts.py --write {path}",
                  file=sys.stderr)
            return 1
        print(f"{path}: the study verdict table is current")
        return 0
    path.write_text(new)
    print(f"{path}: study verdict table written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
