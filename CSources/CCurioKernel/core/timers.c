/* The timer heap: a binary min-heap of slot indices keyed on deadline.
 * Slots carry their heap position so cancellation is O(log n) and removes
 * the entry at once (no lazy tombstones to skip later). */
#include "kernel.h"
#include "fault.h"
#include <errno.h>
#include <stdlib.h>

#define NONE UINT32_MAX

void ck_timers_init(ck_timers *t) {
    t->slots = NULL;
    t->nslots = 0;
    t->free_head = NONE;
    t->heap = NULL;
    t->count = 0;
    t->cap = 0;
}

void ck_timers_free(ck_timers *t) {
    free(t->slots);
    free(t->heap);
    t->slots = NULL;
    t->heap = NULL;
}

static bool grow(ck_timers *t) {
    uint32_t n = t->nslots ? t->nslots * 2 : 64;
    if (ck_fault_hit(CK_FAULT_TIMER_GROW)) return false;
    ck_timer_slot *s = realloc(t->slots, (size_t)n * sizeof *s);
    if (!s) return false;
    t->slots = s;
    uint32_t *h = realloc(t->heap, (size_t)n * sizeof *h);
    if (!h) return false;
    t->heap = h;
    t->cap = n;
    for (uint32_t i = t->nslots; i < n; i++) {
        s[i].heap_pos = NONE;
        s[i].gen = 1;
        s[i].next_free = (i + 1 < n) ? i + 1 : t->free_head;
    }
    t->free_head = t->nslots;
    t->nslots = n;
    return true;
}

static inline int64_t dl(const ck_timers *t, uint32_t pos) {
    return t->slots[t->heap[pos]].deadline;
}

static inline void place(ck_timers *t, uint32_t pos, uint32_t slot) {
    t->heap[pos] = slot;
    t->slots[slot].heap_pos = pos;
}

static void sift_up(ck_timers *t, uint32_t pos) {
    uint32_t slot = t->heap[pos];
    int64_t d = t->slots[slot].deadline;
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        /* '<=' on the parent keeps equal deadlines in insertion order
         * closer to FIFO: a new timer never overtakes an equal older one. */
        if (dl(t, parent) <= d) break;
        place(t, pos, t->heap[parent]);
        pos = parent;
    }
    place(t, pos, slot);
}

static void sift_down(ck_timers *t, uint32_t pos) {
    uint32_t slot = t->heap[pos];
    int64_t d = t->slots[slot].deadline;
    for (;;) {
        uint32_t l = 2 * pos + 1;
        if (l >= t->count) break;
        uint32_t c = l;
        if (l + 1 < t->count && dl(t, l + 1) < dl(t, l)) c = l + 1;
        if (d <= dl(t, c)) break;
        place(t, pos, t->heap[c]);
        pos = c;
    }
    place(t, pos, slot);
}

static void remove_at(ck_timers *t, uint32_t pos) {
    uint32_t slot = t->heap[pos];
    t->count--;
    if (pos != t->count) {
        place(t, pos, t->heap[t->count]);
        if (pos > 0 && dl(t, pos) < dl(t, (pos - 1) / 2)) sift_up(t, pos);
        else sift_down(t, pos);
    }
    ck_timer_slot *s = &t->slots[slot];
    s->heap_pos = NONE;
    s->gen++;
    s->token = NULL;
    s->next_free = t->free_head;
    t->free_head = slot;
}

uint64_t ck_timer_add(ck_kernel *k, int64_t deadline_ns, void *token) {
    ck_timers *t = &k->timers;
    if (t->free_head == NONE && !grow(t)) {
        errno = ENOMEM;
        return 0;
    }
    uint32_t slot = t->free_head;
    ck_timer_slot *s = &t->slots[slot];
    t->free_head = s->next_free;
    s->deadline = deadline_ns;
    s->token = token;
    t->heap[t->count] = slot;
    s->heap_pos = t->count;
    t->count++;
    sift_up(t, s->heap_pos);
    return ((uint64_t)s->gen << 32) | ((uint64_t)slot + 1);
}

bool ck_timer_cancel(ck_kernel *k, uint64_t handle) {
    ck_timers *t = &k->timers;
    uint32_t slot = (uint32_t)(handle & 0xffffffffu);
    if (slot == 0 || slot > t->nslots) return false;
    slot--;
    ck_timer_slot *s = &t->slots[slot];
    if (s->gen != (uint32_t)(handle >> 32) || s->heap_pos == NONE) return false;
    remove_at(t, s->heap_pos);
    return true;
}

int64_t ck_timer_next(const ck_kernel *k) {
    return k->timers.count ? dl(&k->timers, 0) : INT64_MAX;
}

uint32_t ck_timer_count(const ck_kernel *k) { return k->timers.count; }

void ck_timers_expire(ck_kernel *k, int64_t now) {
    ck_timers *t = &k->timers;
    while (t->count && dl(t, 0) <= now) {
        uint32_t slot = t->heap[0];
        ck_timer_slot *s = &t->slots[slot];
        /* Report first, remove after: a timer the done list has no room
         * for stays due in the heap and fires on the next turn. */
        if (!ck_done_push(&k->done, s->token, s->deadline, CK_EVENT_TIMER)) {
            k->stats.deferred_events++;
            break;
        }
        remove_at(t, 0);
    }
}
