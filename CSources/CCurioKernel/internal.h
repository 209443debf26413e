/* Private structures shared by the kernel's C files. */
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H

/* liburing.h needs sigset_t and AT_FDCWD; ask for them so the kernel also
 * builds under a strict -std=c11 (ready.c, requests.c and timers.c include
 * this header first). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ck.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#ifndef CURIO_EPOLL_ONLY
#include <liburing.h>
#endif

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

bool ck_timers_init(ck_timers *t);
void ck_timers_free(ck_timers *t);
/* Moves every timer whose deadline is <= now to the done list. */
void ck_timers_expire(ck_kernel *k, int64_t now);

/* ------------------------------------------------------------ requests */

enum { CK_REQ_FREE = 0, CK_REQ_PENDING = 1, CK_REQ_CANCELLING = 2 };

typedef struct ck_req {
    ck_request_args args;
    void *token;
    struct ck_req *prev, *next; /* epoll: the fd's wait list; free list */
    uint32_t index;
    uint32_t gen;
    int state;
    bool started;      /* connect: the call was issued, await SO_ERROR */
    socklen_t addrlen; /* accept's in/out length, stable while in flight */
} ck_req;

/* Requests live in fixed chunks so their addresses never move (io_uring
 * keeps a pointer to them as user_data). */
#define CK_REQ_CHUNK 256
typedef struct ck_reqs {
    ck_req **chunks;
    uint32_t nchunks;
    ck_req *free_list;
    uint32_t pending;
} ck_reqs;

ck_req *ck_req_alloc(ck_reqs *r);
void ck_req_release(ck_reqs *r, ck_req *q);
ck_req *ck_req_lookup(ck_reqs *r, uint64_t handle);
static inline uint64_t ck_req_handle(const ck_req *q) {
    return ((uint64_t)q->gen << 32) | ((uint64_t)q->index + 1);
}

/* ------------------------------------------------------------ done list
 * Completions waiting to be handed to the caller of ck_poll. */
typedef struct ck_done {
    ck_event *buf;
    uint32_t head, count, cap;
} ck_done;

bool ck_done_push(ck_done *d, void *token, int64_t result, int32_t kind);

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
    atomic_uint approx_count;
} ck_posts;

/* ------------------------------------------------------------ epoll state */

typedef struct ck_fdstate {
    ck_req *readers_head, *readers_tail;
    ck_req *writers_head, *writers_tail;
    uint8_t registered;
} ck_fdstate;

typedef struct ck_epoll {
    int epfd;
    ck_fdstate *fds;
    uint32_t nfds;
    uint32_t waiting; /* requests parked on some fd */
} ck_epoll;

/* ------------------------------------------------------------ the kernel */

struct ck_kernel {
    ck_ready ready;
    ck_timers timers;
    ck_reqs reqs;
    ck_done done;
    ck_posts posts;
    ck_stats stats;
    ck_backend_kind backend;
    int wakefd;              /* eventfd */
    uint64_t wake_buf;       /* io_uring reads the eventfd into this */
    atomic_int wake_pending; /* an eventfd write is outstanding */
    atomic_int sleeping;     /* the loop is (about to be) blocked in the backend */
    bool wake_armed;         /* io_uring: a read on wakefd is in flight */
    void *owner;
    pthread_t thread;      /* the thread running the loop (ck_note_thread) */
    bool has_thread;
    _Atomic int64_t running_task;  /* id of the task holding the kernel, or 0 */
    _Atomic int64_t running_since; /* when it started, CLOCK_MONOTONIC ns */
    ck_epoll ep;
#ifndef CURIO_EPOLL_ONLY
    struct io_uring ring;
    uint32_t unsubmitted;    /* SQEs prepared since the last enter */
#endif
};

/* user_data tags for io_uring entries that are not requests */
#define CK_TAG_IGNORE ((uint64_t)1)
#define CK_TAG_WAKE ((uint64_t)2)

/* Backends. Each returns 0 or -errno. wait: timeout_ns < 0 blocks without a
 * limit, 0 only looks. Completions go to k->done; a wake-up sets *woken. */
#ifndef CURIO_EPOLL_ONLY
int ck_uring_init(ck_kernel *k);
void ck_uring_free(ck_kernel *k);
int64_t ck_uring_submit(ck_kernel *k, ck_req *q);
void ck_uring_cancel(ck_kernel *k, ck_req *q);
int ck_uring_wait(ck_kernel *k, int64_t timeout_ns, bool *woken);
#endif
int ck_epoll_init(ck_kernel *k);
void ck_epoll_free(ck_kernel *k);
int64_t ck_epoll_submit(ck_kernel *k, ck_req *q);
void ck_epoll_cancel(ck_kernel *k, ck_req *q);
void ck_epoll_forget_fd(ck_kernel *k, int fd);
int ck_epoll_wait(ck_kernel *k, int64_t timeout_ns, bool *woken);

/* Runs the non-blocking system call a request stands for; -errno on error. */
int64_t ck_try_syscall(ck_req *q, bool nonblocking);
/* Completes a request: reports it and returns its slot to the pool. */
void ck_complete(ck_kernel *k, ck_req *q, int64_t result);
/* Consumes the eventfd counter after a wake-up. */
void ck_wake_consumed(ck_kernel *k);

#endif
