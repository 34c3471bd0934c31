#!/usr/bin/env bash
# Both peer benchmarks in one hour of wall-clock time on a machine with two cores or more:
# peers_real.py (every real case) on one core and, at the same time, peers_scale.py on another,
# with the hour less a minute as its budget (hiref first, then the peers; a run predicted to end
# past the budget is not started, and its row says so).
#
#   benchmarks/peers_hour.sh "a line on the machine"
#
# Needs `pip install -e ".[peers]"` and `taskset`. Every process runs one thread on its core
# (REAL_CORE, default 0; SCALE_CORE, default 1); the results go to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")"
note="${1:-}"
hour="${PEERS_SECONDS:-3600}"
export HIREF_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
start=$(date +%s)
taskset -c "${REAL_CORE:-0}" python peers_real.py --machine-note "$note" \
    --json results/peers_real.json 2>&1 | sed -u 's/^/[peers_real] /' &
taskset -c "${SCALE_CORE:-1}" python peers_scale.py --budget "$(( hour - 60 ))" --machine-note "$note" \
    --machine-short "${PEERS_SHORT:-one core}" --json results/peers_scale.json --plot results/peers_scale.png \
    2>&1 | sed -u 's/^/[peers_scale] /' &
wait
echo "both scripts: $(( $(date +%s) - start )) s"
