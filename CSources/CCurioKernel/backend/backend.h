/* The one interface between the kernel and an I/O backend. The kernel picks
 * a backend once, in ck_kernel_new, and calls it only through this table;
 * each backend keeps its state in k->backend_state, private to its file.
 *
 * Semantics every backend gives (so the layers above never ask which one
 * runs): a request completes exactly once, through ck_complete; a request
 * that would block waits for readiness and is retried below this interface
 * (no -EAGAIN reaches the caller); a connect reports 0 or the connection's
 * error (never -EINPROGRESS / -EALREADY); a cancelled request completes
 * with -ECANCELED unless its real result came first. */
#ifndef CK_BACKEND_H
#define CK_BACKEND_H

#include "../core/kernel.h"

struct ck_backend_ops {
    ck_backend_kind kind;
    const char *name;
    /* Sets up k->backend_state; 0 or -errno. On failure nothing is left
     * allocated. `why` (capacity why_len) may get a short reason. */
    int (*init)(ck_kernel *k, char *why, size_t why_len);
    void (*free)(ck_kernel *k);
    /* Starts q: its result (>= 0 or -errno) when it finished at once, else
     * CK_PENDING and a later ck_complete. */
    int64_t (*submit)(ck_kernel *k, ck_req *q);
    /* q->state is CK_REQ_CANCELLING; q still completes exactly once. */
    void (*cancel)(ck_kernel *k, ck_req *q);
    /* fd is about to be closed: its pending requests complete with
     * -ECANCELED and the backend drops what it keeps about fd. */
    void (*forget_fd)(ck_kernel *k, int fd);
    /* ck_flush_fd: issue fd's CK_OP_SEND_BEHIND requests now; how many are
     * still in flight afterwards. NULL: the backend never keeps one. */
    int (*flush_fd)(ck_kernel *k, int fd);
    /* Hands pending work to the OS and collects completions, sleeping at
     * most timeout_ns (< 0: no limit; 0: only looks). Sets *woken when the
     * wake-up eventfd fired. 0 or -errno. */
    int (*wait)(ck_kernel *k, int64_t timeout_ns, bool *woken);
    /* Empties the wake-up eventfd after *woken, when the backend's wait did
     * not already consume it. */
    void (*wake_consumed)(ck_kernel *k);
    /* Fills the backend's part of ck_get_backend_info. */
    void (*info)(const ck_kernel *k, ck_backend_info *out);
    /* Receive pool (CK_OP_RECV_STREAM). pool_setup (may be NULL) hands the
     * new pool's buffers to the OS: 0 when it did (ring mode), else the
     * pool keeps them on its free stack. provide puts a released buffer
     * back in ring mode. stream_arm starts receiving for a stream that
     * stopped (may complete it); stream_pause stops one at its bound
     * (NULL: the backend checks the bound itself while draining). */
    int (*pool_setup)(ck_kernel *k, ck_pool *p);
    void (*provide)(ck_kernel *k, ck_pool *p, uint32_t bid);
    void (*stream_arm)(ck_kernel *k, ck_req *q);
    void (*stream_pause)(ck_kernel *k, ck_req *q);
};

#ifndef CURIO_EPOLL_ONLY
extern const ck_backend_ops ck_uring_backend;
/* Takes a descriptor the multishot accept q produced: reports it, or
 * closes it when it cannot be reported (or q is being cancelled). */
void ck_deliver_accepted(ck_kernel *k, ck_req *q, int fd);

#endif
extern const ck_backend_ops ck_epoll_backend;

/* Runs the system call a request stands for without blocking: its result,
 * or -errno (-EAGAIN when it would block). A connect that is under way
 * (q->started) reports its outcome (SO_ERROR) once the socket is writable. */
int64_t ck_try_request(ck_req *q);

/* True for requests that wait for their descriptor to turn writable. */
static inline bool ck_op_is_output(ck_op op) {
    return op == CK_OP_WRITE || op == CK_OP_SEND || op == CK_OP_SEND_BEHIND || op == CK_OP_SENDMSG ||
           op == CK_OP_CONNECT || op == CK_OP_POLL_OUT;
}

/* Takes a descriptor the multishot accept q produced: reports it, or
 * closes it when it cannot be reported (or q is being cancelled). */
void ck_deliver_accepted(ck_kernel *k, ck_req *q, int fd);

#endif
