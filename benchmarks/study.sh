#!/usr/bin/env bash
# The method study of issue 3: every row of the seed's table and the SFSC ablation ladder, trained and
# evaluated on the same data, 3 seeds, with paired per-query tests and the seed's claims checked
# (swedge compare; table.md / table.json / heatmaps/ under the output folder).
#
#   benchmarks/study.sh synth     # the embedded procedural data (data/synth), 64x32 input: ~5 min a run on 2 cores
#   benchmarks/study.sh emoji     # Google vs Twitter emoji (fetched from npm once), 32x32: ~6-8 min a run
#   benchmarks/study.sh synth --table-only    # tabulate what has finished so far, train nothing
#
# 12 rows x 3 seeds = 36 runs per data set. Runs are seed-major (every method at seed 0 first), so stopping
# early leaves a fair table; running the same command again resumes, skipping finished runs. Each run keeps
# its checkpoint and train log under OUT/runs/<label>/seed<s>/. env: SEEDS (3), OUT (runs/study-<data>).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_SET=${1:?usage: benchmarks/study.sh synth|emoji [extra swedge compare options]}
shift
SWEDGE=${SWEDGE:-.venv/bin/swedge}
SEEDS=${SEEDS:-3}
OUT=${OUT:-runs/study-$DATA_SET}
METHODS=independent,unified,bct,bct-s,asymmetric,asymmetric-s,sfsc-sum,sfsc-projection-only,sfsc-uncertainty-only,sfsc
# The two best variants measured (each wins over sfsc on one data set): per-output-kernel projection, and the
# sum merge with exp evidence (both causes of sfsc's gap to sfsc-sum that the study found).
METHODS=$METHODS,sfsc-kernel=sfsc,sfsc-merge-sum-exp=sfsc
VARIANTS=(--opt sfsc-kernel:projection=kernel --opt sfsc-merge-sum-exp:merge=sum --opt sfsc-merge-sum-exp:evidence_fn=exp)
case "$DATA_SET" in
    synth)
        [ -f data/synth/dataset.json ] || "$SWEDGE" data synth --out data/synth
        DATA=data/synth; EXTRA=() ;;
    emoji)
        [ -d data/emoji/bounding_box_train ] || "$SWEDGE" data fetch emoji --out data/emoji
        # 32x32 (the images are 64x64): 1,058 steps a run, ~4x cheaper than 64x64 on a 2-core CPU.
        DATA=data/emoji; EXTRA=(--input-size 32x32) ;;
    *) echo "unknown data set '$DATA_SET': synth or emoji" >&2; exit 2 ;;
esac
exec "$SWEDGE" compare --methods "$METHODS" "${VARIANTS[@]}" --data "$DATA" \
    --seeds "$SEEDS" --out "$OUT" --no-progress "${EXTRA[@]}" "$@"
