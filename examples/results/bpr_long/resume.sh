#!/usr/bin/env bash
# Resume the LightGCN + BPR CPU pair (the cell's validation run and its refit ahead on the
# full training split) from its checkpoints in runs/repro_checkpoints/, on the code it
# verified: a detached git worktree at commit PAIR_COMMIT, so that later commits in this
# checkout (which may change the order of floating-point additions) do not change the runs
# midway. The default, 77be646, trains bit-identically to 632cc05, the commit the restarted
# pair of 2026-12-07 ran on (5 epochs from the validation run's epoch-380 checkpoint: equal
# embeddings and Adam moments, bit for bit), and its step is ≈ 13 % faster at one thread.
# Records and checkpoints stay in this checkout (the worktree links to them); a worktree at
# another commit is replaced (it holds nothing else).
#
#   bash examples/results/bpr_long/resume.sh SUFFIX   # logs: runs/lightgcn_bpr_*_SUFFIX.log
#   nohup bash examples/results/bpr_long/finish.sh > runs/bpr_finish_SUFFIX.log 2>&1 &
#       # then: reads the refit at the chosen epoch once validation has ended (finish.sh)
#
# Refuses to start a second copy of a run that is already going.
set -euo pipefail

suffix=${1:?"usage: resume.sh LOG_SUFFIX"}
main=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
tree=${PAIR_TREE:-$(dirname "$main")/pair}
commit=${PAIR_COMMIT:-77be646}
args=(t1-lightgcn-bpr seed 0 1000 examples/results/bpr_long 100000)

if pgrep -f "probe.py ${args[*]}" > /dev/null; then
  echo "resume.sh: the pair (or one of its runs) is already running:" >&2
  pgrep -af "probe.py ${args[*]}" >&2
  exit 1
fi
if [ ! -d "$main/runs/repro_checkpoints/x-t1-lightgcn-bpr-seed=0-100000s" ]; then
  echo "resume.sh: no checkpoints under $main/runs/repro_checkpoints/: the runs would start" \
    "from epoch 1 (see examples/RESULTS.md, 'Tenth session'); start them by hand if meant" >&2
  exit 1
fi
if [ -d "$tree" ] && [ "$(git -C "$tree" rev-parse HEAD)" != "$(git -C "$main" rev-parse "$commit")" ]; then
  # the links first, so that nothing behind them is touched
  rm -f "$tree/runs" "$tree/examples/results/bpr_long"
  git -C "$main" worktree remove --force "$tree"
fi
if [ ! -d "$tree" ]; then
  git -C "$main" worktree add --detach "$tree" "$commit"
fi
[ -L "$tree/runs" ] || ln -s "$main/runs" "$tree/runs"
if [ ! -L "$tree/examples/results/bpr_long" ]; then
  rm -rf "$tree/examples/results/bpr_long"
  ln -s "$main/examples/results/bpr_long" "$tree/examples/results/bpr_long"
fi

cd "$tree"
export PYTHONPATH="$tree" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nohup nice -n 5 python examples/results/probe.py "${args[@]}" \
  > "$main/runs/lightgcn_bpr_long_$suffix.log" 2>&1 &
nohup nice -n 5 python examples/results/probe.py "${args[@]}" --refit-ahead 1000 \
  > "$main/runs/lightgcn_bpr_refit_ahead_$suffix.log" 2>&1 &
echo "resume.sh: started the pair from $tree ($commit); logs runs/lightgcn_bpr_*_$suffix.log"
