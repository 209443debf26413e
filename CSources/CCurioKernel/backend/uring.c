/* The io_uring backend: each request is one SQE; SQEs collect during a loop
 * turn and go to the kernel with the next io_uring_enter, which also waits
 * for completions up to the next timer deadline.
 *
 * Below the backend interface it gives epoll's semantics: a request that
 * comes back with -EAGAIN (io_uring honours O_NONBLOCK on pipes, FIFOs and
 * files) or a connect still in progress waits for readiness with a poll
 * SQE and is then retried with a non-blocking call; a request that finds
 * no free SQE waits on a backlog and is started on the next turn. */
#ifndef CURIO_EPOLL_ONLY
#include "backend.h"
#include "../core/fault.h"
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define RING_ENTRIES 1024
/* How long a turn sleeps at most while requests wait for an SQE. */
#define BACKLOG_WAIT_NS 1000000

/* user_data tags for entries that are not requests (requests use their
 * address, which is never this small) */
#define TAG_IGNORE ((uint64_t)1)
#define TAG_WAKE ((uint64_t)2)

/* ck_req.phase: what the ring is doing with a request */
enum {
    PH_OP = 0,    /* its operation's SQE is in flight */
    PH_POLL,      /* a readiness poll is in flight; the operation is retried after it */
    PH_WAIT_OP,   /* on the backlog: its operation needs an SQE */
    PH_WAIT_POLL, /* on the backlog: its readiness poll needs an SQE */
    PH_IDLE,      /* a stream that stopped: nothing of it is on the ring */
};
/* The buffer group of the receive pool's provided-buffer ring. */
#define POOL_BGID 0
/* ck_req.flags */
#define F_CANCEL_QUEUED 1 /* on the backlog: its cancel needs an SQE */

typedef struct uring_backend {
    struct io_uring ring;
    unsigned setup_flags, features, entries;
    uint32_t unsubmitted; /* SQEs prepared since the last enter */
    bool wake_armed;      /* the multishot poll on the wake-up eventfd is live */
    bool enabled;         /* R_DISABLED rings: enabled by the thread that runs the loop */
    pid_t issuer;         /* SINGLE_ISSUER: the thread (tid) the ring is bound to */
    ck_req *backlog_head, *backlog_tail; /* requests waiting for an SQE */
    struct io_uring_buf_ring *br;         /* the receive pool's buffer ring, if registered */
    size_t br_len;
    int behind_seen;      /* behind_pending's tally */
    bool woken_pending;   /* ur_flush_fd reaped the wake-up: the next wait reports it */
} uring_backend;

static inline uring_backend *U(const ck_kernel *k) { return k->backend_state; }

/* ------------------------------------------------------------ setup */

/* Newest flags first; a kernel that does not know one rejects it with
 * EINVAL and we try the next set. DEFER_TASKRUN needs SINGLE_ISSUER, which
 * binds the ring to one thread: R_DISABLED postpones the binding to the
 * first thread that runs the loop (a kernel is often created on another). */
static const unsigned pinned_tries[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_R_DISABLED,
};
static const unsigned shared_tries[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    0,
};

static int try_setup(uring_backend *u, unsigned flags) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    int err = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
    if (err < 0) return err;
    /* Without EXT_ARG a timed wait costs an extra timeout SQE per turn and
     * the semantics differ subtly; such kernels (< 5.11) use epoll. */
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
        io_uring_queue_exit(&u->ring);
        return -ENOSYS;
    }
    u->setup_flags = flags;
    u->features = p.features;
    u->entries = p.sq_entries;
    u->enabled = !(flags & IORING_SETUP_R_DISABLED);
    u->unsubmitted = 0;
    u->wake_armed = false;
    return 0;
}

static int setup(uring_backend *u, bool any_thread) {
    int err = -EINVAL;
    if (!any_thread)
        for (size_t i = 0; i < sizeof pinned_tries / sizeof *pinned_tries; i++)
            if ((err = try_setup(u, pinned_tries[i])) != -EINVAL) return err;
    for (size_t i = 0; i < sizeof shared_tries / sizeof *shared_tries; i++)
        if ((err = try_setup(u, shared_tries[i])) != -EINVAL) return err;
    return err;
}

static int ur_init(ck_kernel *k, char *why, size_t why_len) {
    uring_backend *u = calloc(1, sizeof *u);
    if (!u) return -ENOMEM;
    int err = setup(u, k->options & CK_KERNEL_ANY_THREAD);
    if (err < 0) {
        if (err == -ENOSYS)
            snprintf(why, why_len, "this kernel's io_uring lacks EXT_ARG or NODROP");
        else
            snprintf(why, why_len, "io_uring_queue_init: %s", strerror(-err));
        free(u);
        return err;
    }
    k->backend_state = u;
    return 0;
}

static void ur_free(ck_kernel *k) {
    uring_backend *u = U(k);
    io_uring_queue_exit(&u->ring);
    if (u->br) munmap(u->br, u->br_len);
    free(u);
    k->backend_state = NULL;
}

static void ur_info(const ck_kernel *k, ck_backend_info *out) {
    const uring_backend *u = U(k);
    out->uring_setup_flags = u->setup_flags;
    out->uring_features = u->features;
    out->ring_entries = u->entries;
}

/* The calling thread's id. Not pthread_self(): a new thread often gets
 * the handle of one that has exited, and the ring is bound to the task. */
static pid_t this_thread(void) {
    static _Thread_local pid_t tid;
    if (!tid) tid = (pid_t)syscall(SYS_gettid);
    return tid;
}

static bool on_ring(const ck_req *q) {
    return (q->state == CK_REQ_PENDING || q->state == CK_REQ_CANCELLING) &&
           (q->phase == PH_OP || q->phase == PH_POLL);
}

/* Requests the OS knows about: prepared for the ring, minus those whose
 * SQE is still in the unsubmitted part of the queue. */
static uint32_t requests_in_flight(ck_kernel *k) {
    uring_backend *u = U(k);
    uint32_t n = 0;
    for (uint32_t c = 0; c < k->reqs.nchunks; c++)
        for (uint32_t i = 0; i < CK_REQ_CHUNK; i++) n += on_ring(&k->reqs.chunks[c][i]);
    for (unsigned i = u->ring.sq.sqe_head; i != u->ring.sq.sqe_tail; i++) {
        uint64_t ud = u->ring.sq.sqes[i & u->ring.sq.ring_mask].user_data;
        if (ud != TAG_IGNORE && ud != TAG_WAKE) n--;
    }
    return n;
}

/* ------------------------------------------------------------ receive pool */

/* Multishot recv came with Linux 6.0 (buffer rings with 5.19, which the
 * registration itself tells). */
static bool kernel_has_multishot_recv(void) {
    struct utsname un;
    if (uname(&un) != 0) return false;
    int major = 0, minor = 0;
    if (sscanf(un.release, "%d.%d", &major, &minor) != 2) return false;
    return major > 6 || (major == 6 && minor >= 0);
}

static void provide_one(uring_backend *u, ck_pool *p, uint32_t bid, int offset) {
    io_uring_buf_ring_add(u->br, p->mem + (size_t)bid * p->size, p->size, (unsigned short)bid,
                          io_uring_buf_ring_mask(p->count), offset);
}

/* Registers the ring memory with the current io_uring and fills it with
 * every buffer nobody holds. */
static int register_pool_ring(ck_kernel *k) {
    uring_backend *u = U(k);
    ck_pool *p = k->pool;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = p->count;
    reg.bgid = POOL_BGID;
    int err = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (err < 0) return err;
    int n = 0;
    for (uint32_t bid = 0; bid < p->count; bid++)
        if (!p->owner[bid]) provide_one(u, p, bid, n++);
    io_uring_buf_ring_advance(u->br, n);
    return 0;
}

/* Back to readiness and recv: the free buffers go on the pool's stack. */
static void pool_to_stack(ck_pool *p) {
    p->ring = false;
    p->nfree = 0;
    for (uint32_t bid = p->count; bid-- > 0;)
        if (!p->owner[bid]) p->free_stack[p->nfree++] = bid;
}

static int claim_ring(ck_kernel *k);

static int ur_pool_setup(ck_kernel *k, ck_pool *p) {
    uring_backend *u = U(k);
    if (!kernel_has_multishot_recv()) return -ENOSYS;
    /* SINGLE_ISSUER: registration, like submission, belongs to the loop's thread. */
    int err = claim_ring(k);
    if (err < 0) return err;
    size_t len = (size_t)p->count * sizeof(struct io_uring_buf);
    len = (len + 4095) & ~(size_t)4095;
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    u->br = mem;
    u->br_len = len;
    err = register_pool_ring(k);
    if (err < 0) {
        munmap(mem, len);
        u->br = NULL;
        return err;
    }
    return 0;
}

static void ur_provide(ck_kernel *k, ck_pool *p, uint32_t bid) {
    uring_backend *u = U(k);
    provide_one(u, p, bid, 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* Builds a fresh ring with the same flags and carries the unsubmitted
 * SQEs over (the wake-up poll is armed again when needed). */
static int rebuild_ring(ck_kernel *k) {
    uring_backend *u = U(k);
    unsigned pending = u->ring.sq.sqe_tail - u->ring.sq.sqe_head;
    struct io_uring_sqe *saved = NULL;
    if (pending) {
        saved = malloc((size_t)pending * sizeof *saved);
        if (!saved) return -ENOMEM;
        for (unsigned i = 0; i < pending; i++)
            saved[i] = u->ring.sq.sqes[(u->ring.sq.sqe_head + i) & u->ring.sq.ring_mask];
    }
    unsigned flags = u->setup_flags;
    io_uring_queue_exit(&u->ring);
    int err = try_setup(u, flags);
    if (err < 0) {
        free(saved);
        return err; /* the kernel is unusable now; ck_poll reports it */
    }
    if (u->br && register_pool_ring(k) < 0) {
        /* The new ring has no buffers for a stream to select: streams go
         * on with recv on readiness (none is in flight now). */
        munmap(u->br, u->br_len);
        u->br = NULL;
        pool_to_stack(k->pool);
    }
    for (unsigned i = 0; i < pending; i++) {
        if (saved[i].user_data == TAG_WAKE) continue;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        *sqe = saved[i];
        u->unsubmitted++;
    }
    free(saved);
    return 0;
}

/* Makes the ring usable from the calling thread before an enter: enables
 * an R_DISABLED ring (binding it to this thread), and moves a bound ring
 * to a new loop thread by building a fresh one, which is possible only
 * while the OS holds no request of ours. 0, or -EEXIST when requests are
 * in flight on a ring bound to another thread. */
static __attribute__((noinline)) int claim_ring_slow(ck_kernel *k) {
    uring_backend *u = U(k);
    pid_t me = this_thread();
    if (u->enabled) {
        if (requests_in_flight(k)) return -EEXIST;
        int err = rebuild_ring(k);
        if (err < 0) return err;
    }
    /* liburing 2.3 declares io_uring_enable_rings but does not export it. */
    if (syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    u->enabled = true;
    u->issuer = me;
    return 0;
}

static int claim_ring(ck_kernel *k) {
    uring_backend *u = U(k);
    if (!(u->setup_flags & IORING_SETUP_SINGLE_ISSUER)) return 0;
    if (__builtin_expect(u->enabled && u->issuer == this_thread(), 1)) return 0;
    return claim_ring_slow(k);
}

/* ------------------------------------------------------------ SQEs */

static int flush(ck_kernel *k) {
    uring_backend *u = U(k);
    int err = claim_ring(k);
    if (err < 0) return err;
    k->stats.enters++;
    u->unsubmitted = 0;
    int n = io_uring_submit(&u->ring);
    if (n > 0) k->stats.submitted += (uint64_t)n;
    return n;
}

static inline __attribute__((always_inline)) struct io_uring_sqe *get_sqe(ck_kernel *k) {
    uring_backend *u = U(k);
    struct io_uring_sqe *sqe = ck_fault_hit(CK_FAULT_SQE) ? NULL : io_uring_get_sqe(&u->ring);
    if (!sqe && u->unsubmitted) {
        /* Ring full: hand over what we have and try again. */
        if (flush(k) >= 0) sqe = io_uring_get_sqe(&u->ring);
    }
    if (sqe) u->unsubmitted++;
    else k->stats.sqe_waits++;
    return sqe;
}

static void backlog_add(uring_backend *u, ck_req *q) {
    q->next = NULL;
    q->prev = u->backlog_tail;
    if (u->backlog_tail) u->backlog_tail->next = q;
    else u->backlog_head = q;
    u->backlog_tail = q;
}

static void backlog_remove(uring_backend *u, ck_req *q) {
    if (q->prev) q->prev->next = q->next;
    else u->backlog_head = q->next;
    if (q->next) q->next->prev = q->prev;
    else u->backlog_tail = q->prev;
    q->prev = q->next = NULL;
}

static inline __attribute__((always_inline)) void prep_op(struct io_uring_sqe *sqe, ck_req *q) {
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
    case CK_OP_SEND_BEHIND:
        /* WAITALL: the ring retries a short send itself, so one completion
         * says the whole buffer went (or why not). */
        io_uring_prep_send(sqe, a->fd, a->buf, a->len, a->flags | MSG_NOSIGNAL | MSG_WAITALL);
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
    case CK_OP_ACCEPT_MULTI:
        io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, a->flags);
        break;
    case CK_OP_RECV_STREAM:
        /* liburing 2.3 has no prep helper for it: a recv of no buffer of
         * its own, multishot, picking from the pool's group. */
        io_uring_prep_recv(sqe, a->fd, NULL, 0, 0);
        sqe->ioprio |= IORING_RECV_MULTISHOT;
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = POOL_BGID;
        break;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q);
}

/* Puts q's operation (or, after -EAGAIN, its readiness poll) on the ring,
 * or on the backlog when no SQE is free. */
static inline void start(ck_kernel *k, ck_req *q, bool poll_first) {
    /* Behind a backlog, wait in line: requests on one descriptor keep
     * their order. */
    struct io_uring_sqe *sqe = U(k)->backlog_head ? NULL : get_sqe(k);
    if (!sqe) {
        q->phase = poll_first ? PH_WAIT_POLL : PH_WAIT_OP;
        backlog_add(U(k), q);
        return;
    }
    if (poll_first) {
        io_uring_prep_poll_add(sqe, q->args.fd, ck_op_is_output(q->args.op) ? POLLOUT : POLLIN);
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q);
        q->phase = PH_POLL;
    } else {
        prep_op(sqe, q);
        q->phase = PH_OP;
    }
}

static bool queue_cancel(ck_kernel *k, ck_req *q) {
    struct io_uring_sqe *sqe = get_sqe(k);
    if (!sqe) return false;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q, 0);
    io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    return true;
}

/* Starts what waits on the backlog, in order, while SQEs last. */
static void flush_backlog(ck_kernel *k) {
    uring_backend *u = U(k);
    while (u->backlog_head) {
        ck_req *q = u->backlog_head;
        struct io_uring_sqe *sqe = get_sqe(k);
        if (!sqe) return;
        backlog_remove(u, q);
        if (q->flags & F_CANCEL_QUEUED) {
            q->flags &= (uint8_t)~F_CANCEL_QUEUED;
            io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q, 0);
            io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        } else if (q->phase == PH_WAIT_POLL) {
            io_uring_prep_poll_add(sqe, q->args.fd, ck_op_is_output(q->args.op) ? POLLOUT : POLLIN);
            io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q);
            q->phase = PH_POLL;
        } else {
            prep_op(sqe, q);
            q->phase = PH_OP;
        }
    }
}

/* ------------------------------------------------------------ requests */

static int64_t ur_submit(ck_kernel *k, ck_req *q) {
    /* A send almost always fits in the socket buffer at once: try it
     * before queueing an SQE, so the task goes on without suspending. */
    if (q->args.op == CK_OP_SEND) {
        ssize_t r = send(q->args.fd, q->args.buf, q->args.len,
                         q->args.flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) return r;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    }
    if (q->args.op == CK_OP_RECV_STREAM) {
        q->sflags |= CK_STREAM_ARMED;
        /* Without a buffer ring: wait for readiness, then recv into the pool. */
        start(k, q, !k->pool->ring);
        return CK_PENDING;
    }
    start(k, q, false);
    return CK_PENDING;
}

static void ur_stream_arm(ck_kernel *k, ck_req *q) {
    q->sflags |= CK_STREAM_ARMED;
    start(k, q, !k->pool->ring);
}

/* Stops a multishot recv at the stream's bound: a cancel, whose final CQE
 * leaves the stream idle (chunks that arrive before it are still its). */
static void ur_stream_pause(ck_kernel *k, ck_req *q) {
    uring_backend *u = U(k);
    if (q->sflags & CK_STREAM_PAUSING) return;
    if (q->phase == PH_WAIT_OP || q->phase == PH_WAIT_POLL) {
        backlog_remove(u, q);
        q->sflags &= (uint8_t)~CK_STREAM_ARMED;
        q->phase = PH_IDLE;
        return;
    }
    q->sflags |= CK_STREAM_PAUSING;
    if (!queue_cancel(k, q)) {
        q->flags |= F_CANCEL_QUEUED;
        backlog_add(u, q);
    }
}

static void ur_cancel(ck_kernel *k, ck_req *q) {
    uring_backend *u = U(k);
    if (q->phase == PH_WAIT_OP || q->phase == PH_WAIT_POLL) {
        /* Nothing of it is on the ring yet. */
        backlog_remove(u, q);
        ck_complete(k, q, -ECANCELED);
        return;
    }
    if (q->args.op == CK_OP_RECV_STREAM) {
        if (!(q->sflags & CK_STREAM_ARMED)) {
            ck_complete(k, q, -ECANCELED); /* stopped: nothing on the ring */
            return;
        }
        if (q->sflags & CK_STREAM_PAUSING) return; /* its cancel is on its way */
    }
    if (!queue_cancel(k, q)) {
        q->flags |= F_CANCEL_QUEUED;
        backlog_add(u, q);
    }
}

static void cancel_pending(ck_kernel *k, ck_req *q) {
    /* A send behind is handed to the system instead (ur_forget_fd). */
    if (q->args.op == CK_OP_SEND_BEHIND) {
        U(k)->behind_seen++;
        return;
    }
    q->state = CK_REQ_CANCELLING;
    ur_cancel(k, q);
}

static void count_behind(ck_kernel *k, ck_req *q) {
    if (q->args.op == CK_OP_SEND_BEHIND) U(k)->behind_seen++;
}
static int behind_pending(ck_kernel *k, int fd) {
    U(k)->behind_seen = 0;
    ck_reqs_each_on_fd(&k->reqs, fd, CK_REQ_PENDING, count_behind, k);
    return U(k)->behind_seen;
}

/* A send behind that is still on the backlog or in the unsubmitted part of
 * the SQ could not be issued (the ring belongs to a thread that is not
 * running it): it must never reach the system once its descriptor's number
 * may be reused, so it is turned into a no-op and ends with -ECANCELED. */
static void neutralize_behind(ck_kernel *k, ck_req *q) {
    uring_backend *u = U(k);
    if (q->args.op != CK_OP_SEND_BEHIND) return;
    if (q->phase == PH_WAIT_OP || q->phase == PH_WAIT_POLL) {
        backlog_remove(u, q);
        ck_complete(k, q, -ECANCELED);
        return;
    }
    struct io_uring_sq *sq = &u->ring.sq;
    for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
        struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
        if (sqe->user_data != (uint64_t)(uintptr_t)q) continue;
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        ck_complete(k, q, -ECANCELED);
        return;
    }
}

static void reap(ck_kernel *k, bool *woken);

/* Issues what the SQ and the backlog hold, then collects completions. */
static int issue_behind(ck_kernel *k, int fd) {
    uring_backend *u = U(k);
    for (int round = 0; round < 4; round++) {
        if (flush(k) < 0) {
            ck_reqs_each_on_fd(&k->reqs, fd, CK_REQ_PENDING, neutralize_behind, k);
            return behind_pending(k, fd);
        }
        if (u->backlog_head) flush_backlog(k);
        else break;
    }
    /* DEFER_TASKRUN posts a send that finished during the submit only when
     * asked; a wake-up seen here is kept for the loop's next wait. */
    (void)io_uring_get_events(&u->ring);
    bool woken = false;
    reap(k, &woken);
    if (woken) u->woken_pending = true;
    return behind_pending(k, fd);
}

static int ur_flush_fd(ck_kernel *k, int fd) {
    return behind_pending(k, fd) ? issue_behind(k, fd) : 0;
}

static void ur_forget_fd(ck_kernel *k, int fd) {
    U(k)->behind_seen = 0;
    ck_reqs_each_on_fd(&k->reqs, fd, CK_REQ_PENDING, cancel_pending, k);
    /* Issued, a send keeps its own reference to the socket, so the close
     * that follows cannot cut it off; unissued, it would go to whatever
     * descriptor takes the number next. */
    if (U(k)->behind_seen) (void)issue_behind(k, fd);
}

static bool would_block(const ck_req *q, int res) {
    if (q->args.op == CK_OP_POLL_IN || q->args.op == CK_OP_POLL_OUT) return false;
    if (res == -EAGAIN) return true;
    return q->args.op == CK_OP_CONNECT && (res == -EINPROGRESS || res == -EALREADY);
}

/* A multishot accept's CQE: a new descriptor or an error; without
 * F_MORE the ring has stopped it, and unless it was asked to end it is
 * armed again (the kernel stops one, e.g., when its CQ overflows). */
static void on_accept_multi(ck_kernel *k, ck_req *q, int res, unsigned cqe_flags) {
    uring_backend *u = U(k);
    bool more = cqe_flags & IORING_CQE_F_MORE;
    bool cancelling = q->state == CK_REQ_CANCELLING;
    if (q->phase == PH_POLL) {
        /* The listener turned readable after an -EAGAIN: arm it again. */
        if (cancelling || res < 0) ck_complete(k, q, cancelling ? -ECANCELED : res);
        else start(k, q, false);
        return;
    }
    if (res >= 0) ck_deliver_accepted(k, q, res);
    if (more) return; /* a transient error (e.g. ECONNABORTED) is skipped too */
    if (q->flags & F_CANCEL_QUEUED) {
        backlog_remove(u, q);
        q->flags &= (uint8_t)~F_CANCEL_QUEUED;
    }
    if (cancelling) {
        ck_complete(k, q, -ECANCELED);
    } else if (res >= 0 || res == -ECONNABORTED || res == -EINTR) {
        start(k, q, false);
    } else if (res == -EAGAIN) {
        k->stats.readiness_retries++;
        start(k, q, true);
    } else {
        ck_complete(k, q, res);
    }
}

/* A stream's CQE: a readiness poll (no buffer ring), or one of its
 * multishot recv, which carries a chunk in a ring buffer; without F_MORE
 * the multishot has stopped: at the end of the stream, at the stream's
 * bound (its pause), for want of buffers (-ENOBUFS: it waits for one to
 * come back) or because the kernel stopped it (armed again). */
static void on_stream(ck_kernel *k, ck_req *q, int res, unsigned cqe_flags) {
    uring_backend *u = U(k);
    ck_pool *p = k->pool;
    bool cancelling = q->state == CK_REQ_CANCELLING;
    if (q->phase == PH_POLL) {
        if (q->flags & F_CANCEL_QUEUED) {
            backlog_remove(u, q);
            q->flags &= (uint8_t)~F_CANCEL_QUEUED;
        }
        q->sflags &= (uint8_t)~CK_STREAM_ARMED;
        if (cancelling || res < 0) {
            ck_complete(k, q, cancelling ? -ECANCELED : res);
            return;
        }
        int64_t r = p->ring ? -EAGAIN : ck_stream_drain(k, q);
        if (r == -EAGAIN) {
            q->sflags |= CK_STREAM_ARMED;
            start(k, q, !p->ring);
        } else if (r == 1) {
            q->phase = PH_IDLE;
        } else {
            ck_complete(k, q, r);
        }
        return;
    }
    if (cqe_flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0) ck_stream_chunk(k, q, bid, (uint32_t)res);
        else ur_provide(k, p, bid); /* taken but not filled: back to the ring */
    }
    if (cqe_flags & IORING_CQE_F_MORE) return;
    bool was_pausing = q->sflags & CK_STREAM_PAUSING;
    q->sflags &= (uint8_t)~(CK_STREAM_ARMED | CK_STREAM_PAUSING);
    if (q->flags & F_CANCEL_QUEUED) {
        backlog_remove(u, q);
        q->flags &= (uint8_t)~F_CANCEL_QUEUED;
    }
    q->phase = PH_IDLE;
    if (cancelling) {
        ck_complete(k, q, -ECANCELED);
        return;
    }
    if (res == 0 && !(cqe_flags & IORING_CQE_F_BUFFER)) {
        ck_complete(k, q, 0); /* end of file */
        return;
    }
    if (res == -EAGAIN) {
        k->stats.readiness_retries++;
        q->sflags |= CK_STREAM_ARMED;
        start(k, q, true);
        return;
    }
    if (res < 0 && res != -ENOBUFS && res != -ECANCELED && res != -EINTR) {
        ck_complete(k, q, res); /* ECONNRESET and the like */
        return;
    }
    if (ck_stream_may_run(p, q)) {
        /* A pause whose consumer moved on before its cancel landed starts
         * again here, not in a release's kick: it counts as a re-arm too. */
        if (res == -ENOBUFS || was_pausing) p->rearmed++;
        q->sflags |= CK_STREAM_ARMED;
        start(k, q, false);
    } else if (ck_pool_free_count(p) == 0) {
        ck_stream_stall(p, q); /* the pool is empty: a release starts it */
    }
    /* else: at its own bound, idle until the consumer releases a chunk */
}

static void on_completion(ck_kernel *k, ck_req *q, int res, unsigned cqe_flags) {
    uring_backend *u = U(k);
    if (q->args.op == CK_OP_ACCEPT_MULTI) {
        on_accept_multi(k, q, res, cqe_flags);
        return;
    }
    if (q->args.op == CK_OP_RECV_STREAM) {
        on_stream(k, q, res, cqe_flags);
        return;
    }
    if (q->flags & F_CANCEL_QUEUED) {
        /* It finished before its cancel found an SQE: drop the cancel. */
        backlog_remove(u, q);
        q->flags &= (uint8_t)~F_CANCEL_QUEUED;
    }
    bool cancelling = q->state == CK_REQ_CANCELLING;
    if (q->phase == PH_POLL) {
        /* The operation itself has not run since its -EAGAIN. */
        if (cancelling) res = -ECANCELED;
        if (res < 0) {
            ck_complete(k, q, res);
            return;
        }
        int64_t r = ck_try_request(q);
        if (r == -EAGAIN) {
            k->stats.readiness_retries++;
            start(k, q, true);
        } else {
            ck_complete(k, q, r);
        }
        return;
    }
    if (would_block(q, res)) {
        if (cancelling) {
            ck_complete(k, q, -ECANCELED);
            return;
        }
        if (q->args.op == CK_OP_CONNECT) q->started = true;
        k->stats.readiness_retries++;
        start(k, q, true);
        return;
    }
    ck_complete(k, q, res);
}

/* ------------------------------------------------------------ waiting */

static void arm_wake(ck_kernel *k) {
    struct io_uring_sqe *sqe = get_sqe(k);
    if (!sqe) return;
    /* Multishot: armed once, it reports every later write to the eventfd
     * (the loop empties the eventfd after each wake-up). */
    io_uring_prep_poll_multishot(sqe, k->wakefd, POLLIN);
    io_uring_sqe_set_data64(sqe, TAG_WAKE);
    U(k)->wake_armed = true;
}

static void reap(ck_kernel *k, bool *woken) {
    uring_backend *u = U(k);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        seen++;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if (ud == TAG_IGNORE || ud == LIBURING_UDATA_TIMEOUT) continue;
        if (ud == TAG_WAKE) {
            if (!(cqe->flags & IORING_CQE_F_MORE)) u->wake_armed = false;
            if (cqe->res > 0) *woken = true;
            continue;
        }
        on_completion(k, (ck_req *)(uintptr_t)ud, cqe->res, cqe->flags);
    }
    if (seen) io_uring_cq_advance(&u->ring, seen);
}

static int ur_wait(ck_kernel *k, int64_t timeout_ns, bool *woken) {
    uring_backend *u = U(k);
    int ret = claim_ring(k);
    if (ret < 0) return ret;
    if (u->backlog_head) {
        flush_backlog(k);
        if (u->backlog_head && (timeout_ns < 0 || timeout_ns > BACKLOG_WAIT_NS))
            timeout_ns = BACKLOG_WAIT_NS;
    }
    if (timeout_ns != 0) {
        /* About to sleep: make sure other threads can wake us. */
        if (!u->wake_armed) arm_wake(k);
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tsp = &ts;
        }
        k->stats.enters++;
        k->stats.submitted += u->unsubmitted;
        u->unsubmitted = 0;
        ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
        if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) ret = 0;
    } else if (u->unsubmitted) {
        /* Submit and, in the same enter, run the task work that posts
         * finished requests (DEFER_TASKRUN runs it only when asked). */
        k->stats.enters++;
        k->stats.submitted += u->unsubmitted;
        u->unsubmitted = 0;
        ret = io_uring_submit_and_get_events(&u->ring);
        if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) ret = 0;
    } else if (io_uring_cq_ready(&u->ring) == 0 &&
               (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
        /* TASKRUN_FLAG: finished work waits for us to enter the kernel. */
        k->stats.enters++;
        ret = io_uring_get_events(&u->ring);
        if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) ret = 0;
    }
    reap(k, woken);
    if (u->woken_pending) {
        u->woken_pending = false;
        *woken = true;
    }
    return ret < 0 ? ret : 0;
}

static void ur_wake_consumed(ck_kernel *k) {
    uint64_t v;
    while (read(k->wakefd, &v, sizeof v) > 0) {}
}

const ck_backend_ops ck_uring_backend = {
    .kind = CK_BACKEND_IO_URING,
    .name = "io_uring",
    .init = ur_init,
    .free = ur_free,
    .submit = ur_submit,
    .cancel = ur_cancel,
    .forget_fd = ur_forget_fd,
    .flush_fd = ur_flush_fd,
    .wait = ur_wait,
    .wake_consumed = ur_wake_consumed,
    .info = ur_info,
    .pool_setup = ur_pool_setup,
    .provide = ur_provide,
    .stream_arm = ur_stream_arm,
    .stream_pause = ur_stream_pause,
};
#endif
