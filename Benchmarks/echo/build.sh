# Sourced by run.sh and instructions.sh (after bench.sh): where the echo
# builds go, and build_echo_servers, which builds the load generator, the C
# echo server and the Swift echo servers (Curio io_uring and epoll,
# SwiftNIO) unless ECHO_BUILD=0. Needs HERE and CC.
CBUILD=$HERE/.build-c
URING_SCRATCH=$HERE/.build-uring
EPOLL_SCRATCH=$HERE/.build-epoll

build_echo_servers() {
    [[ ${ECHO_BUILD:-1} != 0 ]] || return 0
    echo "== building (C -O2, Swift release)" >&2
    mkdir -p "$CBUILD"
    "$CC" -O2 -Wall -Wextra -o "$CBUILD/loadgen" "$HERE/loadgen.c" -luring
    "$CC" -O2 -Wall -Wextra -o "$CBUILD/uring_echo" "$HERE/uring_echo.c" -luring
    forget_file_lists "$URING_SCRATCH" "$EPOLL_SCRATCH"
    swift_build "$URING_SCRATCH" curio-echo
    swift_build "$URING_SCRATCH" nio-echo
    swift_build "$EPOLL_SCRATCH" curio-echo epoll
}
