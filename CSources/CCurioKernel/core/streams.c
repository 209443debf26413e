/* The receive pool and the parts of CK_OP_RECV_STREAM every backend
 * shares: handing buffers out as chunks, taking them back, the list of
 * streams that stopped for want of a buffer, and the drain that the
 * readiness-based paths (epoll, io_uring without a buffer ring) run. */
#include "kernel.h"
#include "fault.h"
#include "../backend/backend.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_COUNT 256
#define DEFAULT_SIZE (8 * 1024)
#define MAX_COUNT 32768 /* io_uring's limit on a buffer ring */
#define MIN_SIZE 64
#define MAX_SIZE (1024 * 1024)

static uint32_t round_up_pow2(uint32_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

int ck_stream_configure(ck_kernel *k, uint32_t count, uint32_t size) {
    if (k->pool) return -EBUSY;
    if (count == 0 || count > MAX_COUNT || size < MIN_SIZE || size > MAX_SIZE) return -EINVAL;
    k->pool_count = round_up_pow2(count);
    k->pool_size = size;
    return 0;
}

ck_pool *ck_pool_get(ck_kernel *k) {
    if (k->pool) return k->pool;
    uint32_t count = k->pool_count ? k->pool_count : DEFAULT_COUNT;
    uint32_t size = k->pool_size ? k->pool_size : DEFAULT_SIZE;
    ck_pool *p = ck_fault_hit(CK_FAULT_POOL_ALLOC) ? NULL : calloc(1, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    p->count = count;
    p->size = size;
    /* Page-aligned: io_uring maps nothing here, but receives of a page
     * land on page boundaries, and the memory is handed out whole. */
    p->mem = aligned_alloc(4096, ((size_t)count * size + 4095) & ~(size_t)4095);
    p->free_stack = malloc((size_t)count * sizeof *p->free_stack);
    p->owner = calloc(count, sizeof *p->owner);
    p->fifo = malloc((size_t)count * sizeof *p->fifo);
    if (!p->mem || !p->free_stack || !p->owner || !p->fifo) {
        free(p->mem);
        free(p->free_stack);
        free(p->owner);
        free(p->fifo);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    k->pool = p;
    if (k->ops->pool_setup && !ck_fault_hit(CK_FAULT_BUF_RING) && k->ops->pool_setup(k, p) == 0) {
        p->ring = true;
    } else {
        /* Highest id on top: buffers are taken from 0 up, which keeps a
         * small working set in the same pages. */
        for (uint32_t i = 0; i < count; i++) p->free_stack[i] = count - 1 - i;
        p->nfree = count;
    }
    return p;
}

void ck_pool_free(ck_kernel *k) {
    ck_pool *p = k->pool;
    if (!p) return;
    free(p->mem);
    free(p->free_stack);
    free(p->owner);
    free(p->fifo);
    free(p);
    k->pool = NULL;
}

void ck_stream_stall(ck_pool *p, ck_req *q) {
    if (q->sflags & CK_STREAM_STALLED) return;
    q->sflags |= CK_STREAM_STALLED;
    q->snext = NULL;
    q->sprev = p->stalled_tail;
    if (p->stalled_tail) p->stalled_tail->snext = q;
    else p->stalled_head = q;
    p->stalled_tail = q;
    p->exhausted++;
}

void ck_stream_unstall(ck_pool *p, ck_req *q) {
    if (!(q->sflags & CK_STREAM_STALLED)) return;
    q->sflags &= (uint8_t)~CK_STREAM_STALLED;
    if (q->sprev) q->sprev->snext = q->snext;
    else p->stalled_head = q->snext;
    if (q->snext) q->snext->sprev = q->sprev;
    else p->stalled_tail = q->sprev;
    q->sprev = q->snext = NULL;
}

void ck_stream_chunk(ck_kernel *k, ck_req *q, uint32_t bid, uint32_t len) {
    ck_pool *p = k->pool;
    p->owner[bid] = ck_req_handle(q);
    p->held++;
    q->held++;
    p->chunks++;
    /* One slot per buffer, and a buffer is in at most one chunk: the FIFO
     * cannot be full. */
    ck_event *e = &p->fifo[(p->fifo_head + p->fifo_count) & (p->count - 1)];
    *e = (ck_event){.token = q->token, .result = len, .kind = CK_EVENT_CHUNK, .aux = bid};
    p->fifo_count++;
    /* Once per stop: the multishot keeps delivering chunks until its
     * cancel lands, and counting each of them made `paused` several times
     * the number of stops (224 for 32 in ReceiveStreamTests). */
    if (p->ring && q->held >= ck_stream_limit(p, q) && (q->sflags & CK_STREAM_ARMED) &&
        !(q->sflags & CK_STREAM_PAUSING)) {
        p->paused++;
        k->ops->stream_pause(k, q);
    }
}

int ck_stream_take(ck_kernel *k, ck_event *out, int cap) {
    ck_pool *p = k->pool;
    int n = 0;
    while (n < cap && p->fifo_count) {
        out[n++] = p->fifo[p->fifo_head];
        p->fifo_head = (p->fifo_head + 1) & (p->count - 1);
        p->fifo_count--;
    }
    return n;
}

uint8_t *ck_stream_buffer(ck_kernel *k, uint32_t bid) {
    ck_pool *p = k->pool;
    if (!p || bid >= p->count || !p->owner[bid]) return NULL;
    return p->mem + (size_t)bid * p->size;
}

/* Starts q again if it stopped and may run. */
static bool kick(ck_kernel *k, ck_pool *p, ck_req *q) {
    if (q->sflags & (CK_STREAM_ARMED | CK_STREAM_PAUSING)) return false;
    if (!ck_stream_may_run(p, q)) return false;
    ck_stream_unstall(p, q);
    p->rearmed++;
    k->ops->stream_arm(k, q);
    return true;
}

bool ck_stream_release(ck_kernel *k, uint32_t bid) {
    ck_pool *p = k->pool;
    if (!p || bid >= p->count || !p->owner[bid]) return false;
    ck_req *q = ck_req_lookup(&k->reqs, p->owner[bid]);
    p->owner[bid] = 0;
    p->held--;
    if (p->ring) {
        k->ops->provide(k, p, bid);
    } else {
        p->free_stack[p->nfree++] = bid;
    }
    bool kicked = false;
    if (q && q->args.op == CK_OP_RECV_STREAM && q->held) {
        q->held--;
        kicked = kick(k, p, q);
    }
    /* One buffer back starts at most one stream that waited for one (the
     * owner, or the longest waiter). */
    if (!kicked && p->stalled_head) {
        ck_req *s = p->stalled_head;
        if (ck_stream_may_run(p, s)) kick(k, p, s);
    }
    return true;
}

int64_t ck_stream_drain(ck_kernel *k, ck_req *q) {
    ck_pool *p = k->pool;
    for (;;) {
        if (q->held >= ck_stream_limit(p, q)) {
            p->paused++;
            return 1;
        }
        if (p->nfree == 0) {
            ck_stream_stall(p, q);
            return 1;
        }
        uint32_t bid = p->free_stack[p->nfree - 1];
        ssize_t r = recv(q->args.fd, p->mem + (size_t)bid * p->size, p->size, MSG_DONTWAIT);
        if (r > 0) {
            p->nfree--;
            ck_stream_chunk(k, q, bid, (uint32_t)r);
            /* A short read emptied the socket's queue; whatever arrives
             * later raises a new edge (epoll) or poll (io_uring), which
             * spares the recv that would only say EAGAIN. */
            if ((uint32_t)r < p->size) return -EAGAIN;
            continue;
        }
        if (r == 0) return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -EAGAIN;
        if (errno == EINTR) continue;
        return -errno;
    }
}

void ck_stream_finish(ck_kernel *k, ck_req *q) {
    ck_pool *p = k->pool;
    ck_stream_unstall(p, q);
    q->sflags = 0;
    p->streams--;
}

void ck_get_stream_stats(const ck_kernel *k, ck_stream_stats *out) {
    memset(out, 0, sizeof *out);
    const ck_pool *p = k->pool;
    if (!p) return;
    out->buffers = p->count;
    out->buffer_size = p->size;
    out->held = p->held;
    out->streams = p->streams;
    out->ring = p->ring;
    out->chunks = p->chunks;
    out->exhausted = p->exhausted;
    out->paused = p->paused;
    out->rearmed = p->rearmed;
}
