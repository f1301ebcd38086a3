#!/usr/bin/env bash
# GPU smoke run, sized for a 15-minute session on one CUDA machine (about 5 minutes of work on an H100).
#
#   1. a Python with CUDA torch that imports swedge     2. synthetic data at 256x128 (IDS train identities)
#   3. SFSC, ResNet-50 at 256x128, all four widths, bf16 autocast, channels-last, STEPS steps:
#      images/s and peak GPU memory (torch.cuda.max_memory_allocated, logged by the trainer)
#   4. step cost on the GPU, side by side in this run: a full-width-only step (sfsc-sum --widths 1.0) and
#      sfsc-sum's four widths, BASE_STEPS steps each, against 3.'s SFSC step
#   5. fp16 autocast with the gradient scaler (SFSC projects the scaled gradients), FP16_STEPS steps
#   6. torchrun, DDP_STEPS steps: one process per GPU with NCCL; on a one-GPU node two processes share the GPU
#      through gloo (swedge/distributed.py), which runs the DDP code path but says nothing about speed
#   7. `swedge eval` of 3.'s checkpoint on the GPU;  figures -> $OUT/gpu_smoke.json (else $WORK/gpu_smoke.json)
#
# Usage: benchmarks/gpu_smoke.sh
# env: PY (python to use), WORK (/tmp/swedge_gpu_smoke), STEPS (300), BASE_STEPS (100), FP16_STEPS (60),
#      DDP_STEPS (60), IDS (1000), P (16 ids per batch, K=4), WORKERS (data-loading processes per GPU, 12),
#      DEVICE (cuda; DEVICE=cpu with small counts rehearses the script on a machine without a GPU)
# Works offline: with a python that has torch, this checkout is built into $WORK/site (no dependencies, no
# network) unless swedge is installed already; only without such a python does it create .venv and pip-install swedge[torch].
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/swedge_gpu_smoke}
STEPS=${STEPS:-300}
BASE_STEPS=${BASE_STEPS:-100}
FP16_STEPS=${FP16_STEPS:-60}
DDP_STEPS=${DDP_STEPS:-60}
IDS=${IDS:-1000}
P=${P:-16}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-cuda}
RESULT=${OUT:-$WORK}/gpu_smoke.json
mkdir -p "$WORK" "$(dirname "$RESULT")"
WORK=$(realpath "$WORK") RESULT=$(realpath "$RESULT")
export PYTHONUNBUFFERED=1
stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }
usable() {  # a python whose torch can run on $DEVICE
    "$1" -c "import sys, torch; sys.exit('$DEVICE' == 'cuda' and not torch.cuda.is_available())" 2>/dev/null
}

stage "1/7 python with torch for $DEVICE"
if [ -z "${PY:-}" ]; then
    for candidate in .venv/bin/python python3; do
        if usable "$candidate"; then PY=$candidate; break; fi
    done
fi
if [ -z "${PY:-}" ]; then
    echo "no python with CUDA torch found: creating .venv (needs network)"
    python3 -m venv .venv
    .venv/bin/pip install -q -e '.[torch]'
    PY=.venv/bin/python
fi
usable "$PY" || { echo "ERROR: $PY has no CUDA-enabled torch (or no GPU is visible)"; exit 1; }
case $PY in /*) ;; */*) PY=$PWD/$PY ;; esac
cd "$WORK"  # from here on: outside the source tree, whose swedge/ would shadow the installed package
if ! "$PY" -c "import swedge.runtimes" 2>/dev/null; then
    # The source tree alone is not importable (swedge.runtimes etc. live in top-level folders, mapped by
    # pyproject.toml): build this checkout into a scratch folder, offline, without its dependencies.
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target "$WORK/site" --upgrade "$OLDPWD"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import swedge, sys, torch; print('python', sys.executable, '| torch', torch.__version__,
'| swedge', swedge.__version__, '|', torch.cuda.device_count(), 'x',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
NGPU=0
if [ "$DEVICE" = cuda ]; then NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())"); fi
NPROC=$(( NGPU >= 2 ? NGPU : 2 ))
echo "GPUs on this node: $NGPU; torchrun processes: $NPROC"

stage "2/7 synthetic data at 256x128, $IDS train identities"
DATA=$WORK/data256-$IDS
if [ ! -f "$DATA/dataset.json" ]; then
    "$PY" -m swedge data synth --out "$DATA" --size 256x128 --train-ids "$IDS" --test-ids 20 --quiet --force
fi

TRAIN=(train --data "$DATA" --arch resnet50 --input-size 256x128 --ids-per-batch "$P" --images-per-id 4
       --epochs 10 --device "$DEVICE" --channels-last --log-every 10 --quiet --force)
run() {  # NAME STEPS ARGS...: one training run, its output kept in $WORK/NAME.txt
    local name=$1 steps=$2; shift 2
    "$PY" -m swedge "${TRAIN[@]}" --workers "$WORKERS" --out "$WORK/$name" --max-steps "$steps" "$@" 2>&1 \
        | tee "$WORK/$name.txt"
}

stage "3/7 SFSC, ResNet-50 256x128, bf16, channels-last: $STEPS steps"
run sfsc "$STEPS" --method sfsc --amp bf16

stage "4/7 step cost: full width only, then sfsc-sum's four widths, $BASE_STEPS steps each"
run full "$BASE_STEPS" --method sfsc-sum --widths 1.0 --amp bf16
run sfsc-sum "$BASE_STEPS" --method sfsc-sum --amp bf16

stage "5/7 SFSC with fp16 autocast and the gradient scaler: $FP16_STEPS steps"
run sfsc-fp16 "$FP16_STEPS" --method sfsc --amp fp16

stage "6/7 torchrun --nproc_per_node=$NPROC: SFSC, $DDP_STEPS steps"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m swedge "${TRAIN[@]}" --method sfsc \
    --amp bf16 --workers $(( WORKERS / NPROC > 1 ? WORKERS / NPROC : 1 )) --out "$WORK/ddp" \
    --max-steps "$DDP_STEPS" 2>&1 | tee "$WORK/ddp.txt"

stage "7/7 swedge eval of the SFSC checkpoint on $DEVICE; figures -> $RESULT"
"$PY" -m swedge eval "$WORK/sfsc/model.safetensors" --data "$DATA" --device "$DEVICE" --json "$WORK/eval.json" \
    2>&1 | tee "$WORK/eval.txt"
"$PY" - "$WORK" "$NPROC" "$P" "$RESULT" <<'EOF'
import json, statistics, sys
from pathlib import Path

import torch

work, nproc, p, result = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])


def figures(run: str, processes: int = 1) -> dict:
    log = [json.loads(line) for line in (work / run / "train_log.jsonl").read_text().splitlines()]
    batch = p * 4 * processes  # global batch: P x K per process
    # Seconds per step in each logged window after a 20-step warm-up (cudnn autotuning, workers starting);
    # the median leaves out a window that holds an epoch-end checkpoint write.
    warm = [r for r in log if r["step"] >= 20] or log
    steps = [(b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) for a, b in zip(warm, warm[1:])
             if b["elapsed_s"] > a["elapsed_s"]]
    step_s = statistics.median(steps) if steps else None
    return {"processes": processes, "steps": log[-1]["step"], "global_batch": batch,
            "step_ms_median": round(1000 * step_s, 1) if step_s else None,
            "images_per_s": round(batch / step_s, 1) if step_s else None,
            "peak_gpu_mem_gib_rank0": max((r.get("peak_mem_gib", 0) for r in log), default=None),
            "final_losses": {k: round(v, 4) for k, v in log[-1].items() if k.startswith("loss@")},
            "conflict_share_last": log[-1].get("conflict_share")}


def ratio(a: dict, b: dict, key: str):
    return round(a[key] / b[key], 3) if a.get(key) and b.get(key) else None


runs = {name: figures(name) for name in ("sfsc", "full", "sfsc-sum", "sfsc-fp16")}
runs["torchrun"] = figures("ddp", nproc)
evaluation = json.loads((work / "eval.json").read_text())
out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
       "gpus": torch.cuda.device_count(), "torch": torch.__version__,
       "setup": f"resnet50 256x128, P{p} x K4 per process, channels-last, bf16 autocast unless the run says fp16; "
                "images/s counts each image once although every width trains on it; step times include data "
                "loading; torchrun with more processes than GPUs shares a GPU through gloo (no speed figure)",
       "runs": runs,
       "step_cost_vs_full_width": {name: ratio(runs[name], runs["full"], "step_ms_median")
                                   for name in ("sfsc", "sfsc-sum")},
       "peak_mem_vs_full_width": {name: ratio(runs[name], runs["full"], "peak_gpu_mem_gib_rank0")
                                  for name in ("sfsc", "sfsc-sum")},
       "eval_of_sfsc_checkpoint": {k: evaluation[k] for k in ("widths", "map", "compatibility")}}
result.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
EOF
echo "done: $RESULT"
