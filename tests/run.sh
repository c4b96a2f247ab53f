#!/usr/bin/env bash
# Runs test suites and prints one closing line: "N passed, N failed".
#
# Every suite prints "PASS <case>" / "FAIL <case>: <why>" lines (C unit tests via
# tests/unit.h, black-box tests via tests/harness.py).  A suite that exits non-zero
# without printing a FAIL line (a crash) counts as one failure of its own.
#   tests/run.sh all | unit | api | crowd | kill | soak | powerloss | lifecycle | starve | security | hostile |
#                framing | faults | ecosystem | fuzz | pg | pg-faults | cluster | tsan | asan | e2e | contract | tpc | proc
# tpc: the black-box suites again with --model thread-per-connection (FLASHSALE_TEST_ARGS).
# proc: tests/test_processes.py, then the black-box suites again with --model processes --processes 2.
set -u
cd "$(dirname "$0")/.."
mkdir -p tests/out
passed=0 failed=0
# ThreadSanitizer needs a non-randomized layout on kernels with large mmap_rnd_bits.
NORAND="setarch $(uname -m) -R"

suite() { # name, command...
    local name=$1; shift
    local log="tests/out/$name.log" t0=$SECONDS
    printf '== %-12s ' "$name"
    "$@" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL $name: exited $rc without a FAIL line (crash?); see $log" >>"$log"
    fi
    passed=$((passed + p)) failed=$((failed + f))
    printf '%4d passed, %d failed  (%ds)\n' "$p" "$f" $((SECONDS - t0))
    grep -E '^(FAIL|# )' "$log" | sed 's/^/   /'
    if [ "$f" -gt 0 ]; then tail -n 20 "$log" | grep -vE '^(PASS|FAIL|# )' | sed 's/^/   | /'; fi
}

units() { # build dir
    local rc=0
    for t in "$1"/test_*; do
        [ -x "$t" ] || continue
        case "$t" in *.d|*.o) continue ;; esac
        "$t" || rc=1
    done
    return $rc
}

tsan_units() {
    local rc=0
    for t in build/tsan/test_*; do
        [ -x "$t" ] || continue
        case "$t" in *.d|*.o) continue ;; esac
        TSAN_OPTIONS="halt_on_error=1" $NORAND "$t" || rc=1
    done
    return $rc
}

# The black-box suites again, each against a fresh throw-away PostgreSQL.
pg_suites() {
    local t
    for t in api crowd lifecycle security kill; do
        suite "pg-$t" python3 tests/pgserver.py -- python3 "tests/test_$t.py"
    done
    suite pg-proc-api "${PROC[@]}" python3 tests/pgserver.py -- python3 tests/test_api.py # the writer process on PostgreSQL
    suite pg-faults python3 tests/test_pgfaults.py # its own PostgreSQL, behind a proxy it breaks
}

TPC="env FLASHSALE_TEST_ARGS=--model=thread-per-connection"
tpc_suites() {
    suite tpc python3 tests/test_tpc.py
    suite tpc-api $TPC python3 tests/test_api.py
    suite tpc-crowd $TPC python3 tests/test_crowd.py
    suite tpc-kill $TPC python3 tests/test_kill.py "${KILL_ROUNDS:-3}"
    suite tpc-lifecycle $TPC python3 tests/test_lifecycle.py
    suite tpc-framing $TPC python3 tests/test_framing.py
}

# An array, not a string: the value holds spaces.
PROC=(env "FLASHSALE_TEST_ARGS=--model processes --processes 2")
proc_suites() {
    suite proc python3 tests/test_processes.py "${PROC_ROUNDS:-1}"
    suite proc-api "${PROC[@]}" python3 tests/test_api.py
    suite proc-crowd "${PROC[@]}" python3 tests/test_crowd.py atomic mutex sqlite unsafe
    suite proc-kill "${PROC[@]}" python3 tests/test_kill.py "${KILL_ROUNDS:-3}"
    suite proc-hostile "${PROC[@]}" python3 tests/test_hostile.py
    suite proc-lifecycle "${PROC[@]}" python3 tests/test_lifecycle.py
    suite proc-starve "${PROC[@]}" python3 tests/test_starve.py
    suite proc-security "${PROC[@]}" python3 tests/test_security.py
    suite proc-framing "${PROC[@]}" python3 tests/test_framing.py
    suite proc-faults "${PROC[@]}" python3 tests/test_faults.py
    suite proc-powerloss "${PROC[@]}" python3 tests/test_powerloss.py ${POWERLOSS_CUTS:-10 3 3}
}

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

what=${1:-all}
case $what in
unit) suite unit units "${2:-build}" ;;  # tests/run.sh unit build/asan runs the ASan unit binaries
api) suite api python3 tests/test_api.py ;;
crowd) suite crowd python3 tests/test_crowd.py ;;
kill) suite kill python3 tests/test_kill.py "${KILL_ROUNDS:-3}" ;;
soak) suite soak python3 tests/test_kill.py "${SOAK_KILL_ROUNDS:-120}" "${SOAK_TERM_ROUNDS:-30}" ;;
powerloss)
    suite powerloss python3 tests/test_powerloss.py ${POWERLOSS_CUTS:-10 3 3}
    suite proc-powerloss "${PROC[@]}" python3 tests/test_powerloss.py ${POWERLOSS_CUTS:-10 3 3} ;;
lifecycle) suite lifecycle python3 tests/test_lifecycle.py ;;
starve) suite starve python3 tests/test_starve.py ;;
security) suite security python3 tests/test_security.py ;;
hostile) suite hostile python3 tests/test_hostile.py ;;
framing) suite framing python3 tests/test_framing.py ;;
faults) suite faults python3 tests/test_faults.py ;;
ecosystem) suite ecosystem python3 tests/test_ecosystem.py ;;
fuzz) suite fuzz tests/fuzz.sh "${FUZZ_RUNS:-20000}" ;;
pg) pg_suites ;;
pg-faults) suite pg-faults python3 tests/test_pgfaults.py ;;
cluster) suite cluster python3 tests/test_cluster.py; suite docker python3 tests/test_docker.py ;;
tsan)
    suite tsan-unit tsan_units
    suite tsan-crowd $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite
    suite tsan-lifecycle $NORAND python3 tests/test_lifecycle.py build/tsan/flashsale
    suite tsan-tpc-crowd $TPC $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite
    suite tsan-proc-crowd "${PROC[@]}" $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite ;;
asan)
    suite asan-unit units build/asan
    suite asan-api python3 tests/test_api.py build/asan/flashsale
    suite asan-proc-api "${PROC[@]}" python3 tests/test_api.py build/asan/flashsale
    suite asan-crowd python3 tests/test_crowd.py build/asan/flashsale atomic sqlite
    suite asan-lifecycle python3 tests/test_lifecycle.py build/asan/flashsale
    suite asan-hostile python3 tests/test_hostile.py build/asan/flashsale
    suite asan-framing python3 tests/test_framing.py build/asan/flashsale
    suite asan-faults python3 tests/test_faults.py build/asan/flashsale ;;
e2e) suite e2e node tests/e2e/dashboard.test.mjs ;;
contract) suite contract python3 tests/test_contract.py ;;
tpc) tpc_suites ;;
proc) proc_suites ;;
all)
    suite unit units build
    suite api python3 tests/test_api.py
    suite crowd python3 tests/test_crowd.py
    suite kill python3 tests/test_kill.py "${KILL_ROUNDS:-3}"
    suite powerloss python3 tests/test_powerloss.py ${POWERLOSS_CUTS:-10 3 3}
    suite lifecycle python3 tests/test_lifecycle.py
    suite starve python3 tests/test_starve.py
    suite security python3 tests/test_security.py
    suite hostile python3 tests/test_hostile.py
    suite framing python3 tests/test_framing.py
    suite faults python3 tests/test_faults.py
    suite ecosystem python3 tests/test_ecosystem.py
    suite contract python3 tests/test_contract.py
    tpc_suites
    proc_suites
    suite fuzz tests/fuzz.sh "${FUZZ_RUNS:-20000}"
    if have_pg; then
        pg_suites
        suite cluster python3 tests/test_cluster.py
    fi
    suite docker python3 tests/test_docker.py
    suite tsan-unit tsan_units
    suite tsan-crowd $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite
    suite tsan-lifecycle $NORAND python3 tests/test_lifecycle.py build/tsan/flashsale
    suite tsan-tpc-crowd $TPC $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite
    # Threads inside each process (the link, the pools); between processes, test_shm.
    suite tsan-proc-crowd "${PROC[@]}" $NORAND python3 tests/test_crowd.py build/tsan/flashsale atomic mutex sqlite
    suite asan-unit units build/asan
    suite asan-api python3 tests/test_api.py build/asan/flashsale
    suite asan-proc-api "${PROC[@]}" python3 tests/test_api.py build/asan/flashsale
    suite asan-crowd python3 tests/test_crowd.py build/asan/flashsale atomic sqlite
    suite asan-lifecycle python3 tests/test_lifecycle.py build/asan/flashsale
    suite asan-hostile python3 tests/test_hostile.py build/asan/flashsale
    suite asan-framing python3 tests/test_framing.py build/asan/flashsale
    suite asan-faults python3 tests/test_faults.py build/asan/flashsale
    if [ -f tests/e2e/dashboard.test.mjs ] && command -v chromium >/dev/null && command -v node >/dev/null; then
        suite e2e node tests/e2e/dashboard.test.mjs
    fi
    ;;
*) echo "usage: tests/run.sh all|unit|api|crowd|kill|soak|powerloss|lifecycle|starve|security|hostile|framing|faults|ecosystem|fuzz|pg|pg-faults|cluster|tsan|asan|e2e|contract|tpc|proc" >&2
   exit 2 ;;
esac
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
