#!/usr/bin/env bash
# GPU smoke run, sized for a 15-minute session on one CUDA machine (about 6 minutes of work on an H100).
#
#   1. a Python with CUDA torch that imports swedge     2. synthetic data at 256x128 (IDS train identities)
#   3. SFSC, ResNet-50 at 256x128, all four widths, bf16 autocast, channels-last, P x K4 images, STEPS steps:
#      images/s and peak GPU memory (torch.cuda.max_memory_allocated, logged by the trainer)
#   4. step cost, side by side in this run, at P and at each of COST_P ids per batch: a full-width-only step
#      (sfsc-sum --widths 1.0), sfsc-sum's four widths and sfsc, BASE_STEPS steps each
#   5. fp16 autocast with the gradient scaler (SFSC projects the scaled gradients), FP16_STEPS steps
#   6. torchrun, DDP_STEPS steps: one process per GPU with NCCL; on a one-GPU node two processes share the GPU
#      through gloo (swedge/training/distributed.py), which runs the DDP code path but says nothing about speed
#   7. `swedge eval` of 3.'s checkpoint on the GPU;  figures -> $OUT/gpu_smoke.json (else $WORK/gpu_smoke.json)
#
# Usage: benchmarks/gpu_smoke.sh
# env: PY (python to use), WORK (/tmp/swedge_gpu_smoke), STEPS (300), BASE_STEPS (100), FP16_STEPS (60),
#      DDP_STEPS (60), IDS (1000), P (16 ids per batch, K=4), COST_P (64: further P for stage 4, space-separated),
#      STAGES ("3 4 5 6 7": which of the stages 3-7 to run), WORKERS (data-loading processes per GPU, 12),
#      DEVICE (cuda; DEVICE=cpu with small counts rehearses the script on a machine without a GPU)
# Works offline: with a python that has torch, this checkout is built into $WORK/site (no dependencies, no
# network) unless swedge is installed already; only without such a python does it create .venv and
# pip-install swedge[torch].
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/swedge_gpu_smoke}
STEPS=${STEPS:-300}
BASE_STEPS=${BASE_STEPS:-100}
FP16_STEPS=${FP16_STEPS:-60}
DDP_STEPS=${DDP_STEPS:-60}
IDS=${IDS:-1000}
P=${P:-16}
COST_P=${COST_P:-64}
STAGES=${STAGES:-3 4 5 6 7}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-cuda}
RESULT=${OUT:-$WORK}/gpu_smoke.json
mkdir -p "$WORK" "$(dirname "$RESULT")"
WORK=$(realpath "$WORK") RESULT=$(realpath "$RESULT")
export PYTHONUNBUFFERED=1
source benchmarks/gpu_common.sh  # stage, gpu_python_setup, synth_data

stage "1/7 python with torch for $DEVICE"
gpu_python_setup  # PY; cd "$WORK"; this checkout importable
NGPU=0
if [ "$DEVICE" = cuda ]; then NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())"); fi
NPROC=$(( NGPU >= 2 ? NGPU : 2 ))
echo "GPUs on this node: $NGPU; torchrun processes: $NPROC"

stage "2/7 synthetic data at 256x128, $IDS train identities"
DATA=$WORK/data256-$IDS
synth_data "$DATA" 256x128 "$IDS" 20

TRAIN=(train --data "$DATA" --arch resnet50 --input-size 256x128 --images-per-id 4
       --epochs 10 --device "$DEVICE" --channels-last --log-every 10 --quiet --force)
run() {  # NAME P STEPS ARGS...: one training run at P ids x K=4 per step, its output kept in $WORK/NAME.txt
    local name=$1 p=$2 steps=$3; shift 3
    "$PY" -m swedge "${TRAIN[@]}" --ids-per-batch "$p" --workers "$WORKERS" --out "$WORK/$name" \
        --max-steps "$steps" "$@" 2>&1 | tee "$WORK/$name.txt"
}
want() { [[ " $STAGES " == *" $1 "* ]]; }

if want 3; then
    stage "3/7 SFSC, ResNet-50 256x128, bf16, channels-last, P$P x K4: $STEPS steps"
    run "sfsc-p$P" "$P" "$STEPS" --method sfsc --amp bf16
fi

if want 4; then
    for p in $P $COST_P; do
        stage "4/7 step cost at P$p x K4: full width only, sfsc-sum's four widths, sfsc; $BASE_STEPS steps each"
        run "full-p$p" "$p" "$BASE_STEPS" --method sfsc-sum --widths 1.0 --amp bf16
        run "sfsc-sum-p$p" "$p" "$BASE_STEPS" --method sfsc-sum --amp bf16
        if [ "$p" != "$P" ] || ! want 3; then run "sfsc-p$p" "$p" "$BASE_STEPS" --method sfsc --amp bf16; fi
    done
fi

if want 5; then
    stage "5/7 SFSC with fp16 autocast and the gradient scaler: $FP16_STEPS steps"
    run "sfsc-fp16-p$P" "$P" "$FP16_STEPS" --method sfsc --amp fp16
fi

if want 6; then
    stage "6/7 torchrun --nproc_per_node=$NPROC: SFSC, $DDP_STEPS steps"
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m swedge "${TRAIN[@]}" --method sfsc \
        --amp bf16 --ids-per-batch "$P" --workers $(( WORKERS / NPROC > 1 ? WORKERS / NPROC : 1 )) \
        --out "$WORK/ddp-p$P" --max-steps "$DDP_STEPS" 2>&1 | tee "$WORK/ddp.txt"
fi

stage "7/7 figures -> $RESULT"
if want 7; then
    "$PY" -m swedge eval "$WORK/sfsc-p$P/model.safetensors" --data "$DATA" --device "$DEVICE" \
        --json "$WORK/eval.json" 2>&1 | tee "$WORK/eval.txt"
fi
"$PY" - "$WORK" "$NPROC" "$RESULT" <<'EOF'
import json, re, statistics, sys
from pathlib import Path

import torch

work, nproc, result = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])


def figures(run: Path) -> dict:
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    processes = nproc if run.name.startswith("ddp") else 1
    batch = int(re.search(r"-p(\d+)$", run.name).group(1)) * 4 * processes  # global batch: P x K per process
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


def ratio(a: dict | None, b: dict | None, key: str):
    return round(a[key] / b[key], 3) if a and b and a.get(key) and b.get(key) else None


runs = {d.name: figures(d) for d in sorted(work.iterdir()) if (d / "train_log.jsonl").is_file()}
batches = sorted({int(name.rsplit("-p", 1)[1]) for name in runs if name.startswith("full-p")})
cost = {f"P{b}": {m: {"step": ratio(runs.get(f"{m}-p{b}"), runs[f"full-p{b}"], "step_ms_median"),
                      "peak_mem": ratio(runs.get(f"{m}-p{b}"), runs[f"full-p{b}"], "peak_gpu_mem_gib_rank0")}
                  for m in ("sfsc-sum", "sfsc")} for b in batches}
evaluation = json.loads((work / "eval.json").read_text()) if (work / "eval.json").is_file() else {}
out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
       "gpus": torch.cuda.device_count(), "torch": torch.__version__,
       "setup": "resnet50 256x128; run NAME-pP: P ids x K4 images per process, channels-last, bf16 autocast unless "
                "the name says fp16; images/s counts each image once although every width trains on it; step "
                "times include data loading; torchrun with more processes than GPUs shares a GPU through gloo "
                "(no speed figure)",
       "runs": runs,
       "step_cost_vs_full_width": cost,
       "eval_of_sfsc_checkpoint": {k: evaluation[k] for k in ("widths", "map", "compatibility") if k in evaluation}}
result.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
EOF
echo "done: $RESULT"
