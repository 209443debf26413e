# Shared by the benchmark scripts (Benchmarks/echo/run.sh,
# Benchmarks/http/run.sh): building the Swift servers, starting and stopping
# one server at a time, CPU pinning, server CPU time, interleaved rounds and
# the numbers of the report. Source it after `set -euo pipefail`; the script
# sets NAME and BIN (associative arrays: server key -> label, executable)
# before calling start_server.
#
# A server prints "PORT <n>" once it listens (and Curio's servers
# "BACKEND io_uring|epoll" before that). Keys starting curio-uring or
# curio-epoll (curio-uring-4k, curio-https-epoll, ...) must report that
# backend; set BACKEND[key] to override.

# bench_tmp PREFIX: a temporary directory in TMP, removed (with the server
# stopped) when the script exits, also on Ctrl-C.
bench_tmp() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() { stop_server; rm -rf "${TMP:-}"; }

# swift_build SCRATCH PRODUCT [epoll]: a release build of one product of the
# Benchmarks package; "epoll" builds it against Curio's Epoll trait.
swift_build() {
    local scratch=$1 product=$2
    (
        cd "$BENCH"
        if [[ ${3:-} == epoll ]]; then
            CURIO_BENCH_EPOLL=1 "$SWIFT" build -c release --scratch-path "$scratch" --product "$product"
        else
            "$SWIFT" build -c release --scratch-path "$scratch" --product "$product"
        fi
    ) >&2
}

# forget_file_lists SCRATCH...: a path dependency's file list is cached with
# the build; dropping it makes files added to the root package since the
# first build visible.
forget_file_lists() {
    local s
    for s in "$@"; do rm -f "$s/release/description.json"; done
}

# pin MODE: sets SERVER_CPUS and CLIENT_CPUS (taskset prefixes) for split
# (server CPU 0, client CPU 1), same (both CPU 0) or none. Without two CPUs
# or taskset, everything is none.
pin() {
    SERVER_CPUS="" CLIENT_CPUS=""
    if (( $(nproc) < 2 )) || ! command -v taskset >/dev/null; then return; fi
    case $1 in
        split) SERVER_CPUS="taskset -c 0" CLIENT_CPUS="taskset -c 1" ;;
        same) SERVER_CPUS="taskset -c 0" CLIENT_CPUS="taskset -c 0" ;;
    esac
}
can_pin() { (( $(nproc) >= 2 )) && command -v taskset >/dev/null; }

SERVER_PID=""
declare -A BACKEND=()

# start_server KEY [ARG...]: starts BIN[KEY] with port 0 and ARGs on
# SERVER_CPUS; sets SERVER_PID and PORT, or exits with the server's stderr.
start_server() {
    local key=$1 out=$TMP/server.out
    shift
    : >"$out"
    # shellcheck disable=SC2086
    $SERVER_CPUS "${BIN[$key]}" 0 "$@" >"$out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    PORT=""
    local _i
    for _i in $(seq 500); do
        PORT=$(awk '/^PORT /{print $2; exit}' "$out")
        [[ -n $PORT ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.02
    done
    if [[ -z $PORT ]]; then
        echo "$(basename "$0"): ${NAME[$key]} did not start:" >&2
        cat "$TMP/server.err" >&2
        exit 1
    fi
    # The Curio builds must really run on the backend they are named after.
    local want=${BACKEND[$key]:-}
    if [[ -z $want ]]; then
        case $key in
            curio-uring*|curio-*-uring*) want=io_uring ;;
            curio-epoll*|curio-*-epoll*) want=epoll ;;
        esac
    fi
    if [[ -n $want ]] && ! grep -qx "BACKEND $want" "$out"; then
        echo "$(basename "$0"): ${NAME[$key]} runs on '$(awk '/^BACKEND/{print $2}' "$out")', not $want" >&2
        exit 1
    fi
}

# stop_server: SIGTERM, a second to go, then SIGKILL; reaped either way.
stop_server() {
    if [[ -n ${SERVER_PID:-} ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local _i
        for _i in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.02; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

# cpu_ticks PID: utime + stime of every thread of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
# us_per TICKS_BEFORE TICKS_AFTER COUNT: CPU microseconds per unit of work.
us_per() {
    awk -v a="$2" -v b="$1" -v t="$TICK" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "nan" }'
}

# rounds N FUNCTION: runs FUNCTION N times, interleaved rounds being the
# caller's FUNCTION measuring every server once each.
rounds() {
    local r
    for r in $(seq "$1"); do
        echo "-- round $r" >&2
        "$2" "$r"
    done
}

# median "V1 V2 ...": the median (nan when empty).
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
# ratio A B: A/B with 2 decimals, or n/a.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
# fmt 123456.5: 123,457
fmt() {
    awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") { print "n/a"; exit }
        s = sprintf("%.0f", v); o = ""
        while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'
}
# target LABEL VALUE MIN: "- LABEL: VALUE (>= MIN) met|MISSED"
target() {
    local ok
    ok=$(awk -v v="$2" -v m="$3" 'BEGIN { print (v != "n/a" && v + 0 >= m) ? "met" : "MISSED" }')
    echo "- $1: $2 (>= $3) $ok"
}
