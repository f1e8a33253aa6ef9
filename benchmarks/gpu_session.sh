#!/usr/bin/env bash
# One GPU session, prepared to fit a short lease on a CUDA machine (run from the repository
# root; the package need not be installed):
#
#   bash benchmarks/gpu_session.sh OUTDIR [REPRO_BUDGET_S] [CELLS...]
#
# 0. the CUDA-graph equivalence tests (tests/test_cuda.py -k graph): if they pass, the cells
#    train with --cuda-graphs (GRAPHS=0 never, GRAPHS=1 always);
# 1. GPU benchmarks, alone on the device: training step (ours eager and CUDA-graph replayed vs
#    PyG's LightGCN) and, unless EVAL_BENCH=0, all-ranking evaluation (ours vs PyG's
#    example), results as benchmarks/results-style .md; BENCH=0 skips both;
# 2. then, side by side: the reproduction cells (default: LightGCN + BPR, whose first GPU run
#    ended at its budget; LightGCN + BCE with its logit bias has since converged on the CPU)
#    with --budget REPRO_BUDGET_S seconds of training each,
#    and the CUDA test file (tests/test_cuda.py).
# AHEAD_EPOCHS=N also starts each cell's refit beside it (reproduce.py --refit-ahead N, same
# budget; only for the cells in AHEAD_CELLS="C1 C2" when that is set): `reproduce.py --cell C
# --refit` then reads the epoch the validation run chose.
# DETACH=1 starts the cells in their own process sessions (setsid), which outlive this call
# on a device machine that stays warm: the script returns after the tests, and a second call
# right after it, `bash benchmarks/gpu_collect.sh OUTDIR`, waits for the cells and collects
# their records (a budget longer than one call's limit).
# Everything lands in OUTDIR: session.log (the timeline), logs, the .md tables, the cells'
# JSON records (their earlier records under previous/). Each step has its own timeout, so one
# failure leaves the rest. QUICK=1: the benchmarks on their tiny synthetic graphs only; the
# CUDA tests and the cells still run, and the cells' records are still moved aside (run it on
# the device machine's copy of the tree, as the device tool does; it is not a dry run).
set -u
OUTDIR=${1:?usage: gpu_session.sh OUTDIR [REPRO_BUDGET_S] [CELLS...]}
BUDGET=${2:-360}
shift $(($# > 1 ? 2 : 1))
CELLS=("$@")
[ ${#CELLS[@]} -eq 0 ] && CELLS=(t1-lightgcn-bpr)  # LightGCN + BCE with bias converged on the CPU
DEVICE=${PYG_CF_DEVICE:-cuda}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUTDIR/session.log"; }

stamp "start; device $DEVICE"
{ nvidia-smi || true; python -c "import torch, torch_geometric as g; print(torch.__version__, torch.version.cuda, g.__version__, torch.cuda.is_available())"; } \
    >"$OUTDIR/env.txt" 2>&1

graphs=${GRAPHS:-auto}
[ "$graphs" = auto ] && [ "${DEVICE#cuda}" = "$DEVICE" ] && graphs=0  # a CPU dry run
if [ "$graphs" = auto ]; then
    PYG_CF_TEST_DEVICE=$DEVICE timeout 120 python -m pytest -q -p no:cacheprovider \
        tests/test_cuda.py -k graph >"$OUTDIR/pytest_cuda_graphs.log" 2>&1
    rc=$?
    stamp "CUDA-graph equivalence tests rc $rc"
    graphs=$([ $rc = 0 ] && echo 1 || echo 0)
fi
export PYG_CF_CUDA_GRAPHS=$graphs
stamp "cells train with PYG_CF_CUDA_GRAPHS=$graphs"

if [ "${BENCH:-1}" = 1 ]; then
    stamp "benchmarks"
    quick=()
    [ "${QUICK:-0}" = 1 ] && quick=(--quick)
    timeout 150 python benchmarks/bench_train_step.py "${quick[@]}" --device "$DEVICE" --steps 10 \
        --rounds 3 --edge-index-steps 5 --results-dir "$OUTDIR" --name bench_train_step_gpu \
        >"$OUTDIR/bench_train_step.log" 2>&1
    stamp "bench_train_step rc $?"
    if [ "${EVAL_BENCH:-1}" = 1 ]; then
        timeout 90 python benchmarks/bench_eval.py "${quick[@]}" --device "$DEVICE" --repeat 5 \
            --results-dir "$OUTDIR" --name bench_eval_gpu >"$OUTDIR/bench_eval.log" 2>&1
        stamp "bench_eval rc $?"
    fi
fi

# a cell's cached record would make reproduce.py skip it: keep the old one beside the output
mkdir -p "$OUTDIR/previous"
pids=()
for cell in "${CELLS[@]}"; do
    [ -f "examples/results/repro/$cell.json" ] && mv "examples/results/repro/$cell.json" "$OUTDIR/previous/"
    [ -f "examples/results/repro/refit/$cell.json" ] && mv "examples/results/repro/refit/$cell.json" "$OUTDIR/previous/${cell}_refit.json"
    # the cell writes its record and exit status into OUTDIR itself, so that a later call
    # (gpu_collect.sh) can collect a detached cell
    setsid bash -c "OMP_NUM_THREADS=4 timeout $((BUDGET + 300)) python examples/reproduce.py \
        --cell $cell --budget $BUDGET --device $DEVICE >'$OUTDIR/repro_$cell.log' 2>&1; \
        echo \$? >'$OUTDIR/$cell.rc'; cp examples/results/repro/$cell.json '$OUTDIR/' 2>/dev/null" &
    pids+=($!)
    echo "$cell $!" >>"$OUTDIR/pids"
    stamp "started $cell (pid $!)"
    if [ -n "${AHEAD_EPOCHS:-}" ] && [[ " ${AHEAD_CELLS:-$cell} " == *" $cell "* ]]; then
        # its refit beside it (reproduce.py --refit-ahead)
        setsid bash -c "OMP_NUM_THREADS=4 timeout $((BUDGET + 300)) python examples/reproduce.py \
            --cell $cell --refit-ahead $AHEAD_EPOCHS --budget $BUDGET --device $DEVICE \
            >'$OUTDIR/repro_${cell}_ahead.log' 2>&1; echo \$? >'$OUTDIR/${cell}_ahead.rc'; \
            cp examples/results/repro/refit/${cell}_ahead.json '$OUTDIR/' 2>/dev/null" &
        echo "${cell}_ahead $!" >>"$OUTDIR/pids"
        stamp "started ${cell}'s refit ahead, $AHEAD_EPOCHS epochs (pid $!)"
    fi
done
PYG_CF_TEST_DEVICE=$DEVICE timeout 240 python -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$OUTDIR/pytest_cuda.log" 2>&1
stamp "pytest tests/test_cuda.py rc $?"
if [ "${DETACH:-0}" = 1 ]; then
    stamp "detached: collect with benchmarks/gpu_collect.sh $OUTDIR"
    exit 0
fi
exec bash "$(dirname "$0")/gpu_collect.sh" "$OUTDIR"
