#!/usr/bin/env bash
# The echo benchmark (`make bench-echo`): four echo servers driven by one
# closed-loop load generator on 127.0.0.1, a Markdown table of medians.
#
#   servers  C io_uring      uring_echo.c, the ceiling
#            Curio io_uring  curio-echo, Curio's default trait
#            Curio epoll     curio-echo, Curio's Epoll trait
#            SwiftNIO        nio-echo, one event loop
#   cells    connections x message bytes: 1x100 100x100 1x16384 100x16384
#
# Every measurement starts a fresh server on port 0, runs loadgen against
# it (ECHO_WARMUP s of warm-up, then ECHO_SECONDS s counted), and kills and
# reaps the server. Rounds are interleaved: round 1 runs every cell on every
# server, then round 2, ... so that drifts of the machine hit all servers.
#
# Environment (defaults in brackets):
#   ECHO_SECONDS [3]   counted seconds per measurement
#   ECHO_ROUNDS  [3]   rounds; the table shows medians
#   ECHO_WARMUP  [0.5] warm-up seconds per measurement
#   ECHO_CELLS   ["1x100 100x100 1x16384 100x16384"]
#   ECHO_SERVERS ["c curio-uring curio-epoll curio-uring-inline curio-epoll-inline nio"]
#                (a subset for quick runs; c-zc
#                is the C server with SEND_ZC replies)
#   ECHO_PIN     [auto] where server and loadgen run (taskset, >= 2 CPUs):
#                  split  server on CPU 0, loadgen on CPU 1
#                  same   both on CPU 0
#                  none   wherever the scheduler puts them
#                  auto   same for 1 connection, split for more. One
#                         connection is a strict ping-pong that never
#                         needs two CPUs, and waking a task on an idle
#                         other CPU costs tens of microseconds on VMs
#                         (an IPI and a halted vCPU), which would swamp
#                         the servers' differences; many connections keep
#                         both sides busy and need a CPU each.
#   ECHO_MAX_OTHER [15] a measurement during which the rest of the machine
#                  used more than this % of a core is repeated ...
#   ECHO_RETRIES [3]   ... at most this many times (then kept, flagged)
#   ECHO_LOADGEN [""]  extra loadgen flags (-e: its epoll loop; -v: verify)
#   ECHO_BUILD   [1]   0 skips the builds (use what is built)
#   CC [cc], SWIFT [swift]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
# shellcheck source=../lib/bench.sh
source "$BENCH/lib/bench.sh"
# shellcheck source=build.sh
source "$HERE/build.sh"

T=${ECHO_SECONDS:-3}
ROUNDS=${ECHO_ROUNDS:-3}
WARMUP=${ECHO_WARMUP:-0.5}
CELLS=${ECHO_CELLS:-"1x100 100x100 1x16384 100x16384"}
SERVERS=${ECHO_SERVERS:-"c curio-uring curio-epoll curio-uring-inline curio-epoll-inline nio"}
PIN=${ECHO_PIN:-auto}
MAX_OTHER=${ECHO_MAX_OTHER:-15}
RETRIES=${ECHO_RETRIES:-3}
LOADGEN_FLAGS=${ECHO_LOADGEN:-}
CC=${CC:-cc}
SWIFT=${SWIFT:-swift}

declare -A NAME=([c]="C io_uring" [c-zc]="C SEND_ZC" [curio-uring]="Curio io_uring" [curio-epoll]="Curio epoll"
                 [nio]="SwiftNIO" [curio-uring-inline]="Curio io_uring, handleChunks" [curio-epoll-inline]="Curio epoll, handleChunks" [curio-g1]="Curio group x1" [curio-g2]="Curio group x2")
declare -A BIN=(
    [c]=$CBUILD/uring_echo
    [c-zc]=$CBUILD/uring_echo
    [curio-uring]=$URING_SCRATCH/release/curio-echo
    [curio-epoll]=$EPOLL_SCRATCH/release/curio-echo
    [curio-uring-inline]=$URING_SCRATCH/release/curio-echo
    [curio-epoll-inline]=$EPOLL_SCRATCH/release/curio-echo
    [curio-g1]=$URING_SCRATCH/release/curio-echo
    [curio-g2]=$URING_SCRATCH/release/curio-echo
    [nio]=$URING_SCRATCH/release/nio-echo
)
# curio-uring-inline / curio-epoll-inline: curio-echo --inline, where a
# handleChunks handler echoes (no suspension per message).
# Not in the default set: c-zc, the C server replying with IORING_OP_SEND_ZC;
# curio-g1 / curio-g2, the io_uring build on a KernelGroup of 1 or 2 kernels
# (SO_REUSEPORT listener per kernel), for scaling.
declare -A ARGS=([c-zc]="defer zc" [curio-uring-inline]="--inline" [curio-epoll-inline]="--inline" [curio-g1]="--kernels 1" [curio-g2]="--kernels 2")
BACKEND[curio-uring-inline]=io_uring
BACKEND[curio-epoll-inline]=epoll
BACKEND[curio-g1]=io_uring
BACKEND[curio-g2]=io_uring
LOADGEN=$CBUILD/loadgen
has() { [[ " $SERVERS " == *" $1 "* ]]; }
for s in $SERVERS; do
    [[ -n ${NAME[$s]:-} ]] || { echo "run.sh: unknown server '$s' (c c-zc curio-uring curio-epoll curio-uring-inline curio-epoll-inline nio curio-g1 curio-g2)" >&2; exit 2; }
done

# ------------------------------------------------------------------ build
build_echo_servers
for f in "$LOADGEN" "${BIN[@]}"; do
    [[ -x $f ]] || { echo "run.sh: $f is not built (run without ECHO_BUILD=0)" >&2; exit 1; }
done

# ------------------------------------------------------------------ servers
bench_tmp curio-echo-bench

case $PIN in auto|split|same|none) ;; *) echo "run.sh: ECHO_PIN must be auto, split, same or none" >&2; exit 2;; esac
can_pin || PIN=none
# pin_for CONNS: sets SERVER_CPUS and CLIENT_CPUS (the loadgen's).
pin_for() {
    local mode=$PIN
    [[ $mode == auto ]] && { (( $1 == 1 )) && mode=same || mode=split; }
    pin "$mode"
}

declare -A RESULTS LGCPU SVCPU SVUS
NOISY=0

# measure KEY CONNS BYTES: one measurement, repeated while the rest of the
# machine was busy (up to RETRIES more times).
measure() {
    local key=$1 conns=$2 bytes=$3 line attempt rtps lcpu scpu other flag
    pin_for "$conns"
    for attempt in $(seq 0 "$RETRIES"); do
        # shellcheck disable=SC2086
        start_server "$key" ${ARGS[$key]:-}
        # shellcheck disable=SC2086
        if ! line=$(timeout $(( ${T%.*} + 60 )) $CLIENT_CPUS "$LOADGEN" -p "$PORT" -c "$conns" -s "$bytes" \
                    -t "$T" -w "$WARMUP" -P "$SERVER_PID" $LOADGEN_FLAGS); then
            echo "run.sh: loadgen failed against ${NAME[$key]} (${conns}x${bytes})" >&2
            cat "$TMP/server.err" >&2
            exit 1
        fi
        stop_server
        read -r _ rtps _ lcpu _ scpu _ other _ <<<"$line"
        flag=""
        if awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN { exit !(o > m) }'; then
            flag="  (machine busy: other ${other}%)"
            if (( attempt < RETRIES )); then
                printf '  %-15s %3s x %5s B  %9s rt/s   discarded, other processes used %s%% CPU; again\n' \
                    "${NAME[$key]}" "$conns" "$bytes" "$rtps" "$other" >&2
                sleep 2
                continue
            fi
            NOISY=$((NOISY + 1))
        fi
        break
    done
    RESULTS[$key,$conns,$bytes]+="$rtps "
    LGCPU[$key,$conns,$bytes]+="$lcpu "
    SVCPU[$key,$conns,$bytes]+="$scpu "
    SVUS[$key,$conns,$bytes]+="$(awk -v s="$scpu" -v r="$rtps" 'BEGIN { if (r > 0) printf "%.2f", s / 100 * 1e6 / r; else print "nan" }') "
    printf '  %-15s %3s x %5s B  %9s rt/s   CPU: loadgen %5s%%, server %5s%%%s\n' \
        "${NAME[$key]}" "$conns" "$bytes" "$rtps" "$lcpu" "$scpu" "$flag" >&2
}

echo "== $ROUNDS round(s) x $(wc -w <<<"$CELLS") cells x $(wc -w <<<"$SERVERS") servers, ${WARMUP}s warm-up + ${T}s each, pinning: $PIN" >&2
one_round() {
    local cell conns bytes key
    for cell in $CELLS; do
        conns=${cell%x*} bytes=${cell#*x}
        for key in $SERVERS; do measure "$key" "$conns" "$bytes"; done
    done
}
rounds "$ROUNDS" one_round

# ------------------------------------------------------------------ report

echo
echo "Echo round trips per second (median of $ROUNDS, ${T}s each; $(nproc) CPUs, Linux $(uname -r), pinning $PIN)"
echo
header="| connections x bytes |" sep="|---|"
for key in $SERVERS; do header+=" ${NAME[$key]} |"; sep+="---:|"; done
header+=" uring/NIO | uring/C | epoll/NIO | uring/epoll |"; sep+="---:|---:|---:|---:|"
# The handleChunks servers' ratios, when they ran.
if has curio-uring-inline; then header+=" handleChunks uring/C | handleChunks uring/NIO |"; sep+="---:|---:|"; fi
if has curio-uring-inline && has curio-epoll-inline; then header+=" handleChunks uring/epoll |"; sep+="---:|"; fi
echo "$header"
echo "$sep"
declare -A MED
for cell in $CELLS; do
    conns=${cell%x*} bytes=${cell#*x}
    row="| $conns x $bytes B |"
    for key in $SERVERS; do
        MED[$key,$cell]=$(median "${RESULTS[$key,$conns,$bytes]}")
        row+=" $(fmt "${MED[$key,$cell]}") |"
    done
    u=${MED[curio-uring,$cell]:-} e=${MED[curio-epoll,$cell]:-} n=${MED[nio,$cell]:-} c=${MED[c,$cell]:-}
    row+=" $(ratio "$u" "$n") | $(ratio "$u" "$c") | $(ratio "$e" "$n") | $(ratio "$u" "$e") |"
    ui=${MED[curio-uring-inline,$cell]:-} ei=${MED[curio-epoll-inline,$cell]:-}
    if has curio-uring-inline; then row+=" $(ratio "$ui" "$c") | $(ratio "$ui" "$n") |"; fi
    if has curio-uring-inline && has curio-epoll-inline; then row+=" $(ratio "$ui" "$ei") |"; fi
    echo "$row"
done

echo
echo "Median CPU use while counting (% of one core), loadgen / server:"
echo
header="| connections x bytes |" sep="|---|"
for key in $SERVERS; do header+=" ${NAME[$key]} |"; sep+="---:|"; done
echo "$header"
echo "$sep"
for cell in $CELLS; do
    conns=${cell%x*} bytes=${cell#*x}
    row="| $conns x $bytes B |"
    for key in $SERVERS; do
        row+=" $(median "${LGCPU[$key,$conns,$bytes]}") / $(median "${SVCPU[$key,$conns,$bytes]}") |"
    done
    echo "$row"
done

echo
echo "Server CPU time per round trip (µs, median; lower is better). The load generator"
echo "does about as much kernel TCP work per round trip as a server, so when it is near"
echo "100% the round-trip rates of the fastest servers bunch together; this column"
echo "still tells them apart:"
echo
header="| connections x bytes |" sep="|---|"
for key in $SERVERS; do header+=" ${NAME[$key]} |"; sep+="---:|"; done
echo "$header"
echo "$sep"
for cell in $CELLS; do
    conns=${cell%x*} bytes=${cell#*x}
    row="| $conns x $bytes B |"
    for key in $SERVERS; do row+=" $(median "${SVUS[$key,$conns,$bytes]}") |"; done
    echo "$row"
done

if (( NOISY > 0 )); then
    echo
    echo "Warning: $NOISY measurement(s) ran while other processes used more than ${MAX_OTHER}% of a core."
fi

# Issue 12's targets, where the cells and servers needed were measured:
# at 100 x 100 B the io_uring build at least level with the raw C server
# and 1.4x SwiftNIO, with no more server CPU per round trip than C; at one
# connection io_uring never slower than epoll; the 16 KiB cells no slower
# than NIO (no regression).
if has curio-uring && has curio-epoll && has nio && has c; then
    echo
    echo "Targets (issue 12):"
    check() { target "$@"; }
    for cell in $CELLS; do
        u=${MED[curio-uring,$cell]} e=${MED[curio-epoll,$cell]} n=${MED[nio,$cell]} c=${MED[c,$cell]}
        conns=${cell%x*} bytes=${cell#*x}
        if [[ $cell == 100x100 ]]; then
            check "io_uring build / raw C at 100 x 100 B" "$(ratio "$u" "$c")" 1.0
            check "io_uring build / NIO at 100 x 100 B" "$(ratio "$u" "$n")" 1.4
            cu=$(median "${SVUS[curio-uring,$conns,$bytes]}") cc=$(median "${SVUS[c,$conns,$bytes]}")
            check "C server CPU / io_uring build server CPU per round trip at 100 x 100 B" "$(ratio "$cc" "$cu")" 1.0
        fi
        if [[ $conns == 1 && $bytes == 100 ]]; then
            check "io_uring build / epoll build at $cell" "$(ratio "$u" "$e")" 1.0
        fi
        if [[ $bytes == 16384 ]]; then
            check "io_uring build / NIO at $cell" "$(ratio "$u" "$n")" 1.0
        fi
        # The same targets for the handleChunks server, when it ran.
        if has curio-uring-inline; then
            ui=${MED[curio-uring-inline,$cell]}
            if [[ $cell == 100x100 ]]; then
                check "handleChunks io_uring / raw C at 100 x 100 B" "$(ratio "$ui" "$c")" 1.0
                check "handleChunks io_uring / NIO at 100 x 100 B" "$(ratio "$ui" "$n")" 1.4
                ci=$(median "${SVUS[curio-uring-inline,$conns,$bytes]}")
                check "C server CPU / handleChunks io_uring server CPU per round trip at 100 x 100 B" "$(ratio "$cc" "$ci")" 1.0
            fi
            if [[ $conns == 1 && $bytes == 100 ]] && has curio-epoll-inline; then
                check "handleChunks io_uring / handleChunks epoll at $cell" "$(ratio "$ui" "${MED[curio-epoll-inline,$cell]}")" 1.0
            fi
        fi
    done
fi
