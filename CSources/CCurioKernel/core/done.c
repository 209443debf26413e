/* The done list: completions waiting for the next ck_poll. */
#include "kernel.h"
#include "fault.h"
#include <stdlib.h>

bool ck_done_push(ck_done *d, void *token, int64_t result, int32_t kind) {
    if (d->count == d->cap) {
        if (ck_fault_hit(CK_FAULT_DONE_GROW)) return false;
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        ck_event *buf = malloc((size_t)cap * sizeof *buf);
        if (!buf) return false;
        for (uint32_t i = 0; i < d->count; i++) buf[i] = d->buf[(d->head + i) & (d->cap - 1)];
        free(d->buf);
        d->buf = buf;
        d->head = 0;
        d->cap = cap;
    }
    /* cap is a power of two */
    ck_event *e = &d->buf[(d->head + d->count) & (d->cap - 1)];
    e->token = token;
    e->result = result;
    e->kind = kind;
    e->aux = 0;
    d->count++;
    return true;
}

/* The event that ends a request: the streaming and multishot requests end
 * with kinds of their own, since their tokens are not waiting tasks. */
static int32_t end_kind(ck_op op) {
    if (__builtin_expect(op == CK_OP_RECV_STREAM, 0)) return CK_EVENT_STREAM_END;
    if (__builtin_expect(op == CK_OP_ACCEPT_MULTI, 0)) return CK_EVENT_MULTI_END;
    if (op == CK_OP_SEND_BEHIND) return CK_EVENT_SENT_BEHIND;
    return CK_EVENT_IO;
}

void ck_complete(ck_kernel *k, ck_req *q, int64_t result) {
    ck_done *d = &k->done;
    int32_t kind = end_kind(q->args.op);
    if (__builtin_expect(q->args.op == CK_OP_RECV_STREAM, 0)) ck_stream_finish(k, q);
    if (ck_done_push(d, q->token, result, kind)) {
        ck_req_release(&k->reqs, q);
        return;
    }
    /* No memory for the ring: the request itself carries its result until
     * ck_poll reports it. Its links are free: every backend takes a request
     * off its own lists before completing it. */
    k->stats.deferred_events++;
    q->state = CK_REQ_DONE;
    q->result = result;
    q->next = NULL;
    q->prev = d->overflow_tail;
    if (d->overflow_tail) d->overflow_tail->next = q;
    else d->overflow_head = q;
    d->overflow_tail = q;
    d->overflow_count++;
}

bool ck_report_more(ck_kernel *k, ck_req *q, int64_t result) {
    return ck_done_push(&k->done, q->token, result, CK_EVENT_IO_MORE);
}

int ck_done_take_overflow(ck_kernel *k, ck_event *out, int cap) {
    ck_done *d = &k->done;
    int n = 0;
    while (n < cap && d->overflow_head) {
        ck_req *q = d->overflow_head;
        d->overflow_head = q->next;
        if (!d->overflow_head) d->overflow_tail = NULL;
        d->overflow_count--;
        out[n++] = (ck_event){.token = q->token, .result = q->result, .kind = end_kind(q->args.op)};
        ck_req_release(&k->reqs, q);
    }
    return n;
}

void ck_done_free(ck_done *d) {
    free(d->buf);
    d->buf = NULL;
    d->count = d->cap = 0;
}
