/* The kernel proper: the structures the core files share and the interface
 * the backends see. A backend's own state is private to its file (it hangs
 * off ck_kernel.backend_state); nothing here knows io_uring or epoll. */
#ifndef CK_CORE_KERNEL_H
#define CK_CORE_KERNEL_H

/* liburing.h (in backend/uring.c) needs sigset_t and AT_FDCWD; every file
 * includes this header first, so the kernel builds under a strict -std=c11. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ck.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* ------------------------------------------------------------ timers */

typedef struct ck_timer_slot {
    int64_t deadline;
    void *token;
    uint32_t heap_pos;  /* index in heap, or UINT32_MAX when free */
    uint32_t gen;       /* bumped on every reuse; part of the handle */
    uint32_t next_free; /* free-list link */
} ck_timer_slot;

typedef struct ck_timers {
    ck_timer_slot *slots;
    uint32_t nslots;
    uint32_t free_head;  /* UINT32_MAX when empty */
    uint32_t *heap;      /* slot indices, min-heap on deadline */
    uint32_t count;
    uint32_t cap;
} ck_timers;

void ck_timers_init(ck_timers *t);
void ck_timers_free(ck_timers *t);
/* Reports every timer whose deadline is <= now. A timer the done list has
 * no room for stays in the heap, already due, and is reported next turn. */
void ck_timers_expire(ck_kernel *k, int64_t now);

/* ------------------------------------------------------------ requests */

enum {
    CK_REQ_FREE = 0,
    CK_REQ_PENDING = 1,    /* in the backend */
    CK_REQ_CANCELLING = 2, /* in the backend, asked to stop */
    CK_REQ_DONE = 3,       /* finished; the result waits on the done overflow list */
};

typedef struct ck_req {
    ck_request_args args;
    void *token;
    /* One list at a time: the pool's free list, epoll's per-descriptor
     * wait list, io_uring's SQE backlog, or the done overflow list. */
    struct ck_req *prev, *next;
    int64_t result;    /* CK_REQ_DONE: the result still to be reported */
    uint32_t index;
    uint32_t gen;
    uint8_t state;
    uint8_t phase;     /* the backend's own progress marker (free for its use) */
    uint8_t flags;     /* the backend's own bits (free for its use) */
    bool started;      /* connect: the call was issued, await SO_ERROR */
    uint8_t sflags;    /* CK_OP_RECV_STREAM: CK_STREAM_* */
    socklen_t addrlen; /* accept's in/out length, stable while in flight */
    uint32_t held;     /* CK_OP_RECV_STREAM: its buffers the consumer holds */
    /* CK_OP_RECV_STREAM: the pool's list of streams waiting for a buffer
     * (apart from prev/next: a stalled stream may sit on a backlog too). */
    struct ck_req *sprev, *snext;
} ck_req;

/* ck_req.sflags of a stream */
enum {
    CK_STREAM_ARMED = 1,   /* the backend receives for it (multishot, poll or parked) */
    CK_STREAM_PAUSING = 2, /* io_uring: its multishot is being stopped at its bound */
    CK_STREAM_STALLED = 4, /* on the pool's stalled list, waiting for a free buffer */
};

/* Requests live in fixed chunks so their addresses never move (io_uring
 * keeps a pointer to them as user_data). */
#define CK_REQ_CHUNK 256
typedef struct ck_reqs {
    ck_req **chunks;
    uint32_t nchunks;
    ck_req *free_list;
    uint32_t pending; /* allocated: in a backend or waiting to be reported */
} ck_reqs;

ck_req *ck_req_alloc(ck_reqs *r);
void ck_req_release(ck_reqs *r, ck_req *q);
ck_req *ck_req_lookup(ck_reqs *r, uint64_t handle);
void ck_reqs_free(ck_reqs *r);
/* Calls fn for every request in `state` on descriptor fd (the slow path of
 * ck_forget_fd for a backend that keeps no per-descriptor list). */
void ck_reqs_each_on_fd(ck_reqs *r, int fd, int state, void (*fn)(ck_kernel *, ck_req *),
                        ck_kernel *k);
static inline uint64_t ck_req_handle(const ck_req *q) {
    return ((uint64_t)q->gen << 32) | ((uint64_t)q->index + 1);
}

/* ------------------------------------------------------------ done list
 * Completions waiting to be handed to the caller of ck_poll: a ring that
 * grows, and, for a request completion the ring had no memory for, an
 * intrusive list through the request itself (which cannot fail), so no
 * completion is ever dropped. */
typedef struct ck_done {
    ck_event *buf;
    uint32_t head, count, cap;
    ck_req *overflow_head, *overflow_tail;
    uint32_t overflow_count;
} ck_done;

/* False when the ring is full and cannot grow (the caller keeps the event
 * and tries again next turn). */
bool ck_done_push(ck_done *d, void *token, int64_t result, int32_t kind);
/* The overflow half of ck_done_take (rare: only after a failed push). */
int ck_done_take_overflow(ck_kernel *k, ck_event *out, int cap);
void ck_done_free(ck_done *d);

/* ------------------------------------------------------------ receive pool
 * The buffers of CK_OP_RECV_STREAM (core/streams.c). In ring mode the free
 * buffers sit in io_uring's provided-buffer ring (the backend's provide
 * hook puts a released one back); otherwise on a free stack. Chunks wait
 * for ck_poll in a FIFO with one slot per buffer, so reporting a chunk can
 * never fail for want of memory. */
typedef struct ck_pool {
    uint8_t *mem;          /* count × size bytes */
    uint32_t count, size;
    uint32_t *free_stack;  /* without a ring: free buffer ids */
    uint32_t nfree;
    uint64_t *owner;       /* per buffer: the handle of the stream that holds it, 0 if free */
    ck_event *fifo;        /* chunks not yet reported (count slots) */
    uint32_t fifo_head, fifo_count;
    uint32_t held;
    uint32_t streams;
    bool ring;
    ck_req *stalled_head, *stalled_tail;
    uint64_t chunks, exhausted, paused, rearmed;
} ck_pool;

/* The pool, created on first use with the configured shape; NULL and
 * errno = ENOMEM when it cannot be allocated. */
ck_pool *ck_pool_get(ck_kernel *k);
void ck_pool_free(ck_kernel *k);
/* Free buffers left (in the ring or on the stack). */
static inline uint32_t ck_pool_free_count(const ck_pool *p) { return p->count - p->held; }
/* Reports a chunk of stream q in buffer bid. In ring mode it then stops
 * the stream (the backend's stream_pause) when it reached its bound; the
 * drain checks the bound itself. */
void ck_stream_chunk(ck_kernel *k, ck_req *q, uint32_t bid, uint32_t len);
/* The most buffers q may hold. */
static inline uint32_t ck_stream_limit(const ck_pool *p, const ck_req *q) {
    return q->args.len && q->args.len < p->count ? (uint32_t)q->args.len : p->count;
}
/* Whether a stopped stream may receive again now. */
static inline bool ck_stream_may_run(const ck_pool *p, const ck_req *q) {
    return q->state == CK_REQ_PENDING && q->held < ck_stream_limit(p, q) && ck_pool_free_count(p) > 0;
}
void ck_stream_stall(ck_pool *p, ck_req *q);
void ck_stream_unstall(ck_pool *p, ck_req *q);
/* Receives into pool buffers until the socket would block (-EAGAIN), the
 * stream must stop (1: at its bound, or stalled for a buffer), or it ends
 * (0 at EOF, -errno): the readiness path of epoll and of io_uring without a
 * buffer ring. */
int64_t ck_stream_drain(ck_kernel *k, ck_req *q);
/* Takes an ending stream off the pool's books (ck_complete calls it). */
void ck_stream_finish(ck_kernel *k, ck_req *q);
/* Moves waiting chunks into out; returns how many. */
int ck_stream_take(ck_kernel *k, ck_event *out, int cap);

/* ------------------------------------------------------------ posts */

typedef struct ck_post_item {
    void *job, *task, *token;
} ck_post_item;

typedef struct ck_posts {
    pthread_mutex_t lock;
    ck_post_item *items;
    uint32_t count, cap;
    ck_post_item *spare; /* swapped in on drain so posters never wait long */
    uint32_t spare_cap;
    /* Items of the last drain (in `spare`) that found no room in the ready
     * queue or the done list: delivered, in order, before any newer post. */
    uint32_t carry_next, carry_end;
    atomic_uint approx_count;
} ck_posts;

/* Moves posted jobs to the ready queue and posted messages to the done
 * list (kernel thread only); ck_posts_poll is its inline fast path. */
void ck_posts_drain(ck_kernel *k);
/* Waits until no other thread is inside ck_post: one whose job has already
 * run may still be writing the eventfd. First step of ck_kernel_free. */
void ck_posts_quiesce(ck_posts *p);
void ck_posts_free(ck_posts *p);
static inline bool ck_posts_carried(const ck_posts *p) { return p->carry_next != p->carry_end; }
static inline bool ck_posts_waiting(ck_posts *p) {
    return ck_posts_carried(p) || atomic_load_explicit(&p->approx_count, memory_order_acquire);
}

/* ------------------------------------------------------------ backends */

typedef struct ck_backend_ops ck_backend_ops;

/* A kernel's clock (clock.c). */
typedef struct ck_clock {
    bool is_virtual;
    bool held;              /* ck_clock_hold: jump only after real time */
    int64_t autojump_ns;    /* < 0: never jumps on its own */
    _Atomic int64_t now_ns; /* the virtual reading; read from any thread */
} ck_clock;

/* ------------------------------------------------------------ the kernel */

struct ck_kernel {
    ck_ready ready;
    ck_timers timers;
    ck_reqs reqs;
    ck_done done;
    ck_posts posts;
    ck_stats stats;
    const ck_backend_ops *ops; /* chosen once, in ck_kernel_new */
    void *backend_state;       /* the backend's own, private to its file */
    uint32_t options;          /* CK_KERNEL_* flags it was created with */
    int wakefd;                /* eventfd other threads write to wake the loop */
    atomic_int wake_pending;   /* an eventfd write is outstanding */
    atomic_int sleeping;       /* the loop is (about to be) blocked in the backend */
    void *owner;
    pthread_t thread;      /* the thread running the loop (ck_note_thread) */
    bool has_thread;
    _Atomic int64_t running_task;  /* id of the task holding the kernel, or 0 */
    _Atomic int64_t running_since; /* when it started, CLOCK_MONOTONIC ns */
    char fallback_reason[128];     /* why io_uring was not used; "" when it was or was not asked */
    ck_pool *pool;                 /* the receive pool, from the first stream on */
    uint32_t pool_count, pool_size; /* its shape (ck_stream_configure) */
    ck_clock clock;                /* what its timers run on (clock.c) */
};

/* Moves up to cap completions into out; returns how many. Inline: every
 * ck_poll ends with it. */
static inline int ck_done_take(ck_kernel *k, ck_event *out, int cap) {
    ck_done *d = &k->done;
    int n = 0;
    if (__builtin_expect(k->pool != NULL, 0) && k->pool->fifo_count) {
        /* Chunks first, and nothing else while some wait: a stream's end
         * sits in the done list and must follow its chunks. */
        n = ck_stream_take(k, out, cap);
        if (k->pool->fifo_count) return n;
    }
    while (n < cap && d->count) {
        out[n++] = d->buf[d->head];
        d->head = (d->head + 1) & (d->cap - 1); /* cap is a power of two */
        d->count--;
    }
    if (__builtin_expect(d->overflow_head != NULL, 0) && n < cap)
        n += ck_done_take_overflow(k, out + n, cap - n);
    return n;
}

/* Completes a request: reports its result through ck_poll (never lost: see
 * ck_done) and returns its slot to the pool once reported. */
void ck_complete(ck_kernel *k, ck_req *q, int64_t result);
/* Reports one result of a multishot request, which stays pending. False
 * when the done list has no room (the caller undoes what the result
 * stands for, e.g. closes an accepted descriptor). */
bool ck_report_more(ck_kernel *k, ck_req *q, int64_t result);

#endif
