/* The request pool and the public request calls, which reach the backend
 * only through its ops table. */
#include "kernel.h"
#include "fault.h"
#include "../backend/backend.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

ck_req *ck_req_alloc(ck_reqs *r) {
    if (!r->free_list) {
        if (ck_fault_hit(CK_FAULT_REQUEST_ALLOC)) return NULL;
        ck_req **chunks = realloc(r->chunks, (size_t)(r->nchunks + 1) * sizeof *chunks);
        if (!chunks) return NULL;
        r->chunks = chunks;
        ck_req *c = calloc(CK_REQ_CHUNK, sizeof *c);
        if (!c) return NULL;
        chunks[r->nchunks] = c;
        for (uint32_t i = 0; i < CK_REQ_CHUNK; i++) {
            c[i].index = r->nchunks * CK_REQ_CHUNK + i;
            c[i].gen = 1;
            c[i].next = (i + 1 < CK_REQ_CHUNK) ? &c[i + 1] : NULL;
        }
        r->free_list = c;
        r->nchunks++;
    }
    ck_req *q = r->free_list;
    r->free_list = q->next;
    q->next = q->prev = NULL;
    q->state = CK_REQ_PENDING;
    q->phase = 0;
    q->flags = 0;
    q->started = false;
    q->sflags = 0;
    q->held = 0;
    q->sprev = q->snext = NULL;
    r->pending++;
    return q;
}

void ck_req_release(ck_reqs *r, ck_req *q) {
    q->state = CK_REQ_FREE;
    q->gen++;
    q->token = NULL;
    q->prev = NULL;
    q->next = r->free_list;
    r->free_list = q;
    r->pending--;
}

ck_req *ck_req_lookup(ck_reqs *r, uint64_t handle) {
    uint32_t idx = (uint32_t)(handle & 0xffffffffu);
    if (idx == 0) return NULL;
    idx--;
    if (idx / CK_REQ_CHUNK >= r->nchunks) return NULL;
    ck_req *q = &r->chunks[idx / CK_REQ_CHUNK][idx % CK_REQ_CHUNK];
    if (q->gen != (uint32_t)(handle >> 32) || q->state == CK_REQ_FREE) return NULL;
    return q;
}

void ck_reqs_each_on_fd(ck_reqs *r, int fd, int state, void (*fn)(ck_kernel *, ck_req *),
                        ck_kernel *k) {
    if (!r->pending) return;
    for (uint32_t c = 0; c < r->nchunks; c++)
        for (uint32_t i = 0; i < CK_REQ_CHUNK; i++) {
            ck_req *q = &r->chunks[c][i];
            if (q->state == state && q->args.fd == fd) fn(k, q);
        }
}

void ck_reqs_free(ck_reqs *r) {
    for (uint32_t i = 0; i < r->nchunks; i++) free(r->chunks[i]);
    free(r->chunks);
    r->chunks = NULL;
    r->nchunks = 0;
    r->free_list = NULL;
}

int64_t ck_submit(ck_kernel *k, const ck_request_args *args, void *token,
                  uint64_t *handle) {
    *handle = 0;
    if (args->fd < 0) return -EBADF;
    switch (args->op) {
    case CK_OP_READ: case CK_OP_WRITE: case CK_OP_RECV: case CK_OP_SEND:
    case CK_OP_ACCEPT: case CK_OP_CONNECT: case CK_OP_POLL_IN:
    case CK_OP_POLL_OUT: case CK_OP_RECVMSG: case CK_OP_SENDMSG:
    case CK_OP_ACCEPT_MULTI: case CK_OP_SEND_BEHIND:
        break;
    case CK_OP_RECV_STREAM:
        /* Its pool first: a stream cannot start without buffers. */
        if (!ck_pool_get(k)) return -ENOMEM;
        break;
    default:
        return -EINVAL;
    }
    ck_req *q = ck_req_alloc(&k->reqs);
    if (!q) return -ENOMEM;
    q->args = *args;
    q->token = token;
    q->addrlen = (socklen_t)args->len;
    if (args->op == CK_OP_RECV_STREAM) k->pool->streams++;
    int64_t r = k->ops->submit(k, q);
    if (r != CK_PENDING) {
        ck_req_release(&k->reqs, q);
        k->stats.immediate++;
        return r;
    }
    *handle = ck_req_handle(q);
    if (args->op == CK_OP_SEND_BEHIND) k->stats.sends_behind++;
    return CK_PENDING;
}

bool ck_cancel(ck_kernel *k, uint64_t handle) {
    ck_req *q = ck_req_lookup(&k->reqs, handle);
    if (!q || q->state != CK_REQ_PENDING) return false;
    q->state = CK_REQ_CANCELLING;
    k->ops->cancel(k, q);
    return true;
}

void ck_forget_fd(ck_kernel *k, int fd) {
    if (fd < 0) return;
    k->ops->forget_fd(k, fd);
}

int ck_flush_fd(ck_kernel *k, int fd) {
    if (fd < 0 || !k->ops->flush_fd) return 0;
    return k->ops->flush_fd(k, fd);
}

uint32_t ck_pending_requests(const ck_kernel *k) {
    return k->reqs.pending - k->done.overflow_count;
}

uint32_t ck_waiting_events(const ck_kernel *k) {
    return k->done.count + k->done.overflow_count;
}
