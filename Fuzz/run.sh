#!/bin/sh
# Builds the libFuzzer targets in Fuzz/ against the Swisted sources and runs
# each one for FUZZ_SECONDS (default 30) with its committed seed corpus
# (Fuzz/corpus/<target>/) plus a scratch corpus (.build-fuzz/corpus/<target>/,
# not committed). Exits non-zero if any target crashes, fails an invariant,
# leaks, times out or runs out of memory; the input that did it is saved as
# .build-fuzz/artifacts/<target>-crash-... (replay it:
# SWIFT_BACKTRACE=enable=no .build-fuzz/<target> FILE).
#
#   Fuzz/run.sh                 all targets
#   Fuzz/run.sh lines netstring some of them
#   FUZZ_SECONDS=600 Fuzz/run.sh lines
#
# How it builds (swiftc directly; SwiftPM would need the fuzz targets in
# Package.swift, and they cannot link without -sanitize=fuzzer): the Swisted
# and SwistedTesting sources become two static libraries instrumented with
# -sanitize=fuzzer,address (-enable-testing, so a target can
# `@testable import Swisted` to reach the internal address parsing), then
# each target is Fuzz/Support.swift + Fuzz/<target>.swift linked with them
# and -luv. -O keeps the fuzzer fast; -assert-config Debug keeps assert().
# Swisted logs through swift-log: its Logging module is built too (plain -O,
# not instrumented), from SwiftPM's checkout (`swift package resolve`).
set -eu
cd "$(dirname "$0")/.."

SWIFTC=${SWIFTC:-swiftc}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
OUT=.build-fuzz
ALL_TARGETS="lines lineonly netstring intn address"
TARGETS=${*:-$ALL_TARGETS}
FLAGS="-swift-version 6 -package-name swisted -sanitize=fuzzer,address -O -assert-config Debug -I CLibUV -I $OUT"
# ld.lld: gold prints a warning for every ASan symbol it cannot export.
LINK="-L $OUT -lSwistedTesting -lSwisted $(pkg-config --libs libuv) -use-ld=lld"

mkdir -p "$OUT/logs" "$OUT/artifacts"

# A library is rebuilt when any of its sources (or this script) is newer.
stale() {  # stale OUTPUT DIR...
    [ ! -f "$1" ] && return 0
    out=$1; shift
    [ -n "$(find "$@" Fuzz/run.sh -newer "$out" -name '*.s[wh]*' -print -quit)" ]
}

if grep -rqs '^import Logging' Sources/Swisted; then
    LOGGING=.build/checkouts/swift-log/Sources/Logging
    [ -d "$LOGGING" ] || ${SWIFT:-swift} package resolve
    if stale "$OUT/libLogging.a" "$LOGGING"; then
        echo "fuzz: building Logging (swift-log)"
        # shellcheck disable=SC2046
        $SWIFTC -swift-version 5 -O -parse-as-library -wmo -module-name Logging -package-name swift_log \
            -emit-library -static -emit-module -emit-module-path "$OUT/Logging.swiftmodule" \
            -o "$OUT/libLogging.a" $(find "$LOGGING" -name '*.swift' | sort)
    fi
    LINK="$LINK -lLogging"
fi

if stale "$OUT/libSwisted.a" Sources/Swisted CLibUV; then
    echo "fuzz: building Swisted (instrumented)"
    # shellcheck disable=SC2046
    $SWIFTC $FLAGS -parse-as-library -wmo -enable-testing -module-name Swisted \
        -emit-library -static -emit-module -emit-module-path "$OUT/Swisted.swiftmodule" \
        -o "$OUT/libSwisted.a" $(find Sources/Swisted -name '*.swift' | sort)
fi
if stale "$OUT/libSwistedTesting.a" Sources/SwistedTesting Sources/Swisted; then
    echo "fuzz: building SwistedTesting (instrumented)"
    # shellcheck disable=SC2046
    $SWIFTC $FLAGS -parse-as-library -wmo -module-name SwistedTesting \
        -emit-library -static -emit-module -emit-module-path "$OUT/SwistedTesting.swiftmodule" \
        -o "$OUT/libSwistedTesting.a" $(find Sources/SwistedTesting -name '*.swift' | sort)
fi

for target in $TARGETS; do
    binary="$OUT/$target"
    if [ ! -f "$binary" ] || [ "$OUT/libSwistedTesting.a" -nt "$binary" ] || [ "$OUT/libSwisted.a" -nt "$binary" ] \
        || [ Fuzz/Support.swift -nt "$binary" ] || [ "Fuzz/$target.swift" -nt "$binary" ]; then
        echo "fuzz: building $target"
        # shellcheck disable=SC2086
        $SWIFTC $FLAGS -parse-as-library -module-name "fuzz_$target" Fuzz/Support.swift "Fuzz/$target.swift" $LINK -o "$binary"
    fi
done

failed=""
# corpus: libFuzzer's at the end (units/bytes, seeds included); cov: edges covered.
printf '%-10s %8s %10s %8s %6s %14s %6s\n' target seconds execs exec/s seeds corpus cov
for target in $TARGETS; do
    mkdir -p "$OUT/corpus/$target"
    log="$OUT/logs/$target.log"
    # SWIFT_BACKTRACE=enable=no: Swift's own crash backtracer would get in ASan's and libFuzzer's way.
    if SWIFT_BACKTRACE=enable=no "./$OUT/$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
        -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$target-" \
        "$OUT/corpus/$target" "Fuzz/corpus/$target" >"$log" 2>&1 </dev/null; then
        status=ok
    else
        status=FAILED
        failed="$failed $target"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    seeds=$(find "Fuzz/corpus/$target" -type f | wc -l | tr -d ' ')
    corpus=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-10s %8s %10s %8s %6s %14s %6s %s\n' "$target" "${secs:-?}" "${execs:-?}" "${rate:-?}" \
        "$seeds" "${corpus:-?}" "${cov:-?}" "$status"
    if [ "$status" = FAILED ]; then
        grep -E 'FUZZ INVARIANT|ERROR: |SUMMARY|Fatal error|Test unit written' "$log" | head -20 | sed 's/^/    /'
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed (logs in $OUT/logs/, inputs in $OUT/artifacts/)"
    exit 1
fi
echo "fuzz: all targets ran ${SECONDS_PER_TARGET}s each without a failure"
