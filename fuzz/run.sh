#!/usr/bin/env bash
# Runs fuzz targets one after another on the stable toolchain.
#
#   fuzz/run.sh [RUNS] [TARGET...]     (defaults: 10000000, every target)
#
# MAX_TIME (seconds, default 1020) caps each target; the summary line says how
# many executions fitted. The corpus grows in fuzz/corpus/<target> and any
# crash is written to fuzz/artifacts/<target>/ (both gitignored).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(data header command policy reply envelope reconcile)
max_time=${MAX_TIME:-1020}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

cargo fuzz build --sanitizer none
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" logs
    extra=()
    # The shipped policies seed the policy corpus.
    [ "$t" = policy ] && extra=(../policies)
    start=$(date +%s)
    set +e
    cargo fuzz run --sanitizer none "$t" "corpus/$t" "${extra[@]}" -- \
        -dict="dict/$t.dict" -runs="$runs" -max_total_time="$max_time" \
        -print_final_stats=1 >"logs/$t.log" 2>&1
    rc=$?
    set -e
    end=$(date +%s)
    execs=$(grep -o '^stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o '^stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    echo "$t: exit $rc, $execs executions in $((end - start)) s, $rate exec/s (log: fuzz/logs/$t.log)"
    [ $rc -eq 0 ] || status=1
done
exit $status
