"""`swedge compare`: methods x seeds on one data set -> self/cross-test table, heat-maps, paired tests."""

from __future__ import annotations

import argparse

from swedge.cli.common import add_training_arguments, training_options

EXAMPLES = """\
examples:
  swedge compare --methods sfsc,sfsc-sum --data data/synth --seeds 2 --out cmp/a
  swedge compare --methods unified,bct-s,asymmetric-s,sfsc-sum,sfsc --data data/synth --seeds 3 --out cmp/b \\
      --epochs 10 --paired sfsc,sfsc-sum --paired sfsc,bct-s
  swedge compare --methods sfsc-sum,sfsc,sfsc-kernel=sfsc --opt sfsc-kernel:projection=kernel \\
      --data data/synth --seeds 2 --out cmp/c      # an option variant gets its own row

writes OUT/runs/<label>/seed<s>/ (checkpoint, train log, eval.json), OUT/table.md, OUT/table.json and
OUT/heatmaps/<label>.png. Interrupted? Run the same command again: finished runs (those with eval.json) are
skipped. Rows follow DESIGN §4: independent, unified, bct, bct-s, asymmetric, asymmetric-s, sfsc-sum,
sfsc-projection-only, sfsc-uncertainty-only, sfsc.

Paired tests (default: sfsc vs sfsc-sum, each baseline and unified; the ladder's halves vs sfsc-sum, for the
methods that ran) compare per-query AP of two methods on the same queries, per cross-test M[w][1.0] and
self-test M[w][w]: mean difference in points, 95% bootstrap CI, sign-flip p-value; "real" if the CI excludes 0
(and p < 0.05), else "noise". With several seeds the combined line uses each query's difference averaged over
seeds; the per-seed means show whether seeds agree (the CI covers query sampling, not training noise across
seeds).

The table then checks the seed's claims on your data (swedge/claims.py): sfsc compatible at every width;
its cross-tests beat bct-s, asymmetric-s, bct and asymmetric (paired test, ties do not count); its self-tests
within 1 point of unified; and the ablation ladder sfsc-sum -> +projection -> +uncertainty -> sfsc.
"""


def register(sub) -> None:
    from swedge.train_config import TrainConfig  # like `swedge train`: its defaults show in --help

    d = TrainConfig(data="", out="")
    p = sub.add_parser("compare", help="train methods x seeds and tabulate self/cross-tests with paired tests",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train every method for every seed on one data set, evaluate the cross-model "
                       "matrix of each run, and write a seed-style comparison table.")
    p.add_argument("--methods", required=True, help="comma-separated methods, LABEL=METHOD for a variant")
    p.add_argument("--data", required=True, help="Market-1501-style folder (see `swedge data synth`)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, run as 0..N-1 (default %(default)s)")
    p.add_argument("--out", required=True, help="comparison folder (re-use it to resume)")
    p.add_argument("--paired", action="append", default=None, metavar="A,B",
                   help="paired per-query test of A against B (repeatable; replaces the default pairs)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation resamples (%(default)s)")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: tabulate the finished runs (e.g. while another compare is still training, "
                        "or after stopping one early) and list the missing ones")
    p.add_argument("--opt", action="append", default=[], metavar="LABEL:KEY=VALUE",
                   help="a method option for one row, e.g. sfsc:kl_weight=0.1 (repeatable)")
    g = p.add_argument_group("training (shared by every run; see `swedge train --help`)")
    add_training_arguments(g, d)
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no per-step progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from swedge.compare import parse_methods, run_compare
    from swedge.compare_table import format_markdown
    from swedge.errors import SwedgeError

    if args.seeds < 1:
        raise SwedgeError("--seeds must be >= 1")
    specs = parse_methods(args.methods, args.opt)
    train = training_options(args)
    pairs = None
    if args.paired:
        pairs = []
        for text in args.paired:
            parts = [t.strip() for t in text.split(",")]
            if len(parts) != 2 or not all(parts):
                raise SwedgeError(f"--paired needs two labels A,B, got '{text}'")
            pairs.append(tuple(parts))
    table = run_compare(args.data, args.out, specs, list(range(args.seeds)), train, pairs=pairs,
                        resamples=args.resamples, progress=args.progress, train_missing=not args.table_only)
    print()
    print(format_markdown(table))
    print(f"table: {args.out}/table.md (and table.json); heat-maps: {args.out}/heatmaps/")
    return 0
