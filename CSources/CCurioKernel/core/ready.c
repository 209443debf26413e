/* The ready queue's slow path: growing the ring. */
#include "kernel.h"
#include "fault.h"
#include <stdlib.h>
#include <string.h>

bool ck_ready_grow(ck_ready *q) {
    uint32_t old_cap = q->buf ? q->mask + 1 : 0;
    uint32_t cap = old_cap ? old_cap * 2 : 256;
    if (ck_fault_hit(CK_FAULT_READY_GROW)) return false;
    ck_ready_entry *buf = malloc((size_t)cap * sizeof *buf);
    if (!buf) return false;
    uint32_t n = q->tail - q->head;
    /* Unroll the ring so the live entries start at 0. */
    for (uint32_t i = 0; i < n; i++) buf[i] = q->buf[(q->head + i) & q->mask];
    free(q->buf);
    q->buf = buf;
    q->mask = cap - 1;
    q->head = 0;
    q->tail = n;
    return true;
}
