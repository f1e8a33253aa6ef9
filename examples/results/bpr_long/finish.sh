#!/usr/bin/env bash
# Finish the LightGCN + BPR CPU pair once its validation run has early-stopped: wait for
# the validation run to write its record (best-validation epoch E), let the refit ahead
# reach a checkpoint at or past E, stop it there, close its record at that checkpoint
# (`--refit-ahead C`: continues the 1000-epoch run's checkpoint for 0 more epochs), then read
# the refit at exactly E from it (`--refit`: no training, `reproduce.refit_from_ahead`).
# Runs in the pinned worktree of resume.sh, on the code that trained the pair.
#
#   nohup bash examples/results/bpr_long/finish.sh > runs/bpr_finish.log 2>&1 &
#
# Polls once a minute; does nothing to a run that is still going except the refit ahead's
# stop, and only after the validation record exists.
set -euo pipefail

main=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
tree=${PAIR_TREE:-$(dirname "$main")/pair}
args=(t1-lightgcn-bpr seed 0 1000 examples/results/bpr_long 100000)
record="$main/examples/results/bpr_long/t1-lightgcn-bpr-seed=0-1000ep-100000s.json"
ahead_ckpt="$main/runs/repro_checkpoints/x-t1-lightgcn-bpr-seed=0-100000s/refit-epochs=1000,reject_positives=True/last.pt"
stamp() { date -u +%H:%M:%S; }

[ -d "$tree" ] || { echo "finish.sh: no worktree $tree (run resume.sh first)" >&2; exit 1; }
cd "$tree"
export PYTHONPATH="$tree" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

ckpt_epoch() {
  python -c "import sys; from pyg_cf.train.checkpoint import read_checkpoint; \
print(int(read_checkpoint(sys.argv[1])['epoch']))" "$1"
}

# 1. the validation run's end
while pgrep -f "probe.py ${args[*]}\$" > /dev/null; do sleep 60; done
if [ ! -f "$record" ]; then
  echo "$(stamp) finish.sh: the validation run ended without its record $record" >&2
  exit 1
fi
best=$(python -c "import json, sys; print(int(json.load(open(sys.argv[1]))['best_epoch']))" "$record")
echo "$(stamp) validation run finished: best-validation epoch $best"

# 2. the refit ahead at a checkpoint at or past it, then stopped
while :; do
  done_epoch=$(ckpt_epoch "$ahead_ckpt")
  [ "$done_epoch" -ge "$best" ] && break
  if ! pgrep -f "probe.py ${args[*]} --refit-ahead 1000" > /dev/null; then
    echo "$(stamp) finish.sh: the refit ahead is not running and its checkpoint is at" \
      "epoch $done_epoch < $best: resume it (resume.sh) and run this again" >&2
    exit 1
  fi
  sleep 60
done
pkill -f "probe.py ${args[*]} --refit-ahead 1000" || true
while pgrep -f "probe.py ${args[*]} --refit-ahead 1000" > /dev/null; do sleep 5; done
done_epoch=$(ckpt_epoch "$ahead_ckpt")
echo "$(stamp) refit ahead stopped; its checkpoint is at epoch $done_epoch (>= $best)"

# 3. its record closed at that checkpoint, then the refit read at the chosen epoch
python examples/results/probe.py "${args[@]}" --refit-ahead "$done_epoch"
python examples/results/probe.py "${args[@]}" --refit
echo "$(stamp) finish.sh: done"
