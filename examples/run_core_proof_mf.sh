#!/usr/bin/env bash
# The MF + BPR core run on the real Gowalla split (LightGCN release), no validation carve: a
# fixed 40-epoch budget with user-uniform sampling (LightGCN's reference sampler) and the
# user's positives rejected as negatives; the final model is reported (no selection on test).
# Its record is examples/results/core_mf_bpr_gowalla_user.json (examples/RESULTS.md, "Core").
set -euo pipefail
cd "$(dirname "$0")/.."
out=examples/results
[ -f $out/core_mf_bpr_gowalla_user.json ] || python -m pyg_cf train --dataset gowalla \
  --model mf --loss bpr --loss-arg reject_positives=true --sampling user --l2 1e-4 --lr 1e-3 \
  --epochs 40 --eval-every 5 --patience 1000 --quiet \
  --output $out/core_mf_bpr_gowalla_user.json
