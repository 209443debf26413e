#!/usr/bin/env bash
# The HTTP benchmark (`make bench-http`): hello-world GET under wrk against
# four servers on 127.0.0.1, plain HTTP and then HTTPS, interleaved rounds,
# a Markdown table of medians for each.
#
#   http     curio-uring   curio-http, Curio's default trait (io_uring)
#            curio-epoll   curio-http, Curio's Epoll trait
#            nio           nio-http, NIOHTTP1 on one event loop
#            hummingbird   hummingbird-http, Hummingbird 2 on one event loop
#   https    the same four given a certificate and key:
#            curio-https-uring, curio-https-epoll  CurioHTTP over CurioTLS
#            nio-https     NIOHTTP1 behind NIOSSL
#            hummingbird-https  Hummingbird 2 with HummingbirdTLS
#
# The HTTPS servers share one certificate (ECDSA P-256, made with openssl
# for this run); wrk keeps its connections, so a round measures requests
# over established TLS sessions, the handshakes falling in the warm-up.
#
# Every measurement starts a fresh server on port 0 (pinned to CPU 0 when
# the machine has two CPUs; wrk runs on CPU 1), warms it up, runs
# `wrk -t1 -cCONNS -dSECONDS`, reads the server's utime+stime from
# /proc/PID/stat before and after the counted run, and stops the server.
# Rounds are interleaved (round 1 runs every server, then round 2, ...) so
# that drifts of a shared machine hit all servers alike. Every wrk run is
# bounded by `timeout`, so the run ends by itself.
#
# Environment (defaults in brackets):
#   HTTP_MODES   ["http https"]  which tables
#   HTTP_SECONDS [3]    counted seconds per measurement (the issue's figure: 10)
#   HTTP_ROUNDS  [3]    rounds; the tables show medians
#   HTTP_WARMUP  [1]    warm-up seconds per measurement
#   HTTP_CONNS   [100]  wrk connections
#   HTTP_SERVERS ["curio-uring curio-epoll nio hummingbird"]
#   HTTPS_SERVERS ["curio-https-uring curio-https-epoll nio-https hummingbird-https"]
#   HTTP_PIN     [split] split: server on CPU 0, wrk on CPU 1; none: anywhere
#   HTTP_BUILD   [1]    0 skips the builds (use what is built)
#   SWIFT [swift], WRK [wrk], OPENSSL [openssl]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
# shellcheck source=../lib/bench.sh
source "$BENCH/lib/bench.sh"
URING_SCRATCH=$BENCH/echo/.build-uring
EPOLL_SCRATCH=$BENCH/echo/.build-epoll

MODES=${HTTP_MODES:-"http https"}
T=${HTTP_SECONDS:-3}
ROUNDS=${HTTP_ROUNDS:-3}
WARMUP=${HTTP_WARMUP:-1}
CONNS=${HTTP_CONNS:-100}
SERVERS=${HTTP_SERVERS:-"curio-uring curio-epoll nio hummingbird"}
TLS_SERVERS=${HTTPS_SERVERS:-"curio-https-uring curio-https-epoll nio-https hummingbird-https"}
PIN=${HTTP_PIN:-split}
SWIFT=${SWIFT:-swift}
WRK=${WRK:-wrk}
OPENSSL=${OPENSSL:-openssl}

declare -A NAME=([curio-uring]="Curio io_uring" [curio-epoll]="Curio epoll" [nio]="NIOHTTP1" [hummingbird]="Hummingbird 2")
declare -A BIN=(
    [curio-uring]=$URING_SCRATCH/release/curio-http
    [curio-epoll]=$EPOLL_SCRATCH/release/curio-http
    [nio]=$URING_SCRATCH/release/nio-http
    [hummingbird]=$URING_SCRATCH/release/hummingbird-http
)
NAME+=([curio-https-uring]="Curio io_uring + CurioTLS" [curio-https-epoll]="Curio epoll + CurioTLS"
       [nio-https]="NIOHTTP1 + NIOSSL" [hummingbird-https]="Hummingbird 2 + TLS")
BIN+=(
    [curio-https-uring]=$URING_SCRATCH/release/curio-http
    [curio-https-epoll]=$EPOLL_SCRATCH/release/curio-http
    [nio-https]=$URING_SCRATCH/release/nio-http
    [hummingbird-https]=$URING_SCRATCH/release/hummingbird-http
)  # the same servers as for http, given a certificate and key
# The server each one is compared with, per mode.
declare -A NIO=([http]=nio [https]=nio-https) HB=([http]=hummingbird [https]=hummingbird-https)
declare -A CURIO=([http]="curio-uring curio-epoll" [https]="curio-https-uring curio-https-epoll")

ALL=""
for m in $MODES; do
    case $m in
        http) ALL+=" $SERVERS" ;;
        https) ALL+=" $TLS_SERVERS" ;;
        *) echo "run.sh: unknown mode '$m' (http https)" >&2; exit 2 ;;
    esac
done
for s in $ALL; do
    [[ -n ${NAME[$s]:-} ]] || { echo "run.sh: unknown server '$s' (${!NAME[*]})" >&2; exit 2; }
done
command -v "$WRK" >/dev/null || { echo "run.sh: wrk is missing (make deps installs it)" >&2; exit 1; }

# ------------------------------------------------------------------ build
# The scratch paths are the echo benchmark's: one build serves both.
if [[ ${HTTP_BUILD:-1} != 0 ]]; then
    echo "== building (Swift release)" >&2
    forget_file_lists "$URING_SCRATCH" "$EPOLL_SCRATCH"
    for s in $ALL; do
        product=$(basename "${BIN[$s]}")
        case $s in
            *epoll*) swift_build "$EPOLL_SCRATCH" "$product" epoll ;;
            *) swift_build "$URING_SCRATCH" "$product" ;;
        esac
    done
fi
for s in $ALL; do
    [[ -x ${BIN[$s]} ]] || { echo "run.sh: ${BIN[$s]} is not built (run without HTTP_BUILD=0)" >&2; exit 1; }
done

# ------------------------------------------------------------------ servers
bench_tmp curio-http-bench
if [[ $PIN == split ]] && can_pin; then pin split; else PIN=none; pin none; fi

if [[ " $MODES " == *" https "* ]]; then
    "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>"$TMP/openssl.err" \
        || { cat "$TMP/openssl.err" >&2; exit 1; }
fi

# wrk_run SECONDS URL: wrk's report, or exits when wrk fails or hangs.
wrk_run() {
    local out
    # shellcheck disable=SC2086
    if ! out=$(timeout $(( ${1%.*} + 30 )) $CLIENT_CPUS "$WRK" -t1 -c"$CONNS" -d"${1}s" "$2"); then
        echo "run.sh: wrk failed or did not end against $2:" >&2
        echo "$out" >&2
        cat "$TMP/server.err" >&2
        exit 1
    fi
    echo "$out"
}

declare -A RPS USPR
# measure MODE KEY
measure() {
    local mode=$1 key=$2 before after out rps reqs us url
    if [[ $mode == https ]]; then
        start_server "$key" "$TMP/cert.pem" "$TMP/key.pem"
        url="https://127.0.0.1:$PORT/"
    else
        start_server "$key"
        url="http://127.0.0.1:$PORT/"
    fi
    wrk_run "$WARMUP" "$url" >/dev/null
    before=$(cpu_ticks "$SERVER_PID")
    out=$(wrk_run "$T" "$url")
    after=$(cpu_ticks "$SERVER_PID")
    stop_server
    if grep -q -e "Non-2xx" -e "Socket errors" <<<"$out"; then
        echo "run.sh: errors against ${NAME[$key]}:" >&2
        echo "$out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    us=$(us_per "$before" "$after" "$reqs")
    RPS[$key]+="$rps "
    USPR[$key]+="$us "
    printf '  %-26s %10s req/s   %6s µs server CPU per request\n' "${NAME[$key]}" "$rps" "$us" >&2
}

one_round() {
    local m key
    for m in $MODES; do
        if [[ $m == https ]]; then for key in $TLS_SERVERS; do measure "$m" "$key"; done
        else for key in $SERVERS; do measure "$m" "$key"; done; fi
    done
}

echo "== $ROUNDS round(s) x $(wc -w <<<"$ALL") servers ($MODES), wrk -t1 -c$CONNS, ${WARMUP}s warm-up + ${T}s each, pinning: $PIN" >&2
rounds "$ROUNDS" one_round

# ------------------------------------------------------------------ report
# report MODE KEYS MIN_NIO MIN_HB
report() {
    local mode=$1 keys=$2 key n h
    declare -A MR MU
    for key in $keys; do
        MR[$key]=$(median "${RPS[$key]}")
        MU[$key]=$(median "${USPR[$key]}")
    done
    n=${MR[${NIO[$mode]}]:-} h=${MR[${HB[$mode]}]:-}
    echo
    if [[ $mode == https ]]; then echo -n "HTTPS (TLS 1.3, ECDSA P-256) hello-world GET"; else echo -n "Hello-world GET"; fi
    echo ", wrk -t1 -c$CONNS -d${T}s, median of $ROUNDS interleaved rounds ($(nproc) CPUs, Linux $(uname -r), pinning $PIN)"
    echo
    echo "| server | requests/s | server CPU µs/request | vs ${NAME[${NIO[$mode]}]} | vs ${NAME[${HB[$mode]}]} |"
    echo "|---|---:|---:|---:|---:|"
    for key in $keys; do
        echo "| ${NAME[$key]} | $(fmt "${MR[$key]}") | ${MU[$key]} | $(ratio "${MR[$key]}" "$n") | $(ratio "${MR[$key]}" "$h") |"
    done
    [[ -n $n && -n $h ]] || return 0
    echo
    echo "Targets (issue 8, requests/s as same-run ratios):"
    for key in ${CURIO[$mode]}; do
        [[ -n ${MR[$key]:-} ]] || continue
        target "${NAME[$key]} / ${NAME[${NIO[$mode]}]}" "$(ratio "${MR[$key]}" "$n")" "$3"
        target "${NAME[$key]} / ${NAME[${HB[$mode]}]}" "$(ratio "${MR[$key]}" "$h")" "$4"
    done
}
for m in $MODES; do
    # Plain HTTP: >= 1.5x NIOHTTP1 and >= 2x Hummingbird; HTTPS: ahead of both.
    if [[ $m == https ]]; then report https "$TLS_SERVERS" 1.0 1.0; else report http "$SERVERS" 1.5 2.0; fi
done
