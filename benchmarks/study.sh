#!/usr/bin/env bash
# The method study (issues 3 and 18): every row of the seed's table and the SFSC ablation ladder (one mechanism
# per rung: sfsc-sum -> sfsc-projection-only / sfsc-uncertainty-only -> sfsc), trained and evaluated on the same
# data, SEEDS seeds (default 5: seed-level verdicts need >= 5), with the perturbation floor (sfsc-sum retrained
# FLOOR more times at seed 0 with a negligible perturbation), paired per-query and seed-level tests, and the
# seed's claims checked (swedge compare; table.md / table.json / heatmaps/ under the output folder).
#
#   benchmarks/study.sh synth     # the embedded procedural data (data/synth), 64x32 input: ~5 min a run on 2 cores
#   benchmarks/study.sh emoji     # Google vs Twitter emoji (fetched from npm once), 32x32: ~6-8 min a run
#   RECIPE=small benchmarks/study.sh synth   # cheaper: a smaller synthetic set (data/synth-small), 3 epochs
#   benchmarks/study.sh synth --table-only    # tabulate what has finished so far, train nothing
#   (the same command started twice at once: two lanes, one per core, share the runs; each trains under
#    its run folder's lock and skips the other's; the last one to finish writes the whole table)
#
# Default recipe: 10 rows x 5 seeds + FLOOR runs per data set. Runs are seed-major (every method at seed 0 first),
# so stopping early leaves a fair table; running the same command again resumes, skipping finished runs. Each run
# keeps its checkpoint and train log under OUT/runs/<label>/seed<s>/ (floor runs under OUT/floor/).
# env: SEEDS (5), FLOOR (2), RECIPE (default | small), OUT (runs/study-<data>[-small]).
# The rule that picks the default method is written in benchmarks/study/README.md BEFORE any run.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_SET=${1:?usage: [RECIPE=small] benchmarks/study.sh synth|emoji [extra swedge compare options]}
shift
SWEDGE=${SWEDGE:-.venv/bin/swedge}
SEEDS=${SEEDS:-5}
FLOOR=${FLOOR:-2}
RECIPE=${RECIPE:-default}
METHODS=independent,unified,bct,bct-s,asymmetric,asymmetric-s,sfsc-sum,sfsc-projection-only,sfsc-uncertainty-only,sfsc
case "$RECIPE" in
    default) SUFFIX=""; RECIPE_ARGS=() ;;
    # ~4x cheaper on a 2-core CPU: 3 epochs, and (synth) 60 training ids at 64x32
    small) SUFFIX="-small"; RECIPE_ARGS=(--epochs 3) ;;
    *) echo "unknown RECIPE '$RECIPE': default or small" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/study-$DATA_SET$SUFFIX}
case "$DATA_SET" in
    synth)
        if [ "$RECIPE" = small ]; then
            [ -f data/synth-small/dataset.json ] || "$SWEDGE" data synth --out data/synth-small --train-ids 60 \
                --test-ids 40 --size 128x64
            DATA=data/synth-small
        else
            [ -f data/synth/dataset.json ] || "$SWEDGE" data synth --out data/synth
            DATA=data/synth
        fi
        EXTRA=() ;;
    emoji)
        [ -d data/emoji/bounding_box_train ] || "$SWEDGE" data fetch emoji --out data/emoji
        # 32x32 (the images are 64x64): 1,058 steps a run, ~4x cheaper than 64x64 on a 2-core CPU.
        DATA=data/emoji; EXTRA=(--input-size 32x32) ;;
    *) echo "unknown data set '$DATA_SET': synth or emoji" >&2; exit 2 ;;
esac
exec "$SWEDGE" compare --methods "$METHODS" --data "$DATA" --seeds "$SEEDS" --perturb-floor "$FLOOR" \
    --floor-method sfsc-sum --out "$OUT" --no-progress "${EXTRA[@]}" "${RECIPE_ARGS[@]}" "$@"
