/* A raw C io_uring echo server: the ceiling for the echo benchmark.
 *
 *   uring_echo PORT [defer|coop|plain] [zc]   (PORT 0 picks a free one; prints "PORT <n>")
 *
 * Listens on 127.0.0.1 only. One ring, one thread: a multishot accept,
 * then per connection a recv into the connection's own buffer and a send
 * of what arrived (again for the rest after a short send), then the next
 * recv. SIGINT/SIGTERM end it.
 *
 * The ring uses the newest setup flags the kernel accepts
 * (SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN, then none) and says
 * which on stderr; the second argument starts the list further down.
 *
 * With `zc`, replies go out with IORING_OP_SEND_ZC: the kernel sends from
 * the connection's buffer without copying it and posts a second completion
 * (IORING_CQE_F_NOTIF) once it no longer needs the buffer; only then is the
 * next recv armed into it. For the benchmark's question: does zero-copy
 * send win for 16 KiB or 1 MiB messages here (Benchmarks/echo/README.md)?
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define BUF_SIZE (64 * 1024)

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

typedef struct conn {
    int fd;
    unsigned len;  /* bytes received, to echo */
    unsigned sent; /* of those, already sent */
    int notifs;    /* zc: buffer releases still to come */
    char buf[BUF_SIZE];
} conn;

static struct io_uring ring;
static volatile sig_atomic_t stop;
static int zero_copy;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what, int err) {
    fprintf(stderr, "uring_echo: %s: %s\n", what, strerror(err));
    exit(1);
}

static struct io_uring_sqe *sqe_get(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (!sqe) die("io_uring_get_sqe", EBUSY);
    }
    return sqe;
}

static inline uint64_t tag(void *p, int op) { return (uint64_t)(uintptr_t)p | (uint64_t)op; }

static void arm_accept(int lfd) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_ACCEPT));
}

static void arm_recv(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, c->fd, c->buf, BUF_SIZE, 0);
    io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
}

static void arm_send(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    if (zero_copy)
        io_uring_prep_send_zc(sqe, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL, 0);
    else
        io_uring_prep_send(sqe, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
}

static void drop(conn *c) {
    close(c->fd);
    free(c);
}

static int setup_ring(size_t first) {
    static const struct { unsigned flags; const char *name; } tries[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {0, "none"},
    };
    int err = -EINVAL;
    for (size_t i = first; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i].flags;
        err = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
        if (err == 0) {
            fprintf(stderr, "uring_echo: ring flags %s\n", tries[i].name);
            return 0;
        }
        if (err != -EINVAL) break;
    }
    return err;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: io_uring_enter returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket", errno);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0) die("bind", errno);
    if (listen(lfd, 1024) < 0) die("listen", errno);
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);

    size_t first = 0;
    if (argc > 2) first = !strcmp(argv[2], "coop") ? 1 : !strcmp(argv[2], "plain") ? 2 : 0;
    zero_copy = argc > 3 && !strcmp(argv[3], "zc");
    if (zero_copy) fprintf(stderr, "uring_echo: replies with SEND_ZC\n");
    int err = setup_ring(first);
    if (err < 0) die("io_uring_queue_init", -err);
    printf("PORT %d\n", ntohs(sin.sin_port));
    fflush(stdout);

    arm_accept(lfd);
    while (!stop) {
        int r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) die("io_uring_submit_and_wait", -r);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            int op = (int)(ud & 7);
            conn *c = (conn *)(uintptr_t)(ud & ~(uint64_t)7);
            int res = cqe->res;
            switch (op) {
            case OP_ACCEPT:
                if (res >= 0) {
                    conn *n = malloc(sizeof *n);
                    if (!n) { close(res); break; }
                    n->fd = res;
                    n->notifs = 0;
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(n);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(lfd);
                break;
            case OP_RECV:
                if (res <= 0) {
                    drop(c);
                    break;
                }
                c->len = (unsigned)res;
                c->sent = 0;
                arm_send(c);
                break;
            case OP_SEND:
                if (cqe->flags & IORING_CQE_F_NOTIF) {
                    /* zc: the kernel is done with the buffer. */
                    if (--c->notifs > 0) break;
                    if (c->fd < 0) { free(c); break; }
                    if (c->sent < c->len) arm_send(c);
                    else arm_recv(c);
                    break;
                }
                if (cqe->flags & IORING_CQE_F_MORE) c->notifs++;
                if (res < 0) {
                    /* Closed now; freed once the last buffer release came. */
                    close(c->fd);
                    c->fd = -1;
                    if (c->notifs == 0) free(c);
                    break;
                }
                c->sent += (unsigned)res;
                if (c->notifs > 0) break; /* the release decides what comes next */
                if (c->sent < c->len) arm_send(c);
                else arm_recv(c);
                break;
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
    close(lfd);
    return 0;
}
