/* Kernel lifecycle, the choice of backend and the waiting half of the loop. */
#include "kernel.h"
#include "../backend/backend.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* How long the loop sleeps at most while work waits for memory or a free
 * SQE: it retries on the next turn without spinning hot. */
#define CK_RETRY_WAIT_NS 1000000

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
ck_backend_kind ck_kernel_backend(const ck_kernel *k) { return k->ops->kind; }

const char *ck_kernel_fallback_reason(const ck_kernel *k) {
    return k->fallback_reason[0] ? k->fallback_reason : NULL;
}

uint64_t ck_next_serial(void) {
    static _Atomic uint64_t next = 1;
    return atomic_fetch_add(&next, 1);
}

bool ck_have_io_uring(void) {
#ifdef CURIO_EPOLL_ONLY
    return false;
#else
    return true;
#endif
}

#ifndef CURIO_EPOLL_ONLY
static atomic_int fallback_reported;

static bool disabled_by_env(void) {
    const char *off = getenv("CURIO_DISABLE_IO_URING");
    return off && *off && strcmp(off, "0") != 0;
}
#endif

/* Picks the backend: io_uring when asked for and available, else epoll.
 * Returns 0 or -errno. */
static int choose_backend(ck_kernel *k, const ck_kernel_options *o) {
#ifndef CURIO_EPOLL_ONLY
    if (o->want == CK_BACKEND_IO_URING) {
        char why[96] = "";
        int err;
        if (!(o->flags & CK_KERNEL_IGNORE_ENV) && disabled_by_env()) {
            err = -ENOSYS;
            snprintf(why, sizeof why, "disabled by CURIO_DISABLE_IO_URING");
        } else {
            err = ck_uring_backend.init(k, why, sizeof why);
        }
        if (err == 0) {
            k->ops = &ck_uring_backend;
            return 0;
        }
        if (!why[0]) snprintf(why, sizeof why, "%s", strerror(-err));
        snprintf(k->fallback_reason, sizeof k->fallback_reason, "%s", why);
        if (!(o->flags & CK_KERNEL_QUIET_FALLBACK) && !atomic_exchange(&fallback_reported, 1))
            fprintf(stderr, "curio: io_uring is unavailable (%s); using the epoll backend\n", why);
    }
#else
    (void)o;
#endif
    int err = ck_epoll_backend.init(k, NULL, 0);
    if (err) return err;
    k->ops = &ck_epoll_backend;
    return 0;
}

ck_kernel *ck_kernel_new_with(const ck_kernel_options *o) {
    ck_kernel *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->options = o->flags;
    ck_timers_init(&k->timers);
    pthread_mutex_init(&k->posts.lock, NULL);
    k->wakefd = -1;
    if (!ck_ready_grow(&k->ready)) {
        errno = ENOMEM;
        goto fail;
    }
    k->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (k->wakefd < 0) goto fail;
    int err = choose_backend(k, o);
    if (err) {
        errno = -err;
        goto fail;
    }
    return k;
fail:;
    int saved = errno;
    if (k->wakefd >= 0) close(k->wakefd);
    free(k->ready.buf);
    pthread_mutex_destroy(&k->posts.lock);
    free(k);
    errno = saved;
    return NULL;
}

ck_kernel *ck_kernel_new(ck_backend_kind want) {
    ck_kernel_options o = {.want = want, .flags = 0};
    return ck_kernel_new_with(&o);
}

void ck_kernel_free(ck_kernel *k) {
    if (!k) return;
    ck_posts_quiesce(&k->posts);
    if (tls_kernel == k) tls_kernel = NULL;
    k->ops->free(k);
    ck_pool_free(k); /* after the backend: the OS may hold its buffers until the ring is gone */
    close(k->wakefd);
    ck_timers_free(&k->timers);
    ck_reqs_free(&k->reqs);
    ck_done_free(&k->done);
    free(k->ready.buf);
    ck_posts_free(&k->posts);
    free(k);
}

void ck_get_backend_info(const ck_kernel *k, ck_backend_info *out) {
    memset(out, 0, sizeof *out);
    out->kind = k->ops->kind;
    k->ops->info(k, out);
}

/* ------------------------------------------------------------ the loop */

/* Work that waits for memory (a carried post, a held completion) must not
 * let the loop sleep long. */
static bool has_deferred(const ck_kernel *k) {
    return ck_posts_carried(&k->posts) || k->done.overflow_count;
}

/* Nothing waits to be handed to the loop: no completion, no ready job, no
 * chunk of a stream. Before the wait it lets the loop block; after it, it
 * tells a virtual clock that the wait was idle. */
static bool nothing_to_deliver(const ck_kernel *k) {
    return k->done.count == 0 && k->done.overflow_count == 0 && ck_ready_count(&k->ready) == 0 &&
           !(k->pool && k->pool->fifo_count);
}

int ck_poll(ck_kernel *k, bool may_block, int64_t max_wait_ns, ck_event *out,
            int cap) {
    k->stats.polls++;
    if (ck_posts_waiting(&k->posts)) ck_posts_drain(k);

    int64_t timeout = 0;
    int64_t jump_to = INT64_MAX; /* virtual clock: where an idle wait takes it */
    if (may_block && nothing_to_deliver(k)) {
        int64_t next = ck_timer_next(k);
        if (next == INT64_MAX) {
            timeout = max_wait_ns;
        } else if (__builtin_expect(k->clock.is_virtual, 0)) {
            /* Virtual time does not pass while the loop waits: wait in
             * real time for I/O and posts only, and jump to the deadline
             * when that wait finds nothing. */
            int64_t now = ck_kernel_now(k);
            if (next <= now) {
                timeout = 0;
            } else if (k->clock.autojump_ns >= 0) {
                /* Held (a task waits for a worker thread): wait as long in
                 * real time as the deadline is away, so the answer is not
                 * overtaken but an answer that never comes cannot hang. */
                timeout = k->clock.held ? next - now : k->clock.autojump_ns;
                jump_to = next;
            } else {
                timeout = -1;
            }
            if (max_wait_ns >= 0 && (timeout < 0 || max_wait_ns < timeout)) {
                /* Cut short by the caller: not a full idle wait, no jump. */
                timeout = max_wait_ns;
                jump_to = INT64_MAX;
            }
        } else {
            int64_t now = ck_now_ns();
            timeout = next > now ? next - now : 0;
            if (max_wait_ns >= 0 && max_wait_ns < timeout) timeout = max_wait_ns;
        }
        if (has_deferred(k) && (timeout < 0 || timeout > CK_RETRY_WAIT_NS))
            timeout = CK_RETRY_WAIT_NS;
    }

    if (timeout != 0) {
        atomic_store_explicit(&k->sleeping, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&k->posts.approx_count, memory_order_seq_cst)) timeout = 0;
    }
    bool woken = false;
    /* Virtual clock: only a wait that lasted its whole timeout was idle (a
     * readiness that produced no completion ends it early too). */
    int64_t wait_start = jump_to != INT64_MAX && timeout > 0 ? ck_now_ns() : 0;
    int err = k->ops->wait(k, timeout, &woken);
    if (wait_start && ck_now_ns() - wait_start < timeout) jump_to = INT64_MAX;
    atomic_store_explicit(&k->sleeping, 0, memory_order_relaxed);
    if (woken) {
        /* Empty the eventfd first, then reset the flag: a post that lands
         * after the reset writes the eventfd again, and one that lands
         * before it is in the queue, which is drained right below. The
         * other order could swallow a write and leave the flag stuck. */
        k->ops->wake_consumed(k);
        atomic_store_explicit(&k->wake_pending, 0, memory_order_seq_cst);
    }
    if (err < 0 && err != -EINTR) return err;
    if (ck_posts_waiting(&k->posts)) ck_posts_drain(k);

    if (__builtin_expect(jump_to != INT64_MAX, 0) && !woken && err >= 0 && nothing_to_deliver(k)) {
        /* Idle: nothing arrived, so nothing can happen before the next
         * deadline but the deadline itself. */
        int64_t now = atomic_load_explicit(&k->clock.now_ns, memory_order_relaxed);
        if (jump_to > now) atomic_store_explicit(&k->clock.now_ns, jump_to, memory_order_relaxed);
        k->stats.clock_jumps++;
    }
    if (k->timers.count) ck_timers_expire(k, ck_kernel_now(k));
    return ck_done_take(k, out, cap);
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
