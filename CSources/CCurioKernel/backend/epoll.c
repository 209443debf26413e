/* The epoll backend: every request first tries its system call; only a
 * request that would block is parked on its descriptor. A descriptor is
 * registered once, edge-triggered for both directions, and stays
 * registered until it is forgotten, so a wait costs no epoll_ctl. */
#include "backend.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define WAKE_KEY UINT64_MAX
#define MAX_EVENTS 256

typedef struct fd_state {
    ck_req *readers_head, *readers_tail;
    ck_req *writers_head, *writers_tail;
    uint8_t registered;
} fd_state;

typedef struct epoll_backend {
    int epfd;
    fd_state *fds;
    uint32_t nfds;
    uint32_t waiting; /* requests parked on some fd */
} epoll_backend;

static inline epoll_backend *EP(const ck_kernel *k) { return k->backend_state; }

static int ep_init(ck_kernel *k, char *why, size_t why_len) {
    (void)why;
    (void)why_len;
    epoll_backend *ep = calloc(1, sizeof *ep);
    if (!ep) return -ENOMEM;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0) {
        int e = errno;
        free(ep);
        return -e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, k->wakefd, &ev) < 0) {
        int e = errno;
        close(ep->epfd);
        free(ep);
        return -e;
    }
    k->backend_state = ep;
    return 0;
}

static void ep_free(ck_kernel *k) {
    epoll_backend *ep = EP(k);
    close(ep->epfd);
    free(ep->fds);
    free(ep);
    k->backend_state = NULL;
}

static bool is_reader(ck_op op) { return !ck_op_is_output(op); }

static fd_state *get_fd_state(epoll_backend *ep, int fd) {
    if ((uint32_t)fd >= ep->nfds) {
        uint32_t n = ep->nfds ? ep->nfds : 64;
        while (n <= (uint32_t)fd) n *= 2;
        fd_state *fds = realloc(ep->fds, (size_t)n * sizeof *fds);
        if (!fds) return NULL;
        memset(fds + ep->nfds, 0, (size_t)(n - ep->nfds) * sizeof *fds);
        ep->fds = fds;
        ep->nfds = n;
    }
    return &ep->fds[fd];
}

static void list_append(ck_req **head, ck_req **tail, ck_req *q) {
    q->next = NULL;
    q->prev = *tail;
    if (*tail) (*tail)->next = q;
    else *head = q;
    *tail = q;
}

static void list_remove(ck_req **head, ck_req **tail, ck_req *q) {
    if (q->prev) q->prev->next = q->next;
    else *head = q->next;
    if (q->next) q->next->prev = q->prev;
    else *tail = q->prev;
    q->prev = q->next = NULL;
}

static void unpark(epoll_backend *ep, ck_req *q) {
    fd_state *s = &ep->fds[q->args.fd];
    q->sflags &= (uint8_t)~CK_STREAM_ARMED;
    if (is_reader(q->args.op)) list_remove(&s->readers_head, &s->readers_tail, q);
    else list_remove(&s->writers_head, &s->writers_tail, q);
    ep->waiting--;
}

/* Accepts every connection waiting on a multishot accept's listener:
 * -EAGAIN once drained, or the error that ends the request. */
static int64_t drain_accepts(ck_kernel *k, ck_req *q) {
    for (;;) {
        int fd = accept4(q->args.fd, NULL, NULL, q->args.flags);
        if (fd >= 0) {
            ck_deliver_accepted(k, q, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -EAGAIN;
        if (errno != ECONNABORTED && errno != EINTR) return -errno;
    }
}

static int register_fd(epoll_backend *ep, fd_state *s, int fd) {
    if (s->registered) return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)fd};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
        return errno == EPERM ? -EINVAL : -errno;
    s->registered = 1;
    return 0;
}

static void park(epoll_backend *ep, fd_state *s, ck_req *q) {
    if (is_reader(q->args.op)) list_append(&s->readers_head, &s->readers_tail, q);
    else list_append(&s->writers_head, &s->writers_tail, q);
    ep->waiting++;
}

/* Receives what is there for a stream, then parks it until readable,
 * leaves it stopped (at its bound or for want of a buffer: a release
 * starts it again), or ends it. */
static void stream_run(ck_kernel *k, ck_req *q) {
    epoll_backend *ep = EP(k);
    int64_t r = ck_stream_drain(k, q);
    if (r == 1) return;
    if (r != -EAGAIN) {
        ck_complete(k, q, r);
        return;
    }
    fd_state *s = get_fd_state(ep, q->args.fd);
    if (!s) {
        ck_complete(k, q, -ENOMEM);
        return;
    }
    int err = register_fd(ep, s, q->args.fd);
    if (err) {
        ck_complete(k, q, err);
        return;
    }
    park(ep, s, q);
    q->sflags |= CK_STREAM_ARMED;
    /* Edge-triggered and registered just now: data that came between the
     * drain and the registration raised no edge. Look once more. */
    r = ck_stream_drain(k, q);
    if (r == -EAGAIN) return;
    unpark(ep, q);
    if (r != 1) ck_complete(k, q, r);
}

static int64_t ep_submit(ck_kernel *k, ck_req *q) {
    epoll_backend *ep = EP(k);
    if (q->args.op == CK_OP_RECV_STREAM) {
        stream_run(k, q); /* its end, even at once, is reported by ck_poll after its chunks */
        return CK_PENDING;
    }
    if (q->args.op == CK_OP_ACCEPT_MULTI) {
        /* Registered before the first drain, so no edge falls between. */
        fd_state *s = get_fd_state(ep, q->args.fd);
        if (!s) return -ENOMEM;
        int err = register_fd(ep, s, q->args.fd);
        if (err) return err;
        park(ep, s, q);
        int64_t r = drain_accepts(k, q);
        if (r != -EAGAIN) {
            /* Ends now, after the connections already reported. */
            unpark(ep, q);
            ck_complete(k, q, r);
        }
        return CK_PENDING;
    }
    int64_t r = ck_try_request(q);
    /* A send behind is never kept: -EAGAIN tells the caller to wait as for
     * a plain send (the bytes are its to keep until then). */
    if (r != -EAGAIN || q->args.op == CK_OP_SEND_BEHIND) return r;
    fd_state *s = get_fd_state(ep, q->args.fd);
    if (!s) return -ENOMEM;
    if (!s->registered) {
        int err = register_fd(ep, s, q->args.fd);
        if (err) return err;
        /* Readiness may have arrived between the try and the registration,
         * and an edge-triggered registration reports only later changes:
         * try once more now that we are registered. */
        r = ck_try_request(q);
        if (r != -EAGAIN) return r;
    }
    park(ep, s, q);
    return CK_PENDING;
}

static void ep_cancel(ck_kernel *k, ck_req *q) {
    /* A stream that stopped is parked nowhere. */
    if (q->args.op != CK_OP_RECV_STREAM || (q->sflags & CK_STREAM_ARMED)) unpark(EP(k), q);
    ck_complete(k, q, -ECANCELED);
}

static void cancel_stopped_stream(ck_kernel *k, ck_req *q) {
    if (q->args.op == CK_OP_RECV_STREAM) ep_cancel(k, q);
}

static void ep_forget_fd(ck_kernel *k, int fd) {
    epoll_backend *ep = EP(k);
    if ((uint32_t)fd >= ep->nfds) return;
    fd_state *s = &ep->fds[fd];
    while (s->readers_head) {
        ck_req *q = s->readers_head;
        unpark(ep, q);
        ck_complete(k, q, -ECANCELED);
    }
    while (s->writers_head) {
        ck_req *q = s->writers_head;
        unpark(ep, q);
        ck_complete(k, q, -ECANCELED);
    }
    if (s->registered) epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
    s->registered = 0;
    /* Streams stopped at their bound or for a buffer are on no list. */
    if (k->pool && k->pool->streams)
        ck_reqs_each_on_fd(&k->reqs, fd, CK_REQ_PENDING, cancel_stopped_stream, k);
}

/* Retries every parked request of one direction, in arrival order, until
 * one would block again (the rest would too). */
static void retry(ck_kernel *k, ck_req **head, ck_req **tail, uint32_t events) {
    epoll_backend *ep = EP(k);
    ck_req *q = *head;
    while (q) {
        ck_req *next = q->next;
        int64_t r;
        if (q->args.op == CK_OP_RECV_STREAM) {
            r = ck_stream_drain(k, q); /* stays parked (at the head) once drained */
            /* The drain stops at a short read and waits for the next edge,
             * but an end or error that came with the data raised its edge
             * already: this one. Without a second look a FIN (or RST) right
             * behind the last bytes was never seen and the stream hung. */
            if (r == -EAGAIN && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) r = ck_stream_drain(k, q);
            if (r == 1) {
                /* Stopped: off the list until a release starts it again. */
                list_remove(head, tail, q);
                ep->waiting--;
                q->sflags &= (uint8_t)~CK_STREAM_ARMED;
                q = next;
                continue;
            }
        } else if (q->args.op == CK_OP_ACCEPT_MULTI)
            r = drain_accepts(k, q); /* stays parked (at the head) once drained */
        else if (events & (EPOLLERR | EPOLLHUP) && (q->args.op == CK_OP_POLL_IN ||
                                                    q->args.op == CK_OP_POLL_OUT))
            r = (int64_t)events;
        else
            r = ck_try_request(q);
        if (r == -EAGAIN) break;
        list_remove(head, tail, q);
        ep->waiting--;
        ck_complete(k, q, r);
        q = next;
    }
}

static int ep_wait(ck_kernel *k, int64_t timeout_ns, bool *woken) {
    epoll_backend *ep = EP(k);
    /* Busy turns skip the system call when nothing is parked. */
    if (timeout_ns == 0 && ep->waiting == 0 && !atomic_load(&k->wake_pending))
        return 0;
    struct epoll_event evs[MAX_EVENTS];
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    k->stats.enters++;
    int n = epoll_pwait2(ep->epfd, evs, MAX_EVENTS, tsp, NULL);
    if (n < 0 && errno == ENOSYS) {
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        n = epoll_wait(ep->epfd, evs, MAX_EVENTS, ms);
    }
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == WAKE_KEY) {
            *woken = true;
            continue;
        }
        int fd = (int)evs[i].data.u64;
        if ((uint32_t)fd >= ep->nfds) continue;
        fd_state *s = &ep->fds[fd];
        uint32_t e = evs[i].events;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            retry(k, &s->readers_head, &s->readers_tail, e);
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            retry(k, &s->writers_head, &s->writers_tail, e);
    }
    return 0;
}

static void ep_wake_consumed(ck_kernel *k) {
    uint64_t v;
    while (read(k->wakefd, &v, sizeof v) > 0) {}
}

static void ep_info(const ck_kernel *k, ck_backend_info *out) {
    (void)k;
    (void)out;
}

const ck_backend_ops ck_epoll_backend = {
    .kind = CK_BACKEND_EPOLL,
    .name = "epoll",
    .init = ep_init,
    .free = ep_free,
    .submit = ep_submit,
    .cancel = ep_cancel,
    .forget_fd = ep_forget_fd,
    .flush_fd = NULL,
    .wait = ep_wait,
    .wake_consumed = ep_wake_consumed,
    .info = ep_info,
    .pool_setup = NULL,
    .provide = NULL,
    .stream_arm = stream_run,
    .stream_pause = NULL,
};
