#!/usr/bin/env bash
# libFuzzer runs of the parsers (tests/fuzz_payload.c), the router
# (tests/fuzz_route.c) and the HTTP framing checks (tests/fuzz_framing.c), a fixed
# number of runs each.
#
#   tests/fuzz.sh [RUNS]      (default 20000 runs per harness; `make fuzz FUZZ_RUNS=N`)
#
# Each harness is built with clang (-fsanitize=fuzzer,address,undefined) from the
# module sources it needs, straight from src/ (not the Makefile's gcc objects),
# into build/fuzz/, then run on a scratch copy of its seed corpus under
# tests/corpus/<name>/ so the checked-in corpus never grows.  Prints
# "PASS fuzz:<harness> (<N> execs)" or "FAIL fuzz:<harness>: <why>"; exits 1 on
# any failure.  Crash inputs and logs stay in build/fuzz/.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-20000}
CLANG=${CLANG:-clang}
OUT=build/fuzz
mkdir -p "$OUT"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wno-unused-parameter -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=undefined -Isrc $(pkg-config --cflags jansson)"
LIBS="$(pkg-config --libs jansson)"
failed=0

fuzz() { # harness name, corpus dir, module sources...
    local name=$1 corpus=$2; shift 2
    local bin="$OUT/fuzz_$name" log="$OUT/fuzz_$name.log" work="$OUT/corpus_$name"
    if ! command -v "$CLANG" >/dev/null; then
        echo "FAIL fuzz:$name: $CLANG not found (apt-get install clang libclang-rt-dev)"
        failed=1; return
    fi
    # shellcheck disable=SC2086
    if ! "$CLANG" $CFLAGS -o "$bin" "tests/fuzz_$name.c" "$@" $LIBS >"$log" 2>&1; then
        echo "FAIL fuzz:$name: build failed; see $log"; tail -n 20 "$log" | sed 's/^/   | /'
        failed=1; return
    fi
    rm -rf "$work"; mkdir -p "$work"
    cp "$corpus"/* "$work"/ 2>/dev/null
    local rc=0
    ( cd "$OUT" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "./fuzz_$name" -runs="$RUNS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="crash_$name-" -print_final_stats=1 "corpus_$name" ) >>"$log" 2>&1 || rc=$?
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        local why
        why=$(grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer)|runtime error|invariant broken' "$log")
        echo "FAIL fuzz:$name: exited $rc: ${why:-see $log}; crash input: $(ls "$OUT"/crash_"$name"-* 2>/dev/null | head -n 1)"
        failed=1
    elif [ -z "$execs" ] || [ "$execs" -lt "$RUNS" ]; then
        echo "FAIL fuzz:$name: ran ${execs:-no} inputs, expected $RUNS; see $log"
        failed=1
    else
        echo "PASS fuzz:$name ($execs execs)"
    fi
}

fuzz payload tests/corpus/payload src/payload.c
fuzz route tests/corpus/route src/route.c
fuzz framing tests/corpus/framing src/framing.c
exit $failed
