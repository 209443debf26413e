/* The epoll backend: every request first tries its system call; only a
 * request that would block is parked on its descriptor. A descriptor is
 * registered once, edge-triggered for both directions, and stays
 * registered until it is forgotten, so a wait costs no epoll_ctl. */
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define WAKE_KEY UINT64_MAX
#define MAX_EVENTS 256

int ck_epoll_init(ck_kernel *k) {
    k->ep.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (k->ep.epfd < 0) return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
    if (epoll_ctl(k->ep.epfd, EPOLL_CTL_ADD, k->wakefd, &ev) < 0) {
        int e = errno;
        close(k->ep.epfd);
        k->ep.epfd = -1;
        return -e;
    }
    return 0;
}

void ck_epoll_free(ck_kernel *k) {
    if (k->ep.epfd >= 0) close(k->ep.epfd);
    free(k->ep.fds);
    k->ep.fds = NULL;
    k->ep.nfds = 0;
}

static bool is_reader(ck_op op) {
    return op == CK_OP_READ || op == CK_OP_RECV || op == CK_OP_RECVMSG ||
           op == CK_OP_ACCEPT || op == CK_OP_POLL_IN;
}

static ck_fdstate *fd_state(ck_epoll *ep, int fd) {
    if ((uint32_t)fd >= ep->nfds) {
        uint32_t n = ep->nfds ? ep->nfds : 64;
        while (n <= (uint32_t)fd) n *= 2;
        ck_fdstate *fds = realloc(ep->fds, (size_t)n * sizeof *fds);
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

static void unpark(ck_kernel *k, ck_req *q) {
    ck_fdstate *s = &k->ep.fds[q->args.fd];
    if (is_reader(q->args.op)) list_remove(&s->readers_head, &s->readers_tail, q);
    else list_remove(&s->writers_head, &s->writers_tail, q);
    k->ep.waiting--;
}

int64_t ck_epoll_submit(ck_kernel *k, ck_req *q) {
    int64_t r = ck_try_syscall(q, true);
    if (r != -EAGAIN) return r;
    ck_fdstate *s = fd_state(&k->ep, q->args.fd);
    if (!s) return -ENOMEM;
    if (!s->registered) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)q->args.fd};
        if (epoll_ctl(k->ep.epfd, EPOLL_CTL_ADD, q->args.fd, &ev) < 0) {
            if (errno != EEXIST) return errno == EPERM ? -EINVAL : -errno;
        }
        s->registered = 1;
        /* Readiness may have arrived between the try and the registration,
         * and an edge-triggered registration reports only later changes:
         * try once more now that we are registered. */
        r = ck_try_syscall(q, true);
        if (r != -EAGAIN) return r;
    }
    if (is_reader(q->args.op)) list_append(&s->readers_head, &s->readers_tail, q);
    else list_append(&s->writers_head, &s->writers_tail, q);
    k->ep.waiting++;
    return CK_PENDING;
}

void ck_epoll_cancel(ck_kernel *k, ck_req *q) {
    unpark(k, q);
    ck_complete(k, q, -ECANCELED);
}

void ck_epoll_forget_fd(ck_kernel *k, int fd) {
    if ((uint32_t)fd >= k->ep.nfds) return;
    ck_fdstate *s = &k->ep.fds[fd];
    while (s->readers_head) {
        ck_req *q = s->readers_head;
        unpark(k, q);
        ck_complete(k, q, -ECANCELED);
    }
    while (s->writers_head) {
        ck_req *q = s->writers_head;
        unpark(k, q);
        ck_complete(k, q, -ECANCELED);
    }
    if (s->registered) epoll_ctl(k->ep.epfd, EPOLL_CTL_DEL, fd, NULL);
    s->registered = 0;
}

/* Retries every parked request of one direction, in arrival order, until
 * one would block again (the rest would too). */
static void retry(ck_kernel *k, ck_req **head, ck_req **tail, uint32_t events) {
    ck_req *q = *head;
    while (q) {
        ck_req *next = q->next;
        int64_t r;
        if (events & (EPOLLERR | EPOLLHUP) && (q->args.op == CK_OP_POLL_IN ||
                                               q->args.op == CK_OP_POLL_OUT))
            r = (int64_t)events;
        else
            r = ck_try_syscall(q, true);
        if (r == -EAGAIN) break;
        list_remove(head, tail, q);
        k->ep.waiting--;
        ck_complete(k, q, r);
        q = next;
    }
}

int ck_epoll_wait(ck_kernel *k, int64_t timeout_ns, bool *woken) {
    /* Busy turns skip the system call when nothing is parked. */
    if (timeout_ns == 0 && k->ep.waiting == 0 && !atomic_load(&k->wake_pending))
        return 0;
    struct epoll_event evs[MAX_EVENTS];
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    k->stats.enters++;
    int n = epoll_pwait2(k->ep.epfd, evs, MAX_EVENTS, tsp, NULL);
    if (n < 0 && errno == ENOSYS) {
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        n = epoll_wait(k->ep.epfd, evs, MAX_EVENTS, ms);
    }
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == WAKE_KEY) {
            *woken = true;
            continue;
        }
        int fd = (int)evs[i].data.u64;
        if ((uint32_t)fd >= k->ep.nfds) continue;
        ck_fdstate *s = &k->ep.fds[fd];
        uint32_t e = evs[i].events;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            retry(k, &s->readers_head, &s->readers_tail, e);
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            retry(k, &s->writers_head, &s->writers_tail, e);
    }
    if (*woken) ck_wake_consumed(k);
    return 0;
}
