#!/usr/bin/env bash
# [Proxy] Tables 3-4 (WMT17 En-De transformer-big, 10 teachers, EnD vs Proxy-EnD2, newstest14 + 4 OOD sets). Usage: run_all_wmt.sh [--smoke]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
for s in 20_wmt_data 21_wmt_teachers 22_wmt_distill 23_wmt_generate 24_wmt_table; do
  bash "$HERE/$s.sh" "$@"
done
