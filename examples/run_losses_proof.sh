#!/usr/bin/env bash
# Issue-4 proof runs on the real Gowalla split (LightGCN release), no validation carve: fixed
# epoch (or time) budgets, the final model is reported (no selection on test).
#
#   1. MF + softmax loss with the Adap-tau schedule (per-user temperatures; the positive keeps
#      tau0, the negatives are divided by tau_u, the positive is left out of the denominator,
#      as in the authors' code). Target Recall@20 >= 0.175 (published 0.1838); the history
#      records tau0 per epoch (published Gowalla MF about 0.094-0.095).
#   2. MF + MML (margins 0.7/0.8/0.9, weights 0.10/0.15/0.75, w_neg 700, cosine).
#      Target Recall@20 >= 0.17 (published 0.1816).
#
# A run whose JSON already exists is skipped. Knobs (environment variables):
#   DATASET      gowalla                       OUT  examples/results
#   ADAP_NEG     in-batch | M uniform negatives  (authors' MF run: 1024; ~30x slower on CPU)
#   ADAP_EPOCHS  80     ADAP_LR 1e-3    ADAP_WARMUP 20 (epochs assuming mu+ - mu = 0.7; the
#                authors ran 100 at lr 1e-4: a gap measured on barely trained MF is ~0)
#   ADAP_BASE    0.9    ADAP_DIVISOR 0.25  (authors' Gowalla MF; the paper's default is
#                                           base=mean, divisor=2, i.e. beta = 1)
#   MML_NEG      100 (paper's headline runs; 800 also published)   MML_EPOCHS 60   MML_LR 1e-3
#   BUDGET_S     14400 seconds per run (training stops after the epoch that passes it)
#   EXTRA        extra arguments appended to both commands, e.g. for a smoke test:
#                DATASET=ml-1m OUT=/tmp/p EXTRA="--max-steps 5 --epochs 1" bash $0
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATASET="${DATASET:-gowalla}"
OUT="${OUT:-examples/results}"
ADAP_NEG="${ADAP_NEG:-in-batch}"
ADAP_EPOCHS="${ADAP_EPOCHS:-80}"
ADAP_LR="${ADAP_LR:-1e-3}"
ADAP_WARMUP="${ADAP_WARMUP:-20}"
ADAP_BASE="${ADAP_BASE:-0.9}"
ADAP_DIVISOR="${ADAP_DIVISOR:-0.25}"
MML_NEG="${MML_NEG:-100}"
MML_EPOCHS="${MML_EPOCHS:-60}"
MML_LR="${MML_LR:-1e-3}"
BUDGET_S="${BUDGET_S:-14400}"
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
  nice -n 5 python -m pyg_cf train "$@" "${extra[@]}" --quiet --output "$OUT/$name.json"
}

if [ "$ADAP_NEG" = "in-batch" ]; then
  adap_neg=(--loss-arg 'negatives="in-batch"')
else
  adap_neg=(--loss-arg 'negatives="sampled"' --loss-arg "num_negatives=$ADAP_NEG")
fi
run "losses_mf_adaptau_${ADAP_NEG}_${DATASET}" --dataset "$DATASET" --model mf \
  --loss ssm --train-sim cos --test-sim cos "${adap_neg[@]}" \
  --loss-arg include_positive=false \
  --temperature adap-tau --temperature-arg "base=$ADAP_BASE" \
  --temperature-arg "divisor=$ADAP_DIVISOR" --temperature-arg "warmup_epochs=$ADAP_WARMUP" \
  --batch-size 2048 --lr "$ADAP_LR" --epochs "$ADAP_EPOCHS" --eval-every 5 --patience 1000 \
  --time-budget "$BUDGET_S"

run "losses_mf_mml_${MML_NEG}_${DATASET}" --dataset "$DATASET" --model mf \
  --loss mml --train-sim cos --test-sim cos \
  --loss-arg 'margins=[0.7,0.8,0.9]' --loss-arg 'weights=[0.10,0.15,0.75]' \
  --loss-arg neg_weight=700 --loss-arg pos_weight=1 --loss-arg "num_negatives=$MML_NEG" \
  --batch-size 2048 --lr "$MML_LR" --epochs "$MML_EPOCHS" --eval-every 5 --patience 1000 \
  --time-budget "$BUDGET_S"

python - "$OUT" "$DATASET" "$ADAP_NEG" "$MML_NEG" <<'EOF'
import json
import sys

out, dataset, adap_neg, mml_neg = sys.argv[1:]
for name in (f"losses_mf_adaptau_{adap_neg}_{dataset}", f"losses_mf_mml_{mml_neg}_{dataset}"):
    with open(f"{out}/{name}.json") as f:
        s = json.load(f)
    last = s["history"][-1]
    tau = f"  tau0 {last['tau0']:.4f}" if "tau0" in last else ""
    print(
        f"{name}: Recall@20 {s['test']['recall@20']:.4f}  NDCG@20 {s['test']['ndcg@20']:.4f}"
        f"  ({s['epochs']} epochs, {s['wall_s']:.0f}s){tau}"
    )
EOF
