/* Cross-thread posts and wake-ups: the only kernel calls other threads make. */
#include "kernel.h"
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

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
    /* A loop that is running (or spinning for posts) finds the post at its
     * next turn; only one that sleeps needs the eventfd. The loop sets
     * `sleeping` before it looks at the count one last time and the poster
     * bumps the count before it looks at `sleeping` (both seq_cst), so one
     * of them always sees the other.
     *
     * The wake happens before the unlock: once the lock is released the
     * job may run, its task end and its kernel be freed (ASan caught a
     * poster writing `wake_pending` of a kernel freed that way), and
     * ck_kernel_free takes this lock (ck_posts_quiesce) before it frees anything, so the last
     * touch of `k` by a poster comes first. */
    if (atomic_load_explicit(&k->sleeping, memory_order_seq_cst)) ck_wake(k);
    pthread_mutex_unlock(&p->lock);
    return true;
}

uint32_t ck_posted_count(ck_kernel *k) {
    return atomic_load_explicit(&k->posts.approx_count, memory_order_acquire);
}

/* Delivers carried items; false when one still finds no room. */
static bool deliver_carry(ck_kernel *k) {
    ck_posts *p = &k->posts;
    while (p->carry_next != p->carry_end) {
        ck_post_item *it = &p->spare[p->carry_next];
        bool ok = it->job ? ck_ready_push(&k->ready, it->job, it->task)
                          : ck_done_push(&k->done, it->token, 0, CK_EVENT_MESSAGE);
        if (!ok) {
            k->stats.deferred_events++;
            return false;
        }
        p->carry_next++;
    }
    p->carry_next = p->carry_end = 0;
    return true;
}

void ck_posts_drain(ck_kernel *k) {
    ck_posts *p = &k->posts;
    /* Older items first, so one thread's posts keep their order. */
    if (ck_posts_carried(p) && !deliver_carry(k)) return;
    if (!atomic_load_explicit(&p->approx_count, memory_order_acquire)) return;
    pthread_mutex_lock(&p->lock);
    /* Swap buffers so the copy-out happens without the lock held; the old
     * buffer is only reused by the next drain, on this same thread, once
     * its carried items are all out. */
    ck_post_item *items = p->items;
    uint32_t n = p->count, items_cap = p->cap;
    p->items = p->spare;
    p->cap = p->spare_cap;
    p->count = 0;
    p->spare = items;
    p->spare_cap = items_cap;
    atomic_store_explicit(&p->approx_count, 0, memory_order_release);
    pthread_mutex_unlock(&p->lock);
    p->carry_next = 0;
    p->carry_end = n;
    deliver_carry(k);
}

void ck_posts_quiesce(ck_posts *p) {
    pthread_mutex_lock(&p->lock);
    pthread_mutex_unlock(&p->lock);
}

void ck_posts_free(ck_posts *p) {
    free(p->items);
    free(p->spare);
    pthread_mutex_destroy(&p->lock);
}
