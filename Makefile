# Curio for Swift — build, test and run.
#
#   make deps    install liburing-dev and libssl-dev (CurioTLS) when their headers are
#                missing, and the openssl CLI the TLS tests use (apt, non-interactive)
#   make ctest   build and run the C kernel's unit tests (io_uring build and epoll-only build)
#   make test    ctest, the consumer check, the Swift tests for the default (io_uring)
#                and Epoll builds, then make test-sanitizers
#   make test-sanitizers  the Swift tests of the default build built with
#                --sanitize=thread (.build-tsan) and --sanitize=address (.build-asan),
#                both runs at once, each serial (scripts/sanitizer-tests.sh)
#   make test-tsan / test-asan   one of the two
#   make consumer  build and run a package that depends on Curio by URL and version
#                (default traits and traits: ["Epoll"]; scripts/consumer-check.sh)
#   make docs    build the DocC documentation of Curio (no warnings allowed)
#   make demo    build and run curio-demo (release)
#   make bench   run the benchmark package (Benchmarks/)
#   make bench-echo  the echo benchmark: C io_uring, Curio (io_uring, epoll; recv
#                and handleChunks) and SwiftNIO echo servers under one load
#                generator (Benchmarks/echo/)
#   make bench-echo-instructions  user-space instructions per echo round trip
#                (callgrind) for the same servers and the streaming receive
#   make bench-http  the HTTP benchmark: CurioHTTP (io_uring, epoll), NIOHTTP1 and
#                Hummingbird 2 hello-world servers under wrk (Benchmarks/http/)
#   make clean   remove every build directory
#
# Extra flags for `swift test` (e.g. --parallel, --filter X): make test SWIFT_TEST_FLAGS=...

SHELL := /bin/bash
.DEFAULT_GOAL := test

SWIFT ?= swift
SWIFT_TEST_FLAGS ?=
CC ?= cc
LIBURING_H ?= /usr/include/liburing.h
OPENSSL_H ?= /usr/include/openssl/ssl.h
WRK ?= /usr/bin/wrk
SUDO := $(shell [ $$(id -u) -eq 0 ] || echo sudo)

KERNEL_DIR := CSources/CCurioKernel
KERNEL_SRCS := $(wildcard $(KERNEL_DIR)/*/*.c)
KERNEL_HDRS := $(wildcard $(KERNEL_DIR)/*/*.h)
CTEST_SRC := Tests/CKernelTests/ck_test.c
CTEST_DIR := .build-ctest
CTEST_CFLAGS := -std=c11 -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all \
	-DCK_FAULT_INJECTION -I$(KERNEL_DIR)/include

.PHONY: deps ctest test test-sanitizers test-tsan test-asan demo bench bench-echo bench-http clean consumer docs

deps:
	@if [ ! -f $(LIBURING_H) ]; then \
		echo "liburing.h is missing: installing liburing-dev"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends liburing-dev; \
	fi
	@if [ ! -f $(OPENSSL_H) ] || ! command -v openssl >/dev/null; then \
		echo "OpenSSL 3 headers or CLI missing: installing libssl-dev and openssl"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libssl-dev openssl; \
	fi
	@if ! command -v python3 >/dev/null; then \
		echo "python3 is missing (a TLS test peer): installing python3"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3; \
	fi
	@if [ ! -x $(WRK) ]; then \
		echo "wrk is missing (CurioHTTP's load test, make bench-http): installing wrk"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; \
	fi

# Two binaries: io_uring compiled in (each test runs on io_uring, epoll and
# the io_uring -> epoll fallback) and epoll only (-DCURIO_EPOLL_ONLY, no liburing).
$(CTEST_DIR)/ck_test: $(CTEST_SRC) $(KERNEL_SRCS) $(KERNEL_HDRS) | deps
	@mkdir -p $(CTEST_DIR)
	$(CC) $(CTEST_CFLAGS) $(CTEST_SRC) $(KERNEL_SRCS) -o $@ -luring -lpthread

$(CTEST_DIR)/ck_test_epoll: $(CTEST_SRC) $(KERNEL_SRCS) $(KERNEL_HDRS)
	@mkdir -p $(CTEST_DIR)
	$(CC) $(CTEST_CFLAGS) -DCURIO_EPOLL_ONLY $(CTEST_SRC) $(KERNEL_SRCS) -o $@ -lpthread

ctest: deps $(CTEST_DIR)/ck_test $(CTEST_DIR)/ck_test_epoll
	$(CTEST_DIR)/ck_test
	$(CTEST_DIR)/ck_test_epoll

test: deps ctest
	scripts/consumer-check.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test $(SWIFT_TEST_FLAGS)
	$(SWIFT) build --build-tests --traits Epoll --scratch-path .build-epoll
	$(SWIFT) test --traits Epoll --scratch-path .build-epoll $(SWIFT_TEST_FLAGS)
	$(MAKE) test-sanitizers

# Sanitizer runs of the default build, each in its own scratch path. Any
# report fails the run: TSan and ASan exit non-zero at the end of a process
# that reported (children the tests start are the same instrumented binary
# or plain programs, and a child that reports fails its test through its
# exit status). One TSan suppression, of a toolchain report with its upstream
# issue (scripts/tsan-suppressions.txt); none for code we build.
# ASan's leak checker stays off: the Swift runtime keeps its metadata
# caches and the cooperative pool's threads for the life of the process on
# purpose, and the tests that count descriptors and memory check leaks of
# Curio's own resources. CURIO_SANITIZER tells the few tests that cannot hold under instrumentation
# (a live stack's frame names, resident memory with ASan's quarantine, a
# child's deliberate SIGSEGV, which the sanitizer runtime takes over).
# Options of the runs: scripts/sanitizer-tests.sh. The builds retry once: the
# 6.3.1 compiler crashed once here (signal 11 while printing a diagnostic,
# in one of five TSan builds) and built the same sources cleanly when run
# again; a real compile error fails both attempts.
SAN_BUILD = $(SWIFT) build --build-tests --sanitize=$(1) --scratch-path $(2)

test-sanitizers: deps
	$(call SAN_BUILD,thread,.build-tsan) || $(call SAN_BUILD,thread,.build-tsan)
	$(call SAN_BUILD,address,.build-asan) || $(call SAN_BUILD,address,.build-asan)
	scripts/sanitizer-tests.sh thread address

test-tsan: deps
	$(call SAN_BUILD,thread,.build-tsan) || $(call SAN_BUILD,thread,.build-tsan)
	scripts/sanitizer-tests.sh thread

test-asan: deps
	$(call SAN_BUILD,address,.build-asan) || $(call SAN_BUILD,address,.build-asan)
	scripts/sanitizer-tests.sh address

# A throwaway package outside the repository depends on a tagged clone of it
# by URL and version, with the default traits and with traits: ["Epoll"].
consumer:
	scripts/consumer-check.sh

# The demo runs the seed's programs, which are products of their own, and
# races the seed's echo server against the raw C io_uring server (both C
# tools build in a second; the SwiftNIO comparison is `make bench-echo`).
demo: deps
	$(SWIFT) build -c release
	@mkdir -p .build-demo
	$(CC) -O2 -o .build-demo/loadgen Benchmarks/echo/loadgen.c -luring
	$(CC) -O2 -o .build-demo/uring_echo Benchmarks/echo/uring_echo.c -luring
	CURIO_DEMO_TOOLS=.build-demo .build/release/curio-demo

# The benchmark package depends on the root package, which links liburing.
# Its build keeps the root's file list from its first build: drop that list
# so files added to Sources/Curio since are seen.
bench: deps
	rm -f Benchmarks/.build/release/description.json
	cd Benchmarks && $(SWIFT) run -c release curio-bench

# ECHO_SECONDS, ECHO_ROUNDS and friends: see Benchmarks/echo/run.sh.
bench-echo: deps
	Benchmarks/echo/run.sh

# User-space instructions per echo round trip under callgrind (needs
# valgrind, installed when missing); INSTR_SECONDS and friends: see
# Benchmarks/echo/instructions.sh.
.PHONY: bench-echo-instructions
bench-echo-instructions: deps
	@if ! command -v callgrind_control >/dev/null; then \
		echo "valgrind is missing (callgrind counts the instructions): installing valgrind"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind; \
	fi
	Benchmarks/echo/instructions.sh

# HTTP_SECONDS (default 3; the issue's figure is 10), HTTP_ROUNDS and
# friends: see Benchmarks/http/run.sh.
bench-http: deps
	Benchmarks/http/run.sh

# Fails on any DocC warning (a broken link, an undocumented public symbol).
docs:
	scripts/docs-check.sh

clean:
	rm -rf .build .build-epoll .build-tsan .build-asan .build-demo $(CTEST_DIR) Benchmarks/.build
