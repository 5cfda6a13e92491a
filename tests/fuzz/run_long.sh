#!/usr/bin/env bash
# Long fuzzing runs: each target (default: all) for RUNS inputs (default 1,000,000), one
# after the other, logs in tests/fuzz/logs/TARGET.log, crashes in tests/fuzz/crashes/.
#   RUNS=5000000 tests/fuzz/run_long.sh proxy report
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
runs="${RUNS:-1000000}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(python3 -c "from tests.fuzz.targets import TARGETS; print('\n'.join(TARGETS))")
fi
mkdir -p tests/fuzz/logs
status=0
for target in "${targets[@]}"; do
    log="tests/fuzz/logs/$target.log"
    echo "fuzzing $target for $runs inputs (log: $log)"
    python3 tests/fuzz/fuzz.py "$target" -atheris_runs="$runs" -timeout="${TIMEOUT:-30}" -print_final_stats=1 >"$log" 2>&1
    code=$?
    echo "  $target: exit $code; $(grep -E '^Done|stat::number_of_executed_units' "$log" | tail -1)"
    [ $code -eq 0 ] || status=1
done
logs=()
for target in "${targets[@]}"; do logs+=("tests/fuzz/logs/$target.log"); done
python3 tests/fuzz/summarise.py "${logs[@]}"  # the rows for tests/fuzz/RESULTS.md
exit $status
