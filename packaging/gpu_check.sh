#!/usr/bin/env bash
# Every GPU figure of issue 14 in one short run (docs/benchmarks.md, docs/scale.md):
#   1. joyq bench score   so400m-512 (random weights): model-only img/s, end-to-end at 512 px,
#                         1 MP and 12 MP, each against the original score-images.py recipe
#   2. joyq bench full    full finetune pairs/s and peak memory, device batch 1/2/4/8, +- checkpointing
#   3. joyq bench ray     the Ray path on one GPU against the native path (only where ray is installed)
#   4. joyq bench decode  12 MP JPEG full decode against draft mode (CPU timings; scores on the GPU)
# Each step has its own time limit and a failed step does not stop the others. Everything
# goes to OUTDIR/gpu_check.log (default: $OUT if set, else ./gpu-check-out).
#
#   packaging/gpu_check.sh [OUTDIR]                   on a CUDA machine (about 5 minutes; the step limits add up to
#                                                     500 s, 650 s with ray: run it with a 600 s limit)
#   GPU_CHECK_SMOKE=1 packaging/gpu_check.sh [OUTDIR] a CPU rehearsal with the tiny model (the same
#                                                     commands, small sizes; a few minutes on 2 cores)
#   packaging/gpu_check.sh --fetch-wheels             here, before going to a machine that cannot reach
#                                                     the internet: the small pure-Python wheels joyq needs
#                                                     beyond a PyTorch image (platformdirs, openskill) go to
#                                                     .gpu-wheels/ (git-ignored locally); carry that folder.
# Python: $PYTHON, else .venv/bin/python when it imports torch, else python3.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .gpu-wheels
    grep -qx '/.gpu-wheels/' .git/info/exclude 2>/dev/null || echo '/.gpu-wheels/' >> .git/info/exclude
    # for the device image's Python (3.12 on the H200 machines, KINDS.md), whatever runs here
    "${PYTHON:-python3}" -m pip download --no-deps -d .gpu-wheels --only-binary=:all: \
        --python-version "${GPU_PYTHON_VERSION:-3.12}" --platform manylinux2014_x86_64 platformdirs openskill
    exit $?
fi

OUTDIR=${1:-${OUT:-$ROOT/gpu-check-out}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export JOYQ_DATA_DIR=${JOYQ_DATA_DIR:-$(mktemp -d)}

if ! "$PY" -c "import platformdirs, openskill" 2>/dev/null; then
    if [ -d .gpu-wheels ]; then
        "$PY" -m pip install -q --no-index --no-deps --find-links .gpu-wheels platformdirs openskill 2>&1 | tee -a "$LOG"
    else
        say "missing platformdirs/openskill and no .gpu-wheels/ (run packaging/gpu_check.sh --fetch-wheels first)"
    fi
fi

step() {  # step SECONDS TITLE -- joyq ARGS...
    local limit=$1 title=$2; shift 3
    say ""; say "=== $title: joyq $* (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$PY" -c 'import sys; from joyq_studio.cli import main; sys.exit(main(sys.argv[1:]))' "$@" \
        2>&1 | grep --line-buffered -v -e 'WARNING' -e 'core_worker' -e 'INFO' | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    say "--- $title: exit $rc after $((SECONDS - t0)) s"
}

say "gpu_check $(date -u +%FT%TZ) on $(hostname); python $("$PY" -c 'import sys; print(sys.version.split()[0])')"
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
"cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1 | tee -a "$LOG"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
"$PY" -c 'import ray' 2>/dev/null && HAVE_RAY=1 || HAVE_RAY=0

if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
    say "SMOKE: CPU rehearsal with the tiny model; no figure from it is a GPU figure"
    step 300 "score"  -- bench score --device cpu --model tiny --images 16 --batch-size 8 --workers 2 --repeats 1
    step 300 "full"   -- bench full --device cpu --model tiny --device-batches 1 2 --steps 1
    [ $HAVE_RAY = 1 ] && step 400 "ray" -- bench ray --device cpu --model tiny --images 24 --batch-size 8 --workers 2 \
        || say "=== ray: skipped (ray is not installed for $PY)"
    step 300 "decode" -- bench decode --device cpu --repeats 1
else
    W=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
    step 200 "score"  -- bench score --device cuda --model so400m-random --images 512 --batch-size 64 --workers "$W" --repeats 3
    step 180 "full"   -- bench full --device cuda
    [ $HAVE_RAY = 1 ] && step 150 "ray" -- bench ray --device cuda --model so400m-random --images 512 --batch-size 64 \
        --workers "$W" || say "=== ray: skipped (ray is not installed for $PY; pip install 'joyq-studio[ray]')"
    step 120 "decode" -- bench decode --device cuda --repeats 3
fi
say ""; say "done $(date -u +%FT%TZ); log: $LOG"
