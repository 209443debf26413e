/* The request pool and the done list: the bookkeeping both backends share. */
#include "internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

ck_req *ck_req_alloc(ck_reqs *r) {
    if (!r->free_list) {
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
    q->started = false;
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

void ck_reqs_free(ck_reqs *r);
void ck_reqs_free(ck_reqs *r) {
    for (uint32_t i = 0; i < r->nchunks; i++) free(r->chunks[i]);
    free(r->chunks);
    r->chunks = NULL;
    r->nchunks = 0;
    r->free_list = NULL;
}

bool ck_done_push(ck_done *d, void *token, int64_t result, int32_t kind) {
    if (d->count == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        ck_event *buf = malloc((size_t)cap * sizeof *buf);
        if (!buf) return false;
        for (uint32_t i = 0; i < d->count; i++) buf[i] = d->buf[(d->head + i) % d->cap];
        free(d->buf);
        d->buf = buf;
        d->head = 0;
        d->cap = cap;
    }
    ck_event *e = &d->buf[(d->head + d->count) % d->cap];
    e->token = token;
    e->result = result;
    e->kind = kind;
    e->_pad = 0;
    d->count++;
    return true;
}

void ck_complete(ck_kernel *k, ck_req *q, int64_t result) {
    void *token = q->token;
    ck_req_release(&k->reqs, q);
    ck_done_push(&k->done, token, result, CK_EVENT_IO);
}

int64_t ck_submit(ck_kernel *k, const ck_request_args *args, void *token,
                  uint64_t *handle) {
    *handle = 0;
    if (args->fd < 0) return -EBADF;
    switch (args->op) {
    case CK_OP_READ: case CK_OP_WRITE: case CK_OP_RECV: case CK_OP_SEND:
    case CK_OP_ACCEPT: case CK_OP_CONNECT: case CK_OP_POLL_IN:
    case CK_OP_POLL_OUT: case CK_OP_RECVMSG: case CK_OP_SENDMSG:
        break;
    default:
        return -EINVAL;
    }
    ck_req *q = ck_req_alloc(&k->reqs);
    if (!q) return -ENOMEM;
    q->args = *args;
    q->token = token;
    q->addrlen = (socklen_t)args->len;
    int64_t r;
#ifndef CURIO_EPOLL_ONLY
    if (k->backend == CK_BACKEND_IO_URING) r = ck_uring_submit(k, q);
    else
#endif
        r = ck_epoll_submit(k, q);
    if (r != CK_PENDING) {
        ck_req_release(&k->reqs, q);
        k->stats.immediate++;
        return r;
    }
    *handle = ck_req_handle(q);
    return CK_PENDING;
}

bool ck_cancel(ck_kernel *k, uint64_t handle) {
    ck_req *q = ck_req_lookup(&k->reqs, handle);
    if (!q || q->state != CK_REQ_PENDING) return false;
    q->state = CK_REQ_CANCELLING;
#ifndef CURIO_EPOLL_ONLY
    if (k->backend == CK_BACKEND_IO_URING) { ck_uring_cancel(k, q); return true; }
#endif
    ck_epoll_cancel(k, q);
    return true;
}

void ck_forget_fd(ck_kernel *k, int fd) {
    if (fd < 0) return;
#ifndef CURIO_EPOLL_ONLY
    if (k->backend == CK_BACKEND_IO_URING) {
        if (!k->reqs.pending) return;
        for (uint32_t c = 0; c < k->reqs.nchunks; c++)
            for (uint32_t i = 0; i < CK_REQ_CHUNK; i++) {
                ck_req *q = &k->reqs.chunks[c][i];
                if (q->state == CK_REQ_PENDING && q->args.fd == fd) {
                    q->state = CK_REQ_CANCELLING;
                    ck_uring_cancel(k, q);
                }
            }
        return;
    }
#endif
    ck_epoll_forget_fd(k, fd);
}

uint32_t ck_pending_requests(const ck_kernel *k) { return k->reqs.pending; }

uint32_t ck_waiting_events(const ck_kernel *k) { return k->done.count; }
