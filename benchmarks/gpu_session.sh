#!/usr/bin/env bash
# One GPU session, prepared to fit a short lease on a CUDA machine (run from the repository
# root; the package need not be installed):
#
#   bash benchmarks/gpu_session.sh OUTDIR [REPRO_BUDGET_S] [CELLS...]
#
# 1. GPU benchmarks, alone on the device: training step (ours vs PyG's LightGCN) and
#    all-ranking evaluation (ours vs PyG's example), results as benchmarks/results-style .md;
# 2. then, side by side: the reproduction cells (default: LightGCN + BPR and + BCE, whose CPU
#    runs ended at their time budget) with --budget REPRO_BUDGET_S seconds of training each,
#    and the CUDA test file (tests/test_cuda.py).
# Everything lands in OUTDIR: session.log (the timeline), logs, the .md tables, the cells'
# JSON records (their earlier records under previous/). Each step has its own timeout, so one
# failure leaves the rest. QUICK=1: benchmarks on their tiny synthetic graphs (a dry run).
set -u
OUTDIR=${1:?usage: gpu_session.sh OUTDIR [REPRO_BUDGET_S] [CELLS...]}
BUDGET=${2:-360}
shift $(($# > 1 ? 2 : 1))
CELLS=("$@")
[ ${#CELLS[@]} -eq 0 ] && CELLS=(t1-lightgcn-bpr t1-lightgcn-bce)
DEVICE=${PYG_CF_DEVICE:-cuda}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUTDIR/session.log"; }

stamp "start; device $DEVICE"
{ nvidia-smi || true; python -c "import torch, torch_geometric as g; print(torch.__version__, torch.version.cuda, g.__version__, torch.cuda.is_available())"; } \
    >"$OUTDIR/env.txt" 2>&1

stamp "benchmarks"
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
timeout 150 python benchmarks/bench_train_step.py "${quick[@]}" --device "$DEVICE" --steps 10 \
    --rounds 3 --edge-index-steps 5 --results-dir "$OUTDIR" --name bench_train_step_gpu \
    >"$OUTDIR/bench_train_step.log" 2>&1
stamp "bench_train_step rc $?"
timeout 90 python benchmarks/bench_eval.py "${quick[@]}" --device "$DEVICE" --repeat 5 \
    --results-dir "$OUTDIR" --name bench_eval_gpu >"$OUTDIR/bench_eval.log" 2>&1
stamp "bench_eval rc $?"

# a cell's cached record would make reproduce.py skip it: keep the old one beside the output
mkdir -p "$OUTDIR/previous"
pids=()
for cell in "${CELLS[@]}"; do
    [ -f "examples/results/repro/$cell.json" ] && mv "examples/results/repro/$cell.json" "$OUTDIR/previous/"
    OMP_NUM_THREADS=4 timeout $((BUDGET + 150)) python examples/reproduce.py --cell "$cell" \
        --budget "$BUDGET" --device "$DEVICE" >"$OUTDIR/repro_$cell.log" 2>&1 &
    pids+=($!)
    stamp "started $cell (pid $!)"
done
PYG_CF_TEST_DEVICE=$DEVICE timeout 240 python -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$OUTDIR/pytest_cuda.log" 2>&1
stamp "pytest tests/test_cuda.py rc $?"
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    stamp "${CELLS[$i]} rc $?"
    cp "examples/results/repro/${CELLS[$i]}.json" "$OUTDIR/" 2>/dev/null
done
stamp "done"
