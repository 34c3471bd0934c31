#!/usr/bin/env bash
# Mutation testing of the modules that compute what users read (issue 33): evaluation, transfer,
# binning, the stored-matching readers and the engine's leaves. Never run in CI: it takes tens of
# minutes. Needs the dev extra (`pip install -e ".[dev]"`, mutmut 2.x, which mutates files in place; started through
# benchmarks/_mutmut.py, which works around a crash of mutmut 2.5).
#
#   benchmarks/mutation.sh [MODULE ...]     e.g. benchmarks/mutation.sh evaluate bin
#
# It copies src/ and tests/ to a scratch folder (so the working tree is never left mutated), runs
# mutmut there on each module with only the test files that exercise it (served by a process that
# has imported hiref's libraries once: see benchmarks/_mutmut.py), one thread and one core (core 0,
# or $MUTATION_CORE: `MUTATION_CORE=1 benchmarks/mutation.sh get` where core 0 is someone else's),
# each module under a time limit (TIMEOUTS below, or $MUTATION_TIMEOUT seconds), and prints `mutmut results`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTATION_DIR:-$(mktemp -d)}"
mkdir -p "$work"
cp -r "$root/src" "$root/tests" "$root/pyproject.toml" "$root/README.md" "$work/"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
cd "$work"
export PYTHONPATH="$work/src" HIREF_NUM_THREADS=1 OMP_NUM_THREADS=1
export HIREF_SHARED_DATA="${HIREF_SHARED_DATA:-$root/../shared/data}"
core="${MUTATION_CORE:-0}"

declare -A PATHS=(
  [evaluate]=src/hiref/tl/_evaluate.py
  [bin]=src/hiref/tl/_bin.py
  [transfer]=src/hiref/tl/_transfer.py
  [get]=src/hiref/get
  [leaves]=src/hiref/engine/finish/leaves.py
)
declare -A TESTS=(
  [evaluate]="tests/tl/test_evaluate.py tests/tl/test_transfer_bin.py tests/tl/test_confidence_labels.py"
  [bin]="tests/tl/test_bin.py tests/tl/test_transfer_bin.py tests/tl/test_evaluate.py tests/test_package_structure.py::test_signature_conventions"
  [transfer]="tests/tl/test_transfer_by_hand.py tests/tl/test_transfer_bin.py tests/tl/test_transfer_chunks.py tests/tl/test_validation.py::test_transfer_and_register_refuse_backed tests/tl/test_validation.py::test_transfer_keeps_missing_values_and_dtypes tests/tl/test_validation.py::test_duplicate_var_names_are_named tests/test_package_structure.py::test_signature_conventions"
  [get]="tests/get tests/tl/test_transfer_bin.py tests/tl/test_evaluate.py tests/tl/test_trace_stack.py::test_trace_errors_write_nothing tests/tl/test_trace_stack.py::test_trace_on_one_anndata_follows_the_next_columns"
  [leaves]="tests/engine/test_blocks_leaves.py"
)
# seconds per module: about 5-15 s per mutant on an idle core, enough there for every mutant (a busy
# core can take three times as long: give more with $MUTATION_TIMEOUT)
declare -A TIMEOUTS=([evaluate]=1200 [bin]=1500 [transfer]=2400 [get]=2400 [leaves]=600)
modules=("$@")
[ ${#modules[@]} -eq 0 ] && modules=(evaluate bin transfer get leaves)
for m in "${modules[@]}"; do
  echo "== $m: ${PATHS[$m]} against ${TESTS[$m]}"
  # A test server (benchmarks/_mutmut.py serve) imports torch, anndata, ... once; the runner mutmut
  # calls asks it for one run, in a fork that imports the mutated copy of hiref from $work/src.
  sock="$work/serve_$m.sock"
  rm -f "$sock"
  # shellcheck disable=SC2086
  taskset -c "$core" python "$root/benchmarks/_mutmut.py" serve "$sock" -x -q -p no:cacheprovider ${TESTS[$m]} \
    > "serve_$m.log" 2>&1 &
  printf '#!/usr/bin/env bash\nexec python %q ask %q\n' "$root/benchmarks/_mutmut.py" "$sock" > "run_$m.sh"
  chmod +x "run_$m.sh"
  timeout "${MUTATION_TIMEOUT:-${TIMEOUTS[$m]}}" taskset -c "$core" python "$root/benchmarks/_mutmut.py" run --paths-to-mutate "${PATHS[$m]}" \
    --runner "./run_$m.sh" --tests-dir tests --simple-output || true
  python "$root/benchmarks/_mutmut.py" stop "$sock" || true
  # a run cut short by the timeout leaves its last mutant applied: restore it before the next module
  find src -name "*.py.bak" | while read -r bak; do mv "$bak" "${bak%.bak}"; done
done
python "$root/benchmarks/_mutmut.py" results
echo "scratch folder (mutmut cache, mutmut show ID): $work"
