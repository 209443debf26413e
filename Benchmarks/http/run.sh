#!/usr/bin/env bash
# The HTTP benchmark (`make bench-http`): hello-world GET under wrk against
# four servers on 127.0.0.1, interleaved rounds, a Markdown table of medians.
#
#   servers  curio-uring   curio-http, Curio's default trait (io_uring)
#            curio-epoll   curio-http, Curio's Epoll trait
#            nio           nio-http, NIOHTTP1 on one event loop
#            hummingbird   hummingbird-http, Hummingbird 2 on one event loop
#
# Every measurement starts a fresh server on port 0 (pinned to CPU 0 when
# the machine has two CPUs; wrk runs on CPU 1), warms it up, runs
# `wrk -t1 -cCONNS -dSECONDS`, reads the server's utime+stime from
# /proc/PID/stat before and after the counted run, and stops the server.
# Rounds are interleaved (round 1 runs every server, then round 2, ...) so
# that drifts of a shared machine hit all servers alike.
#
# Environment (defaults in brackets):
#   HTTP_SECONDS [3]    counted seconds per measurement (the issue's figure: 10)
#   HTTP_ROUNDS  [3]    rounds; the table shows medians
#   HTTP_WARMUP  [1]    warm-up seconds per measurement
#   HTTP_CONNS   [100]  wrk connections
#   HTTP_SERVERS ["curio-uring curio-epoll nio hummingbird"]
#   HTTP_PIN     [split] split: server on CPU 0, wrk on CPU 1; none: anywhere
#   HTTP_BUILD   [1]    0 skips the builds (use what is built)
#   SWIFT [swift], WRK [wrk]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
URING_SCRATCH=$BENCH/echo/.build-uring
EPOLL_SCRATCH=$BENCH/echo/.build-epoll

T=${HTTP_SECONDS:-3}
ROUNDS=${HTTP_ROUNDS:-3}
WARMUP=${HTTP_WARMUP:-1}
CONNS=${HTTP_CONNS:-100}
SERVERS=${HTTP_SERVERS:-"curio-uring curio-epoll nio hummingbird"}
PIN=${HTTP_PIN:-split}
SWIFT=${SWIFT:-swift}
WRK=${WRK:-wrk}

declare -A NAME=([curio-uring]="Curio io_uring" [curio-epoll]="Curio epoll" [nio]="NIOHTTP1" [hummingbird]="Hummingbird 2")
declare -A BIN=(
    [curio-uring]=$URING_SCRATCH/release/curio-http
    [curio-epoll]=$EPOLL_SCRATCH/release/curio-http
    [nio]=$URING_SCRATCH/release/nio-http
    [hummingbird]=$URING_SCRATCH/release/hummingbird-http
)
for s in $SERVERS; do
    [[ -n ${NAME[$s]:-} ]] || { echo "run.sh: unknown server '$s' (curio-uring curio-epoll nio hummingbird)" >&2; exit 2; }
done
command -v "$WRK" >/dev/null || { echo "run.sh: wrk is missing (make deps installs it)" >&2; exit 1; }

# ------------------------------------------------------------------ build
# The scratch paths are the echo benchmark's: one build serves both.
if [[ ${HTTP_BUILD:-1} != 0 ]]; then
    echo "== building (Swift release)" >&2
    # A path dependency's file list is cached with the build: drop it so
    # files added to the root package since the first build are seen.
    rm -f "$URING_SCRATCH/release/description.json" "$EPOLL_SCRATCH/release/description.json"
    (
        cd "$BENCH"
        for s in $SERVERS; do
            case $s in
                curio-uring) "$SWIFT" build -c release --scratch-path "$URING_SCRATCH" --product curio-http ;;
                curio-epoll) CURIO_BENCH_EPOLL=1 "$SWIFT" build -c release --scratch-path "$EPOLL_SCRATCH" --product curio-http ;;
                nio) "$SWIFT" build -c release --scratch-path "$URING_SCRATCH" --product nio-http ;;
                hummingbird) "$SWIFT" build -c release --scratch-path "$URING_SCRATCH" --product hummingbird-http ;;
            esac
        done
    ) >&2
fi
for s in $SERVERS; do
    [[ -x ${BIN[$s]} ]] || { echo "run.sh: ${BIN[$s]} is not built (run without HTTP_BUILD=0)" >&2; exit 1; }
done

# ------------------------------------------------------------------ servers
TMP=$(mktemp -d /tmp/curio-http-bench.XXXXXX)
SERVER_PID=""
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.02; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() { stop_server; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

SERVER_CPUS="" WRK_CPUS=""
if [[ $PIN == split ]] && (( $(nproc) >= 2 )) && command -v taskset >/dev/null; then
    SERVER_CPUS="taskset -c 0" WRK_CPUS="taskset -c 1"
else
    PIN=none
fi

# start_server KEY: sets SERVER_PID and PORT.
start_server() {
    local key=$1 out=$TMP/server.out
    : >"$out"
    # shellcheck disable=SC2086
    $SERVER_CPUS "${BIN[$key]}" 0 >"$out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 500); do
        PORT=$(awk '/^PORT /{print $2; exit}' "$out")
        [[ -n $PORT ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.02
    done
    if [[ -z $PORT ]]; then
        echo "run.sh: ${NAME[$key]} did not start:" >&2
        cat "$TMP/server.err" >&2
        exit 1
    fi
    local want=""
    [[ $key == curio-uring ]] && want=io_uring
    [[ $key == curio-epoll ]] && want=epoll
    if [[ -n $want ]] && ! grep -qx "BACKEND $want" "$out"; then
        echo "run.sh: ${NAME[$key]} runs on '$(awk '/^BACKEND/{print $2}' "$out")', not $want" >&2
        exit 1
    fi
}

# CPU ticks (utime + stime, in clock ticks) of every thread of PID.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

declare -A RPS USPR
measure() {
    local key=$1 before after out rps reqs us
    start_server "$key"
    # shellcheck disable=SC2086
    $WRK_CPUS "$WRK" -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PORT/" >/dev/null
    before=$(cpu_ticks "$SERVER_PID")
    # shellcheck disable=SC2086
    out=$($WRK_CPUS "$WRK" -t1 -c"$CONNS" -d"${T}s" "http://127.0.0.1:$PORT/")
    after=$(cpu_ticks "$SERVER_PID")
    stop_server
    if grep -q -e "Non-2xx" -e "Socket errors" <<<"$out"; then
        echo "run.sh: errors against ${NAME[$key]}:" >&2
        echo "$out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    us=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "nan" }')
    RPS[$key]+="$rps "
    USPR[$key]+="$us "
    printf '  %-15s %10s req/s   %6s µs server CPU per request\n' "${NAME[$key]}" "$rps" "$us" >&2
}

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
fmt() {
    awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") { print "n/a"; exit }
        s = sprintf("%.0f", v); o = ""
        while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'
}

echo "== $ROUNDS round(s) x $(wc -w <<<"$SERVERS") servers, wrk -t1 -c$CONNS, ${WARMUP}s warm-up + ${T}s each, pinning: $PIN" >&2
for r in $(seq "$ROUNDS"); do
    echo "-- round $r" >&2
    for key in $SERVERS; do measure "$key"; done
done

# ------------------------------------------------------------------ report
declare -A MR MU
for key in $SERVERS; do
    MR[$key]=$(median "${RPS[$key]}")
    MU[$key]=$(median "${USPR[$key]}")
done
n=${MR[nio]:-} h=${MR[hummingbird]:-}
echo
echo "Hello-world GET, wrk -t1 -c$CONNS -d${T}s, median of $ROUNDS interleaved rounds ($(nproc) CPUs, Linux $(uname -r), pinning $PIN)"
echo
echo "| server | requests/s | server CPU µs/request | vs NIOHTTP1 | vs Hummingbird 2 |"
echo "|---|---:|---:|---:|---:|"
for key in $SERVERS; do
    echo "| ${NAME[$key]} | $(fmt "${MR[$key]}") | ${MU[$key]} | $(ratio "${MR[$key]}" "$n") | $(ratio "${MR[$key]}" "$h") |"
done
if [[ -n $n && -n $h ]]; then
    echo
    echo "Targets (issue 8, requests/s as same-run ratios):"
    for key in curio-uring curio-epoll; do
        [[ -n ${MR[$key]:-} ]] || continue
        for pair in "nio 1.5" "hummingbird 2.0"; do
            read -r other min <<<"$pair"
            v=$(ratio "${MR[$key]}" "${MR[$other]}")
            ok=$(awk -v v="$v" -v m="$min" 'BEGIN { print (v != "n/a" && v + 0 >= m) ? "met" : "MISSED" }')
            echo "- ${NAME[$key]} / ${NAME[$other]}: $v (>= $min) $ok"
        done
    done
fi
