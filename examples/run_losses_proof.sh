#!/usr/bin/env bash
# Issue-4 proof runs on the real Gowalla split (LightGCN release), no validation carve: fixed
# epoch budgets, the final model is reported (no selection on test). Results and curves are in
# examples/RESULTS.md ("Loss family on Gowalla").
#
#   1. MF + softmax loss with Adap-tau in the authors' Gowalla-MF regime (their code's
#      settings: per-user temperatures with the 0.9-quantile base and divisor 0.25, the
#      positive keeping tau0 and the negatives divided by tau_u, the positive left out of the
#      denominator, 10 % dropout on the user embedding, lr 1e-4, 100 warm-up epochs with
#      mu+ - mu assumed 0.7, i.e. tau0 0.1089, then tau0 measured every epoch; 130 epochs),
#      with 16 sets of 1024 uniform negatives, each shared by 128 rows of the batch, instead
#      of 1024 per row. Target Recall@20 >= 0.175 (published 0.1838; reached here: 0.1803,
#      80 min at 1 thread); tau0 per epoch in the history (published Gowalla MF about
#      0.094-0.095; here 0.0903 at the end).
#   2. MF + MML (margins 0.7/0.8/0.9, weights 0.10/0.15/0.75, w_neg 700, cosine), 800 uniform
#      negatives shared by the batch. Target Recall@20 >= 0.17 (published 0.1816).
#
# A run whose JSON already exists is skipped; an interrupted run resumes from its checkpoint.
# EXTRA: extra arguments for both commands, e.g. a smoke test on ML-1M:
#   OUT=/tmp/p DATASET=ml-1m EXTRA="--max-steps 5 --epochs 1" bash examples/run_losses_proof.sh
set -euo pipefail
case "${OUT:-}" in "" | /*) ;; *) OUT="$PWD/$OUT" ;; esac  # relative to the caller's directory
cd "$(dirname "$0")/.."
DATASET="${DATASET:-gowalla}"
OUT="${OUT:-examples/results}"
# checkpoints: runs/ck_NAME for the recorded runs; beside the JSONs for any other OUT, so that
# a smoke test neither resumes from nor overwrites a real run's checkpoint
if [ "$(realpath -m "$OUT")" = "$(realpath -m examples/results)" ]; then CKPT=runs; else CKPT="$OUT"; fi
read -r -a extra <<< "${EXTRA:-}"
mkdir -p "$OUT"

run() {  # run NAME ARGS...
  local name=$1
  shift
  if [ -f "$OUT/$name.json" ]; then
    echo "skip $name ($OUT/$name.json exists)"
    return
  fi
  echo "== $name"
  python -m pyg_cf train "$@" "${extra[@]}" --quiet --checkpoint-dir "$CKPT/ck_$name" --resume \
    --output "$OUT/$name.json"
}

run "losses_mf_adaptau_authors_g16_${DATASET}" --dataset "$DATASET" --model mf --loss ssm \
  --train-sim cos --test-sim cos --loss-arg 'negatives="sampled"' --loss-arg num_negatives=1024 \
  --loss-arg shared_negatives=16 --loss-arg include_positive=false \
  --temperature adap-tau --temperature-arg warmup_epochs=100 \
  --temperature-arg base=0.9 --temperature-arg divisor=0.25 --user-dropout 0.1 \
  --lr 1e-4 --epochs 130 --eval-every 5 --patience 1000

run "losses_mf_mml_shared800_${DATASET}" --dataset "$DATASET" --model mf --loss mml \
  --train-sim cos --test-sim cos --loss-arg 'margins=[0.7,0.8,0.9]' \
  --loss-arg 'weights=[0.10,0.15,0.75]' --loss-arg neg_weight=700 --loss-arg pos_weight=1 \
  --loss-arg num_negatives=800 --loss-arg shared_negatives=true \
  --lr 1e-3 --epochs 40 --eval-every 5 --patience 1000

python - "$OUT" "$DATASET" <<'PY'
import json
import sys

out, dataset = sys.argv[1:]
for name in (
    f"losses_mf_adaptau_authors_g16_{dataset}",
    f"losses_mf_mml_shared800_{dataset}",
):
    with open(f"{out}/{name}.json") as f:
        s = json.load(f)
    last = s["history"][-1]
    tau = f"  tau0 {last['tau0']:.4f}" if "tau0" in last else ""
    print(
        f"{name}: Recall@20 {s['test']['recall@20']:.4f}  NDCG@20 {s['test']['ndcg@20']:.4f}"
        f"  ({s['epochs']} epochs, {s['wall_s']:.0f}s){tau}"
    )
PY
