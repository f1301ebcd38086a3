#!/bin/bash
# Rebuilds table.md / table.json / heatmaps of the emoji study from the finished runs under runs/study-emoji
# (train nothing: --table-only), with the paired tests every claim needs. Copy the results here afterwards.
# See README.md next to this file for the commands that trained the runs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
P=""
for pr in sfsc,sfsc-sum sfsc,independent sfsc,bct-s sfsc,asymmetric-s sfsc,bct sfsc,asymmetric sfsc,unified sfsc-projection-only,sfsc-sum sfsc-uncertainty-only,sfsc-sum sfsc-kernel,sfsc sfsc-kernel,sfsc-sum sfsc-merge-sum-exp,sfsc sfsc-merge-sum-exp,sfsc-sum; do P="$P --paired $pr"; done
.venv/bin/swedge compare --methods independent,unified,bct,bct-s,asymmetric,asymmetric-s,sfsc-sum,sfsc-projection-only,sfsc-uncertainty-only,sfsc,sfsc-kernel=sfsc,sfsc-merge-sum-exp=sfsc \
  --opt sfsc-kernel:projection=kernel --opt sfsc-merge-sum-exp:merge=sum --opt sfsc-merge-sum-exp:evidence_fn=exp --data data/emoji --input-size 32x32 --seeds 3 --out runs/study-emoji --table-only $P "$@"
