"""`swedge compare`: methods x seeds on one data set -> self/cross-test table, heat-maps, paired tests."""

from __future__ import annotations

import argparse
import shlex

from swedge.cli.common import add_training_arguments, training_options

EXAMPLES = """\
examples:
  swedge compare --methods sfsc,sfsc-sum --data data/synth --seeds 2 --out cmp/a
  swedge compare --methods unified,bct-s,asymmetric-s,sfsc-sum,sfsc --data data/synth --seeds 3 --out cmp/b \\
      --epochs 10 --paired sfsc,sfsc-sum --paired sfsc,bct-s
  swedge compare --methods sfsc-sum,sfsc,sfsc-kernel=sfsc --opt sfsc-kernel:projection=kernel \\
      --data data/synth --seeds 2 --out cmp/c      # an option variant gets its own row
  swedge compare --methods sfsc-sum,sfsc --data data/synth --seeds 5 --perturb-floor 2 --out cmp/d
      # seed-level verdicts need >= 5 seeds; the floor: sfsc-sum retrained twice more at seed 0

writes OUT/runs/<label>/seed<s>/ (checkpoint, train log, eval.json), OUT/table.md, OUT/table.json and
OUT/heatmaps/<label>.png. Interrupted? Run the same command again: finished runs (those with eval.json) are
skipped. Lanes: start the same command twice (e.g. one per core, OMP_NUM_THREADS=1 each): each run trains under
its folder's lock, so the two share the runs and the last to finish writes the whole table.
Rows follow docs/design.md §4: independent, unified, bct, bct-s, asymmetric, asymmetric-s, sfsc-sum,
sfsc-projection-only, sfsc-uncertainty-only, sfsc.

Paired tests (default: sfsc vs sfsc-sum, each baseline and unified; the ladder's halves vs sfsc-sum, for the
methods that ran) compare per-query AP of two methods on the same queries, per cross-test M[w][1.0] and
self-test M[w][w]: mean difference in points, 95% bootstrap CI, sign-flip p-value; "real" if the CI excludes 0
(and p < 0.05), else "noise". With several seeds the combined line uses each query's difference averaged over
seeds; the per-seed means show whether seeds agree (the CI covers query sampling, not training noise across
seeds).

Seed-level tests (the unit is the training seed) sit beside each per-query line: the per-seed mean
difference with a t-based 95% CI over seeds and an exact sign-flip p over seeds, and a hierarchical bootstrap
over seeds then queries. Verdict: holds (the seed-level CI excludes 0 in the claimed direction and |diff| exceeds
the perturbation floor), fails (excludes 0 the other way, above the floor), else unresolved; with fewer than 5
seeds always unresolved. The floor (--perturb-floor N): the floor method retrained N more times at seed 0 with
its label smoothing moved by k x 1e-5, the spread (max - min) of each cell's mAP; printed next to every verdict.

The table then checks the seed's claims on your data (swedge/study/claims.py), at the seed level: sfsc compatible at
every width; its cross-tests beat bct-s, asymmetric-s, bct and asymmetric; its self-tests within 1 point of
unified; the default-method rule (sfsc's mean off-diagonal mAP beats sfsc-sum's); and the ablation ladder
sfsc-sum -> +projection / +uncertainty -> sfsc (one mechanism per rung). Every table names the git commit, this
command line and the data-generation seed (dataset.json).
"""


def register(sub) -> None:
    from swedge.training.config import TrainConfig  # like `swedge train`: its defaults show in --help

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
    p.add_argument("--perturb-floor", type=int, default=0, metavar="N",
                   help="retrain the floor method N more times at seed 0 with a negligible perturbation (label "
                        "smoothing + k x 1e-5) and report the metric's spread as the floor every verdict must exceed "
                        "(default 0: not measured)")
    p.add_argument("--floor-method", default=None, metavar="LABEL",
                   help="the method the floor retrains (default sfsc-sum if listed, else the first)")
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
    from swedge.study.compare import parse_methods, run_compare
    from swedge.study.table import format_markdown
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
                        resamples=args.resamples, progress=args.progress, train_missing=not args.table_only,
                        perturb_floor=args.perturb_floor, floor_method=args.floor_method,
                        command=shlex.join(["swedge", *getattr(args, "argv", [])]))
    print()
    print(format_markdown(table))
    print(f"table: {args.out}/table.md (and table.json); heat-maps: {args.out}/heatmaps/")
    return 0
