#!/bin/bash
# Rebuilds table.md / table.json / heatmaps of this study from the finished runs under runs/study-synth
# (train nothing: --table-only), with the paired tests every claim and variant needs. Copy the results here
# afterwards. See README.md next to this file for the commands that trained the runs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
P=""
for pr in sfsc,sfsc-sum sfsc,independent sfsc,bct-s sfsc,asymmetric-s sfsc,bct sfsc,asymmetric sfsc,unified sfsc-projection-only,sfsc-sum sfsc-uncertainty-only,sfsc-sum sfsc-kernel,sfsc-sum mean-merge-only,sfsc-sum sfsc-merge-sum,sfsc sfsc-merge-sum,sfsc-sum sfsc-exp,sfsc sfsc-kernel,sfsc sfsc-tensor,sfsc sfsc-cosine,sfsc sfsc-relu,sfsc sfsc-no-kl,sfsc sfsc-merge-sum-exp,sfsc sfsc-merge-sum-exp,sfsc-sum; do P="$P --paired $pr"; done
.venv/bin/swedge compare --methods independent,unified,bct,bct-s,asymmetric,asymmetric-s,sfsc-sum,sfsc-projection-only,sfsc-uncertainty-only,sfsc,sfsc-kernel=sfsc,mean-merge-only=sfsc,sfsc-merge-sum=sfsc,sfsc-exp=sfsc,sfsc-tensor=sfsc,sfsc-cosine=sfsc,sfsc-relu=sfsc,sfsc-no-kl=sfsc,sfsc-merge-sum-exp=sfsc \
  --opt sfsc-kernel:projection=kernel --opt mean-merge-only:uncertainty=false --opt mean-merge-only:projection=none \
  --opt sfsc-merge-sum:merge=sum --opt sfsc-exp:evidence_fn=exp --opt sfsc-tensor:projection=tensor \
  --opt sfsc-cosine:evidential_logits=cosine --opt sfsc-relu:evidence_fn=relu --opt sfsc-no-kl:kl_weight=0 \
  --opt sfsc-merge-sum-exp:merge=sum --opt sfsc-merge-sum-exp:evidence_fn=exp --data data/synth --seeds 3 --out runs/study-synth --table-only $P "$@"
