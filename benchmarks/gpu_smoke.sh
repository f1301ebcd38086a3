#!/usr/bin/env bash
# GPU smoke run, sized for a 15-minute session on one CUDA machine (about 3-5 minutes of work on an H100).
#
#   1. a Python with CUDA torch that imports swedge   2. synthetic data at 256x128
#   3. SFSC, ResNet-50 at 256x128, all four widths, bf16 autocast, channels-last, STEPS steps on cuda:
#      images/s and peak GPU memory (torch.cuda.max_memory_allocated, logged by the trainer)
#   4. the same, briefly, under torchrun on every GPU of the node (with one GPU: a single process, no DDP)
#   5. figures -> $OUT/gpu_smoke.json (or $WORK/gpu_smoke.json when OUT is unset)
#
# Usage: benchmarks/gpu_smoke.sh        env: PY (python to use), STEPS (300), WORK (/tmp/swedge_gpu_smoke),
#                                            WORKERS (data-loading processes per GPU, 12)
# Works offline: it installs nothing when a python with CUDA torch is at hand (the source tree goes on
# PYTHONPATH); only without one does it create .venv and pip-install swedge[torch].
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/swedge_gpu_smoke}
STEPS=${STEPS:-300}
WORKERS=${WORKERS:-12}
RESULT=${OUT:-$WORK}/gpu_smoke.json
mkdir -p "$WORK" "$(dirname "$RESULT")"
export PYTHONUNBUFFERED=1
stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }
has_cuda_torch() { "$1" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; }

stage "1/5 python with CUDA torch"
if [ -z "${PY:-}" ]; then
    for candidate in .venv/bin/python python3; do
        if has_cuda_torch "$candidate"; then PY=$candidate; break; fi
    done
fi
if [ -z "${PY:-}" ]; then
    echo "no python with CUDA torch found: creating .venv (needs network)"
    python3 -m venv .venv
    .venv/bin/pip install -q -e '.[torch]'
    PY=.venv/bin/python
fi
has_cuda_torch "$PY" || { echo "ERROR: $PY has no CUDA-enabled torch (or no GPU is visible)"; exit 1; }
"$PY" -c "import swedge" 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import swedge, torch; print('python', __import__('sys').executable, '| torch', torch.__version__,
'| swedge', swedge.__version__, '|', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0))"
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "${NGPU:-0}" -ge 1 ] || NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
echo "GPUs on this node: $NGPU"

stage "2/5 synthetic data at 256x128"
DATA=$WORK/data256
if [ ! -f "$DATA/dataset.json" ]; then
    # ~16,000 train images: about 190 steps of 64 images per epoch, so few epoch-end checkpoint writes.
    "$PY" -m swedge data synth --out "$DATA" --size 256x128 --train-ids 1500 --test-ids 20 --quiet --force
fi

TRAIN=(train --data "$DATA" --method sfsc --arch resnet50 --input-size 256x128 --ids-per-batch 16
       --images-per-id 4 --epochs 10 --device cuda --amp bf16 --channels-last --workers "$WORKERS" --log-every 10
       --quiet --force)

stage "3/5 SFSC, ResNet-50 256x128, bf16, channels-last: $STEPS steps on one GPU"
"$PY" -m swedge "${TRAIN[@]}" --out "$WORK/one" --max-steps "$STEPS" 2>&1 | tee "$WORK/one.txt"

stage "4/5 torchrun --nproc_per_node=$NGPU: 60 steps"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m swedge "${TRAIN[@]}" \
    --out "$WORK/ddp" --max-steps 60 2>&1 | tee "$WORK/ddp.txt"

stage "5/5 figures -> $RESULT"
"$PY" - "$WORK" "$NGPU" "$RESULT" <<'EOF'
import json, statistics, sys
from pathlib import Path

import torch

work, ngpu, result = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])


def figures(run: Path, processes: int) -> dict:
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    batch = 16 * 4 * processes  # global batch: P x K per process
    # Throughput per 10-step window after a 20-step warm-up (cudnn autotuning, workers starting); the median
    # leaves out the window that holds the epoch-end checkpoint write.
    windows = [(b["step"] - a["step"]) * batch / (b["elapsed_s"] - a["elapsed_s"])
               for a, b in zip(log, log[1:]) if a["step"] >= 20 and b["elapsed_s"] > a["elapsed_s"]]
    first = next((r for r in log if r["step"] >= 20), log[0])
    overall = (log[-1]["step"] - first["step"]) * batch / max(1e-9, log[-1]["elapsed_s"] - first["elapsed_s"])
    return {"processes": processes, "steps": log[-1]["step"], "global_batch": batch,
            "images_per_s_median_window": round(statistics.median(windows), 1) if windows else None,
            "images_per_s_after_warmup": round(overall, 1),
            "peak_gpu_mem_gib_rank0": max(r.get("peak_mem_gib", 0) for r in log),
            "final_losses": {k: round(v, 4) for k, v in log[-1].items() if k.startswith("loss@")},
            "conflict_share_last": log[-1].get("conflict_share")}


out = {"device": torch.cuda.get_device_name(0), "gpus": ngpu, "torch": torch.__version__,
       "setup": "sfsc, resnet50 256x128, widths 0.25/0.5/0.75/1.0, P16 x K4 per process, bf16, channels-last; "
                "images/s counts each image once although all four widths train on it",
       "single_gpu": figures(work / "one", 1), "torchrun": figures(work / "ddp", ngpu)}
result.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
EOF
echo "done: $RESULT"
