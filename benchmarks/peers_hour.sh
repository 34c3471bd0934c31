#!/usr/bin/env bash
# Both peer benchmarks in one hour of wall-clock time: peers_real.py on every real case, then
# peers_scale.py with whatever is left of the hour as its budget (hiref first, then the peers;
# a run predicted to end past the budget is not started, and its row says so).
#
#   benchmarks/peers_hour.sh "one core of the idle 2-core machine"
#
# Needs `pip install -e ".[peers]"`. Every process of the run is pinned to one core when
# `taskset` is available (PEERS_CORE, default 1); the results go to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")"
note="${1:-}"
hour="${PEERS_SECONDS:-3600}"
pin=()
if command -v taskset > /dev/null; then pin=(taskset -c "${PEERS_CORE:-1}"); fi
export HIREF_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
start=$(date +%s)
"${pin[@]}" python peers_real.py --machine-note "$note" --skip merfish:paste \
    --left-out "merfish:paste=not run: PASTE's time grows with the square of the cells; from its DLPFC runs, MERFISH (5,584 cells) would pass the 600 s limit" \
    --json results/peers_real.json
real_s=$(( $(date +%s) - start ))
left=$(( hour - real_s ))
echo "peers_real.py took ${real_s} s; peers_scale.py gets ${left} s"
"${pin[@]}" python peers_scale.py --budget "$left" --machine-note "$note" --machine-short "${PEERS_SHORT:-one core}" \
    --json results/peers_scale.json --plot results/peers_scale.png
echo "both scripts: $(( $(date +%s) - start )) s"
