#!/usr/bin/env bash
# Runs the Swift tests of the ThreadSanitizer and AddressSanitizer builds
# (already built by `make test-sanitizers` into .build-tsan and .build-asan)
# at the same time, each one test after another (--no-parallel), and fails
# when either run fails or reports.
#
# Why serial runs side by side: with every test at once, the instrumented
# runtime's own locks make a 2-core machine miss the tests' time limits
# (streaming megabytes, the monitor fuzzers), which says nothing about
# Curio. One test at a time keeps each test's timing what it is in a plain
# build, and a serial run mostly waits (sleeps, peers, children), so the two
# runs together take about as long as one.
#
# Usage: scripts/sanitizer-tests.sh [thread|address]...   (default: both)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SWIFT=${SWIFT:-swift}
TSAN_RUN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 history_size=4 suppressions=$PWD/scripts/tsan-suppressions.txt"
ASAN_RUN_OPTIONS="halt_on_error=1 detect_leaks=0 detect_stack_use_after_return=0 abort_on_error=0"
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(thread address)

declare -A pids logs
for kind in "${kinds[@]}"; do
    case "$kind" in
    thread) dir=.build-tsan; env_name=TSAN_OPTIONS; opts="$TSAN_RUN_OPTIONS ${TSAN_OPTIONS:-}" ;;
    address) dir=.build-asan; env_name=ASAN_OPTIONS; opts="$ASAN_RUN_OPTIONS ${ASAN_OPTIONS:-}" ;;
    *) echo "sanitizer-tests.sh: unknown sanitizer '$kind' (thread or address)" >&2; exit 2 ;;
    esac
    if [ ! -d "$dir" ]; then
        echo "sanitizer-tests.sh: $dir is missing: build it first (make test-sanitizers does)" >&2
        exit 2
    fi
    logs[$kind]="$dir/sanitizer-tests.log"
    echo "== the $kind sanitizer's test run: log in ${logs[$kind]}"
    env CURIO_SANITIZER="$kind" "$env_name=$opts" \
        "$SWIFT" test --skip-build --sanitize="$kind" --scratch-path "$dir" --no-parallel \
        ${SAN_TEST_FLAGS:-} >"${logs[$kind]}" 2>&1 &
    pids[$kind]=$!
done

status=0
for kind in "${kinds[@]}"; do
    wait "${pids[$kind]}"
    rc=$?
    log=${logs[$kind]}
    reports=$(grep -a -c 'WARNING: ThreadSanitizer\|ERROR: AddressSanitizer' "$log")
    summary=$(grep -a -E '(✔|✘) Test run with' "$log" | tail -1)
    echo "== $kind sanitizer: exit $rc, $reports report(s); ${summary:-no summary line}"
    if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
        status=1
        # What failed and what the sanitizer said, then the end of the log.
        grep -a -E '✘ .*(recorded an issue|failed after)' "$log" | head -40
        grep -a -n -A30 'WARNING: ThreadSanitizer\|ERROR: AddressSanitizer' "$log" | head -200
        echo "-- last lines of $log:"
        tail -40 "$log"
    fi
done
exit $status
