/* The echo benchmark's load generator: closed loop, one thread, io_uring
 * (or epoll with -e).
 *
 *   loadgen -p PORT [-c CONNS] [-s BYTES] [-t SECONDS] [-w WARMUP] [-v] [-e]
 *           [-P SERVER_PID]
 *
 * Opens CONNS connections to 127.0.0.1:PORT (TCP_NODELAY). Each one sends
 * a BYTES-byte message, waits until BYTES bytes have come back, and sends
 * the next: one round trip. After WARMUP seconds (default 0.5) it counts
 * round trips for SECONDS seconds (default 3) and prints
 *
 *   RTPS <round trips/s> CPU <loadgen %> SERVER <server %> OTHER <rest %>
 *
 * CPU use is in % of one core over the counted seconds: the load
 * generator's own, the server's (with -P, from /proc/PID/stat, all its
 * threads) and everything else's (user + system time of the whole machine
 * from /proc/stat minus the two; interrupt time is left out). A loadgen
 * near 100% may be the bottleneck; OTHER well above 0 means something else
 * ran on the machine and the number is suspect. -v checks every echoed
 * byte. The line ends with "ROUNDS <n>", the round trips counted.
 *
 * LOADGEN_MARK_START and LOADGEN_MARK_END in the environment are shell
 * commands run (and waited for) just before counting starts and just after
 * it stops: Benchmarks/echo/instructions.sh zeroes and dumps a server's
 * callgrind counters there, so that its instruction count covers exactly
 * the counted round trips (give or take the CONNS in flight).
 *
 * The io_uring loop (the default) costs fewer system calls per round trip
 * than the epoll one (one io_uring_enter per batch of completions, against
 * a send, a recv and a share of epoll_wait per round trip), which matters
 * because on loopback the load generator does about as much kernel TCP
 * work per round trip as the server it measures. -e picks the epoll loop;
 * LOADGEN_NO_FIXED and LOADGEN_NO_POLL_FIRST in the environment turn off
 * the io_uring loop's registered descriptors and poll-first receives.
 *
 * It stops by itself: after WARMUP + SECONDS, or with an error (exit 1)
 * when the server closes, fails, or makes no progress for 5 seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    size_t sent;     /* bytes of the current message sent */
    size_t received; /* bytes of its echo received */
    uint64_t round;  /* message number, stamped into the message */
    int want_out;    /* epoll: EPOLLOUT registered (a send was short) */
    int echoed;      /* io_uring: the echo is complete, the send not yet */
    unsigned char *out, *in;
} conn;

static size_t msg_size = 100;
static int verify;
static conn *conns;
static int nconns = 1;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fail(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail_err(const char *what, int err) {
    errno = err;
    fail(what);
}

/* ------------------------------------------------------------ the clock
 * Counting starts after the warm-up and stops SECONDS later; `tick` is
 * called after every batch of events and returns 1 when the run is over. */

static double t_measure, t_end, t0, cpu0, server0, machine0, last_progress;
static int server_pid;

/* A process's user + system seconds, all threads; 0 if unknown. */
static double proc_cpu_s(int pid) {
    if (pid <= 0) return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return 0;
    unsigned long ut = 0, st = 0;
    /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime (fields 3..15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The whole machine's user + nice + system + steal seconds. */
static double machine_cpu_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long u = 0, ni = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, steal = 0;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &ni, &sy, &id, &io, &irq, &sirq, &steal);
    fclose(f);
    if (got < 3) return 0;
    return (double)(u + ni + sy + steal) / (double)sysconf(_SC_CLK_TCK);
}
static uint64_t count, count0;
static int measuring;

/* Runs the command named by the environment variable `which`, if set. */
static void mark(const char *which) {
    const char *cmd = getenv(which);
    if (!cmd || !*cmd) return;
    int status = system(cmd);
    if (status != 0) {
        fprintf(stderr, "loadgen: %s (%s) failed with status %d\n", which, cmd, status);
        exit(1);
    }
}

static void clock_start(double warmup, double seconds) {
    double t = now_s();
    t_measure = t + warmup;
    t_end = t_measure + seconds;
    last_progress = t;
}

static int tick(int progressed) {
    double t = now_s();
    if (progressed) last_progress = t;
    else if (t - last_progress > 5) {
        fprintf(stderr, "loadgen: no progress for 5 s\n");
        exit(1);
    }
    if (!measuring && t >= t_measure) {
        measuring = 1;
        mark("LOADGEN_MARK_START");
        t = now_s();
        last_progress = t;
        t0 = t;
        cpu0 = cpu_s();
        server0 = proc_cpu_s(server_pid);
        machine0 = machine_cpu_s();
        count0 = count;
    } else if (measuring && t >= t_end) {
        double elapsed = t - t0;
        double cpu = cpu_s() - cpu0;
        double server = server_pid > 0 ? proc_cpu_s(server_pid) - server0 : 0;
        double other = machine_cpu_s() - machine0 - cpu - server;
        if (other < 0) other = 0;
        uint64_t rounds = count - count0;
        mark("LOADGEN_MARK_END");
        printf("RTPS %.0f CPU %.1f SERVER %.1f OTHER %.1f ROUNDS %llu\n", (double)rounds / elapsed,
               100.0 * cpu / elapsed, 100.0 * server / elapsed, 100.0 * other / elapsed,
               (unsigned long long)rounds);
        fflush(stdout);
        return 1;
    }
    return 0;
}

/* The echo of the current message is complete: count it, start the next. */
static void next_message(conn *c) {
    if (verify && memcmp(c->in, c->out, msg_size) != 0) {
        fprintf(stderr, "loadgen: echo mismatch on connection %d\n", (int)(c - conns));
        exit(1);
    }
    count++;
    c->round++;
    memcpy(c->out, &c->round, sizeof c->round < msg_size ? sizeof c->round : msg_size);
    c->sent = 0;
    c->received = 0;
}

static void closed_by_server(void) {
    fprintf(stderr, "loadgen: the server closed a connection\n");
    exit(1);
}

/* ------------------------------------------------------------ epoll loop */

static void set_out(int ep, conn *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl");
    c->want_out = on;
}

/* Sends what is left of the current message; registers for EPOLLOUT if
 * the socket buffer is full. */
static void pump_out(int ep, conn *c) {
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, c->out + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            fail("send");
        }
        c->sent += (size_t)n;
    }
    set_out(ep, c, c->sent < msg_size);
}

static void run_epoll(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) fail("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail("epoll_ctl");
    }
    for (int i = 0; i < nconns; i++) pump_out(ep, &conns[i]);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) pump_out(ep, c);
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = recv(c->fd, c->in + c->received, msg_size - c->received, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                fail("recv");
            }
            if (r == 0) closed_by_server();
            c->received += (size_t)r;
            if (c->received == msg_size) {
                next_message(c);
                pump_out(ep, c);
            }
        }
        if (tick(n > 0)) break;
    }
    close(ep);
}

/* ------------------------------------------------------------ io_uring loop
 * Per connection at most one send and one recv in flight. The recv for a
 * message is queued together with its send, so one io_uring_enter both
 * sends and waits. */

enum { OP_SEND = 1, OP_RECV = 2 };
static struct io_uring ring;

static struct io_uring_sqe *sqe_get(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (!sqe) fail_err("io_uring_get_sqe", EBUSY);
    }
    return sqe;
}

static int fixed_files = 1, poll_first = 1;

static void queue_recv(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, fixed_files ? (int)(c - conns) : c->fd, c->in + c->received,
                       msg_size - c->received, 0);
    /* The echo is rarely there yet: wait for readiness instead of trying
     * first (a socket that is already readable fires the poll at once). */
    if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    if (fixed_files) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
}

static void queue_send(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, fixed_files ? (int)(c - conns) : c->fd, c->out + c->sent,
                       msg_size - c->sent, MSG_NOSIGNAL);
    if (fixed_files) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
}

static void run_uring(void) {
    struct io_uring_params p;
    unsigned entries = 1;
    while (entries < (unsigned)nconns * 4 && entries < 32768) entries <<= 1;
    if (entries < 64) entries = 64;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int err = io_uring_queue_init_params(entries, &ring, &p);
    if (err == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN;
        err = io_uring_queue_init_params(entries, &ring, &p);
    }
    if (err == -EINVAL) {
        memset(&p, 0, sizeof p);
        err = io_uring_queue_init_params(entries, &ring, &p);
    }
    if (err < 0) fail_err("io_uring_queue_init", -err);
    if (fixed_files) {
        int *fds = malloc((size_t)nconns * sizeof *fds);
        if (!fds) fail("malloc");
        for (int i = 0; i < nconns; i++) fds[i] = conns[i].fd;
        if (io_uring_register_files(&ring, fds, (unsigned)nconns) < 0) fixed_files = 0;
        free(fds);
    }
    for (int i = 0; i < nconns; i++) {
        queue_send(&conns[i]);
        queue_recv(&conns[i]);
    }
    for (;;) {
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
        int r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            fail_err("io_uring_submit_and_wait_timeout", -r);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            conn *c = (conn *)(uintptr_t)(ud & ~(uint64_t)3);
            int res = cqe->res;
            if (res < 0) fail_err((ud & 3) == OP_SEND ? "send" : "recv", -res);
            if ((ud & 3) == OP_SEND) {
                c->sent += (size_t)res;
                if (c->sent < msg_size) queue_send(c);
                else if (c->echoed) goto next;
                continue;
            }
            if (res == 0) closed_by_server();
            c->received += (size_t)res;
            if (c->received < msg_size) {
                queue_recv(c);
                continue;
            }
            /* The echo is back; its send's completion normally came first. */
            if (c->sent < msg_size) {
                c->echoed = 1;
                continue;
            }
        next:
            c->echoed = 0;
            next_message(c);
            queue_send(c);
            queue_recv(c);
        }
        io_uring_cq_advance(&ring, seen);
        if (tick(seen > 0)) break;
    }
    io_uring_queue_exit(&ring);
}

int main(int argc, char **argv) {
    int port = 0, use_epoll = 0;
    double seconds = 3, warmup = 0.5;
    int opt;
    while ((opt = getopt(argc, argv, "p:c:s:t:w:veP:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 's': msg_size = (size_t)atol(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'v': verify = 1; break;
        case 'e': use_epoll = 1; break;
        case 'P': server_pid = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen -p PORT [-c CONNS] [-s BYTES] [-t SECONDS] [-w WARMUP] [-v] [-e] [-P SERVER_PID]\n");
            return 2;
        }
    }
    if (port <= 0 || nconns <= 0 || msg_size == 0 || seconds <= 0 || warmup < 0) {
        fprintf(stderr, "loadgen: need -p PORT > 0, CONNS > 0, BYTES > 0, SECONDS > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (getenv("LOADGEN_NO_FIXED")) fixed_files = 0;
    if (getenv("LOADGEN_NO_POLL_FIRST")) poll_first = 0;

    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) fail("calloc");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) fail("socket");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&sin, sizeof sin) < 0) fail("connect");
        c->out = malloc(msg_size);
        c->in = malloc(msg_size);
        if (!c->out || !c->in) fail("malloc");
        for (size_t j = 0; j < msg_size; j++) c->out[j] = (unsigned char)('a' + (i + j) % 26);
        c->round = 1;
        memcpy(c->out, &c->round, sizeof c->round < msg_size ? sizeof c->round : msg_size);
    }

    clock_start(warmup, seconds);
    if (use_epoll) run_epoll();
    else run_uring();
    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    return 0;
}
