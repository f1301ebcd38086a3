# Shared by the GPU scripts (benchmarks/gpu_smoke.sh, benchmarks/gpu_study.sh): source it from the repository
# root, with WORK (an absolute scratch folder) and DEVICE (cuda or cpu) set. Not a script of its own.
#
#   gpu_python_setup      PY := a python whose torch runs on $DEVICE (PY from the environment first, then
#                         .venv/bin/python, then python3; only without one: a new .venv, pip-installed, needs
#                         network); then cd "$WORK" and, where swedge is not importable, build this checkout
#                         into $WORK/site offline (no dependencies) and put it on PYTHONPATH; prints versions.
#   synth_data DIR SIZE TRAIN_IDS TEST_IDS
#                         `swedge data synth` into DIR unless DIR/dataset.json is there already.
#   stage TEXT            a timestamped stage heading.

stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }

_gpu_usable() {  # a python whose torch can run on $DEVICE
    "$1" -c "import sys, torch; sys.exit('$DEVICE' == 'cuda' and not torch.cuda.is_available())" 2>/dev/null
}

gpu_python_setup() {
    local src=$PWD candidate
    if [ -z "${PY:-}" ]; then
        for candidate in .venv/bin/python python3; do
            if _gpu_usable "$candidate"; then PY=$candidate; break; fi
        done
    fi
    if [ -z "${PY:-}" ]; then
        echo "no python with torch for $DEVICE found: creating .venv (needs network)"
        python3 -m venv .venv
        .venv/bin/pip install -q -e '.[torch]'
        PY=.venv/bin/python
    fi
    _gpu_usable "$PY" || { echo "ERROR: $PY has no CUDA-enabled torch (or no GPU is visible)"; return 1; }
    case $PY in /*) ;; */*) PY=$src/$PY ;; esac
    cd "$WORK"  # from here on: outside the source tree, whose swedge/ would shadow the installed package
    if ! "$PY" -c "import swedge.runtimes" 2>/dev/null; then
        # The source tree alone is not importable (swedge.runtimes etc. live in top-level folders, mapped by
        # pyproject.toml): build this checkout into a scratch folder, offline, without its dependencies.
        "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target "$WORK/site" --upgrade "$src"
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$PY" -c "import swedge, sys, torch; print('python', sys.executable, '| torch', torch.__version__,
'| swedge', swedge.__version__, '|', torch.cuda.device_count(), 'x',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
}

synth_data() {
    local dir=$1 size=$2 train_ids=$3 test_ids=$4
    if [ ! -f "$dir/dataset.json" ]; then
        "$PY" -m swedge data synth --out "$dir" --size "$size" --train-ids "$train_ids" --test-ids "$test_ids" \
            --quiet --force
    fi
}
