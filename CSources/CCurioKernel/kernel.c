/* Kernel lifecycle, cross-thread posts and the waiting half of the loop. */
#define _GNU_SOURCE
#include "internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

void ck_reqs_free(ck_reqs *r);

static _Thread_local ck_kernel *tls_kernel;
static _Thread_local void *tls_resuming;

int64_t ck_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

ck_kernel *ck_current(void) { return tls_kernel; }
void ck_bind_thread(ck_kernel *k) { tls_kernel = k; }
void *ck_tls_resuming(void) { return tls_resuming; }
void ck_set_tls_resuming(void *task) { tls_resuming = task; }
void ck_set_owner(ck_kernel *k, void *owner) { k->owner = owner; }
void *ck_owner(const ck_kernel *k) { return k->owner; }
ck_ready *ck_kernel_ready(ck_kernel *k) { return &k->ready; }
ck_backend_kind ck_kernel_backend(const ck_kernel *k) { return k->backend; }

bool ck_have_io_uring(void) {
#ifdef CURIO_EPOLL_ONLY
    return false;
#else
    return true;
#endif
}

#ifndef CURIO_EPOLL_ONLY
static atomic_int fallback_reported;
/* The fallback's one message, kept for the Swift side to log (through the
 * kernel's logger) instead of printed here. */
static char fallback_report[160];
static atomic_int fallback_report_ready;
#endif

const char *ck_take_fallback_report(void) {
#ifndef CURIO_EPOLL_ONLY
    if (atomic_exchange(&fallback_report_ready, 0)) return fallback_report;
#endif
    return NULL;
}

ck_kernel *ck_kernel_new(ck_backend_kind want) {
    ck_kernel *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    ck_timers_init(&k->timers);
    if (!ck_ready_grow(&k->ready)) goto fail;
    pthread_mutex_init(&k->posts.lock, NULL);
    k->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (k->wakefd < 0) goto fail;
    k->ep.epfd = -1;

#ifndef CURIO_EPOLL_ONLY
    if (want == CK_BACKEND_IO_URING) {
        const char *off = getenv("CURIO_DISABLE_IO_URING");
        int err = (off && *off && strcmp(off, "0") != 0) ? -ENOSYS : ck_uring_init(k);
        if (err == 0) {
            k->backend = CK_BACKEND_IO_URING;
            return k;
        }
        if (!atomic_exchange(&fallback_reported, 1)) {
            snprintf(fallback_report, sizeof fallback_report,
                     "curio: io_uring is unavailable (%s); using the epoll backend\n",
                     err == -ENOSYS && off ? "disabled by CURIO_DISABLE_IO_URING"
                                           : strerror(-err));
            atomic_store(&fallback_report_ready, 1);
        }
    }
#else
    (void)want;
#endif
    int err = ck_epoll_init(k);
    if (err) {
        errno = -err;
        goto fail;
    }
    k->backend = CK_BACKEND_EPOLL;
    return k;
fail:
    if (k->wakefd > 0) close(k->wakefd);
    free(k->ready.buf);
    free(k);
    return NULL;
}

void ck_kernel_free(ck_kernel *k) {
    if (!k) return;
    if (tls_kernel == k) tls_kernel = NULL;
#ifndef CURIO_EPOLL_ONLY
    if (k->backend == CK_BACKEND_IO_URING) ck_uring_free(k);
    else
#endif
        ck_epoll_free(k);
    close(k->wakefd);
    ck_timers_free(&k->timers);
    ck_reqs_free(&k->reqs);
    free(k->done.buf);
    free(k->ready.buf);
    free(k->posts.items);
    free(k->posts.spare);
    pthread_mutex_destroy(&k->posts.lock);
    free(k);
}

/* ------------------------------------------------------------ posts */

void ck_wake(ck_kernel *k) {
    /* One eventfd write per drain cycle: later posters see the flag set
     * and know the kernel is already bound to look. */
    if (!atomic_exchange_explicit(&k->wake_pending, 1, memory_order_acq_rel)) {
        uint64_t one = 1;
        ssize_t r;
        do r = write(k->wakefd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
        __atomic_fetch_add(&k->stats.wakeups_sent, 1, __ATOMIC_RELAXED);
    }
}

bool ck_post(ck_kernel *k, void *job, void *task, void *token) {
    ck_posts *p = &k->posts;
    pthread_mutex_lock(&p->lock);
    if (p->count == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 64;
        ck_post_item *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) {
            pthread_mutex_unlock(&p->lock);
            return false;
        }
        p->items = items;
        p->cap = cap;
    }
    p->items[p->count++] = (ck_post_item){job, task, token};
    atomic_fetch_add_explicit(&p->approx_count, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&p->lock);
    /* A loop that is running (or spinning for posts) finds the post at its
     * next turn; only one that sleeps needs the eventfd. The loop sets
     * `sleeping` before it looks at the count one last time and the poster
     * bumps the count before it looks at `sleeping` (both seq_cst), so one
     * of them always sees the other. */
    if (atomic_load_explicit(&k->sleeping, memory_order_seq_cst)) ck_wake(k);
    return true;
}

uint32_t ck_posted_count(ck_kernel *k) {
    return atomic_load_explicit(&k->posts.approx_count, memory_order_acquire);
}

void ck_wake_consumed(ck_kernel *k) {
    uint64_t v;
    /* Empty the eventfd first, then reset the flag: a post that lands
     * after the reset writes the eventfd again, and one that lands before
     * it is in the queue, which the loop drains right after this. The
     * other order could swallow a write and leave the flag stuck at 1. */
    if (k->backend == CK_BACKEND_EPOLL) {
        while (read(k->wakefd, &v, sizeof v) > 0) {}
    }
    atomic_store_explicit(&k->wake_pending, 0, memory_order_seq_cst);
}

static void drain_posts(ck_kernel *k) {
    ck_posts *p = &k->posts;
    if (!atomic_load_explicit(&p->approx_count, memory_order_acquire)) return;
    pthread_mutex_lock(&p->lock);
    /* Swap buffers so the copy-out happens without the lock held; the old
     * buffer is only reused by the next drain, on this same thread. */
    ck_post_item *items = p->items;
    uint32_t n = p->count, items_cap = p->cap;
    p->items = p->spare;
    p->cap = p->spare_cap;
    p->count = 0;
    p->spare = items;
    p->spare_cap = items_cap;
    atomic_store_explicit(&p->approx_count, 0, memory_order_release);
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < n; i++) {
        if (items[i].job) ck_ready_push(&k->ready, items[i].job, items[i].task);
        else ck_done_push(&k->done, items[i].token, 0, CK_EVENT_MESSAGE);
    }
}

/* ------------------------------------------------------------ the loop */

int ck_poll(ck_kernel *k, bool may_block, int64_t max_wait_ns, ck_event *out,
            int cap) {
    k->stats.polls++;
    drain_posts(k);

    int64_t timeout = 0;
    if (may_block && k->done.count == 0 && ck_ready_count(&k->ready) == 0) {
        int64_t next = ck_timer_next(k);
        if (next == INT64_MAX) {
            timeout = max_wait_ns;
        } else {
            int64_t now = ck_now_ns();
            timeout = next > now ? next - now : 0;
            if (max_wait_ns >= 0 && max_wait_ns < timeout) timeout = max_wait_ns;
        }
    }

    if (timeout != 0) {
        atomic_store_explicit(&k->sleeping, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&k->posts.approx_count, memory_order_seq_cst)) timeout = 0;
    }
    bool woken = false;
    int err;
#ifndef CURIO_EPOLL_ONLY
    if (k->backend == CK_BACKEND_IO_URING) err = ck_uring_wait(k, timeout, &woken);
    else
#endif
        err = ck_epoll_wait(k, timeout, &woken);
    atomic_store_explicit(&k->sleeping, 0, memory_order_relaxed);
    if (err < 0 && err != -EINTR) return err;
    drain_posts(k);

    if (k->timers.count) ck_timers_expire(k, ck_now_ns());

    int n = 0;
    ck_done *d = &k->done;
    while (n < cap && d->count) {
        out[n++] = d->buf[d->head];
        d->head = (d->head + 1) % d->cap;
        d->count--;
    }
    return n;
}

void ck_get_stats(const ck_kernel *k, ck_stats *out) { *out = k->stats; }

void ck_mark_running(ck_kernel *k, int64_t task_id, int64_t since_ns) {
    /* since first: a reader that sees the id also sees its start time. */
    atomic_store_explicit(&k->running_since, since_ns, memory_order_relaxed);
    atomic_store_explicit(&k->running_task, task_id, memory_order_release);
}

void ck_read_running(ck_kernel *k, int64_t *task_id, int64_t *since_ns) {
    *task_id = atomic_load_explicit(&k->running_task, memory_order_acquire);
    *since_ns = atomic_load_explicit(&k->running_since, memory_order_relaxed);
}
