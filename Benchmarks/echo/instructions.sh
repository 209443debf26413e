#!/usr/bin/env bash
# User-space instructions per echo round trip (`make bench-echo-instructions`):
# each echo server runs under callgrind while loadgen drives it, and the
# count covers exactly loadgen's counted round trips (loadgen zeroes the
# server's counters when counting starts and dumps them when it stops,
# through LOADGEN_MARK_START / LOADGEN_MARK_END). Instruction counts do not
# depend on how busy the machine is, so this tells servers apart where the
# round-trip rates of run.sh bunch together (on 2 cores the load generator
# bounds every fast server). Kernel work (the TCP stack, io_uring's own
# processing) is not counted: callgrind sees user space only.
#
#   servers  as in run.sh, plus
#            curio-uring-stream  curio-echo --stream (receiveChunks) on io_uring
#            curio-epoll-stream  the same on epoll
#            curio-uring-inline  curio-echo --inline (handleChunks) on io_uring
#            curio-epoll-inline  the same on epoll
#
# Environment (defaults in brackets):
#   INSTR_SECONDS [4]  counted seconds per measurement (under callgrind a
#                      server runs some 50x slower: a few thousand round trips)
#   INSTR_CELLS   ["1x100 100x100"]
#   INSTR_SERVERS ["c curio-uring curio-uring-stream curio-uring-inline curio-epoll
#                 curio-epoll-stream curio-epoll-inline nio"]
#   INSTR_KEEP    [""] a directory to keep each count's callgrind file in
#                      (<server>-<cell>.callgrind; read with callgrind_annotate)
#   ECHO_BUILD    [1]  0 skips the builds
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
# shellcheck source=../lib/bench.sh
source "$BENCH/lib/bench.sh"
# shellcheck source=build.sh
source "$HERE/build.sh"

T=${INSTR_SECONDS:-4}
CELLS=${INSTR_CELLS:-"1x100 100x100"}
SERVERS=${INSTR_SERVERS:-"c curio-uring curio-uring-stream curio-uring-inline curio-epoll curio-epoll-stream curio-epoll-inline nio"}
CC=${CC:-cc}
SWIFT=${SWIFT:-swift}

command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
    echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 1
}

declare -A NAME=([c]="C io_uring" [curio-uring]="Curio io_uring" [curio-uring-stream]="Curio io_uring, receiveChunks"
    [curio-epoll]="Curio epoll" [curio-epoll-stream]="Curio epoll, receiveChunks"
    [curio-uring-inline]="Curio io_uring, handleChunks" [curio-epoll-inline]="Curio epoll, handleChunks" [nio]="SwiftNIO")
declare -A BIN=(
    [c]=$CBUILD/uring_echo
    [curio-uring]=$URING_SCRATCH/release/curio-echo
    [curio-uring-stream]=$URING_SCRATCH/release/curio-echo
    [curio-epoll]=$EPOLL_SCRATCH/release/curio-echo
    [curio-epoll-stream]=$EPOLL_SCRATCH/release/curio-echo
    [curio-uring-inline]=$URING_SCRATCH/release/curio-echo
    [curio-epoll-inline]=$EPOLL_SCRATCH/release/curio-echo
    [nio]=$URING_SCRATCH/release/nio-echo
)
declare -A ARGS=([curio-uring-stream]=--stream [curio-epoll-stream]=--stream
    [curio-uring-inline]=--inline [curio-epoll-inline]=--inline)
declare -A BACKEND=([curio-uring-stream]=io_uring [curio-epoll-stream]=epoll
    [curio-uring-inline]=io_uring [curio-epoll-inline]=epoll)
LOADGEN=$CBUILD/loadgen
for s in $SERVERS; do
    [[ -n ${NAME[$s]:-} ]] || { echo "instructions.sh: unknown server '$s'" >&2; exit 2; }
done

build_echo_servers

bench_tmp curio-echo-instructions
# Valgrind 3.19 cannot read the DWARF 5 that Swift emits and gives up on the
# whole binary: run copies without debug sections (symbols stay, which is
# all a total needs; callgrind_annotate still names functions).
for key in $SERVERS; do
    # Named by server: the io_uring and epoll builds share a file name.
    stripped=$TMP/$key-$(basename "${BIN[$key]}")
    strip --strip-debug -o "$stripped" "${BIN[$key]}"
    BIN[$key]=$stripped
done
declare -A PER_RT
for cell in $CELLS; do
    conns=${cell%x*} bytes=${cell#*x}
    for key in $SERVERS; do
        # Everything on one CPU: callgrind runs the server's threads one at
        # a time anyway, and the count does not depend on placement.
        pin same
        SERVER_CPUS="$SERVER_CPUS valgrind --tool=callgrind --callgrind-out-file=$TMP/cg.%p"
        # shellcheck disable=SC2086
        start_server "$key" ${ARGS[$key]:-}
        pid=$SERVER_PID
        rm -f "$TMP"/cg."$pid".*
        line=$(LOADGEN_MARK_START="callgrind_control -z $pid >/dev/null 2>&1" \
               LOADGEN_MARK_END="callgrind_control -d $pid >/dev/null 2>&1" \
               timeout $((T + 120)) $CLIENT_CPUS "$LOADGEN" -p "$PORT" -c "$conns" -s "$bytes" -t "$T" -w 2) || {
            echo "instructions.sh: loadgen failed against ${NAME[$key]} (${conns}x${bytes})" >&2
            cat "$TMP/server.err" >&2
            exit 1
        }
        stop_server
        rounds=$(awk '{ for (i = 1; i < NF; i++) if ($i == "ROUNDS") print $(i + 1) }' <<<"$line")
        # The dump made at the end of counting: its "totals:" line is the
        # instructions (Ir) since the zeroing, every thread together.
        dump=$(ls "$TMP"/cg."$pid".* 2>/dev/null | sort | head -1 || true)
        ir=$(awk '/^(totals|summary):/ { print $2; exit }' "${dump:-/dev/null}")
        if [[ -z $ir || -z $rounds || $rounds == 0 ]]; then
            echo "instructions.sh: no count for ${NAME[$key]} (${conns}x${bytes}): dump '${dump:-none}', rounds '${rounds:-}'" >&2
            exit 1
        fi
        if [[ -n ${INSTR_KEEP:-} ]]; then
            mkdir -p "$INSTR_KEEP"
            cp "$dump" "$INSTR_KEEP/$key-$cell.callgrind"
        fi
        PER_RT[$key,$cell]=$(awk -v i="$ir" -v r="$rounds" 'BEGIN { printf "%.0f", i / r }')
        printf '  %-30s %3s x %5s B  %7s round trips  %12s instructions  %7s per round trip\n' \
            "${NAME[$key]}" "$conns" "$bytes" "$rounds" "$ir" "${PER_RT[$key,$cell]}" >&2
    done
done

echo
echo "User-space instructions per echo round trip (callgrind, ${T}s counted; lower is better)"
echo
header="| connections x bytes |" sep="|---|"
for key in $SERVERS; do header+=" ${NAME[$key]} |"; sep+="---:|"; done
echo "$header"
echo "$sep"
for cell in $CELLS; do
    row="| ${cell%x*} x ${cell#*x} B |"
    for key in $SERVERS; do row+=" $(fmt "${PER_RT[$key,$cell]}") |"; done
    echo "$row"
done
