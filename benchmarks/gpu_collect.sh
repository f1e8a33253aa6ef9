#!/usr/bin/env bash
# Waits for the reproduction cells that benchmarks/gpu_session.sh started (OUTDIR/pids) and
# reports each one's exit status; their records are copied into OUTDIR by the cells' own
# shells. A second device call runs it when the first ran gpu_session.sh with DETACH=1:
#
#   bash benchmarks/gpu_collect.sh OUTDIR [MAX_WAIT_S]
set -u
OUTDIR=${1:?usage: gpu_collect.sh OUTDIR [MAX_WAIT_S]}
MAX_WAIT=${2:-100000}
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUTDIR/session.log"; }
[ -f "$OUTDIR/pids" ] || { stamp "no $OUTDIR/pids: nothing started"; exit 1; }
start=$(date +%s)
while read -r cell pid; do
    # not a child of this shell when detached: poll
    while kill -0 "$pid" 2>/dev/null && [ $(($(date +%s) - start)) -lt "$MAX_WAIT" ]; do
        sleep 2
    done
    if kill -0 "$pid" 2>/dev/null; then
        stamp "$cell still running after ${MAX_WAIT}s"
    else
        stamp "$cell rc $(cat "$OUTDIR/$cell.rc" 2>/dev/null || echo '?')"
    fi
done <"$OUTDIR/pids"
stamp "done"
