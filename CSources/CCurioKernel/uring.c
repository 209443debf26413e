/* The io_uring backend: each request is one SQE; SQEs collect during a loop
 * turn and go to the kernel with the next io_uring_enter, which also waits
 * for completions up to the next timer deadline. */
#ifndef CURIO_EPOLL_ONLY
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#define RING_ENTRIES 1024

int ck_uring_init(ck_kernel *k) {
    struct io_uring_params p;
    /* Newest flags first; older kernels reject them with EINVAL. No
     * IORING_SETUP_SINGLE_ISSUER: it ties the ring to the thread that
     * creates it, and io_uring_enter from any other thread fails with
     * EEXIST, but a kernel may be created on one thread and run on another
     * (Kernel() on the main thread, run() elsewhere). */
    const unsigned tries[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i];
        err = io_uring_queue_init_params(RING_ENTRIES, &k->ring, &p);
        if (err != -EINVAL) break;
    }
    if (err < 0) return err;
    /* Without EXT_ARG a timed wait costs an extra timeout SQE per turn and
     * the semantics differ subtly; such kernels (< 5.11) use epoll. */
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
        io_uring_queue_exit(&k->ring);
        return -ENOSYS;
    }
    k->unsubmitted = 0;
    k->wake_armed = false;
    return 0;
}

void ck_uring_free(ck_kernel *k) { io_uring_queue_exit(&k->ring); }

static struct io_uring_sqe *get_sqe(ck_kernel *k) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&k->ring);
    if (!sqe) {
        /* Ring full: flush what we have and try again. */
        io_uring_submit(&k->ring);
        k->stats.enters++;
        k->stats.submitted += k->unsubmitted;
        k->unsubmitted = 0;
        sqe = io_uring_get_sqe(&k->ring);
    }
    if (sqe) k->unsubmitted++;
    return sqe;
}

int64_t ck_uring_submit(ck_kernel *k, ck_req *q) {
    /* A send almost always fits in the socket buffer at once: try it
     * before queueing an SQE, so the task goes on without suspending. */
    if (q->args.op == CK_OP_SEND) {
        ssize_t r = send(q->args.fd, q->args.buf, q->args.len,
                         q->args.flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) return r;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    }
    struct io_uring_sqe *sqe = get_sqe(k);
    if (!sqe) return -EBUSY;
    ck_request_args *a = &q->args;
    switch (a->op) {
    case CK_OP_READ:
        io_uring_prep_read(sqe, a->fd, a->buf, (unsigned)a->len, (uint64_t)a->offset);
        break;
    case CK_OP_WRITE:
        io_uring_prep_write(sqe, a->fd, a->buf, (unsigned)a->len, (uint64_t)a->offset);
        break;
    case CK_OP_RECV:
        io_uring_prep_recv(sqe, a->fd, a->buf, a->len, a->flags);
        break;
    case CK_OP_SEND:
        io_uring_prep_send(sqe, a->fd, a->buf, a->len, a->flags | MSG_NOSIGNAL);
        break;
    case CK_OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, a->fd, a->buf, (unsigned)a->flags);
        break;
    case CK_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, a->fd, a->buf, (unsigned)a->flags | MSG_NOSIGNAL);
        break;
    case CK_OP_ACCEPT:
        io_uring_prep_accept(sqe, a->fd, a->buf, a->buf ? &q->addrlen : NULL, a->flags);
        break;
    case CK_OP_CONNECT:
        io_uring_prep_connect(sqe, a->fd, a->buf, (socklen_t)a->len);
        break;
    case CK_OP_POLL_IN:
        io_uring_prep_poll_add(sqe, a->fd, POLLIN);
        break;
    case CK_OP_POLL_OUT:
        io_uring_prep_poll_add(sqe, a->fd, POLLOUT);
        break;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q);
    return CK_PENDING;
}

void ck_uring_cancel(ck_kernel *k, ck_req *q) {
    struct io_uring_sqe *sqe = get_sqe(k);
    if (!sqe) return; /* the request still completes on its own */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q, 0);
    io_uring_sqe_set_data64(sqe, CK_TAG_IGNORE);
}

static void arm_wake(ck_kernel *k) {
    struct io_uring_sqe *sqe = get_sqe(k);
    if (!sqe) return;
    io_uring_prep_read(sqe, k->wakefd, &k->wake_buf, sizeof k->wake_buf, 0);
    io_uring_sqe_set_data64(sqe, CK_TAG_WAKE);
    k->wake_armed = true;
}

static void reap(ck_kernel *k, bool *woken) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&k->ring, head, cqe) {
        seen++;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if (ud == CK_TAG_IGNORE || ud == LIBURING_UDATA_TIMEOUT) continue;
        if (ud == CK_TAG_WAKE) {
            k->wake_armed = false;
            *woken = true;
            continue;
        }
        ck_complete(k, (ck_req *)(uintptr_t)ud, cqe->res);
    }
    if (seen) io_uring_cq_advance(&k->ring, seen);
}

int ck_uring_wait(ck_kernel *k, int64_t timeout_ns, bool *woken) {
    int ret = 0;
    if (timeout_ns != 0) {
        /* About to sleep: make sure other threads can wake us. */
        if (!k->wake_armed) arm_wake(k);
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tsp = &ts;
        }
        k->stats.enters++;
        k->stats.submitted += k->unsubmitted;
        k->unsubmitted = 0;
        ret = io_uring_submit_and_wait_timeout(&k->ring, &cqe, 1, tsp, NULL);
        if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) ret = 0;
    } else if (k->unsubmitted) {
        k->stats.enters++;
        k->stats.submitted += k->unsubmitted;
        k->unsubmitted = 0;
        ret = io_uring_submit(&k->ring);
        if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) ret = 0;
    } else if (io_uring_cq_ready(&k->ring) == 0 &&
               (IO_URING_READ_ONCE(*k->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
        /* COOP_TASKRUN parks finished work until we enter the kernel. */
        k->stats.enters++;
        ret = io_uring_get_events(&k->ring);
    }
    reap(k, woken);
    if (*woken) ck_wake_consumed(k);
    return ret < 0 ? ret : 0;
}
#endif
