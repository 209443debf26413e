/*
 * Unit tests for the Curio C kernel's public API (ck.h).
 *
 * Built twice by `make ctest`: once with io_uring compiled in (link -luring)
 * and once with -DCURIO_EPOLL_ONLY. Every test runs against every backend
 * the binary can offer (io_uring, epoll, and the io_uring -> epoll fallback
 * selected by CURIO_DISABLE_IO_URING=1); the I/O tests also run on io_uring
 * with blocking descriptors.
 *
 * The binaries are built with CK_FAULT_INJECTION: ck_fault_inject makes
 * the kernel's allocations or io_uring's SQE grab fail, and the fault_*
 * tests check that no completion, timer or post is lost and no request
 * hangs. Threads are ordered by events, never by sleeps: a thread that
 * must act on a sleeping kernel waits until the loop thread is in its
 * blocking system call (/proc/self/task/TID/syscall).
 *
 * Output: one line per test and configuration, "ok <name> [<config>]" or
 * "FAIL <name> [<config>]: <where>: <what>", then "N passed, M failed".
 * The exit status is non-zero when anything failed. Every wait is bounded
 * (max_wait_ns or a deadline) and alarm(60) guards the whole run, so a bug
 * fails instead of hanging.
 */
#define _GNU_SOURCE
#include "ck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ harness */

typedef struct config {
    const char *label;
    ck_backend_kind want;   /* passed to ck_kernel_new */
    ck_backend_kind expect; /* what ck_kernel_backend must report */
    bool nonblocking;       /* put test descriptors in O_NONBLOCK mode */
    bool disable_env;       /* set CURIO_DISABLE_IO_URING=1 while running */
    bool io_only;           /* run only the I/O tests (blocking-fd variant) */
} config;

static int g_passed, g_failed;
static bool g_test_failed;
static const char *g_test_name;
static const config *g_cfg;

static void failf(const char *file, int line, const char *fmt, ...) {
    if (g_test_failed) return; /* report the first failure of a test only */
    g_test_failed = true;
    printf("FAIL %s [%s]: %s:%d: ", g_test_name, g_cfg ? g_cfg->label : "-", file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* CHECK returns from the (void) test function on failure. */
#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            failf(__FILE__, __LINE__, "%s", #cond);                     \
            return;                                                     \
        }                                                               \
    } while (0)
#define CHECKF(cond, ...)                                               \
    do {                                                                \
        if (!(cond)) {                                                  \
            failf(__FILE__, __LINE__, __VA_ARGS__);                     \
            return;                                                     \
        }                                                               \
    } while (0)
/* For helpers returning a value: report and return `ret`. */
#define CHECKR(cond, ret)                                               \
    do {                                                                \
        if (!(cond)) {                                                  \
            failf(__FILE__, __LINE__, "%s", #cond);                     \
            return ret;                                                 \
        }                                                               \
    } while (0)

typedef void (*test_fn)(const config *cfg);

/* Kernels a test created and has not freed yet: a test that fails returns
 * early, and run_test frees what it left behind, which also cancels any
 * io_uring request still pointing into the test's stack. */
static ck_kernel *g_live[4];

static void reset_faults(void);

static void run_test(const char *name, test_fn fn, const config *cfg) {
    g_test_name = name;
    g_cfg = cfg;
    g_test_failed = false;
    fn(cfg);
    reset_faults(); /* a failed test may leave an injected fault armed */
    for (int i = 0; i < 4; i++)
        if (g_live[i]) {
            ck_kernel_free(g_live[i]);
            g_live[i] = NULL;
        }
    if (g_test_failed) {
        g_failed++;
    } else {
        g_passed++;
        printf("ok %s [%s]\n", name, cfg ? cfg->label : "-");
    }
    fflush(stdout);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL global timeout: alarm(60) fired (a wait hung)\n";
    ssize_t r = write(1, msg, sizeof msg - 1);
    (void)r;
    _exit(2);
}

/* io_uring setup bits, spelled out so the epoll-only build needs no
 * liburing headers. */
#define IORING_SETUP_SINGLE_ISSUER_BIT (1u << 12)
#define IORING_SETUP_DEFER_TASKRUN_BIT (1u << 13)

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* A deterministic PRNG so every run sees the same "random" data. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

static void *tok(uintptr_t i) { return (void *)(i + 1); }
static uintptr_t untok(void *p) { return (uintptr_t)p - 1; }


static void free_kernel(ck_kernel *k) {
    for (int i = 0; i < 4; i++)
        if (g_live[i] == k) g_live[i] = NULL;
    ck_kernel_free(k);
}

/* Creates the kernel for cfg and checks its backend. */
static ck_kernel *new_kernel(const config *cfg) {
    ck_kernel *k = ck_kernel_new(cfg->want);
    CHECKR(k != NULL, NULL);
    for (int i = 0; i < 4; i++)
        if (!g_live[i]) {
            g_live[i] = k;
            break;
        }
    if (ck_kernel_backend(k) != cfg->expect) {
        failf(__FILE__, __LINE__, "backend %d, expected %d", (int)ck_kernel_backend(k),
              (int)cfg->expect);
        free_kernel(k);
        return NULL;
    }
    return k;
}
#define NEWK(k)                                                         \
    ck_kernel *k = new_kernel(cfg);                                     \
    if (!k) return

/* Polls (blocking, bounded) until `want` events arrived or `bound_ns`
 * passed. Returns the number of events or a negative ck_poll error. */
static int poll_until(ck_kernel *k, ck_event *out, int cap, int want, int64_t bound_ns) {
    int64_t end = ck_now_ns() + bound_ns;
    int n = 0;
    while (n < want && n < cap) {
        int64_t left = end - ck_now_ns();
        if (left <= 0) break;
        int r = ck_poll(k, true, left, out + n, cap - n);
        if (r < 0) return r;
        n += r;
    }
    return n;
}

/* Polls (blocking) for `ns` in all and returns how many events turned up
 * (expected: none); *polls gets the number of ck_poll calls it took.
 *
 * ck_poll may return early with no events: a blocking wait can end with
 * EINTR, and does so regularly on a thread that has torn down an io_uring
 * instance (the ring's exit work queues task_work on the thread, which
 * interrupts its next blocking system call). A caller loops, so tests look
 * at the number of turns (a few: fine; hundreds: the loop spins) rather
 * than at the length of one wait. */
static int poll_idle(ck_kernel *k, int64_t ns, int *polls) {
    ck_event ev[16];
    int64_t end = ck_now_ns() + ns;
    int n = 0, calls = 0;
    for (;;) {
        int64_t left = end - ck_now_ns();
        if (left <= 0) break;
        int r = ck_poll(k, true, left, ev, 16);
        calls++;
        if (r < 0) return r;
        n += r;
    }
    if (polls) *polls = calls;
    return n;
}
static int poll_quiet(ck_kernel *k, int64_t ns) { return poll_idle(k, ns, NULL); }

/* How many early returns (see poll_idle) a wait may take. */
#define MAX_TURNS 5

static void set_nonblock(int fd, bool on) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* Descriptors are always forgotten before they are closed: epoll keeps its
 * registration per descriptor number, and numbers are reused. */
static void close_fd(ck_kernel *k, int fd) {
    if (fd < 0) return;
    ck_forget_fd(k, fd);
    close(fd);
}

/* Submits and, when the request is pending, waits (bounded) for its one
 * completion. Returns the result; INT64_MIN+1 when nothing came. */
#define NO_RESULT (INT64_MIN + 1)
static int64_t submit_wait(ck_kernel *k, ck_request_args a, void *token) {
    uint64_t h = 12345;
    int64_t r = ck_submit(k, &a, token, &h);
    if (r != CK_PENDING) {
        CHECKR(h == 0, NO_RESULT);
        return r;
    }
    CHECKR(h != 0, NO_RESULT);
    ck_event ev[4];
    int n = poll_until(k, ev, 1, 1, 5 * SEC);
    CHECKR(n == 1, NO_RESULT);
    CHECKR(ev[0].kind == CK_EVENT_IO, NO_RESULT);
    CHECKR(ev[0].token == token, NO_RESULT);
    return ev[0].result;
}

static ck_request_args req(ck_op op, int fd, void *buf, uint64_t len) {
    ck_request_args a = {.op = op, .fd = fd, .buf = buf, .len = len, .flags = 0, .offset = -1};
    return a;
}

/* Several requests in flight at once, completing in any order. */
typedef struct waitset {
    int n;
    void *tok[8];
    int64_t res[8]; /* CK_PENDING until the completion arrives */
} waitset;

static int64_t ws_submit(ck_kernel *k, waitset *w, ck_request_args a, void *token) {
    uint64_t h = 0;
    int64_t r = ck_submit(k, &a, token, &h);
    w->tok[w->n] = token;
    w->res[w->n] = r;
    w->n++;
    return r;
}

/* Waits (bounded) for every pending member; false after reporting why. */
static bool ws_wait(ck_kernel *k, waitset *w) {
    int64_t end = ck_now_ns() + 5 * SEC;
    for (;;) {
        int missing = 0;
        for (int i = 0; i < w->n; i++) missing += w->res[i] == CK_PENDING;
        if (!missing) return true;
        int64_t left = end - ck_now_ns();
        if (left <= 0) {
            failf(__FILE__, __LINE__, "%d completions missing", missing);
            return false;
        }
        ck_event ev[8];
        int n = ck_poll(k, true, left, ev, 8);
        CHECKR(n >= 0, false);
        for (int j = 0; j < n; j++) {
            int i = 0;
            while (i < w->n && w->tok[i] != ev[j].token) i++;
            if (i == w->n || w->res[i] != CK_PENDING || ev[j].kind != CK_EVENT_IO) {
                failf(__FILE__, __LINE__, "unexpected event kind %d token %p result %lld",
                      ev[j].kind, ev[j].token, (long long)ev[j].result);
                return false;
            }
            w->res[i] = ev[j].result;
        }
    }
}

static int64_t ws_result(const waitset *w, void *token) {
    for (int i = 0; i < w->n; i++)
        if (w->tok[i] == token) return w->res[i];
    return NO_RESULT;
}

static const char *backend_name(ck_backend_kind b) {
    return b == CK_BACKEND_IO_URING ? "io_uring" : b == CK_BACKEND_EPOLL ? "epoll" : "?";
}

/* ------------------------------------------------------------ ready queue */

static void test_ready_queue(const config *cfg) {
    NEWK(k);
    ck_ready *q = ck_kernel_ready(k);
    CHECK(q != NULL);
    ck_ready_entry e;
    CHECK(ck_ready_count(q) == 0);
    CHECK(!ck_ready_pop(q, &e));

    /* Plain FIFO. */
    for (uintptr_t i = 0; i < 10; i++) CHECK(ck_ready_push(q, tok(i), tok(1000 + i)));
    CHECK(ck_ready_count(q) == 10);
    for (uintptr_t i = 0; i < 10; i++) {
        CHECK(ck_ready_pop(q, &e));
        CHECKF(e.job == tok(i) && e.task == tok(1000 + i), "pop %zu out of order", (size_t)i);
    }
    CHECK(!ck_ready_pop(q, &e));

    /* Move head/tail around the ring, then grow while wrapped: 200 in,
     * 150 out, 300 in leaves 350 live entries straddling the end of a
     * 256-slot ring, which must be unrolled in order when it doubles. */
    uintptr_t next_in = 0, next_out = 0;
    for (int i = 0; i < 200; i++, next_in++) CHECK(ck_ready_push(q, tok(next_in), NULL));
    for (int i = 0; i < 150; i++) {
        CHECK(ck_ready_pop(q, &e));
        CHECKF(e.job == tok(next_out), "got %zu want %zu", (size_t)untok(e.job), (size_t)next_out);
        next_out++;
    }
    for (int i = 0; i < 300; i++, next_in++) CHECK(ck_ready_push(q, tok(next_in), tok(next_in)));
    CHECK(ck_ready_count(q) == 350);
    CHECK(q->mask + 1 >= 512);
    /* Interleave more growth with pops: 5000 pushes, a pop every third. */
    for (int i = 0; i < 5000; i++) {
        CHECK(ck_ready_push(q, tok(next_in), tok(next_in)));
        next_in++;
        if (i % 3 == 0) {
            CHECK(ck_ready_pop(q, &e));
            CHECKF(e.job == tok(next_out), "got %zu want %zu", (size_t)untok(e.job), (size_t)next_out);
            next_out++;
        }
    }
    while (ck_ready_pop(q, &e)) {
        CHECKF(e.job == tok(next_out), "got %zu want %zu", (size_t)untok(e.job), (size_t)next_out);
        next_out++;
    }
    CHECK(next_out == next_in);
    CHECK(ck_ready_count(q) == 0);

    /* The 32-bit head/tail counters wrap: start them just below 2^32. */
    q->head = q->tail = UINT32_MAX - 100;
    next_in = next_out = 0;
    for (int i = 0; i < 3000; i++) {
        CHECK(ck_ready_push(q, tok(next_in), NULL));
        next_in++;
        if (i % 2) {
            CHECK(ck_ready_pop(q, &e));
            CHECK(e.job == tok(next_out));
            next_out++;
        }
    }
    CHECK(ck_ready_count(q) == 1500);
    while (ck_ready_pop(q, &e)) {
        CHECK(e.job == tok(next_out));
        next_out++;
    }
    CHECK(next_out == 3000);

    /* A non-empty ready queue means ck_poll must not block. */
    CHECK(ck_ready_push(q, tok(7), NULL));
    /* (With no limit: if it blocked, alarm() would end the run.) */
    ck_event ev[4];
    int n = ck_poll(k, true, -1, ev, 4);
    CHECK(n == 0);
    CHECK(ck_ready_count(q) == 1);
    CHECK(ck_ready_pop(q, &e) && e.job == tok(7));
    free_kernel(k);
}

/* ------------------------------------------------------------ timers */

/* Heap order without the clock: deadlines in the past, random ties,
 * cancellations checked against a model, one non-blocking poll. */
static void test_timer_heap(const config *cfg) {
    NEWK(k);
    enum { N = 5000 };
    static int64_t dl[N];
    static uint64_t h[N];
    static bool cancelled[N], seen[N];
    int64_t now = ck_now_ns();
    CHECK(ck_timer_next(k) == INT64_MAX);
    CHECK(ck_timer_count(k) == 0);
    CHECK(!ck_timer_cancel(k, 0));
    CHECK(!ck_timer_cancel(k, 0xdeadbeef00000007ull));
    for (int i = 0; i < N; i++) {
        /* Deadlines up to 1 s in the past, on a coarse grid so ties occur. */
        dl[i] = now - 1 - (int64_t)rnd_below(1000) * MS;
        h[i] = ck_timer_add(k, dl[i], tok((uintptr_t)i));
        CHECK(h[i] != 0);
        cancelled[i] = seen[i] = false;
    }
    CHECK(ck_timer_count(k) == N);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < i + 8 && j < N; j++) CHECK(h[i] != h[j]);

    int live = N;
    for (int round = 0; round < 2000; round++) {
        int i = (int)rnd_below(N);
        bool ok = ck_timer_cancel(k, h[i]);
        CHECKF(ok == !cancelled[i], "cancel of timer %d returned %d", i, ok);
        if (ok) {
            cancelled[i] = true;
            live--;
            CHECK(!ck_timer_cancel(k, h[i])); /* twice: no */
        }
        if (round % 50 == 0) {
            int64_t min = INT64_MAX;
            for (int j = 0; j < N; j++)
                if (!cancelled[j] && dl[j] < min) min = dl[j];
            CHECK(ck_timer_next(k) == min);
            CHECK(ck_timer_count(k) == (uint32_t)live);
        }
    }

    static ck_event ev[N];
    int n = ck_poll(k, false, 0, ev, N);
    CHECKF(n == live, "poll returned %d events, %d timers live", n, live);
    for (int i = 0; i < n; i++) {
        CHECK(ev[i].kind == CK_EVENT_TIMER);
        uintptr_t id = untok(ev[i].token);
        CHECK(id < N);
        CHECKF(!cancelled[id], "cancelled timer %zu fired", (size_t)id);
        CHECKF(!seen[id], "timer %zu fired twice", (size_t)id);
        seen[id] = true;
        CHECK(ev[i].result == dl[id]);
        if (i) CHECKF(ev[i].result >= ev[i - 1].result, "event %d out of deadline order", i);
    }
    CHECK(ck_timer_count(k) == 0);
    CHECK(ck_timer_next(k) == INT64_MAX);
    /* Fired and cancelled handles are dead; their slots get reused by new
     * timers, and the old handles must not touch the new occupants. */
    for (int i = 0; i < N; i++) CHECK(!ck_timer_cancel(k, h[i]));
    uint64_t h2[100];
    for (int i = 0; i < 100; i++) {
        h2[i] = ck_timer_add(k, now + 3600 * SEC + i, tok((uintptr_t)i));
        CHECK(h2[i] != 0);
    }
    for (int i = 0; i < N; i++) CHECK(!ck_timer_cancel(k, h[i]));
    CHECK(ck_timer_count(k) == 100);
    CHECK(ck_timer_next(k) == now + 3600 * SEC);
    for (int i = 99; i >= 0; i--) CHECK(ck_timer_cancel(k, h2[i]));
    CHECK(ck_timer_count(k) == 0);
    CHECK(ck_poll(k, false, 0, ev, 16) == 0);
    free_kernel(k);
}

/* Real-time expiry: 300 timers over ~40 ms, a random quarter cancelled up
 * front and one more cancellation attempted after every poll. A cancel that
 * returns true means the timer never fires; one that returns false means it
 * fires (or fired) exactly once. Events come out in deadline order and never
 * before their deadline. */
static void test_timer_expiry(const config *cfg) {
    NEWK(k);
    enum { N = 300 };
    int64_t dl[N];
    uint64_t h[N];
    bool cancelled[N], seen[N];
    int64_t now = ck_now_ns();
    for (int i = 0; i < N; i++) {
        dl[i] = now + 2 * MS + (int64_t)rnd_below(400) * 100000; /* +2..42 ms, 0.1 ms grid */
        h[i] = ck_timer_add(k, dl[i], tok((uintptr_t)i));
        CHECK(h[i] != 0);
        cancelled[i] = seen[i] = false;
    }
    for (int i = 0; i < N; i++)
        if (rnd_below(4) == 0) {
            CHECK(ck_timer_cancel(k, h[i]));
            cancelled[i] = true;
        }
    int64_t min = INT64_MAX;
    uint32_t live = 0;
    for (int i = 0; i < N; i++)
        if (!cancelled[i]) {
            live++;
            if (dl[i] < min) min = dl[i];
        }
    CHECK(ck_timer_next(k) == min);
    CHECK(ck_timer_count(k) == live);

    int64_t last = INT64_MIN, end = ck_now_ns() + 5 * SEC;
    uint32_t fired = 0;
    ck_event ev[7]; /* small on purpose: completions carry over between polls */
    while (fired < live) {
        int64_t left = end - ck_now_ns();
        CHECKF(left > 0, "only %u of %u timers fired", fired, live);
        int n = ck_poll(k, true, left, ev, 7);
        CHECK(n >= 0);
        int64_t t = ck_now_ns();
        for (int j = 0; j < n; j++) {
            CHECK(ev[j].kind == CK_EVENT_TIMER);
            uintptr_t id = untok(ev[j].token);
            CHECK(id < N);
            CHECKF(!cancelled[id], "cancelled timer %zu fired", (size_t)id);
            CHECKF(!seen[id], "timer %zu fired twice", (size_t)id);
            seen[id] = true;
            fired++;
            CHECK(ev[j].result == dl[id]);
            CHECKF(ev[j].result >= last, "timer %zu out of deadline order", (size_t)id);
            last = ev[j].result;
            CHECKF(t >= dl[id], "timer %zu reported %lld ns early", (size_t)id,
                   (long long)(dl[id] - t));
        }
        /* Try to cancel one timer that has not been reported yet. */
        int cand = (int)rnd_below(N);
        for (int j = 0; j < N; j++) {
            int i = (cand + j) % N;
            if (cancelled[i] || seen[i]) continue;
            if (ck_timer_cancel(k, h[i])) {
                cancelled[i] = true;
                live--;
            }
            break;
        }
    }
    for (int i = 0; i < N; i++) CHECK(seen[i] != cancelled[i]);
    CHECK(ck_timer_count(k) == 0);
    CHECK(ck_timer_next(k) == INT64_MAX);
    for (int i = 0; i < N; i++) CHECK(!ck_timer_cancel(k, h[i]));
    CHECK(poll_quiet(k, 5 * MS) == 0);
    free_kernel(k);
}

/* ck_poll sleeps until a timer is due: not early, not much later, and
 * without spinning. max_wait_ns bounds a wait with no timers. */
static void test_timer_blocking(const config *cfg) {
    NEWK(k);
    ck_stats st0, st1;
    int64_t t0 = ck_now_ns();
    int64_t deadline = t0 + 20 * MS;
    uint64_t h = ck_timer_add(k, deadline, tok(42));
    CHECK(h != 0);
    CHECK(ck_timer_next(k) == deadline);
    ck_get_stats(k, &st0);
    ck_event ev[4];
    int polls = 0, n = 0;
    while (n == 0 && ck_now_ns() - t0 < 5 * SEC) {
        n = ck_poll(k, true, 5 * SEC, ev, 4);
        CHECK(n >= 0);
        polls++;
    }
    int64_t t1 = ck_now_ns();
    ck_get_stats(k, &st1);
    CHECK(n == 1);
    CHECK(ev[0].kind == CK_EVENT_TIMER && ev[0].token == tok(42) && ev[0].result == deadline);
    CHECKF(t1 >= deadline, "timer reported %lld us early", (long long)(deadline - t1) / 1000);
    /* A wait that ends early takes another turn; dozens mean the loop
     * spins instead of sleeping. */
    CHECKF(polls <= MAX_TURNS, "%d ck_poll calls for one 20 ms timer", polls);
    CHECK(st1.polls - st0.polls == (uint64_t)polls);
    CHECK(!ck_timer_cancel(k, h));

    /* No timers: max_wait_ns bounds the wait (else alarm() fires), which
     * sleeps (a few turns, not a spin). */
    n = ck_poll(k, true, 30 * MS, ev, 4);
    CHECK(n == 0);
    n = poll_idle(k, 30 * MS, &polls);
    CHECK(n == 0);
    CHECKF(polls <= MAX_TURNS, "%d ck_poll calls in 30 ms with nothing to do", polls);

    /* max_wait_ns shorter than the next timer wins. */
    h = ck_timer_add(k, ck_now_ns() + 100 * SEC, tok(43));
    n = ck_poll(k, true, 15 * MS, ev, 4);
    CHECK(n == 0);
    n = poll_idle(k, 15 * MS, &polls);
    CHECK(n == 0);
    CHECKF(polls <= MAX_TURNS, "%d ck_poll calls in 15 ms before a far timer", polls);
    CHECK(ck_timer_cancel(k, h));

    /* may_block = false only looks (with no limit: a wait would hang
     * until alarm()). */
    h = ck_timer_add(k, ck_now_ns() + 100 * SEC, tok(44));
    n = ck_poll(k, false, -1, ev, 4);
    CHECK(n == 0);
    CHECK(ck_timer_cancel(k, h));

    /* A deadline already passed fires on the next look. */
    h = ck_timer_add(k, ck_now_ns() - 1, tok(45));
    n = ck_poll(k, false, 0, ev, 4);
    CHECK(n == 1 && ev[0].token == tok(45) && ev[0].kind == CK_EVENT_TIMER);
    CHECK(!ck_timer_cancel(k, h));
    free_kernel(k);
}

/* ------------------------------------------------------------ posts
 * A thread that posts to or wakes a sleeping kernel first waits until the
 * kernel's thread sits in its blocking system call (read from
 * /proc/self/task/TID/syscall): the order of the two is then fixed by
 * events, not by a delay that a busy machine may stretch. */

static pid_t this_tid(void) { return (pid_t)syscall(SYS_gettid); }

static bool is_wait_syscall(long nr) {
    return nr == SYS_epoll_wait || nr == SYS_epoll_pwait
#ifdef SYS_epoll_pwait2
           || nr == SYS_epoll_pwait2
#endif
#ifdef SYS_io_uring_enter
           || nr == SYS_io_uring_enter
#endif
        ;
}

/* Waits (bounded) until thread `tid` is blocked in the loop's wait. */
static bool wait_until_blocked(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int64_t end = ck_now_ns() + 5 * SEC;
    while (ck_now_ns() < end) {
        FILE *f = fopen(path, "r");
        if (!f) return false;
        long nr = -2;
        if (fscanf(f, "%ld", &nr) != 1) nr = -2; /* "running" */
        fclose(f);
        if (is_wait_syscall(nr)) return true;
        sched_yield();
    }
    return false;
}

typedef struct poster {
    ck_kernel *k;
    pid_t loop_tid; /* post once this thread is blocked in ck_poll */
    void *job, *task, *token;
    bool blocked;   /* it was */
} poster;

static void *poster_main(void *arg) {
    poster *p = arg;
    p->blocked = wait_until_blocked(p->loop_tid);
    ck_post(p->k, p->job, p->task, p->token);
    return NULL;
}

static void test_post_message_wakes(const config *cfg) {
    NEWK(k);
    poster p = {.k = k, .loop_tid = this_tid(), .token = tok(77)};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, poster_main, &p) == 0);
    ck_event ev[4];
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    pthread_join(th, NULL);
    CHECK(p.blocked);
    CHECKF(n == 1, "%d events", n);
    CHECK(ev[0].kind == CK_EVENT_MESSAGE && ev[0].token == tok(77) && ev[0].result == 0);
    CHECK(ck_ready_count(ck_kernel_ready(k)) == 0);
    CHECK(ck_posted_count(k) == 0);
    /* The kernel slept, so the post had to write the eventfd. */
    ck_stats st;
    ck_get_stats(k, &st);
    CHECK(st.wakeups_sent == 1);
    CHECK(poll_quiet(k, 20 * MS) == 0);
    free_kernel(k);
}

static void test_post_job_wakes(const config *cfg) {
    NEWK(k);
    poster p = {.k = k, .loop_tid = this_tid(), .job = tok(5), .task = tok(6), .token = tok(99)};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, poster_main, &p) == 0);
    int64_t t0 = ck_now_ns();
    ck_event ev[4];
    ck_ready *q = ck_kernel_ready(k);
    int polls = 0;
    while (ck_ready_count(q) == 0 && ck_now_ns() - t0 < 5 * SEC) {
        int n = ck_poll(k, true, 5 * SEC, ev, 4);
        CHECKF(n == 0, "a job post produced %d events", n);
        polls++;
    }
    pthread_join(th, NULL);
    CHECK(p.blocked);
    CHECK(ck_ready_count(q) == 1);
    CHECKF(polls <= MAX_TURNS, "%d polls", polls);
    ck_ready_entry e;
    CHECK(ck_ready_pop(q, &e));
    CHECK(e.job == tok(5) && e.task == tok(6));
    CHECK(ck_posted_count(k) == 0);
    CHECK(poll_quiet(k, 20 * MS) == 0);
    CHECK(ck_ready_count(q) == 0);

    /* A post from the kernel's own thread before polling: the poll must
     * not wait (if it did, with no limit, alarm() would end the run). */
    CHECK(ck_post(k, tok(8), NULL, NULL));
    CHECK(ck_post(k, NULL, NULL, tok(9)));
    CHECK(ck_posted_count(k) == 2);
    int n = ck_poll(k, true, -1, ev, 4);
    CHECK(n == 1 && ev[0].kind == CK_EVENT_MESSAGE && ev[0].token == tok(9));
    CHECK(ck_ready_pop(q, &e) && e.job == tok(8) && e.task == NULL);
    free_kernel(k);
}

typedef struct waker {
    ck_kernel *k;
    pid_t loop_tid;
    atomic_int done;
    bool blocked;
} waker;

static void *waker_main(void *arg) {
    waker *w = arg;
    w->blocked = wait_until_blocked(w->loop_tid);
    /* Flag first: a poll that returns because of this wake must see it. */
    atomic_store(&w->done, 1);
    ck_wake(w->k);
    return NULL;
}

/* Polls until the waker has woken us. False on a ck_poll error, events,
 * or no wake-up within 5 s (a lost wake-up). */
static bool poll_until_woken(ck_kernel *k, waker *w) {
    ck_event ev[4];
    int64_t t0 = ck_now_ns();
    for (;;) {
        int n = ck_poll(k, true, 5 * SEC, ev, 4);
        if (n != 0) return false;
        if (atomic_load(&w->done)) return true;
        if (ck_now_ns() - t0 > 5 * SEC) return false;
    }
}

static void test_wake(const config *cfg) {
    NEWK(k);
    ck_event ev[4];
    int polls;
    /* From another thread, into a blocked poll. */
    waker w = {.k = k, .loop_tid = this_tid()};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, waker_main, &w) == 0);
    bool ok = poll_until_woken(k, &w);
    pthread_join(th, NULL);
    CHECK(w.blocked);
    CHECKF(ok, "wake-up from another thread lost");

    /* The wake-up is consumed: waiting afterwards sleeps. */
    CHECK(poll_idle(k, 30 * MS, &polls) == 0);
    CHECKF(polls <= MAX_TURNS, "stale wake-up: %d ck_poll calls in 30 ms", polls);

    /* A wake sent before the poll is not lost; repeats coalesce. */
    ck_wake(k);
    ck_wake(k);
    atomic_store(&w.done, 1);
    CHECKF(poll_until_woken(k, &w), "pre-sent wake-up lost");
    CHECK(poll_idle(k, 30 * MS, &polls) == 0);
    CHECKF(polls <= MAX_TURNS, "stale wake-up: %d ck_poll calls in 30 ms", polls);

    /* Repeated wake-ups from other threads, each waking one wait. */
    for (int i = 0; i < 5; i++) {
        waker w2 = {.k = k, .loop_tid = this_tid()};
        CHECK(pthread_create(&th, NULL, waker_main, &w2) == 0);
        ok = poll_until_woken(k, &w2);
        pthread_join(th, NULL);
        CHECK(w2.blocked);
        CHECKF(ok, "wake-up %d lost", i);
    }
    /* One eventfd write per wake-up: the first, the pre-sent pair
     * (coalesced) and the five. */
    ck_stats st;
    ck_get_stats(k, &st);
    CHECKF(st.wakeups_sent == 7, "%llu eventfd writes", (unsigned long long)st.wakeups_sent);
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    free_kernel(k);

}

enum { POST_THREADS = 8, POST_TOTAL = 100000, POST_PER = POST_TOTAL / POST_THREADS };

typedef struct bulk_poster {
    ck_kernel *k;
    int id;
    pthread_barrier_t *start;
    int failures;
} bulk_poster;

static void *bulk_main(void *arg) {
    bulk_poster *b = arg;
    pthread_barrier_wait(b->start);
    for (int i = 0; i < POST_PER; i++) {
        uintptr_t item = (uintptr_t)b->id * POST_PER + (uintptr_t)i;
        /* Alternate: even items are jobs (ready queue), odd ones messages. */
        bool ok = (i & 1) ? ck_post(b->k, NULL, NULL, tok(item))
                          : ck_post(b->k, tok(item), tok((uintptr_t)b->id), NULL);
        if (!ok) b->failures++;
        if (i % 1024 == 0) sched_yield();
    }
    return NULL;
}

static void test_post_many_threads(const config *cfg) {
    NEWK(k);
    static uint8_t seen[POST_TOTAL];
    memset(seen, 0, sizeof seen);
    long last_job[POST_THREADS], last_msg[POST_THREADS];
    for (int i = 0; i < POST_THREADS; i++) last_job[i] = last_msg[i] = -1;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, POST_THREADS + 1);
    bulk_poster bp[POST_THREADS];
    pthread_t th[POST_THREADS];
    for (int i = 0; i < POST_THREADS; i++) {
        bp[i] = (bulk_poster){.k = k, .id = i, .start = &start};
        CHECK(pthread_create(&th[i], NULL, bulk_main, &bp[i]) == 0);
    }
    pthread_barrier_wait(&start);
    int got = 0, dup = -1, disorder = -1;
    ck_event ev[256];
    ck_ready *q = ck_kernel_ready(k);
    int64_t end = ck_now_ns() + 20 * SEC;
    while (got < POST_TOTAL && ck_now_ns() < end) {
        int n = ck_poll(k, true, 200 * MS, ev, 256);
        if (n < 0) break;
        for (int j = 0; j < n; j++) {
            uintptr_t item = untok(ev[j].token);
            if (ev[j].kind != CK_EVENT_MESSAGE || item >= POST_TOTAL || (item % POST_PER) % 2 != 1) {
                dup = (int)item;
                continue;
            }
            if (seen[item]++) dup = (int)item;
            int t = (int)(item / POST_PER);
            if ((long)item <= last_msg[t]) disorder = (int)item;
            last_msg[t] = (long)item;
            got++;
        }
        ck_ready_entry e;
        while (ck_ready_pop(q, &e)) {
            uintptr_t item = untok(e.job);
            if (item >= POST_TOTAL || (item % POST_PER) % 2 != 0 ||
                untok(e.task) != item / POST_PER) {
                dup = (int)item;
                continue;
            }
            if (seen[item]++) dup = (int)item;
            int t = (int)(item / POST_PER);
            if ((long)item <= last_job[t]) disorder = (int)item;
            last_job[t] = (long)item;
            got++;
        }
    }
    for (int i = 0; i < POST_THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < POST_THREADS; i++) CHECK(bp[i].failures == 0);
    CHECKF(dup < 0, "item %d delivered twice or malformed", dup);
    CHECKF(got == POST_TOTAL, "%d of %d items arrived", got, POST_TOTAL);
    for (int i = 0; i < POST_TOTAL; i++) CHECKF(seen[i] == 1, "item %d seen %d times", i, seen[i]);
    CHECKF(disorder < 0, "item %d overtook a later post from its thread", disorder);
    CHECK(ck_posted_count(k) == 0);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    CHECK(ck_ready_count(q) == 0);
    free_kernel(k);
}

/* ------------------------------------------------------------ kernel misc */

static void *current_main(void *arg) {
    (void)arg;
    return ck_current();
}

static void test_kernel_misc(const config *cfg) {
    NEWK(k);
    CHECK(ck_current() == NULL);
    ck_bind_thread(k);
    CHECK(ck_current() == k);
    pthread_t th;
    void *other = tok(1);
    CHECK(pthread_create(&th, NULL, current_main, NULL) == 0);
    pthread_join(th, &other);
    CHECK(other == NULL);
    ck_set_owner(k, tok(3));
    CHECK(ck_owner(k) == tok(3));
    ck_set_tls_resuming(tok(4));
    CHECK(ck_tls_resuming() == tok(4));
    ck_set_tls_resuming(NULL);
    CHECK(ck_tls_resuming() == NULL);
#ifdef CURIO_EPOLL_ONLY
    CHECK(!ck_have_io_uring());
#else
    CHECK(ck_have_io_uring());
#endif
    ck_bind_thread(NULL);
    CHECK(ck_current() == NULL);
    ck_bind_thread(k);
    free_kernel(k); /* unbinds */
    CHECK(ck_current() == NULL);
}

/* A kernel may be created on one thread and driven from another (e.g. the
 * Swift Kernel object is made on the main thread and run elsewhere). */
typedef struct driver_arg {
    ck_kernel *k;
    int rfd;
    int64_t timer_result, io_result;
    int err;
} driver_arg;

static void *driver_main(void *arg) {
    driver_arg *d = arg;
    ck_event ev[4];
    int64_t deadline = ck_now_ns() + 5 * MS;
    ck_timer_add(d->k, deadline, tok(1));
    int n = poll_until(d->k, ev, 4, 1, 5 * SEC);
    if (n != 1) { d->err = n < 0 ? n : -1000 - n; return NULL; }
    d->timer_result = ev[0].result - deadline;
    char buf[8];
    ck_request_args a = req(CK_OP_READ, d->rfd, buf, sizeof buf);
    uint64_t h;
    int64_t r = ck_submit(d->k, &a, tok(2), &h);
    if (r == CK_PENDING) {
        n = poll_until(d->k, ev, 4, 1, 5 * SEC);
        if (n != 1) { d->err = n < 0 ? n : -2000 - n; return NULL; }
        r = ev[0].result;
    }
    d->io_result = r;
    return NULL;
}

/* Waits (bounded) for one I/O completion on d->k. */
static void *collect_main(void *arg) {
    driver_arg *d = arg;
    ck_event ev[4];
    int n = poll_until(d->k, ev, 4, 1, 5 * SEC);
    if (n != 1) d->err = n < 0 ? n : -1000 - n;
    else d->io_result = ev[0].result;
    return NULL;
}

static void test_kernel_other_thread(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    CHECK(write(p[1], "abc", 3) == 3);
    driver_arg d = {.k = k, .rfd = p[0]};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, driver_main, &d) == 0);
    pthread_join(th, NULL);
    CHECKF(d.err == 0, "driving the kernel from another thread failed: %d (%s)", d.err,
           d.err < 0 && d.err > -1000 ? strerror(-d.err) : "no event");
    CHECK(d.timer_result == 0);
    CHECK(d.io_result == 3);
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* ------------------------------------------------------------ I/O */

static int make_pipe(const config *cfg, int p[2]) {
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    set_nonblock(p[0], cfg->nonblocking);
    set_nonblock(p[1], cfg->nonblocking);
    return 0;
}

static int make_socketpair(const config *cfg, int sv[2]) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
    set_nonblock(sv[0], cfg->nonblocking);
    set_nonblock(sv[1], cfg->nonblocking);
    return 0;
}

static void test_io_pipe_read(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char buf[64] = {0};
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    uint64_t h = 0;
    int64_t r = ck_submit(k, &a, tok(1), &h);
    CHECKF(r == CK_PENDING, "read on an empty pipe returned %lld", (long long)r);
    CHECK(h != 0);
    CHECK(ck_pending_requests(k) == 1);
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(poll_quiet(k, 20 * MS) == 0);
    CHECK(ck_pending_requests(k) == 1);
    CHECK(write(p[1], "hello", 5) == 5);
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1, "%d events", n);
    CHECK(ev[0].kind == CK_EVENT_IO && ev[0].token == tok(1));
    CHECKF(ev[0].result == 5, "result %lld", (long long)ev[0].result);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(!ck_cancel(k, h)); /* completed: no longer pending */

    /* Data already there: immediate (epoll) or one completion (io_uring). */
    CHECK(write(p[1], "abc", 3) == 3);
    memset(buf, 0, sizeof buf);
    r = submit_wait(k, req(CK_OP_READ, p[0], buf, sizeof buf), tok(2));
    CHECKF(r == 3, "result %lld", (long long)r);
    CHECK(memcmp(buf, "abc", 3) == 0);

    /* CK_OP_WRITE into the pipe. */
    r = submit_wait(k, req(CK_OP_WRITE, p[1], "xyz!", 4), tok(3));
    CHECKF(r == 4, "result %lld", (long long)r);
    char rb[8];
    CHECK(read(p[0], rb, sizeof rb) == 4 && memcmp(rb, "xyz!", 4) == 0);

    /* EOF: a pending read completes with 0 when the writer closes. */
    a = req(CK_OP_READ, p[0], buf, sizeof buf);
    r = ck_submit(k, &a, tok(4), &h);
    CHECK(r == CK_PENDING);
    close_fd(k, p[1]);
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1, "%d events", n);
    CHECKF(ev[0].token == tok(4) && ev[0].result == 0, "EOF read gave %lld", (long long)ev[0].result);
    close_fd(k, p[0]);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static void test_io_file_offset(const config *cfg) {
    NEWK(k);
    FILE *f = tmpfile();
    CHECK(f != NULL);
    int fd = fileno(f);
    int64_t r = submit_wait(k, (ck_request_args){.op = CK_OP_WRITE, .fd = fd, .buf = "0123456789",
                                                 .len = 10, .offset = 0}, tok(1));
    CHECKF(r == 10, "pwrite: %lld", (long long)r);
    r = submit_wait(k, (ck_request_args){.op = CK_OP_WRITE, .fd = fd, .buf = "AB", .len = 2,
                                         .offset = 4}, tok(2));
    CHECK(r == 2);
    char buf[16] = {0};
    r = submit_wait(k, (ck_request_args){.op = CK_OP_READ, .fd = fd, .buf = buf, .len = 5,
                                         .offset = 2}, tok(3));
    CHECKF(r == 5 && memcmp(buf, "23AB6", 5) == 0, "pread: %lld '%.5s'", (long long)r, buf);
    /* offset -1 uses (and advances) the file position. */
    CHECK(lseek(fd, 7, SEEK_SET) == 7);
    memset(buf, 0, sizeof buf);
    r = submit_wait(k, req(CK_OP_READ, fd, buf, sizeof buf), tok(4));
    CHECKF(r == 3 && memcmp(buf, "789", 3) == 0, "read at position: %lld '%.3s'", (long long)r, buf);
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    r = submit_wait(k, req(CK_OP_READ, fd, buf, sizeof buf), tok(5));
    CHECKF(r == 0, "read at EOF: %lld", (long long)r);
    ck_forget_fd(k, fd);
    fclose(f);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static void test_io_socketpair(const config *cfg) {
    NEWK(k);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    char buf[64] = {0};
    waitset w = {0};
    int64_t r = ws_submit(k, &w, req(CK_OP_RECV, sv[0], buf, sizeof buf), tok(1));
    CHECKF(r == CK_PENDING, "recv on an empty socket returned %lld", (long long)r);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    ws_submit(k, &w, req(CK_OP_SEND, sv[1], "ping", 4), tok(2));
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(2)) == 4, "send %lld", (long long)ws_result(&w, tok(2)));
    CHECKF(ws_result(&w, tok(1)) == 4, "recv %lld", (long long)ws_result(&w, tok(1)));
    CHECK(memcmp(buf, "ping", 4) == 0);

    /* The other direction with both submitted in the same turn. */
    memset(buf, 0, sizeof buf);
    w = (waitset){0};
    CHECK(ws_submit(k, &w, req(CK_OP_RECV, sv[1], buf, sizeof buf), tok(3)) == CK_PENDING);
    ws_submit(k, &w, req(CK_OP_SEND, sv[0], "pong!", 5), tok(4));
    if (!ws_wait(k, &w)) return;
    CHECK(ws_result(&w, tok(3)) == 5 && ws_result(&w, tok(4)) == 5);
    CHECK(memcmp(buf, "pong!", 5) == 0);

    /* sendmsg / recvmsg with two iovecs each. */
    char r1[3] = {0}, r2[8] = {0};
    struct iovec riov[2] = {{r1, sizeof r1}, {r2, sizeof r2}};
    struct msghdr rmsg = {.msg_iov = riov, .msg_iovlen = 2};
    w = (waitset){0};
    r = ws_submit(k, &w, (ck_request_args){.op = CK_OP_RECVMSG, .fd = sv[0], .buf = &rmsg,
                                            .offset = -1}, tok(5));
    CHECK(r == CK_PENDING);
    struct iovec siov[2] = {{"abc", 3}, {"defg", 4}};
    struct msghdr smsg = {.msg_iov = siov, .msg_iovlen = 2};
    ws_submit(k, &w, (ck_request_args){.op = CK_OP_SENDMSG, .fd = sv[1], .buf = &smsg,
                                       .offset = -1}, tok(6));
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(6)) == 7, "sendmsg %lld", (long long)ws_result(&w, tok(6)));
    CHECKF(ws_result(&w, tok(5)) == 7, "recvmsg %lld", (long long)ws_result(&w, tok(5)));
    CHECK(memcmp(r1, "abc", 3) == 0 && memcmp(r2, "defg", 4) == 0);

    /* recv with flags: MSG_PEEK leaves the data for the next recv. */
    CHECK(write(sv[1], "peek", 4) == 4);
    memset(buf, 0, sizeof buf);
    ck_request_args a = req(CK_OP_RECV, sv[0], buf, sizeof buf);
    a.flags = MSG_PEEK;
    r = submit_wait(k, a, tok(7));
    CHECK(r == 4 && memcmp(buf, "peek", 4) == 0);
    memset(buf, 0, sizeof buf);
    r = submit_wait(k, req(CK_OP_RECV, sv[0], buf, sizeof buf), tok(8));
    CHECK(r == 4 && memcmp(buf, "peek", 4) == 0);

    /* Peer closed: pending recv gets 0; send gets -EPIPE, not SIGPIPE. */
    a = req(CK_OP_RECV, sv[0], buf, sizeof buf);
    uint64_t h;
    CHECK(ck_submit(k, &a, tok(9), &h) == CK_PENDING);
    close_fd(k, sv[1]);
    ck_event ev[4];
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(9));
    CHECKF(ev[0].result == 0, "recv after peer close: %lld", (long long)ev[0].result);
    r = submit_wait(k, req(CK_OP_SEND, sv[0], "x", 1), tok(10));
    CHECKF(r == -EPIPE || r == -ECONNRESET, "send to closed peer: %lld", (long long)r);
    close_fd(k, sv[0]);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    free_kernel(k);
}

static void test_io_poll(const config *cfg) {
    NEWK(k);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    ck_request_args a = req(CK_OP_POLL_IN, sv[0], NULL, 0);
    uint64_t h;
    int64_t r = ck_submit(k, &a, tok(1), &h);
    CHECKF(r == CK_PENDING, "POLL_IN on an empty socket returned %lld", (long long)r);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    CHECK(write(sv[1], "z", 1) == 1);
    ck_event ev[4];
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(1) && ev[0].kind == CK_EVENT_IO);
    CHECKF(ev[0].result > 0 && (ev[0].result & POLLIN), "revents %lld", (long long)ev[0].result);
    /* Still readable (poll consumes nothing): immediate or prompt. */
    r = submit_wait(k, req(CK_OP_POLL_IN, sv[0], NULL, 0), tok(2));
    CHECKF(r > 0 && (r & POLLIN), "revents %lld", (long long)r);
    char c;
    CHECK(read(sv[0], &c, 1) == 1 && c == 'z');

    /* Writable socket: POLL_OUT reports POLLOUT. */
    r = submit_wait(k, req(CK_OP_POLL_OUT, sv[1], NULL, 0), tok(3));
    CHECKF(r > 0 && (r & POLLOUT), "revents %lld", (long long)r);

    /* Fill sv[1]'s send buffer; POLL_OUT then waits until the peer drains. */
    static char chunk[65536];
    size_t filled = 0;
    for (;;) {
        ssize_t w = send(sv[1], chunk, sizeof chunk, MSG_DONTWAIT);
        if (w < 0) break;
        filled += (size_t)w;
    }
    CHECK(errno == EAGAIN);
    CHECK(filled > 0);
    a = req(CK_OP_POLL_OUT, sv[1], NULL, 0);
    r = ck_submit(k, &a, tok(4), &h);
    CHECKF(r == CK_PENDING, "POLL_OUT on a full socket returned %lld", (long long)r);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    size_t drained = 0;
    while (drained < filled) {
        ssize_t got = recv(sv[0], chunk, sizeof chunk, MSG_DONTWAIT);
        CHECK(got > 0);
        drained += (size_t)got;
    }
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1, "POLL_OUT did not complete after draining (%d)", n);
    CHECK(ev[0].token == tok(4) && (ev[0].result & POLLOUT));

    /* POLL_IN sees a hang-up. */
    a = req(CK_OP_POLL_IN, sv[0], NULL, 0);
    CHECK(ck_submit(k, &a, tok(5), &h) == CK_PENDING);
    close_fd(k, sv[1]);
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(5));
    CHECKF(ev[0].result > 0 && (ev[0].result & (POLLIN | POLLHUP | POLLRDHUP)),
           "revents %lld", (long long)ev[0].result);
    close_fd(k, sv[0]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static int tcp_socket(const config *cfg) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) set_nonblock(fd, cfg->nonblocking);
    return fd;
}

static void test_io_accept_connect(const config *cfg) {
    NEWK(k);
    int ls = tcp_socket(cfg);
    CHECK(ls >= 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(ls, 16) == 0);
    socklen_t sl = sizeof sa;
    CHECK(getsockname(ls, (struct sockaddr *)&sa, &sl) == 0);
    CHECK(sa.sin_port != 0);

    struct sockaddr_in peer;
    memset(&peer, 0, sizeof peer);
    ck_request_args a = req(CK_OP_ACCEPT, ls, &peer, sizeof peer);
    a.flags = SOCK_CLOEXEC | (cfg->nonblocking ? SOCK_NONBLOCK : 0);
    uint64_t ha;
    int64_t r = ck_submit(k, &a, tok(1), &ha);
    CHECKF(r == CK_PENDING, "accept with no client returned %lld", (long long)r);
    CHECK(poll_quiet(k, 10 * MS) == 0);

    int cs = tcp_socket(cfg);
    CHECK(cs >= 0);
    a = req(CK_OP_CONNECT, cs, &sa, sizeof sa);
    uint64_t hc;
    r = ck_submit(k, &a, tok(2), &hc);
    int want = 1 + (r == CK_PENDING);
    if (r != CK_PENDING) CHECKF(r == 0, "connect: %lld", (long long)r);
    ck_event ev[4];
    int n = poll_until(k, ev, 4, want, 5 * SEC);
    CHECKF(n == want, "%d of %d events", n, want);
    int as = -1;
    for (int i = 0; i < n; i++) {
        CHECK(ev[i].kind == CK_EVENT_IO);
        if (ev[i].token == tok(1)) as = (int)ev[i].result;
        else CHECKF(ev[i].token == tok(2) && ev[i].result == 0, "connect: %lld",
                    (long long)ev[i].result);
    }
    CHECKF(as >= 0, "accept: %d", as);
    CHECK(peer.sin_family == AF_INET && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(fcntl(as, F_GETFD) & FD_CLOEXEC);
    CHECK(((fcntl(as, F_GETFL) & O_NONBLOCK) != 0) == cfg->nonblocking);

    /* Data over the accepted connection, both ways. */
    char buf[32] = {0};
    waitset w = {0};
    CHECK(ws_submit(k, &w, req(CK_OP_RECV, as, buf, sizeof buf), tok(3)) == CK_PENDING);
    ws_submit(k, &w, req(CK_OP_SEND, cs, "over tcp", 8), tok(4));
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(4)) == 8, "send %lld", (long long)ws_result(&w, tok(4)));
    CHECKF(ws_result(&w, tok(3)) == 8, "recv %lld", (long long)ws_result(&w, tok(3)));
    CHECK(memcmp(buf, "over tcp", 8) == 0);
    r = submit_wait(k, req(CK_OP_WRITE, as, "back", 4), tok(5));
    CHECK(r == 4);
    memset(buf, 0, sizeof buf);
    r = submit_wait(k, req(CK_OP_READ, cs, buf, sizeof buf), tok(6));
    CHECK(r == 4 && memcmp(buf, "back", 4) == 0);

    /* A second accept with a NULL address. */
    a = req(CK_OP_ACCEPT, ls, NULL, 0);
    a.flags = SOCK_CLOEXEC;
    w = (waitset){0};
    CHECK(ws_submit(k, &w, a, tok(7)) == CK_PENDING);
    int cs2 = tcp_socket(cfg);
    CHECK(cs2 >= 0);
    ws_submit(k, &w, req(CK_OP_CONNECT, cs2, &sa, sizeof sa), tok(8));
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(8)) == 0, "connect: %lld", (long long)ws_result(&w, tok(8)));
    int as2 = (int)ws_result(&w, tok(7));
    CHECKF(as2 >= 0, "second accept: %d", as2);
    close(as2);
    close_fd(k, cs2);
    close_fd(k, as);
    close_fd(k, cs);
    close_fd(k, ls);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static void test_io_connect_refused(const config *cfg) {
    NEWK(k);
    /* A port that was just bound and released has no listener. */
    int tmp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(tmp >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(tmp, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t sl = sizeof sa;
    CHECK(getsockname(tmp, (struct sockaddr *)&sa, &sl) == 0);
    close(tmp);
    int cs = tcp_socket(cfg);
    CHECK(cs >= 0);
    int64_t r = submit_wait(k, req(CK_OP_CONNECT, cs, &sa, sizeof sa), tok(1));
    CHECKF(r == -ECONNREFUSED, "connect to a closed port: %lld", (long long)r);
    close_fd(k, cs);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static void test_io_cancel(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char buf[16];
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    uint64_t h;
    CHECK(ck_submit(k, &a, tok(1), &h) == CK_PENDING);
    CHECK(ck_pending_requests(k) == 1);
    /* Let the read get started in the backend before cancelling it. */
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(ck_cancel(k, h));
    CHECK(!ck_cancel(k, h)); /* already being cancelled */
    ck_event ev[4];
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1, "%d events", n);
    CHECK(ev[0].kind == CK_EVENT_IO && ev[0].token == tok(1));
    CHECKF(ev[0].result == -ECANCELED, "cancelled read gave %lld", (long long)ev[0].result);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(!ck_cancel(k, h));
    /* The cancelled read must not consume data written afterwards. */
    CHECK(write(p[1], "after", 5) == 5);
    CHECK(poll_quiet(k, 20 * MS) == 0);
    char rb[8];
    CHECK(read(p[0], rb, sizeof rb) == 5);

    /* Cancel in the same turn as the submission. */
    CHECK(ck_submit(k, &a, tok(2), &h) == CK_PENDING);
    CHECK(ck_cancel(k, h));
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(2));
    CHECKF(ev[0].result == -ECANCELED, "cancelled read gave %lld", (long long)ev[0].result);
    CHECK(poll_quiet(k, 10 * MS) == 0);

    /* Two reads parked; cancelling the second leaves the first intact. */
    char b1[4], b2[4];
    uint64_t h1, h2;
    a = req(CK_OP_READ, p[0], b1, sizeof b1);
    CHECK(ck_submit(k, &a, tok(3), &h1) == CK_PENDING);
    a = req(CK_OP_READ, p[0], b2, sizeof b2);
    CHECK(ck_submit(k, &a, tok(4), &h2) == CK_PENDING);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(ck_cancel(k, h2));
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(4) && ev[0].result == -ECANCELED);
    CHECK(write(p[1], "ok", 2) == 2);
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(3) && ev[0].result == 2);
    CHECK(!ck_cancel(k, h1));

    /* Bogus handles. */
    CHECK(!ck_cancel(k, 0));
    CHECK(!ck_cancel(k, 0xffffffffffffffffull));
    CHECK(!ck_cancel(k, ((uint64_t)77 << 32) | 1));
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

static void test_io_forget_fd(const config *cfg) {
    NEWK(k);
    int p[2], sv[2];
    CHECK(make_pipe(cfg, p) == 0);
    CHECK(make_socketpair(cfg, sv) == 0);
    char b1[8], b2[8], b3[8];
    uint64_t h1, h2, h3;
    ck_request_args a = req(CK_OP_READ, p[0], b1, sizeof b1);
    CHECK(ck_submit(k, &a, tok(1), &h1) == CK_PENDING);
    a = req(CK_OP_RECV, sv[0], b2, sizeof b2);
    CHECK(ck_submit(k, &a, tok(2), &h2) == CK_PENDING);
    a = req(CK_OP_POLL_IN, sv[0], b3, 0);
    CHECK(ck_submit(k, &a, tok(3), &h3) == CK_PENDING);
    CHECK(ck_pending_requests(k) == 3);
    CHECK(poll_quiet(k, 5 * MS) == 0);

    ck_forget_fd(k, p[0]);
    ck_event ev[8];
    int n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECKF(n == 1, "%d events", n);
    CHECK(ev[0].token == tok(1));
    CHECKF(ev[0].result == -ECANCELED, "forgotten read gave %lld", (long long)ev[0].result);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    CHECK(ck_pending_requests(k) == 2);

    ck_forget_fd(k, sv[0]);
    n = poll_until(k, ev, 8, 2, 5 * SEC);
    CHECKF(n == 2, "%d events", n);
    bool g2 = false, g3 = false;
    for (int i = 0; i < n; i++) {
        CHECKF(ev[i].result == -ECANCELED, "forgotten request gave %lld", (long long)ev[i].result);
        if (ev[i].token == tok(2)) g2 = true;
        if (ev[i].token == tok(3)) g3 = true;
    }
    CHECK(g2 && g3);
    CHECK(ck_pending_requests(k) == 0);
    ck_forget_fd(k, sv[0]); /* nothing left: harmless */
    ck_forget_fd(k, -1);
    ck_forget_fd(k, 100000);

    /* After forgetting, the descriptor can be used again. */
    CHECK(write(sv[1], "again", 5) == 5);
    int64_t r = submit_wait(k, req(CK_OP_RECV, sv[0], b2, sizeof b2), tok(4));
    CHECKF(r == 5, "recv after forget: %lld", (long long)r);
    a = req(CK_OP_RECV, sv[0], b2, sizeof b2);
    CHECK(ck_submit(k, &a, tok(5), &h2) == CK_PENDING);
    CHECK(write(sv[1], "more", 4) == 4);
    n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(5) && ev[0].result == 4);

    /* Descriptor numbers get reused after close: a new pipe landing on the
     * same number must work. */
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(make_pipe(cfg, p) == 0);
    a = req(CK_OP_READ, p[0], b1, sizeof b1);
    CHECK(ck_submit(k, &a, tok(6), &h1) == CK_PENDING);
    CHECK(write(p[1], "new", 3) == 3);
    n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(6) && ev[0].result == 3);

    close_fd(k, p[0]);
    close_fd(k, p[1]);
    close_fd(k, sv[0]);
    close_fd(k, sv[1]);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    free_kernel(k);
}

/* CK_OP_SEND_BEHIND: io_uring keeps the send for the loop's next enter and
 * reports it as one CK_EVENT_SENT_BEHIND; epoll sends at once, or answers
 * -EAGAIN when the socket is full. On both, a forget_fd right after the
 * submit (a close) never drops the bytes. */
static void test_io_send_behind(const config *cfg) {
    NEWK(k);
    bool uring = cfg->expect == CK_BACKEND_IO_URING;
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    char got[64];
    ck_stats st0, st1;
    ck_get_stats(k, &st0);

    /* Room in the socket: kept (io_uring) or sent (epoll). */
    uint64_t h = 12345;
    ck_request_args a = req(CK_OP_SEND_BEHIND, sv[0], "hello", 5);
    int64_t r = ck_submit(k, &a, tok(1), &h);
    ck_event ev[8];
    if (uring) {
        CHECKF(r == CK_PENDING && h != 0, "send behind returned %lld", (long long)r);
        /* Nothing went out before the loop's next turn. */
        CHECK(recv(sv[1], got, sizeof got, MSG_DONTWAIT) == -1 && errno == EAGAIN);
        int n = poll_until(k, ev, 8, 1, 5 * SEC);
        CHECK(n == 1 && ev[0].token == tok(1) && ev[0].kind == CK_EVENT_SENT_BEHIND);
        CHECKF(ev[0].result == 5, "sent behind %lld", (long long)ev[0].result);
    } else {
        CHECKF(r == 5 && h == 0, "epoll send behind returned %lld", (long long)r);
    }
    CHECK(recv(sv[1], got, sizeof got, MSG_DONTWAIT) == 5 && memcmp(got, "hello", 5) == 0);
    ck_get_stats(k, &st1);
    CHECK(st1.sends_behind - st0.sends_behind == (uring ? 1u : 0u));

    /* ck_flush_fd hands it over now: once it says 0, the bytes are in the
     * socket without another ck_poll. */
    a = req(CK_OP_SEND_BEHIND, sv[0], "flush", 5);
    r = ck_submit(k, &a, tok(2), &h);
    int left = ck_flush_fd(k, sv[0]);
    CHECKF(left == 0, "%d sends still in flight with room in the socket", left);
    CHECK(recv(sv[1], got, sizeof got, MSG_DONTWAIT) == 5 && memcmp(got, "flush", 5) == 0);
    if (uring) {
        int n = poll_until(k, ev, 8, 1, 5 * SEC);
        CHECK(n == 1 && ev[0].token == tok(2) && ev[0].result == 5);
    } else {
        CHECK(r == 5);
    }

    /* A full socket: io_uring waits inside the system (MSG_WAITALL) and
     * ck_flush_fd counts it in flight; epoll answers -EAGAIN. */
    static char chunk[4096];
    while (send(sv[0], chunk, sizeof chunk, MSG_DONTWAIT) > 0) {}
    CHECK(errno == EAGAIN);
    static char tail[3000];
    memset(tail, 'T', sizeof tail);
    a = req(CK_OP_SEND_BEHIND, sv[0], tail, sizeof tail);
    r = ck_submit(k, &a, tok(3), &h);
    if (uring) {
        CHECK(r == CK_PENDING);
        CHECKF(ck_flush_fd(k, sv[0]) == 1, "a send into a full socket should be in flight");
        CHECK(ck_pending_requests(k) == 1);
    } else {
        CHECKF(r == -EAGAIN, "epoll send behind into a full socket %lld", (long long)r);
    }
    /* Drain; on io_uring the whole tail follows what filled the socket. */
    size_t tail_seen = 0;
    bool done = !uring;
    int64_t until = ck_now_ns() + 5 * SEC;
    while (ck_now_ns() < until && (!done || tail_seen < (uring ? sizeof tail : 0))) {
        ssize_t m = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
        for (ssize_t i = 0; i < m; i++) if (got[i] == 'T') tail_seen++;
        if (!done && ck_poll(k, false, 0, ev, 8) == 1) {
            CHECK(ev[0].token == tok(3) && ev[0].kind == CK_EVENT_SENT_BEHIND);
            CHECKF(ev[0].result == (int64_t)sizeof tail, "full-socket send behind %lld",
                   (long long)ev[0].result);
            done = true;
        }
        if (m <= 0 && !done) ck_poll(k, true, 1 * MS, ev, 0);
    }
    while (recv(sv[1], got, sizeof got, MSG_DONTWAIT) > 0) {
        for (size_t i = 0; i < sizeof got; i++) if (got[i] == 'T') tail_seen++;
    }
    CHECK(done);
    CHECKF(tail_seen == (uring ? sizeof tail : 0), "%zu tail bytes arrived", tail_seen);

    /* Submitted and then the socket closed at once: the bytes still go, and
     * the peer sees them, then the end. */
    a = req(CK_OP_SEND_BEHIND, sv[0], "bye", 3);
    r = ck_submit(k, &a, tok(4), &h);
    ck_forget_fd(k, sv[0]);
    close(sv[0]);
    if (uring) {
        int n = poll_until(k, ev, 8, 1, 5 * SEC);
        CHECK(n == 1 && ev[0].token == tok(4));
        CHECKF(ev[0].result == 3, "send behind across forget_fd gave %lld", (long long)ev[0].result);
    } else {
        CHECK(r == 3);
    }
    set_nonblock(sv[1], false);
    CHECK(recv(sv[1], got, sizeof got, 0) == 3 && memcmp(got, "bye", 3) == 0);
    CHECK(recv(sv[1], got, sizeof got, 0) == 0);
    close(sv[1]);

    /* The peer gone: -EPIPE, reported by the event (io_uring) or at once. */
    CHECK(make_socketpair(cfg, sv) == 0);
    close(sv[1]);
    a = req(CK_OP_SEND_BEHIND, sv[0], "x", 1);
    r = ck_submit(k, &a, tok(5), &h);
    if (uring) {
        CHECK(r == CK_PENDING);
        int n = poll_until(k, ev, 8, 1, 5 * SEC);
        CHECK(n == 1 && ev[0].token == tok(5));
        r = ev[0].result;
    }
    CHECKF(r == -EPIPE || r == -ECONNRESET, "send behind to a closed peer %lld", (long long)r);
    close_fd(k, sv[0]);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    free_kernel(k);
}

static void test_io_bad_fd(const config *cfg) {
    NEWK(k);
    char buf[8];
    const ck_op ops[] = {CK_OP_READ, CK_OP_WRITE, CK_OP_RECV, CK_OP_SEND, CK_OP_ACCEPT,
                         CK_OP_CONNECT, CK_OP_POLL_IN, CK_OP_POLL_OUT, CK_OP_RECVMSG,
                         CK_OP_SENDMSG};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ck_request_args a = req(ops[i], -1, buf, sizeof buf);
        uint64_t h = 99;
        int64_t r = ck_submit(k, &a, tok(1), &h);
        CHECKF(r == -EBADF, "op %d on fd -1: %lld", (int)ops[i], (long long)r);
        CHECK(h == 0);
    }
    /* An unknown op. */
    ck_request_args a = req((ck_op)999, 0, buf, sizeof buf);
    uint64_t h = 99;
    CHECK(ck_submit(k, &a, tok(1), &h) == -EINVAL && h == 0);

    /* A closed descriptor: -EBADF, at once or as the one completion. */
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    close(p[1]);
    close(p[0]);
    int64_t r = submit_wait(k, req(CK_OP_READ, p[0], buf, sizeof buf), tok(2));
    CHECKF(r == -EBADF, "read on a closed fd: %lld", (long long)r);
    r = submit_wait(k, req(CK_OP_POLL_IN, p[0], NULL, 0), tok(3));
    CHECKF(r == -EBADF || (r > 0 && (r & POLLNVAL)), "poll on a closed fd: %lld", (long long)r);
    /* Not a socket. */
    FILE *f = tmpfile();
    CHECK(f);
    r = submit_wait(k, req(CK_OP_RECV, fileno(f), buf, sizeof buf), tok(4));
    CHECKF(r == -ENOTSOCK, "recv on a file: %lld", (long long)r);
    ck_forget_fd(k, fileno(f));
    fclose(f);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* More requests in flight than one pool chunk (256) holds, all on one
 * pipe; each takes one byte, every byte goes to exactly one request. */
static void test_io_many_pending(const config *cfg) {
    NEWK(k);
    enum { N = 300 };
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    static unsigned char bufs[N];
    static uint64_t h[N];
    for (int i = 0; i < N; i++) {
        ck_request_args a = req(CK_OP_READ, p[0], &bufs[i], 1);
        CHECK(ck_submit(k, &a, tok((uintptr_t)i), &h[i]) == CK_PENDING);
    }
    CHECK(ck_pending_requests(k) == N);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    /* 200 bytes for 200 of the readers, the other 100 are cancelled. */
    unsigned char data[200];
    for (int i = 0; i < 200; i++) data[i] = (unsigned char)i;
    CHECK(write(p[1], data, sizeof data) == (ssize_t)sizeof data);
    static ck_event ev[N];
    int n = poll_until(k, ev, N, 200, 5 * SEC);
    CHECKF(n == 200, "%d of 200 reads completed", n);
    bool done[N] = {false}, byte_seen[200] = {false};
    for (int i = 0; i < n; i++) {
        uintptr_t id = untok(ev[i].token);
        CHECK(id < N && !done[id]);
        done[id] = true;
        CHECKF(ev[i].result == 1, "read %zu gave %lld", (size_t)id, (long long)ev[i].result);
        CHECK(!byte_seen[bufs[id]]);
        byte_seen[bufs[id]] = true;
    }
    CHECK(ck_pending_requests(k) == N - 200);
    int cancelled = 0;
    for (int i = 0; i < N; i++)
        if (!done[i]) {
            CHECK(ck_cancel(k, h[i]));
            cancelled++;
        } else {
            CHECK(!ck_cancel(k, h[i]));
        }
    n = poll_until(k, ev, N, cancelled, 5 * SEC);
    CHECKF(n == cancelled, "%d of %d cancellations", n, cancelled);
    for (int i = 0; i < n; i++) {
        uintptr_t id = untok(ev[i].token);
        CHECK(id < N && !done[id]);
        done[id] = true;
        CHECK(ev[i].result == -ECANCELED);
    }
    CHECK(ck_pending_requests(k) == 0);
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    free_kernel(k);
}

/* io_uring collects submissions and hands them over with one enter. */
static void test_io_batch_submit(const config *cfg) {
    NEWK(k);
    if (ck_kernel_backend(k) != CK_BACKEND_IO_URING) {
        free_kernel(k);
        return; /* epoll runs each request's system call at once by design */
    }
    enum { N = 16 };
    int p[N][2];
    char buf[N][4];
    for (int i = 0; i < N; i++) CHECK(make_pipe(cfg, p[i]) == 0);
    ck_stats s0, s1;
    ck_get_stats(k, &s0);
    for (int i = 0; i < N; i++) {
        uint64_t h;
        ck_request_args a = req(CK_OP_READ, p[i][0], buf[i], sizeof buf[i]);
        CHECK(ck_submit(k, &a, tok((uintptr_t)i), &h) == CK_PENDING);
    }
    ck_get_stats(k, &s1);
    CHECKF(s1.enters == s0.enters, "%llu enters while submitting",
           (unsigned long long)(s1.enters - s0.enters));
    ck_event ev[N];
    CHECK(ck_poll(k, false, 0, ev, N) == 0);
    ck_get_stats(k, &s1);
    CHECKF(s1.enters - s0.enters == 1, "%llu enters for one batch",
           (unsigned long long)(s1.enters - s0.enters));
    for (int i = 0; i < N; i++) CHECK(write(p[i][1], "w", 1) == 1);
    int n = poll_until(k, ev, N, N, 5 * SEC);
    CHECK(n == N);
    for (int i = 0; i < N; i++) {
        close_fd(k, p[i][0]);
        close_fd(k, p[i][1]);
    }
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* Timers and I/O in the same wait: a read that completes before its
 * timeout, and one whose timeout fires first and cancels it. */
static void test_io_with_timeout(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char buf[8];
    uint64_t h;
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    CHECK(ck_submit(k, &a, tok(1), &h) == CK_PENDING);
    int64_t t0 = ck_now_ns();
    uint64_t th = ck_timer_add(k, t0 + 20 * MS, tok(2));
    ck_event ev[4];
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].kind == CK_EVENT_TIMER && ev[0].token == tok(2));
    CHECK(ck_now_ns() - t0 >= 20 * MS);
    CHECK(ck_cancel(k, h));
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(1) && ev[0].result == -ECANCELED);
    CHECK(!ck_timer_cancel(k, th));

    CHECK(ck_submit(k, &a, tok(3), &h) == CK_PENDING);
    th = ck_timer_add(k, ck_now_ns() + 10 * SEC, tok(4));
    CHECK(write(p[1], "fast", 4) == 4);
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].kind == CK_EVENT_IO && ev[0].token == tok(3) && ev[0].result == 4);
    CHECK(ck_timer_cancel(k, th));
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(ck_timer_count(k) == 0);
    free_kernel(k);
}

/* ------------------------------------------------------------ one semantics */

/* A non-blocking look (may_block = false) right after the peer wrote
 * delivers the completion: with DEFER_TASKRUN or COOP_TASKRUN the
 * finished work waits for an enter, which the IORING_SQ_TASKRUN check must
 * make; epoll looks with a zero timeout. */
static void test_io_look_sees_completion(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char buf[8];
    uint64_t h;
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    CHECK(ck_submit(k, &a, tok(1), &h) == CK_PENDING);
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 0); /* hands the read to the backend */
    CHECK(write(p[1], "now", 3) == 3);
    int n = ck_poll(k, false, 0, ev, 4);
    CHECKF(n == 1, "a look after the write found %d events", n);
    CHECK(ev[0].token == tok(1) && ev[0].result == 3);
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* Both backends: a request on a descriptor that would block waits for
 * readiness inside the kernel; -EAGAIN never comes back, whether the
 * descriptor is O_NONBLOCK or not, and a connect never reports that it is
 * in progress. */
static void test_io_no_eagain(const config *cfg) {
    NEWK(k);
    int p[2], sv[2];
    CHECK(make_pipe(cfg, p) == 0);
    CHECK(make_socketpair(cfg, sv) == 0);
    char b1[8], b2[8];
    waitset w = {0};
    CHECK(ws_submit(k, &w, req(CK_OP_READ, p[0], b1, sizeof b1), tok(1)) == CK_PENDING);
    CHECK(ws_submit(k, &w, req(CK_OP_RECV, sv[0], b2, sizeof b2), tok(2)) == CK_PENDING);
    /* Several turns with nothing to read: still pending, no -EAGAIN. */
    ck_event ev[4];
    for (int i = 0; i < 3; i++) CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_pending_requests(k) == 2);
    CHECK(write(p[1], "pipe", 4) == 4);
    CHECK(write(sv[1], "sock", 4) == 4);
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(1)) == 4, "pipe read %lld", (long long)ws_result(&w, tok(1)));
    CHECKF(ws_result(&w, tok(2)) == 4, "recv %lld", (long long)ws_result(&w, tok(2)));

    /* A write into a full pipe waits until the reader drains it. */
    static char chunk[65536];
    if (cfg->nonblocking) {
        while (write(p[1], chunk, sizeof chunk) > 0) {}
        CHECK(errno == EAGAIN);
        w = (waitset){0};
        CHECK(ws_submit(k, &w, req(CK_OP_WRITE, p[1], "x", 1), tok(3)) == CK_PENDING);
        CHECK(ck_poll(k, false, 0, ev, 4) == 0);
        while (read(p[0], chunk, sizeof chunk) > 0) {}
        if (!ws_wait(k, &w)) return;
        CHECKF(ws_result(&w, tok(3)) == 1, "write into a drained pipe %lld",
               (long long)ws_result(&w, tok(3)));
    }
    /* MSG_DONTWAIT makes io_uring answer -EAGAIN on any kernel (newer
     * ones wait on O_NONBLOCK pipes and sockets by themselves): the
     * backend turns it into a readiness poll and a retry. */
    ck_stats st0, st1;
    ck_get_stats(k, &st0);
    ck_request_args a = req(CK_OP_RECV, sv[0], b2, sizeof b2);
    a.flags = MSG_DONTWAIT;
    w = (waitset){0};
    CHECK(ws_submit(k, &w, a, tok(4)) == CK_PENDING);
    for (int i = 0; i < 3; i++) CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(write(sv[1], "late", 4) == 4);
    if (!ws_wait(k, &w)) return;
    CHECKF(ws_result(&w, tok(4)) == 4, "MSG_DONTWAIT recv %lld", (long long)ws_result(&w, tok(4)));
    ck_get_stats(k, &st1);
    if (ck_kernel_backend(k) == CK_BACKEND_IO_URING)
        CHECKF(st1.readiness_retries > st0.readiness_retries, "no readiness retry on io_uring");
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    close_fd(k, sv[0]);
    close_fd(k, sv[1]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* ------------------------------------------------------------ thread binding */

typedef struct loop_turn {
    ck_kernel *k;
    int rfd;           /* read one request on it, or -1: only poll */
    bool leave_pending; /* submit the read and return with it in flight */
    int64_t result;
    int err;
} loop_turn;

static void *loop_turn_main(void *arg) {
    loop_turn *t = arg;
    ck_event ev[4];
    if (t->rfd < 0) {
        t->err = ck_poll(t->k, false, 0, ev, 4);
        return NULL;
    }
    static char buf[8];
    ck_request_args a = req(CK_OP_READ, t->rfd, buf, sizeof buf);
    uint64_t h;
    int64_t r = ck_submit(t->k, &a, tok(9), &h);
    if (r == CK_PENDING) {
        if (t->leave_pending) {
            t->err = ck_poll(t->k, false, 0, ev, 4);
            t->result = CK_PENDING;
            return NULL;
        }
        int n = poll_until(t->k, ev, 4, 1, 5 * SEC);
        if (n != 1) {
            t->err = n < 0 ? n : -1000 - n;
            return NULL;
        }
        r = ev[0].result;
    }
    t->result = r;
    return NULL;
}

static int run_turn(loop_turn *t) {
    pthread_t th;
    if (pthread_create(&th, NULL, loop_turn_main, t) != 0) return -1;
    pthread_join(th, NULL);
    return 0;
}

/* The ring is bound (SINGLE_ISSUER) to the thread that first runs the
 * loop, not to the kernel's creator; the loop may move to another thread
 * while nothing is in flight, and a move with requests in flight is a
 * clear error (-EEXIST) unless the kernel was made with
 * CK_KERNEL_ANY_THREAD. */
static void test_kernel_thread_moves(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(write(p[1], "abc", 3) == 3);
        loop_turn t = {.k = k, .rfd = p[0]};
        CHECK(run_turn(&t) == 0);
        CHECKF(t.err == 0 && t.result == 3, "turn %d on a new thread: err %d result %lld", i,
               t.err, (long long)t.result);
    }
    /* A read left in flight by one thread; another thread's turn. */
    loop_turn t = {.k = k, .rfd = p[0], .leave_pending = true};
    CHECK(run_turn(&t) == 0);
    CHECK(t.err == 0 && t.result == CK_PENDING);
    loop_turn t2 = {.k = k, .rfd = -1};
    CHECK(run_turn(&t2) == 0);
    ck_backend_info info;
    ck_get_backend_info(k, &info);
    bool pinned = info.kind == CK_BACKEND_IO_URING &&
                  (info.uring_setup_flags & IORING_SETUP_SINGLE_ISSUER_BIT);
    if (pinned) CHECKF(t2.err == -EEXIST, "moving a busy pinned ring: %d", t2.err);
    else CHECKF(t2.err >= 0, "another thread's turn: %d", t2.err);
    close_fd(k, p[0]);
    close(p[1]);
    free_kernel(k);

    /* CK_KERNEL_ANY_THREAD: a read submitted here completes on a turn run
     * by another thread. (The submitting thread stays alive: io_uring
     * cancels a thread's requests when it exits.) */
    ck_kernel_options o = {.want = cfg->want, .flags = CK_KERNEL_ANY_THREAD | CK_KERNEL_QUIET_FALLBACK};
    ck_kernel *k2 = ck_kernel_new_with(&o);
    CHECK(k2 != NULL);
    g_live[3] = k2;
    ck_get_backend_info(k2, &info);
    CHECK(!(info.uring_setup_flags & IORING_SETUP_SINGLE_ISSUER_BIT));
    CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    char buf[8];
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    uint64_t h;
    CHECK(ck_submit(k2, &a, tok(5), &h) == CK_PENDING);
    ck_event ev[4];
    CHECK(ck_poll(k2, false, 0, ev, 4) == 0);
    CHECK(write(p[1], "xyz", 3) == 3);
    driver_arg d = {.k = k2, .rfd = -1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, collect_main, &d) == 0);
    pthread_join(th, NULL);
    CHECKF(d.err == 0 && d.io_result == 3, "ANY_THREAD kernel after a move: err %d result %lld",
           d.err, (long long)d.io_result);
    close_fd(k2, p[0]);
    close(p[1]);
    g_live[3] = NULL;
    ck_kernel_free(k2);
}

/* The ring's setup flags: the newest set this kernel accepts. */
static void test_backend_info(const config *cfg) {
    NEWK(k);
    ck_backend_info info;
    ck_get_backend_info(k, &info);
    CHECK(info.kind == ck_kernel_backend(k));
    if (info.kind == CK_BACKEND_EPOLL) {
        CHECK(info.uring_setup_flags == 0 && info.ring_entries == 0);
    } else {
        CHECK(info.ring_entries >= 1);
        printf("# io_uring setup flags %#x, features %#x, %u entries\n", info.uring_setup_flags,
               info.uring_features, info.ring_entries);
        /* DEFER_TASKRUN only ever comes with SINGLE_ISSUER. */
        if (info.uring_setup_flags & IORING_SETUP_DEFER_TASKRUN_BIT)
            CHECK(info.uring_setup_flags & IORING_SETUP_SINGLE_ISSUER_BIT);
    }
    CHECK(ck_kernel_fallback_reason(k) == NULL || cfg->expect != cfg->want);
    free_kernel(k);
}

/* ------------------------------------------------------------ fault paths */

static void reset_faults(void) {
    for (int f = 0; f < CK_FAULT_KINDS; f++) ck_fault_inject((ck_fault)f, 0);
}

/* The pool cannot grow: the request fails at once with -ENOMEM. */
static void test_fault_request_alloc(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char buf[4];
    ck_request_args a = req(CK_OP_READ, p[0], buf, sizeof buf);
    uint64_t h = 7;
    CHECK(ck_fault_inject(CK_FAULT_REQUEST_ALLOC, 1));
    CHECK(ck_submit(k, &a, tok(1), &h) == -ENOMEM && h == 0);
    CHECK(ck_pending_requests(k) == 0);
    CHECK(write(p[1], "ok", 2) == 2);
    CHECK(submit_wait(k, a, tok(2)) == 2);
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    free_kernel(k);
}

/* The done list cannot grow: I/O completions (a read, a cancel) are held
 * by their requests and still reported, in the same poll. */
static void test_fault_done_io(const config *cfg) {
    NEWK(k);
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char b1[8], b2[8];
    uint64_t h1, h2;
    ck_request_args a = req(CK_OP_READ, p[0], b1, sizeof b1);
    CHECK(ck_submit(k, &a, tok(1), &h1) == CK_PENDING);
    a = req(CK_OP_READ, p[0], b2, sizeof b2);
    CHECK(ck_submit(k, &a, tok(2), &h2) == CK_PENDING);
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_fault_inject(CK_FAULT_DONE_GROW, 1000));
    CHECK(ck_cancel(k, h2));
    CHECK(write(p[1], "data", 4) == 4);
    int n = poll_until(k, ev, 4, 2, 5 * SEC);
    CHECKF(n == 2, "%d of 2 completions", n);
    for (int i = 0; i < n; i++) {
        if (ev[i].token == tok(1)) CHECK(ev[i].result == 4);
        else CHECK(ev[i].token == tok(2) && ev[i].result == -ECANCELED);
    }
    ck_stats st;
    ck_get_stats(k, &st);
    CHECKF(st.deferred_events >= 2, "%llu completions held", (unsigned long long)st.deferred_events);
    CHECK(ck_pending_requests(k) == 0 && ck_waiting_events(k) == 0);
    reset_faults();
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    free_kernel(k);
}

/* The done list cannot grow: an expired timer stays due and fires on the
 * next turn; posted messages wait, in order. */
static void test_fault_done_timer_message(const config *cfg) {
    NEWK(k);
    ck_event ev[4];
    uint64_t h = ck_timer_add(k, ck_now_ns() - 1, tok(1));
    CHECK(h != 0);
    CHECK(ck_fault_inject(CK_FAULT_DONE_GROW, 1));
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_timer_count(k) == 1);
    int n = ck_poll(k, false, 0, ev, 4);
    CHECK(n == 1 && ev[0].kind == CK_EVENT_TIMER && ev[0].token == tok(1));
    CHECK(ck_timer_count(k) == 0);
    ck_kernel *k2 = ck_kernel_new(cfg->want); /* a fresh, empty done list */
    CHECK(k2);
    g_live[3] = k2;
    CHECK(ck_post(k2, NULL, NULL, tok(2)));
    CHECK(ck_post(k2, NULL, NULL, tok(3)));
    /* 2: ck_poll drains the posts before and after its wait. */
    CHECK(ck_fault_inject(CK_FAULT_DONE_GROW, 2));
    CHECK(ck_poll(k2, true, -1, ev, 4) == 0); /* blocking would hang: alarm */
    CHECK(ck_post(k2, NULL, NULL, tok(4)));
    n = ck_poll(k2, true, -1, ev, 4);
    CHECKF(n == 3, "%d messages", n);
    CHECK(ev[0].token == tok(2) && ev[1].token == tok(3) && ev[2].token == tok(4));
    g_live[3] = NULL;
    ck_kernel_free(k2);
    free_kernel(k);
}

/* The ready queue cannot grow: a posted job waits for the next turn,
 * ahead of later posts. */
static void test_fault_ready(const config *cfg) {
    NEWK(k);
    ck_ready *q = ck_kernel_ready(k);
    uint32_t cap = q->mask + 1;
    for (uint32_t i = 0; i < cap; i++) CHECK(ck_ready_push(q, tok(i), NULL));
    CHECK(ck_post(k, tok(100000), tok(1), NULL));
    CHECK(ck_fault_inject(CK_FAULT_READY_GROW, 2)); /* both drains of one ck_poll */
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_ready_count(q) == cap);
    CHECK(ck_post(k, tok(100001), tok(1), NULL));
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_ready_count(q) == cap + 2);
    ck_ready_entry e;
    for (uint32_t i = 0; i < cap; i++) CHECK(ck_ready_pop(q, &e) && e.job == tok(i));
    CHECK(ck_ready_pop(q, &e) && e.job == tok(100000));
    CHECK(ck_ready_pop(q, &e) && e.job == tok(100001));
    ck_stats st;
    ck_get_stats(k, &st);
    CHECK(st.deferred_events >= 1);
    free_kernel(k);
}

/* The timer heap cannot grow: ck_timer_add says so (0, ENOMEM) and arms
 * nothing; the next one works. */
static void test_fault_timer_add(const config *cfg) {
    NEWK(k);
    CHECK(ck_fault_inject(CK_FAULT_TIMER_GROW, 1));
    errno = 0;
    CHECK(ck_timer_add(k, ck_now_ns(), tok(1)) == 0 && errno == ENOMEM);
    CHECK(ck_timer_count(k) == 0);
    uint64_t h = ck_timer_add(k, ck_now_ns() - 1, tok(2));
    CHECK(h != 0);
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 1 && ev[0].token == tok(2));
    free_kernel(k);
}

/* io_uring without a free SQE: a submission, a readiness poll and a
 * cancel each wait on the backlog and happen on a later turn. (On epoll
 * the hook has no site; the same steps must work.) */
static void test_fault_sqe(const config *cfg) {
    NEWK(k);
    bool uring = ck_kernel_backend(k) == CK_BACKEND_IO_URING;
    int p[2];
    CHECK(make_pipe(cfg, p) == 0);
    char b[4][8];
    uint64_t h[4];
    ck_event ev[8];
    /* 1. The submission. */
    CHECK(ck_fault_inject(CK_FAULT_SQE, 3));
    ck_request_args a = req(CK_OP_READ, p[0], b[0], sizeof b[0]);
    CHECK(ck_submit(k, &a, tok(0), &h[0]) == CK_PENDING);
    for (int i = 0; i < 4; i++) CHECK(ck_poll(k, false, 0, ev, 8) == 0);
    reset_faults();
    CHECK(write(p[1], "one", 3) == 3);
    int n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECKF(n == 1 && ev[0].token == tok(0) && ev[0].result == 3, "backlogged read: %d events", n);

    /* 2. The cancel of a request in flight. */
    a = req(CK_OP_READ, p[0], b[1], sizeof b[1]);
    CHECK(ck_submit(k, &a, tok(1), &h[1]) == CK_PENDING);
    CHECK(ck_poll(k, false, 0, ev, 8) == 0);
    CHECK(ck_fault_inject(CK_FAULT_SQE, 2));
    CHECK(ck_cancel(k, h[1]));
    n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECKF(n == 1 && ev[0].token == tok(1) && ev[0].result == -ECANCELED,
           "cancel without an SQE: %d events", n);
    reset_faults();
    /* The cancelled read took nothing. */
    CHECK(write(p[1], "two", 3) == 3);
    CHECK(poll_quiet(k, 5 * MS) == 0);
    char rb[8];
    CHECK(read(p[0], rb, sizeof rb) == 3);

    /* 3. A request still on the backlog is cancelled without the ring. */
    CHECK(ck_fault_inject(CK_FAULT_SQE, 1));
    a = req(CK_OP_READ, p[0], b[2], sizeof b[2]);
    CHECK(ck_submit(k, &a, tok(2), &h[2]) == CK_PENDING);
    CHECK(ck_cancel(k, h[2]));
    n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECK(n == 1 && ev[0].token == tok(2) && ev[0].result == -ECANCELED);
    reset_faults();

    /* 4. The readiness poll after -EAGAIN (MSG_DONTWAIT on io_uring). */
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    a = req(CK_OP_RECV, sv[0], b[3], sizeof b[3]);
    a.flags = MSG_DONTWAIT;
    CHECK(ck_submit(k, &a, tok(3), &h[3]) == CK_PENDING);
    CHECK(ck_fault_inject(CK_FAULT_SQE, 1));
    CHECK(ck_poll(k, false, 0, ev, 8) == 0);
    CHECK(ck_poll(k, false, 0, ev, 8) == 0);
    reset_faults();
    CHECK(write(sv[1], "four", 4) == 4);
    n = poll_until(k, ev, 8, 1, 5 * SEC);
    CHECKF(n == 1 && ev[0].token == tok(3) && ev[0].result == 4, "read after a late poll: %d", n);
    ck_stats st;
    ck_get_stats(k, &st);
    if (uring) CHECKF(st.sqe_waits >= 4, "%llu SQE waits", (unsigned long long)st.sqe_waits);
    close_fd(k, sv[0]);
    close_fd(k, sv[1]);
    close_fd(k, p[0]);
    close_fd(k, p[1]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* ------------------------------------------------------------ multishot accept */

static int listen_loopback(const config *cfg, struct sockaddr_in *sa) {
    int ls = tcp_socket(cfg);
    if (ls < 0) return -1;
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = 0};
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof *sa;
    if (bind(ls, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(ls, 64) < 0 ||
        getsockname(ls, (struct sockaddr *)sa, &sl) < 0) {
        close(ls);
        return -1;
    }
    return ls;
}

/* A blocking connect to a loopback listener: done once the handshake is
 * (the connection then waits in the listener's backlog). */
static int dial(const struct sockaddr_in *sa) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) return -1;
    if (connect(c, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        close(c);
        return -1;
    }
    return c;
}

/* Collects `want` CK_EVENT_IO_MORE events of `token` into fds (bounded). */
static int collect_accepts(ck_kernel *k, void *token, int *fds, int want) {
    int got = 0;
    int64_t end = ck_now_ns() + 5 * SEC;
    while (got < want && ck_now_ns() < end) {
        ck_event ev[8];
        int n = ck_poll(k, true, end - ck_now_ns(), ev, 8);
        if (n < 0) return n;
        for (int i = 0; i < n; i++) {
            if (ev[i].kind != CK_EVENT_IO_MORE || ev[i].token != token || ev[i].result < 0)
                return -1000 - i;
            fds[got++] = (int)ev[i].result;
        }
    }
    return got;
}

static bool same_peer(int accepted, int client) {
    struct sockaddr_in a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    return getpeername(accepted, (struct sockaddr *)&a, &la) == 0 &&
           getsockname(client, (struct sockaddr *)&b, &lb) == 0 && a.sin_port == b.sin_port;
}

static void test_io_accept_multi(const config *cfg) {
    NEWK(k);
    struct sockaddr_in sa;
    int ls = listen_loopback(cfg, &sa);
    CHECK(ls >= 0);
    int cl[6], acc[6];
    /* Two connections already waiting when the request starts. */
    cl[0] = dial(&sa);
    cl[1] = dial(&sa);
    CHECK(cl[0] >= 0 && cl[1] >= 0);
    ck_request_args a = req(CK_OP_ACCEPT_MULTI, ls, NULL, 0);
    a.flags = SOCK_CLOEXEC | SOCK_NONBLOCK;
    uint64_t h;
    CHECK(ck_submit(k, &a, tok(1), &h) == CK_PENDING);
    int n = collect_accepts(k, tok(1), acc, 2);
    CHECKF(n == 2, "%d of 2 waiting connections", n);
    /* Three more, one at a time and then two together. */
    cl[2] = dial(&sa);
    CHECK(cl[2] >= 0);
    n = collect_accepts(k, tok(1), acc + 2, 1);
    CHECKF(n == 1, "%d of 1 connection", n);
    cl[3] = dial(&sa);
    cl[4] = dial(&sa);
    CHECK(cl[3] >= 0 && cl[4] >= 0);
    n = collect_accepts(k, tok(1), acc + 3, 2);
    CHECKF(n == 2, "%d of 2 connections", n);
    CHECK(ck_pending_requests(k) == 1);
    for (int i = 0; i < 5; i++) {
        CHECK(fcntl(acc[i], F_GETFD) & FD_CLOEXEC);
        CHECK(fcntl(acc[i], F_GETFL) & O_NONBLOCK);
        int j = 0;
        while (j < 5 && !same_peer(acc[i], cl[j])) j++;
        CHECKF(j < 5, "accepted descriptor %d matches no client", acc[i]);
    }
    /* Data over one of them. */
    CHECK(write(cl[4], "hi", 2) == 2);
    char buf[4];
    int64_t r = -1;
    for (int i = 0; i < 5; i++)
        if (same_peer(acc[i], cl[4])) r = submit_wait(k, req(CK_OP_RECV, acc[i], buf, sizeof buf), tok(2));
    CHECK(r == 2);

    /* Cancel: one final CK_EVENT_MULTI_END; later connections wait for whoever
     * accepts next. */
    CHECK(ck_cancel(k, h));
    ck_event ev[4];
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1 && ev[0].kind == CK_EVENT_MULTI_END && ev[0].token == tok(1) &&
           ev[0].result == -ECANCELED, "cancel: %d events", n);
    CHECK(ck_pending_requests(k) == 0);
    cl[5] = dial(&sa);
    CHECK(cl[5] >= 0);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    a = req(CK_OP_ACCEPT, ls, NULL, 0);
    a.flags = SOCK_CLOEXEC;
    r = submit_wait(k, a, tok(3));
    CHECKF(r >= 0 && same_peer((int)r, cl[5]), "plain accept after the cancel: %lld", (long long)r);
    close((int)r);

    /* Forgetting the listener ends a new one the same way. */
    a = req(CK_OP_ACCEPT_MULTI, ls, NULL, 0);
    a.flags = SOCK_CLOEXEC;
    CHECK(ck_submit(k, &a, tok(4), &h) == CK_PENDING);
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    close_fd(k, ls);
    n = poll_until(k, ev, 4, 1, 5 * SEC);
    CHECKF(n == 1 && ev[0].token == tok(4) && ev[0].kind == CK_EVENT_MULTI_END &&
           ev[0].result == -ECANCELED, "forget: %d events, result %lld", n,
           n ? (long long)ev[0].result : 0LL);
    for (int i = 0; i < 5; i++) close_fd(k, acc[i]);
    for (int i = 0; i < 6; i++) close(cl[i]);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* No memory to report an accepted connection: it is closed, counted, and
 * the request keeps accepting. */
static void test_fault_accept_multi(const config *cfg) {
    NEWK(k);
    struct sockaddr_in sa;
    int ls = listen_loopback(cfg, &sa);
    CHECK(ls >= 0);
    ck_request_args a = req(CK_OP_ACCEPT_MULTI, ls, NULL, 0);
    a.flags = SOCK_CLOEXEC;
    uint64_t h;
    CHECK(ck_submit(k, &a, tok(1), &h) == CK_PENDING);
    ck_event ev[4];
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(ck_fault_inject(CK_FAULT_DONE_GROW, 1)); /* the done list is still empty */
    int c1 = dial(&sa);
    CHECK(c1 >= 0);
    ck_stats st;
    ck_get_stats(k, &st);
    int64_t end = ck_now_ns() + 5 * SEC;
    while (st.accepts_dropped == 0 && ck_now_ns() < end) {
        CHECK(ck_poll(k, true, 10 * MS, ev, 4) == 0);
        ck_get_stats(k, &st);
    }
    CHECK(st.accepts_dropped == 1);
    /* The peer sees the close: its read ends (0 or a reset), not hangs. */
    char b;
    CHECK(read(c1, &b, 1) <= 0);
    int c2 = dial(&sa);
    CHECK(c2 >= 0);
    int fd;
    CHECK(collect_accepts(k, tok(1), &fd, 1) == 1 && same_peer(fd, c2));
    CHECK(ck_cancel(k, h));
    CHECK(poll_until(k, ev, 4, 1, 5 * SEC) == 1 && ev[0].kind == CK_EVENT_MULTI_END &&
          ev[0].result == -ECANCELED);
    close_fd(k, fd);
    close_fd(k, ls);
    close(c1);
    close(c2);
    free_kernel(k);
}

/* ------------------------------------------------------------ fallback */

static bool capture_stderr_begin(int *saved, FILE **tmp) {
    fflush(stderr);
    *tmp = tmpfile();
    if (!*tmp) return false;
    *saved = dup(2);
    dup2(fileno(*tmp), 2);
    return true;
}

static size_t capture_stderr_end(int saved, FILE *tmp, char *out, size_t cap) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = 0;
    fclose(tmp);
    return n;
}

/* ------------------------------------------------------------------ streaming receive */

/* What a stream has delivered so far: bytes in order, the buffers still
 * held (when the test holds them) and the end. */
typedef struct stream_sink {
    uint8_t *data;
    size_t len, cap;
    uint32_t held[64];
    int nheld;
    int chunks;
    bool ended;
    int64_t end;
} stream_sink;

static void sink_free(stream_sink *s) { free(s->data); }

/* Takes one event of stream `token`; `hold` keeps the buffer instead of
 * releasing it at once. False for an event the test did not expect. */
static bool sink_take(ck_kernel *k, stream_sink *s, const ck_event *e, void *token, bool hold) {
    if (e->token != token) return false;
    if (e->kind == CK_EVENT_STREAM_END) {
        if (s->ended) return false;
        s->ended = true;
        s->end = e->result;
        return true;
    }
    if (e->kind != CK_EVENT_CHUNK || s->ended || e->result <= 0) return false;
    uint8_t *b = ck_stream_buffer(k, e->aux);
    if (!b) return false;
    if (s->len + (size_t)e->result > s->cap) {
        s->cap = (s->len + (size_t)e->result) * 2;
        s->data = realloc(s->data, s->cap);
    }
    memcpy(s->data + s->len, b, (size_t)e->result);
    s->len += (size_t)e->result;
    s->chunks++;
    if (hold) {
        if (s->nheld == 64) return false;
        s->held[s->nheld++] = e->aux;
        return true;
    }
    return ck_stream_release(k, e->aux);
}

static void sink_release_all(ck_kernel *k, stream_sink *s) {
    for (int i = 0; i < s->nheld; i++) ck_stream_release(k, s->held[i]);
    s->nheld = 0;
}

/* Polls (bounded) until the sink has `want` bytes or the stream ended. */
static bool sink_until(ck_kernel *k, stream_sink *s, void *token, size_t want, bool hold) {
    int64_t end = ck_now_ns() + 5 * SEC;
    ck_event ev[64];
    while (s->len < want && !s->ended) {
        int64_t left = end - ck_now_ns();
        if (left <= 0) return false;
        int n = ck_poll(k, true, left, ev, 64);
        if (n < 0) return false;
        for (int i = 0; i < n; i++)
            if (!sink_take(k, s, &ev[i], token, hold)) return false;
    }
    return true;
}

static void fill_pattern(uint8_t *b, size_t n, size_t from) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((from + i) * 31 + ((from + i) >> 9));
}

static bool check_pattern(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != (uint8_t)(i * 31 + (i >> 9))) return false;
    return true;
}

static uint64_t start_stream(ck_kernel *k, int fd, uint32_t bound, void *token) {
    ck_request_args a = req(CK_OP_RECV_STREAM, fd, NULL, bound);
    uint64_t h = 0;
    int64_t r = ck_submit(k, &a, token, &h);
    return r == CK_PENDING ? h : 0;
}

/* Bytes arrive as chunks in pool buffers, in order, and the stream ends
 * with 0 at EOF; every buffer is back and no stream is left. A megabyte
 * through 16 buffers of 4 KiB checks that buffers go round intact. */
static void test_stream_transfer(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 16, 4096) == 0);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    set_nonblock(sv[1], true);
    uint64_t h = start_stream(k, sv[0], 4, tok(1));
    CHECK(h != 0);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECKF(st.buffers == 16 && st.buffer_size == 4096 && st.streams == 1, "stats %u %u %u",
           st.buffers, st.buffer_size, st.streams);
    if (cfg->expect == CK_BACKEND_IO_URING) CHECKF(st.ring, "io_uring on Linux >= 6.0 uses a buffer ring");
    else CHECK(!st.ring);
    CHECK(poll_quiet(k, 5 * MS) == 0);

    const size_t total = 1 << 20;
    uint8_t *src = malloc(total);
    fill_pattern(src, total, 0);
    stream_sink s = {0};
    size_t sent = 0;
    while (sent < total) {
        ssize_t w = write(sv[1], src + sent, total - sent);
        if (w > 0) sent += (size_t)w;
        else CHECKF(errno == EAGAIN, "write: %s", strerror(errno));
        if (!sink_until(k, &s, tok(1), s.len + 1, false)) break;
    }
    CHECK(sink_until(k, &s, tok(1), total, false));
    close(sv[1]);
    CHECK(sink_until(k, &s, tok(1), SIZE_MAX, false));
    CHECKF(s.ended && s.end == 0, "end %lld", (long long)s.end);
    CHECKF(s.len == total && check_pattern(s.data, s.len), "%zu of %zu bytes, intact %d", s.len, total,
           check_pattern(s.data, s.len));
    ck_get_stream_stats(k, &st);
    CHECKF(st.held == 0 && st.streams == 0 && st.chunks == (uint64_t)s.chunks, "held %u streams %u chunks %llu",
           st.held, st.streams, (unsigned long long)st.chunks);
    CHECK(ck_pending_requests(k) == 0);
    free(src);
    sink_free(&s);
    close_fd(k, sv[0]);
    free_kernel(k);
}

/* A pool of two buffers shared by two streams: held chunks empty it, the
 * streams stop (ENOBUFS on io_uring) and nothing arrives; each release
 * starts one again, and every byte arrives, in order, on its stream. */
static void test_stream_exhausted(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 2, 64) == 0);
    int a[2], b[2];
    CHECK(make_socketpair(cfg, a) == 0 && make_socketpair(cfg, b) == 0);
    uint8_t src[1000];
    fill_pattern(src, sizeof src, 0);
    CHECK(write(a[1], src, sizeof src) == (ssize_t)sizeof src);
    CHECK(write(b[1], src, sizeof src) == (ssize_t)sizeof src);
    CHECK(start_stream(k, a[0], 0, tok(1)) != 0);
    CHECK(start_stream(k, b[0], 0, tok(2)) != 0);
    stream_sink sa = {0}, sb = {0};
    ck_event ev[16];
    /* Both buffers go out; then nothing more while they are held. */
    int got = 0;
    int64_t end = ck_now_ns() + 5 * SEC;
    while (got < 2 && ck_now_ns() < end) {
        int n = ck_poll(k, true, end - ck_now_ns(), ev, 16);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            stream_sink *s = ev[i].token == tok(1) ? &sa : &sb;
            CHECK(sink_take(k, s, &ev[i], ev[i].token, true));
            got++;
        }
    }
    CHECKF(got == 2, "%d chunks", got);
    CHECK(poll_quiet(k, 10 * MS) == 0);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECKF(st.held == 2 && st.exhausted >= 1, "held %u exhausted %llu", st.held,
           (unsigned long long)st.exhausted);
    /* Releasing one at a time drives both to the end. */
    while (sa.len < sizeof src || sb.len < sizeof src) {
        sink_release_all(k, &sa);
        sink_release_all(k, &sb);
        int n = poll_until(k, ev, 16, 1, 5 * SEC);
        CHECKF(n > 0, "stalled with %zu and %zu bytes", sa.len, sb.len);
        for (int i = 0; i < n; i++) {
            stream_sink *s = ev[i].token == tok(1) ? &sa : &sb;
            CHECK(sink_take(k, s, &ev[i], ev[i].token, true));
        }
    }
    sink_release_all(k, &sa);
    sink_release_all(k, &sb);
    CHECK(sa.len == sizeof src && check_pattern(sa.data, sa.len));
    CHECK(sb.len == sizeof src && check_pattern(sb.data, sb.len));
    ck_get_stream_stats(k, &st);
    CHECKF(st.held == 0 && st.rearmed >= 1, "held %u rearmed %llu", st.held, (unsigned long long)st.rearmed);
    close(a[1]);
    close(b[1]);
    while (!sa.ended || !sb.ended) {
        int n = poll_until(k, ev, 16, 1, 5 * SEC);
        CHECK(n > 0);
        for (int i = 0; i < n; i++) {
            stream_sink *s = ev[i].token == tok(1) ? &sa : &sb;
            CHECK(sink_take(k, s, &ev[i], ev[i].token, false));
        }
    }
    CHECK(sa.end == 0);
    CHECK(sb.ended && sb.end == 0);
    CHECK(ck_pending_requests(k) == 0);
    sink_free(&sa);
    sink_free(&sb);
    close_fd(k, a[0]);
    close_fd(k, b[0]);
    free_kernel(k);
}

/* A slow consumer: a stream bound to two buffers stops when it holds them
 * (the writer then fills the socket and would block: TCP's back-pressure),
 * and goes on when the consumer releases; nothing is lost. */
static void test_stream_slow_consumer(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 64, 256) == 0);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    set_nonblock(sv[1], true);
    CHECK(start_stream(k, sv[0], 2, tok(1)) != 0);
    const size_t total = 256 * 1024;
    uint8_t *src = malloc(total);
    fill_pattern(src, total, 0);
    size_t sent = 0;
    stream_sink s = {0};
    bool blocked = false;
    while (s.len < total) {
        /* Write until the socket is full. */
        while (sent < total) {
            ssize_t w = write(sv[1], src + sent, total - sent);
            if (w <= 0) {
                CHECK(errno == EAGAIN);
                blocked = true;
                break;
            }
            sent += (size_t)w;
        }
        /* Take what comes, holding it: the stream stops at its bound (the
         * kernel may hand over a few chunks it already had on io_uring). */
        ck_event ev[64];
        int n = poll_until(k, ev, 64, 1, 5 * SEC);
        CHECKF(n > 0, "no chunk with %zu of %zu bytes", s.len, total);
        for (int i = 0; i < n; i++) CHECK(sink_take(k, &s, &ev[i], tok(1), true));
        CHECK(poll_quiet(k, 2 * MS) >= 0);
        ck_stream_stats st;
        ck_get_stream_stats(k, &st);
        CHECKF(st.held <= st.buffers && (size_t)s.nheld == st.held, "held %u of %u", st.held, st.buffers);
        sink_release_all(k, &s);
    }
    CHECK(blocked);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECKF(st.paused >= 1, "the stream never stopped at its bound");
    CHECK(s.len == total && check_pattern(s.data, s.len));
    free(src);
    sink_free(&s);
    close(sv[1]);
    close_fd(k, sv[0]);
    CHECK(poll_until(k, (ck_event[4]){0}, 4, 1, 5 * SEC) == 1);
    CHECK(ck_pending_requests(k) == 0);
    free_kernel(k);
}

/* A peer that resets mid-stream: the data before the reset arrives, then
 * the stream ends with -ECONNRESET, and every buffer comes back. */
static void test_stream_reset(const config *cfg) {
    NEWK(k);
    struct sockaddr_in sa;
    int ls = listen_loopback(cfg, &sa);
    CHECK(ls >= 0);
    int c = dial(&sa);
    CHECK(c >= 0);
    int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CHECK(s >= 0);
    set_nonblock(s, cfg->nonblocking);
    CHECK(start_stream(k, s, 0, tok(1)) != 0);
    uint8_t src[3000];
    fill_pattern(src, sizeof src, 0);
    CHECK(write(c, src, sizeof src) == (ssize_t)sizeof src);
    stream_sink sk = {0};
    CHECK(sink_until(k, &sk, tok(1), sizeof src, false));
    CHECK(sk.len == sizeof src && check_pattern(sk.data, sk.len));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(c); /* an RST */
    CHECK(sink_until(k, &sk, tok(1), SIZE_MAX, false));
    CHECKF(sk.ended && sk.end == -ECONNRESET, "end %lld", (long long)sk.end);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECK(st.held == 0 && st.streams == 0);
    CHECK(ck_pending_requests(k) == 0);
    sink_free(&sk);
    close_fd(k, s);
    close(ls);
    free_kernel(k);
}

/* Cancelling a running stream, a stopped one and forgetting its
 * descriptor: one STREAM_END with -ECANCELED each; chunks delivered before
 * stay valid until released. */
static void test_stream_cancel(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 8, 64) == 0);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    /* Running, with a chunk held. */
    uint64_t h = start_stream(k, sv[0], 0, tok(1));
    CHECK(h != 0);
    CHECK(write(sv[1], "abc", 3) == 3);
    stream_sink s = {0};
    CHECK(sink_until(k, &s, tok(1), 3, true));
    CHECK(ck_cancel(k, h));
    CHECK(sink_until(k, &s, tok(1), SIZE_MAX, true));
    CHECKF(s.ended && s.end == -ECANCELED, "end %lld", (long long)s.end);
    CHECK(memcmp(ck_stream_buffer(k, s.held[0]), "abc", 3) == 0);
    sink_release_all(k, &s);
    CHECK(!ck_stream_release(k, s.held[0])); /* released twice */
    CHECK(ck_stream_buffer(k, s.held[0]) == NULL);
    sink_free(&s);

    /* Stopped at its bound of one: nothing of it is in the backend. */
    stream_sink s2 = {0};
    h = start_stream(k, sv[0], 1, tok(2));
    CHECK(h != 0);
    CHECK(write(sv[1], "defghi", 6) == 6);
    CHECK(sink_until(k, &s2, tok(2), 1, true));
    CHECK(ck_cancel(k, h));
    CHECK(sink_until(k, &s2, tok(2), SIZE_MAX, true));
    CHECKF(s2.ended && s2.end == -ECANCELED, "end %lld", (long long)s2.end);
    sink_release_all(k, &s2);

    /* Forgetting the descriptor ends a third. */
    stream_sink s3 = {0};
    CHECK(start_stream(k, sv[0], 0, tok(3)) != 0);
    close_fd(k, sv[0]);
    CHECK(sink_until(k, &s3, tok(3), SIZE_MAX, false));
    CHECKF(s3.ended && s3.end == -ECANCELED, "end %lld", (long long)s3.end);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECK(st.held == 0 && st.streams == 0);
    CHECK(ck_pending_requests(k) == 0);
    sink_free(&s2);
    sink_free(&s3);
    close(sv[1]);
    free_kernel(k);
}

/* The pool's shape is checked and fixed by the first stream. */
static void test_stream_configure(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 0, 4096) == -EINVAL);
    CHECK(ck_stream_configure(k, 40000, 4096) == -EINVAL);
    CHECK(ck_stream_configure(k, 8, 8) == -EINVAL);
    CHECK(ck_stream_configure(k, 5, 100) == 0);
    CHECK(ck_stream_buffer(k, 0) == NULL && !ck_stream_release(k, 0));
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    uint64_t h = start_stream(k, sv[0], 0, tok(1));
    CHECK(h != 0);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECKF(st.buffers == 8 && st.buffer_size == 100, "rounded to %u × %u", st.buffers, st.buffer_size);
    CHECK(ck_stream_configure(k, 16, 100) == -EBUSY);
    CHECK(!ck_stream_release(k, 99));
    CHECK(ck_cancel(k, h));
    stream_sink s = {0};
    CHECK(sink_until(k, &s, tok(1), SIZE_MAX, false) && s.end == -ECANCELED);
    sink_free(&s);
    close_fd(k, sv[0]);
    close(sv[1]);
    free_kernel(k);
}

/* No buffer ring (an old kernel, or its set-up failed): io_uring receives
 * on readiness into the pool, with the same events. No memory for the
 * pool: the stream fails at once and the next one works. */
static void test_fault_stream_setup(const config *cfg) {
    NEWK(k);
    CHECK(ck_stream_configure(k, 4, 64) == 0);
    int sv[2];
    CHECK(make_socketpair(cfg, sv) == 0);
    CHECK(ck_fault_inject(CK_FAULT_POOL_ALLOC, 1));
    ck_request_args a = req(CK_OP_RECV_STREAM, sv[0], NULL, 0);
    uint64_t h = 1;
    CHECK(ck_submit(k, &a, tok(1), &h) == -ENOMEM && h == 0);
    CHECK(ck_fault_inject(CK_FAULT_BUF_RING, 1));
    h = start_stream(k, sv[0], 2, tok(2));
    CHECK(h != 0);
    ck_stream_stats st;
    ck_get_stream_stats(k, &st);
    CHECK(!st.ring && st.buffers == 4);
    uint8_t src[2000];
    fill_pattern(src, sizeof src, 0);
    CHECK(write(sv[1], src, sizeof src) == (ssize_t)sizeof src);
    stream_sink s = {0};
    /* Held chunks stop it at two; released, it goes on. */
    CHECK(sink_until(k, &s, tok(2), 128, true));
    CHECK(poll_quiet(k, 5 * MS) == 0);
    CHECK(s.nheld == 2);
    while (s.len < sizeof src) {
        sink_release_all(k, &s);
        CHECK(sink_until(k, &s, tok(2), s.len + 1, true));
    }
    sink_release_all(k, &s);
    CHECK(check_pattern(s.data, s.len));
    close(sv[1]);
    CHECK(sink_until(k, &s, tok(2), SIZE_MAX, false) && s.ended && s.end == 0);
    ck_get_stream_stats(k, &st);
    CHECK(st.held == 0 && st.streams == 0 && st.paused >= 1);
    sink_free(&s);
    close_fd(k, sv[0]);
    free_kernel(k);
}

/* Runs first in main, before anything else could trigger the one-time
 * fallback message. */
static void test_fallback_env(const config *cfg) {
    (void)cfg;
    setenv("CURIO_DISABLE_IO_URING", "1", 1);
    int saved;
    FILE *tmp;
    char out[4096];
    /* Quiet: the reason is there to read, nothing goes to stderr (and the
     * one-time line is still owed to the next kernel that falls back). */
    CHECK(capture_stderr_begin(&saved, &tmp));
    ck_kernel_options quiet = {.want = CK_BACKEND_IO_URING, .flags = CK_KERNEL_QUIET_FALLBACK};
    ck_kernel *kq = ck_kernel_new_with(&quiet);
    capture_stderr_end(saved, tmp, out, sizeof out);
    CHECK(kq && ck_kernel_backend(kq) == CK_BACKEND_EPOLL);
    CHECKF(out[0] == 0, "a quiet fallback wrote: '%s'", out);
#ifndef CURIO_EPOLL_ONLY
    const char *why = ck_kernel_fallback_reason(kq);
    CHECKF(why && strstr(why, "CURIO_DISABLE_IO_URING"), "reason: %s", why ? why : "(none)");
    /* CK_KERNEL_IGNORE_ENV: the caller decides; the variable is not read. */
    ck_kernel_options own = {.want = CK_BACKEND_IO_URING, .flags = CK_KERNEL_IGNORE_ENV};
    ck_kernel *ki = ck_kernel_new_with(&own);
    CHECK(ki);
    CHECKF(ck_kernel_backend(ki) == CK_BACKEND_IO_URING || ck_kernel_fallback_reason(ki),
           "epoll without a reason");
    if (ck_kernel_backend(ki) == CK_BACKEND_IO_URING) CHECK(ck_kernel_fallback_reason(ki) == NULL);
    ck_kernel_free(ki);
#else
    CHECK(ck_kernel_fallback_reason(kq) == NULL); /* epoll is simply the backend */
#endif
    ck_kernel_free(kq);
    CHECK(capture_stderr_begin(&saved, &tmp));
    ck_kernel *k1 = ck_kernel_new(CK_BACKEND_IO_URING);
    ck_kernel *k2 = ck_kernel_new(CK_BACKEND_IO_URING);
    capture_stderr_end(saved, tmp, out, sizeof out);
    unsetenv("CURIO_DISABLE_IO_URING");
    CHECK(k1 && k2);
    CHECK(ck_kernel_backend(k1) == CK_BACKEND_EPOLL);
    CHECK(ck_kernel_backend(k2) == CK_BACKEND_EPOLL);
    int lines = 0;
    for (char *s = out; *s; s++) lines += *s == '\n';
#ifdef CURIO_EPOLL_ONLY
    /* Built without io_uring: epoll is simply the backend. */
    CHECKF(lines == 0, "unexpected stderr output: %s", out);
#else
    CHECKF(lines == 1, "expected one line on stderr, got %d: '%s'", lines, out);
    CHECKF(strstr(out, "io_uring") && strstr(out, "epoll"), "message: '%s'", out);
#endif
    /* The fallback kernel works. */
    uint64_t h = ck_timer_add(k1, ck_now_ns() + MS, tok(1));
    CHECK(h);
    ck_event ev[2];
    CHECK(poll_until(k1, ev, 2, 1, 5 * SEC) == 1 && ev[0].token == tok(1));
    ck_kernel_free(k1);
    ck_kernel_free(k2);
    /* "0" does not disable io_uring. */
    setenv("CURIO_DISABLE_IO_URING", "0", 1);
    ck_kernel *k3 = ck_kernel_new(CK_BACKEND_IO_URING);
    unsetenv("CURIO_DISABLE_IO_URING");
    CHECK(k3);
#ifndef CURIO_EPOLL_ONLY
    /* (io_uring itself may be unavailable on this machine; main reports it) */
#endif
    ck_kernel_free(k3);
    /* Asking for epoll gives epoll, with no fallback to explain. */
    ck_kernel *k4 = ck_kernel_new(CK_BACKEND_EPOLL);
    CHECK(k4 && ck_kernel_backend(k4) == CK_BACKEND_EPOLL);
    CHECK(ck_kernel_fallback_reason(k4) == NULL);
    ck_kernel_free(k4);
}

/* ------------------------------------------------------------ main */

typedef struct test_case {
    const char *name;
    test_fn fn;
    bool io;
} test_case;

/* The virtual clock: timers run on it, it stands still while the loop
 * waits for I/O, it jumps to the next deadline when an idle wait finds
 * nothing (and not while held or with autojump off), and ck_clock_advance
 * moves it by hand. An hour of timers passes in no real time. */
static void test_virtual_clock(const config *cfg) {
    NEWK(k);
    CHECK(!ck_clock_is_virtual(k));
    CHECK(!ck_clock_advance(k, SEC)); /* a real clock cannot be moved */
    const int64_t start = 1000 * SEC;
    ck_clock_set_virtual(k, start, 0);
    CHECK(ck_clock_is_virtual(k));
    CHECK(ck_kernel_now(k) == start);
    ck_bind_thread(k);
    CHECK(ck_clock_now() == start);
    ck_bind_thread(NULL);

    /* Three timers an hour apart fire in deadline order, each at its own
     * virtual moment, and the real time spent is far below a second. */
    int64_t real0 = ck_now_ns();
    for (int i = 3; i >= 1; i--) CHECK(ck_timer_add(k, start + i * 3600 * SEC, tok((uintptr_t)i)) != 0);
    ck_event ev[4];
    for (int i = 1; i <= 3; i++) {
        int n = 0;
        for (int turns = 0; n == 0 && turns < MAX_TURNS; turns++) n = ck_poll(k, true, -1, ev, 4);
        CHECKF(n == 1, "%d events for timer %d", n, i);
        CHECK(ev[0].kind == CK_EVENT_TIMER && untok(ev[0].token) == (uintptr_t)i);
        CHECK(ev[0].result == start + i * 3600 * SEC);
        CHECK(ck_kernel_now(k) == start + i * 3600 * SEC);
    }
    ck_stats st;
    ck_get_stats(k, &st);
    CHECK(st.clock_jumps == 3);
    CHECKF(ck_now_ns() - real0 < 60 * SEC, "virtual hours took real time"); /* alarm()'s bound */

    /* Held: the loop waits for outside work (here a post from another
     * thread) instead of jumping; the post arrives, the clock has not moved. */
    int64_t at = ck_kernel_now(k);
    CHECK(ck_timer_add(k, at + SEC, tok(9)) != 0);
    ck_clock_hold(k, true);
    poster p = {.k = k, .loop_tid = this_tid(), .token = tok(77)};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, poster_main, &p) == 0);
    int n = poll_until(k, ev, 4, 1, 5 * SEC);
    pthread_join(th, NULL);
    CHECK(p.blocked);
    CHECKF(n == 1 && ev[0].kind == CK_EVENT_MESSAGE, "%d events", n);
    CHECK(ck_kernel_now(k) == at);
    /* A bounded wait while held ends without a jump. */
    CHECK(ck_poll(k, true, 2 * MS, ev, 4) == 0);
    CHECK(ck_kernel_now(k) == at);
    /* Held with nothing coming: after the deadline's distance in real time
     * (here 20 ms) the clock jumps after all, so nothing hangs. */
    uint64_t h20 = ck_timer_add(k, at + 20 * MS, tok(20));
    CHECK(h20 != 0);
    int64_t real_before = ck_now_ns();
    n = 0;
    for (int turns = 0; n == 0 && turns < MAX_TURNS; turns++) n = ck_poll(k, true, -1, ev, 4);
    CHECKF(n == 1 && untok(ev[0].token) == 20, "%d events", n);
    CHECK(ck_kernel_now(k) == at + 20 * MS);
    CHECKF(ck_now_ns() - real_before >= 20 * MS, "a held clock jumped before the real time passed");
    at = ck_kernel_now(k);
    ck_clock_hold(k, false);

    /* By hand: advancing short of the deadline fires nothing; reaching it
     * fires the timer on the next poll, which need not block. */
    CHECK(ck_clock_advance(k, SEC / 2));
    CHECK(ck_poll(k, false, 0, ev, 4) == 0);
    CHECK(!ck_clock_advance(k, -1));
    CHECK(ck_clock_advance(k, SEC / 2));
    n = ck_poll(k, false, 0, ev, 4);
    CHECKF(n == 1 && ev[0].kind == CK_EVENT_TIMER && untok(ev[0].token) == 9, "%d events", n);
    CHECK(ck_kernel_now(k) == at + SEC);

    /* Autojump off: only ck_clock_advance moves time; a bounded wait
     * returns with the timer still pending. */
    ck_clock_set_virtual(k, ck_kernel_now(k), -1);
    at = ck_kernel_now(k);
    uint64_t h = ck_timer_add(k, at + SEC, tok(10));
    CHECK(ck_poll(k, true, 2 * MS, ev, 4) == 0);
    CHECK(ck_kernel_now(k) == at && ck_timer_count(k) == 1);
    CHECK(ck_timer_cancel(k, h));
    /* No timer at all: nothing to jump to, the bounded wait just ends. */
    ck_clock_set_virtual(k, at, 0);
    CHECK(ck_poll(k, true, 2 * MS, ev, 4) == 0);
    CHECK(ck_kernel_now(k) == at);
    free_kernel(k);
}

/* A poster's job may run, and its kernel be freed, before ck_post has
 * returned: the poster must not touch the kernel after its job is visible
 * (ASan: heap-use-after-free in ck_wake, found by the Swift suite when a
 * task resumed from another kernel's thread ended its kernel at once).
 * Repeated so the loop often sees the post in the window between the
 * poster's push and its look at `sleeping`. */
typedef struct racing_poster {
    ck_kernel *k;
    atomic_int go;
} racing_poster;

static void *racing_poster_main(void *arg) {
    racing_poster *p = arg;
    while (!atomic_load(&p->go)) {}
    ck_post(p->k, NULL, NULL, tok(5));
    return NULL;
}

static void test_post_then_free(const config *cfg) {
    for (int i = 0; i < 300; i++) {
        NEWK(k);
        racing_poster p = {.k = k};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, racing_poster_main, &p) == 0);
        atomic_store(&p.go, 1);
        ck_event ev[2];
        int n = 0;
        while (n == 0) {
            n = ck_poll(k, true, 5 * SEC, ev, 2);
            CHECK(n >= 0);
        }
        CHECK(n == 1 && ev[0].token == tok(5));
        free_kernel(k); /* at once: the poster may still be in ck_post */
        pthread_join(th, NULL);
    }
}

static const test_case tests[] = {
    {"ready_queue", test_ready_queue, false},
    {"timer_heap", test_timer_heap, false},
    {"timer_expiry", test_timer_expiry, false},
    {"timer_blocking", test_timer_blocking, false},
    {"virtual_clock", test_virtual_clock, false},
    {"post_message_wakes", test_post_message_wakes, false},
    {"post_job_wakes", test_post_job_wakes, false},
    {"post_then_free", test_post_then_free, false},
    {"wake", test_wake, false},
    {"post_many_threads", test_post_many_threads, false},
    {"kernel_misc", test_kernel_misc, false},
    {"kernel_other_thread", test_kernel_other_thread, false},
    {"io_pipe_read", test_io_pipe_read, true},
    {"io_file_offset", test_io_file_offset, true},
    {"io_socketpair", test_io_socketpair, true},
    {"io_poll", test_io_poll, true},
    {"io_accept_connect", test_io_accept_connect, true},
    {"io_connect_refused", test_io_connect_refused, true},
    {"io_cancel", test_io_cancel, true},
    {"io_forget_fd", test_io_forget_fd, true},
    {"io_bad_fd", test_io_bad_fd, true},
    {"io_many_pending", test_io_many_pending, true},
    {"io_batch_submit", test_io_batch_submit, true},
    {"io_with_timeout", test_io_with_timeout, true},
    {"io_look_sees_completion", test_io_look_sees_completion, true},
    {"io_no_eagain", test_io_no_eagain, true},
    {"io_send_behind", test_io_send_behind, true},
    {"kernel_thread_moves", test_kernel_thread_moves, false},
    {"backend_info", test_backend_info, false},
    {"fault_request_alloc", test_fault_request_alloc, true},
    {"fault_done_io", test_fault_done_io, true},
    {"fault_done_timer_message", test_fault_done_timer_message, false},
    {"fault_ready", test_fault_ready, false},
    {"fault_timer_add", test_fault_timer_add, false},
    {"fault_sqe", test_fault_sqe, true},
    {"io_accept_multi", test_io_accept_multi, true},
    {"fault_accept_multi", test_fault_accept_multi, true},
    {"stream_transfer", test_stream_transfer, true},
    {"stream_exhausted", test_stream_exhausted, true},
    {"stream_slow_consumer", test_stream_slow_consumer, true},
    {"stream_reset", test_stream_reset, true},
    {"stream_cancel", test_stream_cancel, true},
    {"stream_configure", test_stream_configure, false},
    {"fault_stream_setup", test_fault_stream_setup, true},
};

/* Older kernels' io_uring honours O_NONBLOCK on pipes and sockets by
 * completing with -EAGAIN instead of waiting (the Swift side then falls back
 * to a readiness poll). Returns true when this kernel waits instead, so the
 * non-blocking descriptor runs apply to io_uring. */
static bool uring_waits_on_nonblocking_fds(void) {
    ck_kernel *k = ck_kernel_new(CK_BACKEND_IO_URING);
    if (!k) return false;
    bool waits = ck_kernel_backend(k) == CK_BACKEND_IO_URING;
    int p[2] = {-1, -1}, sv[2] = {-1, -1};
    char b1[4], b2[4];
    uint64_t h;
    if (waits && pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0 &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0) {
        ck_request_args a = req(CK_OP_READ, p[0], b1, sizeof b1);
        ck_submit(k, &a, tok(1), &h);
        a = req(CK_OP_RECV, sv[0], b2, sizeof b2);
        ck_submit(k, &a, tok(2), &h);
        int n = poll_quiet(k, 20 * MS);
        if (n != 0) waits = false; /* -EAGAIN (or anything) came back at once */
    } else {
        waits = false;
    }
    if (p[0] >= 0) { close_fd(k, p[0]); close(p[1]); }
    if (sv[0] >= 0) { close_fd(k, sv[0]); close(sv[1]); }
    poll_quiet(k, 5 * MS);
    ck_kernel_free(k);
    return waits;
}

/* Optional arguments: run only the tests whose names contain one of them,
 * optionally repeated: ck_test [-r COUNT] [NAME...]. */
static int g_argc, g_repeat = 1;
static char **g_argv;
static bool selected(const char *name) {
    if (g_argc == 0) return true;
    for (int i = 0; i < g_argc; i++)
        if (strstr(name, g_argv[i])) return true;
    return false;
}

int main(int argc, char **argv) {
    argc--, argv++;
    if (argc >= 2 && strcmp(argv[0], "-r") == 0) {
        g_repeat = atoi(argv[1]);
        argc -= 2, argv += 2;
    }
    g_argc = argc;
    g_argv = argv;
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm(60);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Start from a known environment. */
    unsetenv("CURIO_DISABLE_IO_URING");

    static const config fallback_cfg = {"fallback", CK_BACKEND_IO_URING, CK_BACKEND_EPOLL, true,
                                        true, false};
    if (selected("fallback_env")) run_test("fallback_env", test_fallback_env, &fallback_cfg);

    config cfgs[8];
    int ncfg = 0;
    bool uring = false;
    if (ck_have_io_uring()) {
        ck_kernel *k = ck_kernel_new(CK_BACKEND_IO_URING);
        uring = k && ck_kernel_backend(k) == CK_BACKEND_IO_URING;
        if (k) ck_kernel_free(k);
        if (!uring)
            printf("# io_uring is compiled in but unavailable here; io_uring runs skipped\n");
    }
    if (uring && uring_waits_on_nonblocking_fds()) {
        cfgs[ncfg++] = (config){"io_uring", CK_BACKEND_IO_URING, CK_BACKEND_IO_URING, true, false, false};
        cfgs[ncfg++] = (config){"io_uring,blocking-fds", CK_BACKEND_IO_URING, CK_BACKEND_IO_URING,
                                false, false, true};
    } else if (uring) {
        printf("# this kernel's io_uring answers -EAGAIN on O_NONBLOCK descriptors; "
               "io_uring runs use blocking descriptors\n");
        cfgs[ncfg++] = (config){"io_uring,blocking-fds", CK_BACKEND_IO_URING, CK_BACKEND_IO_URING,
                                false, false, false};
    }
    cfgs[ncfg++] = (config){"epoll", CK_BACKEND_EPOLL, CK_BACKEND_EPOLL, true, false, false};
    cfgs[ncfg++] = (config){ck_have_io_uring() ? "io_uring->epoll fallback"
                                               : "io_uring->epoll (not compiled in)",
                            CK_BACKEND_IO_URING, CK_BACKEND_EPOLL, true, true, false};
    printf("# %s build; backends: %s\n", ck_have_io_uring() ? "io_uring" : "epoll-only",
           uring ? "io_uring, epoll" : backend_name(CK_BACKEND_EPOLL));

    if (g_repeat > 1) alarm(0); /* repeated runs are for hunting flakiness by hand */
    for (int rep = 0; rep < g_repeat; rep++)
        for (int c = 0; c < ncfg; c++) {
            if (cfgs[c].disable_env) setenv("CURIO_DISABLE_IO_URING", "1", 1);
            for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
                if (cfgs[c].io_only && !tests[t].io) continue;
                if (!selected(tests[t].name)) continue;
                run_test(tests[t].name, tests[t].fn, &cfgs[c]);
            }
            if (cfgs[c].disable_env) unsetenv("CURIO_DISABLE_IO_URING");
        }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
