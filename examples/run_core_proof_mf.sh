#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
out=examples/results
[ -f $out/core_mf_bpr_gowalla.json ] || python -m pyg_cf train --dataset gowalla \
  --model mf --loss bpr --l2 1e-4 --lr 5e-3 --epochs 150 --eval-every 5 --patience 1000 \
  --time-budget 2400 --quiet --output $out/core_mf_bpr_gowalla.json
