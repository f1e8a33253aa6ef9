#!/usr/bin/env bash
# Issue-3 proof runs on the real Gowalla split (LightGCN release), no validation carve:
# fixed epoch budgets, the final model is reported (no selection on test).
set -euo pipefail
cd "$(dirname "$0")/.."
out=examples/results
[ -f $out/core_lightgcn_ssm_gowalla.json ] || python -m pyg_cf train --dataset gowalla \
  --model lightgcn --layers 3 --loss ssm --tau 0.1 --train-sim cos --test-sim ip --lr 1e-3 \
  --epochs 8 --eval-every 1 --quiet --output $out/core_lightgcn_ssm_gowalla.json
